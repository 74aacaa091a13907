"""Evaluation of a SimCLR or MoCo encoder: shared kNN + linear probe, linear eval, fine-tuning.

* :func:`evaluate_encoder`: features h (not z) into ``shared.run.evaluation`` (kNN top-1 and a
  logistic-regression probe), the same evaluator ``tf_impl`` uses.
* :func:`linear_eval`: the standard protocol: an ``nn.Linear`` trained on the frozen encoder
  in eval mode; afterwards it checks that no backbone weight and no BatchNorm statistic moved
  (MoCo's ``main_lincls`` sanity check) and raises if one did.
* :func:`finetune`: the whole encoder plus a linear classifier trained on a labelled subset
  (10 % by default), reported beside the same network trained from scratch on that subset and
  the frozen encoder's linear probe (``shared.run.evaluation.finetune_protocol``).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from shared.oracle.optim import warmup_cosine
from shared.parity.weights import online_network
from shared.run.evaluation import evaluate, finetune_protocol, labelled_subset
from torch_impl.augment import TwoViews, simclr_augment
from torch_impl.models import build_encoder

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


@torch.no_grad()
def extract_features(
    encoder, images: np.ndarray, batch_size: int = 512, device="cpu"
) -> np.ndarray:
    """Encoder features h (not z) of uint8 NHWC images, in eval mode: (N, F) float32 NumPy."""
    was_training = encoder.training
    encoder.eval()
    dtype = next(encoder.parameters()).dtype
    out = []
    for s in range(0, len(images), batch_size):
        x = torch.from_numpy(images[s : s + batch_size]).permute(0, 3, 1, 2).to(dtype).div_(255)
        out.append(encoder(x.to(device)).float().cpu().numpy())
    encoder.train(was_training)
    return np.concatenate(out)


@torch.no_grad()
def projections(model, images: np.ndarray, device="cpu") -> np.ndarray:
    """Projections z of un-augmented uint8 NHWC images, in eval mode: (N, D) float32 NumPy
    (``shared.run.health`` checks their spread after every epoch)."""
    net = online_network(model)
    was_training = net.training
    net.eval()
    dtype = next(net.parameters()).dtype
    x = torch.from_numpy(images).permute(0, 3, 1, 2).to(dtype).div_(255)
    _, z = net(x.to(device))
    net.train(was_training)
    return z.float().cpu().numpy()


@torch.no_grad()
def projection_batch(model, images: np.ndarray, cfg, seed: int = 1):
    """Projections ``(z1, z2)`` of two augmented views of ``images``, in eval mode (figures);
    ``cfg``: the run's resolved ``TrainConfig`` (its augmentation)."""
    torch.manual_seed(seed)
    views = TwoViews(simclr_augment(**cfg.augment_kwargs()))
    pairs = [views(torch.from_numpy(im).permute(2, 0, 1)) for im in images]
    net = online_network(model)
    net.eval()
    _, z1 = net(torch.stack([a for a, _ in pairs]))
    _, z2 = net(torch.stack([b for _, b in pairs]))
    return z1.float().numpy(), z2.float().numpy()


def evaluate_encoder(encoder, train, test, device="cpu") -> dict:
    """kNN and linear-probe top-1 of the encoder's features (``shared.run.evaluation``)."""
    ftr = extract_features(encoder, train.images, device=device)
    fte = extract_features(encoder, test.images, device=device)
    return evaluate(ftr, train.labels, fte, test.labels)


def random_init_encoder(encoder_name: str, seed: int = 0):
    """The encoder architecture, freshly initialised from ``seed``."""
    torch.manual_seed(seed)
    return build_encoder(encoder_name)


def random_init_baseline(encoder_name: str, train, test, seed: int = 0) -> dict:
    """The same encoder, untrained, scored by the same evaluator."""
    return evaluate_encoder(random_init_encoder(encoder_name, seed), train, test)


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)  # (N, 3, H, W)


def _accuracy(model, images, labels, batch: int = 512) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for s in range(0, len(images), batch):
            pred = model(_to_tensor(images[s : s + batch])).argmax(1).numpy()
            correct += int((pred == labels[s : s + batch]).sum())
    return correct / len(labels)


def _fit(model, params, images, labels, epochs, lr, batch_size, seed, train_mode_fn, flip):
    """SGD (momentum 0.9, weight decay 1e-4 on every tensor) under a per-step cosine from
    ``lr`` to 0 (``shared.oracle.optim.warmup_cosine``, no warmup): the update and schedule of
    ``tf_impl.evaluate._fit``. ``flip``: mirror half the batches horizontally (the run's
    ``cfg.flip``: off for digits, where a mirrored 2 is not a 2)."""
    rng = np.random.default_rng(seed)
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    steps, step = epochs * max(1, len(labels) // batch_size), 0
    for _ in range(epochs):
        train_mode_fn()
        order = rng.permutation(len(labels))
        for s in range(0, max(1, len(order) - batch_size + 1), batch_size):
            idx = order[s : s + batch_size]
            x = _to_tensor(images[idx])
            if rng.random() < 0.5 and flip:  # the draw is made either way: the same order
                x = x.flip(3)
            for group in opt.param_groups:
                group["lr"] = lr * warmup_cosine(step, 0, steps)
            loss = F.cross_entropy(model(x), torch.from_numpy(labels[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1


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
    """Train ``nn.Linear`` on the frozen encoder; verify the encoder did not change.
    ``flip``: horizontal flips of half the batches (pass the run's ``cfg.flip``).

    Raises:
        RuntimeError: if any backbone weight or BN running statistic changed during training.
    """
    torch.manual_seed(seed)
    before = copy.deepcopy(encoder.state_dict())
    for p in encoder.parameters():
        p.requires_grad_(False)
    n_cls = int(train.labels.max()) + 1
    head = nn.Linear(encoder.feature_dim, n_cls)
    model = nn.Sequential(encoder, head)

    def train_mode():  # the backbone stays in eval mode: BN statistics must not update
        encoder.eval()
        head.train()

    _fit(
        model,
        head.parameters(),
        train.images,
        train.labels,
        epochs,
        lr,
        batch_size,
        seed,
        train_mode,
        flip,
    )
    after = encoder.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    if changed:
        raise RuntimeError(
            f"linear_eval: the frozen encoder changed during linear evaluation: {changed[:5]}"
        )
    for p in encoder.parameters():
        p.requires_grad_(True)
    return {"linear_eval_top1": _accuracy(model, test.images, test.labels)}


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
    (``shared.run.evaluation.finetune_protocol``: the arms, the budgets chosen by
    cross-validation on the labelled subset where ``epochs`` is ``None``, the results).

    ``seed`` seeds the training (initialisation, order, flips), the folds and the probe;
    ``subset_seed`` picks the labelled subset, so that a seed study keeps the labels fixed (pass
    the run's data seed). ``flip``: as :func:`linear_eval`.
    """
    n_cls = int(train.labels.max()) + 1

    def fit(start, images, labels, n_epochs, bs):
        torch.manual_seed(seed)
        enc = copy.deepcopy(start) if start is not None else build_encoder(encoder_name)
        model = nn.Sequential(enc, nn.Linear(enc.feature_dim, n_cls))
        _fit(model, model.parameters(), images, labels, n_epochs, lr, bs, seed, model.train, flip)
        return model

    return finetune_protocol(
        encoder,
        train,
        test,
        fit,
        _accuracy,
        extract_features,
        fraction=fraction,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        subset_seed=subset_seed,
    )
