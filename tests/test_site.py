"""The static site builds strict and offline, and a real browser shows it as intended.

``shared.docgen.site`` builds the site into a temporary folder (the course too, where the
``executed_course`` fixture exists); a broken link is shown to fail that build and bad LaTeX
to fail the math. Then headless Chromium (Debian's ``chromium``, driven over the DevTools
protocol by ``shared.docgen.browser``) opens every page from the disk and checks: no console
error (an uncaught exception, a console.error, a failed load: a page that reached for the
network would fail to load it here); every image decoded (naturalWidth > 0); the math rendered
as MathML with a size, and no LaTeX left as text; the math drawn in the bundled math font
(``docs/site/fonts/``), as Chromium reports the fonts it used; on the side-by-side page, a
click on a "TensorFlow" tab shows TensorFlow's code in every section and hides PyTorch's. As a
new learner meets the course at 1280 px: the home page's first screen links chapter 1; every
exercise's solution is folded; no code or output block of the course, and no block of the
errata page, scrolls sideways; the teachers' page links each chapter's page and its notebook,
and each chapter offers its notebook; the 2x2's curves (``docs/matrix_curves.png``) are
decoded where they are shown. Without a browser the browser test skips, saying why.
``ROSETTA_SITE_SHOTS=DIR`` saves two screenshots
there (the side-by-side page with TensorFlow chosen, the errata page's formula).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from shared.docgen import mathml, site

RAW_MATH = re.compile(r"\$\$|\\\(|\\\[|\\frac|\\sum")  # LaTeX left as text outside code


def _course(request) -> Path | None:
    """The executed course's folder, where conftest has the fixture; else none."""
    try:
        course = request.getfixturevalue("executed_course")
    except pytest.FixtureLookupError:
        return None
    return Path(course) if course is not None else None


@pytest.fixture(scope="module")
def built(request, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("site")
    return site.build(tmp / "site", _course(request), staging=tmp / "src")


def _pages(root: Path) -> list[Path]:
    skip = ("assets/", "search/", "404.html")
    return sorted(
        p for p in root.rglob("*.html") if not p.relative_to(root).as_posix().startswith(skip)
    )


def test_the_site_builds_strict_with_every_page(built):
    pages = {p.relative_to(built).as_posix() for p in _pages(built)}
    for page in ("index.html", "docs/side_by_side.html", "docs/errata.html", "docs/tutorial.html"):
        assert page in pages
    errata = (built / "docs" / "errata.html").read_text()
    assert "<math" in errata and 'class="arithmatex"' not in errata  # rendered at build time
    assert "https://" not in "".join(  # no script, font or style from elsewhere
        re.findall(r'<(?:script|link)[^>]*(?:src|href)="[^"]*"', errata)
    )


def test_a_broken_link_fails_the_build(tmp_path, monkeypatch):
    real = site.stage

    def stage_with_a_broken_link(dest, course=None):
        pages = real(dest, course)
        readme = dest / "README.md"
        readme.write_text(readme.read_text() + "\n[gone](docs/no_such_page.md)\n")
        return pages

    monkeypatch.setattr(site, "stage", stage_with_a_broken_link)
    with pytest.raises(site.SiteError, match="no_such_page.md"):
        site.build(tmp_path / "site", None, staging=tmp_path / "src")


def test_math_becomes_mathml_and_bad_latex_fails():
    out = mathml.render_math(
        '<p><span class="arithmatex">\\(\\tau\\)</span></p>'
        '<div class="arithmatex">\\[\n\\frac{a}{b}\n\\]</div>'
    )
    assert out.count("<math") == 2 and 'display="block"' in out and "<mfrac>" in out
    with pytest.raises(mathml.MathError, match="unknown command"):
        mathml.to_mathml(r"\notacommand x", block=False)
    with pytest.raises(mathml.MathError, match="z_2_i"):
        mathml.to_mathml("z_2_i", block=False)  # seed 002's double subscript


CHECK_PAGE = """(() => {
  const images = [...document.images].map(i => [i.getAttribute('src'), i.naturalWidth]);
  const maths = [...document.querySelectorAll('article math')].map(m => {
    const r = m.getBoundingClientRect();
    return [r.width, r.height];
  });
  const article = document.querySelector('article').cloneNode(true);
  article.querySelectorAll('pre, code, math').forEach(e => e.remove());
  return {images, maths, text: article.innerText, left: document.querySelectorAll('.arithmatex').length};
})()"""

TAB_STATE = """[...document.querySelectorAll('.tabbed-set')].map(set => {
  const blocks = set.querySelectorAll(':scope > .tabbed-content > .tabbed-block');
  return [...blocks].map(b => b.offsetHeight > 0);
})"""


def _click(browser, selector: str) -> None:
    """A real mouse click at the centre of the first element matching ``selector``."""
    browser.evaluate(f"document.querySelector({selector!r}).scrollIntoView({{block: 'center'}})")
    x, y = browser.evaluate(
        f"(() => {{ const r = document.querySelector({selector!r}).getBoundingClientRect();"
        " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
    )
    for kind in ("mousePressed", "mouseReleased"):
        browser.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)


