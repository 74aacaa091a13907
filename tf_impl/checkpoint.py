"""Checkpoints in TensorFlow: save, find, restore. ``torch_impl.checkpoint`` has the same functions.

A checkpoint (``ckpt/ckpt-<epoch>``, ``tf.train.Checkpoint`` written through a
``CheckpointManager``) holds every weight of the model (for MoCo: both encoders,
BN statistics included, the queue and its pointer), the optimiser's slots, step and learning
rate, and the epoch. The augmentation and key-shuffle RNGs are stateless functions of
(seed, epoch, step), so nothing else is needed to continue bit for bit.

``tf.train.Checkpoint``'s object graph does not reliably walk Keras 3 models (it can skip
nested sub-models silently), so the weights are listed explicitly: under each network's name in
``shared.parity.weights.METHOD_PARTS`` (``net``; ``encoder_q``, ``encoder_k``), keyed by their
position in the network's ``weights``, which the architecture fixes, beside MoCo's ``queue``
and ``queue_ptr``.

The run's checkpoints are the ``ckpt-<N>.index`` files (with their data files) in ``ckpt/``,
listed from the folder itself: the paths in TF's ``checkpoint`` state file are never used, so a
run directory shared with others cannot make a save delete or a restore read anything
outside it. :func:`save_checkpoint` removes that file before each save (the manager starts
from nothing, keeps everything, ``max_to_keep=None``, and records the new checkpoint alone for
TF's own tools), then deletes all but the newest ``keep`` by N: their regular files only.
"""

from __future__ import annotations

import re
from pathlib import Path

import tensorflow as tf

from shared.parity.weights import method_state, networks
from shared.run.errors import CheckpointError
from shared.run.runlog import (
    checkpoint_write_error,
    is_own_file,
    refuse_link,
    remove_orphans,
)

__all__ = [
    "DISK_FULL_ERRORS",
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
# what TF's file writers (checkpoints, TensorBoard) raise for a full disk or quota (ENOSPC, EDQUOT)
DISK_FULL_ERRORS = (tf.errors.ResourceExhaustedError,)
_INDEX = re.compile(r"ckpt-(\d+)\.index")


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


def _folder(run_dir) -> Path:
    """``run_dir/ckpt``, refused where it is a symbolic link (RunDirError)."""
    folder = Path(run_dir) / "ckpt"
    refuse_link(folder)
    return folder


def _numbers(folder: Path) -> list[int]:
    """The N of each checkpoint in ``folder``, ascending: a regular file ``ckpt-N.index``
    (TF writes it last, once the data files are in place)."""
    found = []
    for p in folder.iterdir() if folder.is_dir() else ():
        m = _INDEX.fullmatch(p.name)
        if m and is_own_file(p):
            found.append(int(m.group(1)))
    return sorted(found)


def list_checkpoints(run_dir) -> list[str]:
    """The run's checkpoint prefixes (``run_dir/ckpt/ckpt-N``), oldest first, from the folder's
    own files (never from the ``checkpoint`` state file's paths).

    Raises:
        RunDirError: ``run_dir/ckpt`` is a symbolic link.
    """
    folder = _folder(run_dir)
    return [str(folder / f"ckpt-{n}") for n in _numbers(folder)]


def latest_checkpoint(run_dir) -> str | None:
    """The newest checkpoint prefix of ``run_dir`` (the largest N), or ``None``."""
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def _delete(folder: Path, n: int) -> None:
    """Delete checkpoint ``n``'s regular files in ``folder``: ``ckpt-N.index`` and its
    ``ckpt-N.data-XXXXX-of-YYYYY``."""
    own = re.compile(rf"ckpt-{n}\.(index|data-\d{{5}}-of-\d{{5}})")
    for p in list(folder.iterdir()):
        if own.fullmatch(p.name) and is_own_file(p):
            p.unlink(missing_ok=True)


def save_checkpoint(run_dir, epoch: int, model, optimizer=None, keep: int = 2) -> str:
    """Write ``ckpt/ckpt-<epoch>``; keep only the newest ``keep`` (by N, among the folder's own
    checkpoints). Returns its prefix.

    The optimiser's slots must exist (``optimizer.build``): the train loop builds them first.

    Raises:
        CheckpointWriteError: the disk is full or the folder read-only (the previous
            checkpoint is intact). RunDirError: ``run_dir/ckpt`` is a symbolic link.
    """
    folder = _folder(run_dir)
    state = folder / "checkpoint"
    refuse_link(state)
    epoch_var = tf.Variable(int(epoch), dtype=tf.int64, trainable=False)
    ckpt = _checkpoint(model, optimizer, epoch_var)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if is_own_file(state):  # the manager would read the paths it lists: it starts from none
            state.unlink()
        manager = tf.train.CheckpointManager(ckpt, str(folder), max_to_keep=None)  # deletes none
        prefix = manager.save(checkpoint_number=int(epoch))
    except (tf.errors.ResourceExhaustedError, tf.errors.PermissionDeniedError, OSError) as e:
        # a full disk or a read-only folder; TF writes into ckpt-N_temp/ and renames, so the
        # previous checkpoint is whole. The temp folder is removed here (and at the next start).
        remove_orphans(Path(run_dir))
        path = folder / f"ckpt-{int(epoch)}"
        raise checkpoint_write_error(path, e, latest_checkpoint(run_dir)) from e
    for n in _numbers(folder)[:-keep]:
        _delete(folder, n)
    return prefix


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
