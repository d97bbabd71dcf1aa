"""The optimizer both training loops use: AdamW with decay on matrices only, and learning-rate
schedules as pure functions of the optimizer step (nothing to save or restore)."""

from __future__ import annotations

import math

import torch

SCHEDULES = ("linear", "cosine", "constant")


def warmup_steps_for(total_steps: int, warmup_ratio: float, warmup_steps: int = 0) -> int:
    """Explicit warmup steps win; otherwise a fraction of the run, rounded up."""
    # round() first: 100 * 0.07 is 7.000000000000001 in floating point, which ceil() makes 8
    return warmup_steps if warmup_steps > 0 else math.ceil(round(total_steps * warmup_ratio, 9))


def learning_rate_at(
    step: int, base_lr: float, total_steps: int, warmup: int, kind: str, min_lr_ratio: float = 0.0
) -> float:
    """The learning rate for optimizer step `step` (0-based): linear warmup, then `kind` decay.

    Decay goes from base_lr down to base_lr * min_lr_ratio at the last trained step, total_steps - 1.
    """
    if step < warmup:
        return base_lr * (step + 1) / warmup
    if kind == "constant":
        return base_lr
    progress = min(1.0, (step - warmup) / max(1, total_steps - 1 - warmup))
    if kind == "linear":
        shape = 1.0 - progress
    elif kind == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        raise ValueError(f"unknown schedule {kind!r}; choose one of {', '.join(SCHEDULES)}")
    return base_lr * (min_lr_ratio + (1.0 - min_lr_ratio) * shape)


def decay_groups(model, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on matrices only, never on norms, biases or embeddings."""
    embedding_ids = {id(p) for p in model.get_input_embeddings().parameters()}
    decay, no_decay = [], []
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim < 2 or id(parameter) in embedding_ids else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def adamw(
    model,
    learning_rate: float,
    weight_decay: float,
    device: torch.device,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.optim.AdamW:
    """AdamW over `decay_groups`; fused (one kernel for all parameters instead of a Python loop
    over them) on the CPU and CUDA, where PyTorch has that kernel."""
    return torch.optim.AdamW(
        decay_groups(model, weight_decay), lr=learning_rate, betas=betas, eps=eps, fused=device.type in ("cpu", "cuda")
    )
