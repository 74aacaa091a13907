"""What the CPU can do, read without importing a framework.

bfloat16 autocast pays off on a CPU only with native bf16 arithmetic (AVX512-BF16 or AMX). On
an AVX2-only CPU both frameworks emulate it, and a training step becomes about 12x slower than
in float32 (measured here: 1.19 s against 0.10 s per SimCLR step on an AMD EPYC with AVX2).
So it is a flag's choice (``--amp``), never the host's: this module only reports what the CPU
has (the benchmarks record it beside their times).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["cpu_features", "cpu_has_native_bf16", "cpu_model", "cpu_name", "versions"]

BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU flags (``/proc/cpuinfo``) list AVX512-BF16 or AMX-BF16.

    Example:
        >>> cpu_has_native_bf16("flags : fpu avx2 avx512f avx512_bf16"), cpu_has_native_bf16("flags : avx2")
        (True, False)
    """
    return _native_bf16(_flags(cpuinfo))


def _native_bf16(flags: set[str]) -> bool:
    return any(f in flags for f in BF16_FLAGS)


def _read_cpuinfo(cpuinfo: str | None) -> str:
    """``cpuinfo``, or ``/proc/cpuinfo``'s text ("" where it cannot be read: not Linux)."""
    if cpuinfo is not None:
        return cpuinfo
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU flags ``/proc/cpuinfo`` lists (none where it cannot be read: not Linux)."""
    flags = set()
    for line in _read_cpuinfo(cpuinfo).splitlines():
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
    return f"{width}, {'native bf16' if _native_bf16(flags) else 'no native bf16'}"


def cpu_name(cpuinfo: str | None = None) -> str:
    """The CPU's model name from ``/proc/cpuinfo``, e.g. "AMD EPYC"; the platform's processor
    string where there is no such file."""
    import platform

    for line in _read_cpuinfo(cpuinfo).splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def cpu_model(cpuinfo: str | None = None) -> str:
    """:func:`cpu_name` with the core count, e.g. "Intel(R) Xeon(R) ... (2 cores)"."""
    import os

    return f"{cpu_name(cpuinfo)} ({os.cpu_count()} cores)"


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
