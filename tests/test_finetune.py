"""The supervised fits of evaluation (linear evaluation, fine-tuning): the same update in both
frameworks, and no flip unless the run's flip rule says so."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")

from tf_impl import evaluate as tev  # noqa: E402
from torch_impl import evaluate as pev  # noqa: E402

N, CLASSES, EPOCHS, BATCH, LR = 20, 4, 3, 8, 0.3


def _data(width=1):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (N, 1, width, 3), dtype=np.uint8), np.arange(N) % CLASSES


def test_tf_fit_is_torchs_sgd_and_schedule():
    """Both ``_fit`` on one linear layer from the same weights, the same batches: equal weights
    after 6 steps of momentum SGD with weight decay under the per-step cosine. Keras's stock
    SGD folds the learning rate into the velocity (docs/framework_differences.md), and would
    fail this as soon as the rate changes, at step 2."""
    images, labels = _data()
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, CLASSES).double()
    model = torch.nn.Sequential(torch.nn.Flatten(), lin)
    dense = tf.keras.layers.Dense(CLASSES, dtype="float64")
    dense.build((None, 3))
    dense.set_weights([lin.weight.detach().numpy().T, lin.bias.detach().numpy()])

    def pt_forward(x):
        return model(x.double())

    pev._fit(pt_forward, lin.parameters(), images, labels, EPOCHS, LR, BATCH, 0, model.train, False)

    def flat(x, training):
        return tf.cast(tf.reshape(x, (-1, 3)), tf.float64)

    tev._fit(
        flat, dense, dense.trainable_variables, images, labels, EPOCHS, LR, BATCH, 0, True, False
    )
    np.testing.assert_allclose(dense.kernel.numpy(), lin.weight.detach().numpy().T, atol=1e-12)
    np.testing.assert_allclose(dense.bias.numpy(), lin.bias.detach().numpy(), atol=1e-12)


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
@pytest.mark.parametrize("flip", [False, True])
def test_fit_flips_only_when_asked(framework, flip):
    """Images dark on the left and bright on the right: a mirrored batch is bright on the left."""
    images, labels = _data(width=2)
    images[:, :, 0], images[:, :, 1] = 0, 255
    seen = []
    if framework == "torch":
        lin = torch.nn.Linear(6, CLASSES)

        def forward(x):
            seen.append(x[:, :, :, 0].detach().numpy())  # (B, C, H, W): the left column
            return lin(x.flatten(1))

        pev._fit(forward, lin.parameters(), images, labels, 2, LR, BATCH, 0, lambda: None, flip)
    else:
        dense = tf.keras.layers.Dense(CLASSES)
        dense.build((None, 6))

        def encoder(x, training):
            tf.py_function(lambda v: seen.append(v.numpy()), [x[:, :, 0]], [])  # (B, H, C)
            return tf.reshape(x, (-1, 6))

        tev._fit(
            encoder, dense, dense.trainable_variables, images, labels, 2, LR, BATCH, 0, True, flip
        )
    left = [float(s.max()) for s in seen]
    assert len(left) == 2 * (N // BATCH)
    assert (max(left) == 1.0) is flip and (min(left) == 0.0)


def test_cv_budget_sees_only_the_labelled_subset_and_the_same_folds_per_budget():
    from shared.run.evaluation import cv_budget, epochs_for

    labels = np.arange(12) % 3
    seen = []

    def fit_score(fit, held, steps):
        seen.append((tuple(fit), tuple(held), steps))
        assert not set(fit) & set(held) and set(fit) | set(held) == set(range(12))
        return {10: 0.5, 20: 0.7, 30: 0.7}[steps]  # a tie: the smaller budget wins

    out = cv_budget(labels, fit_score, budgets=(10, 20, 30), folds=3)
    assert out["steps"] == 20 and out["rule"] == "3-fold CV on the labelled training subset"
    assert out["cv_by_steps"] == {"10": 0.5, "20": 0.7, "30": 0.7}
    folds = {(f, h) for f, h, _ in seen}
    assert len(folds) == 3 and all(sum(1 for s in seen if s[:2] == fh) == 3 for fh in folds)
    one_each = cv_budget(np.arange(3), fit_score, budgets=(10, 20, 30))  # one label per class
    assert one_each == {"steps": 20, "cv_by_steps": {}, "rule": "no CV (a class has 1 label)"}
    assert (epochs_for(60, 143, 64), epochs_for(600, 143, 64), epochs_for(1, 5, 64)) == (30, 300, 1)


# TF's finetune has torch's shape line for line; its fit is tested equal to torch's above and
# its two arms in tests/test_tf_impl.py, so its CV run (6 traced fits, 7 s) is slow-marked.
@pytest.mark.parametrize("framework", ["torch", pytest.param("tensorflow", marks=pytest.mark.slow)])
def test_finetune_chooses_each_arms_budget_by_cv_on_the_labelled_subset(framework, monkeypatch):
    """``finetune(epochs=None)``: both arms get a budget from the same grid and rule, reported;
    the test split is scored once per arm, after the choice."""
    from shared.run import evaluation
    from shared.run.data import Split

    monkeypatch.setattr(evaluation, "FINETUNE_STEPS", (1, 2))
    monkeypatch.setattr(evaluation, "FINETUNE_FOLDS", 2)
    rng = np.random.default_rng(0)
    tr = Split(rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8), np.arange(16) % 2)
    te = Split(rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8), np.arange(6) % 2)
    ev = pev if framework == "torch" else tev
    enc = ev.build_encoder("small_cnn")
    out = ev.finetune(enc, "small_cnn", tr, te, fraction=0.5, batch_size=4)
    for arm in ("finetune", "scratch"):
        budget = out[f"{arm}_budget"]
        assert budget["rule"] == "2-fold CV on the labelled training subset"
        assert set(budget["cv_by_steps"]) == {"1", "2"} and budget["steps"] in (1, 2)
        assert budget["epochs"] == 1  # 8 labels at batch 4: 2 steps an epoch cover 1 or 2
        assert 0 <= out[f"{arm}_top1"] <= 1


def test_subset_probe_chooses_c_on_the_subset_alone():
    """The third arm of the fine-tune table: C by CV on the labelled subset (folds shrunk to the
    rarest class), or the middle C, said so, where a class has one label."""
    import numpy as np

    from shared.run import evaluation as E

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 4)
    feats = np.eye(3)[labels] * 5 + 0.1 * rng.standard_normal((12, 3))  # separable
    test_y = np.arange(3)
    out = E.subset_probe(feats, labels, np.eye(3) * 5, test_y)
    assert out["linear_top1"] == 1.0
    assert out["linear_budget"]["rule"] == "3-fold CV on the labelled training subset"
    assert set(out["linear_budget"]["cv_by_c"]) == {f"{c:g}" for c in E.PROBE_CS}
    one = E.subset_probe(feats[[0, 4, 8]], labels[[0, 4, 8]], np.eye(3) * 5, test_y)
    assert one["linear_budget"] == {
        "c": E.PROBE_CS[len(E.PROBE_CS) // 2],
        "cv_by_c": {},
        "rule": "no CV (a class has 1 label)",
    }
