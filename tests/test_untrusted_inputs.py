"""What comes from outside a run (another process, a folder of images, Ctrl-C, the environment,
a config file, an official checkpoint, a file name) is one ``error:`` or ``interrupted:`` line,
never a traceback, a hang or a silent wrong answer.

Each test runs in this process, but one: a real SIGINT to a tiny torch training run.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import warnings
import zlib
from pathlib import Path

import pytest

from shared.apps import results_cmd as R
from shared.run.config import PACKAGES
from shared.run.datasets import read_image_folder
from shared.run.errors import ConfigError, MissingFileError

FRAMEWORKS = ("torch", "tensorflow")


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _in_thread(fn, timeout: float):
    """``fn()`` in a daemon thread; its result or exception, or a failure if it is still
    running after ``timeout`` seconds (it blocks)."""
    out = {}

    def body():
        try:
            out["value"] = fn()
        except BaseException as e:  # handed to the test below
            out["error"] = e

    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"still blocked after {timeout} s"
    if "error" in out:
        raise out["error"]
    return out["value"]


# --- A. rosetta results: locks, commands, files ---------------------------------------------


@pytest.fixture
def quick_units(monkeypatch):
    """``rosetta results`` units whose subprocess is ``python -c pass`` and whose row is fixed:
    the command still carries the unit's flags (``--train-args``), as the real one does."""

    def command(unit, work, extra):
        return [sys.executable, "-c", "pass", unit.name, *extra]

    monkeypatch.setattr(R, "command", command)
    monkeypatch.setattr(R, "row_of", lambda unit, work: {"seed": unit.seed, "trained": True})
    return R.Unit("train/simclr/torch/seed0", "train", "simclr", "torch", 0)


def _record(work: Path, unit, extra: list[str]) -> Path:
    marker = work / unit.name / "unit.json"
    marker.parent.mkdir(parents=True, exist_ok=True)
    cmd = R.command(unit, work, extra)[1:]
    marker.write_text(json.dumps({"name": unit.name, "row": {"old": True}, "command": cmd}))
    return marker


def test_results_takes_over_a_stale_lock_of_a_dead_process(tmp_path, quick_units):
    """A ``running.lock`` left by a killed process (its pid inside, the process gone) locks
    nothing: the unit runs at once."""
    lock = tmp_path / quick_units.name / "running.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("999999999")
    res = _in_thread(lambda: R.run_unit(quick_units, tmp_path, [], {}), timeout=20)
    assert res["row"] == {"seed": 0, "trained": True}
    assert json.loads((tmp_path / quick_units.name / "unit.json").read_text()) == res


def test_results_waiter_stops_when_the_other_process_fails(tmp_path, quick_units, capsys):
    """The process holding the unit's lock exits 1 without a result: the waiter stops within a
    second of its death and names the unit's log; one that finished is read instead."""
    lock = tmp_path / quick_units.name / "running.lock"
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(1); "
         "sys.exit(1)", str(lock)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(MissingFileError) as caught:
        _in_thread(lambda: R.run_unit(quick_units, tmp_path, [], {}), timeout=20)
    assert holder.wait(5) == 1
    log = repr(str(tmp_path / quick_units.name / "log.txt"))
    assert str(caught.value) == (
        f"{quick_units.name}: the other process running it stopped without its result (its "
        f"log: {log}); run this command again to run the unit here"
    )
    assert "another process runs it; waiting" in capsys.readouterr().out

    got: list = []
    with open(lock, "a") as f:  # now one that finishes: its result is read, nothing runs
        fcntl.flock(f, fcntl.LOCK_EX)
        waiter = threading.Thread(
            target=lambda: got.append(R.run_unit(quick_units, tmp_path, [], {}))
        )
        waiter.start()
        time.sleep(0.3)
        _record(tmp_path, quick_units, [])
    waiter.join(10)
    assert got and got[0]["row"] == {"old": True}


