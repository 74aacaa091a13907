"""The run-directory schema both frameworks write, and atomic file writes.

A run directory holds ``config.json`` (the resolved ``shared.run.config.TrainConfig``),
``metrics.json`` (one record per epoch), ``eval.json`` (written by ``eval``), TensorBoard event
files and checkpoints, and ``.lock``, which the run writing the directory holds
(:func:`lock_run_dir`). Both ``torch_impl`` and ``tf_impl`` write the same schema, so one
report reads both.

``metrics.json``::

    {"schema": "rosetta.metrics/v1", "framework": "torch" | "tensorflow",
     "method": "simclr" | "moco", "dataset": str,
     "epochs": [{"epoch": int, "loss": float, "lr": float, "images_per_s": float,
                 "time_s": float, "knn_top1": float | null,
                 "z_spread": float, "weight_norm": float}, ...],   # shared.run.health
     "config_changes": [{"at_epoch": int, "fields": [str, ...]}, ...]}   # --allow-config-change
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
from pathlib import Path

from shared.run.errors import CheckpointWriteError, FileFormatError, NonFiniteError, RunDirError

SCHEMA = "rosetta.metrics/v1"
EPOCH_KEYS = (
    "epoch",
    "loss",
    "lr",
    "images_per_s",
    "time_s",
    "knn_top1",
    "z_spread",
    "weight_norm",
)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temp file in the same folder, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the run's other files follow the umask
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it
    os.umask(mask)
    return mask


def atomic_write_json(path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


@contextlib.contextmanager
def exclusive_lock(lock_path, blocking: bool = True):
    """An exclusive advisory lock (``fcntl.flock``) on ``lock_path`` for the ``with`` body; no
    lock where that is impossible (no ``fcntl``, a read-only cache): only the sharing is lost.

    ``blocking=False``: raise ``BlockingIOError`` at once when another open file holds it.
    The kernel releases the lock when its holder closes the file or dies, so a lock file left
    by a killed process locks nothing.
    """
    try:
        import fcntl

        lock_path = Path(lock_path)
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        f = open(lock_path, "a")  # noqa: SIM115 (closed below)
    except (ImportError, OSError):
        yield
        return
    try:
        fcntl.flock(f, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        f.close()  # releases the lock


RUN_FILES = ("config.json", "metrics.json", "eval.json", "features.npz")
RUN_DIRS = ("ckpt", "tb")
LOCK_FILE = ".lock"  # held by the run writing the directory (lock_run_dir); never deleted


def lock_run_dir(run_dir) -> contextlib.ExitStack:
    """Take ``run_dir/.lock`` exclusively, without waiting; the returned stack holds it until
    it is closed (``with lock_run_dir(d): ...``). Creates ``run_dir`` first.

    The lock file itself stays: deleting it would let a third run lock a new file while the
    second still holds the old one. It does not count as a run (:func:`holds_a_run`).

    Raises:
        RunDirError: another process holds the lock, or ``run_dir`` is a file or not writable.
    """
    d = Path(run_dir)
    _check_usable(d)
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(exclusive_lock(d / LOCK_FILE, blocking=False))
    except BlockingIOError:
        raise RunDirError(
            f"run_dir: {d} is in use: another run holds its lock ({d / LOCK_FILE}); wait for "
            "it to finish or choose another --run-dir"
        ) from None
    return stack


def holds_a_run(run_dir) -> bool:
    """True when ``run_dir`` has a config, metrics or checkpoints of an earlier run."""
    d = Path(run_dir)
    return d.is_dir() and (any((d / f).exists() for f in RUN_FILES[:2]) or any(d.glob("ckpt*")))


def prepare_run_dir(run_dir, resume: bool, overwrite: bool) -> None:
    """Refuse to mix two runs in one folder, before anything is written.

    A folder holding a run is continued with ``resume``, replaced with ``overwrite`` (its
    checkpoints, metrics and logs are deleted first), and refused otherwise.

    Raises:
        RunDirError: ``run_dir`` holds a run and neither flag was given, is a file, or cannot be
            written.
    """
    import shutil

    d = Path(run_dir)
    _check_usable(d)
    remove_orphans(d)
    if not holds_a_run(d) or resume:
        return
    if not overwrite:
        raise RunDirError(
            f"run_dir: {d} already holds a run; pass --resume to continue it or --overwrite to replace it"
        )
    for name in RUN_FILES:
        (d / name).unlink(missing_ok=True)
    for p in d.glob("ckpt-*.pt"):
        p.unlink()
    for name in RUN_DIRS:
        shutil.rmtree(d / name, ignore_errors=True)


def _check_usable(d: Path) -> None:
    """Refuse a file; create ``d`` and write a probe file in it, so that a read-only or full
    folder is named here, before a minute of training, rather than at the first checkpoint."""
    import tempfile

    if d.exists() and not d.is_dir():
        raise RunDirError(f"run_dir: {d} is a file, expected a directory")
    try:
        d.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=d, prefix=".write-probe.", suffix=".tmp"):
            pass
    except OSError as e:
        raise RunDirError(
            f"run_dir: {d} is not writable ({e.strerror or e}); choose another --run-dir"
        ) from None


def first_non_finite(state: dict):
    """The first name in ``state`` (name -> array) holding a NaN or an infinity, or ``None``."""
    import numpy as np

    return next(
        (
            k
            for k, v in state.items()
            if np.asarray(v).dtype.kind == "f" and not np.isfinite(v).all()
        ),
        None,
    )


def non_finite_error(what: str, epoch: int, last_checkpoint) -> NonFiniteError:
    """The one-line error for a non-finite loss or weight: where, and the true last finite
    checkpoint (checkpoints are only written after the weights were checked)."""
    where = (
        f"the last finite checkpoint is {last_checkpoint}"
        if last_checkpoint
        else "no checkpoint was written yet"
    )
    return NonFiniteError(
        f"{what} in epoch {epoch}; {where}. Lower --lr or raise --temperature, then --resume or --overwrite"
    )


def checkpoint_write_error(path, error: BaseException, previous) -> CheckpointWriteError:
    """The one-line error for a checkpoint that could not be written (a full disk, a read-only
    folder). Writes are atomic, so the previous checkpoint, if any, is whole."""
    # TF's message ends "...; No space left on device [Op:SaveV2]": keep that last clause
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    reason = getattr(error, "strerror", None) or text.rsplit("; ", 1)[-1].split(" [Op:")[0]
    kept = (
        f"the previous checkpoint {previous} is intact" if previous else "no checkpoint exists yet"
    )
    return CheckpointWriteError(
        f"checkpoint {path} could not be written ({reason}); {kept}. "
        "Free some space (or choose another --run-dir), then rerun with --resume"
    )


def remove_orphans(d: Path) -> None:
    """Temp files of writes that a kill interrupted: ``.<name>.*.tmp`` (ours) and TF's
    ``ckpt/*_temp*`` folders. Complete files are never touched."""
    import shutil

    if not d.is_dir():
        return
    for p in d.glob(".*.tmp"):
        p.unlink(missing_ok=True)
    for p in (d / "ckpt").glob("*_temp*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def read_metrics(path) -> dict:
    """A ``metrics.json`` (the schema above), checked enough to be continued.

    Raises:
        FileFormatError: not JSON, or not this schema's layout (the message names the file).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise FileFormatError(f"{path}: not a readable metrics.json ({e})") from None
    epochs = data.get("epochs", []) if isinstance(data, dict) else None
    if not isinstance(epochs, list) or not all(
        isinstance(e, dict) and isinstance(e.get("epoch"), int) for e in epochs
    ):
        raise FileFormatError(
            f"{path}: not a metrics.json of schema {SCHEMA} (expected an 'epochs' list of "
            "records with an integer 'epoch'); move it away or pass --overwrite"
        )
    return data


class RunLog:
    """Accumulates epoch records and rewrites ``metrics.json`` after each one."""

    def __init__(self, run_dir, config):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.data = {
            "schema": SCHEMA,
            "framework": config.framework,
            "method": config.method,
            "dataset": config.dataset,
            "epochs": [],
        }
        atomic_write_json(self.run_dir / "config.json", dataclasses.asdict(config))

    @classmethod
    def resume(cls, run_dir, config, epochs_done: int, changed: list[str] | None = None) -> RunLog:
        """A log that keeps the records of the first ``epochs_done`` epochs already written, and
        records the config fields that ``changed`` on this resume."""
        path = Path(run_dir) / "metrics.json"
        old = read_metrics(path) if epochs_done and path.exists() else {}
        log = cls(run_dir, config)
        log.data["epochs"] = [e for e in old.get("epochs", []) if e["epoch"] <= epochs_done]
        log.data["config_changes"] = old.get("config_changes", [])
        if changed:
            log.data["config_changes"].append({"at_epoch": epochs_done, "fields": changed})
        return log

    def epoch(self, **record) -> str:
        """Append one epoch's record, rewrite ``metrics.json``; return the one-line summary."""
        rec = {k: record.get(k) for k in EPOCH_KEYS}
        self.data["epochs"].append(rec)
        atomic_write_json(self.run_dir / "metrics.json", self.data)
        knn = "" if rec["knn_top1"] is None else f"  knn_top1 {100 * rec['knn_top1']:.1f}%"
        return (
            f"[{self.data['framework']}/{self.data['method']}] epoch {rec['epoch']:>3}  "
            f"loss {rec['loss']:.4f}  lr {rec['lr']:.2e}  "
            f"{rec['images_per_s']:.0f} img/s  {rec['time_s']:.1f}s{knn}"
        )
