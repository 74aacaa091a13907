"""Each recipe for a few steps in both frameworks: ``python -m benchmarks.recipe_check``.

For every recipe of ``shared.run.recipes`` and each framework, in its own process (so that its
peak memory is its own): the recipe's network, head, loss, queue and optimiser, on synthetic
uint8 images of the recipe's shape, trained by the real loop (``torch_impl.train.run_epoch`` with
``epoch_batches``; ``tf_impl.train.run_epoch`` with ``make_dataset``), then the step alone on
views made once. Printed and written to ``benchmarks/results/recipe_check.md`` and ``.json``:

* **loop images/s**: the whole loop, augmentation included (the second epoch: the first holds
  the tracing);
* **step images/s**: the model's ``train_step`` alone, on ready views;
* **loop / step**: how much of the step's speed the loop keeps (the data path's cost);
* **peak memory**: the process's peak resident set on a CPU (``ru_maxrss``), the device's peak
  allocation on a GPU.

On a CPU the sizes shrink so that the check ends in minutes (``CPU_SIZES``: the batch, and the
ImageNet recipe's 224-px crops to 64 px); on a GPU (``--device cuda``) each recipe keeps its own
batch and image size. Every shrunk value is in the table. Timings are measured, never asserted.

    python -m benchmarks.recipe_check                  # every recipe, both frameworks, CPU
    python -m benchmarks.recipe_check --device cuda    # on a GPU, the recipes' own sizes
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from shared.run.hardware import cpu_features, cpu_name
from shared.run.recipes import RECIPES

OUT = Path(__file__).resolve().parent / "results"
FRAMEWORKS = ("torch", "tensorflow")
# on a CPU: the digits' own batch of 64 for the small CNN, 16 for the ResNets (a cell in
# minutes), and ImageNet-shaped images at 64 px
CPU_SIZES = {"batch_size": 16, "small_cnn_batch_size": 64, "max_image_size": 64}
STEPS = 10  # steps per timed epoch


def recipe_config(name: str, device: str, framework: str = "torch"):
    """The recipe's configuration, with the CPU's sizes on a CPU (``CPU_SIZES``)."""
    from shared.run.config import TrainConfig

    flags = {"dataset": "embedded", "knn_every": 0, "device": device}
    if device == "cpu":
        method = next(iter(RECIPES[name].values))
        size = RECIPES[name].values[method]["image_size"].value
        small = RECIPES[name].values[method]["encoder"].value == "small_cnn"
        flags["batch_size"] = CPU_SIZES["small_cnn_batch_size" if small else "batch_size"]
        flags["image_size"] = min(size, CPU_SIZES["max_image_size"])
    return TrainConfig.from_recipe(name, **flags).resolve(framework)


def synthetic(n: int, size: int, seed: int = 0):
    """``n`` uint8 images of ``size`` px (labels unused) as the loops' ``Split``."""
    from shared.run.data import Split

    rng = np.random.default_rng(seed)
    return Split(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), np.zeros(n, np.int64))


def _peak_bytes(device: str, framework: str) -> int:
    if device == "cuda" and framework == "torch":
        import torch

        return int(torch.cuda.max_memory_allocated())
    if device == "cuda":
        import tensorflow as tf

        return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def child_torch(name: str, device: str) -> dict:
    """One recipe in torch: the loop's second epoch, then the step alone."""
    import torch
    import torchvision  # noqa: F401

    from torch_impl.methods import build_model
    from torch_impl.optim import build_optimizer
    from torch_impl.train import epoch_batches, run_epoch

    cfg = recipe_config(name, device)
    torch.manual_seed(0)
    dev = torch.device(device)
    model = build_model(cfg).to(dev, memory_format=torch.channels_last)
    opt = build_optimizer(model, cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)
    split = synthetic(STEPS * cfg.batch_size, cfg.image_size)
    ctx = {"device": dev, "progress": False}
    for epoch in range(2):
        batches = epoch_batches(cfg, split, epoch, STEPS, 0, dev)
        record = run_epoch(model, opt, cfg, batches, epoch, STEPS, ctx)
    x1, x2 = next(iter(epoch_batches(cfg, split, 0, STEPS, 0, dev)))
    x1, x2 = (v.to(dev, memory_format=torch.channels_last) for v in (x1, x2))
    model.train_step(x1, x2, opt)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(STEPS):
        loss = model.train_step(x1, x2, opt)
    float(loss)  # one read: the steps are done
    step_s = time.perf_counter() - t0
    return _row(cfg, record, step_s, _peak_bytes(device, "torch"))


