"""Experiment grids: one CSV row -> the `train_pretrain.py` arguments of one run (one Slurm array task).

    python -m common.training.grid experiments/data_efficiency.csv 3        # row 3's arguments, shell-quoted
    python -m common.training.grid experiments/data_efficiency.csv --count  # how many rows (for --array=0-N)

A column is either a `train_pretrain.py` option of the same name (`name` aside: the run's label),
or one of the data-efficiency study's column names, translated:

    model_config -> --model_size          epochs -> --num_train_epochs
    batch_size -> --per_device_train_batch_size     grad_accum -> --gradient_accumulation_steps
    tokenizer_vocab_size -> --vocab_size  anchors -> --milestones, and the last anchor -> --max_train_tokens

`anchors` is a JSON list in millions of tokens (`[25,50,...,2000]`), `[-1]` for no anchors
(train the whole --num_train_epochs). An empty cell gives no option (the preset or default
applies). Without an `output_dir` column each run goes to runs/<grid>/<name>. Any other column is
an error: a grid whose column silently did nothing would be a wrong experiment.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shlex
import sys
from pathlib import Path

from common.errors import UsageError, run_main
from common.jsonl import check_utf8

ALIASES = {
    "model_config": "model_size",
    "epochs": "num_train_epochs",
    "batch_size": "per_device_train_batch_size",
    "grad_accum": "gradient_accumulation_steps",
    "tokenizer_vocab_size": "vocab_size",
}
LABEL = "name"


def option_names() -> set[str]:
    from common.training.pretrain_config import PretrainConfig

    return {f.name for f in dataclasses.fields(PretrainConfig)} | {"config"}


def read_grid(path: Path) -> list[dict[str, str]]:
    """The rows of a grid CSV, each column checked against train_pretrain.py's options."""
    if not path.is_file():
        raise UsageError(f"{path}: no such grid file")
    check_utf8(path)
    with open(path, encoding="utf-8-sig", newline="") as lines:
        reader = csv.reader(lines)
        columns = [c.strip() for c in next(reader, [])]
        known = option_names() | set(ALIASES) | {"anchors", LABEL}
        unknown = [c for c in columns if c not in known]
        if unknown:
            raise UsageError(
                f"{path}: column(s) {', '.join(unknown)} are not train_pretrain.py options "
                f"(nor {', '.join(sorted([*ALIASES, 'anchors', LABEL]))})"
            )
        twice = sorted({c for c in columns if columns.count(c) > 1})
        if twice:
            raise UsageError(f"{path}: column(s) {', '.join(twice)} appear twice; which one would count?")
        rows = []
        for cells in reader:
            if len(cells) > len(columns):
                raise UsageError(f"{path}:{reader.line_num}: {len(cells)} cells, but the header names {len(columns)}")
            rows.append(dict(zip(columns, (cell.strip() for cell in [*cells, *[""] * len(columns)]))))
    if not rows:
        raise UsageError(f"{path}: no rows")
    names = [row.get(LABEL) for row in rows if row.get(LABEL)]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UsageError(f"{path}: run name(s) {', '.join(repeated)} appear twice; two runs would share a folder")
    return rows


def anchor_arguments(text: str, where: str) -> list[str]:
    """`[25,50,2000]` (millions of tokens) -> milestones at each and training up to the last."""
    try:
        anchors = json.loads(text)
    except json.JSONDecodeError:
        anchors = None
    if not isinstance(anchors, list) or not anchors or not all(isinstance(a, (int, float)) for a in anchors):
        raise UsageError(f"{where}: anchors {text!r} is not a JSON list of millions of tokens, e.g. [25,50,100]")
    if anchors == [-1]:
        return []
    if min(anchors) <= 0:
        raise UsageError(f"{where}: anchors {text!r} must be positive (or [-1] for none)")
    millions = [f"{a:g}M" for a in sorted(anchors)]
    return ["--milestones", ",".join(millions), "--max_train_tokens", millions[-1]]


def row_arguments(path: Path, index: int) -> list[str]:
    """train_pretrain.py's arguments for row `index` (0-based, as SLURM_ARRAY_TASK_ID counts)."""
    rows = read_grid(path)
    if not 0 <= index < len(rows):
        raise UsageError(f"{path}: no row {index} (it has rows 0-{len(rows) - 1})")
    row, where = rows[index], f"{path}:{index + 2}"
    arguments = []
    for column, value in row.items():
        if not value or column == LABEL:
            continue
        if column == "anchors":
            arguments += anchor_arguments(value, where)
        else:
            arguments += [f"--{ALIASES.get(column, column)}", value]
    if "output_dir" not in row or not row["output_dir"]:
        arguments += ["--output_dir", str(Path("runs") / path.stem / (row.get(LABEL) or f"row{index}"))]
    return arguments


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        raise UsageError("usage: python -m common.training.grid GRID.csv ROW_INDEX | --count")
    path = Path(argv[0])
    if argv[1] == "--count":
        print(len(read_grid(path)))
        return
    try:
        index = int(argv[1])
    except ValueError:
        raise UsageError(f"row index {argv[1]!r} is not a whole number") from None
    print(shlex.join(row_arguments(path, index)))


if __name__ == "__main__":
    run_main(main)
