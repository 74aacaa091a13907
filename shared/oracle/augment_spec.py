"""The SimCLR augmentation spec, validated once for both frameworks.

``torch_impl.augment`` and ``tf_impl.augment`` implement the same pipeline from one
:class:`AugmentSpec`: crop area range, colour strength s (jitter 0.8 s / 0.8 s / 0.8 s / 0.2 s,
applied with p = 0.8), grayscale p = 0.2, and Gaussian blur p = 0.5 with a kernel of ~10 % of
the side (odd), on by default only above 32 px (the paper's CIFAR setting).

Each framework's ``BatchAugment`` is two steps, so that the two can be compared on the same
random draws: ``sample(...)`` draws an :data:`PARAM_KEYS` dict of per-image parameters with the
framework's own RNG, and ``apply(images, params)`` is a pure function of the images and those
parameters. :func:`sample_params` draws the same dict with NumPy; the augmentation-parity test
feeds one such draw to both ``apply`` functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PARAM_KEYS = ("boxes", "flip", "jitter", "factors", "order", "gray", "blur", "sigma")
"""The per-image parameters of one batch of views, B images:

* ``boxes`` (B, 4) float32: the crop, ``x0, y0, x1, y1`` in input pixels (corners, so a box of
  the whole H x W image is ``0, 0, W, H``);
* ``flip`` (B,) bool: mirror left-right;
* ``jitter`` (B,) bool: apply the colour jitter (p = 0.8);
* ``factors`` (B, 4) float32: brightness, contrast and saturation factors, and the hue shift
  as a fraction of the colour circle;
* ``order`` (B, 4) int32: a permutation of the four jitter ops (0 brightness, 1 contrast,
  2 saturation, 3 hue), applied in that order;
* ``gray`` (B,) bool: convert to grayscale (p = 0.2);
* ``blur`` (B,) bool and ``sigma`` (B,) float32: the Gaussian blur (p = 0.5) and its sigma, used
  only where the spec's ``blur`` is on.
"""


@dataclass(frozen=True)
class AugmentSpec:
    image_size: int
    scale: tuple[float, float]
    strength: float
    blur: bool
    kernel: int
    flip: bool = True

    @property
    def jitter(self) -> tuple[float, float, float, float]:
        """(brightness, contrast, saturation, hue) ranges."""
        s = self.strength
        return 0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s


def augment_spec(
    image_size: int = 32, scale=(0.08, 1.0), strength: float = 0.5, blur=None, flip: bool = True
) -> AugmentSpec:
    """Validate the arguments (``ValueError`` naming the bad one) and derive the spec."""
    if int(image_size) < 8:
        raise ValueError(f"image_size: expected >= 8 pixels, got {image_size!r}")
    if not (0 < scale[0] <= scale[1] <= 1):
        raise ValueError(f"scale: expected 0 < min <= max <= 1, got {scale!r}")
    if strength < 0:
        raise ValueError(f"strength: expected >= 0, got {strength!r}")
    size = int(image_size)
    return AugmentSpec(
        size,
        (float(scale[0]), float(scale[1])),
        float(strength),
        bool(blur) if blur is not None else size > 32,
        max(3, int(0.1 * size) // 2 * 2 + 1),
        bool(flip),
    )


def sample_params(
    spec: AugmentSpec, batch: int, height: int, width: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Draw one batch's augmentation parameters (:data:`PARAM_KEYS`) with NumPy.

    The distributions are those of both frameworks' ``BatchAugment.sample``: crop area uniform
    in ``spec.scale`` of the image, log aspect ratio uniform in [log 3/4, log 4/3], the box
    clipped to the image and placed uniformly; jitter factors uniform in ``1 -+ s_j`` (hue in
    ``-+ 0.2 s``); the jitter order a uniform permutation.

    Args:
        spec: the augmentation (from :func:`augment_spec`).
        batch: B, the number of images.
        height: H of the input images.
        width: W of the input images.
        rng: the NumPy generator to draw from.

    Returns:
        The parameter dict, NumPy arrays as :data:`PARAM_KEYS` describes.

    >>> p = sample_params(augment_spec(32), 4, 40, 40, np.random.default_rng(0))
    >>> p["boxes"].shape, p["order"].shape, bool((p["boxes"][:, 2:] <= 40).all())
    ((4, 4), (4, 4), True)
    """
    b = int(batch)
    area = rng.uniform(*spec.scale, b) * height * width
    ratio = np.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3), b))
    cw = np.clip(np.sqrt(area * ratio), 1, width)
    ch = np.clip(np.sqrt(area / ratio), 1, height)
    x0 = rng.random(b) * (width - cw)
    y0 = rng.random(b) * (height - ch)
    bj, cj, sj, hj = spec.jitter
    factors = np.stack(
        [
            rng.uniform(1 - bj, 1 + bj, b),
            rng.uniform(1 - cj, 1 + cj, b),
            rng.uniform(1 - sj, 1 + sj, b),
            rng.uniform(-hj, hj, b),
        ],
        1,
    )
    return {
        "boxes": np.stack([x0, y0, x0 + cw, y0 + ch], 1).astype(np.float32),
        "flip": rng.random(b) < (0.5 if spec.flip else 0.0),
        "jitter": rng.random(b) < 0.8,
        "factors": factors.astype(np.float32),
        "order": np.argsort(rng.random((b, 4)), axis=1).astype(np.int32),
        "gray": rng.random(b) < 0.2,
        "blur": rng.random(b) < (0.5 if spec.blur else 0.0),
        "sigma": rng.uniform(0.1, 2.0, b).astype(np.float32),
    }
