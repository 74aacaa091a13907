"""Data parallelism in TensorFlow: the strategy, and the collectives contrastive learning needs.

``tf.distribute`` runs one replica per device inside one program (``MirroredStrategy``) or per
worker (``MultiWorkerMirroredStrategy``, configured by ``TF_CONFIG``). The step stays one
``tf.function``: ``strategy.run`` calls the model's ``train_step`` once per replica, and the
functions below are the replica-context collectives it uses. What crosses the replicas at each
step is what ``torch_impl.distributed`` moves between processes:

* SimCLR: every replica's projections, gathered with their gradients (:func:`gather_with_grad`);
* MoCo: every replica's keys before the enqueue (:func:`gather_chunks`), and with Shuffle-BN
  the key images (:func:`shuffle_across_ranks`);
* both: the gradients and BatchNorm's moving statistics, averaged over the replicas
  (:class:`GradientMean`), so the replicas' copies of every variable stay identical.

The algorithm files (``tf_impl.simclr``, ``tf_impl.moco``) know nothing of this: a model built
inside a strategy's scope is :class:`DistributedSimCLR` or :class:`DistributedMoCo`
(``DISTRIBUTED``), subclasses that override the loss's negatives, the key shuffle and the
enqueue and hand the step a :class:`GradientMean` optimiser. Proven equal to one process on
the global batch by ``tests/test_distributed.py``. ``--sync-bn`` makes every BatchNorm a
:class:`SyncBatchNorm` (:func:`convert_sync_batchnorm`).

The gradient of ``ReplicaContext.all_gather`` and ``all_reduce`` is the all-reduced (summed)
incoming gradient, the rule of ``torch_impl.distributed.gather_with_grad``; the mean of the
replicas' gradients is then the gradient of the one-process loss on the global batch.

Outside a replica context (or with one replica) every function is the identity.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from shared.oracle.losses import check_temperature
from shared.parity.weights import networks
from shared.run.errors import ConfigError
from tf_impl.moco import MoCo, _queue_rows
from tf_impl.models import normalize
from tf_impl.simclr import SimCLR
from tf_impl.split_bn import SplitBatchNorm

__all__ = [
    "DISTRIBUTED",
    "DistributedMoCo",
    "DistributedSimCLR",
    "GradientMean",
    "SyncBatchNorm",
    "all_reduce_with_grad",
    "average_buffers",
    "concat_all_gather",
    "convert_sync_batchnorm",
    "gather_chunks",
    "gather_with_grad",
    "is_distributed",
    "local_rows",
    "make_strategy",
    "mean_gradients",
    "nt_xent_across_ranks",
    "rank",
    "shuffle_across_ranks",
    "unshuffle_across_ranks",
    "world_size",
]

STRATEGIES = ("none", "mirrored", "multi_worker")


def make_strategy(name: str, cpu_devices: int = 1):
    """The ``tf.distribute`` strategy ``name`` (``None`` for ``"none"``).

    ``cpu_devices`` > 1 splits the CPU into that many logical devices first (testing data
    parallelism on a machine without GPUs); it must run before TensorFlow touches a device.

    Raises:
        ConfigError: an unknown name, ``cpu_devices`` asked for after TF initialised, or
            ``multi_worker`` without a valid ``TF_CONFIG`` cluster description.
    """
    if name not in STRATEGIES:
        raise ConfigError(f"strategy: expected one of {', '.join(STRATEGIES)}, got {name!r}")
    if cpu_devices > 1:
        cpus = tf.config.list_physical_devices("CPU")
        try:
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration()] * cpu_devices
            )
        except RuntimeError as e:  # already initialised: fine if it already has the devices
            if len(tf.config.list_logical_devices("CPU")) != cpu_devices:
                raise ConfigError(
                    f"cpu_devices: {cpu_devices} logical CPUs must be set before TensorFlow "
                    "initialises; start a new process"
                ) from e
    if name == "none":
        return None
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ConfigError(
                "strategy multi_worker: TF_CONFIG is not set; give each worker "
                '{"cluster": {"worker": [...]}, "task": {"type": "worker", "index": i}}'
            )
        try:  # a clear error here, not deep inside TF
            json.loads(os.environ["TF_CONFIG"])
        except ValueError as e:
            raise ConfigError(f"TF_CONFIG: expected a JSON cluster description ({e})") from e
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    return tf.distribute.MirroredStrategy(devices)


def _context():
    ctx = tf.distribute.get_replica_context()
    return ctx if ctx is not None and ctx.num_replicas_in_sync > 1 else None


def is_distributed() -> bool:
    """True inside ``strategy.run`` with more than one replica."""
    return _context() is not None


def world_size() -> int:
    ctx = _context()
    return ctx.num_replicas_in_sync if ctx else 1


def rank():
    """This replica's index (a tensor inside ``strategy.run``; 0 outside)."""
    ctx = _context()
    return ctx.replica_id_in_sync_group if ctx else 0


