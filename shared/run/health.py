"""Training health, checked after every epoch in both frameworks: collapse and exploding weights.

Neither stops a run (the non-finite guard in ``shared.run.runlog`` does that); both print a warning
and are recorded in ``metrics.json`` so that a run that "finished" can still be seen to have
failed.

* **Collapse.** SimSiam (Chen & He, 2021, Sec. 4.1) monitors the standard deviation of the
  l2-normalised outputs: a collapsed encoder maps every image to one point, and the std goes to
  0, while outputs spread evenly over the unit sphere in D dimensions have a per-dimension std of
  about 1/sqrt(D). :func:`projection_spread` is that std, times sqrt(D): about 1 for a healthy
  spread, 0 for collapse. A warning is printed when it falls (see :func:`health_warnings`).
  Measured on the embedded dataset: 0.017 at initialisation, 0.18 after SimCLR's first epoch,
  0.94 after its sixth; 0.002 after one epoch at lr 1e6.
* **Exploding weights.** The global norm of the learnable weights (kernels, biases, BN's gamma
  and beta) is compared with its value when the process started; a warning is printed beyond
  ``WEIGHT_GROWTH`` times. At lr 1e6 with SGD or Adam the weights reach 1e21 and the run ends at
  chance accuracy with every loss finite: this is the warning that names it.
"""

from __future__ import annotations

import sys

import numpy as np

HEALTH_IMAGES = 256  # the first training images, un-augmented, give the projections checked
COLLAPSE_SPREAD = 0.1  # ten times below an even spread over the sphere...
COLLAPSE_DROP = 4.0  # ...and fallen to a quarter of the highest spread seen
WEIGHT_GROWTH = 100.0  # two orders of magnitude over the starting norm
LEARNABLE = ("kernel", "bias", "gamma", "beta")  # canonical suffixes (shared.parity.weights)


def projection_spread(z: np.ndarray) -> float:
    """Mean per-dimension std of the l2-normalised rows of ``z``, times sqrt(D).

    Args:
        z: (N, D) projections, N >= 2.

    Returns:
        About 1 for rows spread evenly over the sphere, 0 when every row is the same.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> round(projection_spread(rng.standard_normal((4096, 64))), 2)
        1.0
        >>> projection_spread(np.ones((8, 64)))
        0.0
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or len(z) < 2:
        raise ValueError(f"z: expected (N, D) with N >= 2, got shape {z.shape}")
    u = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    return float(u.std(axis=0).mean() * np.sqrt(z.shape[1]))


def weight_norm(state: dict) -> float:
    """Global l2 norm of the learnable arrays of an ``export_weights`` state (canonical names);
    running statistics, the queue and the pointer are left out.

    Example:
        >>> weight_norm({"a/kernel": np.full(4, 1.5), "a/moving_mean": np.ones(3), "queue": 9})
        3.0
    """
    total = sum(
        float(np.sum(np.square(np.asarray(v, dtype=np.float64))))
        for k, v in state.items()
        if k.rsplit("/", 1)[-1] in LEARNABLE
    )
    return float(np.sqrt(total))


def health_warnings(
    spread: float, peak_spread: float, norm: float, start_norm: float, epoch: int
) -> list[str]:
    """The warnings for one epoch.

    Collapse is a spread under ``COLLAPSE_SPREAD`` that has also *fallen*, to under
    1/``COLLAPSE_DROP`` of the highest spread seen (the start included). A freshly initialised
    network in eval mode has a low spread too (about 0.01 for the small CNN here: BN's running
    statistics still hold their defaults), which rises as training works; a threshold alone would
    warn on every healthy first epoch.

    Example:
        >>> health_warnings(0.02, 0.5, 5e3, 10.0, 3)  # doctest: +NORMALIZE_WHITESPACE
        ['warning: epoch 3: the projections are collapsing (spread 0.020, down from 0.500;
          healthy is about 1). Try a lower --lr or a higher --temperature',
         'warning: epoch 3: the weight norm grew 500x since the start (10 -> 5e+03); the run is
          diverging. Lower --lr']
        >>> health_warnings(0.02, 0.017, 12.0, 10.0, 1)  # a young network: no warning
        []
    """
    out = []
    if spread < COLLAPSE_SPREAD and spread < peak_spread / COLLAPSE_DROP:
        out.append(
            f"warning: epoch {epoch}: the projections are collapsing (spread {spread:.3f}, down "
            f"from {peak_spread:.3f}; healthy is about 1). Try a lower --lr or a higher "
            "--temperature"
        )
    if start_norm > 0 and norm > WEIGHT_GROWTH * start_norm:
        out.append(
            f"warning: epoch {epoch}: the weight norm grew {norm / start_norm:.0f}x since the "
            f"start ({start_norm:.3g} -> {norm:.3g}); the run is diverging. Lower --lr"
        )
    return out


class HealthMonitor:
    """Checks each epoch against the state the process started from (or resumed).

    Args:
        z: (N, D) projections of the first ``HEALTH_IMAGES`` training images at the start.
        state: the model's ``export_weights`` at the start.
    """

    def __init__(self, z: np.ndarray, state: dict):
        self.peak_spread = projection_spread(z)
        self.start_norm = weight_norm(state)

    def check(self, z: np.ndarray, state: dict, epoch: int) -> dict:
        """The epoch record's ``z_spread`` and ``weight_norm``; prints any warning to stderr.

        Args:
            z: projections of the same images, in eval mode, after the epoch.
            state: the model's ``export_weights`` (already taken for the non-finite check).
            epoch: 1-based, for the message.
        """
        spread, norm = projection_spread(z), weight_norm(state)
        for line in health_warnings(spread, self.peak_spread, norm, self.start_norm, epoch):
            print(line, file=sys.stderr, flush=True)
        self.peak_spread = max(self.peak_spread, spread)
        return {"z_spread": spread, "weight_norm": norm}
