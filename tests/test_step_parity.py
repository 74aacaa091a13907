"""One whole training step is the same in PyTorch and TensorFlow (float64, ported weights).

Setup: a torch model, its weights ported to TF (``shared.parity.weights``), the same two views fed to
both. The step is each framework's training step (``step_outputs`` calls torch's
``train_step``, and TF's ``tf.function`` of ``tf_impl.train.compile_step``);
:func:`test_step_outputs_follow_a_change_to_the_real_step` checks that. Compared by canonical name: the features h and projections z, the loss, the gradient of
every parameter, and after one optimiser step every weight, BN statistic and (MoCo) the key
encoder after the EMA, the queue and its pointer.

One known difference is kept and pinned instead of aligned: BatchNorm's running variance is
updated with the unbiased batch variance in torch and the biased one in Keras, so after one
step ``(torch - m0) / (tf - m0) = n / (n - 1)`` exactly, n being the values per channel.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed")
tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed")

from shared.parity import compare as parity  # noqa: E402
from shared.parity import step_parity as sp  # noqa: E402
from shared.parity.tolerances import override  # noqa: E402
from tf_impl import optim as topt  # noqa: E402
from tf_impl import parity as tpar  # noqa: E402
from tf_impl import weights as tw  # noqa: E402
from torch_impl import optim as popt  # noqa: E402
from torch_impl import parity as ppar  # noqa: E402
from torch_impl import weights as pw  # noqa: E402

N = 8  # images per view batch


def _models(method, encoder, **kw):
    from tf_impl.moco import MoCo as TM
    from tf_impl.simclr import SimCLR as TS
    from torch_impl.moco import MoCo as PM
    from torch_impl.simclr import SimCLR as PS

    torch.manual_seed(0)
    common = dict(encoder=encoder, hidden_dim=16, proj_dim=8, dtype="float64", **kw)
    pt = (PS if method == "simclr" else PM)(**common)
    tfm = (TS if method == "simclr" else TM)(**common)
    tw.import_weights(tfm, pw.export_weights(pt))
    return pt, tfm


ADAM = override(
    "param",
    "float64",
    atol=1e-7,
    reason="Adam's first step divides by |g| + eps: a gradient rounding error d becomes "
    "lr eps / (|g| + eps)^2 d, up to lr / (4 eps) d = 2.5e6 d at lr 0.1, eps 1e-8; "
    "gradient differences reach 4e-15 in ResNet-18",
)


def _compare(a: dict, b: dict, context: str, adam: bool = False) -> None:
    slots = {k.rsplit("/", 1)[1] for k in a if k.startswith("slot/")}
    assert slots == ({"m", "v"} if adam else {"momentum"}), slots  # the optimiser state too
    assert sorted(k for k in a if k.startswith("slot/")) == sorted(
        k for k in b if k.startswith("slot/")
    )
    after = [k for k in a if k.startswith("after/") and parity.group_of(k) != "ptr"]
    overrides = {f"{parity.group_of(k)}.{k}": ADAM for k in after} if adam else {}
    rows = parity.compare_grouped(
        a,
        b,
        dtype="float64",
        temperature=0.2,
        overrides=overrides,
        skip=("moving_variance",),  # the pinned difference: see the module docstring
    )
    parity.raise_if_failed(rows, context)


def _views(seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((N, 32, 32, 3)), rng.random((N, 32, 32, 3))


# SGD on small_cnn is the command's own case (``test_rosetta_parity_level_step_passes`` runs
# it, float64 and float32, both methods): slow here, so the default run pays for it once.
COVERED_BY_THE_COMMAND = pytest.mark.slow
OPTIMIZERS = [pytest.param("sgd", marks=COVERED_BY_THE_COMMAND), "lars", "adam"]


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize(
    "encoder", ["small_cnn", pytest.param("resnet18_cifar", marks=pytest.mark.slow)]
)
def test_simclr_step_is_the_same_in_both_frameworks_float64(encoder, optimizer):
    pt, tfm = _models("simclr", encoder, temperature=0.2)
    x1, x2 = _views()
    a = ppar.step_outputs(pt, x1, x2, popt.build_optimizer(pt, optimizer, 0.1, 0.9, 1e-4))
    b = tpar.step_outputs(tfm, x1, x2, topt.build_optimizer(tfm, optimizer, 0.1, 0.9, 1e-4))
    _compare(a, b, f"simclr {encoder} {optimizer}", adam=optimizer == "adam")
    # the pinned BN difference, exactly: the head's BN sees n = 2N values per channel
    name = "after/net/head/bn0/moving_variance"
    ratio = (a[name] - 0.9) / (b[name] - 0.9)
    np.testing.assert_allclose(ratio, 2 * N / (2 * N - 1), rtol=1e-9)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize(
    "encoder", ["small_cnn", pytest.param("resnet18_cifar", marks=pytest.mark.slow)]
)
def test_moco_step_is_the_same_in_both_frameworks_float64(encoder, optimizer):
    pt, tfm = _models(
        "moco",
        encoder,
        queue_size=12,
        temperature=0.2,
        bn_splits=2,
        symmetric=True,
        shuffle_keys=False,
    )
    x1, x2 = _views(1)
    a = ppar.step_outputs(
        pt, x1, x2, popt.build_optimizer(pt, optimizer, 0.1, 0.9, 5e-4), key_momentum=0.9
    )
    b = tpar.step_outputs(
        tfm, x1, x2, topt.build_optimizer(tfm, optimizer, 0.1, 0.9, 5e-4), key_momentum=0.9
    )
    assert int(a["after/queue_ptr"]) == int(b["after/queue_ptr"]) == (2 * N) % 12
    _compare(a, b, f"moco {encoder} {optimizer}", adam=optimizer == "adam")


@COVERED_BY_THE_COMMAND
@pytest.mark.parametrize("method", ["simclr", "moco"])
def test_one_step_float32_within_the_table(method):
    """float32: the same ported weights and views; differences are fp32 kernel rounding
    (conv algorithms, reduction order), bounded by the float32 rows of the table."""
    from tf_impl.moco import MoCo as TM
    from tf_impl.simclr import SimCLR as TS
    from torch_impl.moco import MoCo as PM
    from torch_impl.simclr import SimCLR as PS

    torch.manual_seed(0)
    extra = (
        dict(queue_size=12, bn_splits=2, symmetric=True, shuffle_keys=False)
        if method == "moco"
        else {}
    )
    common = dict(
        encoder="small_cnn", hidden_dim=16, proj_dim=8, temperature=0.2, dtype="float32", **extra
    )
    pt = (PS if method == "simclr" else PM)(**common)
    tfm = (TS if method == "simclr" else TM)(**common)
    tw.import_weights(tfm, pw.export_weights(pt))
    x1, x2 = (v.astype(np.float32) for v in _views(2))
    m = {"key_momentum": 0.9} if method == "moco" else {}
    a = ppar.step_outputs(pt, x1, x2, popt.build_optimizer(pt, "sgd", 0.1, 0.9, 1e-4), **m)
    b = tpar.step_outputs(tfm, x1, x2, topt.build_optimizer(tfm, "sgd", 0.1, 0.9, 1e-4), **m)
    keys = override(
        "param",
        "float32",
        reason="the queue holds keys computed by each framework's fp32 "
        "encoder: compared like weights, not as exact copies",
    )
    # a weight after the step carries lr x its gradient's fp32 rounding, as in
    # `rosetta parity --level step`
    rows = parity.compare_grouped(
        a,
        b,
        dtype="float32",
        temperature=0.2,
        overrides={"queue.after/queue": keys, **sp.stepped_weights(a, lr=0.1)},
        skip=("moving_variance",),
    )
    assert ("ptr.after/queue_ptr" in {r.name for r in rows}) == (method == "moco")
    parity.raise_if_failed(rows, f"{method} float32")


def _halved_update(framework: str, method: str):
    """``(class, name, replacement)``: the loss inside the real step of ``method`` in
    ``framework`` (``train_step`` calls ``self.loss``), changed to half its value, so that the
    step applies exactly half of each gradient (a power of two scales the backward exactly)."""
    if framework == "torch":
        from torch_impl.moco import MoCo
        from torch_impl.simclr import SimCLR
    else:
        from tf_impl.moco import MoCo
        from tf_impl.simclr import SimCLR
    cls = SimCLR if method == "simclr" else MoCo
    real = cls.loss

    def halved(self, *args):
        out = real(self, *args)
        return 0.5 * out if method == "simclr" else (0.5 * out[0], out[1])

    return cls, "loss", halved


@pytest.mark.parametrize("method", ["simclr", "moco"])
def test_step_outputs_follow_a_change_to_the_real_step(method, monkeypatch):
    """``step_outputs`` runs the training step itself, not a copy, in both frameworks: while
    the real step's loss is halved, the loss and the gradients step_outputs reports are exactly
    half the real step's and every weight lands elsewhere; with the real step back, torch and
    TF agree again within the table."""
    kw = dict(queue_size=12, bn_splits=2, shuffle_keys=False) if method == "moco" else {}
    pt, tfm = _models(method, "small_cnn", temperature=0.2, **kw)
    x1, x2 = _views(3)
    m = {"key_momentum": 0.9} if method == "moco" else {}
    out = {}
    for framework, model, par, opt, weights in (
        ("torch", pt, ppar, popt, pw),
        ("tensorflow", tfm, tpar, topt, tw),
    ):
        init = {k: np.array(v) for k, v in weights.export_weights(model).items()}
        for patched in (True, False):
            weights.import_weights(model, init)
            with monkeypatch.context() as patch:
                if patched:
                    patch.setattr(*_halved_update(framework, method))
                sgd = opt.build_optimizer(model, "sgd", 0.1, 0.9, 0)
                out[framework, patched] = par.step_outputs(model, x1, x2, sgd, **m)
    for framework in ("torch", "tensorflow"):
        real, changed = out[framework, False], out[framework, True]
        assert changed["loss"] == 0.5 * real["loss"], framework
        grads = [k for k in real if k.startswith("grad/")]
        assert len(grads) > 10, grads
        for k in grads:
            np.testing.assert_array_equal(changed[k], 0.5 * real[k], err_msg=k)
            assert not np.allclose(changed["after/" + k[5:]], real["after/" + k[5:]]), k
    _compare(out["torch", False], out["tensorflow", False], f"{method} after the patch")


def _float64_drift_is_rounding(method: str, steps: int) -> None:
    from shared.docgen.drift import drift

    f64 = drift(method, "float64", steps=steps)
    assert len(f64) == steps
    assert max(r["loss_abs"] for r in f64) < 1e-10 and max(r["weights_rel"] for r in f64) < 1e-10, (
        f64
    )


@pytest.mark.parametrize("method", ["simclr", "moco"])
def test_two_step_float64_drift_stays_at_rounding(method):
    """The drift curve of ``shared.docgen.drift`` (docs/step_drift.md) in float64: two steps
    of each framework's optimiser from the same ported weights (the second from stepped weights
    and momentum) stay at rounding level. float32 is not bounded here: its first step is
    :func:`test_one_step_float32_within_the_table`, and after that the two float32 trajectories
    separate as chaotic training does (the docs report the curve; its size depends on the CPU's
    kernels)."""
    _float64_drift_is_rounding(method, 2)


@pytest.mark.slow  # test_two_step_float64_drift_stays_at_rounding runs the same code for two steps
@pytest.mark.parametrize("method", ["simclr", "moco"])
def test_five_step_float64_drift_stays_at_rounding(method):
    """:func:`test_two_step_float64_drift_stays_at_rounding` for five steps, as
    ``tests/test_docs.py::test_step_drift_measurement_holds_now`` measures them."""
    _float64_drift_is_rounding(method, 5)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["simclr", "moco"])
def test_twenty_step_float64_drift_stays_at_rounding(method):
    """The docs page's 20 steps; :func:`test_two_step_float64_drift_stays_at_rounding` runs
    the same code path for two."""
    _float64_drift_is_rounding(method, 20)


def test_rosetta_parity_level_step_passes(tmp_path, capsys):
    """The command (``rosetta parity``, its ``main`` here): torch dumps the initial weights and
    its step, TF imports them and steps, each in its own process; both cases, float64 and the
    bf16-autocast step (float32 in-process: test_one_step_float32_within_the_table), exit status
    0 and a table that names the device and the TF32 policy. The only default test whose dumps
    run in processes of their own, as a user's do."""
    import json

    from shared.apps.cli import main
    from shared.parity.step_parity import summary_markdown

    argv = ["parity", "--level", "step", "--dtypes", "float64", "bfloat16"]
    code = main([*argv, "--device", "cpu", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, out[-2000:] + err[-2000:]
    table = (tmp_path / "parity.md").read_text()
    assert table.startswith("device cpu; TF32 off in both frameworks (no effect on a CPU)")
    assert "| loss | simclr: tensorflow vs torch | bfloat16 |" in table
    assert "| z1_train | moco: tensorflow vs torch | bfloat16 |" in table
    assert "pinned.after/net/head/bn0/moving_variance (ratio n/(n-1), n=16)" in table
    assert "ptr.after/queue_ptr | moco: tensorflow vs torch | float64" in table
    assert "**NO**" not in table
    rows = json.loads((tmp_path / "parity.json").read_text())["rows"]
    compact = summary_markdown(rows)  # the demo report's step table
    assert compact.count("\n") == 2 + 4 + 5 + 1 + 1  # header, rows per case and dtype
    assert "| moco | float64 | queue | 1 | queue.after/queue |" in compact


def _dumps_here(cmds: list[list[str]], labels: list[str], env=None) -> bool:
    """``parity_cmd._run_all`` in this process: each ``python -m PKG ARGS`` it would start is
    ``PKG``'s ``main(ARGS)``, one after the other; True when all return 0."""
    import importlib

    for cmd in cmds:
        assert cmd[1] == "-m", cmd
        if importlib.import_module(f"{cmd[2]}.__main__").main(cmd[3:]) != 0:
            return False
    return True


def test_rosetta_parity_random_cases_name_their_seed(tmp_path, monkeypatch, capsys):
    """--random N adds N random cases per loss, each reproducible from its seed; the table
    names the worst case per quantity, and a random case's inputs are the oracle's. The command
    runs in this process, its two dumps too (``_dumps_here``): the dumps' own processes are
    :func:`test_rosetta_parity_level_step_passes`'."""
    import json

    from shared.apps import parity_cmd
    from shared.apps.cli import main
    from shared.oracle.losses import nt_xent
    from shared.parity import golden

    monkeypatch.setattr(parity_cmd, "_run_all", _dumps_here)
    code = main(["parity", "--random", "20", "--seed", "40", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, out[-2000:] + err[-2000:]
    rows = json.loads((tmp_path / "parity.json").read_text())["rows"]
    cases = {r["case"] for r in rows}
    assert {f"r{s}" for s in range(40, 60)} <= cases  # 20 random cases, beside the goldens
    assert (
        len(rows) == 2 * 2 * (len(golden.load("nt_xent")) + len(golden.load("info_nce")) + 40) * 4
    )
    c = golden.random_case("nt_xent", 47)  # the same seed gives the same case, anywhere
    assert float(c["loss"]) == nt_xent(c["z1"], c["z2"], float(c["temperature"]))


@pytest.mark.parametrize("case", ["simclr"])
def test_bf16_step_runs_in_bf16_in_both_frameworks_and_agrees_within_the_derived_bound(case):
    """The bf16-autocast step (``step_outputs(..., amp=True)``; TF: a ``mixed_bfloat16``
    model): each framework's bf16 outputs differ from its own float32 ones (bf16 really ran),
    and torch's and TF's agree within ``bf16_step_tolerance`` (the loss, h and z). MoCo's bf16
    step is compared by the command (``test_rosetta_parity_level_step_passes``)."""
    out = {}
    for dtype in ("float32", "bfloat16"):  # both from torch's float32 initial weights
        pt, o_pt, kw = ppar.step_case(case, dtype)
        tfm, o_tf, _ = tpar.step_case(case, dtype)
        tw.import_weights(tfm, pw.export_weights(pt))
        x1, x2 = sp.views(dtype)
        out[dtype == "bfloat16"] = (
            ppar.step_outputs(pt, x1, x2, o_pt, **kw),
            tpar.step_outputs(tfm, x1, x2, o_tf, **kw),
        )
    for fw in (0, 1):  # bf16 moved every compared output away from float32
        for name in sp.BF16_LAYERS:
            assert not np.array_equal(out[True][fw][name], out[False][fw][name]), (fw, name)
    rows = sp.compare_steps(*out[True], "bfloat16", case)
    assert sorted(r["name"] for r in rows) == sorted(sp.BF16_LAYERS)
    bad = [r for r in rows if not r["passed"]]
    assert not bad, bad
    plain, o_plain, _ = tpar.step_case(case, "float32")
    with pytest.raises(ValueError, match="amp: True, but the model's dtype policy is 'float32'"):
        tpar.step_outputs(plain, x1, x2, o_plain, amp=True)


def test_resnet18_step_is_the_same_in_both_frameworks_float64():
    """torchvision's ResNet-18 (the ImageNet stem: the 7x7 stride-2 conv padded 3, the padded
    max-pool) against ``tf_impl.models.ResNet``, one SimCLR step with LARS, float64. Its blocks
    are resnet18_cifar's (slow-marked above); the stem is what this adds."""
    pt, tfm = _models("simclr", "resnet18", temperature=0.2)
    x1, x2 = _views(4)
    a = ppar.step_outputs(pt, x1, x2, popt.build_optimizer(pt, "lars", 0.1, 0.9, 1e-4))
    b = tpar.step_outputs(tfm, x1, x2, topt.build_optimizer(tfm, "lars", 0.1, 0.9, 1e-4))
    assert len([k for k in a if k.startswith("grad/")]) == 20 + 2 * 20 + 5  # 20 convs, 20 BNs, head
    _compare(a, b, "simclr resnet18 lars")
