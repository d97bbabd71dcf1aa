"""Files and folders written whole or not at all, and the tables results are written as.

Everything this project writes that someone may read while it is being written, or that a crash
could leave half-done (checkpoints, milestones, final/, caches, config.yaml, results), is built
under a hidden staging name beside its final path, flushed to the disk, and published by one
rename. The helpers here are the only code that does this:

- the last complete copy of a path is never deleted before its replacement is complete and in
  place (a folder is swapped with its replacement in one step where the file system can, else
  moved aside first and put back if the swap is interrupted);
- what a killed writer leaves behind (`.tmp-*` staging, `.old-*` copies moved aside) is cleaned up
  by `clean_orphans` on the next start: a copy moved aside comes back if it is the only one left.
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import errno
import io
import os
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import xxhash

STAGING_PREFIX = ".tmp-"  # being written
ASIDE_PREFIX = ".old-"  # the previous version of a folder, while its replacement moves in
HOST = socket.gethostname().split(".")[0]
# Tests only: seconds to wait before each publish, so that a kill can land inside a save.
SLOW_PUBLISH = float(os.environ.get("BABYTRAIN_TEST_SLOW_PUBLISH", "0"))


def staging_path(path: Path, shared: bool = False, prefix: str = STAGING_PREFIX) -> Path:
    """The hidden sibling that `path` is built under before it is published.

    The name is unique to this call and names its writer (`.tmp-<name>.<host>.<pid>.<random>`), so
    two jobs building the same cache entry never write into one folder and a dead writer's leftovers
    can be told from a live one's; with `shared`, every process computes the same name
    (`.tmp-<name>`: a checkpoint that all ranks of a launch write into).
    """
    path = Path(path)
    suffix = "" if shared else f".{HOST}.{os.getpid()}.{secrets.token_hex(4)}"
    return path.with_name(f"{prefix}{path.name}{suffix}")


def discard(staged: Path) -> None:
    """Remove a staged file or folder that will not be published."""
    staged = Path(staged)
    if staged.is_dir() and not staged.is_symlink():
        shutil.rmtree(staged, ignore_errors=True)
    else:
        staged.unlink(missing_ok=True)


def flush_to_disk(path: Path) -> None:
    """fsync a file, or every file and folder under a folder, so that a rename published after it
    never points at data still in the page cache when the machine goes down."""
    path = Path(path)
    entries = [path] if not path.is_dir() else [*(p for p in path.rglob("*") if not p.is_symlink()), path]
    for entry in entries:
        descriptor = os.open(entry, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def publish(staged: Path, path: Path) -> None:
    """Put the complete file or folder `staged` in place of `path` by a rename, durably.

    A folder already at `path` is swapped with the new one in one step (Linux `renameat2` with
    RENAME_EXCHANGE) and deleted after; where the file system cannot swap, it is renamed aside to
    `.old-<name>...` first, and `clean_orphans` puts it back if a kill comes between the renames.
    """
    staged, path = Path(staged), Path(path)
    if SLOW_PUBLISH:
        time.sleep(SLOW_PUBLISH)
    flush_to_disk(staged)
    if path.is_dir() and not path.is_symlink():
        if exchange(staged, path):
            discard(staged)  # now the previous version
        else:
            previous = staging_path(path, prefix=ASIDE_PREFIX)
            os.replace(path, previous)
            os.replace(staged, path)
            shutil.rmtree(previous, ignore_errors=True)
    else:
        os.replace(staged, path)
    flush_to_disk(path.parent)


def exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where the kernel, the C
    library or the file system cannot (the caller then falls back to two renames)."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_current_directory, rename_exchange = -100, 2
    result = renameat2(at_current_directory, os.fsencode(first), at_current_directory, os.fsencode(second),
                       rename_exchange)  # fmt: skip
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def file_digest(path: Path) -> str:
    """xxh3-128 of a file's bytes, read in chunks (several GB/s: a checkpoint or a corpus is hashed
    in seconds)."""
    digest = xxhash.xxh3_128()
    with open(path, "rb") as data:
        while chunk := data.read(8 * 2**20):
            digest.update(chunk)
    return digest.hexdigest()


def writer_of(leftover: Path) -> tuple[str, int] | None:
    """(host, pid) of the writer named in a staging or aside name, None for a shared name."""
    parts = leftover.name.rsplit(".", 3)
    if len(parts) == 4 and parts[2].isdigit():
        return parts[1], int(parts[2])
    return None


def process_is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_orphans(folder: Path, owned: bool = False) -> list[str]:
    """Remove what killed writers left in `folder` and put back a folder that was moved aside when
    it is the only copy left; return what was done, to be logged.

    A leftover counts as orphaned when its writer, on this host, is no longer alive; `owned` (the
    caller holds the folder's run lock, so nothing else writes there) makes every leftover orphaned.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    done = []
    for leftover in sorted(folder.iterdir()):
        prefix = next((p for p in (STAGING_PREFIX, ASIDE_PREFIX) if leftover.name.startswith(p)), None)
        if prefix is None:
            continue
        writer = writer_of(leftover)
        if not owned and (writer is None or writer[0] != HOST or process_is_alive(writer[1])):
            continue
        name = leftover.name[len(prefix) :].rsplit(".", 3)[0] if writer else leftover.name[len(prefix) :]
        target = folder / name
        if prefix == ASIDE_PREFIX and not target.exists():
            os.replace(leftover, target)
            done.append(f"restored {target} from {leftover.name}")
        else:
            discard(leftover)
            done.append(f"removed {leftover}")
    return done


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a staging path for `path`: write the file, or create and fill the folder, there.

    When the block ends, what it wrote replaces `path`; when the block raises, it is discarded
    and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = staging_path(path)
    try:
        yield staged
    except BaseException:
        discard(staged)
        raise
    publish(staged, path)


def write_atomically(path: Path, text: str) -> None:
    """Write the text file `path` whole (see `atomic_path`)."""
    with atomic_path(path) as staged:
        staged.write_text(text, encoding="utf-8")


def save_figure(figure, path: Path) -> None:
    """Save a matplotlib figure as a PNG file, whole, and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as staged:
        figure.savefig(staged, format="png", dpi=120)
    plt.close(figure)


# --- tables ------------------------------------------------------------------------------------


@contextlib.contextmanager
def long_csv_fields() -> Iterator[None]:
    """Let the csv module read fields of any length (abstracts, QQP and MNLI texts) while the
    block runs; the process-wide limit is restored after."""
    limit = csv.field_size_limit(sys.maxsize)
    try:
        yield
    finally:
        csv.field_size_limit(limit)


def csv_text(rows: list[dict], columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    """A Markdown table (floats with two decimals; None as an empty cell)."""

    def cell(value) -> str:
        return "" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows])
