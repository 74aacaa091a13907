"""Every accuracy the README, the proofs page, the tutorial and the side-by-side page show is one
the results file holds (``docs/results.json``, written by ``rosetta results``), and names its source.

The checks, each also run on a page with one thing wrong so that it is seen to fail:

* a quoted number, ``80.5 ± 1.2 % (results: simclr/torch, 3 seeds)``, is that entry's mean and
  std of some metric (or of the metric it names), over that many seeds;
* any other ``a ± b`` is some entry's mean and std;
* any other percentage with one decimal is a value the file holds (a mean or one seed's), or
  one of ``COMPUTED``: numbers the generators compute from code, not measurements.

Then the pieces of ``shared.run.published`` and of ``rosetta results`` that build the file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shared.run import published as P

ROOT = Path(__file__).resolve().parents[1]
PAGES = (
    "README.md",
    "docs/proofs.md",
    "docs/tutorial.md",
    "docs/side_by_side.md",
    "docs/framework_differences.md",
)
# Percentages a generator computes from code (closed forms), not measured: page -> reason
COMPUTED = {
    "docs/tutorial.md": {
        "98.1 %": "9.2: the share of the push on the hardest negative at tau = 0.1 (computed)",
        "40.5 %": "9.2: the same at tau = 1 (computed)",
    },
}
PAIR = re.compile(r"(-?\d+\.\d) ± (\d+\.\d)( %)?")
PERCENT = re.compile(r"(?<![\d.±] )(?<![\d.])(\d+\.\d) ?%")


def held(results: dict) -> tuple[set[str], set[str]]:
    """Every ``mean ± std`` the file holds as a page prints it (percent and plain), and every
    single value (means and per-seed values)."""
    pairs, singles = set(), set()
    for e in results.get("entries", {}).values():
        for k, mean in e["mean"].items():
            std = e["std"][k]
            for scale in (100, 1):
                singles.add(f"{scale * mean:.1f}")
                if std is not None:
                    pairs.add(f"{scale * mean:.1f} ± {scale * std:.1f}")
        for row in e["seeds"]:
            for v in row.values():
                if isinstance(v, float):
                    singles |= {f"{100 * v:.1f}", f"{v:.1f}"}
    return pairs, singles


def page_problems(text: str, results: dict, computed=()) -> list[str]:
    """What on ``text`` the results file does not hold (see the module docstring)."""
    problems = []
    for m in P.QUOTE.finditer(text):
        key, metric, n = m["key"], m["metric"], int(m["n"])
        e = results.get("entries", {}).get(key)
        if e is None:
            problems.append(f"{m[0]!r}: no entry {key!r}")
            continue
        pct = m["unit"] == " %"
        metrics = [metric] if metric else list(e["mean"])
        want = {P.fmt(*P.stat(results, key, k)[:2], pct=pct).removesuffix(" %") for k in metrics}
        got = m["mean"] + (f" ± {m['std']}" if m["std"] else "")
        if got not in want or n != e["n"]:
            problems.append(f"{m[0]!r}: {key} holds {sorted(want)} over {e['n']} seeds")
    pairs, singles = held(results)
    rest = P.QUOTE.sub("", text)
    for m in PAIR.finditer(rest):
        if f"{m[1]} ± {m[2]}" not in pairs:
            problems.append(f"{m[0]!r}: no entry holds this mean ± std")
    for m in PERCENT.finditer(PAIR.sub("", rest)):
        if m[1] not in singles and f"{m[1]} %" not in computed:
            problems.append(f"{m[0]!r}: not a number of the results file")
    return problems


@pytest.fixture(scope="module")
def results():
    return P.load()


@pytest.mark.parametrize("page", PAGES)
def test_every_number_on_the_page_is_held_by_the_results_file(page, results):
    text = (ROOT / page).read_text()
    assert page_problems(text, results, COMPUTED.get(page, {})) == []


def test_a_number_the_file_does_not_hold_fails(results):
    key = "simclr/torch"
    good = P.quote(results, key, "knn_top1")
    assert page_problems(f"SimCLR reaches {good}.", results) == []
    mean, std, n = P.stat(results, key, "knn_top1")
    wrong_mean = f"{100 * mean + 0.1:.1f} ± {100 * std:.1f} % {P.tag(key, n)}"
    wrong_n = good.replace(f"{n} seeds", f"{n + 1} seeds")
    for bad in (wrong_mean, wrong_n, "a lonely 12.3 % here", "a pair 12.3 ± 4.5 there"):
        assert page_problems(bad, results), bad
    assert page_problems(good.replace(key, "nope/x"), results) == [
        f"{good.replace(key, 'nope/x')!r}: no entry 'nope/x'"
    ]


def test_entries_hold_the_mean_and_the_sample_std():
    e = P.entry_from_rows("x", [{"seed": s, "a": v, "k": 3} for s, v in enumerate((0.7, 0.8, 0.9))])
    assert e["n"] == 3 and e["mean"]["a"] == pytest.approx(0.8)
    assert e["std"]["a"] == pytest.approx(0.1)  # ddof = 1: sqrt((0.01 + 0 + 0.01) / 2)
    assert e["std"]["k"] == 0.0 and "seed" not in e["mean"]
    assert P.entry_from_rows("x", [{"seed": 0, "a": 0.5}])["std"]["a"] is None
    with pytest.raises(ValueError, match="rows: expected at least one"):
        P.entry_from_rows("x", [])


def test_decide_calls_a_difference_within_the_spread_a_tie():
    keep = P.decide({0.03: 0.80, 0.06: 0.81}, 0.03, 0.02)
    assert keep["choice"] == 0.03 and not keep["changed"] and "a tie" in keep["reason"]
    change = P.decide({0.03: 0.80, 0.06: 0.83}, 0.03, 0.02)
    assert change["choice"] == 0.06 and change["changed"]
    fewest = P.decide({15: 0.77, 25: 0.79, 40: 0.80}, 25, 0.015, prefer="fewest")
    assert fewest["choice"] == 25  # 15 is 2 points below the default: more than the spread
    assert P.decide({15: 0.78, 25: 0.79, 40: 0.80}, 25, 0.015, "fewest")["choice"] == 15
    more = P.decide({15: 0.70, 25: 0.75, 40: 0.81}, 25, 0.015, "fewest")
    assert more["choice"] == 25 and "a cost rule adds none" in more["reason"]
    unknown = P.decide({1: 0.5, 2: 0.5001}, 1, None)
    assert unknown["choice"] == 2 and "spread unknown" in unknown["reason"]
    with pytest.raises(ValueError, match="default"):
        P.decide({1: 0.5}, 2, 0.1)


def _row(seed: int, knn: float, loo: float) -> dict:
    base = {"seed": seed, "knn_top1": 0.5, "knn_k": 5, "linear_top1": 0.3, "linear_c": 0.001}
    return {
        "seed": seed,
        "knn_top1": knn,
        "knn_loo": loo,
        "linear_top1": knn + 0.1,
        "loss_curve": [2.0, 1.0],
        "knn_curve": [[1.0, knn]],
        "baselines": {
            "random_init": {**base, "knn_loo": 0.4},
            "raw_pixels": {**base, "knn_loo": 0.5},
        },
    }


def test_results_plan_varies_the_seed_and_fixes_the_data():
    from shared.apps import results_cmd as R

    units = R.plan(3)
    train = [u for u in units if u.kind == "train" and not u.flags]
    assert len(train) == 12 and len([u for u in units if u.kind == "finetune"]) == 9
    sweeps = [u for u in units if u.flags]
    assert len(sweeps) == sum(len(v) for knobs in R.SWEEPS.values() for v in knobs.values())
    for u in train:
        cmd = R.command(u, Path("w"), [])
        assert cmd[cmd.index("--seed") + 1] == str(u.seed)
        assert cmd[cmd.index("--data-seed") + 1] == "0"
    flip = next(u for u in sweeps if "flip" in u.flags)
    assert "--flip" in R.command(flip, Path("w"), [])
    ft = next(u for u in units if u.kind == "finetune")
    assert ft.needs in {u.name for u in train}


def test_assemble_builds_entries_sweeps_and_decisions():
    from shared.apps import results_cmd as R

    units = R.plan(2, fractions=(0.1,))
    done = {}
    for u in units:
        if u.kind == "train":
            loo = 0.80 + 0.01 * u.seed + (0.05 if u.flags == {"lr": 0.06} else 0.0)
            done[u.name] = {"row": _row(u.seed, 0.70 + 0.02 * u.seed, loo)}
        else:
            ft = {"seed": u.seed, "finetune_top1": 0.9, "scratch_top1": 0.7, "linear_top1": 0.8}
            done[u.name] = {"row": ft}
    out = R.assemble(units, done, seeds=2)
    e = out["entries"]
    assert {"simclr/torch", "moco/tensorflow", "raw_pixels", "random_init/torch"} <= set(e)
    assert e["simclr/torch"]["n"] == 2 and e["simclr/torch"]["mean"]["knn_top1"] == pytest.approx(
        0.71
    )
    assert e["raw_pixels"]["n"] == 1  # the pixels do not depend on the seed
    assert e["finetune/simclr/torch/0.1"]["mean"]["finetune_top1"] == pytest.approx(0.9)
    lr = out["sweeps"]["moco/torch/lr"]
    std = e["moco/torch"]["std"]["knn_loo"]  # 0.00707: the two seeds' leave-one-out spread
    assert lr["std"] == pytest.approx(std) and lr["suggested"] == 0.06
    default = R._default("moco", "lr")
    assert lr["choice"] == default and not lr["changed"] and lr["confirmed"] is None  # seed 0 only
    names = {u.name: u for u in R.confirmations(out, seeds=2)}
    confirm = names[R.cell_name("moco", "torch", 1, {"lr": 0.06})]
    assert R.cell_name("simclr", "torch", 1, {"epochs": 30}) in names  # the cut, too
    for loo, changed in ((0.81, True), (0.76, False)):  # seed 1 at lr 0.06: holds, or not
        done[confirm.name] = {"row": _row(1, 0.7, loo)}
        again = R.assemble([*units, confirm], done, seeds=2)["sweeps"]["moco/torch/lr"]
        assert again["changed"] is changed and again["confirmed"]["seeds"] == 2, again
    assert out["sweeps"]["moco/torch/bn_splits"]["choice"] == 2  # all equal: the default stays
    cells = [u for u in units if not u.flags]
    cells_only = R.assemble(cells, {u.name: done[u.name] for u in cells}, seeds=2)
    assert cells_only["sweeps"] == {}  # no sweep value run: none decided (and none shadows a carry)
    epochs = out["sweeps"]["simclr/torch/epochs"]
    assert epochs["suggested"] == 30 and epochs["rule_metric"] == "knn_loo"  # a tie: the fewest


def test_carry_keeps_the_earlier_files_other_numbers_and_names_where_they_came_from():
    """``rosetta results --carry FILE``: entries and sweeps this invocation did not measure are
    kept from FILE, listed in ``carried`` with FILE's measurement and runs; its own stay."""
    from shared.apps import results_cmd as R
    from shared.run.errors import ConfigError

    new = {"entries": {"simclr/torch": {"n": 3}}, "sweeps": {},
           "runs": [{"name": "train/simclr/torch/seed0", "precision": "float32"}]}  # fmt: skip
    earlier = {
        "entries": {"simclr/torch": {"n": 1}, "sweep/moco/torch/lr=0.03": {"n": 1}},
        "sweeps": {"moco/torch/lr": {"choice": 0.015}},
        "measured": {"commit": "e3e67ad"},
        "runs": [{"name": "train/simclr/torch/seed0"}, {"name": "train/moco/torch/seed0,lr=0.03"}],
    }
    out = R.carry(new, earlier, "old.json")
    assert out["entries"]["simclr/torch"] == {"n": 3}  # its own measurement wins
    assert out["entries"]["sweep/moco/torch/lr=0.03"] == {"n": 1}
    assert out["sweeps"]["moco/torch/lr"] == {"choice": 0.015}
    c = out["carried"]
    assert (c["from"], c["entries"], c["sweeps"]) == (
        "old.json", ["sweep/moco/torch/lr=0.03"], ["moco/torch/lr"])  # fmt: skip
    assert c["measured"]["commit"] == "e3e67ad" and c["precision"] == "not recorded"
    assert [r["name"] for r in c["runs"]] == ["train/moco/torch/seed0,lr=0.03"]
    with pytest.raises(ConfigError, match="carry: expected a results file that measured"):
        R.carry(new, out, "carried.json")


