"""Both methods in both frameworks, piece by piece against the NumPy oracle.

Each test runs the same check on ``torch_impl`` and ``tf_impl`` (parametrised by framework):
the loss a model computes equals ``shared.oracle.losses`` on the model's own projections (float64),
MoCo's step order (EMA before the gradient step, the queue read before the enqueue), the key
encoder's exact copy, SplitBatchNorm against its closed form, float64 builds, one trace of the
TF step, bit-exact resume for MoCo in torch and SimCLR in TF, and the model classes' defaults
(the trained configuration's, read back from the built models).
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed")
tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed")

from shared.oracle import losses as ref  # noqa: E402
from shared.oracle import queue as qref  # noqa: E402
from shared.parity import compare as parity  # noqa: E402
from shared.run.config import TrainConfig  # noqa: E402

FRAMEWORKS = ["torch", "tensorflow"]
SMALL = dict(encoder="small_cnn", hidden_dim=16, proj_dim=8)


def _images(n=8, seed=0):
    """Two view batches, NHWC float64 in [0, 1]."""
    rng = np.random.default_rng(seed)
    return rng.random((n, 32, 32, 3)), rng.random((n, 32, 32, 3))


def _model(framework, method, **kw):
    mod = __import__(
        f"{'torch_impl' if framework == 'torch' else 'tf_impl'}.{method}", fromlist=["x"]
    )
    return getattr(mod, "SimCLR" if method == "simclr" else "MoCo")(**SMALL, **kw)


def _x(framework, a):
    if framework == "torch":
        return torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()
    return tf.constant(a)


def _np(t):
    return t.detach().numpy() if isinstance(t, torch.Tensor) else t.numpy()


def _weights(framework, net):
    if framework == "torch":
        return [p.detach().numpy().copy() for p in net.parameters()]
    return [w.numpy().copy() for w in net.trainable_weights]


def _optimizer(framework, model, lr=0.1):
    mod = __import__(f"{'torch_impl' if framework == 'torch' else 'tf_impl'}.optim", fromlist=["x"])
    return mod.build_optimizer(model, "sgd", lr, momentum=0.9, weight_decay=0.0)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_simclr_loss_is_the_oracle_on_its_own_projections(framework):
    m = _model(framework, "simclr", temperature=0.3, dtype="float64")
    a, b = _images()
    x1, x2 = _x(framework, a), _x(framework, b)
    if framework == "torch":
        _, _, z1, z2 = m(x1, x2)
    else:
        _, _, z1, z2 = m(x1, x2, training=True)
    loss = m.loss(z1, z2)
    want = ref.nt_xent(_np(z1), _np(z2), 0.3)
    parity.assert_close(
        {"loss": want}, {"loss": float(_np(loss))}, dtype="float64", temperature=0.3
    )


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("symmetric", [False, True])
def test_moco_loss_is_the_oracle_on_its_own_queries_keys_and_queue(framework, symmetric):
    m = _model(
        framework, "moco", queue_size=12, temperature=0.2, symmetric=symmetric, dtype="float64"
    )
    a, b = _images()
    x1, x2 = _x(framework, a), _x(framework, b)
    loss, keys = m.loss(x1, x2)
    queue = _np(m.queue)

    def query(x):  # one pass per view: BN sees one view at a time
        out = (
            m.encoder_q(_x(framework, x))
            if framework == "torch"
            else m.encoder_q(_x(framework, x), training=True)
        )
        return _np(out[1])

    q1, q2 = query(a), query(b)
    k = _np(keys)
    if symmetric:  # keys row i is the other view of query i: (q1, k2) then (q2, k1)
        want = 0.5 * (ref.info_nce(q1, k[:8], queue, 0.2) + ref.info_nce(q2, k[8:], queue, 0.2))
    else:
        want = ref.info_nce(q1, k, queue, 0.2)
    parity.assert_close(
        {"loss": want}, {"loss": float(_np(loss))}, dtype="float64", temperature=0.2
    )
    np.testing.assert_allclose(np.linalg.norm(k, axis=1), 1.0, rtol=1e-12)  # keys normalised


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_moco_step_order_ema_first_then_gradient_then_enqueue(framework):
    """One step: k' = m k + (1 - m) q (q *before* its update), q moves, queue gets the keys."""
    m = _model(
        framework, "moco", queue_size=12, shuffle_keys=True, symmetric=False, dtype="float64"
    )
    if framework == "torch":
        assert all(
            torch.equal(a, b)
            for a, b in zip(m.encoder_q.state_dict().values(), m.encoder_k.state_dict().values())
        )
        assert not any(p.requires_grad for p in m.encoder_k.parameters())
    else:
        assert all(
            np.array_equal(a, b)
            for a, b in zip(m.encoder_q.get_weights(), m.encoder_k.get_weights())
        )
    perturb = np.random.default_rng(3)
    for w in m.encoder_q.parameters() if framework == "torch" else m.encoder_q.trainable_weights:
        if framework == "torch":
            w.data.add_(torch.from_numpy(perturb.standard_normal(tuple(w.shape)) * 0.01))
        else:
            w.assign_add(perturb.standard_normal(w.shape) * 0.01)
    q0, k0 = _weights(framework, m.encoder_q), _weights(framework, m.encoder_k)
    queue0 = _np(m.queue).copy()
    opt = _optimizer(framework, m)
    a, b = _images(6)
    if framework == "torch":
        m.key_momentum = 0.75  # as the training loop sets it each step
        m.train_step(_x(framework, a), _x(framework, b), opt)
    else:
        from tf_impl.train import compile_step

        compile_step(m, opt)(
            _x(framework, a), _x(framework, b), tf.constant([0, 1]), tf.constant(0.75, tf.float64)
        )
    want = [qref.ema(k, q, 0.75) for k, q in zip(k0, q0)]
    parity.assert_close({"ema": want}, {"ema": _weights(framework, m.encoder_k)}, dtype="float64")
    assert not all(np.array_equal(a_, b_) for a_, b_ in zip(q0, _weights(framework, m.encoder_q)))
    assert int(_np(m.queue_ptr)) == 6
    np.testing.assert_array_equal(_np(m.queue)[6:], queue0[6:])  # untouched rows
    assert not np.array_equal(_np(m.queue)[:6], queue0[:6])


