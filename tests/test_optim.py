"""Optimisers: torch's and ours in TF equal the NumPy reference ``shared.oracle.optim`` in float64,
over several steps with a learning rate that changes every step (warmup, then cosine).

The stock Keras optimisers are also run, to show what they would have done instead: each
matches its own documented formula (``keras_sgd_step``, ``keras_adam_step``) and differs from
torch's by a measured amount.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed")
tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed")

from shared.oracle import optim as ref  # noqa: E402
from shared.parity import compare as parity  # noqa: E402

STEPS = 6
LRS = [0.5 * ref.warmup_cosine(s, 2, STEPS) for s in range(STEPS)]  # changes every step
SETTINGS = {
    "sgd": {"momentum": 0.9, "weight_decay": 5e-4},
    "lars": {"momentum": 0.9, "weight_decay": 1e-3},
    "adam": {"weight_decay": 1e-3},
}


def F32(x: float) -> float:
    """Keras holds the learning rate in a float32 variable and casts its hyperparameters through
    float32, even for float64 weights: the stock formulas are checked with those roundings."""
    return float(np.float32(x))


def _problem(seed=0):
    """A conv kernel, a matrix and a bias (ranks 4, 2, 1: LARS adapts the first two only)."""
    rng = np.random.default_rng(seed)
    params = {
        "conv": rng.standard_normal((3, 3, 2, 4)),
        "dense": rng.standard_normal((5, 3)),
        "bias": rng.standard_normal(3),
    }
    grads = [{k: rng.standard_normal(v.shape) for k, v in params.items()} for _ in range(STEPS)]
    return params, grads


def _numpy(name, params, grads):
    step = {"sgd": ref.sgd_step, "lars": ref.lars_step, "adam": ref.adam_step}[name]
    state = {}
    for lr, g in zip(LRS, grads):
        params, state = step(params, g, state, lr=lr, **SETTINGS[name])
    return params


def _torch(name, params, grads):
    from torch_impl.optim import build_optimizer, set_learning_rate

    model = torch.nn.Module()
    for k, v in params.items():
        model.register_parameter(k, torch.nn.Parameter(torch.tensor(v, dtype=torch.float64)))
    opt = build_optimizer(model, name, lr=LRS[0], **SETTINGS[name])
    for lr, g in zip(LRS, grads):
        set_learning_rate(opt, lr)
        for k, p in model.named_parameters():
            p.grad = torch.tensor(g[k], dtype=torch.float64)
        opt.step()
    return {k: p.detach().numpy() for k, p in model.named_parameters()}


def _tf(name, params, grads, compiled):
    from tf_impl.optim import build_optimizer, set_learning_rate

    vs = {k: tf.Variable(v, dtype=tf.float64) for k, v in params.items()}
    opt = build_optimizer(None, name, lr=LRS[0], **SETTINGS[name])
    opt.build(list(vs.values()))

    def apply(gs):
        opt.apply_gradients([(gs[k], vs[k]) for k in vs])

    apply = tf.function(apply) if compiled else apply
    for lr, g in zip(LRS, grads):
        set_learning_rate(opt, lr)
        apply({k: tf.constant(v, tf.float64) for k, v in g.items()})
    return {k: v.numpy() for k, v in vs.items()}


@pytest.mark.parametrize("name", ["sgd", "lars", "adam"])
def test_torch_and_tf_optimisers_equal_numpy_reference_float64(name):
    params, grads = _problem()
    want = {"param": _numpy(name, params, grads)}
    pt = {"param": _torch(name, params, grads)}
    parity.assert_close(want, pt, dtype="float64", context=f"torch {name}")
    for compiled in (False, True):
        got = {"param": _tf(name, params, grads, compiled)}
        parity.assert_close(
            want, got, dtype="float64", context=f"tf {name} (tf.function={compiled})"
        )
        parity.assert_close(pt, got, dtype="float64", context=f"tf {name} against torch {name}")


def test_lars_adapts_weights_only_and_the_trust_ratio_is_the_closed_form():
    """One step from zero momentum, wd 0: a weight moves by lr * eta ||w|| g / ||g||."""
    w, g = np.full((2, 2), 3.0), np.full((2, 2), 0.5)
    b, gb = np.ones(2), np.full(2, 0.5)
    out, _ = ref.lars_step(
        {"w": w, "b": b}, {"w": g, "b": gb}, {}, lr=0.1, weight_decay=0.0, trust_coefficient=0.01
    )
    np.testing.assert_allclose(out["w"], w - 0.1 * 0.01 * 6.0 / (1.0 + 1e-9) * g, rtol=1e-15)
    np.testing.assert_allclose(out["b"], b - 0.1 * gb, rtol=1e-15)  # plain SGD for the bias


def test_keras_sgd_folds_the_learning_rate_into_the_velocity():
    params, grads = _problem(1)
    params = {"dense": params["dense"]}
    w = tf.Variable(params["dense"], dtype=tf.float64)
    opt = tf.keras.optimizers.SGD(learning_rate=LRS[0], momentum=0.9)
    state = {}
    keras_ref = params
    for lr, g in zip(LRS, grads):
        opt.learning_rate.assign(lr)
        opt.apply_gradients([(tf.constant(g["dense"]), w)])
        keras_ref, state = ref.keras_sgd_step(
            keras_ref, {"dense": g["dense"]}, state, lr=F32(lr), momentum=F32(0.9)
        )
    parity.assert_close({"param": keras_ref}, {"param": {"dense": w.numpy()}}, dtype="float64")
    state, torch_ref = {}, params
    for lr, g in zip(LRS, grads):
        torch_ref, state = ref.sgd_step(
            torch_ref, {"dense": g["dense"]}, state, lr=lr, momentum=0.9
        )
    gap = np.abs(torch_ref["dense"] - w.numpy()).max()
    assert gap > 1e-3, gap  # a real difference once the learning rate changes
    # with a constant learning rate the two coincide
    state_k, state_t, pk, pt = {}, {}, params, params
    for g in grads:
        pk, state_k = ref.keras_sgd_step(pk, {"dense": g["dense"]}, state_k, lr=0.1, momentum=0.9)
        pt, state_t = ref.sgd_step(pt, {"dense": g["dense"]}, state_t, lr=0.1, momentum=0.9)
    np.testing.assert_allclose(pk["dense"], pt["dense"], rtol=1e-13, atol=1e-14)


def test_keras_adam_puts_epsilon_on_the_uncorrected_sqrt_v():
    rng = np.random.default_rng(2)
    w0, gs = rng.standard_normal(4) * 1e-3, [rng.standard_normal(4) * 1e-6 for _ in range(3)]
    w = tf.Variable(w0, dtype=tf.float64)
    opt = tf.keras.optimizers.Adam(learning_rate=1e-3)
    pk, sk, pt, st = {"w": w0}, {}, {"w": w0}, {}
    for g in gs:
        opt.apply_gradients([(tf.constant(g), w)])
        pk, sk = ref.keras_adam_step(pk, {"w": g}, sk, lr=F32(1e-3))
        pt, st = ref.adam_step(pt, {"w": g}, st, lr=1e-3)
    parity.assert_close({"param": pk}, {"param": {"w": w.numpy()}}, dtype="float64")
    # tiny gradients: eps dominates, and where it sits changes the step by a large factor
    step_keras, step_torch = np.abs(pk["w"] - w0).max(), np.abs(pt["w"] - w0).max()
    assert step_torch / step_keras > 2, (step_torch, step_keras)
