"""The framework-differences catalogue: every place where PyTorch and TensorFlow compute
something different by default, measured, and how this project aligns it.

    python -m shared.docgen.catalogue --measure  # measures, into benchmarks/results/catalogue.json
    python -m shared.docgen.catalogue            # writes docs/framework_differences.md from it

Each row is a function that measures the difference *left unaligned* (max abs diff on a small
float64 example) and checks the project's alignment. ``tests/test_catalogue.py`` runs every
row and fails when a difference stops being true (after a framework upgrade, say), so the
table cannot rot. The draws are seeded and the measurement runs both frameworks on one thread,
but the residues after alignment are float rounding and follow the CPU's kernels; so the page
is rendered from the committed measurement, which names its host (``shared.docgen.measured``),
and ``make docs`` gives the same page on every host. ``tests/test_docs.py`` checks the page
against that file, and the file against :func:`measure` run now. Import order: torch before
TensorFlow.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

# isort: off
import torch
import torchvision  # noqa: F401  (triton must load before TensorFlow)
import torch.nn.functional as F
import tensorflow as tf

# isort: on

from shared.docgen import measured as M
from shared.docgen.measured import write_page
from shared.docgen.threads import use_one_thread

SEED = 0
RNG = np.random.default_rng(SEED)  # the rows draw from it in ROWS order; measure() rewinds it


def conv_padding() -> dict:
    """A stride-2 3x3 conv: torch pads (1, 1), Keras "same" pads (0, 1) on even inputs."""
    x = RNG.standard_normal((1, 8, 8, 2))
    k = RNG.standard_normal((3, 3, 2, 4))
    pt = F.conv2d(
        torch.from_numpy(x).permute(0, 3, 1, 2),
        torch.from_numpy(k).permute(3, 2, 0, 1),
        stride=2,
        padding=1,
    )
    pt = pt.permute(0, 2, 3, 1).numpy()
    same = tf.nn.conv2d(x, k, 2, "SAME").numpy()
    aligned = tf.nn.conv2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), k, 2, "VALID").numpy()
    return {
        "name": "stride-2 conv padding",
        "torch": "`padding=1`: 1 pixel on every side",
        "tf": '`padding="same"`: 0 before, 1 after (even input, stride 2)',
        "effect": float(np.abs(pt - same).max()),
        "aligned": float(np.abs(pt - aligned).max()),
        "how": 'TF\'s ResNet block pads explicitly and uses a "valid" conv (`tf_impl.models._BasicBlock`)',
    }


def bn_running_variance() -> dict:
    """One training-mode BN call: torch stores the unbiased batch variance, Keras the biased."""
    x = RNG.standard_normal((4, 3, 3, 2)) * 2.0
    bn = torch.nn.BatchNorm2d(2).double()
    bn(torch.from_numpy(x).permute(0, 3, 1, 2))
    kb = tf.keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, dtype="float64")
    kb(x, training=True)
    n = 4 * 3 * 3
    pt, kv = bn.running_var.numpy(), kb.moving_variance.numpy()
    ratio = float(np.abs((pt - 0.9) / (kv - 0.9) - n / (n - 1)).max())
    return {
        "name": "BN running variance",
        "torch": "unbiased batch variance (n - 1)",
        "tf": "biased batch variance (n)",
        "effect": float(np.abs(pt - kv).max()),
        "aligned": ratio,
        "how": "kept: each framework's convention; pinned exactly (ratio n / (n - 1)) by the step-parity test",
    }


def bn_momentum_and_eps() -> dict:
    """Defaults: torch momentum 0.1 / eps 1e-5; Keras momentum 0.99 / eps 1e-3 (other meaning)."""
    x = RNG.standard_normal((4, 3, 3, 2))
    bn = torch.nn.BatchNorm2d(2).double()
    bn(torch.from_numpy(x).permute(0, 3, 1, 2))
    bn.eval()
    kd = tf.keras.layers.BatchNormalization(dtype="float64")  # Keras defaults
    kd(x, training=True)
    ka = tf.keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, dtype="float64")
    ka(x, training=True)
    pt = bn(torch.from_numpy(x).permute(0, 3, 1, 2)).detach().permute(0, 2, 3, 1).numpy()
    default = kd(x, training=False).numpy()
    mean_aligned = float(np.abs(bn.running_mean.numpy() - ka.moving_mean.numpy()).max())
    return {
        "name": "BN momentum and epsilon",
        "torch": "`running = 0.9 running + 0.1 batch`, eps 1e-5",
        "tf": "`moving = 0.99 moving + 0.01 batch`, eps 1e-3 (Keras defaults)",
        "effect": float(np.abs(pt - default).max()),
        "aligned": mean_aligned,
        "how": "Keras layers built with momentum 0.9 and epsilon 1e-5 (`tf_impl.models._bn`)",
    }


def keras_sgd() -> dict:
    """Keras's SGD folds the learning rate into the velocity (differs once lr changes)."""
    from shared.oracle import optim

    w, grads = {"w": RNG.standard_normal(5)}, [{"w": RNG.standard_normal(5)} for _ in range(6)]
    lrs = [0.5 * optim.warmup_cosine(s, 2, 6) for s in range(6)]
    pk, sk, pt, st = w, {}, w, {}
    for lr, g in zip(lrs, grads):
        pk, sk = optim.keras_sgd_step(pk, g, sk, lr=lr, momentum=0.9)
        pt, st = optim.sgd_step(pt, g, st, lr=lr, momentum=0.9)
    return {
        "name": "SGD with momentum",
        "torch": "`v = mu v + g; w -= lr v`",
        "tf": "Keras: `v = mu v - lr g; w += v`",
        "effect": float(np.abs(pk["w"] - pt["w"]).max()),
        "aligned": 0.0,
        "how": "`tf_impl.optim.SGD` does torch's update (tests/test_optim.py, 6 steps of warmup + cosine)",
    }


