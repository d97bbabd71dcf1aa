"""common/errors.py (bad input as one line and an exit status) and common/training/perf.py (the
matmul peak MFU is measured against, and the MFU itself)."""

from __future__ import annotations

import pytest
import torch

from common.errors import TrainingStopped, UsageError, first_line, run_main
from common.training.perf import (
    CPU_COMPILE_SAVING,
    CPU_COMPILE_SECONDS,
    compile_pays,
    estimated_seconds,
    measure_matmul_peak,
    mfu,
    nominal_peak_flops,
    peak_flops_for,
    peak_memory_gb,
    training_flops_per_token,
)


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


@pytest.mark.parametrize(
    "name, tflops",
    [
        ("NVIDIA H100 80GB HBM3", 989.0),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H200", 989.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA L40S", 362.0),
        ("NVIDIA L40", 181.0),
        ("NVIDIA L4", 121.0),
        ("NVIDIA A10G", 70.0),
        ("Tesla T4", None),
    ],
)
def test_mfu_divides_by_the_data_sheet_peak_of_a_known_gpu(name, tflops):
    assert nominal_peak_flops(name) == (None if tflops is None else tflops * 1e12)


def test_a_cpu_gets_a_measured_peak_and_its_resident_memory():
    peak, source = peak_flops_for(torch.device("cpu"), torch.float32)
    assert peak > 1e8 and source.startswith("measured float32")
    assert 0.05 < peak_memory_gb(torch.device("cpu")) < 64


def test_compilation_is_chosen_where_it_pays():
    assert compile_pays("auto", "cuda", eager_seconds=5)  # GPUs always
    assert not compile_pays("auto", "cpu", eager_seconds=60)  # a smoke run: compiling costs more than it saves
    assert compile_pays("auto", "cpu", eager_seconds=CPU_COMPILE_SECONDS / CPU_COMPILE_SAVING * 2)
    assert compile_pays("true", "cpu", eager_seconds=1) and not compile_pays("false", "cuda", eager_seconds=1e6)
    assert not compile_pays("auto", "cuda", eager_seconds=1e6, zero_stage=3)  # hooks break the graph everywhere
    assert compile_pays("auto", "cuda", eager_seconds=1e6, zero_stage=2)
    assert estimated_seconds(1000, 2e6, 1e9, utilisation=0.5) == pytest.approx(4.0)
