"""The official checkpoints, torch's side: read facebookresearch/moco's ``.pth.tar``, run the
independent reference (torchvision's resnet50 with the checkpoint's ``state_dict`` loaded as it
is), and record each layer's output of our model for the import's proof.

``tf_impl.official`` is the same three functions for the format TensorFlow reads (SimCLR's TF1
checkpoints). The name mapping between them is framework-free: ``shared.run.official``.
Activations are returned in the canonical layout (NHWC), as NumPy.
"""

from __future__ import annotations

import reprlib

import numpy as np
import torch
import torchvision

from shared.parity.weights import WeightsError, networks
from torch_impl.localise import named_layers

__all__ = ["FORMATS", "layer_outputs", "read_checkpoint", "reference_outputs"]

FORMATS = ("moco",)  # the formats this framework reads; tf_impl.official reads the others
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise WeightsError(f"format: torch reads {FORMATS}, not {fmt!r} (tf_impl.official does)")


def read_checkpoint(path, fmt: str) -> dict:
    """An official MoCo checkpoint as NumPy: ``{"epoch", "arch", "state_dict": {key: array},
    "optimizer_entries": int}``.

    The field types are checked by ``shared.run.official.moco_state``; the tensors are checked
    here, where they are converted.

    Raises:
        WeightsError: not a readable ``torch.save`` file, not a dict with a ``state_dict``, or
            a ``state_dict`` entry that is not a tensor of numbers.
    """
    _check_format(fmt)
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many kinds; each means "not a checkpoint"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(f"checkpoint: {str(path)!r} is not a readable .pth.tar ({first})") from e
    if not isinstance(ck, dict) or not isinstance(ck.get("state_dict"), dict):
        raise WeightsError(
            f"checkpoint: {str(path)!r} has no 'state_dict' dict (main_moco.py saves one)"
        )
    opt = ck.get("optimizer") if isinstance(ck.get("optimizer"), dict) else {}
    state = opt.get("state")
    return {
        "epoch": ck.get("epoch", 0),
        "arch": ck.get("arch"),
        "state_dict": {k: _array(path, k, v) for k, v in ck["state_dict"].items()},
        "optimizer_entries": len(state) if isinstance(state, dict) else 0,
    }


def _array(path, name, value) -> np.ndarray:
    """A ``state_dict`` entry as NumPy.

    Raises:
        WeightsError: not a tensor, or of a dtype NumPy has not (bfloat16, quantised).
    """
    if not isinstance(value, torch.Tensor):
        raise WeightsError(
            f"checkpoint: {str(path)!r}: state_dict[{reprlib.repr(name)}]: expected a tensor, "
            f"got {type(value).__name__} {reprlib.repr(value)}"
        )
    try:
        return value.detach().cpu().numpy()
    except TypeError as e:  # torch: "Got unsupported ScalarType BFloat16"
        raise WeightsError(
            f"checkpoint: {str(path)!r}: state_dict[{reprlib.repr(name)}]: a {value.dtype} "
            "tensor, expected float32 or float64"
        ) from e


def _nhwc(t: torch.Tensor) -> np.ndarray:
    a = t.detach().cpu().numpy().copy()  # a copy: an in-place ReLU follows many layers
    return np.transpose(a, (0, 2, 3, 1)) if a.ndim == 4 else a


def _record(module: torch.nn.Module, names: dict, out: dict) -> list:
    """Forward hooks writing each named module's output into ``out[names[module]]``."""

    def hook(m, _inputs, y):
        out[names[m]] = _nhwc(y)

    return [m.register_forward_hook(hook) for m in names]


@torch.no_grad()
def reference_outputs(checkpoint: dict, fmt: str, images: np.ndarray, dtype: str) -> dict:
    """Each layer's output of the official network, built as ``moco/builder.py`` builds it
    (torchvision ``resnet50(num_classes=dim)``, v2's ``fc`` a Linear-ReLU-Linear) with the
    checkpoint's ``state_dict`` loaded strictly, in eval mode.

    Args:
        checkpoint: from :func:`read_checkpoint`.
        images: (B, H, W, 3), already normalised as the checkpoint expects.
        dtype: "float32" or "float64".

    Returns:
        ``{"<part>.<torchvision module>": output, "<part>.h": (B, 2048), "<part>.z": (B, D)}``
        for both parts (``encoder_q``, ``encoder_k``); conv and BN outputs NHWC.
    """
    _check_format(fmt)
    sd = checkpoint["state_dict"]
    dim = sd["module.queue"].shape[0]
    x = torch.from_numpy(np.transpose(images, (0, 3, 1, 2)).copy()).to(DTYPES[dtype])
    out: dict[str, np.ndarray] = {}
    for part in ("encoder_q", "encoder_k"):
        net = torchvision.models.resnet50(weights=None, num_classes=dim)
        if f"module.{part}.fc.0.weight" in sd:  # builder.py's mlp=True
            net.fc = torch.nn.Sequential(torch.nn.Linear(2048, 2048), torch.nn.ReLU(), net.fc)
        prefix = f"module.{part}."
        own = {k[len(prefix) :]: torch.from_numpy(v) for k, v in sd.items() if k.startswith(prefix)}
        net.load_state_dict(own, strict=True)
        net = net.to(DTYPES[dtype]).eval()
        kinds = (torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.Linear)
        names = {m: f"{part}.{n}" for n, m in net.named_modules() if isinstance(m, kinds)}
        names[net.avgpool] = f"{part}.h"
        hooks = _record(net, names, out)
        try:
            out[f"{part}.z"] = net(x).numpy()
        finally:
            for h in hooks:
                h.remove()
        out[f"{part}.h"] = out[f"{part}.h"].reshape(len(images), -1)
    return out


@torch.no_grad()
def layer_outputs(model, images: np.ndarray) -> dict:
    """Each conv, BN and dense layer's output of our ``model`` (eval mode) under its canonical
    layer name (``<part>/encoder/conv<i>``, ...; the localiser's walk,
    ``torch_impl.localise.named_layers``), plus ``<net>/h`` and ``<net>/z``.

    Args:
        model: a SimCLR or MoCo of ``torch_impl`` (its dtype is the one computed in).
        images: (B, H, W, 3).
    """
    names = {m: name for name, (_, m, _) in named_layers(model).items()}
    dtype = next(model.parameters()).dtype
    x = torch.from_numpy(np.transpose(images, (0, 3, 1, 2)).copy()).to(dtype)
    out: dict[str, np.ndarray] = {}
    hooks = _record(model, names, out)
    was_training = model.training
    model.eval()
    try:
        for name, net in networks(model).items():
            h, z = net(x)
            out[f"{name}/h"], out[f"{name}/z"] = h.numpy(), z.numpy()
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return out