def keras_adam() -> dict:
    """Keras's Adam adds epsilon to the uncorrected sqrt(v)."""
    from shared.oracle import optim

    w, grads = (
        {"w": RNG.standard_normal(5) * 1e-3},
        [{"w": RNG.standard_normal(5) * 1e-6} for _ in range(3)],
    )
    pk, sk, pt, st = w, {}, w, {}
    for g in grads:
        pk, sk = optim.keras_adam_step(pk, g, sk, lr=1e-3)
        pt, st = optim.adam_step(pt, g, st, lr=1e-3)
    return {
        "name": "Adam's epsilon",
        "torch": "`lr m_hat / (sqrt(v_hat) + 1e-8)`",
        "tf": "Keras: `lr_t m / (sqrt(v) + 1e-7)`",
        "effect": float(np.abs(pk["w"] - pt["w"]).max()),
        "aligned": 0.0,
        "how": "`tf_impl.optim.Adam` does torch's update (tests/test_optim.py)",
    }


def python_float_cast() -> dict:
    """``tf.cast(0.999, tf.float64)`` goes through float32; Keras optimisers cast this way."""
    cast = float(tf.cast(0.999, tf.float64).numpy())
    const = float(tf.constant(0.999, tf.float64).numpy())
    return {
        "name": "Python floats in float64 TF",
        "torch": "a Python float is a double",
        "tf": "`tf.cast(0.999, tf.float64)` rounds through float32",
        "effect": abs(cast - 0.999),
        "aligned": abs(const - 0.999),
        "how": "`tf.constant(x, dtype)` for Python floats (`tf_impl.moco.momentum_update`, `tf_impl.optim.Adam`)",
    }


