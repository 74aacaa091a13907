"""A training run's life around either framework's loop, written once for both.

``torch_impl.train`` and ``tf_impl.train`` keep what their framework forces (the data pipeline,
the step, devices, processes and strategies); what a run does with its run directory happens
here, in this order:

1. :meth:`RunLifecycle.open`: on the process that writes the run directory (torch's rank 0,
   TF's chief), lock it (an exclusive ``fcntl.flock`` on ``run_dir/.lock``, held until
   :meth:`RunLifecycle.close`; a second run into it is refused with one line), then
   ``shared.run.runlog.prepare_run_dir`` (refuse, continue or replace an earlier run). Then,
   on every process, a resumed run's config is checked against its ``config.json``, the splits
   are loaded and the steps per epoch counted (at least one).
2. :meth:`RunLifecycle.restore`: on ``resume``, the newest checkpoint is restored.
3. :meth:`RunLifecycle.start`: the run log (``config.json``, ``metrics.json``), the scalar
   writer (TensorBoard) and the health monitor, on the writing process.
4. :meth:`RunLifecycle.run_epochs`: per epoch, the framework's pass; a non-finite loss stops the
   run naming the last finite checkpoint; then :meth:`RunLifecycle.end_epoch`.
5. :meth:`RunLifecycle.close` (the ``with`` block's end): the writer closed, the lock released.

Everything a run writes or deletes is inside its run directory: the lock and the checks refuse
a symbolic link among the run's own files and folders (``.lock``, ``ckpt``, ``tb``, ...) before
anything is written. A full disk or quota while the logs are written (``config.json``,
``metrics.json``, TensorBoard) stops the run with one line naming the last intact checkpoint
(``shared.run.runlog.DiskFullError``); a checkpoint that does not fit is the checkpoint
module's ``CheckpointWriteError``.

The framework reaches this module only as functions (:class:`Hooks`), so it imports neither.
"""

from __future__ import annotations

import contextlib
import math
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from shared.run.config import TrainConfig, check_resume, load_config
from shared.run.datasets import train_test_splits
from shared.run.errors import ConfigError
from shared.run.health import HEALTH_IMAGES, HealthMonitor
from shared.run.runlog import (
    DiskFullError,
    RunLog,
    disk_full_error,
    first_non_finite,
    is_disk_full,
    lock_run_dir,
    non_finite_error,
    prepare_run_dir,
    refuse_link,
)

__all__ = ["SCALARS", "EpochTally", "Hooks", "RunLifecycle", "ScalarWriter", "epoch_bar"]

SCALARS = ("loss", "lr", "knn_top1", "z_spread", "weight_norm")  # written per epoch when set


@dataclass
class ScalarWriter:
    """A framework's TensorBoard writer: ``scalar(key, value, step)``, ``flush()``, ``close()``."""

    scalar: Callable[[str, float, int], Any]
    flush: Callable[[], Any]
    close: Callable[[], Any]


@dataclass
class Hooks:
    """The framework's side of a run: its functions, unbound, with the signatures that both
    ``torch_impl`` and ``tf_impl`` give them.

    Attributes:
        checkpoint: the framework's checkpoint module: ``save_checkpoint(folder, epoch, model,
            optimizer)``, ``restore_checkpoint(run_dir, model, optimizer) -> epoch``,
            ``latest_checkpoint(run_dir) -> path | None`` and ``DISK_FULL_ERRORS`` (what its
            file writers raise for a full disk besides ``OSError``; optional).
        export_weights: ``(model) -> {name: array}``, the canonical weights.
        projections: ``(model, images, device) -> z``: uint8 NHWC images (N, S, S, 3) to their
            projections (N, D), for the health monitor.
        knn: ``(model, train, test, device) -> top-1``, the kNN monitor.
        open_writer: ``(run_dir) -> ScalarWriter``.
    """

    checkpoint: Any
    export_weights: Callable
    projections: Callable
    knn: Callable
    open_writer: Callable[[Path], ScalarWriter]


def epoch_bar(batches, steps: int, label: str, epoch: int, epochs: int, shown: bool):
    """``batches`` behind a progress bar on stderr (``label epoch e/E``), left when done;
    ``shown=False``: no bar."""
    return tqdm(
        batches,
        total=steps,
        desc=f"{label} epoch {epoch + 1}/{epochs}",
        leave=False,
        disable=not shown,
        file=sys.stderr,
        mininterval=0.5,
    )


# Steps between two reads of the losses: each read is one host synchronisation (a GPU waits for
# the host only there), so a step does not wait for the one before it to finish.
LOSS_READ_EVERY = 25


