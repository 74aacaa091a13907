"""Test setup, at the root so that the packages' doctests get it too.

Import order matters: torch and torchvision load *before* TensorFlow.

Loading triton (via torchvision, torch.compile or torch._dynamo) after TensorFlow segfaults on
this kind of machine, so this file imports the torch stack first, once, for every test process.
Each framework is optional: tests that need a missing one skip with a reason.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", os.environ.get("CUDA_VISIBLE_DEVICES", ""))

try:  # 1. torch stack first
    import torch  # noqa: F401
    import torchvision  # noqa: F401
except ImportError:  # pragma: no cover - exercised only where torch is absent
    pass

try:  # 2. then TensorFlow
    import tensorflow as tf  # noqa: F401
except ImportError:  # pragma: no cover
    pass
