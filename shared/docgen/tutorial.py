"""docs/tutorial.md: the course, one section per numbered section of source document 000.

    python -m shared.docgen.tutorial           # rewrites docs/tutorial.md (also ``make docs``)

Source 000 (a Chinese outline, not shipped with the project) lists nine chapters, 1.1 to 9.5.
Each section here explains the idea, points to the code or worked example that demonstrates
it, and quotes numbers that code produces: computed now (worked examples, closed forms, the
dataset and its raw-pixel baseline), or read from committed results (``docs/results.json``,
written from the demo's ``report.json`` and a fine-tuning run; ``benchmarks/results``).
``tests/test_docs.py`` checks that the page is what this module writes now.
"""

from __future__ import annotations

import json
from pathlib import Path

from shared.docgen import results_tables as T
from shared.oracle import worked_examples as W
from shared.run import published as P

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "tutorial.md"
RESULTS = W.RESULTS  # one path for the committed results, shared with example (h)
BENCH = ROOT / "benchmarks" / "results" / "bench_cpu.json"


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


class Facts:
    """Every number the course quotes, computed or read once."""

    def __init__(self):
        from shared.run import data, evaluation
        from shared.run.config import TrainConfig

        ds = data.load_embedded()
        flat = lambda s: s.images.reshape(len(s), -1) / 255.0  # noqa: E731
        self.n_train, self.n_test = len(ds.train), len(ds.test)
        self.pixels = evaluation.evaluate_knn(
            flat(ds.train), ds.train.labels, flat(ds.test), ds.test.labels
        )
        self.simclr = TrainConfig(method="simclr").resolve("torch")
        self.moco = TrainConfig(method="moco").resolve("tensorflow")
        self.ex = {k: f().values for k, f in W.EXAMPLES.items()}
        self.results = P.load(RESULTS)
        bench = json.loads(BENCH.read_text())
        self.b5 = {c: 1000 * r["median_s"] for c, r in bench["B5"].items()}
        cpu = bench["machine"]
        self.bench = f"benchmark B5 on a {cpu['cores']}-core {cpu['cpu']}, `benchmarks/results/bench_cpu.json`"
        grid = ROOT / "benchmarks" / "results" / "tradeoffs.json"
        self.tradeoffs = json.loads(grid.read_text()) if grid.exists() else []

    def q(self, key: str, metric: str, named: bool = False) -> str:
        """A measured number with its source: ``80.5 ± 1.2 % (results: simclr/torch, 3 seeds)``."""
        return P.quote(self.results, key, metric, named=named)

    def v(self, key: str, metric: str, pct: bool = True) -> str:
        """The same number without its source (in a table whose caption names it)."""
        mean, std, _ = P.stat(self.results, key, metric)
        return P.fmt(mean, std, pct)

    def seeds(self, key: str) -> int:
        return self.results["entries"][key]["n"]

    def epochs(self, method: str) -> int:
        return self.results["measured"]["settings"]["method_defaults"][method]["epochs"]


def section(number: str, zh: str, en: str, body: str) -> str:
    depth = "#" * (2 + number.count("."))
    return f"{depth} {number} {en}\n\n*Source 000: {zh}*\n\n{body.strip()}\n"


def chapter1(f: Facts) -> list[str]:
    return [
        "## 1. Background\n",
        section(
            "1.1",
            "对比学习的兴起",
            "The rise of contrastive learning",
            """
Contrastive learning trains an encoder without labels by asking it to tell which of several
inputs belong together. The loss family goes back to Hadsell, Chopra and LeCun (CVPR 2006);
instance discrimination with a memory bank (Wu et al., CVPR 2018) and InfoNCE (van den Oord
et al., 2018, *Contrastive Predictive Coding*) made it work at scale; MoCo (He et al., CVPR
2020, arXiv:1911.05722) and SimCLR (Chen et al., ICML 2020, arXiv:2002.05709) brought linear
probes on ImageNet close to supervised training. Source 002 dates SimCLR to the 1960s; that
is wrong (docs/errata.md, erratum 1).

This project implements the two methods that made the field practical: SimCLR
(`torch_impl/simclr.py`, `tf_impl/simclr.py`) and MoCo v2 (`*/moco.py`), in both frameworks.
""",
        ),
        section(
            "1.2",
            "对比学习的应用前景",
            "Outlook",
            """
Self-supervised pretraining matters where labels are scarce and unlabelled data is plentiful:
the encoder learns from the unlabelled set, then a small labelled set trains a linear
classifier or fine-tunes it (section 3.4, section 9.5 for this project's measurement). The same
loss now pairs modalities, images with captions in CLIP (Radford et al., ICML 2021), and
sentences with themselves under dropout in SimCSE (Gao, Yao and Chen, EMNLP 2021). This
project covers images only.
""",
        ),
        section(
            "1.3",
            "本文的主要内容",
            "What this course covers",
            """
Chapters 2 to 4 give the ideas and the math, each with a worked example that
`rosetta explain` prints and `tests/test_worked_examples.py` recomputes by hand. Chapter 5
walks through the code of both methods in both frameworks; docs/side_by_side.md puts the
PyTorch and TensorFlow versions of each piece next to each other. Chapters 6 to 9 cover uses,
tools, open problems and the FAQ, answered from this project's measurements where it has them.
docs/errata.md corrects source document 002.
""",
        ),
    ]


