"""SimCLR (Chen et al. 2020) in TensorFlow: the model and its training step.

Algorithm 1 of the paper, one step (``SimCLR.train_step``)::

    h, z = f(x1 ++ x2), g(h)        # both views in one batch of 2N: BN sees both views
    loss = nt_xent(z1, z2, tau)     # mean over the 2N anchors, self-similarity excluded
    grads, then apply them          # compute_gradients (a GradientTape), apply_gradients

``tf_impl.train`` wraps ``train_step`` in one ``tf.function``, traced once.
``torch_impl.simclr`` is the same file in PyTorch.
"""

from __future__ import annotations

import tensorflow as tf

from shared.run.config import model_defaults
from tf_impl.distributed import mean_gradients
from tf_impl.losses import nt_xent
from tf_impl.models import EncoderWithHead, dtype_policy

__all__ = ["SimCLR"]

TRAINED = model_defaults("simclr")  # the defaults: the configuration that trains


class SimCLR(tf.Module):
    """Encoder f and projection head g, and the NT-Xent step.

    Args: as ``torch_impl.simclr.SimCLR``, with the same defaults (the trained configuration's,
    ``shared.run.config.model_defaults("simclr")``); ``dtype`` may also be
    ``"mixed_bfloat16"``.

    Example:
        >>> m = SimCLR(encoder="small_cnn", hidden_dim=16, proj_dim=8)
        >>> [int(t.shape[1]) for t in m(tf.random.uniform((4, 32, 32, 3)), tf.random.uniform((4, 32, 32, 3)))]
        [256, 256, 8, 8]
    """

    method = "simclr"

    def __init__(
        self,
        encoder: str = TRAINED["encoder"],
        hidden_dim: int = TRAINED["hidden_dim"],
        proj_dim: int = TRAINED["proj_dim"],
        head_layers: int = TRAINED["head_layers"],
        temperature: float = TRAINED["temperature"],
        bn_splits: int = TRAINED["bn_splits"],
        dtype: str = "float32",
    ):
        super().__init__(name="simclr")
        self.encoder_name = encoder
        self.temperature = float(temperature)
        with dtype_policy(dtype):
            self.net = EncoderWithHead(encoder, hidden_dim, proj_dim, head_layers, bn_splits)

    @property
    def backbone(self):
        """The encoder f whose features h are evaluated."""
        return self.net.encoder

    def __call__(self, x1, x2, training: bool = True):
        """``(h1, h2, z1, z2)`` of two (N, S, S, 3) view batches; one pass over the 2N views."""
        n = tf.shape(x1)[0]
        h, z = self.net(
            tf.concat([x1, x2], 0), training=training, view_chunks=2
        )  # (2N, F), (2N, D)
        return h[:n], h[n:], z[:n], z[n:]

    def contrastive_loss(self, x1, x2):
        """NT-Xent of the two views' projections (SimCLR eq. 1); inside ``strategy.run`` the
        negatives are every replica's views, gathered with their gradients."""
        _, _, z1, z2 = self(x1, x2, training=True)
        # logits in float32 even under mixed_bfloat16
        return nt_xent(z1, z2, self.temperature, gather_distributed=True)

    def compute_gradients(self, x1, x2):
        """The loss and its gradients, under a ``GradientTape``.

        Returns ``(loss, grads)``: the loss and the gradient of each trainable weight in
        ``net.trainable_weights`` order (inside ``strategy.run``: the mean over the replicas,
        so the step is the one-process step on the global batch, as DDP in torch).
        """
        variables = self.net.trainable_weights
        with tf.GradientTape() as tape:
            loss = self.contrastive_loss(x1, x2)
        return loss, mean_gradients(tape.gradient(loss, variables))

    def apply_gradients(self, optimizer, grads) -> None:
        """The optimiser's update with ``grads``."""
        optimizer.apply_gradients(zip(grads, self.net.trainable_weights))

    def train_step(self, x1, x2, optimizer):
        """One optimisation step on a batch of view pairs; returns the loss."""
        loss, grads = self.compute_gradients(x1, x2)
        self.apply_gradients(optimizer, grads)
        return loss
