"""The TensorFlow speed-ups behind ``--fast-kernels``: the same function as ``tf_impl.models``'s
plain Keras layers, computed by faster kernels.

* :class:`Conv3x3`: a 3x3, stride-1, "same", bias-free ``Conv2D`` whose input gradient is a
  forward conv with the flipped kernel (:func:`_conv_same_3x3`). TF's ``Conv2DBackpropInput``
  took 53 ms against torch's 22 for the 4x4x256 layer, TF's forward conv 24
  (``benchmarks/results/layers.md``).
* :class:`FusedSplitBatchNorm`: float32 NHWC maps normalised split by split with TF's fused
  kernel (``FusedBatchNormV3`` and its gradient), about 40 % less time than the composite ops
  on one CPU core.

One MoCo training step (the training defaults, batch 64, one thread, 20 steps of each,
alternating, on this project's shared 2-core CPU): 377 ms plain, 263 ms with both, 1.43x.
The numbers agree with the plain layers' to float32 rounding, not bit for bit:
``tests/test_tf_impl.py`` checks each kernel against the layer it replaces, and a model with
them against the plain model with the same weights.

:func:`apply` swaps them into a built model in place. Each layer keeps its identity, its
variables and their checkpoint paths (a ``Conv3x3`` is a ``Conv2D``, a ``FusedSplitBatchNorm`` a
``SplitBatchNorm``), so checkpoints and the canonical weight walk (``tf_impl.weights``) are the
same with and without them. ``torch_impl.fast_kernels`` is the PyTorch counterpart.
"""

from __future__ import annotations

import tensorflow as tf

from tf_impl.models import SmallCNN
from tf_impl.split_bn import SplitBatchNorm

keras = tf.keras

__all__ = ["Conv3x3", "FusedSplitBatchNorm", "apply"]


@tf.custom_gradient
def _conv_same_3x3(x, kernel):
    """``tf.nn.conv2d(x, kernel, 1, "SAME")`` for a 3x3 kernel, whose input gradient is a
    forward conv of dy with the kernel flipped in space and transposed in channels.

    That is the same number (correlation's adjoint is convolution with the flipped kernel;
    "SAME" pads 1 on every side, so the shapes match), computed by a faster kernel. The filter
    gradient is TF's own.
    """
    y = tf.nn.conv2d(x, kernel, 1, "SAME")

    def grad(dy):
        flipped = tf.transpose(tf.reverse(kernel, [0, 1]), [0, 1, 3, 2])  # (3, 3, out, in)
        dx = tf.nn.conv2d(dy, flipped, 1, "SAME")
        dk = tf.compat.v1.nn.conv2d_backprop_filter(x, tf.shape(kernel), dy, [1, 1, 1, 1], "SAME")
        return dx, dk

    return y, grad


class Conv3x3(keras.layers.Conv2D):
    """A 3x3, stride-1, "same", bias-free ``Conv2D`` with :func:`_conv_same_3x3`'s input
    gradient: (B, H, W, C_in) -> (B, H, W, filters)."""

    def __init__(self, filters: int, **kw):
        super().__init__(filters, 3, padding="same", use_bias=False, **kw)

    def convolution_op(self, inputs, kernel):
        return _conv_same_3x3(inputs, tf.cast(kernel, inputs.dtype))  # a tensor, not a Variable


class FusedSplitBatchNorm(SplitBatchNorm):
    """``SplitBatchNorm`` whose training pass over a float32 (or bfloat16) NHWC map runs TF's
    fused kernel on each split. float64, (B, C) inputs and splits across views take the plain
    path."""

    def call(self, x, training=None, mask=None):
        if not training or x.dtype == tf.float64 or len(x.shape) != 4 or self.views > 1:
            return super().call(x, training=training, mask=mask)
        y, batch_mean, batch_var = self._fused(tf.cast(x, tf.float32))
        self._update_moving(batch_mean, batch_var)
        return tf.cast(y, x.dtype)

    def _fused(self, x):
        """``(y, batch mean, biased batch variance)`` of a float32 (B, H, W, C) map, as
        ``SplitBatchNorm._normalize``: ``fused_batch_norm`` per split.

        The kernel returns the *unbiased* batch variance (Bessel-corrected, as torch stores); it
        is scaled by (n - 1) / n back to the biased variance that Keras's moving variance keeps.
        """
        gamma, beta = (tf.cast(v, tf.float32) for v in (self.gamma, self.beta))
        ys, means, variances = [], [], []
        for xi in tf.split(x, self.num_splits) if self.num_splits > 1 else [x]:
            y, mean, unbiased = tf.compat.v1.nn.fused_batch_norm(
                xi, gamma, beta, epsilon=self.epsilon, is_training=True
            )
            n = tf.cast(tf.reduce_prod(tf.shape(xi)[:3]), tf.float32)
            ys.append(y)
            means.append(mean)
            variances.append(unbiased * (n - 1) / n)
        y = tf.concat(ys, 0) if len(ys) > 1 else ys[0]
        return y, tf.add_n(means) / len(means), tf.add_n(variances) / len(variances)


def apply(model):
    """Swap the fast kernels into a built ``SimCLR``, ``MoCo`` or Keras model, in place.

    Every BatchNorm (Keras's, or a ``SplitBatchNorm``) becomes a :class:`FusedSplitBatchNorm`,
    and the 2nd to 4th convs of each ``SmallCNN`` become :class:`Conv3x3` (the first needs no input gradient). Only the
    layers' classes change: the same objects, weights and weight names. Returns ``model``.
    """
    from shared.parity.weights import METHOD_PARTS, model_parts

    method = getattr(type(model), "method", None) in METHOD_PARTS  # else a Keras model
    parts = [m for _, m in model_parts(model)] if method else [model]
    for layer in (la for part in parts for la in part._flatten_layers(recursive=True)):
        if type(layer) in (keras.layers.BatchNormalization, SplitBatchNorm):
            layer.num_splits = getattr(layer, "num_splits", 1)
            layer.views = getattr(layer, "views", 1)
            layer.__class__ = FusedSplitBatchNorm
        elif isinstance(layer, SmallCNN):
            convs = [la for la in layer.body if type(la) is keras.layers.Conv2D]
            for conv in convs[1:]:
                _check_conv3x3(conv)
                conv.__class__ = Conv3x3
    return model


def _check_conv3x3(conv) -> None:
    """Raise unless ``conv`` is what :class:`Conv3x3` computes (a bug, not bad input)."""
    shape = (conv.kernel_size, conv.strides, conv.dilation_rate, conv.padding, conv.use_bias)
    if shape != ((3, 3), (1, 1), (1, 1), "same", False) or conv.groups != 1:
        raise AssertionError(f"Conv3x3 computes a 3x3 stride-1 'same' conv, not {conv.name}")
