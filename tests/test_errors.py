"""Expected failures as one line, bugs with their traceback, and warnings where a run fails
without an error.

Each expected failure (a ``shared.RosettaError``) ends in one ``error: ...`` line that names the
argument or file and says what to do, with exit status 2; any other exception keeps Python's
traceback, and ``--traceback`` shows it for the expected ones too. The bad *values* of flags are
tabled in ``test_config.py``; this file covers what goes wrong in the world: the network, the
disk, the files.
"""

import errno
import json
import os
import socket
import struct
import subprocess
import sys
import zlib

import pytest

from shared.run.config import PACKAGES, TrainConfig
from shared.run.datasets import DatasetNotFound, read_image_folder
from shared.run.health import HealthMonitor
from shared.run.runlog import prepare_run_dir


class ReachedNetwork(Exception):
    """Raised by the patched resolver: the download got as far as asking for a host."""


def _load_split(framework):
    pytest.importorskip(framework)
    return __import__(f"{PACKAGES[framework]}.data", fromlist=["x"]).load_split


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_download_gets_as_far_as_the_network(tmp_path, monkeypatch, framework):
    """torchvision and tfds both reach for the dataset's host; TF's path needs
    ``importlib_resources`` (a dependency tfds does not declare), so this fails without it."""
    load_split = _load_split(framework)

    def resolver(host, *args, **kwargs):
        raise ReachedNetwork(host)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    with pytest.raises(ReachedNetwork, match="cs.toronto.edu"):
        load_split("cifar10", "train", root=str(tmp_path), download=True)


