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
# *Source 000, section 5: 项目实践：代码实例和详细解释说明 (Practice: code examples, explained in
# detail)*
#
# **What you will learn.** How the project's own code implements both methods in both
# frameworks, read and run cell by cell: the batched augmentation, the encoder and head, the
# losses, SimCLR's step and MoCo's key encoder, Shuffle-BN, queue and momentum update, and one
# idiomatic `train_step` per framework (torch: `zero_grad`, `backward`, `step`; TensorFlow: a
# `GradientTape`, then `apply_gradients`). Every cell imports the real
# functions (`torch_impl`, `tf_impl`), never a copy, and shows that what they compute equals the
# NumPy oracle. You will write NT-Xent in PyTorch, graded on its value and its gradients.
#
# **Prerequisites.** Chapters 3 and 4; PyTorch tensors and autograd; TensorFlow's
# `GradientTape` helps for section 5.2.
#
# **Time.** About 90 minutes with the exercise.
#
# Where a cell says two things agree, it also asserts it, so the chapter cannot run to the end
# when they do not (`tests/test_course.py` executes every chapter).

# %%
import os
import sys
from pathlib import Path

# The chapter reads files of the checkout: find its root from wherever the notebook runs.
ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "shared" / "oracle").is_dir())
os.chdir(ROOT)
sys.path.insert(0, str(ROOT))

# %%
import inspect
import json
import math

import torch  # PyTorch and torchvision before TensorFlow, in every process that uses both
import numpy as np
import matplotlib.pyplot as plt

from shared.docgen import exercises
from shared.oracle import losses as oracle
from shared.oracle import queue as oracle_queue
from shared.oracle.augment_spec import augment_spec, sample_params
from shared.run import data, published
from shared.run.config import TrainConfig
from torch_impl import augment as torch_augment, evaluate as torch_evaluate
from torch_impl import losses as torch_losses, models as torch_models
from torch_impl import train as torch_train, weights as torch_weights
from torch_impl.moco import MoCo as TorchMoCo
from torch_impl.optim import build_optimizer as torch_optimizer
from torch_impl.simclr import SimCLR as TorchSimCLR

import tensorflow as tf

from tf_impl import augment as tf_augment, losses as tf_losses, moco as tf_moco
from tf_impl import train as tf_train, weights as tf_weights
from tf_impl.optim import build_optimizer as tf_optimizer
from tf_impl.simclr import SimCLR as TFSimCLR

torch.manual_seed(0)
tf.random.set_seed(0)
ds = data.load_embedded()
results = published.load(os.environ.get("ROSETTA_RESULTS"))  # docs/results.json by default


def excerpt(obj, start: str | None = None, stop: str | None = None) -> None:
    """Print the source of ``obj`` (from the line holding ``start`` to the one holding ``stop``)
    with the file and line it comes from: the code shown is the code that runs."""
    lines, first = inspect.getsourcelines(obj)
    i = next((k for k, s in enumerate(lines) if start in s), 0) if start else 0
    j = next((k for k, s in enumerate(lines) if k >= i and stop in s), len(lines) - 1) if stop else len(lines) - 1
    path = os.path.relpath(inspect.getsourcefile(obj))
    print(f"# {path}, line {first + i}")
    print("".join(lines[i : j + 1]).rstrip())


# %% [markdown]
# ## 5.1 SimCLR in PyTorch
#
# *Source 000: 基于PyTorch实现SimCLR*
#
# `python -m torch_impl train` trains SimCLR by default: `train` in `torch_impl/train.py` opens
# the run directory, builds the model and the optimiser, and per epoch calls `run_epoch`, which
# sets the learning rate and calls the model's own `train_step` on each batch of view pairs:

# %%
excerpt(torch_train.run_epoch, "for i, (x1, x2)", "loss = model.train_step")

# %% [markdown]
# ### 5.1.1 Augmentation
#
# *Source 000: 数据增强与预处理*
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
params = sample_params(augment_spec(**kw), len(images), 32, 32, np.random.default_rng(0))
v_torch = torch_augment.BatchAugment(**kw).apply(torch.from_numpy(images).permute(0, 3, 1, 2), params)
v_tf = tf_augment.BatchAugment(**kw).apply(tf.constant(images), params)
diff = np.abs(v_torch.permute(0, 2, 3, 1).numpy() - v_tf.numpy()).max()
print(f"torch {tuple(v_torch.shape)} and TF {tuple(v_tf.shape)}: largest difference {diff:.1e}")
assert diff <= 5e-5  # the tolerance of tests/test_augment_parity.py

