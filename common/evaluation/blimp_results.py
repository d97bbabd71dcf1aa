"""BLiMP accuracies from pair scores, and their reports: table, JSON, CSV, learning curve, TensorBoard.

A pair is right only when the grammatical sentence scores strictly higher: a tie counts as
wrong, so a model that gives every sentence the same score gets 0%, not 100%. The overall and
per-field accuracies are macro averages over paradigms (BLiMP's convention), with the micro
average over pairs beside them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from common.evaluation.minimal_pairs import MinimalPair
from common.files import csv_text, save_figure, write_atomically

OVERALL = "overall"


def pair_outcomes(good_scores: np.ndarray, bad_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(correct, tie) per pair: correct only when the good sentence scores strictly higher."""
    return good_scores > bad_scores, good_scores == bad_scores


def accuracy_summary(pairs: list[MinimalPair], correct: np.ndarray, ties: np.ndarray) -> dict:
    """{"overall": {...}, "fields": {field: {...}}, "paradigms": {uid: {...}}} with accuracies in [0, 1]."""
    by_paradigm: dict[str, list[int]] = defaultdict(list)
    for index, pair in enumerate(pairs):
        by_paradigm[pair.uid].append(index)
    paradigms = {}
    for uid, indices in by_paradigm.items():
        first = pairs[indices[0]]
        right = int(correct[indices].sum())
        paradigms[uid] = {
            "field": first.field,
            "linguistics_term": first.linguistics_term,
            "accuracy": right / len(indices),
            "correct": right,
            "pairs": len(indices),
            "ties": int(ties[indices].sum()),
        }
    fields = {
        name: group_summary([p for p in paradigms.values() if p["field"] == name])
        for name in sorted({p["field"] for p in paradigms.values()})
    }
    return {
        OVERALL: group_summary(list(paradigms.values())),
        "fields": fields,
        "paradigms": dict(sorted(paradigms.items(), key=lambda item: (item[1]["field"], item[0]))),
    }


def group_summary(paradigms: list[dict]) -> dict:
    pairs = sum(p["pairs"] for p in paradigms)
    correct = sum(p["correct"] for p in paradigms)
    return {
        "accuracy": float(np.mean([p["accuracy"] for p in paradigms])),
        "micro_accuracy": correct / pairs,
        "paradigms": len(paradigms),
        "pairs": pairs,
        "correct": correct,
        "ties": sum(p["ties"] for p in paradigms),
    }


def paradigm_table(summary: dict) -> str:
    """The console table: one row per paradigm, then per field, then overall (accuracy in %)."""
    rows = [(uid, p["field"], p["accuracy"], None, p["pairs"], p["ties"]) for uid, p in summary["paradigms"].items()]
    rows += [
        (f"[{name}]", name, f["accuracy"], f["micro_accuracy"], f["pairs"], f["ties"])
        for name, f in summary["fields"].items()
    ]
    o = summary[OVERALL]
    rows.append((f"[{OVERALL}]", "", o["accuracy"], o["micro_accuracy"], o["pairs"], o["ties"]))
    width = max(len(row[0]) for row in rows)
    field_width = max(len("field"), *(len(row[1]) for row in rows))
    lines = [
        f"{'paradigm':<{width}}  {'field':<{field_width}}  {'acc %':>6}  {'micro %':>7}  {'pairs':>6}  {'ties':>5}"
    ]
    for number, (name, field, accuracy, micro, pairs, ties) in enumerate(rows):
        if number == len(summary["paradigms"]):
            lines.append("-" * len(lines[0]))
        micro_text = f"{100 * micro:7.2f}" if micro is not None else " " * 7
        lines.append(
            f"{name:<{width}}  {field:<{field_width}}  {100 * accuracy:6.2f}  {micro_text}  {pairs:>6}  {ties:>5}"
        )
    return "\n".join(lines)


def csv_rows(summary: dict) -> list[dict]:
    rows = [
        {
            "level": "paradigm",
            "name": uid,
            "field": p["field"],
            "accuracy": p["accuracy"],
            "micro_accuracy": p["accuracy"],
            "pairs": p["pairs"],
            "correct": p["correct"],
            "ties": p["ties"],
        }
        for uid, p in summary["paradigms"].items()
    ]
    rows += [{"level": "field", "name": name, "field": name, **counts_of(f)} for name, f in summary["fields"].items()]
    rows.append({"level": OVERALL, "name": OVERALL, "field": "", **counts_of(summary[OVERALL])})
    return rows


