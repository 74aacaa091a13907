"""The recipes ``train --recipe NAME`` starts from: each value with the source it was read in.

A recipe is a complete set of training settings for one method (``digits`` has one per method).
``TrainConfig.from_recipe(name, **flags)`` starts from the recipe and lets each given flag
override one value; ``TrainConfig.resolve`` records, in ``config.json``'s ``value_sources``,
where every value of the recipe came from, or that a flag changed it. ``docs/recipes.md`` is
generated from this table (``python -m shared.docgen.recipes``): the page of "the paper's
setting against this project's, and why".

Sources were read in the public repositories themselves (a fact carries over, code does not):

* google-research/simclr: ``README.md`` (the CIFAR-10 pretraining command), ``tf2/run.py``
  (flag defaults), ``tf2/data_util.py`` (the crop), ``tf2/model.py`` and ``tf2/resnet.py`` (the
  projection head, the 32-px stem).
* facebookresearch/moco: ``main_moco.py`` and ``README.md`` (MoCo v2 on ImageNet), ``moco/builder.py``
  (the MLP head), ``colab/moco_cifar10_demo.ipynb`` on the branch ``colab-notebook`` (the CIFAR-10
  demo: its argparse defaults and the cell that overrides them).

What the configuration here cannot express is a *departure*, listed with the recipe and on the
generated page; a recipe never claims a setting it does not train with.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RECIPES", "SOURCES", "Recipe", "V", "recipe_names", "recipe_values", "value_sources"]


@dataclass(frozen=True)
class V:
    """One value of a recipe and the key of its source in :data:`SOURCES`."""

    value: object
    source: str
    note: str = ""  # how the value follows from the source, where it is not written there as is


# key -> (the source, what was read in it)
SOURCES = {
    "project": (
        "this project's sweeps on the embedded digits",
        "`rosetta results`: each value trained beside the default and kept only when it beat "
        "the run-to-run spread, on the training split (docs/performance.md)",
    ),
    "project-default": (
        "this project's choice for the digits, not swept",
        "set for 32-px digits and a few CPU minutes; no paper's value",
    ),
    "simclr-paper-b1": (
        "SimCLR paper (Chen et al. 2020), appendix B.1",
        "LARS, weight decay 1e-6, learning rate 0.075 sqrt(B)",
    ),
    "simclr-readme": (
        "google-research/simclr README.md, Pretraining, the CIFAR-10 command",
        "`--train_batch_size=512 --train_epochs=1000 --learning_rate=1.0 --weight_decay=1e-4 "
        "--temperature=0.5 --dataset=cifar10 --image_size=32 --resnet_depth=18 --use_blur=False "
        "--color_jitter_strength=0.5`",
    ),
    "simclr-run": (
        "google-research/simclr tf2/run.py, flag defaults",
        "`optimizer lars`, `momentum 0.9`, `warmup_epochs 10`, `learning_rate_scaling linear` "
        "(the rate is per 256 images), `proj_out_dim 128`, `num_proj_layers 3`, `global_bn True`",
    ),
    "simclr-data": (
        "google-research/simclr tf2/data_util.py",
        "the random crop's `area_range=(0.08, 1.0)`, a left-right flip, colour jitter p 0.8, "
        "grayscale p 0.2",
    ),
    "simclr-model": (
        "google-research/simclr tf2/model.py and tf2/resnet.py",
        "the projection head's hidden layers as wide as the encoder's output, each a Dense, a "
        "BatchNorm and a ReLU; a 3x3 stride-1 stem without max-pool for 32-px images",
    ),
    "moco-colab": (
        "facebookresearch/moco colab/moco_cifar10_demo.ipynb (branch colab-notebook)",
        "argparse defaults `--arch resnet18 --lr 0.06 --batch-size 512 --wd 5e-4 --moco-dim 128 "
        "--moco-k 4096 --moco-m 0.99 --moco-t 0.1 --bn-splits 8`; the cell setting `epochs 200`, "
        "`cos True`, `symmetric False`; `SGD(momentum=0.9)`; `RandomResizedCrop(32)`, flip, "
        "`ColorJitter(0.4, 0.4, 0.4, 0.1)` p 0.8, grayscale p 0.2; `ModelBase`: a 3x3 stride-1 "
        "conv1, no max-pool, the fc layer 512 -> 128 as the head",
    ),
    "moco-main": (
        "facebookresearch/moco main_moco.py",
        "argparse defaults `--arch resnet50 --epochs 200 --batch-size 256 --momentum 0.9 "
        "--wd 1e-4 --moco-dim 128 --moco-k 65536 --moco-m 0.999`; `--aug-plus`: "
        "`RandomResizedCrop(224, scale=(0.2, 1.))`, `ColorJitter(0.4, 0.4, 0.4, 0.1)` p 0.8, "
        "grayscale p 0.2, Gaussian blur sigma [0.1, 2] p 0.5, flip",
    ),
    "moco-readme": (
        "facebookresearch/moco README.md",
        "MoCo v2 is `--lr 0.03 --batch-size 256` with `--mlp --moco-t 0.2 --aug-plus --cos`, on "
        "8 GPUs",
    ),
    "moco-builder": (
        "facebookresearch/moco moco/builder.py",
        "`--mlp` puts Linear(2048, 2048) and ReLU before the fc layer",
    ),
}


@dataclass(frozen=True)
class Recipe:
    """A named setting: what it is, its values by method, and where it departs from its
    source (each departure a line of ``docs/recipes.md``)."""

    title: str
    about: str
    values: dict  # method -> {field: V}
    departures: tuple = ()


# The augmentation every recipe shares unless it says otherwise: SimCLR's colour distortion of
# strength s has jitter (0.8 s, 0.8 s, 0.8 s, 0.2 s); s = 0.5 is MoCo's (0.4, 0.4, 0.4, 0.1).
_JITTER_NOTE = "jitter (0.8 s, 0.8 s, 0.8 s, 0.2 s) with s = 0.5 is (0.4, 0.4, 0.4, 0.1)"


def _digits_common(swept: tuple) -> dict:
    """The digits' values both methods share; ``swept``: those a sweep of this method tried."""
    src = {k: "project" if k in swept else "project-default" for k in ("batch_size", "flip")}
    return {
        "dataset": V("embedded", "project-default"),
        "encoder": V("small_cnn", "project-default"),
        "image_size": V(32, "project-default"),
        "batch_size": V(64, src["batch_size"]),
        "momentum": V(0.9, "project-default"),
        "warmup_epochs": V(2, "project-default"),
        "proj_dim": V(128, "project-default"),
        "hidden_dim": V(512, "project-default"),
        "head_layers": V(2, "project-default"),
        "head_bn": V(True, "project-default", "SimCLR's hidden head layer (BN and ReLU)"),
        "crop_scale": V((0.3, 1.0), "project-default"),
        "color_strength": V(0.5, "project-default", _JITTER_NOTE),
        "blur": V(False, "project-default", "off at 32 px, as SimCLR's CIFAR-10 setting"),
        "flip": V(False, src["flip"], "a mirrored digit is not a digit"),
    }


