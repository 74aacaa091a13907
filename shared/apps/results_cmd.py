"""``rosetta results``: every published accuracy from one command, with its spread over seeds.

Each unit trains or evaluates in its own subprocess, ``--jobs`` at a time (one thread each):

1. **the 2x2**, {SimCLR, MoCo v2} x {PyTorch, TensorFlow}, with the same per-method
   hyperparameters in both frameworks (``shared.run.config.METHOD_DEFAULTS``) and the demo's
   settings, for ``--seeds`` training seeds with the data fixed (``--data-seed`` 0). The demo's
   pair (SimCLR in torch, MoCo in TF) is two of these cells;
2. **the fine-tune table**: each seed's SimCLR (torch) encoder fine-tuned on 1 %, 10 % and
   100 % of the labels, against the same network trained from scratch and the frozen linear
   probe on the same labels, each arm's budget chosen on the labelled subset alone;
3. **the sweeps behind the defaults** (seed 0), scored by leave-one-out kNN on the training
   split only, each decided against the default cell's measured spread
   (``shared.run.published.decide``).

It writes ``docs/results.json`` (the schema of ``shared.run.published``) and
``docs/matrix_curves.png``. Each unit's result is kept under ``--work``, so a run that was
stopped continues where it stopped: a unit is done before when its ``unit.json`` records the
command this run would give it (other ``--train-args`` run it again). Two ``rosetta results``
on one ``--work`` share the units through a lock per unit (``fcntl.flock``: a dead process
holds none). Frameworks run in subprocesses: this module imports neither.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path

from shared.apps.demo import FAST_KERNELS, KNN_EVERY, MATRIX, thread_env
from shared.run.config import METHOD_DEFAULTS, PACKAGES, TrainConfig, flip_default
from shared.run.errors import ConfigError, FileFormatError, MissingFileError, RunDirError
from shared.run.evaluation import KS, PROTOCOL
from shared.run.hardware import cpu_features, cpu_model, versions
from shared.run.published import RESULTS, decide, entry_from_rows
from shared.run.recipes import RECIPES
from shared.run.runlog import atomic_write_json, exclusive_lock

FRACTIONS = (0.01, 0.1, 1.0)
FINETUNE_CELL = ("simclr", "torch")
# The sweeps that chose the defaults: (method, framework) -> {knob: values beside the default}.
SWEEPS = {
    ("moco", "torch"): {
        "lr": (0.0075, 0.03, 0.06),
        "epochs": (15, 40),
        "bn_splits": (4, 8),
        "temperature": (0.07, 0.2),
    },
    ("simclr", "torch"): {
        "epochs": (30, 90),
        "flip": (True,),
        "batch_size": (32, 128),
        "temperature": (0.1, 0.5),
    },
    ("moco", "tensorflow"): {"flip": (True,), "queue_size": (128, 2048)},
}
PREFER = {"epochs": "fewest"}  # every other knob: "default" (changed only by more than the spread)
RULE_METRIC = "knn_loo"  # decisions read the training split only
LOCK_POLL_S = 0.5  # how often a unit that another process runs tries its lock


@dataclass
class Unit:
    """One subprocess of the plan: a training run (``train``) or a fine-tune (``finetune``)."""

    name: str
    kind: str
    method: str
    framework: str
    seed: int
    flags: dict = field(default_factory=dict)
    needs: str | None = None  # the unit whose run directory a fine-tune reads
    fraction: float | None = None


def cell_name(method: str, framework: str, seed: int, flags: dict | None = None) -> str:
    knobs = "".join(f",{k}={v}" for k, v in sorted((flags or {}).items()))
    return f"train/{method}/{framework}/seed{seed}{knobs}"


def plan(seeds: int, fractions=FRACTIONS, sweeps=True, only=("cells", "finetune", "sweeps")):
    """The units in the order they start: the 2x2 over the seeds, the sweeps, the fine-tunes."""
    units = []
    if "cells" in only or "finetune" in only:
        for s in range(seeds):
            units += [Unit(cell_name(m, f, s), "train", m, f, s) for f, m in MATRIX]
    if sweeps and "sweeps" in only:
        for (m, f), knobs in SWEEPS.items():
            for knob, values in knobs.items():
                for v in values:
                    units.append(Unit(cell_name(m, f, 0, {knob: v}), "train", m, f, 0, {knob: v}))
    if "finetune" in only:
        m, f = FINETUNE_CELL
        for frac in fractions:
            units += [
                Unit(
                    f"finetune/{m}/{f}/{frac:g}/seed{s}",
                    "finetune",
                    m,
                    f,
                    s,
                    {},
                    cell_name(m, f, s),
                    frac,
                )
                for s in range(seeds)
            ]
    return units


def _flag_args(flags: dict) -> list[str]:
    out = []
    for k, v in flags.items():
        flag = "--" + k.replace("_", "-")
        out += ([flag] if v else ["--no-" + flag[2:]]) if isinstance(v, bool) else [flag, str(v)]
    return out


def command(unit: Unit, work: Path, extra: list[str]) -> list[str]:
    """The subprocess of ``unit``; ``extra``: flags every training unit gets (tests: tiny runs)."""
    pkg = PACKAGES[unit.framework]
    if unit.kind == "finetune":
        run = work / unit.needs
        out = work / unit.name / "finetune.json"
        return [sys.executable, "-m", pkg, "finetune", "--run-dir", str(run),
                "--fraction", str(unit.fraction), "--out", str(out)]  # fmt: skip
    return [
        sys.executable, "-m", pkg, "train", "--method", unit.method, "--seed", str(unit.seed),
        "--data-seed", "0", *_flag_args(unit.flags), *(["--fast-kernels"] if FAST_KERNELS else []),
        "--run-dir", str(work / unit.name), "--knn-every", str(KNN_EVERY), "--no-progress",
        "--eval", "--overwrite", *extra,
    ]  # fmt: skip


def read_json(path: Path):
    """The JSON value in ``path``.

    Raises:
        FileFormatError: ``path`` cannot be read or is not JSON (the message names it).
    """
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise FileFormatError(f"{str(path)!r}: not a readable JSON file ({e})") from e


def train_row(run_dir: Path, seed: int) -> dict:
    """One training unit's published numbers, from its run directory's metrics and eval."""
    metrics = read_json(run_dir / "metrics.json")
    ev = read_json(run_dir / "eval.json")
    method = read_json(run_dir / "config.json")["method"]
    e, eps = ev[method], metrics["epochs"]
    secs = 0.0
    knn_curve = []
    for ep in eps:
        secs += ep["time_s"]
        if ep["knn_top1"] is not None:
            knn_curve.append([round(secs, 2), ep["knn_top1"]])
    train_s = sum(ep["time_s"] for ep in eps)
    return {
        "seed": seed,
        "knn_top1": e["knn_top1"],
        "knn_k": e["knn_k"],
        "knn_loo": e["knn_loo_by_k"][str(e["knn_k"])],
        **_by_k(e),
        "linear_top1": e["linear_top1"],
        "linear_c": e["linear_c"],
        "final_loss": eps[-1]["loss"],
        "train_wall_s": train_s,
        "images_per_s": sum(ep["images_per_s"] * ep["time_s"] for ep in eps) / train_s,
        "epochs": len(eps),
        "loss_curve": [round(ep["loss"], 5) for ep in eps],
        "knn_curve": knn_curve,
        "baselines": {k: _baseline_row(ev[k], seed) for k in ("random_init", "raw_pixels")},
    }


def _by_k(e: dict) -> dict:
    """The test split's kNN at every k of the protocol (the published sweep), as scalars."""
    return {f"knn_at_{k}": e["knn_by_k"][str(k)] for k in KS}


