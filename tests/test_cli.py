"""The command line a newcomer reads: ``train --help`` in groups, each framework's own flags,
``rosetta train --framework``, and bad input answered with one ``error:`` line and status 2
before a framework is imported.

Everything runs in this process (the parsers need no framework) except one subprocess that
proves the framework is not imported at all.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from shared.apps import cli, impl_cli
from shared.run.config import (
    FLAG_GROUPS,
    FRAMEWORK_ONLY,
    FRAMEWORKS,
    HELP,
    PACKAGES,
    TEST_ONLY,
    TrainConfig,
)
from shared.run.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
OTHER = {"torch": "tensorflow", "tensorflow": "torch"}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def status(fn, *args) -> int:
    """``fn(*args)``'s exit status, whether it returns it or argparse exits with it."""
    try:
        return fn(*args)
    except SystemExit as e:
        return e.code


def no_import():
    raise AssertionError("the framework was imported before the arguments were checked")


def help_text(capsys, fn, *args) -> str:
    assert status(fn, *args) == 0
    return capsys.readouterr().out


# --- the registry: every flag in one group; framework-only and test-only flags -------------


def test_every_flag_has_one_group_and_a_help_text():
    grouped = [name for _, names in FLAG_GROUPS.values() for name in names]
    assert len(grouped) == len(set(grouped)), "a flag in two groups"
    assert sorted(grouped) == sorted(TrainConfig.flag_names())
    assert set(HELP) == set(TrainConfig.flag_names())
    assert list(FLAG_GROUPS) == ["method", "data", "model", "optimisation", "run", "advanced"]


def _fields_read(package: str) -> set[str]:
    """The ``TrainConfig`` fields that ``package``'s modules read as ``cfg.<field>``."""
    names = set(TrainConfig.flag_names())
    text = "\n".join(p.read_text() for p in (ROOT / package).rglob("*.py"))
    return {n for n in names if re.search(rf"\b(cfg|config)\.{n}\b", text)}


def test_framework_only_fields_are_those_one_framework_alone_reads():
    """``FRAMEWORK_ONLY`` is exactly the fields read by one framework's package and not by the
    other's, nor by the shared run code (``config.py`` checks them, ``impl_cli`` passes them)."""
    read = {f: _fields_read(PACKAGES[f]) for f in FRAMEWORKS}
    shared = set()
    for p in (ROOT / "shared").rglob("*.py"):
        if p.name not in ("config.py", "impl_cli.py"):
            text = p.read_text()
            shared |= {n for n in TrainConfig.flag_names() if re.search(rf"\bcfg\.{n}\b", text)}
    alone = {name: f for f in FRAMEWORKS for name in read[f] - read[OTHER[f]] - shared}
    assert {name: owner for name, (owner, _) in FRAMEWORK_ONLY.items()} == alone
    assert all(why and not why.endswith(".") for _, why in FRAMEWORK_ONLY.values())


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_help_shows_the_groups_and_this_frameworks_flags_only(capsys, framework):
    out = help_text(capsys, impl_cli.main, framework, ["train", "--help"])
    assert out.startswith(f"usage: python -m {PACKAGES[framework]} train [--method simclr|moco]")
    headings = [line[:-1] for line in out.splitlines() if re.fullmatch(r"[a-z]+:", line)]
    assert headings == ["options", *FLAG_GROUPS]
    shown = set(re.findall(r"^  (--[a-z-]+)", out, re.M))
    for name in TrainConfig.flag_names():
        owner = FRAMEWORK_ONLY.get(name, (framework,))[0]
        assert (flag(name) in shown) == (owner == framework and name not in TEST_ONLY), name
    assert "--framework" not in out  # rosetta train's flag, accepted here but not shown
    method = out[out.index("\nmethod:") : out.index("\ndata:")]
    assert "  --method METHOD" in method and "(default: simclr)" in method


def test_test_only_flags_are_hidden_but_accepted():
    assert TEST_ONLY == ("limit_train",)
    for framework in FRAMEWORKS:
        args = impl_cli.build_parser(framework).parse_args(["train", "--limit-train", "48"])
        assert impl_cli.config_from_args(args).limit_train == 48


@pytest.mark.parametrize(
    "framework,argv",
    [
        ("torch", ["--strategy", "mirrored"]),
        ("torch", ["--cpu-devices", "2"]),
        ("torch", ["--jit-compile"]),
        ("torch", ["--no-jit-compile"]),
        ("tensorflow", ["--num-workers", "2"]),
    ],
)
def test_the_other_frameworks_flag_is_refused_with_its_reason(capsys, framework, argv):
    name = argv[0].removeprefix("--no-").removeprefix("--").replace("-", "_")
    owner, why = FRAMEWORK_ONLY[name]
    assert status(impl_cli.main, framework, ["train", *argv], no_import) == 2
    assert capsys.readouterr().err == f"error: {name}: a {owner} option ({why})\n"


# --- bad input: one line, status 2, before any import ---------------------------------------

