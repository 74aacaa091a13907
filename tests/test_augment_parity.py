"""Augmentation parity: given the same sampled parameters, PyTorch's and TensorFlow's batched
SimCLR augmentations give the same views.

Both ``BatchAugment`` classes are two steps, ``sample`` (each framework's own RNG) and ``apply``
(a pure function of images and parameters). One NumPy draw (``shared.oracle.augment_spec
.sample_params``) goes to both ``apply`` functions; the views are compared under the
``augment/float32`` row of the tolerance table. Each op is also compared alone, so a failure
names the op. The differences ``tf.image`` would bring (crop grid, contrast, saturation) are
rows of docs/framework_differences.md; here they are aligned.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torchvision  # noqa: E402,F401  (before TensorFlow)

tf = pytest.importorskip("tensorflow")

from shared.oracle.augment_spec import PARAM_KEYS, augment_spec, sample_params  # noqa: E402
from shared.parity import compare as parity  # noqa: E402
from tf_impl.augment import BatchAugment as TfAugment  # noqa: E402
from torch_impl.augment import BatchAugment as TorchAugment  # noqa: E402

B, H, W, S = 48, 40, 40, 32


def _images(seed=0) -> np.ndarray:
    """(B, H, W, 3) uint8 images with structure (smooth gradients plus noise), not just noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W] / max(H, W)
    base = np.stack([xx, yy, 1 - xx * yy], -1)[None] * rng.random((B, 1, 1, 3))
    return (np.clip(base + 0.25 * rng.random((B, H, W, 3)), 0, 1) * 255).astype(np.uint8)


def _views(params: dict, blur: bool, images=None) -> tuple[np.ndarray, np.ndarray]:
    images = _images() if images is None else images
    pt = TorchAugment(S, (0.08, 1.0), 0.5, blur).apply(
        torch.from_numpy(images).permute(0, 3, 1, 2), params
    )
    tv = TfAugment(S, (0.08, 1.0), 0.5, blur).apply(images, params)
    return pt.permute(0, 2, 3, 1).numpy(), tv.numpy()


@pytest.mark.parametrize("blur", [False, True], ids=["no_blur", "blur"])
def test_same_parameters_same_views(blur):
    """The whole pipeline, every image with its own crop, flip, jitter order, grey and blur."""
    params = sample_params(augment_spec(S, blur=blur), B, H, W, np.random.default_rng(1))
    assert params["jitter"].any() and params["gray"].any() and params["flip"].any()
    a, b = _views(params, blur)
    rows = parity.assert_close(
        {"augment": {"views": a}}, {"augment": {"views": b}}, dtype="float32"
    )
    assert rows[0].max_abs > 0  # two implementations, not one called twice


def _identity(**changes) -> dict:
    """Parameters that change nothing but the crop (a fixed box), plus ``changes``."""
    p = {
        "boxes": np.tile(np.array([[4.3, 2.7, 31.9, 37.1]], np.float32), (B, 1)),
        "flip": np.zeros(B, bool),
        "jitter": np.zeros(B, bool),
        "factors": np.tile(np.array([[1.0, 1.0, 1.0, 0.0]], np.float32), (B, 1)),
        "order": np.tile(np.arange(4, dtype=np.int32), (B, 1)),
        "gray": np.zeros(B, bool),
        "blur": np.zeros(B, bool),
        "sigma": np.ones(B, np.float32),
    }
    assert set(p) == set(PARAM_KEYS)
    return {**p, **changes}


def _one_factor(k: int, value: float) -> dict:
    f = np.tile(np.array([[1.0, 1.0, 1.0, 0.0]], np.float32), (B, 1))
    f[:, k] = value
    return {"jitter": np.ones(B, bool), "factors": f}


OPS = {
    "crop": {},
    "flip": {"flip": np.ones(B, bool)},
    "brightness": _one_factor(0, 1.3),
    "contrast": _one_factor(1, 0.6),
    "saturation": _one_factor(2, 1.4),
    "hue": _one_factor(3, 0.08),
    "gray": {"gray": np.ones(B, bool)},
    "blur": {"blur": np.ones(B, bool), "sigma": np.full(B, 1.5, np.float32)},
}


@pytest.mark.parametrize("op", list(OPS))
def test_each_op_alone(op):
    """One op at a time on a fixed crop: a failure names the op. Each op must also change the
    views (against the crop alone), so the comparison is not vacuous."""
    a, b = _views(_identity(**OPS[op]), blur=True)
    parity.assert_close(
        {"augment": {op: a}}, {"augment": {op: b}}, dtype="float32", context=f"op {op}"
    )
    if op != "crop":
        crop_only, _ = _views(_identity(), blur=True)
        assert np.abs(a - crop_only).max() > 0.01, op


def test_three_samplers_draw_the_same_distributions():
    """torch's ``sample``, TF's ``sample`` and NumPy's ``sample_params``: the same keys and
    shapes, and the same means (crop area and position, factors, the Bernoulli rates) within
    5 standard errors of 20,000 draws."""
    n = 20_000
    spec = augment_spec(S, blur=True)
    torch.manual_seed(0)
    draws = {
        "numpy": sample_params(spec, n, H, W, np.random.default_rng(0)),
        "torch": {k: v.numpy() for k, v in TorchAugment(S, blur=True).sample(n, H, W).items()},
        "tf": {k: v.numpy() for k, v in TfAugment(S, blur=True).sample(n, H, W, [3, 4]).items()},
    }

    def stats(p):
        box = p["boxes"].astype(np.float64)
        area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1]) / (H * W)
        cols = [area, box[:, 0] / W, box[:, 1] / H, *p["factors"].astype(np.float64).T]
        cols += [p[k].astype(np.float64) for k in ("flip", "jitter", "gray", "blur", "sigma")]
        cols += [p["order"][:, 0].astype(np.float64)]
        return np.array([c.mean() for c in cols]), np.array([c.std() / np.sqrt(n) for c in cols])

    ref, se = stats(draws["numpy"])
    for name, p in draws.items():
        assert set(p) == set(PARAM_KEYS), name
        assert all(p[k].shape[0] == n for k in PARAM_KEYS), name
        assert (np.sort(p["order"], 1) == np.arange(4)).all(), name  # permutations
        box = p["boxes"]
        assert (box[:, 0] >= 0).all() and (box[:, 2] <= W + 1e-4).all(), name
        mean, _ = stats(p)
        z = np.abs(mean - ref) / np.maximum(se, 1e-12)
        assert z.max() < 5, (name, z.round(1))
