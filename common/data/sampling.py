"""Fixed-length windows over a packed token file, addressed by one global sample index.

Window w covers tokens [w*L, w*L + L] (L+1 tokens: L inputs and L next-token targets, sharing
one token with the next window so no token is wasted). Epoch e visits the windows in a
permutation seeded by (seed, e). The training position is a single integer, the global sample
index, so a resumed run, on any number of processes, continues with exactly the next sample.

A mixture of several packed sources (`MixtureSampler`) keeps that promise: the global index
decides the source by a seeded schedule that gives each source its weight's share of every
period of samples, and the source's own running index then picks its window as above.
"""

from __future__ import annotations

import numpy as np

from common.errors import UsageError


def num_windows(num_tokens: int, seq_length: int) -> int:
    return max(0, (num_tokens - 1) // seq_length)


class WindowSampler:
    def __init__(self, tokens: np.ndarray, seq_length: int, seed: int | tuple[int, ...], name: str = "training corpus"):
        self.tokens = tokens
        self.seq_length = seq_length
        self.seed = (seed,) if isinstance(seed, int) else tuple(seed)
        self.windows_per_epoch = num_windows(len(tokens), seq_length)
        if self.windows_per_epoch == 0:
            raise UsageError(f"the {name} ({len(tokens)} tokens) is shorter than one --seq_length {seq_length} window")
        self._epoch, self._order = -1, None

    def epoch_order(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._order = np.random.default_rng([*self.seed, epoch]).permutation(self.windows_per_epoch)
            self._epoch = epoch
        return self._order

    def window_ids(self, sample_indices: range) -> np.ndarray:
        ids = np.empty(len(sample_indices), dtype=np.int64)
        for position, sample in enumerate(sample_indices):
            epoch, offset = divmod(sample, self.windows_per_epoch)
            ids[position] = self.epoch_order(epoch)[offset]
        return ids

    def source_counts(self, sample_indices: range) -> np.ndarray:
        return np.array([len(sample_indices)])  # one source: the mixture sampler's interface

    def windows(self, sample_indices: range) -> np.ndarray:
        """Token windows of shape (len(sample_indices), L+1) for these global sample indices."""
        return read_windows(self.tokens, self.window_ids(sample_indices), self.seq_length)


# A mixture's schedule repeats its source counts every this many samples: a source's share is its
# weight rounded to 1/SCHEDULE_PERIOD, and each period's order is drawn anew from the seed.
SCHEDULE_PERIOD = 4096
_SCHEDULE_STREAM = 0x6D6978  # keeps the schedule's generator apart from the window orders'


def period_slots(weights: list[float], period: int = SCHEDULE_PERIOD) -> np.ndarray:
    """How many of each period's samples go to each source: the weights' shares of `period`,
    rounded by largest remainder so that they add up to it exactly."""
    total = float(sum(weights))
    exact = np.array([weight / total * period for weight in weights])
    slots = np.floor(exact).astype(np.int64)
    by_remainder = np.argsort(-(exact - slots), kind="stable")
    slots[by_remainder[: period - int(slots.sum())]] += 1
    return slots


def check_drawable(weights: list[float], labels: list[str]) -> None:
    """Refuse a source whose weight is positive but rounds to no sample of a period: it would never
    be drawn. `labels` name the sources in the error line."""
    total = float(sum(weights))
    for label, weight, slots in zip(labels, weights, period_slots(weights)):
        if weight > 0 and slots == 0:
            raise UsageError(
                f"{label}: its share ({weight / total:.2g}) is below one window in {SCHEDULE_PERIOD}; raise it, "
                f"or give it 0 to only validate on it"
            )


class MixtureSampler:
    """Training windows drawn from several packed sources by weight, addressed by the global index.

    Sample s lies in period p = s // SCHEDULE_PERIOD, in which source i owns `slots[i]` of the
    positions, in an order drawn from (seed, p). If s is the r-th position source i owns in its
    period, it is the source's sample p * slots[i] + r, and that source's own `WindowSampler`
    (seeded by (seed, i)) turns it into a window: each source goes through its windows epoch by
    epoch at its own pace, a small source with a large weight repeating sooner.
    """

    def __init__(self, sources: list[np.ndarray], weights: list[float], seq_length: int, seed: int, names: list[str]):
        self.seq_length = seq_length
        self.seed = seed
        check_drawable(weights, [f"source {name}" for name in names])
        self.slots = period_slots(weights)
        trained = [slots > 0 for slots in self.slots]
        self.samplers = [
            WindowSampler(tokens, seq_length, (seed, index), name=f"training split of source {name}") if used else None
            for index, (tokens, name, used) in enumerate(zip(sources, names, trained))
        ]
        # One epoch of the mixture is as many samples as all of its trained sources hold windows.
        self.windows_per_epoch = sum(sampler.windows_per_epoch for sampler in self.samplers if sampler)
        self._period, self._layout = -1, None

    def period_layout(self, period: int) -> tuple[np.ndarray, np.ndarray]:
        """The source of each position of `period`, and its rank among that source's positions."""
        if period != self._period:
            owners = np.repeat(np.arange(len(self.slots)), self.slots)
            owners = np.random.default_rng([self.seed, _SCHEDULE_STREAM, period]).permutation(owners)
            ranks = np.empty_like(owners)
            for source in range(len(self.slots)):
                positions = np.flatnonzero(owners == source)
                ranks[positions] = np.arange(len(positions))
            self._period, self._layout = period, (owners, ranks)
        return self._layout

    def locate(self, sample_indices: range) -> tuple[np.ndarray, np.ndarray]:
        """Each global sample's source, and its index among that source's samples."""
        sources = np.empty(len(sample_indices), dtype=np.int64)
        local = np.empty(len(sample_indices), dtype=np.int64)
        for position, sample in enumerate(sample_indices):
            period, offset = divmod(sample, SCHEDULE_PERIOD)
            owners, ranks = self.period_layout(period)
            sources[position] = owners[offset]
            local[position] = period * self.slots[owners[offset]] + ranks[offset]
        return sources, local

    def source_counts(self, sample_indices: range) -> np.ndarray:
        """How many of these samples come from each source."""
        return np.bincount(self.locate(sample_indices)[0], minlength=len(self.slots))

    def windows(self, sample_indices: range) -> np.ndarray:
        sources, local = self.locate(sample_indices)
        out = np.empty((len(sample_indices), self.seq_length + 1), dtype=np.int64)
        for row, (source, index) in enumerate(zip(sources, local)):
            sampler = self.samplers[source]
            out[row] = sampler.windows(range(index, index + 1))[0]
        return out


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
