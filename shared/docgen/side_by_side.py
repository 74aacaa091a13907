"""docs/side_by_side.md: PyTorch and TensorFlow in tabs, one concept per section.

    python -m shared.docgen.side_by_side        # rewrites docs/side_by_side.md (also ``make docs``)

Each excerpt is cut from the source by its qualified name (``module.Class.method``) with
``ast``, so the page cannot drift from the code, and this module imports neither framework.
An excerpt is the definition's core lines: its docstring left out and, where a concept names
them, only the lines from a ``start`` marker to a ``stop`` marker; its link opens the whole
definition (GitHub's ``#Lm-Ln`` anchors). The excerpts are the code that trains by default
(``--augment batch``, MoCo with Shuffle-BN, TF's compiled step). The idiom table links each
idiom to where the project uses it; the per-step times come from the committed benchmark file
(B5 of ``benchmarks/results/bench_cpu.json``). ``tests/test_side_by_side.py`` checks that the
page is what this module writes now.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "side_by_side.md"
BENCH = ROOT / "benchmarks" / "results" / "bench_cpu.json"
SIDES = (("PyTorch", "torch_impl"), ("TensorFlow", "tf_impl"))


@dataclass(frozen=True)
class Source:
    """A definition in ``<package>/<module>.py``; ``start`` / ``stop``: the excerpt runs from the
    first body line containing ``start`` through the next line containing ``stop``."""

    module: str
    name: str
    start: str | None = None
    stop: str | None = None


@dataclass(frozen=True)
class Concept:
    title: str
    what: str  # the concept in a sentence or two
    torch: Source  # in torch_impl/
    tf: Source  # in tf_impl/
    differences: tuple[str, ...]


@dataclass(frozen=True)
class Idiom:
    torch: str
    tf: str
    uses: tuple[str, str]  # "path::qualname" on each side: where the project uses it
    note: str


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def _node(path: Path, qualname: str) -> ast.AST:
    nodes = ast.parse(path.read_text()).body
    node = None
    for part in qualname.split("."):
        node = next(
            (
                n
                for n in nodes
                if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                and n.name == part
            ),
            None,
        )
        if node is None:
            raise KeyError(f"{qualname}: not found in {_shown(path)}")
        nodes = node.body
    return node


def _dedent(lines: list[str]) -> list[str]:
    indent = min(len(ln) - len(ln.lstrip()) for ln in lines if ln.strip())
    return [ln[indent:] for ln in lines]


def span(path: Path, qualname: str) -> tuple[int, int]:
    """The first and last line (1-based) of ``qualname`` in ``path``, decorators included."""
    node = _node(path, qualname)
    return min([node.lineno] + [d.lineno for d in node.decorator_list]), node.end_lineno


def excerpt(path: Path, qualname: str) -> str:
    """The whole source of ``qualname`` (``name`` or ``Class.method``) in ``path``, decorators
    included, cut with ``ast`` (no import)."""
    first, last = span(path, qualname)
    return "\n".join(_dedent(path.read_text().splitlines()[first - 1 : last]))


def core(path: Path, qualname: str, start: str | None = None, stop: str | None = None) -> str:
    """The core lines of ``qualname``: its header (decorators, signature), then its body without
    the docstring; with ``start`` / ``stop``, only the body lines from the first containing
    ``start`` through the next containing ``stop``, an elision marked ``...``.

    Raises:
        KeyError: ``qualname`` is not in ``path``, or a marker is not in its body.
    """
    node = _node(path, qualname)
    first, last = span(path, qualname)
    lines = path.read_text().splitlines()
    body = node.body
    doc = isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
    head = lines[first - 1 : body[0].lineno - 1]
    rest = lines[(body[0].end_lineno if doc else body[0].lineno - 1) : last]
    while rest and not rest[0].strip():
        rest.pop(0)
    where = f"{_shown(path)}::{qualname}"
    i, j = 0, len(rest)
    if start is not None:
        i = next((k for k, ln in enumerate(rest) if start in ln), None)
        if i is None:
            raise KeyError(f"{where}: no line contains the start marker {start!r}")
    if stop is not None:
        j = next((k + 1 for k in range(i, len(rest)) if stop in rest[k]), None)
        if j is None:
            raise KeyError(f"{where}: no line after the start contains {stop!r}")
        line = last - len(rest) + j  # the stop line's number in the file
        ends = [
            n.end_lineno for n in ast.walk(node) if isinstance(n, ast.stmt) and n.lineno == line
        ]
        j += max(ends, default=line) - line  # through the end of the statement it starts
    indent = " " * (len(rest[i]) - len(rest[i].lstrip())) if rest else ""
    kept = rest[i:j]
    if i > 0:
        kept.insert(0, indent + "...")
    if j < len(rest):
        kept.append(indent + "...")
    return "\n".join(_dedent(head + kept))


def link(pkg: str, module: str, qualname: str) -> str:
    """A Markdown link from docs/ to the whole definition: ``[`pkg/module.py`, `name`](...)``."""
    rel = f"{pkg}/{module}.py"
    first, last = span(ROOT / rel, qualname)
    return f"[`{rel}`, `{qualname}`](../{rel}#L{first}-L{last})"


def step_times() -> dict:
    """B5's median step time per cell, in ms (``{"simclr/torch": 101.5, ...}``)."""
    b5 = json.loads(BENCH.read_text())["B5"]
    return {cell: 1000 * r["median_s"] for cell, r in b5.items()}


