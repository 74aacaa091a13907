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

import math

import numpy as np
import torch
from torchvision.transforms import v2

from shared.oracle.augment_spec import augment_spec

__all__ = ["BatchAugment", "TwoViews", "simclr_augment"]


def simclr_augment(
    image_size: int = 32,
    scale: tuple[float, float] = (0.08, 1.0),
    strength: float = 0.5,
    blur: bool | None = None,
    flip: bool = True,
) -> v2.Compose:
    """Build one SimCLR view transform.

    Args:
        image_size: output side S in pixels.
        scale: the crop's area range as a fraction of the image.
        strength: colour distortion strength s.
        blur: Gaussian blur on/off; ``None`` means on only for images larger than 32 px.
        flip: the horizontal flip (p = 0.5) on/off; SimCLR has it, mirrored digits are not digits.

    Returns:
        A ``v2.Compose`` mapping a uint8 image to a float32 (3, S, S) tensor in [0, 1].
    """
    spec = augment_spec(image_size, scale, strength, blur, flip)
    bj, cj, sj, hj = spec.jitter
    ops = [
        v2.ToImage(),
        v2.RandomResizedCrop(spec.image_size, scale=spec.scale, antialias=True),
        v2.RandomHorizontalFlip(p=0.5 if spec.flip else 0.0),
        v2.RandomApply([v2.ColorJitter(bj, cj, sj, hj)], p=0.8),
        v2.RandomGrayscale(p=0.2),
    ]
    if spec.blur:
        ops.append(v2.RandomApply([v2.GaussianBlur(spec.kernel, sigma=(0.1, 2.0))], p=0.5))
    ops.append(v2.ToDtype(torch.float32, scale=True))
    return v2.Compose(ops)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> HSV in [0, 1] (hue as a fraction of the circle)."""
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    s = torch.where(maxc > 0, delta / maxc.clamp_min(1e-12), torch.zeros_like(maxc))
    safe = delta.clamp_min(1e-12)
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    return torch.stack([h, s, maxc], 1)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.long() % 6
    r = torch.stack([v, q, p, p, t, v], 1).gather(1, i[:, None]).squeeze(1)
    g = torch.stack([t, v, v, q, p, p], 1).gather(1, i[:, None]).squeeze(1)
    b = torch.stack([p, p, t, v, v, q], 1).gather(1, i[:, None]).squeeze(1)
    return torch.stack([r, g, b], 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """Luma, (B, 1, H, W), with torchvision's (and ``tf.image``'s) weights 0.2989 / 0.587 / 0.114."""
    return 0.2989 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


class BatchAugment:
    """The same SimCLR augmentation as :func:`simclr_augment`, vectorised over a batch.

    Each image still gets its own random parameters (crop box, flip, jitter factors and order,
    grayscale, blur), but all images are processed by batched tensor ops, which is ~10x faster
    than the per-image ``v2.Compose`` on a 2-core CPU and runs on the GPU when the batch is
    there. Two steps: :meth:`sample` draws the parameters (``shared.oracle.augment_spec.PARAM_KEYS``),
    :meth:`apply` is a pure function of images and parameters; ``tf_impl.augment.BatchAugment``
    has the same two, and ``tests/test_augment_parity.py`` feeds both one NumPy draw.
    Differences from :func:`simclr_augment`, by design:

    * the crop is resampled with ``torchvision.ops.roi_align`` (bilinear, one sample per output
      pixel at its bin centre, no antialias; v2 antialiases when downscaling);
    * the crop box is drawn once per image (area and log-aspect uniform, clipped to the image),
      not with v2's 10 retries + centre-crop fallback.

    Call it with a uint8 (B, 3, H, W) batch; it returns float32 (B, 3, S, S) in [0, 1].
    Randomness comes from torch's global RNG (or ``generator``).
    """

    def __init__(
        self,
        image_size: int = 32,
        scale=(0.08, 1.0),
        strength: float = 0.5,
        blur: bool | None = None,
        flip: bool = True,
    ):
        spec = augment_spec(image_size, scale, strength, blur, flip)
        self.size, self.scale, self.jitter = spec.image_size, spec.scale, spec.jitter
        self.blur, self.kernel, self.flip = spec.blur, spec.kernel, spec.flip

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images: expected a (B, 3, H, W) batch, got {tuple(images.shape)}")
        b, _, h, w = images.shape
        return self.apply(images, self.sample(b, h, w, generator))

    def sample(self, b: int, h: int, w: int, generator=None) -> dict[str, torch.Tensor]:
        """Draw the parameters of ``b`` views of ``h`` x ``w`` images (on the CPU)."""
        gen = generator
        u = lambda lo, hi: torch.empty(b).uniform_(lo, hi, generator=gen)  # noqa: E731
        area = u(*self.scale) * h * w
        ratio = torch.exp(u(math.log(3 / 4), math.log(4 / 3)))
        cw = torch.sqrt(area * ratio).clamp(1, w)
        ch = torch.sqrt(area / ratio).clamp(1, h)
        x0 = torch.rand(b, generator=gen) * (w - cw)
        y0 = torch.rand(b, generator=gen) * (h - ch)
        p = {"boxes": torch.stack([x0, y0, x0 + cw, y0 + ch], 1)}
        p["flip"] = torch.rand(b, generator=gen) < (0.5 if self.flip else 0.0)
        p["jitter"] = torch.rand(b, generator=gen) < 0.8
        bj, cj, sj, hj = self.jitter
        p["factors"] = torch.stack(
            [u(1 - bj, 1 + bj), u(1 - cj, 1 + cj), u(1 - sj, 1 + sj), u(-hj, hj)], 1
        )
        p["order"] = torch.argsort(torch.rand(b, 4, generator=gen), dim=1)  # random order
        p["gray"] = torch.rand(b, generator=gen) < 0.2
        if self.blur:
            p["sigma"] = u(0.1, 2.0)
            p["blur"] = torch.rand(b, generator=gen) < 0.5
        else:  # nothing drawn: the stream stays that of a run without blur
            p["sigma"], p["blur"] = torch.ones(b), torch.zeros(b, dtype=torch.bool)
        return p

    def apply(self, images: torch.Tensor, params: dict) -> torch.Tensor:
        """Augment a (B, 3, H, W) batch (uint8, or float in [0, 1]) with given parameters.

        ``params``: tensors or NumPy arrays, as ``shared.oracle.augment_spec.PARAM_KEYS``.
        Returns float32 (B, 3, S, S) in [0, 1].
        """
        from torchvision.ops import roi_align

        dev = images.device
        p = {k: torch.as_tensor(v, device=dev) for k, v in params.items()}
        x = images.float().div_(255) if images.dtype == torch.uint8 else images.float()
        index = torch.arange(x.shape[0], dtype=torch.float32, device=dev)[:, None]
        boxes = torch.cat([index, p["boxes"].float()], 1)  # (B, 5): image index, x0 y0 x1 y1
        x = roi_align(
            x, boxes, output_size=self.size, spatial_scale=1.0, sampling_ratio=1, aligned=True
        )  # (B, 3, S, S): crop + bilinear resize
        x = torch.where(p["flip"][:, None, None, None], x.flip(-1), x)
        x = self._color(x, p["jitter"], p["factors"].float(), p["order"])
        x = torch.where(p["gray"][:, None, None, None], _gray(x).expand_as(x), x)
        if self.blur:
            x = torch.where(p["blur"][:, None, None, None], self._gaussian_blur(x, p["sigma"]), x)
        return x.clamp_(0.0, 1.0)

    def _color(self, x, apply, factors, order) -> torch.Tensor:
        """Each image meets each jitter op once, in its own order; only where ``apply``.

        Two schedules of the same arithmetic, equal bit for bit (tests/test_data_path.py): on
        the CPU each op runs on the images that take it at that position (gathered by
        ``nonzero``, faster on a CPU at the digits' batch of 64); on an accelerator each op runs on
        every image and ``torch.where`` keeps the right ones, because ``nonzero`` makes the
        host wait for the device.
        """
        if x.device.type != "cpu":
            return self._color_where(x, apply, factors, order)
        y = x.clone()
        for pos in range(4):
            for op in range(4):
                idx = torch.nonzero(apply & (order[:, pos] == op)).squeeze(1)
                if idx.numel():
                    y[idx] = self._jitter_op(op, y[idx], factors[idx, op])
        return y

    def _color_where(self, x, apply, factors, order) -> torch.Tensor:
        """:meth:`_color` without a host synchronisation: every op on every image, kept by mask."""
        y = x
        for pos in range(4):
            out = y
            for op in range(4):
                keep = (apply & (order[:, pos] == op))[:, None, None, None]
                out = torch.where(keep, self._jitter_op(op, y, factors[:, op]), out)
            y = out
        return y

    @staticmethod
    def _jitter_op(op: int, y: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        f4 = f[:, None, None, None]
        if op == 0:  # brightness: multiplicative, as torchvision
            return (y * f4).clamp(0, 1)
        if op == 1:  # contrast: blend with the mean of the grayscale image
            m = _gray(y).mean((2, 3), keepdim=True)
            return ((y - m) * f4 + m).clamp(0, 1)
        if op == 2:  # saturation: blend with the grayscale image
            g = _gray(y)
            return ((y - g) * f4 + g).clamp(0, 1)
        return BatchAugment._hue(y, f[:, None, None])

    @staticmethod
    def _hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        hsv = _rgb_to_hsv(x)
        hsv = torch.stack([(hsv[:, 0] + shift) % 1.0, hsv[:, 1], hsv[:, 2]], 1)
        return _hsv_to_rgb(hsv)

    def _gaussian_blur(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Every image blurred with its own sigma (separable kernel, reflect padding)."""
        b, c, _, _ = x.shape
        r = self.kernel // 2
        t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
        k = torch.exp(-(t[None] ** 2) / (2 * sigma.to(x.dtype)[:, None] ** 2))
        k = k / k.sum(1, keepdim=True)  # (B, k)
        w = k.repeat_interleave(c, 0)  # (B*C, k): one kernel per image, shared by channels
        y = torch.nn.functional.pad(x.reshape(1, b * c, *x.shape[2:]), (r, r, r, r), mode="reflect")
        y = torch.nn.functional.conv2d(y, w[:, None, None, :], groups=b * c)
        return torch.nn.functional.conv2d(y, w[:, None, :, None], groups=b * c).reshape_as(x)


class TwoViews:
    """Apply the same random transform twice: ``TwoViews(t)(img) -> (view1, view2)``."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, image):
        if isinstance(image, np.ndarray):
            image = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)  # HWC -> CHW
        return self.transform(image), self.transform(image)
