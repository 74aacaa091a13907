"""``rosetta localise`` on pairs of models defined in tests/pairs/ (an MLP; a CNN with
BatchNorm, a residual add, strided and depthwise convs and a flatten; a Transformer encoder
block; torchvision's and keras.applications' MobileNetV2): aligned ports pass in float64 and
float32, each porting difference left in is named at its layer, quantity and catalogue row,
ports are bit-exact both ways, bad input is one line and exit status 2, and ``--steps`` names
the first training step outside the float32 drift envelope.
"""

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="PyTorch is not installed")
pytest.importorskip("tensorflow", reason="TensorFlow is not installed")

import torch  # noqa: E402,F401  (before TensorFlow)
import torchvision  # noqa: E402,F401

from shared.apps.cli import main as rosetta  # noqa: E402
from shared.apps.pair_cmd import load_factory, localise_pair  # noqa: E402
from shared.parity.localise import CATALOGUE_ROWS  # noqa: E402

PAIRS = Path(__file__).resolve().parent / "pairs"
SHAPES = {"mlp": "8,16", "cnn": "4,3,16,16", "transformer": "2,5,16", "third_party": "2,3,32,32"}
TORCH = {"mlp": "torch_mlp", "cnn": "torch_cnn", "transformer": "torch_block"}
KERAS = {"mlp": "keras_mlp", "cnn": "keras_cnn", "transformer": "keras_block"}


def _cli(capsys, pair, keras=None, *extra, torch_factory=None, shape=None):
    """``rosetta localise`` on one pair file: (exit status, stdout lines, stderr lines)."""
    argv = [
        "localise",
        "--torch",
        f"{PAIRS / pair}.py:{torch_factory or TORCH[pair]}",
        "--keras",
        f"{PAIRS / pair}.py:{keras or KERAS[pair]}",
        "--input-shape",
        shape or SHAPES[pair],
        *extra,
    ]
    code = rosetta(argv)
    out, err = capsys.readouterr()
    return code, out.strip().splitlines(), err.strip().splitlines()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("pair", ["mlp", "cnn", "transformer"])
def test_aligned_pairs_pass(capsys, tmp_path, pair, dtype):
    """Every quantity of every layer within the table's tolerance; the report lists them all."""
    report = tmp_path / "report.md"
    code, out, err = _cli(capsys, pair, None, "--dtype", dtype, "--report", str(report))
    assert (code, err) == (0, []), (out, err)
    assert out[-1].startswith("ok: ") and f"({dtype})" in out[-1]
    import json

    rows = json.loads(Path(f"{report}.json").read_text())["rows"]
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    assert layers[-1] == "output" and all(r["passed"] for r in rows)
    expected = {"mlp": 3, "cnn": 10, "transformer": 8}[pair]
    assert len(layers) == expected + 1
    quantities = {r["quantity"] for r in rows}
    assert {"input", "forward", "grad/input", "grad/kernel", "step/kernel"} <= quantities
    if pair == "cnn":
        assert {"running/moving_variance", "slot/gamma/momentum"} <= quantities


@pytest.mark.parametrize(
    "pair, keras, layer, quantity, row",
    [
        ("mlp", "keras_softmax_head", "output", "forward", "activation folded into a Keras layer"),
        ("cnn", "keras_bn_defaults", "bn0", "forward", "BN momentum and epsilon"),
        ("cnn", "keras_same_conv", "down", "forward", "stride-2 conv padding"),
        (
            "cnn",
            "keras_same_depthwise",
            "dw",
            "forward",
            "SAME padding in a stride-2 depthwise conv",
        ),
        ("cnn", "keras_nhwc_flatten", "fc", "input", "flatten order before a Dense"),
        ("transformer", "keras_ln_default", "ln1", "forward", "LayerNorm epsilon"),
        ("transformer", "keras_gelu_tanh", "fc2", "input", "GELU's tanh approximation"),
        ("transformer", "keras_gelu_exact", "fc2", "input", "Python floats in float64 TF"),
    ],
)
def test_a_porting_difference_is_named(pair, keras, layer, quantity, row):
    """float64, ported torch to Keras: the first row over tolerance is the injected layer's,
    and exactly the injected catalogue row reproduces it."""
    pt = load_factory("--torch", f"{PAIRS / pair}.py:{TORCH[pair]}")().double()
    km = _keras64(f"{PAIRS / pair}.py:{keras}")
    x = np.random.default_rng(0).standard_normal(tuple(map(int, SHAPES[pair].split(","))))
    result = localise_pair(pt, km, x)
    first = result.report.first
    assert first is not None and first[:2] == (layer, quantity), result.report.verdict()
    assert [(n, i) for n, i, _ in result.report.explained] == [(row, CATALOGUE_ROWS[row])]


