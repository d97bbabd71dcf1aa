"""Run folders: naming a new one, and refusing to clobber one that holds work."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from common.errors import UsageError
from common.training import checkpoint


def default_run_dir(*parts: str) -> Path:
    """runs/<parts joined by '-'>-<local time>, e.g. runs/llama-tiny-synthetic-20261122-101500."""
    safe = [part.replace("/", "_").replace(":", "_") for part in parts]
    return Path("runs") / "-".join([*safe, time.strftime("%Y%m%d-%H%M%S")])


def is_finished(output_dir: Path) -> bool:
    return (Path(output_dir) / "final" / "milestone.json").is_file()


def claim_output_dir(accelerator, output_dir: Path, overwrite: bool, resume_from: str | None) -> Path | None:
    """Check what `output_dir` holds and return the checkpoint to resume from (None: fresh run).

    Nothing is deleted unless --overwrite_output_dir was given.
    """
    output_dir = Path(output_dir)
    holds_files = output_dir.is_dir() and any(output_dir.iterdir())
    if holds_files and overwrite:
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            for entry in output_dir.iterdir():
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        accelerator.wait_for_everyone()
        return None
    if is_finished(output_dir):
        raise UsageError(
            f"--output_dir {output_dir} holds a finished run; pass --overwrite_output_dir to "
            f"replace it or choose another folder"
        )
    resume_path = checkpoint.find_resume(output_dir, resume_from)
    if holds_files and not resume_from:
        raise UsageError(
            f"--output_dir {output_dir} is not empty; pass --resume_from_checkpoint auto to continue "
            f"its run or --overwrite_output_dir to replace it"
        )
    return resume_path
