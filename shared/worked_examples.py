"""Worked examples with numbers small enough to follow by hand (seed 000, section 4.4).

    python -m shared.worked_examples            # all of them
    python -m shared.worked_examples a          # one: a, b, c or d

(a) NT-Xent for N = 2 pairs in 3-D at tau = 0.5, every intermediate printed.
(b) InfoNCE for one query, its positive key and a queue of 3 negative keys at tau = 0.2.
(c) Closed forms: collapsed embeddings give log(2N - 1) and log(K + 1); orthogonal
    (well-separated) embeddings give log(1 + (2N - 2) exp(-1/tau)) -> 0 as tau -> 0.
(d) Seed 002's formula (raw cosines in the ratio, no exp, no tau, the anchor as its own
    "positive") on actual numbers: it goes negative, becomes undefined, and ignores the views.

Each example returns an :class:`Example` whose ``values`` are exactly the numbers printed; the
tests recompute every one of them by hand arithmetic (``tests/test_worked_examples.py``).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

import numpy as np

from shared.losses import info_nce_terms, nt_xent, nt_xent_terms, seed002_raw_cosine_ratio


@dataclass
class Example:
    key: str
    title: str
    lines: list[str] = field(default_factory=list)
    values: dict = field(default_factory=dict)

    def add(self, text: str = "") -> None:
        self.lines.append(text)

    def text(self) -> str:
        bar = "=" * len(self.title)
        return "\n".join([bar, self.title, bar, *self.lines, ""])


def fmt(x: float, width: int = 8, prec: int = 4) -> str:
    if x == -math.inf:
        return f"{'-inf':>{width}}"
    if isinstance(x, float) and math.isnan(x):
        return f"{'nan':>{width}}"
    return f"{x:>{width}.{prec}f}"


def matrix(rows: list[str], cols: list[str], m: np.ndarray, width: int = 8) -> list[str]:
    """An aligned table with row and column labels."""
    lw = max(len(r) for r in rows)
    out = [" " * lw + " " + "".join(f"{c:>{width}}" for c in cols)]
    for r, row in zip(rows, np.atleast_2d(m)):
        out.append(f"{r:<{lw}} " + "".join(fmt(float(v), width) for v in row))
    return out


def example_a() -> Example:
    """NT-Xent, N = 2, D = 3, tau = 0.5. Cosines are exact decimals so you can check by hand."""
    ex = Example("a", "(a) NT-Xent: N = 2 images, two views each, D = 3, tau = 0.5")
    z1 = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # view 1 of images 0 and 1
    z2 = np.array([[3.0, 4.0, 0.0], [0.0, 3.0, 4.0]])  # view 2: norms 5 -> (.6,.8,0), (0,.6,.8)
    t = nt_xent_terms(z1, z2, 0.5)
    names = ["x0/v1", "x1/v1", "x0/v2", "x1/v2"]
    ex.add("Anchors are stacked as [view 1 of x0, x1; view 2 of x0, x1]; the positive of")
    ex.add("anchor i is the other view of the same image, row (i + N) mod 2N.")
    ex.add("")
    ex.add("1. Inputs and L2-normalised vectors u = z / ||z||")
    ex.add("   raw z:")
    ex.lines += ["   " + s for s in matrix(names, ["d0", "d1", "d2"], np.vstack([z1, z2]))]
    ex.add("   normalised u:")
    ex.lines += ["   " + s for s in matrix(names, ["d0", "d1", "d2"], t.u)]
    ex.add("")
    ex.add("2. Cosine similarities s_ij = u_i . u_j")
    ex.lines += ["   " + s for s in matrix(names, names, t.sim)]
    ex.add("")
    ex.add("3. Logits s_ij / tau (tau = 0.5)")
    ex.lines += ["   " + s for s in matrix(names, names, t.logits)]
    ex.add("")
    ex.add("4. Masked logits: each anchor's similarity to itself is excluded (-inf)")
    ex.lines += ["   " + s for s in matrix(names, names, t.masked_logits)]
    ex.add("")
    ex.add("5. Softmax of each row (probability that column j is anchor i's positive)")
    ex.lines += ["   " + s for s in matrix(names, names, t.probs)]
    ex.add("")
    ex.add("6. Per-anchor loss l_i = -log softmax[i, positive(i)]")
    for i, name in enumerate(names):
        j = int(t.positive[i])
        ex.add(
            f"   {name}: positive {names[j]}, p = {t.probs[i, j]:.4f}, "
            f"l = -log {t.probs[i, j]:.4f} = {t.per_anchor[i]:.4f}"
        )
    ex.add("")
    ex.add(f"7. Mean over the 2N = 4 anchors: L = {t.loss:.4f}")
    ex.values = {
        "u": t.u,
        "sim": t.sim,
        "logits": t.logits,
        "probs": t.probs,
        "per_anchor": t.per_anchor,
        "loss": t.loss,
    }
    return ex


def example_b() -> Example:
    """InfoNCE with one query, its positive key and 3 queue keys at tau = 0.2 (MoCo v2)."""
    ex = Example("b", "(b) InfoNCE: one query, its positive key, a queue of K = 3 keys, tau = 0.2")
    q = np.array([[1.0, 0.0]])
    k = np.array([[0.8, 0.6]])
    queue = np.array([[0.0, 1.0], [-1.0, 0.0], [0.6, -0.8]])
    t = info_nce_terms(q, k, queue, 0.2)
    cols = ["k+", "queue0", "queue1", "queue2"]
    ex.add("q = (1, 0); k+ = (0.8, 0.6); queue = (0, 1), (-1, 0), (0.6, -0.8)  (all unit norm)")
    ex.add("")
    ex.add("1. Similarities [l_pos | l_neg] = [q.k+ | q.queue_j]")
    ex.lines += ["   " + s for s in matrix(["q"], cols, np.hstack([t.l_pos, t.l_neg]))]
    ex.add("2. Logits / tau")
    ex.lines += ["   " + s for s in matrix(["q"], cols, t.logits)]
    ex.add("3. Softmax over the 1 + K logits (column 0 is the positive)")
    ex.lines += ["   " + s for s in matrix(["q"], cols, t.probs)]
    ex.add(f"4. Loss = -log p(k+) = -log {t.probs[0, 0]:.4f} = {t.loss:.4f}")
    ex.add(f"   (chance level with 4 candidates would be log 4 = {math.log(4):.4f})")
    ex.values = {
        "sim": np.hstack([t.l_pos, t.l_neg]),
        "logits": t.logits,
        "probs": t.probs,
        "loss": t.loss,
        "chance": math.log(4),
    }
    return ex


def example_c() -> Example:
    """Closed forms: collapse gives log(2N-1) / log(K+1); separation drives the loss to 0."""
    ex = Example("c", "(c) Closed forms: collapse and perfect separation")
    n, k = 4, 8
    ones = np.ones((n, 5))
    coll_nt = nt_xent(ones, ones, 0.5)
    coll_in = info_nce_terms(np.ones((n, 5)), np.ones((n, 5)), np.ones((k, 5)), 0.07).loss
    ex.add("Collapsed embeddings (every vector identical): all logits are equal, so the")
    ex.add("softmax is uniform over the candidates and the loss is log(#candidates).")
    ex.add(
        f"   NT-Xent, N = {n}: 2N - 1 = {2 * n - 1} candidates, "
        f"L = {coll_nt:.4f}, log(2N - 1) = {math.log(2 * n - 1):.4f}"
    )
    ex.add(
        f"   InfoNCE, K = {k}: K + 1 = {k + 1} candidates, "
        f"L = {coll_in:.4f}, log(K + 1) = {math.log(k + 1):.4f}"
    )
    ex.add("")
    ex.add("Well-separated embeddings: z1 = z2 = the N = 4 standard basis vectors, so each")
    ex.add("positive has cosine 1 and every negative cosine 0:")
    ex.add("   L = log(1 + (2N - 2) exp(-1/tau))  ->  0 as tau -> 0")
    ex.add(f"   {'tau':>6} {'L (computed)':>14} {'closed form':>14}")
    eye = np.eye(n)
    sep = []
    for tau in (2.0, 1.0, 0.5, 0.2, 0.1, 0.05, 0.01):
        got = nt_xent(eye, eye, tau)
        sep.append((tau, got))
        ex.add(f"   {tau:>6} {got:>14.6g} {math.log1p((2 * n - 2) * math.exp(-1 / tau)):>14.6g}")
    ex.add("   (At tau = 0.01 the exact value 2.2e-43 is far below the resolution of")
    ex.add("   logsumexp - logit = 100 - 100 in float64 (1.4e-14), so it rounds to 0.)")
    ex.values = {
        "collapsed_nt_xent": coll_nt,
        "collapsed_info_nce": coll_in,
        "separated": sep,
        "n": n,
        "k": k,
    }
    return ex


def example_d() -> Example:
    """Seed 002's pitfall: -log( s(z1_i, z1_i) / sum_j s(z1_i, z2_j) ) with raw cosines."""
    ex = Example("d", "(d) The pitfall in seed 002: raw cosines in the ratio (not a loss)")
    z1 = np.array([[1.0, 0.0], [0.0, 1.0]])
    z2 = np.array([[0.6, 0.8], [-0.8, 0.6]])
    cos = z1 @ z2.T
    bad = seed002_raw_cosine_ratio(z1, z2)
    ex.add("Seed 002 writes L_i = -log( P(z1_i, z1_i) / sum_j P(z1_i, z2_j) ) with P = cosine.")
    ex.add("z1 = (1, 0), (0, 1);  z2 = (0.6, 0.8), (-0.8, 0.6)")
    ex.add("Cross-view cosines P(z1_i, z2_j):")
    ex.lines += ["   " + s for s in matrix(["z1_0", "z1_1"], ["z2_0", "z2_1"], cos)]
    ex.add("Numerator P(z1_i, z1_i) = 1 for every i: the anchor compared with itself, not with")
    ex.add("its other view, so the formula cannot tell a good positive pair from a bad one.")
    for i in range(2):
        den = cos[i].sum()
        shown = "undefined (log of a negative number)" if den <= 0 else f"{bad[i]:.4f}"
        ex.add(f"   row {i}: denominator = {den:+.4f}, L = -log(1 / {den:+.4f}) = {shown}")
    ex.add("Row 0 has a negative denominator: the 'probability' is negative and the log is")
    ex.add("undefined. Row 1's 'loss' is positive only by accident; with a denominator below 1 it")
    ex.add("would be negative. Cosines lie in [-1, 1], so the ratio is not a probability.")
    good = nt_xent(z1, z2, 0.5)
    ex.add(
        f"The fix is softmax cross-entropy over exp(cos / tau): NT-Xent here = {good:.4f} "
        "(tau = 0.5), always finite and >= 0."
    )
    ex.values = {"cos": cos, "denominators": cos.sum(axis=1), "seed002": bad, "nt_xent": good}
    return ex


EXAMPLES = {"a": example_a, "b": example_b, "c": example_c, "d": example_d}


def main(argv: list[str] | None = None) -> int:
    keys = (argv if argv is not None else sys.argv[1:]) or list(EXAMPLES)
    for key in keys:
        if key not in EXAMPLES:
            print(f"unknown example {key!r}; choose from {', '.join(EXAMPLES)}", file=sys.stderr)
            return 2
        print(EXAMPLES[key]().text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
