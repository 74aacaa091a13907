"""kill -9, then ``--resume``: bit-identical weights and complete metrics, in both frameworks.

One chain per framework, on the design's pair (SimCLR in torch, MoCo in TF, whose state also
holds the queue and its pointer):

1. a training process (the CLI's ``train``) is killed with SIGKILL in the middle of
   epoch 2: it marks the middle step and waits there, and the test kills it;
2. ``--resume`` continues from ckpt 1, and is killed *while writing* ckpt 3: half a temp file
   (torch) or a half-written ``ckpt-3_temp/`` folder (TF) is left behind;
3. resuming again (in the test's process: only the kills need a process of their own)
   continues from ckpt 2 and trains epoch 3 once more.

The uninterrupted run trains in the test's process while the first child runs, and the second
child imports its framework meanwhile (``early_child``, ``tests/conftest.py``).

The final weights equal those of one uninterrupted run, array by array (``np.array_equal``),
and ``metrics.json`` holds each epoch exactly once. No temp file survives.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from shared.run.config import PACKAGES, TrainConfig

EPOCHS = 3
IMAGES, BATCH = 64, 16
STEPS = IMAGES // BATCH  # per epoch
SETUP = {"torch": "simclr", "tensorflow": "moco"}

# Runs in the child: after step STEPS + STEPS // 2 (the middle of epoch 2) it creates MARK and
# waits to be killed; a step is the model's train_step (torch) or the compiled step (TF).
KILL_IN_EPOCH_2 = {
    "torch": """
import sys, time
from pathlib import Path
from torch_impl.{module} import {cls}
real, calls = {cls}.train_step, [0]
def marking(self, *args, **kw):
    loss = real(self, *args, **kw)
    calls[0] += 1
    if calls[0] == {at}:
        Path({mark!r}).touch()
        time.sleep(600)
    return loss
{cls}.train_step = marking
from torch_impl.__main__ import main
""",
    "tensorflow": """
import sys, time
from pathlib import Path
import tf_impl.train as tr
real, calls = tr.compile_step, [0]
def compile_marking(*args, **kw):
    step = real(*args, **kw)
    def marking(*a):
        loss = step(*a)
        calls[0] += 1
        if calls[0] == {at}:
            Path({mark!r}).touch()
            time.sleep(600)
        return loss
    return marking
tr.compile_step = compile_marking
from tf_impl.__main__ import main
""",
}

# Runs in the child: the checkpoint writer dies half-way through the epoch-3 checkpoint.
DIE_IN_WRITE = {
    "torch": """
