"""Reference contrastive losses in NumPy (float64): the oracle every framework is checked against.

Two losses, written the way the papers write them:

* **NT-Xent** (SimCLR, Chen et al. 2020, eq. 1). Two views ``z1, z2`` of the same N images give
  2N anchors. For anchor *i* with positive *p(i)* (the other view of the same image)::

      l_i = -log( exp(s_{i,p(i)} / tau) / sum_{j != i} exp(s_{ij} / tau) ),   s_ij = cos(z_i, z_j)

  and the loss is the **mean over all 2N anchors**. The anchor's similarity to itself is
  excluded from the denominator; the other 2N - 2 entries are negatives.

* **InfoNCE** (CPC, van den Oord et al. 2018; MoCo, He et al. 2020, eq. 1). Query ``q``, its
  positive key ``k`` and a queue of K negative keys (one per row, shape (K, D))::

      l_n = -log( exp(q_n.k_n / tau) / (exp(q_n.k_n / tau) + sum_j exp(q_n.queue_j / tau)) )

  and the loss is the mean over the N queries. q, k and the queue rows are L2-normalised here.

Published conventions (see :data:`CONVENTIONS`, each with a tested conversion):

* ``rosetta`` (this project): mean over the 2N anchors, as above.
* ``simclr_official``: google-research/simclr (``tf2/objective.py``) computes the cross-entropy
  of the a-side anchors and of the b-side anchors, each averaged over N, and **adds** them.
  That is exactly ``2 x`` ours.
* ``lightly``: ``lightly.loss.NTXentLoss`` without a memory bank averages over the 2N anchors and
  excludes self-similarity: ``1 x`` ours.
* ``keras_io``: the keras-io SimCLR example uses only the N x N *cross-view* similarities
  (z1 against z2); same-view negatives are left out. This is a different quantity: anchor
  z1_i is compared with the N rows z2_j, one of which is its positive, so it has N - 1
  negatives instead of 2N - 2; see :func:`nt_xent_cross_view`.
  Collapsed embeddings give log(N) there and log(2N - 1) here.
* ``moco_v3``: MoCo v3 multiplies each direction's cross-view cross-entropy by ``2 tau`` and
  sums both directions, so it equals ``4 tau x`` the keras-io value (and its gradients are
  rescaled by the same factor, which is why MoCo v3 tunes its learning rate with it).

Seed 002's formula, which puts raw cosine similarities into the ratio (no exp, no tau), is
*not* a loss: see :func:`raw_cosine_ratio_as_quoted` and ``shared.oracle.worked_examples``.

Zero rows: an all-zero row has no direction, so normalisation is undefined. We raise
``ValueError`` rather than add a silent epsilon (torch's ``F.normalize`` clamps the norm at
1e-12, which turns a zero row into a zero vector with a zero similarity to everything).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CONVENTIONS",
    "Convention",
    "InfoNCETerms",
    "NTXentTerms",
    "check_temperature",
    "info_nce",
    "info_nce_grad",
    "info_nce_loop",
    "info_nce_terms",
    "l2_normalize",
    "logsumexp",
    "nt_xent",
    "nt_xent_cross_view",
    "nt_xent_grad",
    "nt_xent_loop",
    "nt_xent_shards",
    "nt_xent_terms",
    "raw_cosine_ratio_as_quoted",
]


# --------------------------------------------------------------------------------------------
# Input validation: every public function goes through these, so errors read the same.
# --------------------------------------------------------------------------------------------
def check_temperature(temperature: float) -> float:
    """Return ``temperature`` as a float, or raise ``ValueError`` unless it is finite and > 0."""
    try:
        t = float(temperature)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"temperature: expected a positive finite number, got {temperature!r}"
        ) from e
    if not math.isfinite(t) or t <= 0.0:
        raise ValueError(f"temperature: expected a positive finite number, got {temperature!r}")
    return t


def _as_matrix(name: str, x, min_rows: int = 1) -> np.ndarray:
    """Validate a 2-D finite real array with non-zero rows and return it as float64."""
    a = np.asarray(x)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise ValueError(f"{name}: expected a real numeric array, got dtype {a.dtype}")
    if np.iscomplexobj(a):
        raise ValueError(f"{name}: expected a real array, got complex dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(
            f"{name}: expected a 2-D array (rows, dim), got ndim={a.ndim} shape={a.shape}"
        )
    if a.shape[0] < min_rows:
        raise ValueError(f"{name}: expected at least {min_rows} rows, got shape {a.shape}")
    if a.shape[1] < 1:
        raise ValueError(f"{name}: expected dim >= 1, got shape {a.shape}")
    a = a.astype(np.float64, copy=False)
    if not np.all(np.isfinite(a)):
        bad = int(np.argwhere(~np.isfinite(a))[0][0])
        raise ValueError(f"{name}: expected finite values, got NaN or inf in row {bad}")
    return a


def l2_normalize(name: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise L2 normalisation. Returns ``(x / ||x||, ||x||)``; the norms have shape (rows, 1).

    Raises:
        ValueError: if a row is all zeros (its direction is undefined).
    """
    norms = np.linalg.norm(x, axis=1, keepdims=True)  # (R, 1); scaled internally, no overflow
    if np.any(norms == 0.0):
        bad = int(np.flatnonzero(norms[:, 0] == 0.0)[0])
        raise ValueError(
            f"{name}: expected rows with non-zero norm, got an all-zero row at index {bad} "
            "(its direction, and so its cosine similarity, is undefined)"
        )
    return x / norms, norms


