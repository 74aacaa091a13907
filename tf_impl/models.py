"""MoCo v2 in TensorFlow/Keras: encoders, the MLP head, the key queue and the momentum encoder.

MoCo (He et al. 2020), Algorithm 1, per step:

    momentum_update(f_q, f_k, m)            # theta_k <- m theta_k + (1 - m) theta_q   (eq. 2)
    q = f_q(x_q)                            # (N, D) queries
    k = stop_gradient(f_k(x_k))             # (N, D) keys: no gradient to the key encoder
    loss = info_nce(q, k, queue, tau)       # negatives read *before* this step's enqueue
    dequeue_and_enqueue(queue, ptr, k)      # FIFO ring buffer of the last K keys
    SGD step on f_q only

All of it runs in one ``tf.function`` (``tf_impl.train.make_train_step``).

* :class:`SmallCNN` matches ``torch_impl.models.SmallCNN`` layer for layer (3x3 conv without
  bias, BN with momentum 0.9 / eps 1e-5 as torch's 0.1 / 1e-5, ReLU, 2x2 max-pool, GAP).
* :func:`resnet18_cifar`: ResNet-18 with the CIFAR stem (3x3 stride-1 conv, no max-pool).
* BatchNorm in the key encoder: ``momentum_update`` moves only trainable weights; the key
  encoder's moving statistics are its own, updated by its forward passes in training mode,
  as in the official code. ``bn_splits > 1`` turns every BN into :class:`SplitBatchNorm`, the
  single-device stand-in for Shuffle-BN used by the official MoCo CIFAR demo: statistics are
  computed over ``bn_splits`` sub-batches, and with ``shuffle_keys`` the key batch is permuted
  before the key encoder (and un-permuted after), so a query and its key are normalised with
  statistics of different sub-batches; this blocks the intra-batch BN "cheating" that
  Shuffle-BN exists to prevent. (Shuffling alone, with one BN over the whole batch, would be a
  no-op: batch statistics are permutation-invariant.)
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from shared.queue import check_momentum, init_queue

keras = tf.keras

__all__ = [
    "ENCODERS",
    "MoCo",
    "ProjectionHead",
    "SmallCNN",
    "SplitBatchNorm",
    "build_encoder",
    "dequeue_and_enqueue",
    "momentum_update",
]


class SplitBatchNorm(keras.layers.BatchNormalization):
    """BatchNorm whose training-mode statistics are computed per sub-batch (``num_splits``)."""

    def __init__(self, num_splits: int = 1, **kw):
        super().__init__(**kw)
        self.num_splits = int(num_splits)

    def call(self, x, training=None):
        if not training or self.num_splits == 1:
            return super().call(x, training=training)
        in_dtype = x.dtype
        x = tf.cast(x, tf.float32)  # statistics in float32, also under mixed precision
        shape = tf.shape(x)
        xs = tf.reshape(x, tf.concat([[self.num_splits, -1], shape[1:]], 0))  # (S, B/S, ...)
        axes = list(range(1, len(x.shape)))  # all but the split and channel axes of xs
        mean, var = tf.nn.moments(xs, axes=axes, keepdims=True)  # (S, 1, ..., C)
        y = tf.reshape((xs - mean) * tf.math.rsqrt(var + self.epsilon), shape)
        y = y * self.gamma + self.beta
        m = self.momentum
        self.moving_mean.assign(
            m * self.moving_mean + (1 - m) * tf.reshape(tf.reduce_mean(mean, 0), [-1])
        )
        self.moving_variance.assign(
            m * self.moving_variance + (1 - m) * tf.reshape(tf.reduce_mean(var, 0), [-1])
        )
        return tf.cast(y, in_dtype)

    def get_config(self):
        return {**super().get_config(), "num_splits": self.num_splits}


def _bn(bn_splits: int, name=None):
    return SplitBatchNorm(bn_splits, momentum=0.9, epsilon=1e-5, name=name)


class SmallCNN(keras.Model):
    """(B, 32, 32, 3) -> (B, 8w); layer for layer ``torch_impl.models.SmallCNN``."""

    def __init__(self, width: int = 32, bn_splits: int = 1, **kw):
        super().__init__(**kw)
        chans = [width, 2 * width, 4 * width, 8 * width]
        self.body = []  # one flat list: nested lists are not tracked reliably by tf.train.Checkpoint
        for i, c in enumerate(chans):
            self.body += [
                keras.layers.Conv2D(c, 3, padding="same", use_bias=False),
                _bn(bn_splits),
                keras.layers.ReLU(),
            ]
            if i < 3:
                self.body.append(keras.layers.MaxPool2D(2))
        self.feature_dim = chans[-1]
        self.input_size = 32

    def call(self, x, training=False):
        for layer in self.body:
            x = layer(x, training=training) if isinstance(layer, SplitBatchNorm) else layer(x)
        return tf.reduce_mean(x, axis=[1, 2])  # (B, 8w) global average pool


class _BasicBlock(keras.layers.Layer):
    def __init__(self, filters: int, stride: int, bn_splits: int, **kw):
        super().__init__(**kw)
        self.c1 = keras.layers.Conv2D(filters, 3, stride, padding="same", use_bias=False)
        self.b1 = _bn(bn_splits)
        self.c2 = keras.layers.Conv2D(filters, 3, 1, padding="same", use_bias=False)
        self.b2 = _bn(bn_splits)
        self.stride, self.filters = stride, filters
        self.proj = None
        self.bp = None

    def build(self, input_shape):
        if self.stride != 1 or input_shape[-1] != self.filters:
            self.proj = keras.layers.Conv2D(self.filters, 1, self.stride, use_bias=False)
            self.bp = _bn(1)

    def call(self, x, training=False):
        y = tf.nn.relu(self.b1(self.c1(x), training=training))
        y = self.b2(self.c2(y), training=training)
        sc = x if self.proj is None else self.bp(self.proj(x), training=training)
        return tf.nn.relu(y + sc)


class ResNet18Cifar(keras.Model):
    """ResNet-18 with the CIFAR stem: (B, 32, 32, 3) -> (B, 512)."""

    def __init__(self, bn_splits: int = 1, **kw):
        super().__init__(**kw)
        self.stem = keras.layers.Conv2D(64, 3, 1, padding="same", use_bias=False)
        self.stem_bn = _bn(bn_splits)
        self.stages = [
            _BasicBlock(f, s if i == 0 else 1, bn_splits)
            for f, s in ((64, 1), (128, 2), (256, 2), (512, 2))
            for i in range(2)
        ]
        self.feature_dim = 512
        self.input_size = 32

    def call(self, x, training=False):
        x = tf.nn.relu(self.stem_bn(self.stem(x), training=training))
        for block in self.stages:
            x = block(x, training=training)
        return tf.reduce_mean(x, axis=[1, 2])


ENCODERS = {"small_cnn": SmallCNN, "resnet18_cifar": ResNet18Cifar}


def build_encoder(name: str, bn_splits: int = 1) -> keras.Model:
    """An encoder by name, built on a 32x32 input so its weights exist."""
    if name not in ENCODERS:
        raise ValueError(f"encoder: expected one of {sorted(ENCODERS)}, got {name!r}")
    enc = ENCODERS[name](bn_splits=bn_splits)
    enc(tf.zeros([max(2, bn_splits), enc.input_size, enc.input_size, 3]))
    return enc


class ProjectionHead(keras.Model):
    """``num_layers - 1`` Dense-BN-ReLU blocks then Dense(out_dim): MoCo v2's MLP head."""

    def __init__(self, hidden_dim: int = 512, out_dim: int = 128, num_layers: int = 2, **kw):
        super().__init__(**kw)
        if num_layers < 1:
            raise ValueError(f"num_layers: expected >= 1, got {num_layers}")
        self.dense = [keras.layers.Dense(hidden_dim, use_bias=False) for _ in range(num_layers - 1)]
        self.bns = [_bn(1) for _ in range(num_layers - 1)]
        self.out = keras.layers.Dense(out_dim)

    def call(self, h, training=False):
        for dense, bn in zip(self.dense, self.bns):
            h = tf.nn.relu(bn(dense(h), training=training))
        return self.out(h)


