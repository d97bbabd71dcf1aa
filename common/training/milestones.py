"""Milestones: HF-format model snapshots at token or word anchors (and optionally at init).

Anchors are written like `25M,50M,1.5B` (or plain integers). Token milestones are named
`tokens-25M`; word milestones follow BabyLM's `chck_<N>M` names. Each snapshot is a folder that
`AutoModelFor*` and `AutoTokenizer` load, with `milestone.json` describing when it was taken.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from common.config import parse_count
from common.errors import UsageError
from common.files import atomic_path


@dataclass(frozen=True)
class Anchor:
    name: str
    counter: str  # "tokens" or "words"
    value: int


def format_count(value: int) -> str:
    """25_000_000 -> '25M', 2_000_000_000 -> '2000M' (BabyLM and the study name in millions)."""
    for suffix, unit in (("M", 10**6), ("K", 10**3)):
        if value % unit == 0:
            return f"{value // unit}{suffix}"
    return str(value)


def parse_anchors(text: str | None, counter: str, flag: str) -> list[Anchor]:
    """Comma-separated counts -> sorted anchors; duplicates are refused."""
    if not text or not text.strip():
        return []
    values = [parse_count(part, flag) for part in text.split(",")]
    if len(set(values)) != len(values):
        raise UsageError(f"{flag}: {text!r} lists an anchor twice")
    prefix = "tokens-" if counter == "tokens" else "chck_"
    return [Anchor(f"{prefix}{format_count(v)}", counter, v) for v in sorted(values)]


def due(anchors: list[Anchor], done: set[str], counters: dict[str, int]) -> list[Anchor]:
    """Anchors the counters have reached that have no snapshot yet."""
    return [a for a in anchors if a.name not in done and counters[a.counter] >= a.value]


def save_snapshot(accelerator, model, tokenizer, folder: Path, info: dict, extra_files: dict | None = None) -> None:
    """Save an HF-format snapshot of `model` (full weights, gathered under ZeRO-3) into `folder`.

    Every rank must call this; only the main process writes, into a temporary folder renamed
    when complete.
    """
    state_dict = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        with atomic_path(folder) as staged:
            accelerator.unwrap_model(model).save_pretrained(staged, state_dict=state_dict, safe_serialization=True)
            tokenizer.save_pretrained(staged)
            (staged / "milestone.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
            for name, text in (extra_files or {}).items():
                (staged / name).write_text(text, encoding="utf-8")
    accelerator.wait_for_everyone()
