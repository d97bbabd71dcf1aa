"""Zero-shot scores from candidate scores, and their reports: table, JSON, CSV, learning curve,
TensorBoard.

An item is right only when its first (right) candidate scores strictly higher than every other:
a tie counts as wrong, so a model that gives every text the same score gets 0%, not 100%. The
BabyLM pipeline counts a tie as right (its argmax picks the first of equal scores, and the first
is the right one), so `accuracy_ties_right` is reported beside `accuracy`, with the tie count:
that is the number to compare with its leaderboard.

Accuracies are averaged over uids (BLiMP's paradigms, EWoK's domains: the pipeline's macro
average), fields average their uids, and entity tracking's headline averages its files (each the
mean of its numops groups), as the pipeline does. WUG reports the Spearman correlation between the
model's preference for the first candidate (softmax over the candidates' scores) and the human
ratio.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from common.evaluation.tasks import Task
from common.files import csv_text, save_figure, write_atomically

OVERALL = "overall"


# --- decisions ---------------------------------------------------------------------------------


def candidate_matrix(task: Task, scores: dict[tuple[str, int], float]) -> np.ndarray:
    """(items, most candidates) scores, -inf where an item has fewer candidates than the widest."""
    width = max(len(item.candidates) for item in task.items)
    matrix = np.full((len(task.items), width), -np.inf)
    for row, item in enumerate(task.items):
        matrix[row, : len(item.candidates)] = [scores[candidate] for candidate in item.candidates]
    return matrix


def outcomes(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(correct, tie) per item: correct when the first candidate beats every other strictly; a
    tie when it equals the best of the others."""
    best_other = matrix[:, 1:].max(axis=1)
    return matrix[:, 0] > best_other, matrix[:, 0] == best_other


def preferences(matrix: np.ndarray) -> np.ndarray:
    """The model's probability for the first candidate: softmax over the candidates' scores."""
    shifted = np.exp(matrix - matrix.max(axis=1, keepdims=True))
    return shifted[:, 0] / shifted.sum(axis=1)


def spearman(model: np.ndarray, human: np.ndarray) -> float | None:
    """Spearman's rho (average ranks for ties); None when either side is constant."""
    if len(model) < 2 or np.all(model == model[0]) or np.all(human == human[0]):
        return None
    from scipy.stats import spearmanr  # here, not at the top: scipy.stats adds 0.25 s to every launch

    return float(spearmanr(model, human)[0])


# --- summaries ---------------------------------------------------------------------------------


def accuracy_summary(task: Task, correct: np.ndarray, ties: np.ndarray) -> dict:
    """{"overall": {...}, "fields": {field: {...}}, "uids": {uid: {...}}} with accuracies in [0, 1]."""
    by_uid: dict[str, list[int]] = defaultdict(list)
    for index, item in enumerate(task.items):
        by_uid[item.uid].append(index)
    uids = {}
    for uid, indices in by_uid.items():
        first = task.items[indices[0]]
        right, tied = int(correct[indices].sum()), int(ties[indices].sum())
        uids[uid] = {
            "field": first.field,
            "linguistics_term": first.linguistics_term,
            "accuracy": right / len(indices),
            "accuracy_ties_right": (right + tied) / len(indices),
            "correct": right,
            "items": len(indices),
            "ties": tied,
        }
    fields = {
        name: group_summary([u for u in uids.values() if u["field"] == name])
        for name in sorted({u["field"] for u in uids.values()} - {""})
    }
    headline_members = list(fields.values()) if task.headline == "fields" else list(uids.values())
    return {
        OVERALL: {**group_summary(headline_members), "uids": len(uids)},
        "fields": fields,
        "uids": dict(sorted(uids.items(), key=lambda entry: (entry[1]["field"], entry[0]))),
    }


def group_summary(members: list[dict]) -> dict:
    """The macro average of the members' accuracies, with the micro average over their items."""
    items = sum(m["items"] for m in members)
    correct = sum(m["correct"] for m in members)
    return {
        "accuracy": float(np.mean([m["accuracy"] for m in members])),
        "accuracy_ties_right": float(np.mean([m["accuracy_ties_right"] for m in members])),
        "micro_accuracy": correct / items,
        "items": items,
        "correct": correct,
        "ties": sum(m["ties"] for m in members),
    }


def correlation_summary(task: Task, preference: np.ndarray) -> dict:
    """{"overall": {"spearman", "items"}, "uids": {uid: {...}}}: over all items (the pipeline's
    number) and per file."""
    human = np.array([item.ratio for item in task.items], dtype=float)
    by_uid: dict[str, list[int]] = defaultdict(list)
    for index, item in enumerate(task.items):
        by_uid[item.uid].append(index)
    uids = {
        uid: {"spearman": spearman(preference[indices], human[indices]), "items": len(indices)}
        for uid, indices in by_uid.items()
    }
    return {OVERALL: {"spearman": spearman(preference, human), "items": len(task.items)}, "uids": uids}


