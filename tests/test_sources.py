"""Tests for common/data/sources.py: cleaning, grouping, held-out split, every source, fingerprints."""

import json
import logging
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from common.data import sources
from common.data.packing import packed_corpus
from common.data.sources import (
    LINES_PER_DOCUMENT,
    bounded_lines,
    clean_childes_line,
    clean_switchboard_line,
    decode_counting,
    group_lines,
    held_out_split,
    is_held_out,
    line_cleaner,
    load_corpus,
    normalize_whitespace,
    parse_dataset_id,
    split_paragraphs,
)
from common.data.tokenizer import tokenizer_hash
from common.errors import UsageError

REPO_ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def bump_mtime(path: Path) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))


# ---------------------------------------------------------------------------------------------
# Decoding


def test_decode_counting_valid_utf8_has_no_replacements():
    assert decode_counting("naïve café ✓\n".encode()) == ("naïve café ✓\n", 0)


def test_decode_counting_replaces_and_counts_invalid_bytes():
    text, replaced = decode_counting(b"ab\xffc\xfed\n")
    assert text == "ab\ufffdc\ufffdd\n"
    assert replaced == 2


def test_decode_counting_does_not_count_a_genuine_replacement_character():
    text, replaced = decode_counting("x\ufffdy".encode() + b"\x80")
    assert text == "x\ufffdy\ufffd"
    assert replaced == 1


# ---------------------------------------------------------------------------------------------
# Cleaning rules


def test_normalize_whitespace():
    assert normalize_whitespace("  the \t\t cat   sat \r") == "the cat sat"
    assert normalize_whitespace(" \t ") == ""


def test_clean_childes_line_removes_speaker_and_drops_dependent_tiers():
    assert clean_childes_line("*CHI:\tI want that .") == "I want that ."
    assert clean_childes_line("*MOT:\twhat's  that ?") == "what's that ?"
    assert clean_childes_line("*FAT: look at the doggie .\n") == "look at the doggie ."
    assert clean_childes_line("%mor:\tpro:sub|I v|want pro:dem|that .") == ""
    assert clean_childes_line("%gra:\t1|2|SUBJ 2|0|ROOT") == ""
    assert clean_childes_line("*CHI:\t") == ""
    # A line without a tier label is kept (normalized).
    assert clean_childes_line("no label  here") == "no label here"


def test_clean_switchboard_line_removes_speaker_labels():
    assert clean_switchboard_line("A:\tyeah i know") == "yeah i know"
    assert clean_switchboard_line("B: uh-huh") == "uh-huh"
    assert clean_switchboard_line("B:") == ""
    assert clean_switchboard_line("and then  A: said") == "and then A: said"


def test_line_cleaner_is_chosen_by_file_stem():
    assert line_cleaner(Path("train_10M/childes.train")) is clean_childes_line
    assert line_cleaner(Path("dev/childes.dev")) is clean_childes_line
    assert line_cleaner(Path("switchboard.train")) is clean_switchboard_line
    assert line_cleaner(Path("simple_wiki.train")) is normalize_whitespace
    assert line_cleaner(Path("bnc_spoken.train")) is normalize_whitespace


# ---------------------------------------------------------------------------------------------
# Grouping lines into documents


def test_group_lines_caps_documents_at_max_lines():
    lines = [f"line {i}" for i in range(2 * LINES_PER_DOCUMENT + 3)]
    documents = list(group_lines(lines, normalize_whitespace))
    assert [len(d.split("\n")) for d in documents] == [LINES_PER_DOCUMENT, LINES_PER_DOCUMENT, 3]
    assert "\n".join(documents).split("\n") == lines


def test_group_lines_blank_line_ends_document_but_dropped_tier_does_not():
    lines = ["*CHI:\tmore juice .", "%mor:\tqn|more n|juice .", "*MOT:\there you go .", "   ", "", "*CHI:\tthank you ."]
    documents = list(group_lines(lines, clean_childes_line))
    assert documents == ["more juice .\nhere you go .", "thank you ."]


def test_group_lines_of_only_blank_or_dropped_lines_is_empty():
    assert list(group_lines(["", "  ", "%mor:\tx"], clean_childes_line)) == []


