"""The static site: the README, docs/ and the course, built offline by mkdocs-material, strict.

    python -m shared.docgen.site                        # build/site/ (also ``make site``)
    python -m shared.docgen.site --out DIR --course DIR  # elsewhere; the course from DIR

The pages are staged in the repository's own layout (README.md at the top as the home page,
docs/, benchmarks/, and the source files the pages link to, copied as plain files), so a
relative link that works in the repository works on the site, and one that does not fails the
build (``strict: true`` in mkdocs.yml). The rendered course goes under docs/course/: it is the
folder that ``python -m shared.docgen.course --execute --out build/course`` writes (Markdown
pages, their figures and the notebooks a learner downloads), read from ``build/course`` when
that folder exists; without it the chapters are rendered here, unexecuted. The sidebar's
"Course" section lists the chapters first. A link to a chapter's source
(``docs/course/NN_<name>.py``, as the README has it) becomes a link to its page. Math becomes MathML at build time (``shared.docgen.mathml``)
and the theme fetches no font, so a built page loads nothing from the network.
``tests/test_site.py`` builds it and opens every page in headless Chromium.
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "mkdocs.yml"
OUT = ROOT / "build" / "site"
STAGING = ROOT / "build" / "site_src"
COURSE = ROOT / "build" / "course"  # written by shared.docgen.course --execute --out build/course
COURSE_DIR = "docs/course"  # where the rendered course sits on the site
# what the pages may link to: the repository's files outside caches and run folders
INCLUDE = ("README.md", "CHANGELOG.md", "LICENSE", "Makefile", "pyproject.toml", "conftest.py")
INCLUDE_DIRS = ("docs", "benchmarks", "shared", "torch_impl", "tf_impl", "tests")
SKIP = re.compile(r"(^|/)(__pycache__|\.[^/]+)(/|$)|\.pyc$")
EXECUTED = "*.executed.ipynb"  # the executed notebooks: the pages show them; not offered
CHAPTER_LINK = re.compile(r"\]\(((?:[^)\s]*/)?(\d\d_\w+))\.py(#[^)\s]*)?\)")


def stage(dest: Path, course: Path | None = None) -> list[str]:
    """Copy the site's files into ``dest`` (emptied first); return the course pages copied.

    Args:
        dest: the staging folder (mkdocs' ``docs_dir``).
        course: a rendered course folder, copied to docs/course/; ``None``: the chapters are
            rendered there, unexecuted.

    Returns:
        The chapter pages' paths in ``dest``, sorted (``docs/course/01_....md``).
    """
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in INCLUDE:
        shutil.copy2(ROOT / name, dest / name)
    for top in INCLUDE_DIRS:
        for src in sorted((ROOT / top).rglob("*")):
            rel = src.relative_to(ROOT).as_posix()
            if src.is_file() and not SKIP.search(rel):
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / rel)
    target = dest / COURSE_DIR
    if course is None:
        from shared.docgen import course as chapters

        chapters.render(target, run=False)
    else:
        shutil.copytree(course, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns(EXECUTED))
    pages = sorted(p.relative_to(dest).as_posix() for p in target.glob("[0-9][0-9]_*.md"))
    for page in dest.rglob("*.md"):
        text = page.read_text()
        linked = link_chapter_pages(text, page, dest)
        if linked != text:
            page.write_text(linked)
    return pages


def link_chapter_pages(text: str, page: Path, dest: Path) -> str:
    """``text`` with each link to a chapter's source (``.../NN_<name>.py``) pointing to the
    chapter's page instead (``.../NN_<name>.md``), where that page is staged."""

    def swap(m: re.Match) -> str:
        if not (page.parent / f"{m[1]}.md").resolve().is_file():
            return m[0]
        return f"]({m[1]}.md{m[3] or ''})"

    return CHAPTER_LINK.sub(swap, text)


def chapter_title(page: Path) -> str:
    """The nav title of a chapter page, "1. Background" from "# Chapter 1. Background"."""
    first = page.read_text().splitlines()[0]
    return first.removeprefix("# Chapter ").strip()


def load_config(staged: Path, out: Path, course_pages: list[str]):
    """mkdocs.yml with ``docs_dir`` = ``staged``, ``site_dir`` = ``out``, strict, and the
    chapters at the head of the nav's "Course" section."""
    import yaml  # mkdocs' own dependency
    from mkdocs.config import load_config as mkdocs_config

    nav = yaml.safe_load(CONFIG.read_text())["nav"]
    if course_pages:
        section = next(item["Course"] for item in nav if "Course" in item)
        chapters = [{chapter_title(staged / p): p} for p in course_pages]
        section[:0] = chapters
    return mkdocs_config(str(CONFIG), docs_dir=str(staged), site_dir=str(out), strict=True, nav=nav)


class SiteError(RuntimeError):
    """The build failed: each warning mkdocs logged (strict mode), or its error."""


class _Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def build(out: Path = OUT, course: Path | None = None, staging: Path = STAGING) -> Path:
    """Stage and build the site into ``out``; return ``out``.

    Raises:
        SiteError: a warning in strict mode (a broken link, an anchor that does not exist, a
            nav entry with no page) or bad LaTeX, every message listed.
    """
    from mkdocs.commands.build import build as mkdocs_build
    from mkdocs.exceptions import Abort

    pages = stage(staging, course)
    logger, warnings = logging.getLogger("mkdocs"), _Warnings()
    logger.addHandler(warnings)
    try:
        mkdocs_build(load_config(staging, out, pages))
    except Abort as e:
        raise SiteError("\n".join([str(e), *warnings.messages])) from e
    finally:
        logger.removeHandler(warnings)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.docgen.site", description=__doc__)
    parser.add_argument("--out", type=Path, default=OUT, help="where the site goes")
    parser.add_argument(
        "--course",
        type=Path,
        default=None,
        help=f"the rendered course (default: {COURSE.relative_to(ROOT)} when it exists)",
    )
    args = parser.parse_args(argv)
    course = args.course
    if course is None and COURSE.is_dir():
        course = COURSE
    if course is not None and not course.is_dir():
        parser.error(f"--course: {course} is not a folder")
    try:
        out = build(args.out.resolve(), course)
    except SiteError as e:
        print(f"site: {e}", file=sys.stderr)
        return 1
    course_note = f"with the course from {course}" if course else "with the course unexecuted"
    print(f"wrote {out}/index.html ({course_note})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
