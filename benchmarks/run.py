"""Benchmarks: B1 NT-Xent kernel, B2 MoCo step pieces, B3 throughput, B4 scaling, B5 the 2x2, B6 1 vs 2 workers.

    python -m benchmarks.run --quick            # make bench: about 10 min on 2 cores
    python -m benchmarks.run --full             # every size
    python -m benchmarks.run --only B1,B4 --device cuda

Results: ``benchmarks/results/<name>.json`` + ``.md`` (+ PNG plots for B4), and
``benchmarks/README.md`` is regenerated with the latest tables. Peers: ``lightly`` (the
``bench`` extra). Every measured implementation is checked against ``shared.oracle.losses`` on the
same inputs before it is timed. Import order: torch (and dynamo) before TensorFlow.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# isort: off
# Order matters: torch, torchvision, dynamo and the peer (which pulls in pytorch_lightning and
# triton) must all load before TensorFlow, or triton segfaults here. Keep the sorter out.
import torch
import torchvision  # noqa: F401
import torch._dynamo  # noqa: F401

try:
    import lightly.loss  # noqa: F401
except ImportError:
    pass
import tensorflow as tf

# isort: on

from benchmarks import harness as H  # noqa: E402
from shared.oracle import losses as ref  # noqa: E402

TAU = H.TAU


# ----------------------------------------------------------------------------------------- B1
def b1(ns, dim: int, device: str, mem_ns) -> dict:
    rows = [_b1_row(n, dim, device, n in mem_ns) for n in ns]
    return {"rows": rows, "md": _b1_markdown(rows, dim)}


def _b1_row(n: int, dim: int, device: str, memory: bool) -> dict:
    """Every NT-Xent implementation at one N, checked against the oracle, then timed."""
    from torch_impl.losses import nt_xent as pt_nt_xent

    NTXentLoss = H.lightly_ntxent()
    rng = np.random.default_rng(n)
    z1, z2 = (rng.standard_normal((n, dim)).astype(np.float32) for _ in range(2))
    want = ref.nt_xent(z1, z2, TAU)
    dev = torch.device(device)
    a = torch.tensor(z1, device=dev, requires_grad=True)
    b = torch.tensor(z2, device=dev, requires_grad=True)

    def torch_step(fn):
        def go():
            a.grad = b.grad = None
            loss = fn(a, b)
            loss.backward()
            if device == "cuda":
                torch.cuda.synchronize()
            return loss

        return go

    ours = torch_step(lambda x, y: pt_nt_xent(x, y, TAU))
    H.check_against("torch nt_xent", ours().item(), want)
    r = {"N": n, "D": dim}
    r["torch"] = H.measure(ours)
    if NTXentLoss is not None:
        peer = torch_step(NTXentLoss(temperature=TAU))
        H.check_against("lightly NTXentLoss", peer().item(), want)
        r["lightly"] = H.measure(peer)
    tf_step = _tf_nt_xent_step(z1, z2)
    H.check_against("tf nt_xent", float(tf_step()[0]), want)
    r["tf_function"] = H.measure(lambda: tf_step()[1][0].numpy())
    r["numpy_forward"] = H.measure(
        lambda: ref.nt_xent(z1, z2, TAU), warmup=1, repeat=3 if n >= 2048 else 5
    )
    r["gemm_floor"] = H.measure(_gemm_floor(z1, z2, device))
    if memory:
        for impl in ("torch", "lightly", "tf"):
            if impl == "lightly" and NTXentLoss is None:
                continue
            r[f"mem_{impl}"] = _mem_probe(impl, n, dim)
    print(
        f"  B1 N={n}: torch {H.spread(r['torch'])} ms, floor {H.fmt_ms(r['gemm_floor']['median_s'])} ms",
        flush=True,
    )
    return r


def _tf_nt_xent_step(z1: np.ndarray, z2: np.ndarray):
    """A ``tf.function`` of our TF NT-Xent forward and backward on (N, D) views; it returns
    ``(loss, [dL/dz1, dL/dz2])``."""
    from tf_impl.losses import nt_xent as tf_nt_xent

    ta, tb = tf.constant(z1), tf.constant(z2)

    @tf.function
    def tf_step():
        with tf.GradientTape() as tape:
            tape.watch([ta, tb])
            loss = tf_nt_xent(ta, tb, TAU)
        return loss, tape.gradient(loss, [ta, tb])

    return tf_step


def _gemm_floor(z1: np.ndarray, z2: np.ndarray, device: str):
    """The products NT-Xent cannot avoid on (N, D) views: S = U U^T forward, G U and G^T U
    backward, with U the (2N, D) rows and G a (2N, 2N) stand-in gradient."""
    dev = torch.device(device)
    u = torch.tensor(np.concatenate([z1, z2]), device=dev)
    g = torch.randn(2 * len(z1), 2 * len(z1), device=dev)

    def floor():
        u @ u.T
        g @ u
        g.T @ u
        if device == "cuda":
            torch.cuda.synchronize()

    return floor


def _b1_markdown(rows: list[dict], dim: int) -> str:
    md = [
        f"## B1. NT-Xent forward + backward (fp32, D = {dim}, tau = {TAU})",
        "",
        "Median ms [q1-q3]. Ratios: ours / lightly, and each / the GEMM floor "
        "(S = U U^T forward, G U and G^T U backward, timed alone with the same threads).",
        "",
        "| N | torch (ours) | lightly | TF tf.function (ours) | NumPy fwd (float64) | GEMM floor | "
        "ours/lightly | torch/floor | lightly/floor | TF/floor |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        fl = r["gemm_floor"]["median_s"]
        li = r.get("lightly", {}).get("median_s", float("nan"))
        md.append(
            f"| {r['N']} | {H.spread(r['torch'])} | "
            f"{H.spread(r['lightly']) if 'lightly' in r else 'n/a'} | {H.spread(r['tf_function'])} | "
            f"{H.fmt_ms(r['numpy_forward']['median_s'])} | {H.fmt_ms(fl)} | "
            f"{r['torch']['median_s'] / li:.2f} | {r['torch']['median_s'] / fl:.1f} | "
            f"{li / fl:.1f} | {r['tf_function']['median_s'] / fl:.1f} |"
        )
    mem_rows = [r for r in rows if any(k.startswith("mem_") for k in r)]
    if mem_rows:
        md += [
            "",
            "Peak extra memory of one forward + backward, in units of one 2N x 2N fp32 matrix "
            "(fresh process; peak RSS above the RSS after imports and inputs):",
            "",
            "| N | 2Nx2N matrix (MB) | torch (ours) | lightly | TF (ours) |",
            "|---|---|---|---|---|",
        ]
        for r in mem_rows:
            unit = (2 * r["N"]) ** 2 * 4
            cell = lambda k: f"{r[k] / unit:.2f}" if k in r and r[k] is not None else "n/a"  # noqa: E731
            md.append(
                f"| {r['N']} | {unit / 2**20:.0f} | {cell('mem_torch')} | {cell('mem_lightly')} | "
                f"{cell('mem_tf')} |"
            )
    return "\n".join(md) + "\n"


def _mem_probe(impl: str, n: int, dim: int):
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--_probe", impl, str(n), str(dim)],
        capture_output=True,
        text=True,
    )
    try:
        return int(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        print(f"  memory probe {impl} N={n} failed: {out.stderr[-300:]}", file=sys.stderr)
        return None


def _reset_peak() -> int:
    """Reset the kernel's peak-RSS counter (VmHWM) and return the current RSS in bytes."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # Linux >= 4.0: resets VmHWM to the current RSS
    return _status("VmRSS")


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def probe(impl: str, n: int, dim: int) -> int:
    """In a fresh process: peak RSS during one forward + backward minus the RSS just before.

    The peak counter is reset right before the call (``/proc/self/clear_refs``), so import-time
    peaks do not count; kernels are warmed on a tiny input first.
    """
    rng = np.random.default_rng(0)
    z1, z2 = (rng.standard_normal((n, dim)).astype(np.float32) for _ in range(2))
    if impl == "tf":
        from tf_impl.losses import nt_xent

        a, b = tf.constant(z1), tf.constant(z2)
        small = tf.constant(z1[:4]), tf.constant(z2[:4])
        with tf.GradientTape() as t:  # warm the kernels on a tiny input
            t.watch(small)
            t.gradient(nt_xent(*small, TAU), small)
        base = _reset_peak()
        with tf.GradientTape() as t:
            t.watch([a, b])
            loss = nt_xent(a, b, TAU)
        t.gradient(loss, [a, b])
    else:
        if impl == "torch":
            from torch_impl.losses import nt_xent

            fn = lambda x, y: nt_xent(x, y, TAU)  # noqa: E731
        else:
            fn = H.lightly_ntxent()(temperature=TAU)
        fn(torch.randn(4, dim, requires_grad=True), torch.randn(4, dim)).backward()
        a = torch.tensor(z1, requires_grad=True)
        b = torch.tensor(z2, requires_grad=True)
        base = _reset_peak()
        fn(a, b).backward()
    return max(0, _status("VmHWM") - base)


