"""Step parity, the cases and the comparison: one training step in PyTorch and in TensorFlow
from the same (ported) weights on the same views, compared by canonical name.

``rosetta parity --level step`` runs ``python -m torch_impl parity-dump --level step`` (which
builds each case's model, writes its initial weights in the ``shared.parity.weights`` format and the
step's outputs) and then the TF dump (which imports those weights), each in its own process,
and compares them here. ``tests/test_step_parity.py`` runs the same comparison in one process.
The step is each framework's training step itself (``*/parity.py:step_outputs``: torch's
``train_step``, TF's ``tf.function`` from ``tf_impl.train.compile_step``), not a copy of it.

Compared: the loss, h and z in eval and in train mode, every parameter's gradient, and after
one SGD step (momentum 0.9, weight decay 1e-4) every weight, BN statistic, the optimiser's
momentum slot (compared as a gradient: after one step it is ``g + wd w``) and, for MoCo, the
key encoder after the EMA, the queue and its pointer. One difference is known and kept rather than aligned
(docs/framework_differences.md): torch's BN running variance uses the unbiased batch variance,
Keras the biased one, so SimCLR's ``moving_variance`` is reported apart with its exact expected
ratio. MoCo's is not compared: each step updates it twice (one pass per view), and the ratio of
two updates has no such closed form.
"""

from __future__ import annotations

import numpy as np

from shared.parity import compare as parity
from shared.parity.tolerances import bf16_step_tolerance, override, tolerance

N = 8  # images per view batch
STEP_CASES = {
    "simclr": {"method": "simclr", "kwargs": {}},
    "moco": {
        "method": "moco",
        "kwargs": {"queue_size": 12, "bn_splits": 2, "symmetric": True, "shuffle_keys": False},
    },
}
COMMON = {
    "encoder": "small_cnn",
    "hidden_dim": 16,
    "proj_dim": 8,
    "head_layers": 2,
    "temperature": 0.2,
}
# bf16 (autocast) step: the bf16 convolutions and matmuls before each compared output, for
# shared.parity.tolerances.bf16_step_tolerance: small_cnn's 4 convs, then the 2 head layers.
BF16_LAYERS = {"h1": 4, "h1_train": 4, "z1": 6, "z1_train": 6, "loss": 6}
OPTIMIZER = ("sgd", 0.1, 0.9, 1e-4)  # name, lr, momentum, weight decay
KEY_MOMENTUM = 0.9

QUEUE_F32 = override(
    "param",
    "float32",
    reason="the queue holds keys computed by each framework's fp32 encoder: compared like "
    "weights, not as exact copies",
)


