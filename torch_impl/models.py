"""Encoders f and the projection head g, in PyTorch.

    x --encoder f--> h --head g--> z        (SimCLR Fig. 2; MoCo v2's f_q and f_k)

* Encoders: :class:`SmallCNN`, a 4-block CNN for the 32-px embedded dataset, and torchvision
  ResNet-18/50 (optionally with the CIFAR stem: 3x3 conv, stride 1, no max-pool), and
  ``resnet50_samepool``, whose stem max-pool pads as TensorFlow's "SAME" does
  (:class:`SamePadMaxPool2d`), the layout of google-research/simclr's checkpoints.
  ``tf_impl.models`` builds the same layers under the same names.
* :class:`ProjectionHead`: ``head_layers - 1`` blocks of Linear-BN-ReLU (or, with
  ``bn=False``, Linear-ReLU: MoCo v2's head), then a Linear.
* :class:`EncoderWithHead`: f then g, ``forward(x) -> (h, z)``; SimCLR has one, MoCo two.

BatchNorm is ``nn.BatchNorm2d`` / ``nn.BatchNorm1d``; ``bn_splits > 1`` builds
``torch_impl.split_bn.SplitBatchNorm`` instead, the one-process stand-in for several devices.

Conventions (named, since TensorFlow's differ): BatchNorm momentum 0.1 here is Keras's 0.9
(``running = (1 - 0.1) running + 0.1 batch``); eps 1e-5 on both sides; the running variance is
torch's *unbiased* batch variance, Keras stores the biased one.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from torch_impl.simclr_resnet import SamePadMaxPool2d, SimCLRResNet
from torch_impl.split_bn import batch_norm

__all__ = [
    "ENCODERS",
    "EncoderWithHead",
    "ProjectionHead",
    "SmallCNN",
    "autocast_dtype",
    "batch_norm",
    "build_encoder",
    "check_views",
    "normalize",
    "torch_dtype",
]

DTYPES = {"float32": torch.float32, "float64": torch.float64, "mixed_bfloat16": torch.float32}


def torch_dtype(dtype: str) -> torch.dtype:
    """The weights' ``torch.dtype`` of ``"float32"``, ``"float64"`` or ``"mixed_bfloat16"``
    (float32 weights, bf16 autocast in the step: Keras's policy of that name).

    Raises:
        ValueError: another name.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype: expected one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def autocast_dtype(dtype: str) -> torch.dtype | None:
    """The autocast dtype of a model built with ``dtype``: bf16 for ``"mixed_bfloat16"``."""
    torch_dtype(dtype)  # validates the name
    return torch.bfloat16 if dtype == "mixed_bfloat16" else None


class SmallCNN(nn.Module):
    """Four blocks of 3x3 conv-BN-ReLU, a 2x2 max-pool after each of the first three, then GAP.

    (B, 3, 32, 32) -> (B, 8w). With w = 32: 32 -> 16 -> 8 -> 4 px and 32/64/128/256 channels,
    about 15 M multiply-adds per image, so a 2-core CPU trains it in minutes.

    Where a block pools, it pools *before* the ReLU: conv-BN-pool-ReLU. Max and ReLU commute
    (``relu(max(x)) == max(relu(x))``, exactly, in floating point too) and so do their
    gradients: both orders send a window's gradient to its first maximum when that maximum is
    positive, and nowhere otherwise. So the network is conv-BN-ReLU-pool, bit for bit, with the
    ReLU and its backward on a quarter of the pixels. ``tests/test_torch_impl.py`` checks both
    orders for equality.
    """

    def __init__(self, width: int = 32, bn_splits: int = 1, views: int = 1):
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        for i in range(4):
            layers += [
                nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False),
                batch_norm(chans[i + 1], 2, bn_splits, views),
                *([nn.MaxPool2d(2)] if i < 3 else []),  # pool, then ReLU: see the docstring
                nn.ReLU(inplace=True),
            ]
        self.features = nn.Sequential(*layers)
        self.feature_dim = chans[-1]
        self.input_size = 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))  # (B, 8w)


