"""The README is a front page: short, its results read from the committed results file, its
links inside the repository.

The README's results table and docs/performance.md's kNN sweep are exactly what
``shared.docgen.results_tables`` writes from ``docs/results.json`` (``rosetta results``), and
the README names the run they come from. Each checker is also run on a text with one thing
wrong, so that it is seen to fail.
"""

from __future__ import annotations

import re
from pathlib import Path

from shared.docgen import results_tables as T
from shared.run import published as P

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = ("README.md", "docs/performance.md", "docs/usage.md", "docs/source_outline.md")
MAX_LINES = 120


def table_problems(text: str, want: str, name: str) -> list[str]:
    """``want`` (a whole Markdown table) must appear in ``text`` as it is, line for line."""
    if want in text:
        return []
    first = want.splitlines()[0]
    if first not in text:
        return [f"{name}: the table whose header is {first!r} is missing"]
    have = text[text.index(first) :].splitlines()
    return [f"{name}: {g!r} should be {w!r}" for g, w in zip(have, want.splitlines()) if g != w]


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
    assert table_problems(README.read_text(), T.readme_table(P.load()), "README") == []


def test_performance_sweep_is_read_from_results_json():
    text = (ROOT / "docs" / "performance.md").read_text()
    assert table_problems(text, T.knn_sweep_table(P.load()), "performance.md") == []


def test_a_wrong_number_or_row_in_the_results_table_fails():
    want = T.readme_table(P.load())
    row = want.splitlines()[2]
    cell = row.split(" | ")[1]
    wrong = want.replace(row, row.replace(cell, "99.9 ± 0.1 %"))
    assert table_problems(wrong, want, "README") == [
        f"README: {row.replace(cell, '99.9 ± 0.1 %')!r} should be {row!r}"
    ]
    assert table_problems("no table", want, "README")


def test_readme_quotes_the_run_its_numbers_come_from():
    text = re.sub(r"\s+", " ", README.read_text().replace("\n> ", " "))
    assert T.measured_line(P.load()) in text


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
