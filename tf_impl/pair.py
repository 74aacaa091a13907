"""Parity for any pair of models: the Keras model's side (as ``torch_impl.pair``).

``discover`` runs the model once with each parametric layer's ``call`` wrapped, so the layers
come out in the order they run (the functional graph's order, or the call order of a
subclassed model) with the input each one saw. ``run_layer`` runs one layer alone on torch's
captured input: with its folded activation (``Dense(..., activation=...)``) left out, since
torch's layer has none, and on an input padded as torch pads it when the Keras conv pads
nothing (``padding="valid"`` after a ``ZeroPadding2D``). Each function leaves the model's
weights and statistics as it found them.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from shared.parity.pair import ROLES, Layer, cosine_lr

__all__ = [
    "call_and_tape",
    "discover",
    "kind_of",
    "optimizer_step",
    "read_weights",
    "run_layer",
    "torch_padding",
    "train_steps",
    "write_weights",
]

keras = tf.keras
TRAINABLE = ("kernel", "bias", "gamma", "beta", "embeddings")


def kind_of(layer) -> str | None:
    """The :data:`shared.parity.pair.KINDS` kind of a Keras layer, or None."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return "dwconv"
    if isinstance(layer, keras.layers.Conv2D):
        return "conv"
    if isinstance(layer, keras.layers.Dense):
        return "dense"
    if isinstance(layer, keras.layers.BatchNormalization):
        return "bn"
    if isinstance(layer, keras.layers.LayerNormalization):
        return "ln"
    if isinstance(layer, keras.layers.Embedding):
        return "embedding"
    return None


def _roles(kind: str, layer) -> dict:
    return {r: v for r in ROLES[kind] if (v := getattr(layer, r, None)) is not None}


def _activation_name(layer) -> str:
    act = getattr(layer, "activation", None)
    return "linear" if act is None else getattr(act, "__name__", str(act))


def _config(kind: str, layer) -> dict:
    config = {"activation": _activation_name(layer)}
    if kind in ("conv", "dwconv"):
        config.update(stride=int(layer.strides[0]), keras_padding=layer.padding)
    if kind == "bn":
        config.update(momentum=float(layer.momentum), eps=float(layer.epsilon))
    if kind == "ln":
        config.update(eps=float(layer.epsilon))
    return config


def _candidates(model) -> list:
    return [x for x in model._flatten_layers(include_self=False) if kind_of(x) is not None]


def _snapshot(model) -> list:
    return [np.array(v.numpy(), copy=True) for v in model.weights]


def _restore(model, saved: list) -> None:
    for v, a in zip(model.weights, saved):
        v.assign(a)


def discover(model, x: np.ndarray) -> tuple:
    """Run ``model`` once, training, on ``x`` (channels-last) and record every parametric layer.

    Returns:
        ``(layers, by_name, seen, output)``: the :class:`Layer` sequence in call order,
        ``{name: keras layer}``, ``{name: (input, output)}`` of each first call (NumPy), and
        the model's output (NumPy).
    """
    seen, order, wrapped = {}, [], []

    def wrap(layer):
        original = layer.call

        def call(*args, **kwargs):
            out = original(*args, **kwargs)
            if layer.name not in seen:
                seen[layer.name] = (np.asarray(args[0]), np.asarray(out))
                order.append(layer.name)
            return out

        object.__setattr__(layer, "call", call)
        wrapped.append(layer)

    xt = _batch(x, _dtype(model))
    if not model.weights:  # a subclassed model is built by its first call: not a training one
        model(xt, training=False)
    saved = _snapshot(model)
    try:
        for layer in _candidates(model):
            wrap(layer)
        output = np.asarray(model(xt, training=True))
    finally:
        for layer in wrapped:
            object.__delattr__(layer, "call")
        _restore(model, saved)
    by_name = {x.name: x for x in wrapped if x.name in seen}
    layers = []
    for name in order:
        kind = kind_of(by_name[name])
        shapes = {r: tuple(v.shape) for r, v in _roles(kind, by_name[name]).items()}
        layers.append(Layer(name, kind, shapes, _config(kind, by_name[name])))
    return layers, by_name, seen, output


def _batch(x: np.ndarray, dtype):
    """A batch as a tensor: floats in the model's dtype, integers (token ids) as they are."""
    x = np.asarray(x)
    return tf.constant(x) if np.issubdtype(x.dtype, np.integer) else tf.constant(x, dtype)


