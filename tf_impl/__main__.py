"""``python -m tf_impl train | eval | finetune | parity-dump`` (``--help`` on each).

Mirrors ``python -m tf_impl``: same subcommands, same flags where the concept is shared.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from shared.cli_common import add_config_args, add_parity_dump_parser, config_from_args, run_guarded


def _latest_model(run_dir: str):
    from tf_impl.models import MoCo
    from tf_impl.train import make_checkpoint, restore

    cfg_path = Path(run_dir) / "config.json"
    latest = tf.train.latest_checkpoint(str(Path(run_dir) / "ckpt"))
    if not latest or not cfg_path.exists():
        raise FileNotFoundError(f"no checkpoint in {run_dir}; run `python -m tf_impl train` first")
    cfg = json.loads(cfg_path.read_text())
    model = MoCo(
        cfg["encoder"],
        cfg["queue_size"],
        cfg["proj_dim"],
        cfg["hidden_dim"],
        cfg["head_layers"],
        cfg["key_momentum"],
        cfg["temperature"],
        cfg["bn_splits"],
    )
    ckpt = make_checkpoint(model)
    manager = tf.train.CheckpointManager(ckpt, str(Path(run_dir) / "ckpt"), max_to_keep=2)
    restore(ckpt, manager)
    return model, cfg


def cmd_eval(args) -> int:
    from shared.evaluation import raw_pixel_baseline
    from shared.runlog import atomic_write_json
    from tf_impl.augment import TwoViews, simclr_augment
    from tf_impl.data import load_split
    from tf_impl.evaluate import evaluate_encoder, linear_eval, random_init_baseline
    from tf_impl.train import extract_features

    model, cfg = _latest_model(args.run_dir)
    train = load_split(cfg["dataset"], "train", cfg["root"], False, cfg["image_size"], cfg["seed"])
    test = load_split(cfg["dataset"], "test", cfg["root"], False, cfg["image_size"], cfg["seed"])
    encoder = model.encoder_q.encoder
    res = {
        "moco": evaluate_encoder(encoder, train, test),
        "random_init": random_init_baseline(cfg["encoder"], train, test, cfg["seed"]),
        "raw_pixels": raw_pixel_baseline(train.images, train.labels, test.images, test.labels),
    }
    if args.linear_eval:
        res["moco"].update(linear_eval(encoder, train, test))
    print(json.dumps(res, indent=2))
    out = Path(args.out or args.run_dir)
    atomic_write_json(out / "eval.json", res)
    # features and one batch of projections, for the report's figures
    tf.keras.utils.set_random_seed(cfg["seed"])
    from tf_impl.models import build_encoder

    rand_enc = build_encoder(cfg["encoder"])
    two = TwoViews(
        simclr_augment(cfg["image_size"], tuple(cfg["crop_scale"]), cfg["color_strength"])
    )
    pairs = [two(tf.constant(im), tf.constant([1, i])) for i, im in enumerate(test.images[:16])]
    _, z1 = model.encoder_q(tf.stack([a for a, _ in pairs]), training=False)
    _, z2 = model.encoder_q(tf.stack([b for _, b in pairs]), training=False)
    np.savez_compressed(
        out / "features.npz",
        test_labels=test.labels,
        trained=extract_features(encoder, test.images),
        random_init=extract_features(rand_enc, test.images),
        batch_z1=z1.numpy(),
        batch_z2=z2.numpy(),
        batch_labels=test.labels[:16],
    )
    return 0


def cmd_finetune(args) -> int:
    from tf_impl.data import load_split
    from tf_impl.evaluate import finetune

    model, cfg = _latest_model(args.run_dir)
    train = load_split(cfg["dataset"], "train", cfg["root"], False, cfg["image_size"], cfg["seed"])
    test = load_split(cfg["dataset"], "test", cfg["root"], False, cfg["image_size"], cfg["seed"])
    res = finetune(model.encoder_q.encoder, cfg["encoder"], train, test, args.fraction, args.epochs)
    print(json.dumps(res, indent=2))
    return 0


def cmd_parity_dump(args) -> int:
    from shared.cli_common import write_parity_dumps
    from tf_impl.parity import golden_outputs

    return write_parity_dumps(golden_outputs, "tensorflow", tf.__version__, args)


def main(argv=None) -> int:
    from tf_impl.train import TrainConfig, train

    ap = argparse.ArgumentParser(prog="python -m tf_impl", description="MoCo v2 in TensorFlow.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train", help="self-supervised MoCo v2 training (defaults: embedded data)")
    add_config_args(tr, TrainConfig)
    tr.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    ev = sub.add_parser("eval", help="kNN + linear probe of the trained encoder vs baselines")
    ev.add_argument("--run-dir", default="runs/tf-moco")
    ev.add_argument("--out", default=None, help="folder for eval.json and features.npz")
    ev.add_argument(
        "--linear-eval", action="store_true", help="also run frozen-backbone linear eval"
    )
    ft = sub.add_parser("finetune", help="fine-tune on a labelled subset vs training from scratch")
    ft.add_argument("--run-dir", default="runs/tf-moco")
    ft.add_argument("--fraction", type=float, default=0.1)
    ft.add_argument("--epochs", type=int, default=30)
    add_parity_dump_parser(sub)
    args = ap.parse_args(argv)
    if args.cmd == "train":

        def cmd_train() -> int:
            train(config_from_args(args, TrainConfig), progress=not args.no_progress)
            return 0

        return run_guarded(cmd_train)
    cmds = {"eval": cmd_eval, "finetune": cmd_finetune, "parity-dump": cmd_parity_dump}
    return run_guarded(cmds[args.cmd], args)


if __name__ == "__main__":
    raise SystemExit(main())
