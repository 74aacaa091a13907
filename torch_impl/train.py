"""The training loop in PyTorch, one for both methods (``--method simclr|moco``).

Per epoch: shuffle with a generator seeded by (seed, epoch), draw two augmented views of each
image, set the learning rate from ``shared.oracle.optim.warmup_cosine`` and (MoCo) the key momentum,
and call the model's ``train_step``: the algorithm lives in ``torch_impl.simclr`` and
``torch_impl.moco``, not here. ``tf_impl.train`` is the same loop in TensorFlow.

Under ``torchrun --nproc_per_node W`` the same loop runs in W processes: each takes its
``batch_size / W`` share of every global batch, the model is its method's
``torch_impl.distributed`` subclass (gathered negatives, Shuffle-BN across ranks, averaged
gradients), the epoch loss is the mean over ranks, and rank 0 alone writes
the run directory (``config.json`` records ``world_size``).

Run directory (schema in ``shared.run.runlog``): ``config.json``, ``metrics.json``, TensorBoard
events under ``tb/`` and ``ckpt-<epoch>.pt`` (``torch_impl.checkpoint``), locked by ``.lock``
while a run writes it. What happens to it (the lock, the checks, the logs, the monitors, the
checkpoints) is ``shared.run.lifecycle``'s, the same for both frameworks. ``resume=True``
continues exactly: 2 epochs straight equal 1 epoch + resume + 1 epoch, bit for bit on CPU.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from shared.oracle.optim import warmup_cosine
from shared.run.config import TrainConfig
from shared.run.errors import ConfigError, RosettaError, RunDirError
from shared.run.evaluation import evaluate_knn
from shared.run.lifecycle import EpochTally, Hooks, RunLifecycle, ScalarWriter, epoch_bar
from torch_impl import checkpoint
from torch_impl.augment import BatchAugment, TwoViews, simclr_augment
from torch_impl.data import TwoViewDataset, load_split
from torch_impl.distributed import Dist, init_from_env, rank, world_size
from torch_impl.evaluate import extract_features, projections
from torch_impl.methods import build_model
from torch_impl.optim import build_optimizer, set_learning_rate
from torch_impl.weights import export_weights

__all__ = ["seed_everything", "train"]


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' was asked for but no CUDA GPU is visible")
    return torch.device(device)


def amp_dtype_for(amp: bool, device: torch.device) -> torch.dtype | None:
    """bf16 autocast (``amp``) or ``None`` (float32), on any device that was asked for it.

    Raises:
        ConfigError: ``amp`` on a CUDA GPU without bf16.
    """
    if amp and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("amp: bf16 autocast was asked for, but this GPU has no bf16")
    return torch.bfloat16 if amp else None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def knn_monitor(model, train, test, device="cpu") -> float:
    """kNN top-1 of the backbone's features on ``device``, at the k that leave-one-out on the
    training split chooses (``shared.run.evaluation``'s protocol)."""
    ftr = extract_features(model.backbone, train.images, device=device)
    fte = extract_features(model.backbone, test.images, device=device)
    return evaluate_knn(ftr, train.labels, fte, test.labels)["knn_top1"]


def epoch_batches(cfg: TrainConfig, split, epoch: int, steps: int, rank: int = 0, device=None):
    """This rank's view pairs ``(x1, x2)`` of the epoch, in an order fixed by (seed, epoch).

    Each step's global batch of ``batch_size`` images is the same for any world size W; rank r
    takes its contiguous ``batch_size / W`` of them (``--augment per_sample``: a
    ``DistributedSampler``, re-shuffled each epoch with ``set_epoch``, on the CPU's workers).

    ``device``: where the batched augmentation runs, the model's device: the epoch's uint8
    images go there once and the views are made there (``None``: the CPU).
    """
    world = cfg.world_size or 1
    gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    if cfg.augment == "per_sample":
        dataset = TwoViewDataset(split, TwoViews(simclr_augment(**cfg.augment_kwargs())))
        sampler = None
        if world > 1:
            sampler = DistributedSampler(
                dataset, world, rank, shuffle=True, seed=cfg.seed, drop_last=True
            )
            sampler.set_epoch(epoch)
        loader = DataLoader(
            dataset,
            batch_size=cfg.batch_size // world,
            shuffle=sampler is None,
            sampler=sampler,
            drop_last=True,
            generator=gen if sampler is None else None,
            num_workers=cfg.num_workers,
        )
        return ((v1, v2) for v1, v2, _ in loader)
    batch_aug = BatchAugment(**cfg.augment_kwargs())
    x = torch.from_numpy(split.images).permute(0, 3, 1, 2)  # uint8 (N, 3, S, S)
    x = x.to(device or "cpu").contiguous()  # one copy per epoch; the views are made there
    order = torch.randperm(len(x), generator=gen)[: steps * cfg.batch_size]
    n = cfg.batch_size // world
    mine = order.view(steps, world, n)[:, rank]  # (steps, n): this rank's share of each batch
    return ((batch_aug(x[idx]), batch_aug(x[idx])) for idx in mine)


def run_epoch(
    model, optimizer, cfg: TrainConfig, batches, epoch: int, steps: int, ctx: dict, on_step=None
) -> dict:
    """One pass: per step, set lr (and m), then ``model.train_step``. Returns the epoch record.

    The step's loss stays on the device; the tally reads the kept losses every
    ``LOSS_READ_EVERY`` steps and at the epoch's end (one host synchronisation each).
    ``on_step``: called with each step's loss (a float), e.g. to record the curve."""
    model.train()
    tally = EpochTally(on_step, read=_read_losses)
    bar = epoch_bar(batches, steps, f"torch/{cfg.method}", epoch, cfg.epochs, ctx["progress"])
    for i, (x1, x2) in enumerate(bar):
        step = epoch * steps + i
        lr = cfg.lr * warmup_cosine(step, cfg.warmup_epochs * steps, cfg.epochs * steps)
        set_learning_rate(optimizer, lr)
        if cfg.method == "moco":  # MoCo's m follows its schedule, as the learning rate does
            model.key_momentum = cfg.key_momentum_at(step, cfg.epochs * steps)
        x1, x2 = (v.to(ctx["device"], memory_format=torch.channels_last) for v in (x1, x2))
        loss = model.train_step(x1, x2, optimizer)
        if (read := tally.add(loss.detach(), cfg.batch_size, i + 1)) is not None:
            bar.set_postfix(loss=f"{read:.3f}")
    return tally.record(epoch, lr)


def _read_losses(losses: list[torch.Tensor]) -> list[float]:
    """The kept step losses as floats in one transfer, averaged over the ranks (the same
    values on every rank, so that all stop together on a non-finite one)."""
    stacked = torch.stack(losses)  # float64 runs keep float64
    if world_size() > 1:
        dist.all_reduce(stacked)
        stacked /= world_size()
    return stacked.tolist()


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    """Train ``cfg.method`` in this process (or in each of torchrun's); return
    ``{"run_dir", "epochs", "final_loss", "model"}``.

    Raises:
        ConfigError: bad configuration, or ``WORLD_SIZE`` without torchrun's other variables.
        RunDirError, DatasetNotFound, CheckpointError, NonFiniteError: as
        ``shared.run.lifecycle.RunLifecycle`` says (a locked or occupied run directory,
        missing data, a checkpoint that does not restore, a NaN or infinite loss or weight).
    """
    cfg = cfg.resolve("torch", None)
    where = init_from_env(resolve_device(cfg.device))  # one process, or torchrun's group
    try:
        return _train(cfg.for_world(where.world_size), where, progress)
    finally:
        if world_size() > 1:
            dist.barrier()  # rank 0's last checkpoint is written before anyone leaves
            dist.destroy_process_group()


def _train(cfg: TrainConfig, where: Dist, progress: bool) -> dict:
    device = where.device
    seed_everything(cfg.seed)
    with RunLifecycle(cfg, where.is_main) as life:
        train_split, _, steps = life.open(load_split, _on_main_first)  # before any write
        dtype = "mixed_bfloat16" if amp_dtype_for(cfg.amp, device) else "float32"
        model = build_model(cfg, dtype).to(device, memory_format=torch.channels_last)  # NHWC
        optimizer = build_optimizer(model, cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)
        start_epoch = life.restore(HOOKS, model, optimizer, device)
        if where.world_size > 1:  # each rank its own augmentation stream (the weights: rank 0's)
            torch.manual_seed(cfg.seed * 100_003 + start_epoch * 1_009 + where.rank)
        life.start(start_epoch)
        ctx = {"device": device, "progress": progress and sys.stderr.isatty() and where.is_main}

        def one_epoch(epoch: int) -> dict:
            batches = epoch_batches(cfg, train_split, epoch, steps, where.rank, device)
            return run_epoch(model, optimizer, cfg, batches, epoch, steps, ctx)

        return life.result(life.run_epochs(start_epoch, one_epoch))


def _on_main_first(fn) -> None:
    """``fn()`` on rank 0 while the others wait; if it raises, every rank raises: the project's
    errors with rank 0's message (one line each), anything else as a ``RuntimeError`` naming it
    (rank 0 itself raises the original, with its traceback)."""
    err = None
    if rank() == 0:
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - raised below, once the other ranks are told
            err = e
    if world_size() > 1:
        box = [None if err is None else (isinstance(err, RosettaError), str(err))]
        dist.broadcast_object_list(box, src=0)
        if err is None and box[0] is not None:
            expected, message = box[0]
            raise RunDirError(message) if expected else RuntimeError(f"rank 0 failed: {message}")
    if err is not None:
        raise err


def _scalar_writer(run_dir: Path) -> ScalarWriter:
    writer = _summary_writer(run_dir)
    return ScalarWriter(writer.add_scalar, writer.flush, writer.close)


def _summary_writer(run_dir: Path):
    """torch's TensorBoard writer, kept from importing TensorFlow when TF is not loaded yet.

    ``tensorboard.compat.tf`` imports the real TensorFlow when it can, which costs seconds and
    prints TF's C++ log lines in a torch run. TensorBoard falls back to its own small stub (which
    writes the same event files) when a module ``tensorboard.compat.notf`` exists; we register an
    empty one. A process that already holds TF (the test suite) keeps it.
    """
    import sys
    import types

    if "tensorflow" not in sys.modules:
        sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("notf"))
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(run_dir / "tb"))


# what shared.run.lifecycle calls: checkpoints, canonical weights, the monitors, TensorBoard
HOOKS = Hooks(checkpoint, export_weights, projections, knn_monitor, _scalar_writer)
