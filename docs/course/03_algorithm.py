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
# # Chapter 3. The algorithm, step by step
#
# **What you will learn.** The pipeline of both methods in order: data and augmentation, the
# encoder and the projection head, the loss, the parameter update, and the downstream
# evaluation. You will see the views the augmentation makes (with SimCLR's flip on and off), the
# roles of the $2N \times 2N$ similarity matrix, and you will write MoCo's queue yourself.
#
# **Prerequisites.** Chapter 2; NumPy; a first look at PyTorch tensors helps.
#
# **Time.** About 40 minutes with the exercise.

# %%
import os
from pathlib import Path

import shared  # the project, installed: `pip install -e .` in its checkout

ROOT = Path(shared.__file__).resolve().parent.parent  # the checkout: data, results
SHOW_SOLUTIONS = False  # True: show and check the reference solutions

# %%
import inspect
import json

import matplotlib.pyplot as plt
import numpy as np
import torch  # in a process that also uses TensorFlow, PyTorch is imported first

from shared.docgen import exercises
from shared.oracle import losses as oracle
from shared.oracle.optim import warmup_cosine
from shared.run import data
from shared.run.config import TrainConfig
from torch_impl.augment import BatchAugment
from torch_impl.losses import nt_xent
from torch_impl.simclr import SimCLR

torch.manual_seed(0)
# what `python -m torch_impl train` runs
cfg = TrainConfig(method="simclr").resolve("torch")
ds = data.load_embedded()

# %% [markdown]
# ## 3.1 Data
#
# The outline's first step is to augment the raw data into different views. Training runs
# `BatchAugment` (`torch_impl/augment.py`, and the same class in `tf_impl/augment.py`): each image
# gets its own random crop box, jitter factors and order, and grayscale coin, but the whole batch
# is processed by batched tensor operations. Its two steps are `sample` (draw the parameters) and
# `apply` (a pure function of images and parameters), which is how the two frameworks are shown
# to make the same views from the same draws (`tests/test_augment_parity.py`).

# %%
print(inspect.getsource(BatchAugment.__call__))

# %% [markdown]
# Below, four training images (left) and three views of each, first with the flip off (the
# default on the digits), then with SimCLR's flip on: a mirrored 3 or 7 is not a digit any more.

# %%
picks = [int(np.flatnonzero(ds.train.labels == c)[0]) for c in (2, 3, 5, 7)]
# uint8 (4, 3, 32, 32)
images = torch.from_numpy(ds.train.images[picks]).permute(0, 3, 1, 2)
kw = cfg.augment_kwargs()
groups = {
    "flip off": BatchAugment(**{**kw, "flip": False}),
    "flip on": BatchAugment(**{**kw, "flip": True}),
}
views = {name: [aug(images) for _ in range(3)] for name, aug in groups.items()}

fig, axes = plt.subplots(len(picks), 7, figsize=(8.4, 5.0))
for r in range(len(picks)):
    axes[r, 0].imshow(ds.train.images[picks[r]], interpolation="nearest")
    for g, name in enumerate(groups):
        for v in range(3):
            axes[r, 1 + 3 * g + v].imshow(
                views[name][v][r].permute(1, 2, 0).numpy(), interpolation="nearest"
            )
for c, title in enumerate(
    ["original"] + [f"{n}, view {v + 1}" for n in groups for v in range(3)]
):
    axes[0, c].set_title(title, fontsize=8)
for ax in axes.flat:
    ax.set_axis_off()
fig.suptitle("BatchAugment: an image and its views, SimCLR's flip off and on")
plt.show()

p = groups["flip on"].sample(10_000, 32, 32)
print(
    f"flip on: {p['flip'].float().mean():.3f} of 10,000 views mirrored; "
    f"jitter applied to {p['jitter'].float().mean():.3f}, grayscale to "
    f"{p['gray'].float().mean():.3f}"
)

# %% [markdown]
# ## 3.2 The model
#
# Encoder, projection head, loss: `EncoderWithHead` in `torch_impl/models.py` (and
# `tf_impl/models.py`) returns $(h, z)$; the method classes `SimCLR` and `MoCo` add the loss and
# the training step.
#
# ### 3.2.1 The encoder
#
# `SmallCNN`, the default: four 3x3 conv-BN-ReLU blocks, a 2x2 max-pool after each of the first
# three, then global average pooling to 256 features. A CIFAR-style ResNet-18 is
# `--encoder resnet18_cifar`. Both frameworks use the same canonical weight names, so weights
# port between them (`rosetta port`, `shared/parity/weights.py`).
#
# ### 3.2.2 The projection head
#
# `ProjectionHead`: Linear (no bias), BN, ReLU, Linear, from $h$ to $z$. The loss sees $z$;
# downstream tasks use $h$, because the head learns to discard what the augmentations change
# (SimCLR, section 4.2 of the paper).

