"""Run records: TensorBoard scalars and the same records as JSON lines, main process only."""

from __future__ import annotations

import json
import math
from pathlib import Path


class RunLog:
    """Writes `metrics.jsonl` (one object per record, keyed like the TensorBoard scalars, plus
    `step` and `tokens_seen`) and forwards the scalars to accelerate's TensorBoard tracker."""

    def __init__(self, accelerator, output_dir: Path, resumed_step: int = 0):
        self.accelerator = accelerator
        self.path = Path(output_dir) / "metrics.jsonl"
        accelerator.init_trackers("tb")  # accelerate runs this on the main process only
        if accelerator.is_main_process:
            drop_records_after(self.path, resumed_step)

    def log(self, values: dict[str, float], step: int, tokens_seen: int) -> None:
        if not self.accelerator.is_main_process:
            return
        record = {"step": step, "tokens_seen": tokens_seen, **{k: finite_or_none(v) for k, v in values.items()}}
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
        self.accelerator.log({k: v for k, v in values.items() if v is not None}, step=step)

    def close(self) -> None:
        # Ranks leave together: end_training destroys the process group, and a rank tearing it
        # down while another still flushes its trackers can abort the launch.
        self.accelerator.wait_for_everyone()
        self.accelerator.end_training()


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
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def read_metrics(output_dir: Path) -> list[dict]:
    path = Path(output_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
