"""Zero-shot evaluation data: BLiMP-style minimal pairs and the BabyLM challenge's other
zero-shot tasks, read, checked and selected.

Every task is a list of items; an item is a few candidate texts, the first one the right one,
each with the character where its scored part starts (0: the whole text is scored; else what
comes before is context, visible to the model but not scored). The families, as the BabyLM 2025
evaluation pipeline defines them (docs/evaluation.md has the details):

- minimal pairs (BLiMP, BLiMP filtered, the BLiMP supplement): `sentence_good` vs `sentence_bad`,
  whole sentences; grouped by `UID` (the supplement has none: by file) within `field`.
- EWoK: `Context1` + " " + `Target1` vs `Context1` + " " + `Target2`, the targets scored after
  the context; grouped by `Domain`. (The released files hold each item twice, contexts swapped.)
- entity tracking: `input_prefix` + each of `options`, the option scored after the prefix;
  grouped by `<file>_<numops>_ops` within the file; the headline averages the files.
- WUG: the tab-separated whole `sentences`; no right answer but a human `ratio`, compared with
  the model's preference for the first candidate by Spearman correlation.
- COMPS: `prefix_acceptable` / `prefix_unacceptable` + " " + `property_phrase`, the property
  scored after the prefix; grouped by file.

Sources: a folder of `*.jsonl` files (one task), a folder of task folders (the BabyLM release's
`evaluation_data/`, `full_eval/` or `fast_eval/`), the Hub data set `nyu-mll/blimp` (only when
asked for by name), or the embedded synthetic corpus's tasks (the offline default).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from pathlib import Path

from common.errors import UsageError, first_line
from common.jsonl import check_utf8, json_object

log = logging.getLogger("babytrain")

HUB_BLIMP = "nyu-mll/blimp"
SUITES = ("full_eval", "fast_eval")  # the BabyLM release's two sets of task folders
# Folders of the BabyLM release that hold no zero-shot task, and where they belong instead.
NOT_ZERO_SHOT = {
    "glue_filtered": "fine-tuning data (finetune_glue.py)",
    "reading": "reading-time data (not scored here)",
}


@dataclass(frozen=True)
class Item:
    uid: str  # the group accuracies are averaged over (BLiMP's paradigm, EWoK's domain, ...)
    field: str  # the group of uids above it ("" when the family has none)
    linguistics_term: str
    item_id: str
    candidates: tuple[tuple[str, int], ...]  # (text, first scored character); the first is right
    ratio: float | None = None  # WUG: the human preference for the first candidate


@dataclass(frozen=True)
class Family:
    name: str
    label: str  # for messages: "EWoK", "minimal-pair", ...
    needs: tuple[str, ...]  # the fields every line must have
    make_item: Callable[[dict, Path, int], Item]  # (record, file, line number) -> Item
    metric: str = "accuracy"  # accuracy | spearman
    headline: str = "uids"  # the overall accuracy averages the uids, or the fields (entity tracking)


@dataclass(frozen=True)
class Task:
    name: str  # names the results folder: blimp_filtered, ewok_fast, synthetic, ...
    family: str
    source: str  # where the items came from, for results.json
    items: tuple[Item, ...]

    @property
    def uids(self) -> list[str]:
        return list(dict.fromkeys(item.uid for item in self.items))

    @property
    def metric(self) -> str:
        return FAMILIES[self.family].metric

    @property
    def headline(self) -> str:
        return FAMILIES[self.family].headline

    def texts(self) -> list[tuple[str, int]]:
        """Each distinct (text, start) once, sorted: whatever order the items (or an item's
        candidates) come in, the same list, so scores cannot depend on that order."""
        return sorted({candidate for item in self.items for candidate in item.candidates})

    @cached_property
    def fingerprint(self) -> str:
        """A hash of every item, so stored results can tell whether they scored the same data
        (computed once: a run compares it for every snapshot)."""
        digest = hashlib.sha256(self.family.encode())
        for item in self.items:
            digest.update(json.dumps(asdict(item), sort_keys=True).encode())
        return digest.hexdigest()[:16]


# --- one line of each family -------------------------------------------------------------------


def text_field(record: dict, key: str) -> str:
    value = record[key]
    if not isinstance(value, str):
        raise ValueError(f"{key!r} is not a string")
    return value


def completion_field(record: dict, key: str) -> str:
    """A text that is scored: empty, it would score 0 (probability 1) and beat every real one."""
    value = text_field(record, key)
    if not value.strip():
        raise ValueError(f"{key!r} is empty")
    return value


def minimal_pair_item(record: dict, path: Path, number: int) -> Item:
    has_field = bool(record.get("field"))  # the BLiMP supplement has no field: grouped by file
    return Item(
        uid=str(record.get("UID") or path.stem),
        field=str(record["field"]) if has_field else "supplement",
        linguistics_term=str(record.get("linguistics_term") or ("" if has_field else "supplement")),
        item_id=str(record.get("pairID", record.get("pair_id", number))),
        candidates=((completion_field(record, "sentence_good"), 0), (completion_field(record, "sentence_bad"), 0)),
    )


def ewok_item(record: dict, path: Path, number: int) -> Item:
    # Both targets after the line's first context; the file holds the swapped copy as its own line.
    context = text_field(record, "Context1")
    return Item(
        uid=str(record["Domain"]),
        field="",
        linguistics_term=str(record.get("ContextType", "")),
        item_id=f"{path.stem}:{number}",
        candidates=tuple(
            (f"{context} {completion_field(record, key)}", len(context)) for key in ("Target1", "Target2")
        ),
    )


def entity_tracking_item(record: dict, path: Path, number: int) -> Item:
    # Grouped by file and number of operations; the headline averages the files.
    item = completion_item(record, path, number)
    return replace(item, uid=f"{path.stem}_{record['numops']}_ops", field=path.stem, linguistics_term="")


def wug_item(record: dict, path: Path, number: int) -> Item:
    sentences = text_field(record, "sentences").split("\t")
    ratio = record["ratio"]
    if len(sentences) < 2 or not all(sentence.strip() for sentence in sentences):
        raise ValueError("'sentences' holds fewer than two tab-separated candidates, or an empty one")
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float, str)):
        raise ValueError("'ratio' is not a number")
    try:
        ratio = float(ratio)
    except (ValueError, OverflowError):
        raise ValueError(f"'ratio' {ratio!r} is not a number") from None
    if not math.isfinite(ratio):
        raise ValueError(f"'ratio' {ratio} is not a finite number")
    return Item(path.stem, "", "", str(number), tuple((sentence, 0) for sentence in sentences), ratio)


def completion_item(record: dict, path: Path, number: int) -> Item:
    prefix, options = text_field(record, "input_prefix"), record["options"]
    if not isinstance(options, list) or len(options) < 2 or not all(isinstance(o, str) for o in options):
        raise ValueError("'options' is not a list of two or more strings")
    if not all(option.strip() for option in options):
        raise ValueError("'options' holds an empty option")
    return Item(
        uid=str(record.get("UID") or path.stem),
        field=str(record.get("field", "")),
        linguistics_term=str(record.get("linguistics_term", "")),
        item_id=str(record.get("sample_id", number)),
        candidates=tuple((prefix + option, len(prefix)) for option in options),
    )


def comps_item(record: dict, path: Path, number: int) -> Item:
    phrase = completion_field(record, "property_phrase")
    prefixes = [text_field(record, key) for key in ("prefix_acceptable", "prefix_unacceptable")]
    return Item(
        uid=path.stem,
        field="",
        linguistics_term=str(record.get("negative_sample_type", "")),
        item_id=str(record.get("id", number)),
        candidates=tuple((f"{prefix} {phrase}", len(prefix)) for prefix in prefixes),
    )


FAMILIES = {
    family.name: family
    for family in (
        Family("minimal_pairs", "minimal-pair", ("sentence_good", "sentence_bad"), minimal_pair_item),
        Family("ewok", "EWoK", ("Context1", "Target1", "Target2", "Domain"), ewok_item),
        Family(
            "entity_tracking",
            "entity-tracking",
            ("input_prefix", "options", "numops"),
            entity_tracking_item,
            headline="fields",
        ),
        # Any multiple-choice completion task: `input_prefix`, `options` (the first right), `UID`.
        Family("completions", "completion", ("input_prefix", "options"), completion_item),
        Family("wug", "WUG", ("sentences", "ratio"), wug_item, metric="spearman"),
        Family("comps", "COMPS", ("prefix_acceptable", "prefix_unacceptable", "property_phrase"), comps_item),
    )
}
# The BabyLM release's folder names; any other folder's family is told by its first line.
FOLDER_FAMILIES = {
    **dict.fromkeys(("blimp_filtered", "blimp_fast", "supplement_filtered", "supplement_fast"), "minimal_pairs"),
    **dict.fromkeys(("ewok_filtered", "ewok_fast"), "ewok"),
    **dict.fromkeys(("entity_tracking", "entity_tracking_fast"), "entity_tracking"),
    **dict.fromkeys(("wug_adj_nominalization", "wug_past_tense"), "wug"),
    "comps": "comps",
}


def family_of_record(record: dict) -> str | None:
    """The first family whose fields a line has all of, else the first whose leading field it has
    (reading the file then names what is missing), else None."""
    complete = [family.name for family in FAMILIES.values() if all(key in record for key in family.needs)]
    started = [family.name for family in FAMILIES.values() if family.needs[0] in record]
    return (complete or started or [None])[0]


# --- files and folders -------------------------------------------------------------------------


def read_task_file(path: Path, family: Family, skip_bad_lines: bool) -> tuple[list[Item], int]:
    """The items of one JSONL file and how many lines were skipped as bad.

    A line that is not a JSON object with the family's fields is an error naming the file and
    line, unless skip_bad_lines, when it is counted, logged and left out.
    """
    check_utf8(path)
    items, skipped = [], 0
    with open(path, encoding="utf-8-sig") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json_object(line, where)
                missing = [key for key in family.needs if key not in record]
                if missing:
                    raise ValueError(f"no {missing[0]!r}")
                items.append(family.make_item(record, path, number))
            except (UsageError, ValueError) as error:
                problem = first_line(error).removeprefix(f"{where}: ")
                message = f"{where}: bad {family.label} line ({problem}); each line needs {', '.join(family.needs)}"
                if not skip_bad_lines:
                    raise UsageError(f"{message} (--skip_bad_lines leaves such lines out)") from None
                log.warning("skipping %s", message)
                skipped += 1
    return items, skipped


def first_record(path: Path) -> dict:
    """The first JSON object of a file (to tell its family), or {} when it has none."""
    check_utf8(path)
    with open(path, encoding="utf-8-sig") as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                return json_object(line, f"{path}:{number}")
    return {}


def folder_family(folder: Path, files: list[Path]) -> str:
    """The family of a task folder: from its release name, else from its first file's first line."""
    if folder.name in FOLDER_FAMILIES:
        return FOLDER_FAMILIES[folder.name]
    for path in files:
        record = first_record(path)
        if record:
            family = family_of_record(record)
            if family is None:
                raise UsageError(
                    f"{path}:1: not a line of any zero-shot task (fields {', '.join(sorted(record)) or 'none'}); "
                    f"expected {'; '.join(', '.join(f.needs) for f in FAMILIES.values())}"
                )
            return family
    raise UsageError(f"{folder}: its *.jsonl files are all empty")


