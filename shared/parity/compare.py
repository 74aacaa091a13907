"""One parity assertion helper, in the spirit of transformers' ``check_pt_tf_outputs``.

``compare(expected, actual, dtype=..., temperature=...)`` walks nested dicts/lists/tuples of
arrays, compares each leaf under the tolerance table and returns one :class:`Row` per leaf:
dotted name, shape, max abs diff, max rel diff, ULPs (in the actual's dtype), tolerance,
pass/fail. ``assert_close`` raises an ``AssertionError`` naming the worst quantity and printing
the whole table. The ``parity`` command and the cross-framework tests both use it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from shared.parity.tolerances import Tolerance, scale_for, tolerance


@dataclass
class Row:
    name: str
    quantity: str
    dtype: str
    shape: tuple
    max_abs: float
    max_rel: float
    ulps: float
    rtol: float
    atol: float
    scale: float
    worst_margin: float  # max over elements of |diff| / allowed; <= 1 passes
    passed: bool
    reason: str

    def as_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


def quantity_of(name: str) -> str:
    """Infer the tolerance-table quantity from a dotted name (``nt_xent.grad.z1`` -> grad)."""
    parts = name.lower().split(".")
    for q in ("grad", "per_anchor", "queue", "ptr", "ema", "param", "augment", "loss"):
        if any(p == q or p.startswith(q) or p.endswith(q) for p in parts):
            return q
    return "loss"


def flatten(tree, prefix: str = "") -> dict[str, np.ndarray]:
    """Nested dict / list / tuple of arrays -> {dotted.name: array}."""
    out: dict[str, np.ndarray] = {}
    if isinstance(tree, dict):
        for k in tree:
            out.update(flatten(tree[k], f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            out.update(flatten(v, f"{prefix}.{i}" if prefix else str(i)))
    else:
        out[prefix or "value"] = np.asarray(tree)
    return out


def _ulps(actual: np.ndarray, expected: np.ndarray) -> float:
    if not np.issubdtype(actual.dtype, np.floating) or actual.size == 0:
        return float(np.max(np.abs(actual.astype(np.float64) - expected))) if actual.size else 0.0
    spacing = np.spacing(np.abs(expected).astype(actual.dtype)).astype(np.float64)
    floor = np.spacing(actual.dtype.type(1)) * max(float(np.max(np.abs(expected))), 1e-30)
    spacing = np.maximum(spacing, floor)  # ulps of 0 are measured at the tensor's own scale
    return float(np.max(np.abs(actual.astype(np.float64) - expected) / spacing))


def compare_leaf(
    name,
    expected,
    actual,
    *,
    dtype: str,
    temperature=None,
    tol: Tolerance | None = None,
    quantity: str | None = None,
    grad_floor: float = 0.0,
) -> Row:
    """Compare one leaf under the tolerance of its quantity.

    Args:
        name: dotted name of the leaf, from which the quantity is inferred.
        expected: the reference array (any shape), compared in float64.
        actual: the array under test, of the same shape.
        dtype: the dtype whose tolerance applies ("float32", "float64", ...).
        temperature: tau, for the quantities whose scale depends on it.
        tol: a tolerance to use instead of the table's.
        quantity: the tolerance-table quantity, instead of the one inferred from ``name``.
        grad_floor: the least gradient scale (``shared.parity.tolerances.natural_grad_scale``).

    Returns:
        A :class:`Row`; a shape mismatch or a non-finite actual value is a failed row with
        infinite differences.
    """
    q = quantity or quantity_of(name)
    tol = tol or tolerance(q, "int" if q == "ptr" else dtype)
    e = np.asarray(expected, dtype=np.float64)
    a_raw = np.asarray(actual)
    if e.shape != a_raw.shape:
        reason = f"shape mismatch: expected {e.shape}, got {a_raw.shape}"
        return _failed_row(name, q, dtype, tuple(a_raw.shape), tol, 1.0, reason)
    a = a_raw.astype(np.float64)
    scale = scale_for(q, e, temperature, grad_floor)
    if not np.all(np.isfinite(a)):
        return _failed_row(name, q, dtype, e.shape, tol, scale, "non-finite values in actual")
    diff = np.abs(a - e)
    allowed = tol.atol * scale + tol.rtol * np.abs(e)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(np.abs(e) > 0, diff / np.abs(e), np.where(diff > 0, np.inf, 0.0))
        margin = np.where(allowed > 0, diff / allowed, np.where(diff > 0, np.inf, 0.0))
    worst = float(margin.max()) if margin.size else 0.0
    return Row(
        name,
        q,
        dtype,
        e.shape,
        float(diff.max()) if diff.size else 0.0,
        float(rel.max()) if rel.size else 0.0,
        _ulps(a_raw if a_raw.dtype.kind == "f" else a, e),
        tol.rtol,
        tol.atol,
        scale,
        worst,
        worst <= 1.0,
        tol.reason,
    )


def _failed_row(
    name: str, q: str, dtype: str, shape: tuple, tol: Tolerance, scale: float, reason: str
) -> Row:
    """A row that fails before any element is compared: every difference infinite."""
    inf = np.inf
    return Row(name, q, dtype, shape, inf, inf, inf, tol.rtol, tol.atol, scale, inf, False, reason)


def compare(
    expected, actual, *, dtype: str, temperature=None, overrides=None, grad_floor: float = 0.0
) -> list[Row]:
    """Compare nested outputs leaf by leaf. ``overrides`` maps a dotted name to a Tolerance.

    ``grad_floor`` (see ``shared.parity.tolerances.natural_grad_scale``) sets the least gradient scale.
    """
    fe, fa = flatten(expected), flatten(actual)
    missing = sorted(set(fe) ^ set(fa))
    if missing:
        raise AssertionError(f"compared outputs differ in their quantities: {missing}")
    overrides = overrides or {}
    return [
        compare_leaf(
            n,
            fe[n],
            fa[n],
            dtype=dtype,
            temperature=temperature,
            tol=overrides.get(n),
            grad_floor=grad_floor,
        )
        for n in fe
    ]


def group_of(name: str) -> str:
    """The tolerance group of one training-step output, from its canonical name.

    Step dumps (``torch_impl.parity.step_outputs``, the distributed workers) are flat dicts:
    ``loss``; ``grad/<param>`` and the optimiser's ``slot/<param>/<slot>`` (after one step a
    momentum slot is ``g + wd w``, so it is compared as a gradient); ``.../queue`` and
    ``.../queue_ptr``; everything else (``h``, ``z``, ``after/<param>``, BN statistics) is a
    ``param``. The group is the quantity :func:`compare_grouped` looks up in the tolerance table.

    >>> [group_of(n) for n in ("loss", "slot/fc/w/momentum", "after/queue", "after/queue_ptr")]
    ['loss', 'grad', 'queue', 'ptr']
    """
    if name == "loss":
        return "loss"
    if name.startswith(("grad/", "slot/")):
        return "grad"
    if name.endswith("queue_ptr"):
        return "ptr"
    if name.endswith("queue"):
        return "queue"
    return "param"


def compare_grouped(
    expected: dict,
    actual: dict,
    *,
    dtype: str,
    temperature=None,
    overrides=None,
    skip: tuple[str, ...] = (),
) -> list[Row]:
    """Compare two flat step dumps name by name, each under its :func:`group_of` tolerance.

    Rows are named ``<group>.<name>`` (so ``overrides`` are keyed ``"queue.after/queue"``);
    names ending in one of ``skip`` are left out (a caller that pins them in another way).
    """
    if sorted(expected) != sorted(actual):
        raise AssertionError(
            f"compared outputs differ in their quantities: {sorted(set(expected) ^ set(actual))}"
        )
    groups: dict[str, tuple[dict, dict]] = {}
    for k in expected:
        if skip and k.endswith(skip):
            continue
        want, got = groups.setdefault(group_of(k), ({}, {}))
        want[k], got[k] = expected[k], actual[k]
    rows: list[Row] = []
    for group, (want, got) in groups.items():
        rows += compare(
            {group: want}, {group: got}, dtype=dtype, temperature=temperature, overrides=overrides
        )
    return rows


def raise_if_failed(rows: list[Row], context: str = "") -> list[Row]:
    """Raise ``AssertionError`` naming the worst failing row and printing all of them."""
    bad = [r for r in rows if not r.passed]
    if bad:
        worst = max(bad, key=lambda r: r.worst_margin)
        raise AssertionError(
            f"{context + ': ' if context else ''}{len(bad)} of {len(rows)} quantities out of "
            f"tolerance; worst is '{worst.name}' (max abs {worst.max_abs:.3e}, max rel "
            f"{worst.max_rel:.3e}, {worst.worst_margin:.3g}x the allowed {worst.rtol:.1e} rel + "
            f"{worst.atol * worst.scale:.2e} abs; {worst.reason})\n" + format_rows(rows)
        )
    return rows


def format_rows(rows: list[Row]) -> str:
    head = (
        f"{'quantity':<34} {'dtype':<8} {'shape':<12} {'max_abs':>10} {'max_rel':>10} "
        f"{'ulps':>9} {'rtol':>8} {'atol*scale':>10}  ok"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.name:<34} {r.dtype:<8} {str(tuple(r.shape)):<12} {r.max_abs:>10.3e} "
            f"{r.max_rel:>10.3e} {r.ulps:>9.3g} {r.rtol:>8.1e} {r.atol * r.scale:>10.2e}  "
            f"{'ok' if r.passed else 'FAIL'}"
        )
    return "\n".join(lines)


def assert_close(
    expected,
    actual,
    *,
    dtype: str,
    temperature=None,
    overrides=None,
    context="",
    grad_floor: float = 0.0,
):
    """Like :func:`compare`, but raise ``AssertionError`` naming the worst quantity on failure."""
    rows = compare(
        expected,
        actual,
        dtype=dtype,
        temperature=temperature,
        overrides=overrides,
        grad_floor=grad_floor,
    )
    return raise_if_failed(rows, context)
