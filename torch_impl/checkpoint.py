"""Checkpoints in PyTorch: save, find, restore. ``tf_impl.checkpoint`` has the same functions.

``ckpt-<epoch>.pt`` holds the model's ``state_dict`` (for MoCo: both encoders, the queue and
its pointer, as buffers), the optimiser state, the epoch and the torch / NumPy / Python RNG
states, so a resumed run continues bit for bit. Files are written atomically (temp file, fsync,
rename) and the newest ``keep`` are kept. Loading uses ``weights_only=True``, so a checkpoint
from a shared run directory is never unpickled. The run's checkpoints are its own regular files
named ``ckpt-<N>.pt``: a symbolic link of that name is refused, never read, replaced or deleted.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import torch

from shared.run.errors import CheckpointError
from shared.run.runlog import (
    TORCH_CHECKPOINT,
    atomic_write_bytes,
    checkpoint_write_error,
    is_own_file,
    refuse_link,
)

__all__ = [
    "DISK_FULL_ERRORS",
    "CheckpointError",
    "latest_checkpoint",
    "list_checkpoints",
    "restore_checkpoint",
    "save_checkpoint",
]


DISK_FULL_ERRORS = ()  # torch's writers report a full disk as OSError(ENOSPC / EDQUOT) alone


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
    """The run's checkpoints ``ckpt-<N>.pt``, oldest first (by N): its own regular files.

    Raises:
        RunDirError: one of them is a symbolic link.
    """
    d = Path(run_dir)
    found = []
    for p in d.iterdir() if d.is_dir() else ():
        m = TORCH_CHECKPOINT.fullmatch(p.name)
        if m:
            refuse_link(p)
            if is_own_file(p):
                found.append((int(m.group(1)), p))
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
        raise checkpoint_write_error(path, e, latest_checkpoint(run_dir)) from e
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def _load(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors all mean "unreadable"
        raise CheckpointError(
            f"checkpoint {path} is corrupt or unreadable ({type(e).__name__}: {str(e)[:120]})"
        ) from e


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
        ) from e
    if optimizer is not None:
        if "optimizer" in state:
            optimizer.load_state_dict(state["optimizer"])
        _set_rng_state(state["rng"])
    return int(state["epoch"])