def chapter2(f: Facts) -> list[str]:
    return ["## 2. Core concepts\n", *_definition_and_comparison(f), *_core_idea(f)]


def _definition_and_comparison(f: Facts) -> list[str]:
    """Sections 2.1 and 2.2: what contrastive learning is, and the demo's measured comparison."""
    ex_h = f.ex["h"]
    n = f.seeds("simclr/torch")
    return [
        section(
            "2.1",
            "对比学习的定义",
            "What contrastive learning is",
            f"""
An encoder f maps an image x to a representation h = f(x). Contrastive learning builds, for
each image, a *positive*: another augmented view of the same image. Every other image in the
batch (or in MoCo's queue) is a *negative*. The loss is a classification: among all candidates,
pick the positive. With N images per batch SimCLR has 2N views, so each anchor picks its
positive among 2N - 1 candidates; at the demo's N = {ex_h["n"]} that is {2 * ex_h["n"] - 1}
candidates and a chance-level loss of log {2 * ex_h["n"] - 1} = {ex_h["chance_simclr"]:.4f}
(worked example h).
""",
        ),
        section(
            "2.2",
            "对比学习与监督学习、无监督学习的区别",
            "Contrastive, supervised and unsupervised learning",
            f"""
Supervised learning fits labels. Classical unsupervised learning models the inputs
themselves: clustering, density estimation, autoencoders that reconstruct pixels. Contrastive
learning is *self-supervised*: the labels are made from the data (which views come from the
same image), and nothing is reconstructed; the encoder only has to keep what tells images
apart and survives the augmentations.

On this project's embedded dataset, under one evaluation protocol (`shared/run/evaluation.py`:
k for kNN chosen by leave-one-out on the training split, the probe's regularisation by
cross-validation), `rosetta results` measured (mean ± std over {n} training seeds, the data
fixed; the source of each row in its last column):

| representation | kNN top-1 | linear probe | results entry |
|---|---|---|---|
| raw pixels | {f.v("raw_pixels", "knn_top1")} | {f.v("raw_pixels", "linear_top1")} | `raw_pixels` (no seed) |
| random-init small CNN (torch) | {f.v("random_init/torch", "knn_top1")} | {f.v("random_init/torch", "linear_top1")} | `random_init/torch` |
| SimCLR, torch, {f.epochs("simclr")} epochs, no labels | {f.v("simclr/torch", "knn_top1")} | {f.v("simclr/torch", "linear_top1")} | `simclr/torch` |
| MoCo v2, TF, {f.epochs("moco")} epochs, no labels | {f.v("moco/tensorflow", "knn_top1")} | {f.v("moco/tensorflow", "linear_top1")} | `moco/tensorflow` |
""",
        ),
    ]


