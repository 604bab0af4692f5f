"""What this host's CPU offers int8 inference, read before measuring: the int8 dot-product
instructions XNNPACK's int8 kernels use, and what int8/fp32 speed-up they make likely."""

from __future__ import annotations

import platform
from pathlib import Path

# instruction (as /proc/cpuinfo names it) -> what it is
INT8_DOT = {
    "avx512_vnni": "x86 AVX-512 VNNI (int8 dot products, 512-bit)",
    "avx_vnni": "x86 AVX-VNNI (int8 dot products, 256-bit)",
    "amx_int8": "x86 AMX int8 tiles (not used by XNNPACK)",
    "asimddp": "Arm dot product (SDOT/UDOT)",
    "i8mm": "Arm int8 matrix multiply (SMMLA)",
}


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (x86 "flags", Arm "Features"); empty where the file cannot be read."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return set(value.split())
    return set()


def int8_outlook(flags: set[str] | None = None) -> tuple[list[str], str]:
    """The int8 dot-product instructions present, and what int8/fp32 ratio to expect with them."""
    flags = cpu_flags() if flags is None else flags
    found = [name for name in INT8_DOT if name in flags]
    usable = [f for f in found if f != "amx_int8"]
    if usable:
        return found, ("int8 dot products present: XNNPACK's int8 convolutions multiply-accumulate four "
                       "int8 pairs per lane; expect int8 at 1.8x fp32's speed or better on convolution-bound "
                       "models at 224 px (less where depthwise layers, memory or small inputs dominate)")
    if "avx2" in flags:
        return found, ("no int8 dot products (AVX2 only): XNNPACK widens int8 to int16, so int8 runs near "
                       "fp32 speed; its gain here is size, not latency")
    return found, f"no int8 dot-product instructions known on this {platform.machine()} CPU: measure"
