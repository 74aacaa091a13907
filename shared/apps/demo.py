"""``make demo`` / ``rosetta demo``: the whole pipeline in one command, with a report.

1. SimCLR (torch) and MoCo (TF), the design's pair, train on the embedded dataset (the recipe
   ``digits``; ``--recipe`` another), each in its own process (``--matrix``: all four cells, {SimCLR, MoCo} x {torch, TF}, with the same
   per-method hyperparameters, and a 2x2 table in ``matrix.md`` / ``matrix.json``);
2. both are evaluated by ``shared.run.evaluation`` beside the random-init and raw-pixel baselines;
3. the parity checks run (``rosetta parity``, loss and step levels);
4. ``runs/<timestamp>/report.md`` is written with PNG figures (loss curves, kNN per epoch,
   a similarity heatmap of one batch, t-SNE maps of the test features before/after, the tables);
5. a summary table is printed with the report's path.

Frameworks run in subprocesses, so this module imports neither.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from shared.apps import parity_cmd
from shared.parity.step_parity import summary_markdown as step_summary
from shared.run.config import PACKAGES
from shared.run.evaluation import KS, PROTOCOL
from shared.run.recipes import RECIPES

PAIR = [("torch", "simclr"), ("tensorflow", "moco")]
MATRIX = [("torch", "simclr"), ("tensorflow", "simclr"), ("torch", "moco"), ("tensorflow", "moco")]
# "MoCo", not "MoCo v2": what trains on the digits is the recipe "digits" (docs/recipes.md)
LABEL = {"simclr": "SimCLR", "moco": "MoCo", "torch": "torch", "tensorflow": "TF"}


# The training-time kNN monitor (the curve in curves.png) every 10 epochs, not the CLI's 5:
# each one embeds all 1,797 images, 1.2 s (torch) to 2.5 s (TF) on one core, and the final
# number comes from the evaluation anyway. Saves 7 s of the demo's critical path.
KNN_EVERY = 10

# The demo's cells train with --fast-kernels: on a 2-core Xeon the pair took 166 s with them and
# 193 s with the plain kernels (docs/performance.md, "The fast kernels in the demo"); torch's
# numbers are the same bit for bit either way, TF's round float32 differently.
FAST_KERNELS = True

_CHILDREN: set = set()  # live children of train_cells, stopped when a sibling fails


def _run(cmd: list[str], env: dict | None = None) -> None:
    print("$", " ".join(cmd), flush=True)
    child = subprocess.Popen(cmd, env=env)
    _CHILDREN.add(child)
    try:
        child.wait()
    finally:
        _CHILDREN.discard(child)
    if child.returncode:  # the child already printed its one-line error
        raise RuntimeError(f"step failed (exit {child.returncode}): {' '.join(cmd)}")


def thread_env(threads: int | None) -> dict | None:
    """The environment of a child limited to ``threads`` intra-op threads (torch, TF, BLAS),
    or ``None`` (inherit) when ``threads`` is None."""
    if threads is None:
        return None
    n = str(threads)
    return {
        **os.environ,
        "OMP_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
        "OPENBLAS_NUM_THREADS": n,
        "TF_NUM_INTRAOP_THREADS": n,
        "TF_NUM_INTEROP_THREADS": n,
    }


def train_cell(
    framework: str,
    method: str,
    out: Path,
    epochs: int | None,
    threads: int | None = None,
    fast_kernels: bool = False,
    recipe: str = "digits",
) -> dict:
    """Train and evaluate one cell in one subprocess (``train --eval``); return its metrics,
    eval and timings.

    ``threads``: the intra-op threads of the cell's process (``None``: the frameworks'
    default, every core). ``fast_kernels``: train with ``--fast-kernels``. ``recipe``: the
    ``--recipe`` it trains (``shared.run.recipes``)."""
    py, pkg, env = sys.executable, PACKAGES[framework], thread_env(threads)
    run_dir = out / f"{framework}-{method}"
    extra = ["--recipe", recipe] + (["--epochs", str(epochs)] if epochs is not None else [])
    extra += ["--fast-kernels"] if fast_kernels else []
    t_start = time.time()  # wall clock: compared with a file's modification time
    _run(
        [
            py,
            "-m",
            pkg,
            "train",
            "--method",
            method,
            *extra,
            "--run-dir",
            str(run_dir),
            "--knn-every",
            str(KNN_EVERY),
            "--no-progress",
            "--eval",  # evaluated in the same process: one start-up, not two
        ],
        env,
    )
    # training ended when the last epoch's metrics were written; the evaluation followed
    wall = (run_dir / "metrics.json").stat().st_mtime - t_start
    metrics = json.loads((run_dir / "metrics.json").read_text())
    eps = metrics["epochs"]
    images = sum(e["images_per_s"] * e["time_s"] for e in eps)
    features = dict(np.load(run_dir / "features.npz"))
    busy = threads if any(c.poll() is None for c in list(_CHILDREN)) else None  # a cell trains
    return {
        "framework": framework,
        "method": method,
        "train_wall_s": wall,
        "images_per_s": images / sum(e["time_s"] for e in eps),
        "metrics": metrics,
        "eval": json.loads((run_dir / "eval.json").read_text()),
        "features": features,
        # embeddings.png's maps, made here so that a cell that ends first makes its own while
        # the other cell still trains
        "tsne": {key: tsne_2d(features[key], busy) for key in ("random_init", "trained")},
    }


def tsne_2d(features: np.ndarray, threads: int | None = None) -> np.ndarray:
    """t-SNE (perplexity 30, PCA init, seed 0) of L2-normalised features: (N, F) -> (N, 2),
    on ``threads`` threads (``None``: every core). Normalising first gives the map the cosine
    geometry that kNN and the losses use."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    with threadpool_limits(threads):
        return TSNE(2, perplexity=30, init="pca", random_state=0).fit_transform(x)


