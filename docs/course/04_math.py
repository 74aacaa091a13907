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
# # Chapter 4. The math, with numbers
#
# **This chapter runs with NumPy alone.** It imports `numpy`, the NumPy oracle (`shared.oracle`)
# and the exercise checkers (`shared.docgen.exercises`, which import only those two); matplotlib
# draws the figures where it is installed and is skipped where it is not. No PyTorch, no
# TensorFlow: `python docs/course/04_math.py` runs it as a script (`tests/test_course.py` runs it
# so, with every other package blocked).
#
# **What you will learn.** The encoder and the head as formulas; InfoNCE and NT-Xent derived and
# computed by hand on numbers small enough to check; the gradient of the loss and how the
# temperature aims it; the closed forms that tell you what loss value is normal. You will write
# InfoNCE and fix a broken loss formula, both graded by the oracle.
#
# **Prerequisites.** Chapters 2 and 3; the softmax, the logarithm, a dot product.
#
# **Time.** About 60 minutes with the exercises.

# %%
import os
from pathlib import Path

import shared  # the project, installed: `pip install -e .` in its checkout

ROOT = Path(shared.__file__).resolve().parent.parent  # the checkout: data, results
SHOW_SOLUTIONS = False  # True: show and check the reference solutions

# %%
import inspect
import math

import numpy as np

from shared.docgen import exercises
from shared.oracle import losses as L
from shared.oracle import worked_examples as W

try:
    import matplotlib.pyplot as plt
except ImportError:  # the numbers do not need it
    plt = None
    print(
        "matplotlib is not installed: the figures are skipped, every number is still "
        "computed"
    )

# %% [markdown]
# ## 4.1 The encoder
#
# $h = f(x; \theta)$: a composition of convolutions, batch normalisation and ReLUs, then global
# average pooling. Worked example (a) (`rosetta explain a`) uses a one-layer encoder,
# $h = \mathrm{ReLU}(W_f x)$, on a three-pixel image.
#
# ## 4.2 The projection head
#
# $z = g(h) = W_2\,\mathrm{ReLU}(W_1 h)$ (with BN after $W_1$ in the real head), and the loss sees
# the unit vector $u = z / \lVert z \rVert$. Every number below is checked by hand arithmetic in
# `tests/test_worked_examples.py`.

# %%
print(W.example_a().text())

# %% [markdown]
# ## 4.3 The losses
#
# Both losses are the cross-entropy of a softmax over cosine similarities divided by a
# temperature $\tau$; they differ in where the candidates come from. The cosine similarity of
# two vectors is
#
# $$s(u, v) = \frac{u^\top v}{\lVert u \rVert\,\lVert v \rVert} \in [-1, 1].$$
#
# ### 4.3.1 InfoNCE
#
# For a query $q$, its positive key $k_+$ and the $K$ keys $k_1 \dots k_K$ of MoCo's queue, all
# L2-normalised,
#
# $$\mathcal{L}_q = -\log \frac{\exp(q \cdot k_+ / \tau)}
#   {\exp(q \cdot k_+ / \tau) + \sum_{j=1}^{K} \exp(q \cdot k_j / \tau)},$$
#
# averaged over the $N$ queries of the batch: a $(1 + K)$-way classification whose right answer
# is column 0. Worked example (b): one query, a queue of three keys, $\tau = 0.2$.

# %%
print(W.example_b().text())

# %% [markdown]
# ### Exercise 4a: InfoNCE
#
# Write `info_nce(q, k, queue, temperature)` in NumPy: `q` and `k` are $(N, D)$, row $n$ of `k`
# is the positive key of query $n$; `queue` is $(K, D)$, one key per row (MoCo's pseudocode
# stores it as $(D, K)$; rows make enqueueing a slice). Normalise the rows, build the $N \times
# (1 + K)$ logits with the positive in column 0, return the mean loss as a float. The check
# compares it with `shared.oracle.losses.info_nce` on worked example (b) and three random cases,
# one of them at $\tau = 0.001$, where a naive `exp` overflows.


# %%
def info_nce(q, k, queue, temperature):
    # your code here
    raise NotImplementedError


verdict = exercises.check_info_nce(info_nce)

# %% tags=["solution"]
# The reference solution, hidden until SHOW_SOLUTIONS = True (first code cell).
if SHOW_SOLUTIONS:
    print(inspect.getsource(exercises.solution_info_nce))
    print(inspect.getsource(exercises._logsumexp))
    verdict = exercises.check_info_nce(
        exercises.solution_info_nce, whose=exercises.REFERENCE
    )
else:
    print("Hidden: set SHOW_SOLUTIONS = True in the first code cell to see it.")