BAD = [
    (["--encoder", "vgg99"], r"error: encoder: expected one of small_cnn, .*, got 'vgg99'"),
    (["--method", "byol"], r"error: method: expected one of simclr, moco, got 'byol'"),
    (
        ["--dataset", "imagenet"],
        r"error: dataset: expected 'embedded', one of \[.*, got 'imagenet'",
    ),
    (["--optimizer", "rmsprop"], r"error: optimizer: expected one of lars, sgd, adam, got"),
    (["--epochs", "0"], r"error: epochs: expected an integer >= 1, got 0"),
    (["--batch-size", "-4"], r"error: batch_size: expected an integer >= 1, got -4"),
    (["--limit-train", "1"], r"error: limit_train: expected an integer >= 2, got 1"),
    (["--device", "tpu"], r"error: device: expected one of auto, cpu, cuda, got 'tpu'"),
    (["--epochs", "x"], r"error: argument --epochs: invalid int value: 'x' \(see python -m "),
    (["--bogus"], r"error: unrecognized arguments: --bogus \(see python -m \w+ --help\)"),
]


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("argv,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_a_bad_train_flag_is_one_line_and_status_2_before_the_import(
    capsys, framework, argv, message
):
    assert status(impl_cli.main, framework, ["train", *argv], no_import) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and re.fullmatch(message + ".*\n", err), err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["finetune", "--run-dir", "r", "--fraction", "0"], "error: fraction: expected a labelled"),
        (["finetune", "--run-dir", "r", "--epochs", "0"], "error: epochs: expected >= 1 fine-"),
        (["parity-dump", "--out", "x.npz", "--random", "-1"], "error: random: expected an integer"),
        (["parity-dump", "--out", "x.npz", "--dtype", "bfloat16"], "error: dtype: bfloat16 is"),
        (["eval"], "error: the following arguments are required: --run-dir (see python -m"),
        ([], "error: the following arguments are required: COMMAND (see python -m"),
    ],
)
def test_other_commands_check_their_flags_before_the_import(capsys, argv, message):
    assert status(impl_cli.main, "tensorflow", argv, no_import) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith(message), err


def test_traceback_shows_the_cause_of_a_refused_flag(monkeypatch):
    """``--traceback`` raises the expected error, chained to the check that refused it."""
    monkeypatch.setenv("ROSETTA_TRACEBACK", "")
    with pytest.raises(ConfigError, match="temperature") as caught:
        impl_cli.main("torch", ["train", "--temperature", "0", "--traceback"], no_import)
    assert isinstance(caught.value.__cause__, ValueError)


def test_no_framework_is_imported_for_a_bad_argument():
    """The whole entry points (``tf_impl``'s quiet TensorFlow import included), in a fresh
    process: a bad encoder is one line and status 2, and neither framework was imported."""
    code = (
        "import sys\n"
        "from torch_impl.__main__ import main as torch_main\n"
        "from tf_impl.__main__ import main as tf_main\n"
        "codes = [m(['train', '--encoder', 'vgg99']) for m in (torch_main, tf_main)]\n"
        "print(codes, [m for m in ('torch', 'tensorflow') if m in sys.modules])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert proc.stdout.strip() == "[2, 2] []", proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 2 and all(re.match(r"error: encoder: expected one of ", s) for s in lines)


# --- rosetta train --framework --------------------------------------------------------------


def test_rosetta_train_becomes_the_frameworks_train_with_the_same_arguments(monkeypatch):
    calls = []
    monkeypatch.setattr(cli.os, "execv", lambda path, argv: calls.append((path, argv)))
    rest = ["--framework", "tensorflow", "--method", "moco", "--strategy", "mirrored"]
    assert cli.main(["train", *rest, "--epochs", "3"]) == 0
    path, argv = calls[0]
    assert path == sys.executable
    assert argv == [sys.executable, "-m", "tf_impl", "train", *rest, "--epochs", "3"]
    ours = cli.train_parser("tensorflow").parse_args(argv[4:])
    theirs = impl_cli.build_parser("tensorflow").parse_args(argv[3:])
    assert impl_cli.config_from_args(ours) == impl_cli.config_from_args(theirs)
    assert impl_cli.config_from_args(theirs).strategy == "mirrored"


@pytest.mark.parametrize(
    "argv,message",
    [
        ([], "error: the following arguments are required: --framework (see rosetta train --help)"),
        (["--framework", "jax"], "error: argument --framework: invalid choice: 'jax'"),
        (["--framework", "torch", "--encoder", "vgg99"], "error: encoder: expected one of"),
        (["--framework", "torch", "--jit-compile"], "error: jit_compile: a tensorflow option"),
    ],
)
def test_rosetta_train_answers_bad_arguments_itself(monkeypatch, capsys, argv, message):
    monkeypatch.setattr(cli.os, "execv", lambda *a: pytest.fail("started the framework"))
    assert status(cli.main, ["train", *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith(message), err


def test_rosetta_train_help_shows_the_groups(capsys):
    both = help_text(capsys, cli.main, ["train", "--help"])
    assert both.startswith("usage: rosetta train --framework torch|tensorflow [--method")
    for group in FLAG_GROUPS:
        assert f"\n{group}:\n" in both
    assert "--strategy" in both and "--num-workers" in both  # no framework chosen yet
    torch = help_text(capsys, cli.main, ["train", "--framework", "torch", "--help"])
    assert "--strategy" not in torch and "--num-workers" in torch
    assert re.search(r"^ +train +self-supervised", help_text(capsys, cli.main, ["--help"]), re.M)
