"""The README is a front page: short, its results read from a committed results file, its links
inside the repository.

Every number of the README's results table is looked up in ``docs/results.json`` (the demo's
``demo`` key) with the formatting the README uses; so is the kNN sweep of docs/performance.md.
Each checker is also run on a text with one thing wrong, so that it is seen to fail.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "docs" / "results.json"
PAGES = ("README.md", "docs/performance.md", "docs/usage.md", "docs/source_outline.md")
MAX_LINES = 120

# README results row -> (the demo's cell, the representation evaluated in that cell)
ROWS = {
    "SimCLR, PyTorch": ("SimCLR (torch)", "simclr"),
    "MoCo v2, TensorFlow": ("MoCo v2 (TF)", "moco"),
    "raw pixels": ("SimCLR (torch)", "raw_pixels"),
    "random-init small CNN, PyTorch": ("SimCLR (torch)", "random_init"),
    "random-init small CNN, TensorFlow": ("MoCo v2 (TF)", "random_init"),
}
# README results column -> how the README writes that value of an evaluation entry
COLUMNS = {
    "kNN top-1": lambda e: f"{100 * e['knn_top1']:.1f} %",
    "k (leave-one-out)": lambda e: str(e["knn_k"]),
    "linear probe": lambda e: f"{100 * e['linear_top1']:.1f} %",
    "C (3-fold CV)": lambda e: f"{e['linear_c']:g}",
}
# docs/performance.md sweep row -> (cell, representation); its columns are "k = 1", "5", ...
SWEEP_ROWS = {
    "raw pixels": ("SimCLR (torch)", "raw_pixels"),
    "random-init small CNN, torch": ("SimCLR (torch)", "random_init"),
    "SimCLR, torch": ("SimCLR (torch)", "simclr"),
    "MoCo v2, TF": ("MoCo v2 (TF)", "moco"),
}


def _results() -> dict:
    return json.loads(RESULTS.read_text())


def _entry(results: dict, cell: str, rep: str) -> dict:
    return results["demo"]["cells"][cell]["eval"][rep]


def table(text: str, header: str) -> list[list[str]]:
    """The cells of the Markdown table whose header row starts with ``header``: header, rows."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(header)]
    assert starts, f"no table whose header starts with {header!r}"
    rows = []
    for line in lines[starts[0] :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not set("".join(cells)) <= set("-: "):  # not the separator row
            rows.append(cells)
    return rows


def _cell_problems(rows: list[list[str]], known: dict, columns: dict, results: dict) -> list[str]:
    """Each row names a known entry; each cell equals its value as ``columns`` formats it."""
    header, *body = rows
    problems = [f"unknown column {h!r}" for h in header[1:] if h not in columns]
    problems += [f"row {m!r} is missing" for m in sorted(set(known) - {r[0] for r in body})]
    for row in body:
        if row[0] not in known:
            problems.append(f"row {row[0]!r} names no entry of results.json")
            continue
        entry = _entry(results, *known[row[0]])
        for name, cell in zip(header[1:], row[1:], strict=True):
            want = columns[name](entry) if name in columns else None
            if want is not None and cell != want:
                problems.append(f"{row[0]} / {name}: {cell!r}, results.json gives {want!r}")
    return problems


def results_table_problems(text: str, results: dict) -> list[str]:
    """The README's results table against results.json."""
    return _cell_problems(table(text, "| encoder features |"), ROWS, COLUMNS, results)


def sweep_problems(text: str, results: dict) -> list[str]:
    """The kNN sweep of docs/performance.md against results.json."""
    columns = {"chosen k": lambda e: str(e["knn_k"])}
    for k in ("1", "5", "10", "20", "50", "200"):
        columns["k = 1" if k == "1" else k] = lambda e, k=k: f"{100 * e['knn_by_k'][k]:.1f}"
    return _cell_problems(table(text, "| features | k = 1 |"), SWEEP_ROWS, columns, results)


def link_problems(page: Path, text: str) -> list[str]:
    """Relative links of ``page`` that name no file of the repository, or leave it."""
    problems = []
    if "../shared" in text or "/work/" in text:
        problems.append(f"{page.name}: names a path outside the repository")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.is_relative_to(ROOT):
            problems.append(f"{page.name}: {target} leaves the repository")
        elif not path.exists():
            problems.append(f"{page.name}: {target} does not exist")
        elif page == README and ".." in Path(target).parts:
            problems.append(f"{page.name}: {target} climbs out of the root")
    return problems


def test_results_table_is_read_from_results_json():
    assert results_table_problems(README.read_text(), _results()) == []


def test_the_raw_pixel_row_is_the_same_in_both_cells():
    """One raw-pixel row stands for both cells: they read the same cached baseline."""
    cells = _results()["demo"]["cells"]
    assert (
        cells["SimCLR (torch)"]["eval"]["raw_pixels"] == cells["MoCo v2 (TF)"]["eval"]["raw_pixels"]
    )


def test_a_wrong_number_or_row_in_the_results_table_fails():
    text, results = README.read_text(), _results()
    assert "| 80.5 % |" in text and "| 0.001 |" in text
    wrong = results_table_problems(text.replace("| 80.5 % |", "| 80.6 % |"), results)
    assert wrong == ["SimCLR, PyTorch / kNN top-1: '80.6 %', results.json gives '80.5 %'"]
    assert results_table_problems(text.replace("| 0.001 |", "| 0.01 |"), results)
    renamed = results_table_problems(text.replace("| raw pixels |", "| pixels |"), results)
    assert renamed == ["row 'raw pixels' is missing", "row 'pixels' names no entry of results.json"]


def test_readme_quotes_the_run_its_numbers_come_from():
    text = re.sub(r"\s+", " ", README.read_text().replace("\n> ", " "))
    assert _results()["measured"] in text


def test_performance_sweep_is_read_from_results_json():
    text = (ROOT / "docs" / "performance.md").read_text()
    assert sweep_problems(text, _results()) == []
    assert sweep_problems(text.replace("| 55.4 |", "| 55.5 |"), _results())


def test_readme_is_a_front_page():
    lines = README.read_text().count("\n")
    assert lines <= MAX_LINES, f"README.md has {lines} lines, at most {MAX_LINES}"


def test_every_relative_link_names_a_file_inside_the_repository():
    problems = [p for page in PAGES for p in link_problems(ROOT / page, (ROOT / page).read_text())]
    assert problems == []


def test_the_link_check_catches_a_missing_file_and_a_path_outside():
    got = link_problems(README, "[a](docs/nothing.md) [b](../shared/seeds/README.md) [c](#top)")
    assert got == [
        "README.md: names a path outside the repository",
        "README.md: docs/nothing.md does not exist",
        "README.md: ../shared/seeds/README.md leaves the repository",
    ]
    assert link_problems(ROOT / "docs" / "x.md", "[ok](../README.md) [w](https://x.org)") == []


def test_every_test_file_the_pages_name_exists():
    named = {
        m for page in PAGES for m in re.findall(r"tests/test_\w+\.py", (ROOT / page).read_text())
    }
    assert "tests/test_step_parity.py" in named
    assert sorted(n for n in named if not (ROOT / n).exists()) == []
