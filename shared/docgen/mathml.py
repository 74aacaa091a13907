"""The site's math, rendered to MathML when the site is built: no script, font or CDN at view time.

``pymdownx.arithmatex`` (generic mode) finds the math in a page's Markdown, code excluded:
``$...$`` and ``\\(...\\)`` inline, ``$$...$$`` and ``\\[...\\]`` as a block. It leaves each in a
``<span class="arithmatex">`` or ``<div class="arithmatex">``; :func:`render_math` replaces those
with MathML from ``latex2mathml``, which browsers render natively (Chromium since 109, Firefox,
Safari). mkdocs calls :func:`on_page_content` for every page (``hooks:`` in mkdocs.yml). LaTeX
that does not convert, or a command that ``latex2mathml`` does not know (it would print the
command's name), fails the build with the page's name.
"""

from __future__ import annotations

import html
import re

from latex2mathml.converter import convert

ARITHMATEX = re.compile(r'<(span|div) class="arithmatex">(.*?)</\1>', re.S)
WRAPPERS = {"span": (r"\(", r"\)"), "div": (r"\[", r"\]")}
UNKNOWN = re.compile(r"<m[io][^>]*>(\\[A-Za-z]+)</m[io]>")  # a command latex2mathml passed through


class MathError(ValueError):
    """LaTeX on a page that does not convert to MathML."""


def to_mathml(latex: str, block: bool) -> str:
    """``latex`` as one ``<math>`` element (``display="block"`` for a block).

    Raises:
        MathError: the LaTeX does not parse, or uses a command with no MathML rendering.

    Example:
        >>> to_mathml(r"\\tau", block=False).split(">", 1)[1]
        '<mrow><mi>&#x003C4;</mi></mrow></math>'
    """
    try:
        out = convert(latex, display="block" if block else "inline")
    except Exception as e:  # latex2mathml raises its own exception types, one per error
        raise MathError(f"cannot render {latex!r}: {type(e).__name__} {e}".rstrip()) from e
    unknown = UNKNOWN.search(out)
    if unknown:
        raise MathError(f"cannot render {latex!r}: unknown command {unknown.group(1)}")
    return out


def render_math(page_html: str) -> str:
    """``page_html`` with every arithmatex element replaced by its MathML.

    Example:
        >>> out = render_math('<p>at <span class="arithmatex">\\\\(\\\\tau &lt; 1\\\\)</span></p>')
        >>> out.startswith('<p>at <math') and '&#x0003C;' in out and 'arithmatex' not in out
        True
    """

    def replace(m: re.Match) -> str:
        tag, body = m.group(1), html.unescape(m.group(2)).strip()
        opening, closing = WRAPPERS[tag]
        if not (body.startswith(opening) and body.endswith(closing)):
            raise MathError(f"unexpected arithmatex output {m.group(0)[:80]!r}")
        return to_mathml(body[len(opening) : -len(closing)].strip(), block=tag == "div")

    return ARITHMATEX.sub(replace, page_html)


def on_page_content(content: str, page, config, files) -> str:
    """mkdocs hook: the page's HTML with its math as MathML; bad LaTeX aborts the build."""
    from mkdocs.exceptions import PluginError

    try:
        return render_math(content)
    except MathError as e:
        raise PluginError(f"{page.file.src_uri}: {e}") from e
