"""Optimisers and the learning-rate schedule, in TensorFlow.

Keras's stock SGD and Adam do not perform torch's updates (``shared.oracle.optim.STOCK_DIFFERENCES``:
Keras folds the learning rate into SGD's velocity and puts Adam's epsilon on the uncorrected
``sqrt(v)``), and Keras has no LARS. So the three are written here as small ``tf.Module``s
that do exactly the updates of ``shared.oracle.optim`` (and of ``torch_impl.optim``), tested equal to
them in float64. Each runs inside ``tf.function``; its state (slots, step, learning rate) is
made of ``tf.Variable``s that ``tf.train.Checkpoint`` saves.

The learning rate is a variable that the training loop sets once per step from
``shared.oracle.optim.warmup_cosine`` (:func:`set_learning_rate`), as the torch loop does: assigning a
variable does not retrace the step.
"""

from __future__ import annotations

import tensorflow as tf

from shared.oracle.optim import warmup_cosine

__all__ = ["LARS", "SGD", "Adam", "build_optimizer", "set_learning_rate", "warmup_cosine"]


class _Optimizer(tf.Module):
    """The common part: the learning rate, the step count and the slot variables."""

    slot_names: tuple[str, ...] = ()

    def __init__(self, lr: float, weight_decay: float, name: str):
        super().__init__(name=name)
        self.learning_rate = tf.Variable(
            float(lr), dtype=tf.float64, trainable=False, name="learning_rate"
        )
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
        self.weight_decay = float(weight_decay)
        self.slots: list[list[tf.Variable]] = []
        self._built_for: list[int] = []

    def build(self, variables) -> None:
        """Create one zero slot per variable and slot name (call before ``tf.function``)."""
        if self._built_for:
            return
        for name in self.slot_names:
            self.slots.append(
                [
                    tf.Variable(tf.zeros_like(v), trainable=False, name=f"{name}_{i}")
                    for i, v in enumerate(variables)
                ]
            )
        self._built_for = [id(v) for v in variables]

    def apply_gradients(self, grads_and_vars) -> None:
        """Update each variable in place with its gradient, in the order given to ``build``."""
        pairs = list(grads_and_vars)
        self.build([v for _, v in pairs])
        self.iterations.assign_add(1)
        for i, (g, v) in enumerate(pairs):
            if g is None:
                continue
            lr = tf.cast(self.learning_rate, v.dtype)
            self._update(i, tf.cast(g, v.dtype), v, lr)

    def _update(self, i: int, g, v, lr) -> None:
        raise NotImplementedError


def _momentum(velocity: tf.Variable, d, momentum: float, first):
    """torch's momentum buffer: ``v = d`` on the first step, else ``v <- mu v + d``."""
    velocity.assign(tf.where(first, d, momentum * velocity + d))
    return velocity


class SGD(_Optimizer):
    """torch's SGD: ``d = g + wd w``; ``v <- mu v + d``; ``w <- w - lr v`` (every tensor decayed).

    Example:
        >>> w = tf.Variable([1.0, 2.0], dtype=tf.float64)
        >>> opt = SGD(lr=0.1, momentum=0.9)
        >>> opt.apply_gradients([(tf.constant([0.5, 0.5], tf.float64), w)])
        >>> w.numpy().tolist()
        [0.95, 1.95]
    """

    slot_names = ("momentum",)

    def __init__(
        self, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, name: str = "sgd"
    ):
        super().__init__(lr, weight_decay, name)
        self.momentum = float(momentum)

    def _update(self, i, g, v, lr):
        d = g + self.weight_decay * v
        buf = _momentum(self.slots[0][i], d, self.momentum, self.iterations == 1)
        v.assign_sub(lr * buf)


class LARS(_Optimizer):
    """LARS as ``torch_impl.optim.LARS``: weights (rank >= 2) get weight decay and the trust
    ratio ``eta ||w|| / (||g + wd w|| + eps)``; biases and BN parameters plain momentum SGD."""

    slot_names = ("momentum",)

    def __init__(
        self,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 1e-6,
        trust_coefficient: float = 1e-3,
        eps: float = 1e-9,
        name: str = "lars",
    ):
        super().__init__(lr, weight_decay, name)
        self.momentum, self.trust_coefficient, self.eps = (
            float(momentum),
            float(trust_coefficient),
            float(eps),
        )

    def _update(self, i, g, v, lr):
        d = g
        if v.shape.rank >= 2:  # the same rule as torch_impl.optim.param_groups (p.ndim >= 2)
            d = g + self.weight_decay * v
            w_norm, d_norm = tf.norm(v), tf.norm(d)
            ratio = self.trust_coefficient * w_norm / (d_norm + self.eps)
            d = d * tf.where((w_norm > 0) & (d_norm > 0), ratio, tf.ones_like(ratio))
        buf = _momentum(self.slots[0][i], d, self.momentum, self.iterations == 1)
        v.assign_sub(lr * buf)


class Adam(_Optimizer):
    """torch's Adam: ``w <- w - lr m_hat / (sqrt(v_hat) + eps)`` with L2 weight decay in g."""

    slot_names = ("m", "v")

    def __init__(
        self,
        lr: float = 1e-3,
        betas=(0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        name: str = "adam",
    ):
        super().__init__(lr, weight_decay, name)
        self.betas, self.eps = (float(betas[0]), float(betas[1])), float(eps)

    def _update(self, i, g, v, lr):
        b1, b2 = self.betas
        g = g + self.weight_decay * v
        m, s = self.slots[0][i], self.slots[1][i]
        m.assign(b1 * m + (1 - b1) * g)
        s.assign(b2 * s + (1 - b2) * tf.square(g))
        t = tf.cast(self.iterations, v.dtype)
        # tf.constant, not tf.cast: casting a Python float goes through float32 first
        m_hat = m / (1 - tf.pow(tf.constant(b1, v.dtype), t))
        v_hat = s / (1 - tf.pow(tf.constant(b2, v.dtype), t))
        v.assign_sub(lr * m_hat / (tf.sqrt(v_hat) + self.eps))


def build_optimizer(
    model, optimizer: str, lr: float, momentum: float = 0.9, weight_decay: float = 0.0
) -> _Optimizer:
    """``optimizer`` (lars, sgd or adam); ``model`` is accepted for symmetry with torch, where
    the parameter groups are fixed at construction (here the rank rule applies per variable).

    Raises:
        ValueError: unknown optimizer.
    """
    del model
    if optimizer == "lars":
        return LARS(lr, momentum=momentum, weight_decay=weight_decay)
    if optimizer == "sgd":
        return SGD(lr, momentum=momentum, weight_decay=weight_decay)
    if optimizer == "adam":
        return Adam(lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer: expected lars, sgd or adam, got {optimizer!r}")


def set_learning_rate(optimizer: _Optimizer, lr: float) -> None:
    """Set the learning rate for the next step (a variable: no retrace)."""
    optimizer.learning_rate.assign(float(lr))
