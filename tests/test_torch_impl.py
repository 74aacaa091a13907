"""torch_impl: losses vs goldens and autograd vs analytic gradients, augmentation, models,
training, resume, checkpoints, data and evaluation."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed")

from shared.parity import golden  # noqa: E402
from shared.run.data import Split  # noqa: E402
from torch_impl import losses  # noqa: E402
from torch_impl.parity import golden_outputs  # noqa: E402


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_losses_and_autograd_match_goldens(dtype):
    from shared.apps.parity_cmd import compare_outputs, summarize, to_markdown

    rows = compare_outputs(golden.expected_outputs(), golden_outputs(dtype), dtype, "torch")
    assert all(r["passed"] for r in rows), to_markdown(summarize(rows))


@pytest.mark.parametrize("amp_dtype", [torch.bfloat16])
def test_autocast_keeps_logits_in_float32(amp_dtype):
    from shared.oracle.losses import nt_xent as ref
    from shared.parity.tolerances import tolerance

    rng = np.random.default_rng(0)
    z1, z2 = rng.standard_normal((64, 32)), rng.standard_normal((64, 32))
    lin = torch.nn.Linear(32, 32)
    torch.nn.init.eye_(lin.weight)
    torch.nn.init.zeros_(lin.bias)
    with torch.autocast("cpu", dtype=amp_dtype):
        a, b = (
            lin(torch.tensor(z1, dtype=torch.float32)),
            lin(torch.tensor(z2, dtype=torch.float32)),
        )
        assert a.dtype == amp_dtype  # the inputs really are half precision
        val = losses.nt_xent(a, b, 0.05)
    assert val.dtype == torch.float32 and torch.isfinite(val)
    tol = tolerance("loss", "bfloat16")
    want = ref(z1, z2, 0.05)
    assert abs(val.item() - want) <= tol.atol * (1 / 0.05) + tol.rtol * want


def test_collapsed_closed_forms():
    z = torch.ones(6, 4)
    assert losses.nt_xent(z, z, 0.3).item() == pytest.approx(math.log(11), rel=1e-6)
    assert losses.info_nce(z, z, torch.ones(9, 4), 0.07).item() == pytest.approx(
        math.log(10), rel=1e-6
    )


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: losses.nt_xent(torch.ones(4, 3), torch.ones(4, 3), 0.0), "temperature"),
        (
            lambda: losses.nt_xent(torch.ones(1, 3), torch.ones(1, 3), 0.5),
            "z1: expected at least 2 rows",
        ),
        (
            lambda: losses.nt_xent(torch.ones(4, 3), torch.ones(5, 3), 0.5),
            "z2: expected the same shape",
        ),
        (lambda: losses.nt_xent(torch.ones(4), torch.ones(4), 0.5), "z1: expected a 2-D tensor"),
        (
            lambda: losses.info_nce(torch.ones(2, 3), torch.ones(2, 3), torch.ones(0, 3), 0.1),
            "queue: expected at least 1",
        ),
        (
            lambda: losses.info_nce(torch.ones(2, 3), torch.ones(2, 3), torch.ones(4, 5), 0.1),
            r"queue: expected shape \(K, 3\)",
        ),
        (
            lambda: losses.nt_xent(torch.ones(4, 3, dtype=torch.long), torch.ones(4, 3), 0.5),
            "floating-point",
        ),
    ],
)
def test_loss_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_augmentation_shapes_range_views_differ_and_seeded():
    from torch_impl.augment import TwoViews, simclr_augment

    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    two = TwoViews(simclr_augment(32))
    torch.manual_seed(0)
    a1, a2 = two(img)
    torch.manual_seed(0)
    b1, b2 = two(img)
    assert a1.shape == (3, 32, 32) and a1.dtype == torch.float32
    assert 0 <= a1.min() and a1.max() <= 1
    assert not torch.equal(a1, a2)
    assert torch.equal(a1, b1) and torch.equal(a2, b2)
    big = simclr_augment(96)
    assert any(
        type(t).__name__ == "RandomApply" and "GaussianBlur" in repr(t) for t in big.transforms
    )
    assert not any("GaussianBlur" in repr(t) for t in simclr_augment(32).transforms)
    with pytest.raises(ValueError, match="scale"):
        simclr_augment(32, scale=(0.5, 0.2))


@pytest.mark.parametrize("name,size,feat", [("small_cnn", 32, 256), ("resnet18_cifar", 32, 512)])
def test_model_shapes(name, size, feat):
    from torch_impl.simclr import SimCLR

    m = SimCLR(encoder=name)
    x = torch.rand(2, 3, size, size)
    h1, h2, z1, z2 = m(x, x)
    assert h1.shape == (2, feat) and z2.shape == (2, 128)


def _pool_order_inputs():
    """Random images whose left halves are constant: constant regions make exact ties inside
    pooling windows, positive and negative, where the two orders could route differently."""
    x = np.random.default_rng(0).random((4, 32, 32, 3))
    x[:, :, :16] = 0.5
    return x


def test_small_cnn_pool_then_relu_equals_relu_then_pool_bit_for_bit():
    """SmallCNN pools before its ReLU (faster); the textbook order must give the same h and the
    same gradients, exactly."""
    from torch_impl.models import SmallCNN

    torch.manual_seed(0)
    net = SmallCNN().train()
    mods = list(net.features)
    assert [type(m).__name__ for m in mods[:5]] == [
        "Conv2d",
        "BatchNorm2d",
        "MaxPool2d",
        "ReLU",
        "Conv2d",
    ]

    def textbook(x):  # conv-BN-ReLU-pool
        for m in mods:
            if isinstance(m, torch.nn.MaxPool2d):
                continue
            x = m(x)
            if isinstance(m, torch.nn.ReLU) and x.shape[-1] > 4:
                x = torch.nn.functional.max_pool2d(x, 2)
        return x.mean(dim=(2, 3))

    outs = []
    for f in (net, textbook):
        x = torch.tensor(_pool_order_inputs()).permute(0, 3, 1, 2).float().requires_grad_()
        net.zero_grad()
        h = f(x)
        (h * torch.linspace(-1, 1, h.shape[1])).sum().backward()
        outs.append([h.detach(), x.grad, *[p.grad.clone() for p in net.parameters()]])
    for a, b in zip(*outs):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_resnet50_shapes():
    from torch_impl.simclr import SimCLR

    h1, _, z1, _ = SimCLR(encoder="resnet50_cifar")(
        torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    )
    assert h1.shape == (2, 2048) and z1.shape == (2, 128)


def test_model_bad_views():
    from torch_impl.simclr import SimCLR

    m = SimCLR()
    with pytest.raises(ValueError, match="batch of at least 2"):
        m(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="x2: expected the same shape"):
        m(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match=r"x1: expected square images of at least 8x8"):
        m(torch.rand(2, 3, 64, 48), torch.rand(2, 3, 64, 48))
    assert m(torch.rand(2, 3, 96, 96), torch.rand(2, 3, 96, 96))[0].shape == (2, 256)  # STL-10 size


def test_momentum_and_queue_match_numpy_reference():
    from shared.oracle import queue as ref
    from torch_impl.moco import dequeue_and_enqueue, momentum_update

    q = torch.nn.Linear(3, 2)
    k = torch.nn.Linear(3, 2)
    kw = [p.detach().numpy().copy() for p in k.parameters()]
    momentum_update(q, k, 0.9)
    for p, old, new in zip(q.parameters(), kw, k.parameters()):
        np.testing.assert_allclose(
            new.detach().numpy(), ref.ema(old, p.detach().numpy(), 0.9), rtol=1e-6
        )
    buf, ptr = torch.zeros(5, 2), torch.zeros((), dtype=torch.long)
    rq, rp = np.zeros((5, 2), np.float32), 0
    for b in (2, 3, 4, 7, 1):
        keys = torch.randn(b, 2)
        dequeue_and_enqueue(buf, ptr, keys)
        rq, rp = ref.dequeue_and_enqueue(rq, rp, keys.numpy())
        assert int(ptr) == rp and np.array_equal(buf.numpy(), rq)


def _cfg(tmp_path, **kw):
    from shared.run.config import TrainConfig

    base = dict(
        epochs=2,
        batch_size=32,
        limit_train=96,
        run_dir=str(tmp_path / "run"),
        knn_every=0,
        warmup_epochs=1,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_short_run_lowers_loss_and_writes_schema(tmp_path):
    import json

    from torch_impl.train import train

    # the kNN monitor (it embeds every image) runs once, after the last epoch
    train(_cfg(tmp_path, epochs=4, limit_train=128, optimizer="adam", knn_every=4), progress=False)
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["schema"] == "rosetta.metrics/v1" and m["framework"] == "torch"
    losses_ = [e["loss"] for e in m["epochs"]]
    assert losses_[-1] < losses_[0]
    assert [e["knn_top1"] is not None for e in m["epochs"]] == [False, False, False, True]
    assert (tmp_path / "run" / "config.json").exists()


def test_resume_is_exact(tmp_path):
    from torch_impl.train import train

    straight = train(_cfg(tmp_path / "a"), progress=False)["model"].state_dict()
    train(_cfg(tmp_path / "b", epochs=1), progress=False)
    resumed = train(_cfg(tmp_path / "b", resume=True), progress=False)["model"].state_dict()
    for k in straight:
        assert torch.equal(straight[k], resumed[k]), k


def test_corrupt_checkpoint_gives_clear_error_and_keeps_previous(tmp_path):
    from torch_impl.checkpoint import CheckpointError, list_checkpoints
    from torch_impl.train import train

    train(_cfg(tmp_path), progress=False)
    ckpts = list_checkpoints(tmp_path / "run")
    assert [p.name for p in ckpts] == ["ckpt-0001.pt", "ckpt-0002.pt"]
    ckpts[-1].write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"ckpt-0002.pt is corrupt or unreadable"):
        train(_cfg(tmp_path, epochs=3, resume=True), progress=False)
    assert ckpts[0].exists()


def test_bad_config(tmp_path):
    from torch_impl.train import train

    with pytest.raises(ValueError, match="temperature"):
        train(_cfg(tmp_path, temperature=-1), progress=False)
    with pytest.raises(ValueError, match="batch_size: expected >= 2"):
        train(_cfg(tmp_path, batch_size=1), progress=False)


def test_missing_dataset_and_image_folder(tmp_path):
    from PIL import Image

    from torch_impl.data import DatasetNotFound, load_split

    with pytest.raises(DatasetNotFound, match="cifar10.*--download"):
        load_split("cifar10", root=str(tmp_path))
    for i in range(3):
        Image.fromarray(np.full((40, 40, 3), 50 * i, np.uint8)).save(tmp_path / f"im{i}.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8garbage")
    split = load_split(f"folder:{tmp_path}", image_size=32)
    assert split.images.shape == (3, 32, 32, 3) and (split.labels == -1).all()


def test_cli_missing_dataset_is_one_clean_line(capsys, tmp_path):
    from torch_impl.__main__ import main

    assert (
        main(
            [
                "train",
                "--dataset",
                "stl10",
                "--root",
                str(tmp_path),
                "--epochs",
                "1",
                "--run-dir",
                str(tmp_path / "run"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error: dataset 'stl10' was not found") and "Traceback" not in err


def test_random_init_baseline_and_linear_eval_sanity(tmp_path):
    from torch_impl.evaluate import linear_eval, random_init_baseline
    from torch_impl.models import build_encoder

    rng = np.random.default_rng(0)
    tr = Split(rng.integers(0, 256, (60, 32, 32, 3), dtype=np.uint8), np.arange(60) % 3)
    te = Split(rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8), np.arange(30) % 3)
    base = random_init_baseline("small_cnn", tr, te)
    assert 0 <= base["knn_top1"] <= 1 and 0 <= base["linear_top1"] <= 1
    enc = build_encoder("small_cnn")
    enc.train()
    enc(torch.rand(8, 3, 32, 32))  # give BN non-default statistics
    out = linear_eval(enc, tr, te, epochs=1)  # raises if the frozen encoder changed
    assert 0 <= out["linear_eval_top1"] <= 1


def test_batch_augment_shapes_seeding_and_ops_match_torchvision():
    from torchvision.transforms.v2 import functional as TF

    from torch_impl.augment import BatchAugment

    imgs = torch.from_numpy(
        np.random.default_rng(1).integers(0, 256, (6, 3, 40, 40), dtype=np.uint8)
    )
    aug = BatchAugment(32, (0.3, 1.0), 0.5)
    torch.manual_seed(0)
    a = aug(imgs)
    torch.manual_seed(0)
    b = aug(imgs)
    assert a.shape == (6, 3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b) and 0 <= a.min() and a.max() <= 1
    assert not torch.equal(a, aug(imgs))  # a fresh draw differs
    # each jitter op equals torchvision's on the same factor
    x = torch.rand(3, 3, 8, 8)
    f = torch.tensor([0.7, 1.0, 1.3])
    for op, fn in enumerate([TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation]):
        want = torch.stack([fn(x[i], float(f[i])) for i in range(3)])
        torch.testing.assert_close(
            BatchAugment._jitter_op(op, x, f), want, atol=5e-5, rtol=1e-4
        )  # fp32 op order
    h = torch.tensor([-0.1, 0.0, 0.05])
    want = torch.stack([TF.adjust_hue(x[i], float(h[i])) for i in range(3)])
    torch.testing.assert_close(BatchAugment._jitter_op(3, x, h), want, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="images: expected a"):
        aug(torch.zeros(2, 32, 32, 3, dtype=torch.uint8))
    assert BatchAugment(96)(imgs.repeat(1, 1, 3, 3)[:, :, :96, :96]).shape == (
        6,
        3,
        96,
        96,
    )  # blur path


def test_finetune_reports_both_arms_on_the_same_subset():
    from shared.run.evaluation import labelled_subset
    from torch_impl.evaluate import finetune
    from torch_impl.models import build_encoder

    rng = np.random.default_rng(0)
    tr = Split(rng.integers(0, 256, (80, 32, 32, 3), dtype=np.uint8), np.arange(80) % 4)
    te = Split(rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), np.arange(20) % 4)
    sub = labelled_subset(tr, 0.25)
    assert len(sub) == 20 and sorted(np.bincount(sub.labels)) == [5, 5, 5, 5]
    out = finetune(build_encoder("small_cnn"), "small_cnn", tr, te, fraction=0.25, epochs=1)
    assert out["n_labelled"] == 20 and set(out) >= {"finetune_top1", "scratch_top1"}
    assert 0 <= out["finetune_top1"] <= 1 and 0 <= out["scratch_top1"] <= 1


def test_keep_freed_memory_takes_effect_on_glibc_and_is_a_no_op_elsewhere(monkeypatch):
    import ctypes
    import platform

    from torch_impl.fast_kernels import keep_freed_memory

    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert keep_freed_memory() is True

    def no_libc(*a, **k):
        raise OSError("no such library")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert keep_freed_memory() is False


def test_fast_kernels_apply_leaves_the_model_bit_for_bit():
    """torch's switch is the allocator only: the model is returned as it was, and computes the
    same numbers, bit for bit."""
    from torch_impl import fast_kernels
    from torch_impl.simclr import SimCLR

    torch.manual_seed(0)
    m = SimCLR(hidden_dim=16, proj_dim=8)
    x1, x2 = torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32)
    before = m.loss(*m(x1, x2)[2:])
    state = {k: v.clone() for k, v in m.state_dict().items()}
    assert fast_kernels.apply(m) is m
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in state.items())
    m.load_state_dict(state)  # the BN statistics as before the first pass
    assert torch.equal(m.loss(*m(x1, x2)[2:]), before)
