"""Run this framework's losses on the golden inputs; the ``parity`` command compares the outputs.

``golden_outputs(dtype)`` returns ``{loss: {case: {"loss", "per_anchor", "grad_<input>"}}}``
with NumPy arrays in ``dtype``, the same layout as ``shared.golden``.
"""

from __future__ import annotations

import tensorflow as tf

from shared import golden
from tf_impl.losses import info_nce, nt_xent

FRAMEWORK = "tensorflow"

DTYPES = {"float64": tf.float64, "float32": tf.float32}


def run_case(loss: str, case: dict, dtype: str, device: str = "cpu") -> dict:
    """One golden case: from_numpy -> op (under GradientTape) -> to_numpy."""
    names = ["z1", "z2"] if loss == "nt_xent" else ["q", "k", "queue"]
    fn = nt_xent if loss == "nt_xent" else info_nce
    tau = float(case["temperature"])
    with tf.device(device.upper() if device == "cpu" else device):
        xs = [tf.constant(case[n], dtype=DTYPES[dtype]) for n in names]
        with tf.GradientTape() as tape:
            tape.watch(xs[:2])
            per = fn(*xs, temperature=tau, reduction="none")
            mean = tf.reduce_mean(per)
        grads = tape.gradient(mean, xs[:2])  # the queue is a buffer: no gradient in MoCo
    # arrays keep the computed dtype, so the parity table counts ULPs in that dtype
    out = {"loss": mean.numpy(), "per_anchor": per.numpy()}
    for n, g in zip(names[:2], grads):
        out[f"grad_{n}"] = g.numpy()
    return out


def golden_outputs(dtype: str = "float64", device: str = "cpu") -> dict:
    if dtype not in DTYPES:
        raise ValueError(f"dtype: expected one of {sorted(DTYPES)}, got {dtype!r}")
    return {
        loss: {c: run_case(loss, fields, dtype, device) for c, fields in golden.load(loss).items()}
        for loss in ("nt_xent", "info_nce")
    }


def framework_version() -> str:
    """The framework's version string, recorded in each dump."""
    return tf.__version__
