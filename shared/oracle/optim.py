"""NumPy reference of the three optimisers and the learning-rate schedule both frameworks use.

Every update here is the one ``torch.optim`` documents, and both frameworks' optimisers are
checked against it in float64 (``tests/test_optim.py``): torch's stock ``SGD`` and ``Adam`` and
our ``LARS`` (``torch_impl.optim``), and our ``SGD``, ``LARS`` and ``Adam`` written in
TensorFlow (``tf_impl.optim``), because Keras's stock optimisers do something else
(:data:`STOCK_DIFFERENCES`, each item demonstrated by a test against the real Keras class).

State is a dict of NumPy arrays per parameter name, so a step is a pure function:
``new_params, new_state = sgd_step(params, grads, state, lr=..., ...)``.

Which tensors are "weights". LARS adapts and decays only tensors with ``ndim >= 2`` (conv
kernels and dense matrices); biases and BatchNorm's gamma and beta (``ndim <= 1``) get plain
momentum SGD, as in SimCLR (appendix B.1) and every public LARS port. SGD and Adam apply their
(coupled, L2) weight decay to every tensor, as ``torch.optim.SGD(weight_decay=)`` and the
official MoCo code do.

Example:
    >>> import numpy as np
    >>> p, s = {"w": np.array([1.0, 2.0])}, {}
    >>> p, s = sgd_step(p, {"w": np.array([0.5, 0.5])}, s, lr=0.1, momentum=0.9)
    >>> p["w"].tolist()  # first step: v = g, w <- w - lr v
    [0.95, 1.95]
    >>> p, s = sgd_step(p, {"w": np.array([0.5, 0.5])}, s, lr=0.2, momentum=0.9)
    >>> np.round(p["w"], 12).tolist()  # v = 0.9 * 0.5 + 0.5 = 0.95; w <- w - 0.2 * 0.95
    [0.76, 1.76]
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "OPTIMIZERS",
    "STOCK_DIFFERENCES",
    "adam_step",
    "default_lr",
    "is_adapted",
    "keras_adam_step",
    "keras_sgd_step",
    "lars_step",
    "sgd_step",
    "warmup_cosine",
]

OPTIMIZERS = ("lars", "sgd", "adam")

STOCK_DIFFERENCES = {
    "sgd": (
        "torch: v <- mu v + (g + wd w); w <- w - lr v (the learning rate is applied after the "
        "velocity). Keras SGD: v <- mu v - lr g; w <- w + v (the learning rate is folded into "
        "the velocity), so old gradients keep the learning rate of their own step. The two "
        "agree only while lr is constant; warmup and cosine change it every step. Keras's "
        "weight_decay is decoupled (w <- w - lr wd w), not added to the gradient."
    ),
    "adam": (
        "torch: w <- w - lr m_hat / (sqrt(v_hat) + eps), eps added to the bias-corrected "
        "sqrt(v_hat). Keras Adam: w <- w - lr_t m / (sqrt(v) + eps) with lr_t = lr sqrt(1 - "
        "b2^t) / (1 - b1^t), i.e. eps is added to the uncorrected sqrt(v) (the paper's "
        "'epsilon hat' form): the effective eps is eps / sqrt(1 - b2^t), 31.6x larger at "
        "step 1 with b2 = 0.999. Keras's weight_decay is decoupled (AdamW-like)."
    ),
    "lars": "Keras has no LARS; torch has none either. Both are written here, to one formula.",
    "precision": (
        "Keras holds the learning rate in a float32 variable and casts Python hyperparameters "
        "(SGD's momentum, Adam's betas in b^t) through float32, also for float64 weights: a "
        "float64 run of a stock Keras optimiser is off by ~1e-7 relative per step. Ours keep "
        "the learning rate in float64 and cast nothing through float32."
    ),
}


def is_adapted(param: np.ndarray) -> bool:
    """True for the tensors LARS adapts and decays: conv kernels and matrices (ndim >= 2)."""
    return np.ndim(param) >= 2


def default_lr(optimizer: str, batch_size: int) -> float:
    """The base learning rate when none is given.

    LARS: SimCLR's square-root scaling ``0.075 sqrt(B)`` (appendix B.1). SGD: ``0.06 B / 256``,
    the MoCo CIFAR demo's linear scaling. Adam: ``1e-3``.

    Example:
        >>> round(default_lr("lars", 64), 6), default_lr("sgd", 256), default_lr("adam", 8)
        (0.6, 0.06, 0.001)
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {optimizer!r}")
    return {"lars": 0.075 * math.sqrt(batch_size), "sgd": 0.06 * batch_size / 256, "adam": 1e-3}[
        optimizer
    ]