def read_task_folder(
    folder: Path, skip_bad_lines: bool = False, name: str | None = None, flag: str = "--data_dir"
) -> Task:
    """Every `*.jsonl` file of one task folder (one file per paradigm, domain or split)."""
    if not folder.is_dir():
        raise UsageError(f"{flag} {folder}: no such folder")
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        raise UsageError(f"{flag} {folder}: holds no *.jsonl task files")
    family = FAMILIES[folder_family(folder, files)]
    items, skipped, first_seen = [], 0, {}
    for path in files:
        file_items, file_skipped = read_task_file(path, family, skip_bad_lines)
        if not file_items:  # a paradigm that silently vanished would change the macro average
            raise UsageError(f"{path}: holds no items (an empty {family.label} file); remove it or fill it")
        if family.name == "minimal_pairs":  # the other releases repeat items on purpose (EWoK's swaps)
            check_new_pairs(file_items, path, first_seen)
        items += file_items
        skipped += file_skipped
    if skipped:
        log.warning("%d bad lines skipped under %s", skipped, folder)
    return Task(name or folder.resolve().name, family.name, str(folder.resolve()), tuple(items))


def check_new_pairs(items: list[Item], path: Path, first_seen: dict) -> None:
    """Refuse a pair seen before (in this file or an earlier one): counted twice, it skews the accuracy."""
    for item in items:
        key = (item.uid, item.candidates)
        if key in first_seen:
            (good, _), (bad, _) = item.candidates
            raise UsageError(
                f"{path}: the pair {good!r} / {bad!r} of {item.uid} is there twice (also in "
                f"{first_seen[key]}); a pair counted twice skews the accuracy"
            )
        first_seen[key] = path.name


