"""The SimCLR augmentation (Chen et al. 2020, appendix A) with ``torchvision.transforms.v2``.

Per view, in this order:

1. ``RandomResizedCrop(size, scale=(0.08, 1.0), ratio=(3/4, 4/3))``, then a horizontal flip (p=0.5);
2. colour jitter ``ColorJitter(0.8 s, 0.8 s, 0.8 s, 0.2 s)`` applied with p = 0.8 (torchvision
   applies the four in a random order, as the paper does);
3. ``RandomGrayscale(p=0.2)``;
4. Gaussian blur with p = 0.5, kernel ~10 % of the image side (odd), sigma in [0.1, 2.0]; off
   for 32-px images, as in the paper's CIFAR-10 setting.

``s`` is the colour strength: 1.0 for ImageNet, 0.5 for CIFAR-10 in the paper (our default).
Inputs are uint8 images, (H, W, 3) NumPy or (3, H, W) tensors; outputs are float32 (3, S, S)
in [0, 1]. Randomness comes from torch's global RNG, so ``torch.manual_seed`` fixes it.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms import v2

__all__ = ["TwoViews", "simclr_augment"]


def simclr_augment(image_size: int = 32, scale: tuple[float, float] = (0.08, 1.0),
                   strength: float = 0.5, blur: bool | None = None) -> v2.Compose:  # fmt: skip
    """Build one SimCLR view transform.

    Args:
        image_size: output side S in pixels.
        scale: the crop's area range as a fraction of the image.
        strength: colour distortion strength s.
        blur: Gaussian blur on/off; ``None`` means on only for images larger than 32 px.

    Returns:
        A ``v2.Compose`` mapping a uint8 image to a float32 (3, S, S) tensor in [0, 1].
    """
    if int(image_size) < 8:
        raise ValueError(f"image_size: expected >= 8 pixels, got {image_size!r}")
    if not (0 < scale[0] <= scale[1] <= 1):
        raise ValueError(f"scale: expected 0 < min <= max <= 1, got {scale!r}")
    if strength < 0:
        raise ValueError(f"strength: expected >= 0, got {strength!r}")
    s = float(strength)
    ops = [
        v2.ToImage(),
        v2.RandomResizedCrop(image_size, scale=tuple(scale), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8),
        v2.RandomGrayscale(p=0.2),
    ]
    if blur if blur is not None else image_size > 32:
        kernel = max(3, int(0.1 * image_size) // 2 * 2 + 1)  # ~10 % of the side, odd
        ops.append(v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=0.5))
    ops.append(v2.ToDtype(torch.float32, scale=True))
    return v2.Compose(ops)


class TwoViews:
    """Apply the same random transform twice: ``TwoViews(t)(img) -> (view1, view2)``."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, image):
        if isinstance(image, np.ndarray):
            image = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)  # HWC -> CHW
        return self.transform(image), self.transform(image)
