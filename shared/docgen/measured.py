"""The measured inputs of generated pages, committed beside the benchmarks with their host.

A page that is computed from code is the same on every host (``make docs`` leaves a clean
checkout clean: ``tests/test_docs.py``). A number that is a measurement on one CPU (a timing,
float rounding, a float32 drift) is not recomputed by ``make docs``: it is read from
``benchmarks/results/<name>.json``, which names the host, the date and the versions, and only
the page's own command re-measures it (``python -m shared.docgen.<page> --measure``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from shared.run.hardware import cpu_model, versions

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def host_line(meta: dict) -> str:
    """ "measured on <cpu>, <date> (torch x, tensorflow y)": where a page's numbers come from."""
    v = meta["versions"]
    return f"measured on {meta['host']}, {meta['date']} (torch {v['torch']}, TensorFlow {v['tensorflow']})"


def save(name: str, data) -> dict:
    """Write ``data`` to ``benchmarks/results/<name>.json`` with the host, date and versions."""
    meta = {
        "host": cpu_model(),
        "date": time.strftime("%Y-%m-%d"),
        "versions": versions(("torch", "tensorflow")),
    }
    doc = {"meta": meta, "data": data}
    (RESULTS / f"{name}.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return doc


def load(name: str) -> dict:
    """``{"meta", "data"}`` of ``benchmarks/results/<name>.json``; a clear error if it is absent."""
    path = RESULTS / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: missing; measure it with `python -m shared.docgen.<page> --measure`"
        )
    return json.loads(path.read_text())


def write_page(out: Path, text: str, echo: bool = False) -> None:
    """Every generator's last step: the page written, its path on stderr."""
    out.write_text(text)
    if echo:
        print(text)
    print(f"wrote {out}", file=sys.stderr)
