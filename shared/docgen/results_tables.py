"""The tables that hand-written pages (README, docs/performance.md) show from the results file.

    python -m shared.docgen.results_tables     # prints them, to paste after `rosetta results`

``tests/test_readme.py`` checks that each page holds its table exactly as this module writes it
from the committed ``docs/results.json``, so a page cannot keep a number the file lost.
"""

from __future__ import annotations

from shared.run import published as P
from shared.run.evaluation import KS

CELLS = {
    "SimCLR, PyTorch": "simclr/torch",
    "SimCLR, TensorFlow": "simclr/tensorflow",
    "MoCo v2, PyTorch": "moco/torch",
    "MoCo v2, TensorFlow": "moco/tensorflow",
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
        "split | k per seed | training time, one core | results entry |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, key in {**CELLS, **BASELINES}.items():
        v = lambda m, pct=True, key=key: P.fmt(*P.stat(results, key, m)[:2], pct=pct)  # noqa: E731
        train = v("train_wall_s", pct=False) + " s" if key in CELLS.values() else "-"
        lines.append(
            f"| {label} | {v('knn_top1')} | {v('linear_top1')} | {v('knn_loo')} | "
            f"{_chosen(results, key, 'knn_k')} | {train} | `{key}` ({results['entries'][key]['n']}) |"
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


def measured_line(results: dict) -> str:
    """Where and how the file was measured, as the README quotes it."""
    m = results["measured"]
    v = m["host"]["versions"]
    return (
        f"`{m['command']}` at {m['commit']}, {m['date']}, on a {m['host']['cpu']} "
        f"(torch {v['torch']}, TensorFlow {v['tensorflow']}): {m['wall_s'] / 60:.0f} min, "
        f"{m['jobs']} units at a time, one thread each"
    )


def main() -> int:
    results = P.load()
    for table in (readme_table(results), knn_sweep_table(results), measured_line(results)):
        print(table, end="\n\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
