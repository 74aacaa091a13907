"""The run directory is a boundary: nothing outside it is written or deleted.

Each test plants one trap that a run directory shared with others could hold, runs the command
in this process (``impl_cli.main``, ``rosetta``'s ``cli.main``), and checks that the files
outside are untouched (same bytes, same mtime) and that the command answered as expected:

* a TF ``ckpt/checkpoint`` listing a checkpoint in another folder: a resumed run deletes only
  its own old checkpoints;
* a symbolic link at ``ckpt``, ``.lock``, ``tb`` or ``features.npz``: one ``error:`` line
  naming it, exit 2, before anything is written or swept;
* a disk that fills while ``metrics.json`` or TensorBoard is written: one line naming the last
  intact checkpoint, exit 2;
* an output that exists as a file, or a read-only output folder (``eval``, ``port``,
  ``import``, ``import-weights``): one line, exit 2, before any work.
"""

import errno
import os
import time
from pathlib import Path

import numpy as np
import pytest

from shared.apps import cli, impl_cli
from shared.run.config import PACKAGES, TrainConfig
from shared.run.runlog import atomic_write_npz, remove_orphans

FRAMEWORKS = ["torch", "tensorflow"]
TINY = ["--limit-train", "32", "--batch-size", "16", "--knn-every", "0", "--no-amp"]


def _cfg(run_dir) -> TrainConfig:
    """The config of ``TINY`` for one epoch (the session's trained run)."""
    base = dict(method="simclr", epochs=1, batch_size=16, limit_train=32, knn_every=0, amp=False)
    return TrainConfig(**base, run_dir=str(run_dir))


def _train_argv(run_dir, epochs: int = 1) -> list[str]:
    return ["train", "--epochs", str(epochs), *TINY, "--no-progress", "--run-dir", str(run_dir)]


def _fingerprint(folder: Path) -> dict:
    """Every entry under ``folder``, not following links: its bytes (or link target) and mtime."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = os.lstat(p)
        body = os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else None
        out[str(p.relative_to(folder))] = (body, st.st_mtime_ns)
    return out


def _outside(tmp_path: Path) -> Path:
    """A folder of someone else's files, as another run's checkpoints and temp files."""
    other = tmp_path / "other"
    (other / "ckpt-3_temp").mkdir(parents=True)
    (other / "ckpt-3_temp" / "part-00000-of-00001.data").write_bytes(b"theirs")
    for name in ("ckpt-100.index", "ckpt-100.data-00000-of-00001", "ckpt-4_temp", "keep.npz"):
        (other / name).write_bytes(b"theirs: " + name.encode())
    return other


def _one_error_line(capsys) -> str:
    """The command's stderr, which must be one ``error:`` line; returns it."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


# --- TF's checkpoint state file ---------------------------------------------------------------


def test_tf_checkpoint_file_listing_another_folder_deletes_nothing_there(tmp_path, capsys):
    """Case 1: ``ckpt/checkpoint`` lists ``<other>/ckpt-100`` with timestamps that make TF's
    manager sweep it; the resumed run keeps its own newest two and touches nothing else."""
    pytest.importorskip("tensorflow")
    other, run = _outside(tmp_path), tmp_path / "run"
    before = _fingerprint(other)
    assert impl_cli.main("tensorflow", _train_argv(run, 1)) == 0
    now = time.time()
    (run / "ckpt" / "checkpoint").write_text(
        'model_checkpoint_path: "ckpt-1"\n'
        f'all_model_checkpoint_paths: "{other / "ckpt-100"}"\n'
        'all_model_checkpoint_paths: "ckpt-1"\n'
        f"all_model_checkpoint_timestamps: {now - 20}\n"
        f"all_model_checkpoint_timestamps: {now - 10}\n"
        f"last_preserved_timestamp: {now - 30}\n"
    )
    assert impl_cli.main("tensorflow", [*_train_argv(run, 3), "--resume"]) == 0
    assert _fingerprint(other) == before
    names = sorted(p.name for p in (run / "ckpt").iterdir())
    assert names == [
        "checkpoint",
        "ckpt-2.data-00000-of-00001",
        "ckpt-2.index",
        "ckpt-3.data-00000-of-00001",
        "ckpt-3.index",
    ]
    state = (run / "ckpt" / "checkpoint").read_text()
    assert str(other) not in state and 'model_checkpoint_path: "ckpt-3"' in state


