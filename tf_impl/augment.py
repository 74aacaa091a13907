"""The SimCLR/MoCo v2 augmentation in ``tf.image`` ops, for a ``tf.data`` ``map`` with AUTOTUNE.

Same spec as ``torch_impl.augment`` (crop scale, flip, jitter 0.8 s / 0.8 s / 0.8 s / 0.2 s with
p = 0.8 in random order, grayscale p = 0.2, blur p = 0.5 off at 32 px). Randomness is
*stateless*: every op takes a seed derived from ``(seed, epoch, index)``, so the augmentation
of each image is a pure function of those three and a resumed run repeats it exactly.

Differences from the torchvision version, each deliberate and documented:

* Crop: ``tf.image.stateless_sample_distorted_bounding_box`` with ``area_range=scale`` and
  ``aspect_ratio_range=(3/4, 4/3)``; it retries up to 100 times and falls back to the full
  image (torchvision: 10 tries, then a centre crop).
* Brightness: multiplicative, ``x * f`` with f ~ U[1 - b, 1 + b], to match torchvision
  (``tf.image.random_brightness`` would *add* a delta).
* Contrast: ``tf.image.adjust_contrast`` blends towards each channel's own mean; torchvision
  blends towards the mean of the grayscale image.
* Saturation: ``tf.image.adjust_saturation`` scales S in HSV; torchvision blends with the
  grayscale image. Hue: both rotate H by a delta in [-h, h] (in HSV / via RGB->HSV).
* Grayscale: ``tf.image.rgb_to_grayscale`` (ITU-R 601 weights, as torchvision).
* Blur: a separable Gaussian via ``depthwise_conv2d`` with reflect padding.
"""

from __future__ import annotations

import math

import tensorflow as tf

from shared.augment_spec import augment_spec

__all__ = ["BatchAugment", "TwoViews", "simclr_augment"]


def _jitter_ops(ranges):
    b, c, sat, h = ranges

    def factor(seed, amount):
        return tf.random.stateless_uniform([], seed, 1.0 - amount, 1.0 + amount)

    return [
        lambda x, sd: x * factor(sd, b),  # brightness (multiplicative, as torchvision)
        lambda x, sd: tf.image.adjust_contrast(x, factor(sd, c)),
        lambda x, sd: tf.image.adjust_saturation(x, factor(sd, sat)),
        lambda x, sd: tf.image.adjust_hue(x, tf.random.stateless_uniform([], sd, -h, h)),
    ]


def _gaussian_blur(x, sigma, kernel: int):
    r = kernel // 2
    t = tf.cast(tf.range(-r, r + 1), tf.float32)
    w = tf.exp(-(t**2) / (2.0 * sigma**2))
    w = w / tf.reduce_sum(w)
    xp = tf.pad(x[None], [[0, 0], [r, r], [r, r], [0, 0]], mode="REFLECT")
    kh = tf.tile(tf.reshape(w, [kernel, 1, 1, 1]), [1, 1, 3, 1])
    kw = tf.tile(tf.reshape(w, [1, kernel, 1, 1]), [1, 1, 3, 1])
    y = tf.nn.depthwise_conv2d(xp, kh, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(y, kw, [1, 1, 1, 1], "VALID")[0]


def simclr_augment(
    image_size: int = 32, scale=(0.08, 1.0), strength: float = 0.5, blur=None, flip: bool = True
):
    """Return ``view(image_uint8_hwc, seed) -> float32 (S, S, 3) in [0, 1]``.

    ``seed`` is a shape-(2,) int tensor (a stateless seed). Arguments as
    ``torch_impl.augment.simclr_augment``.
    """
    spec = augment_spec(image_size, scale, strength, blur, flip)
    jitter = _jitter_ops(spec.jitter)
    use_blur, kernel = spec.blur, spec.kernel
    lo, hi = spec.scale

    def view(image, seed):
        seeds = tf.random.experimental.stateless_split(seed, 12)
        x = tf.image.convert_image_dtype(image, tf.float32)  # (H, W, 3) in [0, 1]
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(x),
            tf.zeros([1, 0, 4]),
            seeds[0],
            min_object_covered=0.0,
            aspect_ratio_range=(3 / 4, 4 / 3),
            area_range=(lo, hi),
            max_attempts=100,
            use_image_if_no_bounding_boxes=True,
        )
        x = tf.slice(x, begin, size)
        x = tf.image.resize(x, [spec.image_size, spec.image_size], antialias=True)
        if spec.flip:
            x = tf.image.stateless_random_flip_left_right(x, seeds[1])

        def color(x):
            order = tf.argsort(tf.random.stateless_uniform([4], seeds[2]))  # random order
            for i in range(4):
                x = tf.switch_case(
                    order[i], [lambda f=f, i=i, x=x: f(x, seeds[3 + i]) for f in jitter]
                )
                x = tf.clip_by_value(x, 0.0, 1.0)
            return x

        x = tf.cond(tf.random.stateless_uniform([], seeds[7]) < 0.8, lambda: color(x), lambda: x)
        x = tf.cond(
            tf.random.stateless_uniform([], seeds[8]) < 0.2,
            lambda: tf.tile(tf.image.rgb_to_grayscale(x), [1, 1, 3]),
            lambda: x,
        )
        if use_blur:
            sigma = tf.random.stateless_uniform([], seeds[9], 0.1, 2.0)
            x = tf.cond(
                tf.random.stateless_uniform([], seeds[10]) < 0.5,
                lambda: _gaussian_blur(x, sigma, kernel),
                lambda: x,
            )
        return tf.clip_by_value(x, 0.0, 1.0)

    return view