# ----------------------------------------------------------------------------------------- B2
def b2(ks, n: int, dim: int, device: str) -> dict:
    rng = np.random.default_rng(0)
    q_np, k_np = (rng.standard_normal((n, dim)).astype(np.float32) for _ in range(2))
    rows = []
    for k_size in ks:
        queue_np = rng.standard_normal((k_size, dim)).astype(np.float32)
        r = {"N": n, "D": dim, "K": k_size, **_b2_loss_and_enqueue(q_np, k_np, queue_np)}
        r.update(_b2_lightly(q_np, k_np, queue_np))
        r.update(_b2_enqueue_alone(k_np, queue_np))
        rows.append(r)
        print(f"  B2 K={k_size}: tf.function {H.spread(r['tf_function'])} ms", flush=True)
    return {"rows": rows, "md": _b2_markdown(rows, n, dim)}


def _b2_loss_and_enqueue(q_np, k_np, queue_np) -> dict:
    """InfoNCE fwd + bwd(q) and the enqueue, in TF eager, tf.function and XLA."""
    from tf_impl.losses import info_nce
    from tf_impl.moco import dequeue_and_enqueue

    want = ref.info_nce(q_np, k_np, queue_np, 0.2)
    r = {}
    for name, jit in {"tf_eager": None, "tf_function": False, "tf_xla": True}.items():
        queue = tf.Variable(queue_np)
        ptr = tf.Variable(0, dtype=tf.int64)
        q, k = tf.constant(q_np), tf.constant(k_np)

        def step(q=q, k=k, queue=queue, ptr=ptr):
            with tf.GradientTape() as tape:
                tape.watch(q)
                loss = info_nce(q, k, queue, 0.2)
            g = tape.gradient(loss, q)
            dequeue_and_enqueue(queue, ptr, k)
            return loss, g

        fn = step if jit is None else tf.function(step, jit_compile=jit)
        r[f"{name}_first_call_s"] = H.first_call(lambda fn=fn: fn()[1].numpy())
        queue.assign(queue_np)
        ptr.assign(0)
        H.check_against(name, float(fn()[0]), want)
        r[name] = H.measure(lambda fn=fn: fn()[1].numpy(), repeat=7)
    return r