def _core_idea(f: Facts) -> list[str]:
    """Sections 2.3 to 2.3.3: positives, negatives and the loss."""
    ex_h = f.ex["h"]
    return [
        section(
            "2.3",
            "对比学习的核心思想",
            "The core idea",
            """
Pull the two views of one image together, push views of different images apart, and do it
with a loss whose minimum needs both: the softmax of section 2.3.3.
""",
        ),
        section(
            "2.3.1",
            "正样本对",
            "Positive pairs",
            f"""
A positive pair is two random augmentations of the same image, never an image with itself
(source 002 gets this wrong: docs/errata.md, erratum 2). The augmentation decides what the
encoder learns to ignore. Here it is `simclr_augment` in `torch_impl/augment.py` and
`tf_impl/augment.py`, built from one spec (`shared/oracle/augment_spec.py`): a random resized crop
of area {f.simclr.crop_scale[0]:g} to {f.simclr.crop_scale[1]:g} of the image, colour jitter
of strength {f.simclr.color_strength:g} with p = 0.8 and grayscale with p = 0.2. SimCLR also
flips each view horizontally with p = 0.5; on the embedded digits the flip is off by default
(a mirrored 2 is not a 2; section 9.3 measures it) and on for natural images (`--flip`,
`--no-flip`).
""",
        ),
        section(
            "2.3.2",
            "负样本对",
            "Negative pairs",
            f"""
SimCLR takes its negatives from the batch: 2N - 2 per anchor, {2 * f.simclr.batch_size - 2}
at N = {f.simclr.batch_size}. MoCo decouples their number from the batch with a queue of keys
from earlier batches: K = {f.moco.queue_size} negatives per query here (65,536 in the paper).
Negatives of the same class are inevitable (false negatives); with 10 classes about a tenth
of them are.
""",
        ),
        section(
            "2.3.3",
            "对比损失函数",
            "The contrastive loss",
            f"""
Both methods use softmax cross-entropy over similarities divided by a temperature tau:
L = -log( exp(s_pos / tau) / sum over candidates exp(s_c / tau) ), with s the cosine
similarity. Raw cosines in the ratio, as in source 002, are not a probability (erratum 3).
At chance (a collapsed encoder) the loss is log(#candidates): {ex_h["chance_simclr"]:.4f} for
SimCLR at N = {ex_h["n"]}, {ex_h["chance_moco"]:.4f} for MoCo at K = {ex_h["k"]}.
""",
        ),
    ]


def chapter3(f: Facts) -> list[str]:
    return [
        "## 3. The algorithm step by step\n",
        *_data(f),
        *_model(f),
        *_training_and_use(f),
    ]


def _data(f: Facts) -> list[str]:
    """Section 3.1: the embedded dataset and its raw-pixel baseline."""
    return [
        section(
            "3.1",
            "数据准备与预处理",
            "Data",
            f"""
The default dataset is embedded, so nothing is downloaded: scikit-learn's 1,797 real 8x8
handwritten digits, rendered onto 32x32 grey canvases at a random size, position, brightness
and illumination (`shared/run/data.py`, deterministic and checksummed): {f.n_train} training and
{f.n_test} test images, about {f.n_train // 10} per class. Position and scale vary
independently of the class, so raw pixels are a weak representation: kNN on raw pixels scores
{pct(f.pixels["knn_top1"])} at its leave-one-out k = {f.pixels["knn_k"]}. CIFAR-10/100, STL-10
(torchvision or tfds, `--download`) and image folders (`--dataset folder:PATH`) load through
the same `load_split` in both frameworks.
""",
        ),
    ]


def _model(f: Facts) -> list[str]:
    """Sections 3.2 to 3.2.3: the encoder, the head and the loss in the model."""
    return [
        section(
            "3.2",
            "构建对比学习模型",
            "The model",
            """
Encoder, projection head, loss: `EncoderWithHead` in `*/models.py` returns (h, z); the
method classes in `*/simclr.py` and `*/moco.py` add the loss and the step.
""",
        ),
        section(
            "3.2.1",
            "编码器网络",
            "The encoder",
            """
`SmallCNN` (the default: four 3x3 conv-BN-ReLU blocks, a 2x2 max-pool after each of the first
three, then global average pooling to 256 features) or a ResNet: `resnet18_cifar` and
`resnet50_cifar` (the CIFAR stem: a 3x3 stride-1 conv, no max-pool), `resnet18` and
`resnet50` (torchvision's ImageNet stem), and `resnet50_samepool` (the ImageNet stem with
TensorFlow's "SAME" max-pool, the layout of SimCLR's official checkpoints). Each is in
`torch_impl/models.py` (torchvision) and `tf_impl/models.py` (`ResNet`, plain Keras layers)
with the same canonical weight names, so weights port between the frameworks
(`rosetta port`, `shared/parity/weights.py`; `tests/test_encoders.py` checks the walk and the
features, and ResNet-50's float64 forward and backward).
""",
        ),
        section(
            "3.2.2",
            "投影头",
            "The projection head",
            f"""
`ProjectionHead`: Linear (no bias), BN, ReLU, Linear, from h to z of dimension
{f.simclr.proj_dim}, SimCLR v2's form, used for both methods here. MoCo v2's official head has
no BN (Linear with bias, ReLU, Linear), which is why an imported MoCo head is exact at
inference only ([import.md](import.md#inference-only)). The loss sees z; downstream tasks use h, because the head learns to discard what the augmentations
change (SimCLR, section 4.2 of the paper). Worked example f runs one on a 3-pixel network.
""",
        ),
        section(
            "3.2.3",
            "对比损失函数",
            "The loss in the model",
            """
`nt_xent(z1, z2, temperature)` (SimCLR) and `info_nce(q, k, queue, temperature)` (MoCo) in
`*/losses.py`, each checked against the NumPy oracle `shared/oracle/losses.py` in float64 and
float32 (`tests/test_cross_framework.py`; `rosetta parity` runs the same checks).
""",
        ),
    ]


