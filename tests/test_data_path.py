"""The data path on the device: torch's views are made where the model is, and neither loop
waits for the device every step (the losses are read every ``LOSS_READ_EVERY`` steps)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from shared.run import lifecycle
from shared.run.config import TrainConfig
from shared.run.data import Split
from shared.run.lifecycle import LOSS_READ_EVERY, EpochTally


def _split(n: int = 24, size: int = 32) -> Split:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    return Split(images, rng.integers(0, 10, n).astype(np.int64))


def test_torch_views_are_made_on_the_device_they_are_asked_for():
    """``epoch_batches(..., device)`` sends the uint8 images there and augments there. The
    ``meta`` device holds no data, so any host read in the augmentation (``nonzero``,
    ``.item()``) would raise: the views come out on it, made without the host."""
    from torch_impl.train import epoch_batches

    cfg = TrainConfig(batch_size=8, blur=True, flip=True).resolve("torch")
    views = list(epoch_batches(cfg, _split(), 0, 3, device=torch.device("meta")))
    assert len(views) == 3
    assert all(v.device.type == "meta" and v.shape == (8, 3, 32, 32) for x in views for v in x)


def test_the_two_colour_schedules_are_equal_bit_for_bit():
    """The CPU's gathered colour jitter and the accelerators' masked one compute the same."""
    from torch_impl.augment import BatchAugment

    aug = BatchAugment(32, (0.3, 1.0), 0.5, False, True)
    x = torch.from_numpy(_split(16).images).permute(0, 3, 1, 2).float() / 255
    p = aug.sample(16, 32, 32, torch.Generator().manual_seed(1))
    args = (x, p["jitter"], p["factors"], p["order"])
    assert p["jitter"].any() and not p["jitter"].all()
    assert torch.equal(aug._color(*args), aug._color_where(*args))


class _Spy:
    """Counts the losses handed to the tally, their types, and the reads that reach the host."""

    def __init__(self, monkeypatch):
        self.types, self.reads = [], 0
        add, flush = EpochTally.add, EpochTally.flush
        spy = self

        def counting_add(tally, loss, images, step):
            spy.types.append(type(loss).__name__)
            return add(tally, loss, images, step)

        def counting_flush(tally):
            spy.reads += bool(tally.pending)
            return flush(tally)

        monkeypatch.setattr(lifecycle.EpochTally, "add", counting_add)
        monkeypatch.setattr(lifecycle.EpochTally, "flush", counting_flush)


def _torch_epoch(cfg, split, steps, on_step):
    from torch_impl.methods import build_model
    from torch_impl.optim import build_optimizer
    from torch_impl.train import epoch_batches, run_epoch

    torch.manual_seed(0)
    model = build_model(cfg)
    opt = build_optimizer(model, cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)
    batches = epoch_batches(cfg, split, 0, steps, 0, torch.device("cpu"))
    ctx = {"device": torch.device("cpu"), "progress": False}
    return run_epoch(model, opt, cfg, batches, 0, steps, ctx, on_step)


def _tf_epoch(cfg, split, steps, on_step):
    from tf_impl.methods import build_model
    from tf_impl.optim import build_optimizer
    from tf_impl.train import compile_step, make_dataset, run_epoch

    model = build_model(cfg)
    opt = build_optimizer(model, cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)
    step_fn = compile_step(model, opt, cfg.jit_compile)
    dataset = make_dataset(split.images, cfg, 0)
    return run_epoch(step_fn, opt, cfg, dataset, 0, steps, False, on_step)


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_no_host_synchronisation_per_step(framework, monkeypatch):
    """One epoch of each framework's loop, 6 steps: each step hands its loss to the tally
    unread (a tensor, not a float), the tally reads them once (ceil(6 / LOSS_READ_EVERY)
    reads), torch calls no ``.item()`` in the loop, and the epoch's loss is the mean of the 6."""
    steps, spy, items, per_step = 6, _Spy(monkeypatch), [], []
    real_item = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda t: items.append(1) or real_item(t))
    cfg = TrainConfig(batch_size=8, warmup_epochs=0).resolve(framework)
    epoch = _torch_epoch if framework == "torch" else _tf_epoch
    record = epoch(cfg, _split(steps * 8), steps, per_step.append)
    assert spy.types == ["Tensor" if framework == "torch" else "EagerTensor"] * steps
    assert spy.reads == math.ceil(steps / LOSS_READ_EVERY) == 1 and not items
    assert len(per_step) == steps and all(math.isfinite(v) for v in per_step)
    assert record["loss"] == pytest.approx(float(np.mean(per_step)), rel=1e-12)


def test_the_tally_reads_every_n_steps_in_one_transfer():
    """``every`` steps per read; each read is one call of ``read`` with the kept losses."""
    calls = []
    tally = EpochTally(read=lambda xs: calls.append(len(xs)) or [float(x) for x in xs], every=4)
    shown = [tally.add(float(i), 2, i + 1) for i in range(10)]
    assert calls == [4, 4] and shown[3] == 3.0 and shown[7] == 7.0 and shown[8] is None
    rec = tally.record(0, 0.1)
    assert calls == [4, 4, 2] and rec["loss"] == pytest.approx(4.5)
