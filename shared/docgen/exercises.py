"""The course's graded exercises: checkers that grade a learner's function against the NumPy
oracle (``shared.oracle``) and say what is wrong, with numbers; and the solutions.

Each checker runs the learner's function on a few fixed cases, compares the result with the
oracle and returns a :class:`Verdict` (``passed`` and a one-paragraph ``message``). A wrong answer
is matched against the typical mistakes first (each computed from the oracle's own terms), so
the message names the mistake: "your loss is 4x the reference: did you sum over the 2N anchors
instead of averaging?". The chapters print the verdict; ``tests/test_course.py`` shows that each
checker fails on typical wrong answers and passes on its solution.

=========================  =========================================  =====================
exercise (chapter)         the learner writes                          graded against
=========================  =========================================  =====================
ring buffer (3)            ``enqueue(queue, ptr, keys)``               ``queue.dequeue_and_enqueue``
InfoNCE (4)                ``info_nce(q, k, queue, temperature)``      ``losses.info_nce``
the quoted loss fixed (4) ``loss(z1, z2, temperature)``               ``losses.nt_xent``
NT-Xent in PyTorch (5)     ``nt_xent(z1, z2, temperature)``, tensors   ``losses.nt_xent(_grad)``
=========================  =========================================  =====================

The module imports only NumPy and the oracle, so chapter 4 runs with NumPy alone; the PyTorch
checker and solution import torch when called.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from shared.oracle import losses as L
from shared.oracle import queue as Q

__all__ = [
    "Verdict",
    "check_info_nce",
    "check_nt_xent_torch",
    "check_ring_buffer",
    "check_loss_fix",
    "quoted_loss",
    "solution_info_nce",
    "solution_nt_xent_torch",
    "solution_ring_buffer",
    "solution_loss_fix",
]

YOURS, REFERENCE = "your answer", "the reference solution"  # whose function a verdict graded
RTOL, ATOL = 1e-6, 1e-9  # float64 arithmetic in another order: far below any real mistake


@dataclass(frozen=True)
class Verdict:
    """A checker's answer: ``passed``, and the message that says why (printed by the cell)."""

    passed: bool
    message: str
    whose: str = YOURS  # "your answer" or "the reference solution": what was checked

    def __str__(self) -> str:
        verdict = "PASSED" if self.passed else "NOT YET"
        return f"{verdict} ({self.whose}): {self.message}"


@dataclass(frozen=True)
class Case:
    """One input the learner's function is run on; ``name`` says what it is, for messages."""

    name: str
    args: tuple
    tiny_tau: bool = False  # a temperature at which a naive exp overflows float64


@dataclass(frozen=True)
class Mistake:
    """A typical wrong answer: the value it gives on a case's args, and what to tell the learner
    (``{yours}``, ``{ref}`` and ``{case}`` are filled from the first case it gets wrong)."""

    value: Callable[..., float]
    message: str


def _report(verdict: Verdict) -> Verdict:
    return verdict


def _prints(grade: Callable[[Callable], Verdict]):
    """A checker from ``grade``: ``check(fn, whose=YOURS)`` grades ``fn``, prints the verdict
    with whose function it checked, and returns it."""

    @functools.wraps(grade)
    def check(fn, whose: str = YOURS) -> Verdict:
        verdict = dataclasses.replace(grade(fn), whose=whose)
        print(verdict)
        return verdict

    return check


def _close(a: float, b: float) -> bool:
    return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= ATOL + RTOL * abs(b)


def _copies(args: tuple) -> tuple:
    return tuple(a.copy() if isinstance(a, np.ndarray) else a for a in args)


def _raised(error: BaseException, case: Case, hint: str = "") -> Verdict:
    if isinstance(error, NotImplementedError):
        return Verdict(False, "not attempted yet: replace `raise NotImplementedError` with code.")
    return Verdict(
        False,
        f"your function raised {type(error).__name__}: {error} (on the case {case.name}).{hint}",
    )


