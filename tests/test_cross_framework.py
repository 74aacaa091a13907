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

from shared import losses as ref  # noqa: E402
from shared import parity  # noqa: E402
from shared import queue as qref  # noqa: E402
from shared.tolerances import natural_grad_scale  # noqa: E402

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
    from tf_impl.models import dequeue_and_enqueue as tf_enq
    from torch_impl.models import dequeue_and_enqueue as pt_enq

    k, d = 10, 4
    tq, tp = tf.Variable(np.zeros((k, d), np.float32)), tf.Variable(0, dtype=tf.int64)
    pq, pp = torch.zeros(k, d), torch.zeros((), dtype=torch.long)
    rq, rp = np.zeros((k, d), np.float32), 0
    rng = np.random.default_rng(1)
    for b in [3, 4, 4, 1, 10, 13, 2, 6]:
        keys = rng.standard_normal((b, d)).astype(np.float32)
        tf_enq(tq, tp, tf.constant(keys))
        pt_enq(pq, pp, torch.from_numpy(keys))
        rq, rp = qref.dequeue_and_enqueue(rq, rp, keys)
        parity.assert_close(
            {"queue": rq, "ptr": rp}, {"queue": tq.numpy(), "ptr": int(tp.numpy())}, dtype="float32"
        )
        parity.assert_close(
            {"queue": rq, "ptr": rp}, {"queue": pq.numpy(), "ptr": int(pp)}, dtype="float32"
        )


def test_ema_100_steps_tf_matches_numpy():
    from tf_impl.models import momentum_update

    q = tf.keras.layers.Dense(3)
    k = tf.keras.layers.Dense(3)
    q.build((None, 4))
    k.build((None, 4))
    ref_w = [w.numpy().astype(np.float64) for w in k.trainable_weights]
    rng = np.random.default_rng(0)
    for _ in range(100):
        for w in q.trainable_weights:
            w.assign(rng.standard_normal(w.shape).astype(np.float32))
        momentum_update(q, k, 0.99)
        ref_w = [
            qref.ema(r, w.numpy().astype(np.float64), 0.99)
            for r, w in zip(ref_w, q.trainable_weights)
        ]
    parity.assert_close(
        {"ema": ref_w}, {"ema": [w.numpy() for w in k.trainable_weights]}, dtype="float32"
    )


# Documented differences between the two frameworks' public APIs (name -> reason).
ALLOWED_DIFFERENCES = {
    "models.SimCLR": "SimCLR is the torch method; tf_impl implements MoCo",
    "models.MoCo": "MoCo is the TF method; torch_impl only mirrors its two state updates",
    "models.SplitBatchNorm": "the single-device Shuffle-BN substitute exists only for MoCo (TF)",
    "train.LARS": "LARS is SimCLR's optimiser (torch); MoCo uses SGD",
    "train.TRACE_COUNT": "tf.function tracing has no torch counterpart",
    "train.WarmupCosine": "Keras needs a LearningRateSchedule object; torch uses LambdaLR(warmup_cosine)",
    "train.build_optimizer": "torch chooses among LARS/SGD/Adam; the TF MoCo builds its SGD inline",
    "train.load_checkpoint": "torch.load vs tf.train.Checkpoint (restore)",
    "train.save_checkpoint": "torch.save vs tf.train.CheckpointManager",
    "train.make_train_step": "the single tf.function step; torch runs eagerly",
    "data.TwoViewDataset": "a torch Dataset; TF builds a tf.data pipeline in train.make_dataset",
}
ALLOWED_SIGNATURE_DIFFERENCES = {
    "models.build_encoder": "bn_splits (SplitBatchNorm, the Shuffle-BN substitute) exists only in TF",
    "train.extract_features": "device: torch moves batches explicitly; TF places ops itself",
}
MODULES = ["losses", "augment", "models", "train", "data", "evaluate"]


def test_mirrored_public_names_and_arguments():
    import importlib

    problems = []
    for mod in MODULES:
        pt = importlib.import_module(f"torch_impl.{mod}")
        tfm = importlib.import_module(f"tf_impl.{mod}")
        a, b = set(pt.__all__), set(tfm.__all__)
        for name in sorted(a ^ b):
            if f"{mod}.{name}" not in ALLOWED_DIFFERENCES:
                problems.append(f"{mod}.{name} only in {'torch_impl' if name in a else 'tf_impl'}")
        for name in sorted(a & b):
            fa, fb = getattr(pt, name), getattr(tfm, name)
            if inspect.isfunction(fa) and inspect.isfunction(fb):
                pa = list(inspect.signature(fa).parameters)
                pb = list(inspect.signature(fb).parameters)
                if pa != pb and f"{mod}.{name}" not in ALLOWED_SIGNATURE_DIFFERENCES:
                    problems.append(f"{mod}.{name}: torch{pa} != tf{pb}")
    assert not problems, "\n".join(problems)


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