@pytest.fixture(scope="module")
def browser():
    from shared.docgen.browser import BrowserError, Chromium, find_chromium

    if find_chromium() is None:
        pytest.skip(
            "no Chromium on this machine (Debian: apt-get install chromium); .ci/run installs it"
        )
    try:
        with Chromium() as b:
            yield b
    except BrowserError as e:
        pytest.skip(f"Chromium does not start here: {e}")


BROKEN_PAGE = """<!doctype html><html><body><article>
<p>$$ \\frac{a}{b} $$</p><img src="missing.png"><img src="data:image/png;base64,AAAA">
<script>undefined_function()</script></article></body></html>"""


def test_the_browser_checks_catch_a_broken_page(tmp_path, browser):
    page = tmp_path / "broken.html"
    page.write_text(BROKEN_PAGE)
    browser.open(page.as_uri())
    errors = browser.wait(0.5)  # a failed load may be reported after the load event
    assert any("undefined_function" in e for e in errors), errors
    assert any("missing.png" in e for e in errors), errors  # the failed load
    state = browser.evaluate(CHECK_PAGE)
    assert [width for _, width in state["images"]] == [0, 0]
    assert RAW_MATH.search(state["text"]) and state["maths"] == []


def test_every_page_loads_clean_in_chromium(built, browser):
    images = maths = 0
    for page in _pages(built):
        name = page.relative_to(built).as_posix()
        errors = browser.open(page.as_uri())
        assert errors == [], (name, errors)
        state = browser.evaluate(CHECK_PAGE)
        broken = [src for src, width in state["images"] if width == 0]
        assert broken == [], (name, broken)
        assert all(w > 0 and h > 0 for w, h in state["maths"]), (name, state["maths"])
        assert state["left"] == 0 and not RAW_MATH.search(state["text"]), name
        assert browser.wait(0.05) == [], name  # nothing failed late either
        images, maths = images + len(state["images"]), maths + len(state["maths"])
    assert images >= 2 and maths >= 1  # the checks above had something to check


def test_the_tabs_switch(built, browser):
    assert browser.open((built / "docs" / "side_by_side.html").as_uri()) == []
    before = browser.evaluate(TAB_STATE)
    assert len(before) >= 10 and all(s == [True, False] for s in before), before
    _click(browser, ".tabbed-set .tabbed-labels label:nth-child(2)")
    browser.wait(0.3)
    after = browser.evaluate(TAB_STATE)
    assert all(s == [False, True] for s in after), after  # linked tabs: every section follows
    shots = os.environ.get("ROSETTA_SITE_SHOTS")
    if shots:
        browser.screenshot(Path(shots) / "side_by_side_tensorflow.png")
        browser.open((built / "docs" / "errata.html").as_uri())
        browser.evaluate("document.querySelector('article math').scrollIntoView({block: 'center'})")
        browser.wait(0.5)
        browser.screenshot(Path(shots) / "errata_math.png")


MATH_LEAVES = "article math :is(mi, mo, mn, mtext)"
FONT_FACE = re.compile(r'@font-face\s*\{[^}]*font-family:\s*"([^"]+)"[^}]*url\("([^"]+)"\)')


