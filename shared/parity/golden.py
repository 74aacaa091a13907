"""Golden vectors: deterministic float64 inputs and oracle outputs for a grid of shapes.

    python -m shared.parity.golden            # (re)write shared/parity/golden/*.npz
    python -m shared.parity.golden --check    # exit 1 if the files are missing or stale

Each case stores its inputs, the loss, the per-anchor losses and the analytic gradients from
``shared.oracle.losses``. The grid covers the extremes: N = 2, D = 1, K = 1, tau = 0.01 and 10, input
norms 1e-3 and 1e4, near-duplicate rows and collapsed embeddings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from shared.oracle import losses

GOLDEN_DIR = Path(__file__).with_name("golden")

# (name, N, D, tau, scale, kind); kind: "normal", "near_dup" (rows 1e-6 apart), "collapsed"
NT_XENT_CASES = [
    ("n2_d1_t0.5", 2, 1, 0.5, 1.0, "normal"),
    ("n2_d3_t0.01", 2, 3, 0.01, 1.0, "normal"),
    ("n4_d8_t10", 4, 8, 10.0, 1.0, "normal"),
    ("n8_d16_t0.1_s1e-3", 8, 16, 0.1, 1e-3, "normal"),
    ("n8_d16_t0.1_s1e4", 8, 16, 0.1, 1e4, "normal"),
    ("n16_d32_t0.07", 16, 32, 0.07, 1.0, "normal"),
    ("n64_d128_t0.5", 64, 128, 0.5, 1.0, "normal"),
    ("n5_d7_t0.01_s1e4", 5, 7, 0.01, 1e4, "normal"),
    ("n6_d4_t0.2_neardup", 6, 4, 0.2, 1.0, "near_dup"),
    ("n4_d3_t0.5_collapsed", 4, 3, 0.5, 1.0, "collapsed"),
]
# (name, N, D, K, tau, scale, kind)
INFO_NCE_CASES = [
    ("n1_d1_k1_t0.07", 1, 1, 1, 0.07, 1.0, "normal"),
    ("n2_d3_k5_t0.01", 2, 3, 5, 0.01, 1.0, "normal"),
    ("n4_d8_k16_t10", 4, 8, 16, 10.0, 1.0, "normal"),
    ("n8_d16_k32_t0.2_s1e-3", 8, 16, 32, 0.2, 1e-3, "normal"),
    ("n8_d16_k32_t0.2_s1e4", 8, 16, 32, 0.2, 1e4, "normal"),
    ("n32_d128_k256_t0.07", 32, 128, 256, 0.07, 1.0, "normal"),
    ("n5_d7_k3_t0.01_s1e4", 5, 7, 3, 0.01, 1e4, "normal"),
    ("n6_d4_k10_t0.2_neardup", 6, 4, 10, 0.2, 1.0, "near_dup"),
    ("n3_d5_k8_t0.07_collapsed", 3, 5, 8, 0.07, 1.0, "collapsed"),
]


def _draw(rng, n, d, scale, kind):
    if kind == "collapsed":
        return np.full((n, d), scale)
    x = rng.standard_normal((n, d)) * scale
    if kind == "near_dup":
        x = np.repeat(x[:1], n, axis=0) + rng.standard_normal((n, d)) * 1e-6 * scale
    return x


def nt_xent_fields(z1, z2, tau: float) -> dict[str, np.ndarray]:
    """A case's inputs and the oracle's outputs (loss, per-anchor losses, gradients)."""
    t = losses.nt_xent_terms(z1, z2, tau)
    g1, g2 = losses.nt_xent_grad(z1, z2, tau)
    return {
        "z1": z1,
        "z2": z2,
        "temperature": np.float64(tau),
        "loss": np.float64(t.loss),
        "per_anchor": t.per_anchor,
        "grad_z1": g1,
        "grad_z2": g2,
    }


def info_nce_fields(q, key, queue, tau: float) -> dict[str, np.ndarray]:
    """As :func:`nt_xent_fields`, for InfoNCE."""
    t = losses.info_nce_terms(q, key, queue, tau)
    gq, gk = losses.info_nce_grad(q, key, queue, tau)
    return {
        "q": q,
        "k": key,
        "queue": queue,
        "temperature": np.float64(tau),
        "loss": np.float64(t.loss),
        "per_anchor": t.per_anchor,
        "grad_q": gq,
        "grad_k": gk,
    }


def nt_xent_case(idx: int):
    name, n, d, tau, scale, kind = NT_XENT_CASES[idx]
    rng = np.random.default_rng(1000 + idx)
    z1, z2 = _draw(rng, n, d, scale, kind), _draw(rng, n, d, scale, kind)
    return name, nt_xent_fields(z1, z2, tau)


def info_nce_case(idx: int):
    name, n, d, k, tau, scale, kind = INFO_NCE_CASES[idx]
    rng = np.random.default_rng(2000 + idx)
    q, key = _draw(rng, n, d, scale, kind), _draw(rng, n, d, scale, kind)
    return name, info_nce_fields(q, key, _draw(rng, k, d, scale, kind), tau)


def random_case(loss: str, seed: int) -> dict[str, np.ndarray]:
    """One randomised case with the oracle's outputs, drawn as the Hypothesis strategies of the
    tests draw theirs: rows 2..64 (NT-Xent) or 1..32 with a queue of 1..256 (InfoNCE), D 1..128
    (log-uniform), a scale 10^U(-3, 3) and a temperature 10^U(-2, 1). Reproduced by its seed.

    Example:
        >>> c = random_case("nt_xent", 3)
        >>> c["z1"].shape == c["grad_z1"].shape and 0.01 <= float(c["temperature"]) <= 10
        True
    """
    rng = np.random.default_rng([7, seed])
    d = int(np.floor(np.exp(rng.uniform(0, np.log(129)))))
    scale, tau = 10 ** rng.uniform(-3, 3), float(10 ** rng.uniform(-2, 1))
    if loss == "nt_xent":
        n = int(rng.integers(2, 65))
        return nt_xent_fields(scale * rng.normal(size=(n, d)), scale * rng.normal(size=(n, d)), tau)
    n, k = int(rng.integers(1, 33)), int(rng.integers(1, 257))
    q, key, queue = (scale * rng.normal(size=(m, d)) for m in (n, n, k))
    return info_nce_fields(q, key, queue, tau)


def random_cases(count: int, seed: int = 0) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """``count`` random cases per loss, named ``r<seed>`` (``random_case(loss, seed)``)."""
    return {
        loss: {f"r{s}": random_case(loss, s) for s in range(seed, seed + count)}
        for loss in ("nt_xent", "info_nce")
    }


def build() -> dict[str, dict[str, dict[str, np.ndarray]]]:
    return {
        "nt_xent": dict(nt_xent_case(i) for i in range(len(NT_XENT_CASES))),
        "info_nce": dict(info_nce_case(i) for i in range(len(INFO_NCE_CASES))),
    }


def load(loss: str) -> dict[str, dict[str, np.ndarray]]:
    """The stored goldens of one loss as {case: {field: array}}."""
    path = GOLDEN_DIR / f"{loss}.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; run `python -m shared.parity.golden`")
    out: dict[str, dict[str, np.ndarray]] = {}
    with np.load(path) as z:
        for key in z.files:
            case, fld = key.split("/")
            out.setdefault(case, {})[fld] = z[key]
    return out


OUTPUT_FIELDS = ("loss", "per_anchor", "grad_z1", "grad_z2", "grad_q", "grad_k")


def expected_outputs() -> dict:
    """The oracle's outputs as ``{loss: {case: {field: array}}}``, the layout the frameworks'
    ``parity.golden_outputs`` return."""
    return {
        loss: {
            c: {k: np.asarray(v) for k, v in f.items() if k in OUTPUT_FIELDS}
            for c, f in load(loss).items()
        }
        for loss in ("nt_xent", "info_nce")
    }


def write() -> None:
    GOLDEN_DIR.mkdir(exist_ok=True)
    for loss, cases in build().items():
        flat = {f"{c}/{f}": v for c, fields in cases.items() for f, v in fields.items()}
        np.savez_compressed(GOLDEN_DIR / f"{loss}.npz", **flat)


def check() -> list[str]:
    """Problems found comparing the stored files with a fresh build (empty list: up to date).

    Inputs must match exactly; outputs to 1e-12 relative (BLAS may reassociate across machines).
    """
    problems = []
    for loss, cases in build().items():
        try:
            stored = load(loss)
        except FileNotFoundError as e:
            problems.append(str(e))
            continue
        if set(stored) != set(cases):
            problems.append(f"{loss}: cases differ: {sorted(set(stored) ^ set(cases))}")
            continue
        for c, fields in cases.items():
            for f, v in fields.items():
                s = stored[c].get(f)
                exact = f in ("z1", "z2", "q", "k", "queue", "temperature")
                if s is None or s.shape != np.shape(v):
                    problems.append(f"{loss}/{c}/{f}: missing or wrong shape")
                elif exact and not np.array_equal(s, v):
                    problems.append(f"{loss}/{c}/{f}: inputs differ")
                elif not np.allclose(s, v, rtol=1e-12, atol=1e-300):
                    problems.append(f"{loss}/{c}/{f}: stale (max diff {np.max(np.abs(s - v)):.3g})")
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if the stored goldens are stale")
    args = ap.parse_args(argv)
    if args.check:
        problems = check()
        for p in problems:
            print("STALE:", p, file=sys.stderr)
        print("goldens up to date" if not problems else f"{len(problems)} problem(s)")
        return 1 if problems else 0
    write()
    print(f"wrote {', '.join(sorted(p.name for p in GOLDEN_DIR.glob('*.npz')))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
