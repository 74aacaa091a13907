"""The errors of source document 002, each with its correction, generated into docs/errata.md.

    python -m shared.docgen.errata            # rewrites docs/errata.md (also ``make docs``)

Source 002 is a long-form Chinese article on contrastive learning that the project's course
follows in part. Its known errors (listed by the people steering the project) are corrected here
openly. Each erratum quotes the claim (the original here, its English translation on the page:
the site bundles no CJK font), says why it is wrong
with a citation, and, where the error is in code or a formula, runs a pair: the broken version
and the corrected one, each with the output it really gives. The broken code runs in a child
process (``python -c``), so this module imports no framework; ``tests/test_docs.py`` checks
that every output still is what the page says.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared.oracle.losses import raw_cosine_ratio_as_quoted

OUT = Path(__file__).resolve().parents[2] / "docs" / "errata.md"


@dataclass
class Run:
    """A snippet and what running it printed (the last lines of stdout and stderr)."""

    label: str
    code: str
    output: str = ""


@dataclass
class Erratum:
    title: str
    quote: str  # the claim in the original
    claim: str  # the same in English
    why: str  # why it is wrong, with citations
    runs: list[Run] = field(default_factory=list)


def run_snippet(code: str, timeout: int = 120) -> str:
    """Run ``code`` in a fresh interpreter; return what it printed, or its error's last line."""
    root = Path(__file__).resolve().parents[2]  # so that the snippets import the project
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=root
    )
    if proc.returncode:  # what it printed before failing, then the error's last line
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        error = lines[-1] if lines else f"exit status {proc.returncode}"
        return "\n".join(filter(None, [proc.stdout.strip(), error]))
    return proc.stdout.strip()


# --- 2: the positive pair of a vector with itself ----------------------------------------------
def seed_self_positive_loss(z1: np.ndarray, z2: np.ndarray, tau: float) -> float:
    """Seed 002's formula with exp(./tau) added (to isolate its second error from its third):
    -log( e^{s(z1_i, z1_i)/tau} / (e^{s(z1_i, z1_i)/tau} + sum_j e^{s(z2_j, z1_i)/tau}) ),
    mean over i. s(z1_i, z1_i) = 1 always, so only the denominator's sum can move."""
    u1 = z1 / np.linalg.norm(z1, axis=1, keepdims=True)
    u2 = z2 / np.linalg.norm(z2, axis=1, keepdims=True)
    cross = u1 @ u2.T / tau  # (N, N): row i holds s(z2_j, z1_i) / tau
    pos = 1.0 / tau
    return float(np.mean(-pos + np.log(np.exp(pos) + np.exp(cross).sum(axis=1))))


def self_positive_pair() -> str:
    """Two encoders on N = 4 images: one maps both views of an image to the same point, the
    other maps them to opposite points. Seed 002's formula prefers the second."""
    from shared.oracle.losses import nt_xent

    eye = np.eye(4)
    lines = ["N = 4 images, tau = 0.5; z1 = the 4 basis vectors", ""]
    lines.append(f"{'encoder':<32}{'article (self-positive)':>26}{'NT-Xent':>10}")
    for name, z2 in (("views agree    (z2 = z1)", eye), ("views opposite (z2 = -z1)", -eye)):
        seed, ntx = seed_self_positive_loss(eye, z2, 0.5), nt_xent(eye, z2, 0.5)
        lines.append(f"{name:<32}{seed:>26.4f}{ntx:>10.4f}")
    return "\n".join(lines)


