"""Evaluation of a SimCLR or MoCo encoder: shared kNN + linear probe, linear eval, fine-tuning.

Mirrors ``torch_impl.evaluate`` (same functions, same arguments): features h go to
``shared.run.evaluation``; :func:`linear_eval` trains a Dense layer on the frozen encoder and checks
afterwards that no backbone weight or BN moving statistic changed; :func:`finetune` trains the
whole encoder on a labelled subset beside the same network trained from scratch.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from shared.oracle.optim import warmup_cosine
from shared.parity.weights import online_network
from shared.run.evaluation import evaluate, finetune_protocol, labelled_subset
from tf_impl.augment import TwoViews, simclr_augment
from tf_impl.models import build_encoder
from tf_impl.optim import SGD, set_learning_rate

__all__ = [
    "evaluate_encoder",
    "extract_features",
    "finetune",
    "labelled_subset",
    "linear_eval",
    "projection_batch",
    "projections",
    "random_init_baseline",
    "random_init_encoder",
]


def extract_features(
    encoder, images: np.ndarray, batch_size: int = 512, device="cpu"
) -> np.ndarray:
    """Encoder features h (not z) of uint8 NHWC images in inference mode: (N, F) float32.

    ``device`` is accepted for symmetry with torch; TensorFlow places ops itself.
    """
    dtype = encoder.weights[0].dtype
    out = []
    for s in range(0, len(images), batch_size):
        x = tf.cast(tf.convert_to_tensor(images[s : s + batch_size]), dtype) / 255.0
        out.append(tf.cast(encoder(x, training=False), tf.float32).numpy())
    return np.concatenate(out)


def projections(model, images: np.ndarray, device="cpu") -> np.ndarray:
    """Projections z of un-augmented uint8 NHWC images, in inference mode: (N, D) float32 NumPy
    (``shared.run.health`` checks their spread after every epoch). ``device`` is unused: TF places."""
    net = online_network(model)
    dtype = net.weights[0].dtype
    x = tf.cast(tf.convert_to_tensor(images), dtype) / 255.0
    _, z = net(x, training=False)
    return tf.cast(z, tf.float32).numpy()


def projection_batch(model, images: np.ndarray, cfg, seed: int = 1):
    """Projections ``(z1, z2)`` of two augmented views of ``images``, in inference mode (figures);
    ``cfg``: the run's resolved ``TrainConfig`` (its augmentation)."""
    two = TwoViews(simclr_augment(**cfg.augment_kwargs()))
    pairs = [two(tf.constant(im), tf.constant([seed, i])) for i, im in enumerate(images)]
    net = online_network(model)
    _, z1 = net(tf.stack([a for a, _ in pairs]), training=False)
    _, z2 = net(tf.stack([b for _, b in pairs]), training=False)
    return tf.cast(z1, tf.float32).numpy(), tf.cast(z2, tf.float32).numpy()


def evaluate_encoder(encoder, train, test, device="cpu") -> dict:
    """kNN and linear-probe top-1 of the encoder's features (``shared.run.evaluation``)."""
    return evaluate(
        extract_features(encoder, train.images),
        train.labels,
        extract_features(encoder, test.images),
        test.labels,
    )


def random_init_encoder(encoder_name: str, seed: int = 0):
    """The encoder architecture, freshly initialised from ``seed``."""
    tf.keras.utils.set_random_seed(seed)
    return build_encoder(encoder_name)


def random_init_baseline(encoder_name: str, train, test, seed: int = 0) -> dict:
    """The same encoder, untrained, scored by the same evaluator."""
    return evaluate_encoder(random_init_encoder(encoder_name, seed), train, test)


def _accuracy(encoder, head, images, labels) -> float:
    pred = []
    for s in range(0, len(images), 512):
        x = tf.convert_to_tensor(images[s : s + 512], tf.float32) / 255.0
        pred.append(tf.argmax(head(encoder(x, training=False)), 1).numpy())
    return float((np.concatenate(pred) == labels).mean())