def counts_of(group: dict) -> dict:
    return {key: group[key] for key in ("accuracy", "micro_accuracy", "pairs", "correct", "ties")}


def write_results(folder: Path, results: dict, pair_scores: list[dict] | None = None) -> None:
    """results.json, results.csv and (when given) pair_scores.jsonl into folder."""
    folder.mkdir(parents=True, exist_ok=True)
    if pair_scores is not None:
        write_atomically(folder / "pair_scores.jsonl", "".join(json.dumps(row) + "\n" for row in pair_scores))
    columns = ["level", "name", "field", "accuracy", "micro_accuracy", "pairs", "correct", "ties"]
    write_atomically(folder / "results.csv", csv_text(csv_rows(results["accuracy"]), columns))
    write_atomically(folder / "results.json", json.dumps(results, indent=2))  # last: it marks the folder done


def read_snapshot_results(folder: Path) -> dict | None:
    path = folder / "results.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


# --- learning curves over a run's milestones ---------------------------------------------------


def curve_rows(results: list[dict]) -> tuple[list[dict], list[str]]:
    """One row per snapshot (by tokens seen): overall macro/micro and each field's accuracy."""
    fields = sorted({name for r in results for name in r["accuracy"]["fields"]})
    rows = []
    for r in sorted(results, key=lambda r: (r["snapshot"]["tokens_seen"], r["snapshot"]["name"])):
        accuracy = r["accuracy"]
        rows.append(
            {
                "snapshot": r["snapshot"]["name"],
                "tokens_seen": r["snapshot"]["tokens_seen"],
                "step": r["snapshot"]["step"],
                "overall": accuracy[OVERALL]["accuracy"],
                "overall_micro": accuracy[OVERALL]["micro_accuracy"],
                **{name: accuracy["fields"].get(name, {}).get("accuracy") for name in fields},
            }
        )
    return rows, fields


def write_learning_curve(folder: Path, results: list[dict], title: str) -> tuple[Path, Path]:
    """learning_curve.csv and learning_curve.png: accuracy against tokens seen, one line per
    field plus the overall macro average, chance at 50%."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, fields = curve_rows(results)
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = folder / "learning_curve.csv", folder / "learning_curve.png"
    write_atomically(csv_path, csv_text(rows, ["snapshot", "tokens_seen", "step", "overall", "overall_micro", *fields]))

    tokens = np.array([row["tokens_seen"] for row in rows], dtype=float)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name in fields:
        points = [(t, row[name]) for t, row in zip(tokens, rows) if row[name] is not None]
        axes.plot(*zip(*points), marker="o", markersize=3, linewidth=1.2, label=name)
    axes.plot(tokens, [row["overall"] for row in rows], marker="o", color="black", linewidth=2.4, label="overall")
    axes.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="chance")
    if tokens.max(initial=0) > 0 and tokens[tokens > 0].size and tokens.max() / tokens[tokens > 0].min() > 20:
        axes.set_xscale("symlog", linthresh=tokens[tokens > 0].min())  # keeps an init snapshot (0 tokens)
    axes.set_xlabel("tokens seen")
    axes.set_ylabel("BLiMP accuracy (macro over paradigms)")
    axes.set_ylim(0, 1)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    save_figure(figure, png_path)
    return csv_path, png_path


def tensorboard_scalars(accuracy: dict) -> dict[str, float]:
    """blimp/overall (and its micro average), blimp/field/<field>, blimp/paradigm/<uid>."""
    return {
        "blimp/overall": accuracy[OVERALL]["accuracy"],
        "blimp/overall_micro": accuracy[OVERALL]["micro_accuracy"],
        **{f"blimp/field/{name}": field["accuracy"] for name, field in accuracy["fields"].items()},
        **{f"blimp/paradigm/{uid}": paradigm["accuracy"] for uid, paradigm in accuracy["paradigms"].items()},
    }
