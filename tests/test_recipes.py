"""Recipes by name: ``--recipe`` means the same in both frameworks, every value names its source,
a flag overrides one value, and one step of each recipe trains in both frameworks."""

from __future__ import annotations

import json
import re

import pytest
import torch  # noqa: F401  (torch before TensorFlow in one process)

from shared.apps import impl_cli
from shared.run.config import TrainConfig
from shared.run.errors import ConfigError
from shared.run.recipes import RECIPES, SOURCES

FRAMEWORKS = ("torch", "tensorflow")


def _parse(framework: str, argv: list[str]) -> TrainConfig:
    args = impl_cli.build_parser(framework).parse_args(["train", *argv])
    return impl_cli.config_from_args(args).resolve(framework)


def _recipe_argv(name: str) -> list[str]:
    extra = ["--dataset", "folder:/data/imagenet/train"] if name == "moco-v2" else []
    return ["--recipe", name, *extra]


@pytest.mark.parametrize("name", list(RECIPES))
def test_a_recipe_resolves_to_the_same_configuration_in_both_frameworks(name):
    """``train --recipe NAME`` parses to one configuration in both frameworks (the framework
    field aside), equal to the recipe's table value by value."""
    torch_cfg, tf_cfg = (_parse(fw, _recipe_argv(name)) for fw in FRAMEWORKS)
    own = {"framework": "torch", "run_dir": torch_cfg.run_dir}  # runs/<framework>-<method>
    assert vars(torch_cfg) == {**vars(tf_cfg), **own}
    method = next(iter(RECIPES[name].values)) if name != "digits" else "simclr"
    for field, v in RECIPES[name].values[method].items():
        if v.value is not None:
            assert getattr(torch_cfg, field) == v.value, field


def test_the_papers_values_are_what_their_sources_say():
    """A few values checked against the sources as written there (facebookresearch/moco
    main_moco.py and README, its CIFAR-10 demo, google-research/simclr's README command)."""
    v2 = _parse("torch", _recipe_argv("moco-v2"))
    assert (v2.queue_size, v2.key_momentum, v2.temperature, v2.lr, v2.batch_size) == (
        65536, 0.999, 0.2, 0.03, 256)  # fmt: skip
    assert (v2.weight_decay, v2.symmetric, v2.crop_scale, v2.blur, v2.image_size) == (
        1e-4, False, (0.2, 1.0), True, 224)  # fmt: skip
    demo = _parse("torch", ["--recipe", "moco-cifar"])
    assert (demo.queue_size, demo.key_momentum, demo.temperature, demo.bn_splits) == (
        4096, 0.99, 0.1, 8)  # fmt: skip
    assert (demo.head_layers, demo.symmetric, demo.lr, demo.crop_scale) == (
        1,
        False,
        0.06,
        (0.08, 1.0),
    )
    sim = _parse("torch", ["--recipe", "simclr-cifar10"])
    # learning_rate 1.0 per 256 images, scaled linearly to the batch of 512
    assert (sim.lr, sim.batch_size, sim.temperature, sim.weight_decay) == (2.0, 512, 0.5, 1e-4)
    assert (sim.head_layers, sim.crop_scale, sim.blur, sim.flip) == (3, (0.08, 1.0), False, True)


def test_digits_is_the_default_and_the_demo_setting():
    """No ``--recipe`` is ``--recipe digits``: the configuration of ``TrainConfig()``."""
    for method in ("simclr", "moco"):
        assert _parse("torch", ["--method", method]) == TrainConfig(
            method=method, recipe="digits"
        ).resolve("torch")
        assert _parse("torch", ["--method", method]) == _parse(
            "torch", ["--recipe", "digits", "--method", method]
        )


def test_every_value_names_its_source():
    """Every value of every recipe names a source of :data:`SOURCES`; config.json's
    ``value_sources`` carries that source's text for each."""
    for name, recipe in RECIPES.items():
        for method, values in recipe.values.items():
            for field, v in values.items():
                assert v.source in SOURCES, (name, method, field)
                assert field in TrainConfig.flag_names(), (name, field)
    cfg = _parse("torch", ["--recipe", "moco-cifar"])
    assert cfg.value_sources["queue_size"] == (
        "recipe moco-cifar: facebookresearch/moco colab/moco_cifar10_demo.ipynb (branch "
        "colab-notebook)"
    )
    assert set(cfg.value_sources) == set(RECIPES["moco-cifar"].values["moco"])


def test_a_flag_overrides_one_value_and_the_record_says_so():
    cfg = _parse("torch", ["--recipe", "moco-cifar", "--queue-size", "2048"])
    assert cfg.queue_size == 2048 and cfg.key_momentum == 0.99
    assert cfg.value_sources["queue_size"] == "set by a flag (recipe moco-cifar has 4096)"
    assert cfg.value_sources["key_momentum"].startswith("recipe moco-cifar:")


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--recipe", "moco-v3"], "error: recipe: expected one of digits, simclr-cifar10, "),
        (["--recipe", "moco-v2"], "error: dataset: recipe moco-v2 trains on ImageNet, "),
        (["--recipe", "simclr-cifar10", "--method", "moco"],
         "error: method: recipe simclr-cifar10 is a simclr recipe, got method 'moco'"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_bad_recipe_is_one_line_and_status_2(capsys, framework, argv, message):
    with pytest.raises(SystemExit) as e:
        raise SystemExit(impl_cli.main(framework, ["train", *argv], lambda: None))
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.splitlines()) == 1, err
    assert re.match(re.escape(message), err), err


