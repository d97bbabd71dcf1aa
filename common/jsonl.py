"""Users' data files as every reader checks them: UTF-8 text (a file that is not names its line),
and JSON Lines records (one JSON object per line, a bad line named by file:line)."""

from __future__ import annotations

import json
from pathlib import Path

from common.errors import UsageError


def check_utf8(path: Path) -> None:
    """A UsageError naming the first line of `path` that is not UTF-8 (a byte-order mark is fine).

    For the evaluation and fine-tuning files (MBs, read whole anyway); corpora are read line by
    line and have their bad bytes replaced and counted instead (common/data/sources.py)."""
    data = Path(path).read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise UsageError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[error.start]:02x}); save the file as UTF-8"
        ) from None


def json_object(line: str, where: str) -> dict:
    """The JSON object on `line`; anything else is a UsageError naming `where` (file:line)."""
    try:
        value = json.loads(line)
    except json.JSONDecodeError as error:
        raise UsageError(f"{where}: not valid JSON ({error.msg})") from None
    if not isinstance(value, dict):
        raise UsageError(f"{where}: not a JSON object")
    return value
