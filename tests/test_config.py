"""The one training configuration: method defaults, validation at the boundary, the CLI.

``BAD_CONFIGS`` is the table of bad inputs and the error each gets: every message names the
flag and what was expected. Add a row when someone finds a new one.
"""

import json
import subprocess
import sys

import pytest

from shared.run.config import METHOD_DEFAULTS, TrainConfig, load_config

BAD_CONFIGS = [
    ({"method": "byol"}, "method: expected one of"),
    ({"temperature": 0.0}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"lr": -0.1}, "lr: expected a finite number > 0"),
    ({"lr": 0.0}, "lr: expected a finite number > 0"),
    ({"lr": float("inf")}, "lr: expected a finite number > 0"),
    ({"weight_decay": -1e-4}, "weight_decay: expected a finite number >= 0"),
    ({"momentum": 1.0}, "momentum: expected the optimiser momentum in"),
    ({"momentum": float("nan")}, "momentum: expected the optimiser momentum in"),
    ({"key_momentum": 1.5}, "momentum: expected a number in"),
    ({"epochs": 0}, "epochs: expected an integer >= 1"),
    ({"batch_size": 1}, "batch_size: expected >= 2 for simclr"),
    ({"method": "moco", "batch_size": 2}, "batch_size: expected >= 2 images per BatchNorm split"),
    ({"bn_splits": 3}, "bn_splits: expected a divisor of batch_size 64"),
    ({"queue_size": 0}, "queue_size: expected an integer >= 1"),
    ({"limit_train": 0}, "limit_train: expected an integer >= 2"),
    ({"limit_train": -1400}, "limit_train: expected an integer >= 2"),
    ({"encoder": "vgg99"}, "encoder: expected one of small_cnn, resnet18_cifar, resnet18, "),
    ({"dataset": "imagenet"}, "dataset: expected 'embedded', one of"),
    ({"batch_size": -4}, "batch_size: expected an integer >= 1, got -4"),
    ({"optimizer": "rmsprop"}, "optimizer: expected one of lars, sgd, adam"),
    ({"augment": "none"}, "augment: expected one of batch, per_sample"),
    (
        {"key_momentum_schedule": "linear"},
        "key_momentum_schedule: expected one of constant, cosine",
    ),
    ({"device": "tpu"}, "device: expected one of auto, cpu, cuda"),
    ({"crop_scale": (0.9, 0.1)}, "crop_scale: expected 0 < min <= max <= 1"),
    ({"color_strength": -1.0}, "color_strength: expected >= 0"),
    ({"image_size": 4}, "image_size: expected >= 8 pixels"),
    ({"train_split": "unlabeled"}, "train_split: expected one of train, got"),
    ({"jit_compile": True}, "jit_compile: XLA compilation is a TensorFlow option"),
    ({"strategy": "mirrored"}, "strategy: tf.distribute options are TensorFlow's"),
    ({"cpu_devices": 2}, "cpu_devices: tf.distribute options are TensorFlow's"),
    ({"method": "moco", "sync_bn": True}, "sync_bn: with moco, the keys would share"),
    ({"sync_bn": True, "bn_splits": 2}, "sync_bn: SyncBN normalises the whole global batch"),
    (
        {"method": "moco", "bn_splits": 1},
        "shuffle_keys: Shuffle-BN needs more than one BatchNorm group",
    ),
]

# bad inputs that need the world size (processes or replicas)
BAD_WORLDS = [
    ({"batch_size": 63}, 2, "batch_size: expected a multiple of the world size 2"),
    ({"method": "moco", "batch_size": 4}, 2, "bn_splits: expected a divisor of the 2 images"),
    ({"batch_size": 64}, 0, "world_size: expected an integer >= 1"),
]


@pytest.mark.parametrize("kw,match", BAD_CONFIGS, ids=[next(iter(k)) for k, _ in BAD_CONFIGS])
def test_bad_config_names_the_flag(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw).resolve("torch")


@pytest.mark.parametrize("kw,world,match", BAD_WORLDS)
def test_bad_world_size_names_the_flag(kw, world, match):
    cfg = TrainConfig(**kw).resolve("torch", None)  # the world size is not known yet: fine
    with pytest.raises(ValueError, match=match):
        cfg.for_world(world)


def test_shuffle_bn_across_processes_needs_no_splits():
    """bn_splits 1 with Shuffle-BN is refused alone, and valid over 2 processes."""
    cfg = TrainConfig(method="moco", bn_splits=1).resolve("torch", None)
    assert cfg.for_world(2).world_size == 2


@pytest.mark.parametrize("method", ["simclr", "moco"])
def test_same_hyperparameters_per_method_in_both_frameworks(method):
    a, b = (
        TrainConfig(method=method).resolve("torch"),
        TrainConfig(method=method).resolve("tensorflow"),
    )
    for name in TrainConfig.flag_names():
        if name not in ("run_dir", "amp"):  # run_dir names the framework; amp depends on the device
            assert getattr(a, name) == getattr(b, name), name
    for key, value in METHOD_DEFAULTS[method].items():
        assert getattr(a, key) == (value if value is not None else 0.075 * 64**0.5)


def test_queue_smaller_than_a_steps_keys_warns():
    with pytest.warns(UserWarning, match="queue_size 64 < the 128 keys enqueued per step"):
        TrainConfig(method="moco", queue_size=64).resolve("torch")


