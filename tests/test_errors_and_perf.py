"""common/errors.py (bad input as one line and an exit status) and common/training/perf.py (the
matmul peak MFU is measured against, and the MFU itself)."""

from __future__ import annotations

import pytest
import torch

from common.errors import TrainingStopped, UsageError, first_line, run_main
from common.training.perf import measure_matmul_peak, mfu, training_flops_per_token


@pytest.mark.parametrize(
    "error, status", [(UsageError("--seq_length 0 must be positive"), 2), (TrainingStopped("too many NaNs"), 1)]
)
def test_run_main_turns_our_errors_into_one_line_and_a_status(error, status, capsys):
    def main():
        raise error

    with pytest.raises(SystemExit) as exited:
        run_main(main)
    assert exited.value.code == status
    assert capsys.readouterr().err == f"error: {error}\n"


def test_other_errors_keep_their_traceback():
    def main():
        raise KeyError("a bug, not bad input")

    with pytest.raises(KeyError):
        run_main(main)


def test_first_line_of_an_error():
    assert first_line(ValueError("first\nsecond")) == "first"
    assert first_line(ValueError()) == "ValueError"


def test_the_matmul_peak_is_measured_and_mfu_divides_by_every_process():
    peak = measure_matmul_peak(torch.device("cpu"), seconds=0.05)
    assert 1e8 < peak < 1e14  # FLOP/s of this CPU, whatever it is
    assert mfu(tokens_per_second=1000, flops_per_token=6e6, peak_flops_per_process=1e10, num_processes=2) == 0.3


def test_training_flops_per_token_are_6n_plus_attention():
    class Config:
        num_hidden_layers, hidden_size = 2, 64

    assert training_flops_per_token(Config(), non_embedding_params=1000, seq_length=32) == 6 * 1000 + 12 * 2 * 64 * 32


def test_ranks_holding_another_value_are_refused(monkeypatch):
    from common import distributed

    class TwoRanks:
        num_processes = 2

    monkeypatch.setattr(distributed, "gather_object", lambda values: ["aaa", "bbb"])
    with pytest.raises(UsageError, match="the tokenizer's hash differs between processes \\(aaa, bbb\\)"):
        distributed.same_on_every_rank(TwoRanks(), "aaa", "the tokenizer's hash")
    monkeypatch.setattr(distributed, "gather_object", lambda values: ["aaa", "aaa"])
    distributed.same_on_every_rank(TwoRanks(), "aaa", "the tokenizer's hash")