DIGITS = Recipe(
    title="the embedded digits (this project's tuned defaults, the demo's)",
    about="What `make demo` trains: 1,438 rendered digits of 32 px, a 4-block CNN, and the "
    "settings chosen by the project's sweeps on the training split. Neither paper's setting: "
    "tuned for a dataset 35 times smaller than CIFAR-10 and a few CPU minutes.",
    values={
        "simclr": {
            **_digits_common(swept=("batch_size", "flip")),
            "epochs": V(60, "project"),
            "optimizer": V("lars", "simclr-paper-b1"),
            "lr": V(None, "simclr-paper-b1", "0.075 sqrt(B): 0.6 at B = 64"),
            "weight_decay": V(1e-6, "simclr-paper-b1"),
            "temperature": V(0.2, "project"),
            "bn_splits": V(1, "project-default"),
        },
        "moco": {
            **_digits_common(swept=("flip",)),
            "epochs": V(25, "project"),
            "optimizer": V("sgd", "moco-colab"),
            "lr": V(0.015, "project"),
            "weight_decay": V(5e-4, "moco-colab"),
            "temperature": V(0.1, "project", "the CIFAR-10 demo's value, kept by the sweep"),
            "bn_splits": V(2, "project"),
            "queue_size": V(512, "project", "a third of the 1,438 images"),
            "key_momentum": V(0.99, "moco-colab"),
            "shuffle_keys": V(True, "moco-colab"),
            "symmetric": V(True, "project-default", "the CIFAR-10 demo's `--symmetric` option"),
        },
    },
    departures=(
        (
            "crop_scale",
            "(0.3, 1) where both papers crop (0.08, 1) or (0.2, 1): on 32-px digits, "
            "a crop of 8 % of the area is a stroke, not a digit",
        ),
        (
            "head",
            "the MoCo head here is SimCLR's (Linear-BN-ReLU-Linear), kept by the project's "
            "choice; MoCo v2's has no BN (`--no-head-bn`, the moco-v2 recipe)",
        ),
    ),
)

