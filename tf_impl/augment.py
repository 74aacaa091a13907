"""The SimCLR/MoCo v2 augmentation in ``tf.image`` ops, for a ``tf.data`` ``map`` with AUTOTUNE.

Same spec as ``torch_impl.augment`` (crop scale, flip, jitter 0.8 s / 0.8 s / 0.8 s / 0.2 s with
p = 0.8 in random order, grayscale p = 0.2, blur p = 0.5 off at 32 px). Randomness is
*stateless*: every op takes a seed derived from ``(seed, epoch, index)``, so the augmentation
of each image is a pure function of those three and a resumed run repeats it exactly.

:class:`BatchAugment` (the default, ``--augment batch``) follows torchvision's formulas, so
that the two frameworks give the same views from the same parameters (its docstring says
where it leaves ``tf.image``). The per-image :func:`simclr_augment` (``--augment per_sample``)
is TF's native pipeline; its differences from the torchvision version, each deliberate:

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

from shared.oracle.augment_spec import augment_spec

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

    ``BatchAugment(...)(images_uint8 (B, H, W, 3), seed) -> float32 (B, S, S, 3)``. Two steps,
    mirrored from torch: :meth:`sample` draws each image's stateless random parameters
    (``shared.oracle.augment_spec.PARAM_KEYS``), :meth:`apply` is a pure function of images and
    parameters. Given the same parameters the two frameworks give the same views
    (``tests/test_augment_parity.py``), because this class follows torchvision's formulas where
    ``tf.image`` has others (docs/framework_differences.md):

    * the crop samples each output pixel at its bin centre, as ``roi_align(aligned=True,
      sampling_ratio=1)`` does (:func:`_crop_resize`); ``tf.image.crop_and_resize`` spans the
      box corner to corner;
    * contrast blends towards the mean of the grayscale image, saturation towards the grayscale
      image (``tf.image.adjust_contrast`` uses each channel's mean, ``adjust_saturation``
      scales S in HSV); hue rotates H in HSV, as both do.

    The random order of the jitter ops is realised with ``tf.dynamic_partition`` /
    ``dynamic_stitch``: at each of the four positions every image goes through exactly the op
    its permutation puts there.
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
        shape = tf.shape(images)
        return self.apply(images, self.sample(shape[0], shape[1], shape[2], seed))

    def sample(self, b, h, w, seed) -> dict:
        """Draw the parameters of ``b`` views of ``h`` x ``w`` images from a stateless seed."""
        seeds = tf.random.experimental.stateless_split(seed, 16)
        h, w = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
        unif = lambda i, lo=0.0, hi=1.0: tf.random.stateless_uniform([b], seeds[i], lo, hi)  # noqa: E731
        area = unif(0, *self.scale) * h * w
        ratio = tf.exp(unif(1, math.log(3 / 4), math.log(4 / 3)))
        cw = tf.clip_by_value(tf.sqrt(area * ratio), 1.0, w)
        ch = tf.clip_by_value(tf.sqrt(area / ratio), 1.0, h)
        x0 = unif(2) * (w - cw)
        y0 = unif(3) * (h - ch)
        bj, cj, sj, hj = self.jitter
        factors = [unif(5, 1 - bj, 1 + bj), unif(6, 1 - cj, 1 + cj), unif(7, 1 - sj, 1 + sj)]
        return {
            "boxes": tf.stack([x0, y0, x0 + cw, y0 + ch], axis=1),
            "flip": unif(4) < (0.5 if self.flip else 0.0),
            "jitter": unif(10) < 0.8,
            "factors": tf.stack([*factors, unif(8, -hj, hj)], axis=1),
            "order": tf.argsort(tf.random.stateless_uniform([b, 4], seeds[9]), axis=1),
            "gray": unif(11) < 0.2,
            "blur": unif(13) < (0.5 if self.blur else 0.0),
            "sigma": unif(12, 0.1, 2.0),
        }

    def apply(self, images, params: dict):
        """Augment a (B, H, W, 3) batch (uint8, or float in [0, 1]) with given parameters.

        ``params``: tensors or NumPy arrays, as ``shared.oracle.augment_spec.PARAM_KEYS``.
        Returns float32 (B, S, S, 3) in [0, 1].
        """
        p = {k: tf.convert_to_tensor(v) for k, v in params.items()}
        x = tf.image.convert_image_dtype(images, tf.float32)  # (B, H, W, 3)
        x = _crop_resize(x, tf.cast(p["boxes"], tf.float32), self.size)  # (B, S, S, 3)
        sel = lambda mask, a, c: tf.where(mask[:, None, None, None], a, c)  # noqa: E731
        x = sel(p["flip"], tf.reverse(x, axis=[2]), x)  # horizontal flip
        factors = tf.cast(p["factors"], tf.float32)
        x = sel(p["jitter"], _color(x, factors, tf.cast(p["order"], tf.int32)), x)
        x = sel(p["gray"], tf.tile(_gray(x), [1, 1, 1, 3]), x)
        if self.blur:
            blurred = tf.map_fn(
                lambda a: _gaussian_blur(a[0], a[1], self.kernel),
                (x, tf.cast(p["sigma"], tf.float32)),
                fn_output_signature=tf.float32,
            )
            x = sel(p["blur"], blurred, x)
        return tf.clip_by_value(x, 0.0, 1.0)


def _crop_resize(x, boxes, size: int):
    """Crop every image to its box and resize to ``size`` x ``size``, bilinear.

    The sample points are those of torchvision's ``roi_align(aligned=True, sampling_ratio=1)``:
    output pixel i of a box ``[x0, x1)`` reads input coordinate ``x0 - 0.5 + (i + 0.5) (x1 - x0)
    / size`` (pixel centres at integers), clamped to ``[0, W - 1]`` (the border replicates).

    Args:
        x: (B, H, W, C) float images.
        boxes: (B, 4) float32, ``x0, y0, x1, y1`` in pixels.
        size: the output side S.

    Returns:
        (B, S, S, C).
    """
    i = tf.range(size, dtype=tf.float32) + 0.5

    def taps(lo, hi, n):  # (B,) box edges -> (B, S) low index, high index, weight of high
        n1 = tf.cast(n - 1, tf.float32)
        c = lo[:, None] - 0.5 + i[None] * ((hi - lo) / size)[:, None]
        c = tf.clip_by_value(c, 0.0, n1)
        low = tf.floor(c)
        return tf.cast(low, tf.int32), tf.cast(tf.minimum(low + 1, n1), tf.int32), c - low

    y_lo, y_hi, wy = taps(boxes[:, 1], boxes[:, 3], tf.shape(x)[1])
    x_lo, x_hi, wx = taps(boxes[:, 0], boxes[:, 2], tf.shape(x)[2])
    wy = wy[:, :, None, None]
    rows = tf.gather(x, y_lo, axis=1, batch_dims=1) * (1 - wy)  # (B, S, W, C)
    rows += tf.gather(x, y_hi, axis=1, batch_dims=1) * wy
    wx = wx[:, None, :, None]
    out = tf.gather(rows, x_lo, axis=2, batch_dims=1) * (1 - wx)  # (B, S, S, C)
    return out + tf.gather(rows, x_hi, axis=2, batch_dims=1) * wx


def _gray(x):
    """Luma (B, H, W, 1), 0.2989 / 0.587 / 0.114 as ``tf.image.rgb_to_grayscale``."""
    return tf.image.rgb_to_grayscale(x)


def _color(x, factors, order):
    """The four jitter ops, each image in the order of its permutation ``order`` (B, 4)."""
    ops = [
        lambda v, g: v * g[:, None, None, None],  # brightness (multiplicative)
        _blend_contrast,
        _blend_saturation,
        _adjust_hue,
    ]
    y, idx = x, tf.range(tf.shape(x)[0])
    for pos in range(4):  # each image meets each op once, in its own order
        parts = tf.dynamic_partition(y, order[:, pos], 4)
        where = tf.dynamic_partition(idx, order[:, pos], 4)
        out = [
            tf.clip_by_value(ops[k](parts[k], tf.gather(factors[:, k], where[k])), 0.0, 1.0)
            for k in range(4)
        ]
        y = tf.dynamic_stitch(where, out)
    return y


def _blend_contrast(x, factor):
    """Blend towards the mean of the grayscale image, as torchvision's ``adjust_contrast``."""
    mean = tf.reduce_mean(_gray(x), axis=[1, 2, 3], keepdims=True)
    return (x - mean) * factor[:, None, None, None] + mean


def _blend_saturation(x, factor):
    """Blend with the grayscale image, as torchvision's ``adjust_saturation``."""
    g = _gray(x)
    return (x - g) * factor[:, None, None, None] + g


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
