"""Devices and float32 policy: the GPU hiding of ``conftest.py``, ``check_device``'s errors and
the TF32 switch of each framework (``torch_impl.devices``, ``tf_impl.devices``)."""

import os

import pytest

from shared.run.config import PACKAGES
from shared.run.errors import ConfigError

GPU_TESTS = os.environ.get("ROSETTA_TEST_GPU", "0") not in ("", "0")


def _devices(framework):
    pytest.importorskip(framework)
    return __import__(f"{PACKAGES[framework]}.devices", fromlist=["x"])


@pytest.mark.skipif(GPU_TESTS, reason="ROSETTA_TEST_GPU=1 leaves the GPUs visible")
def test_gpus_are_hidden_by_default():
    import tensorflow as tf
    import torch

    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
    assert not torch.cuda.is_available() and not tf.config.list_physical_devices("GPU")


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_tf32_switch_sets_both_kinds_and_returns_the_old_policy(framework):
    dev = _devices(framework)
    start = dev.tf32_policy()
    try:
        assert dev.set_tf32(False) == start
        assert dev.tf32_policy() == {"matmul": False, "conv": False}
        assert dev.set_tf32(True) == {"matmul": False, "conv": False}
        assert dev.tf32_policy() == {"matmul": True, "conv": True}
    finally:
        dev.set_tf32(start["matmul"])
        if framework == "torch":  # torch's two switches are separate: restore both
            import torch

            torch.backends.cudnn.allow_tf32 = start["conv"]
    assert dev.tf32_policy() == start
    with pytest.raises(TypeError, match="enabled"):
        dev.set_tf32("off")


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_check_device_names_the_argument(framework):
    dev = _devices(framework)
    assert str(dev.check_device("cpu")).lower().strip("/").startswith("cpu")
    with pytest.raises(ConfigError, match=r"device: expected one of \('cpu', 'cuda'\), got 'tpu'"):
        dev.check_device("tpu")
    if not GPU_TESTS:
        with pytest.raises(ConfigError, match="device: 'cuda' was asked for, but"):
            dev.check_device("cuda")
