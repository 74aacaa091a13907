"""The generated pages of docs/ are what their generators write now, so they cannot drift.

* docs/errata.md (``shared.docgen.errata``): each broken snippet still fails with the message the page
  quotes, and each corrected one still gives its output. Only the step timing may differ
  between runs, and it is not asserted (timings are measured in benchmarks/, never in tests).
* docs/side_by_side.md (``shared.docgen.side_by_side``): in ``tests/test_side_by_side.py``.
* docs/tutorial.md (``shared.docgen.tutorial``): byte for byte, one section per section of
  source 000.
* docs/framework_differences.md (``shared.docgen.catalogue``) and docs/step_drift.md
  (``shared.docgen.drift``): everything but the numbers that are float rounding, which follow
  the CPU's kernels and the thread count; each test's docstring says what it compares.
"""

import re

import pytest

from shared.docgen import errata

TIMING = re.compile(r"supervised step [\d.]+ ms, SimCLR step [\d.]+ ms, ratio ([\d.]+)")


@pytest.fixture(scope="module")
def built():
    return errata.build(jobs=2)  # every snippet once, two at a time (some import torch)


def test_errata_page_matches_the_code(built):
    text = errata.markdown(built)
    assert TIMING.search(text), "the errata page no longer measures the two step costs"
    committed = errata.OUT.read_text()
    assert TIMING.search(committed), "the committed page lost its measured step costs"
    assert TIMING.sub("<timing>", text) == TIMING.sub("<timing>", committed), (
        "docs/errata.md is stale: run `python -m shared.docgen.errata` (make docs)"
    )


def test_the_broken_versions_fail_as_the_page_says(built):
    by_label = {r.label: r for e in built for r in e.runs}
    assert (
        "is invalid for input of size 320"
        in by_label["Seed 002's `contrastive_loss`, as written"].output
    )
    assert (
        "['step']"
        in by_label["Seed 002's training loop: the names it reads and never binds"].output
    )
    imagenet = by_label["Seed 002's ImageNet loader"].output
    assert "split" in imagenet and "train=" not in imagenet.splitlines()[0]
    assert "download it externally" in imagenet


def test_self_positive_formula_prefers_views_that_disagree():
    import numpy as np

    eye = np.eye(4)
    agree, opposite = (errata.seed_self_positive_loss(eye, z, 0.5) for z in (eye, -eye))
    assert opposite < agree  # the formula rewards pulling the two views of an image apart
    # by hand: row i has e^2 (self) + e^{+-2} (its own other view) + 3 e^0 (the other images)
    e2 = np.exp(2.0)
    assert agree == np.float64(-2 + np.log(e2 + e2 + 3)).item()
    assert abs(opposite - (-2 + np.log(e2 + np.exp(-2.0) + 3))) < 1e-12


def _quoted_formula(latex: str):
    """Erratum 3's quoted LaTeX read as written, as a Python function of (z1_row, z2): the
    right-hand side with ``\\frac{A}{B}`` as (A) / (B), ``\\sum_{i=1}^{N} T`` as a sum over
    i = 1..N, ``z_{2_i}`` as row i of z2 and ``s`` the cosine; the log of a number <= 0 is NaN."""
    import math

    import numpy as np

    py = latex.split("=", 1)[1].replace(r"\log", "log")
    py = py.replace("z_{2_i}", "z2[i - 1]").replace("z_1", "z1")
    py = re.sub(r"\\sum_\{i=1\}\^\{N\}\s*([^{}]+)", r"sum(\1 for i in range(1, N + 1))", py)
    while r"\frac" in py:
        py = re.sub(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", r"((\1) / (\2))", py)
    assert "\\" not in py and "{" not in py, py  # every piece of LaTeX was read

    def s(u, v):
        return float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))

    def log(x):
        return math.log(x) if x > 0 else math.nan

    names = {"s": s, "log": log, "sum": sum, "range": range}
    return lambda z1, z2: eval(py, {**names, "z1": z1, "z2": z2, "N": len(z2)})


def _agrees(formula, code, cases) -> bool:
    import numpy as np

    for z1, z2 in cases:
        quoted = np.array([formula(row, z2) for row in z1])
        if not np.allclose(quoted, code(z1, z2), rtol=1e-12, atol=0, equal_nan=True):
            return False
    return True


