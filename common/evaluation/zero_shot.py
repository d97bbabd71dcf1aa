"""Zero-shot evaluation of one model, or of every snapshot of a pretraining run, on any number of
tasks (BLiMP, the BLiMP supplement, EWoK, entity tracking, WUG, COMPS, the synthetic tasks).

Shared by `eval_blimp.py` and the end of `train_pretrain.py`. Results of a snapshot folder go
inside it, under `blimp/<task>/`, so a run's milestones carry their scores with them and a second
pass over a run can see which tasks are already scored with the same data and options.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from common.errors import UsageError
from common.evaluation.sentence_scoring import ScoringOptions, load_scorer, score_completions
from common.evaluation.tasks import Task
from common.evaluation.zero_shot_results import (
    candidate_matrix,
    headline_text,
    read_stored_results,
    score_table,
    task_scores,
    tensorboard_scalars,
    write_learning_curve,
    write_results,
)
from common.tracking import TensorBoard

log = logging.getLogger("babytrain")

# Options that do not change any score (only how the work is batched).
THROUGHPUT_OPTIONS = ("batch_size", "max_batch_tokens", "trust_remote_code", "shared_prefix_tokens")
RESULTS_FOLDER = "blimp"  # <snapshot>/blimp/<task>/: the name eval_blimp.py has always used


def settings_of(task: Task, options: ScoringOptions) -> dict:
    """What a stored result must match to count as already scored."""
    scoring = {k: v for k, v in asdict(options).items() if k not in THROUGHPUT_OPTIONS}
    return {"data": task.name, "data_fingerprint": task.fingerprint, **scoring}


def snapshot_info(folder: Path) -> dict:
    """Name, tokens and words seen and step of a saved model (from milestone.json when it has one)."""
    info_path = Path(folder) / "milestone.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    return {
        "name": info.get("name", Path(folder).name),
        "tokens_seen": info.get("tokens_seen"),
        "words_seen": info.get("words_seen"),
        "step": info.get("step"),
    }


def evaluate_model(
    accelerator, name_or_path: str, tasks: list[Task], options: ScoringOptions, revision: str | None = None
) -> list[tuple[dict, list[dict]]]:
    """Score every task with one model (loaded once): (results, item scores) per task. Every
    process takes part."""
    loading = time.perf_counter()
    scorer = load_scorer(name_or_path, revision, options, accelerator.device)
    load_seconds = time.perf_counter() - loading
    local = Path(name_or_path).is_dir()
    snapshot = snapshot_info(Path(name_or_path)) if local else {"name": name_or_path, "tokens_seen": None}
    every = []
    for task in tasks:
        started = time.perf_counter()
        texts = task.texts()
        scores = score_completions(scorer, texts, accelerator)
        summary, item_scores = task_scores(task, candidate_matrix(task, dict(zip(texts, scores))))
        seconds = time.perf_counter() - started
        results = {
            "model": name_or_path,
            "revision": revision,
            "snapshot": snapshot,
            "scorer": scorer.name,
            "settings": settings_of(task, options),
            "data": {
                "name": task.name,
                "family": task.family,
                "source": task.source,
                "uids": len(task.uids),
                "items": len(task.items),
                "texts": len(texts),
            },
            "metric": task.metric,
            "chance": float(np.mean([1 / len(item.candidates) for item in task.items]))
            if task.metric == "accuracy"
            else 0.0,
            "scores": summary,
            "seconds": round(seconds, 3),
            "load_seconds": round(load_seconds, 3),
            "items_per_s": round(len(task.items) / seconds, 1),
            "num_processes": accelerator.num_processes,
        }
        every.append((results, item_scores))
    return every


def results_dir(folder: Path, task: Task) -> Path:
    return Path(folder) / RESULTS_FOLDER / task.name


def evaluate_snapshot(
    accelerator,
    folder: Path,
    tasks: list[Task],
    options: ScoringOptions,
    save_item_scores: bool = False,
    boards: dict[str, TensorBoard] | None = None,
) -> list[dict]:
    """Score a saved snapshot on the tasks, write their results inside it (and their scores to
    each task's board at the snapshot's token count, so a run's curve lines up with its
    training), return them."""
    every = evaluate_model(accelerator, str(folder), tasks, options)
    if accelerator.is_main_process:
        for task, (results, item_scores) in zip(tasks, every):
            write_results(results_dir(folder, task), results, item_scores if save_item_scores else None)
            tokens = results["snapshot"]["tokens_seen"]
            if boards and tokens is not None:
                boards[task.name].scalars(tensorboard_scalars(results), step=tokens)
    accelerator.wait_for_everyone()
    return [results for results, _ in every]


def tensorboard_boards(accelerator, run_dir: Path, tasks: list[Task]) -> dict[str, TensorBoard]:
    """A run's zero-shot scalars: `tb/blimp-<task>/`, one writer per task for all the snapshots
    scored in one go (so their events are read back in the order they were written)."""
    return {
        task.name: TensorBoard(Path(run_dir) / "tb" / f"blimp-{task.name}", accelerator.is_main_process)
        for task in tasks
    }


def close_boards(boards: dict[str, TensorBoard]) -> None:
    for board in boards.values():
        board.close()


def run_snapshots(run_dir: Path) -> list[Path]:
    """A run's milestones and final model, in the order they were trained."""
    if not run_dir.is_dir():
        raise UsageError(f"--run_dir {run_dir}: no such folder")
    folders = [p.parent for p in (run_dir / "milestones").glob("*/milestone.json")]
    if (run_dir / "final" / "milestone.json").is_file():
        folders.append(run_dir / "final")
    if not folders:
        raise UsageError(
            f"--run_dir {run_dir}: no milestones/*/ or final/ snapshots (is it a train_pretrain.py run folder?)"
        )
    return sorted(folders, key=lambda f: (snapshot_info(f)["tokens_seen"] or 0, f.name == "final", f.name))