class EpochTally:
    """One epoch's mean loss, throughput and time, and the guard against a non-finite loss.

    The framework hands each step's loss as it is (a device scalar, unread); the tally keeps
    them and reads them all at once with ``read`` every ``every`` steps and at the epoch's end,
    so the loop synchronises with the device once per ``every`` steps, not once per step.

    Args:
        on_step: called with each step's loss (a float), in step order, when it is read.
        read: ``[loss, ...] -> [float, ...]`` in one transfer (torch: ``torch.stack(xs)
            .tolist()``); default ``float`` of each.
        every: steps between two reads.
    """

    def __init__(
        self,
        on_step: Callable[[float], Any] | None = None,
        read: Callable[[list], list] | None = None,
        every: int = LOSS_READ_EVERY,
    ):
        self.on_step, self.every = on_step, every
        self.read = read or (lambda xs: [float(x) for x in xs])
        self.t0, self.total, self.seen = time.perf_counter(), 0.0, 0
        self.pending: list = []
        self.last: float | None = None

    def add(self, loss, images: int, step: int) -> float | None:
        """Keep one step's ``loss`` over its (global) batch of ``images`` (``step``: 1-based in
        the epoch); every ``every`` steps, read the kept ones (:meth:`flush`).

        Returns:
            The newest loss read now, or ``None`` when nothing was read.
        """
        self.pending.append((loss, images, step))
        return self.flush() if len(self.pending) >= self.every else None

    def flush(self) -> float | None:
        """Read the kept losses in one transfer and count them.

        Raises:
            FloatingPointError: a loss is NaN or infinite (named with its step);
                :meth:`RunLifecycle.run_epochs` turns it into a ``NonFiniteError``.
        """
        if not self.pending:
            return None
        values = self.read([loss for loss, _, _ in self.pending])
        for value, (_, images, step) in zip(values, self.pending, strict=True):
            if not math.isfinite(value):
                raise FloatingPointError(f"the loss became {value} at step {step}")
            if self.on_step is not None:
                self.on_step(value)
            self.total, self.seen = self.total + value * images, self.seen + images
        self.pending.clear()
        self.last = values[-1]
        return self.last

    def record(self, epoch: int, lr: float) -> dict:
        """The epoch's record: ``{"epoch" (1-based), "loss", "lr", "images_per_s", "time_s"}``;
        the losses not read yet are read first."""
        self.flush()
        elapsed = time.perf_counter() - self.t0
        return {
            "epoch": epoch + 1,
            "loss": self.total / self.seen,
            "lr": lr,
            "images_per_s": self.seen / elapsed,
            "time_s": elapsed,
        }


def _now(fn: Callable[[], None]) -> None:
    fn()