def l2_normalize_clamp() -> dict:
    """F.normalize clamps the norm at 1e-12; tf.math.l2_normalize the *squared* norm."""
    x = np.array([[1e-7, 0.0]])
    pt = F.normalize(torch.from_numpy(x), dim=1).numpy()
    default = tf.math.l2_normalize(x, axis=1).numpy()
    aligned = tf.math.l2_normalize(x, axis=1, epsilon=1e-24).numpy()
    return {
        "name": "L2 normalisation clamp",
        "torch": "`x / max(||x||, 1e-12)`",
        "tf": "`x / sqrt(max(||x||^2, 1e-12))`: rows shorter than 1e-6 stay unnormalised",
        "effect": float(np.abs(pt - default).max()),
        "aligned": float(np.abs(pt - aligned).max()),
        "how": "`epsilon=1e-24` (`tf_impl.losses`, `tf_impl.models.normalize`)",
    }


def init_scale() -> dict:
    """Default initialisers: torch kaiming_uniform(a=sqrt(5)), Keras glorot_uniform (seeded)."""
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        conv = torch.nn.Conv2d(64, 64, 3, bias=False)
    glorot = tf.keras.initializers.GlorotUniform(seed=SEED)  # Keras' default, seeded
    kc = tf.keras.layers.Conv2D(64, 3, use_bias=False, kernel_initializer=glorot)
    kc.build((None, 8, 8, 64))
    # the std in float64: a float32 sum's rounding follows the CPU's SIMD width
    pt = conv.weight.detach().numpy().astype(np.float64).std()
    kv = kc.kernel.numpy().astype(np.float64).std()
    return {
        "name": "default weight initialisation (3x3 conv, 64 -> 64)",
        "torch": f"kaiming_uniform(a=sqrt(5)): std {pt:.4f}",
        "tf": f"glorot_uniform: std {kv:.4f}",
        "effect": float(abs(pt - kv)),
        "aligned": 0.0,
        "how": "kept for training (each framework's own default); parity work ports the weights (`shared.parity.weights`)",
    }


def kernel_layout() -> dict:
    """torch stores conv kernels (out, in, kh, kw) and dense (out, in); Keras (kh, kw, in, out), (in, out)."""
    from shared.parity.weights import from_canonical, to_canonical

    k = RNG.standard_normal((4, 2, 3, 3))
    back = from_canonical("conv", "kernel", to_canonical("conv", "kernel", k, "torch"), "torch")
    return {
        "name": "kernel layout",
        "torch": "conv (out, in, kh, kw), dense (out, in)",
        "tf": "conv (kh, kw, in, out), dense (in, out)",
        "effect": float("nan"),
        "aligned": float(np.abs(back - k).max()),
        "how": "`shared.parity.weights`: one canonical layout (TF's); torch transposes on export and import",
    }


def _image(h: int = 24, w: int = 24) -> np.ndarray:
    """A (1, H, W, 3) float32 image with unequal channel means (a warm tint), as photos have."""
    return (RNG.random((1, h, w, 3)) * [1.0, 0.6, 0.3]).astype(np.float32)


def _nhwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(0, 2, 3, 1).numpy()


def crop_resample_grid() -> dict:
    """Crop-and-resize: roi_align samples bin centres; crop_and_resize spans corner to corner."""
    from torchvision.ops import roi_align

    from tf_impl.augment import _crop_resize

    x = _image()
    box = np.array([[3.3, 5.1, 15.8, 19.2]], np.float32)  # x0, y0, x1, y1 in pixels
    pt = _nhwc(
        roi_align(
            torch.from_numpy(x).permute(0, 3, 1, 2),
            torch.from_numpy(np.concatenate([[[0.0]], box], 1).astype(np.float32)),
            output_size=32,
            spatial_scale=1.0,
            sampling_ratio=1,
            aligned=True,
        )
    )
    x0, y0, x1, y1 = box[0]
    norm = [[y0 / 24, x0 / 24, y1 / 24, x1 / 24]]
    default = tf.image.crop_and_resize(x, norm, [0], [32, 32]).numpy()
    aligned = _crop_resize(tf.constant(x), tf.constant(box), 32).numpy()
    return {
        "name": "crop resampling grid (augmentation)",
        "torch": "`roi_align(aligned=True, sampling_ratio=1)`: output pixel i reads x0 - 0.5 + (i + 0.5) w / S",
        "tf": "`tf.image.crop_and_resize`: S points from the box's first to its last edge, over (H - 1)",
        "effect": float(np.abs(pt - default).max()),
        "aligned": float(np.abs(pt - aligned).max()),
        "how": "TF gathers at roi_align's points (`tf_impl.augment._crop_resize`)",
    }