def _b2_lightly(q_np, k_np, queue_np) -> dict:
    """lightly's NTXentLoss with a memory bank holding the same keys, checked then timed."""
    NTXentLoss = H.lightly_ntxent()
    want = ref.info_nce(q_np, k_np, queue_np, 0.2)
    r = {}
    if NTXentLoss is not None:
        peer = NTXentLoss(temperature=0.2, memory_bank_size=queue_np.shape)
        # lightly >= 1.5 stores the bank as (K, D), one key per row, like our queue
        peer.memory_bank.bank = torch.nn.functional.normalize(torch.tensor(queue_np), dim=1)
        qt = torch.tensor(q_np, requires_grad=True)
        kt = torch.tensor(k_np)

        def peer_step():
            qt.grad = None
            loss = peer(qt, kt)
            loss.backward()
            return loss

        # lightly reads its bank before updating it, like us; check the first call only
        got = peer_step().item()
        H.check_against("lightly memory bank", got, want)
        r["lightly_bank"] = H.measure(peer_step, repeat=7)
    return r


def _b2_enqueue_alone(k_np, queue_np) -> dict:
    """Ours (a scatter of N rows) against a naive full-queue rewrite."""
    from tf_impl.moco import dequeue_and_enqueue

    n = len(k_np)
    r = {}
    queue = tf.Variable(queue_np)
    ptr = tf.Variable(0, dtype=tf.int64)
    keys = tf.constant(k_np)

    @tf.function
    def enq():
        dequeue_and_enqueue(queue, ptr, keys)
        return ptr.read_value()  # sync on the pointer: reading the queue would copy K x D

    @tf.function
    def naive():
        queue.assign(tf.concat([keys, queue[:-n]], 0))
        return tf.constant(0)  # auto control dependencies: returns after the assign

    enq()
    naive()
    r["enqueue_scatter"] = H.measure(lambda: enq().numpy(), repeat=15)
    r["enqueue_full_rewrite"] = H.measure(lambda: naive().numpy(), repeat=15)
    return r