def _baseline_row(e: dict, seed: int) -> dict:
    keys = ("knn_top1", "knn_k", "linear_top1", "linear_c")
    loo = e["knn_loo_by_k"][str(e["knn_k"])]
    return {"seed": seed, **{k: e[k] for k in keys}, "knn_loo": loo, **_by_k(e)}


def finetune_row(path: Path, seed: int) -> dict:
    r = read_json(path)
    row = {"seed": seed, "n_labelled": r["n_labelled"]}
    for arm in ("finetune", "scratch"):
        row[f"{arm}_top1"] = r[f"{arm}_top1"]
        row[f"{arm}_steps"] = r.get(f"{arm}_budget", {}).get("steps")
    row["linear_top1"], row["linear_c"] = r["linear_top1"], r["linear_budget"]["c"]
    row["budgets"] = {a: r.get(f"{a}_budget") for a in ("finetune", "scratch", "linear")}
    return {k: v for k, v in row.items() if v is not None}


def row_of(unit: Unit, work: Path) -> dict:
    """A finished unit's row, read from what its subprocess wrote."""
    if unit.kind == "finetune":
        return finetune_row(work / unit.name / "finetune.json", unit.seed)
    return train_row(work / unit.name, unit.seed)


def host() -> dict:
    return {"cpu": cpu_model(), "cpu_features": cpu_features(), "python": platform.python_version(),
            "versions": versions()}  # fmt: skip


