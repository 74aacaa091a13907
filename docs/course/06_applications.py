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
# # Chapter 6. Applications
#
# **What you will learn.** What a contrastive encoder gives a classifier on this project's data,
# seen as a t-SNE map of the test images before and after training and measured by the one
# evaluator; and where the methods go beyond classification (detection, segmentation, language),
# which this project does not implement.
#
# **Prerequisites.** Chapters 3 and 5; what kNN and a linear classifier are.
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
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits

from shared.run import evaluation, published

# docs/results.json by default
results = published.load(os.environ.get("ROSETTA_RESULTS"))
ARTIFACT = ROOT / "docs/course/artifacts/simclr_torch_test_features.npz"

# %% [markdown]
# ## 6.1 Image classification
#
# Freeze the encoder, compute the features $h$ of every image, and classify them: weighted kNN
# and a linear probe (logistic regression), with every setting chosen on the training split and
# the same rule for the baselines (`shared/run/evaluation.py`). The results file holds the
# measured numbers:


# %%
def quoted(key: str, metric: str) -> str:
    try:
        return published.quote(results, key, metric)
    except KeyError:
        return f"not in the results file yet (entry {key}, {metric})"


for label, key in (("SimCLR, PyTorch", "simclr/torch"), ("raw pixels", "raw_pixels")):
    print(f"{label:<16} kNN (chosen k) {quoted(key, 'knn_top1')}")
    print(f"{'':<16} linear probe   {quoted(key, 'linear_top1')}")

# %% [markdown]
# **kNN against k.** The evaluator does not fix k: it scores every k on the test split and
# reports the one leave-one-out on the training split picks (chapter 2's box). The figure draws
# the test-split top-1 at each k (mean over the seeds), with the k each representation's
# leave-one-out chose marked. Large k lets distant images of other classes vote; the trained
# encoders hold up better than raw pixels because their neighbourhoods are cleaner.

# %%
KS = (1, 5, 10, 20, 50, 200)
CURVES = (
    ("SimCLR, PyTorch", "simclr/torch"),
    ("MoCo v2, PyTorch", "moco/torch"),
    ("random-init CNN", "random_init/torch"),
    ("raw pixels", "raw_pixels"),
)
fig, ax = plt.subplots(figsize=(6.4, 3.6))
for label, key in CURVES:
    mean = results.get("entries", {}).get(key, {}).get("mean", {})
    if not all(f"knn_at_{k}" in mean for k in KS):
        print(
            f"{key}: kNN at each k not in the results file yet (entry {key}, knn_at_k)"
        )
        continue
    (line,) = ax.semilogx(
        KS, [100 * mean[f"knn_at_{k}"] for k in KS], "o-", ms=3, label=label
    )
    if "knn_k" in mean:
        print(
            f"{label:<18} k chosen by leave-one-out: {mean['knn_k']:.1f} (mean over "
            "seeds)"
        )
ax.set_xticks(KS, [str(k) for k in KS])
ax.set_xlabel("k, neighbours that vote")
ax.set_ylabel("kNN top-1, test split (%)")
ax.legend(fontsize=8)
ax.set_title("kNN against k (results file, mean over seeds)", fontsize=9)
plt.show()

# %% [markdown]
# **What training changes, on a map.** Training an encoder takes minutes here, so this cell
# loads a small committed artefact of a real run instead: the encoder features of the 359 test
# images, from an untrained encoder of the same architecture and from a SimCLR encoder trained
# by `python -m torch_impl train --method simclr` (60 epochs, seed 0) at an earlier commit, when
# that command trained under bf16 autocast on a CPU with native bf16 (the metadata's `amp`; it
# now trains in float32 unless `--amp` is given), each L2-normalised (the cosine geometry kNN uses) and projected on its first 50 singular directions,
# stored in float16. Its metadata names the run; `make_artifact` at the end of this chapter is the
# code that wrote it. t-SNE (van der Maaten
# and Hinton, 2008) then places similar features near each other in 2-D, computed here.

# %%
stored = np.load(ARTIFACT)
meta = json.loads(str(stored["meta"]))
labels = stored["labels"].astype(int)
for k in ("source", "command", "amp", "commit", "epochs", "batch_size", "final_loss"):
    print(f"{k:<20} {meta.get(k)}")
print(f"{'kNN (last-epoch monitor)':<20} {meta.get('knn_top1_last_epoch')}")

maps, scores = {}, {}
for name in ("before", "after"):
    feats = stored[name].astype(np.float64)
    scores[name] = evaluation.knn_loo(feats, labels, ks=(20,))[20]
    with threadpool_limits(1):  # one thread: faster than several on a small map
        maps[name] = TSNE(
            n_components=2, perplexity=30, init="pca", max_iter=500, random_state=0
        ).fit_transform(feats)

fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
for ax, name, title in (
    (axes[0], "before", "untrained encoder"),
    (axes[1], "after", "after SimCLR, 60 epochs"),
):
    pts = ax.scatter(*maps[name].T, c=labels, cmap="tab10", s=8)
    ax.set_title(f"{title}: kNN (t-SNE subset) {100 * scores[name]:.1f} %", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
fig.legend(*pts.legend_elements(), title="digit", loc="center right", fontsize=8)
fig.suptitle(
    "t-SNE of the test images' features, coloured by the label the encoder never saw"
)
plt.show()

# %% [markdown]
# The kNN in the titles is the *t-SNE subset* number of chapter 2's box: leave-one-out within the 359 test images, on the stored 50
# directions (k = 20): a measure of what the map shows, not the evaluator's protocol, which
# classifies the test images by the training images and is what the results file reports.
#
# ## 6.2 Object detection (not implemented here)
#
# This project has no detector. The MoCo paper fine-tunes its ImageNet-pretrained ResNet-50 in
# Faster R-CNN on PASCAL VOC and Mask R-CNN on COCO, and reports it on par with or above
# supervised pretraining (He et al. 2020, section 4.2); DenseCL (Wang et al., CVPR 2021) adds a
# pixel-level contrastive loss for dense tasks.
#
# ## 6.3 Semantic segmentation (not implemented here)
#
# Not implemented. MoCo reports transfer to COCO instance segmentation, Cityscapes instance
# segmentation and PASCAL VOC semantic segmentation (He et al. 2020, section 4.2); PixPro (Xie et
# al., CVPR 2021) contrasts pixels rather than images.
#
# ## 6.4 Natural language processing (not implemented here)
#
# Not implemented. SimCSE (Gao, Yao and Chen, EMNLP 2021) uses two dropout masks of the same
# sentence as the positive pair and the batch as negatives, the NT-Xent recipe for text; CLIP
# (Radford et al., ICML 2021) contrasts images with their captions.

# %% [markdown]
# ## Where the artefact comes from
#
# The code that wrote `docs/course/artifacts/simclr_torch_test_features.npz` (chapters 3, 5 and
# 8 read it too). It runs only when
# `COURSE_RUN_DIR` names a finished run directory, e.g.
#
# ```bash
# python -m torch_impl train --method simclr --run-dir runs/course --seed 0
# COURSE_RUN_DIR=runs/course python docs/course/06_applications.py
# ```


# %%
def make_artifact(run_dir: str, out: Path = ARTIFACT, components: int = 50) -> None:
    """Write what chapters 2, 3, 5, 6 and 8 read of a real run: the test split's
    encoder features before and after training (``run_dir``'s encoder, and an
    untrained one of the same architecture, torch seed 0), each L2-normalised and
    projected on its first ``components`` singular directions; the projections z of
    two views of eight test images by both models; and the run's metadata, with its
    per-epoch loss and projection spread. float16 throughout."""
    import subprocess

    import torch
    from sklearn.decomposition import TruncatedSVD

    from shared.run import data
    from torch_impl.evaluate import (
        extract_features,
        projection_batch,
        random_init_encoder,
    )
    from torch_impl.methods import build_model, load_trained

    model, cfg = load_trained(run_dir)
    torch.manual_seed(0)
    untrained = build_model(cfg).eval()
    test = data.load_embedded().test
    features = {}
    for name, encoder in (
        ("before", random_init_encoder(cfg.encoder, 0)),
        ("after", model.backbone),
    ):
        f = extract_features(encoder, test.images)
        f /= np.linalg.norm(f, axis=1, keepdims=True)  # kNN's cosine geometry
        features[name] = (
            TruncatedSVD(components, random_state=0).fit_transform(f).astype(np.float16)
        )
    picks = [int(np.flatnonzero(test.labels == c)[0]) for c in range(8)]
    pairs = {
        f"pairs_{name}": np.stack(
            projection_batch(m, test.images[picks], cfg, seed=1)
        ).astype(np.float16)
        for name, m in (("before", untrained), ("after", model))
    }  # (2 views, 8, D)
    epochs = json.loads((Path(run_dir) / "metrics.json").read_text())["epochs"]
    knn = [e["knn_top1"] for e in epochs if e.get("knn_top1") is not None]
    meta = {
        "source": f"the test split's encoder features h, L2-normalised, "
        f"{components} singular directions",
        "command": "python -m torch_impl train "
        f"--method {cfg.method} --seed {cfg.seed}",
        "amp": cfg.amp,  # bf16 autocast: only with --amp
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip(),
        "epochs": len(epochs),
        "batch_size": cfg.batch_size,
        "temperature": cfg.temperature,
        "final_loss": round(epochs[-1]["loss"], 4),
        "knn_top1_last_epoch": round(knn[-1], 4) if knn else None,
        "loss": [round(e["loss"], 4) for e in epochs],  # per epoch
        "z_spread": [
            round(e["z_spread"], 4) for e in epochs
        ],  # shared.run.health, per epoch
        "pairs_labels": [int(test.labels[i]) for i in picks],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        **features,
        **pairs,
        labels=test.labels.astype(np.int8),
        meta=json.dumps(meta),
    )
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} kB)")


if os.environ.get("COURSE_RUN_DIR"):
    make_artifact(os.environ["COURSE_RUN_DIR"])

# %% [markdown]
# Next: [chapter 7, tools and resources](07_tools.md).
