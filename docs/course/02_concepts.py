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
# **What you will learn.** What a positive pair and a negative are; why the loss is a
# classification among candidates; how contrastive learning differs from supervised and
# classical unsupervised learning; what the embedded dataset of this project looks like.
#
# **Prerequisites.** Chapter 1; NumPy; the softmax and the cross-entropy.
#
# **Time.** About 20 minutes.

# %%
import os
from pathlib import Path

import shared  # the project, installed: `pip install -e .` in its checkout

ROOT = Path(shared.__file__).resolve().parent.parent  # the checkout: data, results

# %%
import json

import matplotlib.pyplot as plt
import numpy as np
import torch

from shared.oracle import losses as oracle
from shared.run import data, evaluation, published
from shared.run.config import TrainConfig
from torch_impl.augment import BatchAugment
from torch_impl.simclr import SimCLR

# docs/results.json by default
results = published.load(os.environ.get("ROSETTA_RESULTS"))
simclr = TrainConfig(method="simclr").resolve("torch")  # the defaults training uses
moco = TrainConfig(method="moco").resolve("tensorflow")

# %% [markdown]
# ## 2.1 What contrastive learning is
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
print(
    f"MoCo, K = {moco.queue_size} queue keys: K + 1 = {moco.queue_size + 1} "
    "candidates, "
    f"chance log(K + 1) = {np.log(moco.queue_size + 1):.4f}"
)

# %% [markdown]
# ## 2.2 Contrastive, supervised and unsupervised learning
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
print(
    f"{len(ds.train)} training and {len(ds.test)} test images, "
    f"{ds.train.images.shape[1:]} uint8"
)
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
    """A number from the results file with its source, or a line: it is missing."""
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
    print(f"{label:<32} kNN (chosen k): {quoted(key, 'knn_top1')}")
    print(f"{'':<32} linear probe:   {quoted(key, 'linear_top1')}")

# %% [markdown]
# > **Which number is which.** The same encoder can be quoted at several kNN accuracies, each
# > a different measurement. The course names each number by one of these four labels:
# >
# > - **kNN (chosen k)**: top-1 on the *test* split, each test image classified by its nearest
# >   training images, at the k that leave-one-out on the training split chooses. The headline
# >   number (the README's table, `knn_top1` in the results file), a mean over seeds.
# > - **kNN (leave-one-out)**: top-1 on the *training* split, each training image classified by
# >   the others (`knn_loo`). It chooses k and never sees the test split.
# > - **kNN (last-epoch monitor)**: the kNN (chosen k) of one run after its last epoch, as its
# >   training log records it: one seed, where the headline averages several.
# > - **kNN (t-SNE subset)**: leave-one-out among the test images alone, on the 50 stored
# >   directions of chapter 6's map, k = 20. It describes that map, not the protocol.
#
# The four numbers of the SimCLR encoder trained in PyTorch, each with its label:

# %%
artifact = np.load(
    ROOT / "docs" / "course" / "artifacts" / "simclr_torch_test_features.npz"
)
meta = json.loads(str(artifact["meta"]))
subset = evaluation.knn_loo(
    artifact["after"].astype(np.float64), artifact["labels"], ks=(20,)
)
print(f"kNN (chosen k):           {quoted('simclr/torch', 'knn_top1')}")
print(f"kNN (leave-one-out):      {quoted('simclr/torch', 'knn_loo')}")
print(
    f"kNN (last-epoch monitor): {100 * meta['knn_top1_last_epoch']:.1f} % "
    f"(chapter 6's artefact: an earlier bf16 run, seed 0)"
)
print(f"kNN (t-SNE subset):       {100 * subset[20]:.1f} % (chapter 6's map)")

# %% [markdown]
# ## 2.3 The core idea
#
# Pull the two views of one image together, push views of different images apart, and do it
# with a loss whose minimum needs both: the softmax of section 2.3.3.
#
# ### 2.3.1 Positive pairs
#
# A positive pair is two random augmentations of the same image, never an image with itself
# (a common mistake: [erratum 2](../errata.md)). The augmentation decides what the
# encoder learns to ignore: a random resized crop, colour jitter and grayscale, built from one
# spec in both frameworks (`shared/oracle/augment_spec.py`). Chapter 3 shows the views.

# %%
print("the augmentation training uses:", simclr.augment_kwargs())

# %% [markdown]
# The figure makes one SimCLR step's candidates for one *anchor*: a view of a 3. Its *positive*
# is another view of the same image; its *negatives* are views of the other images in the batch,
# one of them a 3 as well (a false negative: nothing tells the loss it is the same digit).

# %%
torch.manual_seed(0)
aug = BatchAugment(**simclr.augment_kwargs())
anchor = int(np.flatnonzero(ds.train.labels == 3)[0])
others = [
    int(np.flatnonzero(ds.train.labels == c)[j])
    for c, j in ((3, 1), (8, 0), (1, 0), (5, 0))
]
picks = [anchor, *others]
batch = torch.from_numpy(ds.train.images[picks]).permute(0, 3, 1, 2)
v1, v2 = aug(batch), aug(batch)  # two views of each image
tiles = [
    (ds.train.images[anchor], "the image", "0.4"),
    (v1[0], "anchor: view 1", "tab:blue"),
    (v2[0], "positive: view 2", "tab:green"),
] + [
    (v2[i], f"negative ({ds.train.labels[p]})", "tab:red")
    for i, p in enumerate(picks)
    if i
]
fig, axes = plt.subplots(1, len(tiles), figsize=(1.5 * len(tiles), 2.0))
for ax, (img, title, color) in zip(axes, tiles):
    img = img.permute(1, 2, 0).numpy() if torch.is_tensor(img) else img
    ax.imshow(img, interpolation="nearest")
    ax.set_title(title, fontsize=8, color=color)
    ax.set_xticks([]), ax.set_yticks([])
    for side in ax.spines.values():
        side.set_color(color)
        side.set_linewidth(3)
