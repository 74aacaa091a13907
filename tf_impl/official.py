"""The official checkpoints, TensorFlow's side: read google-research/simclr's TF1 checkpoints,
run the independent reference (a ``tf.nn`` forward of the checkpoint's variables by their
official names, written from the official ``resnet.py`` and ``model_util.py``: any depth and
width, selective kernels, the ``ema_model/`` copy, the supervised head), and record each
layer's output of our model for the import's proof.

``torch_impl.official`` is the same three functions for the format torch reads (MoCo's
``.pth.tar``). The name mapping between them is framework-free: ``shared.run.official``.
Activations are returned in the canonical layout (NHWC), as NumPy.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from shared.parity.weights import WeightsError, networks
from tf_impl.localise import named_layers

__all__ = ["FORMATS", "layer_outputs", "read_checkpoint", "reference_outputs"]

FORMATS = ("simclr-tf1",)  # the formats this framework reads; torch_impl.official reads MoCo's
BN_EPS = 1e-5  # resnet.py BATCH_NORM_EPSILON


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise WeightsError(f"format: TensorFlow reads {FORMATS}, not {fmt!r} (torch_impl does)")


def read_checkpoint(path, fmt: str) -> dict:
    """Every variable of a TF1 checkpoint (``tf.train.load_checkpoint``): ``{name: array}``.

    Raises:
        WeightsError: no readable checkpoint at ``path`` (a prefix such as ``model.ckpt-1``).
    """
    _check_format(fmt)
    try:
        reader = tf.train.load_checkpoint(str(path))
        names = reader.get_variable_to_shape_map()
        return {n: np.asarray(reader.get_tensor(n)) for n in names}
    except (tf.errors.OpError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(
            f"checkpoint: {str(path)!r} is not a readable TF checkpoint ({first})"
        ) from e


class _Names:
    """``tf.layers``' auto-names in one scope: ``conv2d``, ``conv2d_1``, ... by creation order."""

    def __init__(self):
        self.counts: dict[str, int] = {}

    def next(self, base: str) -> str:
        i = self.counts.get(base, 0)
        self.counts[base] = i + 1
        return f"base_model/{base}" + (f"_{i}" if i else "")


class _Vars:
    """The checkpoint's variables of one copy: ``v[name]`` reads ``ema_model/<name>`` for
    ``weights="ema"`` where it exists, ``<name>`` otherwise; as a constant of ``dtype``."""

    def __init__(self, checkpoint: dict, weights: str, dtype):
        self.ck, self.dtype = checkpoint, dtype
        self.prefix = "ema_model/" if weights == "ema" else ""

    def get(self, name: str):
        a = self.ck.get(self.prefix + name)
        return self.ck.get(name) if a is None else a

    def __getitem__(self, name: str):
        return tf.constant(self.get(name), self.dtype)


