"""tf_impl: losses vs goldens, GradientTape vs analytic gradients, queue and momentum vs the NumPy
reference, one trace per signature, training, resume, checkpoints, data (tfds mock) and errors."""

import math

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed")

from shared.oracle import queue as ref  # noqa: E402
from shared.parity import golden  # noqa: E402
from tf_impl import losses  # noqa: E402
from tf_impl.parity import golden_outputs  # noqa: E402


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_losses_and_gradienttape_match_goldens(dtype):
    from shared.apps.parity_cmd import compare_outputs, summarize, to_markdown

    rows = compare_outputs(golden.expected_outputs(), golden_outputs(dtype), dtype, "tf")
    assert all(r["passed"] for r in rows), to_markdown(summarize(rows))


def test_collapsed_closed_forms_and_half_precision():
    z = tf.ones((6, 4))
    assert float(losses.nt_xent(z, z, 0.3)) == pytest.approx(math.log(11), rel=1e-6)
    assert float(losses.info_nce(z, z, tf.ones((9, 4)), 0.07)) == pytest.approx(
        math.log(10), rel=1e-6
    )
    h = tf.cast(tf.random.stateless_normal((8, 16), [1, 2]), tf.float16)
    val = losses.nt_xent(h, h[::-1], 0.05)
    assert val.dtype == tf.float32 and np.isfinite(val.numpy())


@pytest.mark.parametrize(
    "call,match",
    [
        (
            lambda: losses.info_nce(tf.ones((2, 3)), tf.ones((2, 3)), tf.ones((4, 3)), 0.0),
            "temperature",
        ),
        (
            lambda: losses.info_nce(tf.ones((2, 3)), tf.ones((2, 3)), tf.ones((0, 3)), 0.1),
            "queue: expected at least 1",
        ),
        (
            lambda: losses.info_nce(tf.ones((2, 3)), tf.ones((2, 3)), tf.ones((4, 5)), 0.1),
            r"queue: expected shape \(K, 3\)",
        ),
        (
            lambda: losses.nt_xent(tf.ones((1, 3)), tf.ones((1, 3)), 0.5),
            "z1: expected at least 2 rows",
        ),
        (
            lambda: losses.nt_xent(tf.ones((4, 3)), tf.ones((5, 3)), 0.5),
            "z2: expected the same shape",
        ),
    ],
)
def test_loss_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_small_cnn_pool_then_relu_equals_relu_then_pool_bit_for_bit():
    """As in torch: the pool-then-ReLU SmallCNN equals the textbook conv-BN-ReLU-pool order,
    forward and gradients, exactly (constant half-images make exact ties in the windows)."""
    from tf_impl.models import SmallCNN

    tf.keras.utils.set_random_seed(0)
    net = SmallCNN()
    x0 = np.random.default_rng(0).random((4, 32, 32, 3)).astype(np.float32)
    x0[:, :, :16] = 0.5
    net(x0)
    kinds = [type(m).__name__ for m in net.body[:5]]
    assert kinds == [
        "Conv2D",
        "BatchNormalization",
        "MaxPooling2D",
        "ReLU",
        "Conv2D",
    ]  # plain Keras

    def textbook(x, training):
        for m in net.body:
            if isinstance(m, tf.keras.layers.MaxPool2D):
                continue
            x = (
                m(x, training=training)
                if isinstance(m, tf.keras.layers.BatchNormalization)
                else m(x)
            )
            if isinstance(m, tf.keras.layers.ReLU) and x.shape[1] > 4:
                x = tf.nn.max_pool2d(x, 2, 2, "VALID")
        return tf.reduce_mean(x, axis=[1, 2])

    weights = tf.linspace(-1.0, 1.0, net.feature_dim)
    outs = []
    for f in (net, textbook):
        x = tf.constant(x0)
        with tf.GradientTape() as tape:
            tape.watch(x)
            h = f(x, training=True)
            loss = tf.reduce_sum(h * weights)
        grads = tape.gradient(loss, [x, *net.trainable_weights])
        outs.append([h, *grads])
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_conv3x3_input_gradient_as_a_forward_conv_equals_tfs_own():
    """``fast_kernels.Conv3x3`` computes dL/dx as a forward conv with the flipped kernel: the same
    numbers as TF's ``Conv2DBackpropInput``, to float64 rounding (and the same y and dL/dkernel)."""
    from tf_impl.fast_kernels import _conv_same_3x3

    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((3, 6, 6, 4)))
    k = tf.constant(rng.standard_normal((3, 3, 4, 5)))
    dy = tf.constant(rng.standard_normal((3, 6, 6, 5)))
    outs = []
    for conv in (_conv_same_3x3, lambda x, k: tf.nn.conv2d(x, k, 1, "SAME")):
        with tf.GradientTape() as tape:
            tape.watch([x, k])
            y = conv(x, k)
            loss = tf.reduce_sum(y * dy)
        outs.append([y, *tape.gradient(loss, [x, k])])
    for name, a, b in zip(("y", "dx", "dkernel"), *outs):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("splits", [1, 2])
