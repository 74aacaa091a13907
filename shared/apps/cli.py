"""``rosetta``: the project's one console entry point.

    rosetta train --framework F training, as python -m torch_impl|tf_impl train (the same flags)
    rosetta explain [a..h]      the worked examples
    rosetta demo [--matrix]     the main job (see shared/apps/demo.py)
    rosetta results [--seeds 3] every published accuracy, with its spread (shared/apps/results_cmd.py)
    rosetta parity              torch vs TF vs NumPy on the goldens (see shared/apps/parity_cmd.py)
    rosetta localise --torch F:M --keras F:M --input-shape N,C,H,W
                                where your own two models disagree (shared/apps/pair_cmd.py)
    rosetta port RUN --to F     a run of one framework as a run of the other (shared/apps/port.py)
    rosetta import CKPT ...     an official SimCLR or MoCo checkpoint as a run (shared/apps/import_cmd.py)
    rosetta bench               the benchmarks (see benchmarks/)

Framework work is dispatched to ``python -m torch_impl`` and ``python -m tf_impl`` in
subprocesses, so this module (and all of ``shared``) never imports a framework. ``train``
checks its arguments here, then this process becomes ``python -m <impl> train`` with the same
arguments (``os.execv``: the same process for signals, exit status and ``torchrun``).

An expected failure (``shared.RosettaError``) is one ``error:`` line and exit status 2, Ctrl-C
one ``interrupted:`` line and exit status 130; anything else shows its traceback. ``--traceback`` (anywhere on the line) shows it for expected failures
too, here and in the framework processes started (``ROSETTA_TRACEBACK=1``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from shared.apps.impl_cli import (
    TRAIN_USAGE,
    Parser,
    add_traceback_flag,
    add_train_args,
    add_verbose_flag,
    check_train,
    check_utf8,
    run_guarded,
)
from shared.run.config import FRAMEWORKS, PACKAGES


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog="rosetta", description=__doc__.splitlines()[0])
    add_traceback_flag(ap)
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    sub.add_parser(
        "train",
        help="self-supervised training with --framework torch|tensorflow (as python -m "
        "torch_impl|tf_impl train)",
        add_help=False,
    )
    ex = sub.add_parser("explain", help="print the worked examples")
    ex.add_argument("which", nargs="*", help="a to h (default: all)")
    sub.add_parser(
        "demo", help="train both frameworks, evaluate, check parity, write a report", add_help=False
    )
    sub.add_parser(
        "results",
        help="write docs/results.json: the 2x2 over seeds, fine-tunes, sweeps",
        add_help=False,
    )
    sub.add_parser("parity", help="compare torch, TF and NumPy on the goldens", add_help=False)
    sub.add_parser(
        "localise",
        help="port your own torch module and Keras model, name the first layer that differs",
        add_help=False,
    )
    sub.add_parser("port", help="a run of one framework becomes a run of the other", add_help=False)
    sub.add_parser(
        "import",
        help="an official SimCLR (TF1) or MoCo (.pth.tar) checkpoint becomes a run, proven",
        add_help=False,
    )
    sub.add_parser("bench", help="run benchmarks (args go to benchmarks.run)", add_help=False)
    args, rest = ap.parse_known_args(argv)
    if "--traceback" in rest:  # after the command: the commands' own parsers do not know it
        rest = [a for a in rest if a != "--traceback"]
        args.traceback = True
    if args.traceback:
        os.environ["ROSETTA_TRACEBACK"] = "1"  # the framework processes started inherit it
    return run_guarded(
        _dispatch, args, rest, traceback=args.traceback, interrupted=lambda: _interrupted(args.cmd)
    )


RESUMABLE = {
    "results": "each unit finished is kept under --work: the same command continues from them",
}


def _interrupted(cmd: str) -> str:
    """The one line of a Ctrl-C in ``rosetta CMD`` (``train`` is the framework's process by then,
    which prints its own: ``shared.apps.impl_cli.interrupt_line``)."""
    return f"interrupted: rosetta {cmd} stopped; " + RESUMABLE.get(cmd, "run it again")


def train_parser(framework: str | None) -> Parser:
    """The parser of ``rosetta train``: ``--framework`` and the flags of that framework's
    ``train`` (every flag while ``framework`` is ``None``, as for ``--help`` without it)."""
    ap = Parser(
        prog="rosetta train",
        usage=TRAIN_USAGE.replace("%(prog)s", "%(prog)s --framework torch|tensorflow"),
        description="Self-supervised training: `rosetta train --framework torch ...` runs "
        "`python -m torch_impl train ...`, `--framework tensorflow` `python -m tf_impl train`, "
        "with the same flags.",
    )
    ap.add_argument(
        "--framework",
        required=True,
        choices=FRAMEWORKS,
        help="the framework that trains (required; --framework F --help lists F's flags)",
    )
    add_verbose_flag(ap)
    add_traceback_flag(ap)
    add_train_args(ap, framework)
    return ap


def train(rest: list[str]) -> int:
    """``rosetta train``: parse and check ``rest`` without a framework (one ``error:`` line for
    a bad one), then become ``python -m <impl> train`` with the same arguments."""
    pre = Parser(prog="rosetta train", add_help=False)
    pre.add_argument("--framework", choices=FRAMEWORKS)
    framework = pre.parse_known_args(rest)[0].framework
    args = train_parser(framework).parse_args(rest)  # --help, and a missing --framework, end here
    check_utf8(args)
    check_train(args.framework, args)
    argv = [sys.executable, "-m", PACKAGES[args.framework], "train", *rest]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)
    return 0  # not reached: execv returns only by raising OSError


def _dispatch(args: argparse.Namespace, rest: list[str]) -> int:
    if args.cmd == "train":
        return train(rest)
    if args.cmd == "explain":
        from shared.oracle.worked_examples import main as explain

        return explain(args.which + rest)
    if args.cmd == "demo":
        from shared.apps.demo import main as demo

        return demo(rest)
    if args.cmd == "results":
        from shared.apps.results_cmd import main as results

        return results(rest)
    if args.cmd == "port":
        from shared.apps.port import main as port

        return port(rest)
    if args.cmd == "import":
        from shared.apps.import_cmd import main as import_main

        return import_main(rest)
    if args.cmd == "localise":
        from shared.apps.pair_cmd import main as localise

        return localise(rest)
    if args.cmd == "parity":
        from shared.apps.parity_cmd import main as parity

        return parity(rest)
    return subprocess.call([sys.executable, "-m", "benchmarks.run", *rest])


if __name__ == "__main__":
    raise SystemExit(main())