def task_scores(task: Task, matrix: np.ndarray) -> tuple[dict, list[dict]]:
    """(summary, one record per item) of a task from its candidate-score matrix."""
    if task.metric == "spearman":
        preference = preferences(matrix)
        summary = correlation_summary(task, preference)
        extra = [{"preference": float(p), "ratio": item.ratio} for p, item in zip(preference, task.items)]
    else:
        correct, ties = outcomes(matrix)
        summary = accuracy_summary(task, correct, ties)
        extra = [{"correct": bool(c), "tie": bool(t)} for c, t in zip(correct, ties)]
    records = [
        {
            "UID": item.uid,
            "item_id": item.item_id,
            "texts": [text for text, _ in item.candidates],
            "scores": [float(score) for score in row[: len(item.candidates)]],
            **more,
        }
        for item, row, more in zip(task.items, matrix, extra)
    ]
    return summary, records


def headline(results: dict) -> float | None:
    """A task's one number: its overall accuracy (ties wrong) or Spearman correlation."""
    return results["scores"][OVERALL][results["metric"]]


def headline_text(results: dict) -> str:
    overall, metric = results["scores"][OVERALL], results["metric"]
    if metric == "spearman":
        rho = overall["spearman"]
        return f"Spearman {rho:+.3f}" if rho is not None else "Spearman undefined (a constant preference)"
    return (
        f"{100 * overall['accuracy']:.2f}% ({100 * overall['accuracy_ties_right']:.2f}% with ties right, "
        f"{overall['ties']} ties)"
    )


# --- tables and files --------------------------------------------------------------------------


def summary_rows(results: dict) -> list[dict]:
    """One row per uid, then per field, then overall: the table's and the CSV's rows."""
    scores = results["scores"]
    if results["metric"] == "spearman":
        rows = [{"level": "uid", "name": uid, **u} for uid, u in scores["uids"].items()]
        return rows + [{"level": OVERALL, "name": OVERALL, **scores[OVERALL]}]
    counts = ("accuracy", "accuracy_ties_right", "items", "correct", "ties")
    rows = [
        {"level": "uid", "name": uid, "field": u["field"], **{k: u[k] for k in counts}, "micro_accuracy": None}
        for uid, u in scores["uids"].items()
    ]
    rows += [{"level": "field", "name": name, "field": name, **f} for name, f in scores["fields"].items()]
    overall = {key: value for key, value in scores[OVERALL].items() if key != "uids"}
    return rows + [{"level": OVERALL, "name": OVERALL, "field": "", **overall}]


def csv_columns(metric: str) -> list[str]:
    if metric == "spearman":
        return ["level", "name", "spearman", "items"]
    return ["level", "name", "field", "accuracy", "accuracy_ties_right", "micro_accuracy", "items", "correct", "ties"]


def percent(value: float | None, width: int) -> str:
    return f"{100 * value:{width}.2f}" if value is not None else " " * width


def score_table(results: dict) -> str:
    """The console table of one task (accuracies in %), uid rows first, then fields and overall."""
    rows = summary_rows(results)
    width = max(len("uid"), *(len(row["name"]) + 2 for row in rows))
    if results["metric"] == "spearman":
        lines = [f"{'file':<{width}}  {'spearman':>8}  {'items':>6}"]
        for row in rows:
            rho = f"{row['spearman']:+8.3f}" if row["spearman"] is not None else f"{'n/a':>8}"
            lines.append(f"{row['name']:<{width}}  {rho}  {row['items']:>6}")
        return "\n".join(lines)
    field_width = max(len("field"), *(len(row["field"]) for row in rows))
    header = (
        f"{'uid':<{width}}  {'field':<{field_width}}  {'acc %':>6}  {'ties ok %':>9}  {'micro %':>7}  "
        f"{'items':>6}  {'ties':>5}"
    )
    lines = [header]
    for before, row in zip([None, *rows], rows):
        if before is not None and before["level"] != row["level"]:
            lines.append("-" * len(header))
        name = row["name"] if row["level"] == "uid" else f"[{row['name']}]"
        lines.append(
            f"{name:<{width}}  {row['field']:<{field_width}}  {percent(row['accuracy'], 6)}  "
            f"{percent(row['accuracy_ties_right'], 9)}  {percent(row['micro_accuracy'], 7)}  "
            f"{row['items']:>6}  {row['ties']:>5}"
        )
    return "\n".join(lines)