def test_split_bn_fused_path_equals_the_composite_one(splits):
    """``fast_kernels.FusedSplitBatchNorm`` runs float32 NHWC batches through
    ``FusedBatchNormV3``; the plain layer's composite path must agree: output, batch mean,
    *biased* batch variance and gradients."""
    from tf_impl.fast_kernels import FusedSplitBatchNorm

    bn = FusedSplitBatchNorm(splits, momentum=0.9, epsilon=1e-5)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((8, 5, 5, 3)) * 3 + 1, tf.float32)
    bn.build(x.shape)
    bn.gamma.assign([0.5, 1.0, 2.0])
    bn.beta.assign([0.1, -0.2, 0.3])
    dy = tf.constant(rng.standard_normal((8, 5, 5, 3)), tf.float32)
    outs = []
    for path in (bn._fused, bn._normalize):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y, mean, var = path(x)
            loss = tf.reduce_sum(y * dy)
        outs.append([y, mean, var, *tape.gradient(loss, [x, bn.gamma, bn.beta])])
    names = ("y", "mean", "biased variance", "dx", "dgamma", "dbeta")
    for name, a, b in zip(names, *outs):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=2e-5, atol=2e-5, err_msg=name)
    xs = x.numpy().reshape(splits, -1, 3)
    np.testing.assert_allclose(outs[0][2], xs.var(axis=1).mean(0), rtol=2e-5)  # biased: / n


def test_fast_kernels_swap_classes_only_weights_and_checkpoints_unchanged(tmp_path):
    """``fast_kernels.apply`` changes layer classes in both MoCo encoders and nothing else: the
    same variables under the same canonical names, and a checkpoint of the fast model restores
    into a plain one."""
    from tf_impl import fast_kernels, weights
    from tf_impl.checkpoint import restore_checkpoint, save_checkpoint
    from tf_impl.moco import MoCo
    from tf_impl.split_bn import SplitBatchNorm

    def kinds(m):
        parts = (m.encoder_q, m.encoder_k)
        convs = [
            type(la).__name__
            for p in parts
            for la in p.encoder.body
            if isinstance(la, tf.keras.layers.Conv2D)
        ]
        bns = [
            type(la).__name__
            for p in parts
            for la in p._flatten_layers()
            if isinstance(la, SplitBatchNorm)
        ]
        return convs, sorted(set(bns)), len(bns)

    m = MoCo(hidden_dim=16, proj_dim=8, queue_size=16)
    before = [(name, v) for name, v in weights.entries(m)]
    assert kinds(m) == (["Conv2D"] * 8, ["SplitBatchNorm"], 10)
    assert fast_kernels.apply(m) is m
    assert kinds(m) == (
        ["Conv2D", "Conv3x3", "Conv3x3", "Conv3x3"] * 2,
        ["FusedSplitBatchNorm"],
        10,
    )
    after = list(weights.entries(m))
    assert [n for n, _ in after] == [n for n, _ in before]
    assert all(a is b for (_, a), (_, b) in zip(after, before))  # the same variables
    for _, v in after:
        v.assign(v + 0.25)
    save_checkpoint(tmp_path, 1, m)
    plain = MoCo(hidden_dim=16, proj_dim=8, queue_size=16)
    assert restore_checkpoint(tmp_path, plain) == 1
    fast_state, plain_state = weights.export_weights(m), weights.export_weights(plain)
    for name in fast_state:
        np.testing.assert_array_equal(plain_state[name], fast_state[name], err_msg=name)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_model_with_fast_kernels_equals_the_plain_model(dtype):
    """The same weights and views: the SimCLR with ``--fast-kernels`` (bn_splits 2) computes the
    plain model's loss, h in eval mode, every gradient and the BN statistics after the pass.
    float64: only Conv3x3 differs (fused BN keeps float64 on the plain path), to rounding;
    float32: the fused BatchNorm kernel's rounding as well."""
    from tf_impl import fast_kernels, weights
    from tf_impl.simclr import SimCLR

    models = [SimCLR(hidden_dim=16, proj_dim=8, bn_splits=2, dtype=dtype) for _ in range(2)]
    weights.import_weights(models[1], weights.export_weights(models[0]))
    fast_kernels.apply(models[1])
    rng = np.random.default_rng(5)
    x1, x2 = (tf.constant(rng.random((8, 32, 32, 3)), dtype) for _ in range(2))
    outs = []
    for m in models:
        h_eval = m(x1, x2, training=False)[0]
        with tf.GradientTape() as tape:
            loss = m.loss(*m(x1, x2)[2:])
        grads = tape.gradient(loss, m.net.trainable_weights)
        stats = [v for name, v in weights.entries(m) if "moving" in name]
        outs.append([loss, h_eval, *grads, *stats])
    tol = 1e-12 if dtype == "float64" else 2e-4  # measured: 2.9e-15 and 2.9e-5 of the largest
    for i, (a, b) in enumerate(zip(*outs)):
        a, b = a.numpy(), b.numpy()
        scale = max(np.abs(a).max(), 1e-30)
        assert np.abs(a - b).max() <= tol * scale, (i, np.abs(a - b).max() / scale)


