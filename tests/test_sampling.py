"""Tests for common/data/sampling.py: windows, per-epoch permutations, and the global sample split."""

import numpy as np
import pytest

from common.data.sampling import WindowSampler, micro_batch_indices, num_windows, read_windows
from common.errors import UsageError

SEQ = 8
WINDOWS = 25
TOKENS = np.arange(WINDOWS * SEQ + 1, dtype=np.int64)  # exactly WINDOWS windows; token value == position


@pytest.fixture
def sampler():
    return WindowSampler(TOKENS, SEQ, seed=7)


def epoch_ids(sampler: WindowSampler, epoch: int) -> np.ndarray:
    return sampler.window_ids(range(epoch * sampler.windows_per_epoch, (epoch + 1) * sampler.windows_per_epoch))


# --- windows -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "num_tokens, seq_length, expected",
    [
        (0, 4, 0),
        (1, 4, 0),
        (4, 4, 0),
        (5, 4, 1),
        (8, 4, 1),
        (9, 4, 2),
        (201, 8, 25),
        (200, 8, 24),
    ],
)
def test_num_windows_counts_whole_windows_of_l_plus_one_tokens(num_tokens, seq_length, expected):
    assert num_windows(num_tokens, seq_length) == expected


def test_windows_are_l_plus_one_tokens_from_their_start(sampler):
    windows = sampler.windows(range(0, WINDOWS))
    assert windows.shape == (WINDOWS, SEQ + 1)
    assert windows.dtype == np.int64
    for row, window_id in zip(windows, sampler.window_ids(range(0, WINDOWS))):
        assert row.tolist() == list(range(window_id * SEQ, window_id * SEQ + SEQ + 1))


def test_consecutive_windows_share_exactly_one_token():
    windows = read_windows(TOKENS, np.arange(WINDOWS), SEQ)
    for left, right in zip(windows[:-1], windows[1:]):
        assert left[-1] == right[0]
        assert len(set(left.tolist()) & set(right.tolist())) == 1


def test_windows_cover_every_token_of_an_exact_length_stream():
    windows = read_windows(TOKENS, np.arange(WINDOWS), SEQ)
    assert sorted(set(windows.ravel().tolist())) == TOKENS.tolist()


def test_tail_shorter_than_a_window_is_not_used():
    sampler = WindowSampler(np.arange(WINDOWS * SEQ + 1 + SEQ - 1), SEQ, seed=0)
    assert sampler.windows_per_epoch == WINDOWS
    assert sampler.windows(range(WINDOWS)).max() == WINDOWS * SEQ


def test_windows_read_from_a_uint16_memmap(tmp_path):
    path = tmp_path / "train.bin"
    TOKENS.astype(np.uint16).tofile(path)
    tokens = np.memmap(path, dtype=np.uint16, mode="r")
    windows = WindowSampler(tokens, SEQ, seed=3).windows(range(5))
    assert windows.dtype == np.int64
    assert (windows[:, 1:] - windows[:, :-1] == 1).all()


# --- epochs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("epoch", [0, 1, 5])
def test_each_epoch_visits_every_window_exactly_once(sampler, epoch):
    assert sorted(epoch_ids(sampler, epoch).tolist()) == list(range(WINDOWS))


def test_different_epochs_have_different_orders(sampler):
    orders = {tuple(epoch_ids(sampler, epoch).tolist()) for epoch in range(4)}
    assert len(orders) == 4


def test_order_is_shuffled_not_sequential(sampler):
    assert epoch_ids(sampler, 0).tolist() != list(range(WINDOWS))


def test_same_seed_gives_the_same_order_and_another_seed_does_not():
    first = WindowSampler(TOKENS, SEQ, seed=11).window_ids(range(0, 3 * WINDOWS))
    again = WindowSampler(TOKENS, SEQ, seed=11).window_ids(range(0, 3 * WINDOWS))
    other = WindowSampler(TOKENS, SEQ, seed=12).window_ids(range(0, 3 * WINDOWS))
    assert first.tolist() == again.tolist()
    assert first.tolist() != other.tolist()


