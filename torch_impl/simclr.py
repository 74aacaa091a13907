"""SimCLR (Chen et al. 2020) in PyTorch: the model and its training step.

Algorithm 1 of the paper, one step (``SimCLR.train_step``)::

    h, z = f(x1 ++ x2), g(h)        # both views in one batch of 2N: BN sees both views
    loss = nt_xent(z1, z2, tau)     # mean over the 2N anchors, self-similarity excluded
    loss.backward()
    optimizer.step()

``tf_impl.simclr`` is the same file in TensorFlow. On several processes,
``torch_impl.distributed.DistributedSimCLR`` takes the negatives from every rank.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from torch_impl.losses import nt_xent
from torch_impl.models import EncoderWithHead, autocast_dtype, check_views, torch_dtype

__all__ = ["SimCLR"]


class SimCLR(nn.Module):
    """Encoder f and projection head g, and the NT-Xent step.

    Args:
        encoder: an ``ENCODERS`` name.
        hidden_dim, proj_dim, head_layers: the projection head g; head_bn: a BatchNorm in its
            hidden layers (MoCo v2's head has none).
        temperature: tau of NT-Xent.
        bn_splits: BatchNorm sub-batches (``torch_impl.split_bn``; 1: plain BatchNorm).
        dtype: ``"float32"``, ``"float64"`` (parity work) or ``"mixed_bfloat16"`` (float32
            weights, the step under bf16 autocast).

    The defaults are the configuration that trains (``tests/test_methods.py`` holds them equal
    to ``shared.run.config.model_defaults("simclr")``).

    Example:
        >>> m = SimCLR(encoder="small_cnn", hidden_dim=16, proj_dim=8)
        >>> [t.shape[1] for t in m(torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32))]
        [256, 256, 8, 8]
    """

    method = "simclr"

    def __init__(
        self,
        encoder: str = "small_cnn",
        hidden_dim: int = 512,
        proj_dim: int = 128,
        head_layers: int = 2,
        head_bn: bool = True,
        temperature: float = 0.2,
        bn_splits: int = 1,
        dtype: str = "float32",
    ):
        super().__init__()
        self.encoder_name = encoder
        self.temperature = float(temperature)
        # views=2: with bn_splits S, BN split j holds the j-th 1/S of each view, as device j would
        self.net = EncoderWithHead(
            encoder, hidden_dim, proj_dim, head_layers, bn_splits, views=2, head_bn=head_bn
        )
        self.autocast = autocast_dtype(dtype)
        self.to(torch_dtype(dtype))

    @property
    def backbone(self) -> nn.Module:
        """The encoder f whose features h are evaluated."""
        return self.net.encoder

    def forward(self, x1: torch.Tensor, x2: torch.Tensor):
        """``(h1, h2, z1, z2)`` of two (N, 3, S, S) view batches; one pass over the 2N views."""
        check_views(x1, x2)
        n = x1.shape[0]
        h, z = self.net(torch.cat([x1, x2]))  # (2N, F), (2N, D)
        return h[:n], h[n:], z[:n], z[n:]

    def loss(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """NT-Xent of the two views' projections (SimCLR eq. 1); the logits in float32."""
        return nt_xent(z1, z2, self.temperature)

    def train_step(self, x1: torch.Tensor, x2: torch.Tensor, optimizer) -> torch.Tensor:
        """One optimisation step on a batch of view pairs; returns the (detached) loss."""
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(x1.device.type, self.autocast, enabled=self.autocast is not None):
            _, _, z1, z2 = self(x1, x2)  # (N, D) each
            loss = self.loss(z1, z2)
        loss.backward()
        optimizer.step()
        return loss.detach()
