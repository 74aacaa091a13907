"""MoCo v2 (He et al. 2020; Chen et al. 2020) in PyTorch: the model, the queue, the step.

Algorithm 1 of the paper, one step (``MoCo.train_step``), in this order::

    momentum_update(f_q, f_k, m)          # theta_k <- m theta_k + (1 - m) theta_q   (eq. 2)
    q = normalize(f_q(x_q))               # (N, D) queries
    k = normalize(f_k(x_k))               # (N, D) keys, under no_grad (shuffled for BN)
    loss = info_nce(q, k, queue, tau)     # negatives read *before* this step's enqueue
    loss.backward()                       # compute_gradients: f_q only (f_k: no grad)
    optimizer.step()                      # apply_gradients: the update, then
    dequeue_and_enqueue(queue, ptr, k)    # FIFO ring buffer of the last K keys

With ``symmetric=True`` both directions are used, ``(q1, k2)`` and ``(q2, k1)``, averaged
(the MoCo CIFAR demo sums them: 2x this value), and all 2N keys are enqueued.
``tf_impl.moco`` is the same file in TensorFlow, where the whole step is one ``tf.function``.

Key encoder BatchNorm: ``momentum_update`` moves the parameters only (as the official code);
the key encoder's running statistics are its own, updated by its forward passes.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from shared.oracle.queue import init_queue
from shared.run.config import model_defaults
from torch_impl.distributed import (
    average_buffers,
    gather_chunks,
    shuffle_across_ranks,
    unshuffle_across_ranks,
    world_size,
)
from torch_impl.losses import info_nce
from torch_impl.models import EncoderWithHead, amp_context, check_views, normalize, torch_dtype

__all__ = ["MoCo", "dequeue_and_enqueue", "momentum_update"]

TRAINED = model_defaults("moco")  # the defaults: the configuration that trains


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
        hidden_dim, head_layers: the projection head.
        temperature: tau of InfoNCE.
        bn_splits: SplitBatchNorm sub-batches in both encoders (1: ordinary BN).
        shuffle_keys: permute the key batch before f_k and undo it after, so that a query
            and its key are normalised with different sub-batches' statistics.
        symmetric: the two-direction loss, averaged.
        seed: seed of the queue's random initial keys.
        dtype: ``"float32"`` or ``"float64"``.

    The defaults are the trained MoCo's (``shared.run.config.model_defaults("moco")``, from
    ``METHOD_DEFAULTS`` and ``TrainConfig``): tau 0.1, K 512, two BN splits, shuffled keys and
    the symmetric loss, so ``MoCo()`` is the model ``train --method moco`` trains.

    Example:
        >>> m = MoCo(encoder="small_cnn", queue_size=8, proj_dim=4, hidden_dim=8)
        >>> m.queue.shape, int(m.queue_ptr)
        (torch.Size([8, 4]), 0)
    """

    method = "moco"

    def __init__(
        self,
        encoder: str = TRAINED["encoder"],
        queue_size: int = TRAINED["queue_size"],
        proj_dim: int = TRAINED["proj_dim"],
        hidden_dim: int = TRAINED["hidden_dim"],
        head_layers: int = TRAINED["head_layers"],
        temperature: float = TRAINED["temperature"],
        bn_splits: int = TRAINED["bn_splits"],
        shuffle_keys: bool = TRAINED["shuffle_keys"],
        symmetric: bool = TRAINED["symmetric"],
        seed: int = TRAINED["seed"],
        dtype: str = "float32",
    ):
        super().__init__()
        self.encoder_name = encoder
        self.temperature = float(temperature)
        self.shuffle_keys, self.symmetric = bool(shuffle_keys), bool(symmetric)
        self.encoder_q = EncoderWithHead(encoder, hidden_dim, proj_dim, head_layers, bn_splits)
        self.encoder_k = copy.deepcopy(self.encoder_q)  # an exact copy at init
        self.encoder_k.requires_grad_(False)  # updated by momentum_update, never by gradients
        self.register_buffer("queue", torch.from_numpy(init_queue(queue_size, proj_dim, seed)))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.to(torch_dtype(dtype))

    @property
    def backbone(self) -> nn.Module:
        """The query encoder f_q, whose features h are evaluated."""
        return self.encoder_q.encoder

    def forward(self, *views: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Normalised queries (B, D) of each view batch from f_q, one pass per view (BN never
        mixes two views of an image). One call, so that a DDP wrapper sees one forward."""
        return tuple(normalize(self.encoder_q(x)[1]) for x in views)

    @torch.no_grad()
    def keys(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised keys (B, D) of ``x`` from f_k, with optional batch shuffling: within this
        process (across its BN splits) or, in a process group, across the ranks."""
        if self.shuffle_keys and world_size() > 1:
            xs, perm = shuffle_across_ranks(x)
            k = unshuffle_across_ranks(self.encoder_k(xs)[1], perm)
        elif self.shuffle_keys:
            perm = torch.randperm(x.shape[0], device=x.device)
            _, k = self.encoder_k(x[perm])
            k = k[torch.argsort(perm)]  # un-shuffle
        else:
            _, k = self.encoder_k(x)
        return normalize(k)  # (B, D)

    def contrastive_loss(self, x1: torch.Tensor, x2: torch.Tensor, ddp=None):
        """InfoNCE of the queries against their keys and the queue; returns ``(loss, keys)``.

        ``ddp``: a ``DistributedDataParallel`` wrapper of this model, whose forward computes
        the queries (DDP syncs the gradients of what passes through its forward).
        Symmetric: each view has its own pass, as in the official code: a BN group that holds
        both views of the same images cost 8.6 kNN points here (58.5 % -> 49.9 %, torch, 25
        epochs, embedded data).
        """
        check_views(x1, x2, min_batch=1)
        query = ddp or self
        if not self.symmetric:
            (q,) = query(x1)  # (N, D)
            k = self.keys(x2)  # (N, D)
            return info_nce(q, k, self.queue, self.temperature), k
        q1, q2 = query(x1, x2)  # (N, D) each
        k2, k1 = self.keys(x2), self.keys(x1)  # (N, D) each: the other view of q1, q2
        loss = 0.5 * (
            info_nce(q1, k2, self.queue, self.temperature)
            + info_nce(q2, k1, self.queue, self.temperature)
        )
        return loss, torch.cat([k2, k1])  # (2N, D)

    def compute_gradients(self, x1, x2, amp_dtype: torch.dtype | None = None, ddp=None):
        """The loss and its gradients: forward (under autocast with ``amp_dtype``), backward.

        Returns ``(loss, grads, keys)``: the detached loss, the gradient of each parameter of
        f_q in ``encoder_q.parameters()`` order (also left in ``.grad``), and the keys (B, D),
        or (2B, D) when symmetric, for the enqueue. With ``ddp`` the backward averages the
        gradients over the ranks.
        """
        self.encoder_q.zero_grad(set_to_none=True)
        with amp_context(x1, amp_dtype):
            loss, keys = self.contrastive_loss(x1, x2, ddp)  # reads the queue before the enqueue
        loss.backward()
        return loss.detach(), [p.grad for p in self.encoder_q.parameters()], keys

    def apply_gradients(self, optimizer, grads, keys) -> None:
        """The optimiser's step on f_q with ``grads``, then the enqueue of ``keys``.

        In a process group every rank enqueues the keys of all ranks (in the one-process
        order) and the BN running statistics are averaged over the ranks.
        """
        for p, g in zip(self.encoder_q.parameters(), grads, strict=True):
            p.grad = g
        optimizer.step()
        keys = gather_chunks(keys, 2 if self.symmetric else 1)  # (W B, D), one-process order
        dequeue_and_enqueue(self.queue, self.queue_ptr, keys)
        average_buffers(self, skip=("queue",))

    def train_step(
        self,
        x1,
        x2,
        optimizer,
        key_momentum: float,
        amp_dtype: torch.dtype | None = None,
        ddp=None,
    ) -> torch.Tensor:
        """Algorithm 1, one step: EMA, loss and gradients, apply and enqueue. Returns the loss.

        ``ddp``: the ``DistributedDataParallel`` wrapper in a process group (see
        :meth:`compute_gradients` and :meth:`apply_gradients`).
        """
        momentum_update(self.encoder_q, self.encoder_k, key_momentum)  # eq. (2)
        loss, grads, keys = self.compute_gradients(x1, x2, amp_dtype, ddp)
        self.apply_gradients(optimizer, grads, keys)
        return loss