def _training_and_use(f: Facts) -> list[str]:
    """Sections 3.3 to 3.4: one training step, its loss and update, then downstream use."""
    ex_a = f.ex["a"]
    return [
        section(
            "3.3",
            "模型训练",
            "Training",
            """
One step: two views of a batch, the encoder and head on both, the loss, the gradients, one
optimiser step; for MoCo also the momentum update and the enqueue. The step lives in the
model (`SimCLR.train_step`, `MoCo.train_step`), the loop in `*/train.py`.
""",
        ),
        section(
            "3.3.1",
            "正负样本对的构建",
            "Building the pairs",
            """
A batch of N images becomes two batches of views, x1 and x2 (N each). Row i of x1 and row i
of x2 are the positive pair; every other row of either batch is a negative for both.
""",
        ),
        section(
            "3.3.2",
            "计算对比损失",
            "Computing the loss",
            f"""
Worked example a computes NT-Xent for N = 2 pairs in 3-D at tau = 0.5, every intermediate
printed: the loss is {ex_a["loss"]:.4f}. Here the loss is the mean over all 2N anchors with
the self-similarity excluded; the official SimCLR TF code reports twice this value.
""",
        ),
        section(
            "3.3.3",
            "模型参数更新",
            "The parameter update",
            f"""
SimCLR uses LARS (layer-wise trust ratio, `*/optim.py`, NumPy formula in `shared/oracle/optim.py`)
at lr {f.simclr.lr:g} with warm-up and cosine decay; MoCo uses SGD with momentum at lr
{f.moco.lr:g}. TensorFlow gets the project's own SGD, LARS and Adam so that the update
formulas are torch's (docs/framework_differences.md lists why Keras' differ).
""",
        ),
        section(
            "3.4",
            "下游任务微调",
            "Downstream evaluation and fine-tuning",
            """
Three ways to use the trained encoder, all in `*/evaluate.py` with the one evaluator of
`shared/run/evaluation.py`: weighted kNN on frozen features, a linear probe (logistic regression)
on frozen features, and fine-tuning the whole encoder on a labelled fraction
(`python -m torch_impl finetune --run-dir DIR --fraction 0.1`). The protocol chooses every
setting on the training split and applies the same rule to the baselines.
""",
        ),
    ]


def chapter4(f: Facts) -> list[str]:
    return ["## 4. The math, with numbers\n", *_encoder_and_head_math(f), *_loss_math(f)]


def _encoder_and_head_math(f: Facts) -> list[str]:
    """Sections 4.1 and 4.2: worked example f through the encoder and the head."""
    fx = f.ex["f"]
    return [
        section(
            "4.1",
            "编码器网络的数学表示",
            "The encoder",
            f"""
h = f(x; theta): a composition of convolutions, batch normalisation and ReLUs, then global
average pooling. Worked example f uses h = ReLU(W_f x): for x = {fx["x"].tolist()} it gives
W_f x = {fx["pre"].tolist()} and h = {fx["h"].tolist()}.
""",
        ),
        section(
            "4.2",
            "投影头的数学表示",
            "The projection head",
            f"""
z = g(h) = W2 ReLU(W1 h) (with BN after W1 here), then z / |z|. In worked example f,
z = {fx["z"].tolist()} and the loss sees {[round(v, 4) for v in fx["u"].tolist()]}.
""",
        ),
    ]


