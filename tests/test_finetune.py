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
