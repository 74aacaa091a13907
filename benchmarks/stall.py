"""The MoCo-TF stall: MoCo training epochs in TF with tf.data's autotuning on (as before the fix)
and off (``tf_impl.train.make_dataset`` since), timing per epoch the training steps and the
deletion of the epoch's iterator.

    python -m benchmarks.stall [--epochs 12]     # ~3 min; writes results/stall.{json,md}

With autotune on, about 1 epoch in 3 took 10.5 s instead of 5.5 s: the steps were as fast as
in the other epochs, and the difference was spent deleting the iterator, which waited for
autotune's background thread.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

# isort: off
import torch  # noqa: F401  (torch and torchvision before TensorFlow)
import torchvision  # noqa: F401
import tensorflow as tf

# isort: on


def run(epochs: int, autotune: bool) -> dict:
    """``epochs`` MoCo epochs (training defaults, embedded data); per epoch the seconds of the
    whole epoch, of its steps, and of deleting its iterator."""
    from shared.run.config import TrainConfig
    from tf_impl import methods as M
    from tf_impl import train as T
    from tf_impl.augment import BatchAugment
    from tf_impl.data import load_split
    from tf_impl.optim import build_optimizer

    cfg = TrainConfig(method="moco", amp=False, run_dir="-").resolve("tensorflow")
    tf.keras.utils.set_random_seed(0)
    images = load_split("embedded", "train", None, False, 32, 0).images
    model = M.build_model(cfg)
    opt = build_optimizer(model, cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)
    step = T.compile_step(model, opt)
    aug = tf.function(BatchAugment(**cfg.augment_kwargs()))
    out = {"epoch": [], "steps": [], "delete": []}
    for epoch in range(epochs + 1):  # epoch 0 traces: left out
        it = iter(T.make_dataset(images, cfg, epoch, aug, autotune=autotune))
        t0, steps = time.perf_counter(), 0.0
        for i, (x1, x2) in enumerate(it):
            s0 = time.perf_counter()
            float(step(x1, x2, tf.constant([0, i]), tf.constant(0.99, tf.float64)))
            steps += time.perf_counter() - s0
        d0 = time.perf_counter()
        del it
        deleted = time.perf_counter() - d0
        if epoch:
            out["epoch"].append(time.perf_counter() - t0)
            out["steps"].append(steps)
            out["delete"].append(deleted)
        print(
            f"autotune {'on ' if autotune else 'off'} epoch {epoch}: "
            f"{time.perf_counter() - t0:.2f} s, steps {steps:.2f} s, delete {deleted:.2f} s",
            flush=True,
        )
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.stall", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--epochs", type=int, default=12)
    args = ap.parse_args(argv)
    on, off = run(args.epochs, True), run(args.epochs, False)
    record = {
        "date": time.strftime("%Y-%m-%d"),
        "autotune_on": on["epoch"],
        "autotune_off": off["epoch"],
        "delete_on": on["delete"],
        "delete_off": off["delete"],
        "steps_on": on["steps"],
        "steps_off": off["steps"],
    }
    results = Path(__file__).with_name("results")
    (results / "stall.json").write_text(json.dumps(record, indent=1))
    lines = [
        "# The MoCo-TF stall (`python -m benchmarks.stall`)",
        "",
        f"{record['date']}, MoCo training defaults, embedded data, {args.epochs} epochs per "
        "setting after one tracing epoch. Seconds per epoch: the whole epoch, its training "
        "steps, and the deletion of its tf.data iterator.",
        "",
        "| epoch | autotune on: epoch | steps | delete | autotune off: epoch | steps | delete |",
        "|---|---|---|---|---|---|---|",
    ]
    for i in range(args.epochs):
        lines.append(
            f"| {i + 1} | {on['epoch'][i]:.2f} | {on['steps'][i]:.2f} | {on['delete'][i]:.2f} | "
            f"{off['epoch'][i]:.2f} | {off['steps'][i]:.2f} | {off['delete'][i]:.2f} |"
        )
    lines += [
        "",
        f"Median epoch: {np.median(on['epoch']):.2f} s on, {np.median(off['epoch']):.2f} s off; "
        f"slowest: {max(on['epoch']):.2f} s on, {max(off['epoch']):.2f} s off.",
        "",
    ]
    (results / "stall.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