@pytest.mark.parametrize("amp,cmd,want", [(True, [], "bfloat16 autocast"),
                                          (False, ["--amp"], "float32"),
                                          (None, ["--amp"], "bfloat16 autocast")])  # fmt: skip
def test_a_units_precision_is_what_its_run_recorded(tmp_path, amp, cmd, want):
    from shared.apps import results_cmd as R

    unit = R.Unit("train/simclr/torch/seed0", "train", "simclr", "torch", 0)
    if amp is not None:
        (tmp_path / unit.name).mkdir(parents=True)
        (tmp_path / unit.name / "config.json").write_text(json.dumps({"amp": amp}))
    assert R.unit_precision(unit, tmp_path, cmd) == want


def test_the_measured_line_names_the_precision_and_what_was_carried():
    from shared.docgen import results_tables as T

    host = {"cpu": "AMD EPYC (2 cores)", "versions": {"torch": "2.14.1", "tensorflow": "2.21.0"}}
    measured = {"command": "rosetta results --seeds 3 --only cells", "commit": "a470080",
                "date": "2026-12-07", "host": host, "wall_s": 3600, "jobs": 2,
                "settings": {"precision": "float32"}}  # fmt: skip
    earlier = {**measured, "command": "rosetta results --seeds 3", "commit": "e3e67ad"}
    carried = {"entries": ["finetune/simclr/torch/1", "sweep/moco/torch/lr=0.03"],
               "measured": earlier, "precision": "not recorded"}  # fmt: skip
    line = T.measured_line({"measured": measured, "carried": carried})
    assert "at a470080, 2026-12-07" in line and "every run in float32" in line
    assert line.endswith(
        "The sweeps and fine-tunes (2 entries) are carried from an earlier file: `rosetta "
        "results --seeds 3` at e3e67ad, 2026-12-07, precision not recorded (the file's "
        "`carried` block)"
    )