def _b2_markdown(rows: list[dict], n: int, dim: int) -> str:
    md = [
        f"## B2. MoCo step pieces: InfoNCE fwd+bwd(q) + enqueue (N = {n}, D = {dim}, tau = 0.2)",
        "",
        "Median ms [q1-q3]; first call (trace / XLA compile) in seconds, separately.",
        "",
        "| K | TF eager | tf.function | tf.function XLA | lightly NTXent + memory bank | "
        "first call: function / XLA (s) | tf.function / eager |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['K']} | {H.spread(r['tf_eager'])} | {H.spread(r['tf_function'])} | "
            f"{H.spread(r['tf_xla'])} | {H.spread(r['lightly_bank']) if 'lightly_bank' in r else 'n/a'} | "
            f"{r['tf_function_first_call_s']:.2f} / {r['tf_xla_first_call_s']:.2f} | "
            f"{r['tf_function']['median_s'] / r['tf_eager']['median_s']:.2f} |"
        )
    md += [
        "",
        f"Enqueue alone (tf.function, N = {n} keys):",
        "",
        "| K | ours: scatter of N rows | naive full rewrite (concat) | rewrite / ours |",
        "|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['K']} | {H.spread(r['enqueue_scatter'])} | {H.spread(r['enqueue_full_rewrite'])} | "
            f"{r['enqueue_full_rewrite']['median_s'] / r['enqueue_scatter']['median_s']:.1f} |"
        )
    return "\n".join(md) + "\n"