class BatchAugment:
    """The same augmentation vectorised over a batch, like ``torch_impl.augment.BatchAugment``.

    ``BatchAugment(...)(images_uint8 (B, H, W, 3), seed) -> float32 (B, S, S, 3)``. Each image
    gets its own stateless random parameters; the ops run on the whole batch:
    ``tf.image.crop_and_resize`` for the crops (bilinear, no antialias), ``tf.where`` for flip,
    grayscale and blur, per-image factors broadcast for the jitter, and the random order is
    realised with ``tf.dynamic_partition`` / ``dynamic_stitch``: at each of the four positions
    every image goes through exactly the op its permutation puts there. Jitter semantics are those of
    :func:`simclr_augment` (multiplicative brightness, per-channel-mean contrast, HSV saturation
    and hue).
    """

    def __init__(
        self,
        image_size: int = 32,
        scale=(0.08, 1.0),
        strength: float = 0.5,
        blur=None,
        flip: bool = True,
    ):
        spec = augment_spec(image_size, scale, strength, blur, flip)
        self.size, self.scale, self.jitter = spec.image_size, spec.scale, spec.jitter
        self.blur, self.kernel, self.flip = spec.blur, spec.kernel, spec.flip

    def __call__(self, images, seed):
        seeds = tf.random.experimental.stateless_split(seed, 16)
        x = tf.image.convert_image_dtype(images, tf.float32)  # (B, H, W, 3)
        b = tf.shape(x)[0]
        h = tf.cast(tf.shape(x)[1], tf.float32)
        w = tf.cast(tf.shape(x)[2], tf.float32)
        unif = lambda i, lo=0.0, hi=1.0: tf.random.stateless_uniform([b], seeds[i], lo, hi)  # noqa: E731
        area = unif(0, *self.scale) * h * w
        ratio = tf.exp(unif(1, math.log(3 / 4), math.log(4 / 3)))
        cw = tf.clip_by_value(tf.sqrt(area * ratio), 1.0, w)
        ch = tf.clip_by_value(tf.sqrt(area / ratio), 1.0, h)
        x0 = unif(2) * (w - cw)
        y0 = unif(3) * (h - ch)
        boxes = tf.stack([y0 / h, x0 / w, (y0 + ch) / h, (x0 + cw) / w], axis=1)  # normalised
        x = tf.image.crop_and_resize(x, boxes, tf.range(b), [self.size, self.size])  # (B, S, S, 3)
        sel = lambda mask, a, c: tf.where(mask[:, None, None, None], a, c)  # noqa: E731
        x = sel(unif(4) < (0.5 if self.flip else 0.0), tf.reverse(x, axis=[2]), x)  # h. flip
        bj, cj, sj, hj = self.jitter
        f = [
            unif(5, 1 - bj, 1 + bj),
            unif(6, 1 - cj, 1 + cj),
            unif(7, 1 - sj, 1 + sj),
            unif(8, -hj, hj),
        ]
        order = tf.argsort(tf.random.stateless_uniform([b, 4], seeds[9]), axis=1)  # (B, 4)
        ops = [
            lambda v, g: v * g[:, None, None, None],
            _adjust_contrast,
            _adjust_saturation,
            _adjust_hue,
        ]
        y, idx = x, tf.range(b)
        for pos in range(4):  # each image meets each op once, in its own order
            parts = tf.dynamic_partition(y, order[:, pos], 4)
            where = tf.dynamic_partition(idx, order[:, pos], 4)
            out = [
                tf.clip_by_value(ops[k](parts[k], tf.gather(f[k], where[k])), 0.0, 1.0)
                for k in range(4)
            ]
            y = tf.dynamic_stitch(where, out)
        x = sel(unif(10) < 0.8, y, x)
        x = sel(unif(11) < 0.2, tf.tile(tf.image.rgb_to_grayscale(x), [1, 1, 1, 3]), x)
        if self.blur:
            sigma = unif(12, 0.1, 2.0)
            blurred = tf.map_fn(
                lambda a: _gaussian_blur(a[0], a[1], self.kernel),
                (x, sigma),
                fn_output_signature=tf.float32,
            )
            x = sel(unif(13) < 0.5, blurred, x)
        return tf.clip_by_value(x, 0.0, 1.0)


def _adjust_contrast(x, factor):
    """Per-image factor; blends towards each channel's mean, as ``tf.image.adjust_contrast``."""
    mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    return (x - mean) * factor[:, None, None, None] + mean


def _adjust_saturation(x, factor):
    hsv = tf.image.rgb_to_hsv(x)
    s = tf.clip_by_value(hsv[..., 1] * factor[:, None, None], 0.0, 1.0)
    return tf.image.hsv_to_rgb(tf.stack([hsv[..., 0], s, hsv[..., 2]], axis=-1))


def _adjust_hue(x, delta):
    hsv = tf.image.rgb_to_hsv(x)
    hue = tf.math.floormod(hsv[..., 0] + delta[:, None, None], 1.0)
    return tf.image.hsv_to_rgb(tf.stack([hue, hsv[..., 1], hsv[..., 2]], axis=-1))


class TwoViews:
    """``TwoViews(transform)(image, seed) -> (view1, view2)`` with two independent sub-seeds."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, image, seed):
        s = tf.random.experimental.stateless_split(seed, 2)
        return self.transform(image, s[0]), self.transform(image, s[1])