def _loss_math(f: Facts) -> list[str]:
    """Sections 4.3 to 4.4: InfoNCE and NT-Xent with worked examples a, b and c."""
    a, b, c = f.ex["a"], f.ex["b"], f.ex["c"]
    return [
        section(
            "4.3",
            "对比损失函数的数学推导",
            "The losses",
            """
Both are the cross-entropy of a softmax over cosine similarities divided by tau; they differ in
where the candidates come from.
""",
        ),
        section(
            "4.3.1",
            "InfoNCE损失",
            "InfoNCE",
            f"""
For a query q, its positive key k+ and K queue keys k_j:
L = -log( exp(q.k+ / tau) / (exp(q.k+ / tau) + sum_j exp(q.k_j / tau)) ), with unit vectors.
Worked example b (one query, a queue of 3, tau = 0.2) gives L = {b["loss"]:.4f}.
""",
        ),
        section(
            "4.3.2",
            "NT-Xent损失",
            "NT-Xent",
            f"""
For 2N views, anchor i with positive p(i):
l_i = -log( exp(s_i,p(i) / tau) / sum over k != i of exp(s_ik / tau) ), L = mean of l_i over
all 2N anchors. Worked example a: per-anchor losses
{[round(v, 4) for v in a["per_anchor"].tolist()]}, mean {a["loss"]:.4f}. The gradient with
respect to each similarity is (p_k - 1[k = p(i)]) / tau: example g shows how a small tau aims
it at the hardest negatives.
""",
        ),
        section(
            "4.4",
            "数值计算案例",
            "Worked numbers",
            f"""
`rosetta explain` prints eight worked examples (a to h). Two closed forms anchor them
(example c): collapsed embeddings give log(2N - 1) (here {c["collapsed_nt_xent"]:.4f} at
N = {c["n"]}) and log(K + 1) ({c["collapsed_info_nce"]:.4f} at K = {c["k"]}); orthogonal
embeddings give log(1 + (2N - 2) e^(-1/tau)), which goes to 0 as tau goes to 0.
""",
        ),
    ]


def chapter5(f: Facts) -> list[str]:
    return ["## 5. The code\n", *_simclr_in_torch(f), *_moco_in_tf(f), *_finetuning(f)]


def _simclr_in_torch(f: Facts) -> list[str]:
    """Sections 5.1 to 5.1.5: SimCLR in PyTorch, piece by piece, with the demo's numbers."""
    return [
        section(
            "5.1",
            "基于PyTorch实现SimCLR",
            "SimCLR in PyTorch",
            f"""
`python -m torch_impl train` trains SimCLR by default: {f.epochs("simclr")} epochs, kNN
{f.q("simclr/torch", "knn_top1")}. One step of the small CNN at batch 64 measures
{f.b5["simclr/torch"]:.0f} ms with both cores ({f.bench}).
""",
        ),
        section(
            "5.1.1",
            "数据增强与预处理",
            "Augmentation",
            "`simclr_augment`, `BatchAugment` and `TwoViews` in `torch_impl/augment.py` (section 2.3.1).",
        ),
        section(
            "5.1.2",
            "编码器网络构建",
            "Encoder",
            "`build_encoder` and `SmallCNN` in `torch_impl/models.py`.",
        ),
        section(
            "5.1.3",
            "投影头构建",
            "Projection head",
            "`ProjectionHead` and `EncoderWithHead` in `torch_impl/models.py`.",
        ),
        section("5.1.4", "对比损失函数定义", "Loss", "`nt_xent` in `torch_impl/losses.py`."),
        section(
            "5.1.5",
            "训练循环",
            "Training loop",
            "`SimCLR.train_step` in `torch_impl/simclr.py`; `train` in `torch_impl/train.py` adds checkpoints, resume, the non-finite guard and the health warnings.",
        ),
    ]


def _moco_in_tf(f: Facts) -> list[str]:
    """Sections 5.2 to 5.2.5: MoCo in TensorFlow, with worked example e."""
    e = f.ex["e"]["steps"]
    return [
        section(
            "5.2",
            "基于TensorFlow实现MoCo",
            "MoCo in TensorFlow",
            f"""
`python -m tf_impl train --method moco` trains MoCo v2: queue, momentum update and loss inside one
`tf.function` step (`tf_impl/train.py`, `compile_step`): {f.epochs("moco")} epochs, kNN
{f.q("moco/tensorflow", "knn_top1")}. One step measures {f.b5["moco/tensorflow"]:.0f} ms in
TF against {f.b5["moco/torch"]:.0f} ms in torch ({f.bench}).
""",
        ),
        section(
            "5.2.1",
            "数据队列构建",
            "The queue",
            f"""
A (K, D) variable of unit keys and a pointer; `dequeue_and_enqueue` writes a batch of keys at
the pointer, wrapping around (`tf_impl/moco.py`; NumPy reference `shared/oracle/queue.py`). Worked
example e runs K = 4 with batches of 3: after three steps the queue is
{e[2]["queue"].tolist()} and the pointer {e[2]["ptr"]}; the second step wraps into rows
{e[1]["rows"]}.
""",
        ),
        section(
            "5.2.2",
            "编码器网络构建",
            "Encoders",
            "`encoder_q` and `encoder_k`: the same `EncoderWithHead`, the key copy never receiving gradients (`tf_impl/moco.py`).",
        ),
        section(
            "5.2.3",
            "动量编码器更新",
            "The momentum update",
            f"""
theta_k <- m theta_k + (1 - m) theta_q with m = {f.moco.key_momentum:g}
(`momentum_update`). In example e (m = 0.9) the key weight goes
{" -> ".join(f"{s['theta_k']:.4g}" for s in e)} while the query weight goes 1 -> 1.5 -> 2.
""",
        ),
        section(
            "5.2.4",
            "对比损失函数定义",
            "Loss",
            "`info_nce` in `tf_impl/losses.py`, the queue read before the enqueue.",
        ),
        section(
            "5.2.5",
            "训练循环",
            "Training loop",
            "`MoCo.train_step` is MoCo's Algorithm 1 in order; docs/side_by_side.md shows it beside the PyTorch one.",
        ),
    ]