def gather_with_grad(x):
    """(n, ...) on each of W replicas -> (W n, ...), replica order, differentiable."""
    ctx = _context()
    return ctx.all_gather(x, axis=0) if ctx else x


def concat_all_gather(x):
    """(n, ...) on each of W replicas -> (W n, ...) in replica order, no gradient."""
    return tf.stop_gradient(gather_with_grad(x))


def all_reduce_with_grad(x):
    """The sum of ``x`` over the replicas, differentiable (SyncBatchNorm's moments)."""
    ctx = _context()
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, x) if ctx else x


def mean_gradients(grads):
    """The replicas' mean of each gradient (what DDP's all-reduce does in torch)."""
    ctx = _context()
    return ctx.all_reduce(tf.distribute.ReduceOp.MEAN, grads) if ctx else grads


def local_rows(x):
    """This replica's contiguous share of a global batch (B, ...): rows [r B/W, (r+1) B/W).

    The step receives the whole global batch on every replica (one host: one copy; several
    workers: each builds the same batch from the same stateless seeds) and each replica takes
    its rows, so the split is the same as torch's and the one-process batch is its concatenation.
    """
    if not is_distributed():
        return x
    n = tf.shape(x)[0] // world_size()
    return x[rank() * n : (rank() + 1) * n]


def gather_chunks(x, view_chunks: int = 1):
    """Every replica's (C n, ...) rows in the one-process order: chunk by chunk, replicas in
    order (MoCo's enqueue order)."""
    if not is_distributed():
        return x
    return tf.concat([concat_all_gather(c) for c in tf.split(x, view_chunks)], 0)


def shuffle_across_ranks(x, seed):
    """Shuffle-BN across replicas: this replica's rows of one permutation of the global batch.

    Every replica draws the same permutation from the same stateless ``seed`` (no broadcast
    needed), over the global batch in replica order. Returns ``(rows, perm)``.
    """
    full = concat_all_gather(x)  # (W n, ...)
    perm = tf.argsort(tf.random.stateless_uniform(tf.shape(full)[:1], seed))
    n = tf.shape(x)[0]
    return tf.gather(full, perm[rank() * n : (rank() + 1) * n]), perm


def unshuffle_across_ranks(y, perm):
    """The inverse of :func:`shuffle_across_ranks`: this replica's rows in its original order."""
    n = tf.shape(y)[0]
    full = tf.gather(concat_all_gather(y), tf.math.invert_permutation(perm))
    return full[rank() * n : (rank() + 1) * n]


def nt_xent_across_ranks(z1, z2, temperature: float):
    """NT-Xent with every replica's rows as candidates; see
    ``torch_impl.distributed.nt_xent_across_ranks``. With one replica it is ``nt_xent``."""
    t = check_temperature(temperature)
    dtype = tf.float64 if tf.float64 in (z1.dtype, z2.dtype) else tf.float32
    n, w = tf.shape(z1)[0], world_size()
    u1, u2 = (tf.math.l2_normalize(tf.cast(z, dtype), 1, epsilon=1e-24) for z in (z1, z2))
    candidates = tf.concat([gather_with_grad(u1), gather_with_grad(u2)], 0)  # (2N, D)
    logits = tf.matmul(tf.concat([u1, u2], 0), candidates, transpose_b=True) / t  # (2n, 2N)
    own = tf.range(n) + rank() * n  # global index of row i in Z1
    self_idx = tf.one_hot(tf.concat([own, own + w * n], 0), 2 * w * n, True, False)
    logits = tf.where(self_idx, tf.constant(-float("inf"), dtype), logits)  # no self term
    positive = tf.concat([own + w * n, own], 0)  # (2n,) the other view
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(positive, logits))


def average_buffers(model) -> None:
    """Replace each BatchNorm moving statistic of ``model`` by its mean over the replicas:
    each replica moved its copy with its own rows' moments; their mean is what SplitBatchNorm
    with W splits keeps in one process (``torch_impl.distributed.average_buffers``)."""
    ctx = _context()
    if ctx is None:
        return
    for net in networks(model).values():
        for layer in net._flatten_layers(include_self=True, recursive=True):
            if isinstance(layer, tf.keras.layers.BatchNormalization):
                for v in (layer.moving_mean, layer.moving_variance):
                    v.assign(ctx.all_reduce(tf.distribute.ReduceOp.MEAN, v))


