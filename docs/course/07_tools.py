# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 7. Tools and resources
#
# **What you will learn.** How the two frameworks compare on the same algorithm in this
# project, in code and in time to a given accuracy; what the training curves of the four cells
# look like; what pretrained models and datasets exist beyond it; which papers to read next.
#
# **Prerequisites.** Chapter 5.
#
# **Time.** About 20 minutes.

# %%
import os
from pathlib import Path

import shared  # the project, installed: `pip install -e .` in its checkout

ROOT = Path(shared.__file__).resolve().parent.parent  # the checkout: data, results

# %%
import json
import math
from importlib import metadata

import matplotlib.pyplot as plt
import numpy as np

from shared.run import published
from shared.run.config import TrainConfig

# docs/results.json by default
results = published.load(os.environ.get("ROSETTA_RESULTS"))

# %% [markdown]
# ## 7.1 Frameworks
#
# Both methods exist in both frameworks with the same files, functions and argument names; a test
# enforces the mirror, and a reasoned allow-list names every difference
# (`tests/test_cross_framework.py`). The versions installed here, read without importing them:

# %%
for package in ("torch", "torchvision", "tensorflow", "keras"):
    try:
        print(f"{package:<12} {metadata.version(package)}")
    except metadata.PackageNotFoundError:
        print(f"{package:<12} not installed")

# %% [markdown]
# ### 7.1.1 PyTorch
#
# Eager by default; the training step is ordinary Python (`loss.backward()`,
# `optimizer.step()`), and `torchrun` (gloo on CPU, nccl on CUDA) scales it out, one process per
# device. In one
# process, import torch and torchvision before TensorFlow.
#
# ### 7.1.2 TensorFlow
#
# Keras 3 layers; the training step is one `tf.function` (a `GradientTape` inside), fed by
# `tf.data` and scaled by `tf.distribute` (MirroredStrategy, MultiWorkerMirroredStrategy).
#
# **Time to accuracy.** The four cells {SimCLR, MoCo v2} x {PyTorch, TensorFlow}, each trained by
# `rosetta results` with several seeds, record the kNN monitor's top-1 during training. Each
# seed's `knn_curve` is a list of `[seconds, top-1]` pairs, one per monitored epoch, the seconds
# being that seed's training time summed up to the end of that epoch (`shared/apps/results_cmd.py`,
# `train_row`). The figure draws one line per cell: the mean over its seeds of the seconds and of
# the top-1 at each monitored epoch, with the band from the lowest to the highest seed.

# %%
CELLS = ("simclr/torch", "simclr/tensorflow", "moco/torch", "moco/tensorflow")


def knn_curves(key: str, seeds: list[dict]) -> np.ndarray | None:
    """The seeds' ``knn_curve`` of entry ``key``: an (S, E, 2) array of
    [seconds, top-1] at the E monitored epochs of each of the S seeds; None when no seed
    has one."""
    monitored = [seed for seed in seeds if seed.get("knn_curve")]
    if not monitored:
        return None
    for seed in monitored:
        if any(
            not isinstance(p, (list, tuple)) or len(p) != 2 for p in seed["knn_curve"]
        ):
            raise ValueError(
                f"{key}: seed {seed.get('seed')}: knn_curve: expected [seconds, top-1] "
                f"pairs, got {seed['knn_curve'][:2]}"
            )
    curves = [seed["knn_curve"] for seed in monitored]
    if len({len(c) for c in curves}) != 1:
        raise ValueError(
            f"{key}: knn_curve: expected the same monitored epochs for every seed, got "
            f"lengths {[len(c) for c in curves]}"
        )
    return np.array(curves, dtype=float)


plotted = {}
for key in CELLS:
    curves = knn_curves(key, results.get("entries", {}).get(key, {}).get("seeds", []))
    if curves is None:
        print(
            f"{key}: kNN curve not in the results file yet (entry {key}, seeds' "
            "knn_curve)"
        )
    else:
        plotted[key] = curves