def contrast_jitter() -> dict:
    """Contrast: torchvision blends towards the grayscale mean, tf.image each channel's mean."""
    from torchvision.transforms.v2 import functional as TVF

    from tf_impl.augment import _blend_contrast

    x = _image()
    pt = _nhwc(TVF.adjust_contrast(torch.from_numpy(x).permute(0, 3, 1, 2), 1.3))
    default = tf.clip_by_value(tf.image.adjust_contrast(x, 1.3), 0.0, 1.0).numpy()
    aligned = tf.clip_by_value(_blend_contrast(x, tf.constant([1.3])), 0.0, 1.0).numpy()
    return {
        "name": "contrast jitter (augmentation)",
        "torch": "`adjust_contrast`: blend with the mean of the grayscale image",
        "tf": "`tf.image.adjust_contrast`: blend with each channel's own mean",
        "effect": float(np.abs(pt - default).max()),
        "aligned": float(np.abs(pt - aligned).max()),
        "how": "TF's batched augmentation blends as torchvision (`tf_impl.augment._blend_contrast`); the per-sample path keeps `tf.image`",
    }


def saturation_jitter() -> dict:
    """Saturation: torchvision blends with the grayscale image, tf.image scales S in HSV."""
    from torchvision.transforms.v2 import functional as TVF

    from tf_impl.augment import _blend_saturation

    x = _image()
    pt = _nhwc(TVF.adjust_saturation(torch.from_numpy(x).permute(0, 3, 1, 2), 1.3))
    default = tf.clip_by_value(tf.image.adjust_saturation(x, 1.3), 0.0, 1.0).numpy()
    aligned = tf.clip_by_value(_blend_saturation(x, tf.constant([1.3])), 0.0, 1.0).numpy()
    return {
        "name": "saturation jitter (augmentation)",
        "torch": "`adjust_saturation`: blend with the grayscale image",
        "tf": "`tf.image.adjust_saturation`: multiply S in HSV, clipped to 1",
        "effect": float(np.abs(pt - default).max()),
        "aligned": float(np.abs(pt - aligned).max()),
        "how": "TF's batched augmentation blends as torchvision (`tf_impl.augment._blend_saturation`); the per-sample path keeps `tf.image`",
    }


def hue_rotation() -> dict:
    """Hue: both rotate H in HSV; they agree to float32 rounding (an agreement, checked)."""
    from torchvision.transforms.v2 import functional as TVF

    x = _image()
    pt = _nhwc(TVF.adjust_hue(torch.from_numpy(x).permute(0, 3, 1, 2), 0.07))
    agree = float(np.abs(pt - tf.image.adjust_hue(x, 0.07).numpy()).max())
    return {
        "name": "hue rotation (augmentation)",
        "torch": "`adjust_hue`: RGB -> HSV, H + delta mod 1, -> RGB",
        "tf": "`tf.image.adjust_hue`: the same, one fused kernel",
        "effect": agree,
        "aligned": agree,
        "how": "nothing to align: they agree to float32 rounding (row kept so a change is caught)",
    }


