"""Run this framework's losses on the golden inputs; the ``parity`` command compares the outputs.

``golden_outputs(dtype)`` returns ``{loss: {case: {"loss", "per_anchor", "grad_<input>"}}}``
with NumPy arrays in ``dtype``, the same layout as ``shared.parity.golden``.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from shared.parity import golden
from shared.parity.weights import online_network
from tf_impl.devices import check_device
from tf_impl.losses import info_nce, nt_xent

FRAMEWORK = "tensorflow"

DTYPES = {"float64": tf.float64, "float32": tf.float32}


def run_case(loss: str, case: dict, dtype: str, device: str = "cpu") -> dict:
    """One golden case: from_numpy -> op (under GradientTape) -> to_numpy."""
    names = ["z1", "z2"] if loss == "nt_xent" else ["q", "k", "queue"]
    fn = nt_xent if loss == "nt_xent" else info_nce
    tau = float(case["temperature"])
    with tf.device(check_device(device)):
        xs = [tf.constant(case[n], dtype=DTYPES[dtype]) for n in names]
        with tf.GradientTape() as tape:
            tape.watch(xs[:2])
            per = fn(*xs, temperature=tau, reduction="none")
            mean = tf.reduce_mean(per)
        grads = tape.gradient(mean, xs[:2])  # the queue is a buffer: no gradient in MoCo
    # arrays keep the computed dtype, so the parity table counts ULPs in that dtype
    out = {"loss": mean.numpy(), "per_anchor": per.numpy()}
    for n, g in zip(names[:2], grads):
        out[f"grad_{n}"] = g.numpy()
    return out


def golden_outputs(dtype: str = "float64", device: str = "cpu", cases=None) -> dict:
    """Every golden case's outputs, or those of ``cases`` (``{loss: {case: inputs}}``, e.g.
    ``shared.parity.golden.random_cases``)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype: expected one of {sorted(DTYPES)}, got {dtype!r}")
    check_device(device)
    cases = cases or {loss: golden.load(loss) for loss in ("nt_xent", "info_nce")}
    return {
        loss: {c: run_case(loss, fields, dtype, device) for c, fields in by_case.items()}
        for loss, by_case in cases.items()
    }


def framework_version() -> str:
    """The framework's version string, recorded in each dump."""
    return tf.__version__


def step_outputs(
    model, x1, x2, optimizer, key_momentum: float | None = None, device: str = "cpu", amp=False
) -> dict:
    """One training step on NHWC NumPy views; the quantities of ``torch_impl.parity.step_outputs``
    (the optimiser's slots under their common names ``momentum``, ``m``, ``v``).

    The step is the ``tf.function`` of ``tf_impl.train.compile_step`` around the model's own
    ``train_step``, the one training runs, asked for the gradients it applied too (the key
    shuffle's seed is ``[0, 0]``). ``device``: ``"cpu"`` or ``"cuda"``, where the step runs.
    ``amp``: the model computes in bf16 with float32 weights; in Keras that is the model's
    dtype policy (``dtype="mixed_bfloat16"`` when it is built), so ``amp`` must say what the
    model is; every output is returned in float32 then.

    Raises:
        ValueError: ``amp`` does not match the model's dtype policy.
    """
    from tf_impl.weights import export_weights, import_weights

    net = online_network(model)
    mixed = net.dtype_policy.name == "mixed_bfloat16"
    if bool(amp) != mixed:
        raise ValueError(
            f"amp: {amp!r}, but the model's dtype policy is {net.dtype_policy.name!r}; "
            "a TF model computes in bf16 when built with dtype='mixed_bfloat16'"
        )
    dtype = net.weights[0].dtype
    out = lambda t: tf.cast(t, tf.float32).numpy() if amp else t.numpy()  # noqa: E731
    with tf.device(check_device(device)):
        a, b = tf.constant(x1, dtype), tf.constant(x2, dtype)
        h1, z1 = (out(t) for t in net(a, training=False))
        # a train-mode pass moves BN's statistics: put them back
        state = {k: np.array(v) for k, v in export_weights(model).items()}
        h1_train, z1_train = (out(t) for t in net(a, training=True))
        import_weights(model, state)
        m = tf.constant(0.0 if key_momentum is None else key_momentum, tf.float64)
        loss, grads = _compiled(model, optimizer)(a, b, tf.constant([0, 0], tf.int32), m)
    features = {"h1": h1, "z1": z1, "h1_train": h1_train, "z1_train": z1_train}
    return {"loss": out(loss), **features, **_state_after(model, optimizer, grads)}


