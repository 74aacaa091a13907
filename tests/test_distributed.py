"""Two processes (torch DDP, gloo) or two replicas (tf.distribute, 2 logical CPUs) on the two
halves of a batch take the same step as one process on the whole batch, in float64.

Compared by canonical name, with the tolerance table of ``shared.parity.tolerances``: the loss (the
mean over ranks), every gradient (after the mean over ranks), and after the step every weight,
BN running statistic and, for MoCo, the key encoder after the EMA, the queue and its pointer.
BatchNorm is made exactly comparable: per-process BN over 2 processes against SplitBatchNorm
with 2 splits in one process, SyncBatchNorm against BN over the whole batch. The cases are in
``tests/dist_cases.py``; the workers are ``tests/dist_torch_worker.py`` and
``tests/dist_tf_worker.py``. The 2-process and 2-replica sides run in their own processes (a
process group, and logical devices that must be set before TensorFlow starts): one worker per
framework for the whole module, which then also runs the 2-process (2-replica) legs of the
training test; the one-process sides run in the test's process meanwhile.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from shared.parity import compare as parity

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from dist_cases import CASES, FIRST_DONE, GO, STEPS_DONE  # noqa: E402


def _env() -> dict:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1"}


class Worker:
    """A worker process (with its children: torchrun's ranks), its output in ``out/worker.log``;
    it says how far it got by the files of ``tests/dist_cases.py`` in ``out``."""

    def __init__(self, args: list[str], out: Path):
        self.out, self.log = out, out / "worker.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=_env(), start_new_session=True
            )

    def output(self) -> str:
        return self.log.read_text()[-6000:]

    def reached(self, name: str, timeout: float = 240) -> None:
        """Wait for ``out/name``; fail with the worker's output if it exits first or is late."""
        deadline = time.monotonic() + timeout
        while not (self.out / name).exists():
            assert self.proc.poll() is None, f"exit {self.proc.returncode}: {self.output()}"
            assert time.monotonic() < deadline, f"no {name} in {timeout} s: {self.output()}"
            time.sleep(0.05)

    def finish(self, timeout: float = 240) -> None:
        """Wait for the worker to exit, and check that it succeeded."""
        try:
            self.proc.wait(timeout=timeout)
        finally:
            self.kill()
        assert self.proc.returncode == 0, self.output()

    def kill(self) -> None:
        """Stop the worker and its children, unless they are gone: SIGTERM first, which torchrun
        passes on to its ranks (each in a session of its own), then SIGKILL."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=30)


# The command lines a user runs: a 2-process (or 2-replica) epoch, then the same run resumed
# with the other world size (the queue does not depend on it: every rank holds all of it). The
# one-process leg runs in the test's process (the same CLI, ``main``); the 2-process and
# 2-replica legs run in the module's worker, after its steps (``run_legs``, tests/dist_cases.py).
TRAIN = ["--epochs", "1", "--limit-train", "64", "--batch-size", "16", "--knn-every", "0"]
METHOD = {"torch": "moco", "tensorflow": "simclr"}


def _legs(framework: str, run: Path) -> tuple[list[str], str]:
    """The training test's arguments (a run in ``run``) and the worker's legs, as JSON: the
    first epoch in 2 processes (replicas), and after the test's leg (epoch 2, in 1) epoch 3."""
    args = ["train", "--method", METHOD[framework], "--run-dir", str(run), *TRAIN, "--no-progress"]
    two = ["--strategy", "mirrored", "--cpu-devices", "2"] if framework == "tensorflow" else []
    then = ["--epochs", "3", "--resume", "--allow-config-change"]  # and back: 1 -> 2
    return args, json.dumps({"first": [*args, *two], "then": [*args, *then, *two]})


def _compare(single: dict, dist: dict, context: str) -> list:
    rows = parity.compare_grouped(single, dist, dtype="float64", temperature=0.2)
    return parity.raise_if_failed(rows, context)


@pytest.fixture(scope="module")
def torch_worker(tmp_path_factory):
    """The two ranks under torchrun: the cases' steps, then the training legs; meanwhile the
    one-process side runs in this process (``one_step`` needs no process group).
    ``(single, dist, worker, run)``."""
    pytest.importorskip("torch")
    import dist_torch_worker

    single, dist = tmp_path_factory.mktemp("single"), tmp_path_factory.mktemp("dist")
    run = tmp_path_factory.mktemp("torch-train") / "run"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]  # a free port
    worker = [str(HERE / "dist_torch_worker.py"), str(dist), "--train", _legs("torch", run)[1]]
    proc = Worker([*torchrun, "--nproc_per_node", "2", *worker], dist)
    try:
        dist_torch_worker.write_single(single)
        yield single, dist, proc, run
    finally:
        proc.kill()


