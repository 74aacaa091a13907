"""Datasets in TensorFlow, for both methods: the embedded default, tfds (cifar10/100, stl10),
image folders.

Every loader returns a ``shared.run.data.Split`` (uint8 NHWC images, int64 labels, -1 where
unlabeled), the layout ``torch_impl.data.load_split`` returns; ``tf_impl.train`` wraps it in a
``tf.data`` pipeline (``Dataset.from_tensor_slices`` + ``map`` with AUTOTUNE).
"""

from __future__ import annotations

import numpy as np

from shared.run.data import Split
from shared.run.datasets import DatasetNotFound, download_failed, load_local_split, missing_message

__all__ = ["DatasetNotFound", "load_split"]

TFDS_SPLITS = {"unlabeled": "unlabelled"}  # tfds spells STL-10's unlabelled split the British way


def _tfds(name: str, root: str, split: str, download: bool) -> Split:
    import tensorflow_datasets as tfds

    tfds_split = TFDS_SPLITS.get(split, split)
    try:
        ds = tfds.load(name, split=tfds_split, data_dir=root, download=download, as_supervised=True)
    except (AssertionError, FileNotFoundError, tfds.core.registered.DatasetNotFoundError) as e:
        how = (
            f"run once with --download and network access (tfds.load('{name}', "
            f"data_dir={str(root)!r}, download=True)), or copy a prepared tfds folder there"
        )
        raise DatasetNotFound(missing_message(name, root, how) + f" [{type(e).__name__}]") from e
    except OSError as e:  # requests and urllib3 errors are OSErrors: offline, DNS, refused
        raise DatasetNotFound(download_failed(name, root, e)) from e
    pairs = list(tfds.as_numpy(ds))  # element-wise: batch_size=-1 aborts on mocked datasets
    images = np.stack([p[0] for p in pairs]).astype(np.uint8)
    labels = np.array([p[1] for p in pairs], dtype=np.int64)
    return Split(images, labels if split != "unlabeled" else np.full(len(labels), -1, np.int64))


def load_split(
    dataset: str = "embedded",
    split: str = "train",
    root: str = "./data",
    download: bool = False,
    image_size: int = 32,
    seed: int = 0,
) -> Split:
    """Load one split; arguments and errors as ``torch_impl.data.load_split``.

    ``root`` is tfds' ``data_dir`` here (torchvision's ``root`` there).
    """
    local = load_local_split(dataset, split, image_size, seed)
    if local is not None:
        return local
    return _tfds(dataset, root, split, download)