def test_results_reruns_a_unit_recorded_with_another_command(tmp_path, quick_units, capsys):
    """``--train-args "--epochs 2"`` over units done with ``--epochs 1``: they run again, and
    unit.json records the new command; the same command is "done before"."""
    _record(tmp_path, quick_units, ["--epochs", "1"])
    res = R.run_unit(quick_units, tmp_path, ["--epochs", "2"], {})
    assert res["row"] == {"seed": 0, "trained": True} and res["command"][-2:] == ["--epochs", "2"]
    assert "records another command; running it again" in capsys.readouterr().out
    again = R.run_unit(quick_units, tmp_path, ["--epochs", "2"], {})
    assert again == res and "done before" in capsys.readouterr().out


def test_results_match_refuses_a_unit_recorded_with_another_command(tmp_path, quick_units, capsys):
    """With ``--match``, the units outside it are read from their unit.json only if it records
    this command: otherwise one line, exit 2 (not a row of other settings under this name)."""
    from shared.apps.cli import main

    moco = R.Unit("train/moco/tensorflow/seed0", "train", "moco", "tensorflow", 0)
    _record(tmp_path, quick_units, ["--epochs", "2"])
    marker = _record(tmp_path, moco, ["--epochs", "1"])
    argv = ["results", "--work", str(tmp_path), "--seeds", "1", "--only", "cells",
            "--match", "simclr/torch", "--train-args", "--epochs 2", "--out", str(tmp_path / "r.json")]  # fmt: skip
    assert main(argv) == 2
    assert _one_line(capsys.readouterr().err) == (
        f"error: {moco.name}: {str(marker)!r} records another command (or a fine-tune of "
        f"another training run) than this one's; run it again (--match {moco.name}) or pass "
        "the --train-args it was run with"
    )
    assert not (tmp_path / "r.json").exists()


def test_results_assemble_names_a_metrics_json_that_is_not_json(tmp_path, capsys):
    from shared.apps.cli import main

    unit = tmp_path / "train/simclr/torch/seed0"
    unit.mkdir(parents=True)
    (unit / "unit.json").write_text(json.dumps({"name": "x", "row": {}, "command": []}))
    (unit / "metrics.json").write_text("{not json")
    argv = ["results", "--assemble", "--work", str(tmp_path), "--seeds", "1", "--only", "cells",
            "--out", str(tmp_path / "r.json")]  # fmt: skip
    assert main(argv) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"error: {str(unit / 'metrics.json')!r}: not a readable JSON file (")


def test_results_read_only_work_is_one_line_before_any_unit(tmp_path, monkeypatch, capsys):
    import tempfile

    from shared.apps.cli import main

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    def no_run(*args):
        raise AssertionError("a unit ran")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", read_only)
    monkeypatch.setattr(R, "run", no_run)
    assert main(["results", "--work", str(tmp_path / "w"), "--seeds", "1", "--only", "cells"]) == 2
    assert _one_line(capsys.readouterr().err) == (
        f"error: work: {str(tmp_path / 'w')!r} is not a writable folder (Read-only file "
        "system); choose another --work"
    )


# --- B. image folders: regular files only, the pixel limit, quoted names ----------------------