def tabs(concept: Concept) -> list[str]:
    """The two tabs of a concept: each a link to the whole definition and its core lines."""
    out = []
    for (label, pkg), src in zip(SIDES, (concept.torch, concept.tf)):
        code = core(ROOT / pkg / f"{src.module}.py", src.name, src.start, src.stop)
        out += [
            f'=== "{label}"',
            "",
            f"    The whole definition: {link(pkg, src.module, src.name)}",
            "",
        ]
        out += ["    ```python", *[f"    {ln}".rstrip() for ln in code.splitlines()], "    ```", ""]
    return out


def idiom_table(results: dict) -> list[str]:
    """The idiom table: each row links to where the project uses the idiom on each side."""
    rows = ["| PyTorch | TensorFlow | where the project uses it | how they differ here |"]
    rows.append("|---|---|---|---|")
    for idiom in IDIOMS:
        uses = []
        for use in idiom.uses:
            path, name = use.split("::")
            pkg, module = path[: -len(".py")].split("/", 1)
            uses.append(link(pkg, module, name))
        note = idiom.note.format(compile_note=compile_note(results))
        rows.append(f"| {idiom.torch} | {idiom.tf} | {'<br>'.join(uses)} | {note} |")
    return rows


DIFFERENCES = "[docs/framework_differences.md](framework_differences.md)"

