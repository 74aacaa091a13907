"""kill -9, then ``--resume``: bit-identical weights and complete metrics, in both frameworks.

One chain per framework, on the design's pair (SimCLR in torch, MoCo in TF, whose state also
holds the queue and its pointer):

1. a training process is killed with SIGKILL in the middle of epoch 2;
2. ``--resume`` continues from ckpt 1, and is killed *while writing* ckpt 3: half a temp file
   (torch) or a half-written ``ckpt-3_temp/`` folder (TF) is left behind;
3. ``--resume`` again continues from ckpt 2 and trains epoch 3 once more.

The final weights equal those of one uninterrupted run, array by array (``np.array_equal``),
and ``metrics.json`` holds each epoch exactly once. No temp file survives.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from shared.run.config import TrainConfig

EPOCHS = 3
SETUP = {"torch": "simclr", "tensorflow": "moco"}
PACKAGES = {"torch": "torch_impl", "tensorflow": "tf_impl"}

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
        batch_size=32,
        limit_train=512,
        knn_every=0,
        amp=False,
        run_dir=str(run_dir),
        **kw,
    )


def _argv(framework, run_dir, resume=False):
    argv = ["train", "--method", SETUP[framework], "--epochs", str(EPOCHS), "--batch-size", "32"]
    argv += ["--limit-train", "512", "--knn-every", "0", "--no-amp", "--no-progress"]
    return argv + ["--run-dir", str(run_dir)] + (["--resume"] if resume else [])


def _epochs(run_dir) -> list[int]:
    path = run_dir / "metrics.json"
    return [e["epoch"] for e in json.loads(path.read_text())["epochs"]] if path.exists() else []


def _kill_in_epoch_2(framework, run_dir):
    cmd = [sys.executable, "-m", PACKAGES[framework], *_argv(framework, run_dir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _epochs(run_dir) != [1] or not _has_checkpoint(framework, run_dir, 1):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "epoch 1 never finished"
        time.sleep(0.02)
    time.sleep(0.3)  # into epoch 2 (an epoch takes seconds here)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _epochs(run_dir) == [1], "the kill missed epoch 2"


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


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_kill_minus_9_then_resume_is_bit_identical(tmp_path, framework):
    pytest.importorskip(framework)
    pkg = PACKAGES[framework]
    train = __import__(f"{pkg}.train", fromlist=["x"]).train
    export_weights = __import__(f"{pkg}.weights", fromlist=["x"]).export_weights
    straight = export_weights(train(_cfg(framework, tmp_path / "a"), progress=False)["model"])

    run = tmp_path / "b"
    _kill_in_epoch_2(framework, run)
    code = DIE_IN_WRITE[framework] + f"main({_argv(framework, run, resume=True)!r})"
    died = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300)
    assert died.returncode == -signal.SIGKILL, died.stderr.decode()[-2000:]
    assert _epochs(run) == [1, 2, 3]  # metrics first: row 3 has no checkpoint yet
    assert not _has_checkpoint(framework, run, 3)
    cmd = [sys.executable, "-m", pkg, *_argv(framework, run, resume=True)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)

    assert _epochs(run) == list(range(1, EPOCHS + 1))
    assert not list(run.rglob("*.tmp")) and not list(run.rglob("*_temp*"))
    resumed = _final_weights(framework, run)
    assert sorted(resumed) == sorted(straight)
    different = [k for k in straight if not np.array_equal(straight[k], resumed[k])]
    assert not different, f"{len(different)} of {len(straight)} arrays differ: {different[:5]}"
