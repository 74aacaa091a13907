"""google-research/simclr's ResNets in Keras: ``torch_impl.simclr_resnet`` layer for layer, its
layers created in ``resnet.py``'s creation order (see that module's docstring for the network).

Padding: a stride-1 conv is "same"; a stride-2 conv with a kernel above 1 pads ``k // 2`` on
every side explicitly and is "valid" (``resnet.py``'s fixed padding; Keras's "same" would pad 0
before and 1 after). The stem's max-pool and ResNet-D's stride-1 shortcut pool are TensorFlow's
"SAME" pools; the stride-2 shortcut pool pads 0 before and 1 after with zeros, then "valid".

The layer classes' names start with a letter: Keras names a layer after its class, and inside a
``tf.function`` a name scope may not start with "_".
"""

from __future__ import annotations

import tensorflow as tf

from tf_impl.split_bn import SplitBatchNorm

keras = tf.keras

__all__ = ["BLOCKS", "Bottleneck", "FixedPadConv", "SelectiveKernel", "SimCLRResNet"]

BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}  # resnet.py model_params
SK_RATIO, SK_MIN_DIM = 0.0625, 32  # sk_conv2d's sk_ratio (released sk1) and min_dim


def _bn(bn_splits: int):
    if bn_splits == 1:
        return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)
    return SplitBatchNorm(bn_splits, 1, momentum=0.9, epsilon=1e-5)


class FixedPadConv(keras.layers.Layer):
    """A bias-free conv with ``resnet.py``'s padding (see the module docstring)."""

    def __init__(self, filters: int, k: int, stride: int = 1, **kw):
        super().__init__(**kw)
        self.pad = k // 2 if stride > 1 else 0
        padding = "valid" if self.pad or k == 1 else "same"
        self.conv = keras.layers.Conv2D(filters, k, stride, padding=padding, use_bias=False)

    def build(self, input_shape):
        self.built = True  # the conv builds on its first call

    def call(self, x):
        if self.pad:
            p = self.pad
            x = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]])
        return self.conv(x)


class SelectiveKernel(keras.layers.Layer):
    """``resnet.py``'s ``sk_conv2d`` (``torch_impl.simclr_resnet.SelectiveKernel``)."""

    def __init__(self, filters: int, stride: int, bn_splits: int, **kw):
        super().__init__(**kw)
        self.conv = FixedPadConv(2 * filters, 3, stride)
        self.bn = _bn(bn_splits)
        self.squeeze = FixedPadConv(max(int(filters * SK_RATIO), SK_MIN_DIM), 1)
        self.squeeze_bn = _bn(bn_splits)
        self.mix = FixedPadConv(2 * filters, 1)

    def build(self, input_shape):
        self.built = True

    def call(self, x, training=False):
        a, b = tf.split(tf.nn.relu(self.bn(self.conv(x), training=training)), 2, axis=-1)
        s = tf.reduce_mean(a + b, axis=[1, 2], keepdims=True)  # (B, 1, 1, filters)
        m = self.mix(tf.nn.relu(self.squeeze_bn(self.squeeze(s), training=training)))
        w = tf.nn.softmax(tf.stack(tf.split(m, 2, axis=-1)), axis=0)  # (2, B, 1, 1, filters)
        return a * w[0] + b * w[1]


class Bottleneck(keras.layers.Layer):
    """One bottleneck block, its layers created in ``resnet.py``'s order."""

    def __init__(self, filters: int, stride: int, projection: bool, sk: bool, bn_splits, **kw):
        super().__init__(**kw)
        self.stride, self.sk, self.projection = stride, sk, projection
        if projection:
            self.proj = FixedPadConv(4 * filters, 1, 1 if sk else stride)
            self.proj_bn = _bn(bn_splits)
        self.conv1 = FixedPadConv(filters, 1)
        self.bn1 = _bn(bn_splits)
        if sk:
            self.middle = SelectiveKernel(filters, stride, bn_splits)
        else:
            self.conv2 = FixedPadConv(filters, 3, stride)
            self.bn2 = _bn(bn_splits)
        self.conv3 = FixedPadConv(4 * filters, 1)
        self.bn3 = _bn(bn_splits)

    def build(self, input_shape):
        self.built = True

    def _pool(self, x):
        """ResNet-D's 2x2 average pool of the shortcut (``torch_impl``'s ``ShortcutPool``)."""
        if self.stride == 1:
            return tf.nn.avg_pool2d(x, 2, 1, "SAME")
        return tf.nn.avg_pool2d(
            tf.pad(x, [[0, 0], [0, 1], [0, 1], [0, 0]]), 2, self.stride, "VALID"
        )

    def call(self, x, training=False):
        shortcut = x
        if self.projection:
            shortcut = self.proj(self._pool(x) if self.sk else x)
            shortcut = self.proj_bn(shortcut, training=training)
        y = tf.nn.relu(self.bn1(self.conv1(x), training=training))
        if self.sk:
            y = self.middle(y, training=training)
        else:
            y = tf.nn.relu(self.bn2(self.conv2(y), training=training))
        return tf.nn.relu(self.bn3(self.conv3(y), training=training) + shortcut)


class SimCLRResNet(keras.Model):
    """(B, S, S, 3) -> (B, 2048 w); arguments as ``torch_impl.simclr_resnet.SimCLRResNet``."""

    def __init__(self, depth=50, width=1, sk=False, bn_splits=1, base=64, blocks=None, **kw):
        super().__init__(**kw)
        w = base * width
        if sk:  # ResNet-D stem
            specs = [(w // 2, 2), (w // 2, 1), (w, 1)]
            self.stem = [m for c, s in specs for m in (FixedPadConv(c, 3, s), _bn(bn_splits))]
        else:
            self.stem = [FixedPadConv(w, 7, 2), _bn(bn_splits)]
        self.pool = keras.layers.MaxPool2D(3, 2, "same")
        self.blocks, cin = [], w  # flat lists: tracked by tf.train.Checkpoint
        for g, n in enumerate(blocks or BLOCKS[depth]):
            for b in range(n):
                stride = 2 if g and not b else 1
                self.blocks.append(Bottleneck(w * 2**g, stride, b == 0, sk, bn_splits))
                cin = 4 * w * 2**g
        self.feature_dim = cin
        self.input_size = 224

    def call(self, x, training=False):
        for conv, bn in zip(self.stem[::2], self.stem[1::2]):
            x = tf.nn.relu(bn(conv(x), training=training))
        x = self.pool(x)
        for block in self.blocks:
            x = block(x, training=training)
        return tf.reduce_mean(x, axis=[1, 2])  # (B, 2048 w)