CONCEPTS = (
    Concept(
        "Augmentation: two views of a batch",
        "The default `--augment batch` augments a whole batch at once: `sample` draws each "
        "image's parameters (crop box, flip, jitter factors and order, grayscale, blur) and "
        "`apply`, shown here, is a pure function of the images and those parameters.",
        Source("augment", "BatchAugment.apply"),
        Source("augment", "BatchAugment.apply"),
        (
            "Both read one `shared.oracle.augment_spec.AugmentSpec` (crop area, jitter "
            "0.8s/0.8s/0.8s/0.2s with p = 0.8, grayscale p = 0.2). This batched path gives the "
            "same views from the same parameters, op by op (`tests/test_augment_parity.py`): "
            "TF's crop gathers at `roi_align`'s sampling points and its contrast and saturation "
            "blend as torchvision's. The per-sample path (`--augment per_sample`, "
            f"`simclr_augment`) keeps each library's own ops, which differ there ({DIFFERENCES}).",
            "torch draws the parameters from its global generator (or a `torch.Generator`), TF "
            "from a stateless seed, so a TF view is a pure function of (images, seed).",
            "torch is NCHW and selects per image with `torch.where` on a (B, 1, 1, 1) mask; "
            "Keras is NHWC and does the same with `tf.where`.",
        ),
    ),
    Concept(
        "The data pipeline: shuffled two-view batches",
        "Each epoch's order is fixed by (seed, epoch); each step hands the model two "
        "augmented views of the same images.",
        Source("train", "epoch_batches", start="batch_aug = BatchAugment"),
        Source("train", "make_dataset"),
        (
            "torch's default path uses no `DataLoader`: it indexes a uint8 tensor of the whole "
            "split and augments each batch in the training process; the `DataLoader` (with a "
            "`DistributedSampler` across ranks) serves only `--augment per_sample`. TF always "
            "goes through `tf.data`, with a prefetch of 2 and its autotuning off "
            "([benchmarks/results/stall.md](../benchmarks/results/stall.md)).",
            "The two frameworks shuffle with different generators (`torch.randperm` against "
            "NumPy's `permutation`), so their batches hold different images; parity checks "
            "feed both the same views instead.",
        ),
    ),
    Concept(
        "Encoder: the small CNN",
        "Four 3x3 conv-BN-ReLU blocks, max-pooling after the first three, then global "
        "average pooling: (B, 3, 32, 32) to (B, 8w) features, 256 at the default width 32.",
        Source("models", "SmallCNN"),
        Source("models", "SmallCNN"),
        (
            "Layout: torch is NCHW (run channels-last for speed), Keras NHWC; ported kernels "
            "are transposed (`shared.parity.weights`).",
            "BatchNorm: torch's momentum 0.1 is Keras' momentum 0.9; torch stores the unbiased "
            f"running variance, Keras the biased one ({DIFFERENCES}).",
            "Keras builds the weights at the first call, torch in the constructor.",
        ),
    ),
    Concept(
        "Projection head",
        "g(h): Linear-BN-ReLU blocks, then a Linear to the output dimension.",
        Source("models", "ProjectionHead"),
        Source("models", "ProjectionHead"),
        (
            "Same layers and canonical weight names on both sides; Keras' `Dense` needs no `in_dim`.",
        ),
    ),
    Concept(
        "NT-Xent (SimCLR)",
        "The cross-entropy of each of the 2N views against the other view of its image, over "
        "the cosine similarities divided by tau, the view itself excluded.",
        Source("losses", "nt_xent", start="t = check_temperature"),
        Source("losses", "nt_xent", start="t = check_temperature"),
        (
            "Both: mean over all 2N anchors, self-similarity excluded (the official SimCLR TF "
            "code reports twice this).",
            "TF masks the self-similarity with a (2n, 2N) boolean `one_hot` so one code path "
            "serves one and several replicas; torch sets each anchor's self column to -inf.",
        ),
    ),
    Concept(
        "MoCo's keys: the key encoder and Shuffle-BN",
        "The keys come from the momentum encoder f_k, with no gradient. Shuffle-BN: the key "
        "batch is permuted before f_k and un-permuted after, so that a query and its key are "
        "normalised by different BN sub-batches (two per batch by default, `bn_splits`) and "
        "BN cannot leak which key belongs to which query.",
        Source("moco", "MoCo.keys"),
        Source("moco", "MoCo.keys"),
        (
            "torch's `@torch.no_grad()` records nothing for the key pass; TF runs it on the "
            "tape and cuts it with `tf.stop_gradient`.",
            "torch permutes with `torch.randperm` and inverts with `argsort`; TF draws a "
            "stateless permutation from the step's seed and inverts it with "
            "`tf.math.invert_permutation`.",
            "Across processes (DDP ranks, `tf.distribute` replicas) the shuffle spans all of "
            "them: `shuffle_across_ranks` in each `distributed.py`.",
        ),
    ),
    Concept(
        "InfoNCE (MoCo)",
        "The cross-entropy of each query against its key (column 0) and the K queue entries.",
        Source("losses", "info_nce", start="t = check_temperature"),
        Source("losses", "info_nce", start="t = check_temperature"),
        ("Same logits layout on both sides; the queue is read, never differentiated.",),
    ),
    Concept(
        "The queue: dequeue and enqueue",
        "A ring buffer of the K most recent keys; each step writes its keys at the pointer.",
        Source("moco", "dequeue_and_enqueue"),
        Source("moco", "dequeue_and_enqueue"),
        (
            "torch writes rows of a registered buffer in place under `no_grad`; TF scatters "
            "into a non-trainable `tf.Variable` inside the compiled step (and rewrites it "
            "whole under a `tf.distribute` strategy, whose mirrored variables have no scatter).",
            "Both are an exact ring buffer for any K and B (the official code asserts K % B == 0).",
        ),
    ),
    Concept(
        "Momentum (EMA) update of the key encoder",
        "MoCo eq. (2): theta_k <- m theta_k + (1 - m) theta_q.",
        Source("moco", "momentum_update"),
        Source("moco", "momentum_update"),
        (
            "torch updates parameters in place (`mul_`, `add_`) under `no_grad`; TF assigns "
            "to variables. Both update the weights only; the key encoder's BN statistics "
            "follow its own forward passes.",
        ),
    ),
    Concept(
        "The training step (MoCo)",
        "One step: the EMA, the loss and its gradients, then the optimiser and the enqueue.",
        Source("moco", "MoCo.train_step"),
        Source("moco", "MoCo.train_step"),
        (
            "The EMA comes first, as in the official code (`moco/builder.py` updates f_k at the "
            "start of `forward`). The paper's Algorithm 1 updates f_k after f_q's SGD step "
            "instead. The two orders give the same f_k at every step: the keys of step t come "
            "from m theta_k(t-1) + (1 - m) theta_q(t) either way, and at step 1 f_k is still "
            "the copy of f_q. Only the state after the last step differs (Algorithm 1 has one "
            "more EMA).",
            "torch: `zero_grad`, `backward`, `step`, with the gradients in `.grad`; TF: a "
            "`GradientTape` and `optimizer.apply_gradients`. torch runs eagerly; TF traces the "
            "same Python once into a `tf.function` (`tf_impl.train.compile_step`, below), "
            "queue and EMA included.",
        ),
    ),
    Concept(
        "The loss (MoCo)",
        "The queries from f_q, one pass per view; the keys from f_k; InfoNCE against the "
        "queue, read before this step's enqueue.",
        Source("moco", "MoCo.loss"),
        Source("moco", "MoCo.loss"),
        (
            "The same Python in both: `train_step` calls it, torch under autocast when the "
            "model is built `mixed_bfloat16`, TF inside the `GradientTape`.",
            "On several processes `torch_impl.distributed.DistributedMoCo` (and TF's) "
            "overrides `keys` (Shuffle-BN across ranks) and `enqueue` (every rank's keys): "
            "this file does not change.",
        ),
    ),
    Concept(
        "The compiled step",
        "What runs each step of an epoch: torch calls `train_step` eagerly; TF calls one "
        "`tf.function` built around the same `train_step`.",
        Source("train", "run_epoch", start="for i, (x1, x2)", stop="loss = model.train_step"),
        Source("train", "compile_step", start="def replica_step"),
        (
            "TF traces `step` once (a fixed `input_signature`; the optimiser's slots are built "
            "first); the schedule's learning rate and key momentum enter as variables and "
            "tensors, not Python numbers, so the trace is reused.",
            "torch's step is not `torch.compile`d: see the idiom table.",
            "The parity checks run this very step (`step_outputs` in each `parity.py`).",
        ),
    ),
    Concept(
        "The training step (SimCLR)",
        "Loss and gradients, then one optimiser step; SimCLR has no queue and no key encoder.",
        Source("simclr", "SimCLR.train_step"),
        Source("simclr", "SimCLR.train_step"),
        ("Same shape as MoCo's, and compiled the same way in TF.",),
    ),
    Concept(
        "Optimiser: LARS (SimCLR's default)",
        "SGD with momentum whose step for each weight tensor is scaled by the trust ratio "
        "eta ||w|| / (||g + wd w|| + eps); biases and BN parameters get plain momentum SGD.",
        Source("optim", "LARS.step"),
        Source("optim", "LARS._update"),
        (
            "The project writes its own SGD, LARS and Adam in TF so that the update formulas "
            "are torch's: Keras' SGD folds the learning rate into the velocity, and its Adam "
            f"adds epsilon to the uncorrected sqrt(v) ({DIFFERENCES}).",
            "torch's `step` loops over parameter groups (`lars=False` for biases and BN); TF's "
            "base class calls `_update` per variable and decides by rank (`v.shape.rank >= 2`).",
        ),
    ),
    Concept(
        "Checkpoint",
        "Save the model, the optimiser and the RNG state each epoch; keep the last two.",
        Source("checkpoint", "save_checkpoint"),
        Source("checkpoint", "save_checkpoint"),
        (
            "torch writes one `.pt` through a temp file and a rename; TF's `CheckpointManager` "
            "writes a `ckpt-N_temp/` folder and renames it.",
        ),
    ),
    Concept(
        "Distributed gather (gradient flows back to each rank's rows)",
        "SimCLR's negatives across processes: every rank's views, with their gradients.",
        Source("distributed", "gather_with_grad"),
        Source("distributed", "gather_with_grad"),
        (
            "torch needs an autograd Function (all-gather forward, all-reduce and slice "
            "backward); TF's `ReplicaContext.all_gather` already has that gradient.",
        ),
    ),
)

