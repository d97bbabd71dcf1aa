"""One line of a JSON Lines file, parsed and checked the same way by every reader."""

from __future__ import annotations

import json

from common.errors import UsageError


def json_object(line: str, where: str) -> dict:
    """The JSON object on `line`; anything else is a UsageError naming `where` (file:line)."""
    try:
        value = json.loads(line)
    except json.JSONDecodeError as error:
        raise UsageError(f"{where}: not valid JSON ({error.msg})") from None
    if not isinstance(value, dict):
        raise UsageError(f"{where}: not a JSON object")
    return value