# ----------------------------------------------------------------------------------------- B3
def _torch_simclr_step(model, loss_fn, opt, x1, x2, amp: bool, device: str):
    def step():
        with torch.autocast(x1.device.type, dtype=torch.bfloat16, enabled=amp):
            _, _, z1, z2 = model(x1, x2)
            loss = loss_fn(z1.float(), z2.float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()

    return step


def b3_simclr_torch(device: str) -> dict:
    """SimCLR in torch: fp32 NCHW and channels-last + bf16, our loss and lightly's, compile."""
    from torch_impl.losses import nt_xent
    from torch_impl.simclr import SimCLR

    NTXentLoss = H.lightly_ntxent()
    res, dev = {}, torch.device(device)
    for enc, bs, rep in (("small_cnn", 64, 7), ("resnet18_cifar", 32, 3)):
        for mode in ("fp32", "bf16_cl"):  # bf16_cl: channels_last + bf16 autocast
            torch.manual_seed(0)
            model = SimCLR(encoder=enc).to(dev)
            x1, x2 = torch.rand(bs, 3, 32, 32, device=dev), torch.rand(bs, 3, 32, 32, device=dev)
            if mode == "bf16_cl":
                model = model.to(memory_format=torch.channels_last)
                x1, x2 = (x.contiguous(memory_format=torch.channels_last) for x in (x1, x2))
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            losses = {"torch_eager": lambda a, b: nt_xent(a, b, 0.5)}
            if NTXentLoss:
                losses["torch_lightly_loss"] = NTXentLoss(temperature=0.5)
            for name, fn in losses.items():
                key = f"{name}_{mode}_{enc}"
                res[key] = H.measure(
                    _torch_simclr_step(model, fn, opt, x1, x2, mode == "bf16_cl", device), 3, rep
                )
                res[key]["batch"] = bs
            if enc == "small_cnn":
                step = _torch_simclr_step(
                    torch.compile(model),
                    losses["torch_eager"],
                    opt,
                    x1,
                    x2,
                    mode == "bf16_cl",
                    device,
                )
                try:
                    res[f"torch_compile_first_call_s_{mode}"] = H.first_call(step)
                    res[f"torch_compile_{mode}_{enc}"] = H.measure(step, warmup=2, repeat=rep)
                    res[f"torch_compile_{mode}_{enc}"]["batch"] = bs
                except Exception as e:  # noqa: BLE001 - a compiler missing here is reported
                    res["torch_compile_error"] = f"{type(e).__name__}: {str(e)[:200]}"
    return res


def b3_moco_tf_modes() -> dict:
    """The MoCo TF step with the training defaults (fp32): eager, tf.function, XLA."""
    from shared.run.config import TrainConfig
    from tf_impl.methods import build_model
    from tf_impl.optim import build_optimizer
    from tf_impl.train import compile_step

    res = {}
    xs = tf.random.uniform([64, 32, 32, 3], seed=1)
    args = (tf.constant([0, 1]), tf.constant(0.99, tf.float64))
    cfg = TrainConfig(method="moco", amp=False).resolve("tensorflow")
    for name, jit, eager in (
        ("tf_eager", False, True),
        ("tf_function", False, False),
        ("tf_xla", True, False),
    ):
        tf.keras.utils.set_random_seed(0)
        model = build_model(cfg)
        opt = build_optimizer(model, cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)
        step = compile_step(model, opt, jit)
        tf.config.run_functions_eagerly(eager)
        try:
            res[f"moco_{name}_first_call_s"] = H.first_call(lambda: step(xs, xs, *args).numpy())
            res[f"moco_{name}_small_cnn"] = H.measure(lambda: step(xs, xs, *args).numpy(), 2, 5)
            res[f"moco_{name}_small_cnn"]["batch"] = 64
            if not jit:  # batch 8 too: eager's per-op cost against the kernels' (targets.py)
                x8 = xs[:8]
                res[f"moco_{name}_small_cnn_b8"] = H.measure(lambda: step(x8, x8, *args).numpy())
                res[f"moco_{name}_small_cnn_b8"]["batch"] = 8
        finally:
            tf.config.run_functions_eagerly(False)
    return res


def b3_augmentation() -> dict:
    """Views per second: torchvision per image, our batched torch op, and the tf.data pipeline."""
    from shared.run.config import TrainConfig
    from shared.run.data import load_embedded
    from tf_impl.train import make_dataset
    from torch_impl.augment import BatchAugment, TwoViews, simclr_augment

    ds, res = load_embedded(), {}
    two = TwoViews(simclr_augment(32, (0.2, 1.0), 0.5))
    imgs = torch.from_numpy(ds.train.images[:512]).permute(0, 3, 1, 2)
    t0 = time.perf_counter()
    for im in imgs:
        two(im)
    res["aug_torchvision_views_per_s"] = 2 * len(imgs) / (time.perf_counter() - t0)
    batch_aug = BatchAugment(32, (0.3, 1.0), 0.5)
    batch_aug(imgs[:64])
    t0 = time.perf_counter()
    for s in range(0, len(imgs), 64):
        batch_aug(imgs[s : s + 64])
        batch_aug(imgs[s : s + 64])
    res["aug_torch_batch_views_per_s"] = 2 * len(imgs) / (time.perf_counter() - t0)
    cfg = TrainConfig(method="moco").resolve("tensorflow")
    next(iter(make_dataset(ds.train.images, cfg, 0)))  # build the pipeline
    t0 = time.perf_counter()
    count = sum(int(x1.shape[0]) for x1, _ in make_dataset(ds.train.images, cfg, 1))
    res["aug_tfdata_views_per_s"] = 2 * count / (time.perf_counter() - t0)
    return res


def b3(quick: bool, device: str) -> dict:
    res = {**b3_simclr_torch(device), **b3_moco_tf_modes(), **b3_augmentation()}

    def ips(key):
        r = res.get(key)
        return f"{r['batch'] / r['median_s']:.0f}" if r else "n/a"

    md = [
        "## B3. Training throughput (images/s per training step, 2 views per image)",
        "",
        "SimCLR rows: fp32 NCHW, and channels-last + bf16 autocast (bf16 is fast only on CPUs with "
        "native bf16; see `shared.run.hardware`). MoCo rows: the training defaults (symmetric loss, "
        "SplitBatchNorm, K = 512), fp32.",
        "",
        "| step | small CNN (batch 64) | ResNet-18 CIFAR stem (batch 32) |",
        "|---|---|---|",
    ]
    for label, key in (
        ("SimCLR torch eager, fp32 (ours)", "torch_eager_fp32"),
        ("SimCLR torch eager, channels-last + bf16 (ours)", "torch_eager_bf16_cl"),
        ("SimCLR torch.compile, fp32 (ours)", "torch_compile_fp32"),
        ("SimCLR torch.compile, channels-last + bf16 (ours)", "torch_compile_bf16_cl"),
        ("SimCLR + lightly NTXentLoss, fp32", "torch_lightly_loss_fp32"),
        ("SimCLR + lightly NTXentLoss, channels-last + bf16", "torch_lightly_loss_bf16_cl"),
    ):
        md.append(f"| {label} | {ips(key + '_small_cnn')} | {ips(key + '_resnet18_cifar')} |")
    for label, key in (
        ("MoCo TF eager (ours)", "moco_tf_eager"),
        ("MoCo TF tf.function (ours)", "moco_tf_function"),
        ("MoCo TF XLA (ours)", "moco_tf_xla"),
    ):
        md.append(f"| {label} | {ips(key + '_small_cnn')} | not run |")
    err = (
        f" torch.compile failed: {res['torch_compile_error']}"
        if "torch_compile_error" in res
        else ""
    )
    md += [
        "",
        f"First call: torch.compile {res.get('torch_compile_first_call_s_fp32', float('nan')):.1f} s (fp32) / "
        f"{res.get('torch_compile_first_call_s_bf16_cl', float('nan')):.1f} s (bf16), MoCo tf.function "
        f"{res['moco_tf_function_first_call_s']:.1f} s, XLA {res['moco_tf_xla_first_call_s']:.1f} s.{err}",
        "",
        f"Augmentation: torchvision v2 per image, one process: {res['aug_torchvision_views_per_s']:.0f} views/s; "
        f"our batched torch augmentation: {res['aug_torch_batch_views_per_s']:.0f} views/s; tf.data "
        f"(batched, 2 parallel maps, autotune off): {res['aug_tfdata_views_per_s']:.0f} views/s.",
    ]
    return {"results": res, "md": "\n".join(md) + "\n"}


# ----------------------------------------------------------------------------------------- B5
def b5(quick: bool) -> dict:
    """The 2x2: one training step of each cell, same model and config (fp32, batch 64)."""
    rows = {}
    for method in ("simclr", "moco"):
        for framework in ("torch", "tensorflow"):
            rows[f"{method}/{framework}"] = H.measure(
                H.cell_step(framework, method), 3, 7 if quick else 15
            )
    md = [
        "## B5. The 2x2: one training step per cell (small CNN, batch 64, fp32, method defaults)",
        "",
        "| method | torch ms/step | TF ms/step | TF / torch | torch img/s | TF img/s |",
        "|---|---|---|---|---|---|",
    ]
    for method in ("simclr", "moco"):
        pt, tfr = rows[f"{method}/torch"]["median_s"], rows[f"{method}/tensorflow"]["median_s"]
        md.append(
            f"| {method} | {1e3 * pt:.0f} | {1e3 * tfr:.0f} | {tfr / pt:.2f} | {64 / pt:.0f} | {64 / tfr:.0f} |"
        )
    return {"rows": rows, "md": "\n".join(md) + "\n"}


# ----------------------------------------------------------------------------------------- B4
def b4(b1res: dict, b2res: dict) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def fit(xs, ys):
        slope, _ = np.polyfit(np.log(xs), np.log(ys), 1)
        return float(slope)

    out = {}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ns = [r["N"] for r in b1res["rows"]]
    for key, label in (
        ("torch", "torch (ours)"),
        ("lightly", "lightly"),
        ("tf_function", "TF (ours)"),
        ("gemm_floor", "GEMM floor"),
    ):
        if all(key in r for r in b1res["rows"]):
            ys = [r[key]["median_s"] for r in b1res["rows"]]
            out[f"b1_{key}_exponent"] = fit(ns, ys) if len(ns) > 1 else float("nan")
            axes[0].loglog(
                ns,
                ys,
                marker="o",
                ls="--" if key == "gemm_floor" else "-",
                label=f"{label} (slope {out[f'b1_{key}_exponent']:.2f})",
            )
    axes[0].set(xlabel="N (batch; 2N anchors)", ylabel="seconds", title="NT-Xent fwd+bwd vs N")
    ks = [r["K"] for r in b2res["rows"]]
    for key, label in (
        ("tf_function", "InfoNCE+enqueue tf.function"),
        ("tf_xla", "XLA"),
        ("lightly_bank", "lightly + bank"),
        ("enqueue_scatter", "enqueue (ours)"),
        ("enqueue_full_rewrite", "enqueue (full rewrite)"),
    ):
        if all(key in r for r in b2res["rows"]):
            ys = [r[key]["median_s"] for r in b2res["rows"]]
            out[f"b2_{key}_exponent"] = fit(ks, ys) if len(ks) > 1 else float("nan")
            axes[1].loglog(
                ks, ys, marker="o", label=f"{label} (slope {out[f'b2_{key}_exponent']:.2f})"
            )
    axes[1].set(xlabel="K (queue size)", ylabel="seconds", title="MoCo step pieces vs K")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    H.RESULTS.mkdir(exist_ok=True)
    fig.savefig(H.RESULTS / "b4_scaling.png", dpi=110)
    plt.close(fig)
    md = ["## B4. Scaling (fitted log-log exponents)", "", "| quantity | exponent |", "|---|---|"]
    md += [f"| {k} | {v:.2f} |" for k, v in out.items()]
    md += ["", "![scaling](b4_scaling.png)"]  # relative to results/; the README adds results/
    return {"exponents": out, "md": "\n".join(md) + "\n"}


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.splitlines()[0]
    )
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="the quick set (default)")
    g.add_argument("--full", action="store_true", help="every size")
    ap.add_argument("--only", default="B1,B2,B3,B4,B5,B6,T")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--_probe", nargs=3, help=argparse.SUPPRESS)
    return ap