def run_unit(unit: Unit, work: Path, extra: list[str], done: dict, stop=None) -> dict:
    """Run ``unit`` (unless ``work/<name>/unit.json`` records its result for the same command)
    and return its result: ``{"name", "row", "wall_s", "load", "command", ...}``. ``done``: the
    futures of the units it needs; ``stop``: a ``threading.Event`` that ends a wait.

    Another ``rosetta results`` on the same ``--work`` coordinates through ``running.lock``
    (``fcntl.flock``, which the kernel releases when its holder dies): while it runs the unit,
    this one waits for it; a lock left by a dead process locks nothing.

    Raises:
        MissingFileError: the other process that ran the unit stopped without its result (the
            message names that unit's log).
    """
    needs = done[unit.needs].result() if unit.needs else None  # its run directory is complete
    cmd = command(unit, work, extra)
    want = _identity(cmd, needs)
    marker = work / unit.name / "unit.json"
    held, waited = _take_lock(unit, work / unit.name / "running.lock", stop or threading.Event())
    with held:
        old = read_json(marker) if marker.exists() else None
        if old is not None and _same_run(old, want):
            how = "done by the other process" if waited else "done before"
            print(f"[results] {unit.name}: {how}, read from {str(marker)!r}", flush=True)
            return old
        if waited and old is None:
            log = marker.with_name("log.txt")
            raise MissingFileError(
                f"{unit.name}: the other process running it stopped without its result (its "
                f"log: {str(log)!r}); run this command again to run the unit here"
            )
        if old is not None:
            print(f"[results] {unit.name}: {str(marker)!r} records another command; running it "
                  "again", flush=True)  # fmt: skip
        return _run_and_record(unit, cmd, work, marker, want)


def _take_lock(unit: Unit, lock: Path, stop) -> tuple[contextlib.ExitStack, bool]:
    """The unit's lock, held by the returned stack, and whether another process held it first.

    While another process holds it (it runs the unit), the lock is tried every ``LOCK_POLL_S``
    until that process releases it: done, failed, or dead (the kernel releases a dead process's
    lock). ``stop`` (set by :func:`run` on a failure or Ctrl-C) ends the wait.
    """
    waited = False
    while True:
        held = contextlib.ExitStack()
        try:
            held.enter_context(exclusive_lock(lock, blocking=False))
            return held, waited
        except BlockingIOError:
            if not waited:
                print(f"[results] {unit.name}: another process runs it; waiting for it", flush=True)
            waited = True
            if stop.wait(LOCK_POLL_S):
                raise RuntimeError(
                    f"{unit.name}: stopped while waiting for it"
                ) from None  # a held lock: nothing more to show


def _identity(cmd: list[str], needs: dict | None) -> dict:
    """What a unit's ``unit.json`` records of how it was made: its command (the interpreter
    aside), and for a fine-tune the command of the training run it read."""
    return {"command": cmd[1:], **({"needs_command": needs["command"]} if needs else {})}


def _same_run(recorded: dict, want: dict) -> bool:
    return isinstance(recorded, dict) and all(recorded.get(k) == v for k, v in want.items())


