"""NT-Xent and InfoNCE in PyTorch, mirroring ``shared.oracle.losses`` (same names, arguments, conventions).

Conventions (see ``shared.oracle.losses`` for the published alternatives and their factors): rows are
L2-normalised inside; NT-Xent is the mean over all 2N anchors with self-similarity excluded;
InfoNCE takes the queue as (K, D), one key per row, and averages over the N queries.

Precision: the logits and the softmax are always computed in float32 (float64 stays float64),
even inside an fp16/bf16 ``torch.autocast`` region: 1/tau = 20 at tau = 0.05 times a cosine of 1
is harmless, but the exp and the sums of the softmax overflow or lose all precision in fp16.

Differences from the NumPy oracle, by design: validation here is limited to what is known
without a device sync (ndim, shapes, temperature). A zero row is mapped to a zero vector by
``F.normalize`` (norm clamped at 1e-12) instead of raising, since raising needs a sync per step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from shared.oracle.losses import check_temperature

__all__ = ["info_nce", "nt_xent"]


def _check(name: str, x, min_rows: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D tensor (rows, dim), got shape {tuple(x.shape)}")
    if x.shape[0] < min_rows or x.shape[1] < 1:
        raise ValueError(
            f"{name}: expected at least {min_rows} rows and dim >= 1, got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got {x.dtype}")


def _check_reduction(reduction: str) -> None:
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction: expected 'mean' or 'none', got {reduction!r}")


def _check_views(z1, z2, reduction: str) -> None:
    """NT-Xent's input checks: two (N, D) float tensors of one shape, N >= 2, and the reduction."""
    _check("z1", z1, 2)
    _check("z2", z2, 2)
    if z1.shape != z2.shape:
        raise ValueError(
            f"z2: expected the same shape as z1 {tuple(z1.shape)}, got {tuple(z2.shape)}"
        )
    _check_reduction(reduction)


def _logit_dtype(*xs: torch.Tensor) -> torch.dtype:
    return torch.float64 if any(x.dtype == torch.float64 for x in xs) else torch.float32


def nt_xent(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float = 0.5,
    reduction: str = "mean",
) -> torch.Tensor:
    """NT-Xent (SimCLR eq. 1), mean over the 2N anchors.

    ``l_i = -log exp(s_{i,p(i)}/tau) / sum_{j != i} exp(s_ij/tau)`` with ``s`` the cosine
    similarity and ``p(i) = (i + N) mod 2N`` the other view of the same image.

    Args:
        z1: (N, D) projections of the first views, N >= 2.
        z2: (N, D) projections of the second views; row i pairs with ``z1[i]``.
        temperature: tau > 0.
        reduction: ``"mean"`` (a 0-d tensor) or ``"none"`` (the (2N,) per-anchor losses).

    Returns:
        A 0-d tensor (or (2N,)) in float32, or float64 for float64 inputs.

    Raises:
        ValueError: wrong ndim, mismatched shapes, N < 2, non-float input, bad temperature.

    Example:
        >>> import math, torch
        >>> z = torch.ones(4, 3)
        >>> round(nt_xent(z, z, 0.5).item(), 5) == round(math.log(7), 5)
        True
    """
    t = check_temperature(temperature)
    _check_views(z1, z2, reduction)
    n = z1.shape[0]
    dtype = _logit_dtype(z1, z2)
    with torch.autocast(device_type=z1.device.type, enabled=False):
        u = F.normalize(torch.cat([z1, z2]).to(dtype), dim=1)  # (2N, D): z1 rows, then z2
        logits = (u / t) @ u.T  # (2N, 2N); 1/tau folded into one side
        logits.fill_diagonal_(float("-inf"))  # no self-similarity
        i = torch.arange(n, device=z1.device)
        target = torch.cat([i + n, i])  # (2N,) the positive: the other view of the same image
        return F.cross_entropy(logits, target, reduction=reduction)


def info_nce(
    q: torch.Tensor,
    k: torch.Tensor,
    queue: torch.Tensor,
    temperature: float = 0.07,
    reduction: str = "mean",
) -> torch.Tensor:
    """InfoNCE as in MoCo (eq. 1): one positive key and K queue negatives per query.

    Args:
        q: (N, D) queries, N >= 1.
        k: (N, D) positive keys. Treated as constants only if the caller detaches them (MoCo's
            keys come from the momentum encoder under ``no_grad``).
        queue: (K, D) negative keys, one per row, K >= 1. Never receives a gradient.
        temperature: tau > 0.
        reduction: ``"mean"`` or ``"none"`` ((N,) per-query losses).

    Returns:
        A 0-d tensor (or (N,)).

    Raises:
        ValueError: wrong ndim, q/k mismatch, queue D != q's D, N < 1, K < 1, bad temperature.

    Example:
        >>> import math, torch
        >>> x = torch.ones(2, 4)
        >>> round(info_nce(x, x, torch.ones(5, 4), 0.07).item(), 5) == round(math.log(6), 5)
        True
    """
    t = check_temperature(temperature)
    _check("q", q, 1)
    _check("k", k, 1)
    _check("queue", queue, 1)
    if q.shape != k.shape:
        raise ValueError(f"k: expected the same shape as q {tuple(q.shape)}, got {tuple(k.shape)}")
    if queue.shape[1] != q.shape[1]:
        raise ValueError(
            f"queue: expected shape (K, {q.shape[1]}) to match the feature dim of q, "
            f"got {tuple(queue.shape)}"
        )
    _check_reduction(reduction)
    dtype = _logit_dtype(q, k, queue)
    with torch.autocast(device_type=q.device.type, enabled=False):
        q = F.normalize(q.to(dtype), dim=1)  # (N, D)
        k = F.normalize(k.to(dtype), dim=1)  # (N, D)
        negatives = F.normalize(queue.detach().to(dtype), dim=1)  # (K, D)
        l_pos = (q * k).sum(dim=1, keepdim=True)  # (N, 1)
        l_neg = q @ negatives.T  # (N, K)
        logits = torch.cat([l_pos, l_neg], dim=1) / t  # (N, 1+K)
        labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)  # positive: col 0
        return F.cross_entropy(logits, labels, reduction=reduction)
