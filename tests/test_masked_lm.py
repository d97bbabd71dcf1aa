"""BERT-style masked language modelling: masking statistics, and an end-to-end run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from transformers import pipeline

from common.data.tokenizer import train_tokenizer
from common.models.families import IGNORE
from common.training.objectives import MaskedLM, mask_tokens
from tests.helpers import TINY_DATA, error_line, run_in_process

VOCAB, MASK_ID, SPECIAL_IDS = 1000, 4, (0, 1, 2, 3, 4)


def draw(rows=4000, length=64, probability=0.15, seed=0, start=0):
    rng = np.random.default_rng(123)
    tokens = rng.integers(0, VOCAB, size=(rows, length))
    tokens[:, 0] = 2  # a special token ([CLS]) at the start of every row, never to be masked
    special = np.zeros(VOCAB, dtype=bool)
    special[list(SPECIAL_IDS)] = True
    replacements = np.flatnonzero(~special)
    inputs, labels = mask_tokens(
        tokens, range(start, start + rows), special, replacements, MASK_ID, probability, seed, stream=1
    )
    return tokens, inputs, labels, special


def test_masking_rate_and_the_80_10_10_split():
    tokens, inputs, labels, special = draw()
    chosen = labels != IGNORE
    eligible = ~special[tokens]
    rate = chosen.sum() / eligible.sum()
    assert abs(rate - 0.15) < 0.005
    assert np.array_equal(labels[chosen], tokens[chosen])
    masked = (inputs == MASK_ID) & chosen
    unchanged = (inputs == tokens) & chosen
    randomised = chosen & ~masked & ~unchanged
    n = chosen.sum()
    assert abs(masked.sum() / n - 0.8) < 0.01
    # a random replacement can draw the original token, so "unchanged" is 10% plus a sliver
    assert abs(unchanged.sum() / n - 0.1) < 0.01
    assert abs(randomised.sum() / n - 0.1) < 0.01
    assert not special[inputs[randomised]].any(), "random replacements must not be special tokens"
    assert np.array_equal(inputs[~chosen], tokens[~chosen]), "unchosen positions must stay as they are"


def test_special_tokens_are_never_masked():
    tokens, inputs, labels, special = draw()
    assert (labels[:, 0] == IGNORE).all() and (inputs[:, 0] == 2).all()
    assert not special[tokens[labels != IGNORE]].any()


def test_masks_depend_only_on_the_sample_index():
    _, inputs_a, labels_a, _ = draw(rows=10, start=100)
    _, inputs_b, labels_b, _ = draw(rows=10, start=100)
    _, inputs_c, labels_c, _ = draw(rows=10, start=110)
    assert np.array_equal(labels_a, labels_b) and np.array_equal(inputs_a, inputs_b)
    assert not np.array_equal(labels_a, labels_c), "another sample index (a later epoch) must mask afresh"


def test_a_tokenizer_without_mask_token_is_refused():
    tokenizer = train_tokenizer("bpe", ["the dog runs . the cats run ."] * 50, 300)
    with pytest.raises(Exception, match="needs a tokenizer with a mask token"):
        MaskedLM(tokenizer, 0.15, 0)


@pytest.mark.e2e
def test_bert_mlm_run_learns_and_fills_a_mask(tmp_path, capsys):
    out = tmp_path / "run"
    run_in_process(
        "train_pretrain.py",
        [
            "--model_type",
            "bert",
            *TINY_DATA,
            "--vocab_size",
            "800",
            "--seq_length",
            "64",
            "--max_steps",
            "60",
            "--learning_rate",
            "2e-3",
            "--output_dir",
            str(out),
            "--cache_dir",
            str(tmp_path / "cache"),
            "--logging_steps",
            "10",
        ],
        capsys,
    )
    evals = [
        json.loads(line)["val/loss"] for line in (out / "metrics.jsonl").read_text().splitlines() if "val/loss" in line
    ]
    assert evals[-1] < evals[0] - 1.0, evals
    fill = pipeline("fill-mask", model=str(out / "final"))
    predictions = fill("the dogs [MASK] the cat.")
    assert len(predictions) == 5 and all(p["sequence"].startswith("the dogs") for p in predictions)
    assert json.loads((out / "final" / "milestone.json").read_text())["objective"] == "mlm"


@pytest.mark.e2e
def test_mlm_objective_with_a_causal_model_is_refused(tmp_path, capsys):
    result = run_in_process(
        "train_pretrain.py",
        ["--model_type", "llama", "--objective", "mlm", "--output_dir", str(tmp_path / "run")],
        capsys,
        check=False,
    )
    assert result.returncode == 2
    assert "--objective mlm cannot train --model_type llama" in error_line(result)
