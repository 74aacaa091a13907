"""``rosetta import``: official MoCo and SimCLR checkpoints, written here in their official layouts
from random weights, imported into both frameworks and proven layer by layer.

The MoCo checkpoint is what ``main_moco.py`` saves (``{"epoch", "arch", "state_dict",
"optimizer"}``, a DDP ``moco/builder.py`` MoCo's ``state_dict``: ``module.encoder_q.*``, ...);
the SimCLR one a TF1 checkpoint whose variables are named as ``resnet.py`` and
``model_util.py`` create them, with EMA shadows, LARS slots, ``global_step`` and a supervised
head. The expected features come from torchvision (MoCo) and from the import's own
``tf.nn`` reference, written from the official code (SimCLR). SimCLR's other variants (EMA
copies, no head, fine-tuned heads, selective kernels, widths, depths):
``tests/test_import_variants.py``.
"""

import json

import numpy as np
import pytest
import torch
import torchvision

from shared.apps.import_cmd import import_official
from shared.apps.import_stages import proof_batch

SIZE = 32  # tiny proof images: ResNet-50 on 2 images of 32 px is a fraction of a second


def _randomise_bn(net: torch.nn.Module, gen: torch.Generator) -> None:
    """Non-trivial BN statistics and affine parameters (fresh BN is the identity)."""
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = 0.5 + torch.rand(c, generator=gen)
            m.bias.data = 0.1 * torch.randn(c, generator=gen)
            m.running_mean.data = 0.1 * torch.randn(c, generator=gen)
            m.running_var.data = 0.5 + torch.rand(c, generator=gen)
            m.num_batches_tracked.fill_(7)


def _moco_net(version: str, dim: int, seed: int) -> torch.nn.Module:
    """One encoder as moco/builder.py builds it: resnet50(num_classes=dim), v2 with the MLP."""
    torch.manual_seed(seed)
    net = torchvision.models.resnet50(weights=None, num_classes=dim)
    if version == "v2":
        net.fc = torch.nn.Sequential(torch.nn.Linear(2048, 2048), torch.nn.ReLU(), net.fc)
    _randomise_bn(net, torch.Generator().manual_seed(seed))
    return net.eval()


def write_moco(path, version="v2", dim=128, k=256, arch="resnet50") -> dict:
    """An official MoCo checkpoint at ``path``; returns its two nets and its queue."""
    nets = {"encoder_q": _moco_net(version, dim, 1), "encoder_k": _moco_net(version, dim, 2)}
    sd = {}
    for part, net in nets.items():
        sd.update({f"module.{part}.{n}": t for n, t in net.state_dict().items()})
    queue = torch.nn.functional.normalize(torch.randn(dim, k, generator=torch.Generator()), dim=0)
    sd["module.queue"], sd["module.queue_ptr"] = queue, torch.tensor([64])
    params = list(nets["encoder_q"].parameters())
    opt = torch.optim.SGD(params, lr=0.03, momentum=0.9)
    opt.state[params[0]]["momentum_buffer"] = torch.zeros_like(params[0])
    torch.save({"epoch": 200, "arch": arch, "state_dict": sd, "optimizer": opt.state_dict()}, path)
    return {"nets": nets, "queue": queue.numpy(), "sd": sd}


def _features(run_dir, framework: str, images: np.ndarray) -> dict:
    """``{part: z}`` of an imported run, loaded as ``eval`` loads it, on NHWC ``images``."""
    from shared.run.config import PACKAGES

    pkg = PACKAGES[framework]
    methods = __import__(f"{pkg}.methods", fromlist=["x"])
    official = __import__(f"{pkg}.official", fromlist=["x"])
    model, _ = methods.load_trained(run_dir)
    outs = official.layer_outputs(model, images.astype(np.float32))
    return {k: v for k, v in outs.items() if k.endswith("/z") or k.endswith("/h")}


