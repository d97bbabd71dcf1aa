"""Bad input to train_pretrain.py: one `error:` line naming the flag or value, exit status 2, and
nothing written. Run in this process (the same main() a launch runs): a refusal comes before any
work, so a new interpreter would only add its seconds of imports. Launched refusals, which need a
real process (an empty corpus, a finished run, another model's checkpoint), are in
test_train_pretrain.py."""

from __future__ import annotations

import json

import pytest
import yaml

from common.data.tokenizer import train_tokenizer
from common.errors import UsageError
from common.evaluation.tasks import read_task_folder
from common.finetuning.documents import read_documents
from common.finetuning.glue import GLUE_TASKS, read_glue_file
from common.finetuning.glue_results import check_results_folder
from tests.finetune_data import write_tsv
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
        (["--packing_workers", "-1"], "--packing_workers must not be negative"),
        (
            ["--model_type", "bert", "--seq_length", "2"],
            "--seq_length 2 leaves no room for text between [CLS] and [SEP]",
        ),
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


# --- the evaluation and fine-tuning files --------------------------------------------------------


def pair_line(good: str, bad: str, uid: str = "agreement") -> str:
    return json.dumps({"sentence_good": good, "sentence_bad": bad, "UID": uid, "field": "syntax"}) + "\n"


def test_minimal_pair_files_that_would_skew_the_accuracy_are_refused(tmp_path):
    folder = tmp_path / "blimp"
    folder.mkdir()
    (folder / "agreement.jsonl").write_text(pair_line("The cat runs.", "The cat run."))
    (folder / "empty.jsonl").write_text("\n")
    with pytest.raises(UsageError, match="empty.jsonl: holds no items \\(an empty minimal-pair file\\)"):
        read_task_folder(folder)
    (folder / "empty.jsonl").unlink()
    (folder / "more.jsonl").write_text(
        pair_line("The dogs run.", "The dogs runs.") + pair_line("The cat runs.", "The cat run.")
    )
    with pytest.raises(
        UsageError, match="more.jsonl: the pair 'The cat runs.' / 'The cat run.' of agreement is there twice"
    ):
        read_task_folder(folder)
    (folder / "more.jsonl").write_bytes(
        pair_line("The dogs run.", "The dogs runs.").encode() + b'{"sentence_good": "caf\xe9"}\n'
    )
    with pytest.raises(UsageError, match="more.jsonl:2: not UTF-8 text \\(byte 0xe9\\)"):
        read_task_folder(folder)


def zero_shot_folder(root, name: str, lines: list) -> str:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / f"{name}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(folder)


EWOK_LINE = {
    "Domain": "agent-properties",
    "Context1": "Mia is tall.",
    "Context2": "Mia is short.",
    "Target1": "Mia can reach it.",
    "Target2": "Mia cannot reach it.",
}