def diagnose(values: list[float], cases: list[Case], reference, mistakes, what: str) -> Verdict:
    """Compare the learner's ``values`` (one per case) with ``reference(*case.args)``.

    Returns a passing verdict when every value agrees to ``RTOL``; otherwise the first of: a
    typical mistake that gives every value (compared where it is finite), a non-finite value, a
    constant ratio to the reference, the first case that disagrees.
    """
    refs = [float(reference(*c.args)) for c in cases]
    if all(_close(v, r) for v, r in zip(values, refs)):
        worst = max(abs(v - r) / max(abs(r), 1e-300) for v, r in zip(values, refs))
        return Verdict(
            True,
            f"matches {what} on all {len(cases)} cases (largest relative difference {worst:.1e}).",
        )
    bad = next(i for i, (v, r) in enumerate(zip(values, refs)) if not _close(v, r))
    for m in mistakes:
        theirs = [float(m.value(*c.args)) for c in cases]
        pairs = [(v, t) for v, t in zip(values, theirs) if math.isfinite(t)]
        if len(pairs) >= 2 and all(_close(v, t) for v, t in pairs):
            return Verdict(
                False, m.message.format(yours=values[bad], ref=refs[bad], case=cases[bad].name)
            )
    for v, r, c in zip(values, refs, cases):
        if not math.isfinite(v):
            hint = (
                " exp(s / tau) overflows float64 once s / tau > 709: subtract each row's largest"
                " logit before the exp (log-sum-exp), which changes nothing else."
                if c.tiny_tau
                else ""
            )
            return Verdict(
                False, f"on the case {c.name} your value is {v}, the reference {r:.4f}.{hint}"
            )
    ratios = [v / r for v, r in zip(values, refs) if r != 0]
    if ratios and all(abs(q - ratios[0]) <= 1e-6 * abs(ratios[0]) for q in ratios):
        return Verdict(
            False,
            f"your value is {ratios[0]:.4g}x the reference on every case (on {cases[0].name}: "
            f"yours {values[0]:.4f}, reference {refs[0]:.4f}): a factor in the reduction?",
        )
    v, r = values[bad], refs[bad]
    return Verdict(
        False,
        f"on the case {cases[bad].name} yours is {v:.6f}, the reference {r:.6f} (relative error "
        f"{abs(v - r) / max(abs(r), 1e-300):.2e}).",
    )


def _run_scalar(fn, cases: list[Case]) -> tuple[list[float] | None, Verdict | None]:
    """The learner's value on each case, or the verdict that says why there is none."""
    values = []
    for c in cases:
        try:
            out = fn(*_copies(c.args))
        except Exception as e:  # noqa: BLE001 - the learner's error becomes the message
            return None, _raised(e, c)
        arr = np.asarray(out, dtype=float)
        if arr.size != 1:
            return None, Verdict(
                False,
                f"expected one number (the mean), got an array of shape {arr.shape} on the case "
                f"{c.name}: reduce the per-anchor losses with .mean().",
            )
        values.append(float(arr.reshape(())))
    return values, None