# --- 3: raw cosines in the ratio ------------------------------------------------------------
# Seed 002, section 4.2, after substituting the cosine similarity s: the formula as it stands,
# with one change of notation: the seed writes z_2_i, a double subscript that LaTeX rejects.
SEED_RAW_COSINE_LATEX = (
    r"\mathcal{L}(x) = -\log \frac{s(z_1, z_1)}{s(z_1, z_1) + \sum_{i=1}^{N} s(z_{2_i}, z_1)}"
)
RAW_COSINE_CASES = (  # (Z1, Z2): unit rows, so the cosines are the dot products shown
    (
        "Z1 = (1, 0), (0, 1);  Z2 = (0.6, 0.8), (-0.8, 0.6)",
        [[1, 0], [0, 1]],
        [[0.6, 0.8], [-0.8, 0.6]],
    ),
    ("Z1 as above;  Z2 = (-0.6, -0.8), (-0.8, 0.6)", [[1, 0], [0, 1]], [[-0.6, -0.8], [-0.8, 0.6]]),
)


def raw_cosine_rows() -> str:
    """The quoted formula (:func:`shared.oracle.losses.raw_cosine_ratio_as_quoted`) on two cases,
    term by term, beside NT-Xent on the same vectors."""
    from shared.oracle.losses import nt_xent

    lines = ["L_i = -log( s(z1_i, z1_i) / (s(z1_i, z1_i) + sum_j s(z2_j, z1_i)) ), s = cosine"]
    for label, a, b in RAW_COSINE_CASES:
        z1, z2 = np.array(a, dtype=float), np.array(b, dtype=float)
        cos, loss = z1 @ z2.T, raw_cosine_ratio_as_quoted(z1, z2)
        lines += ["", label]
        for i, value in enumerate(loss):
            den = 1 + cos[i].sum()
            terms = " ".join(f"{'+' if c >= 0 else '-'} {abs(c):.4f}" for c in cos[i])
            if den <= 0:
                shown = "undefined (the log of a negative number)"
            else:
                shown = f"{value:.4f}" + (
                    "  negative: the 'probability' exceeds 1" if den < 1 else ""
                )
            lines.append(f"   row {i}: L = -log(1 / (1 {terms})) = -log(1 / {den:.4f}) = {shown}")
        lines.append(f"   NT-Xent (tau = 0.5) on the same vectors: {nt_xent(z1, z2, 0.5):.4f}")
    return "\n".join(lines)


# --- 4: the code does not run --------------------------------------------------------------------
SEED_LOSS = """
import torch

def contrastive_loss(logits, labels):
    batch_size, num_pos = logits.shape
    max_num_neg = max(0, num_pos*4)
    logits = logits.view(batch_size, num_pos, max_num_neg)
    labels = labels.view(batch_size, num_pos, max_num_neg).long()
    labels = labels.tril(diagonal=0).float() / labels.numel()
    loss = torch.mean(torch.logsumexp(logits, dim=2) - logits.mean(dim=2).view(
        batch_size, num_pos, 1).expand(batch_size, num_pos, max_num_neg))
    return loss

# a batch of 32 images, 10 outputs each, and their supervised class labels
print(contrastive_loss(torch.randn(32, 10), torch.randint(0, 10, (32,))))
"""

FIXED_LOSS = """
import numpy as np
from shared.oracle.losses import nt_xent

rng = np.random.default_rng(0)
z1, z2 = rng.standard_normal((32, 128)), rng.standard_normal((32, 128))  # two views' projections
print(f"NT-Xent over 2N = 64 views: {nt_xent(z1, z2, 0.5):.4f} (chance log(63) = {np.log(63):.4f})")
"""

SEED_TRAIN_LOOP = """
def contrastive_train_epoch(model, train_loader, optimizer, device):
    model.train()
    for batch in train_loader:
        data = batch[0].to(device)
        targets = batch[1].to(device)
        with torch.no_grad():
            features = feature_extractor(data, return_tensors='pt').features
        loss = contrastive_loss(model(features), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 0:
            print(f'Train step {step}, loss {loss.item():.4f}')
    return loss.mean().item()
"""

