"""``python -m torch_impl`` and ``python -m tf_impl``: one command line for both frameworks.

    python -m torch_impl train [--method simclr|moco] ...   (default method: simclr)
    python -m tf_impl train [--method simclr|moco] ...      (default method: simclr)
    rosetta train --framework torch|tensorflow ...          (the same command, see shared.apps.cli)
    python -m <impl> eval --run-dir DIR                     (method read from DIR/config.json)
    python -m <impl> finetune --run-dir DIR
    python -m <impl> parity-dump --out F.npz

``train`` has one flag per ``TrainConfig`` field, shown by ``--help`` in the groups of
``shared.run.config.FLAG_GROUPS``. A flag only one framework reads (``FRAMEWORK_ONLY``) is
offered by that framework's command line alone; the other refuses it with the reason.
``TEST_ONLY`` flags are accepted and not shown.

Arguments are parsed and checked before the framework is imported (``check_train`` and the
other ``check_*``: ``TrainConfig.resolve`` needs no framework), so ``--help`` and argument
errors answer at once. Each framework package provides the same modules (``train``,
``evaluate``, ``checkpoint``, ``data``, ``parity``) with the same functions, which is what lets
one CLI serve both. Expected failures (``shared.RosettaError``: bad input, missing data, a bad
checkpoint, a run directory in use; and argparse's own errors) print one ``error:`` line and
exit with status 2; anything else is a bug and shows its traceback. Ctrl-C prints one
``interrupted:`` line (in ``train``, the last complete checkpoint and ``--resume``) and exits
with status 130. ``--traceback`` (before or after the command; or ``ROSETTA_TRACEBACK=1`` in
the environment) shows the traceback of expected failures and of Ctrl-C too.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import os
import sys
from pathlib import Path

from shared import RosettaError
from shared.run.config import (
    FLAG_GROUPS,
    FRAMEWORK_ONLY,
    HELP,
    METHOD_DEFAULTS,
    PACKAGES,
    TEST_ONLY,
    TrainConfig,
)
from shared.run.errors import ConfigError, MissingFileError, RunDirError
from shared.run.runlog import atomic_write_npz


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are the project's: one ``error:`` line, status 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


class _OtherFramework(argparse.Action):
    """A flag that only the other framework's command line offers: refused with the reason
    (``FRAMEWORK_ONLY``), not as an unknown flag."""

    def __call__(self, parser, namespace, values, option_string=None):
        owner, why = FRAMEWORK_ONLY[self.dest]
        parser.exit(2, f"error: {self.dest}: a {owner} option ({why})\n")


def add_config_args(
    parser: argparse.ArgumentParser, framework: str | None = None
) -> dict[str, argparse._ArgumentGroup]:
    """One ``--flag`` per ``TrainConfig`` field, with its help text and default, in the groups
    of ``FLAG_GROUPS``; ``TEST_ONLY`` flags are accepted but not shown.

    Args:
        parser: the ``train`` parser.
        framework: offer this framework's flags; the other framework's ``FRAMEWORK_ONLY`` flags
            are refused with their reason. ``None``: every flag (help before a framework is
            chosen).

    Returns:
        The argument groups by title, for flags that are not config fields.
    """
    groups = {
        title: parser.add_argument_group(title, text) for title, (text, _) in FLAG_GROUPS.items()
    }
    group_of = {name: title for title, (_, names) in FLAG_GROUPS.items() for name in names}
    offered = TrainConfig.flag_names(framework)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name in offered:
            _add_flag(groups[group_of[f.name]], f, flag)
        elif f.name in FRAMEWORK_ONLY:
            negated = ["--no-" + flag[2:]] if str(f.type).startswith("bool") else []
            parser.add_argument(
                flag,
                *negated,
                dest=f.name,
                nargs="?",
                action=_OtherFramework,
                default=argparse.SUPPRESS,
                help=argparse.SUPPRESS,
            )
    return groups


def _add_flag(group, f: dataclasses.Field, flag: str) -> None:
    default = f.default
    if "(default:" in HELP[f.name]:  # the text explains its default itself
        said = ""
    elif default is None:  # None: the method's default, or a rule the text explains
        said = " (default: per method)" if f.name in METHOD_DEFAULTS["simclr"] else ""
    else:
        said = f" (default: {default})"
    text = HELP[f.name] + said
    # not given: absent from the namespace, so that the recipe's value stands (config_from_args)
    kw = {"default": argparse.SUPPRESS, "help": argparse.SUPPRESS if f.name in TEST_ONLY else text}
    if str(f.type).startswith("bool"):
        group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
    elif isinstance(f.default, tuple):
        group.add_argument(flag, type=float, nargs=2, metavar=("MIN", "MAX"), **kw)
    else:
        group.add_argument(flag, type=_flag_type(f), **kw)


def _flag_type(f: dataclasses.Field):
    hint = str(f.type)
    return int if hint.startswith("int") else float if hint.startswith("float") else str


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The ``TrainConfig`` of parsed ``train`` flags: ``--recipe``'s values (default: digits),
    each flag given in place of the recipe's value (``TrainConfig.from_recipe``)."""
    given = {name: getattr(args, name) for name in TrainConfig.flag_names() if hasattr(args, name)}
    return TrainConfig.from_recipe(**given)


