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
# # Chapter 2. Core concepts
#
# *Source 000, section 2: 核心概念与联系 (Core concepts and how they connect)*
#
# **What you will learn.** What a positive pair and a negative are; why the loss is a
# classification among candidates; how contrastive learning differs from supervised and
# classical unsupervised learning; what the embedded dataset of this project looks like.
#
# **Prerequisites.** Chapter 1; NumPy; the softmax and the cross-entropy.
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
import matplotlib.pyplot as plt
import numpy as np

from shared.run import data, published
from shared.run.config import TrainConfig

results = published.load(os.environ.get("ROSETTA_RESULTS"))  # docs/results.json by default
simclr = TrainConfig(method="simclr").resolve("torch")  # the defaults training uses
moco = TrainConfig(method="moco").resolve("tensorflow")

# %% [markdown]
# ## 2.1 What contrastive learning is
#
# *Source 000: 对比学习的定义*
#
# An encoder $f$ maps an image $x$ to a representation $h = f(x)$. Contrastive learning builds,
# for each image, a *positive*: another augmented view of the same image. Every other image in
# the batch (or in MoCo's queue) is a *negative*. The loss is a classification: among all
# candidates, pick the positive. With $N$ images per batch SimCLR has $2N$ views, so each anchor
# picks its positive among $2N - 1$ candidates. An encoder that has learnt nothing spreads its
# guess evenly, and the loss is then $\log(2N - 1)$, the *chance level*:

# %%
n = simclr.batch_size
print(f"batch N = {n}: 2N - 1 = {2 * n - 1} candidates per anchor")
print(f"chance level of NT-Xent: log(2N - 1) = {np.log(2 * n - 1):.4f}")
print(f"MoCo, K = {moco.queue_size} queue keys: K + 1 = {moco.queue_size + 1} candidates, "
      f"chance log(K + 1) = {np.log(moco.queue_size + 1):.4f}")

# %% [markdown]
# ## 2.2 Contrastive, supervised and unsupervised learning
#
# *Source 000: 对比学习与监督学习、无监督学习的区别*
#
# Supervised learning fits labels. Classical unsupervised learning models the inputs themselves:
# clustering, density estimation, autoencoders that reconstruct pixels. Contrastive learning is
# *self-supervised*: the labels are made from the data (which views come from the same image),
# and nothing is reconstructed; the encoder only has to keep what tells images apart and
# survives the augmentations.
#
# The data of this course is embedded in the project, so nothing is downloaded:
# scikit-learn's 1,797 real 8x8 handwritten digits, rendered onto 32x32 grey canvases at a
# random size, position, brightness and illumination (`shared/run/data.py`). Position and scale
# vary independently of the class, which makes raw pixels a weak representation:

# %%
ds = data.load_embedded()
print(f"{len(ds.train)} training and {len(ds.test)} test images, {ds.train.images.shape[1:]} uint8")
fig, axes = plt.subplots(3, 10, figsize=(10, 3.2))
for c in range(10):
    for r, i in enumerate(np.flatnonzero(ds.train.labels == c)[:3]):
        axes[r, c].imshow(ds.train.images[i], interpolation="nearest")
        axes[r, c].set_axis_off()
    axes[0, c].set_title(str(c))
fig.suptitle("The embedded dataset: three training images of each class")
plt.show()

# %% [markdown]
# The project's evaluator (`shared/run/evaluation.py`) scores every representation by one
# protocol: weighted kNN with k chosen by leave-one-out on the training split, and a linear probe
# whose regularisation is chosen by cross-validation. The numbers come from the committed results
# file; each is quoted with the entry it comes from and the number of seeds.

# %%
def quoted(key: str, metric: str) -> str:
    """A number from the results file with its source, or a clear line if it is not there."""
    try:
        return published.quote(results, key, metric)
    except KeyError:
        return f"not in the results file yet (entry {key}, {metric})"


rows = [
    ("raw pixels", "raw_pixels"),
    ("random-init small CNN, PyTorch", "random_init/torch"),
    ("SimCLR, PyTorch, no labels", "simclr/torch"),
    ("MoCo v2, TensorFlow, no labels", "moco/tensorflow"),
]
for label, key in rows:
    print(f"{label:<32} kNN top-1:    {quoted(key, 'knn_top1')}")
    print(f"{'':<32} linear probe: {quoted(key, 'linear_top1')}")

# %% [markdown]
# ## 2.3 The core idea
#
# *Source 000: 对比学习的核心思想*
#
# Pull the two views of one image together, push views of different images apart, and do it
# with a loss whose minimum needs both: the softmax of section 2.3.3.
#
# ### 2.3.1 Positive pairs
#
# *Source 000: 正样本对*
#
# A positive pair is two random augmentations of the same image, never an image with itself
# (source 002 gets this wrong: `docs/errata.md`, erratum 2). The augmentation decides what the
# encoder learns to ignore: a random resized crop, colour jitter and grayscale, built from one
# spec in both frameworks (`shared/oracle/augment_spec.py`). Chapter 3 shows the views.

# %%
print("the augmentation training uses:", simclr.augment_kwargs())

# %% [markdown]
# SimCLR also flips each view horizontally with probability 0.5. On the embedded digits the flip
# is off by default, since a mirrored 2 is not a 2 (chapter 9.3), and on for natural images
# (`--flip`, `--no-flip`).
#
# ### 2.3.2 Negative pairs
#
# *Source 000: 负样本对*
#
# SimCLR takes its negatives from the batch: $2N - 2$ per anchor. MoCo decouples their number
# from the batch with a queue of keys from earlier batches: $K$ negatives per query (65,536 in the
# paper). Negatives of the same class are inevitable (*false negatives*); with 10 balanced classes
# about a tenth of them are.

# %%
print(f"SimCLR: 2N - 2 = {2 * n - 2} negatives per anchor at N = {n}")
print(f"MoCo:   K = {moco.queue_size} negatives per query, whatever the batch")
share = np.bincount(ds.train.labels) / len(ds.train)
print(f"share of negatives of the anchor's own class: {float(np.sum(share ** 2)):.3f}")

# %% [markdown]
# ### 2.3.3 The contrastive loss
#
# *Source 000: 对比损失函数*
#
# Both methods use the softmax cross-entropy over similarities divided by a temperature $\tau$,
# with $s$ the cosine similarity:
#
# $$s(u, v) = \frac{u^\top v}{\lVert u \rVert\,\lVert v \rVert}, \qquad
#   \ell = -\log \frac{\exp(s_{\text{pos}} / \tau)}{\sum_{c \in \text{candidates}} \exp(s_c / \tau)}.$$
#
# Raw cosines in the ratio, as in source 002, are not a probability: a cosine can be negative
# (erratum 3; you fix that formula in chapter 4's exercise). At chance (a collapsed encoder) the
# loss is $\log(\#\text{candidates})$. Chapter 4 derives both losses and shows what $\tau$ does.
#
# Next: [chapter 3, the algorithm step by step](03_algorithm.md).
