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
# # Chapter 1. Background
#
# **What you will learn.** Where contrastive learning comes from, what it is used for, and how
# this course is laid out: nine chapters, each a notebook you can run.
#
# **Prerequisites.** Python; the idea of a neural network that maps an image to a vector. No
# framework is needed for this chapter.
#
# **Time.** About 10 minutes.

# %% [markdown]
# ## 1.1 The rise of contrastive learning
#
# Contrastive learning trains an encoder without labels by asking it to tell which of several
# inputs belong together. The loss family goes back to Hadsell, Chopra and LeCun (CVPR 2006);
# instance discrimination with a memory bank (Wu et al., CVPR 2018) and InfoNCE (van den Oord
# et al., 2018, *Contrastive Predictive Coding*) made it work at scale. MoCo (He et al., CVPR
# 2020, arXiv:1911.05722) pretrained features that transfer to detection and segmentation as
# well as supervised pretraining does, or better; SimCLR (Chen et al., ICML 2020,
# arXiv:2002.05709) brought the linear probe on ImageNet level with a supervised ResNet-50
# (76.5 % top-1, with a ResNet-50 four times as wide).
#
# This project implements the two methods that made the field practical, SimCLR
# (`torch_impl/simclr.py`, `tf_impl/simclr.py`) and MoCo v2 (`torch_impl/moco.py`,
# `tf_impl/moco.py`), in both PyTorch and TensorFlow, and checks both against one NumPy oracle
# (`shared/oracle/`).
#
# ## 1.2 Outlook
#
# Self-supervised pretraining matters where labels are scarce and unlabelled data is plentiful:
# the encoder learns from the unlabelled set, then a small labelled set trains a linear
# classifier or fine-tunes it (chapter 9.5 plots this project's measurement). The same loss now
# pairs modalities, images with captions in CLIP (Radford et al., ICML 2021), and sentences with
# themselves under dropout in SimCSE (Gao, Yao and Chen, EMNLP 2021). This project covers images
# only.
#
# ## 1.3 What this course covers
#
# Chapters 2 to 4 give the ideas and the math, each with worked numbers you can check by hand;
# chapter 4 runs with NumPy alone. Chapter 5 walks through the real code of both methods in both
# frameworks, cell by cell. Chapters 6 to 9 cover uses, tools, open problems and the FAQ,
# answered from this project's measurements where it has them. Chapters 3, 4 and 5 end with
# exercises that the NumPy oracle grades. The cell below lists the chapters and what each needs
# installed; it looks the packages up without importing them.
#
# **Where the course comes from.** The course follows an outline of contrastive learning, section
# by section ([the outline](../source_outline.md)); an article that came with it has errors,
# corrected with runnable code on [the errata page](../errata.md), which later chapters cite by
# number ("erratum 3").
#
# **How to run a chapter.** Each page is a notebook: download it (the link under each title), or
# open `docs/course/NN_<name>.py` as a notebook with jupytext. It finds the project's files
# through the installed package, so it runs from any folder once the project is installed
# (`pip install -e .` in its checkout). Chapters 3, 4 and 5 end with exercises; their reference
# solutions stay hidden until you set `SHOW_SOLUTIONS = True` in the chapter's first code cell
# (on this site they are folded under "Solution"), and every verdict says whose function it
# checked, yours or the reference solution.

# %%
import os
from pathlib import Path

import shared  # the project, installed: `pip install -e .` in its checkout

ROOT = Path(shared.__file__).resolve().parent.parent  # the checkout: data, results

# %%
import importlib.util

needs = {
    "01": "nothing",
    "02": "torch, numpy, scikit-learn, matplotlib",
    "03": "torch, torchvision, scikit-learn, matplotlib",
    "04": "numpy alone (matplotlib for the figures, optional)",
    "05": "torch, torchvision, tensorflow, scikit-learn, matplotlib",
    "06": "numpy, scikit-learn, matplotlib",
    "07": "numpy, matplotlib",
    "08": "numpy, matplotlib",
    "09": "numpy, scikit-learn, matplotlib",
}
for path in sorted((ROOT / "docs" / "course").glob("[0-9][0-9]_*.py")):
    print(f"{path.stem:<18} needs {needs.get(path.stem[:2], '?')}")
print()
for package in ("numpy", "sklearn", "matplotlib", "torch", "torchvision", "tensorflow"):
    found = importlib.util.find_spec(package) is not None
    print(f"{package:<12} {'installed' if found else 'missing'}")

# %% [markdown]
# Every number the course prints is computed in its cells or read from the committed results file
# (`docs/results.json`, through `shared.run.published`); no measured number is typed into the text. Where a
# result has not been measured yet, the cell says so instead of inventing one.
#
# Next: [chapter 2, core concepts](02_concepts.md).
