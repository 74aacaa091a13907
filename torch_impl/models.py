"""Encoders, the projection head, the SimCLR model, and MoCo's two state updates, in PyTorch.

    x1, x2 --encoder f--> h1, h2 --head g--> z1, z2 --NT-Xent--> loss     (SimCLR, Fig. 2)

* Encoders: torchvision ResNet-18/50 (optionally with the CIFAR stem: 3x3 conv, stride 1, no
  max-pool) and :class:`SmallCNN`, a 4-block CNN for the 32-px embedded dataset that
  ``tf_impl.models.SmallCNN`` matches layer for layer.
* :class:`ProjectionHead`: Linear-BN-ReLU blocks then a Linear to 128 (SimCLR v2's MLP).
* :class:`SimCLR`: encoder + head; forward on two views returns (h1, h2, z1, z2). Both views go
  through the encoder as one batch of 2N, so BatchNorm sees both views (global BN, as the
  official code does across TPU cores).
* :func:`momentum_update` and :func:`dequeue_and_enqueue`: the MoCo updates, mirrored by
  ``tf_impl.models`` (the TF side uses them for MoCo; here they serve the parity tests).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torchvision

from shared.queue import check_momentum

__all__ = [
    "ENCODERS",
    "ProjectionHead",
    "SimCLR",
    "SmallCNN",
    "build_encoder",
    "dequeue_and_enqueue",
    "momentum_update",
]


class SmallCNN(nn.Module):
    """Four blocks of 3x3 conv-BN-ReLU, a 2x2 max-pool after each of the first three, then GAP.

    (B, 3, 32, 32) -> (B, 8w). With w = 32: 32 -> 16 -> 8 -> 4 px and 32/64/128/256 channels,
    about 15 M multiply-adds per image, so a 2-core CPU trains it in minutes.
    """

    def __init__(self, width: int = 32):
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        for i in range(4):
            layers += [
                nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False),
                nn.BatchNorm2d(chans[i + 1]),
                nn.ReLU(inplace=True),
            ]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.feature_dim = chans[-1]
        self.input_size = 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))  # (B, 8w)


def _resnet(name: str, cifar_stem: bool) -> nn.Module:
    net = getattr(torchvision.models, name)(weights=None)  # no pretrained weights, no download
    if cifar_stem:  # SimCLR appendix B.9: 3x3 stride-1 first conv, no max-pool, for 32 px
        net.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    net.feature_dim = net.fc.in_features
    net.fc = nn.Identity()  # h is the pooled feature before the classifier
    net.input_size = 32 if cifar_stem else 224
    return net


ENCODERS = {
    "small_cnn": lambda: SmallCNN(),
    "resnet18_cifar": lambda: _resnet("resnet18", True),
    "resnet18": lambda: _resnet("resnet18", False),
    "resnet50_cifar": lambda: _resnet("resnet50", True),
    "resnet50": lambda: _resnet("resnet50", False),
}


def build_encoder(name: str) -> nn.Module:
    """An encoder by name (``ENCODERS``); it has ``feature_dim`` and ``input_size`` attributes."""
    if name not in ENCODERS:
        raise ValueError(f"encoder: expected one of {sorted(ENCODERS)}, got {name!r}")
    return ENCODERS[name]()


class ProjectionHead(nn.Module):
    """g(h): ``num_layers - 1`` blocks of Linear-BN-ReLU, then Linear to ``out_dim``.

    (B, in_dim) -> (B, out_dim). ``num_layers=2`` is SimCLR v1's MLP (with BN, as in v2).
    """

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 128, num_layers: int = 2):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers: expected >= 1, got {num_layers}")
        layers: list[nn.Module] = []
        d = in_dim
        for _ in range(num_layers - 1):
            layers += [
                nn.Linear(d, hidden_dim, bias=False),
                nn.BatchNorm1d(hidden_dim),
                nn.ReLU(inplace=True),
            ]
            d = hidden_dim
        layers.append(nn.Linear(d, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


def check_views(x1, x2, input_size: int, encoder_name: str = "encoder") -> None:
    """Raise ``ValueError`` unless x1, x2 are (B, 3, S, S) float batches with B >= 2."""
    for name, x in (("x1", x1), ("x2", x2)):
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name}: expected a (B, 3, H, W) image tensor, got {shape}")
    if x1.shape != x2.shape:
        raise ValueError(
            f"x2: expected the same shape as x1 {tuple(x1.shape)}, got {tuple(x2.shape)}"
        )
    if x1.shape[0] < 2:
        raise ValueError(
            f"x1: expected a batch of at least 2 images (NT-Xent needs negatives), "
            f"got batch size {x1.shape[0]}"
        )
    if tuple(x1.shape[2:]) != (input_size, input_size):
        raise ValueError(
            f"x1: expected {input_size}x{input_size} images for encoder "
            f"'{encoder_name}', got {tuple(x1.shape[2:])}"
        )


class SimCLR(nn.Module):
    """Encoder f and projection head g. ``forward(x1, x2) -> (h1, h2, z1, z2)``."""

    def __init__(
        self,
        encoder: str = "small_cnn",
        hidden_dim: int = 512,
        proj_dim: int = 128,
        head_layers: int = 2,
    ):
        super().__init__()
        self.encoder_name = encoder
        self.encoder = build_encoder(encoder)
        self.head = ProjectionHead(self.encoder.feature_dim, hidden_dim, proj_dim, head_layers)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor):
        check_views(x1, x2, self.encoder.input_size, self.encoder_name)
        n = x1.shape[0]
        h = self.encoder(torch.cat([x1, x2], dim=0))  # (2N, F): one pass, BN over both views
        z = self.head(h)  # (2N, proj_dim)
        return h[:n], h[n:], z[:n], z[n:]


@torch.no_grad()
def momentum_update(query_encoder: nn.Module, key_encoder: nn.Module, momentum: float) -> None:
    """MoCo eq. (2): ``theta_k <- m theta_k + (1 - m) theta_q`` over the trainable parameters.

    BatchNorm running statistics are *not* touched: as in the official MoCo code, the key
    encoder keeps its own, updated by its own forward passes in training mode. Same choice in
    ``tf_impl.models.momentum_update``.
    """
    m = check_momentum(momentum)
    for pk, pq in zip(key_encoder.parameters(), query_encoder.parameters()):
        pk.mul_(m).add_(pq.detach(), alpha=1.0 - m)


@torch.no_grad()
def dequeue_and_enqueue(queue: torch.Tensor, ptr: torch.Tensor, keys: torch.Tensor) -> None:
    """Write ``keys`` (B, D) into the (K, D) ring buffer at ``ptr`` in place; advance ``ptr``.

    Exact FIFO for any B and K (wrap-around, K % B != 0, B > K keeps the newest K), as
    ``shared.queue.dequeue_and_enqueue``. O(B D): only the written rows are touched.
    """
    k_size, dim = queue.shape
    if keys.ndim != 2 or keys.shape[1] != dim:
        raise ValueError(f"keys: expected shape (B, {dim}), got {tuple(keys.shape)}")
    b = keys.shape[0]
    start = max(b - k_size, 0)
    rows = (ptr + torch.arange(start, b, device=queue.device)) % k_size  # (min(B, K),)
    queue.index_copy_(0, rows, keys[start:].to(queue.dtype))
    ptr.copy_((ptr + b) % k_size)
