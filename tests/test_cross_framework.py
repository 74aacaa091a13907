"""torch = NumPy = TF on the goldens and on Hypothesis inputs; queue and EMA streams; mirrored API.

conftest.py imports torch before TensorFlow (the other order segfaults here).
"""

import inspect

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch", reason="PyTorch is not installed")
tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed")

from shared.oracle import losses as ref  # noqa: E402
from shared.oracle import queue as qref  # noqa: E402
from shared.parity import compare as parity  # noqa: E402
from shared.parity.tolerances import natural_grad_scale  # noqa: E402

pytestmark = pytest.mark.cross_framework


def _torch(fn, xs, tau, dtype):
    ts = [torch.tensor(x, dtype=dtype, requires_grad=True) for x in xs]
    per = fn(*ts, temperature=tau, reduction="none")
    per.mean().backward()
    return {
        "loss": per.mean().item(),
        "per_anchor": per.detach().double().numpy(),
        "grad": [t.grad.double().numpy() for t in ts[:2]],
    }


def _tf(fn, xs, tau, dtype):
    ts = [tf.constant(x, dtype=dtype) for x in xs]
    with tf.GradientTape() as tape:
        tape.watch(ts[:2])
        per = fn(*ts, temperature=tau, reduction="none")
        mean = tf.reduce_mean(per)
    return {
        "loss": float(mean),
        "per_anchor": per.numpy().astype(np.float64),
        "grad": [g.numpy().astype(np.float64) for g in tape.gradient(mean, ts[:2])],
    }


def _check_all(kind, xs, tau):
    import tf_impl.losses as tl
    import torch_impl.losses as pl

    if kind == "nt_xent":
        t = ref.nt_xent_terms(*xs, tau)
        want = {
            "loss": t.loss,
            "per_anchor": t.per_anchor,
            "grad": list(ref.nt_xent_grad(*xs, tau)),
        }
    else:
        t = ref.info_nce_terms(*xs, tau)
        want = {
            "loss": t.loss,
            "per_anchor": t.per_anchor,
            "grad": list(ref.info_nce_grad(*xs, tau)),
        }
    floor = natural_grad_scale(tau, *xs[:2])
    for dt_name, pdt, tdt in (
        ("float64", torch.float64, tf.float64),
        ("float32", torch.float32, tf.float32),
    ):
        xs_in = [np.asarray(x, dtype=dt_name) for x in xs]
        got_t = _torch(getattr(pl, kind), xs_in, tau, pdt)
        got_f = _tf(getattr(tl, kind), xs_in, tau, tdt)
        for name, got in (("torch", got_t), ("tf", got_f)):
            parity.assert_close(
                {kind: want},
                {kind: got},
                dtype=dt_name,
                temperature=tau,
                grad_floor=floor,
                context=f"{name} {dt_name}",
            )


def _draw(rng, shape, scale, mode):
    x = rng.standard_normal(shape) * scale
    if mode == "near_dup":
        x = np.repeat(x[:1], shape[0], 0) + rng.standard_normal(shape) * 1e-4 * scale
    elif mode == "collapsed":
        x = np.full(shape, scale)
    return x


modes = st.sampled_from(["normal", "normal", "near_dup", "collapsed"])
scales = st.sampled_from([1e-3, 1.0, 1e3])
taus = st.sampled_from([0.01, 0.07, 0.5, 1.0, 10.0])


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 512), st.integers(1, 256), taus, scales, modes, st.integers(0, 2**31 - 1))
def test_nt_xent_three_way(n, d, tau, scale, mode, seed):
    rng = np.random.default_rng(seed)
    _check_all("nt_xent", [_draw(rng, (n, d), scale, mode), _draw(rng, (n, d), scale, mode)], tau)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 256),
    st.integers(1, 256),
    st.integers(1, 4096),
    taus,
    scales,
    modes,
    st.integers(0, 2**31 - 1),
)
def test_info_nce_three_way(n, d, k, tau, scale, mode, seed):
    rng = np.random.default_rng(seed)
    xs = [
        _draw(rng, (n, d), scale, mode),
        _draw(rng, (n, d), scale, mode),
        _draw(rng, (k, d), scale, mode),
    ]
    _check_all("info_nce", xs, tau)


