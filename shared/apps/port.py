"""``rosetta port RUN_DIR --to torch|tensorflow --out DIR``: a run of one framework becomes a run
of the other, which ``eval`` accepts.

Each framework runs in its own process: the source exports its model as framework-neutral
weights (``shared.parity.weights``), the target imports them into the same architecture and writes a
run directory (``config.json`` and one checkpoint). ``--out`` is checked before either starts: a
file, a folder holding a run, a symbolic link among its run files or a folder that cannot be
written is one ``error:`` line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from shared.run.config import PACKAGES
from shared.run.errors import FileFormatError
from shared.run.runlog import check_new_run_dir


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="rosetta port", description=" ".join(__doc__.split("\n\n")[0].split())
    )
    ap.add_argument("run_dir", help="a run directory written by either framework's train")
    ap.add_argument("--to", required=True, choices=sorted(PACKAGES), help="the target framework")
    ap.add_argument("--out", required=True, help="the new run directory")
    args = ap.parse_args(argv)
    config = Path(args.run_dir) / "config.json"
    if not config.is_file():
        print(
            f"error: run_dir: no config.json in {args.run_dir}; train a model there first",
            file=sys.stderr,
        )
        return 2
    try:
        source = json.loads(config.read_text()).get("framework")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as e:
        raise FileFormatError(f"{config}: not a readable config.json ({e})") from e
    if source not in PACKAGES:
        print(f"error: {config}: unknown framework {source!r}", file=sys.stderr)
        return 2
    check_new_run_dir(args.out, "out")  # before the export: a bad --out costs nothing
    with tempfile.TemporaryDirectory() as tmp:
        weights = str(Path(tmp) / "weights.npz")
        steps = [
            [
                sys.executable,
                "-m",
                PACKAGES[source],
                "export-weights",
                "--run-dir",
                args.run_dir,
                "--out",
                weights,
            ],
            [
                sys.executable,
                "-m",
                PACKAGES[args.to],
                "import-weights",
                "--weights",
                weights,
                "--config",
                str(config),
                "--out",
                args.out,
            ],
        ]
        for cmd in steps:
            code = subprocess.call(cmd)
            if code:  # the child printed its one-line error
                return code
    return 0
