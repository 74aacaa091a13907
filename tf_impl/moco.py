"""MoCo v2 (He et al. 2020; Chen et al. 2020) in TensorFlow: the model, the queue, the step.

Algorithm 1 of the paper, one step (``MoCo.train_step``), in this order::

    momentum_update(f_q, f_k, m)          # theta_k <- m theta_k + (1 - m) theta_q   (eq. 2)
    q = normalize(f_q(x_q))               # (N, D) queries
    k = stop_gradient(normalize(f_k(x_k)))  # (N, D) keys (shuffled for BN)
    loss = info_nce(q, k, queue, tau)     # negatives read *before* this step's enqueue
    grads of f_q only                     # compute_gradients (a GradientTape)
    apply the gradients                   # apply_gradients: the update, then
    dequeue_and_enqueue(queue, ptr, k)    # FIFO ring buffer of the last K keys

``tf_impl.train`` wraps ``train_step`` in one ``tf.function``, traced once: the queue, its
pointer, the EMA and the optimiser's update all happen inside the graph.
``torch_impl.moco`` is the same file in PyTorch.

Key encoder BatchNorm: ``momentum_update`` moves the trainable weights only (as the official
code); the key encoder's moving statistics are its own, updated by its forward passes.
"""

from __future__ import annotations

import tensorflow as tf

from shared.oracle.queue import init_queue
from shared.run.config import model_defaults
from tf_impl.distributed import (
    gather_chunks,
    mean_gradients,
    shuffle_across_ranks,
    unshuffle_across_ranks,
    world_size,
)
from tf_impl.losses import info_nce
from tf_impl.models import EncoderWithHead, dtype_policy, normalize

__all__ = ["MoCo", "dequeue_and_enqueue", "momentum_update"]