def _png(path: Path, width: int, height: int, body: bool = True) -> None:
    """A 1-bit greyscale PNG of zeros (``body=False``: its header alone): a few KB for any
    size, the shape of a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    data = chunk(b"IDAT", zlib.compress(bytes((1 + (width + 7) // 8) * height), 9)) if body else b""
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + data + chunk(b"IEND", b""))


def test_folder_skips_what_is_not_a_regular_file_without_blocking(tmp_path):
    """A FIFO named ``pipe.png`` (an ``open()`` that waits for a writer), a folder, a link to a
    device and a dangling link: each skipped and counted; a link to an image is read."""
    from PIL import Image

    Image.new("RGB", (20, 20)).save(tmp_path / "fine.png")
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "folder.png").mkdir()
    os.symlink("/dev/zero", tmp_path / "zero.png")
    os.symlink("missing.png", tmp_path / "dangling.png")
    os.symlink("fine.png", tmp_path / "link.png")
    f = _in_thread(lambda: read_image_folder(tmp_path), timeout=20)
    assert [Path(p).name for p in f.paths] == ["fine.png", "link.png"]
    names = ["dangling.png", "folder.png", "pipe.png", "zero.png"]
    assert sorted(Path(p).name for p in f.skipped) == names


def test_folder_skips_an_image_over_the_pixel_limit(tmp_path, caplog):
    """12000 x 12000 (144 MP, over Pillow's 89 MP limit and under twice it) in a 20 KB file: not
    decoded (Pillow only warned), skipped and counted like an unreadable file."""
    from PIL import Image

    from shared.run.datasets import load_local_split

    Image.new("RGB", (20, 20)).save(tmp_path / "fine.png")
    _png(tmp_path / "big.png", 12_000, 12_000)
    assert (tmp_path / "big.png").stat().st_size < 40_000
    assert Image.MAX_IMAGE_PIXELS < 12_000**2 < 2 * Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning gets out either
        split = load_local_split(f"folder:{tmp_path}", "train")
    assert split.images.shape == (1, 32, 32, 3)
    assert "skipped 1 unreadable image file(s) of 2" in caplog.text
    assert repr(str(tmp_path / "big.png")) in caplog.text


def test_folder_file_names_cannot_forge_a_line(tmp_path, capsys):
    """A file named ``bomb\\nerror: all good, nothing to see.png``: its error is one line, the
    name quoted."""
    from shared.apps.impl_cli import main

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    bomb = imgs / "bomb\nerror: all good, nothing to see.png"
    _png(bomb, 20_000, 20_000, body=False)
    argv = ["train", "--dataset", f"folder:{imgs}", "--run-dir", str(tmp_path / "run")]
    assert main("torch", argv) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"error: dataset: {str(bomb)!r} is refused by Pillow"), line


# --- C. Ctrl-C ------------------------------------------------------------------------------


def _write_checkpoint(framework: str, run_dir: Path) -> str:
    """A real checkpoint of ``framework`` in ``run_dir``, as the run's first epoch writes it."""
    if framework == "torch":
        import torch

        path = run_dir / "ckpt-0001.pt"
        torch.save({"epoch": 1}, path)
        return str(path)
    import tensorflow as tf

    return tf.train.Checkpoint(v=tf.Variable(1.0)).save(str(run_dir / "ckpt" / "ckpt"))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_ctrl_c_in_train_names_the_last_checkpoint_and_exits_130(
    tmp_path, monkeypatch, capsys, framework
):
    """Ctrl-C during training: one line naming the last complete checkpoint and ``--resume``,
    exit 130; before the first checkpoint, one line saying so."""
    from shared.apps.impl_cli import main

    pytest.importorskip(framework)
    pkg = PACKAGES[framework]
    train_mod = __import__(f"{pkg}.train", fromlist=["x"])
    run_dir = tmp_path / "run"
    written = []

    def interrupted(cfg, progress=True):
        run_dir.mkdir(exist_ok=True)
        if written:
            _write_checkpoint(framework, run_dir)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "train", interrupted)
    argv = ["train", "--run-dir", str(run_dir), "--no-progress"]
    assert main(framework, argv) == 130
    assert _one_line(capsys.readouterr().err) == (
        f"interrupted before the first checkpoint of {str(run_dir)!r}; run the same command "
        "with --resume to start it again"
    )
    written.append(True)
    assert main(framework, argv) == 130
    last = __import__(f"{pkg}.checkpoint", fromlist=["x"]).latest_checkpoint(run_dir)
    assert _one_line(capsys.readouterr().err) == (
        f"interrupted: the last complete checkpoint is {str(last)!r}; run the same command "
        "with --resume to continue from it"
    )


def test_ctrl_c_in_rosetta_results_is_one_line_and_exit_130(tmp_path, monkeypatch, capsys):
    from shared.apps.cli import main

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(R, "run", interrupted)
    assert main(["results", "--work", str(tmp_path), "--seeds", "1", "--only", "cells"]) == 130
    assert _one_line(capsys.readouterr().err) == (
        "interrupted: rosetta results stopped; each unit finished is kept under --work: the "
        "same command continues from them"
    )


