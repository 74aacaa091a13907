"""docs/side_by_side.md: PyTorch and TensorFlow next to each other, concept by concept.

    python -m shared.docgen.side_by_side        # rewrites docs/side_by_side.md (also ``make docs``)

Every excerpt is cut from the source by its qualified name (``module.Class.method``) with
``ast``, so the page cannot drift from the code, and this module imports neither framework.
The differences under each pair are one line each; ``tests/test_docs.py`` checks that
the page is what this module writes now and that every name still exists on both sides. The
per-step times come from the committed benchmark results (B5, ``benchmarks/results``).
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "side_by_side.md"
BENCH = ROOT / "benchmarks" / "results" / "bench_cpu.json"


@dataclass(frozen=True)
class Concept:
    title: str
    module: str  # the same file name on both sides: torch_impl/<module>.py, tf_impl/<module>.py
    torch_name: str  # qualified name in torch_impl/<module>.py
    tf_name: str  # qualified name in tf_impl/<module>.py
    differences: tuple[str, ...]


CONCEPTS = (
    Concept(
        "Augmentation (two views per image)",
        "augment",
        "simclr_augment",
        "simclr_augment",
        (
            "TF's transforms are stateless: each view takes an explicit `seed` (a shape-(2,) "
            "tensor), so a view is a pure function of (image, seed); torch draws from the "
            "global generator.",
            "Both build the same pipeline from one `shared.oracle.augment_spec.AugmentSpec`: crop "
            "area, jitter 0.8s/0.8s/0.8s/0.2s with p = 0.8, grayscale p = 0.2.",
        ),
    ),
    Concept(
        "Encoder (the small CNN)",
        "models",
        "SmallCNN",
        "SmallCNN",
        (
            "Layout: torch is NCHW (run channels-last for speed), Keras NHWC; ported kernels "
            "are transposed (`shared.parity.weights`).",
            "BatchNorm: torch's momentum 0.1 is Keras' momentum 0.9; torch stores the unbiased "
            "running variance, Keras the biased one (docs/framework_differences.md).",
        ),
    ),
    Concept(
        "Projection head",
        "models",
        "ProjectionHead",
        "ProjectionHead",
        (
            "Same layers and canonical weight names on both sides; Keras builds its weights "
            "lazily at the first call, torch at construction.",
        ),
    ),
    Concept(
        "NT-Xent (SimCLR)",
        "losses",
        "nt_xent",
        "nt_xent",
        (
            "Both: mean over all 2N anchors, self-similarity excluded (the official SimCLR TF "
            "code reports twice this).",
            "TF masks the self-similarity with a (2n, 2N) boolean `one_hot` so one code path "
            "serves one and several replicas; torch sets each anchor's self column to -inf.",
        ),
    ),
    Concept(
        "InfoNCE (MoCo)",
        "losses",
        "info_nce",
        "info_nce",
        (
            "Same logits layout (positive in column 0, then the K queue entries); the queue is "
            "read, never differentiated, on both sides.",
        ),
    ),
    Concept(
        "The queue (dequeue and enqueue)",
        "moco",
        "dequeue_and_enqueue",
        "dequeue_and_enqueue",
        (
            "torch writes rows of a registered buffer in place under `no_grad`; TF scatters "
            "into a `tf.Variable` inside the compiled step.",
            "Both are an exact ring buffer for any K and B (the official code asserts K % B == 0).",
        ),
    ),
    Concept(
        "Momentum (EMA) update of the key encoder",
        "moco",
        "momentum_update",
        "momentum_update",
        (
            "torch updates parameters in place (`mul_`, `add_`) under `no_grad`; TF assigns to "
            "variables; "
            "both update the weights only, and the key encoder's BN statistics follow its own "
            "forward passes.",
        ),
    ),
    Concept(
        "The training step (MoCo, Algorithm 1 in order)",
        "moco",
        "MoCo.train_step",
        "MoCo.train_step",
        (
            "torch runs eagerly; TF traces the same Python once into a `tf.function` "
            "(`tf_impl.train.compile_step`), queue and EMA included.",
            "The parity checks run this very step (`step_outputs` in each `parity.py`).",
        ),
    ),
    Concept(
        "Loss and gradients (MoCo)",
        "moco",
        "MoCo.compute_gradients",
        "MoCo.compute_gradients",
        (
            "torch backpropagates with `loss.backward()` and leaves the gradients in `.grad`; "
            "TF records a `GradientTape` and gets them from `tape.gradient`.",
            "torch's DDP averages the gradients inside the backward; TF's `mean_gradients` "
            "does it explicitly (the identity outside `strategy.run`).",
        ),
    ),
    Concept(
        "The training step (SimCLR)",
        "simclr",
        "SimCLR.train_step",
        "SimCLR.train_step",
        ("Same shape as MoCo's: loss, gradients, one optimiser step.",),
    ),
    Concept(
        "Optimiser (LARS)",
        "optim",
        "LARS",
        "LARS",
        (
            "The project writes its own SGD, LARS and Adam in TF so that the update formulas "
            "are torch's: Keras' SGD folds the learning rate into the velocity, and its Adam adds "
            "epsilon to the uncorrected sqrt(v) (docs/framework_differences.md).",
        ),
    ),
    Concept(
        "Checkpoint",
        "checkpoint",
        "save_checkpoint",
        "save_checkpoint",
        (
            "torch writes one `.pt` through a temp file and a rename; TF's `CheckpointManager` "
            "writes a `ckpt-N_temp/` folder and renames it. Both keep the last two.",
        ),
    ),
    Concept(
        "Distributed gather (gradient flows back to each rank's rows)",
        "distributed",
        "gather_with_grad",
        "gather_with_grad",
        (
            "torch needs an autograd Function (all-gather forward, all-reduce and slice "
            "backward); TF's `ReplicaContext.all_gather` already has that gradient.",
        ),
    ),
)


def excerpt(path: Path, qualname: str) -> str:
    """The source of ``qualname`` (``name`` or ``Class.method``) in ``path``, decorators
    included, cut with ``ast`` (no import)."""
    source = path.read_text()
    nodes = ast.parse(source).body
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
            raise KeyError(f"{qualname}: not found in {path.relative_to(ROOT)}")
        nodes = node.body
    start = min([node.lineno] + [d.lineno for d in node.decorator_list])
    lines = source.splitlines()[start - 1 : node.end_lineno]
    indent = min(len(ln) - len(ln.lstrip()) for ln in lines if ln.strip())
    return "\n".join(ln[indent:] for ln in lines)


def step_times() -> dict:
    """B5's median step time per cell, in ms (``{"simclr/torch": 101.5, ...}``)."""
    b5 = json.loads(BENCH.read_text())["B5"]
    return {cell: 1000 * r["median_s"] for cell, r in b5.items()}


