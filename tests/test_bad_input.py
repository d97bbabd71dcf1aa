"""Bad input to train_pretrain.py: one `error:` line naming the flag or value, exit status 2, and
nothing written. Run in this process (the same main() a launch runs): a refusal comes before any
work, so a new interpreter would only add its seconds of imports. Launched refusals, which need a
real process (an empty corpus, a finished run, another model's checkpoint), are in
test_train_pretrain.py."""

from __future__ import annotations

import pytest

from common.data.tokenizer import train_tokenizer
from tests.helpers import TINY_DATA, TINY_MODEL, run_main_in_process


def arguments(output_dir, tmp_path) -> list[str]:
    return [*TINY_MODEL, *TINY_DATA, "--output_dir", str(output_dir), "--cache_dir", str(tmp_path / "cache")]


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--milestones", "25M,abc"], "--milestones: 'abc' is not a count"),
        (["--milestones_words", "1M,1M"], "--milestones_words: '1M,1M' lists an anchor twice"),
        (["--vocab_size", "100"], "--vocab_size 100 is too small"),
        (["--max_position_embeddings", "16"], "--seq_length 32 is above --max_position_embeddings 16"),
        (["--dataset", "text", "--data_files", "/nonexistent/*.txt"], "/nonexistent/*.txt"),
        (["--hidden_size", "65"], "--hidden_size 65 is not divisible by --num_attention_heads 2"),
        (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size must be positive"),
        (["--max_grad_norm", "-1"], "--max_grad_norm must not be negative"),
    ],
)
def test_bad_flags_fail_with_one_line_and_write_nothing(tmp_path, capsys, flags, expected):
    out = tmp_path / "run"
    status, error = run_main_in_process("train_pretrain.py", [*arguments(out, tmp_path), *flags], capsys)
    assert status == 2 and expected in error
    assert not out.exists()


@pytest.fixture(scope="module")
def bpe_tokenizer_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bpe")
    train_tokenizer("bpe", ["the dog runs . the cats run ."] * 50, 300).save_pretrained(folder)
    return folder


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--model_type", "bert", "--objective", "electra"], "--objective electra cannot train --model_type bert"),
        (["--model_type", "llama", "--objective", "electra"], "--objective electra cannot train --model_type llama"),
        (
            ["--model_type", "electra_moe", "--num_experts", "2", "--num_experts_per_tok", "3"],
            "--num_experts_per_tok 3 is more than --num_experts 2",
        ),
        (
            ["--model_type", "electra", "--generator_size_divisor", "3"],
            "--generator_size_divisor 3: hidden_size=64 is not divisible by size_divisor=3",
        ),
        (
            ["--model_type", "electra", "--hidden_size", "65"],
            "--hidden_size 65 is not divisible by --num_attention_heads 2",
        ),
        (["--model_type", "llama", "--embedding_size", "32"], "--embedding_size applies to --model_type electra"),
        (
            ["--model_type", "electra", "--tokenizer_name_or_path", "BPE"],
            "--objective electra needs a tokenizer with a mask token",
        ),
    ],
)
def test_model_flags_that_cannot_work_fail_with_one_line_before_any_work(
    tmp_path, capsys, bpe_tokenizer_dir, flags, expected
):
    flags = [str(bpe_tokenizer_dir) if flag == "BPE" else flag for flag in flags]
    out = tmp_path / "run"
    status, error = run_main_in_process("train_pretrain.py", [*arguments(out, tmp_path), *flags], capsys)
    assert status == 2 and expected in error
    assert not (out / "config.yaml").exists()
