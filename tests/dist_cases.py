"""The cases of the 2-process equivalence tests, shared by the test and its two worker scripts.

Each case is one training step, float64, on a global batch of N view pairs: once in one process
(``single``) and once split over W = 2 processes or replicas (``dist``), each holding N / W
contiguous rows. Per-process BatchNorm over W processes is compared with SplitBatchNorm over
W splits in one process, SyncBatchNorm with BatchNorm over the whole batch.

This module imports neither framework: the workers import the one they test.
"""

import numpy as np

N = 8  # global view pairs per step
WORLD = 2
SHUFFLE_SEED = 123  # the global torch seed set before the step (the key shuffle's permutation)

SHUFFLED = {"shuffle_keys": True, "symmetric": True}  # both view chunks regrouped and shuffled
PLAIN = {"shuffle_keys": False, "symmetric": False}  # one direction, keys in batch order
COMMON = {"encoder": "small_cnn", "hidden_dim": 16, "proj_dim": 8, "dtype": "float64"}
CASES = {
    "simclr_bn": (
        "simclr",
        {"temperature": 0.2, "bn_splits": WORLD},
        {"temperature": 0.2, "bn_splits": 1},
        False,
    ),
    "simclr_syncbn": (
        "simclr",
        {"temperature": 0.2, "bn_splits": 1},
        {"temperature": 0.2, "bn_splits": 1},
        True,
    ),
    "moco_shuffle": (
        "moco",
        {"queue_size": 24, "temperature": 0.2, "bn_splits": 2 * WORLD, **SHUFFLED},
        {"queue_size": 24, "temperature": 0.2, "bn_splits": 2, **SHUFFLED},
        False,
    ),
    "moco_plain": (
        "moco",
        {"queue_size": 12, "temperature": 0.2, "bn_splits": WORLD, **PLAIN},
        {"queue_size": 12, "temperature": 0.2, "bn_splits": 1, **PLAIN},
        False,
    ),
}
KEY_MOMENTUM = 0.9
LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 1e-4


def case_kwargs(case: str, side: str) -> tuple[str, dict, bool]:
    """``(method, model kwargs, sync_bn)`` of ``case`` for ``side`` ``"single"`` or ``"dist"``."""
    method, single, dist, sync = CASES[case]
    return method, {**COMMON, **(single if side == "single" else dist)}, sync and side == "dist"


def views(case: str) -> tuple[np.ndarray, np.ndarray]:
    """The global batch: two (N, 32, 32, 3) float64 view batches, NHWC."""
    rng = np.random.default_rng(sorted(CASES).index(case))
    return rng.random((N, 32, 32, 3)), rng.random((N, 32, 32, 3))


def local(x: np.ndarray, rank: int) -> np.ndarray:
    """Rank ``rank``'s contiguous N / W rows."""
    n = len(x) // WORLD
    return x[rank * n : (rank + 1) * n]


def projections() -> tuple[np.ndarray, np.ndarray]:
    """The gather test's global projections: two (N, 5) float64 batches."""
    rng = np.random.default_rng(99)
    return rng.normal(size=(N, 5)), rng.normal(size=(N, 5))


# A worker writes ``OUT/steps.done`` once every case's step and the shards are written. Then the
# training legs it runs (``THIS OUT --train SPEC``): SPEC is a JSON object ``{"first": argv,
# "then": argv}``. The worker runs the CLI's ``main(first)``, writes ``OUT/first.done`` (its exit
# status), waits for the test to create ``OUT/go`` (the test's own leg runs meanwhile), then
# runs ``main(then)``; its exit status is the worker's.
STEPS_DONE, FIRST_DONE, GO = "steps.done", "first.done", "go"


def run_legs(main, out, spec: str, is_main=True, before=None, timeout: float = 600.0) -> int:
    """Run the two legs of ``spec`` with the CLI's ``main`` (above), calling ``before()`` (if
    given) before each; ``is_main``: this process writes ``first.done`` (rank 0 of several).
    Returns the first non-zero exit status, else 0."""
    import json
    import time
    from pathlib import Path

    legs, out = json.loads(spec), Path(out)
    before = before or (lambda: None)
    before()
    code = main(legs["first"])
    if is_main:
        (out / FIRST_DONE).write_text(str(code))
    if code:
        return code
    deadline = time.monotonic() + timeout
    while not (out / GO).exists():
        if time.monotonic() > deadline:
            return 124
        time.sleep(0.05)
    before()
    return main(legs["then"])