def _keras64(spec: str):
    import keras

    policy, floatx = keras.config.dtype_policy(), keras.config.floatx()
    keras.config.set_dtype_policy("float64")
    keras.config.set_floatx("float64")
    try:
        return load_factory("--keras", spec)()
    finally:
        keras.config.set_dtype_policy(policy)
        keras.config.set_floatx(floatx)


def test_the_first_difference_line_names_both_layers_and_the_row(capsys):
    code, out, err = _cli(capsys, "cnn", "keras_bn_defaults")
    assert (code, err, len(out)) == (1, [], 1)
    line = out[0]
    assert line.startswith("first difference: bn0 (torch) / batch_normalization")
    assert "(keras) forward: max abs" in line
    assert line.endswith(
        f"catalogue row {CATALOGUE_ROWS['BN momentum and epsilon']}: BN momentum and epsilon"
    )


def test_keras_stock_sgd_is_named_at_the_first_slot(capsys):
    code, out, _ = _cli(capsys, "mlp", None, "--keras-optimizer", "stock")
    assert code == 1
    assert out[0].startswith("first difference: 0 (torch) / dense")
    assert "slot/kernel/momentum" in out[0] and out[0].endswith("SGD with momentum")


def test_ports_are_bit_exact_both_ways():
    """torch -> Keras -> torch, on every layer kind of the CNN (conv, depthwise, dense, BN)."""
    from tf_impl import pair as kp
    from torch_impl import pair as tp

    x = np.random.default_rng(0).standard_normal((4, 3, 16, 16))
    pt = load_factory("--torch", f"{PAIRS}/cnn.py:torch_cnn")().double()
    km = _keras64(f"{PAIRS}/cnn.py:keras_cnn")
    t, k = tp.discover(pt, x), kp.discover(km, x.transpose(0, 2, 3, 1))
    with torch.no_grad():
        for p in pt.parameters():
            p.copy_(torch.randn_like(p))
        pt.bn0.running_var.uniform_(0.5, 2.0)
    pairs = list(zip(t[0], k[0]))
    want = tp.read_weights(t[1], t[0])
    kp.write_weights(k[1], k[0], {b.name: want[a.name] for a, b in pairs})
    got = kp.read_weights(k[1], k[0])
    for a, b in pairs:
        for role in want[a.name]:
            assert np.array_equal(got[b.name][role], want[a.name][role]), (a.name, role)
    # the depthwise layout from its definition: torch's channel c m + j is Keras's [..., c, j]
    torch_dw = pt.dw.weight.detach().numpy()
    kdw = [got[b.name]["kernel"] for a, b in pairs if a.name == "dw"][0]
    assert kdw.shape == (3, 3, 16, 1)
    assert np.array_equal(kdw[1, 2, 5, 0], torch_dw[5, 0, 1, 2])
    before = {n: p.detach().clone() for n, p in pt.state_dict().items()}
    with torch.no_grad():
        for p in pt.parameters():
            p.zero_()
    tp.write_weights(t[1], t[0], {a.name: got[b.name] for a, b in pairs})
    for n, p in pt.state_dict().items():
        if p.dtype.is_floating_point:
            assert torch.equal(p, before[n]), n


@pytest.mark.parametrize(
    "torch_spec, keras_spec, shape, starts",
    [
        ("mlp.py:nope", "mlp.py:keras_mlp", "8,16", "error: --torch: "),
        ("mlp.py:torch_mlp", "missing.py:keras_mlp", "8,16", "error: --keras: "),
        ("mlp.py:broken", "mlp.py:keras_mlp", "8,16", "error: --torch: the factory"),
        ("mlp.py:not_a_model", "mlp.py:keras_mlp", "8,16", "error: --torch: "),
        ("mlp.py:torch_mlp", "mlp.py:keras_wider", "8,16", "error: layers: "),
        ("mlp.py:torch_mlp", "mlp.py:keras_mlp", "8,17", "error: --input-shape: the torch"),
        ("mlp.py:torch_mlp", "mlp.py:keras_mlp", "8,x", "error: --input-shape: expected"),
    ],
    ids=["missing", "no-file", "raises", "not-callable", "unmatched", "shape", "not-a-shape"],
)
def test_bad_input_is_one_line_and_status_2(capsys, torch_spec, keras_spec, shape, starts):
    argv = ["localise", "--torch", f"{PAIRS}/{torch_spec}", "--keras", f"{PAIRS}/{keras_spec}"]
    code = rosetta([*argv, "--input-shape", shape])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(starts), (out, err)


