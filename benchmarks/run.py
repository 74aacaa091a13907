"""Benchmark entry point. Not implemented yet: see benchmarks/README.md and issue 6."""

import sys

if __name__ == "__main__":
    print("benchmarks are not implemented yet (issue 6); see benchmarks/README.md", file=sys.stderr)
    raise SystemExit(2)
