"""Records of a run: every TensorBoard writer of the project, pretraining's `metrics.jsonl`, and
the experiment trackers a user asks for (`--report_to`: W&B and Trackio, through accelerate's
tracker classes).

Only the main process writes; on the other ranks the same calls do nothing, so callers never
branch on the rank.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import uuid
from pathlib import Path

from common.errors import UsageError
from common.files import flush_to_disk, write_atomically

REPORTERS = ("tensorboard", "wandb", "trackio")
# The reporters that need a package of their own (the pip command names it).
REPORTER_PACKAGES = {"wandb": "wandb", "trackio": "trackio"}


def parse_report_to(text: str) -> tuple[str, ...]:
    """`--report_to tensorboard,wandb` -> ("tensorboard", "wandb"); "none" -> (). An unknown name
    or a reporter whose package is missing is refused here, before any work."""
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    if names == ("none",):
        return ()
    unknown = [name for name in names if name not in REPORTERS]
    if unknown or not names:
        raise UsageError(
            f"--report_to {text}: unknown reporter {', '.join(unknown) or '(empty)'} "
            f"(any of {', '.join(REPORTERS)}, comma-separated, or none)"
        )
    for name in names:
        package = REPORTER_PACKAGES.get(name)
        if package:
            try:
                importlib.import_module(package)
            except ImportError:
                raise UsageError(f"--report_to {name} needs the {package} package: pip install {package}") from None
    return names


def run_id(folder: Path) -> str:
    """The tracker run id of a run folder: made at its first launch and kept in `tracker_run_id`, so
    that a resumed launch continues the same W&B / Trackio run instead of starting another."""
    path = folder / "tracker_run_id"
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    new = uuid.uuid4().hex[:12]
    write_atomically(path, new + "\n")
    return new


def external_trackers(reporters: tuple[str, ...], folder: Path, project: str, config: dict, enabled: bool) -> list:
    """accelerate's trackers for the reporters other than TensorBoard (which RunLog writes itself),
    each told the run's config; none on the other ranks. W&B writes under the run folder
    (`wandb/`; offline with WANDB_MODE=offline, uploaded later by `wandb sync`), Trackio to its
    local database (TRACKIO_DIR)."""
    if not enabled:
        return []
    trackers = []
    for name in reporters:
        if name == "wandb":
            from accelerate.tracking import WandBTracker

            tracker = WandBTracker(project, name=folder.name, id=run_id(folder), resume="allow", dir=str(folder))
        elif name == "trackio":
            from accelerate.tracking import TrackioTracker

            tracker = TrackioTracker(project, name=f"{folder.name}-{run_id(folder)}", resume="allow")
        else:
            continue
        tracker.start()
        tracker.store_init_configuration(config)
        trackers.append(tracker)
    return trackers


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

    def __init__(
        self,
        output_dir: Path,
        is_main_process: bool,
        resumed_step: int = 0,
        keep_bytes: int | None = None,
        tensorboard: bool = True,
        trackers: list | None = None,
    ):
        self.path = Path(output_dir) / "metrics.jsonl"
        self.trackers = trackers or []  # W&B, Trackio: the same scalars at the same steps
        self.enabled = is_main_process
        if self.enabled and resumed_step:
            if keep_bytes is not None:
                cut_back(self.path, keep_bytes)
            else:
                drop_records_after(self.path, resumed_step)
        purge_step = resumed_step + 1 if resumed_step else None
        self.board = TensorBoard(
            Path(output_dir) / "tb", enabled=is_main_process and tensorboard, purge_step=purge_step
        )

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
        # A resumed launch logs again the steps between its checkpoint and the kill; W&B keeps the
        # first values of a step (exact resume makes them the same) and ignores the repeats.
        scalars = {name: value for name, value in record.items() if name != "step" and value is not None}
        for tracker in self.trackers:
            tracker.log(scalars, step=step)

    def close(self) -> None:
        self.board.close()
        for tracker in self.trackers:
            tracker.finish()
        self.trackers = []


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
