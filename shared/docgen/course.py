"""The runnable course: each chapter's jupytext source rendered to a notebook and to Markdown.

    python -m shared.docgen.course                      # notebooks and pages, not executed
    python -m shared.docgen.course --execute            # executed (nbclient), outputs included
    python -m shared.docgen.course --execute --only 4,5 --out DIR --results FILE --jobs 2

The sources are ``docs/course/NN_<name>.py``, one per chapter of the source outline, in
jupytext's ``py:percent`` format (a ``# %%`` line starts a code cell, ``# %% [markdown]`` a
text cell), so an editor or a diff reads them as Python. Each becomes ``NN_<name>.ipynb`` and
``NN_<name>.md`` in ``--out`` (default ``build/course``, git-ignored: executed outputs are build
artefacts). The Markdown keeps the text cells as they are (LaTeX math in ``$...$`` and
``$$...$$``), the code in fenced blocks, and the outputs: printed text in ``text`` blocks and
each figure as a PNG beside the page (``NN_<name>_<k>.png``), linked relatively.

Each chapter runs in its own kernel (the ``python3`` kernel of this interpreter) in a scratch
folder outside the repository, as a downloaded notebook would: a chapter finds the project's
files through the installed package (``import shared``), never through the working directory.
``--results FILE`` sets ``ROSETTA_RESULTS`` for the kernels: the chapters that plot published
numbers read that file instead of ``docs/results.json``.

**Exercises wait for the learner.** A chapter with exercises sets ``SHOW_SOLUTIONS = False`` in
its setup cell; its solution cells (tagged ``solution``) print and check the reference solution
only when it is True. The rendered page is executed with it True and shows each solution cell,
with its output, collapsed in a ``??? success "Solution"`` block; the page still shows the
setup line as the learner has it (False). ``NN_<name>.ipynb`` is the notebook a learner
downloads: the chapter unexecuted, solutions hidden; the executed one is
``NN_<name>.executed.ipynb``.

**Tabs.** Consecutive cells tagged ``tab:<label>`` (``# %% tags=["tab:PyTorch"]``) become one
set of content tabs on the page (``=== "PyTorch"``), linked across the site like the
side-by-side page's.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "docs" / "course"
DEFAULT_OUT = ROOT / "build" / "course"
RESULTS_ENV = "ROSETTA_RESULTS"  # the results file the chapters read (docs/results.json if unset)
CELL_TIMEOUT_S = 300
HIDDEN, SHOWN = "SHOW_SOLUTIONS = False", "SHOW_SOLUTIONS = True"
SOLUTION_TAG, TAB_TAG = "solution", "tab:"


def chapters() -> list[Path]:
    """The chapter sources, in order: ``docs/course/NN_<name>.py``."""
    return sorted(p for p in SOURCES.glob("[0-9][0-9]_*.py"))


def select(only: str | None) -> list[Path]:
    """The chapters ``--only`` names (``"4,5"`` or ``"04,05"``), all of them for ``None``.

    Raises:
        ValueError: a number that is no chapter's, naming the argument.
    """
    every = chapters()
    if not only:
        return every
    by_number = {int(p.name[:2]): p for p in every}
    picked = []
    for part in only.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) not in by_number:
            raise ValueError(
                f"--only: no chapter {part!r}; the chapters are {', '.join(p.stem for p in every)}"
            )
        picked.append(by_number[int(part)])
    return picked


def read(path: Path):
    """The chapter as an (unexecuted) ``nbformat`` notebook."""
    import jupytext

    nb = jupytext.read(path, fmt="py:percent")
    nb.metadata.setdefault(
        "kernelspec", {"name": "python3", "display_name": "Python 3", "language": "python"}
    )
    return nb


def kernel_env(results: Path | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The kernels' environment: this one, the checkout first on ``PYTHONPATH``, the results
    file when one is given, and ``extra``."""
    env = {**os.environ, **(extra or {})}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if results is not None:
        env[RESULTS_ENV] = str(Path(results).resolve())
    return env