def views(dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """The two (N, 32, 32, 3) NHWC view batches every case uses (float32 for ``"bfloat16"``:
    its models keep float32 weights and take float32 inputs)."""
    rng = np.random.default_rng(2)
    dtype = "float32" if dtype == "bfloat16" else dtype
    return tuple(rng.random((N, 32, 32, 3)).astype(dtype) for _ in range(2))


def model_kwargs(case: str, dtype: str) -> dict:
    return {**COMMON, **STEP_CASES[case]["kwargs"], "dtype": dtype}


def compare_steps(a: dict, b: dict, dtype: str, case: str) -> list[dict]:
    """Rows (``shared.parity.compare.Row`` as dicts) comparing torch's outputs ``a`` with TF's ``b``,
    each name under its ``shared.parity.compare.group_of`` tolerance. ``dtype`` ``"bfloat16"``:
    float32 models under bf16 autocast, compared by :func:`compare_bf16`."""
    if dtype == "bfloat16":
        return compare_bf16(a, b, case)
    overrides = (
        {"queue.after/queue": QUEUE_F32, **stepped_weights(a, OPTIMIZER[1])}
        if dtype == "float32"
        else {}
    )
    rows = parity.compare_grouped(
        a, b, dtype=dtype, temperature=0.2, overrides=overrides, skip=("moving_variance",)
    )
    out = [{**r.as_dict(), "case": case} for r in rows]
    if STEP_CASES[case]["method"] == "simclr":  # one BN update per step: a closed form
        for k in (k for k in a if k.endswith("moving_variance")):
            out.append(_variance_row(k, a[k], b[k], dtype, case))
    return out


def compare_bf16(a: dict, b: dict, case: str) -> list[dict]:
    """The bf16-autocast step, torch's outputs ``a`` against TF's ``b``: the loss and the
    features h and z (eval and train mode) under ``bf16_step_tolerance`` of the bf16 layers
    before each (``BF16_LAYERS``). The gradients are not compared here (see that function)."""
    rows = []
    for name, layers in BF16_LAYERS.items():
        tol = bf16_step_tolerance(layers)
        r = parity.compare_leaf(name, a[name], b[name], dtype="bfloat16", tol=tol, quantity="param")
        rows.append({**r.as_dict(), "quantity": "bf16", "case": case})
    return rows


def stepped_weights(a: dict, lr: float) -> dict:
    """float32 overrides for the weights after one SGD step of learning rate ``lr``, where the
    step is large.

    A weight after one SGD step is ``w - lr (g + wd w)``: it inherits ``lr`` times its
    gradient's float32 rounding, which the grad row allows up to ``atol_g * max|g|``. When
    ``lr max|g|`` is comparable to ``max|w|`` (the first conv: 0.1 x 2.3 against 0.33) that
    exceeds the weight row's own ``atol_w * max|w|``, and the row failed or passed by the thread
    count (measured: 1.18 of the allowance with one thread per framework, 0.94 with two). So
    the weight's atol becomes ``atol_w + lr atol_g max|g| / max|w|``: the two rows' allowances
    propagated through the update, not a loosened constant. A weight that starts at zero (BN's
    beta) is all step: its allowance becomes the grad row's.
    """
    w_tol, g_tol = tolerance("param", "float32"), tolerance("grad", "float32")
    out = {}
    for k, w in a.items():
        g = a.get("grad/" + k[len("after/") :]) if k.startswith("after/") else None
        if g is None or not np.size(w) or not np.max(np.abs(w)):
            continue
        atol = w_tol.atol + lr * g_tol.atol * float(np.max(np.abs(g)) / np.max(np.abs(w)))
        if atol > w_tol.atol:
            out[f"param.{k}"] = override(
                "param",
                "float32",
                atol=atol,
                reason=f"one step of lr {lr}: the weight carries lr x its gradient's fp32 "
                "rounding (the grad row's atol x max|g|)",
            )
    return out


def _variance_row(name: str, torch_v, tf_v, dtype: str, case: str) -> dict:
    """BN's running variance: (torch - m0) / (tf - m0) = n / (n - 1) exactly, n the values per
    channel and split; the row reports how far the measured ratio is from that."""
    momentum_part = 0.9  # m0 = momentum * initial variance 1, for torch's 0.1 / Keras's 0.9
    ratio = (np.asarray(torch_v, np.float64) - momentum_part) / (
        np.asarray(tf_v, np.float64) - momentum_part
    )
    n = _values_per_channel(name, case)
    want = n / (n - 1)
    err = float(np.max(np.abs(ratio - want)))
    tol = 1e-9 if dtype == "float64" else 1e-2
    return {
        "name": f"pinned.{name} (ratio n/(n-1), n={n})",
        "quantity": "pinned",
        "dtype": dtype,
        "max_abs": err,
        "max_rel": err / want,
        "ulps": 0.0,
        "rtol": tol,
        "atol": 0.0,
        "scale": 1.0,
        "worst_margin": err / (tol * want),
        "passed": err <= tol * want,
        "reason": "torch stores the unbiased batch variance, Keras the biased one",
        "case": case,
    }


def _values_per_channel(name: str, case: str) -> int:
    """Values per channel in SimCLR's one BN pass over both views: 2N rows, times H W for
    the encoder's convolutions."""
    rows = 2 * N
    if "/head/" in name:
        return rows
    side = {0: 32, 1: 16, 2: 8, 3: 4}[int(name.split("/bn")[1].split("/")[0])]
    return rows * side * side


def summary_markdown(rows: list[dict]) -> str:
    """The compact step table: per case, dtype and quantity, the worst row (max rel and its
    share of the allowed tolerance), and whether every row passed."""
    worst: dict[tuple, dict] = {}
    for r in rows:
        key = (r["case"], r["dtype"], r["quantity"])
        w = worst.setdefault(key, {**r, "n": 0, "failed": 0})
        w["n"] += 1
        w["failed"] += 0 if r["passed"] else 1
        if r["worst_margin"] > w["worst_margin"]:
            worst[key] = {**r, "n": w["n"], "failed": w["failed"]}
    lines = [
        "| case | dtype | quantity | compared | worst | max abs | max rel | of tolerance | pass |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (case, dtype, q), r in worst.items():
        lines.append(
            f"| {case} | {dtype} | {q} | {r['n']} | {r['name']} | {r['max_abs']:.1e} | "
            f"{r['max_rel']:.1e} | {r['worst_margin']:.2f} | "
            f"{'yes' if r['failed'] == 0 else '**NO**'} |"
        )
    return "\n".join(lines) + "\n"