def test_queue_matches_numpy_ring_buffer_inside_tf_function():
    from tf_impl.moco import dequeue_and_enqueue

    k, d = 7, 3
    queue = tf.Variable(np.zeros((k, d), np.float32))
    ptr = tf.Variable(0, dtype=tf.int64)
    step = tf.function(
        lambda keys: dequeue_and_enqueue(queue, ptr, keys),
        input_signature=[tf.TensorSpec([None, d], tf.float32)],
    )
    rq, rp = np.zeros((k, d), np.float32), 0
    rng = np.random.default_rng(0)
    for b in [3, 3, 3, 2, 1, 7, 9, 4]:  # wrap-around, K % B != 0, partial, B == K, B > K
        keys = rng.standard_normal((b, d)).astype(np.float32)
        step(keys)
        rq, rp = ref.dequeue_and_enqueue(rq, rp, keys)
        assert int(ptr.numpy()) == rp
        np.testing.assert_array_equal(queue.numpy(), rq)


def test_moco_init_copy_momentum_and_errors():
    from tf_impl.moco import MoCo, momentum_update

    m = MoCo(queue_size=16)
    q_w, k_w = m.encoder_q.get_weights(), m.encoder_k.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(q_w, k_w))  # exact copy, BN stats included
    # perturb the query weights; after n updates the key weights equal the NumPy EMA
    rng = np.random.default_rng(0)
    expect = [w.numpy().copy() for w in m.encoder_k.trainable_weights]
    for _ in range(3):
        for w in m.encoder_q.trainable_weights:
            w.assign(w + rng.standard_normal(w.shape).astype(np.float32) * 0.1)
        momentum_update(m.encoder_q, m.encoder_k, 0.9)
        expect = [ref.ema(e, w.numpy(), 0.9) for e, w in zip(expect, m.encoder_q.trainable_weights)]
    for e, w in zip(expect, m.encoder_k.trainable_weights):
        np.testing.assert_allclose(w.numpy(), e, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="queue_size: expected K >= 1"):
        MoCo(queue_size=0)


def _cfg(tmp_path, **kw):
    from shared.run.config import TrainConfig

    base = dict(
        epochs=2,
        batch_size=32,
        limit_train=96,
        run_dir=str(tmp_path / "run"),
        knn_every=0,
        queue_size=40,
        warmup_epochs=1,
        method="moco",
    )
    base.update(kw)
    return TrainConfig(**base)


