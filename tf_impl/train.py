"""MoCo v2 training in TensorFlow: one ``tf.function`` per step, SGD + warmup/cosine, checkpoints.

The train step (:func:`make_train_step`) does the whole of MoCo's Algorithm 1 in one graph:
momentum update, forward of both encoders, InfoNCE against the queue, gradients, the SGD
update and the enqueue. It is traced once per input signature (the batch dimension is
``None``, so a partial last batch does not retrace); ``TRACE_COUNT`` counts traces for tests.

``tf.train.Checkpoint`` + ``CheckpointManager`` save both encoders, the optimiser, the queue,
its pointer, the step and the epoch. The augmentation RNG is stateless, a pure function of
``(seed, epoch, index)`` (``tf_impl.augment``), so step and epoch are the complete RNG state and
``resume=True`` continues exactly. Run-directory schema: ``shared.runlog``.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from shared.datasets import train_test_splits
from shared.evaluation import knn_top1
from shared.losses import check_temperature
from shared.queue import check_momentum
from shared.runlog import RunLog
from tf_impl.augment import BatchAugment, TwoViews, simclr_augment
from tf_impl.data import load_split
from tf_impl.losses import info_nce
from tf_impl.models import MoCo, dequeue_and_enqueue, momentum_update

__all__ = [
    "TRACE_COUNT",
    "CheckpointError",
    "TrainConfig",
    "WarmupCosine",
    "extract_features",
    "make_train_step",
    "train",
    "warmup_cosine",
]

TRACE_COUNT = {"train_step": 0}


@dataclass
class TrainConfig:
    """Every knob of a run; written to ``config.json`` (same schema as ``torch_impl``).

    Defaults are tuned for the embedded dataset on 2 CPU cores (about 2 minutes): MoCo v2 with
    the symmetric loss, SplitBatchNorm (8 splits) with key shuffling, tau = 0.1, K = 512 and
    SGD at lr 0.06 with batch 64. With the asymmetric loss and one BN over the batch, kNN
    top-1 stalled near 50 % in the same time; see the issue notes.
    """

    dataset: str = "embedded"
    root: str = "./data"
    download: bool = False
    encoder: str = "small_cnn"
    image_size: int = 32
    epochs: int = 22
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float | None = 0.06  # None: 0.06 B/256, the MoCo CIFAR demo's scaling
    weight_decay: float = 5e-4
    momentum: float = 0.9  # SGD momentum
    warmup_epochs: int = 2
    temperature: float = 0.1
    proj_dim: int = 128
    hidden_dim: int = 512
    head_layers: int = 2
    crop_scale: tuple[float, float] = (0.3, 1.0)
    color_strength: float = 0.5
    augment: str = "batch"  # batch: BatchAugment after batching | per_sample: map per image
    queue_size: int = 512  # sized for the 1,438-image embedded set; 4096-65536 for CIFAR/ImageNet
    key_momentum: float = 0.99
    key_momentum_schedule: str = "constant"  # constant | cosine
    bn_splits: int = 8  # SplitBatchNorm: the single-device Shuffle-BN substitute
    shuffle_keys: bool = True
    symmetric: bool = True
    jit_compile: bool = False
    amp: bool = True  # Keras "mixed_bfloat16": bf16 compute, float32 weights; loss in float32
    seed: int = 0
    run_dir: str = "runs/tf-moco"
    resume: bool = False
    knn_every: int = 5
    limit_train: int | None = None
    framework: str = field(default="tensorflow", init=False)
    method: str = field(default="moco", init=False)

    def validate(self) -> TrainConfig:
        check_temperature(self.temperature)
        check_momentum(self.key_momentum)
        if self.epochs < 1:
            raise ValueError(f"epochs: expected >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {self.batch_size}")
        if self.queue_size < 1:
            raise ValueError(f"queue_size: expected K >= 1, got {self.queue_size}")
        if self.augment not in ("batch", "per_sample"):
            raise ValueError(f"augment: expected 'batch' or 'per_sample', got {self.augment!r}")
        if self.optimizer != "sgd":
            raise ValueError(f"optimizer: expected 'sgd' (MoCo's), got {self.optimizer!r}")
        if self.key_momentum_schedule not in ("constant", "cosine"):
            raise ValueError(
                f"key_momentum_schedule: expected constant or cosine, got "
                f"{self.key_momentum_schedule!r}"
            )
        if self.bn_splits > 1 and self.batch_size % self.bn_splits:
            raise ValueError(
                f"bn_splits: expected a divisor of batch_size {self.batch_size}, "
                f"got {self.bn_splits}"
            )
        return self


class CheckpointError(RuntimeError):
    """A checkpoint could not be restored; the message names it and any earlier one."""


def warmup_cosine(step, warmup_steps: int, total_steps: int):
    """LR multiplier (tensor-friendly twin of ``torch_impl.train.warmup_cosine``)."""
    step = tf.cast(step, tf.float32)
    warm = (step + 1.0) / max(warmup_steps, 1)
    progress = tf.minimum((step - warmup_steps) / max(1, total_steps - warmup_steps), 1.0)
    cos = 0.5 * (1.0 + tf.cos(math.pi * progress))
    return tf.where(step < warmup_steps, warm, cos)


class WarmupCosine(tf.keras.optimizers.schedules.LearningRateSchedule):
    def __init__(self, base_lr: float, warmup_steps: int, total_steps: int):
        self.base_lr, self.warmup_steps, self.total_steps = base_lr, warmup_steps, total_steps

    def __call__(self, step):
        return self.base_lr * warmup_cosine(step, self.warmup_steps, self.total_steps)

    def get_config(self):
        return {
            "base_lr": self.base_lr,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
        }


def make_train_step(model: MoCo, optimizer, cfg: TrainConfig, total_steps: int):
    """Build the one ``tf.function`` that performs a full MoCo step; returns ``step(x1, x2, seed)``."""
    size = model.encoder_q.encoder.input_size
    spec = tf.TensorSpec([None, size, size, 3], tf.float32)
    tau, wd = model.temperature, cfg.weight_decay
    variables = model.encoder_q.trainable_variables
    optimizer.build(variables)  # create the slots now, or tf.function traces a second time

    def key_m(step):
        if cfg.key_momentum_schedule == "cosine":
            frac = tf.cast(step, tf.float32) / max(total_steps, 1)
            return (
                1.0
                - (1.0 - cfg.key_momentum) * (tf.cos(math.pi * tf.minimum(frac, 1.0)) + 1.0) / 2.0
            )
        return cfg.key_momentum

    @tf.function(
        input_signature=[spec, spec, tf.TensorSpec([2], tf.int32)],
        jit_compile=cfg.jit_compile or None,
        reduce_retracing=True,
    )
    def train_step(x1, x2, seed):
        TRACE_COUNT["train_step"] += 1  # Python side effect: runs only while tracing
        momentum_update(model.encoder_q, model.encoder_k, key_m(optimizer.iterations))
        seeds = tf.random.experimental.stateless_split(seed, 2)
        with tf.GradientTape() as tape:
            if model.symmetric:  # both directions; each encoder sees one batch of 2N
                n = tf.shape(x1)[0]
                _, q = model.encoder_q(tf.concat([x1, x2], 0), training=True)
                q = tf.math.l2_normalize(tf.cast(q, tf.float32), axis=1)  # (2N, D)
                k = model.keys(tf.concat([x2, x1], 0), seeds[0])  # (2N, D): keys of the other view
                # mean of the two directions (the MoCo CIFAR demo sums them: 2x this value)
                loss = 0.5 * (
                    info_nce(q[:n], k[:n], model.queue, tau)
                    + info_nce(q[n:], k[n:], model.queue, tau)
                )
                keys = k
            else:
                _, q1 = model.encoder_q(x1, training=True)
                q1 = tf.math.l2_normalize(tf.cast(q1, tf.float32), axis=1)  # (N, D) float32
                keys = model.keys(x2, seeds[0])  # (N, D), no gradient
                loss = info_nce(q1, keys, model.queue, tau)  # reads the queue before the enqueue
            l2 = tf.add_n([tf.reduce_sum(tf.square(v)) for v in variables])
            total = loss + 0.5 * wd * l2  # coupled L2 weight decay, as MoCo's SGD
        grads = tape.gradient(total, variables)
        optimizer.apply_gradients(zip(grads, variables))
        dequeue_and_enqueue(model.queue, model.ptr, keys)
        return loss

    return train_step


def make_dataset(images: np.ndarray, cfg: TrainConfig, epoch: int, aug=None) -> tf.data.Dataset:
    """Shuffled two-view batches whose order and augmentation depend only on (seed, epoch).

    ``aug``: a ``tf.function`` of :class:`BatchAugment` to reuse across epochs (tracing it again
    every epoch costs ~0.5 s on 2 cores).
    """
    aug_args = (cfg.image_size, tuple(cfg.crop_scale), cfg.color_strength)
    n = len(images)
    order = np.random.default_rng([cfg.seed, epoch]).permutation(n)
    ds = tf.data.Dataset.from_tensor_slices((images[order], order.astype(np.int32)))
    base = cfg.seed * 100_003 + epoch
    if cfg.augment == "per_sample":
        two = TwoViews(simclr_augment(*aug_args))
        ds = ds.map(
            lambda img, i: two(img, tf.stack([base, i])),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        return ds.batch(cfg.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    aug = aug or tf.function(BatchAugment(*aug_args))
    ds = ds.batch(cfg.batch_size, drop_remainder=True).enumerate()
    ds = ds.map(
        lambda j, batch: (
            aug(batch[0], tf.stack([base, 2 * tf.cast(j, tf.int32)])),
            aug(batch[0], tf.stack([base, 2 * tf.cast(j, tf.int32) + 1])),
        ),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return ds.prefetch(tf.data.AUTOTUNE)


def extract_features(encoder, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Encoder features h (not z) of uint8 NHWC images in inference mode: (N, F) float32."""
    out = []
    for s in range(0, len(images), batch_size):
        x = tf.convert_to_tensor(images[s : s + batch_size], tf.float32) / 255.0
        out.append(tf.cast(encoder(x, training=False), tf.float32).numpy())
    return np.concatenate(out)


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    """Train MoCo v2; return ``{"run_dir", "epochs", "final_loss", "model"}``.

    Raises:
        ValueError: bad configuration. DatasetNotFound: missing data. CheckpointError: a
        checkpoint that cannot be restored on ``resume``.
    """
    cfg.validate()
    tf.keras.utils.set_random_seed(cfg.seed)
    run_dir = Path(cfg.run_dir)
    train_split, test_split = train_test_splits(load_split, cfg)
    steps_per_epoch = len(train_split) // cfg.batch_size
    if steps_per_epoch < 1:
        raise ValueError(
            f"batch_size: expected <= the {len(train_split)} training images, got {cfg.batch_size}"
        )
    total_steps = steps_per_epoch * cfg.epochs
    previous_policy = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy("mixed_bfloat16" if cfg.amp else "float32")
    try:
        model = MoCo(
            cfg.encoder,
            cfg.queue_size,
            cfg.proj_dim,
            cfg.hidden_dim,
            cfg.head_layers,
            cfg.key_momentum,
            cfg.temperature,
            cfg.bn_splits,
            cfg.shuffle_keys,
            cfg.symmetric,
            cfg.seed,
        )
    finally:
        tf.keras.mixed_precision.set_global_policy(previous_policy)
    lr = cfg.lr or 0.06 * cfg.batch_size / 256
    optimizer = tf.keras.optimizers.SGD(
        WarmupCosine(lr, cfg.warmup_epochs * steps_per_epoch, total_steps), momentum=cfg.momentum
    )
    step_fn = make_train_step(model, optimizer, cfg, total_steps)  # builds the optimizer slots,
    # which must exist before a restore: Keras 3 optimizers do not restore slots lazily
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    ckpt = make_checkpoint(model, optimizer, epoch_var)
    manager = tf.train.CheckpointManager(ckpt, str(run_dir / "ckpt"), max_to_keep=2)
    if cfg.resume and manager.latest_checkpoint:
        restore(ckpt, manager)
        model.check_head()
        print(
            f"[tensorflow/moco] resumed from epoch {int(epoch_var.numpy())} in {run_dir}",
            flush=True,
        )
    start_epoch = int(epoch_var.numpy())
    runlog = RunLog.resume(run_dir, "tensorflow", "moco", cfg.dataset, asdict(cfg), start_epoch)
    writer = tf.summary.create_file_writer(str(run_dir / "tb"))
    loss_value = float("nan")
    aug = tf.function(BatchAugment(cfg.image_size, tuple(cfg.crop_scale), cfg.color_strength))
    for epoch in range(start_epoch, cfg.epochs):
        t0, total, seen = time.perf_counter(), 0.0, 0
        bar = tqdm(
            make_dataset(train_split.images, cfg, epoch, aug),
            total=steps_per_epoch,
            desc=f"tf/moco epoch {epoch + 1}/{cfg.epochs}",
            leave=False,
            disable=not progress,
            file=sys.stderr,
            mininterval=0.5,
        )
        for i, (x1, x2) in enumerate(bar):
            loss = step_fn(x1, x2, tf.constant([cfg.seed, epoch * 100_000 + i], tf.int32))
            lv = float(loss)
            if not math.isfinite(lv):
                raise FloatingPointError(
                    f"loss became {lv} at epoch {epoch + 1}; the last good "
                    f"checkpoint is in {run_dir / 'ckpt'}"
                )
            total += lv * int(x1.shape[0])
            seen += int(x1.shape[0])
            bar.set_postfix(loss=f"{lv:.3f}")
        elapsed = time.perf_counter() - t0
        loss_value = total / seen
        knn = None
        if test_split is not None and ((epoch + 1) % cfg.knn_every == 0 or epoch + 1 == cfg.epochs):
            enc = model.encoder_q.encoder
            knn = knn_top1(
                extract_features(enc, train_split.images),
                train_split.labels,
                extract_features(enc, test_split.images),
                test_split.labels,
                k=200,
            )
        cur_lr = float(optimizer.learning_rate)  # keras 3 evaluates the schedule at iterations
        with writer.as_default():
            tf.summary.scalar("loss", loss_value, step=epoch + 1)
            tf.summary.scalar("lr", cur_lr, step=epoch + 1)
            if knn is not None:
                tf.summary.scalar("knn_top1", knn, step=epoch + 1)
        epoch_var.assign(epoch + 1)
        manager.save(checkpoint_number=epoch + 1)  # writes to temp names, then renames the index
        print(
            runlog.epoch(
                epoch=epoch + 1,
                loss=loss_value,
                lr=cur_lr,
                images_per_s=seen / elapsed,
                time_s=elapsed,
                knn_top1=knn,
            ),
            flush=True,
        )
    writer.close()
    return {"run_dir": str(run_dir), "epochs": cfg.epochs, "final_loss": loss_value, "model": model}