SIMCLR_CIFAR10 = Recipe(
    title="SimCLR on CIFAR-10, as google-research/simclr's README trains it",
    about="The authors' single-GPU CIFAR-10 command: ResNet-18 with the 32-px stem, batch 512, "
    "1,000 epochs of LARS. (The paper's appendix B.9 reports a ResNet-50 over a grid of batch "
    "sizes, learning rates and temperatures; `--encoder resnet50_cifar` gives its network.)",
    values={
        "simclr": {
            "dataset": V("cifar10", "simclr-readme"),
            "encoder": V(
                "resnet18_cifar",
                "simclr-readme",
                "resnet_depth 18 and the 32-px stem of tf2/resnet.py",
            ),
            "image_size": V(32, "simclr-readme"),
            "batch_size": V(512, "simclr-readme"),
            "epochs": V(1000, "simclr-readme"),
            "optimizer": V("lars", "simclr-run"),
            "lr": V(
                2.0,
                "simclr-readme",
                "learning_rate 1.0 per 256 images, scaled linearly "
                "(run.py's default): 1.0 x 512 / 256",
            ),
            "weight_decay": V(1e-4, "simclr-readme"),
            "momentum": V(0.9, "simclr-run"),
            "warmup_epochs": V(10, "simclr-run"),
            "temperature": V(0.5, "simclr-readme"),
            "proj_dim": V(128, "simclr-run"),
            "hidden_dim": V(512, "simclr-model", "ResNet-18's 512 features"),
            "head_layers": V(3, "simclr-run"),
            "head_bn": V(True, "simclr-model", "each hidden layer of the head: BN, then ReLU"),
            "bn_splits": V(1, "simclr-run", "global_bn: one BatchNorm over the whole batch"),
            "crop_scale": V((0.08, 1.0), "simclr-data"),
            "color_strength": V(0.5, "simclr-readme"),
            "blur": V(False, "simclr-readme"),
            "flip": V(True, "simclr-data"),
        },
    },
    departures=(
        (
            "head",
            "the last layer of the projection head here is a Linear with bias; "
            "google-research/simclr's has no bias and a BatchNorm",
        ),
        (
            "lr schedule",
            "both warm up linearly, then decay by a cosine over the steps after the warmup "
            "(WarmUpAndCosineDecay in tf2/model.py); its rate at warmup step s is s / W of the "
            "peak, this project's (s + 1) / W, so that the first step is not wasted",
        ),
    ),
)

MOCO_CIFAR = Recipe(
    title="MoCo on CIFAR-10, as facebookresearch/moco's CIFAR-10 demo trains it",
    about="The official Colab demo: ResNet-18 with the 32-px stem and a linear head, batch 512, "
    "200 epochs, a 4,096-key queue, Shuffle-BN simulated by 8 BatchNorm splits, the asymmetric "
    "loss. The demo reports a kNN accuracy of 82.6 % after 200 epochs with this setting.",
    values={
        "moco": {
            "dataset": V("cifar10", "moco-colab"),
            "encoder": V("resnet18_cifar", "moco-colab"),
            "image_size": V(32, "moco-colab"),
            "batch_size": V(512, "moco-colab"),
            "epochs": V(200, "moco-colab"),
            "optimizer": V("sgd", "moco-colab"),
            "lr": V(0.06, "moco-colab"),
            "weight_decay": V(5e-4, "moco-colab"),
            "momentum": V(0.9, "moco-colab"),
            "warmup_epochs": V(0, "moco-colab", "a cosine from the first epoch, no warmup"),
            "temperature": V(0.1, "moco-colab"),
            "proj_dim": V(128, "moco-colab"),
            "hidden_dim": V(512, "moco-colab", "unused: a one-layer head has no hidden layer"),
            "head_layers": V(1, "moco-colab", "ResNet-18's fc layer, 512 -> 128"),
            "head_bn": V(False, "moco-colab", "unused: a one-layer head has no hidden layer"),
            "bn_splits": V(8, "moco-colab"),
            "queue_size": V(4096, "moco-colab"),
            "key_momentum": V(0.99, "moco-colab"),
            "shuffle_keys": V(True, "moco-colab"),
            "symmetric": V(False, "moco-colab"),
            "crop_scale": V((0.08, 1.0), "moco-colab", "RandomResizedCrop's default scale"),
            "color_strength": V(0.5, "moco-colab", _JITTER_NOTE),
            "blur": V(False, "moco-colab"),
            "flip": V(True, "moco-colab"),
        },
    },
    departures=(
        (
            "lr schedule",
            "the demo sets the cosine's value once per epoch, from epoch 1; here it "
            "changes every step, from step 0",
        ),
        (
            "kNN monitor",
            "the demo's monitor uses k = 200 and temperature 0.1 on the test split; "
            "this project's kNN is its own protocol (docs/usage.md)",
        ),
    ),
)