def test_train_step_traces_once_key_encoder_gets_no_gradient(tmp_path):
    from tf_impl.moco import MoCo
    from tf_impl.optim import SGD
    from tf_impl.train import TRACE_COUNT, compile_step

    m = MoCo(queue_size=40, symmetric=False)  # one direction: B keys enqueued per step
    opt = SGD(0.1, momentum=0.9)
    k_before = [w.numpy().copy() for w in m.encoder_k.trainable_weights]
    q_before = [w.numpy().copy() for w in m.encoder_q.trainable_weights]
    step = compile_step(m, opt)
    before = TRACE_COUNT["train_step"]
    rng = np.random.default_rng(0)
    for b in (16, 16, 8, 16):  # a partial batch does not retrace
        x = rng.random((b, 32, 32, 3), dtype=np.float32)
        # m = 1: the key encoder must not move at all
        step(
            tf.constant(x),
            tf.constant(x[:, ::-1]),
            tf.constant([0, b]),
            tf.constant(1.0, tf.float64),
        )
    assert TRACE_COUNT["train_step"] - before == 1
    assert all(
        np.array_equal(a, w.numpy()) for a, w in zip(k_before, m.encoder_k.trainable_weights)
    )
    assert not all(
        np.array_equal(a, w.numpy()) for a, w in zip(q_before, m.encoder_q.trainable_weights)
    )
    assert int(m.queue_ptr.numpy()) == (16 + 16 + 8 + 16) % 40


def test_short_run_lowers_loss(tmp_path):
    import json

    from tf_impl.train import train

    # MoCo's loss first *rises* while random initial queue keys (easy negatives) are replaced
    # by real keys; with K = 32 the queue is all real keys after the first step, so compare
    # from epoch 2 on. The kNN monitor (it embeds every image) runs once, after the last epoch.
    train(
        _cfg(tmp_path, epochs=4, limit_train=128, knn_every=4, queue_size=32, lr=0.2),
        progress=False,
    )
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["schema"] == "rosetta.metrics/v1" and m["framework"] == "tensorflow"
    assert m["epochs"][-1]["loss"] < m["epochs"][1]["loss"]
    assert [e["knn_top1"] is not None for e in m["epochs"]] == [False, False, False, True]


@pytest.mark.slow
def test_resume_is_exact_weights_queue_pointer(tmp_path):
    """Covered in the default run by ``tests/test_kill_resume.py``'s
    ``test_kill_minus_9_then_resume_is_bit_identical[tensorflow]``: TF MoCo resumed (twice, after
    a SIGKILL) ends with every canonical weight of the straight run, both encoders, the queue and
    its pointer included."""
    from tf_impl.train import train

    a = train(_cfg(tmp_path / "a"), progress=False)["model"]
    train(_cfg(tmp_path / "b", epochs=1), progress=False)
    b = train(_cfg(tmp_path / "b", resume=True), progress=False)["model"]
    for x, y in zip(
        a.encoder_q.get_weights() + a.encoder_k.get_weights(),
        b.encoder_q.get_weights() + b.encoder_k.get_weights(),
    ):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.queue.numpy(), b.queue.numpy())
    assert int(a.queue_ptr.numpy()) == int(b.queue_ptr.numpy())


def test_corrupt_checkpoint_clear_error(tmp_path):
    from tf_impl.checkpoint import CheckpointError
    from tf_impl.train import train

    train(_cfg(tmp_path), progress=False)
    data = sorted((tmp_path / "run" / "ckpt").glob("ckpt-2.data-*"))
    data[0].write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"ckpt-2 is unreadable"):
        train(_cfg(tmp_path, epochs=3, resume=True), progress=False)
    assert list((tmp_path / "run" / "ckpt").glob("ckpt-1.index"))


def test_bad_config(tmp_path):
    from tf_impl.train import train

    for kw, match in [
        ({"temperature": 0}, "temperature"),
        ({"queue_size": 0}, "queue_size"),
        ({"key_momentum": -0.1}, "momentum"),
    ]:
        with pytest.raises(ValueError, match=match):
            train(_cfg(tmp_path, **kw), progress=False)


