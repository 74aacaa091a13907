"""Parity for any pair of models: the framework-neutral half (layouts, matching, drift envelope).

A user's torch module and Keras model are walked by ``torch_impl.pair`` and ``tf_impl.pair``
into :class:`Layer` sequences: the parametric layers in the order they run, each with its kind,
its weights' shapes in the canonical layout, and its configuration. :func:`match_layers` pairs
them by kind and shapes (or by an explicit name map); the two sequences side by side up to the
first mismatch is the finding when they cannot be paired.

Canonical layouts are Keras's, as in ``shared.parity.weights``:

========== ========================= ==================================
kind       torch                     canonical (Keras)
========== ========================= ==================================
conv       weight (O, I/g, kh, kw)   kernel (kh, kw, I/g, O) (``groups=g``)
dwconv     weight (C m, 1, kh, kw)   kernel (kh, kw, C, m) (``DepthwiseConv2D``)
dense      weight (O, I)             kernel (I, O)
bn         weight, bias, running_*   gamma, beta, moving_* (each as stored)
ln         weight, bias              gamma, beta
embedding  weight (V, E)             embeddings (V, E)
========== ========================= ==================================

Each conversion is a transpose or a reshape, so ports are bit-exact both ways. BatchNorm's
running variance is copied as stored: both frameworks divide by ``sqrt(var + eps)`` at
inference; only the *update* differs (torch adds the unbiased batch variance, Keras the biased,
``shared.parity.localise.torch_variance``).

Everything here is NumPy.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared import RosettaError

__all__ = [
    "KINDS",
    "ROLES",
    "TORCH_ROLES",
    "Layer",
    "PairError",
    "canonical_to_torch",
    "cosine_lr",
    "drift_envelope",
    "load_name_map",
    "match_layers",
    "side_by_side",
    "torch_to_canonical",
]

KINDS = ("conv", "dwconv", "dense", "bn", "ln", "embedding")
ROLES = {
    "conv": ("kernel", "bias"),
    "dwconv": ("kernel", "bias"),
    "dense": ("kernel", "bias"),
    "bn": ("gamma", "beta", "moving_mean", "moving_variance"),
    "ln": ("gamma", "beta"),
    "embedding": ("embeddings",),
}
# canonical role -> the torch module's attribute
TORCH_ROLES = {
    "kernel": "weight",
    "bias": "bias",
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
    "embeddings": "weight",
}


class PairError(RosettaError, ValueError):
    """Two models that cannot be compared as given: the message names the argument and what
    was expected (the command line prints it as one ``error:`` line, exit status 2)."""


@dataclass(frozen=True)
class Layer:
    """One parametric layer of one model: ``name`` as its framework names it, ``kind`` one of
    :data:`KINDS`, ``shapes`` ``{role: canonical shape}``, ``config`` its settings (stride,
    padding, eps, momentum, the activation folded into a Keras layer, ...)."""

    name: str
    kind: str
    shapes: dict
    config: dict = field(default_factory=dict, compare=False)

    def signature(self) -> tuple:
        """What must agree for two layers to be paired: the kind and every weight's shape."""
        return self.kind, tuple(sorted((r, tuple(s)) for r, s in self.shapes.items()))

    def describe(self) -> str:
        """``name kind role[shape] ...``, as the side-by-side listing prints it."""
        roles = " ".join(f"{r}{list(s)}" for r, s in self.shapes.items())
        return f"{self.name} {self.kind} {roles}".strip()


def torch_to_canonical(kind: str, role: str, a: np.ndarray, groups: int = 1) -> np.ndarray:
    """A torch weight in the canonical layout (a view where NumPy allows; copy to keep it).

    Args:
        kind, role: the layer's kind and the weight's canonical role.
        a: the torch weight; for ``dwconv`` (C m, 1, kh, kw), output channel ``c m + j``.
        groups: the conv's groups (C, for a depthwise conv).

    >>> torch_to_canonical("dwconv", "kernel", np.zeros((6, 1, 3, 3)), groups=3).shape
    (3, 3, 3, 2)
    """
    a = np.asarray(a)
    if role != "kernel":
        return a
    if kind == "conv":
        return a.transpose(2, 3, 1, 0)
    if kind == "dwconv":
        c_m, _, kh, kw = a.shape
        return a.reshape(groups, c_m // groups, kh, kw).transpose(2, 3, 0, 1)
    if kind == "dense":
        return a.T
    return a


def canonical_to_torch(kind: str, role: str, a: np.ndarray) -> np.ndarray:
    """The inverse of :func:`torch_to_canonical`.

    >>> k = np.arange(36.0).reshape(3, 3, 2, 2)  # depthwise, C=2, m=2
    >>> t = canonical_to_torch("dwconv", "kernel", k)
    >>> t.shape, np.array_equal(torch_to_canonical("dwconv", "kernel", t, groups=2), k)
    ((4, 1, 3, 3), True)
    """
    a = np.asarray(a)
    if role != "kernel":
        return a
    if kind == "conv":
        return a.transpose(3, 2, 0, 1)
    if kind == "dwconv":
        kh, kw, c, m = a.shape
        return a.transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw)
    if kind == "dense":
        return a.T
    return a


