"""The training loop in TensorFlow, one for both methods (``--method simclr|moco``).

Per epoch: a ``tf.data`` pipeline of two-view batches whose order and augmentation are pure
functions of (seed, epoch, index); per step the loop sets the learning rate from
``shared.oracle.optim.warmup_cosine`` and (MoCo) the key momentum, and calls one ``tf.function``
(:func:`compile_step`) around the model's ``train_step``: the algorithm lives in
``tf_impl.simclr`` and ``tf_impl.moco``. The step is traced once per input signature (the
batch dimension is ``None``); ``TRACE_COUNT`` counts traces for the tests.
``torch_impl.train`` is the same loop in PyTorch.

``--strategy mirrored|multi_worker``: the model and optimiser live in the strategy's scope, and
the one ``tf.function`` runs ``strategy.run`` on every replica with its share of the global
batch (``tf_impl.distributed``); the chief alone writes the run directory. What happens to
it (the lock, the checks, the logs, the monitors, the checkpoints) is ``shared.run.lifecycle``'s,
the same for both frameworks.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from shared.oracle.optim import warmup_cosine
from shared.parity.weights import method_of, online_network
from shared.run.config import TrainConfig
from shared.run.errors import ConfigError
from shared.run.evaluation import evaluate_knn
from shared.run.lifecycle import EpochTally, Hooks, RunLifecycle, ScalarWriter, epoch_bar
from tf_impl import checkpoint
from tf_impl.augment import BatchAugment, TwoViews, simclr_augment
from tf_impl.data import load_split
from tf_impl.distributed import local_rows, make_strategy
from tf_impl.evaluate import extract_features, projections
from tf_impl.methods import build_model
from tf_impl.optim import build_optimizer, set_learning_rate
from tf_impl.weights import export_weights

__all__ = ["TRACE_COUNT", "compile_step", "make_dataset", "train"]

TRACE_COUNT = {"train_step": 0}


def compile_step(
    model, optimizer, jit_compile: bool = False, strategy=None, return_gradients: bool = False
):
    """One ``tf.function`` ``step(x1, x2, seed, key_momentum) -> loss`` for either model.

    Before the model's ``train_step``, MoCo's per-step variables are set from the inputs:
    ``key_momentum`` (its schedule) and ``shuffle_seed`` (``seed``, (2,) int32, for the
    stateless key shuffle); SimCLR ignores both. The optimiser's slots are built first, so the
    function traces once. With a ``tf.distribute`` ``strategy`` (model and optimiser built in
    its scope) the step takes the global batch, runs ``train_step`` on every replica with its
    rows (``tf_impl.distributed.local_rows``) and returns the replicas' mean loss: still one
    ``tf.function``.

    ``return_gradients``: the step returns ``(loss, grads)`` instead, ``grads`` being what the
    optimiser was handed (with a strategy: replica 0's, already the replicas' mean), in the
    order of the variables the optimiser is built for. The traced Python is the same
    ``train_step``; the parity checks read the step this way.
    """
    dtype = tf.float64 if model.backbone.weights[0].dtype == tf.float64 else tf.float32
    spec = tf.TensorSpec([None, None, None, 3], dtype)  # any batch and (square) image size
    optimizer.build(online_network(model).trainable_weights)
    moco = method_of(model) == "moco"

    def replica_step(x1, x2, seed, key_momentum):
        x1, x2 = local_rows(x1), local_rows(x2)
        opt = _GradientRecorder(optimizer) if return_gradients else optimizer
        if moco:  # as the learning rate, set each step
            model.key_momentum.assign(key_momentum)
            model.shuffle_seed.assign(seed)
        loss = model.train_step(x1, x2, opt)
        return (loss, opt.grads) if return_gradients else loss

    @tf.function(
        input_signature=[spec, spec, tf.TensorSpec([2], tf.int32), tf.TensorSpec([], tf.float64)],
        jit_compile=jit_compile or None,
        reduce_retracing=True,
    )
    def step(x1, x2, seed, key_momentum):
        TRACE_COUNT["train_step"] += 1  # Python side effect: runs only while tracing
        if strategy is None:
            return replica_step(x1, x2, seed, key_momentum)
        out = strategy.run(replica_step, args=(x1, x2, seed, key_momentum))
        losses, grads = out if return_gradients else (out, None)
        loss = strategy.reduce(tf.distribute.ReduceOp.MEAN, losses, axis=None)
        if not return_gradients:
            return loss
        return loss, [strategy.experimental_local_results(g)[0] for g in grads]

    return step


class _GradientRecorder:
    """The optimiser, passed to ``train_step`` in its place: it keeps the gradients it is
    asked to apply (graph tensors, while ``compile_step`` traces) and applies them."""

    def __init__(self, optimizer):
        self.optimizer, self.grads = optimizer, None

    def apply_gradients(self, grads_and_vars) -> None:
        pairs = list(grads_and_vars)
        self.grads = [g for g, _ in pairs]
        self.optimizer.apply_gradients(pairs)


DATA_THREADS = max(2, min(8, os.cpu_count() or 2))  # per-sample augmentation's parallel maps


def make_dataset(
    images: np.ndarray, cfg: TrainConfig, epoch: int, aug=None, autotune: bool = False
) -> tf.data.Dataset:
    """Shuffled two-view batches whose order and augmentation depend only on (seed, epoch).

    ``aug``: a ``tf.function`` of :class:`BatchAugment` to reuse across epochs (tracing it again
    every epoch costs ~0.5 s on 2 cores).

    ``autotune``: tf.data's autotuning, off by default: the parallelism is fixed, with a
    prefetch of 2. With it on, deleting an epoch's iterator can wait up to 5 s for autotune's
    background thread (``benchmarks/stall.py`` measures it: benchmarks/results/stall.md).
    """
    order = np.random.default_rng([cfg.seed, epoch]).permutation(len(images))
    ds = tf.data.Dataset.from_tensor_slices((images[order], order.astype(np.int32)))
    base = cfg.seed * 100_003 + epoch
    if cfg.augment == "per_sample":
        two = TwoViews(simclr_augment(**cfg.augment_kwargs()))
        ds = ds.map(
            lambda img, i: two(img, tf.stack([base, i])),
            num_parallel_calls=tf.data.AUTOTUNE if autotune else DATA_THREADS,
            deterministic=True,
        ).batch(cfg.batch_size, drop_remainder=True)
    else:
        aug = aug or tf.function(BatchAugment(**cfg.augment_kwargs()))

        def two_views(j, batch):
            j = 2 * tf.cast(j, tf.int32)
            return aug(batch[0], tf.stack([base, j])), aug(batch[0], tf.stack([base, j + 1]))

        ds = ds.batch(cfg.batch_size, drop_remainder=True).enumerate()
        ds = ds.map(
            two_views, num_parallel_calls=tf.data.AUTOTUNE if autotune else 2, deterministic=True
        )
    ds = ds.prefetch(tf.data.AUTOTUNE if autotune else 2)
    return ds if autotune else _fixed(ds)


def _fixed(ds: tf.data.Dataset) -> tf.data.Dataset:
    """The dataset with tf.data's autotuning off (see :func:`make_dataset`)."""
    opts = tf.data.Options()
    opts.autotune.enabled = False
    return ds.with_options(opts)


