"""A small Transformer encoder block (pre-LayerNorm, 2-head self-attention from Linear layers,
a GELU MLP, two residual adds) in both frameworks, input (N, T, 16). The Keras one is a
subclassed model, paired in call order. ``keras_block`` is the aligned port."""

import math

import keras
import torch
from keras import ops
from torch import nn

E, HEADS = 16, 2


class TorchBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(E)
        self.q, self.k, self.v, self.o = (nn.Linear(E, E) for _ in range(4))
        self.ln2 = nn.LayerNorm(E)
        self.fc1, self.fc2 = nn.Linear(E, 2 * E), nn.Linear(2 * E, E)

    def forward(self, x):
        n, t, _ = x.shape
        h = self.ln1(x)
        q, k, v = (f(h).reshape(n, t, HEADS, -1).transpose(1, 2) for f in (self.q, self.k, self.v))
        a = torch.softmax(q @ k.transpose(-1, -2) / (E // HEADS) ** 0.5, dim=-1)
        x = x + self.o((a @ v).transpose(1, 2).reshape(n, t, E))
        return x + self.fc2(nn.functional.gelu(self.fc1(self.ln2(x))))  # exact GELU


def torch_block() -> nn.Module:
    torch.manual_seed(0)
    return TorchBlock()


class KerasBlock(keras.Model):
    def __init__(self, ln_epsilon=1e-5, gelu="exact"):
        super().__init__()
        L = keras.layers
        self.ln1 = L.LayerNormalization(epsilon=ln_epsilon)
        self.q, self.k, self.v, self.o = (L.Dense(E) for _ in range(4))
        self.ln2 = L.LayerNormalization(epsilon=ln_epsilon)
        self.fc1, self.fc2 = L.Dense(2 * E), L.Dense(E)
        self.gelu = gelu

    def call(self, x):
        n, t = ops.shape(x)[0], ops.shape(x)[1]
        h = self.ln1(x)

        def heads(f):
            return ops.transpose(ops.reshape(f(h), (n, t, HEADS, -1)), (0, 2, 1, 3))

        q, k, v = heads(self.q), heads(self.k), heads(self.v)
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) / (E // HEADS) ** 0.5
        a = ops.matmul(ops.softmax(scores, axis=-1), v)
        x = x + self.o(ops.reshape(ops.transpose(a, (0, 2, 1, 3)), (n, t, E)))
        h = self.fc1(self.ln2(x))
        if self.gelu == "exact":  # the erf form, sqrt(2) a float64 constant
            g = 0.5 * h * (1 + ops.erf(h / math.sqrt(2)))
        else:
            g = ops.gelu(h, approximate=self.gelu == "keras_tanh")
        return x + self.fc2(g)


def keras_block() -> keras.Model:
    keras.utils.set_random_seed(0)
    return KerasBlock()


def keras_ln_default() -> keras.Model:
    """``LayerNormalization()``: Keras's epsilon 1e-3 against torch's 1e-5."""
    keras.utils.set_random_seed(0)
    return KerasBlock(ln_epsilon=1e-3)


def keras_gelu_tanh() -> keras.Model:
    """``keras.ops.gelu``'s default, the tanh approximation; torch's ``F.gelu`` is exact."""
    keras.utils.set_random_seed(0)
    return KerasBlock(gelu="keras_tanh")


def keras_gelu_exact() -> keras.Model:
    """``keras.ops.gelu(x, approximate=False)``: exact, but TF casts its ``sqrt(2)`` through
    float32 (in float64 a difference of 1e-8 relative, far over float64's tolerance)."""
    keras.utils.set_random_seed(0)
    return KerasBlock(gelu="keras_exact")
