"""Throughput accounting: FLOPs per trained token, a measured matmul peak, and model-FLOPs utilisation (MFU)."""

from __future__ import annotations

import resource
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
    while best == 0.0 or time.perf_counter() < deadline:  # at least one round on a busy machine
        synchronize(device)
        start = time.perf_counter()
        for _ in range(4):
            a @ b
        synchronize(device)
        best = max(best, 4 * flops_per_matmul / (time.perf_counter() - start))
    return best


# Nominal dense (no sparsity) bf16/fp16 tensor-core peaks, TFLOP/s, from the vendors' data sheets;
# the first name contained in torch's device name wins, so variants come before their family.
NOMINAL_BF16_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM
    ("H200", 989.0),
    ("GH200", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),  # after the L40s, whose names contain "L4"
    ("A10G", 70.0),
    ("A10", 125.0),
    ("MI300X", 1307.0),
    ("MI250X", 383.0),
)


def nominal_peak_flops(device_name: str) -> float | None:
    """The data-sheet bf16 peak of a known GPU (FLOP/s), None for one not in the table."""
    return next((tflops * 1e12 for name, tflops in NOMINAL_BF16_TFLOPS if name in device_name), None)


def peak_flops_for(device: torch.device, dtype: torch.dtype) -> tuple[float, str]:
    """The FLOP/s that MFU divides by, and where it comes from. A GPU of the table in bf16/fp16 gets
    its nominal peak (what papers report MFU against); a CPU or an unknown GPU a measured matmul peak."""
    if device.type == "cuda" and dtype in (torch.bfloat16, torch.float16):
        name = torch.cuda.get_device_name(device)
        nominal = nominal_peak_flops(name)
        if nominal is not None:
            return nominal, f"nominal bf16 peak of the {name}"
    return measure_matmul_peak(device, dtype), f"measured {str(dtype).removeprefix('torch.')} matmul peak"


def peak_memory_gb(device: torch.device) -> float:
    """The most memory this process has held: allocated GPU memory on CUDA, resident memory (RSS)
    on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux


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


# torch.compile on a CPU, measured on the 2-core development machine (docs/benchmarks.md,
# "Compiling on a CPU"): compiling the training forward of a 4-layer model took 14-21 s at start
# (deeper models take longer: counted as 30) and then saved 6% (float32) to 15% (bf16) of every
# step (counted as 6%). A GPU run always compiles: there eager small models are bound by kernel launches.
CPU_COMPILE_SECONDS = 30.0
CPU_COMPILE_SAVING = 0.06
CPU_EAGER_MFU = 0.5  # what an eager step reaches of the measured matmul peak on a CPU


def estimated_seconds(tokens: int, flops_per_token: float, peak_flops: float, utilisation: float = CPU_EAGER_MFU):
    """Rough length of a run: its model FLOPs at a typical fraction of the measured peak."""
    return tokens * flops_per_token / (peak_flops * utilisation)


def compile_pays(setting: str, device_type: str, eager_seconds: float, zero_stage: int = 0) -> bool:
    """--torch_compile auto|true|false -> compile or not. Auto: on CUDA always, except under ZeRO-3
    (DeepSpeed's parameter-gathering hooks break the graph at every module: measured, the compiler
    hits its recompilation limit and falls back to eager after paying for it); on a CPU only when the
    saving over the run exceeds the compilation time (a test or a smoke run stays eager)."""
    if setting != "auto":
        return setting == "true"
    if zero_stage == 3:
        return False
    if device_type == "cuda":
        return True
    return eager_seconds * CPU_COMPILE_SAVING > CPU_COMPILE_SECONDS