def _conv(x, v: _Vars, names: _Names, stride: int, out: dict):
    """resnet.py ``conv2d_fixed_padding``: stride > 1 pads (k - 1) // 2 before, the rest after,
    then VALID; stride 1 is SAME."""
    scope = names.next("conv2d")
    k = v[f"{scope}/kernel"]
    if stride > 1:
        total = k.shape[0] - 1  # resnet.py fixed_padding
        side = [total // 2, total - total // 2]
        x = tf.pad(x, [[0, 0], side, side, [0, 0]])
    y = tf.nn.conv2d(x, k, stride, "VALID" if stride > 1 else "SAME")
    out[scope] = y.numpy()
    return y


def _bn(x, v: _Vars, scope: str, out: dict, center: bool = True, relu: bool = False):
    """tf.layers.batch_normalization at inference, eps 1e-5; ``center=False``: no beta."""
    beta = v[f"{scope}/beta"] if center else None
    y = tf.nn.batch_normalization(
        x, v[f"{scope}/moving_mean"], v[f"{scope}/moving_variance"], beta, v[f"{scope}/gamma"],
        BN_EPS,
    )  # fmt: skip
    out[scope] = y.numpy()
    return tf.nn.relu(y) if relu else y


def _conv_bn(x, v, names: _Names, stride: int, out: dict, relu: bool = True):
    y = _conv(x, v, names, stride, out)
    return _bn(y, v, names.next("batch_normalization"), out, relu=relu)


def _sk_conv(x, v, names: _Names, stride: int, out: dict):
    """resnet.py ``sk_conv2d``: a doubled 3x3 conv split into two streams, mixed per channel by
    a softmax over the pair of a 1x1-conv bottleneck of their summed global average."""
    streams = tf.stack(tf.split(_conv_bn(x, v, names, stride, out), 2, axis=3))
    g = tf.reduce_mean(tf.reduce_sum(streams, axis=0), [1, 2], keepdims=True)
    g = _conv_bn(g, v, names, 1, out)
    mixing = tf.stack(tf.split(_conv(g, v, names, 1, out), 2, axis=3))
    return tf.reduce_sum(streams * tf.nn.softmax(mixing, axis=0), axis=0)


def _bottleneck(x, v, names: _Names, stride: int, projection: bool, sk: bool, out: dict):
    """resnet.py ``bottleneck_block``: the projection shortcut (conv + BN; with selective
    kernels ResNet-D's average pool first, then a stride-1 conv) is created first."""
    shortcut = x
    if projection and sk:
        pooled = tf.pad(x, [[0, 0], [0, 1], [0, 1], [0, 0]]) if stride > 1 else x
        pooled = tf.nn.avg_pool2d(pooled, 2, stride, "SAME" if stride == 1 else "VALID")
        shortcut = _conv_bn(pooled, v, names, 1, out, relu=False)
    elif projection:
        shortcut = _conv_bn(x, v, names, stride, out, relu=False)
    y = _conv_bn(x, v, names, 1, out)
    y = _sk_conv(y, v, names, stride, out) if sk else _conv_bn(y, v, names, stride, out)
    y = _conv_bn(y, v, names, 1, out, relu=False)
    return tf.nn.relu(y + shortcut)


BLOCK_GROUPS = {16: (3, 4, 6, 3), 33: (3, 4, 23, 3), 50: (3, 8, 36, 3)}  # resnet.py: 50/101/152


def _resnet(x, v: _Vars, out: dict, blocks: tuple | None = None):
    """resnet.py ``resnet_v1`` (bottleneck blocks) at inference: (B, H, W, 3) -> h (B, F).
    Selective kernels and the depth are read off the checkpoint: with them, the stem's second
    conv is a 3x3 one; the depth (``blocks`` per group, unless given) is the number of blocks
    the conv kernels make."""
    names = _Names()
    sk = np.shape(v.get("base_model/conv2d_1/kernel"))[:2] == (3, 3)
    convs = sum(v.get(f"base_model/conv2d_{i}/kernel") is not None for i in range(1, 400)) + 1
    blocks = blocks or BLOCK_GROUPS[(convs - 7) // 5 if sk else (convs - 5) // 3]
    cifar = not sk and np.shape(v.get("base_model/conv2d/kernel"))[:2] == (3, 3)
    x = _conv_bn(x, v, names, 1 if cifar else 2, out)
    if sk:  # ResNet-D's stem
        x = _conv_bn(_conv_bn(x, v, names, 1, out), v, names, 1, out)
    if not cifar:  # resnet.py: tf.layers.max_pooling2d(pool_size=3, strides=2, padding="SAME")
        x = tf.nn.max_pool2d(x, 3, 2, "SAME")
    for group, n in enumerate(blocks):
        for b in range(n):
            stride = 2 if group and not b else 1
            x = _bottleneck(x, v, names, stride, b == 0, sk, out)
    return tf.reduce_mean(x, [1, 2])


def reference_outputs(
    checkpoint: dict, fmt: str, images: np.ndarray, dtype: str, weights: str = "raw",
    ft_proj_selector: int = 0, blocks: tuple | None = None,
) -> dict:  # fmt: skip
    """Each layer's output of the official SimCLR ResNet (any depth, width, selective kernels)
    and heads at inference, from the checkpoint's variables by their official names.

    Args:
        checkpoint: from :func:`read_checkpoint` (``{variable name: array}``).
        images: (B, H, W, 3) RGB in [0, 1].
        dtype: "float32" or "float64".
        weights: "raw", or "ema": ``ema_model/<name>`` where the checkpoint has it.
        ft_proj_selector: model_util.py's: the supervised head reads ``hiddens_list[it]``.
        blocks: blocks per group (the tests' reduced networks); by default read off the
            number of conv kernels (ResNet-50, -101 or -152).

    Returns:
        ``{official scope: output}`` (``base_model/conv2d_3``, ``head_contrastive/nl_0``: the
        BN output of that head layer, before its ReLU), ``"h"`` (B, F), ``"z"`` (with a
        projection head) and ``"logits_sup"`` (with a supervised head).
    """
    _check_format(fmt)
    out: dict = {}
    v = _Vars(checkpoint, weights, getattr(tf, dtype))
    h = _resnet(tf.constant(images, getattr(tf, dtype)), v, out, blocks)
    out["h"] = h.numpy()
    z, hiddens = h, [h]
    for j in range(400):  # model_util.py projection_head / linear_layer(use_bn=True)
        p = f"head_contrastive/nl_{j}"
        if v.get(f"{p}/dense/kernel") is None:
            break
        last = v.get(f"head_contrastive/nl_{j + 1}/dense/kernel") is None
        z = _bn(tf.matmul(z, v[f"{p}/dense/kernel"]), v, f"{p}/batch_normalization", {},
                center=not last)  # fmt: skip
        out[p] = z.numpy()
        z = z if last else tf.nn.relu(z)
        hiddens.append(z)
    if len(hiddens) > 1:
        out["z"] = z.numpy()
    sup = "head_supervised/linear_layer/dense"
    if v.get(f"{sup}/kernel") is not None:
        logits = tf.matmul(hiddens[ft_proj_selector], v[f"{sup}/kernel"]) + v[f"{sup}/bias"]
        out["logits_sup"] = logits.numpy()
    return out


def layer_outputs(model, images: np.ndarray) -> dict:
    """Each conv, BN and dense layer's output of our ``model`` (inference) under its canonical
    layer name (``<part>/encoder/conv<i>``, ...; the localiser's walk,
    ``tf_impl.localise.named_layers``), plus ``<net>/h`` and ``<net>/z``.

    Args:
        model: a SimCLR or MoCo of ``tf_impl`` (its dtype is the one computed in).
        images: (B, H, W, 3).
    """
    out: dict[str, np.ndarray] = {}
    patched = []
    for name, (_, layer, _, _) in named_layers(model).items():
        patched.append(layer)
        layer.call = _recording(layer.call, name, out)
    try:
        for name, net in networks(model).items():
            x = tf.constant(images, net.encoder.compute_dtype)
            h, z = net(x, training=False)
            out[f"{name}/h"], out[f"{name}/z"] = h.numpy(), z.numpy()
    finally:
        for layer in patched:
            del layer.call  # the class's own call again
    return out


def _recording(call, name: str, out: dict):
    def wrapped(*args, **kw):
        y = call(*args, **kw)
        out[name] = np.array(y)
        return y

    return wrapped