# --- symbolic links inside a run ----------------------------------------------------------------


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_linked_ckpt_is_refused_and_nothing_is_swept_through_it(tmp_path, framework, capsys):
    """Case 2: ``ckpt`` links to another folder holding ``*_temp*`` entries: every train into
    the run (plain, --resume, --overwrite) is one line naming ``ckpt``; nothing is deleted."""
    pytest.importorskip(framework)
    other, run = _outside(tmp_path), tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "ckpt").symlink_to(other, target_is_directory=True)
    before, inside = _fingerprint(other), _fingerprint(run)
    for flags in ([], ["--resume"], ["--overwrite"]):
        code = impl_cli.main(framework, [*_train_argv(run, 1), *flags])
        assert _fingerprint(other) == before and _fingerprint(run) == inside, flags
        line = _one_error_line(capsys)
        assert code == 2 and f"{str(run / 'ckpt')!r} is a symbolic link" in line, line


def test_remove_orphans_never_follows_a_link(tmp_path):
    other, run = _outside(tmp_path), tmp_path / "run"
    run.mkdir()
    (run / "ckpt").symlink_to(other, target_is_directory=True)
    (run / ".metrics.json.abc123.tmp").symlink_to(other / "keep.npz")
    (run / ".config.json.x1y2.tmp").write_bytes(b"half")  # a real orphan: removed
    before = _fingerprint(other)
    remove_orphans(run)
    assert _fingerprint(other) == before
    assert sorted(p.name for p in run.iterdir()) == [".metrics.json.abc123.tmp", "ckpt"]


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("name", [".lock", "tb"])
def test_resume_refuses_a_linked_lock_or_tb(tmp_path, framework, name, trained_run, capsys):
    """Case 3: ``--resume`` of a run whose ``.lock`` (or ``tb``) links elsewhere is one line
    naming it; no lock file and no TensorBoard events appear at the link's target."""
    import shutil

    run = trained_run(framework, _cfg(tmp_path / "run"))
    other = tmp_path / "other"
    (other / "tb").mkdir(parents=True)  # the link's target: a folder (tb) or no file (.lock)
    shutil.rmtree(run / name) if (run / name).is_dir() else (run / name).unlink(missing_ok=True)
    (run / name).symlink_to(other / name, target_is_directory=name == "tb")
    before, inside = _fingerprint(other), _fingerprint(run)
    code = impl_cli.main(framework, [*_train_argv(run, 2), "--resume"])
    assert _fingerprint(other) == before and _fingerprint(run) == inside
    line = _one_error_line(capsys)
    assert code == 2 and f"{str(run / name)!r} is a symbolic link" in line, line


def test_eval_refuses_a_linked_features_npz_before_evaluating(
    tmp_path, trained_run, capsys, monkeypatch
):
    """Case 3: ``features.npz`` links to someone else's file: ``eval`` is one line naming it,
    before the evaluation; the file is untouched and no eval.json is written."""
    import torch_impl.evaluate as ev

    run = trained_run("torch", _cfg(tmp_path / "run"))
    other = _outside(tmp_path)
    (run / "features.npz").symlink_to(other / "keep.npz")
    before = _fingerprint(other)
    monkeypatch.setattr(ev, "evaluate_encoder", _must_not_run)
    code = impl_cli.main("torch", ["eval", "--run-dir", str(run)])
    assert _fingerprint(other) == before and not (run / "eval.json").exists()
    line = _one_error_line(capsys)
    assert code == 2 and f"out: {str(run / 'features.npz')!r} is a symbolic link" in line, line


def test_atomic_writes_replace_a_link_and_never_write_through_it(tmp_path):
    other = _outside(tmp_path)
    link = tmp_path / "features.npz"
    link.symlink_to(other / "keep.npz")
    before = _fingerprint(other)
    atomic_write_npz(link, compressed=True, x=np.arange(3))
    assert _fingerprint(other) == before and not link.is_symlink()
    with np.load(link) as f:
        assert f["x"].tolist() == [0, 1, 2]


def _must_not_run(*args, **kwargs):
    raise AssertionError("the work started before the output was checked")


