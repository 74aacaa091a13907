"""Where TensorFlow's training step loses to torch's: each layer type of the small CNN, forward
+ backward on the shapes the encoder sees (128 images of 32 px: both views of a batch of 64),
in both frameworks, fp32, every core.

    python -m benchmarks.layers        # about 1 min; writes results/layers.{json,md}

B5 measured SimCLR's step at 1.86x torch in TF, MoCo's at 1.17x; with this table's two kernels
(below, ``tf_impl.fast_kernels``) in the model, 1.58x and 0.86x (2026-12-01). This table
splits the encoder into its layers (conv 3x3 "same", BatchNorm in training mode, ReLU, 2x2
max-pool). Two TF-only rows time what ``--fast-kernels`` swaps in: ``fast_kernels.Conv3x3``,
whose input gradient is a forward convolution with the flipped, transposed kernel
(mathematically equal to TF's ``Conv2DBackpropInput``), and
``fast_kernels.FusedSplitBatchNorm``, TF's fused float32 kernel. Each "fwd + bwd" is one
``sum(y * y)`` loss through the layer alone, gradients for the input and the weights.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

# isort: off
import torch
import torchvision  # noqa: F401  (triton must load before TensorFlow)
import tensorflow as tf

# isort: on

from benchmarks import harness as H
from tf_impl.fast_kernels import Conv3x3, FusedSplitBatchNorm

B = 128
LAYERS = [(32, 3, 32), (16, 32, 64), (8, 64, 128), (4, 128, 256)]  # side, in, out channels


def _tf_fwd_bwd(fn, x, variables):
    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, [x, *variables])

    return lambda: [g.numpy() for g in step()]


def _torch_fwd_bwd(fn, x):
    def go():
        x.grad = None
        y = fn(x)
        (y * y).sum().backward()

    return go


def measure() -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for side, cin, cout in LAYERS:
        x_np = rng.random((B, side, side, cin), dtype=np.float32)
        k_np = (rng.standard_normal((3, 3, cin, cout)) * 0.1).astype(np.float32)
        a_np = rng.standard_normal((B, side, side, cout)).astype(np.float32)
        x, k, a = tf.constant(x_np), tf.Variable(k_np), tf.constant(a_np)
        xt = (
            torch.from_numpy(x_np).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
        )
        at = (
            torch.from_numpy(a_np).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
        )
        xt.requires_grad_(True)
        at.requires_grad_(True)
        w = torch.nn.Parameter(torch.from_numpy(k_np).permute(3, 2, 0, 1).contiguous())
        bn_tf = tf.keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)
        bn_tf.build(a.shape)
        conv3x3 = Conv3x3(cout)
        conv3x3.build(x.shape)
        conv3x3.kernel.assign(k_np)
        bn_fused = FusedSplitBatchNorm(1, momentum=0.9, epsilon=1e-5)
        bn_fused.build(a.shape)
        bn_pt = torch.nn.BatchNorm2d(cout).to(memory_format=torch.channels_last)
        cases = {
            "conv 3x3": (
                _tf_fwd_bwd(lambda v: tf.nn.conv2d(v, k, 1, "SAME"), x, [k]),
                _torch_fwd_bwd(lambda v: torch.nn.functional.conv2d(v, w, padding=1), xt),
            ),
            "conv 3x3, input gradient as a forward conv (TF: fast_kernels.Conv3x3)": (
                _tf_fwd_bwd(conv3x3, x, conv3x3.trainable_weights),
                None,
            ),
            "BatchNorm (training)": (
                _tf_fwd_bwd(lambda v: bn_tf(v, training=True), a, bn_tf.trainable_weights),
                _torch_fwd_bwd(bn_pt, at),
            ),
            "BatchNorm, fused kernel (TF: fast_kernels.FusedSplitBatchNorm)": (
                _tf_fwd_bwd(lambda v: bn_fused(v, training=True), a, bn_fused.trainable_weights),
                None,
            ),
            "ReLU": (_tf_fwd_bwd(tf.nn.relu, a, []), _torch_fwd_bwd(torch.relu, at)),
        }
        if side > 4:
            cases["max-pool 2x2"] = (
                _tf_fwd_bwd(lambda v: tf.nn.max_pool2d(v, 2, 2, "VALID"), a, []),
                _torch_fwd_bwd(lambda v: torch.nn.functional.max_pool2d(v, 2), at),
            )
        for name, (tf_fn, pt_fn) in cases.items():
            row = {"layer": name, "side": side, "in": cin, "out": cout}
            row["tf_ms"] = 1e3 * H.measure(tf_fn, 3, 11)["median_s"]
            row["torch_ms"] = 1e3 * H.measure(pt_fn, 3, 11)["median_s"] if pt_fn else None
            rows.append(row)
            print(f"  {name} {side}x{side}x{cout}: TF {row['tf_ms']:.1f} ms", flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        f"# Layer by layer: TF against torch (`python -m benchmarks.layers`, {time.strftime('%Y-%m-%d')})",
        "",
        f"Forward + backward of one layer on {B} images (both views of a batch of 64), fp32, "
        "every core; median ms of 11 runs.",
        "",
        "| layer | output (side x side x channels) | TF ms | torch ms | TF / torch |",
        "|---|---|---|---|---|",
    ]
    totals: dict[str, list[float]] = {}
    for r in rows:
        pt = r["torch_ms"]
        ratio = f"{r['tf_ms'] / pt:.2f}" if pt else "-"
        lines.append(
            f"| {r['layer']} | {r['side']} x {r['side']} x {r['out']} | {r['tf_ms']:.1f} | "
            f"{pt:.1f} | {ratio} |"
            if pt
            else f"| {r['layer']} | {r['side']} x {r['side']} x {r['out']} | {r['tf_ms']:.1f} "
            "| - | - |"
        )
        t = totals.setdefault(r["layer"], [0.0, 0.0])
        t[0] += r["tf_ms"]
        t[1] += pt or 0.0
    lines += ["", "| layer, all four blocks | TF ms | torch ms | TF / torch |", "|---|---|---|---|"]
    for name, (tfm, ptm) in totals.items():
        lines.append(
            f"| {name} | {tfm:.1f} | {ptm:.1f} | {tfm / ptm:.2f} |"
            if ptm
            else f"| {name} | {tfm:.1f} | - | - |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    import json

    rows = measure()
    results = Path(__file__).with_name("results")
    (results / "layers.json").write_text(json.dumps(rows, indent=1) + "\n")
    md = markdown(rows)
    (results / "layers.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
