"""Localise a torch-vs-TensorFlow disagreement: the first layer, and quantity, over tolerance.

Each framework runs every layer on the *same* input, the one torch's layer saw in a
training-mode forward pass (``torch_impl.localise.capture``), so errors do not accumulate from
layer to layer. For each layer, in forward order, this module compares (torch expected, TF
actual, ``shared.parity.compare.compare_leaf``, tolerance ``tolerance(group, dtype)``):

* ``forward``: the layer's training-mode output (group ``param``);
* ``grad/input`` and ``grad/<role>``: the input and weight gradients for the same seeded
  upstream gradient (group ``grad``);
* ``running/<role>``: BatchNorm's moving mean and variance after that call (group ``param``).
  torch stores the unbiased batch variance, Keras the biased one (catalogue row "BN running
  variance"): TF's value is converted with the known ratio n / (n - 1) before it is compared;
* ``slot/<role>/<slot>`` and ``step/<role>``: the optimiser's slots and the updated weight after
  one step of each framework's optimiser, both fed torch's weight gradients (groups ``grad``
  and ``param``);
* a ``<net>/normalize`` stage after each head: the row-wise L2 normalisation of the head's
  output with one probe row appended, the first row scaled by :data:`PROBE` (1e-8): the
  normalisation clamps only differ for rows of norm below 1e-6.

The first row over tolerance is explained by the catalogue of framework differences
(``docs/framework_differences.md``): for each row that applies to the failing layer's kind and
quantity, a NumPy model of TF's *unaligned* convention (:data:`HYPOTHESES`) is run on the same
captured input and weights and compared with TF's raw output under the same tolerance; the rows
that reproduce it are named. Catalogue rows live in the docgen layer, which this layer may not
import: :data:`CATALOGUE_ROWS` repeats their names and 1-based numbers (tests/test_localise.py
checks them against ``shared.docgen.catalogue.ROWS`` and the page).

Everything here is NumPy: arrays are in the canonical layout (NHWC activations, HWIO kernels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from shared.oracle.optim import keras_adam_step, keras_sgd_step
from shared.parity.compare import Row, compare_leaf

__all__ = [
    "CATALOGUE_ROWS",
    "HYPOTHESES",
    "INJECTABLE",
    "PROBE",
    "Report",
    "compare_layers",
    "explain",
    "format_report",
    "group_of_quantity",
    "localise",
    "torch_variance",
]

CATALOGUE_ROWS = {
    "stride-2 conv padding": 1,
    "BN running variance": 2,
    "BN momentum and epsilon": 3,
    "SGD with momentum": 4,
    "Adam's epsilon": 5,
    "L2 normalisation clamp": 7,
    "Python floats in float64 TF": 6,
    "GELU's tanh approximation": 17,
    "LayerNorm epsilon": 18,
    "SAME padding in a stride-2 depthwise conv": 19,
    "activation folded into a Keras layer": 20,
    "flatten order before a Dense": 21,
}
# the rows that tf_impl.localise.inject_model can leave unaligned in the project's own models
INJECTABLE = tuple(list(CATALOGUE_ROWS)[:6])
PAIR_KINDS = ("conv", "dwconv", "dense", "bn", "ln", "embedding")  # shared.parity.pair.KINDS
PROBE = 1e-8  # the scale of the normalisation stage's probe row
KERAS_BN = {"momentum": 0.99, "epsilon": 1e-3}  # keras.layers.BatchNormalization's defaults
KERAS_L2_EPSILON = 1e-12  # tf.math.l2_normalize's default clamp of the squared norm
KERAS_LN_EPSILON = 1e-3  # keras.layers.LayerNormalization's default (torch's: 1e-5)


def group_of_quantity(quantity: str) -> str:
    """The tolerance-table group of one localiser quantity.

    >>> [group_of_quantity(q) for q in ("forward", "grad/input", "slot/kernel/m", "step/bias")]
    ['param', 'grad', 'grad', 'param']
    """
    if quantity.startswith(("grad/", "slot/")):
        return "grad"
    return "param"


def torch_variance(tf_variance: np.ndarray, record: dict) -> np.ndarray:
    """TF's moving variance after one training call, in torch's (unbiased) convention.

    With torch's momentum m, both start from ``v0``; torch stores ``(1 - m) v0 + m r s2`` and
    Keras ``(1 - m) v0 + m s2`` (s2 the biased batch variance, r = n / (n - 1), n the values per
    channel in one BN split), so torch's is ``(1 - m) v0 + r (tf - (1 - m) v0)``.
    """
    m, n = record["config"]["momentum"], record["config"]["count"]
    kept = (1 - m) * record["before"]["moving_variance"]
    return kept + n / max(n - 1, 1) * (np.asarray(tf_variance, np.float64) - kept)


@dataclass
class Report:
    """Every compared quantity, in forward order, and the verdict."""

    rows: list[tuple[str, str, Row]]
    first: tuple[str, str, Row] | None = None
    explained: list[tuple[str, int, float]] = field(default_factory=list)
    probed: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.first is None

    def verdict(self) -> str:
        n_layers = len({layer for layer, _, _ in self.rows})
        if self.first is None:
            return f"PASS: {len(self.rows)} quantities of {n_layers} layers within tolerance"
        layer, quantity, r = self.first
        text = (
            f"FAIL: first over tolerance: {layer} {quantity} (max abs {r.max_abs:.3e}, max rel "
            f"{r.max_rel:.3e}; allowed {r.rtol:.1e} rel + {r.atol * r.scale:.2e} abs)"
        )
        if self.explained:
            names = "; ".join(f"{n} (catalogue row {i})" for n, i, _ in self.explained)
            return f"{text}; looks like: {names}"
        tried = ", ".join(self.probed) or "none applies"
        return f"{text}; no catalogue row reproduces it (tried: {tried})"


def compare_layers(
    records: dict, torch_out: dict, tf_out: dict, dtype: str, *, convert_variance: bool = True
) -> list[tuple[str, str, Row]]:
    """``(layer, quantity, Row)`` for every quantity of every layer, in ``records`` order.

    Args:
        records: ``{layer: {"kind", "config", "x", "gy", "before"}}`` from
            ``torch_impl.localise.capture``, in forward order.
        torch_out, tf_out: ``{layer: {quantity: array}}`` of each framework (layer outputs and
            optimiser results merged, see :func:`localise`).
        dtype: the models' dtype ("float64" or "float32"), whose tolerances apply.
        convert_variance: convert TF's moving variance to torch's convention first
            (:func:`torch_variance`); False compares the raw stores.
    """
    rows = []
    for layer, rec in records.items():
        for quantity, want in torch_out[layer].items():
            got = tf_out[layer][quantity]
            if convert_variance and quantity == "running/moving_variance":
                got = torch_variance(got, rec)
            q = group_of_quantity(quantity)
            rows.append(
                (
                    layer,
                    quantity,
                    compare_leaf(f"{layer}.{quantity}", want, got, dtype=dtype, quantity=q),
                )
            )
    return rows


# NumPy models of TF's unaligned conventions, each on one layer's captured input and weights.


def _same_pad(rec: dict) -> np.ndarray:
    """The record's input padded as Keras's ``padding="same"`` pads it: the total
    ``(ceil(size / s) - 1) s + k - size`` split ``total // 2`` before, the rest after."""
    x, k, s = rec["x"], rec["before"]["kernel"], rec["config"]["stride"]
    pads = []
    for size, kern in ((x.shape[1], k.shape[0]), (x.shape[2], k.shape[1])):
        total = max((-(-size // s) - 1) * s + kern - size, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))


def _conv_same(rec: dict) -> np.ndarray:
    """A conv (or, for kind ``dwconv``, a depthwise conv, output channel ``c m + j``) with
    Keras's ``padding="same"``, plus the bias if the layer has one."""
    k, s = rec["before"]["kernel"], rec["config"]["stride"]
    xp = _same_pad(rec)
    win = np.lib.stride_tricks.sliding_window_view(xp, k.shape[:2], axis=(1, 2))[:, ::s, ::s]
    if rec["kind"] == "dwconv":
        y = np.einsum("bhwcij,ijcm->bhwcm", win, k, optimize=True)
        y = y.reshape(*y.shape[:3], -1)
    else:
        y = np.einsum("bhwcij,ijco->bhwo", win, k, optimize=True)
    return y + rec["before"].get("bias", 0.0)


def _bn_moments(rec: dict):
    """Per-split batch mean and biased variance, (S, 1, ..., C), and x split (S, B/S, ..., C)."""
    x = rec["x"]
    xs = x.reshape(rec["config"]["num_splits"], -1, *x.shape[1:])
    axes = tuple(range(1, xs.ndim - 1))
    return xs, xs.mean(axes, keepdims=True), xs.var(axes, keepdims=True)


def _bn_forward(rec: dict, eps: float) -> np.ndarray:
    xs, mean, var = _bn_moments(rec)
    y = ((xs - mean) / np.sqrt(var + eps)).reshape(rec["x"].shape)
    return y * rec["before"]["gamma"] + rec["before"]["beta"]


def _bn_moving(rec: dict, role: str, keras_momentum: float) -> np.ndarray:
    """Keras's moving statistic: ``a before + (1 - a) batch``, the variance biased."""
    _, mean, var = _bn_moments(rec)
    batch = (mean if role == "moving_mean" else var).mean(0).reshape(-1)
    return keras_momentum * rec["before"][role] + (1 - keras_momentum) * batch


def _keras_bn(rec: dict, quantity: str, _settings: dict):
    if quantity == "forward":
        return _bn_forward(rec, KERAS_BN["epsilon"])
    if quantity.startswith("running/"):
        return _bn_moving(rec, quantity.split("/")[1], KERAS_BN["momentum"])
    return None


def _biased_variance(rec: dict, quantity: str, _settings: dict):
    if quantity == "running/moving_variance":
        return _bn_moving(rec, "moving_variance", 1 - rec["config"]["momentum"])
    return None


def _same_padding(rec: dict, quantity: str, _settings: dict):
    """Keras's "same" at stride 2: the layer's output, or (after a ``ZeroPadding2D`` that
    mimics it) the padded input that Keras's own forward pass gives the layer."""
    if rec["config"].get("stride", 1) < 2:
        return None
    if quantity == "input":
        return _same_pad(rec)
    return _conv_same(rec) if quantity == "forward" else None


def _keras_clamp(rec: dict, quantity: str, _settings: dict):
    if quantity != "forward":
        return None
    x = rec["x"]
    return x / np.sqrt(np.maximum((x * x).sum(1, keepdims=True), KERAS_L2_EPSILON))


def _f32(v: float) -> float:
    """A Python hyperparameter as Keras holds it: rounded to float32."""
    return float(np.float32(v))


def _stock_optimizer(name: str):
    """A model of Keras's stock ``name`` optimiser's first step on one weight."""

    def model(rec: dict, quantity: str, settings: dict):
        if settings.get("optimizer") != name or not quantity.startswith(("slot/", "step/")):
            return None
        role = quantity.split("/")[1]
        w, g = {"w": rec["before"][role]}, {"w": settings["grads"][role]}
        if name == "sgd":
            out, state = keras_sgd_step(
                w, g, {}, lr=_f32(settings["lr"]), momentum=_f32(settings["momentum"])
            )
            slots = {"momentum": state["w"]}
        else:
            out, state = keras_adam_step(w, g, {}, lr=_f32(settings["lr"]))
            slots = {"m": state[("m", "w")], "v": state[("v", "w")]}
        return out["w"] if quantity.startswith("step/") else slots.get(quantity.split("/")[2])

    return model


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(x)


ACTIVATIONS = {  # NumPy models of the activations a Keras layer may fold in (by name)
    "relu": lambda x: np.maximum(x, 0.0),
    "relu6": lambda x: np.clip(x, 0.0, 6.0),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": np.tanh,
    "softmax": lambda x: (
        np.exp(x - x.max(-1, keepdims=True))
        / np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)
    ),
    "gelu": lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2))),
    "silu": lambda x: x / (1 + np.exp(-x)),
    "swish": lambda x: x / (1 + np.exp(-x)),
}