# --- a full disk ---------------------------------------------------------------------------------


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_disk_full_after_a_checkpoint_names_it_in_one_line(
    tmp_path, framework, monkeypatch, capsys
):
    """Case 4: the disk fills after the first checkpoint, at the second epoch's metrics.json:
    one line naming the intact checkpoint, exit 2; metrics.json keeps epoch 1."""
    pytest.importorskip(framework)
    from shared.run import runlog

    ck = __import__(f"{PACKAGES[framework]}.checkpoint", fromlist=["x"])
    run = tmp_path / "run"
    real = runlog.atomic_write_bytes

    def fills_up(path, data):
        if Path(path).name == "metrics.json" and ck.latest_checkpoint(run) is not None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, data)

    monkeypatch.setattr(runlog, "atomic_write_bytes", fills_up)
    assert impl_cli.main(framework, _train_argv(run, 2)) == 2
    line = _one_error_line(capsys)
    first = ck.latest_checkpoint(run)
    assert f"metrics.json in {str(run)!r} could not be written (No space left on device)" in line
    assert f"the last intact checkpoint is {str(first)!r}" in line and "--resume" in line
    assert str(first).endswith(("ckpt-0001.pt", "ckpt-1"))
    assert [e["epoch"] for e in runlog.read_metrics(run / "metrics.json")["epochs"]] == [1]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_full_disk_at_the_tensorboard_start_is_one_line(
    tmp_path, framework, trained_run, monkeypatch, capsys
):
    """Case 4: the TensorBoard writer cannot write its first event (the framework's own
    disk-full error): one line naming the run's checkpoint, exit 2."""
    run = trained_run(framework, _cfg(tmp_path / "run"))
    train = __import__(f"{PACKAGES[framework]}.train", fromlist=["x"])
    if framework == "torch":
        full = OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
    else:
        import tensorflow as tf

        full = tf.errors.ResourceExhaustedError(None, None, "tb/events; No space left on device")

    def open_writer(run_dir):
        raise full

    monkeypatch.setattr(train.HOOKS, "open_writer", open_writer)
    assert impl_cli.main(framework, [*_train_argv(run, 2), "--resume"]) == 2
    line = _one_error_line(capsys)
    assert "the TensorBoard log in" in line and "could not be written (" in line
    assert "the last intact checkpoint is" in line and "ckpt-" in line


# --- outputs checked before the work ------------------------------------------------------------


@pytest.fixture
def read_only(monkeypatch):
    """``read_only(folder)``: ``folder`` made read-only (mode 0o555). Root ignores the mode, so
    for root ``os.access``, ``os.mkdir`` and ``os.open`` refuse writes there, as a read-only
    folder would."""
    made = []

    def make(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o555)
        made.append(folder)
        if os.geteuid() == 0:
            _refuse_writes_under(monkeypatch, str(folder.resolve()))
        return folder

    yield make
    for folder in made:
        folder.chmod(0o755)


def _refuse_writes_under(monkeypatch, ro: str) -> None:
    def inside(path) -> bool:
        p = os.path.abspath(os.fspath(path))
        return p == ro or p.startswith(ro + os.sep)

    def denied(path):
        return PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))

    real_access, real_mkdir, real_open = os.access, os.mkdir, os.open

    def access(path, mode, *a, **kw):
        return False if inside(path) and mode & os.W_OK else real_access(path, mode, *a, **kw)

    def mkdir(path, *a, **kw):
        if inside(os.path.dirname(os.path.abspath(path))):
            raise denied(path)
        return real_mkdir(path, *a, **kw)

    def open_(path, flags, *a, **kw):
        writes = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        if writes and inside(os.path.dirname(os.path.abspath(path))):
            raise denied(path)
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "open", open_)


def test_eval_refuses_an_existing_file_or_a_read_only_folder_before_evaluating(
    tmp_path, trained_run, read_only, monkeypatch, capsys
):
    """Case 5: ``eval --out FILE`` (FILE exists) and ``eval --out RO`` (a read-only folder):
    one line each, before the evaluation; FILE keeps its bytes."""
    import torch_impl.evaluate as ev

    run = trained_run("torch", _cfg(tmp_path / "run"))
    monkeypatch.setattr(ev, "evaluate_encoder", _must_not_run)
    file = tmp_path / "results.txt"
    file.write_text("mine")
    assert impl_cli.main("torch", ["eval", "--run-dir", str(run), "--out", str(file)]) == 2
    assert f"out: {str(file)!r} is a file, expected a folder" in _one_error_line(capsys)
    assert file.read_text() == "mine"
    ro = read_only(tmp_path / "ro")
    assert impl_cli.main("torch", ["eval", "--run-dir", str(run), "--out", str(ro)]) == 2
    assert f"out: {str(ro)!r} is not writable" in _one_error_line(capsys)
    assert not any(ro.iterdir())


