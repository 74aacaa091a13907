"""The tables that hand-written pages (README, docs/performance.md) show from the results file.

    python -m shared.docgen.results_tables     # (make docs) rewrites those tables in place

Each table is found on its page by its header row and replaced whole, so the prose around it
stays hand-written. ``tests/test_docs.py`` checks that each page holds every table and line
exactly as this module writes them from the committed ``docs/results.json`` (and
``tests/test_readme.py`` the README's), so a page cannot keep a number the file lost.
"""

from __future__ import annotations

from pathlib import Path

from shared.run import published as P
from shared.run.evaluation import KS

CELLS = {
    "SimCLR, PyTorch": "simclr/torch",
    "SimCLR, TensorFlow": "simclr/tensorflow",
    "MoCo, PyTorch": "moco/torch",
    "MoCo, TensorFlow": "moco/tensorflow",
}
BASELINES = {
    "raw pixels (no training)": "raw_pixels",
    "random-init small CNN, PyTorch": "random_init/torch",
    "random-init small CNN, TensorFlow": "random_init/tensorflow",
}


def _chosen(results: dict, key: str, metric: str) -> str:
    """The per-seed choices of a setting (k, C), e.g. ``20 / 20 / 50``."""
    rows = results["entries"][key]["seeds"]
    return " / ".join(f"{r[metric]:g}" for r in rows)


def readme_table(results: dict) -> str:
    """The 2x2 and the baselines: mean ± std over the seeds of each entry."""
    lines = [
        "| encoder features | kNN top-1 | linear probe | kNN, leave-one-out on the training "
        "split | k per seed | results entry |",
        "|---|---|---|---|---|---|",
    ]
    for label, key in {**CELLS, **BASELINES}.items():
        v = lambda m, pct=True, key=key: P.fmt(*P.stat(results, key, m)[:2], pct=pct)  # noqa: E731
        lines.append(
            f"| {label} | {v('knn_top1')} | {v('linear_top1')} | {v('knn_loo')} | "
            f"{_chosen(results, key, 'knn_k')} | `{key}` ({results['entries'][key]['n']}) |"
        )
    return "\n".join(lines)


def knn_sweep_table(results: dict) -> str:
    """kNN top-1 on the test split at every k of the protocol (mean over the seeds)."""
    head = " | ".join(f"k = {k}" if k == KS[0] else str(k) for k in KS)
    lines = [f"| features | {head} | k per seed |", "|---" * (len(KS) + 2) + "|"]
    for label, key in {**BASELINES, **CELLS}.items():
        mean = results["entries"][key]["mean"]
        cells = " | ".join(f"{100 * mean[f'knn_at_{k}']:.1f}" for k in KS)
        lines.append(f"| {label} | {cells} | {_chosen(results, key, 'knn_k')} |")
    return "\n".join(lines)


def sweeps_table(results: dict, sweeps: list[str] | None = None) -> str:
    """The sweeps (all, or ``sweeps``: "cell/knob" keys), each value's leave-one-out kNN on the
    training split (the rule's metric) and test kNN (shown, not used), and the decision."""
    lines = [
        "| sweep (seed 0) | value | kNN, leave-one-out on the training split | kNN on the test "
        "split | decision |",
        "|---|---|---|---|---|",
    ]
    for key in sweeps or list(results["sweeps"]):
        sw = results["sweeps"][key]
        cell, knob = key.rsplit("/", 1)
        for i, (value, loo) in enumerate(sw["scores"].items()):
            default = " (default)" if value == str(sw["default"]) else ""
            decision = f"**{sw['choice']}**: {sw['reason']}{_confirmed(sw)}" if i == 0 else ""
            lines.append(
                f"| {cell} {knob} | {value}{default} | {P.fmt(loo, None)} | "
                f"{P.fmt(sw['test_knn_top1'][value], None)} | {decision} |"
            )
    return "\n".join(lines)