def add_train_args(parser: argparse.ArgumentParser, framework: str | None) -> None:
    """The flags of ``train``: the config's (``add_config_args``) and the run's own.

    Args:
        parser: the ``train`` parser of ``python -m <impl>`` or of ``rosetta``.
        framework: the framework that trains, or ``None`` while ``rosetta train`` does not
            know it yet (every config flag shown, ``--framework`` required).
    """
    groups = add_config_args(parser, framework)
    groups["run"].add_argument("--no-progress", action="store_true", help="hide the progress bar")
    groups["run"].add_argument(
        "--eval",
        action="store_true",
        help="then evaluate, in this process, as `eval --run-dir` would (one process: the "
        "framework is imported and the data loaded once); single-process runs only",
    )


TRAIN_USAGE = "%(prog)s [--method simclr|moco] [--FLAG VALUE ...]"


def build_parser(framework: str) -> argparse.ArgumentParser:
    """The command line of ``python -m torch_impl`` or ``python -m tf_impl``."""
    pkg = PACKAGES[framework]
    ap = Parser(prog=f"python -m {pkg}", description=f"SimCLR and MoCo v2 in {framework}.")
    add_verbose_flag(ap)
    add_traceback_flag(ap)
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    tr = sub.add_parser(
        "train", help="self-supervised training (defaults: embedded data)", usage=TRAIN_USAGE
    )
    add_train_args(tr, framework)
    # `rosetta train --framework F` runs this command with its own arguments, --framework too
    tr.add_argument("--framework", choices=[framework], default=framework, help=argparse.SUPPRESS)
    _add_run_commands(sub)
    _add_parity_dump(
        sub.add_parser("parity-dump", help="run the losses on the goldens, write an .npz")
    )
    for command in sub.choices.values():  # also after the command: `train ... --traceback`
        add_verbose_flag(command, default=argparse.SUPPRESS)
        add_traceback_flag(command, default=argparse.SUPPRESS)
    return ap


def _add_run_commands(sub) -> None:
    """The commands that read or write a finished run: eval, finetune, export/import-weights."""
    ev = sub.add_parser(
        "eval",
        help="kNN (and with --linear-eval a linear probe) of the trained encoder vs baselines",
    )
    ev.add_argument("--run-dir", required=True, help="a run directory written by train")
    ev.add_argument("--out", default=None, help="folder for eval.json and features.npz")
    ev.add_argument(
        "--linear-eval",
        action="store_true",
        help="also train a linear classifier on the frozen encoder",
    )
    ft = sub.add_parser("finetune", help="fine-tune on a labelled subset vs training from scratch")
    ft.add_argument("--run-dir", required=True, help="a run directory written by train")
    ft.add_argument("--fraction", type=float, default=0.1, help="labelled fraction in (0, 1]")
    ft.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="fine-tuning epochs (>= 1) for both arms; default: each arm's budget chosen by "
        "cross-validation on the labelled subset (shared.run.evaluation.cv_budget)",
    )
    ft.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the fine-tuning (initialisation of the head, order, flips; default: the "
        "run's --seed); the labelled subset is picked by the run's --data-seed",
    )
    ft.add_argument("--out", default=None, help="also write the result to this JSON file")
    ex = sub.add_parser(
        "export-weights", help="write a run's model as framework-neutral weights (.npz)"
    )
    ex.add_argument("--run-dir", required=True, help="a run directory written by train")
    ex.add_argument("--out", required=True, help="the .npz to write (shared.parity.weights format)")
    im = sub.add_parser(
        "import-weights", help="make a run directory of this framework from a weights file"
    )
    im.add_argument(
        "--weights", required=True, help="an .npz written by export-weights (either framework)"
    )
    im.add_argument(
        "--config", required=True, help="the config.json of the run the weights came from"
    )
    im.add_argument(
        "--out", required=True, help="the new run directory (must not hold a checkpoint)"
    )