class RunLifecycle:
    """One training run's directory, lock, logs, monitors and checkpoints (see the module).

    Args:
        cfg: the resolved config; the framework may still set fields (``amp``) before
            :meth:`start` writes ``config.json``.
        is_main: this process writes the run directory (torch's rank 0, TF's chief).
        collective_save: saving a checkpoint is collective (TF's multi-worker strategy), so the
            other processes save theirs to a scratch folder that is then deleted.
    """

    def __init__(self, cfg: TrainConfig, is_main: bool = True, collective_save: bool = False):
        self.cfg, self.main, self.collective_save = cfg, is_main, collective_save
        self.run_dir = Path(cfg.run_dir)
        self._held = contextlib.ExitStack()  # the lock, from open() to close()
        self.hooks: Hooks | None = None
        self.model = self.optimizer = self.device = None
        self.splits = (None, None)
        self.changed: list[str] = []
        self.runlog = self.writer = self.health = None

    def __enter__(self) -> RunLifecycle:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.close()
        except DiskFullError:
            if exc is None:
                raise  # else the error in flight propagates: it came first

    def open(self, load_split, on_main_first=_now):
        """Claim the run directory, check a resume, load the data; ``(train, test, steps)``.

        ``load_split``: the framework's ``data.load_split``. ``on_main_first(fn)``: runs
        ``fn`` on the writing process while the others wait (torch's ranks); by default, now.
        ``test`` is ``None`` without a kNN monitor or labels.

        Raises:
            RunDirError: the directory is locked by another run, holds a run, or is unusable.
            ConfigError: a resume that does not fit, or fewer images than one batch.
        """
        on_main_first(self._claim)
        cfg, saved = self.cfg, self.run_dir / "config.json"
        self.changed = (
            check_resume(load_config(self.run_dir), cfg) if cfg.resume and saved.exists() else []
        )
        self.splits = train_test_splits(load_split, cfg)
        steps = len(self.splits[0]) // cfg.batch_size
        if steps < 1:
            raise ConfigError(
                f"batch_size: expected <= the {len(self.splits[0])} training images, "
                f"got {cfg.batch_size}"
            )
        return (*self.splits, steps)

    def _claim(self) -> None:
        """The lock first, then the directory's checks: nothing is written before both."""
        if self.main:
            self._held.enter_context(lock_run_dir(self.run_dir))
            prepare_run_dir(self.run_dir, self.cfg.resume, self.cfg.overwrite)

    def restore(self, hooks: Hooks, model, optimizer, device=None) -> int:
        """Bind the framework's functions to this run's model; the epoch to start from: 0, or
        on ``resume`` the newest checkpoint's, restored into ``model`` and ``optimizer``."""
        self.hooks, self.model, self.optimizer, self.device = hooks, model, optimizer, device
        ck = hooks.checkpoint
        if not self.cfg.resume or ck.latest_checkpoint(self.run_dir) is None:
            return 0
        start_epoch = ck.restore_checkpoint(self.run_dir, model, optimizer)
        if self.main:
            print(
                f"[{self.cfg.framework}/{self.cfg.method}] resumed from epoch {start_epoch} "
                f"in {self.run_dir}",
                flush=True,
            )
        return start_epoch

    def start(self, start_epoch: int) -> None:
        """The run log (writes ``config.json``), the writer and the health monitor's baseline.

        Raises:
            DiskFullError: the disk or quota is full (names the last intact checkpoint).
            RunDirError: ``run_dir/tb`` is a symbolic link.
        """
        if not self.main:
            return
        h = self.hooks
        with self._disk_full("config.json / metrics.json"):
            self.runlog = RunLog.resume(self.run_dir, self.cfg, start_epoch, self.changed)
        refuse_link(self.run_dir / "tb")  # the writer creates and writes its folder
        with self._disk_full("the TensorBoard log"):
            self.writer = h.open_writer(self.run_dir)
        images = self.splits[0].images[:HEALTH_IMAGES]
        self.health = HealthMonitor(
            h.projections(self.model, images, self.device), h.export_weights(self.model)
        )

    @contextlib.contextmanager
    def _disk_full(self, what: str):
        """Around a write of the run's logs: a full disk or quota becomes one line
        (``DiskFullError``) naming ``what`` and the last intact checkpoint; any other error
        passes unchanged."""
        extra = tuple(getattr(self.hooks.checkpoint, "DISK_FULL_ERRORS", ()))
        try:
            yield
        except (OSError, *extra) as e:
            if not is_disk_full(e, extra):
                raise
            last = self.hooks.checkpoint.latest_checkpoint(self.run_dir)
            where = f"{what} in {str(self.run_dir)!r}"
            raise disk_full_error(where, e, last) from e

    def run_epochs(self, start_epoch: int, run_epoch: Callable[[int], dict]) -> dict:
        """``run_epoch(epoch) -> record`` for each epoch left, each followed by
        :meth:`end_epoch`; the last record (``{"loss": nan}`` when none was left)."""
        record = {"loss": float("nan")}
        for epoch in range(start_epoch, self.cfg.epochs):
            try:
                record = run_epoch(epoch)
            except FloatingPointError as e:  # a non-finite loss: stop before any checkpoint
                last = self.hooks.checkpoint.latest_checkpoint(self.run_dir)
                raise non_finite_error(str(e), epoch + 1, last) from e
            self.end_epoch(record, epoch)
        return record

    def end_epoch(self, record: dict, epoch: int) -> None:
        """Refuse non-finite weights; then, on the writing process, the health and kNN
        monitors, the scalars, the epoch line and ``metrics.json``, and the checkpoint."""
        h, ck = self.hooks, self.hooks.checkpoint
        state = h.export_weights(self.model)
        bad = first_non_finite(state)
        if bad is not None:  # never checkpoint non-finite state
            last = ck.latest_checkpoint(self.run_dir)
            raise non_finite_error(f"weight {bad} became non-finite", epoch + 1, last)
        if not self.main:
            if self.collective_save:
                with tempfile.TemporaryDirectory() as scratch:
                    ck.save_checkpoint(scratch, epoch + 1, self.model, self.optimizer)
            return
        train, test = self.splits
        z = h.projections(self.model, train.images[:HEALTH_IMAGES], self.device)
        record.update(self.health.check(z, state, epoch + 1))
        monitor = test is not None and self.cfg.knn_due(epoch)
        record["knn_top1"] = h.knn(self.model, train, test, self.device) if monitor else None
        with self._disk_full("the TensorBoard log"):
            for key in SCALARS:
                if record[key] is not None:
                    self.writer.scalar(key, record[key], epoch + 1)
            self.writer.flush()
        # metrics first: resume drops the rows past the last checkpoint
        with self._disk_full("metrics.json"):
            line = self.runlog.epoch(**record)
        print(line, flush=True)
        ck.save_checkpoint(self.run_dir, epoch + 1, self.model, self.optimizer)

    def result(self, record: dict) -> dict:
        """``train``'s return value: ``{"run_dir", "epochs", "final_loss", "model"}``."""
        return {
            "run_dir": str(self.run_dir),
            "epochs": self.cfg.epochs,
            "final_loss": record["loss"],
            "model": self.model,
        }

    def close(self) -> None:
        """Close the writer and release the lock (also after an error)."""
        try:
            if self.writer is not None:
                writer, self.writer = self.writer, None
                with self._disk_full("the TensorBoard log"):
                    writer.close()
        finally:
            self._held.close()