# %% [markdown]
# ### 5.1.2 The encoder
#
# *Source 000: 编码器网络构建*
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
# *Source 000: 投影头构建*
#
# `ProjectionHead` (Linear without bias, BN, ReLU, Linear) and `EncoderWithHead`, whose forward
# returns both $h$ (what evaluation uses) and $z$ (what the loss sees):

# %%
excerpt(torch_models.EncoderWithHead.forward, "h = self.encoder(x)")
print(torch_models.ProjectionHead(256, cfg.hidden_dim, cfg.proj_dim))

# %% [markdown]
# ### 5.1.4 The loss
#
# *Source 000: 对比损失函数定义*
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
x1, x2 = (torch_augment.BatchAugment(**kw)(torch.from_numpy(ds.train.images[:8]).permute(0, 3, 1, 2)).double() for _ in range(2))
_, _, z1, z2 = model64(x1, x2)
ours = torch_losses.nt_xent(z1, z2, cfg.temperature)
ref = oracle.nt_xent(z1.detach().numpy(), z2.detach().numpy(), cfg.temperature)
print(f"torch {ours.item():.15f}\noracle {ref:.15f}\ndifference {abs(ours.item() - ref):.1e}")
assert abs(ours.item() - ref) <= 1e-12 * ref

# %% [markdown]
# ### 5.1.5 The training loop
#
# *Source 000: 训练循环*
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
moved = max(float((p.detach() - b).abs().max()) for p, b in zip(model64.net.parameters(), before))
ref = oracle.nt_xent(z1_ref, z2_ref, cfg.temperature)
print(f"train_step: loss {loss.item():.15f}, oracle {ref:.15f}")
assert abs(loss.item() - ref) <= 1e-12 * ref
print(f"{len(grads)} gradients left in .grad; the step moved a weight by up to {moved:.2e}")

# %% [markdown]
# %% [markdown]
# ## 5.2 MoCo in TensorFlow
#
# *Source 000: 基于TensorFlow实现MoCo*
#
# `python -m tf_impl train --method moco` trains MoCo v2. The TensorFlow loop wraps the model's
# `train_step` in one `tf.function`, `compile_step`, traced once: the momentum update, the loss,
# the gradients, the optimiser's update and the enqueue all run inside one graph.

# %%
excerpt(tf_train.compile_step, "@tf.function", "return replica_step")

# %% [markdown]
# ### 5.2.1 The queue
#
# *Source 000: 数据队列构建*
#
# A $(K, D)$ non-trainable `tf.Variable` of unit keys and a pointer; `dequeue_and_enqueue` writes
# a batch of keys at the pointer, wrapping around, with one scatter of $\min(B, K)$ rows. Run on
# worked example (e) (K = 4, batches of 3) beside the NumPy oracle:

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
    print(f"step {step}: queue {queue.numpy().ravel().round(1).tolist()}, ptr {int(ptr)}; oracle agrees: {same}")
    assert same

# %% [markdown]
# ### 5.2.2 The encoders
#
# *Source 000: 编码器网络构建*
#
# `encoder_q` and `encoder_k` are the same `EncoderWithHead`. The key encoder starts as an exact
# copy (Keras's `clone_model` would re-initialise it, so the weights are copied) and never
# receives a gradient: `train_step` differentiates with respect to `encoder_q`'s weights only.

# %%
small_moco = dict(encoder="small_cnn", hidden_dim=16, proj_dim=8, queue_size=32, temperature=0.1)
moco = tf_moco.MoCo(**small_moco)
xs = tf.constant(ds.train.images[:8].astype("float32") / 255)
moco(xs)  # builds the query encoder's weights
moco.keys(xs, tf.constant([0, 0]))  # and the key encoder's
pairs = list(zip(moco.encoder_q.trainable_weights, moco.encoder_k.trainable_weights))
gap = max(float(tf.reduce_max(tf.abs(a - b))) for a, b in pairs)
print(f"f_q and f_k: {len(pairs)} trainable tensors each, largest difference {gap}")
assert gap == 0.0
print(f"trainable weights of f_k: {sum(int(tf.size(w)) for w in moco.encoder_k.trainable_weights):,}, "
      "updated by the momentum update alone (the BN statistics are each encoder's own)")
