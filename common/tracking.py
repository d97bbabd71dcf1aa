"""Records of a run: every TensorBoard writer of the project, and pretraining's `metrics.jsonl`.

Only the main process writes; on the other ranks the same calls do nothing, so callers never
branch on the rank.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from common.files import write_atomically


class TensorBoard:
    """One TensorBoard event folder (pretraining's `tb/`, one fine-tuning run, a run's BLiMP
    curve). `enabled=False` (another rank, or no folder asked for) makes every call a no-op."""

    def __init__(self, folder: Path | None, enabled: bool = True):
        self.writer = None
        if folder is not None and enabled:
            from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when writing

            self.writer = SummaryWriter(log_dir=str(folder))

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
    TensorBoard scalars, plus `step` and `tokens_seen`) and the same scalars in `tb/`."""

    def __init__(self, output_dir: Path, is_main_process: bool, resumed_step: int = 0):
        self.path = Path(output_dir) / "metrics.jsonl"
        self.enabled = is_main_process
        if self.enabled:
            drop_records_after(self.path, resumed_step)
        self.board = TensorBoard(Path(output_dir) / "tb", enabled=is_main_process)

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


def drop_records_after(path: Path, step: int) -> None:
    """A resumed run redoes the steps after its checkpoint: forget their first records."""
    if not path.exists():
        return
    kept = [
        line
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and json.loads(line)["step"] <= step
    ]
    write_atomically(path, "".join(line + "\n" for line in kept))
