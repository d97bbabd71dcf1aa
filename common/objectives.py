"""Training objectives: how token windows become model inputs and a summed loss.

Every objective returns the loss *summed* over its target tokens and says how many targets a
batch has, so the loop can normalise by the target count of the whole global batch (all
micro-batches, all ranks) and results do not depend on accumulation or world size.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from common.errors import UsageError

IGNORE = -100
TRAIN_STREAM, EVAL_STREAM = 1, 2  # separate random streams for training and validation masks


class CausalLM:
    """Next-token prediction: inputs are tokens 0..L-1 of a window, targets tokens 1..L."""

    name = "causal"

    def make_batch(self, windows: np.ndarray, device: torch.device, sample_ids, evaluation: bool = False,
                   padding_rows: int = 0) -> dict[str, torch.Tensor]:
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


def mask_tokens(tokens: np.ndarray, sample_ids, special: np.ndarray, replacement_ids: np.ndarray, mask_id: int,
                probability: float, seed: int, stream: int) -> tuple[np.ndarray, np.ndarray]:
    """BERT's dynamic masking of token rows: each non-special token is chosen with `probability`;
    a chosen token becomes [MASK] 80% of the time, a random token 10%, and stays 10%.

    Row r draws from a generator seeded by (seed, stream, sample_ids[r]): the same sample gets the
    same mask on any number of processes and after a resume, and a window seen again in a later
    epoch (a new sample index) gets a fresh one. Returns (inputs, labels), labels IGNORE where
    nothing is predicted.
    """
    inputs, labels = tokens.copy(), np.full_like(tokens, IGNORE)
    for row, sample in enumerate(sample_ids):
        rng = np.random.default_rng([seed, stream, int(sample)])
        choose, keep_or_random, which = rng.random((3, tokens.shape[1]))
        chosen = (choose < probability) & ~special[tokens[row]]
        labels[row, chosen] = tokens[row, chosen]
        masked = chosen & (keep_or_random < 0.8)
        randomised = chosen & (keep_or_random >= 0.8) & (which < 0.5)
        inputs[row, masked] = mask_id
        inputs[row, randomised] = rng.choice(replacement_ids, size=int(randomised.sum()))
    return inputs, labels


class MaskedLM:
    """BERT-style masked language modelling on windows of L tokens; targets are the masked ones."""

    name = "mlm"

    def __init__(self, tokenizer, probability: float, seed: int):
        if tokenizer.mask_token_id is None:
            raise UsageError("--objective mlm needs a tokenizer with a mask token (e.g. a WordPiece tokenizer "
                             "trained here, or bert-base-uncased)")
        self.mask_id, self.probability, self.seed = tokenizer.mask_token_id, probability, seed
        self.special = np.zeros(len(tokenizer), dtype=bool)
        self.special[tokenizer.all_special_ids] = True
        self.replacement_ids = np.flatnonzero(~self.special)

    def make_batch(self, windows: np.ndarray, device: torch.device, sample_ids, evaluation: bool = False,
                   padding_rows: int = 0) -> dict[str, torch.Tensor]:
        inputs, labels = mask_tokens(windows[:, :-1], sample_ids, self.special, self.replacement_ids, self.mask_id,
                                     self.probability, self.seed, EVAL_STREAM if evaluation else TRAIN_STREAM)
        if padding_rows:
            labels[-padding_rows:] = IGNORE
        return {"input_ids": torch.from_numpy(inputs).to(device), "labels": torch.from_numpy(labels).to(device)}

    count_targets = staticmethod(CausalLM.count_targets)
    loss_sum = staticmethod(CausalLM.loss_sum)


def objective_for(name: str, tokenizer, cfg):
    if name == "mlm":
        return MaskedLM(tokenizer, cfg.mlm_probability, cfg.seed)
    return CausalLM()