def _gelu(x: np.ndarray, approximate: bool, constant=float) -> np.ndarray:
    """GELU as ``tf.nn.gelu`` computes it, its cast constants passed through ``constant``
    (``np.float32``: TF's ``math_ops.cast`` of a Python float): exact,
    ``0.5 x erfc(-x c)`` with ``c = 1 / sqrt(2)`` cast; tanh's, ``0.5 x (1 + tanh(sqrt(2 / pi)
    (x + k x^3)))`` with ``k = 0.044715`` cast."""
    if approximate:
        k = float(constant(0.044715))
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + k * x**3)))
    c = float(constant(1 / math.sqrt(2)))
    return 0.5 * x * np.vectorize(math.erfc, otypes=[np.float64])(-x * c)


def _gelu_prev(rec: dict, quantity: str):
    """The previous layer's output, if it is where this layer's input came from."""
    prev, x = rec.get("prev"), rec["x"]
    if quantity != "input" or prev is None or np.shape(prev) != np.shape(x):
        return None
    return prev


def _gelu_other(rec: dict, quantity: str, _settings: dict):
    """The other GELU on the previous layer's output: tanh's where torch's input is the exact
    GELU (``F.gelu``'s default; ``keras.ops.gelu``'s is ``approximate=True``), and back; with
    exact constants or TF's float32-rounded ones (candidates)."""
    prev = _gelu_prev(rec, quantity)
    if prev is None:
        return None
    torch_exact = np.abs(rec["x"] - _gelu(prev, False)).max()
    other = torch_exact <= np.abs(rec["x"] - _gelu(prev, True)).max()
    return [_gelu(prev, other, c) for c in (float, np.float32)]


