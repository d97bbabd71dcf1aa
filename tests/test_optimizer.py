"""Tests for common/optimizer.py: warmup, linear/cosine/constant decay, warmup step counts."""

import math

import pytest
import torch

from common.models.build import build_model, resolve_shape
from common.optimizer import SCHEDULES, adamw, decay_groups, learning_rate_at, warmup_steps_for
from common.training.objectives import CausalLMTraining

BASE = 1e-3
TOTAL = 110
WARMUP = 10
MIN_RATIO = 0.1


def lr(step, kind, total=TOTAL, warmup=WARMUP, min_ratio=MIN_RATIO):
    return learning_rate_at(step, BASE, total, warmup, kind, min_ratio)


@pytest.mark.parametrize("kind", SCHEDULES)
def test_warmup_ramps_linearly_up_to_the_base_rate(kind):
    ramp = [lr(step, kind) for step in range(WARMUP)]
    assert ramp[0] == pytest.approx(BASE / WARMUP)
    assert ramp[-1] == pytest.approx(BASE)
    increments = [b - a for a, b in zip(ramp, ramp[1:])]
    assert increments == pytest.approx([BASE / WARMUP] * (WARMUP - 1))


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_decay_starts_at_the_base_rate_right_after_warmup(kind):
    assert lr(WARMUP, kind) == pytest.approx(BASE)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_decay_never_increases_and_stays_within_floor_and_base(kind):
    values = [lr(step, kind) for step in range(WARMUP, TOTAL + 5)]
    assert all(b <= a + 1e-15 for a, b in zip(values, values[1:]))
    assert min(values) >= BASE * MIN_RATIO - 1e-15
    assert max(values) <= BASE + 1e-15


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_decay_reaches_the_floor_at_the_end_and_stays_there(kind):
    for step in (TOTAL, TOTAL + 1, TOTAL + 100):
        assert lr(step, kind) == pytest.approx(BASE * MIN_RATIO)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_decay_reaches_the_floor_at_the_last_trained_step(kind):
    assert lr(TOTAL - 1, kind) == pytest.approx(BASE * MIN_RATIO)


def test_linear_decay_is_a_straight_line():
    values = [lr(step, "linear") for step in range(WARMUP, TOTAL)]  # the trained steps
    steps = [b - a for a, b in zip(values, values[1:])]
    assert steps == pytest.approx([steps[0]] * len(steps))
    assert steps[0] < 0


def test_cosine_midpoint_is_halfway_between_base_and_floor():
    # A long run, so the answer does not hinge on whether the decay ends at step total or total - 1.
    total, warmup = 100_001, 1
    midpoint = warmup + (total - warmup) // 2
    halfway = BASE * (MIN_RATIO + (1 - MIN_RATIO) / 2)
    assert lr(midpoint, "cosine", total=total, warmup=warmup) == pytest.approx(halfway, rel=1e-4)
    assert lr(midpoint, "linear", total=total, warmup=warmup) == pytest.approx(halfway, rel=1e-4)
    quarter = warmup + (total - warmup) // 4
    assert lr(quarter, "cosine", total=total, warmup=warmup) == pytest.approx(
        BASE * (MIN_RATIO + (1 - MIN_RATIO) * 0.5 * (1 + math.cos(math.pi / 4))), rel=1e-4
    )


def test_cosine_follows_the_half_cosine_of_the_linear_progress():
    for step in range(WARMUP, TOTAL + 1):
        progress = 1 - (lr(step, "linear") / BASE - MIN_RATIO) / (1 - MIN_RATIO)
        expected = BASE * (MIN_RATIO + (1 - MIN_RATIO) * 0.5 * (1 + math.cos(math.pi * progress)))
        assert lr(step, "cosine") == pytest.approx(expected)


def test_cosine_stays_above_linear_in_the_first_half():
    for step in range(WARMUP + 1, WARMUP + (TOTAL - WARMUP) // 2):
        assert lr(step, "cosine") > lr(step, "linear")


def test_constant_stays_at_the_base_rate_after_warmup():
    assert all(lr(step, "constant") == BASE for step in range(WARMUP, TOTAL + 10))


def test_zero_min_ratio_decays_to_zero():
    assert lr(TOTAL, "linear", min_ratio=0.0) == 0.0
    assert lr(TOTAL, "cosine", min_ratio=0.0) == pytest.approx(0.0, abs=1e-15)


def test_no_warmup_starts_at_the_base_rate():
    assert lr(0, "cosine", warmup=0) == BASE
    assert lr(0, "linear", warmup=0) == BASE


def test_warmup_longer_than_the_run_does_not_divide_by_zero():
    assert [lr(step, "linear", total=5, warmup=5) for step in range(5)] == pytest.approx(
        [BASE * (step + 1) / 5 for step in range(5)]
    )
    assert lr(5, "cosine", total=5, warmup=5) == pytest.approx(BASE)


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="unknown schedule 'step'"):
        lr(WARMUP + 1, "step")


@pytest.mark.parametrize(
    "total, ratio, explicit, expected",
    [
        (1000, 0.05, 0, 50),
        (10, 0.05, 0, 1),  # a fraction of a step rounds up to one
        (1001, 0.1, 0, 101),
        (1000, 0.0, 0, 0),
        (1000, 0.05, 7, 7),  # explicit steps win over the ratio
        (1000, 0.0, 3, 3),
    ],
)
def test_warmup_steps_for(total, ratio, explicit, expected):
    assert warmup_steps_for(total, ratio, explicit) == expected


@pytest.mark.parametrize("total, ratio, expected", [(100, 0.07, 7), (200, 0.07, 14), (300, 0.07, 21)])
def test_warmup_steps_for_an_exact_fraction_is_not_rounded_up(total, ratio, expected):
    assert warmup_steps_for(total, ratio) == expected


def test_decay_groups_decay_matrices_only():
    class Vocabulary:  # the tokenizer fields build_model reads
        bos_token_id = eos_token_id = 1
        pad_token_id = 0

        def __len__(self):
            return 100

    shape = resolve_shape("tiny", hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    model = CausalLMTraining(build_model("llama", "causal", shape, Vocabulary(), 16))
    decay, no_decay = decay_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    names = {id(p): name for name, p in model.named_parameters()}
    assert all(p.ndim == 2 for p in decay["params"]) and "model.model.embed_tokens.weight" not in {
        names[id(p)] for p in decay["params"]
    }
    assert {names[id(p)] for p in no_decay["params"]} >= {"model.model.embed_tokens.weight", "model.model.norm.weight"}
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    optimizer = adamw(model, 1e-3, 0.1, torch.device("cpu"))
    assert optimizer.defaults["fused"] is True and len(optimizer.param_groups) == 2