def _finetuning(f: Facts) -> list[str]:
    """Section 5.3: the fine-tuning command."""
    return [
        section(
            "5.3",
            "下游任务微调案例",
            "Fine-tuning",
            """
`python -m torch_impl finetune --run-dir DIR --fraction 0.1` (or `tf_impl`) fine-tunes the
trained encoder with a linear head on a class-stratified tenth of the labels and trains the
same network from scratch on the same subset; section 9.5 quotes the result.
""",
        ),
    ]


def chapter6(f: Facts) -> list[str]:
    return [
        "## 6. Applications\n",
        section(
            "6.1",
            "图像分类中的应用",
            "Image classification",
            f"""
What this project measures: a frozen SimCLR encoder (torch) gives kNN
{f.q("simclr/torch", "knn_top1")} and a linear probe
{f.q("simclr/torch", "linear_top1")} on the embedded digits, against
{f.q("raw_pixels", "knn_top1")} and {f.q("raw_pixels", "linear_top1")}
for raw pixels under the same protocol.
""",
        ),
        section(
            "6.2",
            "目标检测中的应用",
            "Object detection (not implemented here)",
            """
This project has no detector. The MoCo paper fine-tunes its ImageNet-pretrained ResNet-50 in
Faster R-CNN on PASCAL VOC and Mask R-CNN on COCO, and reports it on par with or above
supervised pretraining (He et al. 2020, section 4.2); DenseCL (Wang et al., CVPR 2021) adds a
pixel-level contrastive loss for dense tasks.
""",
        ),
        section(
            "6.3",
            "语义分割中的应用",
            "Semantic segmentation (not implemented here)",
            """
Not implemented. MoCo reports transfer to COCO instance segmentation, Cityscapes instance
segmentation and PASCAL VOC semantic segmentation (He et al. 2020, section 4.2); PixPro (Xie
et al., CVPR 2021) contrasts pixels rather than images.
""",
        ),
        section(
            "6.4",
            "自然语言处理中的应用",
            "Natural language processing (not implemented here)",
            """
Not implemented. SimCSE (Gao, Yao and Chen, EMNLP 2021) uses two dropout masks of the same
sentence as the positive pair and the batch as negatives, the NT-Xent recipe for text; CLIP
(Radford et al., ICML 2021) contrasts images with their captions.
""",
        ),
    ]


def chapter7(f: Facts) -> list[str]:
    return ["## 7. Tools and resources\n", *_frameworks(f), *_resources(f)]


def _frameworks(f: Facts) -> list[str]:
    """Sections 7.1 to 7.1.2: the two frameworks, at the versions the benchmarks ran."""
    machine = json.loads(BENCH.read_text())["machine"]
    return [
        section(
            "7.1",
            "主流深度学习框架",
            "Frameworks",
            """
Both methods exist in both frameworks with the same file, function and argument names; a test
enforces the mirror and a reasoned allow-list names every difference (README).
""",
        ),
        section(
            "7.1.1",
            "PyTorch",
            "PyTorch",
            f"""
torch {machine["torch"]} here. Eager by default; DDP through `torchrun` (gloo on CPU, nccl on
CUDA). In one process, import torch and torchvision before TensorFlow.
""",
        ),
        section(
            "7.1.2",
            "TensorFlow",
            "TensorFlow",
            f"""
TensorFlow {machine["tensorflow"]} here, Keras 3 layers. Training steps are `tf.function`s,
`tf.data` feeds them, and `tf.distribute` (MirroredStrategy, MultiWorkerMirroredStrategy)
scales them.
""",
        ),
    ]


