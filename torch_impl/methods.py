"""The two methods in PyTorch: build the model a configuration describes, or load a trained one.

``tf_impl.methods`` has the same names. The import graph runs ``models`` -> ``simclr`` / ``moco`` -> ``distributed`` and ``fast_kernels`` -> ``methods`` -> ``train`` and the applications, so nothing below imports the training loop.
"""

from __future__ import annotations

from shared.run.config import TrainConfig, load_config
from torch_impl import fast_kernels
from torch_impl.checkpoint import restore_checkpoint
from torch_impl.distributed import DISTRIBUTED, convert_sync_batchnorm, world_size
from torch_impl.moco import MoCo
from torch_impl.simclr import SimCLR
from torch_impl.split_bn import merge_bn_splits

__all__ = ["METHODS", "build_model", "load_trained"]

METHODS = {"simclr": SimCLR, "moco": MoCo}  # the keys are shared.run.config.METHODS


def build_model(cfg: TrainConfig, dtype: str = "float32"):
    """The ``SimCLR`` or ``MoCo`` that ``cfg`` describes (a resolved config): inside a process
    group of several ranks its ``torch_impl.distributed`` subclass (``DISTRIBUTED``), with
    ``cfg.sync_bn`` its BatchNorm synchronised; with ``cfg.fast_kernels``,
    ``torch_impl.fast_kernels.apply`` (the process's malloc setting)."""
    cls = DISTRIBUTED[cfg.method] if world_size() > 1 else METHODS[cfg.method]
    model = cls(**cfg.model_kwargs(), dtype=dtype)
    if cfg.sync_bn:
        convert_sync_batchnorm(model)
    return fast_kernels.apply(model) if cfg.fast_kernels else model


def load_trained(run_dir):
    """The model of a finished (or interrupted) run, in eval mode, and its ``TrainConfig``.

    SplitBatchNorm is merged back to one BN (evaluation and fine-tuning see ordinary batches).

    Raises:
        CheckpointError: no ``config.json`` or no checkpoint in ``run_dir``.
    """
    cfg = load_config(run_dir)
    model = build_model(cfg)
    restore_checkpoint(run_dir, model)
    merge_bn_splits(model.backbone)
    return model.eval(), cfg
