"""Encoders f, the projection head g and SplitBatchNorm, in PyTorch.

    x --encoder f--> h --head g--> z        (SimCLR Fig. 2; MoCo v2's f_q and f_k)

* Encoders: :class:`SmallCNN`, a 4-block CNN for the 32-px embedded dataset, and torchvision
  ResNet-18/50 (optionally with the CIFAR stem: 3x3 conv, stride 1, no max-pool), and
  ``resnet50_samepool``, whose stem max-pool pads as TensorFlow's "SAME" does
  (:class:`SamePadMaxPool2d`), the layout of google-research/simclr's checkpoints.
  ``tf_impl.models`` builds the same layers under the same names.
* :class:`ProjectionHead`: ``head_layers - 1`` blocks of Linear-BN-ReLU, then a Linear.
* :class:`EncoderWithHead`: f then g, ``forward(x) -> (h, z)``; SimCLR has one, MoCo two.
* :class:`SplitBatchNorm`: BatchNorm whose training statistics are taken over ``num_splits``
  contiguous sub-batches: the single-device stand-in for MoCo's Shuffle-BN.

Conventions (named, since TensorFlow's differ): BatchNorm momentum 0.1 here is Keras's 0.9
(``running = (1 - 0.1) running + 0.1 batch``); eps 1e-5 on both sides; the running variance is
torch's *unbiased* batch variance, Keras stores the biased one.
"""

from __future__ import annotations

import contextlib
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from torch_impl.distributed import all_reduce_with_grad, world_size

__all__ = [
    "ENCODERS",
    "EncoderWithHead",
    "ProjectionHead",
    "SmallCNN",
    "SplitBatchNorm",
    "amp_context",
    "build_encoder",
    "device_order",
    "merge_bn_splits",
    "set_sync_bn",
    "torch_dtype",
]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def torch_dtype(dtype: str) -> torch.dtype:
    """``"float32"`` or ``"float64"`` as a ``torch.dtype`` (``ValueError`` otherwise)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype: expected one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


class SplitBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm (of (B, C) or (B, C, H, W) inputs) whose training-mode statistics come from
    ``num_splits`` sub-batches, or from every process (``sync``).

    The batch is cut into ``num_splits`` contiguous chunks of B / S rows; each chunk is
    normalised with its own mean and biased variance, as S devices would each normalise their
    own rows. The running statistics move towards the mean over chunks of each chunk's mean and
    *unbiased* variance (torch's BN convention). ``num_splits = 1`` is exactly
    ``nn.BatchNorm1d`` / ``nn.BatchNorm2d``. In eval mode the running statistics are used.

    ``sync = True`` (``set_sync_bn``) is SyncBatchNorm: inside a process group the statistics
    are those of the global batch, all-reduced with their gradients (``torch.nn.SyncBatchNorm``
    refuses CPU tensors; this runs on gloo and nccl alike). Alone, it is ordinary BN.

    Example:
        >>> bn = SplitBatchNorm(3, num_splits=2)
        >>> x = torch.cat([torch.zeros(2, 3, 1, 1), 10 + torch.randn(2, 3, 1, 1)])
        >>> bool(bn(x)[:2].abs().max() < 1e-6)  # the first split alone: all zeros -> 0
        True
    """

    def __init__(self, num_features: int, num_splits: int = 1, **kw):
        super().__init__(num_features, **kw)
        self.num_splits = int(num_splits)
        self.sync = False

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() not in (2, 4):
            raise ValueError(f"x: expected a (B, C) or (B, C, H, W) input, got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not self.training or (self.num_splits == 1 and not (self.sync and world_size() > 1)):
            return super().forward(x)
        b, c = x.shape[:2]
        s = self.num_splits
        xs = (x if x.dtype == torch.float64 else x.float()).reshape(s, b // s, c, -1)
        if self.sync and world_size() > 1:  # (1, B, C, HW) per rank; statistics over all ranks
            mean, var, n = _global_moments(xs)
        else:
            mean = xs.mean(dim=(1, 3), keepdim=True)  # (S, 1, C, 1)
            var = xs.var(dim=(1, 3), unbiased=False, keepdim=True)
            n = xs.shape[1] * xs.shape[3]  # values per channel in one split
        y = ((xs - mean) * torch.rsqrt(var + self.eps)).reshape(x.shape)
        shape = (1, c) + (1,) * (x.dim() - 2)
        y = y * self.weight.view(shape) + self.bias.view(shape)
        with torch.no_grad():
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(
                mean.mean(0).flatten().to(self.running_mean), alpha=m
            )
            unbiased = var.mean(0).flatten() * n / max(n - 1, 1)
            self.running_var.mul_(1 - m).add_(unbiased.to(self.running_var), alpha=m)
            self.num_batches_tracked.add_(1)
        return y.to(x.dtype)


def _global_moments(xs: torch.Tensor):
    """Mean and biased variance (1, 1, C, 1) of ``xs`` (S, b, C, HW) over every rank's rows,
    differentiable (``torch_impl.distributed.all_reduce_with_grad``), and the global count."""
    count = xs.shape[0] * xs.shape[1] * xs.shape[3] * world_size()
    sums = torch.stack([xs.sum(dim=(0, 1, 3)), (xs * xs).sum(dim=(0, 1, 3))])  # (2, C)
    total = all_reduce_with_grad(sums)
    mean = (total[0] / count).view(1, 1, -1, 1)
    var = (total[1] / count).view(1, 1, -1, 1) - mean * mean
    return mean, var, count


def set_sync_bn(model: nn.Module) -> None:
    """Make every SplitBatchNorm of ``model`` a SyncBatchNorm (statistics of the global batch)."""
    for m in model.modules():
        if isinstance(m, SplitBatchNorm):
            if m.num_splits != 1:
                raise ValueError(
                    f"sync_bn: expected bn_splits 1 (SyncBN normalises the whole global batch), "
                    f"got {m.num_splits}"
                )
            m.sync = True


class SmallCNN(nn.Module):
    """Four blocks of 3x3 conv-BN-ReLU, a 2x2 max-pool after each of the first three, then GAP.

    (B, 3, 32, 32) -> (B, 8w). With w = 32: 32 -> 16 -> 8 -> 4 px and 32/64/128/256 channels,
    about 15 M multiply-adds per image, so a 2-core CPU trains it in minutes.

    Where a block pools, it pools *before* the ReLU: conv-BN-pool-ReLU. Max and ReLU commute
    (``relu(max(x)) == max(relu(x))``, exactly, in floating point too) and so do their
    gradients: both orders send a window's gradient to its first maximum when that maximum is
    positive, and nowhere otherwise. So the network is conv-BN-ReLU-pool, bit for bit, with the
    ReLU and its backward on a quarter of the pixels: 8 % less time per SimCLR step on this
    CPU. ``tests/test_torch_impl.py`` checks both orders for equality.
    """

    def __init__(self, width: int = 32, bn_splits: int = 1):
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        for i in range(4):
            layers += [
                nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False),
                SplitBatchNorm(chans[i + 1], bn_splits),
                *([nn.MaxPool2d(2)] if i < 3 else []),  # pool, then ReLU: see the docstring
                nn.ReLU(inplace=True),
            ]
        self.features = nn.Sequential(*layers)
        self.feature_dim = chans[-1]
        self.input_size = 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))  # (B, 8w)