def test_erratum_3_runs_the_formula_it_quotes():
    import numpy as np

    from shared.oracle.losses import seed002_raw_cosine_ratio

    assert errata.SEED_RAW_COSINE_LATEX in errata._raw_cosines().quote
    assert errata.SEED_RAW_COSINE_LATEX in errata.OUT.read_text()  # the page quotes it
    formula = _quoted_formula(errata.SEED_RAW_COSINE_LATEX)
    rng = np.random.default_rng(3)
    cases = [(np.array(a, float), np.array(b, float)) for _, a, b in errata.RAW_COSINE_CASES]
    cases += [tuple(rng.standard_normal((2, 5, 3))) for _ in range(20)]
    assert _agrees(formula, errata.seed_raw_cosine_loss, cases)
    # the checker fails on the code erratum 3 used to run, which drops s(z1, z1) from the sum
    assert not _agrees(formula, seed002_raw_cosine_ratio, cases)
    # by hand, the page's first case: row 0 is -log(1 / (1 + 0.6 - 0.8)) = log(0.8) < 0
    first = errata.seed_raw_cosine_loss(*cases[0])
    assert first[0] == pytest.approx(np.log(0.8), rel=1e-12) and first[0] < 0
    assert first[1] == pytest.approx(np.log(2.4), rel=1e-12)
    assert np.isnan(errata.seed_raw_cosine_loss(*cases[1])[0])  # 1 - 0.6 - 0.8 < 0
    assert f"= {np.log(0.8):.4f}  negative" in errata.raw_cosine_rows()


def test_erratum_3_quotes_the_seed_as_written():
    """The quoted LaTeX is seed 002's, ``z_2_i`` (a double subscript LaTeX rejects) aside. The
    seed documents sit beside the repository, in ../shared/seeds (``$ROSETTA_SEEDS`` elsewhere)."""
    import os
    from pathlib import Path

    seeds = Path(os.environ.get("ROSETTA_SEEDS", errata.OUT.parents[2] / "shared" / "seeds"))
    found = sorted(seeds.glob("002_*.txt"))
    if not found:
        pytest.skip(f"no seed document 002 in {seeds}")
    seed = found[0].read_text()
    written = errata.SEED_RAW_COSINE_LATEX.replace("z_{2_i}", "z_2_i")
    assert written in seed
    assert "将余弦相似度代入对比损失函数，得：" in seed


def test_tutorial_page_matches_the_code():
    from shared.docgen import tutorial

    text = tutorial.markdown()
    assert text == tutorial.OUT.read_text(), (
        "docs/tutorial.md is stale: run `python -m shared.docgen.tutorial` (make docs)"
    )
    # one section per numbered section of source 000, 1.1 to 9.5, in order
    numbers = re.findall(r"^#{3,4} (\d+\.\d+(?:\.\d+)?) ", text, flags=re.M)
    assert numbers[0] == "1.1" and numbers[-1] == "9.5" and len(numbers) == 56  # as in source 000
    assert numbers == sorted(numbers, key=lambda n: [int(p) for p in n.split(".")])


NUMBER_3G = re.compile(r"\d+(\.\d+)?(e[+-]\d\d)?")  # a non-negative float printed with %.3g
NUMBER_1E = re.compile(r"\d\.\de[+-]\d\d")  # printed with %.1e


def _split_table(text: str) -> tuple[list[str], list[list[str]]]:
    """A page's lines outside its tables' data rows, and each data row's cells."""
    frame, rows = [], []
    for line in text.splitlines():
        is_row = line.startswith("| ") and not line.startswith(("| step |", "| difference |"))
        if is_row:
            rows.append(line[2:-2].split(" | "))
        else:
            frame.append(line)
    return frame, rows