# --------------------------------------------------------------------------------------------
# Cases and the typical mistakes of the two losses, each written with the oracle's terms
# --------------------------------------------------------------------------------------------
def _views(
    n: int, d: int, seed: int, scale: bool = False, noise: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z1 = rng.standard_normal((n, d))
    z2 = z1 + noise * rng.standard_normal((n, d))  # the other view: near its anchor
    if scale:  # rows of very different norms: normalisation matters
        z1 *= rng.uniform(0.1, 10.0, (n, 1))
        z2 *= rng.uniform(0.1, 10.0, (n, 1))
    return z1, z2


def nt_xent_cases() -> list[Case]:
    """Worked example (a), random views, rows of mixed norms, and a tiny tau (stability)."""
    z1a = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    z2a = np.array([[3.0, 4.0, 0.0], [0.0, 3.0, 4.0]])
    return [
        Case("worked example (c): N = 2, D = 3, tau = 0.5", (z1a, z2a, 0.5)),
        Case("N = 4, D = 5, tau = 0.2", (*_views(4, 5, 1), 0.2)),
        Case("N = 6, D = 8, tau = 0.1, rows of norms 0.1 to 10", (*_views(6, 8, 2, True), 0.1)),
        Case("N = 3, D = 4, tau = 0.001", (*_views(3, 4, 3, noise=2.0), 0.001), tiny_tau=True),
    ]


def _unmasked(z1, z2, t):
    tm = L.nt_xent_terms(z1, z2, t)
    lse = L.logsumexp(tm.logits, axis=1)  # self-similarity left in
    return float((lse - tm.logits[np.arange(len(lse)), tm.positive]).mean())


def _negatives_only(z1, z2, t):
    tm = L.nt_xent_terms(z1, z2, t)
    masked = tm.masked_logits.copy()
    pos = tm.logits[np.arange(len(tm.positive)), tm.positive]
    masked[np.arange(len(tm.positive)), tm.positive] = -np.inf
    return float((L.logsumexp(masked, axis=1) - pos).mean())


def _dots(z1, z2, t):
    """NT-Xent on raw dot products: the rows never normalised."""
    z = np.concatenate([z1, z2]) / math.sqrt(t)
    n = len(z1)
    s = z @ z.T
    np.fill_diagonal(s, -np.inf)
    pos = (np.arange(2 * n) + n) % (2 * n)
    return float((L.logsumexp(s, axis=1) - s[np.arange(2 * n), pos]).mean())


NT_XENT_MISTAKES = [
    Mistake(
        lambda z1, z2, t: 2 * len(z1) * L.nt_xent(z1, z2, t),
        "your loss is 2N times the reference (yours {yours:.4f}, reference {ref:.4f} on {case}): "
        "did you sum over the 2N anchors instead of averaging?",
    ),
    Mistake(
        lambda z1, z2, t: 2 * L.nt_xent(z1, z2, t),
        "your loss is 2x the reference (yours {yours:.4f}, reference {ref:.4f} on {case}): did "
        "you add the two directions, each averaged over N, as google-research/simclr reports it? "
        "This course's NT-Xent is the mean over all 2N anchors (shared.oracle.losses.CONVENTIONS).",
    ),
    Mistake(
        lambda z1, z2, t: float(L.nt_xent_terms(z1, z2, t).per_anchor[: len(z1)].mean()),
        "yours is the mean over the N anchors of z1 only (yours {yours:.4f}, reference {ref:.4f} "
        "on {case}): the N anchors of z2 count too, 2N in all.",
    ),
    Mistake(
        _unmasked,
        "the anchor's similarity to itself is still in your denominator (yours {yours:.4f}, "
        "reference {ref:.4f} on {case}): exclude k = i, e.g. set the diagonal of the logits to "
        "-inf.",
    ),
    Mistake(
        _negatives_only,
        "your denominator leaves out the positive (yours {yours:.4f}, reference {ref:.4f} on "
        "{case}): the softmax runs over all 2N - 1 candidates, the positive included.",
    ),
    Mistake(
        L.nt_xent_cross_view,
        "yours is the cross-view loss of keras-io's example (yours {yours:.4f}, reference "
        "{ref:.4f} on {case}): it leaves out the N - 1 same-view negatives of each anchor.",
    ),
    Mistake(
        _dots,
        "the rows are not L2-normalised (yours {yours:.4f}, reference {ref:.4f} on {case}): s is "
        "the cosine similarity, z_i . z_j / (|z_i| |z_j|).",
    ),
    Mistake(
        lambda z1, z2, t: L.nt_xent(z1, z2, 1.0),
        "your loss does not change with the temperature; it equals the value at tau = 1 "
        "(yours {yours:.4f}, reference {ref:.4f} on {case}): divide the similarities by tau.",
    ),
    Mistake(
        lambda z1, z2, t: L.nt_xent(z1, z2, 1.0 / t),
        "you multiplied the similarities by tau instead of dividing (yours {yours:.4f}, "
        "reference {ref:.4f} on {case}).",
    ),
]


def _self_positive(z1, z2, t):
    """The quoted self-positive numerator, with exp and tau: P(z1_i, z1_i) = 1 on top."""
    u1, _ = L.l2_normalize("z1", z1)
    u2, _ = L.l2_normalize("z2", z2)
    logits = np.concatenate([np.ones((len(u1), 1)), u1 @ u2.T], axis=1) / t
    return float((L.logsumexp(logits, axis=1) - logits[:, 0]).mean())


def _cross_view_one_side(z1, z2, t):
    u1, _ = L.l2_normalize("z1", z1)
    u2, _ = L.l2_normalize("z2", z2)
    s = u1 @ u2.T / t
    return float((L.logsumexp(s, axis=1) - np.diag(s)).mean())


def _raw_ratio(z1, z2, t):
    u1, _ = L.l2_normalize("z1", z1)
    u2, _ = L.l2_normalize("z2", z2)
    s = u1 @ u2.T
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.mean(-np.log(np.diag(s) / s.sum(axis=1))))