# --- what a data folder holds ------------------------------------------------------------------


@dataclass(frozen=True)
class TaskFolder:
    name: str
    path: Path
    suite: str  # full_eval | fast_eval | "" (a folder outside the release's layout)


def find_task_folders(root: Path, flag: str = "--data_dir") -> tuple[list[TaskFolder], dict[str, str]]:
    """The task folders of a data folder (itself when it holds `*.jsonl` files; else its
    subfolders, and those of `full_eval/` and `fast_eval/`), and the folders skipped with why."""
    if not root.is_dir():
        raise UsageError(f"{flag} {root}: no such folder")
    if any(root.glob("*.jsonl")):
        return [TaskFolder(root.resolve().name, root, "")], {}
    if root.name in SUITES:
        parents = [(root, root.name)]
    else:
        parents = [(root / suite, suite) for suite in SUITES if (root / suite).is_dir()] or [(root, "")]
    found, skipped = [], {}
    for parent, suite in parents:
        for folder in sorted(path for path in parent.iterdir() if path.is_dir()):
            if folder.name in NOT_ZERO_SHOT:
                skipped[folder.name] = NOT_ZERO_SHOT[folder.name]
            elif not any(folder.glob("*.jsonl")):
                skipped[folder.name] = "no *.jsonl files"
            else:
                found.append(TaskFolder(folder.name, folder, suite))
    if not found:
        raise UsageError(
            f"{flag} {root}: holds no *.jsonl task files, nor folders of them "
            f"(a BLiMP folder, or the BabyLM evaluation_data/ layout)"
        )
    return found, skipped