UNDEFINED_NAMES = f"""
import ast, builtins
# the article's module level binds these (its imports, model, feature_extractor, contrastive_loss)
module = {{"torch", "transforms", "datasets", "VGGFeatureExtractor", "VGGImageModel", "model",
    "feature_extractor", "contrastive_loss", "data_loader", "evaluate"}}
fn = ast.parse('''{SEED_TRAIN_LOOP}''').body[0]
bound = module | {{a.arg for a in fn.args.args}} | {{
    n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}}
read = {{n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}}
print("read but bound nowhere:", sorted(n for n in read - bound if not hasattr(builtins, n)))
"""

SEED_IMAGENET = """
import inspect
from torchvision import datasets
print("ImageNet.__init__", inspect.signature(datasets.ImageNet.__init__))
datasets.ImageNet(root='data', train=True, download=True)
"""

FIXED_DATA = """
from torch_impl.data import load_split
split = load_split("embedded", "train")  # or cifar10 / stl10 with --download, or folder:PATH
print(split.images.shape, split.images.dtype, split.labels[:8])
"""


# --- 5: "cheap" ----------------------------------------------------------------------------------
STEP_COST = """
import time, torch
import torch.nn.functional as F
from shared.run.config import TrainConfig
from torch_impl.methods import build_model
torch.manual_seed(0)
model = build_model(TrainConfig(method="simclr").resolve("torch"))
head = torch.nn.LazyLinear(10)
opt = torch.optim.SGD(list(model.parameters()) + list(head.parameters()), lr=0.01)
x1, x2, y = torch.rand(64, 3, 32, 32), torch.rand(64, 3, 32, 32), torch.randint(0, 10, (64,))
def supervised():  # one view, cross-entropy on labels
    loss = F.cross_entropy(head(model.backbone(x1)), y)
    opt.zero_grad(); loss.backward(); opt.step()
def contrastive():  # two views through encoder and head, NT-Xent over 2N
    loss = model.contrastive_loss(x1, x2)
    opt.zero_grad(); loss.backward(); opt.step()
def median_ms(fn, n=15):
    fn(); ts = []
    for _ in range(n):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return 1000 * sorted(ts)[n // 2]
s, c = median_ms(supervised), median_ms(contrastive)
print(f"batch 64, small CNN, 2 CPU threads: supervised step {s:.1f} ms, SimCLR step {c:.1f} ms, "
      f"ratio {c / s:.2f}")
"""


def _history() -> Erratum:
    """Erratum 1: the dating of SimCLR."""
    return Erratum(
        "1. History: SimCLR is from 2020, not the 1960s",
        "对比学习最早可以追溯到1960年代，当时提出的SimCLR（Simple Contrastive Learning）方法"
        "便是一种对比学习算法。",
        "Contrastive learning can be traced back to the 1960s, when the SimCLR (Simple "
        "Contrastive Learning) method was proposed as a contrastive learning algorithm.",
        "SimCLR is Chen, Kornblith, Norouzi and Hinton, *A Simple Framework for Contrastive "
        "Learning of Visual Representations*, ICML 2020 (arXiv:2002.05709); its name is "
        "*A Simple Framework for Contrastive Learning of visual Representations*. MoCo is He, "
        "Fan, Wu, Xie and Girshick, *Momentum Contrast for Unsupervised Visual "
        "Representation Learning*, CVPR 2020 (arXiv:1911.05722). The contrastive loss goes "
        "back to Hadsell, Chopra and LeCun, *Dimensionality Reduction by Learning an "
        "Invariant Mapping*, CVPR 2006, and InfoNCE to van den Oord, Li and Vinyals, "
        "*Representation Learning with Contrastive Predictive Coding*, 2018 "
        "(arXiv:1807.03748). The same paragraph credits the revival to Transformers (BERT, "
        "GPT); SimCLR and MoCo use ResNets (see erratum 6).",
    )


