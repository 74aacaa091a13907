"""A pair nobody here wrote: torchvision's MobileNetV2 and keras.applications' MobileNetV2, both
width 0.35, 10 classes, random weights (nothing downloaded), input (N, 3, 32, 32).
torchvision's dropout is 0 so that training-mode forward passes are deterministic."""

import keras
import torch
import torchvision


def torch_mobilenet():
    torch.manual_seed(0)
    return torchvision.models.mobilenet_v2(
        weights=None, width_mult=0.35, num_classes=10, dropout=0.0
    )


def keras_mobilenet():
    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10
    )