def make_checkpoint(model: MoCo, optimizer=None, epoch=None) -> tf.train.Checkpoint:
    """Both encoders (every weight, BN statistics included), queue, pointer, optimiser, epoch.

    Keras 3 models are not reliably walked by ``tf.train.Checkpoint``'s object graph (nested
    sub-models were silently skipped), so the encoders' weights are listed explicitly, keyed by
    their position in ``model.weights``, which is fixed by the architecture.
    """
    parts = {
        "encoder_q": {f"w{i:03d}": w for i, w in enumerate(model.encoder_q.weights)},
        "encoder_k": {f"w{i:03d}": w for i, w in enumerate(model.encoder_k.weights)},
        "queue": model.queue,
        "ptr": model.ptr,
    }
    if optimizer is not None:
        parts["optimizer"] = optimizer
    if epoch is not None:
        parts["epoch"] = epoch
    return tf.train.Checkpoint(**parts)


def restore(ckpt: tf.train.Checkpoint, manager: tf.train.CheckpointManager, path=None) -> None:
    """Restore ``path`` (default: the latest), with a clear error if it is corrupt."""
    path = path or manager.latest_checkpoint
    try:
        ckpt.restore(path).assert_existing_objects_matched()
    except Exception as e:  # DataLossError, NotFoundError, assertion errors: all "unreadable"
        older = [p for p in manager.checkpoints if p != path]
        hint = (
            f" The previous checkpoint {older[-1]} is intact: pass it to restore, or delete "
            "the corrupt one."
            if older
            else " No earlier checkpoint exists."
        )
        raise CheckpointError(
            f"checkpoint {path} is corrupt or unreadable "
            f"({type(e).__name__}: {str(e).splitlines()[0][:120]}).{hint}"
        ) from None
