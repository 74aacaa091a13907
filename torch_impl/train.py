"""SimCLR training in PyTorch: optimisers (LARS, SGD, Adam), warmup + cosine, AMP, checkpoints.

One epoch is the paper's loop (Algorithm 1): draw two augmented views of each image, encode
and project both, take NT-Xent over the 2N projections, step the optimiser.

Run directory (schema shared with ``tf_impl``, see ``shared.runlog``): ``config.json``,
``metrics.json``, TensorBoard events under ``tb/``, and ``ckpt-<epoch>.pt`` (the newest two are
kept). Checkpoints are written atomically (temp file + rename) and restore the model,
optimiser, scheduler, epoch and the torch / NumPy / Python RNG states, so ``resume=True``
continues exactly: 2 epochs straight equal 1 epoch + resume + 1 epoch, bit for bit on CPU.
"""

from __future__ import annotations

import io
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from shared.datasets import train_test_splits
from shared.evaluation import knn_top1
from shared.losses import check_temperature
from shared.runlog import RunLog, atomic_write_bytes
from torch_impl.augment import BatchAugment, TwoViews, simclr_augment
from torch_impl.data import TwoViewDataset, load_split
from torch_impl.losses import nt_xent
from torch_impl.models import SimCLR

__all__ = [
    "LARS",
    "CheckpointError",
    "TrainConfig",
    "build_optimizer",
    "extract_features",
    "load_checkpoint",
    "save_checkpoint",
    "train",
    "warmup_cosine",
]


@dataclass
class TrainConfig:
    """Every knob of a run; written to ``config.json``. Defaults train well on ``embedded``."""

    dataset: str = "embedded"
    root: str = "./data"
    download: bool = False
    encoder: str = "small_cnn"
    image_size: int = 32
    epochs: int = 60
    batch_size: int = 64
    optimizer: str = "lars"  # lars | sgd | adam
    lr: float | None = None  # None: the optimiser's default (see default_lr)
    weight_decay: float = 1e-6
    momentum: float = 0.9
    warmup_epochs: int = 2
    temperature: float = 0.2
    proj_dim: int = 128
    hidden_dim: int = 512
    head_layers: int = 2
    crop_scale: tuple[float, float] = (0.3, 1.0)
    color_strength: float = 0.5
    augment: str = "batch"  # batch: BatchAugment on whole batches | per_sample: v2 in a DataLoader
    seed: int = 0
    run_dir: str = "runs/torch-simclr"
    resume: bool = False
    knn_every: int = 5  # 0: never
    amp: bool = True  # bf16 autocast (CPU and CUDA; fp16 + GradScaler on GPUs without bf16)
    device: str = "auto"
    num_workers: int = 0
    limit_train: int | None = None  # use only the first n training images (tests)
    framework: str = field(default="torch", init=False)
    method: str = field(default="simclr", init=False)

    def validate(self) -> TrainConfig:
        check_temperature(self.temperature)
        if self.epochs < 1:
            raise ValueError(f"epochs: expected >= 1, got {self.epochs}")
        if self.batch_size < 2:
            raise ValueError(
                f"batch_size: expected >= 2 (NT-Xent needs negatives), got {self.batch_size}"
            )
        if self.optimizer not in ("lars", "sgd", "adam"):
            raise ValueError(f"optimizer: expected lars, sgd or adam, got {self.optimizer!r}")
        if self.augment not in ("batch", "per_sample"):
            raise ValueError(f"augment: expected 'batch' or 'per_sample', got {self.augment!r}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr: expected > 0, got {self.lr}")
        return self


def default_lr(optimizer: str, batch_size: int) -> float:
    """SimCLR's square-root scaling for LARS (0.075 sqrt(B), appendix B.1); 0.06 B/256 for SGD
    as in the SimCLR CIFAR recipe of solo-learn; Adam's usual 1e-3 (seed 002)."""
    return {"lars": 0.075 * math.sqrt(batch_size), "sgd": 0.06 * batch_size / 256, "adam": 1e-3}[
        optimizer
    ]