@pytest.mark.parametrize(
    "framework", ["torch", pytest.param("tensorflow", marks=pytest.mark.slow)]
)  # the TF target's path: the SimCLR test into tensorflow
def test_moco_v2_imports_and_matches_torchvision(tmp_path, framework, capsys):
    ck = write_moco(tmp_path / "checkpoint_0199.pth.tar")
    out = tmp_path / "run"
    code = import_official(
        tmp_path / "checkpoint_0199.pth.tar", "moco", framework, out, size=SIZE, in_process=True
    )
    assert code == 0, capsys.readouterr()
    report = json.loads((out / "import_report.json").read_text())
    assert report["verdict"].startswith("PASS")
    f64 = [r for r in report["rows"] if r["dtype"] == "float64"]
    assert len(f64) == 2 * (53 + 53 + 2 + 2)  # per encoder: 53 convs, 53 BNs, 2 head layers, h, z
    assert max(r["max_rel"] for r in f64 if r["layer"].endswith("/z")) < 1e-10
    x = proof_batch("moco", 2, SIZE)
    got = _features(out, framework, x)
    with torch.no_grad():
        for part, net in ck["nets"].items():
            want = net(torch.from_numpy(np.transpose(x, (0, 3, 1, 2))).float()).numpy()
            assert np.allclose(got[f"{part}/z"], want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    if framework == "torch":
        _head_is_builders_head_in_training_too(out, ck)


def _head_is_builders_head_in_training_too(out, ck) -> None:
    """The v2 MLP head imports layer for layer (``head_bn`` off: Linear(bias)-ReLU-Linear), so
    the imported head in training mode computes what builder.py's ``fc`` computes."""
    from torch_impl.methods import load_trained

    model, cfg = load_trained(out)
    assert (cfg.head_layers, cfg.head_bn) == (2, False)
    head, ref = model.encoder_q.head.train(), ck["nets"]["encoder_q"].fc.train()
    assert not [m for m in head.modules() if isinstance(m, torch.nn.modules.batchnorm._NormBase)]
    h = torch.randn(8, 2048, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        got, want = head(h), ref(h)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6 * want.abs().max().item())
    assert "inference only: nothing" in (out / "import_report.md").read_text()


# --- SimCLR TF1 ------------------------------------------------------------------------


def simclr_variables(layers=3, classes=10, seed=0, extras=True) -> dict:
    """The variables of an official SimCLR checkpoint, named as ``tf.layers`` names them while
    ``resnet.py`` builds a ResNet-50 1x (stem, then per block: projection first, three convs)
    and ``model_util.py`` the heads; with LARS ``Momentum`` slots, EMA shadows and global_step.
    The other variants (selective kernels, widths, depths, EMA copies, no head):
    tests/test_import_variants.py."""
    rng = np.random.default_rng(seed)
    v, count = {}, {}

    def normal(std, shape):
        return rng.normal(0, std, shape)

    def auto(base):
        i = count[base] = count.get(base, -1) + 1
        return f"base_model/{base}" + (f"_{i}" if i else "")

    def bn(c, scope=None, center=True):
        scope = scope or auto("batch_normalization")
        v[f"{scope}/gamma"] = 0.5 + rng.random(c)
        if center:
            v[f"{scope}/beta"] = 0.1 * rng.standard_normal(c)
        v[f"{scope}/moving_mean"] = 0.1 * rng.standard_normal(c)
        v[f"{scope}/moving_variance"] = 0.5 + rng.random(c)

    def conv(k, cin, cout):
        v[f"{auto('conv2d')}/kernel"] = normal(np.sqrt(2 / (k * k * cin)), (k, k, cin, cout))
        bn(cout)

    w = 64
    conv(7, 3, w)
    cin = w
    for n, f in zip((3, 4, 6, 3), (w, 2 * w, 4 * w, 8 * w)):
        for b in range(n):
            if b == 0:
                conv(1, cin, 4 * f)
            conv(1, cin, f)
            conv(3, f, f)
            conv(1, f, 4 * f)
            cin = 4 * f
    for j in range(layers):
        last = j == layers - 1
        dim = 128 if last else cin
        v[f"head_contrastive/nl_{j}/dense/kernel"] = rng.normal(0, cin**-0.5, (cin, dim))
        bn(dim, f"head_contrastive/nl_{j}/batch_normalization", center=not last)
    v["head_supervised/linear_layer/dense/kernel"] = rng.normal(0, 0.01, (cin, classes))
    v["head_supervised/linear_layer/dense/bias"] = rng.normal(0, 0.01, classes)
    v = {k: a.astype(np.float32, copy=False) for k, a in v.items()}
    if not extras:
        return v
    extra = {f"{k}/ExponentialMovingAverage": a for k, a in v.items()}
    extra.update({f"{k}/Momentum": 0 * a for k, a in v.items() if "moving_" not in k})
    return {**v, **extra, "global_step": np.asarray(1000, np.int64)}


def write_tf1(prefix, variables: dict) -> None:
    """A TF1 name-based checkpoint (``.index`` + ``.data``), as tf.train.Saver writes one."""
    import tensorflow as tf

    names = sorted(variables)
    tf.raw_ops.SaveV2(
        prefix=str(prefix),
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(variables[n]) for n in names],
    )


