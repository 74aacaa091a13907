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
# # Chapter 9. Frequently asked questions
#
# **What you will learn.** Short answers, from this project's code and measurements, to the
# questions learners ask most: which encoder, which loss and temperature, how to build better
# pairs, what compute it needs, and whether it helps when labels are few.
#
# **Prerequisites.** Chapters 2 to 5.
#
# **Time.** About 20 minutes.

# %%
import os
from pathlib import Path

import shared  # the project, installed: `pip install -e .` in its checkout

ROOT = Path(shared.__file__).resolve().parent.parent  # the checkout: data, results

# %%
import matplotlib.pyplot as plt
import numpy as np

from shared.oracle import worked_examples as W
from shared.run import data, published

# docs/results.json by default
results = published.load(os.environ.get("ROSETTA_RESULTS"))

# %% [markdown]
# ## 9.1 Which encoder?
#
# The papers use ResNet-50 on ImageNet and a CIFAR-style ResNet-18 on small images. On two CPU
# cores this project defaults to a small CNN so that a run finishes in minutes;
# `--encoder resnet18_cifar` is there for GPUs.
#
# ## 9.2 Which loss?
#
# NT-Xent needs large batches for many negatives; InfoNCE with a queue does not. The
# temperature matters most (chapter 4.3.2): in worked example (d) the hard negative's share of
# the push on the negatives is

# %%
for tau, row in W.example_d().values["rows"].items():
    print(f"tau = {tau:<5} {100 * row['hard_share']:5.1f} %")

# %% [markdown]
# Measured: the sweeps of `rosetta results` train one seed at each value of one setting, the
# others at their defaults, and choose by kNN (leave-one-out) on the training split; the test
# split's kNN (chosen k) is drawn beside it. The temperature of both methods and MoCo's queue
# size $K$:

# %%
SWEEPS = (
    ("simclr/torch/temperature", "SimCLR (PyTorch): tau"),
    ("moco/torch/temperature", "MoCo v2 (PyTorch): tau"),
    ("moco/tensorflow/queue_size", "MoCo v2 (TensorFlow): K"),
)
sweeps = results.get("sweeps", {})
found = [(key, title) for key, title in SWEEPS if key in sweeps]
for key, _ in SWEEPS:
    if key not in sweeps:
        print(f"sweep {key}: not in the results file yet (sweeps)")
