"""Encoders f and the projection head g, in TensorFlow/Keras.

    x --encoder f--> h --head g--> z        (SimCLR Fig. 2; MoCo v2's f_q and f_k)

The same layers under the same names as ``torch_impl.models``:

* :class:`SmallCNN` layer for layer (3x3 conv without bias, BN, 2x2 max-pool, ReLU, GAP) and
  :class:`ResNet`, torchvision's ResNet-18 and ResNet-50 block for block: the ImageNet stem,
  the CIFAR stem (3x3 stride-1 conv, no max-pool), or ``resnet50_samepool``'s "SAME" max-pool.
* :class:`ProjectionHead`: ``head_layers - 1`` Dense-BN-ReLU blocks (or, with ``bn=False``,
  Dense-ReLU: MoCo v2's head), then Dense.
* :class:`EncoderWithHead`: f then g, ``call(x) -> (h, z)``.

BatchNorm is ``keras.layers.BatchNormalization``; ``bn_splits > 1`` builds
``tf_impl.split_bn.SplitBatchNorm`` instead, the one-process stand-in for several devices.

Plain Keras layers only: ``Conv2D``, ``BatchNormalization`` (per split), ``Dense``. The
speed-ups (a custom-gradient conv, TF's fused BatchNorm kernel) live in
``tf_impl.fast_kernels``, which swaps them into a built model under ``--fast-kernels``.

Conventions that differ from torch (named, and kept): Keras BN momentum 0.9 is torch's 0.1;
eps 1e-5 on both sides (Keras's default is 1e-3, so it is set); the moving variance is the
*biased* batch variance here, torch stores the unbiased one. Models are built under a Keras
dtype policy (:func:`dtype_policy`): float32, float64 (parity work) or mixed_bfloat16.
"""

from __future__ import annotations

import contextlib

import tensorflow as tf

from tf_impl.split_bn import SplitBatchNorm

keras = tf.keras

DTYPES = ("float32", "float64", "mixed_bfloat16")

__all__ = [
    "ENCODERS",
    "EncoderWithHead",
    "ProjectionHead",
    "SmallCNN",
    "build_encoder",
    "dtype_policy",
    "normalize",
]


def _bn(bn_splits: int, views: int = 1, name=None):
    """Keras's ``BatchNormalization`` with torch's momentum and eps; with ``bn_splits`` > 1 a
    ``tf_impl.split_bn.SplitBatchNorm`` of that many sub-batches."""
    if bn_splits == 1:
        return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)
    return SplitBatchNorm(bn_splits, views, momentum=0.9, epsilon=1e-5, name=name)


class SmallCNN(keras.Model):
    """(B, 32, 32, 3) -> (B, 8w); layer for layer ``torch_impl.models.SmallCNN``, including its
    conv-BN-pool-ReLU order (equal to conv-BN-ReLU-pool, bit for bit; see the torch docstring)."""

    def __init__(self, width: int = 32, bn_splits: int = 1, **kw):
        super().__init__(**kw)
        chans = [width, 2 * width, 4 * width, 8 * width]
        self.body = []  # one flat list: nested lists are not tracked reliably by tf.train.Checkpoint
        for i, c in enumerate(chans):
            self.body += [
                keras.layers.Conv2D(c, 3, padding="same", use_bias=False),
                _bn(bn_splits),
                *([keras.layers.MaxPool2D(2)] if i < 3 else []),  # pool, then ReLU (exact)
                keras.layers.ReLU(),
            ]
        self.feature_dim = chans[-1]
        self.input_size = 32

    def call(self, x, training=False):
        for layer in self.body:
            x = (
                layer(x, training=training)
                if isinstance(layer, keras.layers.BatchNormalization)
                else layer(x)
            )
        return tf.reduce_mean(x, axis=[1, 2])  # (B, 8w) global average pool