def test_split_paragraphs_on_blank_lines_keeping_line_breaks():
    lines = ["", "Title  ", "  indented line\t", "", " \t", "", "Second story.", "End.   ", ""]
    assert list(split_paragraphs(lines)) == ["Title\n  indented line", "Second story.\nEnd."]


def test_split_paragraphs_caps_very_long_documents():
    documents = list(split_paragraphs([f"l{i}" for i in range(5)], max_lines=2))
    assert documents == ["l0\nl1", "l2\nl3", "l4"]


# ---------------------------------------------------------------------------------------------
# Held-out validation rule


@pytest.mark.parametrize(
    ("percentage", "count", "expected"),
    [
        (1, 10_000, 100),
        (0, 10_000, 0),
        (0.5, 10_000, 50),
        (2.5, 1000, 25),
        (0.1, 10_000, 10),
        (33.3, 1000, 333),
        (50, 7, 3),
    ],
)
def test_held_out_count(percentage, count, expected):
    assert sum(is_held_out(i, percentage) for i in range(count)) == expected


def test_held_out_is_spread_evenly():
    held = [i for i in range(10_000) if is_held_out(i, 1)]
    assert held[:3] == [99, 199, 299]
    assert {b - a for a, b in zip(held, held[1:])} == {100}


def test_held_out_split_is_disjoint_and_complete():
    documents = [f"doc {i}" for i in range(10_000)]
    train = list(held_out_split(documents, 1.0, validation=False))
    validation = list(held_out_split(documents, 1.0, validation=True))
    assert len(validation) == 100
    assert len(train) == 9_900
    assert not set(train) & set(validation)
    assert sorted(train + validation) == sorted(documents)
    assert list(held_out_split(documents, 0, validation=True)) == []
    assert list(held_out_split(documents, 0, validation=False)) == documents


@pytest.mark.parametrize("bad", [-1, 100, 150.0, float("nan"), True, "1"])
def test_bad_validation_percentage_is_a_usage_error(tmp_path, bad):
    path = write(tmp_path / "a.txt", "one\n")
    with pytest.raises(UsageError, match="--validation_split_percentage"):
        load_corpus("text", data_files=[str(path)], validation_split_percentage=bad)


# ---------------------------------------------------------------------------------------------
# BabyLM


CHILDES = "*CHI:\tI want that .\n%mor:\tpro:sub|I v|want pro:dem|that .\n*MOT:\twhat's that ?\n*CHI:\tdoggie .\n"
SWITCHBOARD = "A:\tyeah i know\nB: uh-huh\nA:\tso  anyway\n"
SIMPLE_WIKI = "  The   cat is an animal.  \nIt has fur.\n\n\nA dog is also an animal.\n"


def make_babylm(root: Path, dev: bool = True) -> Path:
    train_dir = root / "train_10M"
    write(train_dir / "childes.train", CHILDES)
    write(train_dir / "switchboard.train", SWITCHBOARD)
    write(train_dir / "simple_wiki.train", SIMPLE_WIKI)
    write(train_dir / "README.md", "not a corpus file\n")
    if dev:
        write(root / "dev" / "childes.dev", "*CHI:\tbye bye .\n%gra:\t1|0|ROOT\n")
        write(root / "dev" / "simple_wiki.dev", "Dev   sentence.\n")
    return train_dir


def test_babylm_cleans_groups_and_uses_dev_folder(tmp_path):
    train_dir = make_babylm(tmp_path)
    corpus = load_corpus("babylm", data_dir=str(train_dir))
    assert corpus.name == "babylm-train_10M"
    # Files in sorted order: childes, simple_wiki, switchboard; README.md ignored.
    assert list(corpus.train_documents()) == [
        "I want that .\nwhat's that ?\ndoggie .",
        "The cat is an animal.\nIt has fur.",
        "A dog is also an animal.",
        "yeah i know\nuh-huh\nso anyway",
    ]
    assert list(corpus.validation_documents()) == ["bye bye .", "Dev sentence."]
    # Each call gives a fresh iterator.
    assert len(list(corpus.train_documents())) == 4


