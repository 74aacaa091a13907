"""What the CPU can do, read without importing a framework.

bfloat16 autocast pays off on a CPU only with native bf16 arithmetic (AVX512-BF16 or AMX). On
an AVX2-only CPU both frameworks emulate it, and a training step becomes about 12x slower than
in float32 (measured here: 1.19 s against 0.10 s per SimCLR step on an AMD EPYC with AVX2).
So it is a flag's choice (``--amp``), never the host's: this module only reports what the CPU
has (the benchmarks record it beside their times).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["cpu_has_native_bf16", "cpu_model", "versions"]

BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU flags (``/proc/cpuinfo``) list AVX512-BF16 or AMX-BF16.

    Example:
        >>> cpu_has_native_bf16("flags : fpu avx2 avx512f avx512_bf16"), cpu_has_native_bf16("flags : avx2")
        (True, False)
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:  # not Linux: be conservative
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return any(f in flags for f in BF16_FLAGS)


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name from ``/proc/cpuinfo`` with its core count, e.g. "Intel(R) Xeon(R)
    ... (2 cores)"; the platform's processor string where there is no such file."""
    import os
    import platform

    if cpuinfo is None:
        try:
            cpuinfo = open("/proc/cpuinfo").read()
        except OSError:
            cpuinfo = ""
    names = [
        ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")
    ]
    return (
        f"{names[0] if names else platform.processor() or 'unknown CPU'} ({os.cpu_count()} cores)"
    )


def versions(packages=("torch", "tensorflow", "numpy", "scikit-learn")) -> dict:
    """The installed version of each package (``None`` where absent), read without importing it."""
    from importlib import metadata

    out = {}
    for pkg in packages:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out