def stored_if_current(folder: Path, task: Task, options: ScoringOptions) -> dict | None:
    """A snapshot's stored results for a task, when they scored the same data with the same options."""
    stored = read_stored_results(results_dir(folder, task))
    return stored if stored is not None and stored.get("settings") == settings_of(task, options) else None


def evaluate_run(
    accelerator,
    run_dir: Path,
    tasks: list[Task],
    options: ScoringOptions,
    rescore: bool = False,
    save_item_scores: bool = False,
) -> dict[str, list[dict]]:
    """Score every snapshot of a run on every task (those already scored with the same data and
    options are read back, unless rescore), draw each task's learning curve, and return each
    task's results in snapshot order."""
    every: dict[str, list[dict]] = {task.name: [] for task in tasks}
    snapshots = run_snapshots(run_dir)  # a folder that is no run is refused before anything is written
    boards = tensorboard_boards(accelerator, run_dir, tasks)
    for number, folder in enumerate(snapshots, start=1):
        stored = {task.name: None if rescore else stored_if_current(folder, task, options) for task in tasks}
        missing = [task for task in tasks if stored[task.name] is None]
        scored = dict(
            zip(
                (t.name for t in missing),
                evaluate_snapshot(accelerator, folder, missing, options, save_item_scores, boards) if missing else [],
            )
        )
        for task in tasks:
            results = stored[task.name] or scored[task.name]
            every[task.name].append(results)
            how = "already scored" if stored[task.name] else f"{results['items_per_s']:.0f} items/s"
            log.info(
                "[%d] %s (%s tokens) %s: %s (%s)",
                number,
                folder.name,
                results["snapshot"]["tokens_seen"],
                task.name,
                headline_text(results),
                how,
            )
    close_boards(boards)
    if accelerator.is_main_process:
        for task in tasks:
            write_learning_curve(
                run_dir / RESULTS_FOLDER / task.name,
                every[task.name],
                title=f"{task.name} over training: {run_dir.name}",
            )
    accelerator.wait_for_everyone()
    return every


def summary_line(results: dict) -> str:
    data = results["data"]
    return f"{data['name']} ({data['items']} items, {results['scorer']}): {headline_text(results)}"


def report(results: dict) -> str:
    """The console report of one task: the table, then the summary line."""
    return f"{score_table(results)}\n{summary_line(results)}"


def check_tasks_fit(tasks: list[Task], tokenizer, positions: int) -> None:
    """Refuse, before training, tasks whose texts will not fit the model being trained."""
    for task in tasks:
        encoded = tokenizer([text for text, _ in task.texts()], add_special_tokens=False)["input_ids"]
        longest = max(len(ids) for ids in encoded) + 2  # BOS / CLS+SEP
        if longest > positions:
            raise UsageError(
                f"--blimp_at_end: the longest text of {task.name} ({task.source}) takes {longest} tokens with "
                f"this tokenizer, more than the model's {positions} positions; raise --max_position_embeddings "
                f"or pass --blimp_at_end false"
            )
