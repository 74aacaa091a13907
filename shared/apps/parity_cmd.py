"""``rosetta parity``: each framework in its own process on the goldens, compared by NumPy.

    rosetta parity [--out DIR] [--dtypes float64 float32] [--device cpu]
    rosetta parity --compare A.npz B.npz     # e.g. a CPU dump against a GPU dump
    rosetta parity --level step              # one training step, torch vs TF, ported weights
    rosetta parity --level step --dtypes bfloat16 [--device cuda] [--tf32 on]
    rosetta parity --level train             # 3 epochs in both, ported weights, both curves
    rosetta parity --random 10000            # + random cases; the worst one is named (r<seed>)
    rosetta parity --localise                # the first layer where torch and TF disagree

Each backend writes its values, per-anchor losses and gradients to an ``.npz``
(``python -m torch_impl parity-dump`` / ``python -m tf_impl parity-dump``); this module never
imports a framework. The table (quantity x backend x dtype: max abs, max rel, ULPs, tolerance,
pass) is printed and written as ``parity.md`` and ``parity.json``. Exit status 1 on any failure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from shared.parity import golden
from shared.parity.compare import compare
from shared.parity.tolerances import natural_grad_scale
from shared.run.config import PACKAGES


def load_dump(path) -> tuple[dict, dict]:
    """Read a ``parity-dump`` file.

    Raises:
        ValueError: missing, not an .npz, or not written by ``parity-dump`` (names the file).
    """
    out: dict = {}
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["__meta__"]))
            for key in z.files:
                if key != "__meta__":
                    loss, case, fld = key.split("/")
                    out.setdefault(loss, {}).setdefault(case, {})[fld] = z[key]
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(
            f"compare: {path} is not a parity dump written by parity-dump ({type(e).__name__}: {e})"
        ) from e
    return meta, out


def compare_outputs(
    expected: dict, actual: dict, dtype: str, label: str, inputs: dict | None = None
) -> list[dict]:
    """Rows comparing ``actual`` with ``expected``; ``inputs`` (``{loss: {case: fields}}``)
    default to the goldens' and give each case's temperature and gradient scale."""
    inputs = inputs or {loss: golden.load(loss) for loss in ("nt_xent", "info_nce")}
    rows = []
    for loss, cases in expected.items():
        for case, fields in cases.items():
            inputs_c = inputs[loss][case]
            names = ["z1", "z2"] if loss == "nt_xent" else ["q", "k"]
            tau = float(inputs_c["temperature"])
            got = actual[loss][case]
            for r in compare(
                {loss: fields},
                {loss: got},
                dtype=dtype,
                temperature=tau,
                grad_floor=natural_grad_scale(tau, *(inputs_c[n] for n in names)),
            ):
                d = r.as_dict()
                d.update(backend=label, case=case)
                rows.append(d)
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """One row per (backend, dtype, loss, field): the worst case of the golden grid."""
    groups: dict = {}
    for r in rows:
        key = (r["backend"], r["dtype"], r["name"])
        g = groups.get(key)
        if g is None or r["worst_margin"] > g["worst_margin"]:
            groups[key] = {**r, "cases": 0, "failed": 0}
        groups[key]["cases"] = groups[key].get("cases", 0) + 1
    for r in rows:
        groups[(r["backend"], r["dtype"], r["name"])]["failed"] += 0 if r["passed"] else 1
    for g in groups.values():
        g["passed"] = g["failed"] == 0
    return list(groups.values())


def to_markdown(summary: list[dict]) -> str:
    lines = [
        "| quantity | backend | dtype | worst case | max abs | max rel | ULPs | rtol | atol x scale "
        "| pass |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary:
        lines.append(
            f"| {r['name']} | {r['backend']} | {r['dtype']} | {r.get('case', '')} | "
            f"{r['max_abs']:.2e} | "
            f"{r['max_rel']:.2e} | {r['ulps']:.3g} | {r['rtol']:.0e} | "
            f"{r['atol'] * r['scale']:.1e} | {'yes' if r['passed'] else '**NO**'} |"
        )
    lines += [
        "",
        "An element passes when |actual - expected| <= rtol |expected| + atol x scale. A max rel "
        "near 1 on a passing row comes from an element whose expected value is near zero: it "
        "passes on the absolute term.",
    ]
    return "\n".join(lines) + "\n"


def run(
    out_dir: Path,
    dtypes,
    device: str = "cpu",
    random: int = 0,
    seed: int = 0,
    env=None,
    tf32: str = "off",
) -> tuple[list[dict], bool]:
    """The loss level: the goldens (and ``random`` random cases per loss from ``seed``).
    ``env``: the dump processes' environment (``None``: this one's)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    expected = golden.expected_outputs()
    inputs = {loss: golden.load(loss) for loss in ("nt_xent", "info_nce")}
    if random:
        rand = golden.random_cases(random, seed)
        for loss, cases in rand.items():
            inputs[loss].update(cases)
            expected[loss].update(
                {
                    c: {k: v for k, v in f.items() if k in golden.OUTPUT_FIELDS}
                    for c, f in cases.items()
                }
            )
    extra = ["--random", str(random), "--seed", str(seed)] if random else []
    rows = []
    templates = {label: str(out_dir / f"{label}-{{dtype}}.npz") for label in PACKAGES}
    common = ["parity-dump", "--dtype", *dtypes, "--device", device, "--tf32", tf32, *extra]
    cmds = [
        [sys.executable, "-m", module, *common, "--out", templates[label]]
        for label, module in PACKAGES.items()
    ]
    if not _run_all(cmds, list(PACKAGES), env):  # the two frameworks at once
        return rows, False
    for label in PACKAGES:
        for dtype in dtypes:
            _, actual = load_dump(templates[label].replace("{dtype}", dtype))
            rows += compare_outputs(expected, actual, dtype, label, inputs)
    return rows, all(r["passed"] for r in rows)


