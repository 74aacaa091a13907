"""B6. Scaling out: one training step with 1 and 2 processes (torch) or replicas (TF), and the
bytes each step hands to the collectives, as a formula beside the measured value.

    python -m benchmarks.scaling_out          # writes benchmarks/results/B6.md and .json

Setup: small CNN, global batch N = 64 (each of W workers takes n = N / W), fp32, method
defaults. torch: 1 process with all cores, against ``torchrun --nproc_per_node 2`` (gloo, one
thread each). TF: 1 replica, against ``MirroredStrategy`` over 2 logical CPUs in one process.
On one 2-core machine both "devices" share the same cores: the ratio measures the overhead of
the distributed step (gathers, all-reduces, the second BN pass), not a speed-up.

Payload: what one rank passes to the collectives per step (input bytes: all_gather counts its
own rows, all_reduce the whole tensor). A ring all-reduce puts about 2 (W-1)/W times its
payload on the wire. torch's payload is counted by wrapping ``torch.distributed``'s
collectives and a DDP communication hook; TF has no such hook, so only its formula is given
(the step calls the same collectives with the same shapes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

N, STEPS, WARMUP = 64, 10, 3


def payload_formula(
    method: str, n: int, world: int, dim: int, image: int, params: int, buffers: int
):
    """Bytes per rank per step (float32 values, int64 permutation), by collective.

    ``params``: trainable parameters (DDP's all-reduce); ``buffers``: floating BN buffers
    (their mean over ranks). SimCLR: both views' rows gathered (2 n D), the gathered rows'
    gradient all-reduced in backward (2 N D). MoCo (symmetric, Shuffle-BN): the key images
    gathered (2 n 3 S^2), the permutation broadcast (2 N int64), the shuffled keys gathered
    back (2 n D) and the keys gathered for the enqueue (2 n D). Both: the loss (1 value).
    """
    big_n = n * world
    if method == "simclr":
        parts = {"gather z": 2 * n * dim, "gather backward": 2 * big_n * dim}
    else:
        parts = {
            "shuffle images": 2 * n * 3 * image * image,
            "unshuffle keys": 2 * n * dim,
            "enqueue keys": 2 * n * dim,
        }
    parts.update({"gradients (DDP)": params, "BN buffers": buffers, "loss": 1})
    out = {k: 4 * v for k, v in parts.items()}
    if method == "moco":
        out["permutation"] = 8 * 2 * big_n
    return out


# ------------------------------------------------------------------------------ torch worker
def _torch_worker(method: str) -> None:
    import torch
    import torch.distributed as dist

    from shared.run.config import TrainConfig
    from torch_impl.distributed import init_from_env, world_size
    from torch_impl.methods import build_model
    from torch_impl.optim import build_optimizer

    where = init_from_env(torch.device("cpu"))
    counted = {"bytes": 0}
    for name in ("all_gather", "all_reduce", "broadcast"):
        _count(dist, name, counted)
    cfg = TrainConfig(method=method, amp=False, batch_size=N).resolve("torch", where.world_size)
    torch.manual_seed(0)
    model = build_model(cfg)
    opt = build_optimizer(model, cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)
    n = N // where.world_size
    rng = np.random.default_rng(where.rank)
    x1, x2 = (torch.from_numpy(rng.random((n, 3, 32, 32), dtype=np.float32)) for _ in range(2))
    if method == "moco":
        model.key_momentum = cfg.key_momentum

    def step():
        loss = model.train_step(x1, x2, opt)
        if world_size() > 1:
            dist.all_reduce(loss)  # the loop's global-mean loss
        return loss

    for _ in range(WARMUP):
        step()
    counted["bytes"] = 0
    times = []
    for _ in range(STEPS):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    buffers = sum(
        b.numel() for name, b in model.named_buffers() if b.is_floating_point() and name != "queue"
    )
    if where.is_main:
        print(
            json.dumps(
                {
                    "median_s": float(np.median(times)),
                    "payload_bytes": counted["bytes"] / STEPS,
                    "params": params,
                    "buffers": buffers,
                    "dim": cfg.proj_dim,
                }
            )
        )
    if dist.is_initialized():
        dist.destroy_process_group()


def _count(dist, name: str, counted: dict) -> None:
    original = getattr(dist, name)

    def wrapper(*args, **kw):
        t = args[1] if name == "all_gather" else args[0]
        counted["bytes"] += t.numel() * t.element_size()
        return original(*args, **kw)

    setattr(dist, name, wrapper)


# --------------------------------------------------------------------------------- TF worker
def _tf_worker(method: str, replicas: int) -> None:
    import contextlib

    import tensorflow as tf

    from shared.run.config import TrainConfig
    from tf_impl.distributed import make_strategy
    from tf_impl.methods import build_model
    from tf_impl.optim import build_optimizer
    from tf_impl.train import compile_step

    strategy = make_strategy("mirrored" if replicas > 1 else "none", replicas)
    cfg = TrainConfig(method=method, amp=False, batch_size=N).resolve("tensorflow", replicas)
    tf.keras.utils.set_random_seed(0)
    with strategy.scope() if strategy else contextlib.nullcontext():
        model = build_model(cfg)
        opt = build_optimizer(model, cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)
        step = compile_step(model, opt, strategy=strategy)
    rng = np.random.default_rng(0)
    x1, x2 = (tf.constant(rng.random((N, 32, 32, 3), dtype=np.float32)) for _ in range(2))
    args = (tf.constant([0, 1]), tf.constant(cfg.key_momentum, tf.float64))
    for _ in range(WARMUP):
        float(step(x1, x2, *args))
    times = []
    for _ in range(STEPS):
        t0 = time.perf_counter()
        float(step(x1, x2, *args))
        times.append(time.perf_counter() - t0)
    print(json.dumps({"median_s": float(np.median(times))}))


# ---------------------------------------------------------------------------------- driver
def _run(cmd: list[str], env: dict | None = None) -> dict:
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    res = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=600)
    if res.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def b6() -> dict:
    me = [sys.executable, "-m", "benchmarks.scaling_out"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
    rows = {}
    for method in ("simclr", "moco"):
        one = _run([*me, "--worker", "torch", method])
        two = _run([*torchrun, "2", "-m", "benchmarks.scaling_out", "--worker", "torch", method])
        rows[f"{method}/torch"] = {"1": one, "2": two}
        rows[f"{method}/tensorflow"] = {
            w: _run([*me, "--worker", "tensorflow", method, w]) for w in ("1", "2")
        }
    return {"rows": rows, "md": _markdown(rows)}


def _markdown(rows: dict) -> str:
    md = [
        f"## B6. Scaling out: one step, 1 vs 2 workers (small CNN, global batch {N}, fp32)",
        "",
        "Both workers share the same 2 cores: the ratio is the distributed step's overhead.",
        "",
        "| method | framework | 1 worker ms | 2 workers ms | 2 / 1 |",
        "|---|---|---|---|---|",
    ]
    for key, r in rows.items():
        method, fw = key.split("/")
        a, b = r["1"]["median_s"], r["2"]["median_s"]
        md.append(f"| {method} | {fw} | {1e3 * a:.0f} | {1e3 * b:.0f} | {b / a:.2f} |")
    md += [
        "",
        "Payload per rank per step (torch, W = 2, n = 32, D = 128, 32 px images), formula "
        "(`payload_formula`) against the bytes counted at the collectives:",
        "",
        "| method | formula terms (bytes) | formula total | measured |",
        "|---|---|---|---|",
    ]
    for method in ("simclr", "moco"):
        two = rows[f"{method}/torch"]["2"]
        terms = payload_formula(method, N // 2, 2, two["dim"], 32, two["params"], two["buffers"])
        md.append(
            f"| {method} | {', '.join(f'{k} {v:,}' for k, v in terms.items())} | "
            f"{sum(terms.values()):,} | {int(two['payload_bytes']):,} |"
        )
    return "\n".join(md) + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        if argv[1] == "torch":
            _torch_worker(argv[2])
        else:
            _tf_worker(argv[2], int(argv[3]))
        return 0
    from benchmarks import harness as H

    t0 = time.perf_counter()
    res = b6()
    H.write("B6", res["rows"], res["md"])
    print(res["md"])
    print(f"wrote benchmarks/results/B6.json and .md in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