def _add_parity_dump(pd: argparse.ArgumentParser) -> None:
    pd.add_argument(
        "--level",
        default="loss",
        choices=["loss", "step", "train"],
        help="loss: the goldens; step: one training step of each shared.parity.step_parity case; "
        "train: a few epochs of each shared.parity.train_parity case (--out is then a folder; the "
        "first framework writes the initial weights, and the views, there)",
    )
    pd.add_argument(
        "--dtype",
        nargs="+",
        default=["float64"],
        choices=["float64", "float32", "bfloat16"],
        help="bfloat16 (step level only): float32 weights, bf16 autocast (TF: mixed_bfloat16)",
    )
    pd.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    pd.add_argument(
        "--tf32",
        default="off",
        choices=["off", "on"],
        help="TF32 for float32 matmuls and convolutions on a GPU that has it (no effect on a CPU)",
    )
    pd.add_argument(
        "--random", type=int, default=0, help="also N random cases per loss (shared.parity.golden)"
    )
    pd.add_argument("--seed", type=int, default=0, help="the first random case's seed")
    pd.add_argument(
        "--out", required=True, help="an .npz path; use '{dtype}' in it for several dtypes"
    )
    pd.add_argument(
        "--wait-for-init",
        action="store_true",
        help="step level: wait for the other framework's initial weights in --out (it runs at "
        "the same time) instead of writing this framework's own",
    )


TRACEBACK_HELP = (
    "on an expected failure, show the full traceback instead of the one error line "
    "(unexpected ones always show it)"
)


def add_traceback_flag(parser: argparse.ArgumentParser, default=False) -> None:
    """``--traceback``; a subcommand's copy defaults to ``SUPPRESS`` so that it does not reset
    the top-level flag."""
    parser.add_argument("--traceback", action="store_true", default=default, help=TRACEBACK_HELP)


def add_verbose_flag(parser: argparse.ArgumentParser, default=False) -> None:
    """``--verbose``, before or after the command, as ``add_traceback_flag``."""
    parser.add_argument(
        "--verbose",
        action="store_true",
        default=default,
        help="show the frameworks' own C++ log lines",
    )


def main(framework: str, argv=None, import_framework=None) -> int:
    """Parse ``argv``, check it, then import the framework and run the command.

    Args:
        framework: ``torch`` or ``tensorflow``.
        argv: the arguments (default: ``sys.argv[1:]``).
        import_framework: called after the arguments are checked and before the command
            imports the framework (``tf_impl``: TensorFlow's import with its noise filtered);
            not under ``--verbose``.

    Returns:
        The exit status: 0, or 2 after an expected failure's one ``error:`` line (argparse's
        own errors exit with 2 from the parser, ``Parser.error``).
    """
    args = build_parser(framework).parse_args(argv)
    if not args.verbose:  # TensorFlow's C++ log (cuInit, PredictCost, ...) reads this at import
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return run_guarded(
        _run,
        framework,
        args,
        import_framework,
        traceback=args.traceback,
        interrupted=lambda: interrupt_line(framework, args),
    )


def _run(framework: str, args, import_framework) -> int:
    check_utf8(args)
    checks = {"train": check_train, "finetune": check_finetune, "parity-dump": check_parity_dump}
    if args.cmd in checks:  # framework-free: a bad argument is answered before any import
        checks[args.cmd](framework, args)
    if import_framework is not None and not args.verbose:
        import_framework()
    cmds = {
        "train": cmd_train,
        "eval": cmd_eval,
        "finetune": cmd_finetune,
        "parity-dump": cmd_parity_dump,
        "export-weights": cmd_export_weights,
        "import-weights": cmd_import_weights,
    }
    return cmds[args.cmd](PACKAGES[framework], args)


def _mod(pkg: str, name: str):
    return importlib.import_module(f"{pkg}.{name}")


