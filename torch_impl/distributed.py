"""Data parallelism in PyTorch: the process group, and the collectives contrastive learning needs.

One process per device, started by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``). What crosses the processes at each step:

* SimCLR: every rank's projections (2n, D), gathered *with their gradients*
  (:func:`gather_with_grad`), so each anchor meets the 2N candidates of the global batch;
* MoCo: every rank's keys (n, D), gathered without gradients (:func:`concat_all_gather`)
  before the enqueue, so every rank's queue holds the same keys in the same order; with
  Shuffle-BN also the key images (:func:`shuffle_across_ranks`);
* both: DDP's all-reduce of the gradients (a mean over ranks), and this project's mean of the
  BatchNorm running statistics (:func:`average_buffers`), so that the ranks stay identical.

Gradient of a gather (the rule lightly and solo-learn also follow): rank r's loss L_r depends
on every rank's rows, so the gradient that reaches rank r's own rows is ``sum_s dL_s/dz_r``,
an all-reduce (sum) of the incoming gradients, sliced to rank r's rows. DDP then averages over
the ranks, which gives the gradient of ``mean_r L_r``: the single-process loss on the global
batch. Nothing is multiplied by the world size.

``tf_impl.distributed`` is the same file for ``tf.distribute``.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from shared.run.errors import ConfigError

__all__ = [
    "Dist",
    "all_reduce_with_grad",
    "average_buffers",
    "concat_all_gather",
    "gather_chunks",
    "gather_with_grad",
    "init_from_env",
    "is_distributed",
    "rank",
    "shuffle_across_ranks",
    "unshuffle_across_ranks",
    "world_size",
    "wrap_ddp",
]

RENDEZVOUS_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Dist:
    """Where this process stands: ``rank`` of ``world_size``, on ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the logs, ``metrics.json`` and the checkpoints."""
        return self.rank == 0


def init_from_env(device: torch.device) -> Dist:
    """Join the process group that ``torchrun`` describes in the environment (gloo on CPU,
    nccl on CUDA), or return a one-process ``Dist`` when ``WORLD_SIZE`` is unset or 1.

    Raises:
        ConfigError: ``WORLD_SIZE`` > 1 but a rendezvous variable is missing (the message
            names it and says to start the job with ``torchrun``).
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return Dist(device=device)
    missing = [v for v in RENDEZVOUS_VARS if v not in os.environ]
    if missing:
        raise ConfigError(
            f"WORLD_SIZE={size} but these are not set: {', '.join(missing)}; start multi-process "
            "training with torchrun --nproc_per_node N -m torch_impl train ..."
        )
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), local, device)


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


class _GatherWithGrad(torch.autograd.Function):
    """all_gather forward; backward: all-reduce (sum) the gradients, keep this rank's rows."""

    @staticmethod
    def forward(ctx, x):
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, 0)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)  # every rank's loss used these rows
        n = grad.shape[0] // dist.get_world_size()
        return grad[dist.get_rank() * n : (dist.get_rank() + 1) * n]


class _AllReduceWithGrad(torch.autograd.Function):
    """all_reduce (sum) forward; backward: all-reduce (sum) the gradients, since every rank's
    loss depends on every rank's summand."""

    @staticmethod
    def forward(ctx, x):
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        return x

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def all_reduce_with_grad(x: torch.Tensor) -> torch.Tensor:
    """The sum of ``x`` over the ranks, differentiable (SyncBatchNorm's moments). Identity alone."""
    return _AllReduceWithGrad.apply(x) if is_distributed() else x


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """(n, ...) on each of W ranks -> (W n, ...), rank order, differentiable. Identity alone."""
    return _GatherWithGrad.apply(x) if is_distributed() else x


@torch.no_grad()
def concat_all_gather(x: torch.Tensor) -> torch.Tensor:
    """(n, ...) on each of W ranks -> (W n, ...) in rank order, no gradient. Identity alone."""
    if not is_distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, 0)


@torch.no_grad()
def shuffle_across_ranks(x: torch.Tensor):
    """Shuffle-BN across ranks (MoCo's ``batch_shuffle_ddp`` semantics).

    Gathers the global batch (W n, ...) from this rank's (n, ...) rows, draws one permutation
    on rank 0 (from the global generator, as the one-process shuffle) and broadcasts it, and
    returns this rank's n rows of the permuted batch with the permutation, for
    :func:`unshuffle_across_ranks`. Keys are thus normalised with other rows' statistics than
    their queries.
    """
    full = concat_all_gather(x)  # (W n, ...)
    perm = torch.randperm(full.shape[0]).to(x.device)
    dist.broadcast(perm, src=0)
    n = x.shape[0]
    return full[perm[rank() * n : (rank() + 1) * n]], perm


@torch.no_grad()
def unshuffle_across_ranks(y: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`shuffle_across_ranks`: this rank's rows, in its original order."""
    n = y.shape[0]
    return concat_all_gather(y)[torch.argsort(perm)][rank() * n : (rank() + 1) * n]


def gather_chunks(x: torch.Tensor, view_chunks: int = 1) -> torch.Tensor:
    """Every rank's (C n, ...) rows in the one-process order: chunk by chunk, ranks in order.
    MoCo enqueues the keys in this order, so the queue is the one-process queue."""
    return torch.cat([concat_all_gather(c) for c in x.chunk(view_chunks)])


@torch.no_grad()
def average_buffers(module: torch.nn.Module, skip: tuple[str, ...] = ()) -> None:
    """Replace each floating-point buffer (BN running mean and variance) by its mean over ranks.

    Each rank's BN updated its running statistics from its own n images; their mean is what
    SplitBatchNorm with W splits keeps in one process. Buffers named in ``skip`` (the queue,
    already identical) are left alone.
    """
    if not is_distributed():
        return
    for name, buf in module.named_buffers():
        if buf.is_floating_point() and name not in skip:
            dist.all_reduce(buf, op=dist.ReduceOp.SUM)
            buf.div_(world_size())


def wrap_ddp(model: torch.nn.Module, where: Dist):
    """``DistributedDataParallel`` around ``model`` in a process group (``None`` alone).

    The model's ``train_step(..., ddp=wrapper)`` runs its forward through the wrapper, so DDP
    all-reduces (averages) the gradients. Buffers are not re-broadcast from rank 0 at each
    forward: the models average them over the ranks after each step (:func:`average_buffers`).
    """
    if where.world_size == 1:
        return None
    from torch.nn.parallel import DistributedDataParallel

    ids = [where.device.index] if where.device.type == "cuda" else None
    params = inspect.signature(DistributedDataParallel).parameters
    # torch 2.14 renamed broadcast_buffers; the buffers are equal at init either way
    no_sync = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
    return DistributedDataParallel(model, device_ids=ids, **{no_sync: False})