def test_queue_streams_identical_in_torch_tf_numpy():
    from tf_impl.moco import dequeue_and_enqueue as tf_enq
    from torch_impl.moco import dequeue_and_enqueue as pt_enq

    k, d = 10, 4
    tq, tp = tf.Variable(np.zeros((k, d), np.float32)), tf.Variable(0, dtype=tf.int64)
    pq, pp = torch.zeros(k, d), torch.zeros((), dtype=torch.long)
    rq, rp = np.zeros((k, d), np.float32), 0
    rng = np.random.default_rng(1)
    for b in [3, 4, 4, 1, 10, 13, 2, 6]:  # wrap-around, K % B != 0, partial, B == K, B > K
        keys = rng.standard_normal((b, d)).astype(np.float32)
        tf_enq(tq, tp, tf.constant(keys))
        pt_enq(pq, pp, torch.from_numpy(keys))
        rq, rp = qref.dequeue_and_enqueue(rq, rp, keys)
        want = {"queue": rq, "ptr": rp}
        parity.assert_close(want, {"queue": tq.numpy(), "ptr": int(tp.numpy())}, dtype="float32")
        parity.assert_close(want, {"queue": pq.numpy(), "ptr": int(pp)}, dtype="float32")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_ema_100_steps_torch_and_tf_match_numpy(dtype):
    from tf_impl.moco import momentum_update as tf_ema
    from torch_impl.moco import momentum_update as pt_ema

    rng = np.random.default_rng(0)
    shapes = [(4, 3), (3,)]
    key0 = [rng.standard_normal(s) for s in shapes]
    tq = [tf.Variable(np.zeros(s), dtype=dtype) for s in shapes]
    tk = [tf.Variable(k, dtype=dtype) for k in key0]
    pq = torch.nn.ParameterList(
        [torch.nn.Parameter(torch.zeros(s, dtype=getattr(torch, dtype))) for s in shapes]
    )
    pk = torch.nn.ParameterList(
        [torch.nn.Parameter(torch.tensor(k, dtype=getattr(torch, dtype))) for k in key0]
    )
    ref_w = [k.astype(dtype).astype(np.float64) for k in key0]
    for _ in range(100):
        new = [rng.standard_normal(s).astype(dtype) for s in shapes]
        for v, p, x in zip(tq, pq, new):
            v.assign(x)
            p.data.copy_(torch.from_numpy(x))
        tf_ema(_Weights(tq), _Weights(tk), 0.99)
        pt_ema(pq, pk, 0.99)
        ref_w = [qref.ema(r, x.astype(np.float64), 0.99) for r, x in zip(ref_w, new)]
    parity.assert_close({"ema": ref_w}, {"ema": [v.numpy() for v in tk]}, dtype=dtype, context="tf")
    parity.assert_close(
        {"ema": ref_w}, {"ema": [p.detach().numpy() for p in pk]}, dtype=dtype, context="torch"
    )


class _Weights:
    """The one attribute ``tf_impl.moco.momentum_update`` reads from an encoder."""

    def __init__(self, variables):
        self.trainable_weights = variables