def select_task_folders(
    found: list[TaskFolder], requested: list[str], default_suite: str, where: str
) -> list[TaskFolder]:
    """The folders `--tasks` names: task names, or `full` / `fast` for every task of the release's
    full_eval/ or fast_eval/. Nothing requested: `default_suite`'s tasks when the data has the
    release's layout, else all. A name in both suites (wug_*) is read from full_eval/."""
    suites = {folder.suite for folder in found}
    if not requested:
        requested = [default_suite.removesuffix("_eval")] if default_suite in suites else [f.name for f in found]
    chosen: dict[str, TaskFolder] = {}
    for name in requested:
        if name in ("full", "fast") and f"{name}_eval" in suites:
            matches = [folder for folder in found if folder.suite == f"{name}_eval"]
        else:
            matches = sorted((f for f in found if f.name == name), key=lambda f: f.suite != "full_eval")[:1]
        if not matches:
            known = sorted({f.name for f in found} | {s.removesuffix("_eval") for s in suites if s})
            raise UsageError(f"--tasks {name}: not in {where} (it has: {', '.join(known)})")
        for folder in matches:
            chosen.setdefault(folder.name, folder)
    return list(chosen.values())


def synthetic_tasks(items_per_paradigm: int = 200) -> list[Task]:
    """The synthetic corpus's tasks: what a model trained on it should learn, as whole-sentence
    minimal pairs (`synthetic`) and as the completion of a shared prefix (`synthetic_completions`:
    the context decides which ending is right, as in EWoK and entity tracking)."""
    from common.data.synthetic import SYNTHETIC_VERSION, synthetic_completions, synthetic_minimal_pairs

    source = f"babytrain synthetic corpus v{SYNTHETIC_VERSION}"
    where = Path("synthetic.jsonl")
    pairs = [
        minimal_pair_item(record, where, n) for n, record in enumerate(synthetic_minimal_pairs(items_per_paradigm))
    ]
    completions = [
        completion_item(record, where, n) for n, record in enumerate(synthetic_completions(items_per_paradigm))
    ]
    return [
        Task("synthetic", "minimal_pairs", source, tuple(pairs)),
        Task("synthetic_completions", "completions", source, tuple(completions)),
    ]


