"""Every encoder exists in both frameworks, under the same canonical weights, computing the same
features: torchvision's ResNets (``torch_impl.models``) against ``tf_impl.models.ResNet``.

* the two registries hold the same names, and each encoder walks the same canonical weights
  (names and shapes) in both frameworks, so ``rosetta port`` serves every one;
* ported weights give the same features in float64, in eval and train mode, for the ImageNet
  stems (``resnet18``, ``resnet50``, ``resnet50_samepool``) and ``resnet50_cifar``;
* ResNet-50's forward and backward agree in float64: the input gradient and every weight's;
* ``resnet50_samepool``'s max-pool is TensorFlow's "SAME" one, checked against a loop, and is
  not torchvision's;
* google-research/simclr's ResNets (``simclr_r<d>_<w>x_sk<0|1>``): each walks the layers the
  official ``resnet.py`` creates, in its order (torch, built on the meta device); forward and
  backward agree in float64 on a reduced depth and width with and without selective kernels
  (the same code), and at full size (slow).

Step parity of ResNet-18 is in ``tests/test_step_parity.py``. Inputs are small (2-4 images of
32-48 px): every encoder ends in global average pooling, so the weights are the same at any size.
"""

import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed")
pytest.importorskip("torchvision", reason="torchvision is not installed")
tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed")

from shared.parity.weights import to_canonical  # noqa: E402
from shared.run.encoders import SIMCLR_RESNETS  # noqa: E402
from tf_impl import models as tm  # noqa: E402
from tf_impl import weights as tw  # noqa: E402
from torch_impl import models as pm  # noqa: E402
from torch_impl import weights as pw  # noqa: E402

FEATURES = {
    "small_cnn": 256,
    "resnet18_cifar": 512,
    "resnet18": 512,
    "resnet50_cifar": 2048,
    "resnet50": 2048,
    "resnet50_samepool": 2048,
    **{name: 2048 * width for name, (_, width, _) in SIMCLR_RESNETS.items()},
}


def _walk(layers_of, encoder, framework):
    """``[(kind, role, canonical shape)]`` of an encoder's weights, in the canonical order."""
    out = []
    for kind, roles in layers_of(encoder):
        for role, v in roles.items():
            shape = tuple(v.shape)
            out.append((kind, role, to_canonical(kind, role, np.empty(shape), framework).shape))
    return out


def test_both_frameworks_have_every_encoder():
    from shared.run.encoders import ENCODER_NAMES

    assert sorted(pm.ENCODERS) == sorted(tm.ENCODERS) == sorted(FEATURES) == sorted(ENCODER_NAMES)


# resnet50_cifar's TF build is slow-marked (3 s): its stem is resnet18_cifar's, its blocks
# resnet50's. SimCLR's ResNets (up to 1.4 G weights): test_every_simclr_resnet_*
@pytest.mark.parametrize(
    "name",
    [
        n if n != "resnet50_cifar" else pytest.param(n, marks=pytest.mark.slow)
        for n in FEATURES
        if n not in SIMCLR_RESNETS
    ],
)
def test_each_encoder_walks_the_same_weights_in_both_frameworks(name):
    """Feature and input sizes, and the walk of canonical weights (kind, role, shape): the
    torch-side numbers are torchvision's (ResNet-50: 53 convs, 53 BNs)."""
    a, b = _pair(name)
    assert a.feature_dim == b.feature_dim == FEATURES[name]
    imagenet = name.startswith("resnet") and "cifar" not in name
    assert a.input_size == b.input_size == (224 if imagenet else 32)
    walk = _walk(pw.layers, a, "torch")
    assert walk == _walk(tw.layers, b, "tf")
    if name.startswith("resnet50"):
        kinds = [k for k, role, _ in walk if role in ("kernel", "gamma")]
        assert kinds.count("conv") == kinds.count("bn") == 53


