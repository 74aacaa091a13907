"""Optimisers and the learning-rate schedule, in PyTorch.

Each does the update written in ``shared.oracle.optim`` and is tested equal to it in float64:

* ``sgd``: ``torch.optim.SGD`` (momentum, coupled weight decay on every tensor);
* ``lars``: :class:`LARS`, weights adapted and decayed, biases and BN parameters not;
* ``adam``: ``torch.optim.Adam`` (L2 weight decay added to the gradient).

The learning rate is set once per step by the training loop from
``shared.oracle.optim.warmup_cosine`` (:func:`set_learning_rate`), the same function the TensorFlow
loop calls, so there is no scheduler object whose state could drift.
"""

from __future__ import annotations

import torch

from shared.oracle.optim import warmup_cosine

__all__ = ["LARS", "build_optimizer", "param_groups", "set_learning_rate", "warmup_cosine"]


class LARS(torch.optim.Optimizer):
    """LARS (You et al. 2017) as SimCLR uses it; ``shared.oracle.optim.lars_step`` is its oracle.

    SGD with momentum whose step for each adapted tensor is scaled by the trust ratio
    ``eta ||w|| / (||g + wd w|| + eps)``. Parameter groups with ``lars=False`` (biases and
    BatchNorm, see :func:`param_groups`) get neither weight decay nor the trust ratio.

    Example:
        >>> w = torch.nn.Parameter(torch.ones(2, 2))
        >>> w.grad = torch.ones(2, 2)
        >>> LARS([w], lr=1.0, weight_decay=0.0, trust_coefficient=0.5).step()
        >>> round(w[0, 0].item(), 6)  # trust = 0.5 * 2 / 2 = 0.5; w <- 1 - 1.0 * 0.5
        0.5
    """

    def __init__(
        self,
        params,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 1e-6,
        trust_coefficient: float = 0.001,
        eps: float = 1e-9,
    ):
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            lars=True,
            trust_coefficient=trust_coefficient,
            eps=eps,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if g["lars"]:
                    d = d.add(p, alpha=g["weight_decay"])
                    w_norm, d_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d)
                    ratio = g["trust_coefficient"] * w_norm / (d_norm + g["eps"])
                    d = d.mul(
                        torch.where((w_norm > 0) & (d_norm > 0), ratio, torch.ones_like(ratio))
                    )
                buf = self.state[p].get("momentum_buffer")
                if buf is None:
                    buf = self.state[p]["momentum_buffer"] = d.clone()
                else:
                    buf.mul_(g["momentum"]).add_(d)
                p.add_(buf, alpha=-g["lr"])
        return loss


def param_groups(model: torch.nn.Module, weight_decay: float, optimizer: str) -> list[dict]:
    """Parameter groups: for LARS, weights (ndim >= 2) apart from biases and BN parameters.

    Only trainable parameters are included (MoCo's key encoder is not).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer != "lars":
        return [{"params": params, "weight_decay": weight_decay}]
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay, "lars": True},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0, "lars": False},
    ]


def build_optimizer(
    model: torch.nn.Module,
    optimizer: str,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """``optimizer`` (lars, sgd or adam) over the model's trainable parameters.

    Raises:
        ValueError: unknown optimizer.
    """
    groups = param_groups(model, weight_decay, optimizer)
    if optimizer == "lars":
        return LARS(groups, lr=lr, momentum=momentum)
    if optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr)
    raise ValueError(f"optimizer: expected lars, sgd or adam, got {optimizer!r}")


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate (the loop calls this before each step)."""
    for g in optimizer.param_groups:
        g["lr"] = float(lr)
