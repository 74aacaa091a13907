"""What a torch MoCo step costs against a SimCLR step, and where the difference goes.

    python -m benchmarks.moco_cost [--builder PATH/moco/builder.py] [--repeat 15]

One thread, batch 64, the small CNN, float32, plain kernels; the steps are timed interleaved
(one step of each variant in turn, repeated), so that a busy machine slows them all alike, and
reported as medians and as ratios to SimCLR's step. The variants strip MoCo's trained
configuration one piece at a time: the symmetric loss (two directions), the key shuffle, the
two BatchNorm splits. ``--builder`` times facebookresearch/moco's own ``MoCo`` module from a
checkout you name (nothing of it is copied here) on the same encoder, in its configuration
(one direction, its in-process batch shuffle through a one-process gloo group, plain BN), as
the reference cost of MoCo's logic. A ``torch.profiler`` table of the trained configuration's
step shows the operators the time goes to. Writes ``benchmarks/results/moco_cost.md``/``.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time

import numpy as np
import torch
import torch.nn as nn

from benchmarks import harness as H
from shared.run.hardware import cpu_features

BATCH = 64
VARIANTS = {  # name: MoCo keyword arguments (None: SimCLR)
    "SimCLR (trained configuration)": None,
    "MoCo, trained configuration (symmetric, shuffled keys, 2 BN splits)": {},
    "MoCo, symmetric, shuffled keys, plain BN": {"bn_splits": 1},
    "MoCo, symmetric, no shuffle, plain BN": {"bn_splits": 1, "shuffle_keys": False},
    "MoCo, one direction, shuffled keys, plain BN (the official configuration)": {
        "bn_splits": 1,
        "symmetric": False,
    },
}


def _views(seed: int = 0):
    rng = np.random.default_rng(seed)
    return (torch.from_numpy(rng.random((BATCH, 3, 32, 32), dtype=np.float32)) for _ in range(2))


def our_step(kw: dict | None):
    """A zero-argument callable: one ``train_step`` of SimCLR or of MoCo with ``kw``."""
    from torch_impl.moco import MoCo
    from torch_impl.optim import build_optimizer
    from torch_impl.simclr import SimCLR

    torch.manual_seed(0)
    model = SimCLR() if kw is None else MoCo(**kw)
    opt = build_optimizer(model, "sgd", 0.03, 0.9, 5e-4)
    x1, x2 = _views()
    return lambda: model.train_step(x1, x2, opt).item()


class _SmallCNNWithFc(nn.Module):
    """The small CNN with an ``fc`` layer, the shape builder.py's ``base_encoder`` has."""

    def __init__(self, num_classes: int = 128):
        super().__init__()
        from torch_impl.models import SmallCNN

        self.body = SmallCNN()
        self.fc = nn.Linear(self.body.feature_dim, num_classes)

    def forward(self, x):
        return self.fc(self.body(x))


def builder_step(path: str):
    """One step of facebookresearch/moco's ``MoCo`` (loaded from ``path``) on the small CNN."""
    import torch.distributed as dist

    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29533")
        dist.init_process_group("gloo", rank=0, world_size=1)
    if not torch.cuda.is_available():  # builder.py puts two index tensors on CUDA: keep them
        torch.Tensor.cuda = lambda self, *args, **kw: self  # on the CPU (this process only)
    spec = importlib.util.spec_from_file_location("moco_builder", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    model = mod.MoCo(_SmallCNNWithFc, dim=128, K=512, m=0.99, T=0.1, mlp=True)
    opt = torch.optim.SGD(model.encoder_q.parameters(), 0.03, momentum=0.9, weight_decay=5e-4)
    criterion = nn.CrossEntropyLoss()
    x1, x2 = _views()

    def step():
        output, target = model(im_q=x1, im_k=x2)
        loss = criterion(output, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    return step


def interleaved(steps: dict, repeat: int) -> dict:
    """Median and quartiles (s) of each step, timed in turn, ``repeat`` rounds after 2 warm-ups."""
    for fn in steps.values():
        fn(), fn()
    samples = {name: [] for name in steps}
    for _ in range(repeat):
        for name, fn in steps.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    return {
        name: dict(zip(("q1_s", "median_s", "q3_s"), map(float, np.percentile(s, [25, 50, 75]))))
        for name, s in samples.items()
    }


def profile(fn, rows: int = 12) -> str:
    """The ``torch.profiler`` table (self CPU time) of 5 calls of ``fn``."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            fn()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.moco_cost", description=__doc__)
    ap.add_argument("--builder", help="path to facebookresearch/moco's moco/builder.py")
    ap.add_argument("--repeat", type=int, default=15, help="timed rounds (default: 15)")
    args = ap.parse_args(argv)
    if args.builder and not os.path.isfile(args.builder):
        ap.error(f"--builder: expected a file, got {args.builder!r}")
    torch.set_num_threads(1)
    steps = {name: our_step(kw) for name, kw in VARIANTS.items()}
    if args.builder:
        steps["facebookresearch/moco builder.py (one direction, its shuffle, plain BN)"] = (
            builder_step(args.builder)
        )
    times = interleaved(steps, args.repeat)
    base = times["SimCLR (trained configuration)"]["median_s"]
    info = H.machine_info(1, "cpu")
    info["cpu_flags"] = cpu_features()
    md = [
        "# torch MoCo step against SimCLR's",
        "",
        f"{info['cpu']} ({info['cpu_flags']}), torch {info['torch']}, 1 thread; batch {BATCH}, small CNN, float32, "
        f"plain kernels; {args.repeat} interleaved rounds (`python -m benchmarks.moco_cost`).",
        "",
        "| step | median ms (q1 to q3) | x SimCLR |",
        "|---|---|---|",
    ]
    for name, t in times.items():
        md.append(
            f"| {name} | {1e3 * t['median_s']:.1f} ({1e3 * t['q1_s']:.1f} to "
            f"{1e3 * t['q3_s']:.1f}) | {t['median_s'] / base:.2f} |"
        )
    trained = steps["MoCo, trained configuration (symmetric, shuffled keys, 2 BN splits)"]
    table = profile(trained)
    md += ["", "## Profile of the trained configuration's step (5 steps)", "", "```", table, "```"]
    payload = {"machine": info, "batch": BATCH, "repeat": args.repeat, "times": times}
    print("\n".join(md))
    H.write("moco_cost", payload, "\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
