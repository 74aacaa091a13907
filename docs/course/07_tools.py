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
# *Source 000, section 7: 工具和资源推荐 (Tools and resources)*
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
import sys
from pathlib import Path

# The chapter reads files of the checkout: find its root from wherever the notebook runs.
ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "shared" / "oracle").is_dir())
os.chdir(ROOT)
sys.path.insert(0, str(ROOT))

# %%
import json
import math
from importlib import metadata

import matplotlib.pyplot as plt
import numpy as np

from shared.run import published
from shared.run.config import TrainConfig

results = published.load(os.environ.get("ROSETTA_RESULTS"))  # docs/results.json by default

# %% [markdown]
# ## 7.1 Frameworks
#
# *Source 000: 主流深度学习框架*
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
# *Source 000: PyTorch*
#
# Eager by default; the training step is ordinary Python (`loss.backward()`,
# `optimizer.step()`), DDP through `torchrun` (gloo on CPU, nccl on CUDA) scales it out. In one
# process, import torch and torchvision before TensorFlow.
#
# ### 7.1.2 TensorFlow
#
# *Source 000: TensorFlow*
#
# Keras 3 layers; the training step is one `tf.function` (a `GradientTape` inside), fed by
# `tf.data` and scaled by `tf.distribute` (MirroredStrategy, MultiWorkerMirroredStrategy).
#
# **Time to accuracy.** The four cells {SimCLR, MoCo v2} x {PyTorch, TensorFlow}, each trained by
# `rosetta results` with several seeds, record the kNN monitor's top-1 during training
# (`knn_curve`, every few epochs) and the training wall time (`train_wall_s`). The figure plots
# one against the other, each seed a line, with the time spread evenly over the monitored epochs.

# %%
CELLS = ("simclr/torch", "simclr/tensorflow", "moco/torch", "moco/tensorflow")


def knn_points(seed: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """(seconds, kNN top-1) of one seed's monitor: ``knn_curve`` holds numbers at evenly spaced
    epochs, or (epoch, value) pairs; ``train_wall_s`` is spread over the epochs."""
    curve, wall = seed.get("knn_curve"), seed.get("train_wall_s")
    if not curve or not wall:
        return None
    pairs = np.array([c if isinstance(c, (list, tuple)) else (i + 1, c) for i, c in enumerate(curve)], float)
    last = pairs[-1, 0] if pairs.shape[1] == 2 else len(curve)
    return wall * pairs[:, 0] / last, pairs[:, 1]


plotted = {}
for key in CELLS:
    seeds = results.get("entries", {}).get(key, {}).get("seeds", [])
    points = [p for p in map(knn_points, seeds) if p is not None]
    if points:
        plotted[key] = points
    else:
        print(f"{key}: kNN curve and training time not in the results file yet (entry {key}, knn_curve, train_wall_s)")
if plotted:
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for color, (key, points) in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"], plotted.items()):
        for i, (t, acc) in enumerate(points):
            ax.plot(t, 100 * acc, "o-", color=color, ms=3, alpha=0.8, label=key if i == 0 else None)
    ax.set_xlabel("training wall time (s)")
    ax.set_ylabel("kNN top-1 (%)")
    ax.legend(fontsize=8)
    ax.set_title("kNN against training time, each seed of each cell (results file)", fontsize=9)
    plt.show()
    for key in plotted:
        print(f"{key:<18} final kNN {published.quote(results, key, 'knn_top1')}, "
              f"training {published.quote(results, key, 'train_wall_s', pct=False)} s")

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
        return math.log(2 * c.batch_size - 1), math.log1p((2 * c.batch_size - 2) * math.exp(-1 / c.temperature))
    return math.log(c.queue_size + 1), math.log1p(c.queue_size * math.exp(-1 / c.temperature))


curves = {}
for key in CELLS:
    seeds = results.get("entries", {}).get(key, {}).get("seeds", [])
    found = [s["loss_curve"] for s in seeds if s.get("loss_curve")]
    if found:
        curves[key] = found
    else:
        print(f"{key}: loss curves not in the results file yet (entry {key}, loss_curve)")
if curves:
    fig, axes = plt.subplots(1, len(curves), figsize=(3.2 * len(curves), 3.0), squeeze=False)
    for ax, (key, found) in zip(axes[0], curves.items()):
        chance, floor = levels(key.split("/")[0])
        for i, curve in enumerate(found):
            ax.plot(range(1, len(curve) + 1), curve, lw=1, label=f"seed {i + 1}")
        ax.axhline(chance, color="k", ls=":", label=f"chance {chance:.2f}")
        ax.axhline(floor, color="k", ls="--", lw=0.8, label=f"orthogonal {floor:.2f}")
        ax.set_xlabel("epoch")
        ax.set_title(key, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("training loss per epoch (results file)")
    plt.show()

# %% [markdown]
# One training step of each cell, from the committed CPU benchmark (`benchmarks/results`, B5: the
# small CNN at batch 64, both cores), for scale:

# %%
bench = Path("benchmarks/results/bench_cpu.json")
b5 = json.loads(bench.read_text()).get("B5", {}) if bench.exists() else {}
timed = [key for key in CELLS if key in b5]
for key in timed:
    print(f"{key:<18} {1000 * b5[key]['median_s']:.0f} ms per step (median of {b5[key]['n']})")
if timed:
    fig, ax = plt.subplots(figsize=(6, 2.6))
    median = [1000 * b5[k]["median_s"] for k in timed]
    spread = [[1000 * (b5[k]["median_s"] - b5[k]["q1_s"]) for k in timed], [1000 * (b5[k]["q3_s"] - b5[k]["median_s"]) for k in timed]]
    ax.barh(timed, median, xerr=spread, color=["tab:red" if "torch" in k else "tab:orange" for k in timed])
    ax.set_xlabel("ms per training step (median, quartiles)")
    ax.set_title("one step, small CNN, batch 64, 2 CPU cores (benchmark B5)", fontsize=9)
    plt.show()
else:
    print(f"{bench}: no committed B5 benchmark")

# %% [markdown]
# ## 7.2 Pretrained model zoos (not provided here)
#
# *Source 000: 预训练模型库*
#
# This project downloads nothing at run time and ships no pretrained weights. The official MoCo
# repository (facebookresearch/moco) and SimCLR repository (google-research/simclr) publish
# ImageNet checkpoints; solo-learn and lightly publish checkpoints and training recipes for many
# methods. `rosetta port` moves this project's own runs between the frameworks.
#
# ## 7.3 Datasets
#
# *Source 000: 数据集资源*
#
# `--dataset embedded` (the default, no download), `cifar10`, `cifar100`, `stl10` (with
# `--download` once, through torchvision or tfds), or `folder:PATH` for any folder of images.
# STL-10's 100,000-image unlabelled split (`--train-split unlabeled`) is made for
# self-supervised pretraining.
#
# ## 7.4 Papers
#
# *Source 000: 论文与教程*
#
# Hadsell, Chopra and LeCun 2006 (the contrastive loss); Wu et al. 2018 (instance
# discrimination); van den Oord et al. 2018 (CPC, InfoNCE); He et al. 2020 (MoCo) and Chen et al.
# 2020 (MoCo v2, arXiv:2003.04297); Chen et al. 2020 (SimCLR); Grill et al. 2020 (BYOL); Chen and
# He 2021 (SimSiam); Zbontar et al. 2021 (Barlow Twins); Caron et al. 2021 (DINO); Wang and Liu
# 2021 (*Understanding the Behaviour of Contrastive Loss*, the temperature).
#
# Next: [chapter 8, where the field is going](08_trends.md).
