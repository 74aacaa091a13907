"""The README is a front page: short, its results read from the committed results file, its
links inside the repository; what is proven is on docs/proofs.md, each claim with its test.

The README's results table and docs/performance.md's kNN sweep are exactly what
``shared.docgen.results_tables`` writes from ``docs/results.json`` (``rosetta results``), and
the README names the run they come from. The README opens three doors (the side-by-side page,
the course's chapter 1, the proofs page) and its first commands are ``make demo`` and ``make
test``. Every accuracy on the README and the proofs page is one the results file holds
(``tests/test_published.py``'s check), and every claim there names a test file that exists.
Each checker is also run on a text with one thing wrong, so that it is seen to fail.
"""

from __future__ import annotations

import re
from pathlib import Path

from test_published import page_problems

from shared.docgen import results_tables as T
from shared.run import published as P

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PROOFS = ROOT / "docs" / "proofs.md"
PAGES = (
    "README.md",
    "docs/proofs.md",
    "docs/performance.md",
    "docs/usage.md",
    "docs/source_outline.md",
)
MAX_LINES = 80
DOORS = ("docs/side_by_side.md", "docs/course/01_background.py", "docs/proofs.md")
FIRST_COMMANDS = ["make demo", "make test"]
PROOF_HEADER = "| claim | tolerance | test |"
# words of a claim that two things agree, or that something is proven
CLAIM = re.compile(r"\b(?:agree[sd]?|equal(?:s|led)?|tested|proven|proves?|checked|checks)\b", re.I)
EQUALS = re.compile(r"(?<=\s)=(?=\s)")  # "torch = TF"; in brackets it defines notation
TEST_FILE = re.compile(r"tests/test_\w+\.py")


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
    named = {m for page in PAGES for m in TEST_FILE.findall((ROOT / page).read_text())}
    assert "tests/test_step_parity.py" in TEST_FILE.findall(PROOFS.read_text())
    assert sorted(n for n in named if not (ROOT / n).exists()) == []


def links_of(text: str) -> set[str]:
    """The targets of ``text``'s Markdown links, anchors dropped."""
    return {t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", text)}


def first_commands(text: str) -> list[str]:
    """The commands of the page's first ``bash`` block, comments and blank lines dropped."""
    block = re.search(r"^```bash\n(.*?)^```", text, flags=re.M | re.S)
    if block is None:
        return []
    lines = (line.split("#")[0].strip() for line in block[1].splitlines())
    return [line for line in lines if line]


def claim_blocks(text: str) -> list[str]:
    """The paragraphs, list items and table rows of ``text`` (fenced code and headings left out)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    text = re.sub(r"^#.*$", "", text, flags=re.M)
    blocks: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        current: list[str] = []
        for line in para.splitlines():
            if line.startswith(("- ", "| ")) and current:
                blocks.append(" ".join(current))
                current = []
            current.append(line.strip())
        if current:
            blocks.append(" ".join(current))
    return blocks


def claim_problems(text: str, name: str, via: str | None = None) -> list[str]:
    """Claims of ``text`` that name no test file, or one that does not exist.

    A claim is a paragraph, list item or table row with a word of ``CLAIM`` or an ``=`` outside
    brackets (inside them, ``f64 = float64``, it defines notation).

    Args:
        text: the page.
        name: the page's name in the messages.
        via: a page whose link stands for the tests (the README points to the proofs page).

    Returns:
        One message per claim without an existing test file.
    """
    problems = []
    for block in claim_blocks(text):
        if not (CLAIM.search(block) or EQUALS.search(re.sub(r"\([^()]*\)", "", block))):
            continue
        named = TEST_FILE.findall(block)
        missing = sorted(n for n in named if not (ROOT / n).exists())
        if missing:
            problems.append(
                f"{name}: {block[:60]!r} names {', '.join(missing)}, which do not exist"
            )
        elif not named and not (via and via in links_of(block)):
            problems.append(f"{name}: {block[:60]!r} names no test")
    return problems


def proof_rows(text: str) -> list[list[str]]:
    """The data rows of the proof table (``claim | tolerance | test``), as cells."""
    lines = text.splitlines()
    if PROOF_HEADER not in lines:
        return []
    rows = []
    for line in lines[lines.index(PROOF_HEADER) + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split(" | ")])
    return rows


def test_readme_opens_the_three_doors():
    text = README.read_text()
    assert sorted(d for d in DOORS if d not in links_of(text)) == []
    assert "`rosetta parity`" in text


def test_the_first_commands_are_make_demo_and_make_test():
    assert first_commands(README.read_text())[:2] == FIRST_COMMANDS
    swapped = "```bash\nmake test   # x\nmake demo\n```\n```bash\nmake demo\n```"
    assert first_commands(swapped)[:2] == ["make test", "make demo"]
    assert first_commands("no block") == []


def test_the_proof_table_is_on_the_proofs_page_each_row_with_its_tests():
    rows = proof_rows(PROOFS.read_text())
    assert len(rows) >= 16 and all(len(r) == 3 for r in rows), rows
    for claim, _, tests in rows:
        named = TEST_FILE.findall(tests)
        assert named, claim
        assert sorted(n for n in named if not (ROOT / n).exists()) == [], claim
    assert "tolerances.py" in PROOFS.read_text()  # the formula's paragraph, with its table
    assert proof_rows(README.read_text()) == []  # one copy: the README links the page


def test_every_claim_names_a_test_that_exists():
    assert claim_problems(README.read_text(), "README.md", via="docs/proofs.md") == []
    assert claim_problems(PROOFS.read_text(), "proofs.md") == []


def test_the_claim_check_catches_a_claim_without_its_test():
    text = "Both agree (`tests/test_nothing.py`).\n\n- torch = TF, always.\n- plain (a = b)\n"
    assert claim_problems(text, "p") == [
        "p: 'Both agree (`tests/test_nothing.py`).' names tests/test_nothing.py, which do not exist",
        "p: '- torch = TF, always.' names no test",
    ]
    linked = "It is proven ([proofs](docs/proofs.md))."
    assert claim_problems(linked, "p", via="docs/proofs.md") == []
    assert claim_problems(linked, "p") == [
        "p: 'It is proven ([proofs](docs/proofs.md)).' names no test"
    ]
    assert claim_problems("```\nx = 1  # equal\n```\n", "p") == []


def test_every_accuracy_on_the_readme_and_the_proofs_is_held_by_the_results_file():
    results = P.load()
    for page in (README, PROOFS):
        assert page_problems(page.read_text(), results) == [], page.name
    assert len(re.findall(r"\d+\.\d ± \d+\.\d %", README.read_text())) >= 18  # the table's
    mean, std, _ = P.stat(results, "simclr/torch", "knn_top1")  # a number the page shows...
    shown, off = P.fmt(mean, std), P.fmt(mean + 0.001, std)  # ...and one a tenth of a point off
    assert shown in README.read_text() and off != shown
    assert page_problems(README.read_text().replace(shown, off), results)