def test_babylm_without_dev_folder_holds_out_a_percentage(tmp_path):
    train_dir = tmp_path / "train_100M"
    write(train_dir / "bnc_spoken.train", "".join(f"sentence {i}\n\n" for i in range(200)))
    corpus = load_corpus("babylm", data_dir=str(train_dir), validation_split_percentage=1)
    validation = list(corpus.validation_documents())
    train = list(corpus.train_documents())
    assert validation == ["sentence 99", "sentence 199"]
    assert len(train) == 198
    assert not set(train) & set(validation)


def test_babylm_long_file_is_split_into_bounded_documents(tmp_path):
    train_dir = tmp_path / "train_10M"
    write(train_dir / "open_subtitles.train", "".join(f"line {i}\n" for i in range(LINES_PER_DOCUMENT * 3)))
    corpus = load_corpus("babylm", data_dir=str(train_dir), validation_split_percentage=0)
    documents = list(corpus.train_documents())
    assert len(documents) == 3
    assert all(len(d.split("\n")) == LINES_PER_DOCUMENT for d in documents)
    assert list(corpus.validation_documents()) == []


def test_babylm_needs_data_dir():
    with pytest.raises(UsageError, match="--data_dir"):
        load_corpus("babylm")


def test_babylm_missing_folder(tmp_path):
    missing = tmp_path / "nope" / "train_10M"
    with pytest.raises(UsageError, match=str(missing)):
        load_corpus("babylm", data_dir=str(missing))


def test_babylm_folder_without_train_files(tmp_path):
    folder = tmp_path / "train_10M"
    write(folder / "childes.txt", "*CHI:\thi .\n")
    with pytest.raises(UsageError, match=r"no \*\.train files") as error:
        load_corpus("babylm", data_dir=str(folder))
    assert str(folder) in str(error.value)


def test_babylm_all_blank_files_are_an_empty_corpus(tmp_path):
    folder = tmp_path / "train_10M"
    write(folder / "childes.train", "%mor:\tx\n\n")
    write(folder / "gutenberg.train", "   \n\n")
    with pytest.raises(UsageError, match="no training documents") as error:
        load_corpus("babylm", data_dir=str(folder))
    assert str(folder) in str(error.value)


def test_babylm_fingerprint_tracks_files_and_dev(tmp_path):
    train_dir = make_babylm(tmp_path)
    first = load_corpus("babylm", data_dir=str(train_dir)).fingerprint
    assert load_corpus("babylm", data_dir=str(train_dir)).fingerprint == first
    assert len(first) == 64 and int(first, 16) >= 0

    bump_mtime(tmp_path / "dev" / "childes.dev")  # touched, not changed: the same corpus
    assert load_corpus("babylm", data_dir=str(train_dir)).fingerprint == first
    write(tmp_path / "dev" / "childes.dev", (tmp_path / "dev" / "childes.dev").read_text() + "*MOT:\tmore .\n")
    after_dev = load_corpus("babylm", data_dir=str(train_dir)).fingerprint
    assert after_dev != first

    write(train_dir / "switchboard.train", SWITCHBOARD + "B:\tright\n")
    assert load_corpus("babylm", data_dir=str(train_dir)).fingerprint not in {first, after_dev}


# ---------------------------------------------------------------------------------------------
# Plain text


def test_text_documents_are_blank_line_separated_and_globs_sorted(tmp_path):
    write(tmp_path / "b.txt", "Story B.\n\nStory C line 1\nStory C line 2  \n")
    write(tmp_path / "a.txt", "\n\nStory A.\n\n\n")
    corpus = load_corpus("text", data_files=[str(tmp_path / "*.txt")], validation_split_percentage=0)
    assert corpus.name == "text-a-and-1-more"
    assert list(corpus.train_documents()) == ["Story A.", "Story B.", "Story C line 1\nStory C line 2"]
    assert list(corpus.validation_documents()) == []