MOCO_V2 = Recipe(
    title="MoCo v2 on ImageNet, as facebookresearch/moco trains it",
    about="MoCo v2 (Chen et al. 2020, 'Improved Baselines'): ResNet-50, an MLP head, a "
    "65,536-key queue, m 0.999, tau 0.2, blur in the augmentation, a cosine schedule, 200 "
    "epochs of batch 256 on 8 GPUs. ImageNet is not bundled: pass `--dataset folder:PATH` (an "
    "ImageNet-style folder of class folders).",
    values={
        "moco": {
            "dataset": V(None, "moco-main", "ImageNet's training folder, given by the user"),
            "encoder": V("resnet50", "moco-main"),
            "image_size": V(224, "moco-main"),
            "batch_size": V(256, "moco-readme"),
            "epochs": V(200, "moco-main"),
            "optimizer": V("sgd", "moco-main"),
            "lr": V(0.03, "moco-readme"),
            "weight_decay": V(1e-4, "moco-main"),
            "momentum": V(0.9, "moco-main"),
            "warmup_epochs": V(0, "moco-readme", "`--cos`: a cosine from the first epoch"),
            "temperature": V(0.2, "moco-readme"),
            "proj_dim": V(128, "moco-main"),
            "hidden_dim": V(2048, "moco-builder"),
            "head_layers": V(2, "moco-builder"),
            "head_bn": V(False, "moco-builder", "Linear(2048, 2048), ReLU, fc: no BatchNorm"),
            "bn_splits": V(
                8,
                "moco-readme",
                "the 8 GPUs' BatchNorms, 32 images each: 8 splits "
                "in one process, or --bn-splits 8 / W over W processes",
            ),
            "queue_size": V(65536, "moco-main"),
            "key_momentum": V(0.999, "moco-main"),
            "shuffle_keys": V(True, "moco-main"),
            "symmetric": V(False, "moco-main", "the asymmetric loss of the paper"),
            "crop_scale": V((0.2, 1.0), "moco-main"),
            "color_strength": V(0.5, "moco-main", _JITTER_NOTE),
            "blur": V(True, "moco-main"),
            "flip": V(True, "moco-main"),
        },
    },
    departures=(
        (
            "blur",
            "the blur kernel here is about 10 % of the image side (SimCLR's); MoCo's is "
            "PIL's GaussianBlur of radius sigma",
        ),
        ("lr schedule", "MoCo sets the cosine's value once per epoch; here it changes every step"),
    ),
)

RECIPES = {
    "digits": DIGITS,
    "simclr-cifar10": SIMCLR_CIFAR10,
    "moco-cifar": MOCO_CIFAR,
    "moco-v2": MOCO_V2,
}


def recipe_names() -> tuple[str, ...]:
    """The names ``--recipe`` accepts, in the order of :data:`RECIPES`."""
    return tuple(RECIPES)


def recipe_values(name: str, method: str | None = None) -> tuple[str, dict]:
    """The method and the ``{field: value}`` of recipe ``name``.

    Args:
        name: a key of :data:`RECIPES`.
        method: ``None`` for the recipe's method (``digits``: simclr), or one the recipe has.

    Raises:
        ValueError: an unknown recipe, or a method the recipe has no setting for (each names
            the argument and what was expected).

    Example:
        >>> method, values = recipe_values("moco-v2")
        >>> method, values["queue_size"], values["key_momentum"], values["temperature"]
        ('moco', 65536, 0.999, 0.2)
    """
    if name not in RECIPES:
        raise ValueError(f"recipe: expected one of {', '.join(RECIPES)}, got {name!r}")
    per_method, known = RECIPES[name].values, tuple(RECIPES["digits"].values)
    if method is not None and method not in known:
        raise ValueError(f"method: expected one of {', '.join(known)}, got {method!r}")
    method = method or next(iter(per_method))
    if method not in per_method:
        raise ValueError(
            f"method: recipe {name} is a {' or '.join(per_method)} recipe, got method {method!r}"
        )
    return method, {k: v.value for k, v in per_method[method].items()}


def value_sources(name: str, method: str, config: dict, default_lr=None) -> dict:
    """``{field: where its value came from}`` for every field recipe ``name`` sets.

    A value equal to the recipe's names the recipe's source; another value says that it was
    changed and what the recipe had.

    Args:
        config: the resolved configuration's fields.
        default_lr: the learning rate a recipe's ``lr None`` stands for (``default_lr(opt, B)``).
    """
    out = {}
    for field, v in RECIPES[name].values[method].items():
        expected = default_lr if field == "lr" and v.value is None else v.value
        got = config[field]
        if isinstance(expected, tuple):
            got = tuple(got)
        if got == expected or (field == "dataset" and v.value is None):
            text = f"recipe {name}: {SOURCES[v.source][0]}"
            out[field] = text + (f"; {v.note}" if v.note else "")
        else:
            out[field] = f"set by a flag (recipe {name} has {expected!r})"
    return out