@functools.cache
def _pair(encoder):
    """The torch and the TF encoder, float64, built once for this module (a ResNet-50 takes
    seconds); each test sets every weight it reads (:func:`_ported`)."""
    with tm.dtype_policy("float64"):
        return pm.build_encoder(encoder).double(), tm.build_encoder(encoder)


def _ported(encoder):
    """A torch encoder with non-trivial weights and statistics, and the TF one given them."""
    torch.manual_seed(0)
    a, b = _pair(encoder)
    with torch.no_grad():
        for name, t in a.state_dict().items():
            if "running_var" in name:
                t.uniform_(0.5, 1.5)
            elif "running_mean" in name or name.endswith("bn1.weight") or ".bias" in name:
                t.uniform_(-0.2, 0.2)
    arrays, variables = pw_arrays(a), _tf_vars(b)
    assert len(arrays) == len(variables)
    for (_, v), x in zip(variables, arrays):
        v.assign(x)
    return a, b


def pw_arrays(encoder):
    """An encoder's weights in the canonical layout, in the canonical order (torch side)."""
    return [
        to_canonical(kind, role, t.detach().numpy(), "torch")
        for kind, roles in pw.layers(encoder)
        for role, t in roles.items()
    ]


def _tf_vars(encoder):
    return [((kind, role), v) for kind, roles in tw.layers(encoder) for role, v in roles.items()]


# resnet50_cifar is slow-marked: its stem is resnet18_cifar's (tests/test_weights.py) and its
# blocks are resnet50's (test_resnet50_forward_and_backward_agree_float64)
@pytest.mark.parametrize(
    "encoder,size",
    [
        ("resnet18", 48),
        ("resnet50_samepool", 48),
        pytest.param("resnet50_cifar", 16, marks=pytest.mark.slow),
    ],
)
def test_ported_encoder_computes_the_same_features_float64(encoder, size):
    """Eval mode (running statistics) and train mode (batch statistics), to 1e-11 of the
    features' scale (the float64 differences measured here are 2e-15 and 3e-13)."""
    a, b = _ported(encoder)
    x = np.random.default_rng(1).random((4, size, size, 3))
    for training in (False, True):
        a.train(training)
        h_pt = a(torch.from_numpy(x).permute(0, 3, 1, 2)).detach().numpy()
        h_tf = b(tf.constant(x), training=training).numpy()
        err = np.abs(h_pt - h_tf).max() / np.abs(h_pt).max()
        assert err <= 1e-11, (encoder, training, err)


def test_resnet50_forward_and_backward_agree_float64():
    """torchvision's ResNet-50 and ``tf_impl``'s, train mode, ported weights: the features, the
    gradient of a fixed linear function of them with respect to the input, and with respect to
    every one of the 159 trainable weights, to 1e-10 of each array's scale."""
    a, b = _ported("resnet50")
    rng = np.random.default_rng(2)
    x, r = rng.random((2, 48, 48, 3)), rng.standard_normal((2, 2048))
    a.train()
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).requires_grad_(True)
    h_pt = a(xt)
    (h_pt * torch.from_numpy(r)).sum().backward()
    xv = tf.constant(x)
    trainable = [
        v for (kind, role), v in _tf_vars(b) if role in ("kernel", "bias", "gamma", "beta")
    ]
    with tf.GradientTape() as tape:
        tape.watch(xv)
        h_tf = b(xv, training=True)
        objective = tf.reduce_sum(h_tf * r)
    g_x, *g_w = tape.gradient(objective, [xv, *trainable])
    pairs = [("h", h_pt.detach().numpy(), h_tf.numpy())]
    pairs.append(("dx", xt.grad.permute(0, 2, 3, 1).numpy(), g_x.numpy()))
    torch_grads = [
        (f"{kind}/{role}", to_canonical(kind, role, t.grad.numpy(), "torch"))
        for kind, roles in pw.layers(a)
        for role, t in roles.items()
        if role in ("kernel", "bias", "gamma", "beta")
    ]
    assert len(torch_grads) == len(g_w) == 53 + 2 * 53  # 53 kernels, 53 (gamma, beta)
    pairs += [(name, g, gt.numpy()) for (name, g), gt in zip(torch_grads, g_w)]
    for name, p, q in pairs:
        err = np.abs(p - q).max() / max(np.abs(p).max(), 1e-300)
        assert err <= 1e-10, (name, err)