class SamePadMaxPool2d(nn.Module):
    """A max-pool with TensorFlow's "SAME" padding: ``ceil(n / stride)`` outputs, the padding
    split with the smaller half before (0 before and 1 after for 3x3 stride 2 on an even
    size), padded with -inf. google-research/simclr's ResNet pools so; torchvision pads 1 on
    both sides, which moves every window by a pixel."""

    def __init__(self, kernel_size: int = 3, stride: int = 2):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for n in (x.shape[3], x.shape[2]):  # F.pad's order: last dim first
            total = max((-(-n // self.stride) - 1) * self.stride + self.kernel_size - n, 0)
            pads += [total // 2, total - total // 2]
        x = F.pad(x, pads, value=float("-inf"))
        return F.max_pool2d(x, self.kernel_size, self.stride)


def _resnet(depth: int, cifar_stem: bool, same_pool: bool = False):
    """A builder ``(bn_splits) -> torchvision ResNet-<depth>`` without its classifier."""

    def build(bn_splits: int = 1) -> nn.Module:
        norm = partial(SplitBatchNorm, num_splits=bn_splits)
        net = getattr(torchvision.models, f"resnet{depth}")(weights=None, norm_layer=norm)
        if cifar_stem:  # SimCLR appendix B.9: 3x3 stride-1 first conv, no max-pool, for 32 px
            net.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif same_pool:
            net.maxpool = SamePadMaxPool2d(3, 2)
        net.feature_dim = net.fc.in_features
        net.fc = nn.Identity()  # h is the pooled feature before the classifier
        net.input_size = 32 if cifar_stem else 224
        return net

    return build


ENCODERS = {
    "small_cnn": lambda bn_splits=1: SmallCNN(bn_splits=bn_splits),
    "resnet18_cifar": _resnet(18, True),
    "resnet18": _resnet(18, False),
    "resnet50_cifar": _resnet(50, True),
    "resnet50": _resnet(50, False),
    "resnet50_samepool": _resnet(50, False, same_pool=True),
}


def build_encoder(name: str, bn_splits: int = 1) -> nn.Module:
    """An encoder by name (``ENCODERS``); it has ``feature_dim`` and ``input_size`` attributes.

    Raises:
        ValueError: unknown name.

    Example:
        >>> enc = build_encoder("small_cnn")
        >>> enc(torch.zeros(2, 3, 32, 32)).shape, enc.feature_dim
        (torch.Size([2, 256]), 256)
    """
    if name not in ENCODERS:
        raise ValueError(f"encoder: expected one of {sorted(ENCODERS)}, got {name!r}")
    return ENCODERS[name](bn_splits)


class ProjectionHead(nn.Module):
    """g(h): ``num_layers - 1`` blocks of Linear-BN-ReLU, then Linear to ``out_dim``.

    (B, in_dim) -> (B, out_dim). ``num_layers=2`` is SimCLR v1's MLP (with BN, as in v2) and
    MoCo v2's MLP head (plus BN).
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int = 512,
        out_dim: int = 128,
        num_layers: int = 2,
        bn_splits: int = 1,
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"head_layers: expected >= 1, got {num_layers}")
        layers: list[nn.Module] = []
        d = in_dim
        for _ in range(num_layers - 1):
            layers += [
                nn.Linear(d, hidden_dim, bias=False),
                SplitBatchNorm(hidden_dim, bn_splits),
                nn.ReLU(inplace=True),
            ]
            d = hidden_dim
        layers.append(nn.Linear(d, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class EncoderWithHead(nn.Module):
    """f followed by g: ``forward(x) -> (h, z)``, h (B, F) and z (B, proj_dim)."""

    def __init__(
        self,
        encoder: str = "small_cnn",
        hidden_dim: int = 512,
        proj_dim: int = 128,
        head_layers: int = 2,
        bn_splits: int = 1,
    ):
        super().__init__()
        self.encoder = build_encoder(encoder, bn_splits)
        self.head = ProjectionHead(
            self.encoder.feature_dim, hidden_dim, proj_dim, head_layers, bn_splits
        )
        self.bn_splits = int(bn_splits)

    def forward(self, x: torch.Tensor, view_chunks: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h, z)`` of x (B, 3, S, S): h (B, F), z (B, proj_dim).

        ``view_chunks``: x is that many equal chunks (views) concatenated. With ``bn_splits``
        S > 1 the rows are regrouped so that BN split j holds the j-th 1/S of *every* chunk,
        which is what device j of S would hold (its share of each view), and put back after.
        """
        if self.training and self.bn_splits > 1 and view_chunks > 1:
            order = device_order(x.shape[0], view_chunks, self.bn_splits, x.device)
            h, z = self(x[order])
            back = torch.argsort(order)
            return h[back], z[back]
        h = self.encoder(x)  # (B, F)
        return h, self.head(h)  # (B, F), (B, proj_dim)


def device_order(rows: int, chunks: int, splits: int, device=None) -> torch.Tensor:
    """The row order that puts the j-th 1/splits of each of ``chunks`` chunks in split j.

    Example:
        >>> device_order(8, 2, 2).tolist()  # chunks [0..3], [4..7]; split 0 gets 0,1 and 4,5
        [0, 1, 4, 5, 2, 3, 6, 7]
    """
    idx = torch.arange(rows, device=device).view(chunks, splits, -1)  # (C, S, B/(C S))
    return idx.transpose(0, 1).reshape(-1)


def check_views(x1, x2, min_batch: int = 2) -> None:
    """Raise ``ValueError`` unless x1, x2 are equal-shape (B, 3, S, S) batches, B >= min_batch.

    Any S >= 8 works: every encoder ends in global average pooling, and the augmentation makes
    the crops (``--image-size``) whatever the dataset's own size (96 px for STL-10).
    """
    for name, x in (("x1", x1), ("x2", x2)):
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name}: expected a (B, 3, H, W) image tensor, got {shape}")
    if x1.shape != x2.shape:
        raise ValueError(
            f"x2: expected the same shape as x1 {tuple(x1.shape)}, got {tuple(x2.shape)}"
        )
    if x1.shape[0] < min_batch:
        raise ValueError(f"x1: expected a batch of at least {min_batch} images, got {x1.shape[0]}")
    if x1.shape[2] != x1.shape[3] or x1.shape[2] < 8:
        raise ValueError(
            f"x1: expected square images of at least 8x8 pixels, got {tuple(x1.shape[2:])}"
        )


def normalize(z: torch.Tensor) -> torch.Tensor:
    """Row-wise L2 normalisation in float32 (float64 stays float64), as the losses do."""
    return F.normalize(z if z.dtype == torch.float64 else z.float(), dim=1)


def amp_context(x: torch.Tensor, amp_dtype: torch.dtype | None):
    """``torch.autocast`` on x's device in ``amp_dtype`` (bf16), or a no-op for ``None``.

    TensorFlow's counterpart is the Keras dtype policy a model is built under.
    """
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(x.device.type, dtype=amp_dtype)


def merge_bn_splits(model: nn.Module) -> nn.Module:
    """Set every SplitBatchNorm of ``model`` to one split (ordinary BN), in place."""
    for m in model.modules():
        if isinstance(m, SplitBatchNorm):
            m.num_splits = 1
    return model
