"""The run-directory schema both frameworks write, and atomic file writes.

A run directory holds ``config.json`` (the resolved ``shared.run.config.TrainConfig``),
``metrics.json`` (one record per epoch), ``eval.json`` (written by ``eval``), TensorBoard event
files and checkpoints, and ``.lock``, which the run writing the directory holds
(:func:`lock_run_dir`). Both ``torch_impl`` and ``tf_impl`` write the same schema, so one
report reads both.

The run directory is a boundary. What this module writes, replaces or deletes is a regular file
(or TF's temp folder) inside the folder it was given, under one of the names above, reached
without following a symbolic link: files are written by :func:`atomic_open` (a temp file beside
them, renamed into place), the lock is opened with ``O_NOFOLLOW``, and :func:`check_own_entries`
refuses a link among a run's own entries before anything is written. The ``check_*`` functions
name an unusable output (a file where a folder is expected, a read-only folder) before any work.

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
import errno
import json
import os
import re
import stat
import tempfile
from pathlib import Path

from shared import RosettaError
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


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike):
    """A binary file for the ``with`` body that becomes ``path`` when the body ends: a temp file
    ``.<name>.<random>.tmp`` in the same folder, fsynced, then renamed onto ``path``.

    The rename replaces whatever ``path`` is, a symbolic link included, and never writes
    through it; after an error the temp file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the run's other files follow the umask
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in DISK_FULL and not isinstance(e, RosettaError):
            raise OutputFullError(e.errno, e.strerror, path) from e
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_open`)."""
    with atomic_open(path) as f:
        f.write(data)


def atomic_write_npz(path: str | os.PathLike, compressed: bool = False, **arrays) -> None:
    """``np.savez`` (``compressed``: ``np.savez_compressed``) of ``arrays`` to ``path``,
    atomically (:func:`atomic_open`)."""
    import numpy as np

    with atomic_open(path) as f:
        (np.savez_compressed if compressed else np.savez)(f, **arrays)


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it
    os.umask(mask)
    return mask


def atomic_write_json(path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


@contextlib.contextmanager
def exclusive_lock(lock_path, blocking: bool = True):
    """An exclusive advisory lock (``fcntl.flock``) on ``lock_path`` for the ``with`` body; no
    lock where that is impossible (no ``fcntl``, a read-only cache, a symbolic link at
    ``lock_path``, which is never followed): only the sharing is lost.

    ``blocking=False``: raise ``BlockingIOError`` at once when another open file holds it.
    The kernel releases the lock when its holder closes the file or dies, so a lock file left
    by a killed process locks nothing.
    """
    try:
        import fcntl

        lock_path = Path(lock_path)
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | _NOFOLLOW
        f = os.fdopen(os.open(lock_path, flags, 0o666), "a")
    except (ImportError, OSError):
        yield
        return
    try:
        fcntl.flock(f, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        f.close()  # releases the lock


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
RUN_FILES = ("config.json", "metrics.json", "eval.json", "features.npz")
RUN_DIRS = ("ckpt", "tb")
LOCK_FILE = ".lock"  # held by the run writing the directory (lock_run_dir); never deleted
TORCH_CHECKPOINT = re.compile(r"ckpt-(\d+)\.pt")  # torch_impl.checkpoint's files
# the temp files of atomic_open (and the write probe) that a kill left behind
_ORPHAN_FILE = re.compile(r"\.(?:config\.json|metrics\.json|eval\.json|features\.npz|"
                          r"ckpt-\d+\.pt|write-probe)\.\w+\.tmp")  # fmt: skip
# under ckpt/: TF's ckpt-N_temp/ folders and its checkpoint state file's temp files
_ORPHAN_TF = re.compile(r"ckpt-\d+_temp.*|checkpoint\.tmp[0-9a-f]+")


def lock_run_dir(run_dir) -> contextlib.ExitStack:
    """Take ``run_dir/.lock`` exclusively, without waiting; the returned stack holds it until
    it is closed (``with lock_run_dir(d): ...``). Creates ``run_dir`` first.

    The lock file itself stays: deleting it would let a third run lock a new file while the
    second still holds the old one. It does not count as a run (:func:`holds_a_run`).

    Raises:
        RunDirError: another process holds the lock; ``run_dir`` is a file or not writable;
            one of its own files or folders is a symbolic link (:func:`check_own_entries`).
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
        ) from None  # a held lock: nothing more to show
    return stack


def holds_a_run(run_dir) -> bool:
    """True when ``run_dir`` has a config, metrics or checkpoints of an earlier run."""
    d = Path(run_dir)
    return d.is_dir() and (any((d / f).exists() for f in RUN_FILES[:2]) or any(d.glob("ckpt*")))


def prepare_run_dir(run_dir, resume: bool, overwrite: bool) -> None:
    """Refuse to mix two runs in one folder, before anything is written.

    A folder holding a run is continued with ``resume``, replaced with ``overwrite`` (its
    checkpoints, metrics and logs are deleted first: the run's own regular files and folders,
    never a link or what it leads to), and refused otherwise.

    Raises:
        RunDirError: ``run_dir`` holds a run and neither flag was given, is a file, cannot be
            written, or has a symbolic link among its own files (:func:`check_own_entries`).
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
    for p in d.iterdir():
        if (p.name in RUN_FILES or TORCH_CHECKPOINT.fullmatch(p.name)) and is_own_file(p):
            p.unlink()
    for name in RUN_DIRS:
        if is_own_dir(d / name):
            shutil.rmtree(d / name, ignore_errors=True)


def is_own_file(p: Path) -> bool:
    """``p`` is a regular file, not a link to one."""
    try:
        return stat.S_ISREG(os.lstat(p).st_mode)
    except FileNotFoundError:
        return False


def is_own_dir(p: Path) -> bool:
    """``p`` is a folder, not a link to one."""
    try:
        return stat.S_ISDIR(os.lstat(p).st_mode)
    except FileNotFoundError:
        return False


def refuse_link(path, arg: str = "run_dir") -> None:
    """Refuse a symbolic link at ``path`` (one the command would write, replace or sweep).

    Raises:
        RunDirError: naming ``arg`` and ``path``.
    """
    if Path(path).is_symlink():
        raise RunDirError(
            f"{arg}: {str(path)!r} is a symbolic link; the files and folders a command writes "
            "must be its own, not links to elsewhere: replace it with a copy or remove it"
        )


def check_own_entries(run_dir, arg: str = "run_dir") -> None:
    """Refuse a run directory whose own files or folders (``.lock``, ``config.json``,
    ``metrics.json``, ``eval.json``, ``features.npz``, ``ckpt-N.pt``, ``ckpt/``, ``tb/`` and
    everything in those two folders) include a symbolic link, or whose ``ckpt`` or ``tb`` is
    a file: a run writes, replaces and deletes these, and only inside ``run_dir``.

    Raises:
        RunDirError: naming ``arg`` and the first such entry.
    """
    d = Path(run_dir)
    if not d.is_dir():
        return
    for name in (LOCK_FILE, *RUN_FILES, *RUN_DIRS):
        refuse_link(d / name, arg)
    for p in sorted(d.iterdir()):
        if TORCH_CHECKPOINT.fullmatch(p.name) or _ORPHAN_FILE.fullmatch(p.name):
            refuse_link(p, arg)
    for name in RUN_DIRS:
        folder = d / name
        if folder.exists() and not folder.is_dir():
            raise RunDirError(f"{arg}: {str(folder)!r} is a file, expected a folder")
        for p in sorted(folder.iterdir()) if folder.is_dir() else ():
            refuse_link(p, arg)


def _check_usable(d: Path) -> None:
    """Refuse a file or a link among the run's own entries; create ``d`` and write a probe
    file in it, so that a read-only or full folder is named here, before a minute of
    training, rather than at the first checkpoint."""
    if d.exists() and not d.is_dir():
        raise RunDirError(f"run_dir: {d} is a file, expected a directory")
    check_own_entries(d)
    check_writable(d, "run_dir", "choose another --run-dir")


def check_writable(folder, arg: str, hint: str) -> Path:
    """Create ``folder`` (and its parents) if needed and prove it writable: ``os.access``,
    then a temp file created and removed, before any work that would end in a write there.

    Args:
        folder: the folder a command will write into.
        arg: the argument that named it, for the message (``run_dir``, ``out``).
        hint: what to do instead, the message's end (``choose another --out``).

    Raises:
        RunDirError: ``folder`` cannot be created or written (read-only, full, no permission).
    """
    d = Path(folder)
    try:
        d.mkdir(parents=True, exist_ok=True)
        if not os.access(d, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(d))
        with tempfile.NamedTemporaryFile(dir=d, prefix=".write-probe.", suffix=".tmp"):
            pass
    except OSError as e:
        raise RunDirError(f"{arg}: {str(d)!r} is not writable ({e.strerror or e}); {hint}") from e
    return d


def check_output_folder(folder, arg: str, files=()) -> Path:
    """Check, before any work, that ``folder`` can take ``files``: a folder (or none yet: it is
    created), writable, none of ``files`` in it a symbolic link or a folder, and no link among
    a run's own entries there (:func:`check_own_entries`).

    Args:
        folder: where the command writes ``files`` (each replaced atomically).
        arg: the argument that named ``folder`` (``out``, ``run_dir``), for the messages.
        files: the names the command writes there.

    Returns:
        ``folder`` as a ``Path``.

    Raises:
        RunDirError: ``folder`` is a file, is not writable, or one of ``files`` is a link or a
            folder; the message names it.
    """
    d = Path(folder)
    if d.exists() and not d.is_dir():
        raise RunDirError(f"{arg}: {str(d)!r} is a file, expected a folder for {', '.join(files)}")
    for name in files:
        refuse_link(d / name, arg)
        if (d / name).is_dir():
            raise RunDirError(f"{arg}: {str(d / name)!r} is a folder, expected a file to replace")
    check_own_entries(d, arg)
    return check_writable(d, arg, f"choose another --{arg.replace('_', '-')}")


def check_new_run_dir(folder, arg: str = "out") -> Path:
    """Check, before any work, that ``folder`` can become a new run directory: not a file, not
    a link among its own entries, holding no run, writable (created here if missing).

    Raises:
        RunDirError: naming ``arg`` and ``folder``.
    """
    d = Path(folder)
    if d.exists() and not d.is_dir():
        raise RunDirError(f"{arg}: {str(d)!r} is a file, expected a new run directory")
    check_own_entries(d, arg)
    if holds_a_run(d):
        raise RunDirError(f"{arg}: {str(d)!r} already holds a run; choose a new directory")
    return check_writable(d, arg, f"choose another --{arg}")


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


def _reason(error: BaseException) -> str:
    """Why a write failed, in a few words: the OS's ``strerror``, or the last clause of TF's
    message ("...; No space left on device [Op:SaveV2]")."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return getattr(error, "strerror", None) or text.rsplit("; ", 1)[-1].split(" [Op:")[0]


def checkpoint_write_error(path, error: BaseException, previous) -> CheckpointWriteError:
    """The one-line error for a checkpoint that could not be written (a full disk, a read-only
    folder). Writes are atomic, so the previous checkpoint, if any, is whole."""
    kept = (
        f"the previous checkpoint {previous} is intact" if previous else "no checkpoint exists yet"
    )
    return CheckpointWriteError(
        f"checkpoint {path} could not be written ({_reason(error)}); {kept}. "
        "Free some space (or choose another --run-dir), then rerun with --resume"
    )


class OutputFullError(RosettaError, OSError):
    """An output file (``eval.json``, ``features.npz``, a parity dump, ...) could not be written
    because the disk or the quota is full; ``path`` is untouched (writes are atomic). Still an
    ``OSError`` of that errno, so that a run's own handler names its last checkpoint instead."""

    def __init__(self, errno_: int, strerror: str, path):
        super().__init__(errno_, strerror)
        self.path = path

    def __str__(self) -> str:
        return (
            f"{self.path} could not be written ({self.strerror}); it is unchanged and nothing "
            "else was written in its place. Free some space (or choose another output folder), "
            "then run the command again"
        )


class DiskFullError(RosettaError, OSError):
    """A run's log (``config.json``, ``metrics.json``, TensorBoard) could not be written because
    the disk or the quota is full; the message names the last intact checkpoint."""


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(error: BaseException, framework_errors: tuple = ()) -> bool:
    """``error`` says the disk or the quota is full: an ``OSError`` with ``ENOSPC`` or
    ``EDQUOT``, or one of ``framework_errors`` (TF reports both as ``ResourceExhaustedError``)."""
    if isinstance(error, OSError) and error.errno in DISK_FULL:
        return True
    return bool(framework_errors) and isinstance(error, framework_errors)


def disk_full_error(what: str, error: BaseException, last_checkpoint) -> DiskFullError:
    """The one-line error for a full disk while ``what`` was written, naming the last intact
    checkpoint (checkpoints are atomic, so it is whole) or saying that none exists yet."""
    kept = (
        f"the last intact checkpoint is {str(last_checkpoint)!r}"
        if last_checkpoint
        else "no checkpoint was written yet"
    )
    return DiskFullError(
        f"{what} could not be written ({_reason(error)}); {kept}. "
        "Free some space (or choose another --run-dir), then rerun with --resume"
    )


def remove_orphans(d: Path) -> None:
    """Temp files of writes that a kill interrupted: ``.<name>.<random>.tmp`` beside the run's
    files (:func:`atomic_open`) and TF's ``ckpt/ckpt-N_temp*``. Only the run's own regular
    files and folders of those names are removed: never a link, nor anything through one (a
    linked ``ckpt`` is not looked into). Complete files are never touched."""
    import shutil

    if not d.is_dir():  # the run directory itself is the one the user named, a link or not
        return
    for p in d.iterdir():
        if _ORPHAN_FILE.fullmatch(p.name) and is_own_file(p):
            p.unlink(missing_ok=True)
    ckpt = d / "ckpt"
    for p in ckpt.iterdir() if is_own_dir(ckpt) else ():
        if not _ORPHAN_TF.fullmatch(p.name):
            continue
        if is_own_dir(p):
            shutil.rmtree(p, ignore_errors=True)
        elif is_own_file(p):
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
        raise FileFormatError(f"{path}: not a readable metrics.json ({e})") from e
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
            "precision": config.precision,
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
            f"{rec['images_per_s']:.0f} img/s  {rec['time_s']:.1f}s{knn}  {self.data['precision']}"
        )
