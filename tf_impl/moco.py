"""MoCo v2 (He et al. 2020; Chen et al. 2020) in TensorFlow: the model, the queue, the step.

Algorithm 1 of the paper, one step (``MoCo.train_step``), in this order::

    momentum_update(f_q, f_k, m)          # theta_k <- m theta_k + (1 - m) theta_q   (eq. 2)
    q = normalize(f_q(x_q))               # (N, D) queries
    k = stop_gradient(normalize(f_k(x_k)))  # (N, D) keys (shuffled for BN)
    loss = info_nce(q, k, queue, tau)     # negatives read *before* this step's enqueue
    grads = tape.gradient(loss, f_q's weights)
    optimizer.apply_gradients(...)
    dequeue_and_enqueue(queue, ptr, k)    # FIFO ring buffer of the last K keys

``tf_impl.train`` runs ``train_step`` inside one ``tf.function``, traced once: the queue, its
pointer, the EMA and the optimiser's update all happen inside the graph.
``torch_impl.moco`` is the same file in PyTorch. On several replicas,
``tf_impl.distributed.DistributedMoCo`` shuffles the keys across the replicas and enqueues
every replica's keys.

Key encoder BatchNorm: ``momentum_update`` moves the trainable weights only (as the official
code); the key encoder's moving statistics are its own, updated by its forward passes.
"""

from __future__ import annotations

import tensorflow as tf

from shared.oracle.queue import init_queue
from tf_impl.losses import info_nce
from tf_impl.models import EncoderWithHead, dtype_policy, normalize

__all__ = ["MoCo", "dequeue_and_enqueue", "momentum_update"]


def momentum_update(query_encoder, key_encoder, key_momentum) -> None:
    """MoCo eq. (2): ``theta_k <- m theta_k + (1 - m) theta_q`` over the trainable weights.

    ``key_momentum`` is a Python float or a scalar tensor (a schedule inside ``tf.function``).

    Example:
        >>> q, k = tf.keras.layers.Dense(1, use_bias=False), tf.keras.layers.Dense(1, use_bias=False)
        >>> _ = q(tf.ones((1, 1))), k(tf.ones((1, 1)))
        >>> q.kernel.assign([[1.0]]); k.kernel.assign([[0.0]])  # doctest: +ELLIPSIS
        <...>
        >>> momentum_update(q, k, 0.9); round(float(k.kernel[0, 0]), 6)
        0.1
    """
    for wk, wq in zip(key_encoder.trainable_weights, query_encoder.trainable_weights, strict=True):
        # a Python float goes through tf.constant: tf.cast would round it to float32 first
        m = (
            tf.constant(key_momentum, wk.dtype)
            if isinstance(key_momentum, float)
            else tf.cast(key_momentum, wk.dtype)
        )
        wk.assign(m * wk + (1.0 - m) * wq)


def dequeue_and_enqueue(queue: tf.Variable, ptr: tf.Variable, keys) -> None:
    """Write ``keys`` (B, D) into the (K, D) ring buffer at ``ptr``; advance ``ptr``. In place.

    Exact FIFO for any B and K, like ``shared.oracle.queue.dequeue_and_enqueue``: wrap-around,
    K % B != 0, a partial last batch, and B > K (only the newest K keys are kept). A scatter of
    min(B, K) rows: O(B D), independent of K.

    Raises:
        ValueError: ``keys`` is not (B, D) with the queue's D.

    Example:
        >>> queue = tf.Variable(tf.zeros((3, 1)))
        >>> ptr = tf.Variable(2, dtype=tf.int64)
        >>> dequeue_and_enqueue(queue, ptr, tf.constant([[1.0], [2.0]]))
        >>> queue.numpy().ravel().tolist(), int(ptr)
        ([2.0, 0.0, 1.0], 1)
    """
    rows, new = _queue_rows(queue, ptr, keys)
    queue.scatter_nd_update(rows[:, None], new)
    ptr.assign(tf.math.floormod(ptr + tf.shape(keys, out_type=tf.int64)[0], queue.shape[0]))


def _queue_rows(queue: tf.Variable, ptr: tf.Variable, keys):
    """``(rows, new)``: the queue rows that ``keys`` (B, D) overwrite, (min(B, K),), and the
    keys written there (the newest min(B, K), in the queue's dtype).

    Raises:
        ValueError: ``keys`` is not (B, D) with the queue's D.
    """
    k_size, dim = queue.shape
    if keys.shape.rank != 2 or (keys.shape[1] is not None and keys.shape[1] != dim):
        raise ValueError(f"keys: expected shape (B, {dim}), got {tuple(keys.shape)}")
    b = tf.shape(keys, out_type=tf.int64)[0]
    start = tf.maximum(b - k_size, 0)
    rows = tf.math.floormod(ptr + tf.range(start, b, dtype=tf.int64), k_size)  # (min(B, K),)
    return rows, tf.cast(keys[start:], queue.dtype)


