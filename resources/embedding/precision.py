"""Device and numeric precision choices for the encoder.

``auto`` picks fp16 on CUDA, bf16 on CPUs that execute bf16 natively (AVX512-BF16 or AMX; about
4x the fp32 matmul rate on this project's machines), fp32 elsewhere. The encoder then checks the
low-precision model against fp32 on probe inputs and keeps fp32 if they disagree.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 dot-product instructions (x86 AVX512-BF16/AMX, ARM BF16)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
            break
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def resolve_device(requested: str) -> torch.device:
    """``auto`` -> the first CUDA device when one is usable, else the CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"OPENCLIP_DEVICE={requested!r} but CUDA is not available on this machine")
    return device


def resolve_precision(requested: str, device: torch.device) -> str:
    """The precision name to try on ``device`` for OPENCLIP_PRECISION ``requested``."""
    if requested != "auto":
        if requested not in PRECISIONS:
            raise ValueError(f"OPENCLIP_PRECISION must be auto, {', '.join(PRECISIONS)}; got {requested!r}")
        if requested == "fp16" and device.type == "cpu":
            raise ValueError("OPENCLIP_PRECISION=fp16 is not supported on the CPU; use bf16 or fp32")
        return requested
    if device.type == "cuda":
        return "fp16"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"