def quoted_loss(z1, z2, temperature=None) -> float:
    """The article's formula as erratum 3 quotes it, in NumPy (the exercise's starting point):
    ``L = -log( P(z1, z1) / (P(z1, z1) + sum_i P(z2_i, z1)) )`` with P the raw cosine, averaged
    over the anchors z1. ``temperature`` is ignored: the formula has none."""
    u1 = z1 / np.linalg.norm(z1, axis=1, keepdims=True)
    u2 = z2 / np.linalg.norm(z2, axis=1, keepdims=True)
    pos = np.sum(u1 * u1, axis=1)  # P(z1, z1): the anchor with itself
    neg = (u1 @ u2.T).sum(axis=1)  # sum_i P(z2_i, z1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.mean(-np.log(pos / (pos + neg))))


SEED002_MISTAKES = [
    Mistake(
        quoted_loss,
        "this is still the quoted formula (yours {yours:.4f}, NT-Xent {ref:.4f} on {case}): "
        "raw cosines in the ratio and the anchor as its own positive.",
    ),
    Mistake(
        _self_positive,
        "your numerator is still the anchor with itself, P(z1_i, z1_i) = 1 for every encoder "
        "(yours {yours:.4f}, NT-Xent {ref:.4f} on {case}): the positive is the other view, "
        "z2_i, and it is not a negative as well.",
    ),
    Mistake(
        _raw_ratio,
        "the ratio still holds raw cosines (yours {yours:.4f}, NT-Xent {ref:.4f} on {case}): "
        "cosines can be negative, so use exp(s / tau), a softmax.",
    ),
    Mistake(
        _cross_view_one_side,
        "yours is the cross-view loss of the z1 anchors alone (yours {yours:.4f}, NT-Xent "
        "{ref:.4f} on {case}): NT-Xent averages over the 2N anchors of z1 and z2, and each "
        "anchor's negatives include the other images of its own view.",
    ),
    *NT_XENT_MISTAKES,
]


def info_nce_cases() -> list[Case]:
    """Worked example (b), random queries and keys (K != D), mixed norms, a tiny tau."""
    rng = np.random.default_rng(7)

    def case(n, d, k, t, scale=False, noise=0.5):
        q, kk = _views(n, d, int(rng.integers(1 << 30)), scale, noise)
        return (
            q,
            kk,
            rng.standard_normal((k, d)) * (rng.uniform(0.1, 10, (k, 1)) if scale else 1),
            t,
        )

    qb, kb = np.array([[1.0, 0.0]]), np.array([[0.8, 0.6]])
    queue_b = np.array([[0.0, 1.0], [-1.0, 0.0], [0.6, -0.8]])
    return [
        Case("worked example (b): N = 1, D = 2, K = 3, tau = 0.2", (qb, kb, queue_b, 0.2)),
        Case("N = 4, D = 3, K = 7, tau = 0.07", case(4, 3, 7, 0.07)),
        Case("N = 5, D = 6, K = 9, tau = 0.5, rows of norms 0.1 to 10", case(5, 6, 9, 0.5, True)),
        Case("N = 3, D = 4, K = 5, tau = 0.001", case(3, 4, 5, 0.001, noise=1.0), tiny_tau=True),
    ]