def test_the_math_is_drawn_in_the_bundled_font(built, browser, tmp_path):
    """The math font ships with the site (a WOFF2 beside extra.css, its licence in the
    repository) and every glyph of the math on chapter 4 and the errata page is drawn with it,
    as Chromium reports the fonts it used after fallback; the limits of NT-Xent's sum are set
    at a readable size. A page with the same MathML and no font-face is drawn in another font,
    so the check tells the two apart."""
    css = (built / "docs" / "site" / "extra.css").read_text()
    family, url = FONT_FACE.search(css).groups()
    served = built / "docs" / "site" / url
    committed = site.ROOT / "docs" / "site" / "fonts" / "rosetta-math.woff2"
    assert served.read_bytes()[:4] == b"wOF2" and served.read_bytes() == committed.read_bytes()
    assert "SIL Open Font License" in (committed.parent / "OFL.txt").read_text()
    for page in ("docs/course/04_math.html", "docs/errata.html"):
        assert browser.open((built / page).as_uri()) == [], page
        loaded = browser.evaluate(
            "document.fonts.ready.then(() => [...document.fonts].map(f => [f.family, f.status]))"
        )
        assert [family, "loaded"] in [[f.strip('"'), s] for f, s in loaded], (page, loaded)
        drawn = browser.rendered_fonts(MATH_LEAVES)
        assert list(drawn) == [family] and drawn[family] >= 30, (page, drawn)
    browser.open((built / "docs" / "course" / "04_math.html").as_uri())
    sizes = browser.evaluate(
        """[...document.querySelectorAll('article munderover')]
        .filter(m => m.firstElementChild.textContent === '\u2211')
        .map(m => [...m.children].map(c => parseFloat(getComputedStyle(c).fontSize)))"""
    )
    body = browser.evaluate(
        "parseFloat(getComputedStyle(document.querySelector('article p')).fontSize)"
    )
    assert sizes, "no sum with limits on chapter 4"
    for base, under, over in sizes:  # the sum at 1.25 times the text, its limits not tiny
        assert base >= 1.2 * body and min(under, over) >= 0.7 * body, (sizes, body)
    bare = tmp_path / "bare.html"
    math = browser.evaluate("document.querySelector('article math').outerHTML")
    bare.write_text(f"<!doctype html><html><body><article>{math}</article></body></html>")
    browser.open(bare.as_uri())
    assert family not in browser.rendered_fonts(MATH_LEAVES)


# --------------------------------------------------------------------------------------------
# The course as a learner meets it, at 1280 px
# --------------------------------------------------------------------------------------------
CHAPTERS = [f"docs/course/{p.stem}.html" for p in sorted(site.ROOT.glob("docs/course/0*.py"))]

FIRST_SCREEN = """(() => {
  const a = [...document.querySelectorAll('article a')]
    .find(a => a.getAttribute('href').endsWith('docs/course/01_background.html'));
  if (!a) return null;
  const r = a.getBoundingClientRect();
  return {bottom: r.bottom, height: innerHeight, text: a.closest('p').innerText};
})()"""

SOLUTIONS = """[...document.querySelectorAll('article details')].map(d => ({
  summary: d.querySelector('summary').innerText.trim(), open: d.open,
  shown: [...d.children].filter(c => c.tagName !== 'SUMMARY' && c.checkVisibility()).length,
  extra: Math.round(d.getBoundingClientRect().height
    - d.querySelector('summary').getBoundingClientRect().height)}))"""

SCROLLING = """(() => {
  document.querySelectorAll('article details').forEach(d => d.open = true);
  document.querySelectorAll('.tabbed-block').forEach(b => b.style.display = 'block');
  const blocks = [...document.querySelectorAll('article pre > code')];
  return [blocks.length, blocks.filter(c => c.scrollWidth > c.clientWidth + 1)
    .map(c => c.innerText.split('\\n').find(l => l.length > 60) || c.innerText.slice(0, 80))];
})()"""

SCROLLING_ANY = """(() => {
  document.querySelectorAll('article details').forEach(d => d.open = true);
  const all = [...document.querySelectorAll('article *')];
  const boxes = all.filter(e => ['auto', 'scroll'].includes(getComputedStyle(e).overflowX));
  return [boxes.length, boxes.filter(e => e.scrollWidth > e.clientWidth + 1)
    .map(e => [e.tagName, e.innerText.split('\\n').find(l => l.length > 60) || e.innerText.slice(0, 80)])];
})()"""

LINKS = "[...document.querySelectorAll('article a')].map(a => a.getAttribute('href'))"


def test_home_first_screen_links_chapter_1(built, browser):
    assert browser.open((built / "index.html").as_uri()) == []
    link = browser.evaluate(FIRST_SCREEN)
    assert link is not None, "no link to chapter 1's page on the home page"
    assert link["bottom"] <= link["height"], link  # above the fold at 1280 x 900
    assert "Start here" in link["text"], link


def test_every_solution_is_folded_until_opened(built, browser):
    found = {}
    for page in CHAPTERS:
        assert browser.open((built / page).as_uri()) == []
        for d in browser.evaluate(SOLUTIONS):
            assert d["summary"] == "Solution" and not d["open"] and d["shown"] == 0, (page, d)
            assert d["extra"] < 40, (page, d)  # the closed block is its summary line, padded
        found[page] = len(browser.evaluate(SOLUTIONS))
    per_chapter = {page.split("/")[-1][:2]: n for page, n in found.items() if n}
    assert per_chapter == {"03": 1, "04": 2, "05": 1}, found


def test_no_course_code_or_output_scrolls_sideways_at_1280px(built, browser):
    assert browser.evaluate("innerWidth") == 1280
    blocks = 0
    for page in CHAPTERS:
        assert browser.open((built / page).as_uri()) == []
        n, scrolling = browser.evaluate(SCROLLING)
        assert scrolling == [], (page, scrolling)
        blocks += n
    assert blocks > 100  # the check had the course's blocks to measure


