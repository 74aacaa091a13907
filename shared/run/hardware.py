"""What the CPU can do, read without importing a framework.

bfloat16 autocast pays off on a CPU only with native bf16 arithmetic (AVX512-BF16 or AMX). On
an AVX2-only CPU both frameworks emulate it, and a training step becomes about 12x slower than
in float32 (measured here: 1.19 s against 0.10 s per SimCLR step on an AMD EPYC with AVX2).
So it is a flag's choice (``--amp``), never the host's: this module only reports what the CPU
has (the benchmarks record it beside their times).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["cpu_features", "cpu_has_native_bf16", "cpu_model", "versions"]

BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU flags (``/proc/cpuinfo``) list AVX512-BF16 or AMX-BF16.

    Example:
        >>> cpu_has_native_bf16("flags : fpu avx2 avx512f avx512_bf16"), cpu_has_native_bf16("flags : avx2")
        (True, False)
    """
    return any(f in _flags(cpuinfo) for f in BF16_FLAGS)


def _flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU flags ``/proc/cpuinfo`` lists (none where it cannot be read: not Linux)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return flags


def cpu_features(cpuinfo: str | None = None) -> str:
    """The CPU's widest vector extension and whether it has native bf16: what makes the same
    code take about twice as long, or twelve times with ``--amp``, from one x86 host to another.

    Example:
        >>> cpu_features("flags : fpu avx2"), cpu_features("flags : avx2 avx512f avx512_bf16")
        ('AVX2, no AVX-512, no native bf16', 'AVX-512, native bf16')
    """
    flags = _flags(cpuinfo)
    if not flags:
        return "CPU flags unknown"
    width = (
        "AVX-512" if "avx512f" in flags else "AVX2, no AVX-512" if "avx2" in flags else "no AVX2"
    )
    return f"{width}, {'native bf16' if any(f in flags for f in BF16_FLAGS) else 'no native bf16'}"


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