def _effective_hyperparameters(framework, method, m) -> dict:
    """What a built model computes with, read from its layers and buffers (not its arguments)."""
    net = m.net if method == "simclr" else m.encoder_q
    if framework == "torch":
        bn = torch.nn.modules.batchnorm._BatchNorm
        layers = list(net.modules())
        widths = [la.out_features for la in net.head.modules() if isinstance(la, torch.nn.Linear)]
        head_bn = any(isinstance(la, bn) for la in net.head.modules())
    else:
        bn = tf.keras.layers.BatchNormalization
        layers = net._flatten_layers()
        widths = [la.units for la in (*net.head.dense, net.head.out)]
        head_bn = bool(net.head.bns)
    splits = {getattr(la, "num_splits", 1) for la in layers if isinstance(la, bn)}
    assert len(splits) == 1, splits
    got = {
        "encoder": m.encoder_name,
        "hidden_dim": widths[0],
        "proj_dim": widths[-1],
        "head_layers": len(widths),
        "head_bn": head_bn,
        "temperature": m.temperature,
        "bn_splits": splits.pop(),
    }
    if method == "moco":
        queue = _np(m.queue)
        seeds = [s for s in range(4) if np.array_equal(queue, qref.init_queue(*queue.shape, s))]
        got.update(
            queue_size=queue.shape[0],
            shuffle_keys=m.shuffle_keys,
            symmetric=m.symmetric,
            seed=seeds[0] if seeds else None,
        )
    return got


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("method", ["simclr", "moco"])
def test_model_defaults_are_the_trained_configuration(framework, method):
    """``SimCLR()`` and ``MoCo()`` with no arguments build what ``train --method M`` trains: tau,
    K, BN splits, key shuffle, symmetric loss and the head equal ``TrainConfig``'s resolved
    ``model_kwargs()``, in both frameworks."""
    from shared.run.config import model_defaults

    pkg = "torch_impl" if framework == "torch" else "tf_impl"
    cls = __import__(f"{pkg}.methods", fromlist=["x"]).METHODS[method]
    trained = TrainConfig(method=method).resolve(framework).model_kwargs()
    assert _effective_hyperparameters(framework, method, cls()) == trained == model_defaults(method)
    if method == "moco":  # the values the old defaults (0.2, 4096, 1 split, off, off) lacked
        assert (trained["temperature"], trained["queue_size"], trained["bn_splits"]) == (
            0.1,
            512,
            2,
        )
        assert trained["shuffle_keys"] and trained["symmetric"]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_build_model_honours_fast_kernels_and_sync_bn(framework, monkeypatch):
    """``--fast-kernels`` reaches each framework's ``fast_kernels.apply`` (TF swaps its layers;
    torch sets malloc), off by default; ``--sync-bn`` reaches every SplitBatchNorm."""
    pkg = "torch_impl" if framework == "torch" else "tf_impl"
    methods = __import__(f"{pkg}.methods", fromlist=["x"])
    fast = __import__(f"{pkg}.fast_kernels", fromlist=["x"])
    models = __import__(f"{pkg}.models", fromlist=["x"])
    dist = __import__(f"{pkg}.distributed", fromlist=["x"])
    applied = []
    real_apply = fast.apply
    monkeypatch.setattr(fast, "apply", lambda m: applied.append(m) or real_apply(m))
    small = dict(hidden_dim=16, proj_dim=8, amp=False)
    plain = methods.build_model(TrainConfig(**small).resolve(framework))
    assert applied == [] and TrainConfig().fast_kernels is False
    model = methods.build_model(TrainConfig(fast_kernels=True, **small).resolve(framework))
    assert applied == [model]
    if framework == "tensorflow":
        kinds = {type(la).__name__ for la in model.net._flatten_layers()}
        assert {"Conv3x3", "FusedSplitBatchNorm"} <= kinds
        assert not {"Conv3x3", "FusedSplitBatchNorm"} & {
            type(la).__name__ for la in plain.net._flatten_layers()
        }
    synced = methods.build_model(TrainConfig(sync_bn=True, **small).resolve(framework))
    layers = synced.net.modules() if framework == "torch" else synced.net._flatten_layers()
    bn = (
        torch.nn.modules.batchnorm._BatchNorm
        if framework == "torch"
        else models.keras.layers.BatchNormalization
    )
    bns = [la for la in layers if isinstance(la, bn)]
    assert bns and all(type(la) is dist.SyncBatchNorm for la in bns)