def child_tensorflow(name: str, device: str) -> dict:
    """One recipe in TensorFlow: the loop's second epoch, then the compiled step alone."""
    # isort: off
    import torch  # noqa: F401  (before TensorFlow)
    import torchvision  # noqa: F401
    import tensorflow as tf

    # isort: on

    from tf_impl.augment import BatchAugment
    from tf_impl.methods import build_model
    from tf_impl.optim import build_optimizer
    from tf_impl.train import compile_step, make_dataset, run_epoch

    cfg = recipe_config(name, device, "tensorflow")
    tf.keras.utils.set_random_seed(0)
    model = build_model(cfg)
    opt = build_optimizer(model, cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)
    step_fn = compile_step(model, opt, cfg.jit_compile)
    aug = tf.function(BatchAugment(**cfg.augment_kwargs()))
    split = synthetic(STEPS * cfg.batch_size, cfg.image_size)
    for epoch in range(2):
        record = run_epoch(step_fn, opt, cfg, make_dataset(split.images, cfg, epoch, aug), epoch,
                           STEPS, False)  # fmt: skip
    x1, x2 = next(iter(make_dataset(split.images, cfg, 0, aug)))
    seed, m = tf.constant([0, 0], tf.int32), tf.constant(cfg.key_momentum, tf.float64)
    float(step_fn(x1, x2, seed, m))
    t0 = time.perf_counter()
    for _ in range(STEPS):
        loss = step_fn(x1, x2, seed, m)
    float(loss)
    step_s = time.perf_counter() - t0
    return _row(cfg, record, step_s, _peak_bytes(device, "tensorflow"))


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _row(cfg, record: dict, step_s: float, peak: int) -> dict:
    step_ips = STEPS * cfg.batch_size / step_s
    return {
        "method": cfg.method,
        "encoder": cfg.encoder,
        "batch_size": cfg.batch_size,
        "image_size": cfg.image_size,
        "queue_size": cfg.queue_size if cfg.method == "moco" else None,
        "precision": cfg.precision,
        "loop_images_per_s": record["images_per_s"],
        "step_images_per_s": step_ips,
        "loop_over_step": record["images_per_s"] / step_ips,
        "peak_bytes": peak,
    }


def run_child(framework: str, name: str, device: str) -> dict:
    """The row of one (framework, recipe), measured in its own process."""
    cmd = [sys.executable, "-m", "benchmarks.recipe_check", "--child", framework, "--recipe",
           name, "--device", device]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def markdown(rows: list[dict], meta: dict) -> str:
    head = [
        "# Recipe check: each recipe, a few steps, both frameworks",
        "",
        f"Measured {meta['date']} on {meta['host']} ({meta['device']}), commit {meta['commit']}, "
        f"with `python -m benchmarks.recipe_check{' --device cuda' if meta['device'] == 'cuda' else ''}`. "
        f"{STEPS} steps per timed epoch; synthetic uint8 images of the recipe's shape. "
        + ("On the CPU, the ResNets' batch is "
           f"{CPU_SIZES['batch_size']} and images larger than {CPU_SIZES['max_image_size']} px "
           "are cropped to it (the sizes each row ran at are in it). On 2 CPU cores the "
           "augmentation and the step share the same cores, so the loop cannot keep the step's "
           "speed; on a GPU the augmentation runs on the device beside the step."
           if meta["device"] == "cpu" else "The recipes' own batch and image sizes."),
        "",
        "| recipe | framework | encoder | batch | px | precision | loop images/s | step images/s "
        "| loop / step | peak memory |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]  # fmt: skip
    for r in rows:
        if "error" in r:
            head.append(f"| {r['recipe']} | {r['framework']} | error: {r['error']} |"
                        + " |" * 7)  # fmt: skip
            continue
        head.append(
            f"| {r['recipe']} | {r['framework']} | {r['encoder']} | {r['batch_size']} | "
            f"{r['image_size']} | {r['precision']} | {r['loop_images_per_s']:.0f} | "
            f"{r['step_images_per_s']:.0f} | {r['loop_over_step']:.2f} | "
            f"{r['peak_bytes'] / 2**20:.0f} MiB |"
        )
    gpu = "" if meta["device"] == "cuda" else "\nNo GPU number here: this ran on a CPU only.\n"
    gpu += (
        "\nThe loop and the step are timed one after the other, a few steps each: on a shared "
        "machine a ratio within about 15 % of 1 (above 1 included) is noise.\n"
    )
    return "\n".join(head) + "\n" + gpu


def _host() -> str:
    return f"{cpu_name()}, {os.cpu_count()} cores ({cpu_features()})"


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.recipe_check")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated recipe names")
    ap.add_argument("--out", default=str(OUT), help="folder of recipe_check.md and .json")
    ap.add_argument("--child", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    ap.add_argument("--recipe", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        fn = child_torch if args.child == "torch" else child_tensorflow
        print(json.dumps(fn(args.recipe, args.device)))
        return 0
    rows = []
    for name in args.recipes.split(","):
        for framework in FRAMEWORKS:
            row = {"recipe": name, "framework": framework, **run_child(framework, name,
                                                                      args.device)}  # fmt: skip
            print(json.dumps(row), flush=True)
            rows.append(row)
    meta = {"date": time.strftime("%Y-%m-%d"), "host": _host(), "device": args.device,
            "commit": _commit()}  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe_check.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    (out / "recipe_check.md").write_text(markdown(rows, meta))
    print(markdown(rows, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
