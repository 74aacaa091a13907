"""The parts of ``python -m torch_impl`` and ``python -m tf_impl`` that do not depend on the
framework: config flags from a dataclass, the parity-dump writer, and the one-line error
handler. Each framework's ``__main__`` keeps only what is framework-specific.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import numpy as np

from shared.datasets import DatasetNotFound


def add_config_args(parser: argparse.ArgumentParser, config_cls) -> None:
    """One ``--flag`` per init field of a ``TrainConfig`` dataclass, typed by its default."""
    for f in dataclasses.fields(config_cls):
        if not f.init:
            continue
        default = f.default
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif isinstance(default, tuple):
            parser.add_argument(flag, type=float, nargs=2, default=default, metavar=("MIN", "MAX"))
        else:
            typ = {"lr": float, "limit_train": int}.get(f.name, type(default))
            parser.add_argument(flag, type=typ, default=default, help=f"(default: {default})")


def config_from_args(args: argparse.Namespace, config_cls):
    kw = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls) if f.init}
    kw["crop_scale"] = tuple(kw["crop_scale"])
    return config_cls(**kw)


def add_parity_dump_parser(sub) -> None:
    pd = sub.add_parser("parity-dump", help="run the losses on the goldens, write an .npz")
    pd.add_argument("--dtype", nargs="+", default=["float64"], choices=["float64", "float32"])
    pd.add_argument("--device", default="cpu")
    pd.add_argument(
        "--out", required=True, help="an .npz path; use '{dtype}' in it for several dtypes"
    )


def write_parity_dumps(golden_outputs, framework: str, version: str, args) -> int:
    """Run ``golden_outputs(dtype, device)`` for each ``--dtype`` and write one .npz each."""
    if len(args.dtype) > 1 and "{dtype}" not in args.out:
        raise ValueError("out: with several --dtype values, expected a path containing '{dtype}'")
    for dtype in args.dtype:  # one process for all dtypes: the framework is imported once
        outputs = golden_outputs(dtype, args.device)
        flat = {
            f"{loss}/{c}/{k}": v
            for loss, cases in outputs.items()
            for c, f in cases.items()
            for k, v in f.items()
        }
        meta = {"framework": framework, "version": version, "dtype": dtype, "device": args.device}
        path = args.out.replace("{dtype}", dtype)
        np.savez(path, __meta__=json.dumps(meta), **flat)
        print(f"wrote {path} ({len(flat)} arrays, {framework} {version}, {dtype})")
    return 0


def run_guarded(fn, *args) -> int:
    """Run a subcommand; expected failures (missing data, bad input, a corrupt checkpoint)
    become one ``error: ...`` line and exit status 2, never a traceback."""
    try:
        return fn(*args)
    except (DatasetNotFound, FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