def _pad(x, pixels: int):
    """torch's ``padding=pixels``: zeros on every side of x (B, H, W, C)."""
    if pixels == 0:
        return x
    return tf.pad(x, [[0, 0], [pixels, pixels], [pixels, pixels], [0, 0]])


def _conv(filters: int, size: int, stride: int = 1, pad: int = 0):
    """A bias-free conv; with ``pad`` its input is padded explicitly (see ``pad_input``), so it
    is "valid", else "same" (equal to torch's ``padding=size // 2`` at stride 1 only)."""
    padding = "valid" if pad or size == 1 else "same"
    return keras.layers.Conv2D(filters, size, stride, padding=padding, use_bias=False)


class _Block(keras.layers.Layer):
    """What torchvision's two residual blocks share: the projection shortcut (``proj``, ``bp``,
    built last, as torchvision registers ``downsample``) and the explicit padding of the
    stride-2 3x3 conv ``padded``.

    Padding matches torch: a stride-2 3x3 conv pads 1 pixel on every side (Keras's "same" would
    pad 0 before and 1 after, which shifts every window by a pixel), so the input of ``padded``
    is padded explicitly (``pad_input``) and the conv is "valid".
    """

    def _add_shortcut(self, stride: int, in_filters: int, out_filters: int, bn_splits: int):
        self.stride = stride
        self.proj = self.bp = None
        if stride != 1 or in_filters != out_filters:
            self.proj = _conv(out_filters, 1, stride)  # 1x1: no padding
            self.bp = _bn(bn_splits)

    def build(self, input_shape):
        """Nothing to build here: each sub-layer builds on its first call (this spares Keras
        a symbolic trace of the whole block before the first real one)."""
        self.built = True

    def pad_input(self, x):
        """``padded``'s input: x, padded by 1 pixel on every side at stride 2 (torch's padding=1)."""
        return x if self.stride == 1 else _pad(x, 1)

    def shortcut(self, x, training=False):
        return x if self.proj is None else self.bp(self.proj(x), training=training)


class _BasicBlock(_Block):
    """torchvision's BasicBlock, layer for layer and in the same order (c1, b1, c2, b2, proj, bp);
    ``padded`` is c1."""

    expansion = 1

    def __init__(self, filters: int, stride: int, bn_splits: int, in_filters: int, **kw):
        super().__init__(**{"name": "basic_block", **kw})  # Keras: "__basic_block", no scope
        self.c1 = _conv(filters, 3, stride, pad=int(stride != 1))
        self.b1 = _bn(bn_splits)
        self.c2 = _conv(filters, 3)
        self.b2 = _bn(bn_splits)
        self._add_shortcut(stride, in_filters, filters, bn_splits)
        self.padded = self.c1

    def call(self, x, training=False):
        y = tf.nn.relu(self.b1(self.c1(self.pad_input(x)), training=training))
        y = self.b2(self.c2(y), training=training)
        return tf.nn.relu(y + self.shortcut(x, training))


class _Bottleneck(_Block):
    """torchvision's Bottleneck (ResNet v1.5: the stride is on the 3x3 conv), layer for layer
    and in the same order: 1x1 (c1, b1), 3x3 (c2, b2), 1x1 to 4 x filters (c3, b3), proj, bp;
    ``padded`` is c2."""

    expansion = 4

    def __init__(self, filters: int, stride: int, bn_splits: int, in_filters: int, **kw):
        super().__init__(**{"name": "bottleneck", **kw})  # Keras: "__bottleneck", no scope
        self.c1 = _conv(filters, 1)
        self.b1 = _bn(bn_splits)
        self.c2 = _conv(filters, 3, stride, pad=int(stride != 1))
        self.b2 = _bn(bn_splits)
        self.c3 = _conv(4 * filters, 1)
        self.b3 = _bn(bn_splits)
        self._add_shortcut(stride, in_filters, 4 * filters, bn_splits)
        self.padded = self.c2

    def call(self, x, training=False):
        y = tf.nn.relu(self.b1(self.c1(x), training=training))
        y = tf.nn.relu(self.b2(self.c2(self.pad_input(y)), training=training))
        y = self.b3(self.c3(y), training=training)
        return tf.nn.relu(y + self.shortcut(x, training))


