"""Mixtures of sources: how they are written and checked (common/data/mixture.py), the tokenizer's
weighted sample, and the sampler that draws windows across sources by weight (MixtureSampler)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from common.config import parse_config
from common.data.mixture import (
    check_sources,
    load_mixture,
    parse_dataset_mixture,
    parse_datasets_list,
    weighted_documents,
)
from common.data.report import document_lengths
from common.data.sampling import SCHEDULE_PERIOD, MixtureSampler, WindowSampler, period_slots
from common.data.sources import Corpus
from common.data.tokenizer import train_tokenizer
from common.errors import UsageError
from common.training.pretrain_config import PretrainConfig
from tests.helpers import TINY_DATA, TINY_MODEL, run_in_process, run_main_in_process

LOAD_OPTIONS = {
    "text_column": "text",
    "validation_split_percentage": 1.0,
    "synthetic_words": 2000,
    "seed": 0,
    "streaming": False,
}


# --- how a mixture is written ------------------------------------------------------------------


def test_the_compact_form_names_every_kind_of_source():
    specs = parse_dataset_mixture(
        "synthetic=0.2, text:data/*.txt=0.5,jsonl:a.jsonl=1,babylm:train_10M=2,wikitext:wikitext-2-raw-v1=0"
    )
    assert [(s.dataset, s.weight) for s in specs] == [
        ("synthetic", 0.2),
        ("text", 0.5),
        ("jsonl", 1.0),
        ("babylm", 2.0),
        ("wikitext:wikitext-2-raw-v1", 0.0),
    ]
    assert specs[1].data_files == ("data/*.txt",) and specs[3].data_dir == "train_10M"


def test_a_preset_lists_its_sources_under_datasets(tmp_path):
    preset = tmp_path / "mix.yaml"
    preset.write_text(
        yaml.safe_dump(
            {
                "datasets": [
                    {"dataset": "text", "data_files": "stories/*.txt", "weight": 3, "name": "stories"},
                    {"dataset": "roneneldan/TinyStories", "weight": 1, "streaming": True},
                ]
            }
        )
    )
    cfg = parse_config(PretrainConfig, ["--config", str(preset)])
    specs = cfg.source_specs()
    assert [(s.dataset, s.weight, s.name, s.streaming) for s in specs] == [
        ("text", 3.0, "stories", False),
        ("roneneldan/TinyStories", 1.0, None, True),
    ]
    assert specs[0].data_files == ("stories/*.txt",)


def test_token_budgets_set_the_weights_and_the_run_length(tmp_path):
    preset = tmp_path / "budgets.yaml"
    preset.write_text(
        yaml.safe_dump(
            {"datasets": [{"dataset": "synthetic", "tokens": "30M"}, {"dataset": "wikitext", "tokens": "10M"}]}
        )
    )
    cfg = parse_config(PretrainConfig, ["--config", str(preset)])
    assert cfg.train_token_limit() == 40_000_000
    assert (
        parse_config(PretrainConfig, ["--config", str(preset), "--max_train_tokens", "1M"]).train_token_limit() == 10**6
    )


@pytest.mark.parametrize(
    "mixture, expected",
    [
        ("synthetic", "item 1 ('synthetic'): write SOURCE=WEIGHT"),
        ("synthetic=abc", "item 1 ('synthetic=abc'): weight 'abc' is not a number"),
        ("synthetic=-1", "weight -1.0 must be a finite number of at least 0"),
        ("synthetic=nan", "weight nan must be a finite number"),
        ("synthetic=0,text:a.txt=0", "--dataset_mixture: every weight is 0"),
        ("synthetic=1,synthetic=2", "item 2 ('synthetic=2'): the same source as --dataset_mixture item 1"),
        ("text=1", "text needs its files or folder after a colon"),
        (
            "synthetic=0.00001,text:a.txt=1",
            "item 1 ('synthetic=0.00001'): its share (1e-05) is below one window in 4096",
        ),
    ],
)
def test_bad_mixtures_are_refused_naming_the_item(mixture, expected):
    with pytest.raises(UsageError) as refused:
        check_sources(parse_dataset_mixture(mixture))
    assert expected in str(refused.value)


@pytest.mark.parametrize(
    "items, expected",
    [
        ([{"dataset": "synthetic"}], "datasets item 1: needs a weight"),
        ([{"dataset": "synthetic", "weight": "heavy"}], "datasets item 1: weight 'heavy' is not a number"),
        ([{"dataset": "synthetic", "weight": 1, "tokens": "1M"}], "give weight or tokens, not both"),
        (
            [{"dataset": "synthetic", "tokens": "1M"}, {"dataset": "x", "weight": 1}],
            "item 2: give every source a token",
        ),
        ([{"dataset": "synthetic", "weight": 1, "colour": "red"}], "unknown key(s) colour"),
        ([{"dataset": "synthetic", "weight": 1, "name": "a b"}], "name 'a b' may hold only"),
        ([{"dataset": "text", "data_files": ["a"], "weight": 1, "streaming": True}], "--streaming reads Hugging Face"),
        ([{"weight": 1}], "must be a mapping with at least `dataset:`"),
        ([{"dataset": "synthetic", "weight": 1, "max_words": "1M"}], "size is --synthetic_words, not max_words"),
        ([{"dataset": "text", "weight": 1, "max_words": "lots"}], "item 1: max_words: 'lots' is not a count"),
        ([], "must be a list of sources"),
    ],
)
def test_bad_preset_lists_are_refused_naming_the_item(items, expected):
    with pytest.raises(UsageError) as refused:
        check_sources(parse_datasets_list(json.dumps(items)))
    assert expected in str(refused.value)


def test_a_mixture_leaves_the_single_source_flags_out(tmp_path, capsys):
    out = tmp_path / "run"
    args = [*TINY_MODEL, *TINY_DATA, "--output_dir", str(out), "--cache_dir", str(tmp_path / "cache")]
    for flags, expected in [
        (["--dataset_mixture", "synthetic=1", "--dataset", "wikitext"], "a mixture names its own sources"),
        (["--dataset", "mixture"], "--dataset mixture needs its sources"),
        (["--dataset_mixture", "synthetic=1", "--streaming"], "--streaming reads Hugging Face data sets; this mixture"),
        (["--dataset_mixture", "synthetic=1", "--datasets", '[{"dataset": "synthetic", "weight": 1}]'], "not both"),
        (["--dataset_mixture", "synthetic=1,synthetic=-2"], "item 2 ('synthetic=-2'): weight -2.0 must be"),
    ]:
        status, error = run_main_in_process("train_pretrain.py", [*args, *flags], capsys)
        assert status == 2 and expected in error, error
        assert len(error.strip().splitlines()) == 1
    assert not out.exists()


def test_a_source_with_no_text_is_refused_naming_the_item(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n   \n")
    with pytest.raises(UsageError, match=r"item 2 \('text:.*empty.txt=1'\): no training documents"):
        load_mixture(parse_dataset_mixture(f"synthetic=1,text:{empty}=1"), **LOAD_OPTIONS)


def test_two_sources_of_one_name_must_be_told_apart(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "stories.txt").write_text("Once upon a time.\n")
    specs = parse_dataset_mixture(f"text:{tmp_path}/a/stories.txt=1,text:{tmp_path}/b/stories.txt=1")
    with pytest.raises(UsageError, match="another source is also named 'text-stories'; give each a `name:`"):
        load_mixture(specs, **LOAD_OPTIONS)


def test_the_fingerprint_follows_the_weights_and_each_source(tmp_path):
    text = tmp_path / "a.txt"
    text.write_text("One story.\n\nAnother story.\n")
    first = load_mixture(parse_dataset_mixture(f"synthetic=1,text:{text}=1"), **LOAD_OPTIONS)
    assert first.names == ("synthetic", "text-a") and first.weights == (0.5, 0.5)
    again = load_mixture(parse_dataset_mixture(f"synthetic=2,text:{text}=2"), **LOAD_OPTIONS)
    assert again.fingerprint == first.fingerprint  # the same shares
    reweighted = load_mixture(parse_dataset_mixture(f"synthetic=1,text:{text}=3"), **LOAD_OPTIONS)
    text.write_text("One story, edited.\n\nAnother story.\n")
    edited = load_mixture(parse_dataset_mixture(f"synthetic=1,text:{text}=1"), **LOAD_OPTIONS)
    assert len({first.fingerprint, reweighted.fingerprint, edited.fingerprint}) == 3
    assert edited.corpora[0].fingerprint == first.corpora[0].fingerprint  # the other source's cache stays


def test_the_tokenizer_is_keyed_by_its_sample_not_by_names_or_held_out_sources(tmp_path):
    text, held_out = tmp_path / "a.txt", tmp_path / "b.txt"
    text.write_text("One story.\n\nAnother story.\n")
    held_out.write_text("A review.\n")
    plain = load_mixture(parse_dataset_mixture(f"synthetic=1,text:{text}=1"), **LOAD_OPTIONS)
    named = load_mixture(
        parse_datasets_list(json.dumps([{"dataset": "synthetic", "weight": 1, "name": "grammar"},
                                        {"dataset": "text", "data_files": [str(text)], "weight": 1},
                                        {"dataset": "text", "data_files": [str(held_out)], "weight": 0}])),
        **LOAD_OPTIONS,
    )  # fmt: skip
    assert named.fingerprint != plain.fingerprint  # another run (its records are named otherwise)...
    assert named.tokenizer_fingerprint() == plain.tokenizer_fingerprint()  # ...on the same tokenizer
    reweighted = load_mixture(parse_dataset_mixture(f"synthetic=1,text:{text}=2"), **LOAD_OPTIONS)
    assert reweighted.tokenizer_fingerprint() != plain.tokenizer_fingerprint()


def test_max_words_takes_the_first_documents_and_is_part_of_the_fingerprint(tmp_path):
    text = tmp_path / "many.txt"
    text.write_text("\n\n".join(f"story number {n} ends here" for n in range(1000)))  # 5 words each
    options = {**LOAD_OPTIONS, "validation_split_percentage": 10.0}
    whole = load_mixture(parse_dataset_mixture(f"text:{text}=1"), **options).corpora[0]
    item = {"dataset": "text", "data_files": [str(text)], "weight": 1, "max_words": 500}
    capped = load_mixture(parse_datasets_list(json.dumps([item])), **options).corpora[0]
    train, validation = list(capped.train_documents()), list(capped.validation_documents())
    assert len(train) + len(validation) == 100 and len(validation) == 10  # 500 words, 10% held out
    assert train[0] == "story number 0 ends here" and len(list(whole.train_documents())) == 900
    assert capped.fingerprint != whole.fingerprint


# --- the tokenizer's sample --------------------------------------------------------------------


def corpus_of(name: str, documents: list[str]) -> Corpus:
    return Corpus(name, name, lambda: iter(documents), lambda: iter(()))


def test_the_tokenizer_sample_follows_the_weights_in_characters():
    small = corpus_of("small", ["a" * 10] * 5)  # 50 characters, asked for 3/4 of the text
    large = corpus_of("large", ["b" * 10] * 100)  # 1000 characters
    sample = list(weighted_documents((small, large), (0.75, 0.25)))
    small_chars = sum(len(d) for d in sample if d.startswith("a"))
    large_chars = sum(len(d) for d in sample if d.startswith("b"))
    assert large_chars == 1000  # every weighted source is read through once...
    assert abs(small_chars / (small_chars + large_chars) - 0.75) < 0.01  # ...the small one repeated


def test_the_tokenizer_sample_leaves_out_zero_weight_sources_and_stops_at_its_size():
    held_out = corpus_of("held-out", ["z" * 10] * 10)
    endless = Corpus("endless", "e", lambda: iter(["e" * 10] * 10**6), lambda: iter(()))
    sample = list(weighted_documents((held_out, endless), (0.0, 1.0), max_chars=95))
    assert sample == ["e" * 10] * 10


# --- drawing windows across sources ------------------------------------------------------------

SEQ = 4


def stream(length: int, offset: int) -> np.ndarray:
    return np.arange(offset, offset + length * SEQ + 1, dtype=np.int64)  # `length` windows


def test_period_slots_are_the_weights_shares_adding_up_to_the_period():
    slots = period_slots([0.3, 0.7])
    assert slots.tolist() == [1229, 2867] and slots.sum() == SCHEDULE_PERIOD
    assert period_slots([1, 1, 1], period=10).tolist() == [4, 3, 3]
    assert period_slots([0, 2], period=10).tolist() == [0, 10]


def mixture_sampler(weights=(0.25, 0.75), seed=3) -> MixtureSampler:
    sources = [stream(10, 0), stream(1000, 10_000)]
    return MixtureSampler(sources, list(weights), SEQ, seed, ["small", "large"])


def test_every_period_gives_each_source_its_share():
    sampler = mixture_sampler()
    for period in range(3):
        counts = sampler.source_counts(range(period * SCHEDULE_PERIOD, (period + 1) * SCHEDULE_PERIOD))
        assert counts.tolist() == period_slots([0.25, 0.75]).tolist()


def test_windows_are_addressed_by_the_global_index_alone():
    first, second = mixture_sampler(), mixture_sampler()
    whole = first.windows(range(4000, 4200))  # across a period boundary
    one_by_one = np.concatenate([second.windows(range(i, i + 1)) for i in reversed(range(4000, 4200))][::-1])
    assert np.array_equal(whole, one_by_one)
    assert not np.array_equal(whole, mixture_sampler(seed=4).windows(range(4000, 4200)))


def test_each_source_goes_through_all_its_windows_before_repeating_one():
    sampler = mixture_sampler()
    sources, local = sampler.locate(range(0, 2 * SCHEDULE_PERIOD))
    small = local[sources == 0]
    assert sorted(small.tolist()) == list(range(len(small)))  # its own running index, without gaps
    windows = sampler.windows(range(0, 2 * SCHEDULE_PERIOD))
    small_windows = [tuple(w) for w, s in zip(windows, sources) if s == 0]
    for epoch in range(len(small_windows) // 10):  # the small source's epochs of 10 windows
        assert len(set(small_windows[epoch * 10 : (epoch + 1) * 10])) == 10
    own = WindowSampler(stream(10, 0), SEQ, (3, 0))
    assert small_windows[:20] == [tuple(w) for w in own.windows(range(20))]


def test_a_zero_weight_source_is_never_drawn_and_may_be_shorter_than_a_window():
    sampler = MixtureSampler([np.arange(2), stream(50, 0)], [0.0, 1.0], SEQ, 0, ["held-out", "main"])
    assert sampler.source_counts(range(0, 5000)).tolist() == [0, 5000]
    assert sampler.windows_per_epoch == 50


def test_a_source_shorter_than_one_window_is_named():
    with pytest.raises(UsageError, match="training split of source tiny"):
        MixtureSampler([np.arange(2), stream(50, 0)], [1.0, 1.0], SEQ, 0, ["tiny", "main"])


def test_a_weight_too_small_to_draw_is_refused():
    with pytest.raises(UsageError, match="source rare: its share .* is below one window in 4096"):
        MixtureSampler([stream(50, 0), stream(50, 0)], [1e-5, 1 - 1e-5], SEQ, 0, ["rare", "main"])


# --- the corpus report -------------------------------------------------------------------------


def test_prepare_only_packs_and_reports_each_source_without_a_model(tmp_path, capsys):
    stories = tmp_path / "stories.txt"
    stories.write_text(
        "\n\n".join(f"Story {n}: a small bird sang a song for {n} days." for n in range(300)), encoding="utf-8"
    )
    out, cache = tmp_path / "report", tmp_path / "cache"
    args = [*TINY_MODEL, *TINY_DATA, "--dataset_mixture", f"text:{stories}=0.7,synthetic=0.3"]
    result = run_in_process(
        "train_pretrain.py", [*args, "--prepare_only", "--output_dir", str(out), "--cache_dir", str(cache)], capsys
    )
    assert sorted(path.name for path in out.iterdir()) == [
        "corpus_report.json",
        "corpus_report.md",
        "document_lengths.png",
    ]
    assert (out / "document_lengths.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "corpus_report.md").read_text() in result.stdout  # printed too
    report = json.loads((out / "corpus_report.json").read_text())
    manifests = {
        json.loads(path.read_text())["corpus"]: json.loads(path.read_text())
        for path in cache.glob("tokens/*/manifest.json")
    }
    assert list(report["sources"]) == ["text-stories", "synthetic"] and set(manifests) == set(report["sources"])
    for name, figures in report["sources"].items():
        train = manifests[name]["splits"]["train"]
        assert figures["documents"]["train"] == train["documents"] and figures["tokens"]["train"] == train["tokens"]
        assert figures["words"]["train"] == train["words"]
        assert figures["tokens_per_word"] == pytest.approx(train["tokens"] / train["words"])
        assert 0 < figures["vocabulary_used"] <= 1 and figures["unknown_token_rate"] is None  # byte-level BPE
        assert (
            figures["document_tokens"]["p10"] <= figures["document_tokens"]["p50"] <= figures["document_tokens"]["p99"]
        )
    assert report["sources"]["text-stories"]["documents"]["train"] == 297  # 300 stories, 1% held out
    assert report["total"]["tokens"]["train"] == sum(s["tokens"]["train"] for s in report["sources"].values())
    assert not (out / "config.yaml").exists() and not list(tmp_path.glob("**/*.safetensors"))  # no model, no run


def test_document_lengths_are_read_from_the_boundary_tokens():
    tokens = np.array([0, 5, 6, 0, 7, 0, 8, 9, 9, 9], dtype=np.uint16)
    assert document_lengths(tokens, boundary_id=0).tolist() == [3, 2, 5]


def test_sources_packed_apart_are_found_by_the_mixture_run(tmp_path, capsys):
    """Sharded packing (one Slurm array task per source, docs/clusters.md): each task packs its source
    with the run's tokenizer into the shared cache; the mixture run then packs nothing."""
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text("\n\n".join(f"A tale of {n} foxes." for n in range(200)), encoding="utf-8")
    second.write_text("\n\n".join(f"Review {n}: works well." for n in range(200)), encoding="utf-8")
    tokenizer, cache = tmp_path / "tokenizer", tmp_path / "cache"
    train_tokenizer("bpe", [first.read_text(), second.read_text()], 400).save_pretrained(tokenizer)
    shared = ["--tokenizer_name_or_path", str(tokenizer), "--cache_dir", str(cache), "--prepare_only"]
    for task, source in enumerate((first, second)):  # the array tasks
        args = ["--dataset", "text", "--data_files", str(source), "--output_dir", str(tmp_path / f"task{task}")]
        run_in_process("train_pretrain.py", [*shared, *args], capsys)
    packed_by_tasks = {path: path.stat().st_mtime_ns for path in cache.glob("tokens/*/train.bin")}
    assert len(packed_by_tasks) == 2
    mixture = ["--dataset_mixture", f"text:{first}=1,text:{second}=1", "--output_dir", str(tmp_path / "mix")]
    run_in_process("train_pretrain.py", [*shared, *mixture], capsys)
    assert {path: path.stat().st_mtime_ns for path in cache.glob("tokens/*/train.bin")} == packed_by_tasks