def _world(framework: str, cfg: TrainConfig) -> int | None:
    """The processes or replicas of the run: torchrun's ``WORLD_SIZE``, or ``None`` while TF's
    strategy has not counted its replicas."""
    if framework == "torch":
        text = os.environ.get("WORLD_SIZE", "1")
        try:
            return int(text)
        except ValueError as e:
            raise ConfigError(f"WORLD_SIZE: expected an integer, got {text!r}") from e
    return 1 if cfg.strategy == "none" else None


def check_utf8(args: argparse.Namespace) -> None:
    """Refuse an argument that is not valid UTF-8 (a path whose name holds other bytes, which
    Python keeps as surrogates): run directories and paths are written into the run's JSON
    files and printed, so one is refused here rather than by a traceback half-way.

    Raises:
        ConfigError: names the argument, its value quoted with ``repr``.
    """
    for name, value in vars(args).items():
        for text in value if isinstance(value, list) else [value]:
            if not isinstance(text, str):
                continue
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as e:
                raise ConfigError(
                    f"{name}: expected a name that is valid UTF-8, got {text!r}; rename it"
                ) from e


def check_train(framework: str, args) -> TrainConfig:
    """The resolved config of ``train``'s flags, checked without importing a framework.

    Raises:
        ConfigError: a flag's value is refused, or ``--eval`` in a multi-process run.
    """
    cfg = config_from_args(args)
    resolved = cfg.resolve(framework, _world(framework, cfg))
    world = resolved.world_size
    # several processes: torchrun's WORLD_SIZE > 1, or TF's multi_worker (mirrored is one)
    if args.eval and ((world or 1) > 1 or resolved.strategy == "multi_worker"):
        raise ConfigError(
            "eval: --eval evaluates in the training process, so it needs a single-process run; "
            "run `eval --run-dir DIR` after a multi-process one"
        )
    return resolved


def cmd_train(pkg: str, args) -> int:
    framework = next(f for f, p in PACKAGES.items() if p == pkg)
    resolved = check_train(framework, args)
    _mod(pkg, "train").train(config_from_args(args), progress=not args.no_progress)
    if args.eval:
        return cmd_eval(
            pkg, argparse.Namespace(run_dir=resolved.run_dir, out=None, linear_eval=False)
        )
    return 0


def _splits(pkg: str, cfg):
    load_split = _mod(pkg, "data").load_split
    common = (cfg.root, False, cfg.image_size, cfg.data_seed)
    return load_split(cfg.dataset, "train", *common), load_split(cfg.dataset, "test", *common)


def cmd_eval(pkg: str, args) -> int:
    from shared.run.evaluation import raw_pixel_baseline
    from shared.run.runlog import atomic_write_json, atomic_write_npz, check_output_folder

    model, cfg = _mod(pkg, "methods").load_trained(args.run_dir)
    files = ("eval.json", "features.npz")  # checked before the evaluation, written after it
    out = check_output_folder(args.out or args.run_dir, "out", files)
    ev = _mod(pkg, "evaluate")
    train, test = _splits(pkg, cfg)
    res = {
        cfg.method: ev.evaluate_encoder(model.backbone, train, test),
        "random_init": ev.random_init_baseline(cfg.encoder, train, test, cfg.seed),
        "raw_pixels": raw_pixel_baseline(train.images, train.labels, test.images, test.labels),
    }
    if args.linear_eval:
        res[cfg.method].update(ev.linear_eval(model.backbone, train, test, flip=cfg.flip))
    atomic_write_json(out / "eval.json", res)
    print(eval_summary(cfg.method, res, out / "eval.json"))
    z1, z2 = ev.projection_batch(model, test.images[:16], cfg)
    ev_random = ev.random_init_encoder(cfg.encoder, cfg.seed)
    atomic_write_npz(
        out / "features.npz",
        compressed=True,
        test_labels=test.labels,
        trained=ev.extract_features(model.backbone, test.images),
        random_init=ev.extract_features(ev_random, test.images),
        batch_z1=z1,
        batch_z2=z2,
        batch_labels=test.labels[:16],
    )
    return 0