class ResNet(keras.Model):
    """torchvision's ResNet without its classifier: (B, S, S, 3) -> (B, 512 or 2048).

    Args:
        depth: 18 (BasicBlocks 2-2-2-2) or 50 (Bottlenecks 3-4-6-3).
        cifar_stem: SimCLR appendix B.9's stem for 32 px: a 3x3 stride-1 conv, no max-pool.
            Otherwise the ImageNet stem: a 7x7 stride-2 conv padded 3 on every side, BN, ReLU
            and a 3x3 stride-2 max-pool padded 1 (zeros: after a ReLU they equal torch's -inf).
        same_pool: the ImageNet stem's max-pool with TensorFlow's "SAME" padding instead (0
            before and 1 after on an even size), as google-research/simclr's ResNet has it.
        bn_splits: BatchNorm sub-batches (``tf_impl.split_bn``; 1: Keras's BatchNormalization).
    """

    def __init__(self, depth=18, cifar_stem=True, same_pool=False, bn_splits: int = 1, **kw):
        super().__init__(**kw)
        block, depths = {18: (_BasicBlock, (2, 2, 2, 2)), 50: (_Bottleneck, (3, 4, 6, 3))}[depth]
        self.cifar_stem, self.same_pool = cifar_stem, same_pool
        self.stem = _conv(64, 3) if cifar_stem else _conv(64, 7, 2, pad=3)
        self.stem_bn = _bn(bn_splits)
        self.pool = (
            None if cifar_stem else keras.layers.MaxPool2D(3, 2, "same" if same_pool else "valid")
        )
        self.stages, f_in = [], 64  # one flat list of blocks (tracked by tf.train.Checkpoint)
        for f, s, n in zip((64, 128, 256, 512), (1, 2, 2, 2), depths):
            for i in range(n):
                self.stages.append(block(f, s if i == 0 else 1, bn_splits, in_filters=f_in))
                f_in = f * block.expansion
        self.padded = None if cifar_stem else self.stem
        self.feature_dim = f_in
        self.input_size = 32 if cifar_stem else 224

    def pad_input(self, x):
        """The stem conv's input: x, padded 3 pixels on every side for the 7x7 stride-2 conv."""
        return x if self.cifar_stem else _pad(x, 3)

    def call(self, x, training=False):
        x = tf.nn.relu(self.stem_bn(self.stem(self.pad_input(x)), training=training))
        if self.pool is not None:
            x = self.pool(x if self.same_pool else _pad(x, 1))
        for block in self.stages:
            x = block(x, training=training)
        return tf.reduce_mean(x, axis=[1, 2])  # (B, F) global average pool


def _resnet(depth: int, cifar_stem: bool, same_pool: bool = False):
    def build(bn_splits: int = 1):
        return ResNet(depth, cifar_stem, same_pool, bn_splits)

    return build


ENCODERS = {
    "small_cnn": SmallCNN,
    "resnet18_cifar": _resnet(18, True),
    "resnet18": _resnet(18, False),
    "resnet50_cifar": _resnet(50, True),
    "resnet50": _resnet(50, False),
    "resnet50_samepool": _resnet(50, False, same_pool=True),
}


def build_encoder(name: str, bn_splits: int = 1, views: int = 1) -> keras.Model:
    """An encoder by name, built on a 32x32 input so its weights exist; ``bn_splits`` and
    ``views`` as ``torch_impl.models.build_encoder``."""
    if name not in ENCODERS:
        raise ValueError(f"encoder: expected one of {sorted(ENCODERS)}, got {name!r}")
    enc = ENCODERS[name](bn_splits=bn_splits)
    _set_views(enc, views)
    enc(tf.zeros([max(2, bn_splits), 32, 32, 3]))  # any size builds the weights (GAP at the end)
    return enc


