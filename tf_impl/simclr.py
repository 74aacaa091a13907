"""SimCLR (Chen et al. 2020) in TensorFlow: the model and its training step.

Algorithm 1 of the paper, one step (``SimCLR.train_step``)::

    h, z = f(x1 ++ x2), g(h)        # both views in one batch of 2N: BN sees both views
    loss = nt_xent(z1, z2, tau)     # mean over the 2N anchors, self-similarity excluded
    grads = tape.gradient(loss, weights)
    optimizer.apply_gradients(zip(grads, weights))

``tf_impl.train`` runs ``train_step`` inside one ``tf.function``, traced once.
``torch_impl.simclr`` is the same file in PyTorch. On several replicas,
``tf_impl.distributed.DistributedSimCLR`` takes the negatives from every replica.
"""

from __future__ import annotations

import tensorflow as tf

from tf_impl.losses import nt_xent
from tf_impl.models import EncoderWithHead, dtype_policy

__all__ = ["SimCLR"]


class SimCLR(tf.Module):
    """Encoder f and projection head g, and the NT-Xent step.

    Args: as ``torch_impl.simclr.SimCLR``, with the same defaults (the configuration that
    trains); ``dtype`` ``"mixed_bfloat16"`` is Keras's policy of that name.

    Example:
        >>> m = SimCLR(encoder="small_cnn", hidden_dim=16, proj_dim=8)
        >>> [int(t.shape[1]) for t in m(tf.random.uniform((4, 32, 32, 3)), tf.random.uniform((4, 32, 32, 3)))]
        [256, 256, 8, 8]
    """

    method = "simclr"

    def __init__(
        self,
        encoder: str = "small_cnn",
        hidden_dim: int = 512,
        proj_dim: int = 128,
        head_layers: int = 2,
        head_bn: bool = True,
        temperature: float = 0.2,
        bn_splits: int = 1,
        dtype: str = "float32",
    ):
        super().__init__(name="simclr")
        self.encoder_name = encoder
        self.temperature = float(temperature)
        with dtype_policy(dtype):  # views=2: BN split j holds the j-th 1/S of each view
            self.net = EncoderWithHead(
                encoder, hidden_dim, proj_dim, head_layers, bn_splits, 2, head_bn
            )

    @property
    def backbone(self):
        """The encoder f whose features h are evaluated."""
        return self.net.encoder

    def __call__(self, x1, x2, training: bool = True):
        """``(h1, h2, z1, z2)`` of two (N, S, S, 3) view batches; one pass over the 2N views."""
        n = tf.shape(x1)[0]
        h, z = self.net(tf.concat([x1, x2], 0), training=training)  # (2N, F), (2N, D)
        return h[:n], h[n:], z[:n], z[n:]

    def loss(self, z1, z2):
        """NT-Xent of the two views' projections (SimCLR eq. 1); the logits in float32."""
        return nt_xent(z1, z2, self.temperature)

    def train_step(self, x1, x2, optimizer):
        """One optimisation step on a batch of view pairs; returns the loss."""
        weights = self.net.trainable_weights
        with tf.GradientTape() as tape:
            _, _, z1, z2 = self(x1, x2, training=True)  # (N, D) each
            loss = self.loss(z1, z2)
        optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
        return loss