class LARS(torch.optim.Optimizer):
    """LARS (You et al. 2017) as SimCLR uses it: SGD with momentum whose step for each weight
    tensor is scaled by the trust ratio ``eta ||w|| / ||g + wd w||``.

    Parameter groups with ``lars=False`` (biases and BatchNorm, as in the paper) get neither
    weight decay nor the trust ratio: they follow plain SGD with momentum.
    """

    def __init__(
        self,
        params,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 1e-6,
        trust_coefficient: float = 0.001,
        eps: float = 1e-9,
    ):
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            lars=True,
            trust_coefficient=trust_coefficient,
            eps=eps,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if g["lars"]:
                    d = d.add(p, alpha=g["weight_decay"])
                    w_norm, d_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d)
                    trust = torch.where(
                        (w_norm > 0) & (d_norm > 0),
                        g["trust_coefficient"] * w_norm / (d_norm + g["eps"]),
                        torch.ones_like(w_norm),
                    )
                    d = d.mul(trust)
                buf = self.state[p].get("momentum_buffer")
                if buf is None:
                    buf = self.state[p]["momentum_buffer"] = d.clone()
                else:
                    buf.mul_(g["momentum"]).add_(d)
                p.add_(buf, alpha=-g["lr"])
        return loss


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Split weights (decayed, adapted) from biases and BN parameters (neither), as SimCLR does."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay, "lars": True},
        {"params": no_decay, "weight_decay": 0.0, "lars": False},
    ]


def build_optimizer(model, cfg: TrainConfig) -> torch.optim.Optimizer:
    lr = cfg.lr or default_lr(cfg.optimizer, cfg.batch_size)
    groups = param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "lars":
        return LARS(groups, lr=lr, momentum=cfg.momentum)
    for g in groups:
        g.pop("lars")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum)
    return torch.optim.Adam(groups, lr=lr)


def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    """LR multiplier: linear warmup from 1/warmup to 1, then half-cosine decay to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was asked for but no CUDA GPU is visible")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --- checkpoints -----------------------------------------------------------------------------
class CheckpointError(RuntimeError):
    """A checkpoint could not be read; the message names it and any intact previous one."""


def _rng_state() -> dict:
    st = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(st[1].astype(np.int64)),
            "pos": int(st[2]),
            "has_gauss": int(st[3]),
            "cached": float(st[4]),
        },
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    v = s["python"]
    random.setstate((v[0], tuple(v[1]), v[2]))
    n = s["numpy"]
    np.random.set_state(
        ("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def checkpoints(run_dir) -> list[Path]:
    return sorted(Path(run_dir).glob("ckpt-*.pt"))


def save_checkpoint(run_dir, epoch: int, model, optimizer, scheduler, keep: int = 2) -> Path:
    """Write ``ckpt-<epoch>.pt`` atomically and keep only the newest ``keep``."""
    buf = io.BytesIO()
    torch.save(
        {
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": _rng_state(),
        },
        buf,
    )
    path = Path(run_dir) / f"ckpt-{epoch:04d}.pt"
    atomic_write_bytes(path, buf.getvalue())
    for old in checkpoints(run_dir)[:-keep]:
        old.unlink()
    return path


def load_checkpoint(path) -> dict:
    """``torch.load(weights_only=True)``, with a clear error for a corrupt or truncated file."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors all mean "unreadable"
        older = [p for p in checkpoints(path.parent) if p.name < path.name]
        hint = (
            f" The previous checkpoint {older[-1]} is intact: delete the corrupt file to "
            "resume from it."
            if older
            else " No earlier checkpoint exists."
        )
        raise CheckpointError(
            f"checkpoint {path} is corrupt or unreadable "
            f"({type(e).__name__}: {str(e)[:120]}).{hint}"
        ) from None


# --- features and monitoring ------------------------------------------------------------------
@torch.no_grad()
def extract_features(
    encoder, images: np.ndarray, batch_size: int = 512, device="cpu"
) -> np.ndarray:
    """Encoder features h (not z) of uint8 NHWC images, in eval mode: (N, F) float32 NumPy."""
    was_training = encoder.training
    encoder.eval()
    out = []
    for s in range(0, len(images), batch_size):
        x = torch.from_numpy(images[s : s + batch_size]).permute(0, 3, 1, 2).float().div_(255)
        out.append(encoder(x.to(device)).float().cpu().numpy())
    encoder.train(was_training)
    return np.concatenate(out)


def knn_monitor(model, train, test, device) -> float:
    ftr = extract_features(model.encoder, train.images, device=device)
    fte = extract_features(model.encoder, test.images, device=device)
    return knn_top1(ftr, train.labels, fte, test.labels, k=200)


