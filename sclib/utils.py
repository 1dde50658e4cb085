"""Device, precision and seeding helpers shared by the whole package."""

from __future__ import annotations

import logging
import random

import numpy as np
import torch

logger = logging.getLogger(__name__)

_PRECISIONS = ("auto", "bf16", "fp32")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into a ``torch.device``.

    ``"auto"`` picks CUDA when it is available, else the CPU.
    """
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={name!r} was requested but CUDA is not available on this machine; "
            "use device='auto' or device='cpu'."
        )
    return device


def cpu_supports_bfloat16() -> bool:
    """Return True when this CPU has native bfloat16 matrix units (AMX or AVX512-BF16)."""
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # older torch builds
        return False
    if capability in ("AVX512_BF16", "AMX", "AVX512_AMX"):
        return True
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as cpuinfo:
            flags = cpuinfo.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """Choose the autocast dtype for ``device``: ``torch.bfloat16`` or None for float32.

    Args:
        device: the training or inference device.
        precision: ``"auto"`` uses bfloat16 on CUDA and on CPUs with AMX or AVX512-BF16,
            ``"bf16"`` forces bfloat16, ``"fp32"`` disables autocast.
    """
    if precision not in _PRECISIONS:
        raise ValueError(f"precision={precision!r} is invalid; use one of {_PRECISIONS}.")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if cpu_supports_bfloat16() else None


def seed_everything(seed: int, device: torch.device | None = None) -> torch.Generator:
    """Seed Python, NumPy and torch, and return a ``torch.Generator`` seeded with ``seed``.

    The generator lives on ``device`` (CPU by default); sclib draws its random numbers
    from explicit generators, and the global seeds only cover third-party code.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    generator = torch.Generator(device=device or "cpu")
    generator.manual_seed(seed)
    return generator
