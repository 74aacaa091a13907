"""The localiser's PyTorch side: capture each layer's input, then run each layer on it alone.

``shared.parity.localise`` compares the results with ``tf_impl.localise``'s, layer by layer.
Layers are the conv, dense and BN layers of the canonical weight walk (``torch_impl.weights``),
named ``<part>/<kind><index>`` (``net/encoder/conv0``); each net also gets a ``<net>/normalize``
stage after its head. Arrays cross in the canonical layout: NHWC activations, HWIO kernels.
Each function leaves the model's weights and statistics as it found them.
"""

from __future__ import annotations

import numpy as np
import torch

from shared.parity.localise import PROBE
from shared.parity.weights import from_canonical, to_canonical
from torch_impl.models import normalize
from torch_impl.pair import run_layer
from torch_impl.weights import entries, export_weights, import_weights

__all__ = ["capture", "layer_outputs", "named_layers", "optimizer_step"]

SLOT_NAMES = {"momentum_buffer": "momentum", "exp_avg": "m", "exp_avg_sq": "v"}


def _canonical(t: torch.Tensor) -> np.ndarray:
    a = t.detach().cpu().numpy()
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a  # NCHW -> NHWC


def _to_torch(a: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    a = a.transpose(0, 3, 1, 2) if a.ndim == 4 else a  # NHWC -> NCHW
    return torch.from_numpy(np.ascontiguousarray(a)).to(like.dtype)


def named_layers(model) -> dict[str, tuple[str, torch.nn.Module, dict]]:
    """``{layer: (kind, module, {role: tensor})}`` in the canonical walk's order."""
    owner = {}
    for m in model.modules():
        for attr in ("weight", "running_mean"):
            t = getattr(m, attr, None)
            if isinstance(t, torch.Tensor):
                owner[id(t)] = m
    out: dict = {}
    for name, kind, role, t in entries(model):
        layer = name.rsplit("/", 1)[0]
        if layer not in out:  # the first role is the weight (or gamma) of its module
            out[layer] = (kind, owner[id(t)], {})
        out[layer][2][role] = t
    return out


def _snapshot(model) -> dict:
    """``export_weights``, copied: its arrays share memory with the model's tensors."""
    return {k: np.array(v, copy=True) for k, v in export_weights(model).items()}


def _nets(layers: dict) -> list[str]:
    return list(dict.fromkeys(name.split("/")[0] for name in layers))


def _config(kind: str, m: torch.nn.Module, x: torch.Tensor) -> dict:
    if kind == "conv":
        return {"stride": int(m.stride[0]), "padding": int(m.padding[0])}
    if kind == "bn":
        splits = int(getattr(m, "num_splits", 1))
        per_channel = x.shape[0] // splits * int(np.prod(x.shape[2:]))
        return {"momentum": m.momentum, "eps": m.eps, "num_splits": splits, "count": per_channel}
    return {}


def capture(model, x: np.ndarray, seed: int = 0) -> dict:
    """Each layer's input in a training-mode forward pass of every net on ``x``.

    Args:
        model: a torch ``SimCLR`` or ``MoCo``.
        x: (B, H, W, 3) images, NHWC.
        seed: seeds the upstream gradient ``gy`` drawn for each layer (standard normal).

    Returns:
        ``{layer: {"kind", "config", "x", "gy", "before"}}`` in forward order; ``before`` is the
        layer's weights (and BN statistics) in the canonical layout. The ``<net>/normalize``
        record's input is the head's output with one probe row appended: its first row times
        ``shared.parity.localise.PROBE``.
    """
    layers, state, seen = named_layers(model), _snapshot(model), {}

    def keep(layer):
        def hook(module, inputs, out) -> None:  # returns None: the output is left as it is
            seen.setdefault(layer, (inputs[0].clone(), out.clone()))

        return hook

    hooks = [m.register_forward_hook(keep(n)) for n, (_, m, _) in layers.items()]
    was_training, heads = model.training, {}
    xt = _to_torch(np.asarray(x), next(model.parameters()))
    try:
        model.train()
        with torch.no_grad():
            for net in _nets(layers):
                heads[net] = getattr(model, net)(xt)[1]
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
        import_weights(model, state)
    return _records(layers, seen, heads, seed)


def _records(layers: dict, seen: dict, heads: dict, seed: int) -> dict:
    """:func:`capture`'s records from the hooks' ``(input, output)`` and each net's head output."""
    rng, records = np.random.default_rng(seed), {}
    last = {layer.split("/")[0]: layer for layer in layers}  # each net's last layer
    for layer, (kind, m, roles) in layers.items():
        xin, yout = seen[layer]
        records[layer] = {
            "kind": kind,
            "config": _config(kind, m, xin),
            "x": _canonical(xin),
            "gy": rng.standard_normal(_canonical(yout).shape),
            "before": {
                r: to_canonical(kind, r, t.detach().numpy(), "torch").copy()
                for r, t in roles.items()
            },
        }
        net = layer.split("/")[0]
        if layer == last[net]:
            z = _canonical(heads[net])
            zp = np.concatenate([z, z[:1] * PROBE])
            records[f"{net}/normalize"] = {
                "kind": "normalize",
                "config": {"probe": PROBE},
                "x": zp,
                "gy": rng.standard_normal(zp.shape),
                "before": {},
            }
    return records


def _run_layer(kind: str, fn, roles: dict, rec: dict, like: torch.Tensor) -> dict:
    """One training-mode call of ``fn`` on the record's input and its backward from ``gy``:
    ``torch_impl.pair.run_layer``, the one layer runner of both localisers."""
    return run_layer(kind, fn, roles, rec["x"], rec["gy"], dtype=like.dtype)


def layer_outputs(model, records: dict) -> dict:
    """Each layer run alone, in training mode, on its record's input.

    Returns:
        ``{layer: {"forward", "grad/input", "grad/<role>", "running/<role>"}}``: the output, the
        input and weight gradients for the record's ``gy``, and BN's running statistics after
        the call (canonical layouts).
    """
    layers, state, was_training = named_layers(model), _snapshot(model), model.training
    like = next(model.parameters())
    out = {}
    try:
        model.train()
        for layer, rec in records.items():
            if rec["kind"] == "normalize":
                out[layer] = _run_layer("normalize", normalize, {}, rec, like)
            else:
                kind, m, roles = layers[layer]
                out[layer] = _run_layer(kind, m, roles, rec, like)
    finally:
        model.train(was_training)
        import_weights(model, state)
    return out


def optimizer_step(
    model,
    grads: dict,
    optimizer: str = "sgd",
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> dict:
    """One step of ``torch_impl.optim.build_optimizer`` fed ``grads``.

    Args:
        grads: ``{canonical weight name: gradient}`` (canonical layout) for the trainable
            weights; the others get none.

    Returns:
        ``{canonical weight name: {"slot/<slot>": ..., "step": updated weight}}``; slots are
        named as ``tf_impl.optim``'s (momentum; m, v).
    """
    from torch_impl.optim import build_optimizer

    state = _snapshot(model)
    walk = [(n, k, r, t) for n, k, r, t in entries(model) if n in grads and t.requires_grad]
    try:
        opt = build_optimizer(model, optimizer, lr, momentum, weight_decay)
        for name, kind, role, t in walk:
            g = np.ascontiguousarray(from_canonical(kind, role, grads[name], "torch"))
            t.grad = torch.from_numpy(g).to(t.dtype)
        opt.step()
        out = {}
        for name, kind, role, t in walk:
            slots = {
                f"slot/{SLOT_NAMES[s]}": to_canonical(kind, role, v.numpy(), "torch").copy()
                for s, v in opt.state[t].items()
                if s in SLOT_NAMES
            }
            out[name] = {
                **slots,
                "step": to_canonical(kind, role, t.detach().numpy(), "torch").copy(),
            }
    finally:
        for *_, t in walk:
            t.grad = None
        import_weights(model, state)
    return out
