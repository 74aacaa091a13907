"""Worked examples with numbers small enough to follow by hand (seed 000, section 4.4).

    python -m shared.oracle.worked_examples            # all of them
    python -m shared.oracle.worked_examples a          # one: a to h

(a) The encoder and projection head of seed 000 sections 4.1-4.2 on a 3-pixel network.
(b) InfoNCE for one query, its positive key and a queue of 3 negative keys at tau = 0.2.
(c) NT-Xent for N = 2 pairs in 3-D at tau = 0.5, every intermediate printed.
(d) Temperature: one similarity row under tau in {0.05, 0.1, 0.5, 1}.
(e) Closed forms: collapsed embeddings give log(2N - 1) and log(K + 1); orthogonal
    (well-separated) embeddings give log(1 + (2N - 2) exp(-1/tau)) -> 0 as tau -> 0.
(f) What loss value is normal: chance, orthogonal negatives and the demo's real curves.
(g) The article's formula as erratum 3 quotes it (raw cosines in the ratio, no exp, no tau, the
    anchor as its own "positive", its own term in the denominator) on actual numbers: it goes
    negative, becomes undefined, and penalises views that agree.
(h) MoCo's queue and momentum encoder as a state machine: K = 4, batches of 3, three steps.

The letters follow the order in which the course shows them (chapter 4, then (h) in chapter 5).
Each example returns an :class:`Example` whose ``values`` are exactly the numbers printed; the
tests recompute every one of them by hand arithmetic (``tests/test_worked_examples.py``).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared.oracle.losses import info_nce_terms, nt_xent, nt_xent_terms, raw_cosine_ratio_as_quoted

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results.json"  # the committed results


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


def example_c() -> Example:
    """NT-Xent, N = 2, D = 3, tau = 0.5. Cosines are exact decimals so you can check by hand."""
    ex = Example("c", "(c) NT-Xent: N = 2 images, two views each, D = 3, tau = 0.5")
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


def example_e() -> Example:
    """Closed forms: collapse gives log(2N-1) / log(K+1); separation drives the loss to 0."""
    ex = Example("e", "(e) Closed forms: collapse and perfect separation")
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


def example_g() -> Example:
    """The article's formula as erratum 3 quotes it, with raw cosines P, on 2-D vectors:
    ``L_i = -log( P(z1_i, z1_i) / (P(z1_i, z1_i) + sum_j P(z1_i, z2_j)) )``."""
    ex = Example("g", "(g) The pitfall in the article: raw cosines in the ratio (not a loss)")
    z1 = np.array([[1.0, 0.0], [0.0, 1.0]])
    z2 = np.array([[0.6, 0.8], [-0.8, 0.6]])
    cos = z1 @ z2.T  # (2, 2) unit rows: the cosines are the dot products
    bad = raw_cosine_ratio_as_quoted(z1, z2)
    ex.add("The article writes L_i = -log( P(z1_i, z1_i) / (P(z1_i, z1_i) + sum_j P(z1_i, z2_j)) )")
    ex.add(
        "with P = cosine (erratum 3 quotes it; shared.oracle.losses.raw_cosine_ratio_as_quoted)."
    )
    ex.add("z1 = (1, 0), (0, 1);  z2 = (0.6, 0.8), (-0.8, 0.6)")
    ex.add("Cross-view cosines P(z1_i, z2_j):")
    ex.lines += ["   " + s for s in matrix(["z1_0", "z1_1"], ["z2_0", "z2_1"], cos)]
    ex.add("Numerator P(z1_i, z1_i) = 1 for every i: the anchor compared with itself, not with")
    ex.add("its other view, so the formula cannot tell a good positive pair from a bad one.")
    ex.lines += _seed002_rows(cos, bad)
    ex.add("Row 0's 'loss' is negative: its 'probability' 1 / 0.8 = 1.25 exceeds 1, which no")
    ex.add("cross-entropy can give. Cosines lie in [-1, 1], so the ratio is not a probability.")
    variants = {}
    for name, first, says in (
        ("opposite", [-0.6, -0.8], "z2_0 = (-0.6, -0.8), opposite"),
        ("agree", [1.0, 0.0], "z2_0 = z1_0 = (1, 0), the views agree"),
    ):
        other = np.array([first, z2[1]])
        variants[name] = {"cos": z1 @ other.T, "seed002": raw_cosine_ratio_as_quoted(z1, other)}
        ex.add(f"With {says}:")
        ex.lines += _seed002_rows(variants[name]["cos"], variants[name]["seed002"], rows=[0])
    ex.add("Opposite views make the log undefined; agreeing views *raise* row 0's 'loss', because")
    ex.add("the anchor's own other view z2_0 sits in the denominator as a negative.")
    good = nt_xent(z1, z2, 0.5)
    ex.add(
        f"The fix is softmax cross-entropy over exp(cos / tau): NT-Xent here = {good:.4f} "
        "(tau = 0.5), always finite and >= 0."
    )
    ex.values = {
        "cos": cos,
        "denominators": 1.0 + cos.sum(axis=1),
        "seed002": bad,
        "variants": variants,
        "nt_xent": good,
    }
    return ex


def _seed002_rows(cos: np.ndarray, loss: np.ndarray, rows=None) -> list[str]:
    """One line per row i of the (N, N) cosines: ``1 + sum_j cos[i, j]`` and the (N,) ``loss``."""
    out = []
    for i in range(len(cos)) if rows is None else rows:
        den = 1.0 + cos[i].sum()
        terms = " ".join(f"{'+' if c >= 0 else '-'} {abs(c):.4f}" for c in cos[i])
        if den <= 0:
            shown = "undefined (the log of a negative number)"
        else:
            shown = f"log({den:.4f}) = {loss[i]:+.4f}" + ("  negative" if den < 1 else "")
        out.append(f"   row {i}: denominator = 1 {terms} = {den:+.4f}, L = {shown}")
    return out


def example_h() -> Example:
    """MoCo's queue and momentum encoder as a state machine: K = 4, batches of 3, three steps."""
    ex = Example("h", "(h) The queue and the momentum encoder, step by step (K = 4, B = 3)")
    k_size, m = 4, 0.9
    queue = np.zeros((k_size, 1))  # one number per key, so the whole queue fits on a line
    ptr = 0
    theta_q, theta_k = 1.0, 1.0  # one query-encoder weight; the key encoder starts as a copy
    ex.add("Keys are 1-D here (the value is the step and the image: 1.1 = step 1, image 1) and")
    ex.add("the encoders have one weight each. Each step, in MoCo's Algorithm 1 order:")
    ex.add("  1. theta_k <- m theta_k + (1 - m) theta_q  (m = 0.9; the query weight then moves)")
    ex.add("  2. the negatives are the queue as it is *before* this step's keys go in")
    ex.add(
        "  3. enqueue the B = 3 new keys at rows ptr, ptr+1, ptr+2 (mod K); ptr <- (ptr+3) mod K"
    )
    ex.add("(MoCo starts the queue with random unit vectors; zeros here keep it readable.)")
    ex.add("")
    steps = []
    for step, theta_after_sgd in ((1, 1.5), (2, 2.0), (3, 2.5)):
        theta_k = m * theta_k + (1 - m) * theta_q  # ema(theta_k, theta_q, m)
        negatives = queue[:, 0].copy()
        keys = np.array([[step + 0.1 * i] for i in (1, 2, 3)])
        rows = [(ptr + i) % k_size for i in range(3)]
        queue, new_ptr = _dequeue_and_enqueue(queue, ptr, keys)
        ex.add(
            f"step {step}: theta_q = {theta_q:.2f}, theta_k = {theta_k:.4f}; negatives read: "
            f"{negatives.tolist()}"
        )
        ex.add(
            f"        keys {keys[:, 0].tolist()} -> rows {rows}; queue = {queue[:, 0].tolist()}, "
            f"ptr {ptr} -> {new_ptr}"
        )
        steps.append(
            {
                "theta_q": theta_q,
                "theta_k": theta_k,
                "negatives": negatives,
                "rows": rows,
                "queue": queue[:, 0].copy(),
                "ptr": new_ptr,
            }
        )
        ptr, theta_q = new_ptr, theta_after_sgd  # the optimiser step moves the query weight
    ex.add("")
    ex.add("Step 2 wraps: its keys land in rows 3, 0, 1, overwriting step 1's two oldest keys, so")
    ex.add("the queue is FIFO over keys, not over batches. The key weight trails the query weight")
    ex.add("(1.0 -> 1.05 -> 1.145 while theta_q went 1.0 -> 1.5 -> 2.0): that lag keeps the keys")
    ex.add("in the queue, encoded by slightly older encoders, consistent with each other.")
    ex.values = {"steps": steps, "m": m, "K": k_size}
    return ex


