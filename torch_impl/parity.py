"""Run this framework's losses on the golden inputs; the ``parity`` command compares the outputs.

``golden_outputs(dtype)`` returns ``{loss: {case: {"loss", "per_anchor", "grad_<input>"}}}``
with NumPy arrays in ``dtype``, the same layout as ``shared.parity.golden``.
"""

from __future__ import annotations

import numpy as np
import torch

from shared.parity import golden
from shared.parity.weights import online_network
from torch_impl.losses import info_nce, nt_xent

FRAMEWORK = "torch"

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def run_case(loss: str, case: dict, dtype: str, device: str = "cpu") -> dict:
    """One golden case: from_numpy -> op -> backward -> to_numpy."""
    names = ["z1", "z2"] if loss == "nt_xent" else ["q", "k", "queue"]
    fn = nt_xent if loss == "nt_xent" else info_nce
    tau = float(case["temperature"])
    xs = [
        torch.tensor(case[n], dtype=DTYPES[dtype], device=device, requires_grad=True) for n in names
    ]
    per = fn(*xs, temperature=tau, reduction="none")
    mean = per.mean()
    mean.backward()
    # arrays keep the computed dtype, so the parity table counts ULPs in that dtype
    out = {"loss": mean.detach().cpu().numpy(), "per_anchor": per.detach().cpu().numpy()}
    for n, x in zip(names[:2], xs):  # the queue is a buffer: no gradient in MoCo
        out[f"grad_{n}"] = x.grad.cpu().numpy()
    return out


def golden_outputs(dtype: str = "float64", device: str = "cpu", cases=None) -> dict:
    """Every golden case's outputs, or those of ``cases`` (``{loss: {case: inputs}}``, e.g.
    ``shared.parity.golden.random_cases``)."""
    from torch_impl.devices import check_device

    if dtype not in DTYPES:
        raise ValueError(f"dtype: expected one of {sorted(DTYPES)}, got {dtype!r}")
    check_device(device)
    cases = cases or {loss: golden.load(loss) for loss in ("nt_xent", "info_nce")}
    return {
        loss: {c: run_case(loss, fields, dtype, device) for c, fields in by_case.items()}
        for loss, by_case in cases.items()
    }


def framework_version() -> str:
    """The framework's version string, recorded in each dump."""
    return torch.__version__


# torch's optimiser state keys under the names of tf_impl.optim's slots
SLOT_NAMES = {"momentum_buffer": "momentum", "exp_avg": "m", "exp_avg_sq": "v"}


def step_outputs(
    model, x1, x2, optimizer, key_momentum: float | None = None, device: str = "cpu", amp=False
) -> dict:
    """One training step on NHWC NumPy views; every compared quantity by canonical name.

    The step is the model's own ``train_step``, the one ``torch_impl.train.run_epoch`` calls.
    Returns ``{"loss", "h1", "z1", "h1_train", "z1_train", "grad/<name>", "after/<name>",
    "slot/<name>/<slot>"}`` (the optimiser's state: ``momentum`` for SGD and LARS, ``m`` and
    ``v`` for Adam; h1 and z1 before the step, in eval mode and in train mode, BN's statistics
    restored after the train-mode pass so that they move only in the step; ``after`` is the whole
    exported state after the step: weights, BN statistics and, for MoCo, the key encoder, the
    queue and its pointer), for ``shared.parity.compare`` to compare with ``tf_impl.parity.step_outputs``.

    ``device``: ``"cpu"`` or ``"cuda"`` (the model is moved there; its optimiser keeps its
    parameters). ``amp``: bf16 autocast for the features and the step, float32 weights, as
    ``train --amp``; every output is returned in float32 then.
    """
    from torch_impl.devices import check_device
    from torch_impl.weights import export_weights, import_weights

    dev = check_device(device)
    model.to(dev)
    if amp:  # as a model built with dtype "mixed_bfloat16"
        model.autocast = torch.bfloat16
    if key_momentum is not None:  # as the training loop sets it
        model.key_momentum = key_momentum
    dtype = next(model.parameters()).dtype
    a, b = (torch.from_numpy(x).permute(0, 3, 1, 2).to(dev, dtype) for x in (x1, x2))
    net = online_network(model)
    out = lambda t: t.float().cpu().numpy() if amp else t.cpu().numpy()  # noqa: E731
    model.eval()
    with torch.no_grad(), torch.autocast(a.device.type, torch.bfloat16, enabled=amp):
        h1, z1 = (out(t) for t in net(a))
        model.train()
        # a train-mode pass moves BN's statistics: put them back (copies: torch shares memory)
        state = {k: np.array(v) for k, v in export_weights(model).items()}
        h1_train, z1_train = (out(t) for t in net(a))
        import_weights(model, state)
    loss = model.train_step(a, b, optimizer)
    features = {"h1": h1, "z1": z1, "h1_train": h1_train, "z1_train": z1_train}
    return {"loss": out(loss), **features, **_state_after(model, optimizer)}