def test_offline_download_is_one_clear_line_torch(tmp_path, monkeypatch):
    load_split = _load_split("torch")

    def offline(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    with pytest.raises(DatasetNotFound, match=r"could not be downloaded to .*Check network access"):
        load_split("cifar10", "train", root=str(tmp_path), download=True)


def test_offline_download_is_one_clear_line_tensorflow(tmp_path, monkeypatch):
    """tfds retries a dead host for minutes, so its failure is injected at ``tfds.load``."""
    load_split = _load_split("tensorflow")
    import requests
    import tensorflow_datasets as tfds

    def offline(*args, **kwargs):
        raise requests.exceptions.ConnectionError("Max retries exceeded (NameResolutionError)")

    monkeypatch.setattr(tfds, "load", offline)
    with pytest.raises(DatasetNotFound, match=r"ConnectionError: Max retries .*--dataset embedded"):
        load_split("cifar10", "train", root=str(tmp_path), download=True)


def _png_header_only(path, width, height):
    """A PNG that declares ``width`` x ``height`` and holds no pixels: Pillow's bomb check reads
    only the header, so a few bytes stand for a 400-megapixel image."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def test_decompression_bomb_names_the_file(tmp_path):
    from PIL import Image

    Image.new("RGB", (40, 40)).save(tmp_path / "fine.png")
    _png_header_only(tmp_path / "bomb.png", 20_000, 20_000)
    with pytest.raises(ValueError, match=r"dataset: .*bomb.png' is refused by Pillow .*Remove it"):
        read_image_folder(tmp_path)


def test_cli_error_is_one_line_with_exit_2_and_no_framework_noise(tmp_path):
    """The whole CLI path in TF: its import noise (absl, cuInit) is filtered out, and the bomb's
    error is the only line on stderr."""
    (tmp_path / "imgs").mkdir()
    _png_header_only(tmp_path / "imgs" / "bomb.png", 20_000, 20_000)
    cmd = [sys.executable, "-m", "tf_impl", "train", "--dataset", f"folder:{tmp_path / 'imgs'}"]
    proc = subprocess.run(
        [*cmd, "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: dataset:"), proc.stderr


def test_read_only_run_dir_is_named_before_training(tmp_path, monkeypatch):
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", read_only)
    with pytest.raises(ValueError, match=r"run_dir: .* is not writable \(Read-only file system\)"):
        prepare_run_dir(tmp_path / "run", resume=False, overwrite=False)


def _full_disk_torch(monkeypatch):
    import torch_impl.checkpoint as ck

    real = ck.atomic_write_bytes
    calls = []

    def fills_up(path, data):
        calls.append(path)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(ck, "atomic_write_bytes", fills_up)


def _full_disk_tensorflow(monkeypatch):
    import tensorflow as tf

    real = tf.train.CheckpointManager.save
    calls = []

    def fills_up(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            msg = "{{function_node SaveV2}} ckpt-2_temp/part-0; No space left on device [Op:SaveV2]"
            raise tf.errors.ResourceExhaustedError(None, None, msg)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", fills_up)


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_full_disk_names_the_intact_checkpoint(tmp_path, monkeypatch, framework):
    """The disk fills at the second checkpoint: one line names the first as intact, and it
    still restores."""
    pytest.importorskip(framework)
    train = __import__(f"{PACKAGES[framework]}.train", fromlist=["x"]).train
    ck = __import__(f"{PACKAGES[framework]}.checkpoint", fromlist=["x"])
    (_full_disk_torch if framework == "torch" else _full_disk_tensorflow)(monkeypatch)
    cfg = TrainConfig(
        method="simclr", epochs=2, batch_size=16, limit_train=32, knn_every=0, amp=False
    )
    cfg.run_dir = str(tmp_path / "run")
    with pytest.raises(OSError, match=r"could not be written \(No space left on device\); the "):
        train(cfg, progress=False)
    first = ck.latest_checkpoint(cfg.run_dir)
    assert first is not None and "1" in str(first).rsplit("-", 1)[-1]
    assert not list((tmp_path / "run").rglob("*_temp*")) and not list(
        (tmp_path / "run").glob(".*.tmp")
    )


def test_torch_tensorboard_does_not_import_tensorflow(tmp_path):
    code = (
        "import sys, pathlib\n"
        "from torch_impl.train import _summary_writer\n"
        f"w = _summary_writer(pathlib.Path({str(tmp_path)!r}))\n"
        "w.add_scalar('loss', 1.5, 1); w.close()\n"
        "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [e.value for e in events.Scalars("loss")] == [1.5]


def test_demo_stops_at_a_failed_child_with_one_line(tmp_path, capsys):
    from shared.apps.demo import main as demo

    (tmp_path / "torch-simclr").write_text("a file where the run dir should be")
    assert demo(["--out", str(tmp_path), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "error: step failed (exit 2)" in err


def test_health_monitor_warns_on_a_fall_and_on_growth(capsys):
    """A young network's low spread is not a warning; a fall from a healthy spread is, and so is
    weight growth of two orders of magnitude."""
    import numpy as np

    rng = np.random.default_rng(0)
    young = np.ones((64, 8)) + 0.01 * rng.standard_normal((64, 8))
    monitor = HealthMonitor(young, {"w/kernel": np.ones(4)})
    rec = monitor.check(rng.standard_normal((64, 8)), {"w/kernel": np.ones(4)}, 1)
    assert capsys.readouterr().err == "" and rec["z_spread"] > 0.8 and rec["weight_norm"] == 2.0
    rec = monitor.check(young, {"w/kernel": np.full(4, 300.0)}, 2)
    err = capsys.readouterr().err
    assert "epoch 2: the projections are collapsing" in err
    assert "the weight norm grew 300x" in err


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_diverging_run_warns_and_records_health(tmp_path, framework, capsys):
    pytest.importorskip(framework)
    train = __import__(f"{PACKAGES[framework]}.train", fromlist=["x"]).train
    cfg = TrainConfig(
        method="simclr", epochs=1, batch_size=16, limit_train=64, knn_every=0, amp=False
    )
    cfg.run_dir, cfg.optimizer, cfg.lr = str(tmp_path / "run"), "sgd", 1e6
    try:
        train(cfg, progress=False)
    except FloatingPointError:
        pass  # TF may reach a non-finite loss first; the guard owns that case
    assert "the weight norm grew" in capsys.readouterr().err
    epochs = json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"]
    assert epochs and epochs[0]["weight_norm"] > 100 and 0 <= epochs[0]["z_spread"] < 2


def test_demo_trains_cells_at_once_and_starts_parity_after_the_first(monkeypatch, tmp_path):
    """``train_cells``: with 2 jobs both cells run at once, each told to use cores // 2
    threads; the parity job starts only once a cell has finished, and results keep the order
    of the cells."""
    import threading
    import time

    from shared.apps import demo

    events, lock = [], threading.Lock()

    def fake_cell(framework, method, out, epochs, threads, fast_kernels=False, recipe="digits"):
        with lock:
            events.append(("start", framework, threads))
        time.sleep(0.3 if framework == "torch" else 0.1)
        with lock:
            events.append(("end", framework, threads))
        return {"framework": framework}

    def fake_parity():
        with lock:
            events.append(("parity", None, None))
        return "parity-result"

    monkeypatch.setattr(demo, "train_cell", fake_cell)
    monkeypatch.setattr(demo.os, "cpu_count", lambda: 2)

    def fake_figures(runs):
        with lock:
            events.append(("figures", None, None))
        return sorted(runs)

    runs, after, figs = demo.train_cells(
        demo.PAIR, tmp_path, None, 2, then=fake_parity, after_cells=fake_figures
    )
    assert list(runs) == ["SimCLR (torch)", "MoCo (TF)"] and after == "parity-result"
    assert figs == sorted(runs)
    kinds = [e[0] for e in events]
    assert kinds[:2] == ["start", "start"]  # both at once
    assert {e[2] for e in events if e[0] == "start"} == {1}  # 2 cores / 2 jobs
    assert kinds.index("parity") > kinds.index("end")  # after the first cell, not before
    assert events[kinds.index("end")][1] == "tensorflow"  # the shorter cell ended first
    assert kinds.index("figures") > max(i for i, k in enumerate(kinds) if k == "end")
    runs, _, _ = demo.train_cells(demo.PAIR, tmp_path, None, 1)
    assert {e[2] for e in events[-4:]} == {None}  # one job: every core, in turn


def test_demo_skips_parity_when_a_cell_fails(monkeypatch, tmp_path):
    """A failed cell: the error reaches the caller and the parity job never starts."""
    import pytest

    from shared.apps import demo

    ran = []

    def fake_cell(framework, method, out, epochs, threads, fast_kernels=False, recipe="digits"):
        if framework == "torch":
            raise RuntimeError("step failed (exit 2): torch")
        return {"framework": framework}

    monkeypatch.setattr(demo, "train_cell", fake_cell)
    with pytest.raises(RuntimeError, match="exit 2"):
        demo.train_cells(demo.PAIR, tmp_path, None, 1, then=lambda: ran.append("parity"))
    assert ran == []


def test_demo_parity_runs_on_one_thread_beside_a_training_cell(monkeypatch, tmp_path):
    """With cells trained at once, the parity dumps get one thread (the freed core), so they
    do not take the other core from the cell still training; with --jobs 1, every core."""
    from shared.apps import demo

    seen = []
    monkeypatch.setattr(
        demo.parity_cmd, "run", lambda out, d, env=None: seen.append(env) or ([], 1)
    )
    monkeypatch.setattr(
        demo.parity_cmd, "run_step", lambda o, d, env=None: seen.append(env) or ([], 1)
    )
    demo._parity(tmp_path, 1)
    assert [e["OMP_NUM_THREADS"] for e in seen] == ["1", "1"]
    assert all(e["TF_NUM_INTRAOP_THREADS"] == "1" for e in seen)
    demo._parity(tmp_path, None)
    assert seen[2:] == [None, None]


# --- expected errors are one line; bugs keep their traceback; --traceback shows both --------


def test_garbage_config_json_names_the_file(tmp_path, capsys):
    """``eval`` of a run whose config.json is not JSON: one line that names the file."""
    from shared.apps.impl_cli import main

    (tmp_path / "config.json").write_text("{garbage")
    assert main("torch", ["eval", "--run-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {tmp_path / 'config.json'}: not a readable config.json (")
    (tmp_path / "config.json").write_text(json.dumps({"method": "moco", "epochs": 0}))
    assert main("torch", ["eval", "--run-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path / 'config.json'}: epochs: expected an integer >= 1, got 0"
    )


def test_import_weights_names_its_config_file(tmp_path, capsys):
    """``--config`` names any file: its errors name that file, not a temporary copy."""
    from shared.apps.impl_cli import main
    from shared.parity.weights import save_weights

    weights = save_weights(tmp_path / "w.npz", {}, {"method": "simclr", "encoder": "small_cnn"})
    config = tmp_path / "exported.json"
    config.write_text('{"method": "simclr", "bogus": 1}')
    argv = ["import-weights", "--weights", str(weights), "--out", str(tmp_path / "out")]
    assert main("torch", [*argv, "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {config}: not a config of this version (unknown fields ['bogus'])"
    assert main("torch", [*argv, "--config", str(tmp_path / "none.json")]) == 2
    assert capsys.readouterr().err.strip().startswith(f"error: config: no file {tmp_path}")


def test_garbage_metrics_and_weights_name_their_files(tmp_path):
    from shared.parity.weights import WeightsError, load_weights
    from shared.run.errors import FileFormatError
    from shared.run.runlog import RunLog

    (tmp_path / "metrics.json").write_text('{"epochs": [{"loss": 1.0}]}')
    cfg = TrainConfig(run_dir=str(tmp_path)).resolve("torch")
    with pytest.raises(FileFormatError, match=r"metrics.json: not a metrics.json of schema"):
        RunLog.resume(tmp_path, cfg, 1)
    (tmp_path / "metrics.json").write_bytes(b"\xff\xfe")
    with pytest.raises(FileFormatError, match=r"metrics.json: not a readable metrics.json"):
        RunLog.resume(tmp_path, cfg, 1)
    import numpy as np

    np.savez(tmp_path / "w.npz", __meta__="{not json")
    with pytest.raises(WeightsError, match=r"w.npz has a __meta__ entry that is not JSON"):
        load_weights(tmp_path / "w.npz")


def test_a_bug_deep_inside_keeps_its_traceback(tmp_path, monkeypatch, capsys):
    """A plain RuntimeError raised deep inside training (here: when the run log starts) is no
    expected failure: it leaves the CLI's ``main`` as it is, with its traceback (so that
    ``python -m torch_impl`` ends with Python's traceback and exit status 1, the interpreter's
    own for an exception nothing catches), and no ``error:`` line is printed."""
    import shared.run.lifecycle as lc
    from torch_impl.__main__ import main

    def broken(self, start_epoch):
        raise RuntimeError("boom deep inside")

    monkeypatch.setattr(lc.RunLifecycle, "start", broken)
    argv = ["train", "--epochs", "1", "--limit-train", "32", "--batch-size", "16"]
    argv += ["--knn-every", "0", "--run-dir", str(tmp_path / "run")]
    with pytest.raises(RuntimeError, match="^boom deep inside$") as raised:
        main(argv)
    assert raised.traceback[-1].name == "broken"  # the frame that raised it
    assert "error: boom" not in capsys.readouterr().err


def test_an_unexpected_exception_in_a_command_propagates(monkeypatch, capsys):
    from shared.apps import impl_cli

    def broken(pkg, args):
        return [][0]  # IndexError: a bug

    monkeypatch.setattr(impl_cli, "cmd_finetune", broken)
    with pytest.raises(IndexError):
        impl_cli.main("torch", ["finetune", "--run-dir", "x"])
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("where", ["before", "after"])
def test_traceback_flag_shows_an_expected_error_too(monkeypatch, capsys, where):
    from shared.apps.impl_cli import main
    from shared.run.errors import ConfigError

    monkeypatch.setenv("ROSETTA_TRACEBACK", "")
    argv = ["finetune", "--run-dir", "x", "--fraction", "2"]
    assert main("torch", argv) == 2
    assert (
        capsys.readouterr().err
        == "error: fraction: expected a labelled fraction in (0, 1], got 2.0\n"
    )
    argv = ["--traceback", *argv] if where == "before" else [*argv, "--traceback"]
    with pytest.raises(ConfigError, match=r"fraction: expected a labelled fraction"):
        main("torch", argv)


def test_rosetta_cli_one_line_or_traceback(tmp_path, monkeypatch, capsys):
    """``rosetta port`` of a run with a garbage config.json: one line naming it, exit 2;
    ``--traceback`` (before or after the command) raises it and tells the children too."""
    from shared.apps.cli import main
    from shared.run.errors import FileFormatError

    monkeypatch.setenv("ROSETTA_TRACEBACK", "")
    (tmp_path / "config.json").write_text("[1, 2")
    argv = ["port", str(tmp_path), "--to", "torch", "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'config.json'}: not a readable config.json (")
    assert len(err.strip().splitlines()) == 1
    for flagged in (["--traceback", *argv], [*argv, "--traceback"]):
        with pytest.raises(FileFormatError, match="not a readable config.json"):
            main(flagged)
        assert os.environ["ROSETTA_TRACEBACK"] == "1"
        monkeypatch.setenv("ROSETTA_TRACEBACK", "")
