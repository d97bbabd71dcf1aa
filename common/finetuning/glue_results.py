"""GLUE results: one JSON file per model and task, and the gathered table and bar chart.

`results/<model>/<task>.json` holds each seed's best dev epoch (metrics, epochs trained, history)
and their mean. `gather` reads every such file under a folder into `glue_results.csv` (model x
task score, plus the average over the model's tasks), `glue_metrics.csv` (every metric, mean and
standard deviation over seeds) and `glue_results.png` (bars per task, one per model).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from common.errors import UsageError
from common.files import csv_text, save_figure, write_atomically
from common.finetuning.glue import GLUE_TASKS, GlueTask

AVERAGE = "average"


def flat_metrics(metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    """One name per number: `accuracy` for a task with one dev split, `matched_accuracy` and
    `mismatched_accuracy` for MNLI."""
    if list(metrics) == ["dev"]:
        return dict(metrics["dev"])
    return {f"{split}_{name}": value for split, values in metrics.items() for name, value in values.items()}


def glue_score(metrics: dict[str, dict[str, float]]) -> float:
    """The task's number on the leaderboard: the mean of its metrics over its dev splits (MRPC:
    F1 and accuracy; STS-B: Pearson and Spearman; MNLI: matched and mismatched accuracy)."""
    return float(np.mean(list(flat_metrics(metrics).values())))


def score_of(names: tuple[str, ...], metrics: dict[str, dict[str, float]]) -> float:
    """The mean of the named metrics over the dev splits (the BabyLM pipeline's score is one
    metric: accuracy, or F1 for MRPC and QQP)."""
    return float(np.mean([values[name] for values in metrics.values() for name in names]))


def task_result(
    task: GlueTask, model: dict, seeds: dict[int, dict], settings: dict, examples: dict, scoring: dict | None = None
) -> dict:
    """The JSON record of one model on one task over its seeds (each seed: FinetuneOutcome.record());
    `scoring`: the data's layout and the metrics its score averages."""
    per_seed = {seed: flat_metrics(record["metrics"]) for seed, record in seeds.items()}
    names = list(next(iter(per_seed.values())))
    scores = [record["score"] for record in seeds.values()]
    return {
        "task": task.name,
        "model": model,
        "metrics": {name: float(np.mean([m[name] for m in per_seed.values()])) for name in names},
        "metrics_std": {name: float(np.std([m[name] for m in per_seed.values()])) for name in names},
        "score": float(np.mean(scores)),
        "score_std": float(np.std(scores)),
        "scoring": scoring or {"layout": "GLUE", "score": list(task.metrics)},
        "hyperparameters": settings,
        "examples": examples,
        "seeds": [{"seed": seed, **record} for seed, record in seeds.items()],
    }


def check_results_folder(folder: Path, model: dict) -> None:
    """Refuse to write one model's results over another's: two models whose folder names give the
    same label (two runs both called `run`, say) would otherwise share `results/<label>/`."""
    config_file = Path(folder) / "config.yaml"
    if not config_file.is_file():
        return
    saved = (yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}).get("config", {})
    theirs = (saved.get("model_name_or_path"), saved.get("revision"))
    if not same_model(theirs, (model["name_or_path"], model["revision"])):
        raise UsageError(
            f"{folder} holds the results of another model ({theirs[0]}{'@' + theirs[1] if theirs[1] else ''}); "
            f"give this one another name with --model_label, or another --output_dir"
        )


def same_model(first: tuple[str | None, str | None], second: tuple[str | None, str | None]) -> bool:
    """The same folder (however it is written) or the same Hub id at the same revision."""
    if first[1] != second[1] or first[0] is None or second[0] is None:
        return first == second
    if Path(first[0]).exists() and Path(second[0]).exists():
        return Path(first[0]).resolve() == Path(second[0]).resolve()
    return first[0] == second[0]


def write_task_result(folder: Path, result: dict) -> Path:
    path = Path(folder) / f"{result['task']}.json"
    write_atomically(path, json.dumps(result, indent=2))
    return path


def read_task_results(results_dir: Path) -> list[dict]:
    """Every `<model>/<task>.json` under the folder (files that are not GLUE results are skipped)."""
    if not results_dir.is_dir():
        raise UsageError(f"gather {results_dir}: no such folder")
    results = []
    for path in sorted(results_dir.glob("*/*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise UsageError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None
        if isinstance(record, dict) and record.get("task") in GLUE_TASKS and "score" in record:
            results.append(record)
    if not results:
        raise UsageError(f"gather {results_dir}: no GLUE results (<model>/<task>.json) in it")
    return results


def score_table(results: list[dict]) -> tuple[list[dict], list[str]]:
    """Rows of model -> task score (x100), and the average over each model's tasks; the columns."""
    tasks = [name for name in GLUE_TASKS if any(r["task"] == name for r in results)]
    models = list(dict.fromkeys(r["model"]["label"] for r in results))
    rows = []
    for model in models:
        scores = {r["task"]: 100 * r["score"] for r in results if r["model"]["label"] == model}
        row = {"model": model, **{task: round(scores[task], 2) if task in scores else None for task in tasks}}
        row[AVERAGE] = round(float(np.mean(list(scores.values()))), 2)
        row["tasks"] = len(scores)
        rows.append(row)
    return rows, ["model", *tasks, AVERAGE, "tasks"]


def metric_rows(results: list[dict]) -> list[dict]:
    return [
        {
            "model": r["model"]["label"],
            "task": r["task"],
            "metric": name,
            "mean": value,
            "std": r["metrics_std"][name],
            "seeds": len(r["seeds"]),
        }
        for r in results
        for name, value in r["metrics"].items()
    ]


def gather(results_dir: Path, output_dir: Path | None = None) -> tuple[dict[str, Path], list[dict], list[str]]:
    """Write the table, the per-metric CSV and the bar chart; return their paths and the table."""
    results = read_task_results(results_dir)
    output_dir = Path(output_dir or results_dir)
    rows, columns = score_table(results)
    paths = {
        "table": output_dir / "glue_results.csv",
        "metrics": output_dir / "glue_metrics.csv",
        "plot": output_dir / "glue_results.png",
    }
    write_atomically(paths["table"], csv_text(rows, columns))
    write_atomically(
        paths["metrics"], csv_text(metric_rows(results), ["model", "task", "metric", "mean", "std", "seeds"])
    )
    draw_bars(rows, columns[1:-1], paths["plot"])
    return paths, rows, columns


def draw_bars(rows: list[dict], groups: list[str], path: Path) -> None:
    """Grouped bars: one group per task (and the average), one bar per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = 0.8 / len(rows)
    figure, axes = plt.subplots(figsize=(max(6.0, 1.1 * len(groups) + 2), 4.5))
    positions = np.arange(len(groups))
    for i, row in enumerate(rows):
        heights = [row[g] if row[g] is not None else 0.0 for g in groups]
        axes.bar(positions + (i - (len(rows) - 1) / 2) * width, heights, width, label=row["model"])
    axes.set_xticks(positions, groups)
    axes.axhline(0, color="black", linewidth=0.8)
    axes.set_ylabel("dev score x 100 (mean over seeds)")
    axes.set_title("GLUE")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    save_figure(figure, path)