def test_zero_shot_data_that_cannot_be_read_fails_with_one_line(tmp_path, capsys):
    """eval_blimp.py: each refusal names the folder, file:line, flag or value, before any model loads."""
    model = ["--model_name_or_path", str(tmp_path / "no_model_needed")]
    cases = []
    empty = tmp_path / "notes"
    empty.mkdir()
    (empty / "readme.txt").write_text("no tasks here")
    cases.append((["--data_dir", str(empty)], f"--data_dir {empty}: holds no *.jsonl task files, nor folders of them"))
    cases.append((["--blimp_dir", str(empty)], f"--blimp_dir {empty}: holds no *.jsonl task files"))
    no_target = {key: value for key, value in EWOK_LINE.items() if key != "Target2"}
    ewok = zero_shot_folder(tmp_path / "a", "ewok_filtered", [EWOK_LINE, no_target])
    cases.append((["--data_dir", ewok], "ewok_filtered.jsonl:2: bad EWoK line (no 'Target2')"))
    wug = zero_shot_folder(tmp_path / "b", "wug_past_tense", [{"sentences": "He wugged.\tHe wug."}])
    cases.append((["--data_dir", wug], "wug_past_tense.jsonl:1: bad WUG line (no 'ratio')"))
    bad_ratio = zero_shot_folder(tmp_path / "c", "wug_adj_nominalization", [{"sentences": "a\tb", "ratio": "high"}])
    cases.append(
        (["--data_dir", bad_ratio], "wug_adj_nominalization.jsonl:1: bad WUG line ('ratio' 'high' is not a number)")
    )
    unknown = zero_shot_folder(tmp_path / "d", "mystery", [{"question": "Why?", "answer": "Because."}])
    cases.append(
        (["--data_dir", unknown], "mystery.jsonl:1: not a line of any zero-shot task (fields answer, question)")
    )
    cases.append((["--data_dir", ewok, "--tasks", "blimp_fast"], "--tasks blimp_fast: not in"))
    cases.append(
        (["--tasks", "ewok"], "--tasks ewok: not in the synthetic tasks (it has: synthetic, synthetic_completions)")
    )
    one_option = zero_shot_folder(
        tmp_path / "e", "entity_tracking", [{"input_prefix": "Box 0 has ", "options": ["a"], "numops": 0}]
    )
    cases.append(
        (
            ["--data_dir", one_option],
            "entity_tracking.jsonl:1: bad entity-tracking line ('options' is not a list of two or more strings)",
        )
    )
    empty_option = zero_shot_folder(
        tmp_path / "f", "entity_tracking", [{"input_prefix": "Box 0 has ", "options": ["a", " "], "numops": 0}]
    )
    cases.append(
        (
            ["--data_dir", empty_option],
            "entity_tracking.jsonl:1: bad entity-tracking line ('options' holds an empty option)",
        )
    )
    empty_target = zero_shot_folder(tmp_path / "g", "ewok_filtered", [{**EWOK_LINE, "Target2": ""}])
    cases.append((["--data_dir", empty_target], "ewok_filtered.jsonl:1: bad EWoK line ('Target2' is empty)"))
    for flags, expected in cases:
        status, line = run_main_in_process("eval_blimp.py", [*model, *flags], capsys)
        assert status == 2 and expected in line, (flags, line)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c", "d", "e", "f", "g", "notes"]  # nothing written


def test_glue_files_that_would_be_misread_are_refused_before_training(tmp_path):
    sst2 = GLUE_TASKS["sst2"]
    path = write_tsv(tmp_path / "SST-2" / "dev.tsv", "sentence\tlabel", [])
    with pytest.raises(UsageError, match="dev.tsv: no examples \\(only a header\\?\\)"):
        read_glue_file(path, sst2)
    write_tsv(path, "sentence\tlabel", ["a fine film .\t1", "a tab\there shifts .\t0"])
    with pytest.raises(UsageError, match="dev.tsv:3: 3 fields, but the header names 2"):
        read_glue_file(path, sst2)
    path.write_bytes(b"sentence\tlabel\na fine film .\t1\nna\xefve .\t0\n")
    with pytest.raises(UsageError, match="dev.tsv:3: not UTF-8 text"):
        read_glue_file(path, sst2)


def test_a_document_file_that_is_not_utf8_names_its_line(tmp_path):
    path = tmp_path / "docs.csv"
    path.write_bytes(b"text,label\nfine,a\nnot \xff fine,b\n")
    with pytest.raises(UsageError, match="docs.csv:3: not UTF-8 text \\(byte 0xff\\)"):
        read_documents(path)


def test_two_models_never_share_a_results_folder(tmp_path):
    (tmp_path / "first" / "run" / "final").mkdir(parents=True)
    (tmp_path / "second" / "run" / "final").mkdir(parents=True)
    results = tmp_path / "results" / "run-final"
    first = {"name_or_path": str(tmp_path / "first" / "run" / "final"), "revision": None}
    check_results_folder(results, first)  # nothing there yet
    results.mkdir(parents=True)
    (results / "config.yaml").write_text(yaml.safe_dump({"config": {"model_name_or_path": first["name_or_path"]}}))
    check_results_folder(results, first)  # the same model again: its results are updated
    check_results_folder(results, {"name_or_path": f"{first['name_or_path']}/", "revision": None})
    second = {"name_or_path": str(tmp_path / "second" / "run" / "final"), "revision": None}
    with pytest.raises(
        UsageError, match="run-final holds the results of another model .*first/run/final.* --model_label"
    ):
        check_results_folder(results, second)