class MoCo(tf.Module):
    """Query and key encoders (each f + g), the queue (K, D) and its pointer.

    Args: as ``torch_impl.moco.MoCo``, with the same defaults (the configuration that trains);
    ``dtype`` ``"mixed_bfloat16"`` is Keras's policy of that name. ``key_momentum`` and
    ``shuffle_seed`` (the (2,) seed of this step's stateless key shuffle; torch draws from its
    global generator) are variables that the training loop sets each step, as it sets the
    learning rate, so the traced step reads them.

    Example:
        >>> m = MoCo(encoder="small_cnn", queue_size=8, proj_dim=4, hidden_dim=8)
        >>> tuple(m.queue.shape), int(m.queue_ptr)
        ((8, 4), 0)
    """

    method = "moco"

    def __init__(
        self,
        encoder: str = "small_cnn",
        queue_size: int = 512,
        proj_dim: int = 128,
        hidden_dim: int = 512,
        head_layers: int = 2,
        head_bn: bool = True,
        temperature: float = 0.1,
        key_momentum: float = 0.99,
        bn_splits: int = 2,
        shuffle_keys: bool = True,
        symmetric: bool = True,
        seed: int = 0,
        dtype: str = "float32",
    ):
        super().__init__(name="moco")
        self.encoder_name = encoder
        self.temperature = float(temperature)
        self.shuffle_keys, self.symmetric = bool(shuffle_keys), bool(symmetric)
        with dtype_policy(dtype):
            head = (hidden_dim, proj_dim, head_layers, bn_splits)
            self.encoder_q = EncoderWithHead(encoder, *head, head_bn=head_bn)
            self.encoder_k = EncoderWithHead(encoder, *head, head_bn=head_bn)
        # An exact copy at init. (keras.models.clone_model re-initialises the weights.)
        self.encoder_k.set_weights(self.encoder_q.get_weights())
        queue_dtype = tf.float64 if dtype == "float64" else tf.float32
        self.queue = tf.Variable(
            tf.cast(init_queue(queue_size, proj_dim, seed), queue_dtype),
            trainable=False,
            name="queue",
        )  # (K, D)
        self.queue_ptr = tf.Variable(0, dtype=tf.int64, trainable=False, name="queue_ptr")
        self.key_momentum = tf.Variable(float(key_momentum), dtype=tf.float64, trainable=False)
        self.shuffle_seed = tf.Variable([seed, 0], dtype=tf.int32, trainable=False)

    @property
    def backbone(self):
        """The query encoder f_q, whose features h are evaluated."""
        return self.encoder_q.encoder

    def __call__(self, *views, training: bool = True):
        """Normalised queries (B, D) of each view batch from f_q, one pass per view."""
        return tuple(normalize(self.encoder_q(x, training=training)[1]) for x in views)

    def keys(self, x, seed):
        """Normalised keys (B, D) of ``x`` from f_k, no gradient, the batch shuffled for BN if
        asked (a stateless permutation drawn from ``seed``, (2,) int32)."""
        if not self.shuffle_keys:
            return tf.stop_gradient(normalize(self.encoder_k(x, training=True)[1]))  # (B, D)
        perm = tf.argsort(tf.random.stateless_uniform(tf.shape(x)[:1], seed))
        _, k = self.encoder_k(tf.gather(x, perm), training=True)
        k = tf.gather(k, tf.math.invert_permutation(perm))  # un-shuffled
        return tf.stop_gradient(normalize(k))  # (B, D)

    def loss(self, x1, x2):
        """InfoNCE of the queries against their keys and the queue; returns ``(loss, keys)``.
        Symmetric: one pass per view, as ``torch_impl.moco.MoCo.loss``."""
        seed = tf.identity(self.shuffle_seed)
        if not self.symmetric:
            (q,) = self(x1)  # (N, D)
            k = self.keys(x2, seed)  # (N, D)
            return info_nce(q, k, self.queue, self.temperature), k
        q1, q2 = self(x1, x2)  # (N, D) each
        k2, k1 = self.keys(x2, seed), self.keys(x1, seed + [0, 1])  # the other view of q1, q2
        loss = 0.5 * (
            info_nce(q1, k2, self.queue, self.temperature)
            + info_nce(q2, k1, self.queue, self.temperature)
        )
        return loss, tf.concat([k2, k1], 0)  # (2N, D)

    def enqueue(self, keys) -> None:
        """Write this step's keys (B, D) into the queue (after the loss has read it)."""
        dequeue_and_enqueue(self.queue, self.queue_ptr, keys)

    def train_step(self, x1, x2, optimizer):
        """Algorithm 1, one step: EMA, loss, gradients, update, enqueue. Returns the loss."""
        momentum_update(self.encoder_q, self.encoder_k, self.key_momentum)  # eq. (2)
        weights = self.encoder_q.trainable_weights  # f_q only
        with tf.GradientTape() as tape:
            loss, keys = self.loss(x1, x2)  # reads the queue before the enqueue
        optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
        self.enqueue(keys)
        return loss
