"""docs/side_by_side.md is what ``shared.docgen.side_by_side`` writes now, and what it writes is true.

The page is compared byte for byte with the generator run now, so every excerpt is still the
source of its qualified name and every link still spans its whole definition. The cutter
(``core``) is checked on a small file whose answer is written out by hand. Against the code and
the committed files rather than the generator: the page's excerpts are of the default path
(the defaults read from ``shared.run.config``), its idiom table has the seven idioms and each
link lands on a definition of the named name, and its step-time table is B5 of the committed
benchmark file.
"""

from __future__ import annotations

import ast
import json
import re

import pytest

from shared.docgen import side_by_side as S

LINK = re.compile(r"\[`([\w/]+\.py)`, `([\w.]+)`\]\(\.\./([\w/]+\.py)#L(\d+)-L(\d+)\)")


@pytest.fixture(scope="module")
def page() -> str:
    return S.OUT.read_text()


def test_side_by_side_page_matches_the_source(page):
    assert S.markdown() == page, (
        "docs/side_by_side.md is stale: run `python -m shared.docgen.side_by_side` (make docs)"
    )


def test_excerpts_are_whole_definitions(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("import x\n\nclass A:\n    @staticmethod\n    def f():\n        return 1\n")
    assert S.excerpt(src, "A.f") == "@staticmethod\ndef f():\n    return 1"


SOURCE = '''\
def f(a,
      b):
    """Doc
    string."""
    # a comment
    x = a
    y = g(
        b,
    )
    z = x + y
    return z
'''


def test_core_lines_leave_the_docstring_out_and_mark_what_they_cut(tmp_path):
    src = tmp_path / "m.py"
    src.write_text(SOURCE)
    assert S.core(src, "f") == "def f(a,\n      b):\n    # a comment\n    x = a\n" + (
        "    y = g(\n        b,\n    )\n    z = x + y\n    return z"
    )
    # from the start marker through the end of the statement that the stop marker's line opens
    assert S.core(src, "f", start="x = a", stop="y = g(") == (
        "def f(a,\n      b):\n    ...\n    x = a\n    y = g(\n        b,\n    )\n    ..."
    )
    with pytest.raises(KeyError, match="start marker 'nowhere'"):
        S.core(src, "f", start="nowhere")
    with pytest.raises(KeyError, match="'x = a'"):
        S.core(src, "f", start="z = x", stop="x = a")  # the stop must come after the start
    assert S.span(src, "f") == (1, 11)


def test_the_excerpts_are_the_default_code_path(page):
    from shared.run.config import TrainConfig, model_defaults

    assert TrainConfig().augment == "batch"  # so BatchAugment, not simclr_augment, trains
    assert model_defaults("moco")["shuffle_keys"] and model_defaults("moco")["symmetric"]
    linked = {(path, name) for path, name, *_ in LINK.findall(page)}
    for path, name in (
        ("torch_impl/augment.py", "BatchAugment.apply"),
        ("tf_impl/augment.py", "BatchAugment.apply"),
        ("torch_impl/moco.py", "MoCo.keys"),
        ("tf_impl/moco.py", "MoCo.keys"),
        ("torch_impl/train.py", "epoch_batches"),
        ("tf_impl/train.py", "make_dataset"),
        ("tf_impl/train.py", "compile_step"),
        ("torch_impl/moco.py", "MoCo.train_step"),
        ("tf_impl/moco.py", "MoCo.loss"),
    ):
        assert (path, name) in linked, (path, name)
    assert not any(name == "simclr_augment" for _, name in linked)
    assert "both build the same pipeline" not in page.lower()
    assert "(framework_differences.md)" in page
    sets = page.count('=== "PyTorch"')
    assert sets == len(S.CONCEPTS) == page.count('=== "TensorFlow"') and sets >= 10


def test_every_link_spans_the_definition_it_names(page):
    links = LINK.findall(page)
    assert len(links) >= 2 * len(S.CONCEPTS) + 2 * len(S.IDIOMS)
    trees = {t: ast.parse((S.ROOT / t).read_text()) for t in {link[2] for link in links}}
    for shown, name, target, first, last in links:
        assert shown == target, (shown, target)
        nodes, node = trees[target].body, None
        for part in name.split("."):
            node = next(n for n in nodes if getattr(n, "name", None) == part)
            nodes = node.body
        start = min([node.lineno] + [d.lineno for d in node.decorator_list])
        assert (int(first), int(last)) == (start, node.end_lineno), (target, name)


def test_the_idiom_table_has_the_seven_idioms(page):
    table = page.split("## The idioms", 1)[1].split("\n## ", 1)[0]
    rows = [r for r in table.splitlines() if r.startswith("| `") or r.startswith("| a ")]
    pairs = [
        ("backward", "GradientTape"),
        ("no_grad", "stop_gradient"),
        ("register_buffer", "tf.Variable"),
        ("DataLoader", "tf.data"),
        ("nn.Module", "keras.Model"),
        ("torch.compile", "tf.function"),
        ("torchrun", "tf.distribute"),
    ]
    assert len(rows) == len(pairs)
    for row, (torch_idiom, tf_idiom) in zip(rows, pairs):
        cells = row.split(" | ")
        assert torch_idiom in cells[0] and tf_idiom in cells[1], row
        assert len(LINK.findall(cells[2])) == 2, row  # one use on each side


def test_the_step_times_are_b5_of_the_committed_benchmark_file(page):
    results = json.loads((S.ROOT / "benchmarks" / "results" / "bench_cpu.json").read_text())
    b5, machine = results["B5"], results["machine"]
    for method in ("simclr", "moco"):
        pt, tf = (1000 * b5[f"{method}/{fw}"]["median_s"] for fw in ("torch", "tensorflow"))
        assert f"| {method} | {pt:.0f} ms | {tf:.0f} ms | {tf / pt:.2f} |" in page
    assert "benchmarks/results/bench_cpu.json" in page
    assert f"{machine['cpu']}, {machine['cores']} cores" in page  # the host, named
