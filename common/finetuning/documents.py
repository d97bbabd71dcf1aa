"""Labelled documents for classification: Web of Science `Data.txt`, CSV or JSONL, and a
stratified train/dev/test split by seed when the data has none.

Web of Science (WOS-46985) ships as `Data.txt`, a TSV with the header
`Y1 Y2 Y Domain area keywords Abstract`: the label is `Domain` (CS, ECE, Psychology, MAE, Civil,
Medical, biochemistry) and the text `Abstract`, both with stray spaces around them.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sklearn.model_selection import train_test_split

from common.errors import UsageError, first_line
from common.files import long_csv_fields
from common.jsonl import check_utf8, json_object

WOS_COLUMNS = {"text": "Abstract", "label": "Domain"}


@dataclass(frozen=True)
class Document:
    text: str
    label: str
    where: str = field(default="", compare=False)  # file:line, for errors about this document


def read_documents(
    path: Path, text_column: str | None = None, label_column: str | None = None, flag: str = "--data_file"
) -> list[Document]:
    """Documents of a WOS `Data.txt` (`.txt`/`.tsv`), a `.csv` or a `.jsonl` file; a WOS file
    needs no column names. Text and label are stripped; a row without them names its line."""
    if not path.is_file():
        raise UsageError(f"{flag} {path}: no such file")
    check_utf8(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        records = jsonl_records(path)
    elif suffix in (".csv", ".tsv", ".txt"):
        records = table_records(path, delimiter="," if suffix == ".csv" else "\t")
    else:
        raise UsageError(f"{flag} {path}: expected .txt/.tsv (Web of Science Data.txt), .csv or .jsonl")
    first, records = peek(records)
    text_column = text_column or (WOS_COLUMNS["text"] if first and WOS_COLUMNS["text"] in first[1] else "text")
    label_column = label_column or (WOS_COLUMNS["label"] if first and WOS_COLUMNS["label"] in first[1] else "label")
    for flag, column in (("--text_column", text_column), ("--label_column", label_column)):
        if first and column not in first[1]:
            raise UsageError(f"{flag} {column}: not a column of {path} (it has: {', '.join(first[1])})")
    documents = []
    for line, record in records:
        text, label = field_text(record, text_column), field_text(record, label_column)
        if not text or not label:
            raise UsageError(
                f"{path}:{line}: no {'text' if not text else 'label'} (columns {text_column!r}, {label_column!r})"
            )
        documents.append(Document(text, label, f"{path}:{line}"))
    if not documents:
        raise UsageError(f"{flag} {path}: holds no documents")
    return documents


def field_text(record: dict, column: str) -> str:
    value = record.get(column)
    return "" if value is None else str(value).strip()  # a JSON label 0 is a label


def peek(records):
    """The first item of an iterator and an iterator over all of them (first included)."""
    records = iter(records)
    first = next(records, None)
    return first, ([first] if first else []) + list(records)


def table_records(path: Path, delimiter: str):
    with long_csv_fields(), open(path, encoding="utf-8-sig", newline="") as lines:  # abstracts can be long
        quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL  # WOS abstracts hold bare quotes
        reader = csv.DictReader(lines, delimiter=delimiter, quoting=quoting)
        reader.fieldnames = [name.strip() for name in reader.fieldnames or []]
        for record in reader:
            yield reader.line_num, record


def jsonl_records(path: Path):
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            yield number, json_object(line, f"{path}:{number}")


def stratified_split(
    documents: list[Document], seed: int, dev_fraction: float = 0.1, test_fraction: float = 0.1
) -> dict[str, list[Document]]:
    """train/dev/test with each label in the same proportion in every split (by seed)."""
    labels = [d.label for d in documents]
    rare = [label for label, count in Counter(labels).items() if count < 3]
    if rare:
        raise UsageError(
            f"labels {', '.join(sorted(rare))} have fewer than 3 documents: too few to put one in "
            f"each of train, dev and test"
        )
    held_out = dev_fraction + test_fraction
    try:
        train, rest = train_test_split(documents, test_size=held_out, stratify=labels, random_state=seed)
        dev, test = train_test_split(
            rest, test_size=test_fraction / held_out, stratify=[d.label for d in rest], random_state=seed
        )
    except ValueError as error:  # too few documents for a stratified split of every label
        raise UsageError(
            f"cannot split {len(documents)} documents of {len(set(labels))} labels by label ({first_line(error)})"
        ) from None
    return {"train": train, "dev": dev, "test": test}


def check_labels(splits: dict[str, list[Document]]) -> list[str]:
    """The training labels (sorted); a dev or test document with another label is an error."""
    labels = sorted({d.label for d in splits["train"]})
    for documents in splits.values():
        for document in documents:
            if document.label not in labels:
                raise UsageError(
                    f"{document.where}: label {document.label!r} is not among the training labels ({', '.join(labels)})"
                )
    return labels


def label_counts(splits: dict[str, list[Document]]) -> dict[str, dict[str, int]]:
    """Per split, documents per label (sorted by label): the per-class counts reports show."""
    return {name: dict(sorted(Counter(d.label for d in docs).items())) for name, docs in splits.items()}