def _dequeue_and_enqueue(queue, ptr, keys):
    from shared.oracle.queue import dequeue_and_enqueue

    return dequeue_and_enqueue(queue, ptr, keys)


def example_a() -> Example:
    """Encoder and projection head (seed 000, sections 4.1-4.2) on a network that fits a screen."""
    ex = Example("a", "(a) Encoder and projection head on a tiny network (h = f(x), z = g(h))")
    x = np.array([1.0, -2.0, 0.5])  # one "image": three pixels
    w_f = np.array([[0.5, 0.0, 1.0], [-1.0, 0.5, 0.0]])  # encoder f: 3 -> 2, ReLU
    w1 = np.array([[1.0, -1.0], [0.5, 0.5]])  # head g: 2 -> 2 -> 2, ReLU between
    w2 = np.array([[0.0, 1.0], [1.0, 1.0]])
    pre = w_f @ x
    h = np.maximum(pre, 0.0)
    a = np.maximum(w1 @ h, 0.0)
    z = w2 @ a
    u = z / np.linalg.norm(z)
    ex.add("Encoder f (section 4.1): h = ReLU(W_f x), the representation kept after training.")
    ex.add(f"   x = {x.tolist()},  W_f = {w_f.tolist()}")
    ex.add(f"   W_f x = {pre.tolist()}  ->  h = ReLU(.) = {h.tolist()}")
    ex.add("Projection head g (section 4.2): z = W2 ReLU(W1 h), used only by the loss.")
    ex.add(f"   W1 h = {(w1 @ h).tolist()}  ->  ReLU = {a.tolist()}  ->  z = W2 (.) = {z.tolist()}")
    ex.add(f"   the loss sees z / |z| = {np.round(u, 4).tolist()} (|z| = {np.linalg.norm(z):.4f})")
    ex.add("The head is thrown away after training: SimCLR (section 4.2 of its paper) finds h")
    ex.add("better than z for downstream tasks, because g learns to discard what the augmentations")
    ex.add("change (colour, position), which a downstream task may need.")
    ex.values = {"x": x, "pre": pre, "h": h, "hidden": a, "z": z, "u": u}
    return ex