def _split_bn_reference(x_nhwc, splits, eps=1e-5):
    """Closed form: each contiguous sub-batch normalised by its own mean and biased variance."""
    out = []
    for chunk in np.split(x_nhwc, splits):
        mean = chunk.mean(axis=(0, 1, 2))
        var = chunk.var(axis=(0, 1, 2))
        out.append((chunk - mean) / np.sqrt(var + eps))
    return np.concatenate(out)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_split_batchnorm_is_per_split_bn(framework):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((8, 3, 3, 2)) * np.array([1.0, 5.0]) + np.array([0.0, 3.0])
    want = _split_bn_reference(x, 4)
    if framework == "torch":
        from torch_impl.split_bn import SplitBatchNorm

        bn = SplitBatchNorm(2, num_splits=4).double().train()
        got = bn(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).detach().numpy()
        n = 2 * 3 * 3  # values per channel in one split: torch stores the unbiased variance
        var = np.mean([c.var(axis=(0, 1, 2)) for c in np.split(x, 4)], axis=0) * n / (n - 1)
        np.testing.assert_allclose(bn.running_var.numpy(), 0.9 + 0.1 * var, rtol=1e-12)
    else:
        from tf_impl.models import dtype_policy
        from tf_impl.split_bn import SplitBatchNorm

        with dtype_policy("float64"):
            bn = SplitBatchNorm(4, momentum=0.9, epsilon=1e-5)
            got = bn(tf.constant(x), training=True).numpy()
        var = np.mean([c.var(axis=(0, 1, 2)) for c in np.split(x, 4)], axis=0)  # Keras: biased
        np.testing.assert_allclose(bn.moving_variance.numpy(), 0.9 + 0.1 * var, rtol=1e-12)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_split_batchnorm_across_views_takes_each_views_share(framework):
    """With V views, split j holds the j-th 1/S of each view (what device j of S holds)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((8, 2, 2, 3)) * np.array([1.0, 4.0, 0.5]) + np.array([0.0, 2.0, -1.0])
    parts = np.split(x, 4)  # view 0: parts 0, 1; view 1: parts 2, 3; split j: parts j and 2 + j
    want = np.empty_like(x)
    for j in range(2):
        rows = np.concatenate([parts[j], parts[2 + j]])
        y = (rows - rows.mean(axis=(0, 1, 2))) / np.sqrt(rows.var(axis=(0, 1, 2)) + 1e-5)
        want[2 * j : 2 * j + 2], want[4 + 2 * j : 6 + 2 * j] = y[:2], y[2:]
    if framework == "torch":
        from torch_impl.split_bn import SplitBatchNorm

        bn = SplitBatchNorm(3, num_splits=2, views=2).double().train()
        got = bn(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).detach().numpy()
    else:
        from tf_impl.models import dtype_policy
        from tf_impl.split_bn import SplitBatchNorm

        with dtype_policy("float64"):
            bn = SplitBatchNorm(2, 2, momentum=0.9, epsilon=1e-5)
            got = bn(tf.constant(x), training=True).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("method", ["simclr", "moco"])
def test_signature_defaults_are_literal_and_the_trained_configuration(framework, method):
    """``SimCLR``/``MoCo`` show their defaults as literals in the signature (as MoCo's
    builder.py does), equal to what ``train --method M`` resolves, key momentum included."""
    import inspect

    from shared.run.config import model_defaults

    pkg = "torch_impl" if framework == "torch" else "tf_impl"
    cls = __import__(f"{pkg}.methods", fromlist=["x"]).METHODS[method]
    src = inspect.getsource(cls.__init__)
    assert "TRAINED" not in src and "model_defaults" not in src
    params = inspect.signature(cls).parameters
    defaults = {k: p.default for k, p in params.items() if k != "dtype"}
    want = dict(model_defaults(method))
    if method == "moco":
        want["key_momentum"] = TrainConfig(method="moco").resolve(framework).key_momentum
    assert defaults == want


def test_one_train_step_signature_for_both_methods_in_both_frameworks():
    """``train_step(x1, x2, optimizer)`` for SimCLR and MoCo, in torch and in TF: a loop (or a
    reader) calls every method the same way; MoCo's schedule enters as its ``key_momentum``."""
    import inspect

    for pkg in ("torch_impl", "tf_impl"):
        for cls in __import__(f"{pkg}.methods", fromlist=["x"]).METHODS.values():
            params = list(inspect.signature(cls.train_step).parameters)
            assert params == ["self", "x1", "x2", "optimizer"], (pkg, cls.__name__, params)