# %%
model = SimCLR(**cfg.model_kwargs())
count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
print(
    f"encoder f: {count(model.net.encoder):,} parameters; head g: "
    f"{count(model.net.head):,}"
)
x1, x2 = (
    BatchAugment(**kw)(torch.from_numpy(ds.train.images[:8]).permute(0, 3, 1, 2))
    for _ in range(2)
)
h1, h2, z1, z2 = model(x1, x2)
print(f"x1 {tuple(x1.shape)} -> h1 {tuple(h1.shape)} -> z1 {tuple(z1.shape)}")

# %% [markdown]
# ### 3.2.3 The loss in the model
#
# `nt_xent(z1, z2, temperature)` (SimCLR) and `info_nce(q, k, queue, temperature)` (MoCo) live
# in `torch_impl/losses.py` and `tf_impl/losses.py`; both are checked against the NumPy oracle
# `shared/oracle/losses.py` in float64 and float32 (`tests/test_cross_framework.py`). Here the
# untrained model's loss on eight pairs, by PyTorch and by the oracle, beside the chance level
# $\log(2N - 1)$ of an encoder that cannot tell any candidate from another.

# %%
with torch.no_grad():
    ours = float(nt_xent(z1, z2, cfg.temperature))
ref = oracle.nt_xent(
    z1.detach().double().numpy(), z2.detach().double().numpy(), cfg.temperature
)
print(
    f"torch nt_xent {ours:.6f}, oracle {ref:.6f} (float32 against float64: "
    f"{abs(ours - ref):.1e} apart); chance log(2N - 1) = {np.log(2 * len(z1) - 1):.4f}"
)
assert abs(ours - ref) <= 1e-5 * ref  # the float32 rtol of shared/parity/tolerances.py

# %% [markdown]
# ## 3.3 Training
#
# One step: two views of a batch, the encoder and head on both, the loss, the gradients, one
# optimiser step; for MoCo also the momentum update of the key encoder and the enqueue. The step
# lives in the model (`SimCLR.train_step`, `MoCo.train_step`), the loop in `torch_impl/train.py`
# and `tf_impl/train.py`. Chapter 5 runs it.
#
# ### 3.3.1 Building the pairs
#
# A batch of $N$ images becomes two batches of views, $x_1$ and $x_2$ ($N$ each). Stack them:
# row $i$ and row $i + N$ are the two views of image $i$, a positive pair; every other row is a
# negative for both. The figure shows the roles in the $2N \times 2N$ similarity matrix for
# $N = 4$: the diagonal (an anchor with itself) is excluded from the loss.

# %%
n = 4
roles = np.zeros((2 * n, 2 * n))  # 0 negative, 1 positive, 2 self (excluded)
positive = (np.arange(2 * n) + n) % (2 * n)
roles[np.arange(2 * n), positive] = 1
np.fill_diagonal(roles, 2)
fig, ax = plt.subplots(figsize=(4.2, 4.2))
ax.imshow(
    roles, cmap=plt.matplotlib.colors.ListedColormap(["white", "tab:green", "0.6"])
)
labels = [f"x{i}/v1" for i in range(n)] + [f"x{i}/v2" for i in range(n)]
ax.set_xticks(range(2 * n), labels, rotation=90, fontsize=8)
ax.set_yticks(range(2 * n), labels, fontsize=8)
ax.set_title("green: positive, grey: self (excluded), white: negative", fontsize=9)
plt.show()
print(f"each anchor: 1 positive, {int((roles[0] == 0).sum())} negatives = 2N - 2")

# %% [markdown]
# The same matrix filled by a real encoder: the cosine similarities of the projections $z$ of
# two views of eight test images (digits 0 to 7), from an untrained model and from one trained
# for 60 epochs, both in eval mode (chapter 2 says why the untrained one is a solid block). They
# come from the small committed artefact of that run that chapter 6 describes. The titles give the loss of each batch (the oracle's NT-Xent) and how
# often an anchor's most similar candidate is its positive.

# %%
stored = np.load(ROOT / "docs/course/artifacts/simclr_torch_test_features.npz")
meta = json.loads(str(stored["meta"]))
fig, axes = plt.subplots(1, 2, figsize=(9.5, 4.2))
for ax, name in zip(axes, ("before", "after")):
    za, zb = stored[f"pairs_{name}"].astype(np.float64)
    terms = oracle.nt_xent_terms(za, zb, meta["temperature"])
    im = ax.imshow(terms.sim, vmin=-1, vmax=1, cmap="RdBu_r")
    hits = np.mean(np.argmax(terms.masked_logits, axis=1) == terms.positive)
    ax.set_title(
        f"{'untrained, eval mode' if name == 'before' else 'trained, 60 epochs'}"
        "\nNT-Xent "
        f"{terms.loss:.3f}, "
        f"positive ranked first for {100 * hits:.0f} % of anchors",
        fontsize=8,
    )
    ax.set_xticks(range(16), [f"{d}" for d in meta["pairs_labels"]] * 2, fontsize=7)
    ax.set_yticks(range(16), [f"{d}" for d in meta["pairs_labels"]] * 2, fontsize=7)
