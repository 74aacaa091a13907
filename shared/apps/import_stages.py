"""The framework-side stages of ``rosetta import``, each run in its framework's process.

    python -m shared.apps.import_stages read   --checkpoint P --format F --work DIR ...
    python -m shared.apps.import_stages target --framework T --work DIR

``read`` (torch for ``moco``, TensorFlow for ``simclr-tf1``): read the checkpoint, map it to
canonical weights (``shared.run.official``, ``shared.run.simclr_tf1``), run the independent reference forward on the proof
batch in float32 and float64, and write into ``DIR``: ``weights.npz``, ``config.json``,
``info.json``, ``batch.npz``, ``source.npz`` and, for SimCLR, ``supervised_head.npz``.
``target``: load the run that ``import-weights`` wrote (``DIR/run``) and the same weights in a
float64 model, and write each layer's output on the batch to ``DIR/target.npz`` (with the
supervised head's logits, :func:`supervised_logits`, where the checkpoint has one).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
from pathlib import Path

import numpy as np

from shared.apps.impl_cli import run_guarded
from shared.run.config import PACKAGES, TrainConfig

READER = {"moco": "torch", "simclr-tf1": "tensorflow"}  # the framework that reads each format
PROOF_DTYPES = ("float32", "float64")
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # main_moco.py's transforms.Normalize
IMAGENET_STD = (0.229, 0.224, 0.225)


def proof_batch(fmt: str, images: int, size: int, seed: int = 0) -> np.ndarray:
    """The fixed batch (images, size, size, 3), float64, in the format's input convention:
    uniform RGB in [0, 1]; for MoCo, normalised by ImageNet's mean and std."""
    x = np.random.default_rng(seed).random((images, size, size, 3))
    if fmt == "moco":
        x = (x - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)
    return x


def read(
    path: str, fmt: str, work: Path, images: int = 2, size: int = 224, weights: str = "raw",
    ft_proj_selector: int = 0,
) -> dict:  # fmt: skip
    """The ``read`` stage (see the module docstring); returns the mapping's ``info``.
    ``weights`` and ``ft_proj_selector``: SimCLR's (``shared.run.simclr_tf1.simclr_state``)."""
    from shared.parity.weights import WeightsError, save_weights
    from shared.run import official, simclr_tf1

    framework = READER[fmt]
    off = importlib.import_module(f"{PACKAGES[framework]}.official")
    ck = off.read_checkpoint(path, fmt)
    supervised: dict = {}
    if fmt == "moco":
        if (weights, ft_proj_selector) != ("raw", 0):
            raise WeightsError("weights, ft_proj_selector: simclr-tf1 options; MoCo has neither")
        state, info = official.moco_state(ck)
        fields = official.moco_config(info)
    else:
        state, info, supervised = simclr_tf1.simclr_state(ck, weights, ft_proj_selector)
        fields = simclr_tf1.simclr_config(info)
    cfg = TrainConfig(**fields).resolve("torch")
    work.mkdir(parents=True, exist_ok=True)
    meta = {"method": cfg.method, "encoder": cfg.encoder, "framework": f"official {fmt}"}
    save_weights(work / "weights.npz", state, meta)
    (work / "config.json").write_text(json.dumps({**dataclasses.asdict(cfg), "amp": False}))
    batch = proof_batch(fmt, images, size)
    np.savez(work / "batch.npz", images=batch)
    source = {}
    options = {} if fmt == "moco" else {"weights": weights, "ft_proj_selector": ft_proj_selector}
    for dtype in PROOF_DTYPES:
        outs = off.reference_outputs(ck, fmt, batch.astype(dtype), dtype, **options)
        source.update({f"{dtype}|{k}": v for k, v in outs.items()})
    if fmt == "moco":
        source["queue"], source["queue_ptr"] = state["queue"], state["queue_ptr"]
    np.savez(work / "source.npz", **source)
    if supervised:
        np.savez(work / "supervised_head.npz", **supervised)
    info["input"] = official.INPUT_CONVENTIONS[fmt]
    info["proof_batch"] = [images, size, size, 3]
    (work / "info.json").write_text(json.dumps(info, indent=2))
    return info


def target(framework: str, work: Path) -> None:
    """The ``target`` stage: ``DIR/target.npz`` of the run's float32 model (loaded as ``eval``
    loads it) and of a float64 model holding the same weights."""
    from shared.parity.weights import load_weights
    from shared.run.config import load_config

    pkg = PACKAGES[framework]
    off = importlib.import_module(f"{pkg}.official")
    methods = importlib.import_module(f"{pkg}.methods")
    weights = importlib.import_module(f"{pkg}.weights")
    batch = np.load(work / "batch.npz")["images"]
    out = {}
    model, _ = methods.load_trained(work / "run")
    outs = off.layer_outputs(model, batch.astype("float32"))
    out.update({f"float32|{k}": v for k, v in outs.items()})
    exported = weights.export_weights(model)
    if "queue" in exported:
        out["queue"], out["queue_ptr"] = exported["queue"], exported["queue_ptr"]
    del model
    model64 = methods.build_model(load_config(work / "run"), "float64")
    weights.import_weights(model64, load_weights(work / "weights.npz")[0])
    out.update({f"float64|{k}": v for k, v in off.layer_outputs(model64, batch).items()})
    if (work / "supervised_head.npz").exists():
        with np.load(work / "supervised_head.npz", allow_pickle=False) as sup:
            for dtype in PROOF_DTYPES:
                out[f"{dtype}|net/logits_sup"] = supervised_logits(out, dtype, dict(sup))
    np.savez(work / "target.npz", **out)


def supervised_logits(outs: dict, dtype: str, sup: dict) -> np.ndarray:
    """The imported supervised head on our run's recorded layers (``outs``: ``"<dtype>|<layer>"``):
    ``x @ kernel + bias``, x the input ``ft_proj_selector`` names (0: ``net/h``; j: the ReLU of
    head BN j - 1; the head's last layer: ``net/z``). (B, classes)."""
    j = int(sup["ft_proj_selector"])
    bns = sorted(k for k in outs if k.startswith(f"{dtype}|net/head/bn"))
    if j == 0:
        x = outs[f"{dtype}|net/h"]
    elif j <= len(bns):
        x = np.maximum(outs[f"{dtype}|net/head/bn{j - 1}"], 0)
    else:
        x = outs[f"{dtype}|net/z"]
    return x @ sup["kernel"].astype(dtype) + sup["bias"].astype(dtype)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m shared.apps.import_stages")
    sub = ap.add_subparsers(dest="stage", required=True)
    rd = sub.add_parser("read")
    rd.add_argument("--checkpoint", required=True)
    rd.add_argument("--format", required=True, choices=sorted(READER))
    rd.add_argument("--work", required=True)
    rd.add_argument("--images", type=int, default=2)
    rd.add_argument("--size", type=int, default=224)
    rd.add_argument("--weights", default="raw")
    rd.add_argument("--ft-proj-selector", type=int, default=0)
    tg = sub.add_parser("target")
    tg.add_argument("--framework", required=True, choices=sorted(PACKAGES))
    tg.add_argument("--work", required=True)
    args = ap.parse_args(argv)
    if args.stage == "read":
        work = Path(args.work)
        return run_guarded(
            lambda: read(
                args.checkpoint, args.format, work, args.images, args.size, args.weights,
                args.ft_proj_selector,
            ) and 0
        )  # fmt: skip
    return run_guarded(lambda: target(args.framework, Path(args.work)) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
