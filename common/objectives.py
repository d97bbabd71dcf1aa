"""Training objectives: how token windows become model inputs and a summed loss.

Every objective returns the loss *summed* over its target tokens and says how many targets a
batch has, so the loop can normalise by the target count of the whole global batch (all
micro-batches, all ranks) and results do not depend on accumulation or world size.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

IGNORE = -100


class CausalLM:
    """Next-token prediction: inputs are tokens 0..L-1 of a window, targets tokens 1..L."""

    name = "causal"

    def make_batch(self, windows: np.ndarray, device: torch.device, padding_rows: int = 0) -> dict[str, torch.Tensor]:
        tokens = torch.from_numpy(windows).to(device)
        labels = tokens[:, 1:].clone()
        if padding_rows:  # rows that only keep ranks in step (evaluation): no targets
            labels[-padding_rows:] = IGNORE
        return {"input_ids": tokens[:, :-1], "labels": labels}

    @staticmethod
    def count_targets(batch: dict[str, torch.Tensor]) -> int:
        return int((batch["labels"] != IGNORE).sum())

    @staticmethod
    def loss_sum(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = model(input_ids=batch["input_ids"]).logits
        return F.cross_entropy(logits.float().flatten(0, 1), batch["labels"].flatten(),
                               ignore_index=IGNORE, reduction="sum")