if plotted:
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for key, curves in plotted.items():
        secs, acc = curves[..., 0].mean(0), 100 * curves[..., 1]
        (line,) = ax.plot(
            secs, acc.mean(0), "o-", ms=3, label=f"{key} ({len(curves)} seeds)"
        )
        ax.fill_between(secs, acc.min(0), acc.max(0), color=line.get_color(), alpha=0.2)
    ax.set_xlabel("training wall time (s), summed over the epochs so far")
    ax.set_ylabel("kNN top-1 on the test split (%)")
    ax.legend(fontsize=8)
    ax.set_title(
        "kNN against training time: mean over seeds, band lowest to highest seed",
        fontsize=9,
    )
    plt.show()
    for key in plotted:
        print(
            f"{key:<18} kNN (chosen k) {published.quote(results, key, 'knn_top1')}, "
            f"training {published.quote(results, key, 'train_wall_s', pct=False)} s"
        )

# %% [markdown]
# **The loss curves of the same runs**, one per seed, each against its chance level and its
# orthogonal floor at the training settings (chapter 4.4): $\log(2N - 1)$ and
# $\log(1 + (2N - 2) e^{-1/\tau})$ for SimCLR's NT-Xent, $\log(K + 1)$ and
# $\log(1 + K e^{-1/\tau})$ for MoCo's InfoNCE.


# %%
def levels(method: str) -> tuple[float, float]:
    """(chance, orthogonal floor) of a method at its training defaults."""
    c = TrainConfig(method=method).resolve("torch")
    if method == "simclr":
        return math.log(2 * c.batch_size - 1), math.log1p(
            (2 * c.batch_size - 2) * math.exp(-1 / c.temperature)
        )
    return math.log(c.queue_size + 1), math.log1p(
        c.queue_size * math.exp(-1 / c.temperature)
    )


curves = {}
for key in CELLS:
    seeds = results.get("entries", {}).get(key, {}).get("seeds", [])
    found = [s["loss_curve"] for s in seeds if s.get("loss_curve")]
    if found:
        curves[key] = found
    else:
        print(
            f"{key}: loss curves not in the results file yet (entry {key}, loss_curve)"
        )
if curves:
    fig, axes = plt.subplots(
        1, len(curves), figsize=(3.2 * len(curves), 3.4), squeeze=False,
        layout="constrained",
    )
    for ax, (key, found) in zip(axes[0], curves.items()):
        chance, floor = levels(key.split("/")[0])
        for i, curve in enumerate(found):
            ax.plot(range(1, len(curve) + 1), curve, lw=1, label=f"seed {i}")
        ax.axhline(chance, color="k", ls=":", label=f"chance {chance:.2f}")
        ax.axhline(floor, color="k", ls="--", lw=0.8, label=f"orthogonal {floor:.2f}")
        ax.set_xlabel("epoch")
        ax.set_title(key, fontsize=9)
        corner = "center right" if key.startswith("simclr") else "lower left"
        ax.legend(fontsize=7, loc=corner)  # clear of the curves and the chance line
    fig.suptitle("training loss per epoch (results file)")
    plt.show()

# %% [markdown]
# **The same runs in one picture**, as `rosetta results` draws it (`docs/matrix_curves.png`):
# the loss per epoch and the kNN against training time of the four cells, 3 seeds each. It is
# the committed figure, shown as it is, so it matches the committed results file.

# %%
matrix_curves = ROOT / "docs" / "matrix_curves.png"
try:
    from IPython.display import Image, display

    display(Image(filename=str(matrix_curves)))
except ImportError:  # plain Python without IPython: draw the file with matplotlib
    fig, ax = plt.subplots(figsize=(10, 6))
    ax.imshow(plt.imread(matrix_curves))
    ax.set_axis_off()
    plt.show()

# %% [markdown]
# One training step of each cell, from the committed CPU benchmark (`benchmarks/results`, B5: the
# small CNN at batch 64, both cores), for scale:

# %%
bench = ROOT / "benchmarks" / "results" / "bench_cpu.json"
b5 = json.loads(bench.read_text()).get("B5", {}) if bench.exists() else {}
timed = [key for key in CELLS if key in b5]
for key in timed:
    print(
        f"{key:<18} {1000 * b5[key]['median_s']:.0f} ms per step (median of "
        f"{b5[key]['n']})"
    )
if timed:
    fig, ax = plt.subplots(figsize=(6, 2.6))
    median = [1000 * b5[k]["median_s"] for k in timed]
    spread = [
        [1000 * (b5[k]["median_s"] - b5[k]["q1_s"]) for k in timed],
        [1000 * (b5[k]["q3_s"] - b5[k]["median_s"]) for k in timed],
    ]
    ax.barh(
        timed,
        median,
        xerr=spread,
        color=["tab:red" if "torch" in k else "tab:orange" for k in timed],
    )
    ax.set_xlabel("ms per training step (median, quartiles)")
    ax.set_title(
        "one step, small CNN, batch 64, 2 CPU cores (benchmark B5)", fontsize=9
    )
    plt.show()
