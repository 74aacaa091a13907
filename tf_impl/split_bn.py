"""Several devices' BatchNorm in one process: the stand-in for MoCo's Shuffle-BN on one device.

``torch_impl.split_bn`` is the same file in PyTorch; its docstring says why MoCo and the
distributed tests need this. Here the layer is :class:`SplitBatchNorm`, a Keras
``BatchNormalization`` that with one split (the default) *is* Keras's layer, call for call.
"""

from __future__ import annotations

import tensorflow as tf

keras = tf.keras

__all__ = ["SplitBatchNorm", "merge_bn_splits"]


class SplitBatchNorm(keras.layers.BatchNormalization):
    """BatchNorm whose training statistics come from ``num_splits`` sub-batches of B / S rows:
    split j is rows [j B/S, (j+1) B/S), or, with ``views = V``, the j-th 1/S of each of the V
    equal chunks of the batch (SimCLR's x1 ++ x2). See ``torch_impl.split_bn.SplitBatchNorm``.

    The moving statistics move towards the mean over splits of each split's mean and biased
    variance (Keras's convention; torch keeps the unbiased one).
    """

    def __init__(self, num_splits: int = 1, views: int = 1, **kw):
        super().__init__(**kw)
        self.num_splits, self.views = int(num_splits), int(views)

    def call(self, x, training=None, mask=None):
        if not training or self.num_splits == 1:
            return super().call(x, training=training, mask=mask)  # Keras's own layer
        in_dtype = x.dtype
        x = x if x.dtype == tf.float64 else tf.cast(x, tf.float32)  # stats in fp32 under bf16
        y, batch_mean, batch_var = self._normalize(x)
        self._update_moving(batch_mean, batch_var)
        return tf.cast(y, in_dtype)

    def _normalize(self, x):
        """Per-split moments: ``(y, batch mean, biased batch variance)``, the latter two (C,)
        averaged over the splits."""
        shape = tf.shape(x)
        if self.views == 1:  # (S, B/S, ...): moments over all but the split and channel axes
            lead, axes = [self.num_splits, -1], list(range(1, len(x.shape)))
        else:  # (V, S, n, ...): split j holds the j-th 1/S of each view
            lead, axes = [self.views, self.num_splits, -1], [0, *range(2, len(x.shape) + 1)]
        xs = tf.reshape(x, tf.concat([lead, shape[1:]], 0))
        mean, var = tf.nn.moments(xs, axes=axes, keepdims=True)
        y = tf.reshape((xs - mean) * tf.math.rsqrt(var + self.epsilon), shape)
        y = y * tf.cast(self.gamma, x.dtype) + tf.cast(self.beta, x.dtype)
        return (
            y,
            tf.reduce_mean(tf.reshape(mean, [self.num_splits, -1]), 0),
            tf.reduce_mean(tf.reshape(var, [self.num_splits, -1]), 0),
        )

    def _update_moving(self, batch_mean, batch_var) -> None:
        """Move the moving statistics towards the batch's (C,) moments."""
        m = self.momentum
        self.moving_mean.assign(m * self.moving_mean + (1 - m) * batch_mean)
        self.moving_variance.assign(m * self.moving_variance + (1 - m) * batch_var)

    def get_config(self):
        return {**super().get_config(), "num_splits": self.num_splits, "views": self.views}


def merge_bn_splits(model) -> None:
    """Set every SplitBatchNorm under ``model`` to one split (ordinary BN), in place."""
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, SplitBatchNorm):
            layer.num_splits = 1