def train_cells(
    cells,
    out: Path,
    epochs: int | None,
    jobs: int,
    then=None,
    after_cells=None,
    fast_kernels: bool = False,
    recipe: str = "digits",
) -> tuple[dict, object, object]:
    """Every cell, ``jobs`` at a time, each with ``cores // jobs`` threads; then ``then()``
    (the parity checks), which starts as soon as a worker is free, so that it overlaps the
    last cell; and ``after_cells(runs)`` (the figures), in this thread as soon as every cell
    has finished, while ``then()`` may still run. Returns the cells' results in ``cells``
    order, ``then()``'s and ``after_cells(runs)``'s.

    Raises:
        RuntimeError: a child failed (its own one-line error is already printed).
    """
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    jobs = max(1, min(jobs, len(cells)))
    threads = None if jobs == 1 else max(1, (os.cpu_count() or 1) // jobs)
    with ThreadPoolExecutor(jobs) as pool:
        futures = {
            f"{LABEL[m]} ({LABEL[f]})": pool.submit(
                train_cell, f, m, out, epochs, threads, fast_kernels, recipe
            )
            for f, m in cells
        }
        later: list = []  # then(), submitted when the first cell succeeds
        lock = threading.Lock()

        def start_then(fut) -> None:
            with lock:
                if then is not None and not later and fut.exception() is None:
                    later.append(pool.submit(then))

        for fut in futures.values():
            fut.add_done_callback(start_then)
        done, _ = wait(futures.values(), return_when=FIRST_EXCEPTION)
        if any(f.exception() for f in done):
            for f in futures.values():
                f.cancel()  # cells not started yet
            for child in list(_CHILDREN):  # and the running ones: the demo has failed
                child.terminate()
        runs = {label: fut.result() for label, fut in futures.items()}
        made = after_cells(runs) if after_cells is not None else None
        return runs, (later[0].result() if later else None), made


def demo_cells(matrix: bool, recipe: str = "digits") -> list[tuple[str, str]]:
    """The ``(framework, method)`` cells the demo trains: the pair (or with ``matrix`` the 2x2)
    of the digits, or another recipe's method in both frameworks.

    Example:
        >>> demo_cells(False), demo_cells(False, "moco-cifar")
        ([('torch', 'simclr'), ('tensorflow', 'moco')], [('torch', 'moco'), ('tensorflow', 'moco')])
    """
    if recipe == "digits":
        return MATRIX if matrix else PAIR
    return [(f, m) for f, m in MATRIX if m in RECIPES[recipe].values]


def _trained(cell: dict) -> dict:
    return cell["eval"][cell["method"]]


def _gain(cell: dict) -> float:
    e = cell["eval"]
    return 100 * (
        _trained(cell)["knn_top1"] - max(e["random_init"]["knn_top1"], e["raw_pixels"]["knn_top1"])
    )


def _preload_figure_modules() -> None:
    """Import matplotlib and scikit-learn's t-SNE ahead of time (about 1.5 s), so that the
    figures, drawn after the last cell, start at once."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import sklearn.manifold  # noqa: F401


def _figures(out: Path, runs: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, r in runs.items():
        eps = r["metrics"]["epochs"]
        axes[0].plot(
            [e["epoch"] for e in eps], [e["loss"] for e in eps], marker="o", ms=3, label=label
        )
        secs = np.cumsum([e["time_s"] for e in eps])  # training seconds, monitors excluded
        kn = [(t, 100 * e["knn_top1"]) for t, e in zip(secs, eps) if e["knn_top1"] is not None]
        axes[1].plot(*zip(*kn), marker="o", label=label)
    e = next(iter(runs.values()))["eval"]
    base = 100 * max(e["raw_pixels"]["knn_top1"], e["random_init"]["knn_top1"])
    axes[1].axhline(base, color="gray", ls="--", lw=1, label=f"best baseline ({base:.1f}%)")
    axes[1].axhline(100 * QUALITY_KNN, color="gray", ls=":", lw=1,
                    label=f"the demo's quality bar: kNN at least {100 * QUALITY_KNN:.0f} % "
                    f"(and {QUALITY_GAIN:.0f} points over the best baseline)")  # fmt: skip
    axes[0].set(title="training loss (NT-Xent and InfoNCE: different scales)", xlabel="epoch")
    axes[1].set(
        title="kNN top-1 on the test split (%), k by leave-one-out",
        xlabel="training time (s, 2 CPU cores)",
    )
    for ax in axes:
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)
    figs.append("curves.png")
    plt.close(fig)

    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 4.2))
    for ax, (label, r) in zip(np.atleast_1d(axes), runs.items()):
        f = r["features"]
        z = np.concatenate([f["batch_z1"], f["batch_z2"]])
        z = z / np.linalg.norm(z, axis=1, keepdims=True)
        im = ax.imshow(z @ z.T, cmap="viridis", vmin=-1, vmax=1)
        ax.set(title=f"{label}: cosine similarity of one batch\n(rows 0-15 view 1, 16-31 view 2)")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(out / "similarity.png", dpi=110)
    figs.append("similarity.png")
    plt.close(fig)

    fig, axes = plt.subplots(len(runs), 2, figsize=(9, 4.2 * len(runs)))
    for row, (label, r) in zip(np.atleast_2d(axes), runs.items()):
        f = r["features"]
        for ax, key in zip(row, ("random_init", "trained")):
            p = r["tsne"][key]  # tsne_2d, made when the cell ended
            sc = ax.scatter(p[:, 0], p[:, 1], c=f["test_labels"], cmap="tab10", s=8)
            ax.set(title=f"{label}: {key.replace('_', ' ')} encoder", xticks=[], yticks=[])
        fig.colorbar(sc, ax=row[-1], fraction=0.046, label="digit")
    fig.suptitle("t-SNE of L2-normalised encoder features h of the 359 test images")
    fig.tight_layout()
    fig.savefig(out / "embeddings.png", dpi=110)
    figs.append("embeddings.png")
    plt.close(fig)
    return figs


QUALITY_KNN, QUALITY_GAIN = 0.75, 20.0  # the quality bar: kNN >= 75 %, >= 20 points over baselines


def _sweep(by_k: dict) -> str:
    return " / ".join(f"{100 * by_k[str(k)]:.1f}" for k in KS)


def _accuracy_tables(runs: dict) -> tuple[list[str], list[str]]:
    """The accuracy table (every representation under the one protocol, with its kNN sweep)
    and the quality bar (trained vs the best baseline, each at its own chosen setting)."""
    ks = " / ".join(str(k) for k in KS)
    acc = [
        f"| model | kNN top-1 | k (leave-one-out) | kNN at k = {ks} | linear probe | C (CV) |",
        "|---|---|---|---|---|---|",
    ]
    for label, r in runs.items():
        for key in (r["method"], "random_init", "raw_pixels"):
            res = r["eval"][key]
            acc.append(
                f"| {label}: {key.replace('_', ' ')} | {100 * res['knn_top1']:.1f}% | "
                f"{res['knn_k']} | {_sweep(res['knn_by_k'])} | {100 * res['linear_top1']:.1f}% | "
                f"{res['linear_c']:g} |"
            )
    bar = [
        "| cell | trained kNN | best baseline kNN | gain (points) | bar: >= 75 % and >= +20 |",
        "|---|---|---|---|---|",
    ]
    for label, r in runs.items():
        e = r["eval"]
        base = max(e["random_init"]["knn_top1"], e["raw_pixels"]["knn_top1"])
        knn, gain = _trained(r)["knn_top1"], _gain(r)
        met = knn >= QUALITY_KNN and gain >= QUALITY_GAIN
        bar.append(
            f"| {label} | {100 * knn:.1f}% | {100 * base:.1f}% | {gain:+.1f} | "
            f"{'met' if met else 'NOT met'} |"
        )
    return acc, bar


def matrix_table(runs: dict) -> str:
    """The 2x2 as Markdown: one row per method, one column group per framework."""
    lines = [
        "| method | framework | kNN top-1 (k by LOO) | gain over best baseline | linear probe | images/s | train wall time |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(
        runs.values(), key=lambda r: (r["method"] != "simclr", r["framework"] != "torch")
    ):
        t = _trained(r)
        lines.append(
            f"| {LABEL[r['method']]} | {LABEL[r['framework']]} | {100 * t['knn_top1']:.1f}% | "
            f"{_gain(r):+.1f} | {100 * t['linear_top1']:.1f}% | {r['images_per_s']:.0f} | "
            f"{r['train_wall_s']:.0f} s |"
        )
    return "\n".join(lines)


def _matrix_outputs(out: Path, runs: dict) -> list[str]:
    from shared.run.runlog import atomic_write_json

    keep = ("framework", "method", "train_wall_s", "images_per_s", "eval")
    atomic_write_json(
        out / "matrix.json", {label: {k: r[k] for k in keep} for label, r in runs.items()}
    )
    (out / "matrix.md").write_text(matrix_table(runs) + "\n")
    return [matrix_table(runs), ""]


def report_json(runs: dict, wall: float, parity_ok: bool) -> dict:
    """``report.json``: every number of the report that a tool or the README quotes."""
    cells = {}
    for label, r in runs.items():
        knn, gain = _trained(r)["knn_top1"], _gain(r)
        cells[label] = {
            **{k: r[k] for k in ("framework", "method", "train_wall_s", "images_per_s")},
            "epochs": r["metrics"]["epochs"][-1]["epoch"],
            "eval": r["eval"],  # trained, random_init, raw_pixels: each under the protocol
            "gain_points": gain,
            "quality_met": knn >= QUALITY_KNN and gain >= QUALITY_GAIN,
        }
    return {
        "protocol": PROTOCOL,
        "quality_bar": {"knn_top1": QUALITY_KNN, "gain_points": QUALITY_GAIN},
        "wall_s": wall,
        "parity_ok": parity_ok,
        "cells": cells,
    }


def _report(
    out: Path,
    runs: dict,
    wall: float,
    parity_ok: bool,
    parity_md: str,
    figs: list[str],
    matrix: bool,
    fast_kernels: bool = False,
    recipe: str = "digits",
) -> None:
    acc, bar = _accuracy_tables(runs)
    epochs = ", ".join(
        f"{label} {r['metrics']['epochs'][-1]['epoch']} epochs" for label, r in runs.items()
    )
    report = [
        f"# contrastive-rosetta demo ({time.strftime('%Y-%m-%d %H:%M')})",
        "",
        f"Wall time {wall:.0f} s; recipe {recipe} (docs/recipes.md); {epochs}; float32 "
        "(no --amp); "
        + ("--fast-kernels on." if fast_kernels else "the plain kernels (--fast-kernels off)."),
        "",
    ]
    if matrix:
        report += ["## The 2x2: both methods in both frameworks", "", *_matrix_outputs(out, runs)]
    report += [
        "## Accuracy (one protocol for every representation: shared/run/evaluation.py)",
        "",
        PROTOCOL,
        "",
        *acc,
        "",
        "Quality bar (kNN, each representation at its own chosen k):",
        "",
        *bar,
        "",
        "## Parity (worst case over the golden grid)",
        "",
        f"Overall: {'PASS' if parity_ok else 'FAIL'}",
        "",
        parity_md,
        "## Figures",
        "",
        *[f"![{f}]({f})" for f in figs],
    ]
    (out / "report.md").write_text("\n".join(report) + "\n")
    from shared.run.runlog import atomic_write_json

    atomic_write_json(
        out / "report.json",
        {**report_json(runs, wall, parity_ok), "fast_kernels": fast_kernels, "recipe": recipe},
    )
    print("\n".join(acc))
    print("\n".join(bar))
    if matrix:
        print(matrix_table(runs))


def _parity(out: Path, threads: int | None = None) -> tuple:
    """The loss and step levels of ``rosetta parity``: (rows, ok, step rows, step ok).

    ``threads``: the dumps' intra-op threads. With cells training at once the checks get the
    core a finished cell freed, and one thread each, so that they do not slow the cell that
    is still training (the demo's critical path)."""
    env, dtypes = thread_env(threads), ["float64", "float32"]
    rows, ok = parity_cmd.run(out / "parity", dtypes, env=env)
    step_rows, step_ok = parity_cmd.run_step(out / "parity" / "step", dtypes, env=env)
    return rows, ok, step_rows, step_ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="rosetta demo", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs for every cell (default: each method's tuned default)",
    )
    ap.add_argument(
        "--matrix", action="store_true", help="train all four cells {SimCLR, MoCo} x {torch, TF}"
    )
    ap.add_argument("--out", default=None, help="output folder (default: runs/<timestamp>)")
    ap.add_argument(
        "--recipe",
        default="digits",
        choices=list(RECIPES),
        help="the setting every cell trains (docs/recipes.md; default digits, the tuned pair on "
        "the embedded digits); another recipe trains its method in both frameworks",
    )
    ap.add_argument(
        "--fast-kernels",
        action=argparse.BooleanOptionalAction,
        default=FAST_KERNELS,
        help="train every cell with --fast-kernels (TF's Conv3x3 input gradient and fused "
        f"BatchNorm, torch's malloc setting; default {'on' if FAST_KERNELS else 'off'}: "
        "docs/performance.md has the A/B)",
    )
    ap.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="cells trained at once, each with cores / jobs threads (default 2: on 2 cores, "
        "two 1-thread processes finish the pair sooner than one 2-thread process after the "
        "other; docs/performance.md)",
    )
    args = ap.parse_args(argv)
    if args.jobs < 1:
        print(f"error: jobs: expected >= 1, got {args.jobs}", file=sys.stderr)
        return 2
    if args.epochs is not None and args.epochs < 1:
        print(f"error: epochs: expected >= 1, got {args.epochs}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    out = Path(args.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S"))
    out.mkdir(parents=True, exist_ok=True)
    cells = demo_cells(args.matrix, args.recipe)
    threading.Thread(target=_preload_figure_modules, daemon=True).start()  # while cells train
    try:
        runs, (rows, parity_ok, step_rows, step_ok), figs = train_cells(
            cells,
            out,
            args.epochs,
            args.jobs,
            then=lambda: _parity(out, 1 if args.jobs > 1 else None),
            after_cells=lambda runs: _figures(out, runs),  # while the parity checks finish
            fast_kernels=args.fast_kernels,
            recipe=args.recipe,
        )
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    parity_md = parity_cmd.to_markdown(parity_cmd.summarize(rows))
    (out / "parity" / "parity.md").write_text(parity_md)
    parity_ok = parity_ok and step_ok
    parity_md += (
        "\n## Step parity: one training step, torch vs TF from ported weights "
        f"(`rosetta parity --level step`): {'PASS' if step_ok else 'FAIL'}\n\n"
        + step_summary(step_rows)
    )
    wall = time.perf_counter() - t0
    _report(
        out, runs, wall, parity_ok, parity_md, figs, args.matrix, args.fast_kernels, args.recipe
    )
    n = len(rows) + len(step_rows)
    print(f"parity: {'PASS' if parity_ok else 'FAIL'} ({n} comparisons, loss and step levels)")
    print(f"report: {out / 'report.md'}  (wall time {wall:.0f} s)")
    return 0 if parity_ok else 1