def example_d() -> Example:
    """Temperature: one similarity row under several tau: the softmax and the gradient."""
    ex = Example("d", "(d) Temperature: how tau sharpens the softmax and aims the gradient")
    sims = np.array([0.9, 0.7, 0.3, 0.0, -0.5])  # positive first, then 4 negatives
    names = ["pos", "hard", "mid", "easy", "far"]
    ex.add("One anchor's cosine similarities: the positive 0.9, negatives 0.7 (hard), 0.3,")
    ex.add("0.0 and -0.5 (easy). p = softmax(s / tau). The loss -log p_pos has gradient")
    ex.add("dL/ds_j = p_j / tau for each negative j: the push on each negative.")
    rows = {}
    for tau in (0.05, 0.1, 0.5, 1.0):
        logits = sims / tau
        p = np.exp(logits - logits.max())
        p /= p.sum()
        grad = p / tau
        grad[0] = (p[0] - 1) / tau
        share = grad[1:] / grad[1:].sum()
        rows[tau] = {"p": p, "grad": grad, "loss": float(-np.log(p[0])), "hard_share": share[0]}
        ex.add(f" tau = {tau}: loss {rows[tau]['loss']:.4f}")
        ex.add("   p    " + " ".join(f"{n}={v:.4f}" for n, v in zip(names, p)))
        ex.add("   grad " + " ".join(f"{n}={v:+.4f}" for n, v in zip(names, grad)))
        ex.add(f"   the hard negative gets {100 * share[0]:.1f} % of the push on negatives")
    ex.add("Small tau concentrates the gradient on the hardest negatives (Wang & Liu, 2021);")
    ex.add("large tau spreads it evenly, and the loss can no longer tell hard from easy.")
    ex.values = {"sims": sims, "rows": rows}
    return ex


