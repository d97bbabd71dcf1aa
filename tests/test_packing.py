"""Tests for common/data/packing.py: the packed token files, their manifest, reuse, rebuilds, corruption."""

import json
import os

import numpy as np
import pytest

from common.data import batch_encoding, packing
from common.data.packing import (
    boundary_token_id,
    packed_corpus,
    read_manifest,
    token_dtype,
)
from common.data.sampling import read_windows
from common.data.sources import Corpus
from common.data.tokenizer import count_words, tokenizer_hash, train_tokenizer, word_start_tables
from common.errors import UsageError

TRAIN = [
    "The dog sees the cat.",
    "A  cat\nsleeps .\n\nThe end",
    "",
    "café naïve\tdog",
    "The birds sing near the old house. They are happy.",
]
VALIDATION = ["The cat sees the dog.", "A bird sleeps."]


def make_corpus(train=TRAIN, validation=VALIDATION, fingerprint="fp-1", name="tiny") -> Corpus:
    return Corpus(
        name=name,
        fingerprint=fingerprint,
        train_documents=lambda: iter(list(train)),
        validation_documents=lambda: iter(list(validation)),
    )


def expected_stream(tokenizer, documents) -> list[int]:
    stream = []
    for document in documents:
        stream.append(tokenizer.eos_token_id)
        stream.extend(tokenizer(document, add_special_tokens=False).input_ids)
    return stream


def folders(cache_dir):
    return sorted(p.name for p in (cache_dir / "tokens").iterdir())


@pytest.fixture
def digest(bpe_tokenizer):
    return tokenizer_hash(bpe_tokenizer)


def test_packing_writes_both_splits_and_a_manifest(bpe_tokenizer, digest, tmp_path):
    packed_corpus(make_corpus(), bpe_tokenizer, digest, tmp_path)
    (folder,) = (tmp_path / "tokens").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "train.bin", "validation.bin"]


def test_manifest_counts_match_an_independent_count(bpe_tokenizer, digest, tmp_path):
    _, manifest = packed_corpus(make_corpus(), bpe_tokenizer, digest, tmp_path)
    for split, documents in (("train", TRAIN), ("validation", VALIDATION)):
        counts = manifest["splits"][split]
        assert counts["tokens"] == len(expected_stream(bpe_tokenizer, documents))
        assert counts["words"] == sum(len(d.split()) for d in documents)
        assert counts["documents"] == len(documents)
        assert counts["dtype"] == "uint16"
    assert manifest["corpus"] == "tiny"
    assert manifest["source_fingerprint"] == "fp-1"
    assert manifest["tokenizer_hash"] == digest
    assert manifest["vocab_size"] == len(bpe_tokenizer)


def test_manifest_on_disk_equals_the_returned_one(bpe_tokenizer, digest, tmp_path):
    _, manifest = packed_corpus(make_corpus(), bpe_tokenizer, digest, tmp_path)
    (folder,) = (tmp_path / "tokens").iterdir()
    assert json.loads((folder / "manifest.json").read_text(encoding="utf-8")) == manifest
    assert read_manifest(folder) == manifest


def test_token_stream_is_the_boundary_then_the_ids_of_each_document(bpe_tokenizer, digest, tmp_path):
    splits, _ = packed_corpus(make_corpus(), bpe_tokenizer, digest, tmp_path)
    for split, documents in (("train", TRAIN), ("validation", VALIDATION)):
        packed = splits[split]
        assert packed.tokens.dtype == np.uint16
        assert packed.tokens.tolist() == expected_stream(bpe_tokenizer, documents)
        assert packed.num_tokens == len(packed.tokens)
        assert packed.num_documents == len(documents)


def test_bin_file_holds_the_raw_stream(bpe_tokenizer, digest, tmp_path):
    packed_corpus(make_corpus(), bpe_tokenizer, digest, tmp_path)
    (folder,) = (tmp_path / "tokens").iterdir()
    raw = np.fromfile(folder / "train.bin", dtype=np.uint16)
    assert raw.tolist() == expected_stream(bpe_tokenizer, TRAIN)