def recorded(units: list[Unit], work: Path, extra: list[str], done: dict) -> dict:
    """The results recorded under ``work`` for ``units`` that this command did not run (outside
    ``--match``), each checked to record the command this one would run.

    Raises:
        ConfigError: a unit recorded with another command (other ``--train-args``): the results
            file would mix two settings under this command's name.
    """
    out = {}
    for u in units:
        marker = work / u.name / "unit.json"
        if u.name in done or not marker.exists():
            continue
        res = read_json(marker)
        needs = (done.get(u.needs) or out.get(u.needs)) if u.needs else None
        if not _same_run(res, _identity(command(u, work, extra), needs)):
            raise ConfigError(
                f"{u.name}: {str(marker)!r} records another command (or a fine-tune of another "
                f"training run) than this one's; run it again (--match {u.name}) or pass the "
                "--train-args it was run with"
            )
        out[u.name] = res
    return out


def unit_precision(unit: Unit, work: Path, cmd: list[str]) -> str:
    """What a unit computed in: a training unit's from the ``amp`` its run recorded; a
    fine-tune's from its command (it trains in float32 unless ``--amp``)."""
    config = work / unit.name / "config.json"
    amp = read_json(config).get("amp") if unit.kind == "train" and config.exists() else None
    amp = ("--amp" in cmd) if amp is None else amp
    return "bfloat16 autocast" if amp else "float32"


def carry(results: dict, earlier: dict, source: str) -> dict:
    """``results`` with the entries and sweeps of ``earlier`` (another results file, read from
    ``source``) that it lacks, and a ``carried`` block naming them, their measurement and their
    runs. A page can then say which numbers come from which invocation."""
    if "carried" in earlier or "entries" not in earlier:
        raise ConfigError(
            f"carry: expected a results file that measured its own entries, got {source} "
            + ("(it carries some from another)" if "carried" in earlier else "(no entries)")
        )
    entries = {k: v for k, v in earlier["entries"].items() if k not in results["entries"]}
    sweeps = {k: v for k, v in earlier.get("sweeps", {}).items() if k not in results["sweeps"]}
    if not entries and not sweeps:
        return results
    mine = {r["name"] for r in results.get("runs", [])}
    runs = [r for r in earlier.get("runs", []) if r["name"] not in mine]
    precisions = sorted({r.get("precision", "not recorded") for r in runs})
    return {
        **results,
        "entries": {**results["entries"], **entries},
        "sweeps": {**results["sweeps"], **sweeps},
        "carried": {
            "from": source,
            "entries": sorted(entries),
            "sweeps": sorted(sweeps),
            "measured": earlier.get("measured", {}),
            "precision": ", ".join(precisions),
            "runs": runs,
        },
    }


def _run_and_record(unit: Unit, cmd: list[str], work: Path, marker: Path, want: dict) -> dict:
    log = work / unit.name / "log.txt"
    print(f"[results] start {unit.name}", flush=True)
    t0, load0 = time.time(), os.getloadavg()[0]
    with open(log, "w") as fh:
        rc = subprocess.call(cmd, env=thread_env(1), stdout=fh, stderr=subprocess.STDOUT)
    if rc:
        tail = log.read_text().strip().splitlines()[-3:]
        raise RuntimeError(f"{unit.name} failed (exit {rc}); {log}:\n" + "\n".join(tail))
    wall = time.time() - t0
    res = {"name": unit.name, "row": row_of(unit, work), "wall_s": round(wall, 1),
           "load": [round(load0, 2), round(os.getloadavg()[0], 2)],
           "precision": unit_precision(unit, work, cmd), **want}  # fmt: skip
    atomic_write_json(marker, res)
    print(f"[results] done  {unit.name} in {wall:.0f} s", flush=True)
    return res


LABEL = {"simclr": "SimCLR", "moco": "MoCo", "torch": "PyTorch", "tensorflow": "TensorFlow"}


def _default(method: str, knob: str):
    if knob == "flip":
        return flip_default("embedded")
    if knob in METHOD_DEFAULTS[method]:
        return METHOD_DEFAULTS[method][knob]
    return next(f.default for f in fields(TrainConfig) if f.name == knob)