def _same_max_pool_loop(x, k=3, s=2):
    """TensorFlow's documented "SAME" max-pool, as a loop: out = ceil(n / s), the padding
    ``max((out - 1) s + k - n, 0)`` split with the smaller half before, padded cells ignored."""
    n = x.shape[0]
    out = -(-n // s)
    before = max((out - 1) * s + k - n, 0) // 2
    y = np.empty((out, out))
    for i in range(out):
        for j in range(out):
            r0, c0 = i * s - before, j * s - before
            y[i, j] = x[max(r0, 0) : r0 + k, max(c0, 0) : c0 + k].max()
    return y


@pytest.mark.parametrize("size", [7, 8, 9, 16])
def test_same_pad_max_pool_is_tensorflows_same_pool(size):
    x = np.random.default_rng(size).standard_normal((size, size))
    loop = _same_max_pool_loop(x)
    ours = pm.SamePadMaxPool2d(3, 2)(torch.from_numpy(x)[None, None])[0, 0].numpy()
    theirs = tf.nn.max_pool2d(tf.constant(x)[None, :, :, None], 3, 2, "SAME")[0, :, :, 0].numpy()
    np.testing.assert_array_equal(ours, loop)
    np.testing.assert_array_equal(theirs, loop)
    torchvision_pool = torch.nn.MaxPool2d(3, 2, 1)(torch.from_numpy(x)[None, None])[0, 0].numpy()
    if size % 2 == 0:  # same shape, windows a pixel apart: the two encoders differ
        assert torchvision_pool.shape == loop.shape and not np.array_equal(torchvision_pool, loop)
    else:  # odd sizes pad 1 and 1 in both
        np.testing.assert_array_equal(torchvision_pool, loop)


# --- google-research/simclr's ResNets ------------------------------------------------------


def _kernels_and_gammas(encoder, layers_of, framework):
    """``[(kind, shape)]``: one entry per conv (its kernel) and BN (its gamma), in order."""
    walk = _walk(layers_of, encoder, framework)
    return [(kind, shape) for kind, role, shape in walk if role in ("kernel", "gamma")]


def test_every_simclr_resnet_walks_the_official_layers():
    """Each ``simclr_r*`` encoder, built in torch on the meta device (no memory), walks the conv
    and BN layers google-research/simclr's ``resnet.py`` creates, in creation order and with
    their shapes (``shared.run.simclr_tf1.official_layers``, itself checked against the
    checkpoints tests/test_import_variants.py writes): canonical conv<i> is conv2d_<i>."""
    from shared.run.simclr_tf1 import official_layers

    for name, (depth, width, sk) in SIMCLR_RESNETS.items():
        with torch.device("meta"):
            enc = pm.build_encoder(name)
        want = [(kind, tuple(shape)) for _, kind, shape in official_layers(depth, width, sk)]
        assert _kernels_and_gammas(enc, pw.layers, "torch") == want, name
        assert enc.feature_dim == FEATURES[name] and enc.input_size == 224


def _randomised(a):
    """Non-trivial BN statistics and affine parameters in a torch encoder (in place)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for m in a.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.running_mean.uniform_(-0.2, 0.2)
                m.bias.uniform_(-0.2, 0.2)
    return a


def _port(a, b):
    """The torch encoder's weights into the TF one, by the canonical walk."""
    arrays, variables = pw_arrays(a), _tf_vars(b)
    assert len(arrays) == len(variables)
    for (_, v), x in zip(variables, arrays):
        v.assign(x)


def _simclr_pair(**kw):
    """``torch_impl``'s and ``tf_impl``'s SimCLRResNet, float64, the same weights."""
    from tf_impl.simclr_resnet import SimCLRResNet as TFResNet
    from torch_impl.simclr_resnet import SimCLRResNet as PTResNet

    a = _randomised(PTResNet(**kw).double())
    with tm.dtype_policy("float64"):
        b = TFResNet(**kw)
        b(tf.zeros([2, 32, 32, 3], tf.float64))
    assert _walk(pw.layers, a, "torch") == _walk(tw.layers, b, "tf")
    _port(a, b)
    return a, b


def _forward_backward(a, b, x, training: bool) -> list:
    """``(name, torch array, TF array)``: the features, the gradient of a fixed linear function
    of them with respect to the input and to every trainable weight."""
    r = np.random.default_rng(2).standard_normal((len(x), a.feature_dim))
    a.train(training)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).requires_grad_(True)
    h_pt = a(xt)
    a.zero_grad()
    (h_pt * torch.from_numpy(r)).sum().backward()
    trainable = [v for (_, role), v in _tf_vars(b) if role in ("kernel", "bias", "gamma", "beta")]
    xv = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xv)
        h_tf = b(xv, training=training)
        objective = tf.reduce_sum(h_tf * r)
    g_x, *g_w = tape.gradient(objective, [xv, *trainable])
    pairs = [("h", h_pt.detach().numpy(), h_tf.numpy())]
    pairs.append(("dx", xt.grad.permute(0, 2, 3, 1).numpy(), g_x.numpy()))
    torch_grads = [
        (f"{kind}/{role}", to_canonical(kind, role, t.grad.numpy(), "torch"))
        for kind, roles in pw.layers(a)
        for role, t in roles.items()
        if role in ("kernel", "bias", "gamma", "beta")
    ]
    assert len(torch_grads) == len(g_w)
    return pairs + [(n, g, gt.numpy()) for (n, g), gt in zip(torch_grads, g_w)]