@pytest.mark.parametrize("workers", [1, 2])
def test_many_small_batches_and_worker_processes_give_the_same_stream(
    bpe_tokenizer, digest, tmp_path, monkeypatch, workers
):
    one_batch, whole = packed_corpus(make_corpus(), bpe_tokenizer, digest, tmp_path / "a")
    monkeypatch.setattr(batch_encoding, "DOCUMENTS_PER_BATCH", 1)
    monkeypatch.setattr(batch_encoding, "BATCHES_BEFORE_WORKERS", 2)  # the rest go to the workers
    pools = []

    class RecordedPool(batch_encoding.ProcessPoolExecutor):
        def submit(self, *args, **kwargs):
            pools.append(self)
            return super().submit(*args, **kwargs)

    monkeypatch.setattr(batch_encoding, "ProcessPoolExecutor", RecordedPool)
    small_batches, manifest = packed_corpus(make_corpus(), bpe_tokenizer, digest, tmp_path / "b", workers=workers)
    assert len(pools) == (len(TRAIN) - 2 if workers > 1 else 0)  # batches tokenized by worker processes
    assert small_batches["train"].tokens.tolist() == one_batch["train"].tokens.tolist()
    assert small_batches["validation"].tokens.tolist() == one_batch["validation"].tokens.tolist()
    assert manifest == whole  # the same cache entry, whoever built it
    assert manifest["splits"]["train"]["documents"] == len(TRAIN)
    assert manifest["splits"]["train"]["words"] == sum(len(d.split()) for d in TRAIN)


def test_packed_words_equal_count_words_over_the_stream(bpe_tokenizer, digest, tmp_path, training_documents):
    corpus = make_corpus(train=training_documents[:40])
    splits, manifest = packed_corpus(corpus, bpe_tokenizer, digest, tmp_path)
    tokens = np.asarray(splits["train"].tokens, dtype=np.int64)
    seq_length = 32
    n = -(-(len(tokens) - 1) // seq_length)
    padded = np.concatenate([tokens, np.full(n * seq_length + 1 - len(tokens), bpe_tokenizer.eos_token_id)])
    windows = read_windows(padded, np.arange(n), seq_length)
    assert count_words(windows, word_start_tables(bpe_tokenizer)) == manifest["splits"]["train"]["words"]


def test_empty_validation_split_opens_as_an_empty_array(bpe_tokenizer, digest, tmp_path):
    splits, manifest = packed_corpus(make_corpus(validation=[]), bpe_tokenizer, digest, tmp_path)
    assert manifest["splits"]["validation"] == {"tokens": 0, "words": 0, "documents": 0, "dtype": "uint16"}
    assert len(splits["validation"].tokens) == 0
    assert splits["train"].num_tokens > 0


# --- reuse and rebuilds ------------------------------------------------------------------------


def test_second_call_reuses_the_cache_without_building(bpe_tokenizer, digest, tmp_path, monkeypatch):
    _, first = packed_corpus(make_corpus(), bpe_tokenizer, digest, tmp_path)
    (folder,) = (tmp_path / "tokens").iterdir()
    mtimes = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}

    def must_not_build(*args, **kwargs):
        raise AssertionError("an intact cache must be reused")

    monkeypatch.setattr(packing, "build_cache", must_not_build)
    splits, second = packed_corpus(make_corpus(), bpe_tokenizer, digest, tmp_path)
    assert second == first
    assert splits["train"].tokens.tolist() == expected_stream(bpe_tokenizer, TRAIN)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == mtimes


def test_reuse_does_not_read_the_corpus(bpe_tokenizer, digest, tmp_path):
    packed_corpus(make_corpus(), bpe_tokenizer, digest, tmp_path)

    def unreadable():
        raise AssertionError("the corpus must not be read again")

    corpus = Corpus(name="tiny", fingerprint="fp-1", train_documents=unreadable, validation_documents=unreadable)
    splits, _ = packed_corpus(corpus, bpe_tokenizer, digest, tmp_path)
    assert splits["train"].num_documents == len(TRAIN)


def test_changed_fingerprint_builds_a_new_folder(bpe_tokenizer, digest, tmp_path):
    packed_corpus(make_corpus(fingerprint="fp-1"), bpe_tokenizer, digest, tmp_path)
    splits, manifest = packed_corpus(make_corpus(train=TRAIN[:2], fingerprint="fp-2"), bpe_tokenizer, digest, tmp_path)
    assert len(folders(tmp_path)) == 2
    assert manifest["source_fingerprint"] == "fp-2"
    assert splits["train"].num_documents == 2


