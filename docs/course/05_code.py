# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 5. The code
#
# **What you will learn.** Both methods in both frameworks, twice: first as a short loop
# written here, in PyTorch and in TensorFlow, then as the project's own code beside it
# (`torch_impl/simclr.py`, `torch_impl/moco.py` and their mirrors in `tf_impl/`, which hold the
# algorithm alone). Then the pieces one by one: the batched augmentation, the encoder and head,
# the losses, MoCo's key encoder, queue, momentum update and Shuffle-BN, each checked against the
# NumPy oracle. You will **train an encoder yourself** (about 2 minutes on 2 CPU cores) and
# watch its loss fall and its kNN accuracy rise, and you will write NT-Xent in PyTorch, graded on
# its value and its gradients.
#
# **Prerequisites.** Chapters 3 and 4; PyTorch tensors and autograd; TensorFlow's
# `GradientTape` helps.
#
# **Time.** About 90 minutes with the exercise and the training run.
#
# Where a cell says two things agree, it also asserts it, so the chapter cannot run to the end
# when they do not (`tests/test_course.py` executes every chapter).

# %%
import os
from pathlib import Path

import shared  # the project, installed: `pip install -e .` in its checkout

ROOT = Path(shared.__file__).resolve().parent.parent  # the checkout: data, results
SHOW_SOLUTIONS = False  # True: show and check the reference solutions

# %%
import inspect
import json
import math
import time

import torch  # PyTorch (and torchvision) before TensorFlow, in one process
import torch.nn.functional as F
import numpy as np
import matplotlib.pyplot as plt

from shared.docgen import exercises
from shared.oracle import losses as oracle
from shared.oracle import queue as oracle_queue
from shared.oracle.augment_spec import augment_spec, sample_params
from shared.oracle.optim import warmup_cosine
from shared.run import data, published
from shared.run.config import TrainConfig
from torch_impl import augment as torch_augment, evaluate as torch_evaluate
from torch_impl import losses as torch_losses, models as torch_models
from torch_impl import train as torch_train, weights as torch_weights
from torch_impl.moco import MoCo as TorchMoCo
from torch_impl.optim import build_optimizer as torch_optimizer
from torch_impl.optim import set_learning_rate
from torch_impl.simclr import SimCLR as TorchSimCLR

import tensorflow as tf

from tf_impl import augment as tf_augment, losses as tf_losses, moco as tf_moco
from tf_impl import models as tf_models, weights as tf_weights
from tf_impl.simclr import SimCLR as TFSimCLR

torch.manual_seed(0)
tf.random.set_seed(0)
ds = data.load_embedded()
# docs/results.json by default
results = published.load(os.environ.get("ROSETTA_RESULTS"))


def excerpt(obj, start: str | None = None, stop: str | None = None) -> None:
    """Print the source of ``obj`` (from the line holding ``start`` to the one holding
    ``stop``) with its file and line: the code shown is the code that runs."""
    lines, first = inspect.getsourcelines(obj)
    end = len(lines) - 1
    i = next((k for k, s in enumerate(lines) if start in s), 0) if start else 0
    j = (
        next((k for k, s in enumerate(lines) if k >= i and stop in s), end)
        if stop
        else end
    )
    path = Path(inspect.getsourcefile(obj)).resolve().relative_to(ROOT)
    print(f"# {path.as_posix()}, line {first + i}")
    print("".join(lines[i : j + 1]).rstrip())


# %% [markdown]
# ## 5.1 SimCLR, in PyTorch and TensorFlow
#
# **The loop, written here.** SimCLR in a few lines: two augmented views of a batch, one pass of
# the encoder and head over the $2N$ views, NT-Xent, one optimiser step. The encoder and head
# are the project's (`EncoderWithHead`, section 5.1.2), the augmentation its `BatchAugment`
# (section 5.1.1); the loss and the step are written out. Choose a framework: the tabs switch
# together across the page.

# %%
cfg = TrainConfig(method="simclr").resolve("torch")  # the defaults `train` uses
kw = cfg.augment_kwargs()
batch = ds.train.images[:32]  # uint8 (32, 32, 32, 3)


# %% tags=["tab:PyTorch"]
def simclr_loss(z1, z2, tau):
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # (2N, D) unit rows
    n = len(z1)
    logits = z @ z.T / tau  # (2N, 2N) cosines over tau
    self_pairs = torch.eye(2 * n, dtype=torch.bool)
    logits = logits.masked_fill(self_pairs, float("-inf"))  # not its own candidate
    positive = (torch.arange(2 * n) + n) % (2 * n)  # row i's positive: the other view
    return F.cross_entropy(logits, positive)


def simclr_step(net, optimizer, x1, x2, tau):
    _, z = net(torch.cat([x1, x2]))  # (h, z) of the 2N views, in one pass
    loss = simclr_loss(*z.chunk(2), tau)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