def test_unmatched_layers_print_both_sequences_to_the_first_mismatch(capsys):
    code, out, err = _cli(capsys, "mlp", "keras_wider")
    assert code == 2 and "position 0" in err[0]
    assert out[-1].startswith("  0  0 dense kernel[16, 32] bias[32]")
    assert out[-1].endswith("<- differs") and "kernel[16, 64]" in out[-1]


def test_steps_pass_the_aligned_pair(capsys):
    code, out, _ = _cli(capsys, "cnn", None, "--dtype", "float32", "--steps", "20")
    assert code == 0 and "; 20 training steps within the float32 drift envelope (" in out[-1]


@pytest.mark.parametrize(
    "keras, extra, quantity, row",
    [
        ("keras_cnn", ["--keras-optimizer", "stock"], "slot/kernel/momentum", "SGD with momentum"),
        ("keras_bn_momentum", [], "running/moving_mean", "BN momentum and epsilon"),
    ],
)
def test_steps_name_the_first_step_out_of_the_envelope(capsys, keras, extra, quantity, row):
    """Keras's SGD folds the changing learning rate into its velocity (the first step agrees:
    the velocity starts at zero); BN momentum 0.99 moves only the running statistics."""
    code, out, _ = _cli(capsys, "cnn", keras, "--dtype", "float32", "--steps", "20", *extra)
    assert code == 1 and out[-1].startswith("first difference: training step "), out
    assert quantity in out[-1] and out[-1].endswith(row), out[-1]


def test_third_party_pair_torchvision_against_keras_applications(capsys, tmp_path):
    """torchvision's and keras.applications' MobileNetV2 (width 0.35) pair layer by layer; the
    first difference is Keras's "same" padding of the stride-2 stem conv (docs/localise.md).
    float32: torch's float64 convolutions on the CPU take seconds here, and the difference is
    of order 1 against float32's 1e-4."""
    report = tmp_path / "mobilenet.md"
    code, out, err = _cli(
        capsys,
        "third_party",
        "keras_mobilenet",
        "--dtype",
        "float32",
        "--report",
        str(report),
        torch_factory="torch_mobilenet",
    )
    assert (code, err) == (1, []), (out, err)
    assert out[-1].startswith("first difference: features.0.0 (torch) / Conv1 (keras) forward")
    assert out[-1].endswith("catalogue row 1: stride-2 conv padding")
    table = report.read_text()
    assert table.count("\n| ") == 1 + 105 + 1  # the header, 52 convs, 52 BNs, 1 dense, output
    import json

    doc = json.loads(Path(f"{report}.json").read_text())
    explained = doc["explained"]  # each layer whose own quantities fail, fed torch's input
    assert explained.pop("features.0.0") == [["stride-2 conv padding", 1]]
    assert explained.pop("output") == []  # Keras's own output: differences upstream
    assert len(explained) == 52  # every BN: keras.applications' epsilon 1e-3
    assert all(v == [["BN momentum and epsilon", 3]] for v in explained.values())
    # the first stride-2 depthwise conv: Keras's correct_pad pads (0, 1), torch (1, 1)
    row = [
        r for r in doc["rows"] if r["layer"] == "features.2.conv.1.0" and r["quantity"] == "input"
    ]
    assert row[0]["reason"] == "shape mismatch: expected (2, 18, 18, 48), got (2, 17, 17, 48)"


@pytest.mark.parametrize(
    "keras_optimizer, first",
    [("aligned", None), ("stock", ("0", "step/kernel", [("Adam's epsilon", 5)]))],
)
def test_adam_aligned_passes_and_keras_adam_is_named(keras_optimizer, first):
    pt = load_factory("--torch", f"{PAIRS}/mlp.py:torch_mlp")().double()
    km = _keras64(f"{PAIRS}/mlp.py:keras_mlp")
    x = np.random.default_rng(0).standard_normal((8, 16))
    result = localise_pair(pt, km, x, optimizer="adam", keras_optimizer=keras_optimizer)
    got = result.report.first
    got = got and (*got[:2], [(n, i) for n, i, _ in result.report.explained])
    assert got == first, result.report.verdict()


