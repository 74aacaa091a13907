"""Train parity (``rosetta parity --level train``): a few epochs of each method in PyTorch and
in TensorFlow, from the same ported weights on the same views, through each framework's own
training loop, and both loss curves.

What runs is each framework's ``train.run_epoch``: per step the warm-up + cosine learning
rate, MoCo's cosine key momentum, then ``model.train_step`` (the method's optimiser, LARS for
SimCLR and SGD for MoCo, with their weight-decay exclusions; MoCo's EMA and queue). The initial
weights are written by the first framework (``shared.parity.weights``) and imported by the other.

The views are generated once and read by both: the first framework draws each step's
augmentation parameters with NumPy (:func:`view_params`) and applies its own
``BatchAugment.apply``; the other reads the stored views. Given the same parameters the two
augmentations agree to 1e-5 (``tests/test_augment_parity.py``); storing the views keeps that
float32 difference out of the float64 comparison, so what this level measures is the training
loop alone. MoCo's key shuffle is off: its permutation comes from each framework's RNG.

Verdicts, per method:

* float64: every step's loss, the last step's gradients and optimiser slots (``grad/<name>``,
  ``slot/<name>/<slot>``, both under the gradient rows) and the final state (weights, BN
  running means, MoCo's key encoder, queue and pointer; BN running variances differ by
  convention, n / (n - 1), and are left out) agree within the float64 rows of the tolerance
  table, after all ``EPOCHS x steps`` updates. Measured: losses within 4e-15 relative; the
  state's largest use of its allowance is 0.16 (MoCo's first head kernel, 6e-11 relative);
  the last step's gradients and slots use at most 8.6e-4 of theirs (MoCo's first head
  kernel's momentum, 1.1e-9 relative);
* float32: the two runs separate (docs/step_drift.md: fp32 kernels of two frameworks round
  differently, and training amplifies the difference). The curve is reported; the verdict
  bounds each epoch's mean loss to :data:`F32_EPOCH_LOSS_RTOL` relative, a bound that
  catches a wrong schedule or optimiser but not rounding. Measured (2-core Xeon): per-epoch
  gaps of 1.3e-3 (SimCLR) and 8.0e-3 (MoCo), single steps up to 1.3e-2.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from shared.oracle.augment_spec import augment_spec, sample_params
from shared.parity.tolerances import tolerance

IMAGES = 256  # the first training images of the embedded dataset
BATCH = 32
EPOCHS = 3  # 8 steps each: one of linear warm-up, two of cosine decay
CASES = {
    "simclr": {"method": "simclr"},
    "moco": {"method": "moco", "queue_size": 128, "shuffle_keys": False},
}
MODEL = {"hidden_dim": 64, "proj_dim": 32}
LOSS_F64_RTOL = tolerance("loss", "float64").rtol
F32_EPOCH_LOSS_RTOL = 0.02


def config_kwargs(case: str) -> dict:
    """The ``TrainConfig`` arguments of one case, the same for both frameworks.

    The harness sits below the run layer, so the caller builds the config:
    ``TrainConfig(**config_kwargs(case)).resolve("torch")``.
    """
    return {
        "dataset": "embedded",
        "batch_size": BATCH,
        "epochs": EPOCHS,
        "warmup_epochs": 1,
        "amp": False,
        "knn_every": 0,
        "run_dir": "-",
        **CASES[case],
        **MODEL,
    }


def steps_per_epoch() -> int:
    return IMAGES // BATCH


def view_params(cfg, epoch: int) -> list[tuple[np.ndarray, dict, dict]]:
    """Per step of ``epoch``: the image indices and the parameters of the two views."""
    rng = np.random.default_rng([cfg.seed, epoch])
    order = rng.permutation(IMAGES)
    spec = augment_spec(**cfg.augment_kwargs())
    out = []
    for s in range(steps_per_epoch()):
        idx = order[s * BATCH : (s + 1) * BATCH]
        p1, p2 = (sample_params(spec, BATCH, 32, 32, rng) for _ in range(2))
        out.append((idx, p1, p2))
    return out


def save_views(path: Path, views: list) -> None:
    """Write per-epoch lists of ``(x1, x2)`` view pairs to one ``.npz`` (keys ``e/s/v``)."""
    arrays = {
        f"{e}/{s}/{v}": x
        for e, epoch in enumerate(views)
        for s, pair in enumerate(epoch)
        for v, x in enumerate(pair)
    }
    np.savez(path, **arrays)


def load_views(path: Path) -> list:
    """The per-epoch lists of ``(x1, x2)`` view pairs written by :func:`save_views`."""
    with np.load(path) as z:
        index = sorted({tuple(map(int, k.split("/")[:2])) for k in z.files})
        views: list = []
        for e, s in index:
            if e == len(views):
                views.append([])
            views[e].append((z[f"{e}/{s}/0"], z[f"{e}/{s}/1"]))
    return views


STATE = ("grad/", "slot/", "after/")  # the last step's gradients, optimiser slots, whole state


def compare_runs(a: dict, b: dict, dtype: str, case: str) -> list[dict]:
    """Rows comparing torch's run ``a`` with TF's ``b`` (``{"step_loss", "epoch_loss",
    "grad/<name>", "slot/<name>/<slot>", "after/<name>"}``, the names of ``train_run``); the
    state by ``shared.parity.compare.group_of`` group, BN running variances left out (n / (n - 1),
    the catalogue's row). A name on one side only raises ``AssertionError``."""
    from shared.parity import compare as parity

    rows = []
    if dtype == "float64":
        want, got = np.asarray(a["step_loss"]), np.asarray(b["step_loss"])
        rows.append(_row("loss.step_loss", want, got, LOSS_F64_RTOL, dtype, case))
        state_a, state_b = ({k: v for k, v in r.items() if k.startswith(STATE)} for r in (a, b))
        for r in parity.compare_grouped(state_a, state_b, dtype=dtype, skip=("moving_variance",)):
            rows.append({**r.as_dict(), "case": case})
    want, got = np.asarray(a["epoch_loss"]), np.asarray(b["epoch_loss"])
    tol = F32_EPOCH_LOSS_RTOL if dtype == "float32" else LOSS_F64_RTOL
    rows.append(_row("loss.epoch_loss", want, got, tol, dtype, case))
    return rows


def _row(name: str, want, got, tol: float, dtype: str, case: str) -> dict:
    """A curve's row: its largest relative gap against ``tol`` (rtol, no atol)."""
    err = float(np.max(np.abs(want - got) / np.abs(want)))
    what = "per step" if "step" in name else "per epoch"
    return {
        "name": name,
        "quantity": "loss",
        "dtype": dtype,
        "shape": list(np.shape(want)),
        "max_abs": float(np.max(np.abs(want - got))),
        "max_rel": err,
        "ulps": 0.0,
        "rtol": tol,
        "atol": 0.0,
        "scale": 1.0,
        "worst_margin": err / tol,
        "passed": bool(err <= tol),
        "reason": f"the loss curve, max rel {what}; shared.parity.train_parity",
        "case": case,
    }


def curves_markdown(curves: dict) -> str:
    """Per case and dtype, both frameworks' per-epoch mean loss and the largest per-step gap."""
    lines = [
        "| case | dtype | epoch | torch loss | TF loss | rel. difference | worst step in the epoch |",
        "|---|---|---|---|---|---|---|",
    ]
    n = steps_per_epoch()
    for (case, dtype), (a, b) in curves.items():
        sa, sb = np.asarray(a["step_loss"]), np.asarray(b["step_loss"])
        for e, (la, lb) in enumerate(zip(a["epoch_loss"], b["epoch_loss"])):
            gap = np.abs(sa[e * n : (e + 1) * n] - sb[e * n : (e + 1) * n]) / np.abs(
                sa[e * n : (e + 1) * n]
            )
            lines.append(
                f"| {case} | {dtype} | {e + 1} | {la:.6f} | {lb:.6f} | "
                f"{abs(la - lb) / abs(la):.1e} | {gap.max():.1e} |"
            )
    return "\n".join(lines) + "\n"


def plot(curves: dict, path: Path) -> None:
    """Both frameworks' per-step loss, one panel per case and dtype."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 3.2), squeeze=False)
    for ax, ((case, dtype), (a, b)) in zip(axes[0], curves.items()):
        ax.plot(np.arange(1, len(a["step_loss"]) + 1), a["step_loss"], label="torch", lw=2)
        ax.plot(np.arange(1, len(b["step_loss"]) + 1), b["step_loss"], "--", label="TF", lw=1.5)
        ax.set(title=f"{case}, {dtype}", xlabel="step", ylabel="loss")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def load_run(path: Path) -> dict:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def summary_json(curves: dict) -> str:
    return json.dumps(
        {
            f"{case}/{dtype}": {
                "torch": np.asarray(a["step_loss"]).tolist(),
                "tensorflow": np.asarray(b["step_loss"]).tolist(),
            }
            for (case, dtype), (a, b) in curves.items()
        }
    )