# Start-up lines the frameworks write to stderr on every CPU host: absl and TF's C++ logging
# (oneDNN, the CUDA probe with no GPU) and tqdm's notice that ipywidgets is absent. They say
# nothing about the cell that happens to import the framework, so the pages leave them out.
NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)"
    r"|[IWE]\d{4} [\d:.]+ +\d+ \S+:\d+\]"
    r"|.*TqdmWarning: IProgress not found"
    r"|  from \.autonotebook import tqdm as notebook_tqdm)"
)


def scrub(nb):
    """Remove the framework start-up lines (:data:`NOISE`) from every stderr stream of ``nb``,
    and the streams they leave empty; returns ``nb``."""
    for cell in nb.cells:
        kept = []
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream" and o.get("name") == "stderr":
                o["text"] = "".join(
                    line for line in o["text"].splitlines(True) if not NOISE.match(line)
                )
                if not o["text"].strip():
                    continue
            kept.append(o)
        if cell.cell_type == "code":
            cell.outputs = kept
    return nb


def execute(nb, env: dict[str, str], cwd: Path | str | None = None, solutions: bool = True):
    """Run every cell of ``nb`` in a fresh kernel whose working directory is ``cwd`` (a new
    scratch folder outside the repository by default), then :func:`scrub` it; returns ``nb``.
    With ``solutions`` the setup line ``SHOW_SOLUTIONS = False`` runs as True (the cells keep
    the learner's source).

    Raises:
        nbclient.exceptions.CellExecutionError: a cell failed (the message holds its traceback).
    """
    from nbclient import NotebookClient

    sources = [cell.source for cell in nb.cells]
    if solutions:
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.source = cell.source.replace(HIDDEN, SHOWN)
    with tempfile.TemporaryDirectory(prefix="rosetta-chapter-") as scratch:
        client = NotebookClient(
            nb,
            kernel_name="python3",
            timeout=CELL_TIMEOUT_S,
            resources={"metadata": {"path": str(cwd or scratch)}},
        )
        try:
            client.execute(env=env)
        finally:
            for cell, source in zip(nb.cells, sources):
                cell.source = source
        nb.metadata["rosetta"] = {"cwd": str(cwd or scratch), "solutions_shown": solutions}
    return scrub(nb)


def _fence(text: str, lang: str) -> str:
    ticks = "````" if "```" in text else "```"
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}\n"


def _outputs(outputs, stem: str, out_dir: Path, figures: list[str]) -> list[str]:
    """The Markdown of one cell's outputs; each PNG is written beside the page."""
    parts = []
    for o in outputs:
        kind = o.get("output_type")
        if kind == "stream":
            parts.append(_fence(o["text"], "text"))
        elif kind == "error":
            parts.append(_fence(f"{o['ename']}: {o['evalue']}", "text"))
        elif kind in ("display_data", "execute_result"):
            data = o.get("data", {})
            if "image/png" in data:
                name = f"{stem}_{len(figures) + 1}.png"
                (out_dir / name).write_bytes(base64.b64decode(data["image/png"]))
                figures.append(name)
                parts.append(f"![Figure {len(figures)} of {stem}]({name})\n")
            elif "text/markdown" in data:
                parts.append(data["text/markdown"].rstrip() + "\n")
            elif "text/plain" in data:
                parts.append(_fence(data["text/plain"], "text"))
    return parts


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _tab(cell) -> str | None:
    """The tab label of a cell tagged ``tab:<label>``, else None."""
    return next((t[len(TAB_TAG) :] for t in _tags(cell) if t.startswith(TAB_TAG)), None)


def _indent(text: str) -> str:
    return "".join(f"    {line}" if line.strip() else "\n" for line in text.splitlines(True))


def _cell(cell, stem: str, out_dir: Path, figures: list[str]) -> str:
    if cell.cell_type == "markdown":
        return cell.source.rstrip() + "\n"
    parts = [_fence(cell.source, "python")]
    parts += _outputs(cell.get("outputs", []), stem, out_dir, figures)
    return "\n".join(parts)