def _set_views(model, views: int) -> None:
    for layer in _walk(model):
        if isinstance(layer, SplitBatchNorm):
            layer.views = int(views)


class ProjectionHead(keras.Model):
    """``num_layers - 1`` Dense-BN-ReLU blocks then Dense(out_dim); ``bn=False``: Dense(with
    bias)-ReLU blocks, MoCo v2's MLP head. As ``torch_impl.models.ProjectionHead``."""

    def __init__(
        self,
        hidden_dim: int = 512,
        out_dim: int = 128,
        num_layers: int = 2,
        bn_splits: int = 1,
        views: int = 1,
        bn: bool = True,
        **kw,
    ):
        super().__init__(**kw)
        if num_layers < 1:
            raise ValueError(f"num_layers: expected >= 1, got {num_layers}")
        hidden = range(num_layers - 1)
        self.dense = [keras.layers.Dense(hidden_dim, use_bias=not bn) for _ in hidden]
        self.bns = [_bn(bn_splits, views) for _ in hidden] if bn else []
        self.out = keras.layers.Dense(out_dim)

    def call(self, h, training=False):
        for i, dense in enumerate(self.dense):
            h = dense(h)
            if self.bns:
                h = self.bns[i](h, training=training)
            h = tf.nn.relu(h)
        return self.out(h)


class EncoderWithHead(keras.Model):
    """f followed by g: ``call(x) -> (h, z)``; ``bn_splits`` and ``views`` as
    ``torch_impl.models.EncoderWithHead``."""

    def __init__(
        self,
        encoder: str = "small_cnn",
        hidden_dim: int = 512,
        proj_dim: int = 128,
        head_layers: int = 2,
        bn_splits: int = 1,
        views: int = 1,
        head_bn: bool = True,
        **kw,
    ):
        super().__init__(**kw)
        self.encoder = build_encoder(encoder, bn_splits, views)
        self.head = ProjectionHead(hidden_dim, proj_dim, head_layers, bn_splits, views, head_bn)
        self.head(tf.zeros([max(2, bn_splits * views), self.encoder.feature_dim]))

    def call(self, x, training=False):
        """``(h, z)`` of x (B, S, S, 3): h (B, F), z (B, proj_dim)."""
        h = self.encoder(x, training=training)
        return h, self.head(h, training=training)


def _walk(layer):
    return layer._flatten_layers(include_self=True, recursive=True)  # Keras 3's layer walk


def normalize(z):
    """Row-wise L2 normalisation in float32 (float64 stays float64), with torch's clamp."""
    z = z if z.dtype == tf.float64 else tf.cast(z, tf.float32)
    return tf.math.l2_normalize(z, axis=1, epsilon=1e-24)


@contextlib.contextmanager
def dtype_policy(dtype: str):
    """Build Keras layers under ``dtype``: float32, float64 or mixed_bfloat16 (bf16 compute,
    float32 weights). torch's counterpart is ``model.to(dtype)`` plus ``torch.autocast``."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype: expected one of {DTYPES}, got {dtype!r}")
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(dtype)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _simclr_resnet(depth: int, width: int, sk: bool):
    """A builder of google-research/simclr's ResNet (``tf_impl.simclr_resnet``)."""

    def build(bn_splits: int = 1):
        from tf_impl.simclr_resnet import SimCLRResNet

        return SimCLRResNet(depth, width, sk, bn_splits)

    return build


# google-research/simclr's other ResNets, simclr_r<depth>_<width>x_sk<0|1> (depths 50-152, widths
# 1x-4x, selective kernels): registered last, so the definitions above keep their lines
from shared.run.encoders import SIMCLR_RESNETS  # noqa: E402

ENCODERS.update({name: _simclr_resnet(*spec) for name, spec in SIMCLR_RESNETS.items()})
