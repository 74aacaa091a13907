"""SimCLR (Chen et al. 2020) in PyTorch: the model and its training step.

Algorithm 1 of the paper, one step (``SimCLR.train_step``)::

    h, z = f(x1 ++ x2), g(h)        # both views in one batch of 2N: BN sees both views
    loss = nt_xent(z1, z2, tau)     # mean over the 2N anchors, self-similarity excluded
    loss.backward()                 # compute_gradients
    optimizer.step()                # apply_gradients

``tf_impl.simclr`` is the same file in TensorFlow.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from shared.run.config import model_defaults
from torch_impl.distributed import average_buffers
from torch_impl.losses import nt_xent
from torch_impl.models import EncoderWithHead, amp_context, check_views, torch_dtype

__all__ = ["SimCLR"]

TRAINED = model_defaults("simclr")  # the defaults: the configuration that trains


class SimCLR(nn.Module):
    """Encoder f and projection head g, and the NT-Xent step.

    Args:
        encoder: an ``ENCODERS`` name.
        hidden_dim, proj_dim, head_layers: the projection head.
        temperature: tau of NT-Xent (validated by ``shared.run.config``).
        bn_splits: SplitBatchNorm sub-batches in the encoder (1: ordinary BN).
        dtype: ``"float32"`` or ``"float64"`` (parity work).

    The defaults are the trained SimCLR's (``shared.run.config.model_defaults("simclr")``):
    tau 0.2 and one BN group.

    Example:
        >>> m = SimCLR(encoder="small_cnn", hidden_dim=16, proj_dim=8)
        >>> [t.shape[1] for t in m(torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32))]
        [256, 256, 8, 8]
    """

    method = "simclr"

    def __init__(
        self,
        encoder: str = TRAINED["encoder"],
        hidden_dim: int = TRAINED["hidden_dim"],
        proj_dim: int = TRAINED["proj_dim"],
        head_layers: int = TRAINED["head_layers"],
        temperature: float = TRAINED["temperature"],
        bn_splits: int = TRAINED["bn_splits"],
        dtype: str = "float32",
    ):
        super().__init__()
        self.encoder_name = encoder
        self.temperature = float(temperature)
        self.net = EncoderWithHead(encoder, hidden_dim, proj_dim, head_layers, bn_splits)
        self.to(torch_dtype(dtype))

    @property
    def backbone(self) -> nn.Module:
        """The encoder f whose features h are evaluated."""
        return self.net.encoder

    def forward(self, x1: torch.Tensor, x2: torch.Tensor):
        """``(h1, h2, z1, z2)`` of two (N, 3, S, S) view batches; one pass over the 2N views."""
        check_views(x1, x2)
        n = x1.shape[0]
        h, z = self.net(torch.cat([x1, x2], dim=0), view_chunks=2)  # (2N, F), (2N, D)
        return h[:n], h[n:], z[:n], z[n:]

    def contrastive_loss(self, x1: torch.Tensor, x2: torch.Tensor, ddp=None) -> torch.Tensor:
        """NT-Xent of the two views' projections (SimCLR eq. 1).

        ``ddp``: a ``DistributedDataParallel`` wrapper of this model, whose forward runs the
        pass (DDP syncs the gradients of what passes through its forward). In a process group
        the negatives are every rank's views, gathered with their gradients.
        """
        _, _, z1, z2 = (ddp or self)(x1, x2)
        # logits in float32 even under autocast
        return nt_xent(z1, z2, self.temperature, gather_distributed=True)

    def compute_gradients(self, x1, x2, amp_dtype: torch.dtype | None = None, ddp=None):
        """The loss and its gradients: forward (under autocast with ``amp_dtype``), backward.

        Returns ``(loss, grads)``: the detached loss and the gradient of each parameter in
        ``net.parameters()`` order (also left in ``.grad``). With ``ddp`` the backward averages
        the gradients over the ranks.
        """
        self.net.zero_grad(set_to_none=True)
        with amp_context(x1, amp_dtype):
            loss = self.contrastive_loss(x1, x2, ddp)
        loss.backward()
        return loss.detach(), [p.grad for p in self.net.parameters()]

    def apply_gradients(self, optimizer, grads) -> None:
        """The optimiser's step with ``grads``; in a process group the BN running statistics
        are then averaged over the ranks."""
        for p, g in zip(self.net.parameters(), grads, strict=True):
            p.grad = g
        optimizer.step()
        average_buffers(self)

    def train_step(
        self, x1, x2, optimizer, amp_dtype: torch.dtype | None = None, ddp=None
    ) -> torch.Tensor:
        """One optimisation step on a batch of view pairs; returns the (detached) loss.

        In a process group (``ddp`` given), DDP averages the gradients and the BN running
        statistics are averaged over the ranks: the step is the one-process step on the global
        batch with ``bn_splits`` x world size BN groups.
        """
        loss, grads = self.compute_gradients(x1, x2, amp_dtype, ddp)
        self.apply_gradients(optimizer, grads)
        return loss