fig.colorbar(im, ax=axes, shrink=0.8)
fig.suptitle(
    "The similarity matrix of a batch: view 1 of eight digits, then view 2 (chance "
    f"{np.log(15):.3f})"
)
plt.show()

# %% [markdown]
# ### 3.3.2 Computing the loss
#
# For each of the $2N$ anchors: the softmax over its row (the self-similarity excluded), and
# minus the log of the probability it gives the positive. The loss is the mean over all $2N$
# anchors; the official SimCLR TensorFlow code reports twice this value (the sum of the two
# directions, each averaged over $N$; `shared.oracle.losses.CONVENTIONS`). Chapter 4 does it
# with numbers you can check by hand.
#
# ### 3.3.3 The parameter update
#
# SimCLR uses LARS (a layer-wise trust ratio, `torch_impl/optim.py`, `tf_impl/optim.py`; the NumPy
# formula in `shared/oracle/optim.py`) with a linear warm-up and a cosine decay; MoCo uses SGD with
# momentum. TensorFlow gets the project's own SGD, LARS and Adam, so that the update formulas are
# torch's (`docs/framework_differences.md` lists why Keras's differ). Both frameworks call one
# schedule function, `warmup_cosine`, every step:

# %%
steps_per_epoch = len(ds.train) // cfg.batch_size
total = cfg.epochs * steps_per_epoch
lr = [
    cfg.lr * warmup_cosine(s, cfg.warmup_epochs * steps_per_epoch, total)
    for s in range(total)
]
fig, ax = plt.subplots(figsize=(6, 2.4))
ax.plot(np.arange(total) / steps_per_epoch, lr)
ax.set_xlabel("epoch")
ax.set_ylabel("learning rate")
ax.set_title(
    f"SimCLR's schedule: {cfg.optimizer}, base lr {cfg.lr:.2f}, {cfg.warmup_epochs} "
    "warm-up epochs",
    fontsize=9,
)
plt.show()

# %% [markdown]
# ## 3.4 Downstream evaluation and fine-tuning
#
# Three ways to use the trained encoder, all in `torch_impl/evaluate.py` and
# `tf_impl/evaluate.py` with the one evaluator of `shared/run/evaluation.py`: weighted kNN on
# frozen features, a linear probe (logistic regression) on frozen features, and fine-tuning the
# whole encoder on a labelled fraction (`python -m torch_impl finetune --run-dir DIR --fraction
# 0.1`). The protocol chooses every setting on the training split and applies the same rule to
# the baselines. Chapters 6 and 9 plot the results.

# %% [markdown]
# ## Exercise 3: MoCo's queue, a ring buffer
#
# MoCo keeps the keys of the last batches in a queue of $K$ rows and a pointer `ptr` to the
# oldest row. Enqueueing a batch of $B$ keys writes key $i$ to row $(\text{ptr} + i) \bmod K$, in
# order, then sets $\text{ptr} \leftarrow (\text{ptr} + B) \bmod K$. It must hold for any $B$: $B$
# need not divide $K$, and with $B > K$ only the newest $K$ keys survive.
#
# Write `enqueue(queue, ptr, keys)` returning `(new_queue, new_ptr)`, without changing the
# `queue` it is given. `queue` is a $(K, D)$ NumPy array, `keys` is $(B, D)$. The check runs it
# on four cases against `shared.oracle.queue.dequeue_and_enqueue` and says what is wrong.


# %%
def enqueue(queue, ptr, keys):
    # your code here
    raise NotImplementedError


verdict = exercises.check_ring_buffer(enqueue)

# %% tags=["solution"]
# The reference solution, hidden until SHOW_SOLUTIONS = True (first code cell).
# Open it when you are stuck, or to compare.
if SHOW_SOLUTIONS:
    print(inspect.getsource(exercises.solution_ring_buffer))
    verdict = exercises.check_ring_buffer(
        exercises.solution_ring_buffer, whose=exercises.REFERENCE
    )
else:
    print("Hidden: set SHOW_SOLUTIONS = True in the first code cell to see it.")

# %% [markdown]
# Next: [chapter 4, the math with numbers](04_math.md).
