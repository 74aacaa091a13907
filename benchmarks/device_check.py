"""The device checks, in one short script: ``python -m benchmarks.device_check [--quick]``.

Under 5 minutes on one GPU (the models are the step-parity cases' tiny ones; only the
images/s use the 2x2's cells). On a machine without a GPU it says so plainly, skips the rows
that need one, and runs the rest on the CPU:

1. **devices**: the CPU, and the GPU each framework sees (``no GPU`` when none does);
2. **CPU against CUDA**, each framework: the loss goldens (float64, float32) and one training
   step of each step-parity case (float32), compared with the project's tolerance table;
3. **TF32 on against off**, each framework on the GPU: the float32 step with TF32 against
   the same step without it, measured (TF32 rounds matmul and conv inputs to 10 bits);
4. **bf16 autocast**, torch against TF, on the GPU (or the CPU): the step-level rows of
   ``shared.parity.step_parity.compare_bf16``;
5. **repeatability**: the same float32 step twice from the same state, on each device, bit for
   bit (``np.array_equal`` over every output);
6. **images/s** of the 2x2's four cells (``benchmarks.harness.cell_step``: small CNN, batch
   64, float32) on each device.

``--only bf16,repeat`` runs some sections (the devices are always listed). Writes
``benchmarks/results/device_check.md`` and ``.json`` (or ``--out DIR``). Timings and
measured differences are reported, never asserted. Import order: torch before TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

# isort: off
import torch
import torchvision  # noqa: F401  (triton must load before TensorFlow)
import tensorflow as tf

# isort: on

from benchmarks import harness as H  # noqa: E402
from shared.apps.parity_cmd import compare_outputs  # noqa: E402
from shared.parity import step_parity as sp  # noqa: E402
from shared.run.config import PACKAGES  # noqa: E402

NO_GPU = "no GPU"
SECTIONS = ("cuda", "tf32", "bf16", "repeat", "speed")
tf.get_logger().setLevel("ERROR")  # each check builds its own model: retracing is expected


def _mod(framework: str, name: str):
    return __import__(f"{PACKAGES[framework]}.{name}", fromlist=["x"])


def gpus() -> dict:
    """``{framework: GPU name or None}``; TF is told to grow its GPU memory, not to take it all."""
    found = {"torch": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    tf_gpus = tf.config.list_physical_devices("GPU")
    for g in tf_gpus:
        tf.config.experimental.set_memory_growth(g, True)
    found["tensorflow"] = tf_gpus[0].name if tf_gpus else None
    return found


_INIT: dict = {}  # (case, dtype) -> torch's initial weights, shared by every step of the case


def step(framework: str, case: str, dtype: str, device: str) -> dict:
    """One step of a step-parity case (``dtype`` ``"bfloat16"``: the bf16-autocast step) on
    ``device``, from the case's shared initial weights (torch's, seed 0): ``step_outputs``
    of ``framework``, the model and optimiser of its ``parity.step_case``."""
    if (case, dtype) not in _INIT:
        model = _mod("torch", "parity").step_case(case, dtype)[0]
        _INIT[case, dtype] = _mod("torch", "weights").export_weights(model)
    par = _mod(framework, "parity")
    model, opt, kwargs = par.step_case(case, dtype, device)
    _mod(framework, "weights").import_weights(model, _INIT[case, dtype])
    return par.step_outputs(model, *sp.views(dtype), opt, **kwargs)


def _worst(rows: list[dict]) -> str:
    bad = [r for r in rows if not r["passed"]]
    w = max(rows, key=lambda r: r["worst_margin"])
    verdict = "PASS" if not bad else f"FAIL ({len(bad)} rows)"
    return f"{verdict}: {len(rows)} rows, worst {w['name']} at {w['worst_margin']:.2f} of its tolerance"


def cpu_vs_cuda(framework: str) -> list[str]:
    """Section 2 for one framework: the loss goldens and the float32 step, CPU against CUDA."""
    par = _mod(framework, "parity")
    lines = []
    for dtype in ("float64", "float32"):
        rows = compare_outputs(
            par.golden_outputs(dtype, "cpu"),
            par.golden_outputs(dtype, "cuda"),
            dtype,
            "cuda vs cpu",
        )
        lines.append(f"- {framework} loss goldens, {dtype}: {_worst(rows)}")
    for case in sp.STEP_CASES:
        rows = sp.compare_steps(
            step(framework, case, "float32", "cpu"),
            step(framework, case, "float32", "cuda"),
            "float32",
            case,
        )
        lines.append(f"- {framework} {case} step, float32: {_worst(rows)}")
    return lines


def tf32_effect(framework: str) -> list[str]:
    """Section 3 for one framework: the float32 step on the GPU with TF32 on, against off."""
    dev = _mod(framework, "devices")
    before = dev.set_tf32(False)
    lines = []
    try:
        for case in sp.STEP_CASES:
            off = step(framework, case, "float32", "cuda")
            dev.set_tf32(True)
            on = step(framework, case, "float32", "cuda")
            dev.set_tf32(False)
            rows = sp.compare_steps(off, on, "float32", case)
            loss_rel = abs(float(on["loss"]) - float(off["loss"])) / abs(float(off["loss"]))
            lines.append(
                f"- {framework} {case}: loss moves {loss_rel:.2e} (relative); against the float32 table: {_worst(rows)}"
            )
    finally:
        dev.set_tf32(before)
    return lines


def bf16(device: str) -> list[str]:
    """Section 4: the bf16-autocast step, torch against TF, on ``device``."""
    lines = []
    for case in sp.STEP_CASES:
        a, b = (step(fw, case, "bfloat16", device) for fw in ("torch", "tensorflow"))
        rows = sp.compare_bf16(a, b, case)
        lines.append(
            f"- {case} on {device}: {_worst(rows)}; loss torch {float(a['loss']):.5f}, TF {float(b['loss']):.5f}"
        )
    return lines


def repeatability(framework: str, device: str) -> str:
    """Section 5 for one framework and device: the same step twice, bit for bit."""
    a, b = (step(framework, "moco", "float32", device) for _ in range(2))
    differ = sorted(k for k in a if not np.array_equal(a[k], b[k]))
    if not differ:
        return f"- {framework} on {device}: bit-identical ({len(a)} arrays)"
    return f"- {framework} on {device}: {len(differ)} of {len(a)} arrays differ, e.g. {differ[0]}"


def images_per_second(device: str, quick: bool) -> list[str]:
    """Section 6: the 2x2's images/s on ``device`` (median of the timed steps)."""
    lines = []
    for method in ("simclr", "moco"):
        for framework in ("torch", "tensorflow"):
            r = H.measure(
                H.cell_step(framework, method, device), 1 if quick else 3, 3 if quick else 10
            )
            lines.append(
                f"- {method} / {framework} on {device}: {64 / r['median_s']:.0f} images/s ({1e3 * r['median_s']:.0f} ms per step of 64)"
            )
    return lines


