"""Resumable checkpoints: `save`, `find_resume`, `load`, and the run's history of them.

A checkpoint is `accelerator.save_state` (model, optimizer, RNG; sharded under ZeRO) plus
`trainer_state.json` (step, sample cursor, token/word counters, milestones done, what the
checkpoint was made for, and how long `metrics.jsonl` was) and, written last, `manifest.json`: the
size and xxh3-128 digest of every other file. It is built under a hidden staging name and
published whole (common/files.py). A checkpoint is complete only when every file matches its
manifest; `auto` resumes from the newest complete one and names what it skipped. Checkpoints
written before manifests existed (trainer_state.json and no manifest) are still resumed, unverified.

Pruning keeps the newest `keep` complete checkpoints. That is the run's own history because a
resume never leaves newer checkpoints beside it: those of an abandoned trajectory (an explicit
resume of an older checkpoint, or ones that failed to verify) are moved to
`checkpoints/abandoned-<time>/` first, with the milestones and records they made.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

from common.errors import UsageError
from common.files import discard, file_digest, publish, staging_path

log = logging.getLogger("babytrain")

STATE_FILE = "trainer_state.json"
MANIFEST = "manifest.json"
PREFIX = "step-"
ABANDONED_PREFIX = "abandoned-"


def checkpoint_dir(output_dir: Path, step: int) -> Path:
    return Path(output_dir) / "checkpoints" / f"{PREFIX}{step:08d}"


def step_of(folder: Path) -> int:
    return int(Path(folder).name[len(PREFIX) :])


def checkpoint_folders(output_dir: Path) -> list[Path]:
    """Every `step-*` folder of the run, complete or not, oldest first."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and p.name[len(PREFIX) :].isdigit()]
    return sorted(found, key=step_of)


# --- what makes a checkpoint complete ------------------------------------------------------------


def describe_files(folder: Path) -> dict[str, dict]:
    """Relative path -> size and digest of every file under `folder` but the manifest."""
    folder = Path(folder)
    return {
        path.relative_to(folder).as_posix(): {"size": path.stat().st_size, "xxh3_128": file_digest(path)}
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }


