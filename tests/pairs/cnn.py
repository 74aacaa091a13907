"""A small CNN with BatchNorm, a residual add, a stride-2 conv, a stride-2 depthwise conv and a
flatten before the classifier, in both frameworks (input (N, 3, 16, 16)). ``keras_cnn`` is the
aligned port; each other ``keras_*`` factory leaves one porting difference in."""

import keras
import torch
from torch import nn


class TorchCNN(nn.Module):
    def __init__(self, bn_momentum: float = 0.1):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(8, momentum=bn_momentum)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8, momentum=bn_momentum)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8, momentum=bn_momentum)
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16)
        self.bn3 = nn.BatchNorm2d(16, momentum=bn_momentum)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = torch.relu(self.bn0(self.stem(x)))
        y = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(x + self.bn2(self.conv2(y)))  # the residual add
        x = torch.relu(self.down(x))
        x = torch.relu(self.bn3(self.dw(x)))
        return self.fc(torch.flatten(x, 1))  # flattens (C, H, W)


def torch_cnn() -> nn.Module:
    torch.manual_seed(0)
    return TorchCNN()


def _keras(bn=None, same_conv=False, same_dw=False, nhwc_flatten=False) -> keras.Model:
    keras.utils.set_random_seed(0)
    L = keras.layers
    bn = {"momentum": 0.9, "epsilon": 1e-5} if bn is None else bn  # torch: 0.1, 1e-5
    x0 = keras.Input((16, 16, 3))
    x = L.ReLU()(L.BatchNormalization(**bn)(L.Conv2D(8, 3, padding="same", use_bias=False)(x0)))
    y = L.ReLU()(L.BatchNormalization(**bn)(L.Conv2D(8, 3, padding="same", use_bias=False)(x)))
    y = L.BatchNormalization(**bn)(L.Conv2D(8, 3, padding="same", use_bias=False)(y))
    x = L.ReLU()(L.Add()([x, y]))
    if same_conv:
        x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    else:  # torch pads 1 on every side; Keras's "same" would pad 0 before, 1 after
        x = L.Conv2D(16, 3, strides=2, activation="relu")(L.ZeroPadding2D(1)(x))
    if same_dw:
        x = L.DepthwiseConv2D(3, strides=2, padding="same")(x)
    else:
        x = L.DepthwiseConv2D(3, strides=2)(L.ZeroPadding2D(1)(x))
    x = L.ReLU()(L.BatchNormalization(**bn)(x))
    if not nhwc_flatten:
        x = L.Permute((3, 1, 2))(x)  # flatten in torch's (C, H, W) order
    return keras.Model(x0, L.Dense(10)(L.Flatten()(x)))


def keras_cnn() -> keras.Model:
    return _keras()


def keras_bn_defaults() -> keras.Model:
    """``BatchNormalization()`` as Keras builds it: momentum 0.99, epsilon 1e-3."""
    return _keras(bn={})


def keras_same_conv() -> keras.Model:
    return _keras(same_conv=True)


def keras_same_depthwise() -> keras.Model:
    return _keras(same_dw=True)


def keras_nhwc_flatten() -> keras.Model:
    return _keras(nhwc_flatten=True)


def keras_bn_momentum() -> keras.Model:
    """BatchNorm momentum 0.99 (Keras's default), epsilon aligned."""
    return _keras(bn={"momentum": 0.99, "epsilon": 1e-5})
