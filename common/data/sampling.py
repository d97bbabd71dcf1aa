"""Fixed-length windows over a packed token file, addressed by one global sample index.

Window w covers tokens [w*L, w*L + L] (L+1 tokens: L inputs and L next-token targets, sharing
one token with the next window so no token is wasted). Epoch e visits the windows in a
permutation seeded by (seed, e). The training position is a single integer, the global sample
index, so a resumed run, on any number of processes, continues with exactly the next sample.
"""

from __future__ import annotations

import numpy as np

from common.errors import UsageError


def num_windows(num_tokens: int, seq_length: int) -> int:
    return max(0, (num_tokens - 1) // seq_length)


class WindowSampler:
    def __init__(self, tokens: np.ndarray, seq_length: int, seed: int):
        self.tokens = tokens
        self.seq_length = seq_length
        self.seed = seed
        self.windows_per_epoch = num_windows(len(tokens), seq_length)
        if self.windows_per_epoch == 0:
            raise UsageError(
                f"the training corpus ({len(tokens)} tokens) is shorter than one --seq_length {seq_length} window"
            )
        self._epoch, self._order = -1, None

    def epoch_order(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._order = np.random.default_rng([self.seed, epoch]).permutation(self.windows_per_epoch)
            self._epoch = epoch
        return self._order

    def window_ids(self, sample_indices: range) -> np.ndarray:
        ids = np.empty(len(sample_indices), dtype=np.int64)
        for position, sample in enumerate(sample_indices):
            epoch, offset = divmod(sample, self.windows_per_epoch)
            ids[position] = self.epoch_order(epoch)[offset]
        return ids

    def windows(self, sample_indices: range) -> np.ndarray:
        """Token windows of shape (len(sample_indices), L+1) for these global sample indices."""
        return read_windows(self.tokens, self.window_ids(sample_indices), self.seq_length)


def read_windows(tokens: np.ndarray, window_ids: np.ndarray, seq_length: int) -> np.ndarray:
    out = np.empty((len(window_ids), seq_length + 1), dtype=np.int64)
    for row, window in enumerate(window_ids):
        start = int(window) * seq_length
        out[row] = tokens[start : start + seq_length + 1]
    return out


def micro_batch_indices(cursor: int, micro_step: int, rank: int, world_size: int, micro_batch_size: int) -> range:
    """The global sample indices one rank trains on in one micro-step of the step at `cursor`.

    A step's global batch is the samples [cursor, cursor + micro_batch_size * accum * world);
    micro-step m of rank r takes the (m * world + r)-th slice of micro_batch_size of them.
    """
    start = cursor + (micro_step * world_size + rank) * micro_batch_size
    return range(start, start + micro_batch_size)
