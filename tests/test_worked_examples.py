"""Every number the worked examples print, recomputed by hand arithmetic or a closed form; the
course meets them in the order of their letters."""

import math
import re
from pathlib import Path

import numpy as np
import pytest

from shared.oracle import worked_examples as W

ROOT = Path(__file__).resolve().parents[1]


def test_example_c_by_hand():
    ex = W.example_c()
    v = ex.values
    # normalised views: (2,0,0)->(1,0,0); (3,4,0)/5; (0,3,4)/5
    np.testing.assert_allclose(
        v["u"], [[1, 0, 0], [0, 1, 0], [0.6, 0.8, 0], [0, 0.6, 0.8]], atol=1e-15
    )
    sim = [[1, 0, 0.6, 0], [0, 1, 0.8, 0.6], [0.6, 0.8, 1, 0.48], [0, 0.6, 0.48, 1]]
    np.testing.assert_allclose(v["sim"], sim, atol=1e-15)
    np.testing.assert_allclose(v["logits"], np.array(sim) / 0.5, atol=1e-14)
    e = math.exp
    # row by row: exclude self, softmax over the other three logits
    rows = [
        (0, [0, 2.4 / 2, 0], 1),
        (1, [0, 1.6, 1.2], 2),
        (2, [1.2, 1.6, 0.96], 0),
        (3, [0, 1.2, 0.96], 1),
    ]  # (anchor, others in column order, pos slot)
    per = []
    for i, others, pos in rows:
        den = sum(e(x) for x in others)
        per.append(-math.log(e(others[pos]) / den))
        cols = [j for j in range(4) if j != i]
        for slot, j in enumerate(cols):
            assert v["probs"][i, j] == pytest.approx(e(others[slot]) / den, rel=1e-12)
    np.testing.assert_allclose(v["per_anchor"], per, rtol=1e-12)
    assert v["loss"] == pytest.approx(sum(per) / 4, rel=1e-12)
    assert f"L = {sum(per) / 4:.4f}" in ex.text()


def test_example_b_by_hand():
    ex = W.example_b()
    e = math.exp
    den = e(4) + e(0) + e(-5) + e(3)
    np.testing.assert_allclose(ex.values["logits"], [[4, 0, -5, 3]], atol=1e-14)
    np.testing.assert_allclose(
        ex.values["probs"], [[e(4) / den, 1 / den, e(-5) / den, e(3) / den]], rtol=1e-12
    )
    assert ex.values["loss"] == pytest.approx(math.log(den) - 4, rel=1e-12)
    assert f"{math.log(den) - 4:.4f}" in ex.text()


def test_example_e_closed_forms():
    v = W.example_e().values
    assert v["collapsed_nt_xent"] == pytest.approx(math.log(2 * v["n"] - 1), rel=1e-12)
    assert v["collapsed_info_nce"] == pytest.approx(math.log(v["k"] + 1), rel=1e-12)
    for tau, got in v["separated"]:
        assert got == pytest.approx(math.log1p(6 * math.exp(-1 / tau)), rel=1e-9, abs=1e-15)
    vals = [g for _, g in v["separated"]]
    assert vals == sorted(vals, reverse=True) and vals[-1] < 1e-12


def test_example_g_runs_the_quoted_formula_by_hand():
    """L_i = -log(1 / (1 + sum_j cos(z1_i, z2_j))) = log(1 + sum_j cos(z1_i, z2_j))."""
    ex = W.example_g()
    v = ex.values
    np.testing.assert_allclose(v["cos"], [[0.6, -0.8], [0.8, 0.6]], atol=1e-15)
    np.testing.assert_allclose(v["denominators"], [1 + 0.6 - 0.8, 1 + 0.8 + 0.6], atol=1e-15)
    np.testing.assert_allclose(v["seed002"], [math.log(0.8), math.log(2.4)], rtol=1e-12)
    assert v["seed002"][0] < 0  # a negative "loss"
    assert f"log(0.8000) = {math.log(0.8):+.4f}  negative" in ex.text()
    assert f"log(2.4000) = {math.log(2.4):+.4f}" in ex.text()
    # z2_0 = (-0.6, -0.8): row 0's denominator 1 - 0.6 - 0.8 = -0.4, the log of a negative
    opposite = v["variants"]["opposite"]
    assert 1 + opposite["cos"][0].sum() == pytest.approx(-0.4, abs=1e-15)
    assert math.isnan(opposite["seed002"][0]) and "undefined" in ex.text()
    # z2_0 = z1_0: the views agree, and row 0's value rises to log(1 + 1 - 0.8) = log(1.2)
    agree = v["variants"]["agree"]["seed002"]
    assert agree[0] == pytest.approx(math.log(1.2), rel=1e-12) and agree[0] > v["seed002"][0]
    # NT-Xent at tau = 0.5 by hand: u = (1,0), (0,1), (.6,.8), (-.8,.6); every positive's logit
    # is 1.2, anchors 0 and 3 see the others at (0, 1.2, -1.6), anchors 1 and 2 at (0, 1.2, 1.6)
    e = math.exp
    by_hand = (math.log(1 + e(1.2) + e(-1.6)) + math.log(1 + e(1.2) + e(1.6))) / 2 - 1.2
    assert v["nt_xent"] == pytest.approx(by_hand, rel=1e-12)
    assert f"NT-Xent here = {by_hand:.4f}" in ex.text()


def test_cli_prints_each_example_alone(capsys):
    assert W.main(["b"]) == 0
    out = capsys.readouterr().out
    assert "InfoNCE" in out and "NT-Xent: N = 2" not in out
    assert W.main(["zz"]) == 2


