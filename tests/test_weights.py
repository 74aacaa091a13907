"""Weights that travel between the frameworks (``shared.parity.weights``).

Round trips torch -> TF -> torch and TF -> torch -> TF are bit-exact for both methods and
both encoders, and a ported model computes the same features in float64: in eval mode (running
statistics) and in train mode (batch statistics), to 1e-12 of their scale. Three of the four
method x encoder cases run by default; MoCo with ResNet-18 runs with ``-m slow``.
"""

import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed")
tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed")

from shared.parity import weights as W  # noqa: E402
from tf_impl import weights as tw  # noqa: E402
from torch_impl import weights as pw  # noqa: E402

# moco x resnet18_cifar is slow-marked: simclr x resnet18_cifar walks the same ResNet layers
# and moco x small_cnn MoCo's key encoder and queue (the walk takes each part on its own).
CASES = [
    ("simclr", "small_cnn"),
    ("simclr", "resnet18_cifar"),
    ("moco", "small_cnn"),
    pytest.param("moco", "resnet18_cifar", marks=pytest.mark.slow),
]
SMALL = dict(hidden_dim=16, proj_dim=8)


def _pair(method, encoder, dtype="float64", **kw):
    from tf_impl.moco import MoCo as TM
    from tf_impl.simclr import SimCLR as TS
    from torch_impl.moco import MoCo as PM
    from torch_impl.simclr import SimCLR as PS

    extra = {"queue_size": 12, **kw} if method == "moco" else kw
    pt_cls, tf_cls = (PS, TS) if method == "simclr" else (PM, TM)
    return pt_cls(encoder=encoder, dtype=dtype, **SMALL, **extra), tf_cls(
        encoder=encoder, dtype=dtype, **SMALL, **extra
    )


@pytest.fixture(scope="module")
def shared_pair():
    """``shared_pair(method, encoder)``: one pair per case for this module's round-trip and
    feature tests (a ResNet-18 pair takes seconds to build); each test sets every weight it
    reads before reading it."""
    return functools.cache(_pair)


def _equal(a: dict, b: dict):
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("method,encoder", CASES)
def test_round_trips_are_bit_exact(method, encoder, shared_pair):
    """torch -> TF -> torch, then TF -> torch -> TF, array for array. The moco-resnet18_cifar
    case is slow: [simclr-resnet18_cifar] and [moco-small_cnn] cover its two halves."""
    pt, tfm = shared_pair(method, encoder)
    for p in pt.parameters():  # non-trivial weights on the torch side
        p.data.add_(torch.randn_like(p) * 0.01)
    start = pw.export_weights(pt)
    tw.import_weights(tfm, start)
    pw.import_weights(pt, tw.export_weights(tfm))
    _equal(start, pw.export_weights(pt))  # torch -> TF -> torch
    rng = np.random.default_rng(0)
    for _, v in tw.entries(tfm):  # values of TF's own: every weight, BN statistics included
        v.assign_add(rng.standard_normal(v.shape) * 0.01)
    start = tw.export_weights(tfm)
    pw.import_weights(pt, start)
    tw.import_weights(tfm, pw.export_weights(pt))
    _equal(start, tw.export_weights(tfm))  # TF -> torch -> TF


@pytest.mark.parametrize("method,encoder", CASES)
def test_ported_model_computes_the_same_features_float64(method, encoder, shared_pair):
    """Eval and train mode, to 1e-12 of the features' scale. The moco-resnet18_cifar case is
    slow: [simclr-resnet18_cifar] and [moco-small_cnn] cover its two halves."""
    pt, tfm = shared_pair(method, encoder)
    tw.import_weights(tfm, pw.export_weights(pt))
    x = np.random.default_rng(0).random((4, 32, 32, 3))
    for training in (False, True):
        pt.train(training)
        h_pt = pt.backbone(torch.from_numpy(x).permute(0, 3, 1, 2)).detach().numpy()
        h_tf = tfm.backbone(tf.constant(x), training=training).numpy()
        scale = np.abs(h_pt).max()
        assert np.abs(h_pt - h_tf).max() <= 1e-12 * scale, (training, np.abs(h_pt - h_tf).max())


