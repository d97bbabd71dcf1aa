"""Runs side by side: the figure a data-efficiency paper shows (one line per run, a task's score
against tokens seen, one panel per task) and its numbers as one CSV.

A run is told apart in the legend by the training settings that differ between the runs
compared (model size, vocabulary, data set, ...), read from each run's `config.yaml`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from common.errors import UsageError
from common.evaluation.zero_shot_results import OVERALL, chance_level, progress_axis
from common.files import csv_text, save_figure, write_atomically

# Settings that differ between any two runs without making them different experiments.
BOOKKEEPING = {
    "output_dir",
    "overwrite_output_dir",
    "resume_from_checkpoint",
    "cache_dir",
    "logging_steps",
    "eval_steps",
    "checkpointing_steps",
    "checkpoints_total_limit",
    "push_to_hub",
    "hub_model_id",
    "hub_private",
    "milestone_store",
    "blimp_at_end",
    "blimp_dir",
    # how fast, not what: the same run compiled or eager, fused or not, learns the same
    "torch_compile",
    "compile_mode",
    "fused_loss",
    "report_to",
    "tracker_project",
}
LEGEND_SETTINGS = 4  # at most this many differing settings in a run's legend entry
# What milestone.json records of the model actually trained.
MODEL_FACTS = ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
               "intermediate_size", "num_experts", "seq_length")  # fmt: skip


def is_run(folder: Path) -> bool:
    return (folder / "final" / "milestone.json").is_file() or any((folder / "milestones").glob("*/milestone.json"))


def runs_to_compare(paths: list[str]) -> list[Path]:
    """Run folders, and the runs inside a folder of runs (a grid's output folder), each once."""
    runs: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise UsageError(f"--compare {path}: no such folder")
        inside = [] if is_run(path) else sorted(p for p in path.iterdir() if p.is_dir() and is_run(p))
        if not is_run(path) and not inside:
            raise UsageError(
                f"--compare {path}: neither a train_pretrain.py run folder (milestones/, final/) nor a folder of them"
            )
        runs += [path] if is_run(path) else inside
    unique = list(dict.fromkeys(run.resolve() for run in runs))
    names = [run.name for run in unique]
    if len(set(names)) < len(names):  # the legend and the CSV name runs by folder name
        raise UsageError(f"--compare: two runs share a folder name ({', '.join(names)}); rename one")
    return unique


def run_settings(run: Path) -> dict:
    """A run's training options (its config.yaml), with the model's resolved shape from its last
    snapshot's milestone.json over the options a preset or default left empty (`hidden_size:
    null` means the size preset's value: the legend should say which)."""
    path = run / "config.yaml"
    recorded = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}
    settings = dict(recorded.get("config", recorded) if isinstance(recorded, dict) else {})
    snapshots = [run / "final"] + sorted((run / "milestones").glob("*"), reverse=True)
    info_path = next((folder / "milestone.json" for folder in snapshots if (folder / "milestone.json").is_file()), None)
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path else {}
    settings.update({key: info[key] for key in MODEL_FACTS if info.get(key) is not None})
    return settings


def differing_settings(settings: list[dict]) -> list[str]:
    """The options whose values are not the same in every run, bookkeeping left out."""
    keys = sorted({key for one in settings for key in one} - BOOKKEEPING)
    return [key for key in keys if len({repr(one.get(key)) for one in settings}) > 1]


def run_labels(runs: list[Path]) -> dict[str, str]:
    """Legend entries: `name (key=value, ...)` with the settings that tell the runs apart."""
    settings = [run_settings(run) for run in runs]
    keys = differing_settings(settings)[:LEGEND_SETTINGS]
    labels = {}
    for run, one in zip(runs, settings):
        shown = ", ".join(f"{key}={short(one.get(key))}" for key in keys)
        labels[run.name] = f"{run.name} ({shown})" if shown else run.name
    return labels


def short(value) -> str:
    text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return text if len(text) <= 24 else "…" + text[-23:]


def comparison_rows(every: dict[str, dict[str, list[dict]]]) -> list[dict]:
    """One row per run, task and snapshot: its score (and with ties right) at its tokens and words."""
    rows = []
    for run, tasks in every.items():
        for task, results in tasks.items():
            for r in results:
                overall = r["scores"][OVERALL]
                rows.append(
                    {
                        "run": run,
                        "task": task,
                        "snapshot": r["snapshot"]["name"],
                        "tokens_seen": r["snapshot"]["tokens_seen"],
                        "words_seen": r["snapshot"].get("words_seen"),
                        "metric": r["metric"],
                        "score": overall[r["metric"]],
                        "score_ties_right": overall.get("accuracy_ties_right"),
                    }
                )
    return rows


def write_comparison(
    folder: Path, every: dict[str, dict[str, list[dict]]], labels: dict[str, str]
) -> tuple[Path, Path]:
    """comparison.csv and comparison.png into folder: one panel per task, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = comparison_rows(every)
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = folder / "comparison.csv", folder / "comparison.png"
    columns = ["run", "task", "snapshot", "tokens_seen", "words_seen", "metric", "score", "score_ties_right"]
    write_atomically(csv_path, csv_text(rows, columns))

    tasks = list(dict.fromkeys(task for tasks in every.values() for task in tasks))
    across = min(3, len(tasks))
    down = -(-len(tasks) // across)
    legend_rows = len(every)  # one legend line per run, below the panels
    height = 4 * down + 0.3 * legend_rows + 0.4
    figure, panels = plt.subplots(down, across, figsize=(5.5 * across, height), squeeze=False)
    for axes, task in zip(panels.flat, tasks):
        tokens = []
        for run, by_task in every.items():
            results = sorted(by_task.get(task, []), key=lambda r: r["snapshot"]["tokens_seen"] or 0)
            points = [(r["snapshot"]["tokens_seen"] or 0, r["scores"][OVERALL][r["metric"]]) for r in results]
            points = [(x, y) for x, y in points if y is not None]
            if points:
                axes.plot(*zip(*points), marker="o", markersize=3, linewidth=1.4, label=labels[run])
                tokens += [x for x, _ in points]
        last = next(r[-1] for by_task in every.values() if (r := by_task.get(task)))
        axes.axhline(chance_level(last), color="grey", linestyle=":", linewidth=1)
        progress_axis(axes, np.array(tokens, dtype=float), "tokens seen")
        axes.set_ylabel("Spearman correlation" if last["metric"] == "spearman" else "accuracy")
        axes.set_title(task, fontsize=10)
        axes.grid(alpha=0.3)
    for axes in list(panels.flat)[len(tasks) :]:
        axes.axis("off")
    handles, names = panels.flat[0].get_legend_handles_labels()
    figure.legend(handles, names, loc="lower center", ncol=1, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, (0.3 * legend_rows + 0.3) / height, 1, 1))
    save_figure(figure, png_path)
    return csv_path, png_path
