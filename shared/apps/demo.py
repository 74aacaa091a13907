"""``make demo`` / ``rosetta demo``: the whole pipeline in one command, with a report.

1. SimCLR (torch) and MoCo v2 (TF) train on the embedded dataset, each in its own process;
2. both are evaluated by ``shared.evaluation`` beside the random-init and raw-pixel baselines;
3. the parity check runs (``rosetta parity``);
4. ``runs/<timestamp>/report.md`` is written with PNG figures (loss curves, kNN per epoch,
   a similarity heatmap of one batch, PCA embedding maps before/after, the tables);
5. a summary table is printed with the report's path.

Frameworks run in subprocesses, so this module imports neither.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from shared.apps import parity_cmd


def _run(cmd: list[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


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
    base = 100 * next(iter(runs.values()))["eval"]["raw_pixels"]["knn_top1"]
    axes[1].axhline(base, color="gray", ls="--", lw=1, label=f"raw pixels ({base:.1f}%)")
    axes[1].axhline(base + 25, color="gray", ls=":", lw=1, label="quality bar (+25 points)")
    axes[0].set(title="training loss (NT-Xent and InfoNCE: different scales)", xlabel="epoch")
    axes[1].set(title="kNN top-1 on the test split (%)", xlabel="training time (s, 2 CPU cores)")
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

    from sklearn.manifold import TSNE

    fig, axes = plt.subplots(len(runs), 2, figsize=(9, 4.2 * len(runs)))
    for row, (label, r) in zip(np.atleast_2d(axes), runs.items()):
        f = r["features"]
        for ax, key in zip(row, ("random_init", "trained")):
            x = f[key] / np.maximum(np.linalg.norm(f[key], axis=1, keepdims=True), 1e-12)
            p = TSNE(2, perplexity=30, init="pca", random_state=0).fit_transform(
                x
            )  # cosine geometry
            sc = ax.scatter(p[:, 0], p[:, 1], c=f["test_labels"], cmap="tab10", s=8)
            ax.set(title=f"{label}: {key.replace('_', ' ')} encoder", xticks=[], yticks=[])
        fig.colorbar(sc, ax=row[-1], fraction=0.046, label="digit")
    fig.suptitle("t-SNE of L2-normalised encoder features h of the 359 test images")
    fig.tight_layout()
    fig.savefig(out / "embeddings.png", dpi=110)
    figs.append("embeddings.png")
    plt.close(fig)
    return figs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="rosetta demo", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs for both (default: each framework's tuned default, ~2 min each)",
    )
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    out = Path(args.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S"))
    out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    jobs = {
        "SimCLR (torch)": ("torch_impl", out / "torch-simclr"),
        "MoCo v2 (TF)": ("tf_impl", out / "tf-moco"),
    }
    runs = {}
    for label, (module, run_dir) in jobs.items():
        epochs = ["--epochs", str(args.epochs)] if args.epochs else []
        _run([py, "-m", module, "train", *epochs, "--run-dir", str(run_dir)])
        _run([py, "-m", module, "eval", "--run-dir", str(run_dir)])
        runs[label] = {
            "metrics": json.loads((run_dir / "metrics.json").read_text()),
            "eval": json.loads((run_dir / "eval.json").read_text()),
            "features": dict(np.load(run_dir / "features.npz")),
        }
    rows, parity_ok = parity_cmd.run(out / "parity", ["float64", "float32"])
    parity_md = parity_cmd.to_markdown(parity_cmd.summarize(rows))
    (out / "parity" / "parity.md").write_text(parity_md)
    figs = _figures(out, runs)

    acc = ["| model | kNN top-1 | linear probe |", "|---|---|---|"]
    for label, r in runs.items():
        for key, res in r["eval"].items():
            acc.append(
                f"| {label}: {key.replace('_', ' ')} | {100 * res['knn_top1']:.1f}% | "
                f"{100 * res['linear_top1']:.1f}% |"
            )
    bar = [
        "| framework | trained kNN | best baseline kNN | gain (points) | bar: >= 25 |",
        "|---|---|---|---|---|",
    ]
    for label, r in runs.items():
        e = r["eval"]
        trained = next(v for k, v in e.items() if k not in ("random_init", "raw_pixels"))[
            "knn_top1"
        ]
        base = max(e["random_init"]["knn_top1"], e["raw_pixels"]["knn_top1"])
        gain = 100 * (trained - base)
        bar.append(
            f"| {label} | {100 * trained:.1f}% | {100 * base:.1f}% | {gain:+.1f} | "
            f"{'met' if gain >= 25 else 'NOT met'} |"
        )
    wall = time.perf_counter() - t0
    report = [
        f"# contrastive-rosetta demo ({time.strftime('%Y-%m-%d %H:%M')})",
        "",
        f"Wall time {wall:.0f} s on the embedded dataset; SimCLR "
        f"{runs['SimCLR (torch)']['metrics']['epochs'][-1]['epoch']} epochs, MoCo "
        f"{runs['MoCo v2 (TF)']['metrics']['epochs'][-1]['epoch']} epochs.",
        "",
        "## Accuracy (shared evaluator: weighted kNN k=200 t=0.1, logistic-regression probe)",
        "",
        *acc,
        "",
        "Quality bar (kNN gain over the better baseline):",
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
    ]
    report += [f"![{f}]({f})" for f in figs]
    (out / "report.md").write_text("\n".join(report) + "\n")
    print("\n".join(acc))
    print("\n".join(bar))
    print(f"parity: {'PASS' if parity_ok else 'FAIL'} ({len(rows)} comparisons)")
    print(f"report: {out / 'report.md'}  (wall time {wall:.0f} s)")
    return 0 if parity_ok else 1
