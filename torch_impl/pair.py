"""Parity for any pair of models: the torch module's side.

``discover`` runs the module once with forward hooks on its parametric layers (convolutions,
grouped and depthwise included, Linear, BatchNorm, LayerNorm, Embedding) and returns them in
the order they ran, with the input and output each one saw; the other functions run one layer
alone on a given input, take one optimiser step, train a few steps, and read or write the
weights in the canonical layout (``shared.parity.pair``). Activations cross in the canonical
layout: (N, H, W, C) for the 4-D inputs of convolutions and BatchNorm, as they are otherwise.
Each function leaves the module's weights and statistics as it found them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from shared.parity.pair import (
    ROLES,
    TORCH_ROLES,
    Layer,
    canonical_to_torch,
    cosine_lr,
    torch_to_canonical,
)

__all__ = [
    "IMAGE_KINDS",
    "discover",
    "kind_of",
    "module_roles",
    "optimizer_step",
    "read_weights",
    "run_layer",
    "to_canonical_act",
    "train_steps",
    "write_weights",
]

IMAGE_KINDS = ("conv", "dwconv", "bn")  # kinds whose 4-D activations are NCHW in torch
TRAINABLE = ("kernel", "bias", "gamma", "beta", "embeddings")
SLOT_NAMES = {"momentum_buffer": "momentum", "exp_avg": "m", "exp_avg_sq": "v"}


def kind_of(m: nn.Module) -> str | None:
    """The :data:`shared.parity.pair.KINDS` kind of a module, or None if it has no weights of
    its own that the localiser compares."""
    if isinstance(m, nn.Conv2d):
        g = m.groups
        return "dwconv" if g > 1 and g == m.in_channels and m.out_channels % g == 0 else "conv"
    if isinstance(m, nn.Linear):
        return "dense"
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return "bn"
    if isinstance(m, nn.LayerNorm):
        return "ln"
    if isinstance(m, nn.Embedding):
        return "embedding"
    return None


def to_canonical_act(kind: str, t) -> np.ndarray:
    """An activation as NumPy, NCHW -> NHWC for a 4-D one of an image kind."""
    a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 and kind in IMAGE_KINDS else a


def _batch(x: np.ndarray, dtype) -> torch.Tensor:
    """A batch as a tensor: floats in the model's dtype, integers (token ids) as int64."""
    t = torch.from_numpy(np.ascontiguousarray(x))
    return t.to(dtype) if t.is_floating_point() else t.long()


def _from_canonical_act(kind: str, a: np.ndarray, dtype) -> torch.Tensor:
    a = a.transpose(0, 3, 1, 2) if a.ndim == 4 and kind in IMAGE_KINDS else a
    return torch.from_numpy(np.ascontiguousarray(a)).to(dtype)


def module_roles(kind: str, m: nn.Module) -> dict:
    """``{canonical role: tensor}`` of one module (roles it lacks, such as a bias, left out)."""
    out = {}
    for role in ROLES[kind]:
        t = getattr(m, TORCH_ROLES[role], None)
        if isinstance(t, torch.Tensor):
            out[role] = t
    return out


def _config(kind: str, m: nn.Module, x: torch.Tensor) -> dict:
    if kind in ("conv", "dwconv"):
        pad = m.padding if not isinstance(m.padding, str) else (m.padding,) * 2
        return {
            "stride": int(m.stride[0]),
            "padding": tuple(pad),
            "groups": int(m.groups),
            "dilation": int(m.dilation[0]),
        }
    if kind == "bn":
        per_channel = x.shape[0] * int(np.prod(x.shape[2:]))
        return {"momentum": m.momentum, "eps": m.eps, "num_splits": 1, "count": per_channel}
    if kind == "ln":
        return {"eps": m.eps}
    return {}


