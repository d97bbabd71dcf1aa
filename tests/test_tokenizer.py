"""Tests for common/data/tokenizer.py: training, special tokens, save/load, hashing, the cache, word counts."""

import os
import subprocess
import sys

import numpy as np
import pytest
from transformers import AutoTokenizer

from common.data import tokenizer as tokenizer_module
from common.data.batch_encoding import count_text_words
from common.data.sampling import read_windows
from common.data.tokenizer import (
    BPE_SPECIAL_TOKENS,
    count_words,
    minimum_vocab_size,
    tokenizer_hash,
    train_tokenizer,
    trained_or_cached_tokenizer,
    word_start_tables,
)
from common.errors import UsageError
from tests.helpers import REPO

# Texts whose whitespace-separated words are easy to miscount from tokens.
TRICKY_TEXTS = [
    "The  dog   sees the cat .",
    "line one\nline two\n\nnew paragraph after a blank line\n",
    "café naïve résumé über",
    "tab\tseparated\twords\t\tand two tabs",
    "  leading and trailing spaces  ",
    "",
    'dog . cat , (bird) "quoted" it\'s 42 3.14 -- end',
    "\n\n\nonly newlines before\n\n\n",
    "emoji 😀 here😀 ok ✓",
    "Mixed\r\nline endings\rand \u00e9l\u00e8ve",
]


@pytest.fixture(scope="module")
def wordpiece_tokenizer(training_documents):
    return train_tokenizer("wordpiece", training_documents, 200)


@pytest.fixture(scope="module")
def unicode_bpe_tokenizer():
    """Trained on the tricky texts themselves, so multi-byte characters get merged into tokens."""
    return train_tokenizer("bpe", TRICKY_TEXTS * 20, 320)


def packed_stream(tokenizer, documents: list[str]) -> np.ndarray:
    """The token stream as the packer writes it: the boundary token, then each document's ids."""
    stream = []
    for document in documents:
        stream.append(tokenizer.eos_token_id)
        stream.extend(tokenizer.backend_tokenizer.encode(document, add_special_tokens=False).ids)
    return np.array(stream, dtype=np.int64)


