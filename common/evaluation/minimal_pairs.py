"""Minimal-pair data sets in BLiMP's format: read, checked, selected.

Three sources give the same records:
- a folder of JSONL files, one per paradigm: the BLiMP release (`pairID`) or the BabyLM
  filtered BLiMP (`pair_id`), one JSON object per line with `sentence_good`, `sentence_bad`,
  `field`, `linguistics_term`, `UID`;
- the Hub data set `nyu-mll/blimp` (67 configs, one per paradigm), only when asked for by name;
- the embedded synthetic corpus's paradigms (the offline default).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

from common.errors import UsageError, first_line
from common.jsonl import check_utf8, json_object

log = logging.getLogger("babytrain")

HUB_BLIMP = "nyu-mll/blimp"
REQUIRED_KEYS = ("sentence_good", "sentence_bad")
UNKNOWN_FIELD = "other"  # the BabyLM supplement paradigms carry no `field`


@dataclass(frozen=True)
class MinimalPair:
    uid: str  # the paradigm
    field: str  # morphology, syntax, syntax-semantics, semantics (BLiMP's four)
    linguistics_term: str  # the phenomenon (BLiMP's twelve)
    pair_id: str
    good: str
    bad: str


@dataclass(frozen=True)
class PairSet:
    name: str  # names the results folder: synthetic, blimp, blimp_filtered, nyu-mll_blimp
    source: str  # where the pairs came from, for results.json
    pairs: tuple[MinimalPair, ...]

    @property
    def paradigms(self) -> list[str]:
        return list(dict.fromkeys(pair.uid for pair in self.pairs))

    def sentences(self) -> list[str]:
        """Each distinct sentence once, sorted: whatever order the pairs (or a pair's two
        sentences) come in, the same list, so scores cannot depend on that order."""
        return sorted({s for pair in self.pairs for s in (pair.good, pair.bad)})

    @cached_property
    def fingerprint(self) -> str:
        """A hash of every pair, so stored results can tell whether they scored the same data
        (computed once: a run compares it for every snapshot)."""
        digest = hashlib.sha256()
        for pair in self.pairs:
            digest.update(json.dumps(asdict(pair), sort_keys=True).encode())
        return digest.hexdigest()[:16]


def pair_from_record(record: dict, default_uid: str) -> MinimalPair:
    """One BLiMP-format JSON object as a MinimalPair (KeyError names a missing sentence key)."""
    for key in REQUIRED_KEYS:
        if not isinstance(record.get(key), str):
            raise KeyError(key)
    pair_id = record.get("pairID", record.get("pair_id", ""))
    return MinimalPair(
        uid=str(record.get("UID") or default_uid),
        field=str(record.get("field") or UNKNOWN_FIELD),
        linguistics_term=str(record.get("linguistics_term") or ""),
        pair_id=str(pair_id),
        good=record["sentence_good"],
        bad=record["sentence_bad"],
    )


def read_jsonl_pairs(path: Path, skip_bad_lines: bool) -> tuple[list[MinimalPair], int]:
    """The pairs of one paradigm file and how many lines were skipped as bad.

    A line that is not a JSON object with both sentences is an error naming the file and line,
    unless skip_bad_lines, when it is counted, logged and left out.
    """
    check_utf8(path)
    pairs, skipped = [], 0
    with open(path, encoding="utf-8-sig") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                pairs.append(pair_from_record(json_object(line, where), default_uid=path.stem))
            except (UsageError, KeyError) as error:
                problem = (
                    f"no {error.args[0]!r}"
                    if isinstance(error, KeyError)
                    else first_line(error).removeprefix(f"{where}: ")
                )
                message = f"{where}: not a minimal pair ({problem}); each line needs sentence_good and sentence_bad"
                if not skip_bad_lines:
                    raise UsageError(f"{message} (--skip_bad_lines leaves such lines out)") from None
                log.warning("skipping %s", message)
                skipped += 1
    return pairs, skipped


def read_pair_folder(folder: Path, skip_bad_lines: bool = False) -> PairSet:
    """Every `*.jsonl` paradigm file of a BLiMP or BabyLM filtered-BLiMP folder."""
    if not folder.is_dir():
        raise UsageError(f"--blimp_dir {folder}: no such folder")
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        raise UsageError(f"--blimp_dir {folder}: holds no *.jsonl paradigm files")
    pairs, skipped, first_seen = [], 0, {}
    for path in files:
        file_pairs, file_skipped = read_jsonl_pairs(path, skip_bad_lines)
        if not file_pairs:  # a paradigm that silently vanished would change the macro average
            raise UsageError(f"{path}: holds no minimal pairs (an empty paradigm file); remove it or fill it")
        for pair in file_pairs:
            key = (pair.uid, pair.good, pair.bad)
            if key in first_seen:
                raise UsageError(
                    f"{path}: the pair {pair.good!r} / {pair.bad!r} of {pair.uid} is there twice (also in "
                    f"{first_seen[key]}); a pair counted twice skews the accuracy"
                )
            first_seen[key] = path.name
        pairs += file_pairs
        skipped += file_skipped
    if skipped:
        log.warning("%d bad lines skipped under %s", skipped, folder)
    return PairSet(folder.resolve().name, str(folder.resolve()), tuple(pairs))


def read_hub_pairs(dataset_id: str = HUB_BLIMP) -> PairSet:
    """All paradigms of the Hub data set (needs the network or a warm datasets cache)."""
    import datasets

    try:
        configs = datasets.get_dataset_config_names(dataset_id)
        pairs = [
            pair_from_record(row, config)
            for config in configs
            for row in datasets.load_dataset(dataset_id, config, split="train")
        ]
    except Exception as error:  # the Hub client raises many types; any of them means "could not load"
        raise UsageError(f"--blimp_dir {dataset_id}: cannot load the Hub data set ({first_line(error)})") from None
    return PairSet(dataset_id.replace("/", "_"), f"hf://datasets/{dataset_id}", tuple(pairs))


def synthetic_pair_set(pairs_per_paradigm: int = 200) -> PairSet:
    """The synthetic corpus's paradigms: what a model trained on it should learn."""
    from common.data.synthetic import SYNTHETIC_VERSION, synthetic_minimal_pairs

    pairs = tuple(pair_from_record(record, record["UID"]) for record in synthetic_minimal_pairs(pairs_per_paradigm))
    return PairSet("synthetic", f"babytrain synthetic corpus v{SYNTHETIC_VERSION}", pairs)


def load_pair_set(blimp_dir: str | None, skip_bad_lines: bool = False, synthetic_pairs: int = 200) -> PairSet:
    """--blimp_dir: a folder, the Hub id `nyu-mll/blimp`, or nothing for the synthetic pairs."""
    if not blimp_dir:
        return synthetic_pair_set(synthetic_pairs)
    if blimp_dir == HUB_BLIMP and not Path(blimp_dir).exists():
        return read_hub_pairs(blimp_dir)
    return read_pair_folder(Path(blimp_dir), skip_bad_lines)


def select_paradigms(pair_set: PairSet, paradigms: list[str]) -> PairSet:
    """Only the named paradigms (UIDs); an unknown name is an error listing the known ones."""
    if not paradigms:
        return pair_set
    known = pair_set.paradigms
    unknown = [name for name in paradigms if name not in known]
    if unknown:
        raise UsageError(f"--paradigms {', '.join(unknown)}: not in {pair_set.source} (it has: {', '.join(known)})")
    wanted = set(paradigms)
    return PairSet(pair_set.name, pair_set.source, tuple(p for p in pair_set.pairs if p.uid in wanted))