def run_sections(only: set[str], full: bool, device: str, payload: dict) -> list[str]:
    """Run the benchmarks named in ``only`` (B1 to B6, T), store their results in ``payload``
    and return their Markdown sections, the targets (T) first."""
    sections = []
    b1res = b2res = None
    if "B1" in only or "B4" in only:
        ns = [64, 256, 1024, 2048, 4096] if full else [64, 256, 1024, 2048]
        b1res = b1(ns, 128, device, mem_ns=[2048, 4096] if full else [2048])
        payload["B1"] = b1res["rows"]
        sections.append(b1res["md"])
    if "B2" in only or "B4" in only:
        ks = [4096, 16384, 65536] + ([262144] if full else [])
        b2res = b2(ks, 256, 128, device)
        payload["B2"] = b2res["rows"]
        sections.append(b2res["md"])
    if "B3" in only:
        b3res = b3(not full, device)
        payload["B3"] = b3res["results"]
        sections.append(b3res["md"])
    if "B5" in only:
        b5res = b5(not full)
        payload["B5"] = b5res["rows"]
        sections.append(b5res["md"])
    if "B6" in only:
        from benchmarks.scaling_out import b6

        b6res = b6()
        payload["B6"] = b6res["rows"]
        sections.append(b6res["md"])
    if "B4" in only and b1res and b2res:
        b4res = b4(b1res, b2res)
        payload["B4"] = b4res["exponents"]
        sections.append(b4res["md"])
    if "T" in only:  # the speed targets, read from the sections above
        from benchmarks import targets

        payload["probes"] = targets.probes()
        payload["targets"] = targets.evaluate(payload)
        sections.insert(0, targets.markdown(payload["targets"]))
    return sections