IDIOMS = (
    Idiom(
        "`loss.backward()`",
        "`tf.GradientTape`, `tape.gradient`",
        ("torch_impl/moco.py::MoCo.train_step", "tf_impl/moco.py::MoCo.train_step"),
        "torch accumulates into each parameter's `.grad` (cleared with `zero_grad`); TF "
        "returns the gradients of the variables it is asked for.",
    ),
    Idiom(
        "`torch.no_grad()`",
        "`tf.stop_gradient`",
        ("torch_impl/moco.py::MoCo.keys", "tf_impl/moco.py::MoCo.keys"),
        "`no_grad` records nothing (no graph, less memory); `stop_gradient` cuts the gradient "
        "at one tensor of a recorded computation.",
    ),
    Idiom(
        "a buffer (`register_buffer`)",
        "a non-trainable `tf.Variable`",
        ("torch_impl/moco.py::MoCo.__init__", "tf_impl/moco.py::MoCo.__init__"),
        "Both hold MoCo's queue and pointer: saved with the model, never given to the "
        "optimiser; a buffer moves with `.to()`, a variable is tracked by `tf.Module`.",
    ),
    Idiom(
        "`DataLoader`",
        "`tf.data.Dataset`",
        ("torch_impl/train.py::epoch_batches", "tf_impl/train.py::make_dataset"),
        "torch's default path batches a tensor itself; the `DataLoader` serves `--augment "
        "per_sample`. TF's pipeline is `tf.data` in both modes.",
    ),
    Idiom(
        "`nn.Module`",
        "`keras.Model` (`tf.Module`)",
        ("torch_impl/models.py::SmallCNN", "tf_impl/models.py::SmallCNN"),
        "Layers are `keras.Model`s, built lazily at the first call; SimCLR and MoCo are plain "
        "`tf.Module`s holding them, as they are `nn.Module`s in torch.",
    ),
    Idiom(
        "`torch.compile`",
        "`tf.function`",
        ("benchmarks/run.py::b3_simclr_torch", "tf_impl/train.py::compile_step"),
        "{compile_note}",
    ),
    Idiom(
        "a process group (`torchrun`, gloo or nccl)",
        "`tf.distribute.MirroredStrategy`",
        ("torch_impl/distributed.py::GradientMean", "tf_impl/distributed.py::GradientMean"),
        "One process per device in torch, one replica per device in one `tf.function` in TF. "
        "Both average the gradients and BN statistics in a `GradientMean` optimiser that "
        "the `Distributed*` subclasses hand to the unchanged `train_step` (torch does not use "
        "DDP: the step's gradient all-reduce is one flat `all_reduce`). Both equal the "
        "one-process step on the whole batch (`tests/test_distributed.py`).",
    ),
)