@pytest.mark.parametrize("method", ["simclr", "moco"])
def test_a_head_without_bn_is_moco_v2s_head_in_both_frameworks(method):
    """``head_bn=False``: Linear(bias)-ReLU-Linear in both frameworks (no BatchNorm in the
    head), its weights port, and in train mode z equals the NumPy
    ``z = relu(h W1 + b1) W2 + b2`` to 1e-12 of its scale, in float64."""
    pt, tfm = _pair(method, "small_cnn", head_bn=False)
    for p in pt.parameters():  # non-zero biases too
        p.data.add_(torch.randn_like(p) * 0.1)
    state = pw.export_weights(pt)
    part = "net" if method == "simclr" else "encoder_q"
    head = sorted(k for k in state if k.startswith(f"{part}/head/"))
    assert head == [f"{part}/head/dense{i}/{r}" for i in (0, 1) for r in ("bias", "kernel")]
    tw.import_weights(tfm, state)
    x = np.random.default_rng(1).random((4, 32, 32, 3))
    pt.train()
    net_pt, net_tf = getattr(pt, part), getattr(tfm, part)
    h, z_pt = (t.detach().numpy() for t in net_pt(torch.from_numpy(x).permute(0, 3, 1, 2)))
    z_tf = net_tf(tf.constant(x), training=True)[1].numpy()
    w = {k.rsplit("/head/", 1)[1]: v for k, v in state.items() if k in head}
    hidden = np.maximum(h @ w["dense0/kernel"] + w["dense0/bias"], 0.0)
    want = hidden @ w["dense1/kernel"] + w["dense1/bias"]
    scale = np.abs(want).max()
    assert np.abs(z_pt - want).max() <= 1e-12 * scale
    assert np.abs(z_tf - want).max() <= 1e-12 * scale


def test_bad_state_is_named_and_format_is_checked(tmp_path):
    pt, tfm = _pair("moco", "small_cnn")
    state = pw.export_weights(pt)
    with pytest.raises(W.WeightsError, match="missing \\['queue'\\]"):
        tw.import_weights(tfm, {k: v for k, v in state.items() if k != "queue"})
    bad = dict(state, **{"encoder_q/head/dense0/kernel": np.zeros((3, 3))})
    with pytest.raises(W.WeightsError, match="encoder_q/head/dense0/kernel has shape \\(3, 3\\)"):
        pw.import_weights(pt, bad)
    simclr, _ = _pair("simclr", "small_cnn")
    with pytest.raises(W.WeightsError, match="another method, encoder or head size"):
        pw.import_weights(simclr, state)
    path = W.save_weights(
        tmp_path / "w.npz", state, {"method": "moco", "encoder": "small_cnn", "framework": "torch"}
    )
    loaded, meta = W.load_weights(path)
    _equal(state, loaded)
    assert meta["format"] == W.FORMAT and meta["framework"] == "torch"
    np.savez(tmp_path / "old.npz", __meta__='{"format": "rosetta.weights/v0"}', queue=np.zeros(2))
    with pytest.raises(W.WeightsError, match="format 'rosetta.weights/v0'; this version reads"):
        W.load_weights(tmp_path / "old.npz")


def test_port_a_torch_run_to_tensorflow_and_eval_it(tmp_path, trained_run, small_eval, capsys):
    """export-weights (torch) -> import-weights (TF) -> eval: the same kNN on both sides (the
    session's one-epoch torch MoCo run, shared with test_methods; ``small_eval``); and the
    localiser, given the two run directories, finds every layer within float32 tolerance."""
    import json

    from shared.run.config import TrainConfig
    from tf_impl.__main__ import main as tf_main
    from torch_impl.__main__ import main as pt_main

    dst, npz = tmp_path / "dst", str(tmp_path / "w.npz")
    cfg = TrainConfig(
        method="moco",
        epochs=1,
        batch_size=16,
        limit_train=48,
        knn_every=0,
        warmup_epochs=1,
        queue_size=20,
        bn_splits=2,
        amp=False,
        run_dir=str(tmp_path / "src"),
    )
    src = trained_run("torch", cfg)
    assert pt_main(["export-weights", "--run-dir", str(src), "--out", npz]) == 0
    args = [
        "import-weights",
        "--weights",
        npz,
        "--config",
        str(src / "config.json"),
        "--out",
        str(dst),
    ]
    assert tf_main(args) == 0
    assert tf_main(args) == 2  # refuses to overwrite a run
    assert json.loads((dst / "config.json").read_text())["framework"] == "tensorflow"
    assert (
        pt_main(["eval", "--run-dir", str(src)]) == 0
        and tf_main(["eval", "--run-dir", str(dst)]) == 0
    )
    a, b = (json.loads((d / "eval.json").read_text())["moco"]["knn_top1"] for d in (src, dst))
    assert a == b
    from shared.apps.localise_cmd import main as localise

    capsys.readouterr()
    assert localise(["--runs", str(src), str(dst)]) == 0
    assert "PASS:" in capsys.readouterr().out
