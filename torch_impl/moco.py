"""MoCo v2 (He et al. 2020; Chen et al. 2020) in PyTorch: the model, the queue, the step.

Algorithm 1 of the paper, one step (``MoCo.train_step``), in this order::

    momentum_update(f_q, f_k, m)          # theta_k <- m theta_k + (1 - m) theta_q   (eq. 2)
    q = normalize(f_q(x_q))               # (N, D) queries
    k = normalize(f_k(x_k))               # (N, D) keys, under no_grad (shuffled for BN)
    loss = info_nce(q, k, queue, tau)     # negatives read *before* this step's enqueue
    loss.backward()                       # f_q only (f_k: no grad)
    optimizer.step()
    dequeue_and_enqueue(queue, ptr, k)    # FIFO ring buffer of the last K keys

With ``symmetric=True`` both directions are used, ``(q1, k2)`` and ``(q2, k1)``, averaged
(the MoCo CIFAR demo sums them: 2x this value), and all 2N keys are enqueued.
``tf_impl.moco`` is the same file in TensorFlow. On several processes,
``torch_impl.distributed.DistributedMoCo`` shuffles the keys across the ranks and enqueues
every rank's keys.

Key encoder BatchNorm: ``momentum_update`` moves the parameters only (as the official code);
the key encoder's running statistics are its own, updated by its forward passes.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from shared.oracle.queue import init_queue
from torch_impl.losses import info_nce
from torch_impl.models import (
    EncoderWithHead,
    autocast_dtype,
    check_views,
    normalize,
    torch_dtype,
)

__all__ = ["MoCo", "dequeue_and_enqueue", "momentum_update"]


@torch.no_grad()
def momentum_update(query_encoder: nn.Module, key_encoder: nn.Module, key_momentum: float) -> None:
    """MoCo eq. (2): ``theta_k <- m theta_k + (1 - m) theta_q`` over the parameters, in place.

    Example:
        >>> q, k = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
        >>> _ = q.weight.data.fill_(1.0), k.weight.data.fill_(0.0)
        >>> momentum_update(q, k, 0.9); round(k.weight.item(), 6)
        0.1
    """
    m = float(key_momentum)
    for pk, pq in zip(key_encoder.parameters(), query_encoder.parameters(), strict=True):
        pk.mul_(m).add_(pq.detach(), alpha=1.0 - m)


@torch.no_grad()
def dequeue_and_enqueue(queue: torch.Tensor, ptr: torch.Tensor, keys: torch.Tensor) -> None:
    """Write ``keys`` (B, D) into the (K, D) ring buffer at ``ptr`` in place; advance ``ptr``.

    Exact FIFO for any B and K (wrap-around, K % B != 0, B > K keeps the newest K), as
    ``shared.oracle.queue.dequeue_and_enqueue``. O(B D): only the written rows are touched.

    Raises:
        ValueError: ``keys`` is not (B, D) with the queue's D.

    Example:
        >>> queue, ptr = torch.zeros(3, 1), torch.tensor(2)
        >>> dequeue_and_enqueue(queue, ptr, torch.tensor([[1.0], [2.0]]))
        >>> queue.flatten().tolist(), int(ptr)
        ([2.0, 0.0, 1.0], 1)
    """
    k_size, dim = queue.shape
    if keys.ndim != 2 or keys.shape[1] != dim:
        raise ValueError(f"keys: expected shape (B, {dim}), got {tuple(keys.shape)}")
    b = keys.shape[0]
    start = max(b - k_size, 0)
    rows = (ptr + torch.arange(start, b, device=queue.device)) % k_size  # (min(B, K),)
    queue.index_copy_(0, rows, keys[start:].to(queue.dtype))
    ptr.copy_((ptr + b) % k_size)


class MoCo(nn.Module):
    """Query and key encoders (each f + g), the queue (K, D) and its pointer.

    Args:
        encoder: an ``ENCODERS`` name.
        queue_size: K, the number of negative keys.
        proj_dim: D, the head output and the queue's row size.
        hidden_dim, head_layers: the projection head g; head_bn: a BatchNorm in its hidden
            layers (MoCo v2's head has none).
        temperature: tau of InfoNCE.
        key_momentum: m of eq. (2); the training loop sets it per step (its schedule).
        bn_splits: BatchNorm sub-batches in both encoders (``torch_impl.split_bn``; 1: plain).
        shuffle_keys: permute the key batch before f_k and undo it after, so that a query
            and its key are normalised with different sub-batches' statistics (Shuffle-BN).
        symmetric: the two-direction loss, averaged.
        seed: seed of the queue's random initial keys.
        dtype: ``"float32"``, ``"float64"`` or ``"mixed_bfloat16"``.

    The defaults are the configuration that trains (``tests/test_methods.py`` holds them equal
    to ``shared.run.config.model_defaults("moco")``), so ``MoCo()`` is the model
    ``train --method moco`` trains.

    Example:
        >>> m = MoCo(encoder="small_cnn", queue_size=8, proj_dim=4, hidden_dim=8)
        >>> m.queue.shape, int(m.queue_ptr)
        (torch.Size([8, 4]), 0)
    """

    method = "moco"

    def __init__(
        self,
        encoder: str = "small_cnn",
        queue_size: int = 512,
        proj_dim: int = 128,
        hidden_dim: int = 512,
        head_layers: int = 2,
        head_bn: bool = True,
        temperature: float = 0.1,
        key_momentum: float = 0.99,
        bn_splits: int = 2,
        shuffle_keys: bool = True,
        symmetric: bool = True,
        seed: int = 0,
        dtype: str = "float32",
    ):
        super().__init__()
        self.encoder_name = encoder
        self.temperature, self.key_momentum = float(temperature), float(key_momentum)
        self.shuffle_keys, self.symmetric = bool(shuffle_keys), bool(symmetric)
        self.encoder_q = EncoderWithHead(
            encoder, hidden_dim, proj_dim, head_layers, bn_splits, head_bn=head_bn
        )
        self.encoder_k = copy.deepcopy(self.encoder_q)  # an exact copy at init
        self.encoder_k.requires_grad_(False)  # updated by momentum_update, never by gradients
        self.register_buffer("queue", torch.from_numpy(init_queue(queue_size, proj_dim, seed)))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.autocast = autocast_dtype(dtype)
        self.to(torch_dtype(dtype))

    @property
    def backbone(self) -> nn.Module:
        """The query encoder f_q, whose features h are evaluated."""
        return self.encoder_q.encoder

    def forward(self, *views: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Normalised queries (B, D) of each view batch from f_q, one pass per view (BN never
        mixes two views of an image)."""
        return tuple(normalize(self.encoder_q(x)[1]) for x in views)

    @torch.no_grad()
    def keys(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised keys (B, D) of ``x`` from f_k, with the batch shuffled for BN if asked."""
        if not self.shuffle_keys:
            return normalize(self.encoder_k(x)[1])  # (B, D)
        perm = torch.randperm(x.shape[0], device=x.device)
        k = self.encoder_k(x[perm])[1]
        return normalize(k[torch.argsort(perm)])  # un-shuffled (B, D)

    def loss(self, x1: torch.Tensor, x2: torch.Tensor):
        """InfoNCE of the queries against their keys and the queue; returns ``(loss, keys)``.

        Symmetric: each view has its own pass, as in the official code, so that no BN group
        holds both views of an image.
        """
        check_views(x1, x2, min_batch=1)
        if not self.symmetric:
            (q,) = self(x1)  # (N, D)
            k = self.keys(x2)  # (N, D)
            return info_nce(q, k, self.queue, self.temperature), k
        q1, q2 = self(x1, x2)  # (N, D) each
        k2, k1 = self.keys(x2), self.keys(x1)  # (N, D) each: the other view of q1, q2
        loss = 0.5 * (
            info_nce(q1, k2, self.queue, self.temperature)
            + info_nce(q2, k1, self.queue, self.temperature)
        )
        return loss, torch.cat([k2, k1])  # (2N, D)

    def enqueue(self, keys: torch.Tensor) -> None:
        """Write this step's keys (B, D) into the queue (after the loss has read it)."""
        dequeue_and_enqueue(self.queue, self.queue_ptr, keys)

    def train_step(self, x1: torch.Tensor, x2: torch.Tensor, optimizer) -> torch.Tensor:
        """Algorithm 1, one step: EMA, loss, backward, update, enqueue. Returns the loss."""
        momentum_update(self.encoder_q, self.encoder_k, self.key_momentum)  # eq. (2)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(x1.device.type, self.autocast, enabled=self.autocast is not None):
            loss, keys = self.loss(x1, x2)  # reads the queue before the enqueue
        loss.backward()
        optimizer.step()
        self.enqueue(keys)
        return loss.detach()