def _what(method: str, framework: str, flags: dict | None = None) -> str:
    d = METHOD_DEFAULTS[method]
    knobs = "".join(f", {k} {v}" for k, v in (flags or {}).items())
    return (
        f"{LABEL[method]} in {LABEL[framework]}, {d['epochs']} epochs (defaults{knobs}), batch 64, "
        "small CNN, embedded digits (data seed 0); kNN on the test split at the k that "
        "leave-one-out on the training split picks; knn_loo: that leave-one-out accuracy"
    )


def assemble(units: list[Unit], done: dict, seeds: int) -> dict:
    """The results file's ``entries`` and ``sweeps`` from the units' results (``done``: name ->
    :func:`run_unit`'s result). Pure: tested on results written by hand."""
    rows = {name: r["row"] for name, r in done.items()}
    entries = {}
    for f, m in MATRIX:
        cell = [rows[n] for s in range(seeds) if (n := cell_name(m, f, s)) in rows]
        if cell:
            plain = [{k: v for k, v in r.items() if k != "baselines"} for r in cell]
            entries[f"{m}/{f}"] = entry_from_rows(_what(m, f), plain)
            if m == "simclr":  # the baselines do not depend on the method: one cell's are enough
                rand = [r["baselines"]["random_init"] for r in cell]
                what = f"a random-init small CNN in {LABEL[f]} (the cell's seed), the same protocol"
                entries[f"random_init/{f}"] = entry_from_rows(what, rand)
                pixels = "flattened raw pixels, the same protocol (no training: one value)"
                entries["raw_pixels"] = entry_from_rows(
                    pixels, [cell[0]["baselines"]["raw_pixels"]]
                )
    for u in units:
        if u.kind == "finetune" and u.name in rows:
            key = f"finetune/{u.method}/{u.framework}/{u.fraction:g}"
            entries.setdefault(key, {"seeds": []})["seeds"].append(rows[u.name])
    for key, e in list(entries.items()):
        if key.startswith("finetune/"):
            frac = key.rsplit("/", 1)[1]
            what = (
                f"the seed's SimCLR (PyTorch) encoder on {frac} of the training labels: fine-tuned, "
                "from scratch, and its frozen linear probe, each arm's budget by CV on those labels"
            )
            entries[key] = entry_from_rows(what, e["seeds"])
    sweeps = {}
    for (m, f), knobs in SWEEPS.items():
        base = rows.get(cell_name(m, f, 0))
        cell = entries.get(f"{m}/{f}")
        if base is None or cell is None:
            continue
        std = cell["std"].get(RULE_METRIC)
        for knob, values in knobs.items():
            dv = _default(m, knob)
            got = {v: rows[n] for v in values if (n := cell_name(m, f, 0, {knob: v})) in rows}
            if not got:  # no value of this sweep was run: nothing to decide
                continue
            for v, r in got.items():
                plain = {k: x for k, x in r.items() if k != "baselines"}
                entries[f"sweep/{m}/{f}/{knob}={v}"] = entry_from_rows(
                    _what(m, f, {knob: v}), [plain]
                )
            scores = {dv: base[RULE_METRIC], **{v: r[RULE_METRIC] for v, r in got.items()}}
            test = {dv: base["knn_top1"], **{v: r["knn_top1"] for v, r in got.items()}}
            verdict = decide(scores, dv, std, PREFER.get(knob, "default"))
            sweep = {
                "default": dv,
                "rule_metric": RULE_METRIC,
                "std": std,
                "scores": {str(v): s for v, s in sorted(scores.items())},
                "test_knn_top1": {str(v): s for v, s in sorted(test.items())},
                **verdict,
            }
            every = _all_seeds(rows, m, f, knob, [dv, *values], seeds)
            if len(every) > 1:  # values run on every seed: their means, beside seed 0's scores
                sweep["all_seeds"] = every
            if verdict["changed"]:
                sweep.update(_confirm(rows, m, f, knob, dv, verdict["choice"], seeds, std))
            sweeps[f"{m}/{f}/{knob}"] = sweep
    return {"entries": entries, "sweeps": sweeps}


def _all_seeds(rows: dict, m: str, f: str, knob: str, values: list, seeds: int) -> dict:
    """{value: mean leave-one-out kNN over every seed} for the values run on every seed."""
    out = {}
    for v in values:
        names = [cell_name(m, f, s) if v == _default(m, knob) else cell_name(m, f, s, {knob: v})
                 for s in range(seeds)]  # fmt: skip
        if all(n in rows for n in names):
            out[str(v)] = sum(rows[n][RULE_METRIC] for n in names) / seeds
    return out