def test_no_block_on_the_errata_page_scrolls_sideways_at_1280px(built, browser):
    """Every box that could scroll sideways on the errata page (code, outputs, quotes, math,
    tables) fits at 1280 px: the quoted training loop is written over lines, not as one."""
    assert browser.evaluate("innerWidth") == 1280
    assert browser.open((built / "docs" / "errata.html").as_uri()) == []
    boxes, scrolling = browser.evaluate(SCROLLING_ANY)
    assert scrolling == [], scrolling
    assert boxes >= 10  # the page's code and output blocks were measured


def test_teachers_page_links_chapter_pages_and_notebooks(built, browser):
    import json

    teachers = built / "docs" / "course" / "index.html"  # docs/course/README.md
    assert browser.open(teachers.as_uri()) == []
    links = browser.evaluate(LINKS)
    stems = [page.split("/")[-1].removesuffix(".html") for page in CHAPTERS]
    assert len(stems) == 9
    for stem in stems:
        assert f"{stem}.html" in links and f"{stem}.ipynb" in links, stem
        notebook = json.loads((built / "docs" / "course" / f"{stem}.ipynb").read_text())
        code = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]
        assert code and not [c for c in code if re.search("^SHOW_SOLUTIONS = True", c, re.M)]
        assert not [c for c in notebook["cells"] if c.get("outputs")], stem  # to run
    assert not [link for link in links if link.endswith(".py")]  # no raw source, no charset
    for stem in stems:  # each chapter offers its notebook
        assert browser.open((built / "docs" / "course" / f"{stem}.html").as_uri()) == []
        assert f"{stem}.ipynb" in browser.evaluate(LINKS), stem


def test_the_matrix_curves_figure_is_decoded_where_it_is_shown(built, browser):
    want = (site.ROOT / "docs" / "matrix_curves.png").read_bytes()
    copies = {p.resolve() for p in built.rglob("*.png") if p.read_bytes() == want}
    shown = []
    for page in ["index.html", *CHAPTERS]:
        assert browser.open((built / page).as_uri()) == []
        images = browser.evaluate("[...document.images].map(i => [i.src, i.naturalWidth])")
        for src, width in images:
            path = Path(src.removeprefix("file://")).resolve()
            if path in copies:
                assert width > 0, (page, src)
                shown.append(page)
    assert "index.html" in shown and "docs/course/07_tools.html" in shown, shown


def test_the_outlines_chinese_headings_are_drawn_in_the_bundled_cjk_font(built, browser, tmp_path):
    """The CJK font ships with the site beside the math font (the same licence file), and every
    Chinese character the built site shows, all of them on the outline page, is drawn with it
    as Chromium reports after fallback, with or without a CJK font on the machine. The same
    headings on a page without the font-face are drawn in another font (or none)."""
    cjk = re.compile(r"[\u2e80-\u9fff\u3000-\u303f\uff00-\uffef]")
    pages = [p for p in built.rglob("*.html") if cjk.search(p.read_text(encoding="utf-8"))]
    assert [p.relative_to(built).as_posix() for p in pages] == ["docs/source_outline.html"]
    served = built / "docs" / "site" / "fonts" / "rosetta-cjk.woff2"
    committed = site.ROOT / "docs" / "site" / "fonts" / "rosetta-cjk.woff2"
    assert served.read_bytes()[:4] == b"wOF2" and served.read_bytes() == committed.read_bytes()
    assert "Rosetta CJK (rosetta-cjk.woff2)" in (committed.parent / "OFL.txt").read_text()
    assert browser.open(pages[0].as_uri()) == []
    headings = browser.evaluate(
        "[...document.querySelectorAll('article *')].filter(e => e.children.length === 0"
        f" && /{cjk.pattern}/.test(e.textContent)).length"
    )
    assert headings >= 20, headings
    marked = browser.evaluate(
        "[...document.querySelectorAll('article *')].filter(e => e.children.length === 0"
        f" && /{cjk.pattern}/.test(e.textContent)).forEach(e => e.classList.add('cjk-probe'))"
        " || true"
    )
    assert marked
    drawn = browser.rendered_fonts(".cjk-probe")
    wanted = len(
        cjk.findall(
            browser.evaluate(
                "[...document.querySelectorAll('.cjk-probe')].map(e => e.textContent).join('')"
            )
        )
    )
    assert drawn.get("Rosetta CJK", 0) >= wanted, (drawn, wanted)
    bare = tmp_path / "bare.html"
    bare.write_text("<!doctype html><meta charset=utf-8><p class=cjk-probe>对比学习</p>")
    browser.open(bare.as_uri())
    assert "Rosetta CJK" not in browser.rendered_fonts(".cjk-probe")
