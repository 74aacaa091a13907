"""``rosetta import --format simclr-tf1`` of every kind of released SimCLR checkpoint, written
here in the official layouts from random weights: an ``ema_model/`` copy (``--weights``), a
head-less v1, a fine-tuned head (``--ft-proj-selector``), selective kernels, width 2x; and the
variants no encoder represents, refused in one line.

The writer :func:`official_variables` follows google-research/simclr's ``resnet.py`` and
``model_util.py`` (creation order, ``tf.layers`` auto-names, ResNet-D and ``sk_conv2d`` with
``sk_ratio`` 0.0625, the heads), independently of ``shared.run.simclr_tf1``. Expected values
come from the checkpoint's own arrays and a NumPy head, and the proof's source is the
``tf.nn`` reference of ``tf_impl.official``.
"""

import json

import numpy as np
import pytest

from shared.apps.import_cmd import import_official
from shared.apps.import_stages import proof_batch

SIZE = 32  # tiny proof images
BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}  # resnet.py model_params


def official_variables(
    depth=50, width=1, sk=False, layers=3, classes=10, seed=0, base=64, blocks=None
) -> dict:
    """The network's variables of an official SimCLR checkpoint (float32), named as
    ``tf.layers`` names them while ``resnet.py`` builds the ResNet (per block: the projection
    first; with ``sk``: ResNet-D's stem and shortcut, ``sk_conv2d``, whose mixing conv has no
    BN) and ``model_util.py`` the projection head (``layers`` of them, 0: none) and the
    supervised head (``classes``, None: none). ``base`` and ``blocks``: the first group's
    filters at 1x and the blocks per group, for networks of a reduced size.

    Each block's last BN has a small gamma, as trained ones do (``resnet.py`` initialises it to
    zero, ``init_zero``): with gammas near 1 a random ResNet-50 with selective kernels amplifies
    rounding 1e4-fold over its depth (float64 differences of 3e-12 at h, over the proof's
    tolerance); with them, 4e-15."""
    rng = np.random.default_rng(seed)
    v, count = {}, {}

    def auto(base):
        i = count[base] = count.get(base, -1) + 1
        return f"base_model/{base}" + (f"_{i}" if i else "")

    def bn(c, scope=None, center=True, scale=1.0):
        scope = scope or auto("batch_normalization")
        v[f"{scope}/gamma"] = scale * (0.5 + rng.random(c))
        if center:
            v[f"{scope}/beta"] = 0.1 * rng.standard_normal(c)
        v[f"{scope}/moving_mean"] = 0.1 * rng.standard_normal(c)
        v[f"{scope}/moving_variance"] = 0.5 + rng.random(c)

    def conv(k, cin, cout, norm=True, scale=1.0):
        v[f"{auto('conv2d')}/kernel"] = rng.normal(0, np.sqrt(2 / (k * k * cin)), (k, k, cin, cout))
        if norm:
            bn(cout, scale=scale)

    w = base * width
    if sk:
        conv(3, 3, w // 2), conv(3, w // 2, w // 2), conv(3, w // 2, w)
    else:
        conv(7, 3, w)
    cin = w
    for n, f in zip(blocks or BLOCKS[depth], (w, 2 * w, 4 * w, 8 * w)):
        for b in range(n):
            if b == 0:
                conv(1, cin, 4 * f)
            conv(1, cin, f)
            if sk:  # sk_conv2d: mid = max(f * 0.0625, 32)
                (
                    conv(3, f, 2 * f),
                    conv(1, f, max(f // 16, 32)),
                    conv(1, max(f // 16, 32), 2 * f, False),
                )
            else:
                conv(3, f, f)
            conv(1, f, 4 * f, scale=0.2)  # resnet.py zero-initialises this gamma (init_zero)
            cin = 4 * f
    for j in range(layers):
        last = j == layers - 1
        dim = 128 if last else cin
        v[f"head_contrastive/nl_{j}/dense/kernel"] = rng.normal(0, cin**-0.5, (cin, dim))
        bn(dim, f"head_contrastive/nl_{j}/batch_normalization", center=not last)
    if classes:
        v["head_supervised/linear_layer/dense/kernel"] = rng.normal(0, 0.05, (cin, classes))
        v["head_supervised/linear_layer/dense/bias"] = rng.normal(0, 0.05, classes)
    return {k: a.astype(np.float32) for k, a in v.items()}


def write_tf1(prefix, variables: dict) -> None:
    """A TF1 name-based checkpoint (``.index`` + ``.data``), as tf.train.Saver writes one."""
    import tensorflow as tf

    names = sorted(variables)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(variables[n]) for n in names])  # fmt: skip


def _features(run_dir, framework: str, images: np.ndarray) -> dict:
    """``{"net/h", "net/z"}`` of an imported run, loaded as ``eval`` loads it (float32)."""
    from shared.run.config import PACKAGES

    pkg = PACKAGES[framework]
    methods = __import__(f"{pkg}.methods", fromlist=["x"])
    official = __import__(f"{pkg}.official", fromlist=["x"])
    model, _ = methods.load_trained(run_dir)
    outs = official.layer_outputs(model, images.astype(np.float32))
    return {k: v for k, v in outs.items() if k in ("net/h", "net/z")}


def _bn(x, v, p, center=True):
    """tf.layers' BN at inference, eps 1e-5, in float64."""
    mean, var, gamma = (
        np.float64(v[f"{p}/{r}"]) for r in ("moving_mean", "moving_variance", "gamma")
    )
    return gamma * (x - mean) / np.sqrt(var + 1e-5) + (np.float64(v[f"{p}/beta"]) if center else 0)


def _hiddens(h, v: dict, layers: int) -> list:
    """model_util.py's ``hiddens_list`` in NumPy at inference: h, each head layer's output."""
    out = [h.astype(np.float64)]
    for j in range(layers):
        p = f"head_contrastive/nl_{j}"
        last = j == layers - 1
        kernel = np.float64(v[f"{p}/dense/kernel"])
        y = _bn(out[-1] @ kernel, v, f"{p}/batch_normalization", not last)
        out.append(y if last else np.maximum(y, 0))
    return out


def _import(tmp_path, variables, framework, capsys, name="run", **kw) -> tuple:
    """Write ``variables``, import them; ``(run dir, report json, printed report)``."""
    prefix = tmp_path / "model.ckpt-1"
    if not prefix.with_suffix(".ckpt-1.index").exists():
        write_tf1(prefix, variables)
    out = tmp_path / name
    code = import_official(prefix, "simclr-tf1", framework, out, size=SIZE, in_process=True, **kw)
    printed = capsys.readouterr()
    assert code == 0, printed
    return out, json.loads((out / "import_report.json").read_text()), printed.out


def _worst(report: dict, layer: str, dtype="float64") -> float:
    rows = [r for r in report["rows"] if r["layer"] == layer and r["dtype"] == dtype]
    assert len(rows) == 1, layer
    return rows[0]["max_rel"]


# --- --weights raw|ema, skipped by kind --------------------------------------------------


def _with_ema_copy(variables: dict) -> dict:
    """``variables`` plus what a real v2 checkpoint holds beside them: an ``ema_model/`` copy
    of every network variable with other values, LARS ``Momentum`` slots (of the heads'
    variables: enough to count them), a ``memory`` variable and ``global_step``."""
    ema = official_variables(layers=3, seed=1)
    out = {**variables, **{f"ema_model/{k}": a for k, a in ema.items()}}
    out.update({f"{k}/Momentum": 0 * a for k, a in variables.items() if k.startswith("head_")})
    out["head_contrastive/memory"] = np.zeros((4, 128), np.float32)
    out["global_step"] = np.asarray(1000, np.int64)
    return out


def _ema_copy(variables: dict) -> dict:
    return {k[len("ema_model/") :]: a for k, a in variables.items() if k.startswith("ema_model/")}


def _reference(variables: dict, images: np.ndarray, selector: int = 0) -> dict:
    """The tf.nn reference on plain variables (float64): no copy to choose."""
    from tf_impl.official import reference_outputs

    return reference_outputs(variables, "simclr-tf1", images, "float64", ft_proj_selector=selector)


@pytest.mark.parametrize(
    "weights,selector", [("ema", 1), pytest.param("raw", 0, marks=pytest.mark.slow)]
)  # raw without an EMA copy: tests/test_import.py; raw's counting: test_select_weights_*
def test_weights_raw_or_ema_imports_that_copy_and_lists_the_skipped(
    tmp_path, weights, selector, capsys
):
    """The run holds the chosen copy (its stem kernel exactly, not the other copy's) and
    computes that copy's features: h and z as the reference computes them on that copy's
    variables alone (no copy to choose there), and the proof's logits; the report names the
    copy and counts what it skipped by kind. ``ema`` goes with ``--ft-proj-selector 1``, a fine-tuned checkpoint's head,
    whose logits are checked here against NumPy's reading of model_util.py."""
    from torch_impl import methods
    from torch_impl.weights import export_weights

    raw = official_variables(layers=3)
    variables = _with_ema_copy(raw)
    chosen, other = (_ema_copy(variables), raw) if weights == "ema" else (raw, _ema_copy(variables))
    out, report, printed = _import(
        tmp_path, variables, "torch", capsys, weights=weights, ft_proj_selector=selector
    )
    assert report["verdict"].startswith("PASS")
    assert report["source"]["weights"] == weights
    copies = {"raw": "EMA copies (ema_model/...; --weights ema reads them)",
              "ema": "raw weights (their ema_model/ copies read instead)"}  # fmt: skip
    assert report["source"]["skipped"] == {
        copies[weights]: len(raw),
        "optimiser slots (Momentum / LARS momentum)": sum(
            k.endswith("/Momentum") for k in variables
        ),
        "memory variables": 1,
        "global_step": 1,
    }
    assert f"- weights: {weights} (" in printed
    model, _ = methods.load_trained(out)
    stem = export_weights(model)["net/encoder/conv0/kernel"]
    np.testing.assert_array_equal(stem, chosen["base_model/conv2d/kernel"])
    assert np.abs(stem - other["base_model/conv2d/kernel"]).max() > 0.01
    x = proof_batch("simclr-tf1", 2, SIZE)
    got, want = _features(out, "torch", x), _reference(chosen, x, selector)
    for k in ("h", "z"):  # the chosen copy's features (the other copy's differ: its stem above)
        scale = np.abs(want[k]).max()
        assert np.allclose(got[f"net/{k}"], want[k], rtol=1e-4, atol=1e-5 * scale), k
    assert _worst(report, "net/z") < 1e-10 and _worst(report, "net/logits_sup") < 1e-10
    p = "head_supervised/linear_layer/dense"
    inputs = _hiddens(want["h"], chosen, 3)[selector]  # model_util.py's hiddens_list, NumPy
    logits = inputs @ np.float64(chosen[f"{p}/kernel"]) + chosen[f"{p}/bias"]
    scale = np.abs(logits).max()
    assert np.allclose(want["logits_sup"], logits, rtol=1e-10, atol=1e-12 * scale)
    sup = dict(np.load(out / "supervised_head.npz"))
    assert int(sup["ft_proj_selector"]) == selector
    assert np.array_equal(sup["kernel"], chosen[f"{p}/kernel"])


def test_select_weights_counts_what_it_skips_by_kind():
    """raw: the ema_model/ copy is skipped (counted), not refused; ema: the raw variables it
    replaces are, and a variable without an EMA copy is read raw and named."""
    from shared.run.simclr_tf1 import select_weights

    a, b = np.zeros(2), np.ones(2)
    variables = {"base_model/conv2d/kernel": a, "ema_model/base_model/conv2d/kernel": b,
                 "head_supervised/linear_layer/dense/bias": a, "global_step": a,
                 "base_model/conv2d/kernel/Momentum": a, "memory_bank/queue": a,
                 "base_model/conv2d/kernel/ExponentialMovingAverage": a,
                 "base_model/conv2d/kernel/LARSOptimizer": a, "beta1_power": a}  # fmt: skip
    common = {"global_step": 1, "memory variables": 1, "optimiser slots (Adam)": 1,
              "optimiser slots (Momentum / LARS momentum)": 2,
              "EMA shadows (ExponentialMovingAverage)": 1}  # fmt: skip
    chosen, skipped, fallback = select_weights(variables, "raw")
    assert chosen["base_model/conv2d/kernel"] is a and len(chosen) == 2 and fallback == []
    assert skipped == {**common, "EMA copies (ema_model/...; --weights ema reads them)": 1}
    chosen, skipped, fallback = select_weights(variables, "ema")
    assert chosen["base_model/conv2d/kernel"] is b and len(chosen) == 2
    assert skipped == {**common, "raw weights (their ema_model/ copies read instead)": 1}
    assert fallback == ["head_supervised/linear_layer/dense/bias"]


# --- the reference against the encoders, at a reduced size -------------------------------


@pytest.mark.parametrize("sk", [False, True], ids=["sk0", "sk1"])
def test_the_reference_computes_what_the_encoder_does_at_a_reduced_size(sk):
    """The tf.nn reference (ResNet-D, sk_conv2d, width 2x) and ``torch_impl.simclr_resnet`` on
    the same variables, named by this file's writer: torch's conv i and BN i take
    ``conv2d_i`` and ``batch_normalization_i`` (its layers are registered in creation order).
    8 base filters, blocks 2-1-1-1, 35-px images (odd sizes at the stride-2 shortcuts)."""
    import torch

    from tf_impl.official import reference_outputs
    from torch_impl.simclr_resnet import SimCLRResNet

    kw = {"width": 2, "sk": sk, "base": 8, "blocks": (2, 1, 1, 1)}
    v = {k: np.float64(a) for k, a in official_variables(layers=0, classes=None, **kw).items()}
    net = SimCLRResNet(**kw).double().eval()
    scope = lambda base, i: f"base_model/{base}" + (f"_{i}" if i else "")  # noqa: E731
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(convs) == sum(k.endswith("/kernel") for k in v)
    with torch.no_grad():
        for i, m in enumerate(convs):
            m.weight.copy_(
                torch.from_numpy(v[f"{scope('conv2d', i)}/kernel"].transpose(3, 2, 0, 1))
            )
        for i, m in enumerate(bns):
            p = scope("batch_normalization", i)
            for t, r in ((m.weight, "gamma"), (m.bias, "beta"), (m.running_mean, "moving_mean"),
                         (m.running_var, "moving_variance")):  # fmt: skip
                t.copy_(torch.from_numpy(v[f"{p}/{r}"]))
    x = np.random.default_rng(4).random((2, 35, 35, 3))
    want = reference_outputs(v, "simclr-tf1", x, "float64", blocks=kw["blocks"])["h"]
    got = net(torch.from_numpy(x).permute(0, 3, 1, 2)).detach().numpy()
    assert got.shape == (2, 2 * 8 * 32)
    assert np.abs(got - want).max() <= 1e-12 * np.abs(want).max()


# --- head-less v1, fine-tuned head -------------------------------------------------------


@pytest.mark.parametrize(
    "framework", ["torch", pytest.param("tensorflow", marks=pytest.mark.slow)]
)  # TensorFlow's import path: tests/test_import.py's SimCLR test into tensorflow (default)
def test_a_head_less_v1_imports_as_an_encoder_only_run(tmp_path, framework, capsys):
    """No head_contrastive (the released v1 checkpoints): the encoder and the supervised head
    are proven (h, logits_sup), z is not; the report says why; the run's placeholder head is a
    zero Dense, so its z is 0."""
    variables = official_variables(layers=0, classes=10)
    out, report, printed = _import(tmp_path, variables, framework, capsys)
    assert report["verdict"].startswith("PASS")
    layers = {r["layer"] for r in report["rows"]}
    assert "net/h" in layers and "net/logits_sup" in layers and "net/z" not in layers
    assert not any(la.startswith("net/head/") for la in layers)
    assert "z is absent: the checkpoint has no projection head" in printed
    assert report["source"]["version"] == "head-less"
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["encoder"], cfg["head_layers"], cfg["proj_dim"]) == ("resnet50_samepool", 1, 128)
    got = _features(out, framework, proof_batch("simclr-tf1", 2, SIZE))
    assert got["net/h"].shape == (2, 2048) and not np.any(got["net/z"])
    sup = np.load(out / "supervised_head.npz")
    assert np.array_equal(sup["kernel"], variables["head_supervised/linear_layer/dense/kernel"])
    assert int(sup["ft_proj_selector"]) == 0
    assert _worst(report, "net/logits_sup") < 1e-10 and _worst(report, "net/h") < 1e-10


@pytest.mark.slow  # eval, finetune and port of a run: tests/test_weights.py, tests/test_finetune.py
def test_a_head_less_run_is_taken_by_eval_finetune_and_port(tmp_path, small_eval, capsys):
    from shared.apps.port import main as port
    from tf_impl.__main__ import main as tf_main

    out, _, _ = _import(tmp_path, official_variables(layers=0, classes=None), "tensorflow", capsys)
    assert tf_main(["eval", "--run-dir", str(out)]) == 0
    assert set(json.loads((out / "eval.json").read_text())) >= {"simclr", "random_init"}
    ft = tmp_path / "ft.json"
    args = ["--fraction", "0.1", "--epochs", "1", "--out", str(ft)]
    assert tf_main(["finetune", "--run-dir", str(out), *args]) == 0
    assert "finetune_top1" in json.loads(ft.read_text())
    assert port([str(out), "--to", "torch", "--out", str(tmp_path / "ported")]) == 0
    x = proof_batch("simclr-tf1", 2, SIZE)
    a, b = _features(out, "tensorflow", x), _features(tmp_path / "ported", "torch", x)
    assert np.allclose(b["net/h"], a["net/h"], rtol=1e-4, atol=1e-5 * np.abs(a["net/h"]).max())


@pytest.mark.slow  # the default run: --weights ema with --ft-proj-selector 1, into torch
def test_a_fine_tuned_head_reading_the_first_projection_layer(tmp_path, capsys):
    """``--ft-proj-selector 1`` (the README's fine-tuning recipe): the supervised head reads
    nl_0's output after its ReLU; its logits are proven against the reference, whose reading
    of model_util.py's ``hiddens_list`` is checked here against NumPy's."""
    variables = official_variables(layers=3, classes=10, seed=3)
    out, report, printed = _import(tmp_path, variables, "tensorflow", capsys, ft_proj_selector=1)
    assert report["verdict"].startswith("PASS")
    assert report["source"]["supervised_input"] == "head_contrastive/nl_0 after its ReLU"
    assert "reading head_contrastive/nl_0 after its ReLU" in printed
    assert _worst(report, "net/logits_sup") < 1e-10
    x = proof_batch("simclr-tf1", 2, SIZE)
    from tf_impl.official import reference_outputs

    ref = reference_outputs(variables, "simclr-tf1", x, "float64", ft_proj_selector=1)
    p = "head_supervised/linear_layer/dense"
    want = _hiddens(ref["h"], variables, 3)[1] @ variables[f"{p}/kernel"] + variables[f"{p}/bias"]
    assert np.allclose(ref["logits_sup"], want, rtol=1e-10, atol=1e-12 * np.abs(want).max())
    assert int(np.load(out / "supervised_head.npz")["ft_proj_selector"]) == 1


# --- the v2 family: selective kernels, widths, depths ------------------------------------


@pytest.mark.parametrize(
    "depth,width,sk,framework",
    [
        pytest.param(50, 1, True, "torch", marks=pytest.mark.slow),
        pytest.param(50, 1, True, "tensorflow", marks=pytest.mark.slow),
        pytest.param(50, 2, False, "tensorflow", marks=pytest.mark.slow),
        pytest.param(50, 2, False, "torch", marks=pytest.mark.slow),
        pytest.param(101, 1, False, "torch", marks=pytest.mark.slow),
        pytest.param(152, 1, False, "tensorflow", marks=pytest.mark.slow),
    ],
    ids=[
        "r50_1x_sk1-torch",
        "r50_1x_sk1-tf",
        "r50_2x_sk0-tf",
        "r50_2x_sk0-torch",
        "r101-torch",
        "r152-tf",
    ],  # fmt: skip
)
# slow (15-25 s each here): the default run covers their code with reduced sizes
# (tests/test_encoders.py: walks, float64 forward and backward parity)
def test_the_v2_family_imports_and_matches_the_reference(
    tmp_path, depth, width, sk, framework, capsys
):
    """Every conv and BN of the checkpoint is a proven row; h and z of the run, loaded as
    ``eval`` loads it, are the reference's on the checkpoint's variables."""
    variables = official_variables(depth, width, sk, layers=3)
    out, report, _ = _import(tmp_path, variables, framework, capsys)
    assert report["verdict"].startswith("PASS")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["encoder"] == f"simclr_r{depth}_{width}x_sk{int(sk)}"
    assert cfg["hidden_dim"] == 2048 * width
    f64 = [r["layer"] for r in report["rows"] if r["dtype"] == "float64"]
    kernels = sum(k.endswith("/kernel") and k.startswith("base_model/") for k in variables)
    assert sum("/encoder/conv" in la for la in f64) == kernels
    assert sum("/encoder/bn" in la for la in f64) == sum(k.endswith("gamma") for k in variables) - 3
    assert _worst(report, "net/z") < 1e-10
    x = proof_batch("simclr-tf1", 2, SIZE)
    got, want = _features(out, framework, x), _reference(variables, x)
    assert got["net/h"].shape == (2, 2048 * width)
    for k in ("h", "z"):
        scale = np.abs(want[k]).max()
        assert np.allclose(got[f"net/{k}"], want[k], rtol=1e-4, atol=1e-5 * scale), k


# --- refused: what no encoder represents ---------------------------------------------------


def _stub(convs: int, stem: tuple) -> dict:
    """A checkpoint whose ResNet has ``convs`` conv kernels and that stem kernel shape: the
    variant is read off these before any other shape."""
    v = {"base_model/conv2d/kernel": np.zeros(stem, np.float32)}
    v.update({f"base_model/conv2d_{i}/kernel": np.zeros((1, 1, 1, 1), np.float32)
              for i in range(1, convs)})  # fmt: skip
    return v


@pytest.mark.parametrize(
    "variables,kw,message",
    [
        (_stub(53, (7, 7, 3, 320)), {}, "ResNet-50 5x: no encoder here has width 5x (1x to 4x)"),
        (_stub(203, (7, 7, 3, 64)), {}, "ResNet-200 1x: no encoder here has depth 200"),
        (_stub(337, (3, 3, 3, 32)), {}, "ResNet-200 1x with selective kernels: no encoder"),
        (_stub(20, (7, 7, 3, 64)), {}, "ResNet-18 1x: no encoder here has depth 18"),
        (_stub(53, (3, 3, 3, 128)), {}, "ResNet-50 2x with the CIFAR stem: no encoder"),
        (_stub(53, (7, 7, 3, 64)), {"ft_proj_selector": 1}, "expected 0 (h) to 0"),
        (_stub(53, (7, 7, 3, 64)), {"weights": "ema"}, "--weights ema: no variable under ema_"),
    ],
    ids=["width5x", "r200", "r200sk", "r18", "cifar2x", "selector", "ema-without-copy"],
)
def test_what_no_encoder_represents_is_one_line_exit_2(tmp_path, variables, kw, message, capsys):
    """Read off the conv count and the stem's shape, before any other variable; and the
    options the checkpoint cannot serve."""
    write_tf1(tmp_path / "model.ckpt-1", variables)
    code = import_official(tmp_path / "model.ckpt-1", "simclr-tf1", "torch", tmp_path / "run",
                           size=SIZE, in_process=True, **kw)  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "run").exists()


def test_simclr_options_with_a_moco_checkpoint_are_one_line_exit_2(tmp_path, capsys):
    """``--weights`` and ``--ft-proj-selector`` through ``rosetta import``: refused for MoCo
    before anything is read."""
    from shared.apps.cli import main as rosetta

    argv = ["import", str(tmp_path / "c.pth.tar"), "--format", "moco", "--to", "torch",
            "--out", str(tmp_path / "run")]  # fmt: skip
    for extra in (["--weights", "ema"], ["--ft-proj-selector", "1"]):
        assert rosetta([*argv, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [
            "error: weights, ft-proj-selector: expected only with --format simclr-tf1"
        ], err
    assert list(tmp_path.iterdir()) == []