class EncoderWithHead(keras.Model):
    """f followed by g: ``call(x) -> (h, z)``."""

    def __init__(
        self, encoder: str, hidden_dim: int, proj_dim: int, head_layers: int, bn_splits: int, **kw
    ):
        super().__init__(**kw)
        self.encoder = build_encoder(encoder, bn_splits)
        self.head = ProjectionHead(hidden_dim, proj_dim, head_layers)
        self.head(tf.zeros([2, self.encoder.feature_dim]))

    def call(self, x, training=False):
        h = self.encoder(x, training=training)
        return h, self.head(h, training=training)


def momentum_update(query_encoder, key_encoder, momentum) -> None:
    """MoCo eq. (2): ``theta_k <- m theta_k + (1 - m) theta_q`` over the trainable weights.

    ``momentum`` may be a Python float (checked to lie in [0, 1]) or a scalar tensor (a
    schedule inside ``tf.function``; checked when the schedule is built). BN moving statistics
    are left to the key encoder's own forward passes (module docstring).
    """
    if isinstance(momentum, (int, float)):
        momentum = check_momentum(momentum)
    for wk, wq in zip(key_encoder.trainable_weights, query_encoder.trainable_weights):
        m = tf.cast(momentum, wk.dtype)
        wk.assign(m * wk + (1.0 - m) * wq)