# %% [markdown]
# ### 4.3.2 NT-Xent
#
# SimCLR stacks the two views into $2N$ vectors. Anchor $i$ has one positive $p(i) = (i + N)
# \bmod 2N$, the other view of its image, and the loss of an anchor and of the batch are
#
# $$\ell_i = -\log \frac{\exp(s_{i,p(i)} / \tau)}{\sum_{k \neq i} \exp(s_{ik} / \tau)}, \qquad
#   \mathcal{L} = \frac{1}{2N} \sum_{i=1}^{2N} \ell_i .$$
#
# Worked example (c) computes it for $N = 2$ images in 3-D at $\tau = 0.5$, every intermediate
# printed; the figure draws its similarity matrix and the row softmax.

# %%
ex = W.example_c()
print(ex.text())
if plt is not None:
    names = ["x0/v1", "x1/v1", "x0/v2", "x1/v2"]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    for ax, key, title in (
        (axes[0], "sim", "cosine similarity $s_{ij}$"),
        (axes[1], "probs", "softmax of each row (self excluded)"),
    ):
        m = ex.values[key]
        im = ax.imshow(m, cmap="viridis", vmin=-1 if key == "sim" else 0, vmax=1)
        for i in range(4):
            for j in range(4):
                ax.text(
                    j,
                    i,
                    f"{m[i, j]:.2f}",
                    ha="center",
                    va="center",
                    color="w",
                    fontsize=8,
                )
        ax.set_xticks(range(4), names, fontsize=8)
        ax.set_yticks(range(4), names, fontsize=8)
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(
        "Worked example (c): the positive of row i is column (i + 2) mod 4; loss "
        f"{ex.values['loss']:.4f}"
    )
    plt.show()

# %% [markdown]
# **The gradient.** With $p_{ik}$ the softmax of row $i$ (self excluded), the gradient of
# $\ell_i$ with respect to each similarity is
#
# $$\frac{\partial \ell_i}{\partial s_{ik}} = \frac{1}{\tau}\left(p_{ik} - \mathbb{1}[k = p(i)]\right):$$
#
# the positive is pulled with $(1 - p_{i,p(i)}) / \tau$, and each negative pushed with
# $p_{ik} / \tau$, its share of the softmax. `shared.oracle.losses.nt_xent_grad` carries it
# through the normalisation and is checked against finite differences
# (`tests/test_shared_losses.py`).
#
# **The temperature** decides how that push is shared. Worked example (d) takes one anchor's
# similarities, the positive at 0.9 and negatives at 0.7 (hard), 0.3, 0.0 and -0.5 (easy), and
# computes the softmax at several $\tau$; the figure shows it, and the hard negative's share of
# the push on all negatives as $\tau$ varies.

# %%
g = W.example_d()
sims = g.values["sims"]


def softmax(s, tau):
    e = np.exp((s - s.max()) / tau)
    return e / e.sum()


for tau, row in g.values["rows"].items():
    # the same numbers as the oracle's
    assert np.allclose(softmax(sims, tau), row["p"], rtol=1e-12)
    print(
        f"tau = {tau:<5} loss {row['loss']:.4f}, the hard negative gets "
        f"{100 * row['hard_share']:.1f} % of the push"
    )