def test_port_refuses_a_bad_out_before_exporting(
    tmp_path, trained_run, read_only, monkeypatch, capsys
):
    """Case 5: ``rosetta port --out FILE`` (FILE exists), ``--out`` a run, and ``--out`` in a
    read-only folder: one line each, before the export starts."""
    import subprocess

    run = trained_run("torch", _cfg(tmp_path / "run"))
    monkeypatch.setattr(subprocess, "call", _must_not_run)
    file = tmp_path / "ported"
    file.write_text("mine")
    ro = read_only(tmp_path / "ro")
    for out, said in (
        (file, f"out: {str(file)!r} is a file, expected a new run directory"),
        (run, f"out: {str(run)!r} already holds a run"),
        (ro / "new", f"out: {str(ro / 'new')!r} is not writable"),
    ):
        assert cli.main(["port", str(run), "--to", "tensorflow", "--out", str(out)]) == 2
        assert said in _one_error_line(capsys)
    assert file.read_text() == "mine" and not any(ro.iterdir())


def test_import_and_import_weights_refuse_a_read_only_folder_before_reading(
    tmp_path, read_only, monkeypatch, capsys
):
    """Case 5: ``rosetta import ... --out RO/run`` and ``import-weights --out RO/run``: one line
    naming the folder, before the checkpoint or the weights are read."""
    import subprocess

    monkeypatch.setattr(subprocess, "call", _must_not_run)
    ro = read_only(tmp_path / "ro")
    argv = ["import", str(tmp_path / "x.pth.tar"), "--format", "moco", "--to", "torch"]
    assert cli.main([*argv, "--out", str(ro / "run")]) == 2
    assert f"out: {str(ro)!r} is not writable" in _one_error_line(capsys)
    weights = ["--weights", str(tmp_path / "w.npz"), "--config", str(tmp_path / "config.json")]
    assert impl_cli.main("torch", ["import-weights", *weights, "--out", str(ro / "run")]) == 2
    assert f"out: {str(ro / 'run')!r} is not writable" in _one_error_line(capsys)
    assert not any(ro.iterdir())


def test_save_weights_replaces_a_link_and_never_writes_through_it(tmp_path):
    """``export-weights --out``'s writer: a link at the output path is replaced by the file,
    and the file it pointed to keeps its bytes."""
    import numpy as np

    from shared.parity.weights import load_weights, save_weights

    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"keep me")
    link = tmp_path / "run" / "weights.npz"
    link.parent.mkdir()
    link.symlink_to(outside)
    save_weights(link, {"w": np.arange(3.0)}, {"method": "simclr"})
    assert outside.read_bytes() == b"keep me" and not link.is_symlink()
    state, meta = load_weights(link)
    assert state["w"].tolist() == [0.0, 1.0, 2.0] and meta["method"] == "simclr"
    assert [p.name for p in link.parent.iterdir()] == ["weights.npz"]  # no temporary file left


@pytest.mark.parametrize("command", ["finetune", "export-weights"])
def test_finetune_and_export_refuse_a_bad_out_before_loading(command, tmp_path, capsys):
    """``--out FILE`` of finetune and export-weights is checked before the run is loaded: a
    link there is refused in one line, exit 2, and the file it points to keeps its bytes."""
    from shared.apps.impl_cli import main

    outside = tmp_path / "outside.json"
    outside.write_text("keep")
    out = tmp_path / "out" / "result.json"
    out.parent.mkdir()
    out.symlink_to(outside)
    missing_run = tmp_path / "no-such-run"  # loading it would fail differently
    code = main("torch", [command, "--run-dir", str(missing_run), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: out:"), err
    assert "link" in err[0] and outside.read_text() == "keep"


def test_a_full_disk_while_eval_writes_its_outputs_is_one_line(
    tmp_path, trained_run, monkeypatch, capsys
):
    """The disk fills while ``eval`` writes features.npz: one line naming the file, exit 2,
    no temp file left, and nothing of the run touched (checkpoints and config as they were)."""
    run = trained_run("torch", _cfg(tmp_path / "run"))
    before = _fingerprint(run)
    real_fsync = os.fsync

    def fills_up(fd):
        if ".features.npz." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fills_up)
    assert impl_cli.main("torch", ["eval", "--run-dir", str(run)]) == 2
    line = _one_error_line(capsys)
    assert f"{run / 'features.npz'} could not be written (No space left on device)" in line
    after = _fingerprint(run)
    assert not [p for p in after if p.endswith(".tmp")]
    assert {k: v for k, v in after.items() if "eval.json" not in k} == before