def test_a_name_map_pairs_by_name_and_keras_to_torch_ports_back():
    """``--map``: the right names pass (weights ported Keras to torch); a map that pairs the
    first torch layer with the last Keras one is refused at that layer."""
    from shared.parity.pair import PairError

    pt = load_factory("--torch", f"{PAIRS}/mlp.py:torch_mlp")().double()
    km = _keras64(f"{PAIRS}/mlp.py:keras_mlp")
    x = np.random.default_rng(0).standard_normal((8, 16))
    dense = [layer.name for layer in km.layers[1:]]
    names = dict(zip(["0", "2", "4"], dense))
    result = localise_pair(pt, km, x, port="keras-to-torch", name_map=names)
    assert result.passed and result.names == {**names, "output": "output"}
    kernel = km.layers[1].kernel.numpy()
    assert np.array_equal(pt[0].weight.detach().numpy(), kernel.T)
    with pytest.raises(PairError, match="position 0: 0 dense kernel"):
        localise_pair(pt, km, x, name_map={**names, "0": dense[-1]})


def test_a_map_that_is_not_json_is_one_line(capsys, tmp_path):
    bad = tmp_path / "map.json"
    bad.write_text("0: dense")
    code, _, err = _cli(capsys, "mlp", None, "--map", str(bad))
    assert code == 2 and len(err) == 1 and err[0].startswith("error: --map: expected a JSON")


def test_a_grouped_conv_pairs_and_agrees():
    """``Conv2d(groups=2)`` against ``Conv2D(groups=2)``: the same (kh, kw, in / g, out)
    layout once transposed, and the same assignment of output channels to groups."""
    import keras
    from torch import nn

    torch.manual_seed(0)
    pt = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, groups=2), nn.Flatten()).double()
    floatx = keras.config.floatx()
    keras.config.set_floatx("float64")
    try:
        x0 = keras.Input((5, 5, 4))
        conv = keras.layers.Conv2D(6, 3, padding="same", groups=2, dtype="float64")(x0)
        y = keras.layers.Flatten(dtype="float64")(
            keras.layers.Permute((3, 1, 2), dtype="float64")(conv)
        )
        km = keras.Model(x0, y)
    finally:
        keras.config.set_floatx(floatx)
    x = np.random.default_rng(0).standard_normal((2, 4, 5, 5))
    result = localise_pair(pt, km, x)
    assert result.passed, result.report.verdict()
    assert [q for layer, q, _ in result.report.rows if layer == "0"][:3] == [
        "input",
        "forward",
        "grad/input",
    ]


def test_port_none_compares_the_weights_as_loaded():
    """Two independently initialised models, not ported: the first layer's forward differs
    and no catalogue row claims it."""
    pt = load_factory("--torch", f"{PAIRS}/mlp.py:torch_mlp")().double()
    km = _keras64(f"{PAIRS}/mlp.py:keras_mlp")
    x = np.random.default_rng(0).standard_normal((8, 16))
    result = localise_pair(pt, km, x, port="none")
    assert result.report.first[:2] == ("0", "forward") and result.report.explained == []
    assert "no catalogue row reproduces it" in result.report.verdict()


def test_an_embedding_pairs_ports_and_agrees_on_token_ids():
    """An integer batch reaches both models as token ids; the Embedding's weight gradient
    (Keras: ``IndexedSlices``) and one optimiser step agree; it has no input gradient."""
    import keras
    from torch import nn

    torch.manual_seed(0)
    pt = nn.Sequential(nn.Embedding(20, 8), nn.Linear(8, 4)).double()
    L = keras.layers
    km = keras.Sequential(
        [
            keras.Input((5,), dtype="int32"),
            L.Embedding(20, 8, dtype="float64"),
            L.Dense(4, dtype="float64"),
        ]
    )
    x = np.random.default_rng(0).integers(0, 20, (2, 5))
    result = localise_pair(pt, km, x)
    assert result.passed, result.report.verdict()
    quantities = [q for layer, q, _ in result.report.rows if layer == "0"]
    assert quantities == [
        "input",
        "forward",
        "grad/embeddings",
        "slot/embeddings/momentum",
        "step/embeddings",
    ]