def _confirm(rows: dict, m: str, f: str, knob: str, dv, v, seeds: int, std) -> dict:
    """A change that seed 0 suggests is decided again on every seed: the means of the default's
    and of the new value's runs, against the same spread. Until those runs exist the change is
    not made (``confirmed: None``)."""
    new = [rows.get(cell_name(m, f, s, {knob: v}) if s else cell_name(m, f, 0, {knob: v}))
           for s in range(seeds)]  # fmt: skip
    old = [rows.get(cell_name(m, f, s)) for s in range(seeds)]
    if seeds < 2 or any(r is None for r in new + old):
        return {"choice": dv, "changed": False, "confirmed": None, "suggested": v,
                "reason": f"keep {dv} until {v} is run on every seed: seed 0 alone said "
                          + decide_reason(rows, m, f, knob, dv, v)}  # fmt: skip
    means = {
        dv: sum(r[RULE_METRIC] for r in old) / seeds,
        v: sum(r[RULE_METRIC] for r in new) / seeds,
    }
    again = decide(means, dv, std, PREFER.get(knob, "default"))
    return {**again, "reason": f"on {seeds} seeds (means): {again['reason']}", "suggested": v,
            "confirmed": {"seeds": seeds, "scores": {str(k): x for k, x in means.items()}}}  # fmt: skip


def decide_reason(rows: dict, m: str, f: str, knob: str, dv, v) -> str:
    a, b = rows[cell_name(m, f, 0)][RULE_METRIC], rows[cell_name(m, f, 0, {knob: v})][RULE_METRIC]
    return f"{v} {100 * b:.1f} against {dv} {100 * a:.1f}"


def sweep_seed_units(seeds: int) -> list[Unit]:
    """Every sweep value on seeds 1 to ``seeds`` - 1: the runs a confirmation makes."""
    return [
        Unit(cell_name(m, f, s, {knob: v}), "train", m, f, s, {knob: v})
        for (m, f), knobs in SWEEPS.items()
        for knob, values in knobs.items()
        for v in values
        for s in range(1, seeds)
    ]


def confirmations(results: dict, seeds: int) -> list[Unit]:
    """The runs a suggested change still needs: the new value on seeds 1 to ``seeds`` - 1."""
    units = []
    for key, sw in results["sweeps"].items():
        if sw.get("confirmed", "none") is None:
            m, f, knob = key.split("/")
            value = sw["suggested"]
            units += [
                Unit(cell_name(m, f, s, {knob: value}), "train", m, f, s, {knob: value})
                for s in range(1, seeds)
            ]
    return units


