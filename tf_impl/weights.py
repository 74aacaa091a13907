"""The canonical weight walk in TensorFlow: every weight of a model under its framework-neutral name.

``shared.parity.weights`` defines the names and layouts; ``torch_impl.weights`` is the same walk in the other framework. Checkpoints, weight export and import, ``rosetta port`` and the parity dumps all read a model through :func:`entries`.
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["entries", "export_weights", "import_weights", "layers"]


def layers(module):
    """``(kind, {role: variable})`` for each conv, dense and BN layer, in architecture order."""
    keras = tf.keras
    for layer in _depth_first(module):
        if isinstance(layer, keras.layers.Conv2D):
            yield (
                "conv",
                {"kernel": layer.kernel, **({"bias": layer.bias} if layer.use_bias else {})},
            )
        elif isinstance(layer, keras.layers.Dense):
            yield (
                "dense",
                {"kernel": layer.kernel, **({"bias": layer.bias} if layer.use_bias else {})},
            )
        elif isinstance(layer, keras.layers.BatchNormalization):
            yield (
                "bn",
                {
                    "gamma": layer.gamma,
                    "beta": layer.beta,
                    "moving_mean": layer.moving_mean,
                    "moving_variance": layer.moving_variance,
                },
            )


def _depth_first(layer):
    """Sub-layers in construction order, depth first (Keras 3's recursive ``_flatten_layers``
    visits a layer's children in reverse order)."""
    for sub in layer._flatten_layers(include_self=False, recursive=False):
        yield sub
        yield from _depth_first(sub)


def entries(model):
    """``(canonical name, variable)`` for every weight of the model, in architecture order."""
    from shared.parity.weights import canonical_name, model_parts

    for prefix, module in model_parts(model):
        counts: dict[str, int] = {}
        for kind, roles in layers(module):
            i = counts[kind] = counts.get(kind, -1) + 1
            for role, v in roles.items():
                yield canonical_name(prefix, kind, i, role), v


def export_weights(model) -> dict:
    """Every weight (BN statistics, MoCo's queue and pointer included) in the canonical layout."""
    from shared.parity.weights import method_state

    state = {name: v.numpy() for name, v in entries(model)}  # TF's layout is the canonical one
    state.update({k: v.numpy() for k, v in method_state(model).items()})  # MoCo's queue, ptr
    return state


def import_weights(model, state: dict) -> None:
    """Load a canonical ``state`` (``shared.parity.weights``) into ``model``, in place.

    Raises:
        shared.parity.weights.WeightsError: an unknown, missing or misshapen entry, named.
    """
    from shared.parity.weights import check_state, method_state

    walk = list(entries(model))
    expected = {name: tuple(v.shape) for name, v in walk}
    extra = method_state(model)  # MoCo's queue (K, D) and pointer ()
    expected.update({k: tuple(v.shape) for k, v in extra.items()})
    check_state(expected, state)
    for name, v in walk:
        v.assign(tf.cast(state[name], v.dtype))
    for k, v in extra.items():
        v.assign(tf.cast(state[k], v.dtype))
