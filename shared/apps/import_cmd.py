"""``rosetta import PATH --format moco|simclr-tf1 --to torch|tensorflow --out RUN_DIR``: an
official checkpoint becomes an ordinary run (``config.json`` + checkpoint) that ``eval``,
``finetune`` and ``port`` accept, with a layer-by-layer proof.

Three processes (``shared.apps.import_stages``): the framework that reads the format maps it to
canonical weights and runs the independent reference forward (MoCo: torchvision's resnet50 with
the checkpoint's ``state_dict``; SimCLR: ``tf.nn`` ops on the checkpoint's variables); the
target's ``import-weights`` writes the run; the target records each layer of that run (float32)
and of a float64 copy on the same batch. This process compares them, source expected and target
actual, with ``shared.parity.compare.compare_leaf``, and writes ``import_report.json`` and
``import_report.md`` into the run. Everything is built in a temporary folder beside ``--out``
and moved there only when the proof passes: a bad checkpoint (one ``error:`` line, exit 2) or a
failed proof (the report, exit 1) leaves no run directory.

SimCLR's checkpoints (``shared.run.simclr_tf1``): ``--weights raw|ema`` picks the trained
variables or their ``ema_model/`` copy, ``--ft-proj-selector`` what the supervised head reads; a
checkpoint without a projection head becomes an encoder-only run (the report says z is absent).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from shared.apps.import_stages import PROOF_DTYPES, READER
from shared.parity.compare import compare_leaf
from shared.parity.localise import Report, format_report
from shared.parity.tolerances import tolerance
from shared.run.config import PACKAGES
from shared.run.errors import ConfigError, RunDirError
from shared.run.runlog import atomic_write_bytes, check_writable

__all__ = ["import_official", "main", "proof_rows", "proof_tolerance"]


def proof_tolerance(dtype: str):
    """The tolerance of one layer's output, source against target: the table's ``param`` row,
    ``max |source|`` its scale (measured on MoCo into TensorFlow, 2 images of 32 px: float64
    worst 0.04 of it, float32 0.13)."""
    return tolerance("param", dtype)


def proof_rows(source: dict, target: dict, pairs: list) -> list:
    """``(layer, quantity, Row)`` for every proven layer and dtype, in forward order, plus
    MoCo's queue (exact) and pointer."""
    rows = []
    for dtype in PROOF_DTYPES:
        tol = proof_tolerance(dtype)
        for src, layer in pairs:
            want, got = source[f"{dtype}|{src}"], target[f"{dtype}|{layer}"]
            row = compare_leaf(layer, want, got, dtype=dtype, tol=tol, quantity="param")
            rows.append((layer, f"forward/{dtype} (source {src})", row))
    if "queue" in source:
        for name, q in (("queue", "queue"), ("queue_ptr", "ptr")):
            row = compare_leaf(name, source[name], target[name], dtype="float32", quantity=q)
            rows.append((name, "exact copy", row))
    return rows


def _report(rows: list, info: dict, to: str) -> tuple[Report, dict, str]:
    report = Report(rows)
    bad = [r for r in rows if not r[2].passed]
    report.first = bad[0] if bad else None
    data = {
        "source": {k: v for k, v in info.items() if k != "pairs"},
        "target": to,
        "verdict": report.verdict(),
        "rows": [{**r.as_dict(), "layer": la, "compared": q} for la, q, r in rows],
    }
    skipped = ", ".join(f"{n} {k}" for k, n in info["skipped"].items()) or "nothing"
    lines = [
        f"# Import of an official {info['format']} {info['version']} checkpoint into {to}",
        "",
        f"- input convention: {info['input']}",
        *_simclr_lines(info),
        f"- skipped: {skipped}",
        f"- inference only: {'; '.join(info['inference_only']) or 'nothing'}",
        f"- proof batch: {info['proof_batch']}, float32 and float64; tolerance per layer: "
        f"float32 {proof_tolerance('float32').rtol:g} rel + {proof_tolerance('float32').atol:g} "
        f"x max|source|, float64 {proof_tolerance('float64').rtol:g} rel + "
        f"{proof_tolerance('float64').atol:g} x max|source|",
    ]
    if info.get("supervised_classes"):
        lines.append(
            f"- supervised head ({info['supervised_classes']} classes, reading "
            f"{info['supervised_input']}) saved beside: supervised_head.npz (kernel "
            f"({info.get('feature_dim', 2048)}, classes), bias, ft_proj_selector); proven as "
            "net/logits_sup"
        )
    text = "\n".join(lines + ["", "```", format_report(report), "```", ""])
    return report, data, text