# The mirror: every public function and class of every module, with its parameter names and,
# for classes, its own public methods. A name may differ only for a reason written here.
MODULES = [
    "losses",
    "augment",
    "models",
    "fast_kernels",
    "simclr",
    "moco",
    "methods",
    "weights",
    "optim",
    "checkpoint",
    "data",
    "evaluate",
    "train",
    "parity",
    "localise",
    "distributed",
    "split_bn",
]
ALLOWED_DIFFERENCES = {
    "distributed.Dist": "torch's process identity from torchrun's environment; TF's replicas are the strategy's",
    "distributed.init_from_env": "torch joins a process group per process; TF builds a strategy (distributed.make_strategy)",
    "distributed.make_strategy": "tf.distribute's counterpart of distributed.init_from_env",
    "distributed.mean_gradients": "tf.distribute's all-reduce of a list of gradients, used by GradientMean; torch's GradientMean all-reduces one flat buffer itself",
    "distributed.local_rows": "TF feeds every replica the global batch and each takes its rows; torch's ranks load only theirs (train.epoch_batches)",
    "models.torch_dtype": "torch needs a torch.dtype; TF builds under a Keras dtype policy (models.dtype_policy)",
    "models.dtype_policy": "Keras dtype policies; torch uses model.to(dtype) (models.torch_dtype)",
    "models.check_views": "torch validates eagerly in forward; TF's tf.function input_signature fixes the shapes",
    "models.ResNet": "torchvision provides the ResNets (models._resnet); Keras has no ResNet-18 or CIFAR stem, and keras.applications' ResNet50 pads its stride-2 convs as Keras does",
    "split_bn.SplitBatchNorm.get_config": "Keras layer serialisation; torch modules have none",
    "models.autocast_dtype": "torch's mixed precision is autocast in the step; TF's is the Keras dtype policy a model is built under (models.dtype_policy)",
    "split_bn.batch_norm": "torch chooses BatchNorm2d, BatchNorm1d or SplitBatchNorm per layer; Keras's BatchNormalization serves every rank, so TF always builds split_bn.SplitBatchNorm (one split: Keras's own call)",
    "distributed.GradientMean.zero_grad": "torch.optim.Optimizer's API; TF's optimisers take the gradients in apply_gradients",
    "distributed.GradientMean.step": "torch.optim.Optimizer's API (as optim.LARS.step)",
    "distributed.GradientMean.apply_gradients": "TF's optimiser API",
    "fast_kernels.Conv3x3": "TF's Conv2DBackpropInput is 2.4x torch's on the 4x4x256 conv; this Conv2D takes the same input gradient as a forward conv (benchmarks/results/layers.md); torch's own conv is fast",
    "fast_kernels.FusedSplitBatchNorm": "Keras's composite BatchNorm ops were 2.7x torch's (benchmarks/layers.py); TF's fused kernel per split; torch's BatchNorm is one fused kernel already",
    "fast_kernels.keep_freed_memory": "torch's CPU allocator is glibc malloc, whose mmap threshold costs page faults every step; TF has its own allocator and gained nothing (measured)",
    "optim.SGD": "torch.optim.SGD already does the documented update; Keras's does not (shared.oracle.optim.STOCK_DIFFERENCES)",
    "optim.Adam": "torch.optim.Adam already does the documented update; Keras's does not",
    "optim.param_groups": "torch fixes LARS's exclusions as parameter groups; TF applies the rank rule per variable",
    "optim.LARS.step": "torch.optim.Optimizer's API; the TF optimisers share apply_gradients from their base class",
    "train.compile_step": "wraps train_step in one tf.function; torch runs eagerly",
    "train.make_dataset": "a tf.data pipeline; torch draws batches in train.epoch_batches",
    "train.epoch_batches": "torch's batch generator; TF's is the tf.data pipeline train.make_dataset",
    "train.seed_everything": "torch seeds three global RNGs; TF's augmentation and shuffles are stateless",
    "train.resolve_device": "torch moves tensors to a device; TF places ops itself",
    "train.amp_dtype_for": "torch checks that the device has bf16 before autocast; TF's build_model picks the Keras dtype policy from cfg.amp",
    "data.TwoViewDataset": "a torch Dataset for --augment per_sample; TF maps TwoViews in tf.data",
    "localise.capture": "the localiser feeds both frameworks torch's captured layer inputs",
    "localise.inject_model": "fault injection leaves a catalogue row unaligned in the TF model only",
}
ALLOWED_SIGNATURE_DIFFERENCES = {
    "train.run_epoch": "torch passes the model and a context (device, autocast); TF passes the compiled step",
    "moco.MoCo.keys": "seed: TF's key shuffle is stateless; torch's uses the global generator (checkpointed)",
    "distributed.DistributedMoCo.keys": "seed, as MoCo.keys",
    "distributed.SyncBatchNorm.__call__": "training and mask, as Keras's BatchNormalization.call",
    "distributed.average_buffers": "torch: any module and skip (the queue is a buffer); TF: a SimCLR or MoCo, whose BN moving statistics it averages",
    "distributed.convert_sync_batchnorm": "torch converts any module recursively, as torch.nn.SyncBatchNorm.convert_sync_batchnorm; TF swaps the classes of a SimCLR's or MoCo's layers in place",
    "models.SmallCNN.__init__": "views: torch passes it to each BatchNorm it builds; TF sets it on the built layers (models.build_encoder)",
    "distributed.GradientMean.__init__": "torch: skip (the queue is a buffer that average_buffers must leave alone); TF averages BN statistics only",
    "split_bn.SplitBatchNorm.__init__": "num_features: torch's BatchNorm2d needs it; Keras infers it",
    "split_bn.SplitBatchNorm.__call__": "training and mask, as Keras's BatchNormalization.call",
    "moco.MoCo.__call__": "training, as SimCLR.__call__",
    "distributed.shuffle_across_ranks": "TF: seed (every replica draws the same stateless permutation); torch broadcasts rank 0's",
    "simclr.SimCLR.__call__": "training: Keras's flag; torch's forward uses the module's train()/eval() state",
    "augment.TwoViews.__call__": "seed: TF's ops are stateless; torch's use the global generator",
    "augment.BatchAugment.__call__": "torch: an optional torch.Generator; TF: a stateless seed",
    "augment.BatchAugment.sample": "torch: an optional torch.Generator; TF: a stateless seed",
    "models.SmallCNN.__call__": "training, as SimCLR.__call__",
    "models.EncoderWithHead.__call__": "training, as SimCLR.__call__",
    "models.ProjectionHead.__call__": "training, as SimCLR.__call__",
    "models.ProjectionHead.__init__": "in_dim: torch's Linear needs it up front; Keras infers it when built",
    "optim.LARS.__init__": "torch takes the parameters (groups) up front; TF takes a module name and its variables at apply time",
    "localise.layer_outputs": "TF: inject (the normalisation clamp left unaligned); torch is the reference",
    "localise.optimizer_step": "TF: inject (Keras's stock SGD or Adam); torch is the reference",
}


