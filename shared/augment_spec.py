"""The SimCLR augmentation spec, validated once for both frameworks.

``torch_impl.augment`` and ``tf_impl.augment`` implement the same pipeline from one
:class:`AugmentSpec`: crop area range, colour strength s (jitter 0.8 s / 0.8 s / 0.8 s / 0.2 s,
applied with p = 0.8), grayscale p = 0.2, and Gaussian blur p = 0.5 with a kernel of ~10 % of
the side (odd), on by default only above 32 px (the paper's CIFAR setting).
"""

from __future__ import annotations

from dataclasses import dataclass


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