def covering_windows(stream: np.ndarray, seq_length: int, pad_id: int) -> np.ndarray:
    """Windows of L+1 tokens sharing one token, as the sampler reads them, covering the whole stream.

    The tail is padded with the boundary token, which has no text and so adds no words.
    """
    n = -(-(len(stream) - 1) // seq_length)
    padded = np.concatenate([stream, np.full(n * seq_length + 1 - len(stream), pad_id, dtype=stream.dtype)])
    return read_windows(padded, np.arange(n), seq_length)


# --- training ----------------------------------------------------------------------------------


def test_bpe_has_exactly_the_requested_vocabulary(bpe_tokenizer):
    assert len(bpe_tokenizer) == 400


def test_bpe_on_a_tiny_corpus_stops_below_the_requested_vocabulary():
    tokenizer = train_tokenizer("bpe", ["hello world"] * 3, 2000)
    assert minimum_vocab_size("bpe") <= len(tokenizer) < 2000


def test_bpe_uses_endoftext_as_bos_and_eos_and_a_separate_pad(bpe_tokenizer):
    assert bpe_tokenizer.bos_token == bpe_tokenizer.eos_token == "<|endoftext|>"
    assert bpe_tokenizer.pad_token == "<pad>"
    assert bpe_tokenizer.bos_token_id == bpe_tokenizer.eos_token_id
    assert bpe_tokenizer.pad_token_id != bpe_tokenizer.eos_token_id


def test_bpe_special_tokens_are_single_tokens_in_text(bpe_tokenizer):
    ids = bpe_tokenizer("a<|endoftext|>b", add_special_tokens=False).input_ids
    assert bpe_tokenizer.eos_token_id in ids


def test_bpe_round_trips_text_through_decode(bpe_tokenizer):
    text = "The dog sees the cat. café naïve\n\tend"
    ids = bpe_tokenizer(text, add_special_tokens=False).input_ids
    assert bpe_tokenizer.decode(ids) == text


def test_bpe_minimum_vocabulary_is_accepted():
    tokenizer = train_tokenizer("bpe", ["a b c"], minimum_vocab_size("bpe"))
    assert len(tokenizer) <= minimum_vocab_size("bpe")


@pytest.mark.parametrize("kind", ["bpe", "wordpiece"])
def test_too_small_vocabulary_is_a_usage_error_naming_the_flag(kind):
    with pytest.raises(UsageError, match="--vocab_size"):
        train_tokenizer(kind, ["a b c"], minimum_vocab_size(kind) - 1)


def test_saved_bpe_loads_with_auto_tokenizer_and_gives_identical_ids(bpe_tokenizer, tmp_path):
    bpe_tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    for text in TRICKY_TEXTS + ["The dog sees the cat."]:
        assert loaded(text).input_ids == bpe_tokenizer(text).input_ids
    assert loaded.eos_token == BPE_SPECIAL_TOKENS["eos_token"]
    assert loaded.pad_token == BPE_SPECIAL_TOKENS["pad_token"]
    assert len(loaded) == len(bpe_tokenizer)


# --- hashing -----------------------------------------------------------------------------------


def test_tokenizer_hash_survives_save_and_load(bpe_tokenizer, tmp_path):
    bpe_tokenizer.save_pretrained(tmp_path)
    assert tokenizer_hash(AutoTokenizer.from_pretrained(tmp_path)) == tokenizer_hash(bpe_tokenizer)


def test_tokenizer_hash_differs_for_another_vocabulary_size(bpe_tokenizer, training_documents):
    other = train_tokenizer("bpe", training_documents, 380)
    assert tokenizer_hash(other) != tokenizer_hash(bpe_tokenizer)


def test_tokenizer_hash_is_a_short_hex_digest(bpe_tokenizer):
    digest = tokenizer_hash(bpe_tokenizer)
    assert len(digest) == 16
    int(digest, 16)


# --- WordPiece ---------------------------------------------------------------------------------


def test_wordpiece_has_requested_size_and_bert_specials(wordpiece_tokenizer):
    assert len(wordpiece_tokenizer) == 200
    vocab = wordpiece_tokenizer.get_vocab()
    for token in ("[MASK]", "[CLS]", "[SEP]", "[PAD]", "[UNK]"):
        assert token in vocab
    assert wordpiece_tokenizer.mask_token == "[MASK]"
    assert wordpiece_tokenizer.cls_token == "[CLS]"
    assert wordpiece_tokenizer.sep_token == "[SEP]"


def test_wordpiece_wraps_a_single_text_in_cls_and_sep(wordpiece_tokenizer):
    ids = wordpiece_tokenizer("the dog sees the cat").input_ids
    assert ids[0] == wordpiece_tokenizer.cls_token_id
    assert ids[-1] == wordpiece_tokenizer.sep_token_id
    assert wordpiece_tokenizer.cls_token_id not in ids[1:-1]
    assert wordpiece_tokenizer.sep_token_id not in ids[1:-1]


def test_wordpiece_encodes_a_pair_with_segment_ids(wordpiece_tokenizer):
    encoding = wordpiece_tokenizer("the dog", "the cat", return_token_type_ids=True)
    tokens = wordpiece_tokenizer.convert_ids_to_tokens(encoding.input_ids)
    assert tokens[0] == "[CLS]" and tokens.count("[SEP]") == 2 and tokens[-1] == "[SEP]"
    first_sep = tokens.index("[SEP]")
    assert encoding.token_type_ids == [0] * (first_sep + 1) + [1] * (len(tokens) - first_sep - 1)


def test_wordpiece_lowercases(wordpiece_tokenizer):
    assert wordpiece_tokenizer("THE DOG").input_ids == wordpiece_tokenizer("the dog").input_ids


def test_saved_wordpiece_keeps_its_post_processor(wordpiece_tokenizer, tmp_path):
    wordpiece_tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded("the dog", "the cat").input_ids == wordpiece_tokenizer("the dog", "the cat").input_ids
    assert tokenizer_hash(loaded) == tokenizer_hash(wordpiece_tokenizer)


# --- the cache ---------------------------------------------------------------------------------


def counting_trainer(monkeypatch) -> list[str]:
    """Replace train_tokenizer with the real one plus a log of its calls."""
    calls, real = [], tokenizer_module.train_tokenizer

    def train(kind, documents, vocab_size):
        calls.append(kind)
        return real(kind, documents, vocab_size)

    monkeypatch.setattr(tokenizer_module, "train_tokenizer", train)
    return calls


def test_cached_tokenizer_is_trained_once_then_reused(monkeypatch, tmp_path, training_documents):
    calls = counting_trainer(monkeypatch)
    first = trained_or_cached_tokenizer("bpe", lambda: iter(training_documents), 300, "fp-a", tmp_path)
    second = trained_or_cached_tokenizer("bpe", lambda: iter(training_documents), 300, "fp-a", tmp_path)
    assert calls == ["bpe"]
    assert tokenizer_hash(second) == tokenizer_hash(first)
    assert second("The dog sees the cat.").input_ids == first("The dog sees the cat.").input_ids


def test_cached_tokenizer_is_reused_without_reading_the_corpus(tmp_path, training_documents):
    trained_or_cached_tokenizer("bpe", lambda: iter(training_documents), 300, "fp-a", tmp_path)

    def corpus_must_not_be_read():
        raise AssertionError("the cache should have been used")

    cached = trained_or_cached_tokenizer("bpe", corpus_must_not_be_read, 300, "fp-a", tmp_path)
    assert len(cached) == 300


def test_cache_folders_differ_by_fingerprint_kind_and_vocab_size(monkeypatch, tmp_path, training_documents):
    calls = counting_trainer(monkeypatch)
    for fingerprint, kind, vocab in [
        ("fp-a", "bpe", 300),
        ("fp-b", "bpe", 300),
        ("fp-a", "bpe", 310),
        ("fp-a", "wordpiece", 300),
    ]:
        trained_or_cached_tokenizer(kind, lambda: iter(training_documents), vocab, fingerprint, tmp_path)
    folders = [p for p in (tmp_path / "tokenizers").iterdir()]
    assert len(calls) == 4
    assert len(folders) == 4
    assert all((folder / "tokenizer.json").is_file() for folder in folders)


def test_cache_leaves_no_temporary_folder(tmp_path, training_documents):
    trained_or_cached_tokenizer("bpe", lambda: iter(training_documents), 300, "fp-a", tmp_path)
    names = [p.name for p in (tmp_path / "tokenizers").iterdir()]
    assert len(names) == 1 and not names[0].startswith(".")


# --- word accounting ---------------------------------------------------------------------------


@pytest.mark.parametrize("seq_length", [1, 3, 8, 64])
@pytest.mark.parametrize("which", ["synthetic", "unicode"])
def test_count_words_over_windows_matches_str_split(which, seq_length, request):
    tokenizer = request.getfixturevalue({"synthetic": "bpe_tokenizer", "unicode": "unicode_bpe_tokenizer"}[which])
    stream = packed_stream(tokenizer, TRICKY_TEXTS)
    windows = covering_windows(stream, seq_length, tokenizer.eos_token_id)
    expected = sum(len(text.split()) for text in TRICKY_TEXTS)
    assert count_words(windows, word_start_tables(tokenizer)) == expected


@pytest.mark.parametrize("text", TRICKY_TEXTS)
def test_count_words_is_exact_for_each_text_on_its_own(bpe_tokenizer, text):
    windows = covering_windows(packed_stream(bpe_tokenizer, [text]), 4, bpe_tokenizer.eos_token_id)
    assert count_words(windows, word_start_tables(bpe_tokenizer)) == len(text.split())


def test_count_words_over_synthetic_documents_matches_str_split(bpe_tokenizer, training_documents):
    documents = training_documents[:30]
    windows = covering_windows(packed_stream(bpe_tokenizer, documents), 16, bpe_tokenizer.eos_token_id)
    assert count_words(windows, word_start_tables(bpe_tokenizer)) == sum(len(d.split()) for d in documents)


def test_count_words_does_not_depend_on_window_order(bpe_tokenizer):
    windows = covering_windows(packed_stream(bpe_tokenizer, TRICKY_TEXTS), 5, bpe_tokenizer.eos_token_id)
    tables = word_start_tables(bpe_tokenizer)
    shuffled = windows[np.random.default_rng(0).permutation(len(windows))]
    assert count_words(shuffled, tables) == count_words(windows, tables)


def test_count_words_ignores_the_first_position_of_a_window(bpe_tokenizer):
    # Position 0 is the previous window's last target: counting it would count words twice.
    ids = bpe_tokenizer.backend_tokenizer.encode(" the", add_special_tokens=False).ids
    assert len(ids) == 1
    tables = word_start_tables(bpe_tokenizer)
    assert count_words(np.array([[bpe_tokenizer.eos_token_id, ids[0]]]), tables) == 1
    window = np.array([[ids[0], bpe_tokenizer.eos_token_id]])
    assert count_words(window, tables) == 0


def test_special_tokens_have_no_text_in_the_word_tables(bpe_tokenizer):
    tables = word_start_tables(bpe_tokenizer)
    for token_id in bpe_tokenizer.all_special_ids:
        assert not tables["has_text"][token_id]
        assert tables["ends_with_space"][token_id]


# Words are runs of non-whitespace between ASCII whitespace, in the tokens' count and the
# manifest's alike (count_text_words); a non-ASCII space inside a run does not split it.
@pytest.mark.parametrize("text, words", [("a\u00a0b", 1), ("x\u3000y", 1), ("a\u00a0b c", 2)])
def test_count_words_agrees_with_the_manifest_definition_on_non_ascii_whitespace(bpe_tokenizer, text, words):
    windows = covering_windows(packed_stream(bpe_tokenizer, [text]), 4, bpe_tokenizer.eos_token_id)
    assert count_words(windows, word_start_tables(bpe_tokenizer)) == count_text_words(text) == words


@pytest.mark.e2e
@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_the_same_corpus_gives_the_same_tokenizer_in_every_process(kind, tmp_path):
    """The tokenizers library's WordPiece trainer gives ids in a hash-map order that changes from
    process to process (upstream issue 1794); ours declares those tokens first, so nodes with
    caches of their own, and later launches, all get the same token ids."""
    code = (
        "import sys; from common.data.synthetic import synthetic_documents; "
        "from common.data.tokenizer import train_tokenizer; "
        f"train_tokenizer({kind!r}, list(synthetic_documents(30000, seed=3)), 700).save_pretrained(sys.argv[1])"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
    for name in ("first", "second", "third"):
        subprocess.run([sys.executable, "-c", code, str(tmp_path / name)], env=env, check=True, timeout=120)
    contents = {(tmp_path / name / "tokenizer.json").read_bytes() for name in ("first", "second", "third")}
    assert len(contents) == 1