if found:
    fig, axes = plt.subplots(
        1, len(found), figsize=(3.6 * len(found), 3.2), squeeze=False
    )
    for ax, (key, title) in zip(axes[0], found):
        sweep = sweeps[key]
        values = sorted(sweep["scores"], key=float)
        x = [float(v) for v in values]
        loo = [100 * sweep["scores"][v] for v in values]
        ax.plot(x, loo, "o-", label="kNN (leave-one-out), chooses")
        if "test_knn_top1" in sweep:
            test = [100 * sweep["test_knn_top1"][v] for v in values]
            ax.plot(x, test, "s--", label="kNN (chosen k), test split")
        ax.axvline(float(sweep["default"]), color="0.6", ls=":", label="default")
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(x, values)
        ax.set_xlabel(key.split("/")[-1])
        ax.set_title(title, fontsize=9)
    axes[0][0].set_ylabel("top-1 (%)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("one seed per value (results file, sweeps)", fontsize=10)
    fig.tight_layout()
    plt.show()
    for key, _ in found:
        print(f"{key}: {sweeps[key]['reason']}")

# %% [markdown]
# ## 9.3 Better pairs
#
# Make the augmentations remove the nuisances you want ignored and nothing that carries the
# class, and check that no per-image signal survives both views (chapter 8.2). A mirrored digit
# is not the digit, so SimCLR's horizontal flip would teach the encoder an invariance the digits
# do not have; it is off by default on the embedded data (`shared.run.config.flip_default`;
# the results file's flip sweeps measure it). Some digits and their mirror images:

# %%
ds = data.load_embedded()
picks = [int(np.flatnonzero(ds.train.labels == c)[0]) for c in (2, 3, 4, 5, 7, 9)]
fig, axes = plt.subplots(2, len(picks), figsize=(8, 2.9))
for j, i in enumerate(picks):
    axes[0, j].imshow(ds.train.images[i], interpolation="nearest")
    axes[1, j].imshow(ds.train.images[i][:, ::-1], interpolation="nearest")
    axes[0, j].set_title(str(ds.train.labels[i]))
for ax in axes.flat:
    ax.set_axis_off()
fig.suptitle("top: digits; bottom: what the flip would make of them")
plt.show()
for key in ("simclr/torch/flip", "moco/tensorflow/flip"):
    if key in sweeps:
        on, off = (100 * sweeps[key]["scores"][v] for v in ("True", "False"))
        print(
            f"{key}: kNN (leave-one-out) {off:.1f} % without the flip, {on:.1f} % with "
            "it"
        )

# %% [markdown]
# ## 9.4 Compute
#
# Not cheap, whatever the article says ([erratum 5](../errata.md)): each step encodes two views
# and compares all pairs, and the schedules are long. Chapter 7 plots kNN against training time
# for each cell and the time of one step.
#
# ## 9.5 Few labels
#
# Pretrain without labels, then use a fraction of them: fine-tune the SimCLR encoder with a
# linear head, or train the same network from scratch on the same labelled images, each arm's
# budget chosen by cross-validation on those labels alone; a linear probe on the frozen features
# is the third line. The results file holds one entry per label fraction
# (`finetune/simclr/torch/<fraction>`, the fraction written as `rosetta results` writes it:
# `0.01`, `0.1`, `1`):

# %%
FRACTIONS = (0.01, 0.1, 1.0)
ARMS = (
    ("finetune_top1", "fine-tuned SimCLR encoder"),
    ("scratch_top1", "from scratch"),
    ("linear_top1", "linear probe, frozen"),
)
points = {metric: [] for metric, _ in ARMS}
for fraction in FRACTIONS:
    key = f"finetune/simclr/torch/{fraction:g}"
    for metric, label in ARMS:
        try:
            mean, std, n = published.stat(results, key, metric)
        except KeyError:
            print(f"{key}: {metric} not in the results file yet")
            continue
        points[metric].append((fraction, mean, std or 0.0))
        print(f"{key:<26} {label:<28} {published.quote(results, key, metric)}")
if any(points.values()):
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for metric, label in ARMS:
        if points[metric]:
            x, y, e = np.array(points[metric]).T
            ax.errorbar(x, 100 * y, yerr=100 * e, marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("fraction of the training labels used")
    ax.set_ylabel("test top-1 (%)")
    ax.legend(fontsize=8)
    ax.set_title(
        "accuracy against the label fraction (mean and std over seeds)", fontsize=9
    )
    plt.show()

# %% [markdown]
# What to read in it: how far the pretrained encoder (fine-tuned, or frozen under a linear probe)
# is above training from scratch at each fraction. Pretraining pays where labels are few; the gap
# closes as labels grow. The cell prints each gap beside the seeds' spread (a gap smaller than
# the spread is a tie).

# %%
for fraction in FRACTIONS:
    key = f"finetune/simclr/torch/{fraction:g}"
    try:
        tuned, s_tuned, _ = published.stat(results, key, "finetune_top1")
        scratch, s_scratch, _ = published.stat(results, key, "scratch_top1")
    except KeyError:
        continue
    gap, spread = 100 * (tuned - scratch), 100 * max(s_tuned or 0.0, s_scratch or 0.0)
    verdict = "pretraining ahead" if gap > 0 else "pretraining behind"
    verdict = "a tie" if abs(gap) <= spread else verdict
    print(
        f"{fraction:>5g} of the labels: fine-tuned minus from scratch {gap:+.1f} "
        f"points (spread {spread:.1f}): {verdict}"
    )

# %% [markdown]
# This is the end of the course. The reference pages go further: `docs/side_by_side.md` puts each
# concept in PyTorch and TensorFlow side by side, `docs/errata.md` corrects the article and runs
# the broken and the fixed code, `docs/framework_differences.md` lists every difference between
# the frameworks with its measurement.
#
# Back to [chapter 1](01_background.md).