if plt is not None:
    names = ["pos 0.9", "hard 0.7", "0.3", "0.0", "far -0.5"]
    taus = list(g.values["rows"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    width = 0.8 / len(taus)
    for j, tau in enumerate(taus):
        axes[0].bar(
            np.arange(5) + (j - 1.5) * width,
            softmax(sims, tau),
            width,
            label=f"tau = {tau}",
        )
    axes[0].set_xticks(range(5), names)
    axes[0].set_ylabel("softmax probability")
    axes[0].legend(fontsize=8)
    axes[0].set_title("the softmax over one anchor's candidates", fontsize=9)
    grid = np.geomspace(0.02, 2.0, 200)
    share = [softmax(sims, t)[1] / softmax(sims, t)[1:].sum() for t in grid]
    axes[1].semilogx(grid, share)
    axes[1].axhline(1 / 4, color="0.5", ls=":", label="even share (1 of 4 negatives)")
    axes[1].set_xlabel("temperature tau")
    axes[1].set_ylabel("hard negative's share of the push")
    axes[1].legend(fontsize=8)
    axes[1].set_title("small tau aims the gradient at the hardest negative", fontsize=9)
    plt.show()

# %% [markdown]
# Small $\tau$ concentrates the gradient on the hardest negatives (Wang and Liu, CVPR 2021); large
# $\tau$ spreads it evenly, and the loss can no longer tell hard from easy.
#
# ## 4.4 Worked numbers
#
# Two closed forms anchor every value you will see (worked example (e)). Collapsed embeddings
# (every vector the same) make every logit equal, the softmax uniform, and the loss
# $\log(\#\text{candidates})$: $\log(2N - 1)$ for NT-Xent, $\log(K + 1)$ for InfoNCE.
# Orthogonal embeddings (each positive at cosine 1, every negative at 0) give
#
# $$\mathcal{L}_\perp = \log\left(1 + (2N - 2)\, e^{-1/\tau}\right) \xrightarrow[\tau \to 0]{} 0 .$$
#
# The figure computes both with the oracle, at $N = 4$, over $\tau$, beside the closed forms.

# %%
print(W.example_e().text())
n = 4
taus = np.geomspace(0.05, 5.0, 60)
eye, ones = np.eye(n), np.ones((n, n))
orth = [L.nt_xent(eye, eye, t) for t in taus]
coll = [L.nt_xent(ones, ones, t) for t in taus]
closed = np.log1p((2 * n - 2) * np.exp(-1 / taus))
gaps = (
    np.max(np.abs(np.array(orth) - closed)),
    np.max(np.abs(np.array(coll) - math.log(2 * n - 1))),
)
print(
    f"largest difference from the closed forms: orthogonal {gaps[0]:.1e}, collapsed "
    f"{gaps[1]:.1e}"
)
assert max(gaps) < 1e-12
if plt is not None:
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.semilogx(taus, coll, label="collapsed (oracle)")
    ax.semilogx(taus, [math.log(2 * n - 1)] * len(taus), "k:", label="log(2N - 1)")
    ax.semilogx(taus, orth, label="orthogonal (oracle)")
    ax.semilogx(taus, closed, "k--", lw=0.8, label="log(1 + (2N - 2) exp(-1/tau))")
    ax.set_xlabel("temperature tau")
    ax.set_ylabel("NT-Xent, N = 4")
    ax.legend(fontsize=8)
    ax.set_title("chance and the orthogonal floor", fontsize=9)
    plt.show()

# %% [markdown]
# What loss value is normal at the training settings: chance, the orthogonal floor, and (when the
# results file has them) the demo's curves. Chapter 5 plots real curves against both lines.

# %%
print(W.example_f().text())

# %% [markdown]
# ### Exercise 4b: fix a broken loss
#
# The article the errata page corrects writes its loss as
#
# $$L(x) = -\log \frac{P(z_1, z_1)}{P(z_1, z_1) + \sum_i P(z_{2,i}, z_1)}$$
#
# with $P$ the raw cosine similarity (`docs/errata.md`, errata 2 and 3). It has three errors:
# the "positive" $P(z_1, z_1)$ is a vector with itself, always 1; the ratio holds raw cosines,
# which can be negative, so it is no probability; and the second view of the anchor's own image is
# counted as a negative. Here it is in NumPy, run on the vectors of worked example (g): row 0's
# "loss" is negative, which no cross-entropy can be.

# %%
print(inspect.getsource(exercises.quoted_loss))
z1 = np.array([[1.0, 0.0], [0.0, 1.0]])  # the inputs of worked example (g)
z2 = np.array([[0.6, 0.8], [-0.8, 0.6]])
for i in range(2):
    p_self, p_cross = 1.0, float((z1[i] @ z2.T).sum())
    ratio = p_self / (p_self + p_cross)
    print(
        f"row {i}: P(z1, z1) = 1, sum_i P(z2_i, z1) = {p_cross:+.1f}, ratio = "
        f"{ratio:.4f}, "
        f"L = -log(ratio) = {-math.log(ratio):+.4f}"
    )
print(
    f"the formula's mean: {exercises.quoted_loss(z1, z2):.4f}; "
    f"NT-Xent at tau = 0.5: {L.nt_xent(z1, z2, 0.5):.4f}"
)

# %% [markdown]
# Fix it: edit `loss` below until it is NT-Xent of section 4.3.2, `loss(z1, z2, temperature)`
# with `z1`, `z2` of shape $(N, D)$. It starts as the quoted formula, so the first check says what
# is still wrong; run the check after each change.


# %%
def loss(z1, z2, temperature):
    u1 = z1 / np.linalg.norm(z1, axis=1, keepdims=True)
    u2 = z2 / np.linalg.norm(z2, axis=1, keepdims=True)
    pos = np.sum(u1 * u1, axis=1)  # P(z1, z1)
    neg = (u1 @ u2.T).sum(axis=1)  # sum_i P(z2_i, z1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.mean(-np.log(pos / (pos + neg))))


verdict = exercises.check_loss_fix(loss)

# %% tags=["solution"]
# The reference solution, hidden until SHOW_SOLUTIONS = True (first code cell).
if SHOW_SOLUTIONS:
    print(inspect.getsource(exercises.solution_loss_fix))
    verdict = exercises.check_loss_fix(
        exercises.solution_loss_fix, whose=exercises.REFERENCE
    )
else:
    print("Hidden: set SHOW_SOLUTIONS = True in the first code cell to see it.")

# %% [markdown]
# Next: [chapter 5, the code](05_code.md).
