"""The official checkpoints, TensorFlow's side: read google-research/simclr's TF1 checkpoints,
run the independent reference (a ``tf.nn`` forward of the checkpoint's variables, written from
the official ``resnet.py`` and ``model_util.py``), and record each layer's output of our model
for the import's proof.

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


def _conv(x, v: dict, names: _Names, stride: int, out: dict):
    """resnet.py ``conv2d_fixed_padding``: stride > 1 pads (k - 1) // 2 before, the rest after,
    then VALID; stride 1 is SAME."""
    scope = names.next("conv2d")
    k = tf.constant(v[f"{scope}/kernel"], x.dtype)
    if stride > 1:
        total = k.shape[0] - 1  # resnet.py fixed_padding
        side = [total // 2, total - total // 2]
        x = tf.pad(x, [[0, 0], side, side, [0, 0]])
    y = tf.nn.conv2d(x, k, stride, "VALID" if stride > 1 else "SAME")
    out[scope] = y.numpy()
    return y


def _bn(x, v: dict, scope: str, out: dict, center: bool = True):
    """tf.layers.batch_normalization at inference, eps 1e-5; ``center=False``: no beta."""
    get = lambda r: tf.constant(v[f"{scope}/{r}"], x.dtype)  # noqa: E731
    beta = get("beta") if center else None
    y = tf.nn.batch_normalization(
        x, get("moving_mean"), get("moving_variance"), beta, get("gamma"), BN_EPS
    )
    out[scope] = y.numpy()
    return y


def _bottleneck(x, v, names: _Names, filters_stride, projection: bool, out: dict):
    """resnet.py ``bottleneck_block``: the projection shortcut (conv + BN) is created first."""
    stride = filters_stride
    shortcut = x
    if projection:
        shortcut = _conv(x, v, names, stride, out)
        shortcut = _bn(shortcut, v, names.next("batch_normalization"), out)
    y = tf.nn.relu(_bn(_conv(x, v, names, 1, out), v, names.next("batch_normalization"), out))
    y = tf.nn.relu(_bn(_conv(y, v, names, stride, out), v, names.next("batch_normalization"), out))
    y = _bn(_conv(y, v, names, 1, out), v, names.next("batch_normalization"), out)
    return tf.nn.relu(y + shortcut)


def reference_outputs(checkpoint: dict, fmt: str, images: np.ndarray, dtype: str) -> dict:
    """Each layer's output of the official SimCLR ResNet-50 1x and projection head at inference.

    Args:
        checkpoint: from :func:`read_checkpoint` (``{variable name: array}``).
        images: (B, H, W, 3) RGB in [0, 1].
        dtype: "float32" or "float64".

    Returns:
        ``{official scope: output}`` (``base_model/conv2d_3``, ``head_contrastive/nl_0``: the
        BN output of that head layer, before its ReLU), ``"h"`` (B, 2048) and ``"z"``.
    """
    _check_format(fmt)
    v, out, names = checkpoint, {}, _Names()
    x = tf.constant(images, getattr(tf, dtype))
    cifar = tuple(np.shape(v["base_model/conv2d/kernel"])[:2]) == (3, 3)
    x = _conv(x, v, names, 1 if cifar else 2, out)
    x = tf.nn.relu(_bn(x, v, names.next("batch_normalization"), out))
    if not cifar:  # resnet.py: tf.layers.max_pooling2d(pool_size=3, strides=2, padding="SAME")
        x = tf.nn.max_pool2d(x, 3, 2, "SAME")
    for stage, blocks in enumerate((3, 4, 6, 3)):
        for b in range(blocks):
            stride = (1 if stage == 0 else 2) if b == 0 else 1
            x = _bottleneck(x, v, names, stride, b == 0, out)
    h = tf.reduce_mean(x, [1, 2])
    out["h"] = h.numpy()
    layers = sum(n.startswith("head_contrastive/nl_") and n.endswith("/dense/kernel") for n in v)
    z = h
    for j in range(layers):  # model_util.py projection_head / linear_layer(use_bn=True)
        p = f"head_contrastive/nl_{j}"
        z = tf.matmul(z, tf.constant(v[f"{p}/dense/kernel"], z.dtype))
        last = j == layers - 1
        z = _bn(z, v, f"{p}/batch_normalization", {}, center=not last)
        out[p] = z.numpy()
        z = z if last else tf.nn.relu(z)
    out["z"] = z.numpy()
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