class GradientMean:
    """The optimiser as a replica's step sees it: ``apply_gradients`` applies the replicas'
    mean of every gradient (DDP's all-reduce in torch), then averages the BatchNorm moving
    statistics (:func:`average_buffers`)."""

    def __init__(self, optimizer, model):
        self.optimizer, self.model = optimizer, model

    def apply_gradients(self, grads_and_vars) -> None:
        grads, variables = zip(*grads_and_vars)
        self.optimizer.apply_gradients(zip(mean_gradients(list(grads)), variables))
        average_buffers(self.model)


class DistributedSimCLR(SimCLR):
    """SimCLR on W replicas: every replica's negatives (:func:`nt_xent_across_ranks`) and the
    replicas' mean gradient (:class:`GradientMean`); equal to ``SimCLR(bn_splits=W)``."""

    def loss(self, z1, z2):
        return nt_xent_across_ranks(z1, z2, self.temperature)

    def train_step(self, x1, x2, optimizer):
        return super().train_step(x1, x2, GradientMean(optimizer, self))


class DistributedMoCo(MoCo):
    """MoCo on W replicas: Shuffle-BN across the replicas, every replica enqueues every
    replica's keys (the queue rewritten: a MirroredVariable has no scatter), the replicas'
    mean gradient; equal to ``MoCo(bn_splits=W)`` on the global batch."""

    def keys(self, x, seed):
        if not self.shuffle_keys or world_size() == 1:
            return super().keys(x, seed)
        xs, perm = shuffle_across_ranks(x, seed)
        k = unshuffle_across_ranks(self.encoder_k(xs, training=True)[1], perm)
        return tf.stop_gradient(normalize(k))  # (n, D)

    def enqueue(self, keys) -> None:
        keys = gather_chunks(keys, 2 if self.symmetric else 1)  # (W B, D), one-process order
        rows, new = _queue_rows(self.queue, self.queue_ptr, keys)
        self.queue.assign(tf.tensor_scatter_nd_update(self.queue, rows[:, None], new))
        self.queue_ptr.assign(
            tf.math.floormod(self.queue_ptr + tf.shape(keys, tf.int64)[0], self.queue.shape[0])
        )

    def train_step(self, x1, x2, optimizer):
        return super().train_step(x1, x2, GradientMean(optimizer, self))


DISTRIBUTED = {"simclr": DistributedSimCLR, "moco": DistributedMoCo}


class SyncBatchNorm(SplitBatchNorm):
    """BatchNorm whose training statistics are those of the global batch, all-reduced with
    their gradients; with one replica, ordinary BatchNorm. ``torch_impl.distributed`` has the
    same layer."""

    def call(self, x, training=None, mask=None):
        if not training or world_size() == 1:
            return super().call(x, training=training, mask=mask)
        in_dtype = x.dtype
        x = x if x.dtype == tf.float64 else tf.cast(x, tf.float32)
        axes = list(range(len(x.shape) - 1))  # all but the channels
        count = tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), axes)), x.dtype) * world_size()
        sums = tf.stack([tf.reduce_sum(x, axes), tf.reduce_sum(x * x, axes)])  # (2, C)
        total = all_reduce_with_grad(sums) / count
        mean, var = total[0], total[1] - total[0] * total[0]
        y = (x - mean) * tf.math.rsqrt(var + self.epsilon)
        y = y * tf.cast(self.gamma, x.dtype) + tf.cast(self.beta, x.dtype)
        self._update_moving(tf.stop_gradient(mean), tf.stop_gradient(var))
        return tf.cast(y, in_dtype)


def convert_sync_batchnorm(model) -> None:
    """Make every BatchNorm of a SimCLR or MoCo a :class:`SyncBatchNorm`, in place (the same
    objects, weights and names: only their class changes, as ``tf_impl.fast_kernels`` does).

    Raises:
        ValueError: a BatchNorm of several splits (SyncBN normalises the whole global batch).
    """
    for net in networks(model).values():
        for layer in net._flatten_layers(include_self=True, recursive=True):
            if type(layer) in (tf.keras.layers.BatchNormalization, SplitBatchNorm):
                if getattr(layer, "num_splits", 1) != 1:
                    raise ValueError(
                        "sync_bn: expected bn_splits 1 (SyncBN normalises the whole global "
                        f"batch), got {layer.num_splits}"
                    )
                layer.num_splits, layer.views = 1, 1
                layer.__class__ = SyncBatchNorm
