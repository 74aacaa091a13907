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


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_no_host_synchronisation_per_step(framework, tmp_path, monkeypatch):
    """One epoch of 6 steps: each step hands its loss to the tally unread (a tensor, not a
    float), the tally reads them once (ceil(6 / LOSS_READ_EVERY) reads), torch calls no
    ``.item()`` in the loop, and the epoch's record is the mean of the 6 losses."""
    spy = _Spy(monkeypatch)
    items = []
    real_item = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda t: items.append(1) or real_item(t))
    per_step = []
    cfg = TrainConfig(epochs=1, batch_size=8, limit_train=48, knn_every=0, warmup_epochs=0,
                      run_dir=str(tmp_path / "run"))  # fmt: skip
    if framework == "torch":
        from torch_impl import train as loop

        def run_epoch(*a, **kw):  # count .item() inside the epoch only
            before = len(items)
            record = real_run_epoch(*a, on_step=per_step.append, **{k: v for k, v in kw.items()})
            assert len(items) == before, "the torch loop read a loss with .item()"
            return record

        real_run_epoch = loop.run_epoch
        monkeypatch.setattr(loop, "run_epoch", run_epoch)
        record = loop.train(cfg, progress=False)
        tensor_type = "Tensor"
    else:
        from tf_impl import train as loop

        real_run_epoch = loop.run_epoch
        monkeypatch.setattr(
            loop, "run_epoch", lambda *a, **kw: real_run_epoch(*a, on_step=per_step.append)
        )
        record = loop.train(cfg, progress=False)
        tensor_type = "EagerTensor"
    steps = 6
    assert spy.types == [tensor_type] * steps
    assert spy.reads == math.ceil(steps / LOSS_READ_EVERY) == 1
    assert len(per_step) == steps and all(math.isfinite(v) for v in per_step)
    assert record["final_loss"] == pytest.approx(float(np.mean(per_step)), rel=1e-12)


def test_the_tally_reads_every_n_steps_in_one_transfer():
    """``every`` steps per read; each read is one call of ``read`` with the kept losses."""
    calls = []
    tally = EpochTally(read=lambda xs: calls.append(len(xs)) or [float(x) for x in xs], every=4)
    shown = [tally.add(float(i), 2, i + 1) for i in range(10)]
    assert calls == [4, 4] and shown[3] == 3.0 and shown[7] == 7.0 and shown[8] is None
    rec = tally.record(0, 0.1)
    assert calls == [4, 4, 2] and rec["loss"] == pytest.approx(4.5)