def markdown() -> str:
    times = step_times()
    machine = json.loads(BENCH.read_text())["machine"]
    out = [
        "# PyTorch and TensorFlow, side by side",
        "",
        "Generated by `python -m shared.docgen.side_by_side` (`make docs`) from the source, by "
        "qualified name: first PyTorch (`torch_impl/`), then TensorFlow (`tf_impl/`), the same "
        "file names on both sides.",
        "",
        "Measured per-step time, one training step of the small CNN at batch 64, fp32, on the "
        "2-core CPU of `benchmarks/results/bench_cpu.md` (B5, medians; torch "
        f"{machine['torch']}, TensorFlow {machine['tensorflow']}):",
        "",
        "| method | torch | TensorFlow | TF / torch |",
        "|---|---|---|---|",
    ]
    for method in ("simclr", "moco"):
        pt, tf = times[f"{method}/torch"], times[f"{method}/tensorflow"]
        out.append(f"| {method} | {pt:.0f} ms | {tf:.0f} ms | {tf / pt:.2f} |")
    out.append("")
    for c in CONCEPTS:
        out += [f"## {c.title}", ""]
        for label, pkg, name in (
            ("PyTorch", "torch_impl", c.torch_name),
            ("TensorFlow", "tf_impl", c.tf_name),
        ):
            out += [
                f"**{label}**: `{pkg}/{c.module}.py`, `{name}`",
                "",
                "```python",
                excerpt(ROOT / pkg / f"{c.module}.py", name),
                "```",
                "",
            ]
        out += ["Differences:", ""] + [f"- {d}" for d in c.differences] + [""]
    return "\n".join(out)


def main() -> int:
    OUT.write_text(markdown())
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