def test_text_held_out_split(tmp_path):
    path = write(tmp_path / "many.txt", "".join(f"doc {i}\n\n" for i in range(1000)))
    corpus = load_corpus("text", data_files=[str(path)], validation_split_percentage=0.5)
    validation = list(corpus.validation_documents())
    assert validation == ["doc 199", "doc 399", "doc 599", "doc 799", "doc 999"]
    train = list(corpus.train_documents())
    assert len(train) == 995 and not set(train) & set(validation)


def test_text_duplicate_matches_are_read_once(tmp_path):
    path = write(tmp_path / "a.txt", "only\n")
    patterns = [str(path), str(tmp_path / "*.txt")]
    corpus = load_corpus("text", data_files=patterns, validation_split_percentage=0)
    assert list(corpus.train_documents()) == ["only"]


def test_text_needs_data_files():
    with pytest.raises(UsageError, match="--data_files"):
        load_corpus("text")


def test_text_glob_matching_nothing_names_the_pattern(tmp_path):
    pattern = str(tmp_path / "*.nothing")
    with pytest.raises(UsageError, match="no file matches") as error:
        load_corpus("text", data_files=[pattern])
    assert pattern in str(error.value)


def test_text_missing_file_names_it(tmp_path):
    missing = str(tmp_path / "missing.txt")
    with pytest.raises(UsageError, match="does not exist") as error:
        load_corpus("text", data_files=[missing])
    assert missing in str(error.value)


def test_text_empty_files_are_an_empty_corpus(tmp_path):
    write(tmp_path / "empty.txt", "")
    blank = write(tmp_path / "blank.txt", "\n  \n\t\n")
    with pytest.raises(UsageError, match="no training documents") as error:
        load_corpus("text", data_files=[str(tmp_path / "*.txt")])
    assert str(tmp_path / "*.txt") in str(error.value)
    with pytest.raises(UsageError, match=str(blank)):
        load_corpus("text", data_files=[str(blank)])


def test_text_fingerprint_tracks_content_and_options_not_where_or_when(tmp_path):
    path = write(tmp_path / "a.txt", "one\n\ntwo\n")

    def fingerprint(file=path, **options):
        return load_corpus("text", data_files=[str(file)], **options).fingerprint

    first = fingerprint()
    assert fingerprint() == first
    assert fingerprint(validation_split_percentage=2) != first
    jsonl = write(tmp_path / "a.jsonl", '{"text": "x"}\n')
    assert load_corpus("jsonl", data_files=[str(jsonl)]).fingerprint != first

    bump_mtime(path)
    assert fingerprint() == first  # touched: the same text
    copy = write(tmp_path / "on_another_node" / "a.txt", path.read_text())
    assert fingerprint(copy) == first  # another node's copy of the same corpus

    stamp = path.stat()
    write(path, "one\n\ntwo\n".replace("two", "tow"))  # an edit in place: same size, same time stamp
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert path.stat().st_size == stamp.st_size and path.stat().st_mtime_ns == stamp.st_mtime_ns
    assert fingerprint() != first


def test_fingerprint_version_is_part_of_the_key(tmp_path, monkeypatch):
    path = write(tmp_path / "a.txt", "one\n")
    first = load_corpus("text", data_files=[str(path)]).fingerprint
    monkeypatch.setattr(sources, "FINGERPRINT_VERSION", sources.FINGERPRINT_VERSION + "-next")
    assert load_corpus("text", data_files=[str(path)]).fingerprint != first


# ---------------------------------------------------------------------------------------------
# Invalid UTF-8


def test_invalid_utf8_is_replaced_counted_and_reported_once(tmp_path, caplog):
    path = tmp_path / "latin1.txt"
    path.write_bytes("café\n\nnaïve\n".encode("latin-1") + "ok ✓\n".encode())
    corpus = load_corpus("text", data_files=[str(path)], validation_split_percentage=0)
    assert corpus.decode_errors() == {}  # only peeked so far, no full pass yet

    with caplog.at_level(logging.WARNING, logger="common.data.sources"):
        documents = list(corpus.train_documents())
        list(corpus.train_documents())
    assert documents == ["caf\ufffd", "na\ufffdve\nok ✓"]
    assert corpus.decode_errors() == {str(path.resolve()): 2}
    reports = [r.getMessage() for r in caplog.records if r.name == "common.data.sources"]
    assert len(reports) == 1
    assert str(path) in reports[0] and " 2 " in reports[0]