def bench() -> dict:
    """The committed benchmark file (``benchmarks/results/bench_cpu.json``)."""
    return json.loads(BENCH.read_text())


def compile_note(results: dict) -> str:
    """The ``torch.compile`` / ``tf.function`` row's note, its numbers read from B3."""
    b3 = results["B3"]
    ms = {k: 1000 * b3[k]["median_s"] for k in b3 if isinstance(b3[k], dict)}
    compiled, eager = ms["torch_compile_fp32_small_cnn"], ms["torch_eager_fp32_small_cnn"]
    return (
        "TF's step is one `tf.function` (MoCo, batch 64: "
        f"{ms['moco_tf_function_small_cnn']:.0f} ms a step against "
        f"{ms['moco_tf_eager_small_cnn']:.0f} ms eager). torch trains eagerly: `torch.compile` "
        "runs only in the benchmarks, where it was "
        f"{'slower' if compiled > eager else 'faster'} on the benchmark's host (SimCLR, batch "
        f"64: {compiled:.0f} ms against {eager:.0f} ms eager, and a first call of "
        f"{b3['torch_compile_first_call_s_fp32']:.0f} s; B3 of the benchmark file). B3 times "
        "a step written in the benchmark with torch's SGD, compiled and not; the table below "
        "times the project's own `train_step` (B5), so its eager time differs."
    )


