"""Test setup, at the root so that the packages' doctests get it too.

Import order matters: torch and torchvision load *before* TensorFlow.

Loading triton (via torchvision, torch.compile or torch._dynamo) after TensorFlow segfaults on
this kind of machine, so this file imports the torch stack first, once, for every test process.
Each framework is optional: tests that need a missing one skip with a reason.

Devices: by default the tests run on the CPU and every GPU is hidden from them
(``CUDA_VISIBLE_DEVICES=""``), so that their numbers are the same on every machine and a GPU
host's driver cannot fail a CPU test. ``ROSETTA_TEST_GPU=1 make test`` leaves the GPUs
visible: the tests that take a device then also run their CUDA cases. The header of the test
run says which (``pytest_report_header``).

BLAS runs on one thread (``OPENBLAS_NUM_THREADS=1`` unless set), here and in every child:
OpenBLAS's threads spin while they wait, and on a 2-core host that the frameworks' thread pools
and other processes share, the pixel probe's logistic regressions
(``tests/test_shared_misc.py``) took 25 times as long on two threads as on one.
"""

import os

TEST_GPU = os.environ.get("ROSETTA_TEST_GPU", "0") not in ("", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if not TEST_GPU:
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads (torch imports it)

try:  # 1. torch stack first
    import torch  # noqa: F401
    import torchvision  # noqa: F401
except ImportError:  # pragma: no cover - exercised only where torch is absent
    pass

try:  # 2. then TensorFlow
    import tensorflow as tf  # noqa: F401
except ImportError:  # pragma: no cover
    pass


def pytest_report_header(config):
    if TEST_GPU:
        return f"devices: GPUs visible (ROSETTA_TEST_GPU=1, CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')!r})"
    return 'devices: CPU only, GPUs hidden (CUDA_VISIBLE_DEVICES=""); ROSETTA_TEST_GPU=1 shows them'
