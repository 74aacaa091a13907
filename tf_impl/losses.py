"""InfoNCE and NT-Xent in TensorFlow, mirroring ``shared.oracle.losses`` and ``torch_impl.losses``.

Same names, argument names, conventions and normalisation: rows L2-normalised inside, NT-Xent
averaged over the 2N anchors with self-similarity excluded, the queue as (K, D), one key per
row. Logits are computed in float32 (float64 stays float64) even for float16/bfloat16 inputs.
Both functions are pure tensor code and run inside ``tf.function`` and XLA.

Differences from the NumPy oracle: only static checks (ndim, static shapes, temperature) run
here, since value checks would need a host sync. A zero row becomes a zero vector instead of
raising. The clamp matches torch's ``F.normalize`` (norm >= 1e-12): ``tf.math.l2_normalize``'s
default clamps the *squared* norm at 1e-12, which leaves rows shorter than 1e-6 unnormalised;
``epsilon=1e-24`` clamps the norm itself at 1e-12.
"""

from __future__ import annotations

import tensorflow as tf

from shared.oracle.losses import check_temperature

__all__ = ["info_nce", "nt_xent"]


def _check(name: str, x, min_rows: int) -> tf.Tensor:
    x = tf.convert_to_tensor(x)
    if x.shape.rank != 2:
        raise ValueError(f"{name}: expected a 2-D tensor (rows, dim), got shape {x.shape}")
    rows, dim = x.shape
    if (rows is not None and rows < min_rows) or (dim is not None and dim < 1):
        raise ValueError(
            f"{name}: expected at least {min_rows} rows and dim >= 1, got shape {x.shape}"
        )
    if not x.dtype.is_floating:
        raise ValueError(f"{name}: expected a floating-point tensor, got {x.dtype.name}")
    return x


def _check_reduction(reduction: str) -> None:
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction: expected 'mean' or 'none', got {reduction!r}")


def _check_views(z1, z2, reduction: str) -> tuple[tf.Tensor, tf.Tensor]:
    """NT-Xent's static checks: two (N, D) float tensors of one shape, N >= 2, and the reduction;
    returns both as tensors."""
    z1, z2 = _check("z1", z1, 2), _check("z2", z2, 2)
    if z1.shape.is_fully_defined() and z2.shape.is_fully_defined() and z1.shape != z2.shape:
        raise ValueError(
            f"z2: expected the same shape as z1 {tuple(z1.shape)}, got {tuple(z2.shape)}"
        )
    _check_reduction(reduction)
    return z1, z2


def _unit(x):
    """Row-wise L2 normalisation with torch's clamp: x / max(||x||, 1e-12)."""
    return tf.math.l2_normalize(x, axis=1, epsilon=1e-24)


def _logit_dtype(*xs) -> tf.DType:
    return tf.float64 if any(x.dtype == tf.float64 for x in xs) else tf.float32


def nt_xent(z1, z2, temperature: float = 0.5, reduction: str = "mean") -> tf.Tensor:
    """NT-Xent (SimCLR eq. 1), mean over the 2N anchors. See ``torch_impl.losses.nt_xent``.

    Args:
        z1: (N, D) projections of the first views, N >= 2.
        z2: (N, D) projections of the second views.
        temperature: tau > 0.
        reduction: ``"mean"`` (0-d) or ``"none"`` ((2N,) per-anchor losses).

    Returns:
        A float32 (or float64) tensor.

    Raises:
        ValueError: wrong ndim, mismatched shapes, N < 2, non-float input, bad temperature.

    Example:
        >>> import math, tensorflow as tf
        >>> z = tf.ones((4, 3))
        >>> round(float(nt_xent(z, z, 0.5)), 5) == round(math.log(7), 5)
        True
    """
    t = check_temperature(temperature)
    z1, z2 = _check_views(z1, z2, reduction)
    dtype = _logit_dtype(z1, z2)
    n = tf.shape(z1)[0]
    u1, u2 = _unit(tf.cast(z1, dtype)), _unit(tf.cast(z2, dtype))  # (n, D) each
    u = tf.concat([u1, u2], 0)  # (2N, D): z1 rows, then z2
    logits = tf.matmul(u, u, transpose_b=True) / t  # (2N, 2N)
    self_pairs = tf.one_hot(tf.range(2 * n), 2 * n, on_value=True, off_value=False)  # diagonal
    logits = tf.where(self_pairs, tf.constant(-float("inf"), dtype), logits)  # no self term
    i = tf.range(n)
    positive = tf.concat([i + n, i], 0)  # (2N,) the other view of the same image
    per_anchor = tf.nn.sparse_softmax_cross_entropy_with_logits(positive, logits)  # (2n,)
    return tf.reduce_mean(per_anchor) if reduction == "mean" else per_anchor


def info_nce(q, k, queue, temperature: float = 0.07, reduction: str = "mean") -> tf.Tensor:
    """InfoNCE as in MoCo (eq. 1). See ``torch_impl.losses.info_nce``.

    Args:
        q: (N, D) queries. k: (N, D) positive keys (stop their gradient in MoCo).
        queue: (K, D) negative keys, one per row; never receives a gradient.
        temperature: tau > 0.
        reduction: ``"mean"`` or ``"none"`` ((N,) per-query losses).

    Returns:
        A float32 (or float64) tensor.

    Raises:
        ValueError: wrong ndim, q/k mismatch, queue D != q's D, N < 1, K < 1, bad temperature.

    Example:
        >>> import math, tensorflow as tf
        >>> x = tf.ones((2, 4))
        >>> round(float(info_nce(x, x, tf.ones((5, 4)), 0.07)), 5) == round(math.log(6), 5)
        True
    """
    t = check_temperature(temperature)
    q, k, queue = _check("q", q, 1), _check("k", k, 1), _check("queue", queue, 1)
    if q.shape.is_fully_defined() and k.shape.is_fully_defined() and q.shape != k.shape:
        raise ValueError(f"k: expected the same shape as q {tuple(q.shape)}, got {tuple(k.shape)}")
    if q.shape[1] is not None and queue.shape[1] is not None and queue.shape[1] != q.shape[1]:
        raise ValueError(
            f"queue: expected shape (K, {q.shape[1]}) to match the feature dim of q, "
            f"got {tuple(queue.shape)}"
        )
    _check_reduction(reduction)
    dtype = _logit_dtype(q, k, queue)
    q = _unit(tf.cast(q, dtype))  # (N, D)
    k = _unit(tf.cast(k, dtype))  # (N, D)
    negatives = _unit(tf.stop_gradient(tf.cast(queue, dtype)))  # (K, D)
    l_pos = tf.reduce_sum(q * k, axis=1, keepdims=True)  # (N, 1)
    l_neg = tf.matmul(q, negatives, transpose_b=True)  # (N, K)
    logits = tf.concat([l_pos, l_neg], axis=1) / t  # (N, 1+K)
    labels = tf.zeros(tf.shape(q)[0], dtype=tf.int32)  # the positive is column 0
    per_query = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)  # (N,)
    return tf.reduce_mean(per_query) if reduction == "mean" else per_query