def _fit(
    encoder, head, variables, images, labels, epochs, lr, batch_size, seed, encoder_training, flip
):
    """The project's SGD (``tf_impl.optim.SGD``: torch's update, momentum 0.9, weight decay
    1e-4 on every tensor) under a per-step cosine from ``lr`` to 0
    (``shared.oracle.optim.warmup_cosine``, no warmup): the update and schedule of
    ``torch_impl.evaluate._fit``. ``flip``: as there."""
    rng = np.random.default_rng(seed)
    steps, step_i = epochs * max(1, len(labels) // batch_size), 0
    opt = SGD(lr, momentum=0.9, weight_decay=1e-4)
    opt.build(variables)

    @tf.function(reduce_retracing=True)
    def step(x, y):
        with tf.GradientTape() as tape:
            logits = head(encoder(x, training=encoder_training))
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))

    for _ in range(epochs):
        order = rng.permutation(len(labels))
        for s in range(0, max(1, len(order) - batch_size + 1), batch_size):
            idx = order[s : s + batch_size]
            x = tf.convert_to_tensor(images[idx], tf.float32) / 255.0
            if rng.random() < 0.5 and flip:  # the draw is made either way: the same order
                x = x[:, :, ::-1]  # horizontal flip
            set_learning_rate(opt, lr * warmup_cosine(step_i, 0, steps))
            step(x, tf.convert_to_tensor(labels[idx]))
            step_i += 1


def linear_eval(
    encoder,
    train,
    test,
    epochs: int = 30,
    lr: float = 0.1,
    batch_size: int = 128,
    seed: int = 0,
    flip: bool = False,
) -> dict:
    """Train a Dense layer on the frozen encoder; verify the encoder did not change.
    ``flip``: horizontal flips of half the batches (pass the run's ``cfg.flip``).

    Raises:
        RuntimeError: if any backbone weight or BN moving statistic changed.
    """
    tf.keras.utils.set_random_seed(seed)
    before = [w.numpy().copy() for w in encoder.weights]
    head = tf.keras.layers.Dense(int(train.labels.max()) + 1)
    head.build((None, encoder.feature_dim))
    _fit(
        encoder,
        head,
        head.trainable_variables,
        train.images,
        train.labels,
        epochs,
        lr,
        batch_size,
        seed,
        encoder_training=False,
        flip=flip,
    )
    changed = [w.path for w, b in zip(encoder.weights, before) if not np.array_equal(w.numpy(), b)]
    if changed:
        raise RuntimeError(
            f"linear_eval: the frozen encoder changed during linear evaluation: {changed[:5]}"
        )
    return {"linear_eval_top1": _accuracy(encoder, head, test.images, test.labels)}


def finetune(
    encoder,
    encoder_name: str,
    train,
    test,
    fraction: float = 0.1,
    epochs: int | None = None,
    lr: float = 0.05,
    batch_size: int = 64,
    seed: int = 0,
    flip: bool = False,
    subset_seed: int = 0,
) -> dict:
    """Fine-tune the pretrained encoder on ``fraction`` of the labels, beside the same
    architecture trained from scratch on the same subset and the frozen encoder's linear probe
    (``shared.run.evaluation.finetune_protocol``). Arguments and results: as
    ``torch_impl.evaluate.finetune``."""
    n_cls = int(train.labels.max()) + 1

    def fit(start, images, labels, n_epochs, bs):
        tf.keras.utils.set_random_seed(seed)
        enc = build_encoder(encoder_name)
        if start is not None:
            enc.set_weights(start.get_weights())
        head = tf.keras.layers.Dense(n_cls)
        head.build((None, enc.feature_dim))
        variables = enc.trainable_variables + head.trainable_variables
        _fit(enc, head, variables, images, labels, n_epochs, lr, bs, seed, True, flip)
        return enc, head

    def accuracy(model, images, labels):
        return _accuracy(*model, images, labels)

    return finetune_protocol(
        encoder,
        train,
        test,
        fit,
        accuracy,
        extract_features,
        fraction=fraction,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        subset_seed=subset_seed,
    )