import os, signal
import torch_impl.checkpoint as ck
real = ck.atomic_write_bytes
def dying(path, data):
    if path.name == "ckpt-0003.pt":
        (path.parent / f".{path.name}.killed.tmp").write_bytes(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    real(path, data)
ck.atomic_write_bytes = dying
from torch_impl.__main__ import main
""",
    "tensorflow": """
import os, signal
import tensorflow as tf
real = tf.train.CheckpointManager.save
def dying(self, checkpoint_number=None, **kw):
    if checkpoint_number == 3:
        temp = os.path.join(self.directory, "ckpt-3_temp")
        os.makedirs(temp, exist_ok=True)
        open(os.path.join(temp, "part-00000-of-00001.data"), "wb").write(b"half")
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, checkpoint_number=checkpoint_number, **kw)
tf.train.CheckpointManager.save = dying
from tf_impl.__main__ import main
""",
}


def _cfg(framework, run_dir, **kw) -> TrainConfig:
    return TrainConfig(
        method=SETUP[framework],
        epochs=EPOCHS,
        batch_size=BATCH,
        limit_train=IMAGES,
        knn_every=0,
        amp=False,
        run_dir=str(run_dir),
        **kw,
    )


def _argv(framework, run_dir, resume=False):
    argv = ["train", "--method", SETUP[framework], "--epochs", str(EPOCHS)]
    argv += ["--batch-size", str(BATCH), "--limit-train", str(IMAGES)]
    argv += ["--knn-every", "0", "--no-amp", "--no-progress"]
    return argv + ["--run-dir", str(run_dir)] + (["--resume"] if resume else [])


def _epochs(run_dir) -> list[int]:
    path = run_dir / "metrics.json"
    return [e["epoch"] for e in json.loads(path.read_text())["epochs"]] if path.exists() else []


@contextlib.contextmanager
def _killed_in_epoch_2(framework, run_dir, mark):
    """Start ``train`` in a child, run the ``with`` body meanwhile, then wait for the child's
    mark in the middle of epoch 2 and SIGKILL it there."""
    method = SETUP[framework]
    code = KILL_IN_EPOCH_2[framework].format(
        module=method,
        cls={"simclr": "SimCLR", "moco": "MoCo"}[method],
        at=STEPS + STEPS // 2,
        mark=str(mark),
    )
    code += f"main({_argv(framework, run_dir)!r})"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 240
    try:
        yield
        while not mark.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the middle of epoch 2 was never reached"
            time.sleep(0.02)
    finally:  # the child waits at the mark for this kill (and is killed on a failure too)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert _epochs(run_dir) == [1] and _has_checkpoint(framework, run_dir, 1)
    assert not _has_checkpoint(framework, run_dir, 2)


def _has_checkpoint(framework, run_dir, epoch) -> bool:
    if framework == "torch":
        return (run_dir / f"ckpt-{epoch:04d}.pt").exists()
    return (run_dir / "ckpt" / f"ckpt-{epoch}.index").exists()


def _final_weights(framework, run_dir) -> dict:
    pkg = PACKAGES[framework]
    ck = __import__(f"{pkg}.checkpoint", fromlist=["x"])
    build_model = __import__(f"{pkg}.methods", fromlist=["x"]).build_model
    model = build_model(_cfg(framework, run_dir).resolve(framework))
    assert ck.restore_checkpoint(run_dir, model) == EPOCHS
    return __import__(f"{pkg}.weights", fromlist=["x"]).export_weights(model)


# TF's case takes 33 s here: it is in the slow set; the default run keeps torch's, and TF's
# resume bit for bit (tests/test_methods.py::test_tf_simclr_traces_once_and_resume_is_bit_exact)
@pytest.mark.parametrize("framework", ["torch", pytest.param("tensorflow", marks=pytest.mark.slow)])
def test_kill_minus_9_then_resume_is_bit_identical(tmp_path, framework, early_child):
    pytest.importorskip(framework)
    pkg = PACKAGES[framework]
    train = __import__(f"{pkg}.train", fromlist=["x"]).train
    export_weights = __import__(f"{pkg}.weights", fromlist=["x"]).export_weights
    run = tmp_path / "b"
    # the resume that dies while writing ckpt 3: it imports now, and trains after the first kill
    dying = early_child(
        f"import {pkg}.train\n" + DIE_IN_WRITE[framework],
        f"main({_argv(framework, run, resume=True)!r})",
    )
    with _killed_in_epoch_2(framework, run, tmp_path / "mid-epoch-2"):  # the uninterrupted run
        straight = export_weights(train(_cfg(framework, tmp_path / "a"), progress=False)["model"])
    died = dying.wait(timeout=300)
    assert died.returncode == -signal.SIGKILL, died.stderr[-2000:]
    assert _epochs(run) == [1, 2, 3]  # metrics first: row 3 has no checkpoint yet
    assert _has_checkpoint(framework, run, 2) and not _has_checkpoint(framework, run, 3)
    train(_cfg(framework, run, resume=True), progress=False)

    assert _epochs(run) == list(range(1, EPOCHS + 1))
    assert not list(run.rglob("*.tmp")) and not list(run.rglob("*_temp*"))
    resumed = _final_weights(framework, run)
    assert sorted(resumed) == sorted(straight)
    different = [k for k in straight if not np.array_equal(straight[k], resumed[k])]
    assert not different, f"{len(different)} of {len(straight)} arrays differ: {different[:5]}"
