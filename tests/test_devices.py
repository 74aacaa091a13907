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
        dev.set_tf32(start)  # the exact policy back (torch's default mixes the two)
    assert dev.tf32_policy() == start
    with pytest.raises(TypeError, match="enabled"):
        dev.set_tf32("off")
    mixed = {"matmul": False, "conv": True}  # torch's default
    if framework == "torch":
        dev.set_tf32(mixed)
        assert dev.tf32_policy() == mixed
        dev.set_tf32(start)
    else:
        with pytest.raises(ValueError, match="one TF32 switch"):
            dev.set_tf32(mixed)
    assert dev.tf32_policy() == start


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_check_device_names_the_argument(framework):
    dev = _devices(framework)
    assert str(dev.check_device("cpu")).lower().strip("/").startswith("cpu")
    with pytest.raises(ConfigError, match=r"device: expected one of \('cpu', 'cuda'\), got 'tpu'"):
        dev.check_device("tpu")
    if not GPU_TESTS:
        with pytest.raises(ConfigError, match="device: 'cuda' was asked for, but"):
            dev.check_device("cuda")


@pytest.mark.skipif(GPU_TESTS, reason="ROSETTA_TEST_GPU=1 leaves the GPUs visible")
def test_parity_on_a_missing_gpu_is_one_line_and_exit_2(tmp_path, capsys):
    from shared.apps import parity_cmd

    assert parity_cmd.main(["--device", "cuda", "--dtypes", "float32", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "device: 'cuda' was asked for, but torch sees no CUDA GPU" in err
    assert "Traceback" not in err
    assert parity_cmd.main(["--device", "tpu"]) == 2
    assert "device: expected cpu or cuda, got 'tpu'" in capsys.readouterr().err
    assert parity_cmd.main(["--dtypes", "bfloat16"]) == 2  # the loss level has no bf16 case
    assert "dtypes: --level loss takes float64, float32" in capsys.readouterr().err


@pytest.mark.skipif(GPU_TESTS, reason="ROSETTA_TEST_GPU=1 leaves the GPUs visible")
def test_device_check_says_no_gpu_and_skips_the_gpu_sections(tmp_path):
    """``python -m benchmarks.device_check`` here: "no GPU", the GPU sections skipped (not
    measured), and the same step bit-identical twice in each framework. The bf16 section's
    rows are the command's (``tests/test_step_parity.py``); the whole script is the slow test
    below."""
    from benchmarks import device_check

    argv = ["--only", "cuda,tf32,repeat", "--out", str(tmp_path)]
    assert device_check.main(argv) == 0
    page = (tmp_path / "device_check.md").read_text()
    assert "**no GPU**: the CPU-against-CUDA and TF32 sections are skipped, not measured" in page
    assert page.count("- skipped: no GPU") == 2
    assert "- torch on cpu: bit-identical" in page and "- tensorflow on cpu: bit-identical" in page
    assert device_check.main(["--only", "gpu"]) == 2


@pytest.mark.slow
@pytest.mark.skipif(GPU_TESTS, reason="ROSETTA_TEST_GPU=1 leaves the GPUs visible")
def test_device_check_runs_whole_here(tmp_path):
    from benchmarks import device_check

    assert device_check.main(["--quick", "--out", str(tmp_path)]) == 0
    page = (tmp_path / "device_check.md").read_text()
    assert "- simclr on cpu: PASS" in page and "- moco on cpu: PASS" in page
    assert page.count("images/s (") == 4