def _float32_constant(rec: dict, quantity: str, _settings: dict):
    """The exact GELU with ``1 / sqrt(2)`` rounded to float32: TF's ``tf.cast`` of a Python float
    (``keras.ops.gelu(x, approximate=False)`` in float64)."""
    prev = _gelu_prev(rec, quantity)
    if prev is None or np.abs(rec["x"] - _gelu(prev, False)).max() > 1e-6:
        return None
    return _gelu(prev, False, np.float32)


def _ln_keras_eps(rec: dict, quantity: str, _settings: dict):
    """LayerNorm over the last axis with Keras's default epsilon, 1e-3."""
    if quantity != "forward":
        return None
    x = rec["x"]
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    y = (x - mean) / np.sqrt(var + KERAS_LN_EPSILON)
    return y * rec["before"].get("gamma", 1.0) + rec["before"].get("beta", 0.0)


def _folded_activation(rec: dict, quantity: str, _settings: dict):
    """The activation folded into the previous Keras layer, applied to torch's value: the
    layer's input, or (stage ``output``) the model's output."""
    act = ACTIVATIONS.get(rec["config"].get("folded", "linear"))
    wanted = "forward" if rec["kind"] == "output" else "input"
    return None if act is None or quantity != wanted else act(rec["x"])


def _flatten_nhwc(rec: dict, quantity: str, _settings: dict):
    """torch's flattened (C, H, W) features re-flattened in Keras's (H, W, C) order; C from the
    previous layer's output (the channels survive pooling), H = W."""
    prev, x = rec.get("prev"), rec["x"]
    if quantity != "input" or prev is None or np.ndim(prev) != 4 or x.ndim != 2:
        return None
    c = prev.shape[-1]
    hw = x.shape[1] // c
    h = math.isqrt(hw)
    if h * h * c != x.shape[1] or hw < 2:
        return None
    return x.reshape(-1, c, h, h).transpose(0, 2, 3, 1).reshape(x.shape)