@pytest.fixture(scope="module")
def torch_results(torch_worker):
    single, dist, worker, _ = torch_worker
    worker.reached(STEPS_DONE)
    return single, dist


@pytest.fixture(scope="module")
def tf_worker(tmp_path_factory):
    """The two replicas in a process of their own (its logical CPUs are set before TensorFlow
    starts): the cases' steps, then the training legs; meanwhile the one-replica side runs in
    this process. ``(out, worker, run)``."""
    pytest.importorskip("tensorflow")
    import dist_tf_worker

    out = tmp_path_factory.mktemp("tf")
    run = tmp_path_factory.mktemp("tf-train") / "run"
    worker = [str(HERE / "dist_tf_worker.py"), str(out), "--train", _legs("tensorflow", run)[1]]
    proc = Worker([sys.executable, *worker], out)
    try:
        dist_tf_worker.write_single(out)
        yield out, proc, run
    finally:
        proc.kill()


@pytest.fixture(scope="module")
def tf_results(tf_worker):
    out, worker, _ = tf_worker
    worker.reached(STEPS_DONE)
    return out


def _load(path: Path) -> dict:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("case", sorted(CASES))
def test_torch_ddp_step_equals_one_process(torch_results, case):
    single, dist = (_load(d / f"{case}.npz") for d in torch_results)
    assert sorted(single) == sorted(dist)
    rows = _compare(single, dist, f"torch {case}")
    assert len(rows) == len(single) and any(r.quantity == "grad" for r in rows)


@pytest.mark.parametrize("case", sorted(CASES))
def test_tf_mirrored_step_equals_one_replica(tf_results, case):
    single, dist = (_load(tf_results / f"{case}-{side}.npz") for side in ("single", "dist"))
    assert sorted(single) == sorted(dist)
    rows = _compare(single, dist, f"tensorflow {case}")
    assert len(rows) == len(single) and any(r.quantity == "grad" for r in rows)


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_gathered_nt_xent_is_the_numpy_share_and_its_gradient(torch_results, tf_results, framework):
    """Rank r's loss is ``shared.oracle.losses.nt_xent_shards``' entry r (NumPy), and the gradient on
    its rows is W times the gradient of the one-process loss (``nt_xent_grad``): each rank's
    rows receive the sum over ranks of their losses' gradients, which DDP (or the mean over
    replicas) then divides by W."""
    from dist_cases import WORLD, projections

    from shared.oracle.losses import nt_xent_grad, nt_xent_shards

    path = torch_results[1] if framework == "torch" else tf_results
    got = _load(path / "shards.npz")
    z1, z2 = projections()
    d1, d2 = nt_xent_grad(z1, z2, 0.5)
    parity.assert_close(
        {"loss": nt_xent_shards(z1, z2, 0.5, WORLD), "grad": {"z1": WORLD * d1, "z2": WORLD * d2}},
        {"loss": got["losses"], "grad": {"z1": got["dz1"], "z2": got["dz2"]}},
        dtype="float64",
        temperature=0.5,
        context=f"{framework} gathered NT-Xent",
    )


@pytest.mark.parametrize("case", ["moco_shuffle", "moco_plain"])
def test_every_rank_enqueued_every_key(torch_results, tf_results, case):
    """The queue after one step holds 2N (symmetric) or N keys past the pointer: all ranks'."""
    for path in (torch_results[1] / f"{case}.npz", tf_results / f"{case}-dist.npz"):
        state = _load(path)
        per_step = 16 if CASES[case][2].get("symmetric") else 8  # MoCo(symmetric=False)
        assert int(state["after/queue_ptr"]) == per_step % len(state["after/queue"])


def _world(run_dir: Path) -> int:
    return json.loads((run_dir / "config.json").read_text())["world_size"]


def _epochs(run_dir: Path) -> list[int]:
    return [e["epoch"] for e in json.loads((run_dir / "metrics.json").read_text())["epochs"]]