def _info_terms_variant(q, k, queue, t, kind):
    tm = L.info_nce_terms(q, k, queue, t)
    if kind == "no_pos":
        return float((L.logsumexp(tm.logits[:, 1:], axis=1) - tm.logits[:, 0]).mean())
    raw = np.concatenate([np.sum(q * k, 1, keepdims=True), q @ queue.T], 1) / t
    return float((L.logsumexp(raw, axis=1) - raw[:, 0]).mean())


INFO_NCE_MISTAKES = [
    Mistake(
        lambda q, k, queue, t: len(q) * L.info_nce(q, k, queue, t),
        "your loss is N times the reference (yours {yours:.4f}, reference {ref:.4f} on {case}): "
        "did you sum over the N queries instead of averaging?",
    ),
    Mistake(
        lambda q, k, queue, t: _info_terms_variant(q, k, queue, t, "no_pos"),
        "your denominator leaves out the positive key (yours {yours:.4f}, reference {ref:.4f} on "
        "{case}): the softmax runs over the 1 + K logits [l_pos, l_neg], label 0.",
    ),
    Mistake(
        lambda q, k, queue, t: _info_terms_variant(q, k, queue, t, "raw"),
        "q, k and the queue rows are not L2-normalised (yours {yours:.4f}, reference {ref:.4f} "
        "on {case}): the logits are cosines over tau.",
    ),
    Mistake(
        lambda q, k, queue, t: L.info_nce(q, k, queue, 1.0),
        "your loss does not change with the temperature; it equals the value at tau = 1 "
        "(yours {yours:.4f}, reference {ref:.4f} on {case}): divide the logits by tau.",
    ),
]


def _check_scalar(fn, cases, reference, mistakes, name: str) -> Verdict:
    """Run ``fn`` on ``cases`` and grade its scalars against ``reference``, naming ``mistakes``."""
    values, early = _run_scalar(fn, cases)
    return _report(early or diagnose(values, cases, reference, mistakes, name))


@_prints
def check_info_nce(fn) -> Verdict:
    """Grade ``fn(q, k, queue, temperature) -> float`` (NumPy arrays; the queue is (K, D), one
    key per row) against ``shared.oracle.losses.info_nce``; ``whose`` names it in the printed verdict."""
    return _check_scalar(
        fn, info_nce_cases(), L.info_nce, INFO_NCE_MISTAKES, "shared.oracle.losses.info_nce"
    )


@_prints
def check_loss_fix(fn) -> Verdict:
    """Grade ``fn(z1, z2, temperature) -> float``, the quoted loss fixed, against NT-Xent
    (``shared.oracle.losses.nt_xent``); ``whose`` names it in the printed verdict."""
    return _check_scalar(
        fn, nt_xent_cases(), L.nt_xent, SEED002_MISTAKES, "shared.oracle.losses.nt_xent"
    )


@_prints
def check_nt_xent_torch(fn) -> Verdict:
    """Grade ``fn(z1, z2, temperature) -> 0-d tensor`` in PyTorch: its value against
    ``shared.oracle.losses.nt_xent`` and its gradients (autograd) against ``nt_xent_grad``, in
    float64; ``whose`` names it in the printed verdict."""
    import torch

    cases = nt_xent_cases()
    values, grads = [], []
    for c in cases:
        z1, z2 = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in c.args[:2])
        try:
            out = fn(z1, z2, c.args[2])
        except Exception as e:  # noqa: BLE001 - the learner's error becomes the message
            return _report(_raised(e, c))
        if not isinstance(out, torch.Tensor) or out.numel() != 1:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            return _report(
                Verdict(False, f"expected a 0-d tensor (the mean), got {shape} on {c.name}.")
            )
        values.append(float(out.detach()))
        if out.grad_fn is None:
            return _report(
                Verdict(
                    False,
                    "your loss has no gradient (grad_fn is None): did you call .item(), .numpy() "
                    "or .detach() inside? autograd must see every operation.",
                )
            )
        out.backward()
        grads.append((z1.grad, z2.grad))
    verdict = diagnose(values, cases, L.nt_xent, NT_XENT_MISTAKES, "shared.oracle.losses.nt_xent")
    if not verdict.passed:
        return _report(verdict)
    return _report(_check_gradients(cases, grads, verdict))