def _state_after(model, optimizer) -> dict:
    """After a step: ``{"grad/<name>", "after/<name>", "slot/<name>/<slot>"}``, the gradients
    the step applied (left in ``.grad``), the exported state and the optimiser's slots; copies
    (``.numpy()`` shares the tensors' memory, which the next step overwrites)."""
    from shared.parity.weights import to_canonical
    from torch_impl.weights import entries, export_weights

    walk = list(entries(model))
    grads = {
        f"grad/{n}": to_canonical(k, r, t.grad.cpu().numpy(), "torch")
        for n, k, r, t in walk
        if t.grad is not None
    }
    after = {f"after/{n}": v for n, v in export_weights(model).items()}
    slots = {
        f"slot/{n}/{SLOT_NAMES[key]}": to_canonical(k, r, value.cpu().numpy(), "torch")
        for n, k, r, t in walk
        for key, value in optimizer.state.get(t, {}).items()
        if key in SLOT_NAMES
    }
    return {k: np.array(v) for k, v in {**grads, **after, **slots}.items()}


def step_case(case: str, dtype: str, device: str = "cpu"):
    """A ``shared.parity.step_parity`` case, ready for :func:`step_outputs`:
    ``(model, optimizer, kwargs)``, the model with torch's initialisation (seed 0) on
    ``device``, the case's optimiser, and the step's keyword arguments (``key_momentum`` for
    MoCo, ``device``, ``amp``). ``dtype`` ``"bfloat16"``: float32 weights, the step under bf16
    autocast (``amp``)."""
    from shared.parity import step_parity as sp
    from torch_impl.devices import check_device
    from torch_impl.methods import METHODS
    from torch_impl.optim import build_optimizer

    method, amp = sp.STEP_CASES[case]["method"], dtype == "bfloat16"
    torch.manual_seed(0)
    model = METHODS[method](
        **{**sp.model_kwargs(case, dtype), "dtype": "float32" if amp else dtype}
    )
    model.to(check_device(device))
    kwargs = {"device": device, "amp": amp}
    if method == "moco":
        kwargs["key_momentum"] = sp.KEY_MOMENTUM
    return model, build_optimizer(model, *sp.OPTIMIZER), kwargs


def train_views(cfg, images, params: list) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each step's two views, NHWC float32 NumPy, from uint8 NHWC ``images`` and the
    ``shared.parity.train_parity.view_params`` of one epoch (this framework's ``BatchAugment.apply``)."""
    from torch_impl.augment import BatchAugment

    aug = BatchAugment(**cfg.augment_kwargs())
    out = []
    for idx, p1, p2 in params:
        x = torch.from_numpy(images[idx]).permute(0, 3, 1, 2)
        out.append(tuple(aug.apply(x, p).permute(0, 2, 3, 1).numpy() for p in (p1, p2)))
    return out


def train_run(cfg, model, epochs: list) -> dict:
    """Train ``model`` with this framework's ``run_epoch`` on given views; the loss curves.

    ``epochs``: per epoch, the list of ``(x1, x2)`` NHWC NumPy views of its steps.
    Returns ``{"step_loss", "epoch_loss"}`` and, after the last step, :func:`_state_after`'s
    ``grad/<name>``, ``after/<name>`` and ``slot/<name>/<slot>``.
    """
    from torch_impl.optim import build_optimizer
    from torch_impl.train import run_epoch

    dtype = next(model.parameters()).dtype
    opt = build_optimizer(model, cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)
    ctx = {"device": torch.device("cpu"), "progress": False}
    steps, epoch_loss = [], []
    for epoch, views in enumerate(epochs):
        batches = [
            tuple(torch.from_numpy(v).permute(0, 3, 1, 2).to(dtype) for v in pair) for pair in views
        ]
        record = run_epoch(model, opt, cfg, batches, epoch, len(batches), ctx, steps.append)
        epoch_loss.append(record["loss"])
    curves = {"step_loss": np.array(steps), "epoch_loss": np.array(epoch_loss)}
    return {**curves, **_state_after(model, opt)}
