"""Run this framework's losses on the golden inputs; the ``parity`` command compares the outputs.

``golden_outputs(dtype)`` returns ``{loss: {case: {"loss", "per_anchor", "grad_<input>"}}}``
with NumPy arrays in ``dtype``, the same layout as ``shared.golden``.
"""

from __future__ import annotations

import torch

from shared import golden
from torch_impl.losses import info_nce, nt_xent

FRAMEWORK = "torch"

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def run_case(loss: str, case: dict, dtype: str, device: str = "cpu") -> dict:
    """One golden case: from_numpy -> op -> backward -> to_numpy."""
    names = ["z1", "z2"] if loss == "nt_xent" else ["q", "k", "queue"]
    fn = nt_xent if loss == "nt_xent" else info_nce
    tau = float(case["temperature"])
    xs = [
        torch.tensor(case[n], dtype=DTYPES[dtype], device=device, requires_grad=True) for n in names
    ]
    per = fn(*xs, temperature=tau, reduction="none")
    mean = per.mean()
    mean.backward()
    # arrays keep the computed dtype, so the parity table counts ULPs in that dtype
    out = {"loss": mean.detach().cpu().numpy(), "per_anchor": per.detach().cpu().numpy()}
    for n, x in zip(names[:2], xs):  # the queue is a buffer: no gradient in MoCo
        out[f"grad_{n}"] = x.grad.cpu().numpy()
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
    return torch.__version__