def _head_numpy(h: np.ndarray, v: dict, layers: int) -> np.ndarray:
    """model_util.py's projection head at inference, in NumPy, from the raw variables."""
    z = h.astype(np.float64)
    for j in range(layers):
        p = f"head_contrastive/nl_{j}"
        z = z @ v[f"{p}/dense/kernel"]
        bn = {r: v.get(f"{p}/batch_normalization/{r}", 0.0) for r in ("gamma", "beta")}
        mean, var = (v[f"{p}/batch_normalization/moving_{r}"] for r in ("mean", "variance"))
        z = bn["gamma"] * (z - mean) / np.sqrt(var + 1e-5) + bn["beta"]
        z = z if j == layers - 1 else np.maximum(z, 0)
    return z


@pytest.mark.parametrize("framework,layers", [("torch", 3), ("tensorflow", 2)])
def test_simclr_tf1_imports_and_matches_the_official_forward(tmp_path, framework, layers, capsys):
    variables = simclr_variables(layers=layers)
    write_tf1(tmp_path / "model.ckpt-1000", variables)
    out = tmp_path / "run"
    code = import_official(
        tmp_path / "model.ckpt-1000", "simclr-tf1", framework, out, size=SIZE, in_process=True
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    report = json.loads((out / "import_report.json").read_text())
    assert report["verdict"].startswith("PASS")
    assert report["source"]["skipped"] == {
        "EMA shadows (ExponentialMovingAverage)": sum(k.endswith("Average") for k in variables),
        "optimiser slots (Momentum / LARS momentum)": sum(
            k.endswith("Momentum") for k in variables
        ),
        "global_step": 1,
    }
    assert "RGB in [0, 1], no mean/std normalisation" in printed
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["encoder"], cfg["head_layers"]) == ("resnet50_samepool", layers)
    sup = np.load(out / "supervised_head.npz")
    assert np.array_equal(sup["kernel"], variables["head_supervised/linear_layer/dense/kernel"])
    got = _features(out, framework, proof_batch("simclr-tf1", 2, SIZE))
    want = _head_numpy(got["net/h"], variables, layers)  # the folded head against the raw one
    assert np.allclose(got["net/z"], want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda v: {**v, "base_model/extra/kernel": v["global_step"]}, "unknown variable"),
        (lambda v: {k: a for k, a in v.items() if k != "base_model/conv2d_7/kernel"}, "missing"),
        (
            lambda v: {**v, "base_model/batch_normalization_3/gamma": np.ones(3, np.float32)},
            "has shape (3,), expected (64,)",
        ),
    ],
    ids=["unknown", "missing", "shape"],
)
def test_bad_simclr_checkpoints_are_one_line_exit_2_and_no_run(tmp_path, change, message, capsys):
    write_tf1(tmp_path / "model.ckpt-1", change(simclr_variables(layers=2)))
    code = import_official(tmp_path / "model.ckpt-1", "simclr-tf1", "torch", tmp_path / "run",
                           size=SIZE, in_process=True)  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.ckpt-1.data-00000-of-00001",
                                                          "model.ckpt-1.index"]  # fmt: skip