def test_torchrun_trains_and_resumes_in_one_process(torch_worker):
    """``torchrun --nproc_per_node 2`` trains epoch 1 (the worker's ranks run ``torch_impl``'s
    CLI), one process resumes it for epoch 2, and 2 processes again for epoch 3."""
    from torch_impl.__main__ import main

    _, dist, worker, run = torch_worker
    args, _ = _legs("torch", run)
    worker.reached(FIRST_DONE)
    assert (dist / FIRST_DONE).read_text() == "0", worker.output()
    assert _world(run) == 2 and sorted(p.name for p in run.glob("ckpt-*")) == ["ckpt-0001.pt"]
    more = ["--epochs", "2", "--resume", "--allow-config-change"]  # world size 2 -> 1
    assert main([*args, *more]) == 0
    assert _world(run) == 1 and _epochs(run) == [1, 2]
    (dist / GO).touch()  # and back: 1 -> 2
    worker.finish()
    assert _world(run) == 2 and _epochs(run) == [1, 2, 3]


def test_tf_mirrored_trains_and_resumes_in_one_replica(tf_worker):
    """``--strategy mirrored --cpu-devices 2`` trains epoch 1 (in the worker, whose TensorFlow
    has the 2 logical CPUs), one replica resumes it for epoch 2, and 2 replicas for epoch 3."""
    from tf_impl.__main__ import main

    out, worker, run = tf_worker
    args, _ = _legs("tensorflow", run)
    worker.reached(FIRST_DONE)
    assert (out / FIRST_DONE).read_text() == "0", worker.output()
    assert _world(run) == 2 and (run / "ckpt").is_dir()
    assert main([*args, "--epochs", "2", "--resume", "--allow-config-change"]) == 0
    assert _world(run) == 1 and _epochs(run) == [1, 2]
    (out / GO).touch()  # and back: 1 -> 2
    worker.finish()
    assert _world(run) == 2 and _epochs(run) == [1, 2, 3]


def test_multi_worker_without_tf_config_is_one_error_line(tmp_path, monkeypatch, capsys):
    """In-process: the command's error line and exit status (``tests/test_errors.py`` shows a
    real ``python -m tf_impl`` prints nothing else, its import noise filtered)."""
    pytest.importorskip("tensorflow")
    from tf_impl.__main__ import main

    monkeypatch.delenv("TF_CONFIG", raising=False)
    args = ["train", "--strategy", "multi_worker", "--run-dir", str(tmp_path), *TRAIN]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and err[0].startswith(
        "error: strategy multi_worker: TF_CONFIG is not set"
    )


def test_resume_with_another_world_size_needs_consent():
    """The world size changes the BN groups, so it changes the trajectory: named, refused."""
    from shared.run.config import TrainConfig, check_resume

    saved = TrainConfig(method="moco").resolve("torch", 2)
    with pytest.raises(ValueError, match="world_size: 2 -> 1 differ"):
        check_resume(saved, TrainConfig(method="moco", resume=True).resolve("torch", 1))


def test_missing_rendezvous_is_one_error_line(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    from torch_impl.__main__ import main

    for name, value in {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "localhost"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    assert main(["train", "--run-dir", str(tmp_path), *TRAIN]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error: WORLD_SIZE=2 but these are not set: MASTER_PORT" in err[0]


@pytest.mark.parametrize("augment", ["batch", "per_sample"])
def test_each_rank_loads_its_share_of_the_epoch(augment):
    """Images that carry their index (constant grey i * 7; no jitter, full crops): the two
    ranks' batches are disjoint halves. With --augment batch each step's halves are exactly the
    one-process batch; per_sample draws its own order (DistributedSampler, set_epoch)."""
    pytest.importorskip("torch")
    from shared.run.config import TrainConfig
    from shared.run.data import Split
    from torch_impl.train import epoch_batches

    grey = (np.arange(32, dtype=np.uint8) * 7)[:, None, None, None]
    split = Split(np.broadcast_to(grey, (32, 32, 32, 3)).copy(), np.zeros(32, np.int64))
    kw = {"batch_size": 8, "color_strength": 0.0, "crop_scale": (1.0, 1.0), "augment": augment}
    one = TrainConfig(**kw).resolve("torch", 1)

    def ids(cfg, rank):
        return [
            sorted(round(float(v) * 255 / 7) for v in x1.float().mean(dim=(1, 2, 3)))
            for x1, _ in epoch_batches(cfg, split, 0, 4, rank)
        ]

    r0, r1 = ids(one.for_world(2), 0), ids(one.for_world(2), 1)
    assert all(len(b) == 4 for b in r0 + r1)
    seen = [i for b in r0 + r1 for i in b]
    assert sorted(seen) == list(range(32))  # disjoint, and the whole epoch
    if augment == "batch":
        assert [sorted(a + b) for a, b in zip(r0, r1, strict=True)] == ids(one, 0)
