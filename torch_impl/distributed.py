"""Data parallelism in PyTorch: the process group, and the collectives contrastive learning needs.

One process per device, started by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``). What crosses the processes at each step:

* SimCLR: every rank's projections (2n, D), gathered *with their gradients*
  (:func:`gather_with_grad`), so each anchor meets the 2N candidates of the global batch;
* MoCo: every rank's keys (n, D), gathered without gradients (:func:`concat_all_gather`)
  before the enqueue, so every rank's queue holds the same keys in the same order; with
  Shuffle-BN also the key images (:func:`shuffle_across_ranks`);
* both: the mean of the gradients over the ranks (:class:`GradientMean`, DDP's all-reduce),
  and of the BatchNorm running statistics (:func:`average_buffers`), so that the ranks stay
  identical.

The algorithm files (``torch_impl.simclr``, ``torch_impl.moco``) know nothing of this: the
training loop builds :class:`DistributedSimCLR` or :class:`DistributedMoCo` (``DISTRIBUTED``)
when the world is larger than one, subclasses that override the loss's negatives, the key
shuffle and the enqueue, and hand the step a :class:`GradientMean` optimiser. Proven equal to
one process on the global batch by ``tests/test_distributed.py``. ``--sync-bn`` swaps every
BatchNorm for :class:`SyncBatchNorm` (:func:`convert_sync_batchnorm`).

Gradient of a gather (the rule lightly and solo-learn also follow): rank r's loss L_r depends
on every rank's rows, so the gradient that reaches rank r's own rows is ``sum_s dL_s/dz_r``,
an all-reduce (sum) of the incoming gradients, sliced to rank r's rows. DDP then averages over
the ranks, which gives the gradient of ``mean_r L_r``: the single-process loss on the global
batch. Nothing is multiplied by the world size.

``tf_impl.distributed`` is the same file for ``tf.distribute``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F

from shared.oracle.losses import check_temperature
from shared.run.errors import ConfigError
from torch_impl.moco import MoCo
from torch_impl.models import normalize
from torch_impl.simclr import SimCLR

__all__ = [
    "DISTRIBUTED",
    "Dist",
    "DistributedMoCo",
    "DistributedSimCLR",
    "GradientMean",
    "SyncBatchNorm",
    "all_reduce_with_grad",
    "average_buffers",
    "concat_all_gather",
    "convert_sync_batchnorm",
    "gather_chunks",
    "gather_with_grad",
    "init_from_env",
    "is_distributed",
    "nt_xent_across_ranks",
    "rank",
    "shuffle_across_ranks",
    "unshuffle_across_ranks",
    "world_size",
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
        ConfigError: ``WORLD_SIZE`` or ``LOCAL_RANK`` is not an integer, or ``WORLD_SIZE`` > 1
            but a rendezvous variable is missing (the message names it and says to start the
            job with ``torchrun``).
    """

    def env_int(name: str, default: str) -> int:
        text = os.environ.get(name, default)
        try:
            return int(text)
        except ValueError as e:
            raise ConfigError(f"{name}: expected an integer, got {text!r}") from e

    size = env_int("WORLD_SIZE", "1")
    if size <= 1:
        return Dist(device=device)
    missing = [v for v in RENDEZVOUS_VARS if v not in os.environ]
    if missing:
        raise ConfigError(
            f"WORLD_SIZE={size} but these are not set: {', '.join(missing)}; start multi-process "
            "training with torchrun --nproc_per_node N -m torch_impl train ..."
        )
    local = env_int("LOCAL_RANK", "0")
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