def test_bad_moco_checkpoints_are_one_line_exit_2(tmp_path, capsys):
    write_moco(tmp_path / "c.pth.tar", version="v1", arch="resnet101")
    code = import_official(tmp_path / "c.pth.tar", "moco", "torch", tmp_path / "run",
                           size=SIZE, in_process=True)  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [
        "error: checkpoint: arch 'resnet101' is not supported (resnet50 only)"
    ]
    assert not (tmp_path / "run").exists()


def test_moco_v1_imports_with_its_one_linear_head(tmp_path):
    """v1 (``fc`` = one Linear): head_layers 1; the proof passes and the run's config loads."""
    from shared.run.config import load_config

    write_moco(tmp_path / "c.pth.tar", version="v1")
    assert import_official(tmp_path / "c.pth.tar", "moco", "torch", tmp_path / "run",
                           size=SIZE, in_process=True) == 0  # fmt: skip
    cfg = load_config(tmp_path / "run")
    assert (cfg.encoder, cfg.head_layers, cfg.queue_size) == ("resnet50", 1, 256)


# slow: every import's proof already loads the run with ``methods.load_trained``, as ``eval``
# does (``shared.apps.import_stages.target``), and eval of a run written by ``import-weights`` is
# tests/test_weights.py::test_port_a_torch_run_to_tensorflow_and_eval_it
@pytest.mark.slow
def test_moco_v1_import_is_a_run_that_eval_accepts(tmp_path, small_eval, capsys):
    """v1 (one Linear head): ``eval`` reads the imported run (its config, its checkpoint)."""
    from torch_impl.__main__ import main as torch_main

    write_moco(tmp_path / "c.pth.tar", version="v1")
    assert import_official(tmp_path / "c.pth.tar", "moco", "torch", tmp_path / "run",
                           size=SIZE, in_process=True) == 0  # fmt: skip
    assert torch_main(["eval", "--run-dir", str(tmp_path / "run")]) == 0
    res = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert set(res) == {"moco", "random_init", "raw_pixels"}


@pytest.mark.slow  # two framework processes; port itself: tests/test_weights.py::test_port_a_torch_run_to_tensorflow_and_eval_it
def test_an_imported_run_ports_to_the_other_framework(tmp_path):
    from shared.apps.port import main as port

    write_moco(tmp_path / "c.pth.tar", version="v1")
    assert import_official(tmp_path / "c.pth.tar", "moco", "torch", tmp_path / "run",
                           size=SIZE, in_process=True) == 0  # fmt: skip
    out = tmp_path / "ported"
    assert port([str(tmp_path / "run"), "--to", "tensorflow", "--out", str(out)]) == 0
    x = proof_batch("moco", 2, SIZE)
    a, b = _features(tmp_path / "run", "torch", x), _features(out, "tensorflow", x)
    for k in a:
        assert np.allclose(b[k], a[k], rtol=1e-4, atol=1e-5 * np.abs(a[k]).max()), k


def test_a_failed_proof_names_the_first_layer_and_writes_no_run(tmp_path, monkeypatch, capsys):
    """Mapped to torchvision's max-pool (padding 1) instead of the official "SAME" one, the
    proof fails at the first layer after the pool, layer1.0.conv1 (canonical conv1)."""
    from shared.run import simclr_tf1

    real = simclr_tf1.simclr_config
    monkeypatch.setattr(
        simclr_tf1, "simclr_config", lambda info: {**real(info), "encoder": "resnet50"}
    )
    write_tf1(tmp_path / "model.ckpt-1", simclr_variables(layers=2, extras=False))
    code = import_official(tmp_path / "model.ckpt-1", "simclr-tf1", "torch", tmp_path / "run",
                           size=SIZE, in_process=True)  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and "first over tolerance: net/encoder/conv1 forward/float32" in err[-1], err
    assert not (tmp_path / "run").exists()