excerpt(tf_moco.MoCo.train_step, "weights = self.encoder_q", "self.enqueue")

# %% [markdown]
# ### 5.2.3 The momentum update
#
# *Source 000: 动量编码器更新*
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
# *Source 000: 对比损失函数定义*
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
    print(f"bn_splits {splits}: keys with and without the shuffle differ by up to {gap:.1e}")
    assert (gap < 1e-4) if splits == 1 else (gap > 1e-2)

# %% [markdown]
# The loss is `tf_impl.losses.info_nce`, the queue read *before* this step's enqueue, so a query
# never meets its own key among the negatives. On float64 inputs it equals the oracle:

# %%
rng = np.random.default_rng(0)
q, k, negatives = rng.standard_normal((4, 8)), rng.standard_normal((4, 8)), rng.standard_normal((32, 8))
ours, ref = float(tf_losses.info_nce(q, k, negatives, 0.1)), oracle.info_nce(q, k, negatives, 0.1)
print(f"TF info_nce {ours:.15f}\noracle      {ref:.15f}")
assert abs(ours - ref) <= 1e-12 * ref

# %% [markdown]
# ### 5.2.5 The training loop
#
# *Source 000: 训练循环*
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
# A few compiled steps of a small MoCo (K = 32 keys, batches of 8, the symmetric loss: 16 keys
# enqueued per step), through the same `compile_step` the training loop uses. The figure shows
# the state after each step: which step wrote each row of the queue, and how far the key encoder
# trails the query encoder.

# %%
mcfg = TrainConfig(method="moco").resolve("tensorflow")
moco = tf_moco.MoCo(**small_moco)
opt = tf_optimizer(moco, "sgd", mcfg.lr, mcfg.momentum, mcfg.weight_decay)
moco(xs), moco.keys(xs, tf.constant([0, 0]))
step_fn = tf_train.compile_step(moco, opt)
tf_aug = tf_augment.BatchAugment(**kw)
q0 = [w.numpy().copy() for w in moco.encoder_q.trainable_weights]
dist = lambda a, b: math.sqrt(sum(float(np.sum((np.asarray(x) - np.asarray(y)) ** 2)) for x, y in zip(a, b)))  # noqa: E731
written = np.zeros((8, 32))  # step that last wrote each queue row; 0: MoCo's random start
k0 = [w.numpy().copy() for w in moco.encoder_k.trainable_weights]
moco_losses, lag, drift, key_drift = [], [], [], []
for step in range(1, 9):
    batch = tf.constant(ds.train.images[8 * step : 8 * step + 8])
    v1, v2 = tf_aug(batch, tf.constant([step, 1])), tf_aug(batch, tf.constant([step, 2]))
    ptr_before = int(moco.queue_ptr)
    loss = step_fn(v1, v2, tf.constant([step, 3]), tf.constant(mcfg.key_momentum, tf.float64))
    moco_losses.append(float(loss))
    written[step - 1] = written[step - 2] if step > 1 else 0
    written[step - 1, (ptr_before + np.arange(16)) % 32] = step
    lag.append(dist(moco.encoder_k.trainable_weights, moco.encoder_q.trainable_weights))
    drift.append(dist(moco.encoder_q.trainable_weights, q0))
    key_drift.append(dist(moco.encoder_k.trainable_weights, k0))
    print(f"step {step}: loss {moco_losses[-1]:.4f}, ptr {ptr_before} -> {int(moco.queue_ptr)}")
print(f"the step was traced {tf_train.TRACE_COUNT['train_step']} time(s)")

fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [1.6, 1]})
im = axes[0].imshow(written, aspect="auto", cmap="viridis", extent=(-0.5, 31.5, 8.5, 0.5))
axes[0].set_xlabel("queue row")
axes[0].set_ylabel("after step")
axes[0].set_title("the step whose keys fill each row (0: the random start)", fontsize=9)
fig.colorbar(im, ax=axes[0])
axes[1].plot(range(1, 9), drift, "o-", label="|theta_q - its start|: SGD")
axes[1].plot(range(1, 9), key_drift, "^-", label="|theta_k - its start|: the EMA")
axes[1].plot(range(1, 9), lag, "s-", label="|theta_k - theta_q|: the lag")
axes[1].set_xlabel("step")
axes[1].set_title(f"the key encoder trails the query encoder (m = {mcfg.key_momentum})", fontsize=9)
axes[1].legend(fontsize=8)
plt.show()

# %% [markdown]
# **The loss curves.** Left, SimCLR's real run behind chapter 6's artefact (PyTorch, the
# defaults, 60 epochs), read from the artefact's metadata; right, the tiny MoCo run above. Each
# against its chance level ($\log(2N - 1)$ for NT-Xent, $\log(K + 1)$ for InfoNCE) and its
# orthogonal floor (chapter 4.4), which no run reaches: negatives of the same class are never
# orthogonal. MoCo's first step reads the queue's random initial keys, easy negatives; then the
# loss can rise *above* chance: the queue fills with keys of the same untrained encoder, as alike
# to each query as its own positive key. Chapter 7 plots the committed runs of all four cells,
# one curve per seed.

# %%
meta = json.loads(str(np.load("docs/course/artifacts/simclr_torch_test_features.npz")["meta"]))
n, tau = meta["batch_size"], meta["temperature"]
chance, floor = math.log(2 * n - 1), math.log1p((2 * n - 2) * math.exp(-1 / tau))
mchance = math.log(small_moco["queue_size"] + 1)
mfloor = math.log1p(small_moco["queue_size"] * math.exp(-1 / small_moco["temperature"]))
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for ax, curve, c, f, x, title in (
    (axes[0], meta["loss"], chance, floor, "epoch", f"SimCLR, PyTorch, N = {n}, tau = {tau} ({meta['commit']})"),
    (axes[1], moco_losses, mchance, mfloor, "step", f"MoCo v2, TensorFlow, K = {small_moco['queue_size']} (this chapter)"),
):
    ax.plot(range(1, len(curve) + 1), curve, label="loss")
    ax.axhline(c, color="k", ls=":", label=f"chance {c:.2f}")
    ax.axhline(f, color="k", ls="--", lw=0.8, label=f"orthogonal floor {f:.2f}")
    ax.set_xlabel(x)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
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
print(f"SimCLR step, torch {loss_pt.item():.15f}\n            TF    {float(loss_tf):.15f}")
assert abs(loss_pt.item() - float(loss_tf)) <= 1e-10 * loss_pt.item()  # the float64 rtol of shared/parity/tolerances.py

moco_pt = TorchMoCo(**small_moco, dtype="float64", shuffle_keys=False)
opt_pt = torch_optimizer(moco_pt, "sgd", 0.03)
ptr0 = int(moco_pt.queue_ptr)
moco_pt.key_momentum = 0.99  # the training loop sets m each step, from its schedule
loss = moco_pt.train_step(to_nchw(v1), to_nchw(v2), opt_pt)
print(f"MoCo step in torch: loss {loss.item():.4f}, queue pointer {ptr0} -> {int(moco_pt.queue_ptr)} (2N = 8 keys)")
assert int(moco_pt.queue_ptr) == (ptr0 + 8) % small_moco["queue_size"]

# %% [markdown]
# ## 5.3 Fine-tuning
#
# *Source 000: 下游任务微调案例*
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
# `backward()`) with `shared.oracle.losses.nt_xent_grad`, on worked example (a) and three random
# cases, one at $\tau = 0.001$. Hints: `torch.nn.functional.normalize`, `masked_fill`, and
# `F.cross_entropy`, which takes logits and target indices.

# %%
def nt_xent(z1, z2, temperature):
    # your code here
    raise NotImplementedError


verdict = exercises.check_nt_xent_torch(nt_xent)

# %% [markdown]
# **Solution.** Compare it with the project's `torch_impl.losses.nt_xent` in section 5.1.4: the
# same computation, without the distributed gather.

# %%
print(inspect.getsource(exercises.solution_nt_xent_torch))
verdict = exercises.check_nt_xent_torch(exercises.solution_nt_xent_torch)

# %% [markdown]
# Next: [chapter 6, applications](06_applications.md).