def _resources(f: Facts) -> list[str]:
    """Sections 7.2 to 7.4: model zoos, datasets and papers."""
    return [
        section(
            "7.2",
            "预训练模型库",
            "Pretrained model zoos, and bringing the official weights",
            """
This project downloads nothing at run time and ships no pretrained weights. The official MoCo
repository (facebookresearch/moco) and SimCLR repository (google-research/simclr) publish
ImageNet checkpoints; solo-learn and lightly publish checkpoints and training recipes for many
methods. `rosetta port` moves this project's own runs between frameworks, and
`rosetta import CKPT --format moco|simclr-tf1 --to torch|tensorflow --out RUN` makes an
official checkpoint you have downloaded a run of either framework, proven layer by layer
against an independent forward of the checkpoint in float32 and float64
([import.md](import.md); `tests/test_import.py`, on checkpoints the tests write from random
weights). Two head layers are exact at inference only, and MoCo's weights expect
ImageNet-normalised inputs, which the project's `eval` does not apply
([import.md](import.md#inference-only)).
""",
        ),
        section(
            "7.3",
            "数据集资源",
            "Datasets",
            """
`--dataset embedded` (default, no download), `cifar10`, `cifar100`, `stl10` (with `--download`
once, through torchvision or tfds), or `folder:PATH` for any folder of images. STL-10's
100,000-image unlabelled split (`--train-split unlabeled`) is made for self-supervised
pretraining.
""",
        ),
        section(
            "7.4",
            "论文与教程",
            "Papers",
            """
Hadsell, Chopra, LeCun 2006 (contrastive loss); Wu et al. 2018 (instance discrimination);
van den Oord et al. 2018 (CPC, InfoNCE); He et al. 2020 (MoCo) and Chen et al. 2020
(MoCo v2, arXiv:2003.04297); Chen et al. 2020 (SimCLR); Grill et al. 2020 (BYOL); Chen and He
2021 (SimSiam); Zbontar et al. 2021 (Barlow Twins); Caron et al. 2021 (DINO); Wang and Liu
2021 (*Understanding the Behaviour of Contrastive Loss*, the temperature).
""",
        ),
    ]


def chapter8(f: Facts) -> list[str]:
    return [
        "## 8. Where the field is going\n",
        section(
            "8.1",
            "对比学习的研究进展",
            "Progress",
            """
After SimCLR and MoCo came methods without negatives: BYOL (a predictor and a momentum
target), SimSiam (a stop-gradient alone), Barlow Twins (decorrelating the embedding), and
self-distillation with Vision Transformers (DINO, MoCo v3).
""",
        ),
        section(
            "8.2",
            "对比学习面临的挑战",
            "Challenges",
            f"""
Shortcuts: the encoder learns whatever tells images apart most easily. This project met it
twice. An early version of the dataset tinted each image with a random colour, and both
methods learned to match tints and stayed at chance (`shared/run/data.py`). Random clutter strokes,
tried to make raw pixels weaker, did the same: the strokes are identical in both views and
unique per image. Collapse: an encoder that maps everything to one point scores the chance
loss; `shared/run/health.py` warns when the projections' spread falls. Evaluation: k = 200 for kNN
is made for 5,000 images per class; with about {f.n_train // 10} it flattered every method,
so this project chooses k by leave-one-out on the training split.
""",
        ),
        section(
            "8.3",
            "对比学习的未来发展方向",
            "Directions",
            """
Fewer negatives or none (section 8.1), other modalities (section 6.4), and dense objectives for
detection and segmentation (sections 6.2, 6.3). This project stays with the two methods it can
verify number by number.
""",
        ),
    ]


def few_labels_text(f: Facts) -> str:
    """Section 9.5's measurement: fine-tuning against training from scratch against the frozen
    linear probe, at three label fractions."""
    keys = [k for k in f.results["entries"] if k.startswith("finetune/")]
    if not keys:
        return "The fine-tune table (`rosetta results`) is not in the results file yet."
    return "\n".join(
        [
            "Each seed's SimCLR encoder (torch), fine-tuned on a fraction of the training labels, "
            "against the same network trained from scratch on the same images, and against the "
            "frozen encoder's linear probe on them. Each arm's budget (SGD steps 60, 200 or 600; "
            "the probe's C) is chosen by cross-validation on the labelled images alone, with the "
            "same grid and rule for every arm; at 1 % there is one label per class, no CV is "
            "possible, and every arm takes the grid's middle. Test split, mean ± std over the "
            "seeds (in brackets); the labelled subset is fixed by the data seed.",
            "",
            T.finetune_table(f.results),
        ]
    )