# --- the loop ---------------------------------------------------------------------------------
def train(cfg: TrainConfig, progress: bool = True) -> dict:
    """Train SimCLR; return ``{"run_dir", "epochs", "final_loss", "model"}``.

    Raises:
        ValueError: bad configuration. DatasetNotFound: missing data. CheckpointError: a
        corrupt checkpoint on ``resume``.
    """
    cfg.validate()
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    run_dir = Path(cfg.run_dir)
    train_split, test_split = train_test_splits(load_split, cfg)
    if len(train_split) < cfg.batch_size:
        raise ValueError(
            f"batch_size: expected <= the {len(train_split)} training images, got {cfg.batch_size}"
        )

    model = SimCLR(cfg.encoder, cfg.hidden_dim, cfg.proj_dim, cfg.head_layers)
    model = model.to(device, memory_format=torch.channels_last)  # NHWC convs: ~1.5x on CPU
    if train_split.images.shape[1] != model.encoder.input_size:
        raise ValueError(
            f"image_size: encoder '{cfg.encoder}' expects {model.encoder.input_size} px "
            f"images, the dataset has {train_split.images.shape[1]} px"
        )
    optimizer = build_optimizer(model, cfg)
    steps_per_epoch = len(train_split) // cfg.batch_size
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: warmup_cosine(
            s, cfg.warmup_epochs * steps_per_epoch, cfg.epochs * steps_per_epoch
        ),
    )
    use_amp = cfg.amp
    amp_dtype = torch.bfloat16
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        amp_dtype = torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    start_epoch = 0
    config = asdict(cfg)
    if cfg.resume and checkpoints(run_dir):
        state = load_checkpoint(checkpoints(run_dir)[-1])
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        start_epoch = state["epoch"]
        print(f"[torch/simclr] resumed from epoch {start_epoch} in {run_dir}", flush=True)
    runlog = RunLog.resume(run_dir, "torch", "simclr", cfg.dataset, config, start_epoch)
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run_dir / "tb"))
    aug_args = (cfg.image_size, tuple(cfg.crop_scale), cfg.color_strength)
    if cfg.augment == "per_sample":
        dataset = TwoViewDataset(train_split, TwoViews(simclr_augment(*aug_args)))
    else:
        batch_aug = BatchAugment(*aug_args)
        images = torch.from_numpy(train_split.images).permute(0, 3, 1, 2).contiguous()  # uint8
    loss_value = float("nan")
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)  # order from (seed, epoch)
        if cfg.augment == "per_sample":
            batches = DataLoader(
                dataset,
                batch_size=cfg.batch_size,
                shuffle=True,
                drop_last=True,
                generator=gen,
                num_workers=cfg.num_workers,
            )
        else:
            order = torch.randperm(len(images), generator=gen)[: steps_per_epoch * cfg.batch_size]
            batches = (images[idx] for idx in order.view(steps_per_epoch, cfg.batch_size))
        t0, total, seen = time.perf_counter(), 0.0, 0
        bar = tqdm(
            batches,
            total=steps_per_epoch,
            desc=f"torch/simclr epoch {epoch + 1}/{cfg.epochs}",
            leave=False,
            disable=not progress,
            file=sys.stderr,
            mininterval=0.5,
        )
        for batch in bar:
            if cfg.augment == "per_sample":
                x1, x2 = (
                    batch[0].to(device, non_blocking=True),
                    batch[1].to(device, non_blocking=True),
                )
            else:
                batch = batch.to(device, non_blocking=True)
                x1, x2 = batch_aug(batch), batch_aug(batch)  # two independent views per image
            x1 = x1.contiguous(memory_format=torch.channels_last)
            x2 = x2.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                _, _, z1, z2 = model(x1, x2)
                loss = nt_xent(z1, z2, cfg.temperature)  # logits in float32 regardless
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"loss became {loss.item()} at epoch {epoch + 1}; the "
                    f"last good checkpoint is in {run_dir}"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            total += loss.item() * len(x1)
            seen += len(x1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        elapsed = time.perf_counter() - t0
        loss_value = total / seen
        knn = None
        if (
            test_split is not None
            and cfg.knn_every
            and ((epoch + 1) % cfg.knn_every == 0 or epoch + 1 == cfg.epochs)
        ):
            knn = knn_monitor(model, train_split, test_split, device)
            writer.add_scalar("knn_top1", knn, epoch + 1)
        lr = optimizer.param_groups[0]["lr"]
        writer.add_scalar("loss", loss_value, epoch + 1)
        writer.add_scalar("lr", lr, epoch + 1)
        save_checkpoint(run_dir, epoch + 1, model, optimizer, scheduler)
        print(
            runlog.epoch(
                epoch=epoch + 1,
                loss=loss_value,
                lr=lr,
                images_per_s=seen / elapsed,
                time_s=elapsed,
                knn_top1=knn,
            ),
            flush=True,
        )
    writer.close()
    return {"run_dir": str(run_dir), "epochs": cfg.epochs, "final_loss": loss_value, "model": model}
