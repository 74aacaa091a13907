"""docs/tutorial.md: every numbered section of the course, each linked to its place in its
chapter, written from the chapters' own headings.

    python -m shared.docgen.tutorial           # rewrites docs/tutorial.md (also ``make docs``)

The course is the nine chapters of ``docs/course/`` (runnable notebooks, ``shared.docgen.course``);
their numbered sections follow the outline (``docs/source_outline.md``) one for one, 1.1 to 9.5.
This page is their contents, generated so that it cannot drift from them: one line per
numbered heading, in order, linked to the heading's anchor on the chapter's page.
``tests/test_docs.py`` checks that the page is what this module writes now and that its
numbers are the outline's.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "tutorial.md"
CHAPTERS = ROOT / "docs" / "course"
HEADING = re.compile(r"^# (#{1,4}) (.+)$")  # a Markdown heading in a py:percent text cell
NUMBERED = re.compile(r"^(\d+(?:\.\d+)+) ")


def slug(title: str) -> str:
    """The anchor Python-Markdown's ``toc`` gives a heading (its default ``slugify``)."""
    text = unicodedata.normalize("NFKD", title.replace("`", "")).encode("ascii", "ignore")
    text = re.sub(r"[^\w\s-]", "", text.decode()).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def headings(path: Path) -> list[tuple[int, str]]:
    """``(level, title)`` of each heading in the text cells of a chapter source, in order."""
    found, in_text = [], False
    for line in path.read_text().splitlines():
        if line.startswith("# %%"):
            in_text = "[markdown]" in line
        elif in_text and (m := HEADING.match(line)):
            found.append((len(m[1]), m[2].strip()))
    return found


def sections() -> list[tuple[Path, str, list[tuple[int, str]]]]:
    """Each chapter: its source, its title ("Chapter 1. Background") and its numbered
    headings."""
    out = []
    for path in sorted(CHAPTERS.glob("[0-9][0-9]_*.py")):
        found = headings(path)
        title = next(t for level, t in found if level == 1)
        out.append((path, title, [(lv, t) for lv, t in found if NUMBERED.match(t)]))
    return out


def markdown() -> str:
    lines = [
        "# Every section of the course, by number",
        "",
        "The course is nine runnable chapters; start with "
        "[chapter 1](course/01_background.py). Their numbered sections follow the outline "
        "([source_outline.md](source_outline.md)) one for one, 1.1 to 9.5. Each line below "
        "links to its section on the chapter's page.",
        "",
        "*Written by `python -m shared.docgen.tutorial` from the chapters' headings.*",
    ]
    for path, title, numbered in sections():
        link = f"course/{path.name}"
        lines += ["", f"## [{title}]({link})", ""]
        for level, text in numbered:
            indent = "    " * (level - 2)
            lines.append(f"{indent}- [{text}]({link}#{slug(text)})")
    return "\n".join(lines) + "\n"


def main() -> int:
    OUT.write_text(markdown())
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
