"""The generated pages of docs/ are what their generators write now, so they cannot drift.

* docs/errata.md (``shared.docgen.errata``): each broken snippet still fails with the message the page
  quotes, and each corrected one still gives its output. Only the step timing may differ
  between runs; its ratio must still show the contrastive step costing more.
* docs/side_by_side.md (``shared.docgen.side_by_side``): every excerpt is still the source of its
  qualified name on both sides.
"""

import re

import pytest

from shared.docgen import errata, side_by_side

TIMING = re.compile(r"supervised step [\d.]+ ms, SimCLR step [\d.]+ ms, ratio ([\d.]+)")


@pytest.fixture(scope="module")
def built():
    return errata.build()  # runs every snippet once (about 20 s: some import torch)


def test_errata_page_matches_the_code(built):
    text = errata.markdown(built)
    ratio = float(TIMING.search(text).group(1))
    assert ratio > 1.0  # two views and a 2N x 2N similarity cost more than one supervised pass
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


def test_side_by_side_page_matches_the_source():
    assert side_by_side.markdown() == side_by_side.OUT.read_text(), (
        "docs/side_by_side.md is stale: run `python -m shared.docgen.side_by_side` (make docs)"
    )


def test_side_by_side_excerpts_are_whole_definitions(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("import x\n\nclass A:\n    @staticmethod\n    def f():\n        return 1\n")
    assert (
        side_by_side.excerpt(src.parent / "m.py", "A.f") == "@staticmethod\ndef f():\n    return 1"
    )


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
