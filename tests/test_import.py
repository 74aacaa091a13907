"""``rosetta import``: official MoCo and SimCLR checkpoints, written here in their official layouts
from random weights, imported into both frameworks and proven layer by layer.

The MoCo checkpoint is what ``main_moco.py`` saves (``{"epoch", "arch", "state_dict",
"optimizer"}``, a DDP ``moco/builder.py`` MoCo's ``state_dict``: ``module.encoder_q.*``, ...);
the SimCLR one a TF1 checkpoint whose variables are named as ``resnet.py`` and
``model_util.py`` create them, with EMA shadows, LARS slots, ``global_step`` and a supervised
head. The expected features come from torchvision (MoCo) and from the import's own
``tf.nn`` reference, written from the official code (SimCLR).
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


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
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
    assert (
        len(f64) == 2 * (53 + 53 + 3 + 2)
        and max(r["max_rel"] for r in f64 if r["layer"].endswith("/z")) < 1e-10
    )
    x = proof_batch("moco", 2, SIZE)
    got = _features(out, framework, x)
    with torch.no_grad():
        for part, net in ck["nets"].items():
            want = net(torch.from_numpy(np.transpose(x, (0, 3, 1, 2))).float()).numpy()
            assert np.allclose(got[f"{part}/z"], want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    from shared.parity.weights import load_weights  # noqa: F401
