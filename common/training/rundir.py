"""Run folders: naming a new one, holding it for one run at a time, and deciding what a launch may
do with what it holds (start, resume, or replace), with nothing changed until the launch is known
to be good.

A launch first takes the folder's lock (`.lock`: host, pid and Slurm job of the holder; on shared
cluster file systems a file created exclusively is the one lock that works everywhere). It then
decides (`claim_output_dir`) without writing anything, validates every input, and only then
clears an old run away or sets aside what a resume abandons (`make_room`).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from common.distributed import log, main_process_value
from common.errors import UsageError
from common.files import HOST, clean_orphans, discard, process_is_alive, staging_path
from common.training import checkpoint

LOCK_FILE = ".lock"
# An unreadable lock younger than this may be one whose holder is still writing it.
UNREADABLE_LOCK_GRACE_S = 60


def default_run_dir(*parts: str) -> Path:
    """runs/<parts joined by '-'>-<local time>, e.g. runs/llama-tiny-synthetic-20261122-101500."""
    safe = [part.replace("/", "_").replace(":", "_") for part in parts]
    return Path("runs") / "-".join([*safe, time.strftime("%Y%m%d-%H%M%S")])


def is_finished(output_dir: Path) -> bool:
    return (Path(output_dir) / "final" / "milestone.json").is_file()


# --- one run per folder --------------------------------------------------------------------------


def process_start(pid: int) -> str | None:
    """When a process started (Linux, in clock ticks since boot): with the pid, it names one
    process even after the pid is reused."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def this_process() -> dict:
    return {
        "host": HOST,
        "pid": os.getpid(),
        "pid_start": process_start(os.getpid()),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def holder_is_gone(holder: dict) -> bool:
    """A lock whose holder can no longer be running: a process of this host that has ended (or
    whose pid now names another process), or an earlier incarnation of this very Slurm job (a
    requeued job starts again under its id, possibly on another node)."""
    if holder.get("slurm_job_id") and holder["slurm_job_id"] == os.environ.get("SLURM_JOB_ID"):
        return True
    if holder.get("host") != HOST:
        return False
    pid = holder.get("pid", -1)
    return not process_is_alive(pid) or process_start(pid) != holder.get("pid_start")


def describe_holder(holder: dict) -> str:
    job = f", Slurm job {holder['slurm_job_id']}" if holder.get("slurm_job_id") else ""
    return f"pid {holder.get('pid')} on host {holder.get('host')}{job}, since {holder.get('since')}"


def take_lock(output_dir: Path) -> Path:
    """Create `output_dir/.lock` for this process, taking over a lock whose holder is gone; a live
    holder, or one on another host, is a UsageError naming it."""
    path = Path(output_dir) / LOCK_FILE
    for _ in range(3):  # a lock taken over may be raced for once by another launch
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                holder = None
            if holder is None and time.time() - path.stat().st_mtime < UNREADABLE_LOCK_GRACE_S:
                raise UsageError(f"--output_dir {output_dir}: another launch is taking it right now ({path})") from None
            if holder is not None and not holder_is_gone(holder):
                raise UsageError(
                    f"--output_dir {output_dir} is in use by {describe_holder(holder)}; one run per folder at a "
                    f"time (if that run is dead, delete {path})"
                ) from None
            log.warning("--output_dir %s: taking over the lock of %s, which is gone", output_dir,
                        describe_holder(holder) if holder else "an unreadable lock")  # fmt: skip
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(descriptor, "w", encoding="utf-8") as lock:
            lock.write(json.dumps(this_process()))
            lock.flush()
            os.fsync(lock.fileno())
        return path
    raise UsageError(f"--output_dir {output_dir}: could not take its lock ({path}); another launch keeps taking it")


@contextlib.contextmanager
def hold_run_folder(accelerator, output_dir: Path) -> Iterator[None]:
    """Hold `output_dir` for this launch (the main process takes the lock; every rank waits for
    it). A folder this launch created is removed again if the launch is refused while it is empty."""
    output_dir = Path(output_dir)
    created = False
    lock = None
    if accelerator.is_main_process:
        created = not output_dir.exists()
        output_dir.mkdir(parents=True, exist_ok=True)
        try:
            lock = take_lock(output_dir)
        except UsageError:
            remove_if_empty(output_dir, created)
            raise
    accelerator.wait_for_everyone()
    try:
        yield
    finally:
        if lock is not None:
            lock.unlink(missing_ok=True)
            remove_if_empty(output_dir, created)


def remove_if_empty(folder: Path, created: bool) -> None:
    if created and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


# --- what a launch may do with the folder --------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """What this launch will do with its folder: resume `resume_path` (`explicit`: a checkpoint the
    user named, not `auto`'s newest), replace the old run (`replace`, --overwrite_output_dir), or
    start in an empty folder (neither)."""

    resume_path: Path | None
    replace: bool
    explicit: bool = False


def leftover_names(output_dir: Path) -> list[str]:
    """What the folder holds besides this launch's lock."""
    if not Path(output_dir).is_dir():
        return []
    return sorted(entry.name for entry in Path(output_dir).iterdir() if entry.name != LOCK_FILE)


def claim_output_dir(accelerator, output_dir: Path, overwrite: bool, resume_from: str | None) -> Claim:
    """Decide what this launch does with `output_dir` (the main process decides, every rank gets
    the answer). Nothing is changed here but the cleaning up of what killed writers left behind."""
    output_dir = Path(output_dir)
    if overwrite and resume_from:
        raise UsageError(
            "--overwrite_output_dir and --resume_from_checkpoint contradict each other (replace the run, or "
            "continue it?); the Slurm templates always pass --resume_from_checkpoint auto, so to start over "
            "there, delete the folder or choose another --output_dir"
        )
    if accelerator.is_main_process:
        for folder in (output_dir, output_dir / "checkpoints", output_dir / "milestones"):
            for done in clean_orphans(folder, owned=True):  # this launch holds the folder's lock
                log.warning("%s (left by a killed launch)", done)
    holds_files = bool(leftover_names(output_dir))
    if holds_files and overwrite:
        return Claim(resume_path=None, replace=True)
    if is_finished(output_dir):
        raise UsageError(
            f"--output_dir {output_dir} holds a finished run; pass --overwrite_output_dir to "
            f"replace it or choose another folder"
        )
    if holds_files and not resume_from:
        raise UsageError(
            f"--output_dir {output_dir} is not empty; pass --resume_from_checkpoint auto to continue "
            f"its run or --overwrite_output_dir to replace it"
        )
    found = checkpoint.find_resume(output_dir, resume_from) if accelerator.is_main_process else None
    resume = main_process_value(accelerator, str(found) if found else None)
    return Claim(
        resume_path=Path(resume) if resume else None, replace=False, explicit=bool(resume) and resume_from != "auto"
    )


def make_room(accelerator, output_dir: Path, claim: Claim, resume_state: dict | None) -> None:
    """Once every input of the launch has been validated: clear the old run away (--overwrite_output_dir),
    or set aside what a resume abandons (checkpoints, milestones and records made after it)."""
    output_dir = Path(output_dir)
    if accelerator.is_main_process:
        if claim.replace:
            log.warning("--overwrite_output_dir: replacing %s (%s)", output_dir, ", ".join(leftover_names(output_dir)))
            trash = staging_path(output_dir / "replaced")
            trash.mkdir()
            for name in leftover_names(output_dir):
                if not name.startswith(trash.name):
                    os.replace(output_dir / name, trash / name)
            discard(trash)
        elif claim.resume_path is not None and resume_state is not None:
            step, length = resume_state["progress"]["step"], resume_state.get("metrics_bytes")
            checkpoint.abandon_newer(output_dir, step, length, trajectory=claim.explicit)
    accelerator.wait_for_everyone()
