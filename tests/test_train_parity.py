"""Train parity: each framework's own training loop (``run_epoch``: learning-rate schedule,
the method's optimiser, MoCo's key momentum and queue) from the same ported weights on the
same views gives the same loss curve, the same last gradients and optimiser slots and the
same weights in float64 (``shared.parity.train_parity``;
``rosetta parity --level train`` runs three epochs of it, each framework in its own process)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torchvision  # noqa: E402,F401  (before TensorFlow)

pytest.importorskip("tensorflow")

from shared.parity import train_parity as tp  # noqa: E402
from shared.run.config import TrainConfig  # noqa: E402
from shared.run.data import load_embedded  # noqa: E402
from tf_impl import methods as tmeth  # noqa: E402
from tf_impl import parity as tpar  # noqa: E402
from tf_impl import weights as tw  # noqa: E402
from torch_impl import methods as pmeth  # noqa: E402
from torch_impl import parity as ppar  # noqa: E402
from torch_impl import weights as pw  # noqa: E402


def _first_epoch(case: str, dtype: str) -> tuple[dict, dict]:
    cfg = TrainConfig(**tp.config_kwargs(case)).resolve("torch")
    images = load_embedded().train.images[: tp.IMAGES]
    views = [ppar.train_views(cfg, images, tp.view_params(cfg, 0))]
    torch.manual_seed(cfg.seed)
    pt = pmeth.build_model(cfg, dtype)
    tfm = tmeth.build_model(cfg, dtype)
    tw.import_weights(tfm, pw.export_weights(pt))
    return ppar.train_run(cfg, pt, views), tpar.train_run(cfg, tfm, views)


@pytest.mark.parametrize("case", list(tp.CASES))
def test_first_epoch_float64_same_curve_and_weights(case):
    """8 steps (the warm-up epoch) of the real loop in both frameworks, float64: every
    step's loss, the last step's gradients and optimiser slots, and the whole state after it
    (the key encoder, queue and pointer too) within the table."""
    a, b = _first_epoch(case, "float64")
    assert len(a["step_loss"]) == tp.steps_per_epoch()
    rows = tp.compare_runs(a, b, "float64", case)
    names = {r["name"] for r in rows}
    assert names >= {"loss.step_loss", "loss.epoch_loss"}
    trainable = [k[len("grad/") :] for k in a if k.startswith("grad/")]
    assert len(trainable) > 10
    assert {f"grad.grad/{k}" for k in trainable} <= names
    assert {f"grad.slot/{k}/momentum" for k in trainable} <= names  # LARS and SGD: momentum
    assert {f"param.after/{k}" for k in trainable} <= names
    moco = {"queue.after/queue", "ptr.after/queue_ptr"}
    assert (moco <= names) == (case == "moco"), names
    bad = [r for r in rows if not r["passed"]]
    assert not bad, bad
    assert not np.array_equal(a["step_loss"], np.full_like(a["step_loss"], a["step_loss"][0]))


def test_compare_runs_fails_on_a_wrong_schedule_or_a_changed_weight():
    """The verdicts can fail: a 5 % loss gap fails float32 (a wrong learning rate moves
    the curve by that much), one weight off by 1e-9 relative fails float64."""
    rng = np.random.default_rng(0)
    a = {
        "step_loss": rng.random(24) + 3,
        "epoch_loss": np.array([3.8, 3.4, 3.1]),
        "after/net/w": rng.random((4, 4)),
    }
    b = {k: v.copy() for k, v in a.items()}
    assert all(r["passed"] for r in tp.compare_runs(a, b, "float64", "simclr"))
    b["epoch_loss"] = a["epoch_loss"] * [1.0, 1.0, 1.05]
    f32 = tp.compare_runs(a, b, "float32", "simclr")
    assert [r["passed"] for r in f32] == [False] and f32[0]["max_rel"] == pytest.approx(0.05)
    b = {k: v.copy() for k, v in a.items()}
    b["after/net/w"][1, 2] *= 1 + 1e-9
    bad = [r["name"] for r in tp.compare_runs(a, b, "float64", "simclr") if not r["passed"]]
    assert bad == ["param.after/net/w"]
    a["slot/net/w/momentum"] = rng.random((4, 4))  # the optimiser's state is compared too
    b = {k: v.copy() for k, v in a.items()}
    b["slot/net/w/momentum"][0, 0] *= 1 + 1e-6
    bad = [r["name"] for r in tp.compare_runs(a, b, "float64", "simclr") if not r["passed"]]
    assert bad == ["grad.slot/net/w/momentum"]
    del b["slot/net/w/momentum"]
    with pytest.raises(AssertionError, match="slot/net/w/momentum"):
        tp.compare_runs(a, b, "float64", "simclr")


@pytest.mark.slow
def test_rosetta_parity_train_level(tmp_path):
    """The CLI: three epochs per case and dtype, each framework in its own process; PASS,
    with the curves as Markdown, JSON and a figure."""
    import json
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "shared.apps.cli", "parity", "--level", "train"]
    res = subprocess.run([*cmd, "--out", str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "PASS" in res.stdout
    curves = json.loads((tmp_path / "train_curves.json").read_text())
    assert set(curves) == {f"{c}/{d}" for c in tp.CASES for d in ("float64", "float32")}
    f64 = curves["moco/float64"]
    assert len(f64["torch"]) == tp.EPOCHS * tp.steps_per_epoch()
    np.testing.assert_allclose(f64["torch"], f64["tensorflow"], rtol=1e-12)
    assert (tmp_path / "train_curves.png").stat().st_size > 10_000
    assert "| moco | float32 | 3 |" in (tmp_path / "train_curves.md").read_text()