def _layer(name: str, kind: str, m: nn.Module, x: torch.Tensor) -> Layer:
    groups = getattr(m, "groups", 1)
    shapes = {
        r: torch_to_canonical(kind, r, np.broadcast_to(np.float32(0), t.shape), groups).shape
        for r, t in module_roles(kind, m).items()
    }
    return Layer(name, kind, shapes, _config(kind, m, x))


def _snapshot(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def discover(model: nn.Module, x: np.ndarray) -> tuple:
    """Run ``model`` once in training mode on ``x`` and hook every parametric layer.

    Args:
        model: any torch module.
        x: the input batch in torch's layout (e.g. (N, C, H, W)).

    Returns:
        ``(layers, modules, seen, output)``: the :class:`Layer` sequence in the order the layers
        first ran; ``{name: module}``; ``{name: (input, output)}`` of each first call (torch
        tensors); the model's output. A layer the forward pass never calls is left out.
    """
    names = {m: n for n, m in model.named_modules()}
    seen, order, hooks = {}, [], []

    def keep(name):
        def hook(module, inputs, out) -> None:
            if name not in seen:
                seen[name] = (inputs[0].detach().clone(), out.detach().clone())
                order.append(name)

        return hook

    for m, n in names.items():
        if kind_of(m) is not None:
            hooks.append(m.register_forward_hook(keep(n)))
    state, was_training = _snapshot(model), model.training
    dtype = next(model.parameters()).dtype
    try:
        model.train()
        with torch.no_grad():
            output = model(_batch(x, dtype))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
        model.load_state_dict(state)
    modules = {n: m for m, n in names.items() if n in seen}
    layers = [_layer(n, kind_of(modules[n]), modules[n], seen[n][0]) for n in order]
    return layers, modules, seen, output


def read_weights(modules: dict, layers: list) -> dict:
    """``{layer name: {role: canonical array (a copy)}}``."""
    out = {}
    for layer in layers:
        m = modules[layer.name]
        out[layer.name] = {
            r: torch_to_canonical(
                layer.kind, r, t.detach().cpu().numpy(), getattr(m, "groups", 1)
            ).copy()
            for r, t in module_roles(layer.kind, m).items()
        }
    return out


def write_weights(modules: dict, layers: list, weights: dict) -> None:
    """Set each layer's weights from ``{layer name: {role: canonical array}}``, bit-exact."""
    with torch.no_grad():
        for layer in layers:
            for r, t in module_roles(layer.kind, modules[layer.name]).items():
                a = np.ascontiguousarray(canonical_to_torch(layer.kind, r, weights[layer.name][r]))
                t.copy_(torch.from_numpy(a).to(t.dtype))


def run_layer(
    kind: str,
    fn,
    roles: dict,
    x: np.ndarray,
    gy: np.ndarray,
    groups: int = 1,
    dtype: torch.dtype | None = None,
) -> dict:
    """One training-mode call of ``fn`` on ``x`` and its backward from ``gy`` (canonical).

    The localiser of the project's own encoders (``torch_impl.localise``) runs its layers here
    too.

    Args:
        kind: the layer's kind (the activations' and gradients' layouts follow from it).
        fn: the module (or function) to call.
        roles: ``{canonical role: tensor}``; the trainable ones get gradients.
        x, gy: the input and the upstream gradient, canonical layout.
        groups: the conv's groups, for the depthwise kernel's layout.
        dtype: the input's dtype (default: the first weight's, else float64).

    Returns:
        ``{"forward", "grad/input", "grad/<role>", "running/<role>"}`` (canonical layouts).
    """
    params = {r: t for r, t in roles.items() if r in TRAINABLE}
    flags = {r: t.requires_grad for r, t in params.items()}
    if dtype is None:
        dtype = next(iter(params.values())).dtype if params else torch.float64
    ids = np.issubdtype(np.asarray(x).dtype, np.integer)  # an Embedding's: no input gradient
    xt = _batch(x, dtype) if ids else _from_canonical_act(kind, np.asarray(x), dtype)
    wrt = list(params.values()) if ids else [xt.requires_grad_(), *params.values()]
    try:
        for t in params.values():
            t.requires_grad_(True)
        y = fn(xt)
        upstream = _from_canonical_act(kind, np.asarray(gy), y.dtype)
        grads = list(torch.autograd.grad(y, wrt, upstream))
    finally:
        for r, t in params.items():
            t.requires_grad_(flags[r])
    out = {"forward": to_canonical_act(kind, y)}
    if not ids:
        out["grad/input"] = to_canonical_act(kind, grads.pop(0))
    for r, g in zip(params, grads):
        out[f"grad/{r}"] = torch_to_canonical(kind, r, g.numpy(), groups).copy()
    for r in ("moving_mean", "moving_variance"):
        if r in roles:
            out[f"running/{r}"] = roles[r].detach().numpy().copy()
    return out


def _optimizer(params: list, optimizer: str, lr: float, momentum: float, betas, eps: float):
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum)
    return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps)