def _dense_grad(g) -> np.ndarray:
    """A gradient as an array (an Embedding's is an ``IndexedSlices``)."""
    return tf.convert_to_tensor(g).numpy()


def _dtype(model) -> str:
    """The dtype of the model's (or layer's) weights; before it is built, its policy's."""
    return str(model.weights[0].dtype) if model.weights else str(model.compute_dtype)


def read_weights(by_name: dict, layers: list) -> dict:
    """``{layer name: {role: array (a copy)}}``; Keras's layout is the canonical one."""
    return {
        x.name: {
            r: np.array(v.numpy(), copy=True) for r, v in _roles(x.kind, by_name[x.name]).items()
        }
        for x in layers
    }


def write_weights(by_name: dict, layers: list, weights: dict) -> None:
    """Set each layer's weights from ``{layer name: {role: canonical array}}``, bit-exact."""
    for x in layers:
        for r, v in _roles(x.kind, by_name[x.name]).items():
            v.assign(np.asarray(weights[x.name][r]).astype(v.dtype))


def torch_padding(config: dict, kernel_shape: tuple) -> tuple[int, int]:
    """torch's (symmetric) padding of a conv, from its config: ints, or "same"/"valid"."""
    pad = config.get("padding", (0, 0))
    if isinstance(pad[0], str):
        return tuple((k - 1) // 2 if pad[0] == "same" else 0 for k in kernel_shape[:2])
    return int(pad[0]), int(pad[1])


def _fn(kind: str, layer, config: dict, kernel_shape):
    """The layer as one call on torch's input: BN training, torch's padding if Keras pads none."""
    if kind == "bn":
        return lambda x: layer(x, training=True)
    if kind in ("conv", "dwconv") and layer.padding == "valid":
        ph, pw = torch_padding(config, kernel_shape)
        if ph or pw:
            return lambda x: layer(tf.pad(x, [[0, 0], [ph, ph], [pw, pw], [0, 0]]))
    return layer


def call_and_tape(fn, roles: dict, x: np.ndarray, gy: np.ndarray, dtype) -> dict:
    """One call of ``fn`` on ``x`` and its backward from ``gy``: the one layer runner of both
    localisers (``tf_impl.localise`` runs the project's layers here too).

    Args:
        fn: the layer (or a function of the input).
        roles: ``{canonical role: Keras variable}``; the trainable ones get gradients.
        x, gy: the input and the upstream gradient, canonical layout.
        dtype: the input's dtype.

    Returns:
        ``{"forward", "grad/input", "grad/<role>", "running/<role>"}`` (the statistics after
        the call).
    """
    params = {r: v.value for r, v in roles.items() if r in TRAINABLE}  # Keras 3 -> tf.Variable
    xt = _batch(x, dtype)
    ids = not xt.dtype.is_floating  # an Embedding's token ids: no input gradient
    with tf.GradientTape() as tape:
        if not ids:
            tape.watch(xt)
        for v in params.values():
            tape.watch(v)
        y = fn(xt)
    wrt = list(params.values()) if ids else [xt, *params.values()]
    grads = tape.gradient(y, wrt, output_gradients=tf.constant(gy, y.dtype))
    out = {"forward": y.numpy()}
    if not ids:
        out["grad/input"] = grads.pop(0).numpy()
    out.update({f"grad/{r}": _dense_grad(g) for r, g in zip(params, grads)})
    for r in ("moving_mean", "moving_variance"):
        if r in roles:
            out[f"running/{r}"] = roles[r].numpy().copy()
    return out


def run_layer(kind: str, layer, x: np.ndarray, gy: np.ndarray, config: dict) -> dict:
    """One call of ``layer`` alone on ``x`` (torch's captured input, canonical layout), its
    folded activation left out, and its backward from ``gy`` (:func:`call_and_tape`); the
    layer's weights and statistics are restored afterwards.

    Args:
        kind: the layer's kind.
        layer: the Keras layer.
        x, gy: the input and the upstream gradient.
        config: torch's layer config (its padding).
    """
    roles = _roles(kind, layer)
    dtype = _dtype(layer)
    fn = _fn(kind, layer, config, tuple(roles["kernel"].shape) if "kernel" in roles else ())
    activation = getattr(layer, "activation", None)
    saved = {r: np.array(v.numpy(), copy=True) for r, v in roles.items()}
    if activation is not None:
        object.__setattr__(layer, "activation", keras.activations.linear)
    try:
        return call_and_tape(fn, roles, x, gy, dtype)
    finally:
        if activation is not None:
            object.__setattr__(layer, "activation", activation)
        for r, v in roles.items():
            v.assign(saved[r])


def _optimizer(optimizer: str, lr: float, momentum: float, betas, eps: float, stock: bool):
    from tf_impl import optim

    if stock:
        if optimizer == "sgd":
            return keras.optimizers.SGD(lr, momentum=momentum)
        return keras.optimizers.Adam(lr, beta_1=betas[0], beta_2=betas[1])  # epsilon 1e-7
    if optimizer == "sgd":
        return optim.SGD(lr, momentum=momentum)
    return optim.Adam(lr, betas=betas, eps=eps)


def _slots(opt, i: int) -> dict:
    """The i-th variable's slots, named momentum; m, v (also for Keras's stock optimisers)."""
    if hasattr(opt, "slot_names"):
        return {s: opt.slots[j][i] for j, s in enumerate(opt.slot_names)}
    if isinstance(opt, keras.optimizers.SGD):
        return {"momentum": opt.momentums[i]}
    return {"m": opt._momentums[i], "v": opt._velocities[i]}


def optimizer_step(
    by_name: dict,
    layers: list,
    grads: dict,
    optimizer: str = "sgd",
    lr: float = 0.1,
    momentum: float = 0.9,
    betas: tuple = (0.9, 0.999),
    eps: float = 1e-8,
    stock: bool = False,
) -> dict:
    """One step fed ``grads`` (``{layer: {role: g}}``): ``tf_impl.optim``'s SGD or Adam (torch's
    updates), or with ``stock`` Keras's own ``keras.optimizers.SGD`` or ``Adam``.

    Returns:
        ``{layer: {"slot/<role>/<slot>": ..., "step/<role>": updated weight}}``.
    """
    walk = [
        (x, r, v)
        for x in layers
        for r, v in _roles(x.kind, by_name[x.name]).items()
        if r in grads.get(x.name, {})
    ]
    saved = [np.array(v.numpy(), copy=True) for *_, v in walk]
    out: dict = {x.name: {} for x in layers}
    try:
        opt = _optimizer(optimizer, lr, momentum, betas, eps, stock)
        variables = [v if stock else v.value for *_, v in walk]
        opt.apply_gradients(
            [(tf.constant(grads[x.name][r], v.dtype), w) for (x, r, v), w in zip(walk, variables)]
        )
        for i, (x, r, v) in enumerate(walk):
            for s, t in _slots(opt, i).items():
                out[x.name][f"slot/{r}/{s}"] = np.array(t.numpy(), copy=True)
            out[x.name][f"step/{r}"] = np.array(v.numpy(), copy=True)
    finally:
        for (*_, v), a in zip(walk, saved):
            v.assign(a)
    return out


def train_steps(
    model,
    by_name: dict,
    layers: list,
    batches: list,
    targets: list,
    optimizer: str = "sgd",
    lr: float = 0.1,
    momentum: float = 0.9,
    stock: bool = False,
) -> tuple[list, list]:
    """Train as ``torch_impl.pair.train_steps`` (``batches`` channels-last): MSE loss, the
    learning rate ``cosine_lr`` per step, ``tf_impl.optim``'s or (``stock``) Keras's optimiser.

    Returns:
        ``(losses, weights)`` per step. The model keeps the trained weights.
    """
    opt = _optimizer(optimizer, lr, momentum, (0.9, 0.999), 1e-8, stock)
    variables = model.trainable_variables
    targets_of = [v if stock else v.value for v in variables]
    dtype = _dtype(model)
    losses, weights = [], []
    for k, (x, t) in enumerate(zip(batches, targets)):
        step_lr = cosine_lr(lr, k, len(batches))
        if stock:
            opt.learning_rate = step_lr
        else:
            opt.learning_rate.assign(step_lr)
        with tf.GradientTape() as tape:
            y = model(tf.constant(x, dtype), training=True)
            loss = tf.reduce_mean(tf.square(y - tf.constant(t, dtype)))
        grads = tape.gradient(loss, variables)
        opt.apply_gradients(list(zip(grads, targets_of)))
        losses.append(float(loss.numpy()))
        weights.append(read_weights(by_name, layers))
    return losses, weights