def write_manifest(folder: Path) -> None:
    manifest = {"format": 1, "files": describe_files(folder)}
    (Path(folder) / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")


def is_legacy(folder: Path) -> bool:
    """Written before checkpoints carried a manifest: resumable, but its files cannot be verified."""
    return (Path(folder) / STATE_FILE).is_file() and not (Path(folder) / MANIFEST).is_file()


def problem_with(folder: Path, digests: bool = True) -> str | None:
    """Why `folder` is not a complete checkpoint (None: it is). Sizes are always compared, digests
    when `digests` (reading every byte: done for the checkpoint a run is about to resume from)."""
    folder = Path(folder)
    if is_legacy(folder):
        return None
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
    except FileNotFoundError:
        return f"no {MANIFEST} (it was not finished)"
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"{MANIFEST} is unreadable ({type(error).__name__})"
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != expected["size"]:
            return f"{name} has {size} bytes, the manifest says {expected['size']}"
        if digests and file_digest(path) != expected["xxh3_128"]:
            return f"{name} does not match its digest in the manifest"
    return None


def complete_checkpoints(output_dir: Path) -> list[Path]:
    """Checkpoints whose files all have their manifest's sizes (and legacy ones), oldest first."""
    return [folder for folder in checkpoint_folders(output_dir) if problem_with(folder, digests=False) is None]


# --- choosing the checkpoint to resume from ------------------------------------------------------


def find_resume(output_dir: Path, resume_from: str | None) -> Path | None:
    """The checkpoint to resume from: None for a fresh run, the newest complete one for "auto"
    (each newer one that fails to verify is named in a warning), or the path given, verified."""
    if not resume_from:
        return None
    if resume_from != "auto":
        path = Path(resume_from)
        if not path.is_dir():
            raise UsageError(f"--resume_from_checkpoint {resume_from}: no such folder")
        problem = problem_with(path)
        if problem is not None:
            raise UsageError(f"--resume_from_checkpoint {resume_from}: not a complete checkpoint ({problem})")
        warn_if_legacy(path)
        return path
    skipped = []
    for folder in reversed(checkpoint_folders(output_dir)):
        problem = problem_with(folder)
        if problem is None:
            if skipped:
                log.warning(
                    "--resume_from_checkpoint auto: skipped %s; resuming from %s, the newest complete checkpoint",
                    "; ".join(skipped),
                    folder.name,
                )
            warn_if_legacy(folder)
            return folder
        skipped.append(f"{folder.name} ({problem})")
    if skipped:
        raise UsageError(
            f"--resume_from_checkpoint auto: no checkpoint in {Path(output_dir) / 'checkpoints'} is complete "
            f"({'; '.join(skipped)}); move them away to start the run again"
        )
    return None


def warn_if_legacy(folder: Path) -> None:
    if is_legacy(folder):
        log.warning("%s was written before checkpoints carried a manifest: its files cannot be verified", folder)


def newer_than(output_dir: Path, step: int) -> list[Path]:
    """Checkpoint folders of the run past `step`: what a resume from `step` would abandon."""
    return [folder for folder in checkpoint_folders(output_dir) if step_of(folder) > step]


def abandon_newer(output_dir: Path, step: int, metrics_bytes: int | None, trajectory: bool = True) -> Path | None:
    """Move the checkpoints made after `step` to `checkpoints/abandoned-<time>/`, so that the run
    goes on from `step` and pruning and `auto` only ever see its own history; with `trajectory` (an
    explicit resume of an older checkpoint), also the milestones taken after it and the records
    logged after its checkpoint. Returns that folder (None when nothing was newer).

    Without `trajectory` (`auto`), a newer checkpoint can only be one that failed to verify; the
    milestones and records after the checkpoint are those of the steps the run redoes, the same."""
    output_dir = Path(output_dir)
    checkpoints = newer_than(output_dir, step)
    milestones = [
        folder
        for folder in sorted((output_dir / "milestones").glob("*/milestone.json"))
        if trajectory and json.loads(folder.read_text(encoding="utf-8")).get("step", 0) > step
    ]
    metrics = output_dir / "metrics.jsonl"
    tail = trajectory and metrics_bytes is not None and metrics.is_file() and metrics.stat().st_size > metrics_bytes
    if not checkpoints and not milestones and not tail:
        return None
    folder = output_dir / "checkpoints" / f"{ABANDONED_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}"
    (folder / "milestones").mkdir(parents=True, exist_ok=True)
    for checkpoint in checkpoints:
        os.replace(checkpoint, folder / checkpoint.name)
    for info in milestones:
        os.replace(info.parent, folder / "milestones" / info.parent.name)
    if tail:
        with open(metrics, "rb") as records:
            records.seek(metrics_bytes)
            (folder / "metrics.jsonl").write_bytes(records.read())
    log.warning(
        "resuming at step %d: moved what came after it to %s (%s)",
        step,
        folder,
        ", ".join([p.name for p in checkpoints] + [f"milestones/{i.parent.name}" for i in milestones]) or "records",
    )
    return folder


# --- saving and loading --------------------------------------------------------------------------


def save(
    accelerator,
    output_dir: Path,
    step: int,
    trainer_state: dict,
    keep: int | None,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Write the checkpoint of `step` (every rank calls this: ZeRO saves its shards per rank),
    with `extra_files` (name -> text) beside it and the manifest last. A complete checkpoint of the
    same step (a run resumed at its last step) is kept, not written again."""
    final = checkpoint_dir(output_dir, step)
    if problem_with(final, digests=False) is None:
        return final  # every rank reads the same folder, so all take this branch
    staged = staging_path(final, shared=True)  # every rank writes its shards into this one folder
    if accelerator.is_main_process:
        discard(staged)
        staged.mkdir(parents=True)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(staged))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            for name, text in (extra_files or {}).items():
                (staged / name).write_text(text, encoding="utf-8")
            (staged / STATE_FILE).write_text(json.dumps(trainer_state, indent=2), encoding="utf-8")
            write_manifest(staged)  # last: marks the checkpoint complete
            publish(staged, final)
    except BaseException:
        discard(staged)  # a full disk, say: give the space back; the older checkpoints are untouched
        raise
    if accelerator.is_main_process:
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


# What a checkpoint written before a key joined the signature was made with.
LEGACY_SIGNATURE = {"windows": "plain"}


def check_compatible(path: Path, state: dict, made_for: dict) -> None:
    """Refuse a checkpoint made for another model shape, tokenizer or run, naming the difference."""
    if "made_for" not in state:
        raise UsageError(f"--resume_from_checkpoint {path}: its {STATE_FILE} was not made by train_pretrain.py")
    saved = {**LEGACY_SIGNATURE, **state["made_for"]}
    for key, value in made_for.items():
        if key in saved and saved[key] != value:
            raise UsageError(
                f"--resume_from_checkpoint {path}: it was made for {key}={saved[key]!r}, this run has "
                f"{key}={value!r}; resume with the run's own settings, or start a new run (another "
                f"--output_dir, with --model_name_or_path to start from its weights)"
            )


def load(accelerator, path: Path) -> None:
    accelerator.load_state(str(path))
