"""Checkpoints in PyTorch: save, find, restore. ``tf_impl.checkpoint`` has the same functions.

``ckpt-<epoch>.pt`` holds the model's ``state_dict`` (for MoCo: both encoders, the queue and
its pointer, as buffers), the optimiser state, the epoch and the torch / NumPy / Python RNG
states, so a resumed run continues bit for bit. Files are written atomically (temp file, fsync,
rename) and the newest ``keep`` are kept. Loading uses ``weights_only=True``.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import torch

from shared.runlog import atomic_write_bytes, checkpoint_write_error

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


def _rng_state() -> dict:
    st = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(st[1].astype(np.int64)),
            "pos": int(st[2]),
            "has_gauss": int(st[3]),
            "cached": float(st[4]),
        },
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    v = s["python"]
    random.setstate((v[0], tuple(v[1]), v[2]))
    n = s["numpy"]
    np.random.set_state(
        ("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def list_checkpoints(run_dir) -> list[Path]:
    """The run's checkpoints, oldest first (by the epoch in their name)."""
    found = []
    for p in Path(run_dir).glob("ckpt-*.pt"):
        try:
            found.append((int(p.stem.split("-", 1)[1]), p))
        except ValueError:
            continue
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir) -> Path | None:
    """The newest checkpoint of ``run_dir``, or ``None``."""
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def save_checkpoint(run_dir, epoch: int, model, optimizer=None, keep: int = 2) -> Path:
    """Write ``ckpt-<epoch>.pt`` atomically; keep only the newest ``keep``. Returns its path."""
    state = {"epoch": int(epoch), "model": model.state_dict(), "rng": _rng_state()}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    buf = io.BytesIO()
    torch.save(state, buf)
    path = Path(run_dir) / f"ckpt-{epoch:04d}.pt"
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as e:  # a full disk or a read-only folder: the previous checkpoint is whole
        raise checkpoint_write_error(path, e, latest_checkpoint(run_dir)) from None
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink()
    return path


def _load(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors all mean "unreadable"
        raise CheckpointError(
            f"checkpoint {path} is corrupt or unreadable ({type(e).__name__}: {str(e)[:120]})"
        ) from None


def restore_checkpoint(run_dir, model, optimizer=None, path=None) -> int:
    """Load the newest checkpoint (or ``path``) into ``model`` and ``optimizer``.

    Restores the RNG states too when an optimiser is given (resuming training). Returns the
    checkpoint's epoch.

    Raises:
        CheckpointError: no checkpoint, an unreadable file, or one that does not fit the model.
    """
    path = Path(path) if path is not None else latest_checkpoint(run_dir)
    if path is None:
        raise CheckpointError(f"no checkpoint in {run_dir}")
    state = _load(path)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        first = str(e).splitlines()[1:2] or [str(e)[:160]]
        raise CheckpointError(
            f"checkpoint {path} does not fit this model ({first[0].strip()}); "
            "was it written with another --method, --encoder or size?"
        ) from None
    if optimizer is not None:
        if "optimizer" in state:
            optimizer.load_state_dict(state["optimizer"])
        _set_rng_state(state["rng"])
    return int(state["epoch"])


def load_trained(run_dir):
    """The model of a finished (or interrupted) run, in eval mode, and its ``TrainConfig``.

    SplitBatchNorm is merged back to one BN (evaluation and fine-tuning see ordinary batches).

    Raises:
        CheckpointError: no ``config.json`` or no checkpoint in ``run_dir``.
    """
    from shared.config import load_config
    from torch_impl.models import merge_bn_splits
    from torch_impl.train import build_model

    cfg = load_config(run_dir)
    model = build_model(cfg)
    restore_checkpoint(run_dir, model)
    merge_bn_splits(model.backbone)
    return model.eval(), cfg


# --- framework-neutral weights (shared.weights) ------------------------------------------------
def _layers(module: torch.nn.Module):
    """``(kind, {role: tensor})`` for each conv, dense and BN layer, in architecture order."""
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d):
            yield "conv", {"kernel": m.weight, **({"bias": m.bias} if m.bias is not None else {})}
        elif isinstance(m, torch.nn.Linear):
            yield "dense", {"kernel": m.weight, **({"bias": m.bias} if m.bias is not None else {})}
        elif isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            yield (
                "bn",
                {
                    "gamma": m.weight,
                    "beta": m.bias,
                    "moving_mean": m.running_mean,
                    "moving_variance": m.running_var,
                },
            )


def _entries(model):
    """``(canonical name, kind, role, tensor)`` for every weight of the model."""
    from shared.weights import canonical_name, model_parts

    for prefix, module in model_parts(model):
        counts: dict[str, int] = {}
        for kind, roles in _layers(module):
            i = counts[kind] = counts.get(kind, -1) + 1
            for role, t in roles.items():
                yield canonical_name(prefix, kind, i, role), kind, role, t


def export_weights(model) -> dict[str, np.ndarray]:
    """Every weight (BN statistics, MoCo's queue and pointer included) in the canonical layout."""
    from shared.weights import to_canonical

    state = {
        name: to_canonical(kind, role, t.detach().cpu().numpy(), "torch")
        for name, kind, role, t in _entries(model)
    }
    if hasattr(model, "queue"):
        state.update(
            queue=model.queue.detach().cpu().numpy(), queue_ptr=np.asarray(int(model.queue_ptr))
        )
    return state


@torch.no_grad()
def import_weights(model, state: dict[str, np.ndarray]) -> None:
    """Load a canonical ``state`` (``shared.weights``) into ``model``, in place.

    Raises:
        shared.weights.WeightsError: an unknown, missing or misshapen entry, named.
    """
    from shared.weights import check_state, from_canonical, to_canonical

    entries = list(_entries(model))
    expected = {
        name: to_canonical(kind, role, np.empty(tuple(t.shape)), "torch").shape
        for name, kind, role, t in entries
    }
    if hasattr(model, "queue"):
        expected.update(queue=tuple(model.queue.shape), queue_ptr=())
    check_state(expected, state)
    for name, kind, role, t in entries:
        t.copy_(
            torch.from_numpy(
                np.ascontiguousarray(from_canonical(kind, role, state[name], "torch"))
            ).to(t.dtype)
        )
    if hasattr(model, "queue"):
        model.queue.copy_(torch.from_numpy(state["queue"]).to(model.queue.dtype))
        model.queue_ptr.fill_(int(state["queue_ptr"]))
