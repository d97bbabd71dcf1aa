"""Learning-rate schedules as pure functions of the optimizer step (nothing to save or restore)."""

from __future__ import annotations

import math

SCHEDULES = ("linear", "cosine", "constant")


def warmup_steps_for(total_steps: int, warmup_ratio: float, warmup_steps: int = 0) -> int:
    """Explicit warmup steps win; otherwise a fraction of the run, rounded up."""
    # round() first: 100 * 0.07 is 7.000000000000001 in floating point, which ceil() makes 8
    return warmup_steps if warmup_steps > 0 else math.ceil(round(total_steps * warmup_ratio, 9))


def learning_rate_at(step: int, base_lr: float, total_steps: int, warmup: int, kind: str, min_lr_ratio: float = 0.0) -> float:
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