def test_framework_differences_page_matches_the_catalogue():
    """docs/framework_differences.md against ``shared.docgen.catalogue.measure()`` run now.

    Compared exactly: every line outside the table's rows (title, introduction, header); the
    rows' number and order; in each row the four text cells (the difference, torch's and TF's
    conventions with init_scale's seeded stds, how the project aligns it); the effect of each
    difference left unaligned (a measured gap printed to 3 significant figures, far above
    rounding).
    Compared by format and bound: the residues after alignment and the effects of the two
    agreement rows are float rounding (0 to 2e-6 here) and follow the CPU's kernels, so in both
    pages each prints with %.3g and stays at or below 1e-5, the loosest residue bound of
    ``tests/test_catalogue.py`` (which bounds each row's live value more tightly).
    """
    from shared.docgen import catalogue as C

    fresh_frame, fresh = _split_table(C.markdown(C.measure()))
    committed_frame, committed = _split_table(C.OUT.read_text())
    stale = "docs/framework_differences.md is stale: run `python -m shared.docgen.catalogue`"
    assert fresh_frame == committed_frame, stale
    assert len(fresh) == len(committed) == len(C.ROWS), stale
    for row, new, old in zip(C.ROWS, fresh, committed):
        assert len(new) == len(old) == 6, (new, old)
        name, torch_text, tf_text, effect, aligned, how = zip(new, old)
        assert name[0] == name[1] and torch_text[0] == torch_text[1], (stale, name)
        assert tf_text[0] == tf_text[1] and how[0] == how[1], (stale, name)
        agreement = row.__name__ in C.AGREEMENTS
        if not agreement:
            assert effect[0] == effect[1], (stale, name, effect)
        for values in (aligned, effect) if agreement else (aligned,):
            assert all(NUMBER_3G.fullmatch(v) and float(v) <= 1e-5 for v in values), (name, values)


def _curves(rows: list[list[str]], methods) -> dict:
    """The page's tables back as ``shared.docgen.drift`` curves (one table per method)."""
    per = len(rows) // len(methods)
    out = {}
    for i, m in enumerate(methods):
        part = rows[i * per : (i + 1) * per]
        out[m] = {
            d: [
                {"step": int(r[0]), "loss_abs": float(r[c]), "weights_rel": float(r[c + 1])}
                for r in part
            ]
            for d, c in (("float64", 1), ("float32", 3))
        }
    return out


def test_step_drift_page_matches_the_generator():
    """docs/step_drift.md against ``shared.docgen.drift`` run now for its first 5 steps, torch on
    one thread as in ``make docs`` (the page's 20 steps take 25 s on 2 idle cores,
    and ``tests/test_step_parity.py`` bounds the float64 curve itself).

    Compared exactly: every line outside the tables' rows (title, introduction, method
    headings, table headers), the title's step count aside; the committed page's step numbers
    (1 to 20 per method) and the fresh run's (1 to 5).
    Compared by bound: the float64 columns are rounding, and change with the CPU's kernels and
    the thread count, so in both pages every float64 value prints with %.1e and stays below
    1e-10 (the bound of ``tests/test_step_parity.py``).
    Compared for format only (%.1e): the float32 columns, which grow chaotically from float32
    rounding and so differ between hosts and thread counts by orders of magnitude.
    """
    import torch

    from shared.docgen import drift as D

    steps, threads = 5, torch.get_num_threads()
    torch.set_num_threads(1)  # two threads on busy shared cores take 5x longer
    try:
        fresh_frame, fresh = _split_table(D.markdown(D.measure(steps)))
    finally:
        torch.set_num_threads(threads)
    committed_frame, committed = _split_table(D.OUT.read_text())
    stale = "docs/step_drift.md is stale: run `python -m shared.docgen.drift` (make docs)"
    title = f"{D.STEPS} steps from the same weights"
    assert title in committed_frame[0], stale
    committed_frame[0] = committed_frame[0].replace(title, f"{steps} steps from the same weights")
    meaning = [i for i, line in enumerate(committed_frame) if line.startswith("**What it means")]
    assert len(meaning) == 1, stale  # the paragraph is the committed tables' own numbers:
    assert committed_frame[meaning[0]] == D.meaning(_curves(committed, D.METHODS)), stale
    assert fresh_frame.pop(meaning[0]).startswith("**What it means")
    committed_frame.pop(meaning[0])
    assert fresh_frame == committed_frame, stale
    numbers = list(range(1, D.STEPS + 1)) * len(D.METHODS)
    assert [int(r[0]) for r in committed] == numbers, stale
    assert [int(r[0]) for r in fresh] == list(range(1, steps + 1)) * len(D.METHODS)
    for cells in fresh + committed:
        assert len(cells) == 5 and all(NUMBER_1E.fullmatch(v) for v in cells[1:]), cells
        assert float(cells[1]) < 1e-10 and float(cells[2]) < 1e-10, cells  # float64
