"""google-research/simclr's ResNets in PyTorch: depths 50, 101 and 152, widths 1x to 4x, with or
without selective kernels (SimCLR v2's ``sk_ratio`` 0.0625), as ``resnet.py`` builds them.

``tf_impl.simclr_resnet`` is the same network in Keras, layer for layer. Both register their
layers in ``resnet.py``'s creation order, so canonical ``conv<i>`` / ``bn<i>`` is the official
``conv2d_<i>`` / ``batch_normalization_<i>`` (``shared.run.simclr_tf1``):

* stem: a 7x7 stride-2 conv (or, with selective kernels, ResNet-D's three 3x3 convs: stride 2 to
  ``32 w``, then ``32 w`` and ``64 w`` channels), BN, ReLU, then a 3x3 stride-2 "SAME" max-pool;
* four groups of bottleneck blocks, ``64 w``, ``128 w``, ``256 w``, ``512 w`` filters, strides
  1, 2, 2, 2; a group's first block creates its projection shortcut first: a 1x1 conv (with
  selective kernels, ResNet-D: a 2x2 average pool of the block's stride, then a stride-1 1x1
  conv) and BN; then 1x1 conv-BN-ReLU, the 3x3 (stride on it) conv-BN-ReLU or a selective-kernel
  conv, 1x1 conv to ``4 filters``-BN, plus the shortcut, ReLU;
* global average pooling: h is (B, 2048 w).

Padding as ``resnet.py``'s ``conv2d_fixed_padding``: for the odd kernels used here both its
stride-1 "SAME" and its stride-2 fixed padding are ``k // 2`` on every side, torch's padding.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_impl.split_bn import batch_norm

__all__ = ["BLOCKS", "SK_MIN_DIM", "SK_RATIO", "SelectiveKernel", "SimCLRResNet"]

BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}  # resnet.py model_params
SK_RATIO = 0.0625  # SimCLR v2's released sk1 checkpoints
SK_MIN_DIM = 32  # sk_conv2d's min_dim


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride, padding=k // 2, bias=False)


class ShortcutPool(nn.Module):
    """ResNet-D's average pool before a projection conv: (B, C, H, W) -> (B, C, H', W').

    Stride > 1: zero-pad 0 before and 1 after, then a 2x2 "VALID" pool (the zeros count).
    Stride 1: TensorFlow's "SAME" 2x2 pool, whose padded cells do not count: the sum of the
    window's real cells over their number.
    """

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = F.pad(x, (0, 1, 0, 1))
        if self.stride > 1:
            return F.avg_pool2d(padded, 2, self.stride)
        cells = F.pad(torch.ones_like(x[:1, :1]), (0, 1, 0, 1))
        return F.avg_pool2d(padded, 2, 1) / F.avg_pool2d(cells, 2, 1)


class SelectiveKernel(nn.Module):
    """``resnet.py``'s ``sk_conv2d``: (B, cin, H, W) -> (B, filters, H / stride, W / stride).

    A 3x3 conv to ``2 filters`` + BN + ReLU, split into two streams a, b; their sum, averaged
    over space, goes through a 1x1 conv to ``max(filters * 0.0625, 32)`` + BN + ReLU and a 1x1
    conv to ``2 filters``, split in two: a softmax over the pair weighs a and b per channel.
    """

    def __init__(self, cin: int, filters: int, stride: int, norm):
        super().__init__()
        mid = max(int(filters * SK_RATIO), SK_MIN_DIM)
        self.conv = _conv(cin, 2 * filters, 3, stride)
        self.bn = norm(2 * filters)
        self.squeeze = _conv(filters, mid, 1)
        self.squeeze_bn = norm(mid)
        self.mix = _conv(mid, 2 * filters, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.chunk(F.relu(self.bn(self.conv(x))), 2, dim=1)
        s = (a + b).mean(dim=(2, 3), keepdim=True)  # (B, filters, 1, 1)
        m = self.mix(F.relu(self.squeeze_bn(self.squeeze(s))))  # (B, 2 filters, 1, 1)
        w = torch.softmax(torch.stack(torch.chunk(m, 2, dim=1)), dim=0)  # (2, B, filters, 1, 1)
        return a * w[0] + b * w[1]


class Bottleneck(nn.Module):
    """One bottleneck block, its layers registered in ``resnet.py``'s creation order."""

    def __init__(self, cin: int, filters: int, stride: int, projection: bool, sk: bool, norm):
        super().__init__()
        self.pool = self.proj = self.proj_bn = None
        if projection:
            self.pool = ShortcutPool(stride) if sk else None
            self.proj = _conv(cin, 4 * filters, 1, 1 if sk else stride)
            self.proj_bn = norm(4 * filters)
        self.conv1 = _conv(cin, filters, 1)
        self.bn1 = norm(filters)
        if sk:
            self.middle = SelectiveKernel(filters, filters, stride, norm)
        else:
            self.middle = nn.Sequential(
                _conv(filters, filters, 3, stride), norm(filters), nn.ReLU()
            )
        self.conv3 = _conv(filters, 4 * filters, 1)
        self.bn3 = norm(4 * filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        if self.proj is not None:
            shortcut = self.proj_bn(self.proj(x if self.pool is None else self.pool(x)))
        y = self.middle(F.relu(self.bn1(self.conv1(x))))
        return F.relu(self.bn3(self.conv3(y)) + shortcut)


class SamePadMaxPool2d(nn.Module):
    """A max-pool with TensorFlow's "SAME" padding: ``ceil(n / stride)`` outputs, the padding
    split with the smaller half before (0 before and 1 after for 3x3 stride 2 on an even
    size), padded with -inf. google-research/simclr's ResNet pools so; torchvision pads 1 on
    both sides, which moves every window by a pixel."""

    def __init__(self, kernel_size: int = 3, stride: int = 2):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for n in (x.shape[3], x.shape[2]):  # F.pad's order: last dim first
            total = max((-(-n // self.stride) - 1) * self.stride + self.kernel_size - n, 0)
            pads += [total // 2, total - total // 2]
        x = F.pad(x, pads, value=float("-inf"))
        return F.max_pool2d(x, self.kernel_size, self.stride)


class SimCLRResNet(nn.Module):
    """(B, 3, S, S) -> (B, 2048 w): google-research/simclr's ResNet (see the module docstring).

    Args:
        depth: 50, 101 or 152 (``BLOCKS``), unless ``blocks`` is given.
        width: the width multiplier w.
        sk: selective kernels (and ResNet-D's stem and shortcuts).
        bn_splits, views: the BatchNorm layers' sub-batches (``torch_impl.split_bn.batch_norm``).
        base: the first group's filters at 1x (64; smaller in the tests of reduced size).
        blocks: blocks per group, overriding ``depth`` (the tests' reduced depth).
    """

    def __init__(
        self,
        depth: int = 50,
        width: int = 1,
        sk: bool = False,
        bn_splits: int = 1,
        views: int = 1,
        base: int = 64,
        blocks: tuple | None = None,
    ):
        super().__init__()
        norm = partial(batch_norm, dim=2, bn_splits=bn_splits, views=views)
        w = base * width
        if sk:  # ResNet-D stem
            chans = [(3, w // 2, 2), (w // 2, w // 2, 1), (w // 2, w, 1)]
            stem = [m for ci, co, s in chans for m in (_conv(ci, co, 3, s), norm(co), nn.ReLU())]
        else:
            stem = [_conv(3, w, 7, 2), norm(w), nn.ReLU()]
        self.stem = nn.Sequential(*stem, SamePadMaxPool2d(3, 2))
        layers, cin = [], w
        for g, n in enumerate(blocks or BLOCKS[depth]):
            filters = w * 2**g
            for b in range(n):
                stride = 2 if g and not b else 1
                layers.append(Bottleneck(cin, filters, stride, b == 0, sk, norm))
                cin = 4 * filters
        self.blocks = nn.Sequential(*layers)
        self.feature_dim = cin
        self.input_size = 224

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x)).mean(dim=(2, 3))  # (B, 2048 w)