def test_example_h_queue_and_ema_by_hand():
    ex = W.example_h()
    s = ex.values["steps"]
    # EMA with m = 0.9: theta_k = 0.9 theta_k + 0.1 theta_q, theta_q = 1.0, then 1.5, then 2.0
    assert [st["theta_k"] for st in s] == pytest.approx([1.0, 1.05, 0.9 * 1.05 + 0.2], abs=1e-15)
    # the ring: 3 keys per step into 4 rows, the pointer advancing by 3 mod 4
    assert [st["rows"] for st in s] == [[0, 1, 2], [3, 0, 1], [2, 3, 0]]
    assert [st["ptr"] for st in s] == [3, 2, 1]
    np.testing.assert_allclose(s[0]["queue"], [1.1, 1.2, 1.3, 0.0])
    np.testing.assert_allclose(s[1]["queue"], [2.2, 2.3, 1.3, 2.1])
    np.testing.assert_allclose(s[2]["queue"], [3.3, 2.3, 3.1, 3.2])
    # the negatives of a step are the queue before its own keys are enqueued
    np.testing.assert_allclose(s[1]["negatives"], s[0]["queue"])
    np.testing.assert_allclose(s[2]["negatives"], s[1]["queue"])
    assert "ptr 3 -> 2" in ex.text()


def test_example_a_encoder_and_head_by_hand():
    v = W.example_a().values
    # W_f x = (0.5 + 0.5, -1 - 1) = (1, -2); ReLU -> (1, 0)
    np.testing.assert_allclose(v["h"], [1.0, 0.0])
    # W1 h = (1, 0.5); ReLU keeps it; W2 (1, 0.5) = (0.5, 1.5); |z| = sqrt(2.5)
    np.testing.assert_allclose(v["z"], [0.5, 1.5])
    np.testing.assert_allclose(v["u"], np.array([0.5, 1.5]) / math.sqrt(2.5), rtol=1e-15)


def test_example_d_temperature_by_hand():
    v = W.example_d().values
    sims = [0.9, 0.7, 0.3, 0.0, -0.5]
    for tau, row in v["rows"].items():
        den = sum(math.exp(s / tau) for s in sims)
        p = [math.exp(s / tau) / den for s in sims]
        np.testing.assert_allclose(row["p"], p, rtol=1e-12)
        assert row["loss"] == pytest.approx(-math.log(p[0]), rel=1e-12)
        assert row["grad"][0] == pytest.approx((p[0] - 1) / tau, rel=1e-12)
        assert row["hard_share"] == pytest.approx(p[1] / sum(p[1:]), rel=1e-12)
    shares = [v["rows"][t]["hard_share"] for t in sorted(v["rows"])]
    assert shares == sorted(shares, reverse=True)  # smaller tau, more on the hard negative


def test_example_f_chance_levels():
    v = W.example_f().values
    assert v["chance_simclr"] == pytest.approx(math.log(2 * v["n"] - 1), rel=1e-15)
    assert v["chance_moco"] == pytest.approx(math.log(v["k"] + 1), rel=1e-15)
    from shared.oracle.losses import nt_xent

    n = v["n"]  # orthogonal: z1 = z2 = the basis vectors, as in example (e)
    assert v["floor_simclr"] == pytest.approx(nt_xent(np.eye(n), np.eye(n), 0.2), rel=1e-9)

    # the demo's real curves start below chance and stay above the orthogonal value
    for name, chance, floor in (
        ("simclr_torch", v["chance_simclr"], v["floor_simclr"]),
        ("moco_tensorflow", v["chance_moco"], v["floor_moco"]),
    ):
        curve = v["curves"][name]
        assert floor < min(curve) and curve[0] < chance and curve[-1] < curve[0]


def test_example_f_uses_the_trained_configuration():
    """The oracle sits below the run layer, so it restates the demo's settings; they must equal
    what ``shared.run.config`` resolves for each method."""
    from shared.run.config import TrainConfig

    simclr = TrainConfig(method="simclr").resolve("torch")
    moco = TrainConfig(method="moco").resolve("tensorflow")
    assert W.DEMO_SETTINGS == {
        "n": simclr.batch_size,
        "k": moco.queue_size,
        "tau_simclr": simclr.temperature,
        "tau_moco": moco.temperature,
    }


def test_the_cli_needs_numpy_alone():
    """``python -m shared.oracle.worked_examples`` runs with every framework and plotting or
    scientific package other than NumPy blocked."""
    import subprocess
    import sys
    from pathlib import Path

    blocked = ("torch", "torchvision", "tensorflow", "keras", "sklearn", "scipy", "matplotlib")
    code = (
        "import runpy, sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {blocked!r}:\n"
        "            raise ImportError(f'blocked: {name}')\n"
        "sys.meta_path.insert(0, Block())\n"
        "sys.argv = ['worked_examples']\n"
        "runpy.run_module('shared.oracle.worked_examples', run_name='__main__')\n"
    )
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("=" * 10) >= 2 * len(W.EXAMPLES)  # every example's title bars


MENTION = re.compile(r"\bexample_([a-h])\(|[Ww]orked example \(([a-h])\)")


def test_the_course_meets_the_examples_in_alphabetical_order():
    """Read from chapter 1 to chapter 9, the examples the course calls or names first appear as
    (a), (b), ..., (h): the letters are the reading order. Each example's key is its letter."""
    first: list[str] = []
    for path in sorted((ROOT / "docs" / "course").glob("0*.py")):
        for m in MENTION.finditer(path.read_text()):
            letter = m[1] or m[2]
            if letter not in first:
                first.append(letter)
    assert first == list("abcdefgh"), first
    for key, make in W.EXAMPLES.items():
        ex = make()
        assert ex.key == key and ex.title.startswith(f"({key}) "), (key, ex.title)