def knn_monitor(model, train, test, device="cpu") -> float:
    """kNN top-1 of the backbone's features at the leave-one-out k (``shared.run.evaluation``'s
    protocol); ``device`` as in ``extract_features``."""
    ftr, fte = (
        extract_features(model.backbone, train.images),
        extract_features(model.backbone, test.images),
    )
    return evaluate_knn(ftr, train.labels, fte, test.labels)["knn_top1"]


def run_epoch(
    step_fn,
    optimizer,
    cfg: TrainConfig,
    dataset,
    epoch: int,
    steps: int,
    progress: bool,
    on_step=None,
) -> dict:
    """One pass: per step, set lr (and m), then the compiled step. Returns the epoch record.

    The step's loss stays a tensor; the tally reads the kept losses every ``LOSS_READ_EVERY``
    steps and at the epoch's end (one host synchronisation each).
    ``on_step``: called with each step's loss (a float), e.g. to record the curve."""
    tally = EpochTally(on_step, read=lambda xs: tf.stack(xs).numpy().astype(float).tolist())
    bar = epoch_bar(dataset, steps, f"tf/{cfg.method}", epoch, cfg.epochs, progress)
    for i, (x1, x2) in enumerate(bar):
        step = epoch * steps + i
        lr = cfg.lr * warmup_cosine(step, cfg.warmup_epochs * steps, cfg.epochs * steps)
        set_learning_rate(optimizer, lr)
        m = cfg.key_momentum_at(step, cfg.epochs * steps)
        loss = step_fn(x1, x2, tf.constant([cfg.seed, step], tf.int32), tf.constant(m, tf.float64))
        if (read := tally.add(loss, int(x1.shape[0]), i + 1)) is not None:  # the global batch
            bar.set_postfix(loss=f"{read:.3f}")
    return tally.record(epoch, lr)


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    """Train ``cfg.method`` under ``cfg.strategy``; ``{"run_dir", "epochs", "final_loss",
    "model"}``. The lock, checks, logs, monitors and checkpoints are ``shared.run.lifecycle``'s.

    Raises:
        ConfigError: bad configuration, or ``multi_worker`` without a valid ``TF_CONFIG``; and
        the lifecycle's errors (RunDirError, DatasetNotFound, CheckpointError, NonFiniteError).
    """
    cfg = cfg.resolve("tensorflow", None)
    strategy = make_strategy(cfg.strategy, cfg.cpu_devices)  # before TF touches a device
    cfg = cfg.for_world(strategy.num_replicas_in_sync if strategy else 1)
    if cfg.device == "cuda" and not tf.config.list_physical_devices("GPU"):
        raise ConfigError("device: 'cuda' was asked for but TensorFlow sees no GPU")
    tf.keras.utils.set_random_seed(cfg.seed)
    # a non-chief worker saves its checkpoints to a scratch folder: saving is collective in MWMS
    with RunLifecycle(cfg, _is_chief(strategy), collective_save=True) as life:
        train_split, _, steps = life.open(load_split)  # before anything is written
        with strategy.scope() if strategy else contextlib.nullcontext():
            model = build_model(cfg)
            optimizer = build_optimizer(
                model, cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay
            )
            # one tf.function (around strategy.run when distributed); slots built before a restore
            step_fn = compile_step(model, optimizer, cfg.jit_compile, strategy)
            start_epoch = life.restore(HOOKS, model, optimizer, cfg.device)
        life.start(start_epoch)
        aug = tf.function(BatchAugment(**cfg.augment_kwargs()))
        shown = progress and sys.stderr.isatty() and life.main

        def one_epoch(epoch: int) -> dict:
            dataset = make_dataset(train_split.images, cfg, epoch, aug)
            return run_epoch(step_fn, optimizer, cfg, dataset, epoch, steps, shown)

        return life.result(life.run_epochs(start_epoch, one_epoch))


def _is_chief(strategy) -> bool:
    """Whether this process writes the run directory: always, except the non-chief workers of
    ``MultiWorkerMirroredStrategy`` (TF_CONFIG's worker 0 is the chief)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    return (
        resolver is None
        or resolver.task_type in (None, "chief")
        or (resolver.task_type == "worker" and resolver.task_id == 0)
    )


def _scalar_writer(run_dir: Path) -> ScalarWriter:
    """TF's TensorBoard writer under ``run_dir/tb``."""
    writer = tf.summary.create_file_writer(str(run_dir / "tb"))

    def scalar(key: str, value: float, step: int) -> None:
        with writer.as_default():
            tf.summary.scalar(key, value, step=step)

    return ScalarWriter(scalar, writer.flush, writer.close)


# what shared.run.lifecycle calls: checkpoints, canonical weights, the monitors, TensorBoard
HOOKS = Hooks(checkpoint, export_weights, projections, knn_monitor, _scalar_writer)
