"""Timing harness: warm-up, repeated runs, median and spread, machine info, result files.

Timings are *reported*, never asserted. Each benchmark checks its implementations against the
``shared`` NumPy reference on the same inputs before timing them (:func:`check_against`).
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from shared.run.hardware import cpu_features, cpu_name

RESULTS = Path(__file__).with_name("results")


def measure(fn, warmup: int = 2, repeat: int = 7, min_time: float = 0.0) -> dict:
    """Run ``fn`` ``warmup`` times, then ``repeat`` timed runs (or more until ``min_time``).

    Returns seconds: median, q1, q3 (the spread), min, n.
    """
    for _ in range(warmup):
        fn()
    samples = []
    t_start = time.perf_counter()
    while len(samples) < repeat or (time.perf_counter() - t_start) < min_time:
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
        if len(samples) >= 200:
            break
    q = np.percentile(samples, [25, 50, 75])
    return {
        "median_s": float(q[1]),
        "q1_s": float(q[0]),
        "q3_s": float(q[2]),
        "min_s": float(min(samples)),
        "n": len(samples),
    }


TAU = 0.5  # the temperature of every NT-Xent benchmark


def lightly_ntxent():
    """lightly's ``NTXentLoss`` class, the peer of B1, or ``None`` when lightly is missing."""
    try:
        from lightly.loss import NTXentLoss

        return NTXentLoss
    except ImportError:
        return None


def first_call(fn) -> float:
    """Seconds of the first call (tracing / compilation included)."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def machine_info(threads: int, device: str) -> dict:
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "cpu_features": cpu_features(),
        "cores": os.cpu_count(),
        "threads": threads,
        "device": device,
        "numpy": np.__version__,
    }
    for mod in ("torch", "tensorflow", "lightly"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing peer is recorded, not fatal
            info[mod] = None
    try:
        import torch

        if device == "cuda" and torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def cell_step(framework: str, method: str, device: str = "cpu"):
    """A zero-argument callable running one training step of a 2x2 cell with its defaults
    (small CNN, batch 64, fp32, plain kernels) on ``device``; it returns the loss, so each call
    waits for the device."""
    from shared.run.config import TrainConfig

    rng = np.random.default_rng(0)
    a, b = rng.random((2, 64, 32, 32, 3), dtype=np.float32)
    cfg = TrainConfig(method=method, amp=False).resolve(framework)
    if framework == "torch":
        import torch

        from torch_impl.methods import build_model
        from torch_impl.optim import build_optimizer

        torch.manual_seed(0)
        dev = torch.device(device)
        model = build_model(cfg).to(dev, memory_format=torch.channels_last)
        opt = build_optimizer(model, cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)
        x1, x2 = (
            torch.from_numpy(v)
            .permute(0, 3, 1, 2)
            .to(dev)
            .contiguous(memory_format=torch.channels_last)
            for v in (a, b)
        )
        if method == "moco":
            model.key_momentum = cfg.key_momentum
        return lambda: model.train_step(x1, x2, opt).item()
    import tensorflow as tf

    from tf_impl.methods import build_model
    from tf_impl.optim import build_optimizer
    from tf_impl.train import compile_step

    tf.keras.utils.set_random_seed(0)
    with tf.device("/GPU:0" if device == "cuda" else "/CPU:0"):
        model = build_model(cfg)
        opt = build_optimizer(model, cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)
        step = compile_step(model, opt)
        x1, x2 = tf.constant(a), tf.constant(b)
    args = (tf.constant([0, 1]), tf.constant(cfg.key_momentum, tf.float64))
    return lambda: float(step(x1, x2, *args))


def check_against(name: str, got: float, want: float, rtol: float = 1e-4) -> None:
    """Raise before timing if an implementation disagrees with the reference."""
    if not np.isfinite(got) or abs(got - want) > rtol * max(1.0, abs(want)):
        raise AssertionError(f"{name}: {got!r} differs from the NumPy reference {want!r}")


def write(name: str, payload: dict, markdown: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=1, default=float) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown)
    return path


def fmt_ms(s: float) -> str:
    return f"{1e3 * s:.2f}"


def spread(r: dict) -> str:
    return f"{fmt_ms(r['median_s'])} [{fmt_ms(r['q1_s'])}-{fmt_ms(r['q3_s'])}]"
