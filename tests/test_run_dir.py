"""Run directories that can't mix, and resume that checks its config (both frameworks).

* A folder that holds a run is refused without ``--resume`` or ``--overwrite``; a refusal
  writes nothing. ``--overwrite`` deletes the old checkpoints first, so no stale ``ckpt-0003``
  outlives a new ``ckpt-0002``.
* ``--resume`` with another method, encoder or shape is refused with the differing fields;
  another seed, temperature or lr only with ``--allow-config-change``, and then recorded.
"""

import json

import pytest

from shared.run.config import TrainConfig, check_resume
from shared.run.runlog import prepare_run_dir

FRAMEWORKS = ["torch", "tensorflow"]


def _train(framework):
    pkg = "torch_impl" if framework == "torch" else "tf_impl"
    pytest.importorskip("torch" if framework == "torch" else "tensorflow")
    return __import__(f"{pkg}.train", fromlist=["x"]).train


def _cfg(tmp_path, **kw):
    base = dict(
        method="simclr",
        epochs=1,
        batch_size=16,
        limit_train=32,
        knn_every=0,
        run_dir=str(tmp_path / "run"),
        amp=False,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_prepare_run_dir_refuses_replaces_and_names_a_file(tmp_path):
    run = tmp_path / "run"
    prepare_run_dir(run, resume=False, overwrite=False)  # missing: fine, and now created
    assert run.is_dir() and not any(run.iterdir())  # the write probe leaves nothing
    (run / "config.json").write_text("{}")
    (run / "ckpt-0003.pt").write_bytes(b"old")
    with pytest.raises(ValueError, match="already holds a run; pass --resume .* or --overwrite"):
        prepare_run_dir(run, resume=False, overwrite=False)
    prepare_run_dir(run, resume=True, overwrite=False)  # continuing is allowed
    prepare_run_dir(run, resume=False, overwrite=True)
    assert not any(run.iterdir())
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file, expected a directory"):
        prepare_run_dir(tmp_path / "file", resume=False, overwrite=False)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_second_run_into_the_same_dir_is_refused_then_overwritten(tmp_path, framework):
    train = _train(framework)
    train(_cfg(tmp_path, epochs=2), progress=False)
    before = (tmp_path / "run" / "config.json").read_text()
    with pytest.raises(ValueError, match="already holds a run"):
        train(_cfg(tmp_path, seed=1), progress=False)
    assert (tmp_path / "run" / "config.json").read_text() == before  # nothing was written
    train(_cfg(tmp_path, seed=1, overwrite=True), progress=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1]  # the old epoch-2 run is gone
    if framework == "torch":
        assert [p.name for p in sorted((tmp_path / "run").glob("ckpt-*.pt"))] == ["ckpt-0001.pt"]


def test_check_resume_names_the_fields():
    saved = TrainConfig(method="moco").resolve("torch")
    with pytest.raises(ValueError, match="resume: the checkpoint .* other proj_dim: 128 -> 64"):
        check_resume(saved, TrainConfig(method="moco", proj_dim=64).resolve("torch"))
    with pytest.raises(
        ValueError, match="temperature: 0.1 -> 0.2, seed: 0 -> 3 differ .* --allow-config-change"
    ):
        check_resume(saved, TrainConfig(method="moco", seed=3, temperature=0.2).resolve("torch"))
    allowed = TrainConfig(method="moco", seed=3, allow_config_change=True).resolve("torch")
    assert check_resume(saved, allowed) == ["seed"]
    assert (
        check_resume(saved, TrainConfig(method="moco", epochs=40, resume=True).resolve("torch"))
        == []
    )


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_resume_with_a_changed_config(tmp_path, framework, trained_run):
    train = _train(framework)
    trained_run(framework, _cfg(tmp_path))
    with pytest.raises(ValueError, match="other method: 'simclr' -> 'moco'"):
        train(_cfg(tmp_path, method="moco", epochs=2, resume=True), progress=False)
    with pytest.raises(ValueError, match="temperature: 0.2 -> 0.5 differ"):
        train(_cfg(tmp_path, temperature=0.5, epochs=2, resume=True), progress=False)
    train(
        _cfg(tmp_path, temperature=0.5, epochs=2, resume=True, allow_config_change=True),
        progress=False,
    )
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["config_changes"] == [{"at_epoch": 1, "fields": ["temperature"]}]
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_non_finite_stops_with_the_true_last_checkpoint_and_never_saves_it(tmp_path, framework):
    """A huge learning rate drives the weights to inf/NaN: the run stops with one line naming
    the epoch and the last *finite* checkpoint (or none), and no non-finite state is saved."""
    train = _train(framework)
    blow_up = dict(optimizer="sgd", lr=1e38, weight_decay=0.0)
    with pytest.raises(FloatingPointError, match="in epoch 1; no checkpoint was written yet"):
        train(_cfg(tmp_path, epochs=3, **blow_up), progress=False)
    train(_cfg(tmp_path / "b", epochs=1, optimizer="sgd", lr=0.1, weight_decay=0.0), progress=False)
    with pytest.raises(
        FloatingPointError,
        match="in epoch 2; the last finite checkpoint is .*(ckpt-0001.pt|ckpt-1)",
    ):
        train(
            _cfg(tmp_path / "b", epochs=3, resume=True, allow_config_change=True, **blow_up),
            progress=False,
        )
    metrics = json.loads((tmp_path / "b" / "run" / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1]


def test_orphan_temp_files_are_removed_and_run_files_follow_the_umask(tmp_path):
    import os

    from shared.run.runlog import atomic_write_json

    run = tmp_path / "run"
    (run / "ckpt" / "ckpt-3_temp").mkdir(parents=True)
    (run / ".ckpt-0003.pt.abc.tmp").write_bytes(b"x" * 10)
    (run / "ckpt-0002.pt").write_bytes(b"complete")
    prepare_run_dir(run, resume=True, overwrite=False)
    assert sorted(p.name for p in run.iterdir()) == ["ckpt", "ckpt-0002.pt"] and not any(
        (run / "ckpt").iterdir()
    )
    old = os.umask(0o022)
    try:
        atomic_write_json(run / "metrics.json", {"a": 1})
    finally:
        os.umask(old)
    assert (run / "metrics.json").stat().st_mode & 0o777 == 0o644
