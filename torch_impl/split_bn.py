"""Several devices' BatchNorm in one process: the stand-in for MoCo's Shuffle-BN on one device.

On W devices each BatchNorm normalises its own device's rows. One process reproduces that
with :class:`SplitBatchNorm`: the batch is cut into ``num_splits`` contiguous sub-batches,
each normalised with its own statistics. MoCo needs it (its key shuffle only matters when a
query and its key sit in different BN groups), and the distributed tests need it (W ranks
equal one process with W splits). ``bn_splits = 1``, the default everywhere, builds plain
``nn.BatchNorm2d`` / ``nn.BatchNorm1d`` and never touches this module.

* :class:`SplitBatchNorm`: the BatchNorm. With ``views = V`` (SimCLR passes both views as
  one batch of 2N: V = 2) the batch is V equal chunks and split j holds the j-th 1/S of
  *each* chunk, which is what device j of S holds.
* :func:`merge_bn_splits`: one split again (evaluation and fine-tuning see ordinary batches).

``tf_impl.split_bn`` is the same file in TensorFlow.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["SplitBatchNorm", "merge_bn_splits"]


class SplitBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm of (B, C) or (B, C, H, W) inputs whose training statistics come from
    ``num_splits`` sub-batches of B / S rows: split j is rows [j B/S, (j+1) B/S), or, with
    ``views = V``, the j-th 1/S of each of the V equal chunks of the batch.

    Each sub-batch is normalised with its own mean and biased variance; the running
    statistics move towards the mean over sub-batches of each one's mean and *unbiased*
    variance (torch's convention). The S sub-batches are laid side by side as S C channels
    of one (B / S, S C, ...) batch, so one call of torch's fused ``F.batch_norm`` does the
    work (the layout of the MoCo CIFAR demo's SplitBatchNorm, with contiguous sub-batches).
    In eval mode, and with ``num_splits = 1``, it is ``nn.BatchNorm2d`` / ``nn.BatchNorm1d``.

    Example:
        >>> bn = SplitBatchNorm(3, num_splits=2)
        >>> x = torch.cat([torch.zeros(2, 3, 1, 1), 10 + torch.randn(2, 3, 1, 1)])
        >>> bool(bn(x)[:2].abs().max() < 1e-6)  # the first split alone: all zeros -> 0
        True
    """

    def __init__(self, num_features: int, num_splits: int = 1, views: int = 1, **kw):
        super().__init__(num_features, **kw)
        self.num_splits, self.views = int(num_splits), int(views)

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() not in (2, 4):
            raise ValueError(f"x: expected a (B, C) or (B, C, H, W) input, got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        s = self.num_splits
        if not self.training or s == 1:
            return super().forward(x)
        b, c, v = x.shape[0], x.shape[1], self.views
        xf = x if x.dtype == torch.float64 else x.float()  # statistics in float32 under bf16
        # (V, S, n, C, HW) -> (V n, S C, HW): split j's rows side by side as channels j C ...
        side = xf.reshape(v, s, b // (v * s), c, -1).transpose(1, 2).reshape(b // s, s * c, -1)
        mean, var = self.running_mean.repeat(s), self.running_var.repeat(s)  # (S C,) each
        y = F.batch_norm(
            side,
            mean,
            var,
            self.weight.repeat(s),
            self.bias.repeat(s),
            True,
            self.momentum,
            self.eps,
        )  # (B/S, S C, HW); mean and var moved once per split
        with torch.no_grad():
            self.running_mean.copy_(mean.view(s, c).mean(0))
            self.running_var.copy_(var.view(s, c).mean(0))
            self.num_batches_tracked.add_(1)
        y = y.reshape(v, b // (v * s), s, c, -1).transpose(1, 2).reshape(x.shape)
        return y.to(x.dtype)


def merge_bn_splits(model: nn.Module) -> nn.Module:
    """Set every SplitBatchNorm of ``model`` to one split (ordinary BN), in place."""
    for m in model.modules():
        if isinstance(m, SplitBatchNorm):
            m.num_splits = 1
    return model


def batch_norm(num_features: int, dim: int = 2, bn_splits: int = 1, views: int = 1) -> nn.Module:
    """``nn.BatchNorm2d`` (``dim=2``) or ``nn.BatchNorm1d``; with ``bn_splits`` > 1 a
    ``SplitBatchNorm`` of that many sub-batches (``views``: see ``torch_impl.split_bn``)."""
    if bn_splits == 1:
        return nn.BatchNorm2d(num_features) if dim == 2 else nn.BatchNorm1d(num_features)
    return SplitBatchNorm(num_features, bn_splits, views)