def run(quick: bool, only=SECTIONS) -> tuple[str, dict]:
    """The sections ``only`` (default: every one); the markdown page and its JSON."""
    t0 = time.perf_counter()
    found = gpus()
    on_gpu = all(found.values())
    devices = ["cpu", "cuda"] if on_gpu else ["cpu"]
    info = H.machine_info(torch.get_num_threads(), "cuda" if on_gpu else "cpu")
    md = [
        "# Device check",
        "",
        "## 1. Devices",
        "",
        f"CPU: {info['cpu']}; torch {info['torch']}, TensorFlow {info['tensorflow']}.",
    ]
    md.append(
        f"GPU: torch sees {found['torch'] or 'none'}, TensorFlow sees {found['tensorflow'] or 'none'}."
    )
    if not on_gpu:
        md.append(
            f"\n**{NO_GPU}**: the CPU-against-CUDA and TF32 sections are skipped, not measured; the rest ran on the CPU."
        )
    skip = [f"- skipped: {NO_GPU}"]
    runs = {
        "cuda": ("2. CPU against CUDA", lambda: [x for fw in PACKAGES for x in cpu_vs_cuda(fw)]),
        "tf32": (
            "3. TF32 on against off (GPU)",
            lambda: [x for fw in PACKAGES for x in tf32_effect(fw)],
        ),
        "bf16": ("4. bf16 autocast step, torch against TF", lambda: bf16(devices[-1])),
        "repeat": (
            "5. Repeatability: the same step twice",
            lambda: [repeatability(fw, d) for d in devices for fw in PACKAGES],
        ),
        "speed": (
            "6. Images/s, the 2x2: {SimCLR, MoCo} x {torch, TF} (small CNN, batch 64, float32)",
            lambda: [x for d in devices for x in images_per_second(d, quick)],
        ),
    }
    sections = {}
    for key in only:
        title, fn = runs[key]
        sections[title] = skip if key in ("cuda", "tf32") and not on_gpu else fn()
    for title, lines in sections.items():
        md += ["", f"## {title}", "", *lines]
    seconds = time.perf_counter() - t0
    md += ["", f"Ran in {seconds:.0f} s."]
    return "\n".join(md) + "\n", {
        "machine": info,
        "gpus": found,
        "sections": sections,
        "seconds": seconds,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.device_check", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--quick", action="store_true", help="fewer timed steps for the images/s")
    ap.add_argument(
        "--out",
        default=None,
        help="folder for device_check.md and .json (default: benchmarks/results)",
    )
    ap.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections, of {','.join(SECTIONS)} (the devices are always listed)",
    )
    args = ap.parse_args(argv)
    only = [s for s in args.only.split(",") if s]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        print(
            f"error: only: expected sections of {','.join(SECTIONS)}, got {unknown}",
            file=sys.stderr,
        )
        return 2
    md, payload = run(args.quick, only)
    print(md)
    out = Path(args.out) if args.out else H.RESULTS
    out.mkdir(parents=True, exist_ok=True)
    (out / "device_check.md").write_text(md)
    (out / "device_check.json").write_text(json.dumps(payload, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