def test_torch_split_batchnorm_with_one_split_is_batchnorm2d():
    from torch_impl.split_bn import SplitBatchNorm

    x = torch.randn(6, 4, 5, 5, dtype=torch.float64)
    a, b = SplitBatchNorm(4, 1).double(), torch.nn.BatchNorm2d(4).double()
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
    torch.testing.assert_close(a.running_var, b.running_var, rtol=0, atol=0)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("method", ["simclr", "moco"])
def test_float64_build(framework, method):
    m = _model(framework, method, dtype="float64")
    w = next(m.parameters()) if framework == "torch" else m.backbone.weights[0]
    assert "float64" in str(w.dtype)
    if method == "moco":
        assert "float64" in str(m.queue.dtype)


def _cfg(tmp_path, method, **kw):
    base = dict(
        method=method,
        epochs=2,
        batch_size=16,
        limit_train=48,
        run_dir=str(tmp_path / "run"),
        knn_every=0,
        warmup_epochs=1,
        queue_size=20,
        bn_splits=2,
        amp=False,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_torch_moco_resume_is_bit_exact_queue_and_pointer_included(tmp_path, trained_run):
    """The session's one-epoch MoCo run, resumed for a second epoch, ends with the straight
    run's state, bit for bit: both encoders, the queue and its pointer."""
    from torch_impl.train import train

    straight = train(_cfg(tmp_path / "a", "moco"), progress=False)["model"].state_dict()
    trained_run("torch", _cfg(tmp_path / "b", "moco", epochs=1))
    resumed = train(_cfg(tmp_path / "b", "moco", resume=True), progress=False)["model"].state_dict()
    assert (
        "queue" in straight
        and "queue_ptr" in straight
        and "encoder_k.encoder.features.0.weight" in straight
    )
    for k in straight:
        assert torch.equal(straight[k], resumed[k]), k
    assert (
        int(straight["queue_ptr"]) == (2 * 3 * 32) % 20
    )  # 2 epochs x 3 steps x 2N keys (symmetric)


def test_tf_simclr_traces_once_and_resume_is_bit_exact(tmp_path, trained_run):
    """Two epochs in one call trace the step once; the session's one-epoch run, resumed for a
    second epoch, ends with the same weights, bit for bit."""
    from tf_impl.train import TRACE_COUNT, train

    before = TRACE_COUNT["train_step"]
    a = train(_cfg(tmp_path / "a", "simclr"), progress=False)["model"]
    assert TRACE_COUNT["train_step"] - before == 1
    trained_run("tensorflow", _cfg(tmp_path / "b", "simclr", epochs=1))
    b = train(_cfg(tmp_path / "b", "simclr", resume=True), progress=False)["model"]
    for x, y in zip(a.net.get_weights(), b.net.get_weights(), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_eval_reads_the_method_from_config(tmp_path, framework, trained_run, small_eval, capsys):
    """``eval --run-dir`` of a run of the framework's non-default method evaluates that method
    (the session's one-epoch run; ``small_eval``), prints three lines and writes every number
    to the run's eval.json."""
    import json

    pkg = "torch_impl" if framework == "torch" else "tf_impl"
    main = __import__(f"{pkg}.__main__", fromlist=["x"]).main
    other = "moco"  # not the default method (simclr in both frameworks)
    run = trained_run(framework, _cfg(tmp_path, other, epochs=1))
    assert json.loads((run / "config.json").read_text())["method"] == other
    capsys.readouterr()  # the training's own lines
    assert main(["eval", "--run-dir", str(run)]) == 0
    res = json.loads((run / "eval.json").read_text())
    assert set(res) == {other, "random_init", "raw_pixels"} and 0 <= res[other]["knn_top1"] <= 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[-1].endswith(str(run / "eval.json"))
    knn = f"{other}: kNN top-1 {100 * res[other]['knn_top1']:.1f} % (k = {res[other]['knn_k']},"
    assert lines[0].startswith(knn)


def test_the_key_momentum_schedule_is_the_oracle_s():
    from shared.oracle.queue import cosine_momentum

    cos = TrainConfig(method="moco", key_momentum_schedule="cosine", key_momentum=0.9).resolve(
        "torch"
    )
    const = TrainConfig(method="moco", key_momentum=0.9).resolve("torch")
    for step in (0, 7, 50, 99, 100, 150):
        assert cos.key_momentum_at(step, 100) == cosine_momentum(step, 100, 0.9)
        assert const.key_momentum_at(step, 100) == 0.9
    assert (
        cosine_momentum(0, 100, 0.9) == pytest.approx(0.9) and cosine_momentum(100, 100, 0.9) == 1.0
    )


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("flip", [True, False])
def test_flip_flag_mirrors_about_half_the_views_or_none(framework, flip):
    """An image bright on the left: full-image crops with no colour jitter keep it bright on the
    left, except the views that are flipped (about half with ``flip``, none without)."""
    img = np.zeros((64, 32, 32, 3), np.uint8)
    img[:, :, :16] = 255
    if framework == "torch":
        from torch_impl.augment import BatchAugment

        torch.manual_seed(0)
        x = BatchAugment(32, (1.0, 1.0), 0.0, flip=flip)(torch.from_numpy(img).permute(0, 3, 1, 2))
        x = x.permute(0, 2, 3, 1).numpy()
    else:
        from tf_impl.augment import BatchAugment

        x = BatchAugment(32, (1.0, 1.0), 0.0, flip=flip)(tf.constant(img), tf.constant([0, 1]))
        x = x.numpy()
    flipped = int((x[:, :, :16].mean((1, 2, 3)) < x[:, :, 16:].mean((1, 2, 3))).sum())
    assert (16 <= flipped <= 48) if flip else flipped == 0


def test_train_with_eval_writes_what_eval_writes(tmp_path, small_eval):
    """``train --eval`` (the demo's one process per cell) evaluates the run it trained: its
    eval.json equals a separate ``eval --run-dir``'s; multi-process runs are refused first
    (``small_eval``)."""
    import json

    from torch_impl.__main__ import main

    run = tmp_path / "run"
    flags = ["--epochs", "1", "--batch-size", "16", "--limit-train", "48", "--knn-every", "0"]
    assert main(["train", *flags, "--run-dir", str(run), "--no-progress", "--eval"]) == 0
    first = json.loads((run / "eval.json").read_text())
    assert set(first) == {"simclr", "random_init", "raw_pixels"}
    assert main(["eval", "--run-dir", str(run)]) == 0
    assert json.loads((run / "eval.json").read_text()) == first


def test_train_with_eval_accepts_tfs_one_process_mirrored_strategy(monkeypatch, tmp_path):
    """``--strategy mirrored`` is one process (its devices are local): --eval is allowed."""
    import tf_impl.train
    from shared.apps import impl_cli

    calls = []
    monkeypatch.setattr(tf_impl.train, "train", lambda cfg, progress: calls.append("train"))
    monkeypatch.setattr(impl_cli, "cmd_eval", lambda pkg, a: calls.append(a.run_dir) or 0)
    run = str(tmp_path / "r")
    argv = ["train", "--strategy", "mirrored", "--run-dir", run, "--eval"]
    assert impl_cli.main("tensorflow", argv) == 0
    assert calls == ["train", run]


def test_train_with_eval_refuses_a_multi_process_run(monkeypatch, tmp_path, capsys):
    from torch_impl.__main__ import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "--run-dir", str(tmp_path / "r"), "--eval"]) == 2
    assert "eval: --eval evaluates in the training process" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before anything was written


@pytest.mark.slow
def test_demo_end_to_end_one_epoch(tmp_path):
    """``rosetta demo --epochs 1``: both cells train and evaluate in one process each, the
    parity checks pass, and report.md / report.json / the three figures are written."""
    import json

    from shared.apps import demo

    assert demo.main(["--epochs", "1", "--out", str(tmp_path)]) == 0
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["parity_ok"] and set(rep["cells"]) == {"SimCLR (torch)", "MoCo (TF)"}
    for cell in rep["cells"].values():
        assert cell["epochs"] == 1 and 0 < cell["train_wall_s"] < rep["wall_s"]
        assert set(cell["eval"]) == {cell["method"], "random_init", "raw_pixels"}
    for name in ("report.md", "curves.png", "similarity.png", "embeddings.png"):
        assert (tmp_path / name).stat().st_size > 0