_LAST_STEP: dict = {}  # the last (model, optimizer)'s traced step: drift steps one pair 20 times


def _compiled(model, optimizer):
    """``compile_step(model, optimizer, return_gradients=True)``, traced once per pair in a row."""
    from tf_impl.train import compile_step

    last = _LAST_STEP.get("step")
    if last is None or last[0] is not model or last[1] is not optimizer:
        last = (model, optimizer, compile_step(model, optimizer, return_gradients=True))
        _LAST_STEP["step"] = last
    return last[2]


def _state_after(model, optimizer, grads) -> dict:
    """After a step: ``{"grad/<name>", "after/<name>", "slot/<name>/<slot>"}``, the gradients
    ``grads`` the step applied (``compile_step(..., return_gradients=True)``'s), the exported
    state and the optimiser's slots."""
    from tf_impl.weights import entries, export_weights

    names = {id(v): n for n, v in entries(model)}
    variables = online_network(model).trainable_weights
    out = {f"grad/{names[id(v)]}": g.numpy() for v, g in zip(variables, grads, strict=True)}
    out.update({f"after/{n}": v for n, v in export_weights(model).items()})
    out.update(
        {
            f"slot/{names[id(v)]}/{slot}": per_var[i].numpy()
            for slot, per_var in zip(optimizer.slot_names, optimizer.slots, strict=True)
            for i, v in enumerate(variables)
        }
    )
    return out


def step_case(case: str, dtype: str, device: str = "cpu"):
    """A ``shared.parity.step_parity`` case, ready for :func:`step_outputs`:
    ``(model, optimizer, kwargs)`` as ``torch_impl.parity.step_case`` (the model with Keras's
    own initialisation, its variables on ``device``). ``dtype`` ``"bfloat16"``: a
    ``mixed_bfloat16`` model (float32 weights, bf16 compute) and ``amp``."""
    from shared.parity import step_parity as sp
    from tf_impl.methods import METHODS
    from tf_impl.optim import build_optimizer

    method, amp = sp.STEP_CASES[case]["method"], dtype == "bfloat16"
    with tf.device(check_device(device)):
        model_dtype = "mixed_bfloat16" if amp else dtype
        model = METHODS[method](**{**sp.model_kwargs(case, dtype), "dtype": model_dtype})
    kwargs = {"device": device, "amp": amp}
    if method == "moco":
        kwargs["key_momentum"] = sp.KEY_MOMENTUM
    return model, build_optimizer(model, *sp.OPTIMIZER), kwargs


def train_views(cfg, images, params: list) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each step's two views, NHWC float32 NumPy, from uint8 NHWC ``images`` and the
    ``shared.parity.train_parity.view_params`` of one epoch (this framework's ``BatchAugment.apply``)."""
    from tf_impl.augment import BatchAugment

    aug = BatchAugment(**cfg.augment_kwargs())
    return [tuple(aug.apply(images[idx], p).numpy() for p in (p1, p2)) for idx, p1, p2 in params]


def train_run(cfg, model, epochs: list) -> dict:
    """Train ``model`` with this framework's ``run_epoch`` on given views; the loss curves.

    ``epochs``: per epoch, the list of ``(x1, x2)`` NHWC NumPy views of its steps.
    Returns ``{"step_loss", "epoch_loss"}`` and, after the last step, :func:`_state_after`'s
    ``grad/<name>``, ``after/<name>`` and ``slot/<name>/<slot>``.
    """
    from tf_impl.optim import build_optimizer
    from tf_impl.train import compile_step, run_epoch

    dtype = model.backbone.weights[0].dtype
    opt = build_optimizer(model, cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)
    traced, last = compile_step(model, opt, return_gradients=True), {}

    def step_fn(*args):
        loss, last["grads"] = traced(*args)
        return loss

    steps, epoch_loss = [], []
    for epoch, views in enumerate(epochs):
        batches = [tuple(tf.constant(v, dtype) for v in pair) for pair in views]
        record = run_epoch(step_fn, opt, cfg, batches, epoch, len(batches), False, steps.append)
        epoch_loss.append(record["loss"])
    curves = {"step_loss": np.array(steps), "epoch_loss": np.array(epoch_loss)}
    return {**curves, **_state_after(model, opt, last["grads"])}