# catalogue row -> (layer kinds it applies to, model of TF's output under the unaligned convention)
HYPOTHESES = {
    "stride-2 conv padding": (("conv",), _same_padding),
    "BN running variance": (("bn",), _biased_variance),
    "BN momentum and epsilon": (("bn",), _keras_bn),
    "SGD with momentum": (PAIR_KINDS, _stock_optimizer("sgd")),
    "Adam's epsilon": (PAIR_KINDS, _stock_optimizer("adam")),
    "L2 normalisation clamp": (("normalize",), _keras_clamp),
    "Python floats in float64 TF": (PAIR_KINDS, _float32_constant),
    "GELU's tanh approximation": (PAIR_KINDS, _gelu_other),
    "LayerNorm epsilon": (("ln",), _ln_keras_eps),
    "SAME padding in a stride-2 depthwise conv": (("dwconv",), _same_padding),
    "activation folded into a Keras layer": ((*PAIR_KINDS, "output"), _folded_activation),
    "flatten order before a Dense": (("dense",), _flatten_nhwc),
}


def explain(
    rec: dict, quantity: str, tf_value: np.ndarray, dtype: str, settings: dict
) -> tuple[list[tuple[str, int, float]], list[str]]:
    """The catalogue rows whose unaligned convention reproduces TF's raw ``tf_value``.

    Returns:
        ``([(row name, row number, worst margin)], [rows tried])``: a row is named when its
        model's output is within the quantity's tolerance of TF's.
    """
    found, tried = [], []
    for name, (kinds, model) in HYPOTHESES.items():
        if rec["kind"] not in kinds:
            continue
        predicted = model(rec, quantity, settings)
        if predicted is None:
            continue
        tried.append(name)
        margins = [
            compare_leaf(name, tf_value, p, dtype=dtype, quantity=group_of_quantity(quantity))
            for p in (predicted if isinstance(predicted, list) else [predicted])
        ]
        best = min(margins, key=lambda r: r.worst_margin)
        if best.passed:
            found.append((name, CATALOGUE_ROWS[name], best.worst_margin))
    return found, tried


