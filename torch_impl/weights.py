"""The canonical weight walk in PyTorch: every weight of a model under its framework-neutral name.

``shared.parity.weights`` defines the names and layouts; ``tf_impl.weights`` is the same walk in the other framework. Checkpoints, weight export and import, ``rosetta port`` and the parity dumps all read a model through :func:`entries`.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["entries", "export_weights", "import_weights", "layers"]


def layers(module: torch.nn.Module):
    """``(kind, {role: tensor})`` for each conv, dense and BN layer, in architecture order."""
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d):
            yield "conv", {"kernel": m.weight, **({"bias": m.bias} if m.bias is not None else {})}
        elif isinstance(m, torch.nn.Linear):
            yield "dense", {"kernel": m.weight, **({"bias": m.bias} if m.bias is not None else {})}
        elif isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            yield (
                "bn",
                {
                    "gamma": m.weight,
                    "beta": m.bias,
                    "moving_mean": m.running_mean,
                    "moving_variance": m.running_var,
                },
            )


def entries(model):
    """``(canonical name, kind, role, tensor)`` for every weight of the model."""
    from shared.parity.weights import canonical_name, model_parts

    for prefix, module in model_parts(model):
        counts: dict[str, int] = {}
        for kind, roles in layers(module):
            i = counts[kind] = counts.get(kind, -1) + 1
            for role, t in roles.items():
                yield canonical_name(prefix, kind, i, role), kind, role, t


def export_weights(model) -> dict[str, np.ndarray]:
    """Every weight (BN statistics, MoCo's queue and pointer included) in the canonical layout."""
    from shared.parity.weights import method_state, to_canonical

    state = {
        name: to_canonical(kind, role, t.detach().cpu().numpy(), "torch")
        for name, kind, role, t in entries(model)
    }
    state.update({k: v.detach().cpu().numpy() for k, v in method_state(model).items()})
    return state


@torch.no_grad()
def import_weights(model, state: dict[str, np.ndarray]) -> None:
    """Load a canonical ``state`` (``shared.parity.weights``) into ``model``, in place.

    Raises:
        shared.parity.weights.WeightsError: an unknown, missing or misshapen entry, named.
    """
    from shared.parity.weights import check_state, from_canonical, method_state, to_canonical

    walk = list(entries(model))
    expected = {
        name: to_canonical(kind, role, np.empty(tuple(t.shape)), "torch").shape
        for name, kind, role, t in walk
    }
    extra = method_state(model)  # MoCo's queue (K, D) and pointer ()
    expected.update({k: tuple(v.shape) for k, v in extra.items()})
    check_state(expected, state)
    for name, kind, role, t in walk:
        t.copy_(
            torch.from_numpy(
                np.ascontiguousarray(from_canonical(kind, role, state[name], "torch"))
            ).to(t.dtype)
        )
    for k, v in extra.items():
        v.copy_(torch.from_numpy(np.asarray(state[k])).to(v.dtype))