def _simclr_lines(info: dict) -> list[str]:
    """The report's lines on a SimCLR checkpoint's variant, copy of the weights and head."""
    if info["format"] != "simclr-tf1":
        return []
    weights = {
        "raw": "raw (the trained variables; an ema_model/ copy, if any, is skipped)",
        "ema": "ema (the ema_model/ copy)",
    }[info["weights"]]
    if info["raw_fallback"]:
        fallback = info["raw_fallback"]
        weights += f"; read raw, having no EMA copy: {len(fallback)} ({fallback[0]}, ...)"
    lines = [f"- variant: {info['variant']} -> encoder {info['encoder']}", f"- weights: {weights}"]
    if info["z"]:
        lines.append(f"- {info['z']}")
    return lines


def _run(argv: list[str], in_process: bool) -> int:
    """``python -m <argv>`` in a child process, or in this one (tests: one import of each
    framework); the exit status."""
    if not in_process:
        return subprocess.call([sys.executable, "-m", *argv])
    if argv[0] == "shared.apps.import_stages":
        from shared.apps.import_stages import main as stages

        return stages(argv[1:])
    from shared.apps.impl_cli import main as impl_main

    framework = next(f for f, p in PACKAGES.items() if p == argv[0])
    return impl_main(framework, argv[1:])


def import_official(
    path, fmt: str, to: str, out, *, images: int = 2, size: int = 224, in_process: bool = False,
    weights: str = "raw", ft_proj_selector: int = 0,
) -> int:  # fmt: skip
    """Import the checkpoint at ``path`` into a run of ``to`` at ``out``; the exit status.
    ``weights`` ("raw" or "ema") and ``ft_proj_selector``: SimCLR's (``main``'s help).

    Raises:
        RunDirError: ``out`` exists already (a symbolic link too), or its folder, where the
            work folder is made, cannot be written; checked before any work.
    """
    out = Path(out)
    if os.path.lexists(out):
        raise RunDirError(f"out: {str(out)!r} exists; choose a new run directory")
    check_writable(out.parent, "out", "choose another --out")
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.import-", dir=out.parent))
    try:
        steps = [
            ["shared.apps.import_stages", "read", "--checkpoint", str(path), "--format", fmt,
             "--work", str(work), "--images", str(images), "--size", str(size),
             "--weights", weights, "--ft-proj-selector", str(ft_proj_selector)],
            [PACKAGES[to], "import-weights", "--weights", str(work / "weights.npz"),
             "--config", str(work / "config.json"), "--out", str(work / "run")],
            ["shared.apps.import_stages", "target", "--framework", to, "--work", str(work)],
        ]  # fmt: skip
        for argv in steps:
            code = _run(argv, in_process)
            if code:  # the stage printed its one-line error
                return code
        info = json.loads((work / "info.json").read_text())
        with np.load(work / "source.npz") as s, np.load(work / "target.npz") as t:
            rows = proof_rows(dict(s), dict(t), info["pairs"])
        report, data, text = _report(rows, info, to)
        print(text)
        if not report.passed:
            print(f"error: import: the proof failed; {report.verdict()}", file=sys.stderr)
            return 1
        run = work / "run"
        atomic_write_bytes(run / "import_report.json", json.dumps(data, indent=2).encode())
        atomic_write_bytes(run / "import_report.md", text.encode())
        if (work / "supervised_head.npz").exists():
            shutil.copy(work / "supervised_head.npz", run / "supervised_head.npz")
        run.rename(out)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="rosetta import",
        description="An official SimCLR (TF1) or MoCo (.pth.tar) checkpoint as a run of either "
        "framework, proven layer by layer (docs/import.md).",
    )
    ap.add_argument("path", help="the official checkpoint (.pth.tar, or a TF1 checkpoint prefix)")
    ap.add_argument("--format", required=True, choices=sorted(READER), help="its layout")
    ap.add_argument("--to", required=True, choices=sorted(PACKAGES), help="the target framework")
    ap.add_argument("--out", required=True, help="the new run directory (must not exist)")
    ap.add_argument("--images", type=int, default=2, help="images in the proof batch")
    ap.add_argument("--size", type=int, default=224, help="side of the proof batch's images")
    ap.add_argument(
        "--weights",
        choices=("raw", "ema"),
        default="raw",
        help="simclr-tf1: the trained variables (raw) or their ema_model/ copy (ema)",
    )
    ap.add_argument(
        "--ft-proj-selector",
        type=int,
        default=0,
        help="simclr-tf1: what the supervised head reads, as model_util.py's flag: 0 h (a "
        "pretrained checkpoint's linear head), 1 the first projection layer's output (the "
        "README's fine-tuning recipe)",
    )
    args = ap.parse_args(argv)
    if args.images < 1 or args.size < 32:
        raise ConfigError(
            f"images, size: expected >= 1 images of >= 32 px (ResNet-50 downsamples 32x), "
            f"got {args.images} of {args.size}"
        )
    if args.format != "simclr-tf1" and (args.weights, args.ft_proj_selector) != ("raw", 0):
        raise ConfigError("weights, ft-proj-selector: expected only with --format simclr-tf1")
    return import_official(
        args.path, args.format, args.to, args.out, images=args.images, size=args.size,
        weights=args.weights, ft_proj_selector=args.ft_proj_selector,
    )  # fmt: skip