TRAINED = model_defaults("moco")  # the defaults: the configuration that trains


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
    min(B, K) rows: O(B D), independent of K (under a ``tf.distribute`` strategy, whose
    mirrored variables have no scatter, the queue is rewritten: O(K D)).

    Raises:
        ValueError: ``keys`` is not (B, D) with the queue's D.

    Example:
        >>> queue = tf.Variable(tf.zeros((3, 1)))
        >>> ptr = tf.Variable(2, dtype=tf.int64)
        >>> dequeue_and_enqueue(queue, ptr, tf.constant([[1.0], [2.0]]))
        >>> queue.numpy().ravel().tolist(), int(ptr)
        ([2.0, 0.0, 1.0], 1)
    """
    k_size, dim = queue.shape
    if keys.shape.rank != 2 or (keys.shape[1] is not None and keys.shape[1] != dim):
        raise ValueError(f"keys: expected shape (B, {dim}), got {tuple(keys.shape)}")
    b = tf.shape(keys, out_type=tf.int64)[0]
    start = tf.maximum(b - k_size, 0)
    rows = tf.math.floormod(ptr + tf.range(start, b, dtype=tf.int64), k_size)  # (min(B, K),)
    new = tf.cast(keys[start:], queue.dtype)
    if tf.distribute.has_strategy():  # a MirroredVariable has no scatter: assign the whole queue
        queue.assign(tf.tensor_scatter_nd_update(queue, rows[:, None], new))
    else:
        queue.scatter_nd_update(rows[:, None], new)
    ptr.assign(tf.math.floormod(ptr + b, k_size))


class MoCo(tf.Module):
    """Query and key encoders (each f + g), the queue (K, D) and its pointer.

    Args: as ``torch_impl.moco.MoCo``, with the same defaults (the trained configuration's,
    ``shared.run.config.model_defaults("moco")``); ``dtype`` may also be
    ``"mixed_bfloat16"``.

    Example:
        >>> m = MoCo(encoder="small_cnn", queue_size=8, proj_dim=4, hidden_dim=8)
        >>> tuple(m.queue.shape), int(m.queue_ptr)
        ((8, 4), 0)
    """

    method = "moco"

    def __init__(
        self,
        encoder: str = TRAINED["encoder"],
        queue_size: int = TRAINED["queue_size"],
        proj_dim: int = TRAINED["proj_dim"],
        hidden_dim: int = TRAINED["hidden_dim"],
        head_layers: int = TRAINED["head_layers"],
        temperature: float = TRAINED["temperature"],
        bn_splits: int = TRAINED["bn_splits"],
        shuffle_keys: bool = TRAINED["shuffle_keys"],
        symmetric: bool = TRAINED["symmetric"],
        seed: int = TRAINED["seed"],
        dtype: str = "float32",
    ):
        super().__init__(name="moco")
        self.encoder_name = encoder
        self.temperature = float(temperature)
        self.shuffle_keys, self.symmetric = bool(shuffle_keys), bool(symmetric)
        with dtype_policy(dtype):
            self.encoder_q = EncoderWithHead(encoder, hidden_dim, proj_dim, head_layers, bn_splits)
            self.encoder_k = EncoderWithHead(encoder, hidden_dim, proj_dim, head_layers, bn_splits)
        # An exact copy at init. (keras.models.clone_model re-initialises the weights.)
        self.encoder_k.set_weights(self.encoder_q.get_weights())
        queue_dtype = tf.float64 if dtype == "float64" else tf.float32
        self.queue = tf.Variable(
            tf.cast(init_queue(queue_size, proj_dim, seed), queue_dtype),
            trainable=False,
            name="queue",
        )  # (K, D)
        self.queue_ptr = tf.Variable(0, dtype=tf.int64, trainable=False, name="queue_ptr")

    @property
    def backbone(self):
        """The query encoder f_q, whose features h are evaluated."""
        return self.encoder_q.encoder

    def __call__(self, *views, training: bool = True):
        """Normalised queries (B, D) of each view batch from f_q, one pass per view."""
        return tuple(normalize(self.encoder_q(x, training=training)[1]) for x in views)

    def keys(self, x, seed):
        """Normalised keys (B, D) of ``x`` from f_k, no gradient, optional batch shuffling:
        within this replica (across its BN splits) or across the replicas."""
        if self.shuffle_keys and world_size() > 1:
            xs, perm = shuffle_across_ranks(x, seed)
            k = unshuffle_across_ranks(self.encoder_k(xs, training=True)[1], perm)
        elif self.shuffle_keys:
            perm = tf.argsort(tf.random.stateless_uniform(tf.shape(x)[:1], seed))
            _, k = self.encoder_k(tf.gather(x, perm), training=True)
            k = tf.gather(k, tf.math.invert_permutation(perm))  # un-shuffle
        else:
            _, k = self.encoder_k(x, training=True)
        return tf.stop_gradient(normalize(k))  # (B, D)

    def contrastive_loss(self, x1, x2, seed):
        """InfoNCE of the queries against their keys and the queue; returns ``(loss, keys)``.
        Symmetric: one pass per view, as ``torch_impl.moco.MoCo.contrastive_loss``."""
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

    def compute_gradients(self, x1, x2, seed):
        """The loss and its gradients, under a ``GradientTape``.

        Returns ``(loss, grads, keys)``: the loss, the gradient of each of f_q's trainable
        weights in ``encoder_q.trainable_weights`` order (inside ``strategy.run``: the mean over
        the replicas), and the keys (B, D), or (2B, D) when symmetric, for the enqueue.
        """
        variables = self.encoder_q.trainable_weights  # f_q only
        with tf.GradientTape() as tape:
            loss, keys = self.contrastive_loss(x1, x2, seed)  # reads the queue before the enqueue
        return loss, mean_gradients(tape.gradient(loss, variables)), keys

    def apply_gradients(self, optimizer, grads, keys) -> None:
        """The optimiser's update of f_q with ``grads``, then the enqueue of ``keys``; inside
        ``strategy.run`` every replica enqueues the keys of all of them, so every copy of the
        queue stays the same."""
        optimizer.apply_gradients(zip(grads, self.encoder_q.trainable_weights))
        keys = gather_chunks(keys, 2 if self.symmetric else 1)  # (W B, D), one-process order
        dequeue_and_enqueue(self.queue, self.queue_ptr, keys)

    def train_step(self, x1, x2, optimizer, key_momentum, seed):
        """Algorithm 1, one step: EMA, loss and gradients, apply and enqueue. Returns the loss.

        ``seed``: a (2,) int32 tensor for the stateless key shuffle (torch uses its global RNG).
        """
        momentum_update(self.encoder_q, self.encoder_k, key_momentum)  # eq. (2)
        loss, grads, keys = self.compute_gradients(x1, x2, seed)
        self.apply_gradients(optimizer, grads, keys)
        return loss
