"""The demo behind ``make demo``. Until the frameworks land it prints the worked examples."""

from __future__ import annotations


def main(argv=None) -> int:
    from shared.worked_examples import main as explain

    return explain([])