def test_changed_tokenizer_builds_a_new_folder(bpe_tokenizer, digest, tmp_path, training_documents):
    packed_corpus(make_corpus(), bpe_tokenizer, digest, tmp_path)
    other = train_tokenizer("bpe", training_documents, 300)
    splits, manifest = packed_corpus(make_corpus(), other, tokenizer_hash(other), tmp_path)
    assert len(folders(tmp_path)) == 2
    assert manifest["tokenizer_hash"] == tokenizer_hash(other)
    assert splits["train"].tokens.tolist() == expected_stream(other, TRAIN)


def test_build_leaves_no_temporary_folder(bpe_tokenizer, digest, tmp_path):
    packed_corpus(make_corpus(), bpe_tokenizer, digest, tmp_path)
    assert not [name for name in folders(tmp_path) if name.startswith(".")]


# --- corruption --------------------------------------------------------------------------------


def test_truncated_bin_is_detected_and_rebuilt(bpe_tokenizer, digest, tmp_path):
    _, manifest = packed_corpus(make_corpus(), bpe_tokenizer, digest, tmp_path)
    (folder,) = (tmp_path / "tokens").iterdir()
    full_size = (folder / "train.bin").stat().st_size
    with open(folder / "train.bin", "r+b") as file:
        file.truncate(full_size - 2)
    assert read_manifest(folder) is None

    splits, rebuilt = packed_corpus(make_corpus(), bpe_tokenizer, digest, tmp_path)
    assert rebuilt == manifest
    assert (folder / "train.bin").stat().st_size == full_size
    assert splits["train"].tokens.tolist() == expected_stream(bpe_tokenizer, TRAIN)


@pytest.mark.parametrize("damage", ["missing manifest", "garbage manifest", "missing bin", "manifest without splits"])
def test_damaged_cache_folder_reads_as_missing(bpe_tokenizer, digest, tmp_path, damage):
    packed_corpus(make_corpus(), bpe_tokenizer, digest, tmp_path)
    (folder,) = (tmp_path / "tokens").iterdir()
    if damage == "missing manifest":
        os.remove(folder / "manifest.json")
    elif damage == "garbage manifest":
        (folder / "manifest.json").write_text("{not json", encoding="utf-8")
    elif damage == "missing bin":
        os.remove(folder / "validation.bin")
    else:
        (folder / "manifest.json").write_text(json.dumps({"format_version": "1"}), encoding="utf-8")
    assert read_manifest(folder) is None
    splits, _ = packed_corpus(make_corpus(), bpe_tokenizer, digest, tmp_path)
    assert read_manifest(folder) is not None
    assert splits["validation"].tokens.tolist() == expected_stream(bpe_tokenizer, VALIDATION)


def test_read_manifest_of_a_missing_folder_is_none(tmp_path):
    assert read_manifest(tmp_path / "nowhere") is None


# --- errors, dtypes, boundary ------------------------------------------------------------------


def test_empty_training_corpus_is_a_usage_error_naming_the_corpus(bpe_tokenizer, digest, tmp_path):
    with pytest.raises(UsageError, match="empty-one"):
        packed_corpus(make_corpus(train=[], name="empty-one"), bpe_tokenizer, digest, tmp_path)
    assert folders(tmp_path) == []


@pytest.mark.parametrize(
    "vocab_size, dtype",
    [
        (400, np.uint16),
        (65535, np.uint16),
        (65536, np.uint16),
        (65537, np.uint32),
        (200_000, np.uint32),
    ],
)
def test_token_dtype_is_the_smallest_that_holds_every_id(vocab_size, dtype):
    assert token_dtype(vocab_size) == np.dtype(dtype)
    assert np.iinfo(token_dtype(vocab_size)).max >= vocab_size - 1


def test_boundary_is_end_of_text_for_bpe(bpe_tokenizer):
    assert boundary_token_id(bpe_tokenizer) == bpe_tokenizer.convert_tokens_to_ids("<|endoftext|>")


def test_wordpiece_documents_are_separated_by_cls(training_documents, tmp_path):
    wordpiece = train_tokenizer("wordpiece", training_documents, 200)
    assert boundary_token_id(wordpiece) == wordpiece.cls_token_id
    splits, _ = packed_corpus(make_corpus(), wordpiece, tokenizer_hash(wordpiece), tmp_path)
    tokens = splits["train"].tokens.tolist()
    assert tokens.count(wordpiece.cls_token_id) == len(TRAIN)
    assert wordpiece.sep_token_id not in tokens
    assert tokens[0] == wordpiece.cls_token_id
