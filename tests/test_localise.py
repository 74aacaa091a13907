"""The localiser (``rosetta parity --localise``): clean on aligned models, and for each catalogue
row left unaligned in the TF model it names the right layer, quantity and row.

Models are tiny (SimCLR small_cnn with a 16-8 head, 4 images of 32 px; resnet18_cifar on 16 px
for the stride-2 padding, since small_cnn has no strided conv), float64, weights ported from
torch to TF (``shared.parity.weights``).
"""

import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="PyTorch is not installed")
pytest.importorskip("tensorflow", reason="TensorFlow is not installed")

import torch  # noqa: E402,F401  (before TensorFlow)
import torchvision  # noqa: E402,F401

from shared.apps.localise_cmd import build_pair, localise_models  # noqa: E402
from shared.parity.localise import CATALOGUE_ROWS, INJECTABLE  # noqa: E402

SMALL = {"encoder": "small_cnn", "hidden_dim": 16, "proj_dim": 8}
X = np.random.default_rng(0).random((4, 32, 32, 3))


@pytest.fixture(scope="module")
def pair():
    return build_pair("simclr", SMALL, "float64")


def _first(report):
    assert report.first is not None, "expected a layer over tolerance"
    layer, quantity, _ = report.first
    return layer, quantity, [(name, i) for name, i, _ in report.explained]


def test_catalogue_rows_are_the_catalogues():
    """The localiser's row names and numbers are those of shared.docgen.catalogue and its page."""
    from shared.docgen import catalogue as C

    page = (Path(__file__).resolve().parents[1] / "docs" / "framework_differences.md").read_text()
    names = [m.group(1) for m in re.finditer(r"^\| ([^|]+?) \|", page, re.M)][1:]  # no header
    for name, number in CATALOGUE_ROWS.items():
        assert names[number - 1] == name, (name, number, names[number - 1])
        assert C.ROWS[number - 1]()["name"] == name
    assert set(INJECTABLE) < set(CATALOGUE_ROWS)  # the rest are porting rows (rosetta localise)


def test_aligned_models_give_a_clean_report(pair):
    report = localise_models(*pair, X, "float64")
    assert report.passed, report.verdict()
    layers = list(dict.fromkeys(layer for layer, _, _ in report.rows))
    assert layers[:2] == ["net/encoder/conv0", "net/encoder/bn0"] and layers[-1] == "net/normalize"
    quantities = {q for layer, q, _ in report.rows if layer == "net/encoder/bn0"}
    assert {"forward", "grad/input", "grad/gamma", "running/moving_variance"} <= quantities
    assert {"slot/gamma/momentum", "step/beta"} <= quantities


@pytest.mark.parametrize(
    "inject, optimizer, lr, where",
    [
        ("SGD with momentum", "sgd", 0.1, ("net/encoder/conv0", "slot/kernel/momentum")),
        ("Adam's epsilon", "adam", 1e-3, ("net/encoder/conv0", "step/kernel")),
        ("L2 normalisation clamp", "sgd", 0.1, ("net/normalize", "forward")),
        ("BN running variance", "sgd", 0.1, ("net/encoder/bn0", "running/moving_variance")),
    ],
)
def test_injected_fault_outside_the_model_is_named(pair, inject, optimizer, lr, where):
    """Rows injected in TF's optimiser, its normalisation, or (the running variance, whose
    conventions the project keeps) the comparison left without the n / (n - 1) conversion."""
    report = localise_models(*pair, X, "float64", optimizer=optimizer, lr=lr, inject=inject)
    assert _first(report) == (*where, [(inject, CATALOGUE_ROWS[inject])]), report.verdict()


def test_keras_bn_defaults_are_named_at_the_first_bn():
    pt, tfm = build_pair("simclr", SMALL, "float64", inject="BN momentum and epsilon")
    report = localise_models(pt, tfm, X, "float64")
    assert _first(report) == ("net/encoder/bn0", "forward", [("BN momentum and epsilon", 3)])
    failing = {layer for layer, _, r in report.rows if not r.passed}
    assert failing == {layer for layer, _, _ in report.rows if "/bn" in layer}


def test_same_padding_at_stride_2_is_named_at_the_first_strided_conv():
    """resnet18_cifar's stride-2 blocks with Keras's padding="same": exactly their first convs
    fail (conv5, conv10, conv15 of the canonical walk), the first one is named."""
    pt, tfm = build_pair(
        "simclr",
        {"encoder": "resnet18_cifar", "hidden_dim": 16, "proj_dim": 8},
        "float64",
        "stride-2 conv padding",
    )
    x = np.random.default_rng(1).random((4, 16, 16, 3))
    report = localise_models(pt, tfm, x, "float64")
    assert _first(report) == ("net/encoder/conv5", "forward", [("stride-2 conv padding", 1)])
    failing = {layer for layer, _, r in report.rows if not r.passed}
    assert failing == {f"net/encoder/conv{i}" for i in (5, 10, 15)}


def test_a_fault_no_row_explains_is_reported_as_such(pair):
    """A perturbed TF kernel: the layer is found, and no catalogue row claims it."""
    from tf_impl.weights import entries

    v = dict(entries(pair[1]))["net/encoder/conv1/kernel"]
    saved = v.numpy().copy()
    try:
        v.assign(saved * (1 + 1e-6))
        report = localise_models(*pair, X, "float64")
    finally:
        v.assign(saved)
    assert _first(report) == ("net/encoder/conv1", "forward", [])
    assert "no catalogue row reproduces it" in report.verdict()


def test_both_localisers_run_layers_with_the_same_runner():
    """One localiser: ``rosetta parity --localise`` runs each layer with the runners of
    ``rosetta localise`` (``torch_impl.pair.run_layer``, ``tf_impl.pair.call_and_tape``) and
    compares with the same ``shared.parity.localise.localise``."""
    import inspect

    from shared.apps import localise_cmd, pair_cmd
    from tf_impl import localise as tl
    from torch_impl import localise as pl

    assert "run_layer(" in inspect.getsource(pl._run_layer)
    assert "call_and_tape(" in inspect.getsource(tl._run_layer)
    assert localise_cmd.localise is pair_cmd.localise


def test_inject_names_its_argument(pair):
    from tf_impl.localise import inject_model

    with pytest.raises(ValueError, match="inject: expected one of"):
        inject_model(pair[1], "Keras defaults")


def test_cli_prints_the_table_and_the_verdict(capsys):
    from shared.apps.parity_cmd import main

    argv = ["--localise", "--inject", "L2 normalisation clamp", "--batch", "4"]
    assert main([*argv, "--hidden-dim", "16", "--proj-dim", "8"]) == 1
    out = capsys.readouterr().out
    assert "net/encoder/conv0" in out and "net/normalize" in out
    assert "first over tolerance: net/normalize forward" in out
    assert out.rstrip().endswith("looks like: L2 normalisation clamp (catalogue row 7)")