def test_config_round_trip(tmp_path):
    import dataclasses

    cfg = TrainConfig(method="moco", epochs=3).resolve("tensorflow")
    (tmp_path / "config.json").write_text(json.dumps(dataclasses.asdict(cfg)))
    assert load_config(tmp_path) == cfg
    (tmp_path / "config.json").write_text(json.dumps({"method": "moco", "bogus": 1}))
    with pytest.raises(ValueError, match="not a config of this version"):
        load_config(tmp_path)
    with pytest.raises(FileNotFoundError, match="run_dir: no config.json"):
        load_config(tmp_path / "missing")


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_help_answers_without_importing_a_framework(framework):
    """Both command lines answer ``train --help`` at once, with the same default method."""
    code = (
        "import sys\n"
        "from shared.apps.impl_cli import main\n"
        f"try:\n    main({framework!r}, ['train', '--help'])\nexcept SystemExit:\n    pass\n"
        "bad = [m for m in ('torch', 'tensorflow') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    method = out[out.index("  --method") : out.index("  --dataset")]  # its help entry
    assert "simclr (NT-Xent" in method and "(default: simclr)" in method
    assert "--fast-kernels" in out and "plain torch.nn and Keras" in out


def test_same_command_line_same_run_in_both_frameworks():
    """The flags both frameworks offer mean the same: ``train`` parses to the same config in
    both (the few only one framework reads: ``FRAMEWORK_ONLY``, ``tests/test_cli.py``)."""
    from shared.apps.impl_cli import build_parser, config_from_args

    cfgs = [
        config_from_args(build_parser(fw).parse_args(["train"])) for fw in ("torch", "tensorflow")
    ]
    assert cfgs[0] == cfgs[1] and cfgs[0].method == "simclr" and cfgs[0].recipe == "digits"
    assert cfgs[0].resolve("torch") == TrainConfig().resolve("torch")  # digits: the defaults


def test_fast_kernels_is_off_recorded_and_a_trajectory_field(tmp_path):
    """``fast_kernels`` defaults to the plain layers, is written to config.json, and, since it
    changes TF's float32 rounding, a resume that flips it needs ``--allow-config-change``."""
    import dataclasses

    from shared.run.config import FREE_FIELDS, check_resume

    saved = TrainConfig(method="moco").resolve("tensorflow")
    assert saved.fast_kernels is False and "fast_kernels" not in FREE_FIELDS
    on = TrainConfig(method="moco", fast_kernels=True).resolve("tensorflow")
    (tmp_path / "config.json").write_text(json.dumps(dataclasses.asdict(on)))
    assert json.loads((tmp_path / "config.json").read_text())["fast_kernels"] is True
    assert load_config(tmp_path).fast_kernels is True
    with pytest.raises(ValueError, match="resume: fast_kernels: False -> True differ"):
        check_resume(saved, on)
    allowed = dataclasses.replace(on, allow_config_change=True)
    assert check_resume(saved, allowed) == ["fast_kernels"]
    old = {k: v for k, v in dataclasses.asdict(saved).items() if k != "fast_kernels"}
    (tmp_path / "config.json").write_text(json.dumps(old))  # a run from before the field
    assert load_config(tmp_path).fast_kernels is False


def test_cli_bad_flag_is_one_line_and_exit_2(capsys):
    from shared.apps.impl_cli import main

    assert main("tensorflow", ["train", "--lr", "-0.1"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: lr: expected a finite number > 0, got -0.1"


def test_knn_monitor_schedule():
    cfg = TrainConfig(epochs=12, knn_every=5).resolve("torch")
    assert [e for e in range(12) if cfg.knn_due(e)] == [4, 9, 11]  # every 5th epoch and the last
    assert not any(TrainConfig(knn_every=0).resolve("torch").knn_due(e) for e in range(60))


def test_flip_defaults_by_dataset_and_old_runs_keep_theirs(tmp_path):
    assert TrainConfig().resolve("torch").flip is False  # embedded digits: mirrors are not digits
    assert TrainConfig(dataset="cifar10").resolve("torch").flip is True
    assert TrainConfig(flip=True).resolve("torch").flip is True  # the flag wins
    saved = json.loads(json.dumps(__import__("dataclasses").asdict(TrainConfig().resolve("torch"))))
    del saved["flip"]  # a run written before the flag existed flipped every view
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert load_config(tmp_path).flip is True


def test_data_seed_fixes_the_split_for_any_seed(tmp_path):
    """``--seed`` varies training only; ``--data-seed`` picks the dataset and its split."""
    import dataclasses

    import numpy as np

    from shared.run.datasets import load_local_split as load
    from shared.run.datasets import train_test_splits

    def splits(**kw):
        cfg = TrainConfig(knn_every=1, **kw).resolve("torch")
        return train_test_splits(lambda d, s, *a: load(d, s, *a[2:]), cfg)

    (tr0, te0), (tr7, te7) = splits(seed=0), splits(seed=7)
    assert np.array_equal(tr0.images, tr7.images) and np.array_equal(te0.labels, te7.labels)
    tr_d, _ = splits(seed=0, data_seed=1)
    assert not np.array_equal(tr0.images, tr_d.images)  # another rendering and split
    from shared.run.config import HELP

    assert "not of the dataset" in HELP["seed"] and "train/test split" in HELP["data_seed"]
    saved = dataclasses.asdict(TrainConfig(seed=3).resolve("torch"))
    del saved["data_seed"]  # a run written before the flag: its --seed chose the data
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert load_config(tmp_path).data_seed == 3
    with pytest.raises(Exception, match="data_seed"):
        TrainConfig(data_seed=-1).resolve("torch")