def eval_summary(method: str, res: dict, path) -> str:
    """``eval``'s three printed lines: the trained encoder's kNN and probe, the baselines', and
    the file that holds every number (``res``: what ``eval.json`` holds).

    Example:
        >>> row = {"knn_top1": 0.805, "knn_k": 10, "linear_top1": 0.93}
        >>> print(eval_summary("simclr", {"simclr": row, "random_init": row,
        ...       "raw_pixels": row}, "runs/x/eval.json"))  # doctest: +NORMALIZE_WHITESPACE
        simclr: kNN top-1 80.5 % (k = 10, chosen by leave-one-out on the training split),
          linear probe 93.0 %
        baselines: random-init encoder kNN 80.5 %, raw pixels kNN 80.5 %
        every number (k sweep, probe's C, ...): runs/x/eval.json
    """
    t = res[method]
    probe = f", linear probe {100 * t['linear_top1']:.1f} %" if "linear_top1" in t else ""
    return "\n".join(
        [
            f"{method}: kNN top-1 {100 * t['knn_top1']:.1f} % (k = {t['knn_k']}, chosen by "
            f"leave-one-out on the training split){probe}",
            f"baselines: random-init encoder kNN {100 * res['random_init']['knn_top1']:.1f} %, "
            f"raw pixels kNN {100 * res['raw_pixels']['knn_top1']:.1f} %",
            f"every number (k sweep, probe's C, ...): {path}",
        ]
    )


def check_finetune(framework: str, args) -> None:
    """Raises ``ConfigError`` for a ``finetune`` flag that is refused."""
    if not 0 < args.fraction <= 1:
        raise ConfigError(f"fraction: expected a labelled fraction in (0, 1], got {args.fraction}")
    if args.epochs is not None and args.epochs < 1:
        raise ConfigError(f"epochs: expected >= 1 fine-tuning epochs, got {args.epochs}")


def _check_out_file(out) -> None:
    """``--out FILE``: its folder writable and FILE neither a link nor a folder, before work."""
    from shared.run.runlog import check_output_folder

    if out:
        check_output_folder(Path(out).parent, "out", (Path(out).name,))


def cmd_finetune(pkg: str, args) -> int:
    _check_out_file(args.out)
    model, cfg = _mod(pkg, "methods").load_trained(args.run_dir)
    train, test = _splits(pkg, cfg)
    seed = cfg.seed if args.seed is None else args.seed
    res = _mod(pkg, "evaluate").finetune(
        model.backbone,
        cfg.encoder,
        train,
        test,
        args.fraction,
        args.epochs,
        flip=cfg.flip,
        seed=seed,
        subset_seed=cfg.data_seed,
    )
    print(json.dumps(res, indent=2))
    if args.out:
        from shared.run.runlog import atomic_write_json

        atomic_write_json(Path(args.out), res)
    return 0


def cmd_export_weights(pkg: str, args) -> int:
    from shared.parity.weights import save_weights

    _check_out_file(args.out)
    model, cfg = _mod(pkg, "methods").load_trained(args.run_dir)
    meta = {
        "method": cfg.method,
        "encoder": cfg.encoder,
        "framework": cfg.framework,
        "version": _mod(pkg, "parity").framework_version(),
        "source": str(args.run_dir),
    }
    path = save_weights(args.out, _mod(pkg, "weights").export_weights(model), meta)
    print(f"wrote {path} ({cfg.method}, {cfg.encoder}, from {cfg.framework})")
    return 0


def cmd_import_weights(pkg: str, args) -> int:
    """A run directory of this framework holding the imported weights as its checkpoint."""
    from shared.parity.weights import WeightsError, load_weights
    from shared.run.runlog import atomic_write_json, check_output_folder

    check_output_folder(args.out, "out", ("config.json",))  # before any work
    state, meta = load_weights(args.weights)
    cfg = _config_file(args.config)
    if (meta["method"], meta["encoder"]) != (cfg.method, cfg.encoder):
        raise WeightsError(
            f"weights: {args.weights} holds {meta['method']}/{meta['encoder']}, "
            f"the config says {cfg.method}/{cfg.encoder}"
        )
    framework = next(f for f, p in PACKAGES.items() if p == pkg)
    out = Path(args.out)
    ck = _mod(pkg, "checkpoint")
    if out.exists() and ck.latest_checkpoint(out) is not None:
        raise RunDirError(f"out: {out} already holds a checkpoint; choose a new directory")
    cfg = dataclasses.replace(cfg, framework=framework, run_dir=str(out), resume=False)
    model = _mod(pkg, "methods").build_model(cfg, "float32")
    _mod(pkg, "weights").import_weights(model, state)
    atomic_write_json(out / "config.json", {**dataclasses.asdict(cfg), "amp": False})
    ck.save_checkpoint(out, cfg.epochs, model)
    print(f"wrote {out} ({cfg.method}, {cfg.encoder}, {meta['framework']} -> {framework})")
    return 0


