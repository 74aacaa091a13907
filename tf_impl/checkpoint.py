"""Checkpoints in TensorFlow: save, find, restore. ``torch_impl.checkpoint`` has the same functions.

A checkpoint (``ckpt/ckpt-<epoch>``, ``tf.train.Checkpoint`` through a ``CheckpointManager``
that keeps the newest ``keep``) holds every weight of the model (for MoCo: both encoders,
BN statistics included, the queue and its pointer), the optimiser's slots, step and learning
rate, and the epoch. The augmentation and key-shuffle RNGs are stateless functions of
(seed, epoch, step), so nothing else is needed to continue bit for bit.

Keras 3 models are not reliably walked by ``tf.train.Checkpoint``'s object graph (nested
sub-models were silently skipped), so the weights are listed explicitly, keyed by their
position in ``model.weights``, which the architecture fixes.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from shared.runlog import checkpoint_write_error, remove_orphans

__all__ = [
    "CheckpointError",
    "export_weights",
    "import_weights",
    "latest_checkpoint",
    "list_checkpoints",
    "load_trained",
    "restore_checkpoint",
    "save_checkpoint",
]


class CheckpointError(RuntimeError):
    """A checkpoint could not be read or does not fit the model; the message says which."""


def _model_parts(model) -> dict:
    nets = (
        {"encoder_q": model.encoder_q, "encoder_k": model.encoder_k}
        if hasattr(model, "queue")
        else {"net": model.net}
    )
    parts = {
        name: {f"w{i:03d}": w for i, w in enumerate(net.weights)} for name, net in nets.items()
    }
    if hasattr(model, "queue"):
        parts.update(queue=model.queue, queue_ptr=model.queue_ptr)
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
        raise checkpoint_write_error(path, e, latest_checkpoint(run_dir)) from None


def restore_checkpoint(run_dir, model, optimizer=None, path=None) -> int:
    """Load the newest checkpoint (or ``path``) into ``model`` and ``optimizer``; return its epoch.

    Raises:
        CheckpointError: no checkpoint, an unreadable one, or one that does not fit the model.
    """
    path = path or latest_checkpoint(run_dir)
    if path is None:
        raise CheckpointError(f"no checkpoint in {run_dir}")
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    try:
        status = _checkpoint(model, optimizer, epoch).restore(path)
        status.assert_existing_objects_matched()
        if optimizer is None:  # evaluation: the optimiser's slots are deliberately not restored
            status.expect_partial()  # (else TF warns about each of them at exit)
    except Exception as e:  # DataLossError, IndexError, assertion errors: all "unreadable"
        raise CheckpointError(
            f"checkpoint {path} is unreadable or does not fit this model "
            f"({type(e).__name__}: {str(e).splitlines()[0][:160]})"
        ) from None
    return int(epoch.numpy())


def load_trained(run_dir):
    """The model of a finished (or interrupted) run and its ``TrainConfig``.

    SplitBatchNorm is merged back to one BN (evaluation and fine-tuning see ordinary batches).

    Raises:
        CheckpointError: no checkpoint in ``run_dir``. FileNotFoundError: no ``config.json``.
    """
    from shared.config import load_config
    from tf_impl.models import merge_bn_splits
    from tf_impl.train import build_model

    cfg = load_config(run_dir)
    model = build_model(cfg)
    restore_checkpoint(run_dir, model)
    merge_bn_splits(model.backbone)
    return model, cfg


# --- framework-neutral weights (shared.weights) ------------------------------------------------
def _layers(module):
    """``(kind, {role: variable})`` for each conv, dense and BN layer, in architecture order."""
    keras = tf.keras
    for layer in _depth_first(module):
        if isinstance(layer, keras.layers.Conv2D):
            yield (
                "conv",
                {"kernel": layer.kernel, **({"bias": layer.bias} if layer.use_bias else {})},
            )
        elif isinstance(layer, keras.layers.Dense):
            yield (
                "dense",
                {"kernel": layer.kernel, **({"bias": layer.bias} if layer.use_bias else {})},
            )
        elif isinstance(layer, keras.layers.BatchNormalization):
            yield (
                "bn",
                {
                    "gamma": layer.gamma,
                    "beta": layer.beta,
                    "moving_mean": layer.moving_mean,
                    "moving_variance": layer.moving_variance,
                },
            )


def _depth_first(layer):
    """Sub-layers in construction order, depth first (Keras 3's recursive ``_flatten_layers``
    visits a layer's children in reverse order)."""
    for sub in layer._flatten_layers(include_self=False, recursive=False):
        yield sub
        yield from _depth_first(sub)


def _entries(model):
    from shared.weights import canonical_name, model_parts

    for prefix, module in model_parts(model):
        counts: dict[str, int] = {}
        for kind, roles in _layers(module):
            i = counts[kind] = counts.get(kind, -1) + 1
            for role, v in roles.items():
                yield canonical_name(prefix, kind, i, role), v


def export_weights(model) -> dict:
    """Every weight (BN statistics, MoCo's queue and pointer included) in the canonical layout."""
    state = {name: v.numpy() for name, v in _entries(model)}  # TF's layout is the canonical one
    if hasattr(model, "queue"):
        state.update(queue=model.queue.numpy(), queue_ptr=model.queue_ptr.numpy())
    return state


def import_weights(model, state: dict) -> None:
    """Load a canonical ``state`` (``shared.weights``) into ``model``, in place.

    Raises:
        shared.weights.WeightsError: an unknown, missing or misshapen entry, named.
    """
    from shared.weights import check_state

    entries = list(_entries(model))
    expected = {name: tuple(v.shape) for name, v in entries}
    if hasattr(model, "queue"):
        expected.update(queue=tuple(model.queue.shape), queue_ptr=())
    check_state(expected, state)
    for name, v in entries:
        v.assign(tf.cast(state[name], v.dtype))
    if hasattr(model, "queue"):
        model.queue.assign(tf.cast(state["queue"], model.queue.dtype))
        model.queue_ptr.assign(int(state["queue_ptr"]))
