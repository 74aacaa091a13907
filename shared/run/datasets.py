"""Framework-neutral dataset plumbing: names, the missing-data error, and image-folder reading.

Both ``torch_impl.data`` and ``tf_impl.data`` accept the same ``--dataset`` names:

* ``embedded``: the default, rendered from scikit-learn's digits (``shared.run.data``); no download.
* ``cifar10``, ``cifar100``, ``stl10``: through torchvision / tfds with a ``root`` / ``data_dir``;
  downloaded only on request (``--download``). Offline and absent raises
  :class:`DatasetNotFound`, which the CLIs print as one clear line (no traceback).
* ``folder:PATH``: a folder of unlabeled images (any depth). Regular files only: anything else
  named like an image (a FIFO, a device, a folder), unreadable files and images over Pillow's
  pixel limit are skipped and counted.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared.run.errors import ConfigError, FileFormatError, MissingFileError

REMOTE = ("cifar10", "cifar100", "stl10")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class DatasetNotFound(MissingFileError):
    """The dataset is not on disk and downloading was not requested (or is impossible)."""


def missing_message(name: str, root, how: str) -> str:
    return (
        f"dataset '{name}' was not found under {str(root)!r}. This run does not download. "
        f"To get it: {how}. Or use --dataset embedded, which needs no download."
    )


def download_failed(name: str, root, error: BaseException) -> str:
    """The one-line message for a ``--download`` that could not reach or read the network."""
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    return (
        f"dataset '{name}' could not be downloaded to {str(root)!r} ({type(error).__name__}: {first}). "
        "Check network access, or download it on a machine that has it and copy the folder to "
        "--root. Or use --dataset embedded, which needs no download."
    )


def load_local_split(dataset: str, split: str, image_size: int = 32, seed: int = 0):
    """The framework-neutral part of both ``load_split``: ``embedded`` and ``folder:PATH``.

    Validates ``dataset`` and ``split``; returns a ``shared.run.data.Split``, or ``None`` for the
    remote datasets, which each framework loads with its own library.
    """
    import logging

    from shared.run.data import Split, load_embedded

    check_name(dataset)
    splits = ("train", "test", "unlabeled") if dataset == "stl10" else ("train", "test")
    if split not in splits:
        raise ConfigError(
            f"split: expected one of {', '.join(splits)} for {dataset}, got {split!r}"
        )
    if dataset == "embedded":
        ds = load_embedded(seed)
        return ds.train if split == "train" else ds.test
    if dataset.startswith("folder:"):
        if split == "test":
            raise ConfigError("split: an image folder is unlabeled and has only a 'train' split")
        f = read_image_folder(dataset[len("folder:") :], image_size)
        if f.skipped:
            logging.getLogger(__name__).warning(
                "skipped %d unreadable image file(s) of %d (not a regular file, not an image, "
                "or over Pillow's pixel limit), the first %r",
                len(f.skipped),
                len(f.skipped) + len(f.paths),
                f.skipped[0],
            )
        return Split(f.images, np.full(len(f.images), -1, dtype=np.int64))
    return None


def check_name(dataset: str) -> str:
    if dataset == "embedded" or dataset in REMOTE or dataset.startswith("folder:"):
        return dataset
    raise ConfigError(
        f"dataset: expected 'embedded', one of {list(REMOTE)} or 'folder:PATH', got {dataset!r}"
    )


@dataclass
class FolderImages:
    images: np.ndarray  # (N, S, S, 3) uint8
    paths: list[str]
    skipped: list[str] = field(default_factory=list)


def read_image_folder(root, image_size: int = 32) -> FolderImages:
    """Read every image under ``root`` (recursively), RGB, resized to ``image_size`` square.

    Only regular files are opened (a symbolic link to one too): a FIFO, socket, device or
    folder named like an image is skipped, as are corrupt or unreadable files and images over
    Pillow's ``Image.MAX_IMAGE_PIXELS`` (its ``DecompressionBombWarning``); all are listed in
    ``skipped`` and the caller reports the count. An image over twice that limit (Pillow's
    ``DecompressionBombError``) stops the run with the file named.

    Raises:
        DatasetNotFound: ``root`` is missing or holds no readable image.
        FileFormatError: an image over twice Pillow's pixel limit (a decompression bomb).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFound(f"image folder {str(root)!r} does not exist or is not a directory")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    images, paths, skipped = [], [], []
    for p in files:
        image = _read_image(p, image_size)
        if image is None:
            skipped.append(str(p))
        else:
            images.append(image)
            paths.append(str(p))
    if not images:
        raise DatasetNotFound(
            f"image folder {str(root)!r} holds no readable image "
            f"({len(skipped)} unreadable file(s) skipped)"
        )
    return FolderImages(np.stack(images), paths, skipped)


def _read_image(path: Path, image_size: int) -> np.ndarray | None:
    """One image file as (S, S, 3) uint8, or ``None`` when it is not a regular file, cannot be
    read or decoded, or is over Pillow's pixel limit.

    The file is opened without blocking (``O_NONBLOCK``: a FIFO would wait for a writer) and its
    type read from the open descriptor, so it cannot be swapped between the check and the read.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:  # a socket, a dangling link, no permission
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    with os.fdopen(fd, "rb") as fh:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(fh) as im:
                    im = im.convert("RGB").resize((image_size, image_size), Image.BILINEAR)
                    return np.asarray(im, dtype=np.uint8)
        except Image.DecompressionBombError as e:
            raise _bomb_error(path, e) from e
        except (Image.DecompressionBombWarning, OSError, UnidentifiedImageError, ValueError):
            return None


def _bomb_error(path: Path, error: Exception) -> FileFormatError:
    """Pillow refuses to decode an image over twice ``Image.MAX_IMAGE_PIXELS`` (a decompression
    bomb: a small file that expands to gigabytes). Name the file instead of a traceback;
    skipping it silently would hide that the folder holds something unexpected."""
    return FileFormatError(
        f"dataset: {str(path)!r} is refused by Pillow as a possible decompression bomb "
        f"({error}). Remove it from the folder, or shrink it to the training size first"
    )


def train_test_splits(load_split, cfg):
    """The training split (optionally cut to ``cfg.limit_train``) and, when a kNN monitor is
    asked for and the data is labelled, the test split. ``load_split`` is the framework's own
    (``torch_impl.data.load_split`` or ``tf_impl.data.load_split``)."""
    args = (cfg.root, cfg.download, cfg.image_size, cfg.data_seed)
    train = load_split(cfg.dataset, cfg.train_split, *args)
    if cfg.limit_train:
        train = type(train)(train.images[: cfg.limit_train], train.labels[: cfg.limit_train])
    test = None
    if cfg.knn_every and train.labels.min() >= 0:
        test = load_split(cfg.dataset, "test", *args)
    return train, test
