"""The run lifecycle written once (``shared.run.lifecycle``), and the lock on a run directory.

* The lifecycle alone, with stand-in framework functions: what it writes, calls and prints,
  in order; the guards against a non-finite loss or weight; the epoch tally's mean.
* The lock, in both frameworks: two trainings started at once into one directory (two real
  ``python -m torch_impl train`` processes), a directory held by another run (refused, its
  files untouched, ``--overwrite`` included), and a lock left by a killed holder (no obstacle
  to ``--resume``).
"""

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from shared.run.config import PACKAGES, TrainConfig
from shared.run.data import Split
from shared.run.errors import ConfigError, NonFiniteError, RunDirError
from shared.run.lifecycle import EpochTally, Hooks, RunLifecycle, ScalarWriter
from shared.run.runlog import LOCK_FILE, holds_a_run, lock_run_dir, prepare_run_dir

ROOT = Path(__file__).resolve().parents[1]
LOCKED = r"run_dir: .* is in use: another run holds its lock \(.*\.lock\)"


class Stand:
    """Stand-in framework functions that record their calls (``calls``)."""

    def __init__(self, run_dir: Path, weights=None):
        self.calls, self.saved = [], []
        self.weights = weights or {"w/kernel": np.ones(4)}
        self.checkpoint = SimpleNamespace(
            save_checkpoint=lambda folder, epoch, model, opt: self.saved.append((folder, epoch)),
            restore_checkpoint=lambda run_dir, model, opt: 3,
            latest_checkpoint=lambda run_dir: self.saved[-1] if self.saved else None,
        )

    def hooks(self) -> Hooks:
        rng = np.random.default_rng(0)

        def projections(model, images, device):
            self.calls.append(("projections", len(images), device))
            return rng.standard_normal((len(images), 8))

        def knn(model, train, test, device):
            self.calls.append(("knn",))
            return 0.5

        def writer(run_dir):
            return ScalarWriter(
                lambda key, value, step: self.calls.append(("scalar", key, value, step)),
                lambda: self.calls.append(("flush",)),
                lambda: self.calls.append(("close",)),
            )

        return Hooks(self.checkpoint, lambda model: self.weights, projections, knn, writer)


def _split(n: int) -> Split:
    return Split(np.zeros((n, 8, 8, 3), np.uint8), np.arange(n) % 2)


def _life_cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(method="simclr", epochs=2, batch_size=4, knn_every=2, run_dir=str(tmp_path / "r"))
    return TrainConfig(**{**base, **kw}).resolve("torch")


def test_the_lifecycle_writes_calls_and_prints_in_order(tmp_path, capsys):
    cfg = _life_cfg(tmp_path)
    stand = Stand(tmp_path)
    records = iter(
        [
            {"epoch": e, "loss": 2.0 / e, "lr": 0.1 * e, "images_per_s": 8.0, "time_s": 1.0}
            for e in (1, 2)
        ]
    )
    with RunLifecycle(cfg) as life:
        train, test, steps = life.open(
            lambda name, split, *a: _split(10 if split == "train" else 6)
        )
        assert (len(train), len(test), steps) == (10, 6, 2)  # 10 // 4
        assert life.restore(stand.hooks(), "model", "opt", "dev") == 0  # no resume
        life.start(0)
        assert (Path(cfg.run_dir) / "config.json").is_file()
        last = life.run_epochs(0, lambda epoch: next(records))
        out = life.result(last)
    assert out == {"run_dir": cfg.run_dir, "epochs": 2, "final_loss": 1.0, "model": "model"}
    assert stand.saved == [(Path(cfg.run_dir), 1), (Path(cfg.run_dir), 2)]
    scalars = [(c[1], c[3]) for c in stand.calls if c[0] == "scalar"]
    assert [k for k, s in scalars if s == 1] == ["loss", "lr", "z_spread", "weight_norm"]
    assert [k for k, s in scalars if s == 2] == [
        "loss",
        "lr",
        "knn_top1",
        "z_spread",
        "weight_norm",
    ]
    assert stand.calls[0] == ("projections", 10, "dev") and stand.calls[-1] == ("close",)
    assert stand.calls.count(("knn",)) == 1  # knn_every 2: epoch 2 only
    metrics = json.loads((Path(cfg.run_dir) / "metrics.json").read_text())
    assert [(e["epoch"], e["loss"], e["knn_top1"]) for e in metrics["epochs"]] == [
        (1, 2.0, None),
        (2, 1.0, 0.5),
    ]
    assert metrics["epochs"][0]["weight_norm"] == 2.0  # |ones(4)|
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[torch/simclr] epoch   1  loss 2.0000  lr 1.00e-01")
    assert lines[1].endswith("knn_top1 50.0%  float32")  # the precision ends each line


def test_the_lifecycle_refuses_too_few_images_and_non_finite_values(tmp_path):
    cfg = _life_cfg(tmp_path, knn_every=0)
    with (
        RunLifecycle(cfg) as life,
        pytest.raises(ConfigError, match="batch_size: expected <= the 3"),
    ):
        life.open(lambda *a: _split(3))
    stand = Stand(tmp_path, weights={"w/kernel": np.array([1.0, np.inf])})
    with RunLifecycle(_life_cfg(tmp_path, knn_every=0, overwrite=True)) as life:
        life.open(lambda *a: _split(8))
        life.restore(stand.hooks(), "model", "opt")
        life.start(0)
        stand.saved.append("ckpt-0007")
        with pytest.raises(
            NonFiniteError,
            match="weight w/kernel became non-finite in epoch 1; the last finite checkpoint is ckpt-0007",
        ):
            life.run_epochs(
                0,
                lambda e: {"epoch": 1, "loss": 1.0, "lr": 0.1, "images_per_s": 1.0, "time_s": 1.0},
            )

        def nan_loss(epoch):
            tally = EpochTally()
            tally.add(1.0, 4, 1)
            tally.add(float("nan"), 4, 2)
            tally.record(epoch, 0.1)  # the kept losses are read at the epoch's end

        with pytest.raises(
            NonFiniteError,
            match="the loss became nan at step 2 in epoch 1; the last finite checkpoint is ckpt-0007",
        ):
            life.run_epochs(0, nan_loss)
    assert stand.saved == ["ckpt-0007"]  # neither reached a checkpoint