def write_report(name: str, payload: dict, sections: list[str], threads: int, wall: float) -> str:
    """Write ``results/<name>.json`` and ``.md`` and the results part of benchmarks/README.md;
    return the Markdown."""
    info = payload["machine"]
    header = (
        f"Machine: {info['cpu']}; {info['cores']} cores, {threads} threads; device "
        f"{info['device']}; torch {info['torch']}, tensorflow {info['tensorflow']}, lightly "
        f"{info['lightly']}, numpy {info['numpy']}. Mode: {payload['mode']}; wall time {wall:.0f} s.\n"
    )
    md = f"# Benchmark results ({time.strftime('%Y-%m-%d')})\n\n{header}\n" + "\n".join(sections)
    H.write(name, payload, md)
    readme = Path(__file__).with_name("README.md")
    intro = readme.read_text().split("<!-- results -->")[0] if readme.exists() else ""
    # the report's images sit beside it in results/; the README is one folder up
    in_readme = re.sub(r"\]\((?![a-z]+:|/|\.\./)([^)]+\.png)\)", r"](results/\1)", md)
    readme.write_text(intro.rstrip() + "\n\n<!-- results -->\n\n" + in_readme)
    return md


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    if args._probe:
        print(probe(args._probe[0], int(args._probe[1]), int(args._probe[2])))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA GPU is visible", file=sys.stderr)
        return 2
    only = {s.strip().upper() for s in args.only.split(",")}
    info = H.machine_info(args.threads, args.device)
    print(
        f"machine: {info['cpu']}, {info['cores']} cores, {args.threads} threads, device {args.device}"
    )
    t0 = time.perf_counter()
    payload = {"machine": info, "mode": "full" if args.full else "quick"}
    sections = run_sections(only, args.full, args.device, payload)
    wall = time.perf_counter() - t0
    name = f"bench_{args.device}"
    md = write_report(name, payload, sections, args.threads, wall)
    print(md)
    print(f"wrote benchmarks/results/{name}.json and .md in {wall:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