def to_markdown(nb, stem: str, out_dir: Path, download: str | None = None) -> str:
    """The page of a (possibly executed) notebook; figures go to ``out_dir`` as PNG files.
    Solution cells become collapsed ``??? success "Solution"`` blocks, consecutive ``tab:``
    cells one set of tabs; ``download``, a notebook's file name, is offered under the title."""
    figures: list[str] = []
    parts = []
    cells = [c for c in nb.cells if c.cell_type == "markdown" or c.source.strip()]
    i = 0
    while i < len(cells):
        cell, label = cells[i], _tab(cells[i])
        if label is not None:
            seen: set[str] = set()
            while i < len(cells) and _tab(cells[i]) is not None and _tab(cells[i]) not in seen:
                seen.add(_tab(cells[i]))
                body = _cell(cells[i], stem, out_dir, figures)
                parts.append(f'=== "{_tab(cells[i])}"\n\n' + _indent(body))
                i += 1
            continue
        body = _cell(cell, stem, out_dir, figures)
        if SOLUTION_TAG in _tags(cell):
            body = '??? success "Solution"\n\n' + _indent(body)
        parts.append(body)
        if i == 0 and download:
            parts.append(
                f"*Run this chapter yourself: [download it as a notebook]({download}) "
                "(first `pip install -e .` in the project's checkout).*\n"
            )
        i += 1
    return "\n".join(parts)


def render_one(path: Path, out_dir: Path, run: bool, env: dict[str, str]) -> float:
    """Write one chapter's pages: ``<stem>.md`` (executed with ``run``, the solutions shown
    collapsed), ``<stem>.ipynb`` (unexecuted, solutions hidden: the learner's download) and,
    with ``run``, ``<stem>.executed.ipynb``; returns the seconds it took."""
    import nbformat

    start = time.perf_counter()
    nbformat.write(read(path), out_dir / f"{path.stem}.ipynb")
    nb = read(path)
    if run:
        execute(nb, env)
        nbformat.write(nb, out_dir / f"{path.stem}.executed.ipynb")
    for old in out_dir.glob(f"{path.stem}_*.png"):
        old.unlink()
    page = to_markdown(nb, path.stem, out_dir, download=f"{path.stem}.ipynb")
    (out_dir / f"{path.stem}.md").write_text(page)
    return time.perf_counter() - start


def render(
    out: Path | str = DEFAULT_OUT,
    run: bool = False,
    only: str | None = None,
    results: Path | str | None = None,
    jobs: int = 1,
    extra_env: dict[str, str] | None = None,
) -> dict[str, float]:
    """Render the chapters ``only`` names (all by default) into ``out``; with ``run``, execute
    them first, ``jobs`` kernels at a time (the largest sources first), with ``extra_env`` in
    the kernels' environment. Returns each chapter's seconds, by file stem, in chapter order."""
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = kernel_env(Path(results) if results else None, extra_env)
    # the kernels share the cores: each gets its share of threads (OpenMP's pools spin while
    # they wait, and two 2-thread kernels on 2 cores made a training epoch 5x slower)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, jobs))))
    picked = select(only)
    biggest_first = sorted(picked, key=lambda p: -p.stat().st_size)
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        seconds = dict(
            zip(biggest_first, pool.map(lambda p: render_one(p, out_dir, run, env), biggest_first))
        )
    return {p.stem: seconds[p] for p in picked}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m shared.docgen.course", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--execute", action="store_true", help="run every cell (nbclient) first")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default build/course)")
    ap.add_argument("--only", help="chapter numbers, comma-separated, e.g. 4,5 (default: all)")
    ap.add_argument("--results", help=f"results file the chapters read ({RESULTS_ENV})")
    ap.add_argument("--jobs", type=int, default=1, help="kernels at a time (default 1)")
    args = ap.parse_args(argv)
    if args.results and not Path(args.results).is_file():
        print(f"error: --results: no file at {args.results}", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print(f"error: --jobs: expected at least 1, got {args.jobs}", file=sys.stderr)
        return 2
    try:
        select(args.only)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    seconds = render(args.out, args.execute, args.only, args.results, args.jobs)
    for stem, s in seconds.items():
        print(f"{stem}: {s:.1f} s", file=sys.stderr)
    wall = time.perf_counter() - start
    print(f"{len(seconds)} chapters in {args.out} ({wall:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
