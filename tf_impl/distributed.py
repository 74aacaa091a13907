"""Data parallelism in TensorFlow: the strategy, and the collectives contrastive learning needs.

``tf.distribute`` runs one replica per device inside one program (``MirroredStrategy``) or per
worker (``MultiWorkerMirroredStrategy``, configured by ``TF_CONFIG``). The step stays one
``tf.function``: ``strategy.run`` calls the model's ``train_step`` once per replica, and the
functions below are the replica-context collectives it uses. What crosses the replicas at each
step is what ``torch_impl.distributed`` moves between processes:

* SimCLR: every replica's projections, gathered with their gradients (:func:`gather_with_grad`);
* MoCo: every replica's keys before the enqueue (:func:`gather_chunks`), and with Shuffle-BN
  the key images (:func:`shuffle_across_ranks`);
* both: the gradients (all-reduced, mean: :func:`mean_gradients`) and the batch moments behind
  BatchNorm's moving statistics (``tf_impl.models.SplitBatchNorm``), so the replicas' copies
  of every variable stay identical.

The gradient of ``ReplicaContext.all_gather`` and ``all_reduce`` is the all-reduced (summed)
incoming gradient, the rule of ``torch_impl.distributed.gather_with_grad``; the mean of the
replicas' gradients is then the gradient of the one-process loss on the global batch.

Outside a replica context (or with one replica) every function is the identity.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from shared.run.errors import ConfigError

__all__ = [
    "all_reduce_with_grad",
    "concat_all_gather",
    "gather_chunks",
    "gather_with_grad",
    "is_distributed",
    "local_rows",
    "make_strategy",
    "mean_gradients",
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
        except RuntimeError:  # already initialised: fine if it already has the devices
            if len(tf.config.list_logical_devices("CPU")) != cpu_devices:
                raise ConfigError(
                    f"cpu_devices: {cpu_devices} logical CPUs must be set before TensorFlow "
                    "initialises; start a new process"
                ) from None
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
            raise ConfigError(f"TF_CONFIG: expected a JSON cluster description ({e})") from None
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