def _run_all(cmds: list[list[str]], labels: list[str], env=None) -> bool:
    """Run the commands at once (each framework's dump in its own process) and wait for all;
    False, with the first failure's stderr printed (and the others stopped), if one fails."""
    procs = [
        subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for c in cmds
    ]
    try:
        pending = dict(zip(labels, procs))
        while pending:
            for label, proc in list(pending.items()):
                if proc.poll() is None:
                    continue
                del pending[label]
                _, err = proc.communicate()
                if proc.returncode != 0:
                    print(f"{label}: dump failed:\n{err[-2000:]}", file=sys.stderr)
                    return False
            time.sleep(0.05)
        return True
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


def dump_both(
    level: str, out_dir: Path, dtypes, env=None, device: str = "cpu", tf32: str = "off"
) -> bool:
    """``parity-dump --level LEVEL`` in torch and in TF, each in its own process (with ``env``,
    default this one's), into ``out_dir``. Torch writes the shared inputs (initial weights and,
    for the train level, the views) that TF reads: at the step level both run at once and TF
    waits for torch's initial weights (``--wait-for-init``); the train level runs one after
    the other. False (with the child's error on stderr) when a dump fails."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cmds = []
    for i, module in enumerate(PACKAGES.values()):
        cmd = [sys.executable, "-m", module, "parity-dump", "--level", level, "--dtype", *dtypes]
        cmd += ["--device", device, "--tf32", tf32, "--out", str(out_dir)]
        cmds.append(cmd + (["--wait-for-init"] if level == "step" and i else []))
    labels = [f"{m}: {level}" for m in PACKAGES.values()]
    if level == "step":
        return _run_all(cmds, labels, env)
    return all(_run_all([c], [label], env) for c, label in zip(cmds, labels))


def run_step(
    out_dir: Path, dtypes, env=None, device: str = "cpu", tf32: str = "off"
) -> tuple[list[dict], bool]:
    """``--level step``: torch's dump (it writes the initial weights), then TF's, compared by
    ``shared.parity.step_parity.compare_steps``; ``bfloat16`` is the bf16-autocast step."""
    from shared.parity import step_parity as sp

    if not dump_both("step", out_dir, dtypes, env, device, tf32):
        return [], False
    rows = []
    for case in sp.STEP_CASES:
        for dtype in dtypes:
            a, b = (dict(np.load(out_dir / f"{fw}-{case}-{dtype}.npz")) for fw in PACKAGES)
            for r in sp.compare_steps(a, b, dtype, case):
                rows.append({**r, "backend": f"{case}: tensorflow vs torch"})
    return rows, all(r["passed"] for r in rows)


def run_train(out_dir: Path, dtypes) -> tuple[list[dict], bool]:
    """``--level train``: torch's run (it writes the initial weights and the views), then
    TF's, compared by ``shared.parity.train_parity.compare_runs``; also writes ``train_curves.md``,
    ``train_curves.json`` and ``train_curves.png`` (both loss curves per case and dtype)."""
    from shared.parity import train_parity as tp

    if not dump_both("train", out_dir, dtypes):
        return [], False
    rows, curves = [], {}
    for case in tp.CASES:
        for dtype in dtypes:
            a, b = (tp.load_run(out_dir / f"{fw}-train-{case}-{dtype}.npz") for fw in PACKAGES)
            curves[(case, dtype)] = (a, b)
            for r in tp.compare_runs(a, b, dtype, case):
                rows.append({**r, "backend": f"{case}: tensorflow vs torch"})
    (out_dir / "train_curves.md").write_text(tp.curves_markdown(curves))
    (out_dir / "train_curves.json").write_text(tp.summary_json(curves))
    tp.plot(curves, out_dir / "train_curves.png")
    print(tp.curves_markdown(curves))
    return rows, all(r["passed"] for r in rows)


LEVEL_DTYPES = {
    "loss": ("float64", "float32"),
    "step": ("float64", "float32", "bfloat16"),
    "train": ("float64", "float32"),
}


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rosetta parity", description=__doc__.splitlines()[0])
    ap.add_argument("--localise", action="store_true", help="see rosetta parity --localise -h")
    ap.add_argument(
        "--level",
        default="loss",
        choices=["loss", "step", "train"],
        help="loss: the goldens against NumPy; step: one training step, torch vs TF; train: "
        "a few epochs from ported weights in both frameworks, and both loss curves",
    )
    ap.add_argument("--out", default=None, help="folder for dumps, parity.md, parity.json")
    ap.add_argument(
        "--dtypes",
        nargs="+",
        default=["float64", "float32"],
        help="float64, float32; at the step level also bfloat16 (float32 weights, bf16 "
        "autocast; TF: mixed_bfloat16)",
    )
    ap.add_argument(
        "--device", default="cpu", help="cpu or cuda (loss and step levels; each framework's)"
    )
    ap.add_argument(
        "--tf32",
        default="off",
        choices=["off", "on"],
        help="TF32 for float32 matmuls and convolutions on a GPU, set the same in both "
        "frameworks (their defaults differ: torch_impl/devices.py); no effect on a CPU",
    )
    ap.add_argument(
        "--random",
        type=int,
        default=0,
        help="loss level: add N random cases per loss (shapes, scales, temperatures from tiny "
        "to extreme); the table names the worst case's seed",
    )
    ap.add_argument("--seed", type=int, default=0, help="the first random case's seed")
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare two dumps")
    return ap


def _check_args(args) -> str | None:
    """The one-line error for flags that do not go together, or ``None``."""
    if args.device not in ("cpu", "cuda"):
        return f"device: expected cpu or cuda, got {args.device!r}"
    if args.device != "cpu" and args.level == "train":
        return "device: --level train runs on the CPU; use --level loss or step for cuda"
    bad = [d for d in args.dtypes if d not in LEVEL_DTYPES[args.level]]
    if bad:
        return (
            f"dtypes: --level {args.level} takes {', '.join(LEVEL_DTYPES[args.level])}, got {bad}"
        )
    return None


def _compare_dumps(paths) -> tuple[list[dict], bool]:
    (meta_a, a), (meta_b, b) = (load_dump(p) for p in paths)
    dtype = meta_b["dtype"] if meta_b["dtype"] != "float64" else meta_a["dtype"]
    label = f"{meta_b['framework']}@{meta_b['device']} vs {meta_a['framework']}@{meta_a['device']}"
    rows = compare_outputs(a, b, dtype, label)
    return rows, all(r["passed"] for r in rows)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--localise" in argv:
        from shared.apps.localise_cmd import main as localise

        return localise([a for a in argv if a != "--localise"])
    args = _parser().parse_args(argv)
    error = _check_args(args)
    if error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out or tempfile.mkdtemp(prefix="rosetta-parity-"))
    if args.compare:
        try:
            rows, ok = _compare_dumps(args.compare)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    elif args.level == "step":
        rows, ok = run_step(out, args.dtypes, None, args.device, args.tf32)
    elif args.level == "train":
        rows, ok = run_train(out, args.dtypes)
    else:
        rows, ok = run(out, args.dtypes, args.device, args.random, args.seed, None, args.tf32)
    if not rows and not ok:  # a dump process failed before comparing: its error is above
        print("error: a framework's parity dump failed (its message is above)", file=sys.stderr)
        return 2
    policy = f"device {args.device}; TF32 {args.tf32} in both frameworks" + (
        " (no effect on a CPU)" if args.device == "cpu" else ""
    )
    summary = summarize(rows)
    md = f"{policy}\n\n" + to_markdown(summary)
    print(md)
    out.mkdir(parents=True, exist_ok=True)
    (out / "parity.md").write_text(md)
    (out / "parity.json").write_text(
        json.dumps({"policy": policy, "rows": rows, "summary": summary}, indent=1, default=str)
    )
    print(f"{'PASS' if ok else 'FAIL'}: {len(rows)} comparisons; table in {out / 'parity.md'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
