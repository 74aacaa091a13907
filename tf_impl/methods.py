"""The two methods in TensorFlow: build the model a configuration describes, or load a trained one.

``torch_impl.methods`` has the same names. The import graph runs ``models`` -> ``simclr`` / ``moco`` -> ``distributed`` and ``fast_kernels`` -> ``methods`` -> ``train`` and the applications, so nothing below imports the training loop.
"""

from __future__ import annotations

import tensorflow as tf

from shared.run.config import TrainConfig, load_config
from tf_impl import fast_kernels
from tf_impl.checkpoint import restore_checkpoint
from tf_impl.distributed import DISTRIBUTED, convert_sync_batchnorm
from tf_impl.moco import MoCo
from tf_impl.simclr import SimCLR
from tf_impl.split_bn import merge_bn_splits

__all__ = ["METHODS", "build_model", "load_trained"]

METHODS = {"simclr": SimCLR, "moco": MoCo}  # the keys are shared.run.config.METHODS


def build_model(cfg: TrainConfig, dtype: str | None = None):
    """The ``SimCLR`` or ``MoCo`` that ``cfg`` describes; dtype defaults to the amp setting.
    Inside a ``tf.distribute`` strategy's scope its ``tf_impl.distributed`` subclass
    (``DISTRIBUTED``), with ``cfg.sync_bn`` its BatchNorm synchronised. With
    ``cfg.fast_kernels``, ``tf_impl.fast_kernels.apply`` swaps its kernels in."""
    dtype = dtype or ("mixed_bfloat16" if cfg.amp else "float32")
    cls = DISTRIBUTED[cfg.method] if tf.distribute.has_strategy() else METHODS[cfg.method]
    model = cls(**cfg.model_kwargs(), dtype=dtype)
    if cfg.sync_bn:
        convert_sync_batchnorm(model)
    return fast_kernels.apply(model) if cfg.fast_kernels else model


def load_trained(run_dir):
    """The model of a finished (or interrupted) run and its ``TrainConfig``.

    SplitBatchNorm is merged back to one BN (evaluation and fine-tuning see ordinary batches).

    Raises:
        CheckpointError: no checkpoint in ``run_dir``. FileNotFoundError: no ``config.json``.
    """
    cfg = load_config(run_dir)
    model = build_model(cfg)
    restore_checkpoint(run_dir, model)
    merge_bn_splits(model.backbone)
    return model, cfg