def resize_antialias() -> dict:
    """Downscaling with antialias: torchvision and tf.image use the same triangle filter."""
    from torchvision.transforms.v2 import functional as TVF

    x = _image(64, 64)
    pt = _nhwc(TVF.resize(torch.from_numpy(x).permute(0, 3, 1, 2), [32, 32], antialias=True))
    agree = float(np.abs(pt - tf.image.resize(x, [32, 32], antialias=True).numpy()).max())
    return {
        "name": "bilinear resize with antialias, 64 -> 32 (per-sample augmentation)",
        "torch": "`resize(antialias=True)`: triangle filter widened by the scale",
        "tf": "`tf.image.resize(antialias=True)`: the same filter",
        "effect": agree,
        "aligned": agree,
        "how": "nothing to align: they agree to float32 rounding (the batched path does not antialias, in either framework)",
    }


def same_max_pool() -> dict:
    """The stem's 3x3 stride-2 max-pool: torch pads 1 on every side, TF's "SAME" (the official
    SimCLR ``resnet.py``) 0 before and 1 after on even inputs."""
    # float32-representable values: in some processes TF's float64 MaxPool returned
    # float32-rounded maxima (5e-8 off on this CPU); the row is about the windows, not that
    x = RNG.standard_normal((1, 8, 8, 2)).astype(np.float32).astype(np.float64)
    pt = F.max_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2), 3, 2, padding=1)
    pt = pt.permute(0, 2, 3, 1).numpy()
    same = tf.nn.max_pool2d(x, 3, 2, "SAME").numpy()
    padded = F.pad(torch.from_numpy(x).permute(0, 3, 1, 2), (0, 1, 0, 1), value=-np.inf)
    aligned = F.max_pool2d(padded, 3, 2).permute(0, 2, 3, 1).numpy()
    return {
        "name": "stem max-pool padding (official SimCLR checkpoints)",
        "torch": "`MaxPool2d(3, 2, padding=1)`: 1 pixel on every side",
        "tf": '`max_pooling2d(3, 2, padding="SAME")`: 0 before, 1 after (even input)',
        "effect": float(np.abs(pt - same).max()),
        "aligned": float(np.abs(same - aligned).max()),
        "how": "`rosetta import` maps SimCLR's checkpoints to the encoder `resnet50_samepool`, whose torch max-pool pads (0, 1) with -inf (`torch_impl.models.SamePadMaxPool2d`)",
    }


def moco_queue_layout() -> dict:
    """MoCo's queue: the official code keeps it (D, K) (``moco/builder.py``), this project
    (K, D), rows the keys, in both frameworks."""
    queue = RNG.standard_normal((4, 6))  # (D, K)
    ours = np.ascontiguousarray(queue.T)
    return {
        "name": "MoCo queue layout (official MoCo checkpoints)",
        "torch": "facebookresearch/moco: `queue` (D, K), a key per column",
        "tf": "this project, both frameworks: (K, D), a key per row",
        "effect": float("nan"),
        "aligned": float(np.abs(ours.T - queue).max()),
        "how": "`rosetta import` transposes it (`shared.run.official.moco_state`); the pointer (1,) becomes a scalar",
    }


def _dense(kernel: np.ndarray, **kw):
    """A built float64 ``keras.layers.Dense`` holding ``kernel`` (in, out) and a zero bias."""
    layer = tf.keras.layers.Dense(kernel.shape[1], dtype="float64", **kw)
    layer.build((None, kernel.shape[0]))
    layer.kernel.assign(kernel)
    return layer


def gelu_approximation() -> dict:
    """torch's GELU is exact by default; ``keras.ops.gelu`` is the tanh approximation."""
    x = RNG.standard_normal(64) * 3
    pt = F.gelu(torch.from_numpy(x)).numpy()
    default = tf.keras.ops.gelu(x).numpy()
    aligned = (0.5 * x * (1 + tf.keras.ops.erf(x / np.sqrt(2)))).numpy()  # a float64 sqrt(2)
    return {
        "name": "GELU's tanh approximation",
        "torch": "`F.gelu`, `nn.GELU()`: exact, `x Phi(x)` (erf)",
        "tf": '`keras.ops.gelu(x)`: `approximate=True`, the tanh form (`Activation("gelu")` is exact)',
        "effect": float(np.abs(pt - default).max()),
        "aligned": float(np.abs(pt - aligned).max()),
        "how": "porting: `0.5 x (1 + keras.ops.erf(x / sqrt(2)))` (`keras.ops.gelu(x, approximate=False)` is exact too, but TF casts its 1 / sqrt(2) through float32, row 6), or torch's `approximate=\"tanh\"`; `rosetta localise` names it at the next layer's input",
    }


