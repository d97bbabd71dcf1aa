"""Tests for common/training/milestones.py: parsing counts and anchor lists, naming, and which anchors are due."""

import pytest

from common.config import parse_count
from common.errors import UsageError
from common.training.milestones import Anchor, due, format_count, parse_anchors


@pytest.mark.parametrize(
    "text, value",
    [
        ("25M", 25_000_000),
        ("1.5B", 1_500_000_000),
        ("100K", 100_000),
        ("1000", 1000),
        ("2G", 2_000_000_000),
        ("25m", 25_000_000),
        (" 50M ", 50_000_000),
        ("10 M", 10_000_000),
        ("0.5K", 500),
        ("1.1M", 1_100_000),
    ],
)
def test_parse_count_reads_suffixed_and_plain_counts(text, value):
    assert parse_count(text, "--milestones") == value


@pytest.mark.parametrize("text", ["25X", "-3", "", "   ", "M", "1e6", "1,000", "1.5.2M", "abc", "25MM"])
def test_parse_count_refuses_malformed_text_naming_the_flag(text):
    with pytest.raises(UsageError, match="^--max_train_tokens: "):
        parse_count(text, "--max_train_tokens")


@pytest.mark.parametrize("text", ["0", "0M", "0.0001"])
def test_parse_count_refuses_counts_that_are_not_positive(text):
    with pytest.raises(UsageError, match="--milestones.*must be positive"):
        parse_count(text, "--milestones")


@pytest.mark.parametrize(
    "value, text",
    [
        (25_000_000, "25M"),
        (2_000_000_000, "2000M"),
        (1_500_000_000, "1500M"),
        (100_000, "100K"),
        (1000, "1K"),
        (1234, "1234"),
        (1, "1"),
        (1_500_000, "1500K"),
    ],
)
def test_format_count_names_in_millions_then_thousands(value, text):
    assert format_count(value) == text


@pytest.mark.parametrize("text", ["25M", "100K", "2000M", "1234"])
def test_format_count_reads_back_to_the_same_value(text):
    assert format_count(parse_count(text, "--x")) == text


def test_token_anchors_are_sorted_and_named_tokens_n():
    anchors = parse_anchors("50M,25M,1.5B", "tokens", "--milestones")
    assert anchors == [
        Anchor("tokens-25M", "tokens", 25_000_000),
        Anchor("tokens-50M", "tokens", 50_000_000),
        Anchor("tokens-1500M", "tokens", 1_500_000_000),
    ]


def test_word_anchors_use_babylm_checkpoint_names():
    anchors = parse_anchors("10M, 1M ,2000M,100K", "words", "--milestones_words")
    assert [a.name for a in anchors] == ["chck_100K", "chck_1M", "chck_10M", "chck_2000M"]
    assert all(a.counter == "words" for a in anchors)
    assert [a.value for a in anchors] == [100_000, 1_000_000, 10_000_000, 2_000_000_000]


@pytest.mark.parametrize("text", [None, "", "   "])
def test_no_anchors_for_an_empty_list(text):
    assert parse_anchors(text, "tokens", "--milestones") == []


@pytest.mark.parametrize("text", ["25M,25M", "1M,1000K", "1B,1000M,5M"])
def test_duplicate_anchors_are_refused(text):
    with pytest.raises(UsageError, match="--milestones.*twice"):
        parse_anchors(text, "tokens", "--milestones")


@pytest.mark.parametrize("text", ["25M,,50M", "25M,", "25M,abc"])
def test_malformed_entry_in_an_anchor_list_names_the_flag(text):
    with pytest.raises(UsageError, match="--milestones_words"):
        parse_anchors(text, "words", "--milestones_words")


ANCHORS = parse_anchors("1M,2M", "tokens", "--milestones") + parse_anchors("1M", "words", "--milestones_words")


def test_nothing_is_due_before_the_first_anchor():
    assert due(ANCHORS, set(), {"tokens": 999_999, "words": 999_999}) == []


def test_an_anchor_is_due_once_its_counter_reaches_it():
    names = [a.name for a in due(ANCHORS, set(), {"tokens": 1_000_000, "words": 10})]
    assert names == ["tokens-1M"]


def test_all_passed_anchors_are_due_together():
    names = [a.name for a in due(ANCHORS, set(), {"tokens": 5_000_000, "words": 1_000_000})]
    assert names == ["tokens-1M", "tokens-2M", "chck_1M"]


def test_anchors_already_saved_are_not_due_again():
    counters = {"tokens": 5_000_000, "words": 5_000_000}
    assert [a.name for a in due(ANCHORS, {"tokens-1M", "chck_1M"}, counters)] == ["tokens-2M"]
    assert due(ANCHORS, {a.name for a in ANCHORS}, counters) == []


def test_each_anchor_follows_its_own_counter():
    names = [a.name for a in due(ANCHORS, set(), {"tokens": 0, "words": 1_000_000})]
    assert names == ["chck_1M"]