def test_from_recipe_refuses_what_the_recipe_lacks():
    with pytest.raises(ConfigError, match="^dataset: recipe moco-v2"):
        TrainConfig.from_recipe("moco-v2")


TINY = {"epochs": 1, "batch_size": 16, "limit_train": 16, "image_size": 32, "knn_every": 0,
        "dataset": "embedded", "warmup_epochs": 0}  # fmt: skip


# One step of every recipe in each framework. torch trains each recipe whole by default. A
# TensorFlow trace of a ResNet takes 10 to 20 s here, so TensorFlow trains at a tiny size: every
# value of the recipe but its encoder, with the small CNN in its place (a flag override,
# recorded as one). By default it trains moco-v2, the recipe furthest from the digits' settings
# (no BN in the head, the asymmetric loss, blur, a 65,536-key queue); the other two, like the
# ResNets whole, are in the slow set, and test_a_recipe_resolves_to_the_same_configuration_in_
# both_frameworks holds TensorFlow's configuration of every recipe equal to torch's. The
# recipes' ResNets are proven in TensorFlow by tests/test_encoders.py.
STEP_CASES = [
    ("torch", "simclr-cifar10", None),
    ("torch", "moco-cifar", None),
    ("torch", "moco-v2", None),
    ("tensorflow", "moco-v2", "small_cnn"),
    pytest.param("tensorflow", "simclr-cifar10", "small_cnn", marks=pytest.mark.slow),
    pytest.param("tensorflow", "moco-cifar", "small_cnn", marks=pytest.mark.slow),
    pytest.param("tensorflow", "moco-cifar", None, marks=pytest.mark.slow),
    pytest.param("tensorflow", "simclr-cifar10", None, marks=pytest.mark.slow),
    pytest.param("tensorflow", "moco-v2", None, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("framework,name,encoder", STEP_CASES)
def test_one_step_of_each_recipe_trains(framework, name, encoder, tmp_path):
    """One real training step of the recipe's head, loss, queue, optimiser and augmentation (and
    network, unless ``encoder`` replaces it), at 32 px on 16 embedded images (its dataset is
    not here): config.json records the recipe, its values, which values a flag changed, and
    the loss is finite."""
    tiny = {**TINY, **({"encoder": encoder} if encoder else {})}
    cfg = TrainConfig.from_recipe(name, **tiny, run_dir=str(tmp_path / "run"))
    if framework == "torch":
        from torch_impl.train import train
    else:
        from tf_impl.train import train
    train(cfg, progress=False)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    values = RECIPES[name].values[cfg.method]
    assert saved["recipe"] == name
    assert saved["encoder"] == (encoder or values["encoder"].value)
    for key in ("head_layers", "temperature", "symmetric", "queue_size", "crop_scale", "blur"):
        if key in values and key not in tiny:
            assert saved[key] == json.loads(json.dumps(values[key].value)), key
            assert saved["value_sources"][key].startswith(f"recipe {name}: "), key
    assert saved["value_sources"]["batch_size"].startswith("set by a flag")
    source = saved["value_sources"]["encoder"]
    assert source.startswith("set by a flag" if encoder else f"recipe {name}: "), source
    losses = json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"]
    assert len(losses) == 1 and 0 < losses[0]["loss"] < 20


def test_the_recipes_page_is_generated_from_the_table():
    """docs/recipes.md is what ``python -m shared.docgen.recipes`` writes, and it lists every
    recipe's every value with its source's text."""
    from shared.docgen.recipes import PAGE, markdown

    assert PAGE.read_text() == markdown(), "run `python -m shared.docgen.recipes` (make docs)"
    page = PAGE.read_text()
    for name, recipe in RECIPES.items():
        assert f"## `{name}`" in page
        for values in recipe.values.values():
            for v in values.values():
                assert f"[{v.source}](#{v.source})" in page
    for title, read in SOURCES.values():
        assert f"{title}. {read}." in page


def test_demo_and_results_take_a_recipe():
    """``rosetta demo --recipe R`` trains R's method in both frameworks; ``rosetta results
    --recipe R`` passes it to every run, and refuses the digits' sweeps and fine-tunes."""
    import argparse

    from shared.apps import demo, results_cmd

    assert demo.demo_cells(False, "simclr-cifar10") == [
        ("torch", "simclr"),
        ("tensorflow", "simclr"),
    ]
    assert demo.demo_cells(True) == demo.MATRIX and demo.demo_cells(False) == demo.PAIR
    ns = argparse.Namespace(recipe="moco-cifar", only=None, train_args="--epochs 1")
    assert results_cmd._recipe_plan(ns) == (("cells",), ["--recipe", "moco-cifar", "--epochs", "1"])
    ns.only = "cells,sweeps"
    with pytest.raises(ConfigError, match="^only: the sweeps and fine-tunes are the digits"):
        results_cmd._recipe_plan(ns)
    digits = argparse.Namespace(recipe="digits", only=None, train_args="")
    assert results_cmd._recipe_plan(digits) == (("cells", "finetune", "sweeps"), [])