def figure(results: dict, path: Path) -> None:
    """``matrix_curves.png``: the 2x2's loss curves and kNN against training time, each the mean
    over the seeds with the seeds' range shaded, and the quality bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from shared.apps.demo import QUALITY_GAIN, QUALITY_KNN

    ents = results["entries"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for f, m in MATRIX:
        e = ents.get(f"{m}/{f}")
        if e is None:
            continue
        label = f"{LABEL[m]}, {LABEL[f]} ({e['n']} seeds)"
        loss = np.array([r["loss_curve"] for r in e["seeds"]])
        x = np.arange(1, loss.shape[1] + 1)
        (line,) = axes[0].plot(x, loss.mean(0), label=label)
        axes[0].fill_between(x, loss.min(0), loss.max(0), color=line.get_color(), alpha=0.2)
        curves = np.array([[p[1] for p in r["knn_curve"]] for r in e["seeds"]])
        secs = np.array([[p[0] for p in r["knn_curve"]] for r in e["seeds"]]).mean(0)
        axes[1].plot(
            secs, 100 * curves.mean(0), marker="o", ms=3, color=line.get_color(), label=label
        )
        axes[1].fill_between(
            secs, 100 * curves.min(0), 100 * curves.max(0), color=line.get_color(), alpha=0.2
        )
    base = max(ents[k]["mean"]["knn_top1"] for k in ents if k.startswith(("raw_", "random_")))
    bar = max(QUALITY_KNN, base + QUALITY_GAIN / 100)
    axes[1].axhline(
        100 * base, color="gray", ls="--", lw=1, label=f"best baseline ({100 * base:.1f} %)"
    )
    axes[1].axhline(100 * bar, color="gray", ls=":", lw=1,
                    label=f"the demo's quality bar ({100 * bar:.1f} %): at least "
                    f"{100 * QUALITY_KNN:.0f} %, {QUALITY_GAIN:.0f} points over the best baseline")  # fmt: skip
    axes[0].set(
        title="training loss per epoch (NT-Xent and InfoNCE: different scales)", xlabel="epoch"
    )
    axes[1].set(
        title="kNN top-1 on the test split (%) during training",
        xlabel="training time (s, one core)",
    )
    for ax in axes:
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"], capture_output=True, text=True
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def run(units: list[Unit], work: Path, jobs: int, extra: list[str]) -> dict:
    """Every unit, ``jobs`` at a time, in ``units`` order; a failure stops the rest."""
    from concurrent.futures import Future

    futures: dict[str, Future] = {}
    stop = threading.Event()
    with ThreadPoolExecutor(jobs) as pool:
        try:
            for u in units:
                futures[u.name] = pool.submit(run_unit, u, work, extra, futures, stop)
            return {name: fut.result() for name, fut in futures.items()}
        except BaseException:  # a failure or Ctrl-C: no unit starts after it, no wait goes on
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def check_work(work: Path) -> None:
    """Create ``work`` and write a probe file in it, so that a folder that cannot be written is
    named before any unit runs.

    Raises:
        RunDirError: ``work`` is a file or cannot be written.
    """
    import tempfile

    try:
        work.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=work, prefix=".write-probe.", suffix=".tmp"):
            pass
    except OSError as e:
        raise RunDirError(
            f"work: {str(work)!r} is not a writable folder ({e.strerror or e}); choose another "
            "--work"
        ) from e


def _recipe_plan(args) -> tuple[tuple, list[str]]:
    """``--only``'s parts and every run's extra train flags (``--recipe`` first).

    Raises:
        ConfigError: an unknown part, or the digits' sweeps or fine-tunes with another recipe.
    """
    default = "cells,finetune,sweeps" if args.recipe == "digits" else "cells"
    only = tuple((args.only or default).split(","))
    if bad := set(only) - {"cells", "finetune", "sweeps"}:
        raise ConfigError(f"only: expected a subset of cells,finetune,sweeps, got {sorted(bad)}")
    if args.recipe != "digits" and set(only) != {"cells"}:
        raise ConfigError(
            f"only: the sweeps and fine-tunes are the digits recipe's; with --recipe "
            f"{args.recipe}, expected --only cells, got {','.join(only)}"
        )
    recipe = ["--recipe", args.recipe] if args.recipe != "digits" else []  # digits: the default
    return only, [*recipe, *args.train_args.split()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="rosetta results", description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="training seeds per cell (>= 1)")
    ap.add_argument("--jobs", type=int, default=2, help="units at a time, one thread each")
    ap.add_argument("--work", default="runs/results", help="where each unit's run and result go")
    ap.add_argument("--out", default=str(RESULTS), help="the results file to write")
    ap.add_argument(
        "--figure", default=None, help="the figure (default: matrix_curves.png beside --out)"
    )
    ap.add_argument(
        "--only",
        default=None,
        help="a subset of cells,finetune,sweeps (default: all three; cells with --recipe)",
    )
    ap.add_argument(
        "--recipe",
        default="digits",
        choices=list(RECIPES),
        help="the setting every run trains (docs/recipes.md; default digits): another recipe "
        "trains its method's cells in both frameworks",
    )
    ap.add_argument(
        "--fractions", default=",".join(f"{f:g}" for f in FRACTIONS), help="labelled fractions"
    )
    ap.add_argument(
        "--match",
        default=None,
        help="run only the units whose name contains one of these comma-separated strings "
        "(the file is still assembled from every unit done)",
    )
    ap.add_argument(
        "--assemble",
        action="store_true",
        help="run nothing: write the file from the units already done under --work",
    )
    ap.add_argument(
        "--train-args", default="", help="extra train flags for every run (tests: tiny runs)"
    )
    ap.add_argument(
        "--carry",
        default=None,
        help="an earlier results file whose entries and sweeps this one lacks are kept, "
        "named in its 'carried' block with their measurement",
    )
    args = ap.parse_args(argv)
    if args.seeds < 1 or args.jobs < 1:
        raise ConfigError(f"seeds, jobs: expected >= 1, got {args.seeds}, {args.jobs}")
    only, train_args = _recipe_plan(args)
    fractions = tuple(float(x) for x in args.fractions.split(","))
    units = plan(args.seeds, fractions, only=only)
    if args.recipe != "digits":
        units = [u for u in units if u.method in RECIPES[args.recipe].values]
    work = Path(args.work)
    t0 = time.time()
    print(f"[results] {len(units)} units, {args.jobs} at a time, under {work}", flush=True)
    if not args.assemble:
        check_work(work)
    if args.assemble:
        marks = {u.name: work / u.name / "unit.json" for u in units}
        done = {n: read_json(p) for n, p in marks.items() if p.exists()}
        for u in units:  # the rows again from the run directories: the row's fields may be new
            if u.name in done:
                done[u.name]["row"] = row_of(u, work)
        print(f"[results] {len(done)} of {len(units)} units done; assembling those", flush=True)
    else:
        todo = units
        if args.match:
            todo = [u for u in units if any(m in u.name for m in args.match.split(","))]
        done = run(todo, work, args.jobs, train_args)
        done.update(recorded(units, work, train_args, done))
    for u in sweep_seed_units(args.seeds):  # a sweep value's other seeds, where they were run
        if u.name not in done and (work / u.name / "unit.json").exists():
            if not args.assemble:
                recorded([u], work, train_args, done)  # the same command's
            done[u.name] = {**read_json(work / u.name / "unit.json")}
            done[u.name]["row"] = row_of(u, work)
    results = assemble(units, done, args.seeds)
    extra = confirmations(results, args.seeds)  # changes seed 0 suggests, run on every seed
    if extra:
        names = ", ".join(u.name for u in extra)
        print(f"[results] confirming a suggested change on every seed: {names}", flush=True)
        if args.assemble:
            marks = {u.name: work / u.name / "unit.json" for u in extra}
            done.update({n: read_json(p) for n, p in marks.items() if p.exists()})
            for u in extra:
                if u.name in done:
                    done[u.name]["row"] = row_of(u, work)
        else:
            done.update(run(extra, work, args.jobs, train_args))
        results = assemble(units + extra, done, args.seeds)
    results["runs"] = [
        {"name": n, "seed": r["row"]["seed"], "wall_s": r["wall_s"], "load": r["load"],
         "precision": r.get("precision", "not recorded")}
        for n, r in done.items()
    ]  # fmt: skip
    results["measured"] = {
        "command": "rosetta results " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "commit": _git_commit(),
        "host": host(),
        "jobs": args.jobs,
        "wall_s": round(time.time() - t0, 1),
        "protocol": PROTOCOL,
        "settings": {
            "fast_kernels": FAST_KERNELS,
            "knn_every": KNN_EVERY,
            "data_seed": 0,
            "threads_per_unit": 1,
            "method_defaults": METHOD_DEFAULTS,
            "recipe": args.recipe,
            "precision": ", ".join(sorted({r["precision"] for r in results["runs"]})),
        },  # fmt: skip
    }
    out = Path(args.out)
    if args.assemble and out.exists():  # the measurement is the run's, not this assembly's
        before = read_json(out).get("measured", {})
        keep = ("command", "date", "commit", "host", "jobs", "wall_s", "note")
        results["measured"].update({k: before[k] for k in keep if k in before})
        results["measured"]["assembled_by"] = "rosetta results --assemble"
    if args.carry:
        results = carry(results, read_json(Path(args.carry)), args.carry)
    atomic_write_json(out, results)
    figure(results, Path(args.figure) if args.figure else out.with_name("matrix_curves.png"))
    print(f"[results] wrote {out} in {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