def markdown() -> str:
    results = bench()
    times, machine = step_times(), results["machine"]
    host = (
        f"{machine['cpu']}, {machine['cores']} cores, {machine['threads']} threads, device "
        f"{machine['device']}; "
        f"torch {machine['torch']}, TensorFlow {machine['tensorflow']}"
    )
    out = [
        "# PyTorch and TensorFlow, side by side",
        "",
        "Generated by `python -m shared.docgen.side_by_side` (`make docs`) from the source; "
        "`tests/test_side_by_side.py` checks that it is current. One concept per section, "
        "PyTorch and TensorFlow in tabs (on the site that `make site` builds, choosing one "
        "tab switches every section). Each excerpt is the core lines of one definition, cut "
        "from the source by qualified name, its docstring left out (`...` marks other lines "
        "left out); its link opens the whole definition. The excerpts are the code that "
        "trains by default: the batched augmentation, MoCo with Shuffle-BN and the "
        "symmetric loss, TF's compiled step. The same file names hold the same code on both "
        "sides (`torch_impl/`, `tf_impl/`).",
        "",
        "## The idioms",
        "",
        *idiom_table(results),
        "",
        "## Time per step",
        "",
        "One training step of the small CNN at batch 64, fp32, method defaults: the medians of "
        "B5 in `benchmarks/results/bench_cpu.json`, the file that `python -m benchmarks.run` "
        "(`make bench`) writes ([its page](../benchmarks/results/bench_cpu.md)), measured "
        f"there on {host}.",
        "",
        "| method | torch | TensorFlow | TF / torch |",
        "|---|---|---|---|",
    ]
    for method in ("simclr", "moco"):
        pt, tf = times[f"{method}/torch"], times[f"{method}/tensorflow"]
        out.append(f"| {method} | {pt:.0f} ms | {tf:.0f} ms | {tf / pt:.2f} |")
    out.append("")
    for c in CONCEPTS:
        out += [f"## {c.title}", "", c.what, "", *tabs(c)]
        out += ["Differences:", ""] + [f"- {d}" for d in c.differences] + [""]
    return "\n".join(out)


def main() -> int:
    OUT.write_text(markdown())
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
