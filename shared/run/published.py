"""The published numbers: one results file, ``docs/results.json``, and how a page quotes it.

``rosetta results`` (``shared/apps/results_cmd.py``) writes the file; every page that shows a
measured accuracy reads it through this module, and ``tests/test_published.py`` checks that
each quoted number is one the file holds.

The file holds *entries*, each a named set of runs that differ only in ``--seed``:

    {"entries": {"simclr/torch": {"what": "...", "n": 3, "seeds": [{"seed": 0, ...}, ...],
                                  "mean": {"knn_top1": 0.80, ...}, "std": {...}}, ...},
     "runs": [{"entry": ..., "seed": ..., "host": ..., "versions": ..., "wall_s": ...}, ...],
     "command": "rosetta results --seeds 3", ...}

``std`` is the sample standard deviation over the seeds (ddof = 1), ``None`` for one seed. A
page quotes an entry's metric as ``80.5 ± 1.2 % (results: simclr/torch, 3 seeds)``.

Example:
    >>> e = entry_from_rows("x", [{"seed": 0, "acc": 0.5}, {"seed": 1, "acc": 0.7}])
    >>> round(e["mean"]["acc"], 6), round(e["std"]["acc"], 6)
    (0.6, 0.141421)
    >>> quote({"entries": {"x": e}}, "x", "acc")
    '60.0 ± 14.1 % (results: x, 2 seeds)'
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

__all__ = [
    "RESULTS",
    "QUOTE",
    "load",
    "entry_from_rows",
    "stat",
    "fmt",
    "quote",
    "tag",
    "decide",
]

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results.json"

# a quoted number on a page: "80.5 ± 1.2 % (results: simclr/torch, 3 seeds)"; one seed has no ±
QUOTE = re.compile(
    r"(?P<mean>-?\d+(?:\.\d+)?)(?: ± (?P<std>\d+(?:\.\d+)?))?(?P<unit> %| s|)"
    r" \(results: (?P<key>[\w/.=@-]+)(?:, (?P<metric>[\w.]+))?, (?P<n>\d+) seeds?\)"
)


def load(path: Path | str | None = None) -> dict:
    """The committed results file (``docs/results.json`` unless ``path``)."""
    return json.loads(Path(path or RESULTS).read_text())


def _numbers(row: dict) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in row.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "seed"
    }


def entry_from_rows(what: str, rows: list[dict]) -> dict:
    """An entry: the per-seed ``rows`` and, for each numeric field they share, the mean and the
    sample standard deviation (ddof = 1; ``None`` for a single seed)."""
    if not rows:
        raise ValueError(f"rows: expected at least one seed's results for {what!r}, got none")
    shared = set.intersection(*(set(_numbers(r)) for r in rows))
    mean, std = {}, {}
    for k in sorted(shared):
        xs = [_numbers(r)[k] for r in rows]
        mean[k] = sum(xs) / len(xs)
        std[k] = (
            math.sqrt(sum((x - mean[k]) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else None
        )
    return {"what": what, "n": len(rows), "seeds": rows, "mean": mean, "std": std}


def stat(results: dict, key: str, metric: str) -> tuple[float, float | None, int]:
    """(mean, std, number of seeds) of ``metric`` in entry ``key``; a clear error if absent."""
    entries = results.get("entries", {})
    if key not in entries:
        raise KeyError(f"results: no entry {key!r}; the file has {sorted(entries)}")
    e = entries[key]
    if metric not in e["mean"]:
        raise KeyError(
            f"results: entry {key!r} has no metric {metric!r}; it has {sorted(e['mean'])}"
        )
    return e["mean"][metric], e["std"][metric], e["n"]


def fmt(mean: float, std: float | None, pct: bool = True, digits: int = 1) -> str:
    """``80.5 ± 1.2 %`` (``pct``: a fraction shown in percent), ``80.5 %`` without a std."""
    scale, unit = (100, " %") if pct else (1, "")
    text = f"{scale * mean:.{digits}f}"
    if std is not None:
        text += f" ± {scale * std:.{digits}f}"
    return text + unit


def tag(key: str, n: int, metric: str | None = None) -> str:
    """The source of a quoted number: ``(results: simclr/torch, 3 seeds)``."""
    what = f"{key}, {metric}" if metric else key
    return f"(results: {what}, {n} seed{'s' if n != 1 else ''})"


def quote(results: dict, key: str, metric: str, pct: bool = True, named: bool = False) -> str:
    """A number as a page shows it, with its source: ``80.5 ± 1.2 % (results: simclr/torch, 3
    seeds)``. ``named``: the tag names the metric too (where the sentence does not)."""
    mean, std, n = stat(results, key, metric)
    return f"{fmt(mean, std, pct)} {tag(key, n, metric if named else None)}"


def decide(scores: dict, default, std: float | None, prefer: str = "default") -> dict:
    """A setting chosen from a sweep's ``scores`` ({value: score}) with the run-to-run ``std``.

    ``prefer="default"``: the default stays unless another value beats it by more than ``std``.
    ``prefer="fewest"`` (epochs, a cost rule): the smallest value whose score is within ``std``
    of the default's, so the rule can cut epochs and never adds them (a larger value that scores
    higher is reported in the reason, not chosen). A difference smaller than ``std`` is a tie
    and the reason says so; with ``std`` unknown (``None``) every difference counts and the
    reason says that the spread is unknown.

    Returns ``{"choice", "changed": bool, "reason"}``.

    Example:
        >>> decide({0.03: 0.80, 0.06: 0.81}, 0.03, 0.02)["reason"]
        'keep 0.03: 0.06 scores 81.0 against 80.0, +1.0 points, within the spread 2.0 (a tie)'
    """
    if prefer not in ("default", "fewest"):
        raise ValueError(f"prefer: expected 'default' or 'fewest', got {prefer!r}")
    if default not in scores:
        raise ValueError(f"default: {default!r} is not one of the swept values {list(scores)}")
    margin = 0.0 if std is None else std
    spread = "the spread unknown" if std is None else f"the spread {100 * std:.1f}"
    best = max(scores, key=lambda v: (scores[v], v == default))
    p = {v: f"{100 * s:.1f}" for v, s in scores.items()}
    if prefer == "fewest":
        near = sorted(v for v, s in scores.items() if s >= scores[default] - margin)
        choice = near[0]
        reason = (
            f"{choice}: the fewest within {spread} of the default {default} ({p[default]}); "
            + ", ".join(f"{v}: {p[v]}" for v in sorted(scores))
        )
        if best != default and scores[best] - scores[default] > margin:
            reason += f" ({best} scores higher, by more than the spread; a cost rule adds none)"
        return {"choice": choice, "changed": choice != default, "reason": reason}
    gain = scores[best] - scores[default]
    if best != default and gain > margin:
        reason = f"change to {best}: {p[best]} against {p[default]}, +{100 * gain:.1f} points, over {spread}"
        return {"choice": best, "changed": True, "reason": reason}
    if best == default:
        return {
            "choice": default,
            "changed": False,
            "reason": f"keep {default}: the best ({p[default]})",
        }
    reason = (
        f"keep {default}: {best} scores {p[best]} against {p[default]}, +{100 * gain:.1f} points, "
        f"within {spread} (a tie)"
    )
    return {"choice": default, "changed": False, "reason": reason}
