"""Fixtures shared by the test files: tiny trained runs, built once per session, and a small
``eval`` (data and probe) that takes seconds.

``trained_run(framework, cfg)`` trains ``cfg`` in-process the first time a test asks for that
(framework, config) pair, in a session folder, and copies the run into ``cfg.run_dir`` for each
test that asks: every test gets its own copy to write into (eval.json, a resumed checkpoint).
``early_child`` starts a Python process ahead of its turn, so that importing its framework
overlaps the test's work.
"""

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shared.run.config import PACKAGES

SMALL_TRAIN, SMALL_TEST = 200, 100  # about 20 training and 10 test images per class
COURSE_EPOCHS = 3  # chapter 5's training run in the suite (15 epochs, about 2 minutes, by hand)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """``trained_run(framework, cfg) -> Path``: ``cfg.run_dir`` holding the run ``cfg`` trains
    (``train(cfg)`` of ``framework``), trained once per session for each config (``run_dir``
    aside) and copied for each call."""
    runs: dict[tuple[str, str], Path] = {}

    def get(framework: str, cfg) -> Path:
        pytest.importorskip(framework)
        key = (framework, json.dumps(dataclasses.asdict(dataclasses.replace(cfg, run_dir=None))))
        if key not in runs:
            src = tmp_path_factory.mktemp(f"trained-{framework}-{cfg.method}") / "run"
            train = __import__(f"{PACKAGES[framework]}.train", fromlist=["x"]).train
            train(dataclasses.replace(cfg, run_dir=str(src)), progress=False)
            runs[key] = src
        dst = Path(cfg.run_dir)
        shutil.copytree(runs[key], dst)
        return dst

    return get


def _head(split, n: int):
    return type(split)(split.images[:n], split.labels[:n])


@pytest.fixture
def small_eval(monkeypatch):
    """A small ``eval``: the embedded dataset cut to its first 200 training and 100 test images
    (every class in both), and the probe's protocol to one C by 2-fold CV. The whole protocol
    fits 16 logistic regressions per representation, three representations per eval: about a
    minute on the whole set, and as long on 200 images (the raw pixels' 3,072 features x 10
    classes set the cost of a fit); 3 fits each here. Training on ``limit_train`` <= 200 images
    reads the same images as on the whole set."""
    from shared.run import data, evaluation

    real = data.load_embedded

    def small(seed: int = data.DEFAULT_SEED, cache: bool = True):
        ds = real(seed, cache)
        cut = data.EmbeddedDataset(_head(ds.train, SMALL_TRAIN), _head(ds.test, SMALL_TEST))
        assert len(np.unique(cut.train.labels)) == len(np.unique(cut.test.labels)) == 10
        return dataclasses.replace(cut, checksum=data.checksum(cut))

    monkeypatch.setattr(data, "load_embedded", small)
    monkeypatch.setattr(evaluation, "PROBE_CS", (0.1,))
    monkeypatch.setattr(evaluation, "PROBE_FOLDS", 2)
    assert evaluation.protocol() != evaluation.PROTOCOL  # the raw-pixel cache keeps them apart


class EarlyChild:
    """A Python child started ahead of its turn: it runs ``prelude`` (its imports) at once,
    then waits for :meth:`go` before it runs ``body``, so that its start-up overlaps what the
    test does meanwhile."""

    def __init__(self, prelude: str, body: str, flag: Path, env: dict | None = None):
        self.flag = flag
        wait = f"import time as _t, pathlib as _p\nwhile not _p.Path({str(flag)!r}).exists():\n"
        wait += "    _t.sleep(0.02)\n"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", prelude + "\n" + wait + body],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def go(self) -> None:
        self.flag.touch()

    def wait(self, timeout: float) -> subprocess.CompletedProcess:
        """Let the child run ``body`` and wait for it: its return code, stdout and stderr."""
        self.go()
        try:
            out, err = self.proc.communicate(timeout=timeout)
        finally:
            self.kill()
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, err)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def early_child(tmp_path):
    """``early_child(prelude, body, env=None) -> EarlyChild``; every child still running at
    the end of the test is killed."""
    children: list[EarlyChild] = []

    def start(prelude: str, body: str, env: dict | None = None) -> EarlyChild:
        child = EarlyChild(prelude, body, tmp_path / f"go-{len(children)}", env)
        children.append(child)
        return child

    yield start
    for child in children:
        child.kill()


@pytest.fixture(scope="session")
def executed_course(tmp_path_factory):
    """The course (``docs/course/``) rendered and executed once per session by
    ``shared.docgen.course``, two kernels at a time: the folder of its executed notebooks, its
    Markdown pages and their PNG figures, beside ``timings.json`` (each chapter's seconds and
    the wall time of all). The chapters read the committed results file; each kernel runs in a
    scratch folder outside the repository (``shared.docgen.course.execute``), and chapter 5's
    training run is cut to ``COURSE_EPOCHS`` epochs (``tests/test_course.py`` checks that its
    kNN still rises above the random-init encoder's)."""
    pytest.importorskip("nbclient")
    pytest.importorskip("jupytext")
    import time

    from shared.docgen import course

    out = tmp_path_factory.mktemp("course")
    start = time.perf_counter()
    epochs = {"ROSETTA_COURSE_EPOCHS": str(COURSE_EPOCHS)}
    seconds = course.render(out, run=True, jobs=2, extra_env=epochs)
    timings = {"chapters_s": seconds, "wall_s": time.perf_counter() - start}
    (out / "timings.json").write_text(json.dumps(timings, indent=1))
    return out