def _self_positive() -> Erratum:
    """Erratum 2: the positive pair of a vector with itself."""
    return Erratum(
        "2. The positive pair is two views of one image, not a vector with itself",
        "其中 P(z_1, z_1) 表示正样本之间的相似度，P(z_2_i, z_1) 表示负样本 z_2_i 与正样本 z_1 "
        "之间的相似度。",
        "Here P(z_1, z_1) is the similarity between the positive samples, and P(z_2_i, z_1) "
        "the similarity between the negative sample z_2_i and the positive sample z_1.",
        "P(z_1, z_1) compares a vector with itself: it is 1 for every encoder, so the "
        "numerator carries no information. The positive of SimCLR (Chen et al. 2020, eq. 1) "
        "and MoCo (He et al. 2020, eq. 1) is the *other augmented view of the same image*; "
        "the negatives are the other images (or the queue). The document also counts that "
        "other view among the negatives (its z_2_i with i = the anchor's own image), so the "
        "formula rewards an encoder that pulls the two views of one image *apart*. The run "
        "below keeps the exponential and temperature (so that only this error is shown) "
        "and scores two encoders: the formula prefers the one whose views disagree; "
        "NT-Xent prefers the one whose views agree.",
        [Run("The self-positive formula against NT-Xent (shared.oracle.losses.nt_xent)", "")],
    )


def _raw_cosines() -> Erratum:
    """Erratum 3: a ratio of raw cosine similarities."""
    return Erratum(
        "3. Raw cosines in the ratio: not a probability",
        f"将余弦相似度代入对比损失函数，得：\n\n$$\n{SEED_RAW_COSINE_LATEX}\n$$",
        "Substituting the cosine similarity into the contrastive loss gives the formula above "
        "(s is the cosine similarity; the original writes `z_2_i`, which LaTeX rejects as a "
        "double subscript).",
        "Cosines lie in [-1, 1], so the ratio is not a probability. The numerator is "
        "s(z_1, z_1) = 1 (erratum 2) and the denominator 1 + sum_i s(z_2_i, z_1): below 1, "
        "the 'probability' exceeds 1 and the loss is negative; at 0 or below, the log is "
        "undefined. InfoNCE (van den Oord et al. 2018) and NT-Xent (Chen et al. 2020, eq. 1) "
        "use a softmax over exp(sim / tau), a ratio in (0, 1), so their loss is finite and "
        "positive. The run below evaluates the quoted formula exactly, its P(z_1, z_1) term "
        "in the denominator as in erratum 2 "
        "(`shared.oracle.losses.raw_cosine_ratio_as_quoted`, which worked example (g) runs too), "
        "on two pairs of 2-D batches:",
        [Run("The quoted formula on actual numbers (NumPy)", "")],
    )


def _code_does_not_run() -> Erratum:
    """Erratum 4: the article's code, run as written beside the project's counterparts."""
    return Erratum(
        "4. The code does not run",
        "from transformers import VGGFeatureExtractor, VGGImageModel ... "
        "datasets.ImageNet(root='data', train=True, download=True, transform=transform)",
        "The article's PyTorch code: a VGG from `transformers`, a `contrastive_loss` over "
        "logits and class labels, a training loop, and ImageNet through torchvision.",
        "`transformers` has no VGG model at all: its `src/transformers/models/` has no `vgg` "
        "folder in any version; VGG lives in torchvision (`torchvision.models.vgg11`). "
        "`contrastive_loss` reshapes a (B, C) tensor into (B, C, 4C), which has 4C times "
        "more elements, and it uses supervised class labels, which self-supervised learning "
        "does not have. The training loop reads `step`, which is never defined. "
        "torchvision's `ImageNet` takes `split=`, not `train=`, and cannot download: "
        "ImageNet's licence requires a manual download. Each is run below as written, "
        "beside the project's working counterpart.",
        [
            Run("The article's `contrastive_loss`, as written", SEED_LOSS),
            Run("Corrected: NT-Xent on two views (shared.oracle.losses.nt_xent)", FIXED_LOSS),
            Run("The article's training loop: the names it reads and never binds", UNDEFINED_NAMES),
            Run("The article's ImageNet loader", SEED_IMAGENET),
            Run("Corrected: a loader that needs no download", FIXED_DATA),
        ],
    )


