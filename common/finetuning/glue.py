"""(Super)GLUE tasks: their labels and metrics, and GLUE's files in the original download layout.

The GLUE layout is `<glue_dir>/<TASK>/train.tsv` and `dev.tsv` (MNLI: `dev_matched.tsv` and
`dev_mismatched.tsv`), tab-separated with no quoting, each task with its own columns: CoLA has no
header, MRPC may start with a byte-order mark, MNLI/QNLI/RTE carry string labels. The JSON Lines
layouts (SuperGLUE's release, the BabyLM challenge's) are read by `glue_layouts`. Metrics are
computed with scikit-learn and SciPy, never fetched at run time.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from common.errors import UsageError, first_line
from common.files import long_csv_fields
from common.jsonl import check_utf8


@dataclass(frozen=True)
class GlueTask:
    name: str  # the command-line name: cola, sst2, ...
    folder: str  # its folder in the GLUE download: CoLA, SST-2, ...
    text_columns: tuple[str, ...]  # one sentence or a pair
    label_column: str
    labels: tuple[str, ...] | None  # label strings in class-index order (nyu-mll/glue's); None: regression
    metrics: tuple[str, ...]  # the official ones; the task's score is their mean
    hub_text_columns: tuple[str, ...]  # the same texts' columns in the Hub data set nyu-mll/glue
    dev_files: dict[str, str] = field(default_factory=lambda: {"dev": "dev.tsv"})
    hub_dev_splits: dict[str, str] = field(default_factory=lambda: {"dev": "validation"})
    columns: tuple[str, ...] | None = None  # for a file without a header row
    benchmark: str = "GLUE"  # GLUE | SuperGLUE (BoolQ, MultiRC, WSC: JSON Lines files only)


HUB_GLUE = "nyu-mll/glue"
BINARY = ("0", "1")
GLUE_TASKS: dict[str, GlueTask] = {
    task.name: task
    for task in (
        GlueTask(
            "cola",
            "CoLA",
            ("sentence",),
            "label",
            BINARY,
            ("matthews_correlation",),
            ("sentence",),
            columns=("source", "label", "original_label", "sentence"),
        ),
        GlueTask("sst2", "SST-2", ("sentence",), "label", BINARY, ("accuracy",), ("sentence",)),
        GlueTask(
            "mrpc",
            "MRPC",
            ("#1 String", "#2 String"),
            "Quality",
            BINARY,
            ("f1", "accuracy"),
            ("sentence1", "sentence2"),
        ),
        GlueTask(
            "stsb",
            "STS-B",
            ("sentence1", "sentence2"),
            "score",
            None,
            ("pearson", "spearman"),
            ("sentence1", "sentence2"),
        ),
        GlueTask(
            "qqp",
            "QQP",
            ("question1", "question2"),
            "is_duplicate",
            BINARY,
            ("f1", "accuracy"),
            ("question1", "question2"),
        ),
        GlueTask(
            "mnli",
            "MNLI",
            ("sentence1", "sentence2"),
            "gold_label",
            ("entailment", "neutral", "contradiction"),
            ("accuracy",),
            ("premise", "hypothesis"),
            dev_files={"matched": "dev_matched.tsv", "mismatched": "dev_mismatched.tsv"},
            hub_dev_splits={"matched": "validation_matched", "mismatched": "validation_mismatched"},
        ),
        GlueTask(
            "qnli",
            "QNLI",
            ("question", "sentence"),
            "label",
            ("entailment", "not_entailment"),
            ("accuracy",),
            ("question", "sentence"),
        ),
        GlueTask(
            "rte",
            "RTE",
            ("sentence1", "sentence2"),
            "label",
            ("entailment", "not_entailment"),
            ("accuracy",),
            ("sentence1", "sentence2"),
        ),
        GlueTask(
            "wnli", "WNLI", ("sentence1", "sentence2"), "label", BINARY, ("accuracy",), ("sentence1", "sentence2")
        ),
        # SuperGLUE, in its release's layout or the BabyLM challenge's (common/finetuning/glue_layouts.py)
        GlueTask("boolq", "BoolQ", ("question", "passage"), "label", BINARY, ("accuracy",), (), benchmark="SuperGLUE"),
        GlueTask(
            "multirc",
            "MultiRC",
            ("question", "answer", "paragraph"),
            "label",
            BINARY,
            ("accuracy",),
            (),
            benchmark="SuperGLUE",
        ),
        GlueTask(
            "wsc",
            "WSC",
            ("span1_text", "span2_text", "text"),
            "label",
            BINARY,
            ("accuracy",),
            (),
            benchmark="SuperGLUE",
        ),
    )
}
GLUE_NINE = [name for name, task in GLUE_TASKS.items() if task.benchmark == "GLUE"]


@dataclass(frozen=True)
class Example:
    texts: tuple[str, ...]
    label: float | int


def glue_tasks(names: list[str]) -> list[GlueTask]:
    """`all` (GLUE's nine) or task names (case-insensitive, `sst-2` and `sst2` alike) -> tasks."""
    wanted = [name.lower().replace("-", "") for name in names]
    if "all" in wanted:
        return [GLUE_TASKS[name] for name in GLUE_NINE]
    unknown = [name for name, key in zip(names, wanted) if key not in GLUE_TASKS]
    if unknown:
        raise UsageError(f"--tasks {', '.join(unknown)}: unknown GLUE task (known: {', '.join(GLUE_TASKS)}, all)")
    return [GLUE_TASKS[key] for key in dict.fromkeys(wanted)]


def read_glue_file(path: Path, task: GlueTask) -> list[Example]:
    """The labelled examples of one GLUE TSV file; a file that is not UTF-8 or holds no examples, a
    missing column, a row with fewer fields than it needs or more than its header names (its
    columns would be read shifted), or a label outside the task's label set is an error naming
    the file (and line)."""
    if not path.is_file():
        raise UsageError(
            f"{path}: no such file (expected the GLUE layout <glue_dir>/{task.folder}/"
            f"{{train.tsv,{','.join(task.dev_files.values())}}})"
        )
    check_utf8(path)
    # utf-8-sig drops MRPC's byte-order mark; QQP and MNLI hold a few very long fields
    with long_csv_fields(), open(path, encoding="utf-8-sig", newline="") as lines:
        rows = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = list(task.columns) if task.columns else next(rows, None)
        if header is None:
            raise UsageError(f"{path}: empty file")
        missing = [c for c in (*task.text_columns, task.label_column) if c not in header]
        if missing:
            raise UsageError(
                f"{path}: no column {', '.join(map(repr, missing))} in its header "
                f"({', '.join(header)}); is it the {task.folder} file?"
            )
        wanted = [header.index(c) for c in task.text_columns]
        label_at = header.index(task.label_column)
        first_line = 1 if task.columns else 2
        examples = []
        for number, row in enumerate(rows, start=first_line):
            if len(row) > len(header):
                raise UsageError(
                    f"{path}:{number}: {len(row)} fields, but the header names {len(header)}; a tab inside a "
                    f"text would shift its columns"
                )
            if row:
                examples.append(example_from_row(row, wanted, label_at, task, f"{path}:{number}"))
    if not examples:
        raise UsageError(f"{path}: no examples (only a header?)")
    return examples


def example_from_row(row: list[str], text_at: list[int], label_at: int, task: GlueTask, where: str) -> Example:
    if len(row) <= max(*text_at, label_at):
        raise UsageError(f"{where}: {len(row)} fields, expected at least {max(*text_at, label_at) + 1}")
    text, label = tuple(row[i] for i in text_at), row[label_at].strip()
    if task.labels is None:
        try:
            return Example(text, float(label))
        except ValueError:
            raise UsageError(f"{where}: label {label!r} is not a number ({task.folder} is a regression task)") from None
    if label not in task.labels:
        raise UsageError(f"{where}: label {label!r} is not one of {', '.join(task.labels)}")
    return Example(text, task.labels.index(label))


def read_glue_split_files(glue_dir: Path, task: GlueTask) -> dict[str, list[Example]]:
    """train plus the dev split(s) of a task in the GLUE download layout."""
    folder = glue_dir / task.folder
    return {
        "train": read_glue_file(folder / "train.tsv", task),
        **{name: read_glue_file(folder / file, task) for name, file in task.dev_files.items()},
    }


def read_glue_hub(task: GlueTask) -> dict[str, list[Example]]:
    """train plus the dev split(s) of a task from the Hub data set nyu-mll/glue (needs the network
    or the data set in the local `datasets` cache)."""
    from datasets import load_dataset

    if task.benchmark != "GLUE":
        raise UsageError(
            f"--tasks {task.name}: {task.benchmark} tasks are read from files; pass --glue_dir with the "
            f"{task.benchmark} release ({task.folder}/train.jsonl, val.jsonl) or the BabyLM glue_filtered/ folder"
        )

    splits = {"train": "train", **task.hub_dev_splits}
    try:
        data = load_dataset(HUB_GLUE, task.name)
    except Exception as error:  # offline, a proxy, a moved data set: all the same to the user
        raise UsageError(
            f"cannot load {HUB_GLUE} ({task.name}): {first_line(error)}; without the network, pass "
            f"--glue_dir with the GLUE download"
        ) from None
    return {
        name: examples_from_hub_rows(task, data[split], f"{HUB_GLUE} {task.name} {split}")
        for name, split in splits.items()
    }


def examples_from_hub_rows(task: GlueTask, rows, where: str) -> list[Example]:
    """Hub rows (integer labels already in class order; STS-B's a float) as examples."""
    examples = []
    for number, row in enumerate(rows):
        label = row["label"]
        if task.labels is not None and not 0 <= label < len(task.labels):
            raise UsageError(
                f"{where} row {number}: label {label} is not a class of {task.name} "
                f"(0..{len(task.labels) - 1}); test splits have no labels"
            )
        texts = tuple(row[column] for column in task.hub_text_columns)
        examples.append(Example(texts, float(label) if task.labels is None else int(label)))
    return examples


def glue_metrics(task: GlueTask, predictions: np.ndarray, references: np.ndarray) -> dict[str, float]:
    """The task's official metrics (as fractions; correlations in [-1, 1])."""
    return metrics_named(task.metrics, predictions, references)


def metrics_named(names: tuple[str, ...], predictions: np.ndarray, references: np.ndarray) -> dict[str, float]:
    """These metrics of the predictions (`mcc` is the BabyLM pipeline's name for Matthews')."""
    compute = {
        "accuracy": lambda: accuracy_score(references, predictions),
        "f1": lambda: f1_score(references, predictions),
        "matthews_correlation": lambda: matthews_corrcoef(references, predictions),
        "mcc": lambda: matthews_corrcoef(references, predictions),
        "pearson": lambda: correlation(pearsonr, predictions, references),
        "spearman": lambda: correlation(spearmanr, predictions, references),
    }
    return {name: float(compute[name]()) for name in names}


def correlation(kind, predictions: np.ndarray, references: np.ndarray) -> float:
    """A correlation that is 0 (not NaN) when either side is constant, as an untrained
    regression head's predictions can be."""
    if np.ptp(predictions) == 0 or np.ptp(references) == 0:
        return 0.0
    return float(kind(predictions, references)[0])