def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    """LR multiplier at ``step`` (0-based): linear warmup to 1, then a half cosine to 0.

    ``(step + 1) / warmup_steps`` for ``step < warmup_steps``, else
    ``0.5 (1 + cos(pi min(1, (step - warmup_steps) / (total_steps - warmup_steps))))``.
    Both frameworks call this very function once per step and hand the result to the
    optimiser, so the schedule cannot drift between them.

    Example:
        >>> [round(warmup_cosine(s, 2, 6), 4) for s in range(7)]
        [0.5, 1.0, 1.0, 0.8536, 0.5, 0.1464, 0.0]
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _velocity(state: dict, name: str, d: np.ndarray, momentum: float) -> np.ndarray:
    v = momentum * state[name] + d if name in state else d.copy()  # torch: first v = d
    state[name] = v
    return v


def sgd_step(
    params: dict,
    grads: dict,
    state: dict,
    *,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> tuple[dict, dict]:
    """One step of ``torch.optim.SGD`` (dampening 0, no Nesterov), every tensor decayed.

    ``d = g + wd w``; ``v <- mu v + d`` (``v = d`` on the first step); ``w <- w - lr v``.
    """
    state = dict(state)
    out = {}
    for name, w in params.items():
        d = grads[name] + weight_decay * w
        out[name] = w - lr * _velocity(state, name, d, momentum)
    return out, state


def lars_step(
    params: dict,
    grads: dict,
    state: dict,
    *,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 1e-6,
    trust_coefficient: float = 1e-3,
    eps: float = 1e-9,
) -> tuple[dict, dict]:
    """One LARS step (You et al. 2017) as SimCLR uses it.

    For adapted tensors (:func:`is_adapted`): ``d = g + wd w``, then
    ``d <- d * eta ||w|| / (||d|| + eps)`` when both norms are positive (else the ratio is 1).
    Biases and BN parameters: ``d = g``. Then momentum as in :func:`sgd_step`.
    """
    state = dict(state)
    out = {}
    for name, w in params.items():
        d = grads[name]
        if is_adapted(w):
            d = d + weight_decay * w
            w_norm, d_norm = np.linalg.norm(w), np.linalg.norm(d)
            if w_norm > 0 and d_norm > 0:
                d = d * (trust_coefficient * w_norm / (d_norm + eps))
        out[name] = w - lr * _velocity(state, name, d, momentum)
    return out, state


def adam_step(
    params: dict,
    grads: dict,
    state: dict,
    *,
    lr: float,
    betas=(0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> tuple[dict, dict]:
    """One step of ``torch.optim.Adam`` (L2 weight decay added to the gradient).

    ``g <- g + wd w``; ``m <- b1 m + (1 - b1) g``; ``v <- b2 v + (1 - b2) g^2``;
    ``w <- w - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)``.
    """
    b1, b2 = betas
    state = dict(state)
    t = state.get("t", 0) + 1
    state["t"] = t
    out = {}
    for name, w in params.items():
        g = grads[name] + weight_decay * w
        m = b1 * state.get(("m", name), 0.0) + (1 - b1) * g
        v = b2 * state.get(("v", name), 0.0) + (1 - b2) * g * g
        state[("m", name)], state[("v", name)] = m, v
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        out[name] = w - lr * m_hat / (np.sqrt(v_hat) + eps)
    return out, state


# --- what the stock Keras optimisers do (documented, and tested against Keras itself) --------
def keras_sgd_step(
    params: dict, grads: dict, state: dict, *, lr: float, momentum: float = 0.9
) -> tuple[dict, dict]:
    """``keras.optimizers.SGD``: ``v <- mu v - lr g``; ``w <- w + v`` (lr inside the velocity).

    To reproduce Keras bit for bit in float64, pass ``lr`` and ``momentum`` rounded to float32
    (``STOCK_DIFFERENCES["precision"]``).
    """
    state = dict(state)
    out = {}
    for name, w in params.items():
        v = momentum * state.get(name, 0.0) - lr * grads[name]
        state[name] = v
        out[name] = w + v
    return out, state


def keras_adam_step(
    params: dict, grads: dict, state: dict, *, lr: float, betas=(0.9, 0.999), eps: float = 1e-7
) -> tuple[dict, dict]:
    """``keras.optimizers.Adam`` (Keras 3), written as Keras computes it.

    ``m <- m + (g - m)(1 - b1)``; ``v <- v + (g^2 - v)(1 - b2)``;
    ``w <- w - lr_t m / (sqrt(v) + eps)`` with ``lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)``:
    eps is added to the *uncorrected* ``sqrt(v)`` (default 1e-7). The powers ``b^t`` use the
    betas cast through float32 (Keras's ``ops.cast`` of a Python float), also for float64
    weights; the ``1 - b`` factors stay in double.
    """
    b1, b2 = betas
    p1, p2 = float(np.float32(b1)), float(np.float32(b2))
    state = dict(state)
    t = state.get("t", 0) + 1
    state["t"] = t
    alpha = lr * math.sqrt(1 - p2**t) / (1 - p1**t)
    out = {}
    for name, w in params.items():
        g = grads[name]
        m = state.get(("m", name), 0.0)
        v = state.get(("v", name), 0.0)
        m = m + (g - m) * (1 - b1)
        v = v + (g * g - v) * (1 - b2)
        state[("m", name)], state[("v", name)] = m, v
        out[name] = w - m * alpha / (np.sqrt(v) + eps)
    return out, state