def optimizer_step(
    modules: dict,
    layers: list,
    grads: dict,
    optimizer: str = "sgd",
    lr: float = 0.1,
    momentum: float = 0.9,
    betas: tuple = (0.9, 0.999),
    eps: float = 1e-8,
) -> dict:
    """One step of ``torch.optim.SGD`` or ``Adam`` fed ``grads`` (canonical,
    ``{layer: {role: g}}``), from fresh slots.

    Returns:
        ``{layer: {"slot/<role>/<slot>": ..., "step/<role>": updated weight}}`` (canonical;
        slots named momentum, m, v).
    """
    walk = [
        (layer, r, t)
        for layer in layers
        for r, t in module_roles(layer.kind, modules[layer.name]).items()
        if r in grads.get(layer.name, {})
    ]
    saved = [t.detach().clone() for *_, t in walk]
    out: dict = {layer.name: {} for layer in layers}
    try:
        opt = _optimizer([t for *_, t in walk], optimizer, lr, momentum, betas, eps)
        for layer, r, t in walk:
            g = canonical_to_torch(layer.kind, r, grads[layer.name][r])
            t.grad = torch.from_numpy(np.ascontiguousarray(g)).to(t.dtype)
        opt.step()
        for layer, r, t in walk:
            groups = getattr(modules[layer.name], "groups", 1)
            for s, v in opt.state[t].items():
                if s in SLOT_NAMES:
                    out[layer.name][f"slot/{r}/{SLOT_NAMES[s]}"] = torch_to_canonical(
                        layer.kind, r, v.numpy(), groups
                    ).copy()
            out[layer.name][f"step/{r}"] = torch_to_canonical(
                layer.kind, r, t.detach().numpy(), groups
            ).copy()
    finally:
        with torch.no_grad():
            for (*_, t), s in zip(walk, saved):
                t.grad = None
                t.copy_(s)
    return out


def train_steps(
    model: nn.Module,
    modules: dict,
    layers: list,
    batches: list,
    targets: list,
    optimizer: str = "sgd",
    lr: float = 0.1,
    momentum: float = 0.9,
) -> tuple[list, list]:
    """Train ``model`` on ``batches`` (torch layout) against ``targets`` (its output's shape):
    loss ``mean((model(x) - t)^2)``, the learning rate :func:`cosine_lr` per step.

    Returns:
        ``(losses, weights)``: each step's loss (before its update) and
        :func:`read_weights` after it. The model keeps the trained weights.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    opt = _optimizer(params, optimizer, lr, momentum, (0.9, 0.999), 1e-8)
    dtype = params[0].dtype
    model.train()
    losses, weights = [], []
    for k, (x, t) in enumerate(zip(batches, targets)):
        for group in opt.param_groups:
            group["lr"] = cosine_lr(lr, k, len(batches))
        opt.zero_grad()
        y = model(torch.from_numpy(np.ascontiguousarray(x)).to(dtype))
        loss = ((y - torch.from_numpy(np.ascontiguousarray(t)).to(dtype)) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        weights.append(read_weights(modules, layers))
    return losses, weights