def _assert_close(pairs, bound=1e-10):
    for name, p, q in pairs:
        err = np.abs(p - q).max() / max(np.abs(p).max(), 1e-300)
        assert err <= bound, (name, err)


@pytest.mark.parametrize("sk", [False, True], ids=["sk0", "sk1"])
def test_simclr_resnet_reduced_forward_and_backward_agree_float64(sk):
    """SimCLR's ResNet at width 2x on a reduced base (8 filters) and depth (blocks 2-1-1-1: a
    projection block and an identity block; every stride): the same classes as the full
    networks. 19-px images reach the second and third groups' stride-2 shortcuts at odd sizes
    (5 and 3 px: the ResNet-D pool's padded column counts). Eval mode: the features; train
    mode: features and every gradient, to 1e-10."""
    a, b = _simclr_pair(width=2, sk=sk, base=8, blocks=(2, 1, 1, 1))
    x = np.random.default_rng(1).random((2, 19, 19, 3))
    h_pt = a.eval()(torch.from_numpy(x).permute(0, 3, 1, 2)).detach().numpy()
    _assert_close([("h eval", h_pt, b(tf.constant(x), training=False).numpy())], 1e-11)
    _assert_close(_forward_backward(a, b, x, training=True))


@pytest.mark.slow  # large: the reduced test above covers the same code
@pytest.mark.parametrize("name", ["simclr_r50_1x_sk1", "simclr_r50_2x_sk0", "simclr_r101_1x_sk0"])
def test_simclr_resnet_full_size_forward_and_backward_agree_float64(name):
    """Train mode, 4 images of 64 px at 4 brightnesses: batch statistics over 2 images of 32 px
    (the last group at 1 px, the selective kernels' squeeze BN over 2 values) amplify rounding
    to 1e-5 of h; eval mode there agrees to 4e-15, these to 2e-12 (r50_1x_sk1)."""
    depth, width, sk = SIMCLR_RESNETS[name]
    a, b = _simclr_pair(depth=depth, width=width, sk=sk)
    x = (
        np.random.default_rng(1).random((4, 64, 64, 3))
        * np.linspace(0.5, 2.0, 4)[:, None, None, None]
    )
    _assert_close(_forward_backward(a, b, x, True))