def _config_file(path) -> TrainConfig:
    """The config a ``config.json`` at any ``path`` holds (``load_config`` reads a run
    directory's); its errors name ``path``.

    Raises:
        MissingFileError: no file at ``path``. FileFormatError, ConfigError: as ``load_config``.
    """
    import shutil
    import tempfile

    from shared.run.config import load_config

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"config: no file {path}; expected the config.json of a run")
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(path, Path(tmp) / "config.json")
        try:
            return load_config(tmp)
        except RosettaError as e:
            named = str(e).replace(str(Path(tmp) / "config.json"), str(path))
            raise type(e)(named) from e


def check_parity_dump(framework: str, args) -> None:
    """Raises ``ConfigError`` for a ``parity-dump`` flag that is refused."""
    if args.random < 0:
        raise ConfigError(f"random: expected an integer >= 0 of random cases, got {args.random}")
    if args.level != "loss":
        return
    if "bfloat16" in args.dtype:
        raise ConfigError(
            "dtype: bfloat16 is a step-level case (--level step); the loss level "
            "runs float64 and float32"
        )
    if len(args.dtype) > 1 and "{dtype}" not in args.out:
        raise ConfigError("out: with several --dtype values, expected a path containing '{dtype}'")


def cmd_parity_dump(pkg: str, args) -> int:
    """Run the framework's losses on the goldens for each ``--dtype``; one .npz each."""
    devices = _mod(pkg, "devices")
    devices.check_device(args.device)
    devices.set_tf32(args.tf32 == "on")
    print(f"device {args.device}, TF32 policy {devices.tf32_policy()}")
    if args.level == "step":
        return _dump_steps(pkg, args)
    if args.level == "train":
        return _dump_train(pkg, args)
    parity = _mod(pkg, "parity")
    for dtype in args.dtype:  # one process for all dtypes: the framework is imported once
        outputs = parity.golden_outputs(dtype, args.device)
        if args.random:
            from shared.parity import golden

            rand = parity.golden_outputs(
                dtype, args.device, golden.random_cases(args.random, args.seed)
            )
            for loss in outputs:
                outputs[loss].update(rand[loss])
        flat = {
            f"{loss}/{c}/{k}": v
            for loss, cases in outputs.items()
            for c, f in cases.items()
            for k, v in f.items()
        }
        meta = {
            "framework": parity.FRAMEWORK,
            "version": parity.framework_version(),
            "dtype": dtype,
            "device": args.device,
        }
        path = args.out.replace("{dtype}", dtype)
        path += "" if path.endswith(".npz") else ".npz"  # as np.savez names it
        atomic_write_npz(path, __meta__=json.dumps(meta), **flat)
        print(f"wrote {path} ({len(flat)} arrays, {meta['framework']} {meta['version']}, {dtype})")
    return 0


def _dump_steps(pkg: str, args) -> int:
    """One training step per ``shared.parity.step_parity`` case and dtype, from shared initial weights:
    ``DIR/init-<case>-<dtype>.npz`` is written by the first framework and read by the other."""
    from shared.parity import step_parity as sp

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parity, ck = _mod(pkg, "parity"), _mod(pkg, "weights")
    for case, spec in sp.STEP_CASES.items():
        for dtype in args.dtype:
            model, opt, kwargs = parity.step_case(case, dtype, args.device)
            meta = {"method": spec["method"], "encoder": "small_cnn", "framework": pkg}
            _shared_init(ck, model, out / f"init-{case}-{dtype}.npz", meta, args.wait_for_init)
            res = parity.step_outputs(model, *sp.views(dtype), opt, **kwargs)
            path = out / f"{parity.FRAMEWORK}-{case}-{dtype}.npz"
            atomic_write_npz(path, **res)
            print(f"wrote {path} ({len(res)} arrays)")
    return 0


def _shared_init(ck, model, path: Path, meta: dict, wait: bool = False) -> None:
    """The parity dumps' common start: the first framework writes ``model``'s initial weights
    to ``path`` (``shared.parity.weights``; written whole, then renamed into place), the other
    imports them into its own ``model``. ``wait``: this dump runs beside the writer
    (``--wait-for-init``), so it waits up to 300 s for the file instead of writing its own."""
    import os
    import time

    from shared.parity.weights import load_weights, save_weights

    deadline = time.monotonic() + 300
    while wait and not path.exists():
        if time.monotonic() > deadline:
            raise MissingFileError(
                f"init: {path} did not appear in 300 s (the writer's dump failed?)"
            )
        time.sleep(0.05)
    if path.exists():
        ck.import_weights(model, load_weights(path)[0])
    else:
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        save_weights(tmp, ck.export_weights(model), meta)
        os.replace(tmp, path)