def _check_gradients(cases, grads, value_verdict: Verdict) -> Verdict:
    for c, (g1, g2) in zip(cases, grads):
        r1, r2 = L.nt_xent_grad(*c.args)
        for name, g, r in (("z1", g1, r1), ("z2", g2, r2)):
            if g is None:
                return Verdict(False, f"the value is right, but no gradient reached {name}.")
            err = float(np.max(np.abs(g.numpy() - r)))
            if err > ATOL + RTOL * float(np.max(np.abs(r))):
                return Verdict(
                    False,
                    f"the value is right, but the gradient with respect to {name} is off by up to "
                    f"{err:.2e} on {c.name} (largest reference entry {np.max(np.abs(r)):.2e}): is "
                    "a norm or a max detached where it should not be?",
                )
    return Verdict(
        True,
        value_verdict.message[:-1]
        + ", and so do its gradients (shared.oracle.losses.nt_xent_grad).",
    )


# --------------------------------------------------------------------------------------------
# The ring buffer
# --------------------------------------------------------------------------------------------
def ring_buffer_cases() -> list[tuple[str, int, list[int]]]:
    """``(name, K, batch sizes)``: each case enqueues batches in turn from an empty queue."""
    return [
        ("K = 4, batches of 3 (worked example (h))", 4, [3, 3, 3]),
        ("K = 6, batches of 2", 6, [2, 2, 2, 2]),
        ("K = 5, batches of 3, 1 and 4", 5, [3, 1, 4]),
        ("K = 3, a batch of 5 (B > K)", 3, [5, 2]),
    ]


def _ring_steps(k_size: int, batches: list[int]):
    """Each step's (queue, ptr, keys) in, and the oracle's (queue, ptr) out; key = step.image."""
    queue, ptr = np.zeros((k_size, 1)), 0
    for step, b in enumerate(batches, start=1):
        keys = np.array([[step + 0.1 * i] for i in range(1, b + 1)])
        new, new_ptr = Q.dequeue_and_enqueue(queue, ptr, keys)
        yield queue, ptr, keys, new, new_ptr
        queue, ptr = new, new_ptr


@_prints
def check_ring_buffer(fn) -> Verdict:
    """Grade ``fn(queue, ptr, keys) -> (new_queue, new_ptr)`` (pure: the input queue unchanged)
    against ``shared.oracle.queue.dequeue_and_enqueue``; ``whose`` names it in the printed verdict."""
    steps = 0
    for name, k_size, batches in ring_buffer_cases():
        for queue, ptr, keys, want, want_ptr in _ring_steps(k_size, batches):
            given = queue.copy()
            try:
                got, got_ptr = fn(given, ptr, keys.copy())
            except Exception as e:  # noqa: BLE001 - the learner's error becomes the message
                case = Case(f"{name}, enqueueing {len(keys)} keys at ptr {ptr}", ())
                hint = " Rows past K - 1 wrap around to row 0: write key i at (ptr + i) mod K."
                return _report(_raised(e, case, hint if ptr + len(keys) > k_size else ""))
            where = f"{name}: enqueueing {_flat(keys)} at ptr {ptr} into {_flat(queue)}"
            verdict = _ring_verdict(where, queue, given, got, got_ptr, want, want_ptr, len(keys))
            if verdict:
                return _report(verdict)
            steps += 1
    return _report(
        Verdict(
            True,
            f"matches shared.oracle.queue.dequeue_and_enqueue on all {steps} steps of "
            f"{len(ring_buffer_cases())} cases (wrap-around, K % B != 0, B > K).",
        )
    )


def _flat(a: np.ndarray) -> list[float]:
    return [round(float(x), 4) for x in np.asarray(a).ravel()]