def test_any_slice_of_samples_matches_the_full_sequence():
    # A resumed run starts from a fresh sampler at its cursor and must see the same windows.
    full = WindowSampler(TOKENS, SEQ, seed=5).window_ids(range(0, 3 * WINDOWS))
    for start, stop in [(0, 10), (20, 31), (WINDOWS - 1, WINDOWS + 1), (2 * WINDOWS + 3, 3 * WINDOWS)]:
        resumed = WindowSampler(TOKENS, SEQ, seed=5)
        assert resumed.window_ids(range(start, stop)).tolist() == full[start:stop].tolist()


def test_samples_in_a_batch_can_straddle_an_epoch_boundary(sampler):
    ids = sampler.window_ids(range(WINDOWS - 2, WINDOWS + 2))
    assert ids[:2].tolist() == epoch_ids(sampler, 0)[-2:].tolist()
    assert ids[2:].tolist() == epoch_ids(sampler, 1)[:2].tolist()


def test_corpus_shorter_than_one_window_is_a_usage_error():
    with pytest.raises(UsageError, match="--seq_length 8"):
        WindowSampler(np.arange(SEQ), SEQ, seed=0)


def test_corpus_of_exactly_one_window_is_enough():
    sampler = WindowSampler(np.arange(SEQ + 1), SEQ, seed=0)
    assert sampler.windows(range(3)).tolist() == [list(range(SEQ + 1))] * 3


# --- the global batch split --------------------------------------------------------------------


def step_samples(cursor, world_size, accumulation, micro_batch_size) -> list[list[int]]:
    return [
        list(micro_batch_indices(cursor, micro_step, rank, world_size, micro_batch_size))
        for micro_step in range(accumulation)
        for rank in range(world_size)
    ]


@pytest.mark.parametrize("world_size", [1, 2, 4])
@pytest.mark.parametrize("accumulation", [1, 3])
@pytest.mark.parametrize("cursor", [0, 96])
def test_micro_batches_partition_the_global_batch(world_size, accumulation, cursor):
    micro_batch_size = 4
    global_batch = micro_batch_size * accumulation * world_size
    slices = step_samples(cursor, world_size, accumulation, micro_batch_size)
    assert all(len(s) == micro_batch_size for s in slices)
    flat = [sample for s in slices for sample in s]
    assert len(set(flat)) == len(flat)  # no sample taken twice
    assert sorted(flat) == list(range(cursor, cursor + global_batch))


@pytest.mark.parametrize("world_size, accumulation", [(1, 1), (2, 3), (4, 1)])
def test_consecutive_steps_do_not_overlap(world_size, accumulation):
    micro_batch_size = 2
    global_batch = micro_batch_size * accumulation * world_size
    first = {i for s in step_samples(0, world_size, accumulation, micro_batch_size) for i in s}
    second = {i for s in step_samples(global_batch, world_size, accumulation, micro_batch_size) for i in s}
    assert not first & second
    assert first | second == set(range(2 * global_batch))


@pytest.mark.parametrize(
    "world_size, accumulation, micro_batch_size",
    [
        (1, 1, 12),
        (1, 3, 4),
        (2, 3, 2),
        (4, 3, 1),
        (4, 1, 3),
        (2, 1, 6),
    ],
)
def test_the_step_at_a_cursor_covers_the_same_samples_for_any_world_size(world_size, accumulation, micro_batch_size):
    cursor = 36
    flat = {i for s in step_samples(cursor, world_size, accumulation, micro_batch_size) for i in s}
    assert flat == set(range(cursor, cursor + 12))


def test_ranks_read_different_windows_in_the_same_micro_step(sampler):
    rank0 = sampler.windows(micro_batch_indices(0, 0, 0, 2, 4))
    rank1 = sampler.windows(micro_batch_indices(0, 0, 1, 2, 4))
    assert not {tuple(r) for r in rank0.tolist()} & {tuple(r) for r in rank1.tolist()}