def _dump_train(pkg: str, args) -> int:
    """A few epochs per ``shared.parity.train_parity`` case and dtype. The first framework writes the
    initial weights (``DIR/init-<case>-<dtype>.npz``) and the views (``DIR/views-<case>.npz``);
    the other reads them."""
    from shared.parity import train_parity as tp
    from shared.run.data import load_embedded

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parity, ck, methods = _mod(pkg, "parity"), _mod(pkg, "weights"), _mod(pkg, "methods")
    images = load_embedded().train.images[: tp.IMAGES]
    for case in tp.CASES:
        cfg = TrainConfig(**tp.config_kwargs(case)).resolve("torch")
        views_file = out / f"views-{case}.npz"
        if not views_file.exists():
            epochs = range(cfg.epochs)
            tp.save_views(
                views_file,
                [parity.train_views(cfg, images, tp.view_params(cfg, e)) for e in epochs],
            )
        views = tp.load_views(views_file)
        for dtype in args.dtype:
            if pkg == "torch_impl":
                import torch

                torch.manual_seed(cfg.seed)
            model = methods.build_model(cfg, dtype)
            meta = {"method": cfg.method, "encoder": cfg.encoder, "framework": pkg}
            _shared_init(ck, model, out / f"init-{case}-{dtype}.npz", meta)
            res = parity.train_run(cfg, model, views)
            path = out / f"{parity.FRAMEWORK}-train-{case}-{dtype}.npz"
            atomic_write_npz(path, **res)
            print(f"wrote {path} (final loss {res['step_loss'][-1]:.6f})")
    return 0


INTERRUPTED = 130  # the shells' status of a command stopped by SIGINT (128 + 2)


def run_guarded(fn, *args, traceback: bool = False, interrupted=None) -> int:
    """``fn(*args)``, a subcommand. An expected failure (a ``shared.RosettaError``: bad input,
    missing data, a bad checkpoint, a run directory in use) becomes one ``error: ...`` line and
    exit status 2; Ctrl-C (``KeyboardInterrupt``) one ``interrupted: ...`` line, the one
    ``interrupted()`` returns, and status 130. With ``traceback`` (or ``ROSETTA_TRACEBACK=1``)
    both propagate, traceback and all. Any other exception is a bug: it always propagates."""
    shown = traceback or os.environ.get("ROSETTA_TRACEBACK", "") not in ("", "0")
    try:
        return fn(*args)
    except RosettaError as e:
        if shown:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if shown:
            raise
        with _sigint_ignored():  # a second Ctrl-C does not break the line in two
            print(interrupted() if interrupted else "interrupted", file=sys.stderr, flush=True)
        return INTERRUPTED


def interrupt_line(framework: str, args: argparse.Namespace) -> str:
    """The line a Ctrl-C prints: for ``train``, the run's last complete checkpoint (checkpoints
    are written atomically, so the newest listed is whole) and how to continue from it.

    The framework's checkpoint module is asked only when the run already imported it: a run
    stopped before that (importing the framework) has not touched its run directory.
    """
    if args.cmd != "train":
        return f"interrupted: {args.cmd} stopped before it finished; run it again"
    import warnings

    with warnings.catch_warnings():  # check_train's warnings were shown at the start
        warnings.simplefilter("ignore")
        run_dir = check_train(framework, args).run_dir
    ck = sys.modules.get(f"{PACKAGES[framework]}.checkpoint")
    if ck is None:
        return f"interrupted before training started; {str(run_dir)!r} was not touched"
    last = ck.latest_checkpoint(run_dir)
    if last is None:
        return (
            f"interrupted before the first checkpoint of {str(run_dir)!r}; run the same command "
            "with --resume to start it again"
        )
    return (
        f"interrupted: the last complete checkpoint is {str(last)!r}; run the same command "
        "with --resume to continue from it"
    )


@contextlib.contextmanager
def _sigint_ignored():
    """SIGINT ignored for the ``with`` body, in the main thread (elsewhere: unchanged)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)