def side_by_side(torch_layers: list, keras_layers: list, upto: int) -> str:
    """The two sequences, one pair a line, up to and including position ``upto`` (0-based)."""
    width = max([len(x.describe()) for x in torch_layers[: upto + 1]] + [5])
    lines = [f"{'#':>3}  {'torch':<{width}}  keras", "-" * (width + 40)]
    for i in range(upto + 1):
        left = torch_layers[i].describe() if i < len(torch_layers) else "(none)"
        right = keras_layers[i].describe() if i < len(keras_layers) else "(none)"
        mark = "  <- differs" if i == upto else ""
        lines.append(f"{i:>3}  {left:<{width}}  {right}{mark}")
    return "\n".join(lines)


def _mismatch(torch_layers: list, keras_layers: list, i: int, why: str) -> PairError:
    err = PairError(
        f"layers: the two models' parametric layers differ at position {i}: {why} "
        f"(torch has {len(torch_layers)}, keras {len(keras_layers)}; pass --map FILE to pair "
        "them by name)"
    )
    err.listing = side_by_side(torch_layers, keras_layers, i)
    return err


def match_layers(torch_layers: list, keras_layers: list, name_map: dict | None = None) -> list:
    """Pair the two run-order sequences of :class:`Layer`: position by position, or by
    ``name_map`` (``{torch name: keras name}``), each pair of the same signature.

    Returns:
        ``[(torch Layer, keras Layer)]`` in torch's run order.

    Raises:
        PairError: the sequences differ in length, kind or a weight's shape; its ``listing``
            attribute is :func:`side_by_side` up to the first mismatch.
    """
    if name_map:
        by_name = {x.name: x for x in keras_layers}
        pairs = []
        for i, t in enumerate(torch_layers):
            k = by_name.get(name_map.get(t.name, ""))
            if k is None or k.signature() != t.signature():
                got = "no keras layer" if k is None else k.describe()
                raise _mismatch(torch_layers, keras_layers, i, f"{t.describe()} is mapped to {got}")
            pairs.append((t, k))
        return pairs
    for i in range(max(len(torch_layers), len(keras_layers))):
        if i >= len(torch_layers) or i >= len(keras_layers):
            short = "torch" if i >= len(torch_layers) else "keras"
            raise _mismatch(torch_layers, keras_layers, i, f"{short} has no layer {i}")
        t, k = torch_layers[i], keras_layers[i]
        if t.signature() != k.signature():
            raise _mismatch(torch_layers, keras_layers, i, f"{t.describe()} vs {k.describe()}")
    return list(zip(torch_layers, keras_layers))


def load_name_map(path: str) -> dict:
    """``--map FILE``: a JSON object ``{torch layer name: keras layer name}``.

    Raises:
        PairError: the file is missing, not JSON, or not an object of strings.
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise PairError(f"--map: expected a JSON file of {{torch name: keras name}}: {e}") from e
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise PairError("--map: expected a JSON object mapping torch names to keras names")
    return data


def drift_envelope(reference: np.ndarray, torch32: np.ndarray, floor: float) -> np.ndarray:
    """The largest float32-vs-float32 difference that rounding alone explains, per step.

    torch's float32 run and Keras's float32 run are each the float64 run plus its own rounding
    (the same operations, rounded in another order). torch's own distance from the float64 run,
    ``d_k = |torch32_k - reference_k|``, measures how far rounding alone has carried a float32
    run by step k; if Keras's rounding is of the same size, the triangle inequality bounds the
    two runs' distance by ``2 max_{j <= k} d_j`` (a running maximum: drift does not undo
    itself). ``floor`` is the one-step tolerance of the table (float32 kernels of two
    frameworks), below which no difference is measurable.

    Args:
        reference: (K,) or (K, ...) a quantity per step, the float64 run.
        torch32: the same quantity, torch's float32 run.
        floor: the least envelope (absolute).

    Returns:
        (K,) the envelope per step (the maximum over a step's elements).

    >>> drift_envelope(np.array([1.0, 1.0, 1.0]), np.array([1.0, 1.5, 1.25]), 0.1).tolist()
    [0.1, 1.1, 1.1]
    """
    d = np.abs(np.asarray(torch32, np.float64) - np.asarray(reference, np.float64))
    d = d.reshape(d.shape[0], -1).max(1) if d.ndim > 1 else d
    return 2 * np.maximum.accumulate(d) + floor


def cosine_lr(lr: float, step: int, steps: int) -> float:
    """The learning rate of ``step`` (0-based) of ``steps``: ``lr (1 + cos(pi step / steps)) / 2``.

    It changes every step, so a difference of momentum conventions (Keras's SGD folds the
    learning rate into its velocity) shows over training.

    >>> cosine_lr(0.1, 0, 4), round(cosine_lr(0.1, 2, 4), 12)
    (0.1, 0.05)
    """
    return lr * 0.5 * (1 + math.cos(math.pi * step / steps))