def nt_xent_across_ranks(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent (``torch_impl.losses.nt_xent``) with every rank's 2W n rows as candidates.

    Each rank holds n rows of each view; its 2n anchors keep their global positive and self
    indices among the gathered rows, which carry their gradients (:func:`gather_with_grad`).
    Returns this rank's share, the mean over its 2n anchors; the mean over the ranks is the
    loss of the global batch. In one process it is ``nt_xent``.
    """
    t = check_temperature(temperature)
    n, w, r = z1.shape[0], world_size(), rank()
    dtype = torch.float64 if torch.float64 in (z1.dtype, z2.dtype) else torch.float32
    with torch.autocast(device_type=z1.device.type, enabled=False):
        u1, u2 = (F.normalize(z.to(dtype), dim=1) for z in (z1, z2))  # (n, D) each
        candidates = torch.cat([gather_with_grad(u1), gather_with_grad(u2)])  # (2N, D)
        logits = (torch.cat([u1, u2]) / t) @ candidates.T  # (2n, 2N)
        own = torch.arange(n, device=z1.device) + r * n  # global index of row i in Z1
        rows = torch.arange(2 * n, device=z1.device)
        logits[rows, torch.cat([own, own + w * n])] = float("-inf")  # no self-similarity
        return F.cross_entropy(logits, torch.cat([own + w * n, own]))  # positive: other view


class GradientMean:
    """The optimiser as a rank's step sees it: ``step()`` first replaces every gradient by its
    mean over the ranks (what DDP's all-reduce does, here in one flat all-reduce), then steps,
    then averages the BatchNorm running statistics (:func:`average_buffers`)."""

    def __init__(self, optimizer, model: torch.nn.Module, skip: tuple[str, ...] = ()):
        self.optimizer, self.model, self.skip = optimizer, model, skip

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self) -> None:
        grads = [
            p.grad for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None
        ]
        if grads:
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            flat /= world_size()
            for g, mean in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
                g.copy_(mean.view_as(g))
        self.optimizer.step()
        average_buffers(self.model, self.skip)


class DistributedSimCLR(SimCLR):
    """SimCLR on W processes: the negatives are every rank's views (:func:`nt_xent_across_ranks`)
    and the step averages the gradients and BN statistics (:class:`GradientMean`). Equal to
    ``SimCLR(bn_splits=W)`` in one process on the global batch."""

    def loss(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return nt_xent_across_ranks(z1, z2, self.temperature)

    def train_step(self, x1, x2, optimizer) -> torch.Tensor:
        return super().train_step(x1, x2, GradientMean(optimizer, self))


class DistributedMoCo(MoCo):
    """MoCo on W processes: Shuffle-BN across the ranks (MoCo's ``batch_shuffle_ddp``), every
    rank enqueues every rank's keys in the one-process order, and the step averages the
    gradients and BN statistics. Equal to ``MoCo(bn_splits=W)`` on the global batch."""

    @torch.no_grad()
    def keys(self, x: torch.Tensor) -> torch.Tensor:
        if not self.shuffle_keys:
            return super().keys(x)
        xs, perm = shuffle_across_ranks(x)
        return normalize(unshuffle_across_ranks(self.encoder_k(xs)[1], perm))  # (n, D)

    def enqueue(self, keys: torch.Tensor) -> None:
        super().enqueue(gather_chunks(keys, 2 if self.symmetric else 1))  # (W B, D)

    def train_step(self, x1, x2, optimizer) -> torch.Tensor:
        return super().train_step(x1, x2, GradientMean(optimizer, self, skip=("queue",)))


DISTRIBUTED = {"simclr": DistributedSimCLR, "moco": DistributedMoCo}


class SyncBatchNorm(torch.nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch, all-reduced with
    their gradients (``torch.nn.SyncBatchNorm`` refuses CPU tensors; this runs on gloo and
    nccl alike). In one process, and in eval mode, it is ordinary BatchNorm."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() not in (2, 4):
            raise ValueError(f"x: expected a (B, C) or (B, C, H, W) input, got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not self.training or world_size() == 1:
            return super().forward(x)
        b, c = x.shape[:2]
        xs = (x if x.dtype == torch.float64 else x.float()).reshape(b, c, -1)  # (B, C, HW)
        count = xs.shape[0] * xs.shape[2] * world_size()
        sums = torch.stack([xs.sum(dim=(0, 2)), (xs * xs).sum(dim=(0, 2))])  # (2, C)
        total = all_reduce_with_grad(sums) / count
        mean, var = total[0].view(1, -1, 1), (total[1] - total[0] * total[0]).view(1, -1, 1)
        y = ((xs - mean) * torch.rsqrt(var + self.eps)).reshape(x.shape)
        shape = (1, c) + (1,) * (x.dim() - 2)
        y = y * self.weight.view(shape) + self.bias.view(shape)
        with torch.no_grad():
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(mean.flatten().to(self.running_mean), alpha=m)
            unbiased = var.flatten() * count / max(count - 1, 1)
            self.running_var.mul_(1 - m).add_(unbiased.to(self.running_var), alpha=m)
            self.num_batches_tracked.add_(1)
        return y.to(x.dtype)


def convert_sync_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """Every BatchNorm of ``module`` replaced by a :class:`SyncBatchNorm` with its state, in
    place (``torch.nn.SyncBatchNorm.convert_sync_batchnorm``'s job).

    Raises:
        ValueError: a BatchNorm of several splits (SyncBN normalises the whole global batch).
    """
    for name, child in module.named_children():
        if isinstance(child, torch.nn.modules.batchnorm._BatchNorm) and not isinstance(
            child, SyncBatchNorm
        ):
            if getattr(child, "num_splits", 1) != 1:
                raise ValueError(
                    "sync_bn: expected bn_splits 1 (SyncBN normalises the whole global batch), "
                    f"got {child.num_splits}"
                )
            sync = SyncBatchNorm(child.num_features, child.eps, child.momentum)
            sync.load_state_dict(child.state_dict())
            setattr(module, name, sync.to(child.weight))
        else:
            convert_sync_batchnorm(child)
    return module
