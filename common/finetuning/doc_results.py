"""Document-classification reports: accuracy per model, batch size and epoch, macro-F1, confusion matrices.

The table follows the BabyLM ELECTRA project's (docs/reference-projects.md, "BabyLM ELECTRA and
document classification"): one row per model and batch size, test accuracy after each epoch, and
the macro-F1 of the last epoch beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from common.files import csv_text, markdown_table, save_figure, write_atomically


def document_metrics(predicted: np.ndarray, true: np.ndarray) -> dict[str, float]:
    return {
        "accuracy": float(accuracy_score(true, predicted)),
        "macro_f1": float(f1_score(true, predicted, average="macro", zero_division=0)),
    }


def epoch_rows(runs: list[dict]) -> list[dict]:
    """One CSV row per model, batch size and epoch (percentages)."""
    return [
        {
            "model": run["model"],
            "batch_size": run["batch_size"],
            "epoch": epoch["epoch"],
            "train_loss": round(epoch["train_loss"], 4),
            **{
                f"{split}_{name}": round(100 * value, 2)
                for split, values in epoch["metrics"].items()
                for name, value in values.items()
            },
        }
        for run in runs
        for epoch in run["history"]
    ]


def accuracy_table(runs: list[dict]) -> tuple[list[dict], list[str]]:
    """Model | batch size | test accuracy per epoch | test macro-F1 after the last epoch (percent)."""
    epochs = max(len(run["history"]) for run in runs)
    rows = []
    for run in runs:
        row = {"model": run["model"], "batch size": run["batch_size"]}
        for number in range(1, epochs + 1):
            done = [e for e in run["history"] if e["epoch"] == number]
            row[f"epoch {number}"] = 100 * done[0]["metrics"]["test"]["accuracy"] if done else None
        row["macro-F1"] = 100 * run["history"][-1]["metrics"]["test"]["macro_f1"]
        rows.append(row)
    return rows, ["model", "batch size", *[f"epoch {n}" for n in range(1, epochs + 1)], "macro-F1"]


def counts_table(counts: dict[str, dict[str, int]]) -> tuple[list[dict], list[str]]:
    labels = sorted({label for split in counts.values() for label in split})
    rows = [{"label": label, **{split: counts[split].get(label, 0) for split in counts}} for label in labels]
    rows.append({"label": "total", **{split: sum(values.values()) for split, values in counts.items()}})
    return rows, ["label", *counts]


def write_reports(
    output_dir: Path, runs: list[dict], counts: dict, labels: list[str], summary: dict
) -> dict[str, Path]:
    """results.md (the tables), results.csv (every epoch), label_counts.csv, results.json, and one
    confusion-matrix PNG per model (a panel per batch size, test split, last epoch)."""
    output_dir = Path(output_dir)
    table, columns = accuracy_table(runs)
    count_rows, count_columns = counts_table(counts)
    markdown = (
        "## Test accuracy (%) after each epoch, and macro-F1 (%) after the last\n\n"
        + markdown_table(table, columns)
        + "\n\n## Documents per label\n\n"
        + markdown_table(count_rows, count_columns)
        + "\n"
    )
    paths = {
        "markdown": output_dir / "results.md",
        "csv": output_dir / "results.csv",
        "counts": output_dir / "label_counts.csv",
        "json": output_dir / "results.json",
    }
    rows = epoch_rows(runs)
    write_atomically(paths["csv"], csv_text(rows, list(rows[0])))
    write_atomically(paths["counts"], csv_text(count_rows, count_columns))
    for model in dict.fromkeys(run["model"] for run in runs):
        path = output_dir / f"confusion_{model}.png"
        draw_confusion([run for run in runs if run["model"] == model], labels, path)
        paths[f"confusion {model}"] = path
    write_atomically(paths["markdown"], markdown)
    write_atomically(
        paths["json"],
        json.dumps(
            {**summary, "label_counts": counts, "labels": labels, "runs": [strip_predictions(run) for run in runs]},
            indent=2,
        ),
    )
    return paths


def strip_predictions(run: dict) -> dict:
    return {key: value for key, value in run.items() if key != "test_predictions"}


def draw_confusion(runs: list[dict], labels: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = 1.2 + 0.45 * len(labels)
    figure, axes = plt.subplots(1, len(runs), figsize=(size * len(runs) + 1, size + 0.8), squeeze=False)
    for axis, run in zip(axes[0], runs):
        predicted, true = run["test_predictions"]
        matrix = confusion_matrix(true, predicted, labels=list(range(len(labels))))
        axis.imshow(matrix, cmap="Blues")
        for (row, column), count in np.ndenumerate(matrix):
            axis.text(
                column,
                row,
                str(count),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if count > matrix.max() / 2 else "black",
            )
        axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
        axis.set_yticks(range(len(labels)), labels, fontsize=7)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        axis.set_title(
            f"batch {run['batch_size']}: accuracy {100 * run['history'][-1]['metrics']['test']['accuracy']:.1f}%",
            fontsize=9,
        )
    figure.suptitle(f"{runs[0]['model']}, test split, after epoch {runs[0]['history'][-1]['epoch']}")
    figure.tight_layout()
    save_figure(figure, path)
