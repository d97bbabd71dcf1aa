"""Throughput accounting: FLOPs per trained token, a measured matmul peak, and model-FLOPs utilisation (MFU)."""

from __future__ import annotations

import time

import torch
from transformers import PretrainedConfig


def measure_matmul_peak(device: torch.device, dtype: torch.dtype = torch.float32, seconds: float = 0.5) -> float:
    """The best FLOP/s of square matmuls on `device`: the ceiling MFU is measured against.

    Measured rather than looked up, so CPUs (whose peak depends on cores, clocks and BLAS) get an
    honest denominator too. On a GPU, pass the training dtype (bf16 tensor cores differ from fp32).
    """
    size = 4096 if device.type == "cuda" else 1024
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    flops_per_matmul = 2 * size**3
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


def count_parameters(model, include_embeddings: bool = True) -> int:
    """Distinct parameters (tied weights once); embeddings optional, as in FLOPs estimates."""
    seen, total = set(), 0
    embedding_ids = {id(p) for p in model.get_input_embeddings().parameters()}
    for parameter in model.parameters():
        if id(parameter) in seen or (not include_embeddings and id(parameter) in embedding_ids):
            continue
        seen.add(id(parameter))
        total += parameter.numel()
    return total


def matmul_parameters(model) -> int:
    """Weights that take part in a token's matmuls: all but the input embedding lookup (the output
    head counts even when it shares the embedding matrix), and of a mixture of experts only the
    k-of-E share that each token runs through."""
    tied_head = (
        model.get_output_embeddings() is not None
        and model.get_output_embeddings().weight is model.get_input_embeddings().weight
    )
    head = model.get_output_embeddings().weight.numel() if tied_head else 0
    total = count_parameters(model, include_embeddings=False) + head
    num_experts = getattr(model.config, "num_experts", None)
    if num_experts:
        experts = sum(p.numel() for name, p in model.named_parameters() if ".experts." in name)
        total -= experts - experts * model.config.num_experts_per_tok // num_experts
    return total


def training_flops_per_token(config: PretrainedConfig, non_embedding_params: int, seq_length: int) -> float:
    """Forward+backward FLOPs per trained token: 6N for the weights plus attention (PaLM, App. B)."""
    attention = 12 * config.num_hidden_layers * config.hidden_size * seq_length
    return 6 * non_embedding_params + attention
