"""The reference every benchmark figure stands beside: this machine's measured float32 matmul peak."""
from __future__ import annotations

import torch

from benchmarks.timing import measure

_RUN_PEAK: dict[str, float] = {}


def matmul_peak_flops(n: int = 1024, repeats: int = 20, device: str = "cpu") -> float:
    """Best-of-``repeats`` FLOP/s of an n×n float32 matrix multiply (2·n³ FLOPs), on all torch threads."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)

    def mm():
        a @ b

    sync = torch.cuda.synchronize if device != "cpu" else None
    return 2 * n ** 3 / measure(mm, warmup=3, repeat=repeats, sync=sync).min_s


def run_peak_flops(device: str = "cpu") -> float:
    """The matmul peak of this run: measured on the first call in this process, the same value after that, so
    ``benchmarks.run`` and every topic it runs report their figures beside one and the same reference."""
    if device not in _RUN_PEAK:
        _RUN_PEAK[device] = matmul_peak_flops(device=device)
    return _RUN_PEAK[device]


def machine() -> dict:
    import os
    import platform

    return {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "cores": os.cpu_count(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