def read_hub_blimp(dataset_id: str = HUB_BLIMP, flag: str = "--data_dir") -> Task:
    """All paradigms of the Hub data set (needs the network or a warm datasets cache)."""
    import datasets

    try:
        configs = datasets.get_dataset_config_names(dataset_id)
        items = [
            minimal_pair_item({"UID": config, **row}, Path(config), number)
            for config in configs
            for number, row in enumerate(datasets.load_dataset(dataset_id, config, split="train"))
        ]
    except Exception as error:  # the Hub client raises many types; any of them means "could not load"
        raise UsageError(f"{flag} {dataset_id}: cannot load the Hub data set ({first_line(error)})") from None
    return Task(dataset_id.replace("/", "_"), "minimal_pairs", f"hf://datasets/{dataset_id}", tuple(items))


def load_tasks(
    data_dir: str | None,
    requested: list[str] | None = None,
    skip_bad_lines: bool = False,
    synthetic_items: int = 200,
    default_suite: str = "full_eval",
    flag: str = "--data_dir",
) -> tuple[list[Task], dict[str, str]]:
    """The tasks `--blimp_dir` / `--data_dir` and `--tasks` name, and the data folders skipped
    with why: a folder (see find_task_folders), the Hub id `nyu-mll/blimp`, or nothing for the
    synthetic tasks."""
    requested = list(requested or [])
    if not data_dir:
        tasks = synthetic_tasks(synthetic_items)
        where = "the synthetic tasks"
        found = [TaskFolder(task.name, Path(), "") for task in tasks]
        chosen = {folder.name for folder in select_task_folders(found, requested, default_suite, where)}
        return [task for task in tasks if task.name in chosen], {}
    if data_dir == HUB_BLIMP and not Path(data_dir).exists():
        task = read_hub_blimp(data_dir, flag)
        select_task_folders([TaskFolder(task.name, Path(), "")], requested, default_suite, data_dir)
        return [task], {}
    found, skipped = find_task_folders(Path(data_dir), flag)
    folders = select_task_folders(found, requested, default_suite, data_dir)
    return [read_task_folder(folder.path, skip_bad_lines, folder.name, flag) for folder in folders], skipped


def select_uids(tasks: list[Task], uids: list[str]) -> list[Task]:
    """Only the named uids (paradigms, domains, ...) of the tasks that have any; a name no task
    has is an error listing the known ones."""
    if not uids:
        return tasks
    known = [uid for task in tasks for uid in task.uids]
    unknown = [name for name in uids if name not in known]
    if unknown:
        sources = ", ".join(task.source for task in tasks)
        raise UsageError(f"--paradigms {', '.join(unknown)}: not in {sources} (it has: {', '.join(known)})")
    wanted = set(uids)
    kept = [replace(task, items=tuple(i for i in task.items if i.uid in wanted)) for task in tasks]
    return [task for task in kept if task.items]


def describe(task: Task) -> str:
    groups = {"minimal_pairs": "paradigms", "ewok": "domains"}.get(task.family, "groups")
    return f"{task.name} ({task.family.replace('_', ' ')}, {len(task.items)} items in {len(task.uids)} {groups})"
