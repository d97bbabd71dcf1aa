"""Files and folders written whole or not at all, and the tables results are written as.

Everything this project writes that someone may read while it is being written, or that a crash
could leave half-done (checkpoints, milestones, final/, caches, config.yaml, results), is built
under a hidden staging name beside its final path and published by one rename. The helpers here
are the only code that does this.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import secrets
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

STAGING_PREFIX = ".tmp-"


def staging_path(path: Path, shared: bool = False) -> Path:
    """The hidden sibling that `path` is built under before it is published.

    The name is unique to this call, so two jobs building the same cache entry never write into
    one folder; with `shared`, every process computes the same name (a checkpoint that all ranks
    of a launch write into).
    """
    path = Path(path)
    suffix = "" if shared else f"-{os.getpid()}-{secrets.token_hex(4)}"
    return path.with_name(f"{STAGING_PREFIX}{path.name}{suffix}")


def discard(staged: Path) -> None:
    """Remove a staged file or folder that will not be published."""
    staged = Path(staged)
    if staged.is_dir() and not staged.is_symlink():
        shutil.rmtree(staged, ignore_errors=True)
    else:
        staged.unlink(missing_ok=True)


def publish(staged: Path, path: Path) -> None:
    """Put the complete file or folder `staged` in place of `path` by a rename.

    A folder already at `path` is renamed aside first and deleted only once the new one is in
    its place.
    """
    staged, path = Path(staged), Path(path)
    if path.is_dir() and not path.is_symlink():
        previous = staging_path(path)
        os.replace(path, previous)
        os.replace(staged, path)
        shutil.rmtree(previous, ignore_errors=True)
    else:
        os.replace(staged, path)


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