def _ring_verdict(where, queue, given, got, got_ptr, want, want_ptr, b) -> Verdict | None:
    """What is wrong with one step's answer, or ``None``."""
    if not np.array_equal(given, queue):
        return Verdict(
            False,
            f"{where}: your function changed the queue it was given (to {_flat(given)}): work "
            "on a copy, queue.copy(), and return it.",
        )
    got = np.asarray(got)
    if got.shape != want.shape:
        return Verdict(False, f"{where}: expected a queue of shape {want.shape}, got {got.shape}.")
    k_size = len(want)
    wrong_rows = [int(r) for r in np.flatnonzero(np.any(got != want, axis=1))]
    if wrong_rows:
        hint = ""
        if b > k_size:
            hint = f" With B = {b} > K = {k_size} only the newest K keys survive, in FIFO order."
        elif np.array_equal(got[:, 0], queue[:, 0]):
            hint = " Nothing was written."
        else:
            hint = " Row ptr + i gets key i, wrapping around: (ptr + i) mod K."
        return Verdict(
            False,
            f"{where}: expected the queue {_flat(want)}, got {_flat(got)} (rows {wrong_rows} "
            f"differ).{hint}",
        )
    if int(got_ptr) != want_ptr:
        return Verdict(
            False,
            f"{where}: the queue is right, but your pointer is {int(got_ptr)}, expected "
            f"{want_ptr} = (ptr + B) mod K.",
        )
    return None


# --------------------------------------------------------------------------------------------
# Solutions: plain code, not calls to the oracle, so that they can be read
# --------------------------------------------------------------------------------------------
def solution_ring_buffer(queue, ptr, keys):
    """MoCo's FIFO queue: write key i at row (ptr + i) mod K, keep the newest K keys."""
    new = queue.copy()
    k_size, b = len(queue), len(keys)
    start = max(b - k_size, 0)  # with B > K the older keys would be overwritten anyway
    for i in range(start, b):
        new[(ptr + i) % k_size] = keys[i]
    return new, (ptr + b) % k_size


def _logsumexp(a, axis=1):
    m = a.max(axis=axis, keepdims=True)  # subtract the largest logit: exp never overflows
    return (m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def solution_info_nce(q, k, queue, temperature):
    """InfoNCE: softmax over [l_pos, l_neg] / tau with the positive at column 0, mean over N."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    k = k / np.linalg.norm(k, axis=1, keepdims=True)
    queue = queue / np.linalg.norm(queue, axis=1, keepdims=True)
    l_pos = np.sum(q * k, axis=1, keepdims=True)  # (N, 1)
    l_neg = q @ queue.T  # (N, K)
    logits = np.concatenate([l_pos, l_neg], axis=1) / temperature  # (N, 1 + K)
    return float(np.mean(_logsumexp(logits) - logits[:, 0]))


def solution_loss_fix(z1, z2, temperature):
    """The quoted loss fixed: NT-Xent. The positive is the other view, the ratio a softmax
    over exp(cos / tau), the anchors all 2N views, the anchor itself excluded."""
    z = np.concatenate([z1, z2])  # (2N, D): view 1, then view 2
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    logits = u @ u.T / temperature  # (2N, 2N)
    np.fill_diagonal(logits, -np.inf)  # k != i
    n = len(z1)
    positive = (np.arange(2 * n) + n) % (2 * n)  # the other view of the same image
    return float(np.mean(_logsumexp(logits) - logits[np.arange(2 * n), positive]))


def solution_nt_xent_torch(z1, z2, temperature):
    """NT-Xent in PyTorch: ``F.cross_entropy`` does the stable log-softmax and the mean."""
    import torch
    import torch.nn.functional as F

    z = F.normalize(torch.cat([z1, z2]), dim=1)  # (2N, D)
    logits = z @ z.T / temperature  # (2N, 2N)
    logits = logits.masked_fill(torch.eye(len(z), dtype=torch.bool), float("-inf"))
    n = len(z1)
    positive = (torch.arange(2 * n) + n) % (2 * n)
    return F.cross_entropy(logits, positive)