def _not_cheap() -> Erratum:
    """Erratum 5: the claim that contrastive learning is computationally cheap."""
    return Erratum(
        "5. Contrastive learning is not computationally cheap",
        "计算效率高：相比监督学习，对比学习不依赖标注数据，可以更高效地训练模型。",
        "Computationally efficient: compared with supervised learning, contrastive learning "
        "does not depend on labelled data and can train models more efficiently.",
        "Needing no labels saves annotation, not compute. SimCLR's best results used "
        "batches of 4,096 images (8,192 views) on 128 TPU v3 cores, trained for hundreds "
        "of epochs (Chen et al. 2020); MoCo keeps a queue of 65,536 keys because "
        "good negatives need many samples (He et al. 2020, section 3.2). Each step encodes "
        "two views and compares all pairs, and the schedules are long. On this project's "
        "small CNN, one SimCLR step costs the ratio below of one supervised step on the same "
        "batch (two views through the encoder and the head, then a 2N x 2N similarity), "
        "and the demo runs 60 such epochs.",
        [Run(TIMED, STEP_COST)],
    )


def _no_self_attention() -> Erratum:
    """Erratum 6: self-attention as part of contrastive learning."""
    return Erratum(
        "6. Self-attention is not part of contrastive learning",
        "模型复杂度高：对比学习需要引入自注意力机制和对比损失，增加了模型的复杂度和计算量。",
        "High model complexity: contrastive learning needs a self-attention mechanism and a "
        "contrastive loss, which add to the model's complexity and compute.",
        "SimCLR and MoCo use ResNet-50 encoders with no attention anywhere (Chen et al. "
        "2020, section 2.1; He et al. 2020, section 4). Attention enters only when the "
        "encoder is chosen to be a Vision Transformer, as in MoCo v3 (Chen, Xie and He, "
        "ICCV 2021) or DINO (Caron et al., ICCV 2021). This project's encoders, a small CNN "
        "and ResNet-18, have none.",
    )


def _illustrative_log() -> Erratum:
    """Erratum 7: the training log that falls to 0.008."""
    return Erratum(
        "7. The loss log falling to 0.008 is not a real output",
        "Train step 10, loss 0.5042 ... Epoch 1, train loss: 0.1041 ... loss 0.0402 ... "
        "(falling to 0.008)",
        "The article prints a training log whose loss falls from 0.50 to 0.008.",
        "The code that would print it cannot run (erratum 4), so the log is illustrative. "
        "It does not look like a real run either. At its batch of 32 images NT-Xent's "
        "chance level, where every encoder starts, is log(2N - 1) = log 63 = 4.14; the log "
        "reads 0.50 after 10 steps. Perfectly orthogonal negatives leave "
        "log(1 + 62 e^(-1/tau)): below 0.008 only for tau under about 0.11 (table below). A "
        "real run starts near chance and levels off far above its orthogonal value (worked "
        "example f; the demo's report has the curves). Do not use 0.008 as a target.",
        [Run("The levels at the article's batch of 32 (NumPy)", "")],
    )


ERRATA = (
    _history,
    _self_positive,
    _raw_cosines,
    _code_does_not_run,
    _not_cheap,
    _no_self_attention,
    _illustrative_log,
)


def errata() -> list[Erratum]:
    """The errata, in the order of the known-errors list; outputs are filled by :func:`build`."""
    return [f() for f in ERRATA]


def _levels_at_batch_32() -> str:
    n = 32
    lines = [f"chance, log(2N - 1) = log(63) = {math.log(2 * n - 1):.4f}"]
    for tau in (0.1, 0.11, 0.12, 0.2, 0.5):
        floor = math.log1p((2 * n - 2) * math.exp(-1 / tau))
        lines.append(f"orthogonal negatives at tau = {tau}: log(1 + 62 e^(-1/tau)) = {floor:.4f}")
    return "\n".join(lines)