def test_epoch_tally_is_the_image_weighted_mean():
    seen = []
    tally = EpochTally(seen.append)
    for loss, n in [(2.0, 4), (5.0, 2), (0.5, 2)]:
        tally.add(loss, n, 1)
    rec = tally.record(epoch=2, lr=0.25)
    assert seen == [2.0, 5.0, 0.5]
    assert rec["epoch"] == 3 and rec["lr"] == 0.25
    assert rec["loss"] == pytest.approx((2.0 * 4 + 5.0 * 2 + 0.5 * 2) / 8)  # 2.375
    assert rec["images_per_s"] == pytest.approx(8 / rec["time_s"])


def test_the_lock_file_is_no_run_and_overwrite_keeps_it(tmp_path):
    run = tmp_path / "run"
    with lock_run_dir(run):
        assert (run / LOCK_FILE).is_file() and not holds_a_run(run)
        prepare_run_dir(run, resume=False, overwrite=False)  # the lock alone: an empty folder
        (run / "config.json").write_text("{}")
        prepare_run_dir(run, resume=False, overwrite=True)
        assert [p.name for p in run.iterdir()] == [LOCK_FILE]
        with pytest.raises(RunDirError, match=LOCKED):
            lock_run_dir(run)
    lock_run_dir(run).close()  # released with the first: a stale file locks nothing
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="is a file, expected a directory"):
        lock_run_dir(tmp_path / "file")


# --- the lock in both frameworks ------------------------------------------------------------

TINY = ["--epochs", "1", "--limit-train", "512", "--batch-size", "32", "--knn-every", "0"]


def _cfg(run_dir, **kw) -> TrainConfig:
    base = dict(method="simclr", epochs=1, batch_size=16, limit_train=32, knn_every=0, amp=False)
    return TrainConfig(**{**base, "run_dir": str(run_dir), **kw})


def _train(framework):
    pytest.importorskip(framework)
    return __import__(f"{PACKAGES[framework]}.train", fromlist=["x"]).train


def _snapshot(run: Path) -> dict:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def test_two_trainings_started_at_once_one_runs_the_other_is_refused(tmp_path):
    """Two ``python -m torch_impl train`` processes into one new directory: exactly one trains
    (its epoch of 16 steps holds the lock for seconds); the other says why in one line."""
    pytest.importorskip("torch")
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch_impl", "train", *TINY, "--no-amp", "--run-dir", str(run)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    gate = threading.Barrier(2)

    def start():
        gate.wait()
        return subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    procs = [None, None]
    threads = [threading.Thread(target=lambda i=i: procs.__setitem__(i, start())) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outs = [(*p.communicate(timeout=120), p) for p in procs]
    outs = [(p.returncode, out, err) for out, err, p in outs]
    codes = sorted(rc for rc, _, _ in outs)
    assert codes == [0, 2], outs
    (_, won_out, _), (_, lost_out, lost_err) = sorted(outs, key=lambda o: o[0])
    assert lost_out == "" and len(lost_err.strip().splitlines()) == 1, lost_err
    assert lost_err.startswith("error: run_dir: ") and "another run holds its lock" in lost_err
    assert str(run) in lost_err
    assert won_out.count("epoch   1  loss") == 1
    metrics = json.loads((run / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1]
    assert sorted(p.name for p in run.glob("ckpt-*")) == ["ckpt-0001.pt"]


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_a_run_dir_held_by_another_run_is_refused_and_left_intact(tmp_path, framework, trained_run):
    """The directory of a finished run (the session's copy), locked as if a run were writing
    it: a second run is refused with ``--resume`` and with ``--overwrite``, and not one byte
    changes."""
    train = _train(framework)
    run = trained_run(framework, _cfg(tmp_path / "run"))
    before = _snapshot(run)
    with lock_run_dir(run):
        for kw in ({"resume": True, "epochs": 2}, {"overwrite": True}, {}):
            with pytest.raises(RunDirError, match=LOCKED):
                train(_cfg(run, **kw), progress=False)
            assert _snapshot(run) == before, kw
    assert train(_cfg(run, overwrite=True), progress=False)["epochs"] == 1  # released: fine


HOLDER = (
    "import sys, time\n"
    "from shared.run.runlog import lock_run_dir\n"
    "held = lock_run_dir(sys.argv[1])\n"
    "print('held', flush=True)\n"
    "time.sleep(120)\n"
)


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_a_lock_left_by_a_killed_run_does_not_block_resume(tmp_path, framework, trained_run):
    train = _train(framework)
    run = trained_run(framework, _cfg(tmp_path / "run"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError, match=LOCKED):  # held while the holder lives
            train(_cfg(run, epochs=2, resume=True), progress=False)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert (run / LOCK_FILE).is_file()  # the stale file stays, and locks nothing
    train(_cfg(run, epochs=2, resume=True), progress=False)
    metrics = json.loads((run / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
