"""NumPy reference of MoCo's key queue (a FIFO ring buffer) and of the momentum (EMA) update.

Both frameworks' ``dequeue_and_enqueue`` and ``momentum_update`` are checked against these.

Ring semantics. The queue holds K keys as rows of a (K, D) array and a pointer ``ptr`` to the
oldest row. Enqueueing a batch of B keys writes row ``(ptr + i) mod K`` with key i, in order,
and then sets ``ptr = (ptr + B) mod K``. This is exact FIFO for any K and B:

* B need not divide K (the official MoCo code asserts ``K % B == 0``; we wrap instead);
* a last, partial batch just writes fewer rows;
* B > K keeps only the newest K keys (older keys of the batch would be overwritten anyway).

The negatives for a step are read *before* that step's keys are enqueued, as in MoCo
Algorithm 1, so a query never sees its own positive key among its negatives.
"""

from __future__ import annotations

import numpy as np

from shared.oracle.losses import l2_normalize


def check_momentum(momentum: float) -> float:
    """Return ``momentum`` as float or raise ``ValueError`` unless it lies in [0, 1]."""
    try:
        m = float(momentum)
    except (TypeError, ValueError) as e:
        raise ValueError(f"momentum: expected a number in [0, 1], got {momentum!r}") from e
    if not 0.0 <= m <= 1.0:  # NaN fails this too
        raise ValueError(f"momentum: expected a number in [0, 1], got {momentum!r}")
    return m


def init_queue(queue_size: int, dim: int, seed: int = 0) -> np.ndarray:
    """A (K, D) float32 queue of L2-normalised Gaussian keys, as MoCo initialises it."""
    if int(queue_size) < 1:
        raise ValueError(f"queue_size: expected K >= 1, got {queue_size!r}")
    if int(dim) < 1:
        raise ValueError(f"dim: expected D >= 1, got {dim!r}")
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((int(queue_size), int(dim)))
    return l2_normalize("queue", q)[0].astype(np.float32)


def write_indices(ptr: int, batch: int, queue_size: int) -> tuple[np.ndarray, int]:
    """``(rows, start)``: the rows written when ``batch`` keys are enqueued at ``ptr``, and the
    index of the first key written (only the newest K keys are written when B > K)."""
    start = max(batch - queue_size, 0)  # keys older than the newest K are dropped
    return (ptr + np.arange(start, batch)) % queue_size, start


def dequeue_and_enqueue(queue: np.ndarray, ptr: int, keys: np.ndarray) -> tuple[np.ndarray, int]:
    """Return ``(new_queue, new_ptr)`` after enqueueing ``keys`` (B, D). Pure: inputs unchanged.

    Raises:
        ValueError: if ``keys`` is not (B, D) with the queue's D, or ``ptr`` is out of range.
    """
    queue = np.asarray(queue)
    keys = np.asarray(keys)
    k_size, dim = queue.shape
    if keys.ndim != 2 or keys.shape[1] != dim:
        raise ValueError(f"keys: expected shape (B, {dim}), got {keys.shape}")
    if not 0 <= int(ptr) < k_size:
        raise ValueError(f"ptr: expected 0 <= ptr < {k_size}, got {ptr}")
    b = keys.shape[0]
    new = queue.copy()
    rows, start = write_indices(int(ptr), b, k_size)
    new[rows] = keys[start:]
    return new, int((ptr + b) % k_size)


def ema(key: np.ndarray, query: np.ndarray, momentum: float) -> np.ndarray:
    """MoCo's momentum update for one tensor: ``key <- m * key + (1 - m) * query``."""
    m = check_momentum(momentum)
    return m * np.asarray(key) + (1.0 - m) * np.asarray(query)


def cosine_momentum(step: int, total_steps: int, base: float = 0.99) -> float:
    """BYOL/MoCo v3 schedule: m rises from ``base`` to 1 along a half cosine."""
    base = check_momentum(base)
    frac = min(max(step / max(total_steps, 1), 0.0), 1.0)
    return 1.0 - (1.0 - base) * (np.cos(np.pi * frac) + 1.0) / 2.0
