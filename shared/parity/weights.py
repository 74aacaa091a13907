"""A framework-neutral weights format, so a model trained in one framework runs in the other.

A weights file is an ``.npz`` of canonical names mapped to arrays, plus one JSON entry
``__meta__`` (:data:`FORMAT`, method, encoder, framework of origin, versions).

Canonical names walk the model in architecture order, the order both frameworks build it in::

    <part>/<kind><index>/<role>

* ``part``: ``net`` (SimCLR's encoder + head), or ``encoder_q`` and ``encoder_k`` (MoCo);
  then the encoder's layers under ``<part>/encoder/...`` and the head's under ``<part>/head/...``.
* ``kind``: ``conv``, ``bn`` or ``dense``, numbered from 0 within the encoder or the head.
* ``role``: ``kernel`` and ``bias`` (conv, dense), ``gamma``, ``beta``, ``moving_mean`` and
  ``moving_variance`` (BatchNorm).
* MoCo also has ``queue`` (K, D) and ``queue_ptr`` (a 0-d int64).

Layout (one, documented): conv kernels are **(kh, kw, in, out)** ("HWIO", TensorFlow's) and dense
kernels **(in, out)**. torch stores (out, in, kh, kw) and (out, in): its ``export_weights``
transposes, its ``import_weights`` transposes back. BatchNorm statistics are stored as each
framework keeps them (torch's running variance is unbiased, Keras's biased; at inference both
divide by ``sqrt(var + eps)`` the same way).

Example:
    >>> name = canonical_name("net/encoder", "conv", 0, "kernel")
    >>> name, to_canonical("conv", "kernel", np.zeros((8, 3, 3, 3)), "torch").shape
    ('net/encoder/conv0/kernel', (3, 3, 3, 8))
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from shared import RosettaError

__all__ = [
    "FORMAT",
    "METHOD_PARTS",
    "ROLES",
    "WeightsError",
    "canonical_name",
    "check_state",
    "from_canonical",
    "load_weights",
    "method_of",
    "method_state",
    "model_parts",
    "networks",
    "online_network",
    "save_weights",
    "to_canonical",
]

FORMAT = "rosetta.weights/v1"
ROLES = {
    "conv": ("kernel",),
    "dense": ("kernel", "bias"),
    "bn": ("gamma", "beta", "moving_mean", "moving_variance"),
}


class WeightsError(RosettaError, ValueError):
    """A weights file or state that does not fit: the message names the entry."""


# The one registry of what each method holds, for code that serves both methods: the networks
# (in canonical order), the one the optimiser trains, and the state beside the weights. A model
# names its method in its class attribute ``method``; nothing else is looked up on it.
METHOD_PARTS = {
    "simclr": {"nets": ("net",), "online": "net", "state": ()},
    "moco": {
        "nets": ("encoder_q", "encoder_k"),
        "online": "encoder_q",
        "state": ("queue", "queue_ptr"),
    },
}


def method_of(model) -> str:
    """The method (a ``METHOD_PARTS`` key) of a SimCLR or MoCo model of either framework.

    Raises:
        TypeError: ``model`` is not one of the project's method models.
    """
    method = getattr(type(model), "method", None)
    if method not in METHOD_PARTS:
        raise TypeError(f"model: expected a SimCLR or MoCo model, got {type(model).__name__}")
    return method


def networks(model) -> dict[str, object]:
    """``{name: network}``: SimCLR's ``net``; MoCo's ``encoder_q`` then ``encoder_k``."""
    return {name: getattr(model, name) for name in METHOD_PARTS[method_of(model)]["nets"]}


def online_network(model):
    """The network the optimiser trains (encoder f + head g): SimCLR's ``net``, MoCo's f_q."""
    return getattr(model, METHOD_PARTS[method_of(model)]["online"])


def method_state(model) -> dict[str, object]:
    """The state beside the weights (MoCo: ``queue`` (K, D) and ``queue_ptr``; SimCLR: none)."""
    return {name: getattr(model, name) for name in METHOD_PARTS[method_of(model)]["state"]}


def model_parts(model) -> list[tuple[str, object]]:
    """``(prefix, module)`` for the encoders and heads of a SimCLR or MoCo model of either
    framework, in canonical order: ``net/encoder``, ``net/head`` or ``encoder_q/...``,
    ``encoder_k/...``. Only attribute names are read, so it serves both frameworks."""
    return [
        (f"{name}/{sub}", getattr(net, sub))
        for name, net in networks(model).items()
        for sub in ("encoder", "head")
    ]


def canonical_name(prefix: str, kind: str, index: int, role: str) -> str:
    return f"{prefix}/{kind}{index}/{role}"


def to_canonical(kind: str, role: str, array: np.ndarray, framework: str) -> np.ndarray:
    """A framework's array in the canonical layout (only torch's kernels need a transpose)."""
    if framework == "torch" and role == "kernel":
        return np.transpose(array, (2, 3, 1, 0)) if kind == "conv" else np.transpose(array)
    return np.asarray(array)


def from_canonical(kind: str, role: str, array: np.ndarray, framework: str) -> np.ndarray:
    """The inverse of :func:`to_canonical`."""
    if framework == "torch" and role == "kernel":
        return np.transpose(array, (3, 2, 0, 1)) if kind == "conv" else np.transpose(array)
    return np.asarray(array)


def check_state(expected: dict[str, tuple], state: dict[str, np.ndarray]) -> None:
    """Raise :class:`WeightsError` naming any unknown, missing or misshapen entry.

    ``expected`` maps each canonical name to its shape.
    """
    missing = sorted(set(expected) - set(state))
    unknown = sorted(set(state) - set(expected))
    if missing or unknown:
        raise WeightsError(
            f"weights: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unknown {unknown[:5]}{'...' if len(unknown) > 5 else ''}; was the file written "
            "for another method, encoder or head size?"
        )
    for name, shape in expected.items():
        if tuple(np.shape(state[name])) != tuple(shape):
            raise WeightsError(
                f"weights: {name} has shape {tuple(np.shape(state[name]))}, "
                f"this model expects {tuple(shape)}"
            )


def save_weights(path, state: dict[str, np.ndarray], meta: dict) -> Path:
    """Write ``state`` and ``meta`` (method, encoder, framework, versions) to an ``.npz``.

    Written to a temporary file beside ``path``, then renamed over it: a symbolic link at
    ``path`` is replaced, never written through, and a failed write leaves no partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, __meta__=json.dumps({"format": FORMAT, **meta}), **state)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_weights(path) -> tuple[dict[str, np.ndarray], dict]:
    """Read a weights file; ``(state, meta)``.

    Raises:
        WeightsError: not a weights file, or one of another format version.
    """
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise WeightsError(f"weights: {path} is not a readable .npz ({e})") from e
    if "__meta__" not in data:
        raise WeightsError(
            f"weights: {path} has no __meta__ entry; it was not written by export_weights"
        )
    try:
        meta = json.loads(str(data.pop("__meta__")))
    except ValueError as e:
        raise WeightsError(f"weights: {path} has a __meta__ entry that is not JSON ({e})") from e
    meta = meta if isinstance(meta, dict) else {}
    if meta.get("format") != FORMAT:
        raise WeightsError(
            f"weights: {path} is format {meta.get('format')!r}; this version reads {FORMAT!r}"
        )
    return data, meta