def _confirmed(sw: dict) -> str:
    """A confirmed sweep's means on every seed, each value's, and what seed 0 suggested."""
    conf = sw.get("confirmed")
    if not conf:
        return ""
    means = ", ".join(f"{v}: {P.fmt(x, None)}" for v, x in conf["scores"].items())
    return f" (means over {conf['seeds']} seeds: {means}; seed 0 suggested {sw['suggested']})"


def finetune_table(results: dict) -> str:
    """Fine-tuned against from scratch against the frozen probe, per label fraction."""
    lines = [
        "| labels | fine-tuned | from scratch | frozen, linear probe | results entry |",
        "|---|---|---|---|---|",
    ]
    keys = sorted(
        (k for k in results["entries"] if k.startswith("finetune/")),
        key=lambda k: float(k.rsplit("/", 1)[1]),
    )
    for key in keys:
        e = results["entries"][key]
        v = lambda m, key=key: P.fmt(*P.stat(results, key, m)[:2])  # noqa: E731
        frac = float(key.rsplit("/", 1)[1])
        lines.append(
            f"| {frac:.0%} ({int(e['mean']['n_labelled'])} images) | {v('finetune_top1')} | "
            f"{v('scratch_top1')} | {v('linear_top1')} | `{key}` ({e['n']}) |"
        )
    return "\n".join(lines)


def _command(command: str) -> str:
    """The command without its machine's paths (``--work``, ``--out``, ``--figure``)."""
    words, out = command.split(), []
    for i, w in enumerate(words):
        if w in ("--work", "--out", "--figure") or (
            i and words[i - 1] in ("--work", "--out", "--figure")
        ):
            continue
        out.append(w)
    return " ".join(out)


def measured_line(results: dict) -> str:
    """Where and how the file was measured, as the README quotes it (paths aside)."""
    m = {**results["measured"]}
    m["command"] = _command(m["command"])
    v = m["host"]["versions"]
    precision = m.get("settings", {}).get("precision")
    line = (
        f"`{m['command']}` at {m['commit']}, {m['date']}, on {m['host']['cpu']}"
        + (f" ({m['host']['cpu_features']})" if m["host"].get("cpu_features") else "")
        + " "
        f"(torch {v['torch']}, TensorFlow {v['tensorflow']}): {m['wall_s'] / 60:.0f} min, "
        f"{m['jobs']} units at a time, one thread each"
        + (f"; every run in {precision}" if precision else "")
        + (f"; {m['note']}" if m.get("note") else "")
    )
    if c := results.get("carried"):
        e = c["measured"]
        line += (
            f". The sweeps and fine-tunes ({len(c['entries'])} entries) are carried from an "
            f"earlier file: `{_command(e['command'])}` at {e['commit']}, {e['date']}, precision "
            f"{c['precision']} (the file's `carried` block)"
        )
    return line


ROOT = Path(__file__).resolve().parents[2]
PAGES = {
    "README.md": (readme_table, measured_line),
    "docs/performance.md": (knn_sweep_table, sweeps_table, finetune_table, measured_line),
}
MEASURED = "> `rosetta results"  # the line that quotes the run, in a block quote


def replace_table(text: str, table: str) -> str:
    """``text`` with the table whose header row is ``table``'s replaced by ``table``."""
    header = table.splitlines()[0]
    lines = text.splitlines()
    if header not in lines:
        raise ValueError(f"no table with the header {header!r} on the page")
    start = lines.index(header)
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "\n".join([*lines[:start], *table.splitlines(), *lines[end:]]) + "\n"


def replace_measured(text: str, line: str) -> str:
    lines = text.splitlines()
    at = [i for i, x in enumerate(lines) if x.startswith(MEASURED)]
    if len(at) != 1:
        raise ValueError(f"expected one line starting {MEASURED!r}, found {len(at)}")
    lines[at[0]] = f"> {line}"
    return "\n".join(lines) + "\n"


def update(text: str, makers, results: dict) -> str:
    for make in makers:
        made = make(results)
        text = replace_measured(text, made) if make is measured_line else replace_table(text, made)
    return text


def main() -> int:
    results = P.load()
    for page, makers in PAGES.items():
        path = ROOT / page
        path.write_text(update(path.read_text(), makers, results))
        print(f"wrote the results tables of {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
