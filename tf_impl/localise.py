"""The localiser's TensorFlow side: run each layer alone on the input torch's layer saw.

``torch_impl.localise.capture`` records each layer's input; :func:`layer_outputs` and
:func:`optimizer_step` are the same functions as torch's, and ``shared.parity.localise``
compares the two. A layer is run as the model runs it: a ResNet conv that pads explicitly (a
block's or the stem's ``padded``) on ``parent.pad_input(x)``. Each function leaves the model's weights and statistics as it found
them.

Fault injection (``inject=``, the catalogue row to leave unaligned; never used by default):

* ``"BN momentum and epsilon"``: :func:`inject_model` sets every BN to Keras's defaults
  (momentum 0.99, epsilon 1e-3), as ``keras.layers.BatchNormalization()`` builds it;
* ``"stride-2 conv padding"``: :func:`inject_model` gives each explicitly padded stride-2 conv
  (a block's 3x3, the ImageNet stem's 7x7) Keras's ``padding="same"`` and no explicit pad;
* ``"SGD with momentum"``, ``"Adam's epsilon"``: :func:`optimizer_step` uses Keras's stock
  ``keras.optimizers.SGD`` / ``Adam`` instead of ``tf_impl.optim``'s;
* ``"L2 normalisation clamp"``: :func:`layer_outputs` normalises with
  ``tf.math.l2_normalize``'s default clamp instead of ``tf_impl.models.normalize``;
* ``"BN running variance"`` is not a TF fault: the project keeps each framework's convention,
  so it is injected by comparing the raw stores (``shared.parity.localise``'s
  ``convert_variance=False``), and nothing changes here.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from shared.parity.localise import INJECTABLE
from shared.parity.weights import model_parts
from tf_impl import models
from tf_impl.pair import _slots, call_and_tape
from tf_impl.weights import entries, export_weights, import_weights

__all__ = ["inject_model", "layer_outputs", "named_layers", "optimizer_step"]

keras = tf.keras
KINDS = (
    (keras.layers.Conv2D, "conv", ("kernel", "bias")),
    (keras.layers.Dense, "dense", ("kernel", "bias")),
    (keras.layers.BatchNormalization, "bn", ("gamma", "beta", "moving_mean", "moving_variance")),
)


def _check_inject(inject) -> None:
    if inject is not None and inject not in INJECTABLE:
        raise ValueError(f"inject: expected one of {list(INJECTABLE)} or None, got {inject!r}")


def _leaves(layer, parent=None):
    """``(layer, parent)`` depth first in construction order (as ``tf_impl.weights.layers``)."""
    for sub in layer._flatten_layers(include_self=False, recursive=False):
        yield sub, layer
        yield from _leaves(sub, sub)


def named_layers(model) -> dict:
    """``{layer: (kind, keras layer, parent, {role: variable})}`` in the canonical order."""
    out = {}
    for prefix, module in model_parts(model):
        counts: dict = {}
        for sub, parent in _leaves(module):
            for cls, kind, roles in KINDS:
                if isinstance(sub, cls):
                    i = counts[kind] = counts.get(kind, -1) + 1
                    found = {r: getattr(sub, r) for r in roles if getattr(sub, r, None) is not None}
                    out[f"{prefix}/{kind}{i}"] = (kind, sub, parent, found)
                    break
    names = {name.rsplit("/", 1)[0] for name, _ in entries(model)}
    assert names == set(out), f"layer walk differs from tf_impl.weights: {names ^ set(out)}"
    return out


def _snapshot(model) -> dict:
    """``export_weights``, copied (restored at the end of each function below)."""
    return {k: np.array(v, copy=True) for k, v in export_weights(model).items()}


def inject_model(model, inject: str | None) -> None:
    """Leave one catalogue row unaligned in a built TF model, in place (see the module doc).

    Raises:
        ValueError: ``inject`` is not a row of ``shared.parity.localise.INJECTABLE``.
    """
    _check_inject(inject)
    for _, layer, parent, _ in named_layers(model).values():
        if inject == "BN momentum and epsilon" and isinstance(
            layer, keras.layers.BatchNormalization
        ):
            layer.momentum, layer.epsilon = 0.99, 1e-3
        if inject == "stride-2 conv padding" and layer is getattr(parent, "padded", None):
            if layer.strides != (1, 1):
                layer.padding = "same"
                parent.pad_input = lambda x: x


def _call_of(kind: str, layer, parent):
    if kind == "bn":
        return lambda x: layer(x, training=True)
    if layer is getattr(parent, "padded", None):  # a ResNet conv that pads its input explicitly
        return lambda x: layer(parent.pad_input(x))
    return layer


def _unit(inject):
    if inject == "L2 normalisation clamp":
        return lambda z: tf.math.l2_normalize(z, axis=1)  # Keras's default clamp
    return models.normalize


def _run_layer(fn, roles: dict, rec: dict, dtype) -> dict:
    """One call of ``fn`` on the record's input and its backward from the record's ``gy``:
    ``tf_impl.pair.call_and_tape``, the one layer runner of both localisers."""
    return call_and_tape(fn, roles, rec["x"], rec["gy"], dtype)


def layer_outputs(model, records: dict, inject: str | None = None) -> dict:
    """Each layer run alone, training BN, on its record's input (as torch's ``layer_outputs``).

    Returns:
        ``{layer: {"forward", "grad/input", "grad/<role>", "running/<role>"}}``.
    """
    _check_inject(inject)
    layers, state = named_layers(model), _snapshot(model)
    dtype = next(iter(layers.values()))[1].compute_dtype
    out = {}
    try:
        for layer, rec in records.items():
            if rec["kind"] == "normalize":
                out[layer] = _run_layer(_unit(inject), {}, rec, dtype)
            else:
                kind, sub, parent, roles = layers[layer]
                out[layer] = _run_layer(_call_of(kind, sub, parent), roles, rec, dtype)
    finally:
        import_weights(model, state)
    return out


def _stock(inject, lr: float, momentum: float):
    if inject == "SGD with momentum":
        return keras.optimizers.SGD(lr, momentum=momentum)
    if inject == "Adam's epsilon":
        return keras.optimizers.Adam(lr)
    return None


def optimizer_step(
    model,
    grads: dict,
    optimizer: str = "sgd",
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    inject: str | None = None,
) -> dict:
    """One step of ``tf_impl.optim.build_optimizer`` fed ``grads`` (as torch's
    ``optimizer_step``); ``inject`` may swap in Keras's stock SGD or Adam.

    Returns:
        ``{canonical weight name: {"slot/<slot>": ..., "step": updated weight}}``.
    """
    from tf_impl.optim import build_optimizer

    _check_inject(inject)
    state = _snapshot(model)
    walk = [(name, v) for name, v in entries(model) if name in grads]
    try:
        opt = _stock(inject, lr, momentum) or build_optimizer(
            None, optimizer, lr, momentum, weight_decay
        )
        opt.apply_gradients([(tf.constant(grads[n], v.dtype), v) for n, v in walk])
        out = {}
        for i, (name, v) in enumerate(walk):
            slots = {f"slot/{s}": np.asarray(t.numpy()) for s, t in _slots(opt, i).items()}
            out[name] = {**slots, "step": v.numpy().copy()}
    finally:
        import_weights(model, state)
    return out
