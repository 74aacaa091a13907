"""Weights that travel between the frameworks (``shared.parity.weights``).

Round trips torch -> TF -> torch and TF -> torch -> TF are bit-exact for both methods and
both encoders, and a ported model computes the same features in float64: in eval mode (running
statistics) and in train mode (batch statistics), to 1e-12 of their scale.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed")
tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed")

from shared.parity import weights as W  # noqa: E402
from tf_impl import weights as tw  # noqa: E402
from torch_impl import weights as pw  # noqa: E402

CASES = [(m, e) for m in ("simclr", "moco") for e in ("small_cnn", "resnet18_cifar")]
SMALL = dict(hidden_dim=16, proj_dim=8)


def _pair(method, encoder, dtype="float64"):
    from tf_impl.moco import MoCo as TM
    from tf_impl.simclr import SimCLR as TS
    from torch_impl.moco import MoCo as PM
    from torch_impl.simclr import SimCLR as PS

    extra = {"queue_size": 12} if method == "moco" else {}
    pt_cls, tf_cls = (PS, TS) if method == "simclr" else (PM, TM)
    return pt_cls(encoder=encoder, dtype=dtype, **SMALL, **extra), tf_cls(
        encoder=encoder, dtype=dtype, **SMALL, **extra
    )


def _equal(a: dict, b: dict):
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("method,encoder", CASES)
def test_round_trips_are_bit_exact(method, encoder):
    pt, tfm = _pair(method, encoder)
    for p in pt.parameters():  # non-trivial BN statistics and weights on both sides
        p.data.add_(torch.randn_like(p) * 0.01)
    start = pw.export_weights(pt)
    tw.import_weights(tfm, start)
    pw.import_weights(pt, tw.export_weights(tfm))
    _equal(start, pw.export_weights(pt))  # torch -> TF -> torch
    pt2, tf2 = _pair(method, encoder)
    start = tw.export_weights(tf2)
    pw.import_weights(pt2, start)
    tw.import_weights(tf2, pw.export_weights(pt2))
    _equal(start, tw.export_weights(tf2))  # TF -> torch -> TF


@pytest.mark.parametrize("method,encoder", CASES)
def test_ported_model_computes_the_same_features_float64(method, encoder):
    pt, tfm = _pair(method, encoder)
    tw.import_weights(tfm, pw.export_weights(pt))
    x = np.random.default_rng(0).random((4, 32, 32, 3))
    for training in (False, True):
        pt.train(training)
        h_pt = pt.backbone(torch.from_numpy(x).permute(0, 3, 1, 2)).detach().numpy()
        h_tf = tfm.backbone(tf.constant(x), training=training).numpy()
        scale = np.abs(h_pt).max()
        assert np.abs(h_pt - h_tf).max() <= 1e-12 * scale, (training, np.abs(h_pt - h_tf).max())


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


def test_port_a_torch_run_to_tensorflow_and_eval_it(tmp_path):
    """export-weights (torch) -> import-weights (TF) -> eval: the same kNN on both sides."""
    import json

    from shared.run.config import TrainConfig
    from tf_impl.__main__ import main as tf_main
    from torch_impl.__main__ import main as pt_main
    from torch_impl.train import train

    src, dst, npz = tmp_path / "src", tmp_path / "dst", str(tmp_path / "w.npz")
    cfg = TrainConfig(
        method="moco",
        epochs=1,
        batch_size=16,
        limit_train=48,
        queue_size=64,
        bn_splits=2,
        knn_every=0,
        run_dir=str(src),
        amp=False,
    )
    train(cfg, progress=False)
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