def _resnet(depth: int, cifar_stem: bool, same_pool: bool = False):
    """A builder ``(bn_splits) -> torchvision ResNet-<depth>`` without its classifier."""

    def build(bn_splits: int = 1, views: int = 1) -> nn.Module:
        norm = partial(batch_norm, dim=2, bn_splits=bn_splits, views=views)
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
    "small_cnn": lambda bn_splits=1, views=1: SmallCNN(bn_splits=bn_splits, views=views),
    "resnet18_cifar": _resnet(18, True),
    "resnet18": _resnet(18, False),
    "resnet50_cifar": _resnet(50, True),
    "resnet50": _resnet(50, False),
    "resnet50_samepool": _resnet(50, False, same_pool=True),
}


def build_encoder(name: str, bn_splits: int = 1, views: int = 1) -> nn.Module:
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
    return ENCODERS[name](bn_splits, views)


class ProjectionHead(nn.Module):
    """g(h): ``num_layers - 1`` blocks of Linear-BN-ReLU, then Linear to ``out_dim``.

    (B, in_dim) -> (B, out_dim). ``num_layers=2`` is SimCLR v1's MLP (with BN, as in v2);
    ``bn=False`` makes each block Linear(with bias)-ReLU, MoCo v2's MLP head (``moco/builder.py``:
    ``Linear(2048, 2048), ReLU, fc``).
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int = 512,
        out_dim: int = 128,
        num_layers: int = 2,
        bn_splits: int = 1,
        views: int = 1,
        bn: bool = True,
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers: expected >= 1, got {num_layers}")
        layers: list[nn.Module] = []
        d = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(d, hidden_dim, bias=not bn))  # a BN's beta is the bias
            if bn:
                layers.append(batch_norm(hidden_dim, 1, bn_splits, views))
            layers.append(nn.ReLU(inplace=True))
            d = hidden_dim
        layers.append(nn.Linear(d, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class EncoderWithHead(nn.Module):
    """f followed by g: ``forward(x) -> (h, z)``, h (B, F) and z (B, proj_dim).

    ``bn_splits`` and ``views``: the BatchNorm layers' sub-batches (``torch_impl.split_bn``;
    1 and 1 build plain BatchNorm). ``head_bn``: :class:`ProjectionHead`'s ``bn``.
    """

    def __init__(
        self,
        encoder: str = "small_cnn",
        hidden_dim: int = 512,
        proj_dim: int = 128,
        head_layers: int = 2,
        bn_splits: int = 1,
        views: int = 1,
        head_bn: bool = True,
    ):
        super().__init__()
        self.encoder = build_encoder(encoder, bn_splits, views)
        self.head = ProjectionHead(
            self.encoder.feature_dim, hidden_dim, proj_dim, head_layers, bn_splits, views, head_bn
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h, z)`` of x (B, 3, S, S): h (B, F), z (B, proj_dim)."""
        h = self.encoder(x)  # (B, F)
        return h, self.head(h)  # (B, F), (B, proj_dim)


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


def _simclr_resnet(depth: int, width: int, sk: bool):
    """A builder of google-research/simclr's ResNet (``torch_impl.simclr_resnet``)."""

    def build(bn_splits: int = 1, views: int = 1) -> nn.Module:
        return SimCLRResNet(depth, width, sk, bn_splits, views)

    return build


# google-research/simclr's other ResNets, simclr_r<depth>_<width>x_sk<0|1> (depths 50-152, widths
# 1x-4x, selective kernels): registered last, so the definitions above keep their lines
from shared.run.encoders import SIMCLR_RESNETS  # noqa: E402

ENCODERS.update({name: _simclr_resnet(*spec) for name, spec in SIMCLR_RESNETS.items()})
