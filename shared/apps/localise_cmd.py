"""``rosetta parity --localise``: when torch and TensorFlow disagree, name the first layer.

    rosetta parity --localise                          # SimCLR small_cnn, float64, ported weights
    rosetta parity --localise --inject "BN momentum and epsilon"
    rosetta parity --localise --runs RUN_TORCH RUN_TF  # two trained runs, float32

Both models run every layer on the input torch's layer saw (``torch_impl.localise.capture``);
forward outputs, input and weight gradients, BN statistics, and one optimiser step are compared
layer by layer (``shared.parity.localise``), and the first quantity over tolerance is named with
the catalogue row that reproduces it, if any. Exit status 1 when a layer is over tolerance.
Frameworks are imported inside the functions, torch first.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from shared.parity.localise import INJECTABLE, format_report, localise
from shared.run.encoders import ENCODER_NAMES

__all__ = ["build_pair", "load_pair", "localise_models", "main"]


def build_pair(
    method: str, model_kwargs: dict, dtype: str, inject: str | None = None, seed: int = 0
):
    """A torch model (initialised from ``seed``, so that a report can be reproduced) and a TF one
    with torch's weights ported into it (``shared.parity.weights``), the TF one with ``inject``
    left unaligned (``tf_impl.localise.inject_model``)."""
    import torch  # (before TensorFlow)
    import torchvision  # noqa: F401

    from tf_impl.localise import inject_model
    from tf_impl.methods import METHODS as TF_METHODS
    from tf_impl.weights import import_weights
    from torch_impl.methods import METHODS as TORCH_METHODS
    from torch_impl.weights import export_weights

    torch.manual_seed(seed)
    pt = TORCH_METHODS[method](**model_kwargs, dtype=dtype)
    tfm = TF_METHODS[method](**model_kwargs, dtype=dtype)
    import_weights(tfm, export_weights(pt))
    inject_model(tfm, inject)
    return pt, tfm


def load_pair(torch_run, tf_run):
    """The two trained models of two run directories (each framework's ``load_trained``)."""
    import torch  # noqa: F401  (before TensorFlow)
    import torchvision  # noqa: F401

    from tf_impl.methods import load_trained as tf_load
    from torch_impl.methods import load_trained as torch_load

    return torch_load(torch_run)[0], tf_load(tf_run)[0]


def localise_models(
    pt_model,
    tf_model,
    x: np.ndarray,
    dtype: str,
    *,
    optimizer: str = "sgd",
    lr: float = 0.1,
    momentum: float = 0.9,
    seed: int = 0,
    inject: str | None = None,
):
    """Localise the first disagreement of two models on the NHWC batch ``x``.

    ``inject`` (a row of ``INJECTABLE``) leaves that row unaligned: in the TF model (which
    :func:`build_pair` already did), the TF optimiser or normalisation, or, for "BN running
    variance", the comparison (raw variances, without the n / (n - 1) conversion).

    Returns:
        A ``shared.parity.localise.Report``.
    """
    from tf_impl import localise as tl
    from torch_impl import localise as pl

    records = pl.capture(pt_model, x, seed)
    torch_out = pl.layer_outputs(pt_model, records)
    tf_out = tl.layer_outputs(tf_model, records, inject=inject)
    grads = {
        f"{layer}/{q.split('/')[1]}": g
        for layer, qs in torch_out.items()
        for q, g in qs.items()
        if q.startswith("grad/") and q != "grad/input"
    }
    pt_step = pl.optimizer_step(pt_model, grads, optimizer, lr, momentum)
    tf_grads = {n: grads[n] for n in pt_step}
    tf_step = tl.optimizer_step(tf_model, tf_grads, optimizer, lr, momentum, inject=inject)
    _merge_step(torch_out, pt_step)
    _merge_step(tf_out, tf_step)
    layer_grads: dict = {}
    for name, g in tf_grads.items():
        layer, role = name.rsplit("/", 1)
        layer_grads.setdefault(layer, {})[role] = g
    settings = {"optimizer": optimizer, "lr": lr, "momentum": momentum, "grads": layer_grads}
    return localise(
        records,
        torch_out,
        tf_out,
        dtype,
        settings,
        convert_variance=inject != "BN running variance",
    )


def _merge_step(out: dict, step: dict) -> None:
    """Add ``optimizer_step``'s results to their layers as ``slot/<role>/<slot>``, ``step/<role>``."""
    for name, quantities in step.items():
        layer, role = name.rsplit("/", 1)
        for q, v in quantities.items():
            out[layer][f"slot/{role}/{q[5:]}" if q.startswith("slot/") else f"step/{role}"] = v


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="rosetta parity --localise", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--runs", nargs=2, metavar=("TORCH_RUN", "TF_RUN"), help="two run directories")
    ap.add_argument("--inject", choices=INJECTABLE, help="leave this catalogue row unaligned")
    ap.add_argument("--method", default="simclr", choices=["simclr", "moco"])
    ap.add_argument("--encoder", default="small_cnn", choices=ENCODER_NAMES)
    ap.add_argument("--hidden-dim", type=int, default=64)
    ap.add_argument("--proj-dim", type=int, default=32)
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--batch", type=int, default=8, help="images in the seeded random batch")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--optimizer", default=None, choices=["sgd", "adam", "lars"])
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds the torch model, the batch and the upstream gradients",
    )
    ap.add_argument(
        "--all", action="store_true", help="print every quantity, not each layer's worst"
    )
    return ap


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.runs and args.inject:
        print("error: --inject: builds its own models; drop --runs", file=sys.stderr)
        return 2
    optimizer = args.optimizer or ("adam" if args.inject == "Adam's epsilon" else "sgd")
    lr = args.lr if args.lr is not None else (1e-3 if optimizer == "adam" else 0.1)
    if args.runs:
        pt, tfm = load_pair(*args.runs)
        dtype = "float32"
    else:
        kw = {"encoder": args.encoder, "hidden_dim": args.hidden_dim, "proj_dim": args.proj_dim}
        pt, tfm = build_pair(args.method, kw, args.dtype, args.inject, args.seed)
        dtype = args.dtype
    x = np.random.default_rng(args.seed).random((args.batch, args.image_size, args.image_size, 3))
    report = localise_models(
        pt, tfm, x, dtype, optimizer=optimizer, lr=lr, seed=args.seed, inject=args.inject
    )
    print(format_report(report, args.all))
    return 0 if report.passed else 1
