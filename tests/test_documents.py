"""Documents for classification: the Web of Science layout, CSV, JSONL, and the stratified split."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from common.errors import UsageError
from common.finetuning.documents import Document, label_counts, read_documents, stratified_split

DOMAINS = ["CS ", "ECE ", "Psychology ", "MAE ", "Civil ", "Medical ", "biochemistry "]


def write_wos(path, per_domain: int = 10):
    """A Data.txt in the WOS-46985 layout: stray spaces around Domain/area/keywords, bare quotes."""
    rows = ["Y1\tY2\tY\tDomain\tarea\tkeywords\tAbstract"]
    for d, domain in enumerate(DOMAINS):
        for i in range(per_domain):
            rows.append(
                f"{d}\t{i}\t{d * 20 + i}\t{domain}\t area {i} \t kw{i}; kw{d} \t"
                f' Abstract {i} about {domain.strip()}: a "quoted" finding. '
            )
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_web_of_science_layout_needs_no_column_names(tmp_path):
    documents = read_documents(write_wos(tmp_path / "Data.txt"))
    assert len(documents) == 70
    assert sorted(Counter(d.label for d in documents)) == sorted(d.strip() for d in DOMAINS)
    assert documents[0].text == 'Abstract 0 about CS: a "quoted" finding.'


def test_csv_and_jsonl_with_named_columns(tmp_path):
    (tmp_path / "d.csv").write_text('body,topic\n"A, b ""c"" d",sports\nplain text, politics \n', encoding="utf-8")
    assert read_documents(tmp_path / "d.csv", "body", "topic") == [
        Document('A, b "c" d', "sports"),
        Document("plain text", "politics"),
    ]
    (tmp_path / "d.jsonl").write_text(
        "\n".join(json.dumps({"text": f"doc {i}", "label": i % 2}) for i in range(4)), encoding="utf-8"
    )
    assert [d.label for d in read_documents(tmp_path / "d.jsonl")] == ["0", "1", "0", "1"]


def test_bad_input_names_the_flag_file_or_line(tmp_path):
    with pytest.raises(UsageError, match="--data_file .*nope.txt: no such file"):
        read_documents(tmp_path / "nope.txt")
    wos = write_wos(tmp_path / "Data.txt")
    with pytest.raises(UsageError, match="--text_column summary: not a column of .*Data.txt \\(it has: Y1, Y2"):
        read_documents(wos, text_column="summary")
    (tmp_path / "d.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": "b"}\n', encoding="utf-8")
    with pytest.raises(UsageError, match="d.jsonl:2: no label"):
        read_documents(tmp_path / "d.jsonl")


def test_stratified_split_keeps_label_proportions_and_depends_only_on_the_seed(tmp_path):
    documents = read_documents(write_wos(tmp_path / "Data.txt", per_domain=20))
    splits = stratified_split(documents, seed=3)
    assert [len(splits[name]) for name in ("train", "dev", "test")] == [112, 14, 14]
    assert all(set(counts.values()) == {2} for name, counts in label_counts(splits).items() if name != "train")
    assert set(label_counts(splits)["train"].values()) == {16}
    every = [d for name in ("train", "dev", "test") for d in splits[name]]
    assert sorted(every, key=repr) == sorted(documents, key=repr)
    assert stratified_split(documents, seed=3) == splits
    assert stratified_split(documents, seed=4)["test"] != splits["test"]
    with pytest.raises(UsageError, match="labels CS have fewer than 3 documents"):
        stratified_split(documents[:2] + documents[20:], seed=0)