def test_tfds_path_offline_with_mock_data_and_missing_dataset(tmp_path):
    import tensorflow_datasets as tfds

    from tf_impl.data import DatasetNotFound, load_split

    with tfds.testing.mock_data(num_examples=12):
        split = load_split("cifar10", "train", root=str(tmp_path))
    assert split.images.shape == (12, 32, 32, 3) and split.images.dtype == np.uint8
    with pytest.raises(DatasetNotFound, match="cifar10.*--download"):
        load_split("cifar10", "train", root=str(tmp_path / "empty"))


def test_augmentation_stateless_and_in_range():
    from tf_impl.augment import TwoViews, simclr_augment

    img = tf.constant(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    two = TwoViews(simclr_augment(32))
    a1, a2 = two(img, tf.constant([3, 4]))
    b1, _ = two(img, tf.constant([3, 4]))
    assert a1.shape == (32, 32, 3) and a1.dtype == tf.float32
    assert float(tf.reduce_min(a1)) >= 0 and float(tf.reduce_max(a1)) <= 1
    assert not np.array_equal(a1.numpy(), a2.numpy()) and np.array_equal(a1.numpy(), b1.numpy())


def test_batch_augment_is_stateless_and_its_hue_is_tf_images():
    """Same seed, same views; another seed, others. The batched hue shift is
    ``tf.image.adjust_hue`` per image (contrast and saturation follow torchvision's formulas
    instead: tests/test_augment_parity.py)."""
    from tf_impl.augment import BatchAugment, _adjust_hue

    imgs = tf.constant(np.random.default_rng(2).integers(0, 256, (6, 40, 40, 3), dtype=np.uint8))
    aug = BatchAugment(32, (0.3, 1.0), 0.5)
    a = aug(imgs, tf.constant([1, 2]))
    b = aug(imgs, tf.constant([1, 2]))
    c = aug(imgs, tf.constant([1, 3]))
    assert a.shape == (6, 32, 32, 3) and a.dtype == tf.float32
    assert np.array_equal(a.numpy(), b.numpy()) and not np.array_equal(a.numpy(), c.numpy())
    assert float(tf.reduce_min(a)) >= 0 and float(tf.reduce_max(a)) <= 1
    x = tf.random.stateless_uniform([3, 8, 8, 3], [4, 5])
    h = tf.constant([-0.1, 0.0, 0.05])
    for i in range(3):
        np.testing.assert_allclose(
            _adjust_hue(x, h)[i], tf.image.adjust_hue(x[i], float(h[i])), atol=1e-6
        )


def test_linear_eval_frozen_and_finetune_arms():
    from shared.run.data import Split
    from tf_impl.evaluate import finetune, linear_eval
    from tf_impl.models import build_encoder

    rng = np.random.default_rng(0)
    tr = Split(rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8), np.arange(64) % 4)
    te = Split(rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8), np.arange(16) % 4)
    enc = build_encoder("small_cnn")
    enc(tf.random.uniform([8, 32, 32, 3]), training=True)  # non-default BN statistics
    assert 0 <= linear_eval(enc, tr, te, epochs=1)["linear_eval_top1"] <= 1  # raises if it moved
    out = finetune(enc, "small_cnn", tr, te, fraction=0.25, epochs=1)
    assert (
        out["n_labelled"] == 16 and 0 <= out["finetune_top1"] <= 1 and 0 <= out["scratch_top1"] <= 1
    )


@pytest.mark.parametrize("augment", ["batch", "per_sample"])
def test_make_dataset_turns_autotune_off(augment):
    """tf.data's autotuning stalled MoCo epochs (deleting an iterator waited up to 5 s for its
    thread; benchmarks/results/stall.md): the training pipeline keeps it off, and
    ``autotune=True`` (the benchmark's comparison) turns it back on."""
    from shared.run.config import TrainConfig
    from tf_impl.train import make_dataset

    images = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    cfg = TrainConfig(method="moco", batch_size=8, augment=augment).resolve("tensorflow")
    ds = make_dataset(images, cfg, 0)
    assert ds.options().autotune.enabled is False
    assert make_dataset(images, cfg, 0, autotune=True).options().autotune.enabled is not False
    x1, x2 = next(iter(ds))
    assert x1.shape == (8, 32, 32, 3) and x2.shape == (8, 32, 32, 3)
