"""One evaluator for both frameworks: weighted kNN and a linear probe on frozen features.

Features come in as NumPy (N, F) arrays, whichever framework produced them, so the scores are
comparable number for number.

* :func:`knn_top1` is the InstDisc / MoCo monitor (Wu et al. 2018): L2-normalise the features,
  take each test sample's k nearest training samples by cosine similarity, weight each
  neighbour's vote by ``exp(sim / t)`` (t = 0.1) and predict the class with the largest sum.
* :func:`linear_probe` fits multinomial logistic regression on standardised frozen features.
* :func:`evaluate` runs both; :func:`raw_pixel_baseline` runs both on flattened pixels.
"""

from __future__ import annotations

import numpy as np


def _check(name: str, feats, labels):
    f = np.asarray(feats, dtype=np.float64)
    y = np.asarray(labels)
    if f.ndim != 2:
        raise ValueError(f"{name}_features: expected (N, F), got shape {f.shape}")
    if y.ndim != 1 or y.shape[0] != f.shape[0]:
        raise ValueError(f"{name}_labels: expected shape ({f.shape[0]},), got {y.shape}")
    if not np.all(np.isfinite(f)):
        raise ValueError(f"{name}_features: expected finite values, got NaN or inf")
    return f, y.astype(np.int64)


def knn_top1(
    train_features,
    train_labels,
    test_features,
    test_labels,
    k: int = 200,
    t: float = 0.1,
    chunk: int = 1024,
) -> float:
    """Weighted kNN top-1 accuracy in [0, 1] (k is clipped to the training-set size)."""
    ftr, ytr = _check("train", train_features, train_labels)
    fte, yte = _check("test", test_features, test_labels)
    if ftr.shape[1] != fte.shape[1]:
        raise ValueError(f"test_features: expected F={ftr.shape[1]}, got {fte.shape[1]}")
    if k < 1:
        raise ValueError(f"k: expected k >= 1, got {k}")
    k = min(int(k), len(ytr))
    ftr = ftr / np.maximum(np.linalg.norm(ftr, axis=1, keepdims=True), 1e-12)
    fte = fte / np.maximum(np.linalg.norm(fte, axis=1, keepdims=True), 1e-12)
    n_cls = int(max(ytr.max(), yte.max())) + 1
    correct = 0
    for s in range(0, len(yte), chunk):
        sim = fte[s : s + chunk] @ ftr.T  # (B, Ntr)
        idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]  # (B, k)
        w = np.exp(np.take_along_axis(sim, idx, axis=1) / t)  # (B, k)
        votes = np.zeros((sim.shape[0], n_cls))
        np.add.at(votes, (np.arange(sim.shape[0])[:, None], ytr[idx]), w)
        correct += int((votes.argmax(1) == yte[s : s + chunk]).sum())
    return correct / len(yte)


def linear_probe(
    train_features,
    train_labels,
    test_features,
    test_labels,
    c: float = 1.0,
    max_iter: int = 2000,
    seed: int = 0,
) -> float:
    """Top-1 accuracy of multinomial logistic regression on standardised frozen features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    ftr, ytr = _check("train", train_features, train_labels)
    fte, yte = _check("test", test_features, test_labels)
    scaler = StandardScaler().fit(ftr)
    clf = LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
    clf.fit(scaler.transform(ftr), ytr)
    return float((clf.predict(scaler.transform(fte)) == yte).mean())


def evaluate(train_features, train_labels, test_features, test_labels, k: int = 200) -> dict:
    """Both scores as ``{"knn_top1": ..., "linear_top1": ...}`` (fractions in [0, 1])."""
    return {
        "knn_top1": knn_top1(train_features, train_labels, test_features, test_labels, k=k),
        "linear_top1": linear_probe(train_features, train_labels, test_features, test_labels),
    }


def raw_pixel_baseline(train_images, train_labels, test_images, test_labels, k: int = 200) -> dict:
    """:func:`evaluate` on flattened pixels scaled to [0, 1]: the floor every encoder must beat.

    The result depends only on the data, so it is memoised on disk (keyed by a SHA-256 of the
    inputs and k) under ``shared.data.cache_dir()``: both frameworks' evaluations share it.
    """
    import hashlib
    import json

    from shared.data import cache_dir

    h = hashlib.sha256(str(k).encode())
    for a in (train_images, train_labels, test_images, test_labels):
        h.update(np.ascontiguousarray(a).tobytes())
    path = cache_dir() / f"raw-pixel-baseline-{h.hexdigest()[:32]}.json"
    if path.exists():
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            pass
    flat = lambda x: np.asarray(x, dtype=np.float64).reshape(len(x), -1) / 255.0  # noqa: E731
    res = evaluate(flat(train_images), train_labels, flat(test_images), test_labels, k=k)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(res))
    except OSError:
        pass  # a read-only cache is fine: the result is just recomputed next time
    return res


def labelled_subset(split, fraction: float, seed: int = 0):
    """A class-stratified ``fraction`` of a ``shared.data.Split`` (at least one image per class).

    Both frameworks fine-tune on exactly this subset.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction: expected 0 < fraction <= 1, got {fraction}")
    rng = np.random.default_rng(seed)
    idx = []
    for c in np.unique(split.labels):
        members = rng.permutation(np.flatnonzero(split.labels == c))
        idx.append(members[: max(1, int(round(fraction * len(members))))])
    idx = np.sort(np.concatenate(idx))
    return type(split)(split.images[idx], split.labels[idx])
