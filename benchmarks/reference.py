"""The reference every benchmark figure stands beside: this machine's measured float32 matmul peak."""
from __future__ import annotations

import time

import torch


def matmul_peak_flops(n: int = 1024, repeats: int = 20, device: str = "cpu") -> float:
    """Best-of-``repeats`` FLOP/s of an n×n float32 matrix multiply (2·n³ FLOPs), on all torch threads."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        if device != "cpu":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def machine() -> dict:
    import os
    import platform

    return {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "cores": os.cpu_count(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
