"""Datasets in PyTorch, for both methods: the embedded default, torchvision's CIFAR/STL, folders.

Every loader returns uint8 NHWC images and int64 labels (``-1`` where unlabeled), the same
layout as ``shared.run.data``, so training and evaluation code is shared by all sources.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from shared.run.data import Split
from shared.run.datasets import DatasetNotFound, download_failed, load_local_split, missing_message

__all__ = ["DatasetNotFound", "TwoViewDataset", "load_split"]


def _torchvision(name: str, root: str, split: str, download: bool):
    import torchvision.datasets as tvd

    cls = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100, "stl10": tvd.STL10}[name]
    try:
        if name == "stl10":  # STL-10 takes split=, not train=; its unlabeled images have label -1
            ds = cls(root, split=split, download=download)
            return np.ascontiguousarray(ds.data.transpose(0, 2, 3, 1)), ds.labels.astype(np.int64)
        ds = cls(root, train=split == "train", download=download)
        return np.asarray(ds.data), np.asarray(ds.targets, dtype=np.int64)
    except OSError as e:  # urllib's URLError (offline, DNS, refused) is an OSError
        raise DatasetNotFound(download_failed(name, root, e)) from e
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted. ..."
        if download:
            raise DatasetNotFound(download_failed(name, root, e)) from e
        how = f"run once with --download and network access (torchvision.datasets.{cls.__name__})"
        raise DatasetNotFound(missing_message(name, root, how)) from e


def load_split(
    dataset: str = "embedded",
    split: str = "train",
    root: str = "./data",
    download: bool = False,
    image_size: int = 32,
    seed: int = 0,
) -> Split:
    """Load one split as uint8 (N, H, W, 3) images and int64 labels.

    Args:
        dataset: ``embedded``, ``cifar10``, ``cifar100``, ``stl10`` or ``folder:PATH``.
        split: ``train``, ``test`` or, for ``stl10``, ``unlabeled`` (100,000 images, labels -1);
            a folder has only ``train`` (labels -1).
        root: where torchvision keeps its files.
        download: allow torchvision to download (needs network access).
        image_size: side used when reading an image folder.
        seed: the embedded dataset's rendering seed.

    Raises:
        DatasetNotFound: the data is not on disk (the message says how to get it).
        ValueError: unknown dataset or split.
    """
    local = load_local_split(dataset, split, image_size, seed)
    if local is not None:
        return local
    images, labels = _torchvision(dataset, root, split, download)
    return Split(images, labels)


class TwoViewDataset(Dataset):
    """Yields ``(view1, view2, label)`` for SimCLR from uint8 NHWC images."""

    def __init__(self, split: Split, two_views):
        self.images = split.images
        self.labels = split.labels
        self.two_views = two_views

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        img = torch.from_numpy(self.images[i]).permute(2, 0, 1)  # (3, H, W) uint8
        v1, v2 = self.two_views(img)
        return v1, v2, int(self.labels[i])
