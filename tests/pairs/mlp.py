"""An MLP in both frameworks, for ``rosetta localise`` (input (N, 16)); each ``keras_*`` factory
but ``keras_mlp`` leaves one porting difference in."""

import keras
import torch
from torch import nn


def torch_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10)
    )


def _keras(head_activation=None, width: int = 32) -> keras.Model:
    keras.utils.set_random_seed(0)
    x = keras.Input((16,))
    h = keras.layers.Dense(width, activation="relu")(x)  # ReLU folded in: torch's comes after
    h = keras.layers.Dense(32, activation="relu")(h)
    return keras.Model(x, keras.layers.Dense(10, activation=head_activation)(h))


def keras_mlp() -> keras.Model:
    return _keras()


def keras_softmax_head() -> keras.Model:
    """A classifier head with ``activation="softmax"``: torch's returns the logits."""
    return _keras("softmax")


def keras_wider() -> keras.Model:
    """A first layer of 64 units: the layers cannot be paired."""
    return _keras(width=64)


def broken() -> nn.Module:
    raise ValueError("this factory needs a config file")


not_a_model = 3