fig.suptitle(
    "One anchor, its positive and its negatives (views of other images)", fontsize=10
)
plt.show()

# %% [markdown]
# SimCLR also flips each view horizontally with probability 0.5. On the embedded digits the flip
# is off by default, since a mirrored 2 is not a 2 (chapter 9.3), and on for natural images
# (`--flip`, `--no-flip`).
#
# ### 2.3.2 Negative pairs
#
# SimCLR takes its negatives from the batch: $2N - 2$ per anchor. MoCo decouples their number
# from the batch with a queue of keys from earlier batches: $K$ negatives per query (65,536 in the
# paper). Negatives of the same class are inevitable (*false negatives*); with 10 balanced classes
# about a tenth of them are.

# %%
print(f"SimCLR: 2N - 2 = {2 * n - 2} negatives per anchor at N = {n}")
print(f"MoCo:   K = {moco.queue_size} negatives per query, whatever the batch")
share = np.bincount(ds.train.labels) / len(ds.train)
print(f"share of negatives of the anchor's own class: {float(np.sum(share**2)):.3f}")

# %% [markdown]
# ### 2.3.3 The contrastive loss
#
# Both methods use the softmax cross-entropy over similarities divided by a temperature $\tau$,
# with $s$ the cosine similarity:
#
# $$s(u, v) = \frac{u^\top v}{\lVert u \rVert\,\lVert v \rVert}, \qquad
#   \ell = -\log \frac{\exp(s_{\text{pos}} / \tau)}{\sum_{c \in \text{candidates}} \exp(s_c / \tau)}.$$
#
# Raw cosines in the ratio, as the article quotes them, are not a probability: a cosine can be negative
# (erratum 3; you fix that formula in chapter 4's exercise). At chance (a collapsed encoder) the
# loss is $\log(\#\text{candidates})$. Chapter 4 derives both losses and shows what $\tau$ does.
#
# **Collapse at initialisation, in eval mode.** An untrained encoder whose BatchNorm layers are
# in eval mode (running statistics still 0 and 1, so each BN is the identity) maps every image
# to nearly the same direction: its ReLU features share one positive direction, all cosines are
# close to 1, every candidate looks like the positive, and the loss is at chance. The figure
# shows that matrix for two views of eight test images (chapter 6's artefact, computed in eval
# mode), beside the trained one. Training runs in train mode, where each BatchNorm normalises
# over the batch and spreads the projections apart, so the first loss is already somewhat below
# chance (the cell after the figure computes it): what training has to learn is *which*
# candidate is the positive.

# %%
fig, axes = plt.subplots(
    1, 3, figsize=(12, 3.6), gridspec_kw={"width_ratios": [1, 1, 1.3]}
)
off = ~np.eye(16, dtype=bool)
for ax, name, title in (
    (axes[0], "before", "untrained"),
    (axes[1], "after", "trained, 60 epochs"),
):
    za, zb = artifact[f"pairs_{name}"].astype(np.float64)
    terms = oracle.nt_xent_terms(za, zb, meta["temperature"])
    im = ax.imshow(terms.sim, vmin=-1, vmax=1, cmap="RdBu_r")
    chance = np.log(2 * len(za) - 1)
    ax.set_title(f"{title}\nNT-Xent {terms.loss:.2f} (chance {chance:.2f})", fontsize=9)
    ax.set_xticks([]), ax.set_yticks([])
    axes[2].hist(terms.sim[off], bins=30, range=(-1, 1), alpha=0.6, label=title)
    print(
        f"{title:<19} mean cosine between different views: {terms.sim[off].mean():.3f}"
    )
fig.colorbar(im, ax=axes[:2], shrink=0.8)
axes[2].set_xlabel("cosine similarity of two different views")
axes[2].legend(fontsize=8)
axes[2].set_title(
    "the untrained encoder's cosines crowd near 1 (eval mode)", fontsize=9
)
plt.show()

# %%
torch.manual_seed(0)
untrained = SimCLR()  # train mode: each BatchNorm normalises over the batch
eight = torch.from_numpy(ds.test.images[:8]).permute(0, 3, 1, 2)
aug = BatchAugment(**TrainConfig(method="simclr").resolve("torch").augment_kwargs())
with torch.no_grad():
    z = torch.cat([untrained.net(aug(eight))[1], untrained.net(aug(eight))[1]])
z1, z2 = z.double().numpy().reshape(2, 8, -1)  # view 1 of the eight, then view 2
terms = oracle.nt_xent_terms(z1, z2, untrained.temperature)
print(
    f"untrained, train mode: mean cosine between different views "
    f"{terms.sim[off].mean():.3f}, NT-Xent {terms.loss:.2f} (chance {np.log(15):.2f})"
)

# %% [markdown]
# Next: [chapter 3, the algorithm step by step](03_algorithm.md).