def test_valid_files_report_no_decode_errors(tmp_path):
    path = write(tmp_path / "ok.txt", "fine ✓\n")
    corpus = load_corpus("text", data_files=[str(path)], validation_split_percentage=0)
    list(corpus.train_documents())
    assert corpus.decode_errors() == {}


def test_byte_order_mark_is_dropped(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfHello\n")
    corpus = load_corpus("text", data_files=[str(path)], validation_split_percentage=0)
    assert list(corpus.train_documents()) == ["Hello"]


# ---------------------------------------------------------------------------------------------
# JSONL


def test_jsonl_custom_column_skips_empty_strings(tmp_path):
    rows = [{"story": "First.", "id": 1}, {"story": ""}, {"story": "  "}, {"story": "Second\nline."}]
    path = write(tmp_path / "data.jsonl", "".join(json.dumps(r) + "\n" for r in rows) + "\n")
    corpus = load_corpus("jsonl", data_files=[str(path)], text_column="story", validation_split_percentage=0)
    assert corpus.name == "jsonl-data"
    assert list(corpus.train_documents()) == ["First.", "Second\nline."]


def test_jsonl_missing_field_names_file_and_line(tmp_path):
    lines = [json.dumps({"text": f"doc {i}"}) for i in range(16)] + [json.dumps({"body": "x"})]
    path = write(tmp_path / "data.jsonl", "\n".join(lines) + "\n")
    corpus = load_corpus("jsonl", data_files=[str(path)], validation_split_percentage=0)
    with pytest.raises(UsageError, match=r"data\.jsonl:17: no field 'text'"):
        list(corpus.train_documents())


def test_jsonl_invalid_json_names_file_and_line(tmp_path):
    path = write(tmp_path / "data.jsonl", '{"text": "fine"}\n{"text": oops}\n')
    corpus = load_corpus("jsonl", data_files=[str(path)], validation_split_percentage=0)
    with pytest.raises(UsageError, match=r"data\.jsonl:2: not valid JSON"):
        list(corpus.train_documents())


def test_jsonl_non_string_field_is_an_error(tmp_path):
    path = write(tmp_path / "data.jsonl", '{"text": 3}\n')
    with pytest.raises(UsageError, match=r"data\.jsonl:1: field 'text' is not a string"):
        load_corpus("jsonl", data_files=[str(path)])


def test_jsonl_fingerprint_depends_on_text_column(tmp_path):
    path = write(tmp_path / "data.jsonl", '{"text": "a", "other": "b"}\n')
    default = load_corpus("jsonl", data_files=[str(path)]).fingerprint
    assert load_corpus("jsonl", data_files=[str(path)], text_column="other").fingerprint != default


# ---------------------------------------------------------------------------------------------
# Hugging Face datasets (local folders only; offline)


@pytest.fixture
def offline_datasets(tmp_path, monkeypatch):
    """Offline mode and a private cache; `datasets` reads both at import, so patch its config too."""
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    datasets.disable_progress_bars()
    return datasets


def write_jsonl(path: Path, texts: list[str], column: str = "text") -> None:
    write(path, "".join(json.dumps({column: t, "label": 0}) + "\n" for t in texts))


def test_parse_dataset_id(tmp_path):
    assert parse_dataset_id("wikitext:wikitext-103-raw-v1") == ("wikitext", "wikitext-103-raw-v1")
    assert parse_dataset_id("roneneldan/TinyStories") == ("roneneldan/TinyStories", None)
    assert parse_dataset_id(str(tmp_path)) == (str(tmp_path), None)


def test_huggingface_folder_uses_its_own_validation_split(tmp_path, offline_datasets):
    folder = tmp_path / "my_data"
    write_jsonl(folder / "train.jsonl", ["train one", "", "   ", "train two"])
    write_jsonl(folder / "validation.jsonl", ["valid one"])
    corpus = load_corpus(str(folder), validation_split_percentage=50)
    assert corpus.name == "my_data"
    assert list(corpus.train_documents()) == ["train one", "train two"]
    assert list(corpus.validation_documents()) == ["valid one"]
    assert load_corpus(str(folder), validation_split_percentage=50).fingerprint == corpus.fingerprint


def test_huggingface_folder_without_validation_holds_out(tmp_path, offline_datasets):
    folder = tmp_path / "train_only"
    write_jsonl(folder / "train.jsonl", [f"row {i}" for i in range(200)])
    corpus = load_corpus(str(folder), validation_split_percentage=1)
    assert list(corpus.validation_documents()) == ["row 99", "row 199"]
    assert len(list(corpus.train_documents())) == 198
    other = load_corpus(str(folder), validation_split_percentage=2)
    assert other.fingerprint != corpus.fingerprint


def test_huggingface_missing_column_lists_available_ones(tmp_path, offline_datasets):
    folder = tmp_path / "stories"
    write_jsonl(folder / "train.jsonl", ["a story"], column="story")
    with pytest.raises(UsageError, match="'text'") as error:
        load_corpus(str(folder))
    assert "story" in str(error.value) and "label" in str(error.value)
    assert list(load_corpus(str(folder), text_column="story").train_documents()) == ["a story"]


def test_huggingface_unknown_dataset_offline_is_a_usage_error(offline_datasets):
    with pytest.raises(UsageError, match="no-such-user/no-such-dataset") as error:
        load_corpus("no-such-user/no-such-dataset:some-config")
    assert "\n" not in str(error.value)


# ---------------------------------------------------------------------------------------------
# Synthetic


def test_synthetic_corpus():
    corpus = load_corpus("synthetic", synthetic_words=20_000, seed=1, validation_split_percentage=5)
    assert corpus.name == "synthetic"
    train = list(corpus.train_documents())
    validation = list(corpus.validation_documents())
    assert train and validation
    assert all(isinstance(d, str) for d in train + validation)
    assert list(corpus.train_documents()) == train  # deterministic and re-iterable
    same = load_corpus("synthetic", synthetic_words=20_000, seed=1, validation_split_percentage=5)
    assert same.fingerprint == corpus.fingerprint
    assert (
        load_corpus("synthetic", synthetic_words=20_000, seed=2, validation_split_percentage=5).fingerprint
        != corpus.fingerprint
    )
    assert (
        load_corpus("synthetic", synthetic_words=30_000, seed=1, validation_split_percentage=5).fingerprint
        != corpus.fingerprint
    )


@pytest.mark.parametrize("words", [0, -5, 1.5])
def test_synthetic_words_must_be_positive(words):
    with pytest.raises(UsageError, match="--synthetic_words"):
        load_corpus("synthetic", synthetic_words=words)


# ---------------------------------------------------------------------------------------------
# Real data (skipped when the shared sample is absent)


def real_tinystories() -> Path | None:
    folders = [Path(os.environ["BABYTRAIN_REAL_DATA"])] if os.environ.get("BABYTRAIN_REAL_DATA") else []
    folders.append(REPO_ROOT.parent / "shared" / "data")
    for folder in folders:
        path = folder / "pretrain" / "tinystories_valid.txt"
        if path.is_file():
            return path
    return None


@pytest.mark.skipif(
    real_tinystories() is None,
    reason="real sample pretrain/tinystories_valid.txt not found in ../shared/data or $BABYTRAIN_REAL_DATA",
)
def test_real_tinystories_sample_as_text():
    path = real_tinystories()
    corpus = load_corpus("text", data_files=[str(path)], validation_split_percentage=1)
    train = list(corpus.train_documents())
    validation = list(corpus.validation_documents())
    documents = len(train) + len(validation)
    # The sample holds ~900 stories, but their paragraphs are blank-line separated too, so the
    # blank-line rule yields one document per paragraph (about 4,300).
    assert 3_000 <= documents <= 6_000
    assert len(validation) == documents // 100
    words = sum(len(d.split()) for d in train + validation)
    assert 140_000 <= words <= 170_000
    assert words == len(path.read_text(encoding="utf-8").split())  # nothing lost or duplicated
    assert corpus.decode_errors() == {}


def test_a_file_of_one_enormous_line_is_read_in_bounded_memory(tmp_path):
    """Today's limit: lines of at most 1 MiB (cut at whitespace), documents of at most 1M characters."""
    path = tmp_path / "one_line.txt"
    words = " ".join(f"word{i}" for i in range(2_400_000))  # ~21 MB, no line break
    path.write_text(words + "\n\nA short second story.\n", encoding="utf-8")
    corpus = load_corpus("text", data_files=[str(path)], validation_split_percentage=0)
    tracemalloc.start()
    documents = [(len(document), document[:5], document[-6:]) for document in corpus.train_documents()]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 12 * 2**20, f"{peak / 2**20:.1f} MiB for a 21 MB line"
    assert len(documents) > 15 and documents[-1][1:] == ("A sho", "story.")
    assert documents[0][1] == "word0" and all(size <= 2**20 + 2**20 for size, _, _ in documents)
    text = "\n".join(
        d for d in load_corpus("text", data_files=[str(path)], validation_split_percentage=0).train_documents()
    )
    assert text.split() == (words + " A short second story.").split()  # no word lost or cut in two


@pytest.mark.parametrize("text", ["aaaa" * 1000, "é" * 3000, "a" + "字" * 1500, "😀" * 1000])
def test_a_line_without_whitespace_is_cut_between_characters(tmp_path, text):
    path = tmp_path / "no_spaces.txt"
    path.write_text(text, encoding="utf-8")
    with open(path, "rb") as handle:
        pieces = list(bounded_lines(handle, 1000))
    assert all(len(piece) <= 1003 for piece in pieces)
    assert "".join(piece.decode("utf-8") for piece in pieces) == text  # each piece decodes on its own


def arrow_files(offline_datasets) -> list[Path]:
    return list(Path(offline_datasets.config.HF_DATASETS_CACHE).rglob("*.arrow"))


def test_a_streamed_folder_packs_the_same_tokens_without_converting_it_to_arrow(
    tmp_path, offline_datasets, bpe_tokenizer
):
    """--streaming reads the examples as packing asks for them; the stock load converts the whole
    data set to Arrow files in the datasets cache first (the check can fail: it does for that one)."""
    folder = tmp_path / "stream_me"
    texts = [f"the dog {i} sees the cat" for i in range(300)]
    write_jsonl(folder / "train.jsonl", texts)
    write_jsonl(folder / "validation.jsonl", ["the cat sleeps", "the dog runs"])
    streamed = load_corpus(str(folder), streaming=True)
    streamed_splits, _ = packed_corpus(streamed, bpe_tokenizer, tokenizer_hash(bpe_tokenizer), tmp_path / "packed")
    assert arrow_files(offline_datasets) == []
    assert list(streamed.validation_documents()) == ["the cat sleeps", "the dog runs"]

    loaded = load_corpus(str(folder))
    loaded_splits, _ = packed_corpus(loaded, bpe_tokenizer, tokenizer_hash(bpe_tokenizer), tmp_path / "packed")
    assert arrow_files(offline_datasets)  # the non-streaming load did convert
    assert loaded.fingerprint != streamed.fingerprint
    for split in ("train", "validation"):
        assert np.array_equal(streamed_splits[split].tokens, loaded_splits[split].tokens)

    write_jsonl(folder / "train.jsonl", [*texts, "one more document"])  # a changed folder is another corpus
    assert load_corpus(str(folder), streaming=True).fingerprint != streamed.fingerprint


def test_a_streamed_folder_missing_the_text_column_is_refused(tmp_path, offline_datasets):
    folder = tmp_path / "stories"
    write_jsonl(folder / "train.jsonl", ["a story"], column="story")
    with pytest.raises(UsageError, match="--text_column 'text' not in --dataset"):
        load_corpus(str(folder), streaming=True)


@pytest.mark.parametrize("dataset", ["synthetic", "babylm", "text", "jsonl"])
def test_streaming_a_source_that_is_read_lazily_anyway_is_refused(dataset):
    with pytest.raises(UsageError, match=f"--streaming reads Hugging Face data sets; --dataset {dataset}"):
        load_corpus(dataset, data_dir="x", data_files=["x"], streaming=True)