def write_results(folder: Path, results: dict, item_scores: list[dict] | None = None) -> None:
    """results.json, results.csv and (when given) item_scores.jsonl into folder."""
    folder.mkdir(parents=True, exist_ok=True)
    if item_scores is not None:
        write_atomically(folder / "item_scores.jsonl", "".join(json.dumps(row) + "\n" for row in item_scores))
    columns = csv_columns(results["metric"])
    write_atomically(folder / "results.csv", csv_text(summary_rows(results), columns))
    write_atomically(folder / "results.json", json.dumps(results, indent=2))  # last: it marks the folder done


def read_stored_results(folder: Path) -> dict | None:
    path = folder / "results.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


# --- learning curves over a run's snapshots ----------------------------------------------------


def curve_groups(results: list[dict]) -> list[str]:
    """The lines a curve draws besides the headline: the fields, else up to 12 uids."""
    last = results[-1]["scores"]
    if last.get("fields"):
        return list(last["fields"])
    uids = list(last["uids"])
    return uids if 1 < len(uids) <= 12 else []


def curve_rows(results: list[dict]) -> tuple[list[dict], list[str]]:
    """One row per snapshot (by tokens seen): the headline (both tie rules) and each group's score."""
    groups = curve_groups(results)
    metric = results[-1]["metric"]
    rows = []
    for r in sorted(results, key=lambda r: (r["snapshot"]["tokens_seen"] or 0, r["snapshot"]["name"])):
        scores = r["scores"]
        level = scores.get("fields") or scores["uids"]
        rows.append(
            {
                "snapshot": r["snapshot"]["name"],
                "tokens_seen": r["snapshot"]["tokens_seen"],
                "words_seen": r["snapshot"].get("words_seen"),
                "step": r["snapshot"]["step"],
                OVERALL: scores[OVERALL][metric],
                **({"overall_ties_right": scores[OVERALL]["accuracy_ties_right"]} if metric == "accuracy" else {}),
                **{name: level.get(name, {}).get(metric) for name in groups},
            }
        )
    return rows, groups


def chance_level(results: dict) -> float:
    """What guessing scores: 1/candidates for accuracy (0.5 for pairs), 0 for a correlation."""
    return results.get("chance", 0.0)


def write_learning_curve(folder: Path, results: list[dict], title: str) -> tuple[Path, Path]:
    """learning_curve.csv and learning_curve.png: the task's score against tokens seen (and words
    seen, when the snapshots record them), one line per group plus the headline, chance dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, groups = curve_rows(results)
    metric = results[-1]["metric"]
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = folder / "learning_curve.csv", folder / "learning_curve.png"
    extra = ["overall_ties_right"] if metric == "accuracy" else []
    columns = ["snapshot", "tokens_seen", "words_seen", "step", OVERALL, *extra, *groups]
    write_atomically(csv_path, csv_text(rows, columns))

    axes_by = ["tokens_seen"] + (["words_seen"] if all(row["words_seen"] is not None for row in rows) else [])
    figure, panels = plt.subplots(1, len(axes_by), figsize=(7 * len(axes_by), 4.5), squeeze=False)
    for axes, x_name in zip(panels[0], axes_by):
        x = np.array([row[x_name] or 0 for row in rows], dtype=float)
        for name in groups:
            points = [(value, row[name]) for value, row in zip(x, rows) if row[name] is not None]
            if points:
                axes.plot(*zip(*points), marker="o", markersize=3, linewidth=1.1, label=name)
        axes.plot(x, [row[OVERALL] for row in rows], marker="o", color="black", linewidth=2.4, label=OVERALL)
        axes.axhline(chance_level(results[-1]), color="grey", linestyle=":", linewidth=1, label="chance")
        progress_axis(axes, x, x_name.replace("_", " "))
        axes.set_ylabel("Spearman correlation" if metric == "spearman" else "accuracy")
        axes.set_ylim(-1 if metric == "spearman" else 0, 1)
        axes.set_title(title, fontsize=10)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    save_figure(figure, png_path)
    return csv_path, png_path


def progress_axis(axes, x: np.ndarray, label: str) -> None:
    """A log x axis when the snapshots span more than 20x (a symlog one keeps an init at 0)."""
    positive = x[x > 0]
    if positive.size and positive.max() / positive.min() > 20:
        axes.set_xscale("symlog", linthresh=positive.min())
    axes.set_xlabel(label)


def tensorboard_scalars(results: dict) -> dict[str, float | None]:
    """<task>/overall (and overall_ties_right), <task>/field/<field>, <task>/uid/<uid>."""
    task, scores, metric = results["data"]["name"], results["scores"], results["metric"]
    values = {f"{task}/{OVERALL}": scores[OVERALL][metric]}
    if metric == "accuracy":
        values[f"{task}/{OVERALL}_ties_right"] = scores[OVERALL]["accuracy_ties_right"]
    values.update({f"{task}/field/{name}": f[metric] for name, f in scores.get("fields", {}).items()})
    values.update({f"{task}/uid/{uid}": u[metric] for uid, u in scores["uids"].items()})
    return values