def layer_norm_epsilon() -> dict:
    """LayerNorm's epsilon: torch 1e-5, Keras 1e-3; it matters where a row's variance is small."""
    x = RNG.standard_normal((4, 8)) * 0.05
    pt = F.layer_norm(torch.from_numpy(x), (8,)).numpy()
    default = tf.keras.layers.LayerNormalization(dtype="float64")(x).numpy()
    aligned = tf.keras.layers.LayerNormalization(epsilon=1e-5, dtype="float64")(x).numpy()
    return {
        "name": "LayerNorm epsilon",
        "torch": "`nn.LayerNorm`: eps 1e-5",
        "tf": "`keras.layers.LayerNormalization`: epsilon 1e-3",
        "effect": float(np.abs(pt - default).max()),
        "aligned": float(np.abs(pt - aligned).max()),
        "how": "porting: `LayerNormalization(epsilon=1e-5)`; `rosetta localise` names it at the LayerNorm's forward",
    }


def depthwise_same_padding() -> dict:
    """A stride-2 3x3 depthwise conv: torch pads (1, 1); Keras's "SAME" (0, 1) on even inputs."""
    from shared.parity.pair import canonical_to_torch

    x = RNG.standard_normal((1, 8, 8, 2))
    k = RNG.standard_normal((3, 3, 2, 1))
    w = torch.from_numpy(canonical_to_torch("dwconv", "kernel", k).copy())
    pt = F.conv2d(torch.from_numpy(x).permute(0, 3, 1, 2), w, stride=2, padding=1, groups=2)
    pt = pt.permute(0, 2, 3, 1).numpy()
    same = tf.nn.depthwise_conv2d(x, k, [1, 2, 2, 1], "SAME").numpy()
    padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
    aligned = tf.nn.depthwise_conv2d(padded, k, [1, 2, 2, 1], "VALID").numpy()
    return {
        "name": "SAME padding in a stride-2 depthwise conv",
        "torch": "`Conv2d(C, C, 3, 2, padding=1, groups=C)`: 1 pixel on every side",
        "tf": '`DepthwiseConv2D(3, 2, padding="same")`: 0 before, 1 after (even input)',
        "effect": float(np.abs(pt - same).max()),
        "aligned": float(np.abs(pt - aligned).max()),
        "how": 'porting: `ZeroPadding2D(1)` and `padding="valid"`; `rosetta localise` names it at the depthwise conv (`keras.applications` pads (0, 1) with `correct_pad`)',
    }


def folded_activation() -> dict:
    """An activation folded into a Keras layer (``activation="softmax"`` on the head): torch's
    ``Linear`` returns the logits."""
    x, w = RNG.standard_normal((4, 6)), RNG.standard_normal((6, 3))
    pt = F.linear(torch.from_numpy(x), torch.from_numpy(w.T.copy())).numpy()
    default = _dense(w, activation="softmax")(x).numpy()
    aligned = _dense(w)(x).numpy()
    return {
        "name": "activation folded into a Keras layer",
        "torch": "`nn.Linear`, `nn.Conv2d`: no activation; `nn.ReLU` etc. are modules of their own",
        "tf": '`Dense(..., activation="relu")`, a `"softmax"` classifier head (`keras.applications`)',
        "effect": float(np.abs(pt - default).max()),
        "aligned": float(np.abs(pt - aligned).max()),
        "how": "porting: the same activation on both sides (or none on the head); `rosetta localise` runs each Keras layer without it and names it at the next layer's input or the output",
    }


