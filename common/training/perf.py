"""Throughput accounting: a measured matmul peak and model-FLOPs utilisation (MFU)."""

from __future__ import annotations

import time

import torch


def measure_matmul_peak(device: torch.device, dtype: torch.dtype = torch.float32, seconds: float = 0.5) -> float:
    """The best FLOP/s of square matmuls on `device`: the ceiling MFU is measured against.

    Measured rather than looked up, so CPUs (whose peak depends on cores, clocks and BLAS) get an
    honest denominator too. On a GPU, pass the training dtype (bf16 tensor cores differ from fp32).
    """
    size = 4096 if device.type == "cuda" else 1024
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    flops_per_matmul = 2 * size ** 3
    best, deadline = 0.0, time.perf_counter() + seconds
    a @ b  # warm-up: BLAS thread pools and kernels
    while time.perf_counter() < deadline:
        synchronize(device)
        start = time.perf_counter()
        for _ in range(4):
            a @ b
        synchronize(device)
        best = max(best, 4 * flops_per_matmul / (time.perf_counter() - start))
    return best


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mfu(tokens_per_second: float, flops_per_token: float, peak_flops_per_process: float, num_processes: int) -> float:
    """Achieved model FLOP/s over the peak of every process together."""
    return tokens_per_second * flops_per_token / (peak_flops_per_process * num_processes)
