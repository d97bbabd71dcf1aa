"""Records of a run: every TensorBoard writer of the project, and pretraining's `metrics.jsonl`.

Only the main process writes; on the other ranks the same calls do nothing, so callers never
branch on the rank.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from common.files import flush_to_disk, write_atomically


class TensorBoard:
    """One TensorBoard event folder (pretraining's `tb/`, one fine-tuning run, a run's BLiMP
    curve). `enabled=False` (another rank, or no folder asked for) makes every call a no-op.
    `purge_step`: a resumed run's first step; TensorBoard hides what earlier launches logged from
    there on (the steps a killed launch did after its checkpoint), so no step shows twice."""

    def __init__(self, folder: Path | None, enabled: bool = True, purge_step: int | None = None):
        self.writer = None
        if folder is not None and enabled:
            from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when writing

            self.writer = SummaryWriter(log_dir=str(folder), purge_step=purge_step)

    def scalars(self, values: dict[str, float | None], step: int) -> None:
        """Each value as the scalar of its name at `step` (None: left out)."""
        if self.writer is None:
            return
        for tag, value in values.items():
            if value is not None:
                self.writer.add_scalar(tag, value, step)

    def flush(self) -> None:
        """Write what is buffered now (otherwise every two minutes), for a run watched live."""
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class RunLog:
    """A pretraining run's records: `metrics.jsonl` (one object per record, keyed like the
    TensorBoard scalars, plus `step` and `tokens_seen`) and the same scalars in `tb/`.

    The file is only ever appended to. A resumed run first cuts it back to its length at the
    checkpoint (`keep_bytes`, from the checkpoint's trainer state): the records of the steps it
    redoes, and a line torn by a kill, go in one truncation, never in a rewrite that a full disk
    could cut short. Checkpoints from before that length was saved keep the records up to their
    step instead (a torn line is dropped)."""

    def __init__(self, output_dir: Path, is_main_process: bool, resumed_step: int = 0, keep_bytes: int | None = None):
        self.path = Path(output_dir) / "metrics.jsonl"
        self.enabled = is_main_process
        if self.enabled and resumed_step:
            if keep_bytes is not None:
                cut_back(self.path, keep_bytes)
            else:
                drop_records_after(self.path, resumed_step)
        purge_step = resumed_step + 1 if resumed_step else None
        self.board = TensorBoard(Path(output_dir) / "tb", enabled=is_main_process, purge_step=purge_step)

    def flushed_size(self) -> int:
        """The file's length, once its records are on the disk (what a checkpoint remembers)."""
        if not self.path.exists():
            return 0
        flush_to_disk(self.path)
        return self.path.stat().st_size

    def log(self, values: dict[str, float], step: int, tokens_seen: int) -> None:
        if not self.enabled:
            return
        record = {"step": step, "tokens_seen": tokens_seen, **{k: finite_or_none(v) for k, v in values.items()}}
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
        self.board.scalars(values, step)
        self.board.flush()

    def close(self) -> None:
        self.board.close()


def finite_or_none(value):
    """JSON has no NaN/inf: write them as null."""
    return value if not isinstance(value, float) or math.isfinite(value) else None


def cut_back(path: Path, length: int) -> None:
    """Truncate `path` to `length` bytes (what it held at a checkpoint)."""
    if path.exists() and path.stat().st_size > length:
        os.truncate(path, length)


def parsed_records(text: str) -> list[dict]:
    """The records of a metrics.jsonl text; a line a kill tore (the last one) is left out."""
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def drop_records_after(path: Path, step: int) -> None:
    """For a checkpoint that did not save the file's length: keep the records up to its step
    (written whole, to a new file that replaces the old one)."""
    if not path.exists():
        return
    kept = [record for record in parsed_records(path.read_text(encoding="utf-8")) if record["step"] <= step]
    write_atomically(path, "".join(json.dumps(record) + "\n" for record in kept))