TIMED = "One step, supervised vs SimCLR (torch, same encoder and batch)"  # the one timing


def build(jobs: int = 1, timed: str | None = None) -> list[Erratum]:
    """Every erratum with its runs' outputs filled in (the snippets run now, each in a fresh
    interpreter), ``jobs`` at a time. The step-cost snippet (``TIMED``) is a measurement: its
    output is ``timed`` when given (:func:`main` passes the committed one, so that ``make docs``
    writes the same page on every host), else it runs too (``--measure`` runs it alone, on an
    otherwise idle machine)."""
    from concurrent.futures import ThreadPoolExecutor

    items = errata()
    local = {
        "The self-positive formula against NT-Xent (shared.oracle.losses.nt_xent)": self_positive_pair,
        "The quoted formula on actual numbers (NumPy)": raw_cosine_rows,
        "The levels at the article's batch of 32 (NumPy)": _levels_at_batch_32,
    }
    runs = [run for item in items for run in item.runs]

    def output(r: Run) -> str:
        if timed is not None and r.label == TIMED:
            return timed
        return local[r.label]() if r.label in local else run_snippet(r.code)

    with ThreadPoolExecutor(max_workers=jobs) as pool:  # threads wait on the subprocesses
        for run, out in zip(runs, pool.map(output, runs)):
            run.output = out
    return items


CJK = re.compile(r"[\u3000-\u30ff\u4e00-\u9fff\uff00-\uffef]")  # the site bundles no CJK font


def markdown(items: list[Erratum]) -> str:
    out = [
        "# Errata: the article, corrected",
        "",
        "The course follows an outline ([source_outline.md](source_outline.md)); an article on "
        "contrastive learning that came with it has the errors below, each corrected here with "
        "code that runs. The article is written in Chinese and not shipped with the project; "
        "each claim is quoted in English translation (formulas and code as written).",
        "",
        "Generated by `python -m shared.docgen.errata` (`make docs`); `tests/test_docs.py` checks "
        "that every output below is still what the code gives.",
        "",
    ]
    for item in items:
        quote = [f"> {line}".rstrip() for line in item.quote.splitlines() if not CJK.search(line)]
        while quote and quote[0] == ">":  # the original's lines left out: the translation stays
            quote.pop(0)
        quote += [">"] if quote else []  # a blank quoted line before the translation
        out += [f"## {item.title}", "", *quote, f"> *{item.claim}*", "", item.why]
        for run in item.runs:
            out += ["", f"**{run.label}**", ""]
            if run.code:
                out += ["```python", run.code.strip(), "```", "", "Output:", ""]
            out += ["```", run.output, "```"]
        out.append("")
    return "\n".join(out)


def measure_timing() -> str:
    """The step-cost snippet's output, run alone (``--measure``)."""
    run = next(r for item in errata() for r in item.runs if r.label == TIMED)
    return run_snippet(run.code)


def main(argv=None) -> int:
    """``make docs``: the page, with the committed step timing; ``--measure``: time it anew into
    ``benchmarks/results/errata_timing.json`` first."""
    from shared.docgen import measured as M

    if "--measure" in (sys.argv[1:] if argv is None else argv):
        M.save("errata_timing", {"output": measure_timing()})
    M.write_page(OUT, markdown(build(timed=committed_timing())))
    return 0


def committed_timing() -> str:
    """The step-cost output as the page shows it: the committed measurement and its host."""
    from shared.docgen import measured as M

    doc = M.load("errata_timing")
    where = f"{M.host_line(doc['meta'])}: benchmarks/results/errata_timing.json"
    return f"{doc['data']['output']}\n({where})"


if __name__ == "__main__":
    raise SystemExit(main())