torch.manual_seed(0)
net = torch_models.EncoderWithHead(cfg.encoder, cfg.hidden_dim, cfg.proj_dim)
optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
augment = torch_augment.BatchAugment(**kw)
x = torch.from_numpy(batch).permute(0, 3, 1, 2)  # NCHW
for step in range(3):
    loss = simclr_step(net, optimizer, augment(x), augment(x), cfg.temperature)
    print(f"PyTorch step {step}: loss {loss:.4f}")
z1, z2 = (torch.randn(8, 16, dtype=torch.float64) for _ in range(2))
gap = abs(simclr_loss(z1, z2, 0.2).item() - torch_losses.nt_xent(z1, z2, 0.2).item())
print(f"this loss and torch_impl.losses.nt_xent differ by {gap:.1e}")
assert gap < 1e-12


# %% tags=["tab:TensorFlow"]
def simclr_loss_tf(z1, z2, tau):
    z = tf.math.l2_normalize(tf.concat([z1, z2], 0), axis=1)  # (2N, D) unit rows
    n2 = tf.shape(z)[0]
    logits = tf.matmul(z, z, transpose_b=True) / tau
    logits -= 1e9 * tf.eye(n2, dtype=z.dtype)  # not its own candidate: exp(-1e9) = 0
    positive = (tf.range(n2) + n2 // 2) % n2  # row i's positive: the other view
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(positive, logits)
    return tf.reduce_mean(ce)


def simclr_step_tf(net, optimizer, x1, x2, tau):
    with tf.GradientTape() as tape:
        _, z = net(tf.concat([x1, x2], 0), training=True)  # (h, z) of the 2N views
        loss = simclr_loss_tf(*tf.split(z, 2), tau)
    weights = net.trainable_weights
    optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
    return float(loss)


tf.random.set_seed(0)
net_tf = tf_models.EncoderWithHead(cfg.encoder, cfg.hidden_dim, cfg.proj_dim)
optimizer_tf = tf.keras.optimizers.SGD(learning_rate=0.1, momentum=0.9)
augment_tf = tf_augment.BatchAugment(**kw)
x_tf = tf.constant(batch)  # NHWC
for step in range(3):
    v1 = augment_tf(x_tf, tf.constant([step, 1]))
    v2 = augment_tf(x_tf, tf.constant([step, 2]))
    loss = simclr_step_tf(net_tf, optimizer_tf, v1, v2, cfg.temperature)
    print(f"TensorFlow step {step}: loss {loss:.4f}")
z1, z2 = (np.random.default_rng(s).standard_normal((8, 16)) for s in (1, 2))
gap = abs(float(simclr_loss_tf(z1, z2, 0.2)) - float(tf_losses.nt_xent(z1, z2, 0.2)))
print(f"this loss and tf_impl.losses.nt_xent differ by {gap:.1e}")
assert gap < 1e-12

# %% [markdown]
# **The project's code, beside it.** The same step in `torch_impl/simclr.py` and
# `tf_impl/simclr.py`, which hold the algorithm alone (the training loop, checkpoints and
# distribution live in `train.py`). Its extras: the model concatenates the views itself, runs
# under autocast when asked for bf16, and its loss, `nt_xent` (section 5.1.4), also gathers
# the other devices' projections when there are several. The side-by-side page puts the two
# frameworks' versions next to each other: [the training step
# (SimCLR)](../side_by_side.md#the-training-step-simclr).

# %% tags=["tab:PyTorch"]
excerpt(TorchSimCLR.forward, "n = x1.shape[0]")
excerpt(TorchSimCLR.train_step, "optimizer.zero_grad")

# %% tags=["tab:TensorFlow"]
excerpt(TFSimCLR.__call__, "n = tf.shape(x1)[0]")
excerpt(TFSimCLR.train_step, "weights = self.net")

# %% [markdown]
# ### 5.1.1 Augmentation
#
# The batches come from `epoch_batches`: by default the whole epoch's images are one uint8 tensor,
# and `BatchAugment` (chapter 3 shows its views) makes two views of each batch:

# %%
excerpt(torch_train.epoch_batches, "batch_aug = BatchAugment")

# %% [markdown]
# Both frameworks' `BatchAugment` are two steps, `sample` and `apply`. Draw one set of
# parameters with NumPy (`shared.oracle.augment_spec.sample_params`) and hand it to both `apply`
# functions: the views agree to float32 rounding (PyTorch works in NCHW, TensorFlow in NHWC).
# `tests/test_augment_parity.py` asserts it op by op, at 5e-5.

# %%
cfg = TrainConfig(method="simclr").resolve("torch")
kw = cfg.augment_kwargs()
images = ds.train.images[:16]  # uint8 (16, 32, 32, 3)
params = sample_params(
    augment_spec(**kw), len(images), 32, 32, np.random.default_rng(0)
)
v_torch = torch_augment.BatchAugment(**kw).apply(
    torch.from_numpy(images).permute(0, 3, 1, 2), params
)
v_tf = tf_augment.BatchAugment(**kw).apply(tf.constant(images), params)
diff = np.abs(v_torch.permute(0, 2, 3, 1).numpy() - v_tf.numpy()).max()
print(
    f"torch {tuple(v_torch.shape)} and TF {tuple(v_tf.shape)}: largest difference "
    f"{diff:.1e}"
)
assert diff <= 5e-5  # the tolerance of tests/test_augment_parity.py

# %% [markdown]
# ### 5.1.2 The encoder
#
# `build_encoder("small_cnn")` in `torch_impl/models.py`: four conv-BN-ReLU blocks and global
# average pooling. Its BatchNorm is `nn.BatchNorm2d`; with `--bn-splits S` it becomes
# `torch_impl/split_bn.py`'s `SplitBatchNorm`, BatchNorm over S sub-batches, as S devices would
# compute it.

# %%
encoder = torch_models.build_encoder(cfg.encoder)
print(encoder)
excerpt(torch_models.SmallCNN.forward)

# %% [markdown]
# ### 5.1.3 The projection head
#
# `ProjectionHead` (Linear without bias, BN, ReLU, Linear) and `EncoderWithHead`, whose forward
# returns both $h$ (what evaluation uses) and $z$ (what the loss sees):

# %%
excerpt(torch_models.EncoderWithHead.forward, "h = self.encoder(x)")
print(torch_models.ProjectionHead(256, cfg.hidden_dim, cfg.proj_dim))

# %% [markdown]
# ### 5.1.4 The loss
#
# `torch_impl.losses.nt_xent` is the formula of chapter 4.3.2 with three implementation choices:
# $1/\tau$ is folded into one factor of the product, the diagonal is set to $-\infty$ (the anchor
# is no candidate of its own), and `F.cross_entropy` does the stable log-softmax and the mean
# over the $2N$ anchors. Its core:

# %%
excerpt(torch_losses.nt_xent, "u = torch.cat([u1, u2], 0)", "return F.cross_entropy")

# %% [markdown]
# On a model's real projections, in float64, it equals the oracle to rounding:

# %%
tiny = dict(encoder="small_cnn", hidden_dim=16, proj_dim=8, temperature=cfg.temperature)
model64 = TorchSimCLR(**tiny, dtype="float64")
x1, x2 = (
    torch_augment.BatchAugment(**kw)(
        torch.from_numpy(ds.train.images[:8]).permute(0, 3, 1, 2)
    ).double()
    for _ in range(2)
)
_, _, z1, z2 = model64(x1, x2)
ours = torch_losses.nt_xent(z1, z2, cfg.temperature)
ref = oracle.nt_xent(z1.detach().numpy(), z2.detach().numpy(), cfg.temperature)
print(
    f"torch {ours.item():.15f}\noracle {ref:.15f}\ndifference "
    f"{abs(ours.item() - ref):.1e}"
)
assert abs(ours.item() - ref) <= 1e-12 * ref

# %% [markdown]
# ### 5.1.5 The training loop
#
# The step is the model's: `SimCLR.train_step` is PyTorch's own idiom, `zero_grad`, the forward
# pass and the loss (under autocast when the model is built `mixed_bfloat16`), `backward`, then
# the optimiser's `step`. The gradients stay in each parameter's `.grad`, where the parity tests
# read them (`tests/test_step_parity.py`).

# %%
excerpt(TorchSimCLR.train_step, "optimizer.zero_grad")

# %% [markdown]
# One real step of the float64 model: the loss `train_step` returns is the oracle's NT-Xent of the
# same forward pass (train mode: BN uses the batch statistics), and the optimiser moves the
# weights.

# %%
z1_ref, z2_ref = (z.detach().numpy() for z in model64(x1, x2)[2:])
opt = torch_optimizer(model64, "lars", 0.3, 0.9, 1e-6)
before = [p.detach().clone() for p in model64.net.parameters()]
loss = model64.train_step(x1, x2, opt)
grads = [p.grad for p in model64.net.parameters()]
moved = max(
    float((p.detach() - b).abs().max())
    for p, b in zip(model64.net.parameters(), before)
)
ref = oracle.nt_xent(z1_ref, z2_ref, cfg.temperature)
print(f"train_step: loss {loss.item():.15f}, oracle {ref:.15f}")
assert abs(loss.item() - ref) <= 1e-12 * ref
print(
    f"{len(grads)} gradients left in .grad; the step moved a weight by up to "
    f"{moved:.2e}"
)

# %% [markdown]
# ## 5.2 MoCo v2, in PyTorch and TensorFlow
#
# **The loop, written here.** MoCo in a few lines: a query encoder $f_q$ trained by SGD, a key
# encoder $f_k$ that follows it by a moving average (section 5.2.3) and never gets a gradient,
# and a queue of the last $K$ keys as negatives (section 5.2.1). The loss is InfoNCE with the
# positive key in column 0; after the step, this batch's keys replace the oldest ones. This
# minimal loop leaves out Shuffle-BN and the symmetric loss, which the project's code has.

# %%
mcfg = TrainConfig(method="moco").resolve("torch")
K, D = 256, mcfg.proj_dim  # a short queue: a few steps fill it


# %% tags=["tab:PyTorch"]
def moco_step(f_q, f_k, queue, optimizer, x1, x2, tau, m):
    with torch.no_grad():
        for wk, wq in zip(f_k.parameters(), f_q.parameters()):
            wk.mul_(m).add_(wq, alpha=1 - m)  # theta_k <- m theta_k + (1 - m) theta_q
        k = F.normalize(f_k(x2)[1], dim=1)  # (N, D) keys, no gradient
    q = F.normalize(f_q(x1)[1], dim=1)  # (N, D) queries
    l_pos = (q * k).sum(1, keepdim=True)  # (N, 1)
    logits = torch.cat([l_pos, q @ queue.T], 1) / tau  # (N, 1 + K): positive first
    loss = F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    queue = torch.cat([k, queue])[: len(queue)]  # enqueue the newest, drop the oldest
    return loss.item(), queue


torch.manual_seed(0)
f_q = torch_models.EncoderWithHead(mcfg.encoder, mcfg.hidden_dim, D)
f_k = torch_models.EncoderWithHead(mcfg.encoder, mcfg.hidden_dim, D)
f_k.load_state_dict(f_q.state_dict())  # an exact copy to start
f_k.requires_grad_(False)
queue = F.normalize(torch.randn(K, D), dim=1)  # random unit keys to start
optimizer = torch.optim.SGD(f_q.parameters(), lr=mcfg.lr, momentum=0.9)
augment = torch_augment.BatchAugment(**mcfg.augment_kwargs())
for step in range(3):
    x1, x2 = augment(x), augment(x)
    loss, queue = moco_step(f_q, f_k, queue, optimizer, x1, x2, mcfg.temperature, 0.99)
    print(
        f"PyTorch step {step}: loss {loss:.4f} (chance log(K + 1) = "
        f"{math.log(K + 1):.4f})"
    )


# %% tags=["tab:TensorFlow"]
def moco_step_tf(f_q, f_k, queue, optimizer, x1, x2, tau, m):
    for wk, wq in zip(f_k.trainable_weights, f_q.trainable_weights):
        wk.assign(m * wk + (1 - m) * wq)  # theta_k <- m theta_k + (1 - m) theta_q
    k = tf.stop_gradient(tf.math.l2_normalize(f_k(x2, training=True)[1], axis=1))
    with tf.GradientTape() as tape:
        q = tf.math.l2_normalize(f_q(x1, training=True)[1], axis=1)  # (N, D) queries
        l_pos = tf.reduce_sum(q * k, axis=1, keepdims=True)  # (N, 1)
        logits = tf.concat([l_pos, tf.matmul(q, queue, transpose_b=True)], 1) / tau
        labels = tf.zeros(tf.shape(q)[0], tf.int32)  # the positive is column 0
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
        loss = tf.reduce_mean(ce)
    weights = f_q.trainable_weights
    optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
    queue = tf.concat([k, queue], 0)[: queue.shape[0]]  # the newest in, the oldest out
    return float(loss), queue


tf.random.set_seed(0)
f_q_tf = tf_models.EncoderWithHead(mcfg.encoder, mcfg.hidden_dim, D)
f_k_tf = tf_models.EncoderWithHead(mcfg.encoder, mcfg.hidden_dim, D)
f_q_tf(tf.zeros((2, 32, 32, 3))), f_k_tf(tf.zeros((2, 32, 32, 3)))  # build the weights
f_k_tf.set_weights(f_q_tf.get_weights())  # an exact copy to start
queue_tf = tf.math.l2_normalize(tf.random.normal((K, D)), axis=1)
optimizer_tf = tf.keras.optimizers.SGD(learning_rate=mcfg.lr, momentum=0.9)
augment_tf = tf_augment.BatchAugment(**mcfg.augment_kwargs())
for step in range(3):
    v1 = augment_tf(x_tf, tf.constant([step, 1]))
    v2 = augment_tf(x_tf, tf.constant([step, 2]))
    loss, queue_tf = moco_step_tf(
        f_q_tf, f_k_tf, queue_tf, optimizer_tf, v1, v2, mcfg.temperature, 0.99
    )
    print(f"TensorFlow step {step}: loss {loss:.4f} (chance {math.log(K + 1):.4f})")

# %% [markdown]
# Three steps do not train anything, and here the loss *rises*: the queue starts as random unit
# keys, easy negatives far from every query, and each step replaces some of them with keys of
# the same untrained encoder, as close to each query as its own positive. Trained for epochs,
# the loss falls well below chance: the committed runs in section 5.2.5, or your own run below
# with `METHOD = "moco"`.
#
# **The project's code, beside it.** `MoCo.train_step` in `torch_impl/moco.py` and
# `tf_impl/moco.py`: the same order (momentum update, loss, update, enqueue), with the queue a
# buffer written in place, Shuffle-BN in `keys` and the symmetric loss in `loss` (sections
# 5.2.1 to 5.2.4). Side by side: [the training step
# (MoCo)](../side_by_side.md#the-training-step-moco).

# %% tags=["tab:PyTorch"]
excerpt(TorchMoCo.train_step, "momentum_update(self.encoder_q")

# %% tags=["tab:TensorFlow"]
excerpt(tf_moco.MoCo.train_step, "momentum_update(self.encoder_q")

# %% [markdown]
# ### 5.2.1 The queue
#
# A $(K, D)$ non-trainable `tf.Variable` of unit keys and a pointer; `dequeue_and_enqueue` writes
# a batch of keys at the pointer, wrapping around, with one scatter of $\min(B, K)$ rows. Run on
# worked example (h) (K = 4, batches of 3) beside the NumPy oracle:

# %%
excerpt(tf_moco._queue_rows, "b = tf.shape(keys")
excerpt(tf_moco.dequeue_and_enqueue, "rows, new = _queue_rows")
queue = tf.Variable(tf.zeros((4, 1), tf.float64))
ptr = tf.Variable(0, dtype=tf.int64)
ref_queue, ref_ptr = np.zeros((4, 1)), 0
for step in (1, 2, 3):
    keys = np.array([[step + 0.1 * i] for i in (1, 2, 3)])
    tf_moco.dequeue_and_enqueue(queue, ptr, tf.constant(keys))
    ref_queue, ref_ptr = oracle_queue.dequeue_and_enqueue(ref_queue, ref_ptr, keys)
    same = np.array_equal(queue.numpy(), ref_queue) and int(ptr) == ref_ptr
    print(
        f"step {step}: queue {queue.numpy().ravel().round(1).tolist()}, ptr "
        f"{int(ptr)}; oracle agrees: {same}"
    )
    assert same

# %% [markdown]
# ### 5.2.2 The encoders
#
# `encoder_q` and `encoder_k` are the same `EncoderWithHead`. The key encoder starts as an exact
# copy (Keras's `clone_model` would re-initialise it, so the weights are copied) and never
# receives a gradient: `train_step` differentiates with respect to `encoder_q`'s weights only.

# %%
small_moco = dict(
    encoder="small_cnn", hidden_dim=16, proj_dim=8, queue_size=32, temperature=0.1
)
moco = tf_moco.MoCo(**small_moco)
xs = tf.constant(ds.train.images[:8].astype("float32") / 255)
moco(xs)  # builds the query encoder's weights
moco.keys(xs, tf.constant([0, 0]))  # and the key encoder's
pairs = list(zip(moco.encoder_q.trainable_weights, moco.encoder_k.trainable_weights))
gap = max(float(tf.reduce_max(tf.abs(a - b))) for a, b in pairs)
print(f"f_q and f_k: {len(pairs)} trainable tensors each, largest difference {gap}")
assert gap == 0.0
print(
    "trainable weights of f_k: "
    f"{sum(int(tf.size(w)) for w in moco.encoder_k.trainable_weights):,}, "
    "updated by the momentum update alone (the BN statistics are each encoder's own)"
)
excerpt(tf_moco.MoCo.train_step, "weights = self.encoder_q", "self.enqueue")

# %% [markdown]
# ### 5.2.3 The momentum update
#
# MoCo's equation (2), over the trainable weights:
#
# $$\theta_k \leftarrow m\,\theta_k + (1 - m)\,\theta_q, \qquad m = 0.99 \text{ by default}.$$
#
# The key encoder trails the query encoder: the keys in the queue, encoded over the last
# $K / (2N)$ steps, stay consistent with each other.

# %%
excerpt(tf_moco.momentum_update, "for wk, wq")

# %% [markdown]
# ### 5.2.4 The keys, Shuffle-BN and the loss
#
# `MoCo.keys` encodes the key view with $f_k$, without gradient. With `bn_splits` > 1 (two by
# default, as two devices would), BatchNorm normalises each half of the batch on its own, and a
# query and its key normalised with the same statistics would let the encoder cheat (MoCo,
# section 3.3). Shuffle-BN permutes the key batch before $f_k$ and undoes it after:

# %%
excerpt(tf_moco.MoCo.keys, "elif self.shuffle_keys", "return tf.stop_gradient")

# %% [markdown]
# With one BN group the shuffle changes nothing (BN over the whole batch does not depend on the
# order); with two groups each key is normalised with other images' statistics, so it changes:

# %%
for splits in (1, 2):
    m = tf_moco.MoCo(**small_moco, bn_splits=splits, shuffle_keys=False)
    m.keys(xs, tf.constant([0, 0]))
    plain = m.keys(xs, tf.constant([0, 0])).numpy()
    m.shuffle_keys = True
    shuffled = m.keys(xs, tf.constant([3, 1])).numpy()
    gap = np.abs(plain - shuffled).max()
    print(
        f"bn_splits {splits}: keys with and without the shuffle differ by up to "
        f"{gap:.1e}"
    )
    assert (gap < 1e-4) if splits == 1 else (gap > 1e-2)

# %% [markdown]
# The loss is `tf_impl.losses.info_nce`, the queue read *before* this step's enqueue, so a query
# never meets its own key among the negatives. On float64 inputs it equals the oracle:

# %%
rng = np.random.default_rng(0)
q, k, negatives = (
    rng.standard_normal((4, 8)),
    rng.standard_normal((4, 8)),
    rng.standard_normal((32, 8)),
)
ours, ref = (
    float(tf_losses.info_nce(q, k, negatives, 0.1)),
    oracle.info_nce(q, k, negatives, 0.1),
)
print(f"TF info_nce {ours:.15f}\noracle      {ref:.15f}")
assert abs(ours - ref) <= 1e-12 * ref

# %% [markdown]
# ### 5.2.5 The training loop
#
# `MoCo.train_step` is Algorithm 1 of the paper, in the order of the official code
# (`moco/builder.py`): the momentum update comes *first*, before the forward pass, where the
# paper's pseudocode updates $f_k$ at the end of the step, after $f_q$'s. The updates are the
# same: the update at the start of step $t$ is the paper's at the end of step $t - 1$ (both use
# the $f_q$ of after step $t - 1$), and the one at the start of the first step changes nothing,
# $f_k$ being an exact copy of $f_q$ then.

# %%
excerpt(tf_moco.MoCo.train_step, "momentum_update(self.encoder_q")
excerpt(tf_moco.MoCo.enqueue, "dequeue_and_enqueue")

# %% [markdown]
# **Runs that learn.** The committed runs of both methods, loss per epoch: left, SimCLR's run
# behind chapter 6's artefact (PyTorch, the defaults, read from the artefact's metadata); right,
# MoCo's runs (the digits recipe) in both frameworks, one line per seed, from the results file. Each against its
# chance level ($\log(2N - 1)$ for NT-Xent, $\log(K + 1)$ for InfoNCE) and its orthogonal floor
# (chapter 4.4), which no run reaches: negatives of the same class are never orthogonal.
# Chapter 7 plots all four cells' kNN against training time.

# %%
artifact = np.load(
    ROOT / "docs" / "course" / "artifacts" / "simclr_torch_test_features.npz"
)
meta = json.loads(str(artifact["meta"]))
n, tau = meta["batch_size"], meta["temperature"]
kq, mtau = mcfg.queue_size, mcfg.temperature
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
axes[0].plot(range(1, len(meta["loss"]) + 1), meta["loss"], label="loss")
axes[0].set_title(f"SimCLR, PyTorch, N = {n}, tau = {tau}", fontsize=9)
levels = [
    (axes[0], math.log(2 * n - 1), math.log1p((2 * n - 2) * math.exp(-1 / tau))),
    (axes[1], math.log(kq + 1), math.log1p(kq * math.exp(-1 / mtau))),
]
for key, color in (("moco/torch", "tab:red"), ("moco/tensorflow", "tab:orange")):
    seeds = results.get("entries", {}).get(key, {}).get("seeds", [])
    curves = [s["loss_curve"] for s in seeds if s.get("loss_curve")]
    if not curves:
        print(
            f"{key}: loss curves not in the results file yet (entry {key}, loss_curve)"
        )
    for i, curve in enumerate(curves):
        label = f"{key} ({len(curves)} seeds)" if i == 0 else None
        axes[1].plot(range(1, len(curve) + 1), curve, color=color, lw=1, label=label)
axes[1].set_title(f"MoCo, digits, K = {kq}, tau = {mtau} (results file)", fontsize=9)
for ax, chance, floor in levels:
    ax.axhline(chance, color="k", ls=":", label=f"chance {chance:.2f}")
    ax.axhline(floor, color="k", ls="--", lw=0.8, label=f"orthogonal floor {floor:.2f}")
    ax.set_xlabel("epoch")
    ax.legend(fontsize=8)
axes[0].set_ylabel("training loss")
plt.show()

# %% [markdown]
# ### Both methods, both frameworks: the same step
#
# Each method exists in both frameworks with the same names and arguments, and weights port
# between them by canonical name (`torch_impl/weights.py`, `tf_impl/weights.py`). Port a
# float64 SimCLR from PyTorch to TensorFlow and compute the loss in each on the same views: the
# same value, to rounding. `tests/test_step_parity.py` compares every gradient, weight
# and optimiser slot of such a step, for both methods.

# %%
pt = TorchSimCLR(**tiny, dtype="float64")
tfm = TFSimCLR(**tiny, dtype="float64")
v1 = np.random.default_rng(1).random((4, 32, 32, 3))
v2 = np.random.default_rng(2).random((4, 32, 32, 3))
tfm(tf.constant(v1), tf.constant(v2))  # builds the Keras weights
tf_weights.import_weights(tfm, torch_weights.export_weights(pt))
to_nchw = lambda v: torch.from_numpy(v).permute(0, 3, 1, 2).contiguous()  # noqa: E731
loss_pt = pt.loss(*pt(to_nchw(v1), to_nchw(v2))[2:])
loss_tf = tfm.loss(*tfm(tf.constant(v1), tf.constant(v2))[2:])
print(
    f"SimCLR step, torch {loss_pt.item():.15f}\n            TF    {float(loss_tf):.15f}"
)
# the float64 rtol of shared/parity/tolerances.py
assert (abs(loss_pt.item() - float(loss_tf)) <= 1e-10 * loss_pt.item())

moco_pt = TorchMoCo(**small_moco, dtype="float64", shuffle_keys=False)
opt_pt = torch_optimizer(moco_pt, "sgd", 0.03)
ptr0 = int(moco_pt.queue_ptr)
moco_pt.key_momentum = 0.99  # the training loop sets m each step, from its schedule
loss = moco_pt.train_step(to_nchw(v1), to_nchw(v2), opt_pt)
print(
    f"MoCo step in torch: loss {loss.item():.4f}, queue pointer {ptr0} -> "
    f"{int(moco_pt.queue_ptr)} (2N = 8 keys)"
)
assert int(moco_pt.queue_ptr) == (ptr0 + 8) % small_moco["queue_size"]

# %% [markdown]
# ## Run it yourself: train an encoder
#
# The cell below trains SimCLR on the embedded digits with the project's model, optimiser and
# schedule (the small CNN, LARS with a warm-up and a cosine decay), in batches of 32 rather
# than the default 64: twice the steps per epoch at about half the cost each, so it learns
# faster in a short run (chapter 9's batch-size sweep finds 32 and 64 tied over a full run). It
# stops after the epoch that passes `BUDGET_S` seconds: about 2 minutes on 2 CPU cores. Its
# loop is the one you wrote in section 5.1; after every epoch it measures the encoder by kNN
# and redraws both curves.
#
# **What to expect.** The loss starts near chance, $\log(2N - 1)$, and falls. The kNN starts at
# the untrained encoder's accuracy (epoch 0, the random-init baseline: a random CNN already
# sorts digits a little), may dip in the first epoch while the projections spread out, then
# rises well above it within a few epochs; the committed full-length runs (dashed line) go
# further. The kNN here is the training monitor's: top-1 on the test split
# at the k that leave-one-out on the training split chooses (the box of chapter 2).
#
# **MoCo.** Set `METHOD = "moco"` to train MoCo instead, at the digits' settings (batch
# 64, a queue of $K = 512$ keys, $\tau = 0.1$, SGD at 0.015, $m = 0.99$): a shorter run
# changes none of them, since no setting tried learned faster (the learning rate doubled, or
# one loss term per step instead of MoCo's symmetric two, learned no faster in the same time).
# An epoch costs about one and a half of SimCLR's (each view goes through both encoders, and
# the loss is computed both ways round), so up to 10 epochs fit the budget. Its loss starts
# below its own chance level, $\log(K + 1) = 6.24$, and falls; its kNN dips in the first
# epoch, is back above the random-init baseline after the second and then climbs. Measured on
# this project's 2-core machine with one thread while other jobs kept it busy (load average
# 3.2 to 3.6): 36.5 % at random init, 25.9 % after epoch 1, 40.7 % after epoch 2, 54.3 % after
# epoch 3, and 65.5 % when it stopped at the budget after 9 epochs (114 s). The committed
# 25-epoch runs (dashed line) reach about 76 %. On the same machine idle, all 10 epochs took
# 105 s on one thread (66.0 %) and 63 s on two (67.7 %). The cell trains on one thread per core
# that other work leaves free: on the busy machine two threads took about 105 s an epoch.

# %%
METHOD = "simclr"  # or "moco"
BUDGET_S = 110  # stop after the epoch that passes this many seconds
# the test suite picks the method and runs fewer epochs (tests/test_course.py)
METHOD = os.environ.get("ROSETTA_COURSE_METHOD", METHOD)
EPOCHS = {"simclr": 15, "moco": 10}[METHOD]
EPOCHS = int(os.environ.get("ROSETTA_COURSE_EPOCHS", EPOCHS))
# a short run's settings; the rest are the method's defaults (docs/recipes.md)
SHORT = {
    "simclr": {"batch_size": 32},
    "moco": {},
}

try:  # in a notebook the figure is redrawn in place after each epoch
    from IPython import get_ipython
    from IPython.display import display

    LIVE = get_ipython() is not None
except ImportError:
    LIVE = False

# one thread per core that other work leaves free (two threads on one core run slower)
busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0  # none on Windows
free = max(1, round((os.cpu_count() or 1) - busy))
torch.set_num_threads(min(torch.get_num_threads(), free))
print(f"training on {torch.get_num_threads()} thread(s)")
rcfg = TrainConfig(method=METHOD, **SHORT[METHOD]).resolve("torch")
torch.manual_seed(0)
model = (TorchSimCLR if METHOD == "simclr" else TorchMoCo)(**rcfg.model_kwargs())
opt = torch_optimizer(model, rcfg.optimizer, rcfg.lr, rcfg.momentum, rcfg.weight_decay)
steps = len(ds.train) // rcfg.batch_size
total, warm = EPOCHS * steps, max(1, EPOCHS // 10) * steps
if METHOD == "simclr":
    chance = math.log(2 * rcfg.batch_size - 1)
else:
    chance = math.log(rcfg.queue_size + 1)
try:  # the committed runs of the method, at its defaults and full length
    trained = published.stat(results, f"{METHOD}/torch", "knn_top1")[0]
    full = published.stat(results, f"{METHOD}/torch", "epochs")[0]
except KeyError:
    trained = full = None


def knn() -> float:
    """The training monitor: kNN top-1 on the test split, k chosen by leave-one-out."""
    return torch_train.knn_monitor(model, ds.train, ds.test)


def draw(fig, axes, epochs, losses, accuracies) -> None:
    ax_loss, ax_knn = axes
    ax_loss.clear(), ax_knn.clear()
    ax_loss.plot(epochs[1:], losses, "o-", ms=3, label="training loss")
    ax_loss.axhline(chance, color="k", ls=":", label=f"chance {chance:.2f}")
    ax_loss.set_xlabel("epoch")
    ax_loss.legend(fontsize=8)
    ax_knn.plot(epochs, [100 * a for a in accuracies], "o-", ms=3, label="this run")
    ax_knn.axhline(
        100 * accuracies[0], color="0.5", ls=":", label="random init (epoch 0)"
    )
    if trained is not None:
        label = f"committed runs, {full:.0f} epochs"
        ax_knn.axhline(100 * trained, color="k", ls="--", lw=0.8, label=label)
    ax_knn.set_xlabel("epoch")
    ax_knn.set_ylabel("kNN top-1, test split (%)")
    ax_knn.legend(fontsize=8)
    for ax in axes:
        ax.xaxis.set_major_locator(plt.matplotlib.ticker.MaxNLocator(integer=True))
    fig.suptitle(f"{METHOD}, PyTorch: {epochs[-1]} of {EPOCHS} epochs", fontsize=10)


start = time.perf_counter()
epochs, losses, accuracies = [0], [], [knn()]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
handle = display(fig, display_id=True) if LIVE else None
for epoch in range(EPOCHS):
    model.train()
    epoch_losses = []
    for i, (x1, x2) in enumerate(
        torch_train.epoch_batches(rcfg, ds.train, epoch, steps)
    ):
        step = epoch * steps + i
        set_learning_rate(opt, rcfg.lr * warmup_cosine(step, warm, total))
        if METHOD == "moco":  # m follows its schedule, as the learning rate does
            model.key_momentum = rcfg.key_momentum_at(step, total)
        epoch_losses.append(model.train_step(x1, x2, opt).item())
    epochs.append(epoch + 1)
    losses.append(float(np.mean(epoch_losses)))
    accuracies.append(knn())
    seconds = time.perf_counter() - start
    print(
        f"epoch {epoch + 1}: loss {losses[-1]:.3f}, kNN {100 * accuracies[-1]:.1f} % "
        f"({seconds:.0f} s)"
    )
    draw(fig, axes, epochs, losses, accuracies)
    if LIVE:
        handle.update(fig)
    if seconds > BUDGET_S:
        print(f"stopped after {epoch + 1} epochs: the budget of {BUDGET_S} s is spent")
        break
if LIVE:
    plt.close(fig)
else:
    plt.show()
print(
    f"kNN top-1 (chosen k, test split): random init {100 * accuracies[0]:.1f} %, "
    f"after {epochs[-1]} epochs {100 * accuracies[-1]:.1f} % ({seconds:.0f} s)"
)

# %% [markdown]
# ## 5.3 Fine-tuning
#
# `python -m torch_impl finetune --run-dir DIR --fraction 0.1` (or `tf_impl`) fine-tunes the
# trained encoder with a linear head on a class-stratified fraction of the labels, and trains the
# same network from scratch on the same subset, each with a budget chosen by cross-validation on
# those labels alone (`shared.run.evaluation.cv_budget`). Chapter 9.5 plots the accuracy against
# the label fraction.

# %%
print(inspect.signature(torch_evaluate.finetune))

# %% [markdown]
# ## Exercise 5: NT-Xent in PyTorch
#
# Write `nt_xent(z1, z2, temperature)` with torch operations: `z1` and `z2` are $(N, D)$ float64
# tensors that require gradients, and the result is a 0-d tensor, the mean over the $2N$ anchors.
# The check compares its value with `shared.oracle.losses.nt_xent` and its gradients (by
# `backward()`) with `shared.oracle.losses.nt_xent_grad`, on worked example (c) and three random
# cases, one at $\tau = 0.001$. Hints: `torch.nn.functional.normalize`, `masked_fill`, and
# `F.cross_entropy`, which takes logits and target indices.


# %%
def nt_xent(z1, z2, temperature):
    # your code here
    raise NotImplementedError


verdict = exercises.check_nt_xent_torch(nt_xent)

# %% tags=["solution"]
# The reference solution, hidden until SHOW_SOLUTIONS = True (first code cell).
# Compare it with the project's `torch_impl.losses.nt_xent` in section 5.1.4: the same
# computation, without the distributed gather.
if SHOW_SOLUTIONS:
    print(inspect.getsource(exercises.solution_nt_xent_torch))
    verdict = exercises.check_nt_xent_torch(
        exercises.solution_nt_xent_torch, whose=exercises.REFERENCE
    )
else:
    print("Hidden: set SHOW_SOLUTIONS = True in the first code cell to see it.")

# %% [markdown]
# Next: [chapter 6, applications](06_applications.md).