def flatten_order() -> dict:
    """Flattening a feature map before a Dense: torch's order is (C, H, W), Keras's (H, W, C)."""
    x, w = RNG.standard_normal((2, 3, 2, 2)), RNG.standard_normal((4, 12))  # NCHW; Linear (out, in)
    pt = F.linear(torch.from_numpy(x).flatten(1), torch.from_numpy(w)).numpy()
    nhwc = x.transpose(0, 2, 3, 1)
    flatten = tf.keras.layers.Flatten(dtype="float64")
    default = _dense(w.T)(flatten(nhwc)).numpy()
    chw = flatten(tf.keras.layers.Permute((3, 1, 2), dtype="float64")(nhwc))
    aligned = _dense(w.T)(chw).numpy()
    return {
        "name": "flatten order before a Dense",
        "torch": "`torch.flatten(x, 1)` of (N, C, H, W): channel-major",
        "tf": "`Flatten()` of (N, H, W, C): channel-minor",
        "effect": float(np.abs(pt - default).max()),
        "aligned": float(np.abs(pt - aligned).max()),
        "how": "porting: `Permute((3, 1, 2))` before `Flatten()` (or permute the Dense kernel's rows); `rosetta localise` names it at the Dense's input",
    }


ROWS = [
    conv_padding,
    bn_running_variance,
    bn_momentum_and_eps,
    keras_sgd,
    keras_adam,
    python_float_cast,
    l2_normalize_clamp,
    init_scale,
    kernel_layout,
    crop_resample_grid,
    contrast_jitter,
    saturation_jitter,
    hue_rotation,
    resize_antialias,
    same_max_pool,
    moco_queue_layout,
    gelu_approximation,
    layer_norm_epsilon,
    depthwise_same_padding,
    folded_activation,
    flatten_order,
]
AGREEMENTS = {"hue_rotation", "resize_antialias"}  # rows that record an agreement, not a difference


def measure() -> list[dict]:
    """Every row of ``ROWS``, in order, from a rewound ``RNG``: the same draws as in a fresh
    process, whatever ran before."""
    RNG.bit_generator.state = np.random.default_rng(SEED).bit_generator.state
    return [row() for row in ROWS]


def markdown(rows: list[dict], source: str | None = None) -> str:
    """The page from :func:`measure`'s rows; ``source``: where they were measured."""
    lines = [
        "# Framework differences: PyTorch vs TensorFlow",
        "",
        "Generated by `python -m shared.docgen.catalogue` (float64 examples; the augmentation rows in "
        "float32, pixels in [0, 1]); every row is checked by "
        "`tests/test_catalogue.py`, which fails when the difference stops being true."
        + (
            f" The numbers were {source}, one thread per framework "
            "(`benchmarks/results/catalogue.json`; `--measure` measures them again)."
            if source
            else ""
        ),
        "",
        "| difference | torch | TensorFlow | effect left unaligned (max abs) | after alignment | how this project aligns it |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        effect = "layout only" if np.isnan(r["effect"]) else f"{r['effect']:.3g}"
        lines.append(
            f"| {r['name']} | {r['torch']} | {r['tf']} | {effect} | {r['aligned']:.3g} | {r['how']} |"
        )
    return "\n".join(lines) + "\n"


OUT = Path(__file__).resolve().parents[2] / "docs" / "framework_differences.md"


def main(argv=None) -> int:
    """``make docs``: the page from the committed measurement; ``--measure``: measure it anew
    (one thread each, seeded) into ``benchmarks/results/catalogue.json`` first."""
    args = sys.argv[1:] if argv is None else argv
    if "--measure" in args:
        use_one_thread()
        M.save("catalogue", measure())
    doc = M.load("catalogue")
    write_page(OUT, markdown(doc["data"], M.host_line(doc["meta"])), echo=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
