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
# # Chapter 8. Where the field is going
#
# **What you will learn.** What came after SimCLR and MoCo; the failure modes a contrastive run
# meets (shortcuts, collapse, a flattering evaluation) and how this project detects them; where
# the field is heading.
#
# **Prerequisites.** Chapters 4 and 5.
#
# **Time.** About 15 minutes.

# %%
import os
from pathlib import Path

import shared  # the project, installed: `pip install -e .` in its checkout

ROOT = Path(shared.__file__).resolve().parent.parent  # the checkout: data, results

# %%
import json

import matplotlib.pyplot as plt
import numpy as np

from shared.oracle import losses as oracle
from shared.run import health

# %% [markdown]
# ## 8.1 Progress
#
# After SimCLR and MoCo came methods without negatives: BYOL (a predictor and a momentum target),
# SimSiam (a stop-gradient alone), Barlow Twins (decorrelating the embedding), and
# self-distillation with Vision Transformers (DINO). MoCo v3 kept the contrastive loss, with
# its negatives now from the batch instead of a queue, and trained Vision Transformers with it.
#
# ## 8.2 Challenges
#
# **Shortcuts.** The encoder learns whatever tells images apart most easily. This project met it
# twice. An early version of the dataset tinted each image with a random colour, and both methods
# learned to match tints and stayed at chance (`shared/run/data.py`). Random clutter strokes,
# tried to make raw pixels weaker, did the same: the strokes are identical in both views and
# unique per image.
#
# **Collapse.** An encoder that maps every image to one point scores the chance loss and teaches
# nothing. `shared/run/health.py` watches for it after every epoch with `projection_spread`: the
# per-dimension standard deviation of the L2-normalised projections, times $\sqrt{D}$, about 1
# for an even spread over the sphere and 0 for collapse. The figure slides 256 random
# projections towards one point, $z(\alpha) = (1 - \alpha)\, z + \alpha\, c$, and computes both
# the NT-Xent of two noisy views (the oracle) and the spread (the health check); on the right,
# the spread of the real run behind chapter 6's artefact, epoch by epoch.

# %%
rng = np.random.default_rng(0)
z = rng.standard_normal((256, 32))
c = rng.standard_normal(32)
alphas = np.linspace(0, 1, 21)
loss, spread = [], []
for a in alphas:
    za = (1 - a) * z + a * c
    noise = 0.05 * rng.standard_normal(za.shape) * (1 - a)
    loss.append(oracle.nt_xent(za + noise, za - noise, 0.2))
    spread.append(health.projection_spread(za))
meta = json.loads(
    str(np.load(ROOT / "docs/course/artifacts/simclr_torch_test_features.npz")["meta"])
)

fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
axes[0].plot(alphas, loss, label="NT-Xent of two views (oracle)")
axes[0].axhline(np.log(2 * len(z) - 1), color="k", ls=":", label="chance log(2N - 1)")
axes[0].set_xlabel("alpha: 0 spread, 1 collapsed")
axes[0].set_ylabel("loss")
ax2 = axes[0].twinx()
ax2.plot(alphas, spread, color="tab:orange", label="projection_spread")
ax2.axhline(
    health.COLLAPSE_SPREAD, color="tab:orange", ls="--", lw=0.8, label="warning level"
)
ax2.set_ylabel("projection_spread", color="tab:orange")
axes[0].legend(fontsize=7, loc="center left")
ax2.legend(fontsize=7, loc="center right")
axes[0].set_title(
    "collapse: the loss climbs to chance, the spread falls to 0", fontsize=9
)
if meta.get("z_spread"):
    axes[1].plot(range(1, len(meta["z_spread"]) + 1), meta["z_spread"], "o-", ms=3)
    axes[1].set_xlabel("epoch")
    axes[1].set_title(
        "a healthy run: SimCLR's projection_spread (chapter 6's run)", fontsize=9
    )
else:
    axes[1].set_axis_off()
    print("the artefact holds no per-epoch spread")
fig.tight_layout()
plt.show()
print(
    f"alpha 0: spread {spread[0]:.3f}, loss {loss[0]:.4f}; alpha 1: spread "
    f"{spread[-1]:.3f}, "
    f"loss {loss[-1]:.4f} (chance {np.log(2 * len(z) - 1):.4f})"
)

# %% [markdown]
# **A flattering evaluation.** k = 200 neighbours for kNN is made for 5,000 images per class;
# with about 143 it flattered every method, so this project chooses k by leave-one-out on the
# training split (`shared/run/evaluation.py`).
#
# ## 8.3 Directions
#
# Fewer negatives or none (section 8.1), other modalities (chapter 6.4), and dense objectives for
# detection and segmentation (chapters 6.2, 6.3). This project stays with the two methods it can
# verify number by number.
#
# Next: [chapter 9, the FAQ](09_faq.md).