def _public(mod) -> dict:
    """Public functions and classes defined in ``mod`` (not imported into it)."""
    return {
        n: o
        for n, o in vars(mod).items()
        if not n.startswith("_")
        and (inspect.isfunction(o) or inspect.isclass(o))
        and getattr(o, "__module__", None) == mod.__name__
    }


def _params(fn) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p not in ("self", "kw", "kwargs")]


def _methods(cls) -> dict:
    """The class's own public methods; torch's forward is compared as Keras's call / __call__."""
    out = {}
    for name, fn in vars(cls).items():
        if name in ("forward", "call"):
            name = "__call__"
        if (inspect.isfunction(fn) and not name.startswith("_")) or name in (
            "__init__",
            "__call__",
        ):
            if inspect.isfunction(fn):
                out[name] = fn
    return out


def _mirror_problems() -> list[str]:
    import importlib

    problems = []
    for mod in MODULES:
        pt = _public(importlib.import_module(f"torch_impl.{mod}"))
        tfm = _public(importlib.import_module(f"tf_impl.{mod}"))
        for name in sorted(set(pt) ^ set(tfm)):
            if f"{mod}.{name}" not in ALLOWED_DIFFERENCES:
                problems.append(f"{mod}.{name} only in {'torch_impl' if name in pt else 'tf_impl'}")
        for name in sorted(set(pt) & set(tfm)):
            a, b = pt[name], tfm[name]
            pairs = {f"{mod}.{name}": (a, b)} if inspect.isfunction(a) else {}
            if inspect.isclass(a):
                ma, mb = _methods(a), _methods(b)
                for m in sorted(set(ma) ^ set(mb)):
                    if f"{mod}.{name}.{m}" not in ALLOWED_DIFFERENCES:
                        problems.append(
                            f"{mod}.{name}.{m} only in {'torch_impl' if m in ma else 'tf_impl'}"
                        )
                pairs = {f"{mod}.{name}.{m}": (ma[m], mb[m]) for m in set(ma) & set(mb)}
            for key, (fa, fb) in sorted(pairs.items()):
                pa, pb = _params(fa), _params(fb)
                if pa != pb and key not in ALLOWED_SIGNATURE_DIFFERENCES:
                    problems.append(f"{key}: torch{pa} != tf{pb}")
    return problems


def test_mirrored_public_names_and_arguments():
    problems = _mirror_problems()
    assert not problems, "\n".join(problems)


def test_mirror_allow_list_has_no_stale_entries():
    """Each allowed difference must still be a difference, or the list would rot."""
    saved = dict(ALLOWED_DIFFERENCES), dict(ALLOWED_SIGNATURE_DIFFERENCES)
    try:
        stale = []
        for table in saved:
            for key in list(table):
                ALLOWED_DIFFERENCES.clear(), ALLOWED_SIGNATURE_DIFFERENCES.clear()
                ALLOWED_DIFFERENCES.update({k: v for k, v in saved[0].items() if k != key})
                ALLOWED_SIGNATURE_DIFFERENCES.update(
                    {k: v for k, v in saved[1].items() if k != key}
                )
                if not any(
                    p.startswith(key + " ") or p.startswith(key + ":") for p in _mirror_problems()
                ):
                    stale.append(key)
    finally:
        ALLOWED_DIFFERENCES.clear(), ALLOWED_SIGNATURE_DIFFERENCES.clear()
        ALLOWED_DIFFERENCES.update(saved[0]), ALLOWED_SIGNATURE_DIFFERENCES.update(saved[1])
    assert not stale, stale


def test_parity_compare_path_on_two_dumps(tmp_path):
    """The cross-machine path: two dumps (here torch and TF, float32) through --compare."""
    from shared.apps import parity_cmd
    from tf_impl.__main__ import main as tf_main
    from torch_impl.__main__ import main as pt_main

    a, b = tmp_path / "torch.npz", tmp_path / "tf.npz"
    assert pt_main(["parity-dump", "--dtype", "float32", "--out", str(a)]) == 0
    assert tf_main(["parity-dump", "--dtype", "float32", "--out", str(b)]) == 0
    assert parity_cmd.main(["--compare", str(a), str(b), "--out", str(tmp_path)]) == 0
    md = (tmp_path / "parity.md").read_text()
    assert "tensorflow@cpu vs torch@cpu" in md and "nt_xent.grad_z1" in md