def chapter9(f: Facts) -> list[str]:
    return [
        "## 9. FAQ\n",
        section(
            "9.1",
            "如何选择编码器网络结构？",
            "Which encoder?",
            """
The papers use ResNet-50 on ImageNet and CIFAR-style ResNet-18 on small images. On two CPU
cores this project defaults to a small CNN so that the demo finishes in minutes;
`--encoder resnet18_cifar`, `resnet50_cifar`, `resnet18` and `resnet50` are there, in both
frameworks, for GPUs.
""",
        ),
        section(
            "9.2",
            "对比损失函数的选择有哪些考虑？",
            "Which loss?",
            f"""
NT-Xent needs large batches for many negatives; InfoNCE with a queue does not. The temperature
matters most: in worked example g the hard negative gets
{100 * f.ex["g"]["rows"][0.1]["hard_share"]:.1f} % of the push at tau = 0.1 and
{100 * f.ex["g"]["rows"][1.0]["hard_share"]:.1f} % at tau = 1.
""",
        ),
        section(
            "9.3",
            "如何构建更有效的正负样本对？",
            "Better pairs",
            f"""
Make the augmentations remove the nuisances you want ignored and nothing that carries the
class, and check that no per-image signal survives both views (section 8.2).

{flip_text(f)}
""",
        ),
        section(
            "9.4",
            "对比学习的计算资源要求如何？",
            "Compute",
            f"""
Not cheap, whatever source 002 says (erratum 5). Here one SimCLR step of the small CNN at
batch 64 takes {f.b5["simclr/torch"]:.0f} ms in torch and {f.b5["simclr/tensorflow"]:.0f} ms
in TF ({f.bench}), and SimCLR's {f.epochs("simclr")} epochs are
{f.epochs("simclr") * (f.n_train // f.simclr.batch_size):,} such steps
({f.n_train // f.simclr.batch_size} per epoch of the {f.n_train:,} training images).

{tradeoffs_text(f)}
""",
        ),
        section("9.5", "对比学习能否应用于小样本场景？", "Few labels", few_labels_text(f)),
    ]


def _sweeps_text(f: Facts, cells: list[tuple[str, str]], missing: str, intro: str) -> str:
    """A measurement section made of sweeps: ``intro``, then their table, or ``missing``."""
    keys = [f"{c}/{k}" for c, k in cells]
    if not all(k in f.results.get("sweeps", {}) for k in keys):
        return missing
    return "\n".join([intro, "", T.sweeps_table(f.results, keys)])


def flip_text(f: Facts) -> str:
    """Section 9.3's measurement: two cells with and without the horizontal flip."""
    return _sweeps_text(
        f,
        [("simclr/torch", "flip"), ("moco/tensorflow", "flip")],
        "Whether digits want SimCLR's horizontal flip is not in the results file yet.",
        "A mirrored 2 is not a 2, so SimCLR's horizontal flip teaches the encoder an "
        "invariance the digits do not have. `rosetta results` trains each of two cells with "
        "the flip (seed 0) beside its default run; the decision "
        "(`shared.run.config.flip_default`) reads the training split alone, and a difference "
        "smaller than the cell's spread across seeds (the leave-one-out kNN's std) is a tie "
        "(`shared.run.published.decide`); the test split is shown, not used:",
    )


def tradeoffs_text(f: Facts) -> str:
    """Section 9.4's grid: kNN against batch size, queue size and epochs, each one seed."""
    return _sweeps_text(
        f,
        [
            ("simclr/torch", "batch_size"),
            ("moco/tensorflow", "queue_size"),
            ("simclr/torch", "epochs"),
            ("moco/torch", "epochs"),
        ],
        "The batch, queue and epochs sweeps (`rosetta results`) are not in the file yet.",
        "What more compute buys here: `rosetta results` sweeps the batch size, the queue size "
        "and the epochs, one seed each beside the default run, and decides each by the "
        "cell's spread across seeds (a difference below it is a tie). The epoch rule is a cost "
        "rule, the fewest epochs within the spread of the default's score, so it never adds "
        "epochs; where more epochs score higher by more than the spread, the decision says so:",
    )


def markdown(f: Facts | None = None) -> str:
    f = f or Facts()
    parts = [
        "# Contrastive learning, from the first idea to running code\n",
        "Generated by `python -m shared.docgen.tutorial` (`make docs`): every number is computed by "
        "the project's code or read from its committed results. The sections follow source "
        "document 000, a Chinese outline that is not shipped with the project; its section "
        "titles are quoted in the original.\n",
    ]
    for chapter in (chapter1, chapter2, chapter3, chapter4, chapter5, chapter6, chapter7):
        parts += chapter(f)
    for chapter in (chapter8, chapter9):
        parts += chapter(f)
    return "\n".join(parts)


def main() -> int:
    OUT.write_text(markdown())
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
