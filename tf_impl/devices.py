"""The device a parity run uses, and TF32: the GPU float32 mode that rounds matmul and conv
inputs to 10 mantissa bits.

The TensorFlow side of ``torch_impl.devices`` (whose docstring has the table of both
frameworks' defaults). TensorFlow enables TF32 by default for both matmuls and convolutions,
with one switch (``tf.config.experimental.enable_tensor_float_32_execution``), so the policy's
two entries always move together here. On a CPU the setting has no effect.
"""

from __future__ import annotations

import tensorflow as tf

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
    on = bool(tf.config.experimental.tensor_float_32_execution_enabled())
    return {"matmul": on, "conv": on}


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
    if want["matmul"] != want["conv"]:
        raise ValueError(
            f"enabled: TensorFlow has one TF32 switch for matmuls and convolutions, got {want}"
        )
    before = tf32_policy()
    tf.config.experimental.enable_tensor_float_32_execution(want["matmul"])
    return before


def check_device(device: str) -> str:
    """``device`` (``"cpu"`` or ``"cuda"``) as a TensorFlow device name (``/CPU:0``, ``/GPU:0``).

    Raises:
        ConfigError: another name, or ``"cuda"`` where TensorFlow sees no GPU.
    """
    if device not in DEVICES:
        raise ConfigError(f"device: expected one of {DEVICES}, got {device!r}")
    if device == "cuda" and not tf.config.list_physical_devices("GPU"):
        raise ConfigError(
            "device: 'cuda' was asked for, but TensorFlow sees no GPU "
            "(tests hide them unless ROSETTA_TEST_GPU=1; see docs/usage.md)"
        )
    return "/GPU:0" if device == "cuda" else "/CPU:0"
