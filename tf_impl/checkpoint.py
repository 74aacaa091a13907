"""Checkpoints in TensorFlow: save, find, restore. ``torch_impl.checkpoint`` has the same functions.

A checkpoint (``ckpt/ckpt-<epoch>``, ``tf.train.Checkpoint`` through a ``CheckpointManager``
that keeps the newest ``keep``) holds every weight of the model (for MoCo: both encoders,
BN statistics included, the queue and its pointer), the optimiser's slots, step and learning
rate, and the epoch. The augmentation and key-shuffle RNGs are stateless functions of
(seed, epoch, step), so nothing else is needed to continue bit for bit.

``tf.train.Checkpoint``'s object graph does not reliably walk Keras 3 models (it can skip
nested sub-models silently), so the weights are listed explicitly: under each network's name in
``shared.parity.weights.METHOD_PARTS`` (``net``; ``encoder_q``, ``encoder_k``), keyed by their
position in the network's ``weights``, which the architecture fixes, beside MoCo's ``queue``
and ``queue_ptr``.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from shared.parity.weights import method_state, networks
from shared.run.errors import CheckpointError
from shared.run.runlog import checkpoint_write_error, remove_orphans

__all__ = [
    "CheckpointError",
    "latest_checkpoint",
    "list_checkpoints",
    "restore_checkpoint",
    "save_checkpoint",
]


# What restoring raises for a checkpoint that cannot be read or does not fit the model:
# tf.errors.OpError (NotFoundError: no such prefix or no index file; DataLossError or a plain
# OpError: a corrupt index, a checksum mismatch), IndexError (a truncated data file: the
# reader's short read), ValueError (a variable of another shape) and AssertionError
# (assert_existing_objects_matched: another method, or optimiser slots the checkpoint lacks).
_UNREADABLE = (tf.errors.OpError, IndexError, ValueError, AssertionError)


def _model_parts(model) -> dict:
    """The model's object graph: each network's weights by position under its registry name
    (``net``; ``encoder_q``, ``encoder_k``), and its method state (``queue``, ``queue_ptr``)."""
    parts = {
        name: {f"w{i:03d}": w for i, w in enumerate(net.weights)}
        for name, net in networks(model).items()
    }
    parts.update(method_state(model))
    return parts


def _optimizer_parts(optimizer) -> dict:
    slots = {f"s{j}_{i:03d}": v for j, vs in enumerate(optimizer.slots) for i, v in enumerate(vs)}
    return {
        "learning_rate": optimizer.learning_rate,
        "iterations": optimizer.iterations,
        "slots": slots,
    }


def _checkpoint(model, optimizer, epoch: tf.Variable) -> tf.train.Checkpoint:
    parts = {"model": _model_parts(model), "epoch": epoch}
    if optimizer is not None:
        parts["optimizer"] = _optimizer_parts(optimizer)
    return tf.train.Checkpoint(**parts)


def _manager(ckpt, run_dir, keep: int = 2) -> tf.train.CheckpointManager:
    return tf.train.CheckpointManager(ckpt, str(Path(run_dir) / "ckpt"), max_to_keep=keep)


def list_checkpoints(run_dir) -> list[str]:
    """The run's checkpoint prefixes, oldest first."""
    state = tf.train.get_checkpoint_state(str(Path(run_dir) / "ckpt"))
    return list(state.all_model_checkpoint_paths) if state else []


def latest_checkpoint(run_dir) -> str | None:
    """The newest checkpoint prefix of ``run_dir``, or ``None``."""
    return tf.train.latest_checkpoint(str(Path(run_dir) / "ckpt"))


def save_checkpoint(run_dir, epoch: int, model, optimizer=None, keep: int = 2) -> str:
    """Write ``ckpt/ckpt-<epoch>``; keep only the newest ``keep``. Returns its prefix.

    The optimiser's slots must exist (``optimizer.build``): the train loop builds them first.
    """
    epoch_var = tf.Variable(int(epoch), dtype=tf.int64, trainable=False)
    manager = _manager(_checkpoint(model, optimizer, epoch_var), run_dir, keep)
    try:
        return manager.save(checkpoint_number=int(epoch))
    except (tf.errors.ResourceExhaustedError, tf.errors.PermissionDeniedError, OSError) as e:
        # a full disk or a read-only folder; TF writes into ckpt-N_temp/ and renames, so the
        # previous checkpoint is whole. The temp folder is removed here (and at the next start).
        remove_orphans(Path(run_dir))
        path = Path(run_dir) / "ckpt" / f"ckpt-{int(epoch)}"
        raise checkpoint_write_error(path, e, latest_checkpoint(run_dir)) from e


def restore_checkpoint(run_dir, model, optimizer=None, path=None) -> int:
    """Load the newest checkpoint (or ``path``) into ``model`` and ``optimizer``; return its epoch.

    Raises:
        CheckpointError: no checkpoint, an unreadable one, or one that does not fit the model.
    """
    path = path or latest_checkpoint(run_dir)
    if path is None:
        raise CheckpointError(f"no checkpoint in {run_dir}")
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    ckpt = _checkpoint(model, optimizer, epoch)
    try:
        status = ckpt.restore(path)
        status.assert_existing_objects_matched()
        if optimizer is None:  # evaluation: the optimiser's slots are deliberately not restored
            status.expect_partial()  # (else TF warns about each of them at exit)
    except _UNREADABLE as e:
        raise CheckpointError(
            f"checkpoint {path} is unreadable or does not fit this model "
            f"({type(e).__name__}: {str(e).splitlines()[0][:160]})"
        ) from e
    return int(epoch.numpy())
