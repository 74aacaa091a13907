"""The one tolerance table. Every test and the ``parity`` command take their tolerances here.

A comparison of ``actual`` against ``expected`` passes where, element-wise,

    |actual - expected| <= atol * scale + rtol * |expected|

and ``scale`` is the natural magnitude of the quantity (:func:`scale_for`):

* ``loss`` and ``per_anchor``: ``max(1, 1/tau)``, the largest possible logit. The loss is
  ``logsumexp(logits) - logit_pos``; its rounding error is a few ulps *of the logits*, not of
  the (possibly tiny) result, so a well-separated loss near 0 is compared in absolute terms.
* ``grad``: ``max(max |expected|, grad_floor)``. Gradients scale with ``1/(tau N ||z||)``; a
  fixed atol would be meaningless for inputs of norm 1e-3 or 1e4. ``grad_floor`` (see
  :func:`natural_grad_scale`) covers gradients that are exactly 0 in exact arithmetic
  (collapsed or 1-D embeddings), where both sides return rounding noise of that magnitude.
* ``queue``, ``ptr``: exact. The ring buffer only copies values.
* ``ema``, ``param``: ``max |expected|``; an EMA or an optimiser update accumulates one
  rounding per step.
* ``augment``: 1, pixels are in [0, 1].

An override must give its reason (``override(..., reason=...)``); it is reported with the row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float
    reason: str


_F32_EPS = float(np.finfo(np.float32).eps)  # 1.19e-7

TOLERANCES: dict[tuple[str, str], Tolerance] = {
    # float64: both sides compute in double; differences are reassociation (BLAS blocking,
    # autograd's order of adds) of O(N + K) terms, far below 1e-10 of the logit scale.
    ("loss", "float64"): Tolerance(1e-10, 1e-12, "float64 reassociation of O(N+K) sums"),
    ("per_anchor", "float64"): Tolerance(1e-10, 1e-12, "float64 reassociation of O(N+K) sums"),
    ("grad", "float64"): Tolerance(1e-8, 1e-10, "autograd vs closed form; cancellation in P - Y"),
    # float32 against the float64 oracle: inputs are rounded to float32 first (1 ulp), the
    # softmax of logits up to 1/tau amplifies rounding by ~|logit|, the sums have N + K terms.
    ("loss", "float32"): Tolerance(1e-5, 64 * _F32_EPS, "fp32 rounding of logits up to 1/tau"),
    ("per_anchor", "float32"): Tolerance(1e-5, 64 * _F32_EPS, "fp32 rounding of logits"),
    ("grad", "float32"): Tolerance(
        1e-3, 2e-4, "fp32 softmax + normalisation backward; P - Y cancels near the optimum"
    ),
    # Mixed precision: logits are kept in float32 (see torch_impl.losses), but the inputs and
    # the matmul run in half precision, so the cosines carry the half type's rounding.
    ("loss", "bfloat16"): Tolerance(2e-2, 2e-2, "bf16 has 8 mantissa bits: cosines +-4e-3"),
    ("loss", "float16"): Tolerance(5e-3, 4e-3, "fp16 has 11 mantissa bits: cosines +-5e-4"),
    # State machines.
    ("queue", "float32"): Tolerance(0.0, 0.0, "the ring buffer copies values: exact"),
    ("queue", "float64"): Tolerance(
        1e-12, 1e-13, "keys computed by two frameworks' encoders; the ring buffer itself is exact"
    ),
    ("ptr", "int"): Tolerance(0.0, 0.0, "integer pointer: exact"),
    ("ema", "float32"): Tolerance(1e-5, 1e-6, "one fp32 rounding per step, 100 steps"),
    ("ema", "float64"): Tolerance(1e-12, 1e-13, "one fp64 rounding per step, 100 steps"),
    # Optimiser updates against shared.oracle.optim, several steps: the trust ratio's two norms
    # (sums of squares in another order) and Adam's sqrt are the only non-elementwise parts.
    ("param", "float64"): Tolerance(1e-12, 1e-13, "fp64 norms summed in another order"),
    # One float32 training step of a whole network in two frameworks: the conv and matmul
    # kernels (oneDNN algorithms, reduction orders) round differently; features and weights
    # after one step carry a few hundred ulps of their scale.
    ("param", "float32"): Tolerance(1e-4, 1e-5, "fp32 conv/matmul kernels of two frameworks"),
    # Augmented views (pixels in [0, 1]) from the same sampled parameters: the bilinear
    # weights, the blends and the blur are float32 arithmetic in two orders, and the hue's
    # RGB -> HSV -> RGB round trip divides by max - min of a pixel. Measured worst: 1.0e-5.
    ("augment", "float32"): Tolerance(0.0, 5e-5, "fp32 pixel arithmetic in two op orders"),
}


BF16_U = 2.0**-8  # bf16's unit roundoff: 8 significant bits, round to nearest even


def bf16_step_tolerance(layers: int) -> Tolerance:
    """The tolerance of a bf16-autocast step's output, torch against TF, after ``layers``
    bf16 convolutions and matmuls (a first-order model of the rounding, derived, not fitted).

    Under autocast a conv or matmul rounds its input and its weight to bf16 and stores its
    output in bf16: three roundings of at most ``u = 2^-8`` relative each, so about ``3u`` of
    the layer's scale (float32 accumulation adds ``~n 2^-24``, negligible). BatchNorm, ReLU and
    pooling keep scale-relative errors at first order, so after L such layers one framework's
    output is within about ``3 L u`` of the exact one, and the two frameworks within twice
    that: ``atol = 6 L u`` of the scale (``max |expected|``; for the loss, ``|loss|``), rtol 0.

    What it is not: a rigorous bound. It takes each layer's conditioning as 1; the loss's
    sensitivity to the projections (up to ``4 / tau``) is left out, as it would make the
    tolerance vacuous. Gradients have no such model: BatchNorm's backward subtracts batch means
    of the upstream gradient, a cancellation that amplifies bf16 rounding (one framework's bf16
    gradients differ from its own float32 gradients by up to about 0.4 of ``max |g|`` on the
    step cases), so the bf16 step compares the loss and the features only; the gradients are
    compared in float32 and float64.

    Example:
        >>> round(bf16_step_tolerance(6).atol, 4)  # small_cnn + a 2-layer head
        0.1406
    """
    if layers < 1:
        raise ValueError(f"layers: expected >= 1 bf16 layers, got {layers}")
    return Tolerance(
        0.0,
        6 * layers * BF16_U,
        f"bf16 autocast, {layers} rounded layers: 2 frameworks x 3 roundings x {layers} x 2^-8",
    )


def tolerance(quantity: str, dtype: str) -> Tolerance:
    """Look up the tolerance for a quantity (loss, per_anchor, grad, queue, ptr, ema) and dtype."""
    key = (quantity, str(dtype))
    if key not in TOLERANCES:
        known = sorted({f"{q}/{d}" for q, d in TOLERANCES})
        raise KeyError(f"no tolerance for {quantity}/{dtype}; known: {', '.join(known)}")
    return TOLERANCES[key]


def override(quantity: str, dtype: str, *, rtol=None, atol=None, reason: str) -> Tolerance:
    """A loosened (or tightened) tolerance. ``reason`` is required and shows up in reports."""
    if not reason or not reason.strip():
        raise ValueError("reason: an override of the tolerance table needs a written reason")
    base = tolerance(quantity, dtype)
    return Tolerance(
        base.rtol if rtol is None else rtol,
        base.atol if atol is None else atol,
        f"OVERRIDE ({reason}); table: {base.reason}",
    )


def natural_grad_scale(temperature: float, *inputs: np.ndarray) -> float:
    """``4 / (tau * rows * min row norm)``, ``rows`` = the rows of the first two inputs (2N).

    This bounds a gradient row of either loss: the logit gradient G = (P - Y) / rows has row and
    column sums of |G| at most 2 / (rows / 2), so |dL/du_i| <= 4 / (rows tau), and the
    normalisation divides by ||z_i||. It is reached when all rows are (anti)parallel, e.g. D = 1.
    """
    rows = sum(np.shape(x)[0] for x in inputs[:2])
    norm = float(
        min(np.linalg.norm(np.asarray(x, dtype=np.float64), axis=1).min() for x in inputs[:2])
    )
    return 4.0 / (temperature * max(rows, 1) * max(norm, 1e-300))


def scale_for(
    quantity: str, expected: np.ndarray, temperature: float | None = None, grad_floor: float = 0.0
) -> float:
    """The magnitude that multiplies ``atol`` for this quantity (see the module docstring)."""
    if quantity in ("loss", "per_anchor"):
        return max(1.0, 1.0 / temperature) if temperature else 1.0
    if quantity in ("grad", "ema", "param", "queue"):
        m = float(np.max(np.abs(expected))) if np.size(expected) else 0.0
        m = max(m, grad_floor if quantity == "grad" else 0.0)
        return m if m > 0 else 1.0
    return 1.0
