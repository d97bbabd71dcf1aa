"""Where a (Super)GLUE task's data comes from, and how it is scored there.

Four layouts, told apart by the files a `--glue_dir` holds:

- BabyLM 2025 (`glue_filtered/`): `<task>.train.jsonl` and `<task>.valid.jsonl`, one flat JSON
  object per example with integer labels. Scored as the BabyLM pipeline reports it: accuracy, F1
  and MCC (MNLI: accuracy), the task's score being accuracy (MRPC and QQP: F1).
- SuperGLUE's release: `BoolQ/`, `MultiRC/`, `WSC/` with `train.jsonl` and `val.jsonl`, boolean
  labels, MultiRC's passages nested (one example per answer), WSC's spans under `target`. Scored
  like the BabyLM layout (accuracy, F1, MCC; the score is accuracy).
- GLUE's download (`CoLA/train.tsv`, ...) and the Hub data set `nyu-mll/glue`: common/finetuning/glue.py,
  scored by GLUE's official metrics (the score is their mean).

Pairs are built as the BabyLM pipeline builds them: MultiRC is ("Question: <q> Answer: <a>",
paragraph), WSC is ('Does "<span2>" refer to "<span1>" in this passage?', text), BoolQ is
(question, passage).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common.errors import UsageError
from common.finetuning.glue import Example, GlueTask, read_glue_hub, read_glue_split_files
from common.jsonl import check_utf8, json_object


@dataclass(frozen=True)
class TaskData:
    splits: dict[str, list[Example]]  # train, then the dev split(s)
    layout: str  # BabyLM | SuperGLUE | GLUE | Hub
    metrics: tuple[str, ...]  # what is measured on every dev split
    score_metrics: tuple[str, ...]  # the task's score (and what picks the best epoch): their mean


def multirc_question(record: dict) -> str:
    return f"Question: {record['question']} Answer: {record['answer']}"


def wsc_question(span1: str, span2: str) -> str:
    return f'Does "{span2}" refer to "{span1}" in this passage?'


# BabyLM 2025: per task, the fields every line needs and the pair they make.
BABYLM_FIELDS: dict[str, tuple[tuple[str, ...], Callable[[dict], tuple[str, ...]]]] = {
    "boolq": (("question", "passage", "label"), lambda r: (r["question"], r["passage"])),
    "multirc": (("paragraph", "question", "answer", "label"), lambda r: (multirc_question(r), r["paragraph"])),
    "wsc": (
        ("text", "span1_text", "span2_text", "label"),
        lambda r: (wsc_question(r["span1_text"], r["span2_text"]), r["text"]),
    ),
    "rte": (("sentence1", "sentence2", "label"), lambda r: (r["sentence1"], r["sentence2"])),
    "mrpc": (("sentence1", "sentence2", "label"), lambda r: (r["sentence1"], r["sentence2"])),
    "qqp": (("question1", "question2", "label"), lambda r: (r["question1"], r["question2"])),
    "mnli": (("premise", "hypothesis", "label"), lambda r: (r["premise"], r["hypothesis"])),
}
BABYLM_SPLITS = {"train": "train", "dev": "valid"}
SUPERGLUE_SPLITS = {"train": "train.jsonl", "dev": "val.jsonl"}


def babylm_scoring(task: GlueTask) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(metrics, score metrics) as the BabyLM pipeline runs the task."""
    if task.name == "mnli":
        return ("accuracy",), ("accuracy",)
    return ("accuracy", "f1", "mcc"), ("f1",) if task.name in ("mrpc", "qqp") else ("accuracy",)


def checked_label(value, task: GlueTask, where: str) -> int:
    """A class index from a JSON label: an integer in range, or a boolean (SuperGLUE's)."""
    classes = len(task.labels)
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, int) or not 0 <= value < classes:
        raise UsageError(f"{where}: label {value!r} is not a class of {task.name} (0..{classes - 1}, or true/false)")
    return value


def jsonl_records(path: Path) -> list[tuple[str, dict]]:
    """(file:line, record) of every non-empty line of a JSON Lines file."""
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    check_utf8(path)
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    records = [(f"{path}:{n}", json_object(line, f"{path}:{n}")) for n, line in enumerate(lines, 1) if line.strip()]
    if not records:
        raise UsageError(f"{path}: no examples")
    return records


def text_fields(record: dict, needs: tuple[str, ...], where: str, layout: str) -> None:
    """Every field a layout needs is there, and each but the label (and nested ones) is text."""
    missing = [key for key in needs if key not in record]
    if missing:
        raise UsageError(
            f"{where}: no {missing[0]!r}; a line of the {layout} layout needs {', '.join(needs)} "
            f"(fields here: {', '.join(sorted(record)) or 'none'})"
        )
    for key in needs:
        if key not in ("label", "target", "passage") and not isinstance(record[key], str):
            raise UsageError(f"{where}: {key!r} is {record[key]!r}, not text")


