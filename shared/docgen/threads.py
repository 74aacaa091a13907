"""One intra-op thread for the generators whose numbers are float rounding (catalogue, drift).

A float reduction split across threads sums in an order that depends on the thread count, so
rounding-level numbers (a float64 drift of 1e-14, a residue of 1e-16) change with it. With one
thread they are the same on every run on one host; across CPUs the kernels still differ.
"""

from __future__ import annotations


def use_one_thread() -> None:
    """Run torch and TensorFlow on one intra-op thread each.

    TensorFlow takes the setting only before it runs its first op (else ``RuntimeError``), so
    a generator calls this first in its ``main``.
    """
    # isort: off
    import torch
    import torchvision  # noqa: F401  (triton must load before TensorFlow)
    import tensorflow as tf

    # isort: on

    torch.set_num_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
