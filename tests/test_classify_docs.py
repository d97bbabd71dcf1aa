"""classify_docs.py as a user runs it: a tiny pretrained LLaMA against an ELECTRA baseline on a
Web of Science-format file, over batch sizes and epochs, on two processes."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from classify_docs import DocsConfig, read_splits
from common.config import parse_config
from common.errors import UsageError
from tests.finetune_data import write_tsv, write_wos_file
from tests.helpers import accelerate_launch, error_line, run_in_process

pytestmark = pytest.mark.e2e  # every test here launches a script


def test_model_against_baseline_on_web_of_science(tmp_path, causal_run, tiny_models):
    data = write_wos_file(tmp_path / "WOS" / "Data.txt", per_domain=60)
    out = tmp_path / "docs"
    baseline = tmp_path / "baseline" / "run" / "final"  # named like the model: the two rows get numbered
    shutil.copytree(tiny_models["electra"], baseline)
    done = accelerate_launch(
        "cpu",
        "classify_docs.py",
        [
            "--model_name_or_path",
            str(causal_run / "final"),
            "--baseline",
            str(baseline),
            "--data_file",
            str(data),
            "--batch_sizes",
            "4",
            "8",
            "--num_train_epochs",
            "3",
            "--learning_rate",
            "1e-3",
            "--max_length",
            "48",
            "--truncation",
            "head_tail",
            "--output_dir",
            str(out),
        ],
    )
    table = (out / "results.md").read_text()
    for model in ("run-final-1", "run-final-2"):  # two models from folders named alike get numbered
        for batch in (4, 8):
            assert f"| {model} | {batch} | " in table
    assert (
        "| model | batch size | epoch 1 | epoch 2 | epoch 3 | macro-F1 |" in table
        and table.split("\n\n")[1] in done.stdout
    )
    with open(out / "results.csv", encoding="utf-8") as lines:
        rows = list(csv.DictReader(lines))
    assert len(rows) == 2 * 2 * 3  # models x batch sizes x epochs
    assert set(rows[0]) >= {"dev_accuracy", "test_accuracy", "test_macro_f1", "train_loss"}
    ours = [r for r in rows if r["model"] == "run-final-1" and r["epoch"] == "3"]
    assert max(float(r["test_accuracy"]) for r in ours) > 60  # chance is 33.3 (three balanced domains)

    counts = {row["label"]: row for row in csv.DictReader(open(out / "label_counts.csv", encoding="utf-8"))}
    assert set(counts) == {"CS", "Civil", "Medical", "total"}  # the Domain values, stripped
    assert counts["total"] == {"label": "total", "train": "144", "dev": "18", "test": "18"}
    assert all(counts[d]["test"] == "6" for d in ("CS", "Civil", "Medical"))  # stratified
    results = json.loads((out / "results.json").read_text())
    assert results["labels"] == ["CS", "Civil", "Medical"] and len(results["runs"]) == 4
    assert results["provenance"]["processes"] == 2
    for model in ("run-final-1", "run-final-2"):
        assert (out / f"confusion_{model}.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in (out / "tb").iterdir()) == [
        "run-final-1-bs4",
        "run-final-1-bs8",
        "run-final-2-bs4",
        "run-final-2-bs8",
    ]


def test_split_files_and_bad_input(tmp_path, causal_run, capsys):
    train = write_tsv(tmp_path / "train.csv", "body,topic", ["a cat sleeps .,animals", "the bridge is dry .,things"])
    test = write_tsv(tmp_path / "test.csv", "body,topic", ["a dog runs .,animals", "a box is wet .,boxes"])
    base = [
        "--model_name_or_path",
        str(causal_run / "final"),
        "--train_file",
        str(train),
        "--dev_file",
        str(train),
        "--test_file",
        str(test),
        "--output_dir",
        str(tmp_path / "out"),
    ]
    unknown = run_in_process(
        "classify_docs.py", base + ["--text_column", "body", "--label_column", "topic"], capsys, check=False
    )
    assert unknown.returncode == 2
    assert error_line(unknown) == (f"error: {test}:3: label 'boxes' is not among the training labels (animals, things)")
    assert not (tmp_path / "out").exists()
    with pytest.raises(UsageError, match=f"--text_column abstract: not a column of {train}"):
        read_splits(parse_config(DocsConfig, base + ["--text_column", "abstract"]))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data_file", "x.txt", "--train_file", "y.txt"], "give either --data_file"),
        (["--train_file", "y.txt"], "--train_file, --dev_file and --test_file go together"),
        (["--data_file", "x.txt", "--batch_sizes", "0"], "--batch_sizes must be whole numbers of at least 1"),
        (["--data_file", "x.txt", "--dev_fraction", "0.5", "--test_fraction", "0.5"], "leave documents to train on"),
    ],
)
def test_config_refuses_contradictions(args, message):
    with pytest.raises(UsageError, match=message):
        parse_config(DocsConfig, ["--model_name_or_path", "m", *args])