def babylm_examples(path: Path, task: GlueTask) -> list[Example]:
    needs, pair = BABYLM_FIELDS[task.name]
    examples = []
    for where, record in jsonl_records(path):
        text_fields(record, needs, where, f"BabyLM {task.name}")
        examples.append(Example(pair(record), checked_label(record["label"], task, where)))
    return examples


def superglue_examples(path: Path, task: GlueTask) -> list[Example]:
    examples = []
    for where, record in jsonl_records(path):
        if task.name == "boolq":
            text_fields(record, ("question", "passage", "label"), where, "SuperGLUE BoolQ")
            examples.append(
                Example((record["question"], record["passage"]), checked_label(record["label"], task, where))
            )
        elif task.name == "wsc":
            text_fields(record, ("text", "target", "label"), where, "SuperGLUE WSC")
            target = record["target"]
            spans = ("span1_text", "span2_text")
            if not isinstance(target, dict) or not all(isinstance(target.get(key), str) for key in spans):
                raise UsageError(f"{where}: 'target' needs span1_text and span2_text (the SuperGLUE WSC layout)")
            question = wsc_question(target["span1_text"], target["span2_text"])
            examples.append(Example((question, record["text"]), checked_label(record["label"], task, where)))
        else:  # multirc: one example per answer of every question of the passage
            text_fields(record, ("passage",), where, "SuperGLUE MultiRC")
            examples += multirc_examples(record["passage"], task, where)
    return examples


def multirc_examples(passage, task: GlueTask, where: str) -> list[Example]:
    layout = "(the SuperGLUE MultiRC layout: passage {text, questions [{question, answers [{text, label}]}]})"
    if not isinstance(passage, dict) or not isinstance(passage.get("text"), str):
        raise UsageError(f"{where}: 'passage' needs text and questions {layout}")
    examples = []
    for question in passage.get("questions") if isinstance(passage.get("questions"), list) else [None]:
        answers = question.get("answers") if isinstance(question, dict) else None
        if (
            not isinstance(question, dict)
            or not isinstance(question.get("question"), str)
            or not isinstance(answers, list)
        ):
            raise UsageError(f"{where}: a question needs its text and a list of answers {layout}")
        for answer in answers:
            if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
                raise UsageError(f"{where}: an answer needs its text and label {layout}")
            record = {"question": question["question"], "answer": answer["text"]}
            label = checked_label(answer.get("label"), task, where)
            examples.append(Example((multirc_question(record), passage["text"]), label))
    return examples


def nonempty(examples: list[Example], path: Path) -> list[Example]:
    if not examples:
        raise UsageError(f"{path}: no examples")
    return examples


def babylm_files(glue_dir: Path, task: GlueTask) -> dict[str, Path]:
    return {split: glue_dir / f"{task.name}.{name}.jsonl" for split, name in BABYLM_SPLITS.items()}


def read_task_data(task: GlueTask, glue_dir: Path | None) -> TaskData:
    """A task's train and dev data and how it is scored, from whichever layout `glue_dir` holds."""
    if glue_dir is None:
        return TaskData(read_glue_hub(task), "Hub", task.metrics, task.metrics)
    if not glue_dir.is_dir():
        raise UsageError(f"--glue_dir {glue_dir}: no such folder")
    babylm = babylm_files(glue_dir, task)
    if task.name in BABYLM_FIELDS and any(path.is_file() for path in babylm.values()):
        metrics, score = babylm_scoring(task)
        return TaskData(
            {split: babylm_examples(path, task) for split, path in babylm.items()}, "BabyLM", metrics, score
        )
    folder = glue_dir / task.folder
    if task.benchmark == "SuperGLUE" and folder.is_dir():
        splits = {
            split: nonempty(superglue_examples(folder / name, task), folder / name)
            for split, name in SUPERGLUE_SPLITS.items()
        }
        return TaskData(splits, "SuperGLUE", ("accuracy", "f1", "mcc"), ("accuracy",))
    if task.benchmark == "GLUE" and folder.is_dir():
        return TaskData(read_glue_split_files(glue_dir, task), "GLUE", task.metrics, task.metrics)
    expected = [f"{task.name}.train.jsonl + {task.name}.valid.jsonl (BabyLM)"] if task.name in BABYLM_FIELDS else []
    own = "train.jsonl + val.jsonl" if task.benchmark == "SuperGLUE" else "train.tsv + dev.tsv"
    expected.append(f"{task.folder}/{own} ({task.benchmark})")
    raise UsageError(f"--glue_dir {glue_dir}: no {task.name} data (expected {' or '.join(expected)})")


def describe(data: TaskData) -> str:
    sizes = ", ".join(f"{len(examples)} {split}" for split, examples in data.splits.items())
    return f"{data.layout} layout, {sizes}; score: {' + '.join(data.score_metrics)}"