# The demo's settings: batch N, queue K and each method's temperature. The oracle cannot import
# the run configuration (it sits above), so tests/test_worked_examples.py checks these against
# ``shared.run.config``'s resolved defaults.
DEMO_SETTINGS = {"n": 64, "k": 512, "tau_simclr": 0.2, "tau_moco": 0.1}


def example_f() -> Example:
    """What loss value is normal: chance (collapse) and orthogonal negatives, demo settings."""
    ex = Example("f", "(f) What loss value is normal (the demo's settings)")
    n, k = DEMO_SETTINGS["n"], DEMO_SETTINGS["k"]
    tau_s, tau_m = DEMO_SETTINGS["tau_simclr"], DEMO_SETTINGS["tau_moco"]
    chance_s, chance_m = math.log(2 * n - 1), math.log(k + 1)
    floor_s = math.log1p((2 * n - 2) * math.exp(-1 / tau_s))  # positives 1, negatives 0
    floor_m = math.log1p(k * math.exp(-1 / tau_m))
    ex.add(f"SimCLR, N = {n}, tau = {tau_s}: chance (collapse, uniform softmax) = log(2N - 1) =")
    ex.add(
        f"   {chance_s:.4f}; orthogonal negatives give log(1 + (2N-2) e^(-1/tau)) = {floor_s:.4f}."
    )
    ex.add(f"MoCo, K = {k}, tau = {tau_m}: chance = log(K + 1) = {chance_m:.4f}; orthogonal")
    ex.add(f"   negatives give log(1 + K e^(-1/tau)) = {floor_m:.4f}.")
    ex.add("A run starts near chance and falls part of the way towards these values: negatives of")
    ex.add("the same class are never orthogonal. Going lower needs negatives *opposite* their")
    ex.add("anchors, which cannot hold for all anchors at once: the mean pairwise cosine of M unit")
    ex.add(
        f"vectors is at least -1/(M - 1). The article's log ends at 0.008, {floor_s / 0.008:.0f}x"
    )
    ex.add("below SimCLR's orthogonal value: an illustration, not a target. A loss stuck at chance")
    ex.add("means collapse (the health warning in shared/run/health.py).")
    curves = _demo_loss_curves()
    if curves:
        ex.add("Real runs (docs/results.json: seed 0 of each cell, the demo's own settings),")
        ex.add("mean loss per epoch:")
        for name, chance in (("simclr_torch", chance_s), ("moco_tensorflow", chance_m)):
            c = curves[name]
            ex.add(
                f"   {name}: epoch 1 {c[0]:.4f}, epoch {len(c) // 2} {c[len(c) // 2 - 1]:.4f}, "
                f"epoch {len(c)} {c[-1]:.4f}  (chance {chance:.4f})"
            )
    ex.values = {
        "curves": curves,
        "n": n,
        "k": k,
        "chance_simclr": chance_s,
        "chance_moco": chance_m,
        "floor_simclr": floor_s,
        "floor_moco": floor_m,
    }
    return ex


def _demo_loss_curves() -> dict:
    """Seed 0's per-epoch losses of the demo's two cells (SimCLR in torch, MoCo in TF) as
    committed in :data:`RESULTS` by ``rosetta results`` ({} when absent)."""
    import json

    if not RESULTS.exists():
        return {}
    entries = json.loads(RESULTS.read_text()).get("entries", {})
    cells = {"simclr_torch": "simclr/torch", "moco_tensorflow": "moco/tensorflow"}
    return {
        name: next(r["loss_curve"] for r in entries[key]["seeds"] if r["seed"] == 0)
        for name, key in cells.items()
        if key in entries
    }


EXAMPLES = {
    "a": example_a,
    "b": example_b,
    "c": example_c,
    "d": example_d,
    "e": example_e,
    "f": example_f,
    "g": example_g,
    "h": example_h,
}


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