def logsumexp(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """Stable log-sum-exp: subtract the row max first. ``-inf`` entries (masked) are ignored."""
    m = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def _normalize_grad(d_unit: np.ndarray, unit: np.ndarray, norm: np.ndarray) -> np.ndarray:
    """Back-propagate through u = z / ||z||:  dL/dz = (I - u u^T) dL/du / ||z||."""
    return (d_unit - unit * np.sum(unit * d_unit, axis=1, keepdims=True)) / norm


# --------------------------------------------------------------------------------------------
# NT-Xent
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NTXentTerms:
    """Every intermediate of NT-Xent, for worked examples and tests.

    Attributes:
        u: (2N, D) L2-normalised projections, view 1 in rows 0..N-1 and view 2 in N..2N-1.
        norms: (2N, 1) the norms that were divided out.
        sim: (2N, 2N) cosine similarities u u^T.
        logits: (2N, 2N) sim / tau.
        masked_logits: (2N, 2N) logits with the diagonal set to -inf (self excluded).
        probs: (2N, 2N) row softmax of masked_logits (zeros on the diagonal).
        positive: (2N,) index of each anchor's positive, (i + N) mod 2N.
        per_anchor: (2N,) the loss of each anchor.
        loss: mean of per_anchor.
        temperature: tau.
    """

    u: np.ndarray
    norms: np.ndarray
    sim: np.ndarray
    logits: np.ndarray
    masked_logits: np.ndarray
    probs: np.ndarray
    positive: np.ndarray
    per_anchor: np.ndarray
    loss: float
    temperature: float


def _check_pair(z1, z2, n1: str = "z1", n2: str = "z2", min_rows: int = 2):
    a = _as_matrix(n1, z1, min_rows=min_rows)
    b = _as_matrix(n2, z2, min_rows=min_rows)
    if a.shape != b.shape:
        raise ValueError(f"{n2}: expected the same shape as {n1} {a.shape}, got {b.shape}")
    return a, b


def nt_xent_terms(z1, z2, temperature: float = 0.5) -> NTXentTerms:
    """NT-Xent with every intermediate exposed. Arguments as :func:`nt_xent`."""
    t = check_temperature(temperature)
    a, b = _check_pair(z1, z2)
    n = a.shape[0]
    u, norms = l2_normalize("z1/z2", np.concatenate([a, b], axis=0))  # (2N, D)
    sim = u @ u.T  # (2N, 2N)
    logits = sim / t  # (2N, 2N)
    masked = logits.copy()
    np.fill_diagonal(masked, -np.inf)  # self-similarity excluded
    lse = logsumexp(masked, axis=1)  # (2N,)
    probs = np.exp(masked - lse[:, None])  # (2N, 2N), diagonal exactly 0
    positive = (np.arange(2 * n) + n) % (2 * n)  # (2N,)
    per_anchor = lse - logits[np.arange(2 * n), positive]  # (2N,)
    return NTXentTerms(
        u, norms, sim, logits, masked, probs, positive, per_anchor, float(per_anchor.mean()), t
    )


def nt_xent(z1, z2, temperature: float = 0.5) -> float:
    """NT-Xent (normalised temperature-scaled cross-entropy), mean over the 2N anchors.

    SimCLR eq. (1): ``l(i, j) = -log exp(s_ij/tau) / sum_{k != i} exp(s_ik/tau)`` with
    ``s = cos``, averaged over both directions of every positive pair.

    Args:
        z1: (N, D) projections of the first views; N >= 2. Rows are L2-normalised inside.
        z2: (N, D) projections of the second views, row i pairs with ``z1[i]``.
        temperature: tau > 0.

    Returns:
        The loss as a Python float (float64 arithmetic).

    Raises:
        ValueError: on wrong ndim, mismatched shapes, N < 2, D < 1, NaN/inf, an all-zero row,
            or a temperature that is not a positive finite number.

    Example:
        >>> import numpy as np
        >>> z = np.ones((4, 3))                      # collapsed: every row identical
        >>> round(nt_xent(z, z, 0.5), 6) == round(float(np.log(2 * 4 - 1)), 6)
        True
    """
    return nt_xent_terms(z1, z2, temperature).loss


def nt_xent_grad(z1, z2, temperature: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Analytic gradient of :func:`nt_xent` with respect to ``z1`` and ``z2``.

    Derivation. Let u_i = z_i/||z_i|| (2N rows), S = u u^T / tau and
    L = (1/2N) sum_i [lse_{j != i} S_ij - S_{i,p(i)}]. Then

    * dL/dS_ij = G_ij = (P_ij - Y_ij) / (2N), with P the row softmax of the masked logits
      (P_ii = 0) and Y the one-hot matrix of positives;
    * S_ij = u_i.u_j / tau appears in row i and column j, so dL/du = (G + G^T) u / tau;
    * through the normalisation, dL/dz_i = (I - u_i u_i^T) dL/du_i / ||z_i||.

    Returns:
        (dz1, dz2), each (N, D) float64.
    """
    tm = nt_xent_terms(z1, z2, temperature)
    two_n = tm.u.shape[0]
    g = tm.probs.copy()  # (2N, 2N)
    g[np.arange(two_n), tm.positive] -= 1.0
    g /= two_n
    d_u = (g + g.T) @ tm.u / tm.temperature  # (2N, D)
    dz = _normalize_grad(d_u, tm.u, tm.norms)  # (2N, D)
    n = two_n // 2
    return dz[:n], dz[n:]


def nt_xent_shards(z1, z2, temperature: float = 0.5, world: int = 2) -> np.ndarray:
    """Each rank's share of NT-Xent when the N rows are split over ``world`` ranks (data
    parallelism with gathered negatives), shape (world,).

    Rank r holds rows [r n, (r+1) n) of z1 and z2 (n = N / world); its anchors are its 2n rows,
    its candidates the 2N rows of every rank, and its loss is the mean over its own anchors.
    Since every rank has the same number of anchors, ``nt_xent_shards(...).mean()`` is
    :func:`nt_xent`: gathering the negatives makes W processes compute the one-process loss
    (without the gather each rank would see only 2n - 2 negatives, a different loss).

    Example:
        >>> import numpy as np
        >>> z1, z2 = np.random.default_rng(0).normal(size=(2, 8, 4))
        >>> bool(np.isclose(nt_xent_shards(z1, z2, 0.5, 2).mean(), nt_xent(z1, z2, 0.5)))
        True
    """
    tm = nt_xent_terms(z1, z2, temperature)
    n_all = tm.u.shape[0] // 2
    if world < 1 or n_all % world:
        raise ValueError(f"world: expected a divisor of the {n_all} rows, got {world}")
    n = n_all // world
    rows = [np.r_[r * n : (r + 1) * n, n_all + r * n : n_all + (r + 1) * n] for r in range(world)]
    return np.array([tm.per_anchor[idx].mean() for idx in rows])


def nt_xent_loop(z1, z2, temperature: float = 0.5) -> float:
    """SimCLR Algorithm 1, transcribed literally with Python loops (the oracle for tests).

    The paper interleaves the views: z_{2k-1} and z_{2k} are the two views of image k.
    It is slow (O(N^2 D) Python operations) and uses plain ``exp``, exactly as printed.
    """
    t = check_temperature(temperature)
    a, b = _check_pair(z1, z2)
    n = a.shape[0]
    z = []  # interleaved, 1-based in the paper, 0-based here
    for k in range(n):
        z.append(list(a[k]))
        z.append(list(b[k]))

    def sim(x, y):  # s_{i,j} = z_i^T z_j / (||z_i|| ||z_j||)
        dot = sum(xi * yi for xi, yi in zip(x, y))
        return dot / (math.sqrt(sum(xi * xi for xi in x)) * math.sqrt(sum(yi * yi for yi in y)))

    s = [[sim(z[i], z[j]) for j in range(2 * n)] for i in range(2 * n)]

    def ell(i, j):  # l(i, j) = -log exp(s_ij/t) / sum_{k != i} exp(s_ik/t)
        den = sum(math.exp(s[i][k] / t) for k in range(2 * n) if k != i)
        return -math.log(math.exp(s[i][j] / t) / den)

    total = 0.0
    for k in range(n):  # L = 1/(2N) sum_k [l(2k-1, 2k) + l(2k, 2k-1)]
        total += ell(2 * k, 2 * k + 1) + ell(2 * k + 1, 2 * k)
    return total / (2 * n)


def nt_xent_cross_view(z1, z2, temperature: float = 0.5) -> float:
    """The keras-io convention: cross-view negatives only, averaged over both directions.

    ``S = u1 u2^T / tau`` is (N, N); row i's target is column i. The loss is
    ``(CE(S, arange) + CE(S^T, arange)) / 2``. Same-view negatives are left out, so this is a
    different quantity from :func:`nt_xent` (collapsed embeddings give log N, not log(2N-1)).
    """
    t = check_temperature(temperature)
    a, b = _check_pair(z1, z2, min_rows=1)
    u1, _ = l2_normalize("z1", a)
    u2, _ = l2_normalize("z2", b)
    s = u1 @ u2.T / t  # (N, N)
    diag = np.diag(s)
    return float(
        ((logsumexp(s, axis=1) - diag).mean() + (logsumexp(s.T, axis=1) - diag).mean()) / 2
    )


# --------------------------------------------------------------------------------------------
# InfoNCE (MoCo)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InfoNCETerms:
    """Every intermediate of InfoNCE.

    Attributes:
        q, k: (N, D) normalised queries and positive keys.
        queue: (K, D) normalised negative keys.
        q_norm, k_norm: (N, 1) the norms divided out.
        l_pos: (N, 1) q.k.
        l_neg: (N, K) q.queue^T.
        logits: (N, 1+K) [l_pos, l_neg] / tau; the positive is column 0.
        probs: (N, 1+K) row softmax of logits.
        per_anchor: (N,) per-query losses.
        loss: mean of per_anchor.
        temperature: tau.
    """

    q: np.ndarray
    k: np.ndarray
    queue: np.ndarray
    q_norm: np.ndarray
    k_norm: np.ndarray
    l_pos: np.ndarray
    l_neg: np.ndarray
    logits: np.ndarray
    probs: np.ndarray
    per_anchor: np.ndarray
    loss: float
    temperature: float


def _check_info_nce_inputs(q, k, queue):
    qa, ka = _check_pair(q, k, "q", "k", min_rows=1)
    qu = _as_matrix("queue", queue, min_rows=1)
    if qu.shape[1] != qa.shape[1]:
        raise ValueError(
            f"queue: expected shape (K, {qa.shape[1]}) to match the feature dim D={qa.shape[1]} "
            f"of q, got {qu.shape}"
        )
    return qa, ka, qu


def info_nce_terms(q, k, queue, temperature: float = 0.07) -> InfoNCETerms:
    """InfoNCE with every intermediate exposed. Arguments as :func:`info_nce`."""
    t = check_temperature(temperature)
    qa, ka, qu = _check_info_nce_inputs(q, k, queue)
    qn, q_norm = l2_normalize("q", qa)  # (N, D)
    kn, k_norm = l2_normalize("k", ka)  # (N, D)
    un, _ = l2_normalize("queue", qu)  # (K, D)
    l_pos = np.sum(qn * kn, axis=1, keepdims=True)  # (N, 1)
    l_neg = qn @ un.T  # (N, K)
    logits = np.concatenate([l_pos, l_neg], axis=1) / t  # (N, 1+K)
    lse = logsumexp(logits, axis=1)  # (N,)
    probs = np.exp(logits - lse[:, None])  # (N, 1+K)
    per_anchor = lse - logits[:, 0]  # (N,)
    return InfoNCETerms(
        qn,
        kn,
        un,
        q_norm,
        k_norm,
        l_pos,
        l_neg,
        logits,
        probs,
        per_anchor,
        float(per_anchor.mean()),
        t,
    )


def info_nce(q, k, queue, temperature: float = 0.07) -> float:
    """InfoNCE as in MoCo: one positive key and K queue negatives per query, mean over N.

    MoCo eq. (1): ``L_q = -log exp(q.k+/tau) / (exp(q.k+/tau) + sum_i exp(q.k_i/tau))``.

    Args:
        q: (N, D) queries, N >= 1. L2-normalised inside.
        k: (N, D) positive keys, row n pairs with ``q[n]``. L2-normalised inside.
        queue: (K, D) negative keys, one per row, K >= 1. L2-normalised inside.
            (MoCo's pseudocode stores the queue as (D, K); we store keys as rows so that
            enqueueing a batch is a row slice.)
        temperature: tau > 0.

    Returns:
        The loss as a Python float.

    Raises:
        ValueError: on wrong ndim, q/k shape mismatch, a queue whose D differs, N < 1, K < 1,
            NaN/inf, an all-zero row, or a bad temperature.

    Example:
        >>> import numpy as np
        >>> x = np.ones((2, 4))                      # collapsed: q = k = every queue key
        >>> round(info_nce(x, x, np.ones((5, 4)), 0.07), 6) == round(float(np.log(5 + 1)), 6)
        True
    """
    return info_nce_terms(q, k, queue, temperature).loss


def info_nce_grad(q, k, queue, temperature: float = 0.07) -> tuple[np.ndarray, np.ndarray]:
    """Analytic gradient of :func:`info_nce` with respect to ``q`` and ``k``.

    The queue is a buffer and receives no gradient in MoCo. Derivation: with
    G = (P - e_0) / N (N, 1+K) the logit gradient, logits = [q.k, q queue^T] / tau gives

        dL/dq_hat = (G[:, :1] * k_hat + G[:, 1:] queue_hat) / tau
        dL/dk_hat = G[:, :1] * q_hat / tau

    and each goes through the normalisation as in :func:`nt_xent_grad`.

    Returns:
        (dq, dk), each (N, D) float64.
    """
    tm = info_nce_terms(q, k, queue, temperature)
    n = tm.q.shape[0]
    g = tm.probs.copy()  # (N, 1+K)
    g[:, 0] -= 1.0
    g /= n
    d_qn = (g[:, :1] * tm.k + g[:, 1:] @ tm.queue) / tm.temperature  # (N, D)
    d_kn = g[:, :1] * tm.q / tm.temperature  # (N, D)
    return _normalize_grad(d_qn, tm.q, tm.q_norm), _normalize_grad(d_kn, tm.k, tm.k_norm)


def info_nce_loop(q, k, queue, temperature: float = 0.07) -> float:
    """MoCo Algorithm 1's loss, transcribed with loops (the oracle for tests).

    ``l_pos = q.k``, ``l_neg = q.queue_j`` for every queue key, ``logits = [l_pos, l_neg]/t``,
    cross-entropy with label 0, mean over the minibatch.
    """
    t = check_temperature(temperature)
    qa, ka, qu = _check_info_nce_inputs(q, k, queue)

    def unit(v):
        s = math.sqrt(sum(x * x for x in v))
        return [x / s for x in v]

    keys = [unit(row) for row in qu]
    total = 0.0
    for qi, ki in zip(qa, ka):
        qi, ki = unit(qi), unit(ki)
        l_pos = sum(x * y for x, y in zip(qi, ki))
        l_neg = [sum(x * y for x, y in zip(qi, kj)) for kj in keys]
        den = math.exp(l_pos / t) + sum(math.exp(v / t) for v in l_neg)
        total += -math.log(math.exp(l_pos / t) / den)
    return total / qa.shape[0]


# --------------------------------------------------------------------------------------------
# Seed 002's broken formula, kept only to show that it fails.
# --------------------------------------------------------------------------------------------
def raw_cosine_ratio_as_quoted(z1, z2) -> np.ndarray:
    """Seed 002's formula as erratum 3 quotes it, per anchor, with ``s`` the raw cosine:
    ``L_i = -log( s(z1_i, z1_i) / (s(z1_i, z1_i) + sum_j s(z2_j, z1_i)) )``.

    The sum runs over every row of ``z2``, the anchor's own other view included. It has three
    errors: the "positive" is a vector with itself (always 1), the ratio holds raw cosines (no
    exp, no temperature), and so the denominator ``1 + sum_j s(z2_j, z1_i)`` can be below 1
    (a negative "loss"), zero (inf) or negative (NaN, the log of a negative number). Do not
    train on it: ``docs/errata.md`` (erratum 3) and worked example (g) run it.

    Args:
        z1: (N, D) anchors, no zero rows.
        z2: (N, D) the other view's embeddings, no zero rows.

    Returns:
        (N,) the per-anchor values, NaN where the ratio is negative, inf where it is infinite.
    """
    a, b = _check_pair(z1, z2, min_rows=1)
    u1, _ = l2_normalize("z1", a)
    u2, _ = l2_normalize("z2", b)
    own = np.sum(u1 * u1, axis=1)  # (N,) s(z1_i, z1_i) = 1: the anchor with itself
    den = own + np.sum(u1 @ u2.T, axis=1)  # (N,) 1 + its cross-view cosines; can be <= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.log(own / den)


# --------------------------------------------------------------------------------------------
# Published conventions
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Convention:
    """A published way of reducing the contrastive loss, and how it relates to ours.

    ``compute(z1, z2, temperature)`` evaluates that convention from our definitions;
    ``factor(temperature)`` is the exact multiplier from ``base`` to it.
    """

    name: str
    source: str
    base: str  # "nt_xent" (ours) or "cross_view" (keras-io quantity)
    factor: Callable[[float], float]
    description: str

    def compute(self, z1, z2, temperature: float) -> float:
        base = nt_xent if self.base == "nt_xent" else nt_xent_cross_view
        return self.factor(temperature) * base(z1, z2, temperature)


CONVENTIONS: dict[str, Convention] = {
    c.name: c
    for c in [
        Convention(
            "rosetta",
            "this project",
            "nt_xent",
            lambda t: 1.0,
            "mean over all 2N anchors, self-similarity excluded",
        ),
        Convention(
            "simclr_official",
            "google-research/simclr tf2/objective.py",
            "nt_xent",
            lambda t: 2.0,
            "loss_a + loss_b, each averaged over N: the sum of both directions",
        ),
        Convention(
            "lightly",
            "lightly.loss.NTXentLoss (no memory bank)",
            "nt_xent",
            lambda t: 1.0,
            "mean over 2N anchors, self-similarity excluded",
        ),
        Convention(
            "keras_io",
            "keras-io semi-supervised SimCLR example",
            "cross_view",
            lambda t: 1.0,
            "N x N cross-view logits only, mean of both directions; a different quantity",
        ),
        Convention(
            "moco_v3",
            "facebookresearch/moco-v3 builder.py",
            "cross_view",
            lambda t: 4.0 * t,
            "2 tau x CE per direction, summed over both: 4 tau x the keras-io value",
        ),
    ]
}