def localise(
    records: dict,
    torch_out: dict,
    tf_out: dict,
    dtype: str,
    settings: dict,
    *,
    convert_variance: bool = True,
) -> Report:
    """Compare every layer (:func:`compare_layers`) and explain the first row over tolerance.

    Args:
        records, torch_out, tf_out, dtype, convert_variance: as :func:`compare_layers`.
        settings: the optimiser's ``optimizer``, ``lr``, ``momentum`` and, per layer, torch's
            weight gradients that both optimisers were fed (``grads``: ``{layer: {role: g}}``).
    """
    rows = compare_layers(records, torch_out, tf_out, dtype, convert_variance=convert_variance)
    report = Report(rows)
    bad = [row for row in rows if not row[2].passed]
    if bad:
        layer, quantity, _ = report.first = bad[0]
        layer_settings = {**settings, "grads": settings.get("grads", {}).get(layer, {})}
        report.explained, report.probed = explain(
            records[layer], quantity, tf_out[layer][quantity], dtype, layer_settings
        )
    return report


def format_report(report: Report, every_quantity: bool = False) -> str:
    """The per-layer table (each layer's worst quantity, or every quantity) and the verdict."""
    head = (
        f"{'layer':<26} {'quantity':<30} {'max_abs':>10} {'max_rel':>10} {'rtol':>8} "
        f"{'atol*scale':>10}  ok"
    )
    lines = [head, "-" * len(head)]
    shown: dict = {}
    for layer, quantity, r in report.rows:
        if every_quantity:
            shown[(layer, quantity)] = (layer, quantity, r)
        elif layer not in shown or r.worst_margin > shown[layer][2].worst_margin:
            shown[layer] = (layer, quantity, r)
    for layer, quantity, r in shown.values():
        lines.append(
            f"{layer:<26} {quantity:<30} {r.max_abs:>10.3e} {r.max_rel:>10.3e} {r.rtol:>8.1e} "
            f"{r.atol * r.scale:>10.2e}  {'ok' if r.passed else 'FAIL'}"
        )
    return "\n".join(lines + ["", report.verdict()])