def test_sigint_stops_torch_training_with_one_line(tmp_path):
    """A real SIGINT to ``python -m torch_impl train`` after its first checkpoint: exit 130,
    no traceback, one line naming a checkpoint that is there."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch_impl", "train", "--run-dir", str(run_dir), "--epochs",
           "500", "--limit-train", "64", "--batch-size", "32", "--knn-every", "0", "--no-progress"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # started as a shell starts a foreground command, SIGINT at its default: a child inherits an
    # ignored SIGINT, and something earlier in a full test run can leave this process ignoring it
    default_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env, preexec_fn=default_sigint)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not list(run_dir.glob("ckpt-*.pt")):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "no checkpoint after 60 s"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=30)[1]
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    lines = [x for x in err.splitlines() if x.startswith("interrupted")]
    assert len(lines) == 1, err
    ckpt = lines[0].split("checkpoint is ")[1].split(";")[0].strip("'")
    assert Path(ckpt).parent == run_dir and Path(ckpt).name.startswith("ckpt-"), lines[0]
    assert lines[0].endswith("run the same command with --resume to continue from it")


# --- D. the environment -----------------------------------------------------------------------


def test_world_size_that_is_not_an_integer_is_one_line(tmp_path, monkeypatch, capsys):
    import torch

    from shared.apps.impl_cli import main
    from torch_impl.distributed import init_from_env

    monkeypatch.setenv("WORLD_SIZE", "abc")
    assert main("torch", ["train", "--run-dir", str(tmp_path / "run")]) == 2
    assert _one_line(capsys.readouterr().err) == "error: WORLD_SIZE: expected an integer, got 'abc'"
    with pytest.raises(ConfigError, match=r"^WORLD_SIZE: expected an integer, got 'abc'$"):
        init_from_env(torch.device("cpu"))


# --- E. sizes in config.json ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "high"), [("hidden_dim", 10**15, 65536), ("image_size", 10**8, 1024)]
)
def test_config_json_sizes_are_bounded_before_allocation(tmp_path, capsys, field, value, high):
    from shared.apps.impl_cli import main

    (tmp_path / "config.json").write_text(json.dumps({"method": "simclr", field: value}))
    t0 = time.monotonic()
    assert main("torch", ["eval", "--run-dir", str(tmp_path)]) == 2
    assert time.monotonic() - t0 < 5
    assert _one_line(capsys.readouterr().err) == (
        f"error: {tmp_path / 'config.json'}: {field}: expected an integer <= {high} (far above "
        f"any real run; larger sizes are refused before anything is allocated), got {value}"
    )


# --- F. official checkpoints ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"epoch": "abc"}, "error: checkpoint: epoch: expected an integer >= 0, got 'abc'"),
        (
            {"state_dict": {"module.queue": 3}},
            "state_dict['module.queue']: expected a tensor, got int 3",
        ),
    ],
)
def test_moco_checkpoint_fields_of_another_type_are_one_line(tmp_path, capsys, fields, message):
    torch = pytest.importorskip("torch")
    from shared.apps.import_cmd import import_official

    ck = {"epoch": 1, "arch": "resnet50", "state_dict": {"module.queue": torch.zeros(4, 8)}}
    torch.save({**ck, **fields}, tmp_path / "c.pth.tar")
    code = import_official(tmp_path / "c.pth.tar", "moco", "torch", tmp_path / "run",
                           size=32, in_process=True)  # fmt: skip
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and message in line and line.startswith("error: checkpoint: "), line
    assert not (tmp_path / "run").exists()


# --- G. file names ----------------------------------------------------------------------------


def test_run_dir_that_is_not_utf8_is_one_line(tmp_path, capsys):
    from shared.apps.cli import main as rosetta
    from shared.apps.impl_cli import main

    bad = os.fsdecode(os.fsencode(str(tmp_path)) + b"/run\xff")
    want = f"error: run_dir: expected a name that is valid UTF-8, got {bad!r}; rename it"
    for framework in FRAMEWORKS:
        assert main(framework, ["train", "--run-dir", bad]) == 2
        assert _one_line(capsys.readouterr().err) == want
    assert main("torch", ["eval", "--run-dir", bad]) == 2
    assert _one_line(capsys.readouterr().err) == want
    assert rosetta(["train", "--framework", "torch", "--run-dir", bad]) == 2
    assert _one_line(capsys.readouterr().err) == want
    assert not any(tmp_path.iterdir())