else:
    print(f"{bench}: no committed B5 benchmark")

# %% [markdown]
# ## 7.2 Pretrained model zoos, and bringing the official weights
#
# This project downloads nothing at run time and ships no pretrained weights. The official MoCo
# repository (facebookresearch/moco) and SimCLR repository (google-research/simclr) publish
# ImageNet checkpoints; solo-learn and lightly publish checkpoints and training recipes for many
# methods. `rosetta port` moves this project's own runs between the frameworks, and
# `rosetta import` turns an official checkpoint you have downloaded into a run of either one:
#
# ```bash
# rosetta import moco_v2_800ep_pretrain.pth.tar --format moco --to tensorflow --out runs/moco-official
# rosetta import r50_1x_sk0/model.ckpt-250228 --format simclr-tf1 --to torch --out runs/simclr-official
# python -m tf_impl eval --run-dir runs/moco-official   # an ordinary run: eval, finetune, port
# ```
#
# What it proves: every conv, BN and dense layer's output, and h and z, computed by the target
# run and by an independent forward of the checkpoint (torchvision's ResNet-50 for MoCo, a
# `tf.nn` transcription of SimCLR's `resnet.py` for SimCLR) on one fixed batch, in float32 and
# float64, within the tolerance table's `param` row (rtol / atol: float64 1e-12 / 1e-13, float32
# 1e-4 / 1e-5, atol scaled by the largest source value). So far this is proven on checkpoints
# the tests write in the official layouts from random weights, not on a downloaded one. The
# report (`import_report.md` in the run) names the first layer over it, and then no run is
# written. SimCLR's ResNet-50 1x checkpoints need the encoder `resnet50_samepool` (the other
# released depths, widths and selective kernels: `simclr_r<depth>_<width>x_sk<0|1>`, and
# `--weights ema` reads a checkpoint's EMA copy); its stem max-pool pads as
# TensorFlow's "SAME" does, one pixel after and none before on even sizes (112 px after the
# stride-2 stem), where torchvision pads one on each
# side (a row of the framework-differences catalogue). One head layer, SimCLR's last (its
# BatchNorm folded into a Dense), is exact at inference only, and each checkpoint expects its own
# inputs (MoCo: ImageNet-normalised; SimCLR: RGB in
# [0, 1]); `eval` feeds the project's own pipeline, which does not apply MoCo's normalisation.
# See `docs/import.md`.
#
# When your own port of a model from one framework to the other disagrees, `rosetta localise`
# finds where: give it a function that builds each model, and it pairs their layers, copies the
# weights across, and names the first layer and quantity (forward output, gradients, BatchNorm
# statistics, one optimiser step) over the tolerance, with the catalogue row that explains it;
# `--steps 20` follows training too. See `docs/localise.md`.
#
# ```bash
# rosetta localise --torch my_net.py:build --keras my_keras_net.py:build \
#     --input-shape 8,3,32,32
# ```
#
# ## 7.3 Datasets
#
# `--dataset embedded` (the default, no download), `cifar10`, `cifar100`, `stl10` (with
# `--download` once, through torchvision or tfds), or `folder:PATH` for any folder of images.
# STL-10's 100,000-image unlabelled split (`--train-split unlabeled`) is made for
# self-supervised pretraining.
#
# ## 7.4 Papers
#
# Hadsell, Chopra and LeCun 2006 (the contrastive loss); Wu et al. 2018 (instance
# discrimination); van den Oord et al. 2018 (CPC, InfoNCE); He et al. 2020 (MoCo) and Chen et al.
# 2020 (MoCo v2, arXiv:2003.04297); Chen et al. 2020 (SimCLR); Grill et al. 2020 (BYOL); Chen and
# He 2021 (SimSiam); Zbontar et al. 2021 (Barlow Twins); Caron et al. 2021 (DINO); Wang and Liu
# 2021 (*Understanding the Behaviour of Contrastive Loss*, the temperature).
#
# Next: [chapter 8, where the field is going](08_trends.md).