def dequeue_and_enqueue(queue: tf.Variable, ptr: tf.Variable, keys) -> None:
    """Write ``keys`` (B, D) into the (K, D) ring buffer at ``ptr``; advance ``ptr``. In place.

    Exact FIFO for any B and K, like ``shared.queue.dequeue_and_enqueue``: wrap-around,
    K % B != 0, a partial last batch, and B > K (only the newest K keys are kept). A scatter of
    min(B, K) rows: O(B D), independent of K.
    """
    k_size, dim = queue.shape
    if keys.shape.rank != 2 or (keys.shape[1] is not None and keys.shape[1] != dim):
        raise ValueError(f"keys: expected shape (B, {dim}), got {tuple(keys.shape)}")
    b = tf.shape(keys, out_type=tf.int64)[0]
    start = tf.maximum(b - k_size, 0)
    rows = tf.math.floormod(ptr + tf.range(start, b, dtype=tf.int64), k_size)  # (min(B, K),)
    queue.scatter_nd_update(rows[:, None], tf.cast(keys[start:], queue.dtype))
    ptr.assign(tf.math.floormod(ptr + b, k_size))


class MoCo(tf.Module):
    """Query and key encoders (each f + g), the queue (K, D) and its pointer.

    Args:
        encoder: ``small_cnn`` or ``resnet18_cifar``.
        queue_size: K >= 1.
        proj_dim: D, the head output and the queue's row size.
        momentum: m in [0, 1] (0.999 in MoCo; 0.99 suits short runs).
        temperature: tau > 0.
        bn_splits, shuffle_keys: the Shuffle-BN substitute (module docstring).
        symmetric: use ``info_nce(q1, k2) + info_nce(q2, k1)`` and enqueue both key sets.
    """

    def __init__(
        self,
        encoder: str = "small_cnn",
        queue_size: int = 4096,
        proj_dim: int = 128,
        hidden_dim: int = 512,
        head_layers: int = 2,
        momentum: float = 0.99,
        temperature: float = 0.2,
        bn_splits: int = 1,
        shuffle_keys: bool = False,
        symmetric: bool = False,
        seed: int = 0,
    ):
        super().__init__(name="moco")
        from shared.losses import check_temperature

        self.temperature = check_temperature(temperature)
        self.momentum = check_momentum(momentum)
        if int(queue_size) < 1:
            raise ValueError(f"queue_size: expected K >= 1, got {queue_size!r}")
        if int(bn_splits) < 1:
            raise ValueError(f"bn_splits: expected >= 1, got {bn_splits!r}")
        self.symmetric, self.shuffle_keys, self.bn_splits = symmetric, shuffle_keys, int(bn_splits)
        self.encoder_q = EncoderWithHead(encoder, hidden_dim, proj_dim, head_layers, bn_splits)
        self.encoder_k = EncoderWithHead(encoder, hidden_dim, proj_dim, head_layers, bn_splits)
        # Key encoder = exact copy of the query encoder. (keras' clone_model re-initialises
        # the weights: a known bug in a public Keras MoCo. set_weights copies all of them,
        # BN moving statistics included.)
        self.encoder_k.set_weights(self.encoder_q.get_weights())
        self.queue = tf.Variable(
            init_queue(queue_size, proj_dim, seed), trainable=False, name="queue"
        )  # (K, D)
        self.ptr = tf.Variable(0, dtype=tf.int64, trainable=False, name="queue_ptr")

    @property
    def proj_dim(self) -> int:
        return int(self.queue.shape[1])

    def check_head(self) -> None:
        """Raise if the queue's D does not match the head output (e.g. after a bad restore)."""
        d = self.encoder_q.head.out.units
        if self.queue.shape[1] != d:
            raise ValueError(
                f"queue: expected shape (K, {d}) to match the head output dim, "
                f"got {tuple(self.queue.shape)}"
            )

    def keys(self, x, seed):
        """Keys of ``x`` from the key encoder (no gradient), with optional batch shuffling."""
        if self.shuffle_keys:
            perm = tf.argsort(tf.random.stateless_uniform(tf.shape(x)[:1], seed))
            _, k = self.encoder_k(tf.gather(x, perm), training=True)
            k = tf.gather(k, tf.math.invert_permutation(perm))  # un-shuffle
        else:
            _, k = self.encoder_k(x, training=True)
        return tf.stop_gradient(tf.math.l2_normalize(tf.cast(k, tf.float32), axis=1))  # (N, D)


def weights_as_numpy(model) -> list[np.ndarray]:
    return [w.numpy() for w in model.trainable_weights]
