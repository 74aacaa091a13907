"""The device a parity run uses, and TF32: the GPU float32 mode that rounds matmul and conv
inputs to 10 mantissa bits.

On NVIDIA Ampere and newer GPUs both frameworks can run float32 matmuls and convolutions on
tensor cores in TF32 (8-bit exponent, 10-bit mantissa: inputs rounded to about 3 decimal
digits, products accumulated in float32). The defaults differ, which is a parity difference in
its own right:

=============  =====================  ==============================================
               matmul                 convolution
=============  =====================  ==============================================
PyTorch        off (``allow_tf32``)   on (``torch.backends.cudnn.allow_tf32``)
TensorFlow     on                     on (one switch for both)
=============  =====================  ==============================================

``tf_impl.devices`` is the same file in TensorFlow. ``rosetta parity`` sets both frameworks
the same way (``--tf32``, default off) and its report says which. On a CPU the setting has no
effect.
"""

from __future__ import annotations

import torch

from shared.run.errors import ConfigError

__all__ = ["DEVICES", "check_device", "set_tf32", "tf32_policy"]

DEVICES = ("cpu", "cuda")


def tf32_policy() -> dict:
    """``{"matmul": bool, "conv": bool}``: whether float32 matmuls and convolutions may run in
    TF32 on a GPU that has it.

    Example:
        >>> sorted(tf32_policy())
        ['conv', 'matmul']
    """
    return {
        "matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "conv": bool(torch.backends.cudnn.allow_tf32),
    }


def set_tf32(enabled: bool | dict) -> dict:
    """Allow (``True``) or forbid (``False``) TF32 for both matmuls and convolutions, or set a
    policy that :func:`tf32_policy` returned, process-wide; returns the policy before the
    change, so that ``set_tf32(before)`` restores it exactly."""
    if isinstance(enabled, bool):
        want = {"matmul": enabled, "conv": enabled}
    elif isinstance(enabled, dict) and sorted(enabled) == ["conv", "matmul"]:
        want = {k: bool(v) for k, v in enabled.items()}
    else:
        raise TypeError(f"enabled: expected a bool or a tf32_policy() dict, got {enabled!r}")
    before = tf32_policy()
    torch.backends.cuda.matmul.allow_tf32 = want["matmul"]
    torch.backends.cudnn.allow_tf32 = want["conv"]
    return before


def check_device(device: str) -> torch.device:
    """``device`` (``"cpu"`` or ``"cuda"``) as a ``torch.device``.

    Raises:
        ConfigError: another name, or ``"cuda"`` where torch sees no CUDA GPU.
    """
    if device not in DEVICES:
        raise ConfigError(f"device: expected one of {DEVICES}, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device: 'cuda' was asked for, but torch sees no CUDA GPU "
            "(tests hide them unless ROSETTA_TEST_GPU=1; see docs/usage.md)"
        )
    return torch.device(device)
