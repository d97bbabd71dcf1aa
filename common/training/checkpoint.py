"""Resumable checkpoints: `save`, `find_resume`, `load`.

A checkpoint is `accelerator.save_state` (model, optimizer, RNG; sharded under ZeRO) plus
`trainer_state.json` (step, sample cursor, token/word counters, milestones done, and what the
checkpoint was made for). It is written into a hidden temporary folder and renamed when whole,
so `find_resume` only ever sees complete checkpoints; the last `keep` are kept.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from common.errors import UsageError
from common.files import discard, publish, staging_path

STATE_FILE = "trainer_state.json"
PREFIX = "step-"


def checkpoint_dir(output_dir: Path, step: int) -> Path:
    return Path(output_dir) / "checkpoints" / f"{PREFIX}{step:08d}"


def complete_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith(PREFIX) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def find_resume(output_dir: Path, resume_from: str | None) -> Path | None:
    """The checkpoint to resume from: None for a fresh run, the newest for "auto", or a path."""
    if not resume_from:
        return None
    if resume_from == "auto":
        found = complete_checkpoints(output_dir)
        return found[-1] if found else None
    path = Path(resume_from)
    if not (path / STATE_FILE).is_file():
        raise UsageError(f"--resume_from_checkpoint {resume_from}: not a complete checkpoint (no {STATE_FILE})")
    return path


def save(
    accelerator,
    output_dir: Path,
    step: int,
    trainer_state: dict,
    keep: int | None,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Write the checkpoint of `step` (every rank calls this: ZeRO saves its shards per rank),
    with `extra_files` (name -> text) beside it."""
    final = checkpoint_dir(output_dir, step)
    staged = staging_path(final, shared=True)  # every rank writes its shards into this one folder
    if accelerator.is_main_process:
        discard(staged)
        staged.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staged))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        for name, text in (extra_files or {}).items():
            (staged / name).write_text(text, encoding="utf-8")
        (staged / STATE_FILE).write_text(json.dumps(trainer_state, indent=2), encoding="utf-8")  # last: marks complete
        publish(staged, final)
        prune(output_dir, keep)
    accelerator.wait_for_everyone()
    return final


def prune(output_dir: Path, keep: int | None) -> None:
    """Delete all but the newest `keep` complete checkpoints (None or 0: keep all)."""
    if not keep:
        return
    for old in complete_checkpoints(output_dir)[:-keep]:
        shutil.rmtree(old)


def read_state(path: Path) -> dict:
    return json.loads((Path(path) / STATE_FILE).read_text(encoding="utf-8"))


def check_compatible(path: Path, state: dict, made_for: dict) -> None:
    """Refuse a checkpoint made for another model shape or tokenizer, naming the difference."""
    saved = state.get("made_for", {})
    for key, value in made_for.items():
        if saved.get(key) != value:
            raise UsageError(
                f"--resume_from_checkpoint {path}: it was made for {key}={saved.get(key)!r}, "
                f"this run has {key}={value!r}"
            )


def load(accelerator, path: Path) -> None:
    accelerator.load_state(str(path))
