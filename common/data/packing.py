"""Packed token cache: documents -> one flat memory-mapped token file per split + a manifest.

Documents are tokenized in batches (`batch_encoding`: by the Rust tokenizer over all cores, or by
worker processes), each one prefixed with the document-boundary token, and appended to
`<split>.bin` (uint16 when the vocabulary fits). Only a few batches are in memory at a time, so
any corpus size packs in bounded memory. The folder is keyed by the corpus fingerprint and the tokenizer hash:
a changed source or tokenizer lands in a new folder (a rebuild), an unchanged one is reused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from common.data.batch_encoding import encoded_batches
from common.errors import UsageError
from common.files import clean_orphans, discard, publish, staging_path

PACKING_VERSION = "1"
SPLITS = ("train", "validation")


@dataclass(frozen=True)
class PackedSplit:
    tokens: np.ndarray  # 1-D memory map
    num_tokens: int
    num_words: int
    num_documents: int


@dataclass(frozen=True)
class PackedSource:
    """One source of a run, packed: its name, its share of the training windows, its splits."""

    name: str
    weight: float
    splits: dict[str, PackedSplit]
    manifest: dict


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


def cache_key(corpus_fingerprint: str, tokenizer_hash: str) -> str:
    raw = json.dumps([PACKING_VERSION, corpus_fingerprint, tokenizer_hash])
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:20]


def boundary_token_id(tokenizer) -> int:
    """The token that starts every document: BOS/EOS for causal tokenizers, [CLS] for BERT's."""
    for token_id in (tokenizer.eos_token_id, tokenizer.cls_token_id, tokenizer.bos_token_id):
        if token_id is not None:
            return token_id
    raise UsageError("the tokenizer has no end-of-text, [CLS] or BOS token to separate documents")


def write_split(documents: Iterable[str], tokenizer, path: Path, desc: str, workers: int = 1) -> dict:
    """Tokenize `documents` into `path` with `workers` processes; return the split's counts for the manifest."""
    dtype = token_dtype(len(tokenizer))
    boundary_id = boundary_token_id(tokenizer)
    counts = {"tokens": 0, "words": 0, "documents": 0}
    batches = encoded_batches(documents, tokenizer.backend_tokenizer, boundary_id, dtype, workers)
    with open(path, "wb") as out, tqdm(desc=desc, unit=" docs", disable=None) as progress:
        for flat, words, documents_in_batch in batches:
            flat.tofile(out)
            counts["tokens"] += int(flat.size)
            counts["words"] += words
            counts["documents"] += documents_in_batch
            progress.update(documents_in_batch)
    counts["dtype"] = dtype.name
    return counts


def read_manifest(folder: Path) -> dict | None:
    """The manifest of a complete cache folder, or None when it is missing or inconsistent."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        for split, counts in manifest["splits"].items():
            expected = counts["tokens"] * np.dtype(counts["dtype"]).itemsize
            if (folder / f"{split}.bin").stat().st_size != expected:
                return None
    except (OSError, ValueError, KeyError):
        return None
    return manifest


def open_split(folder: Path, split: str, counts: dict) -> PackedSplit:
    path = folder / f"{split}.bin"
    tokens = np.memmap(path, dtype=counts["dtype"], mode="r") if counts["tokens"] else np.zeros(0, counts["dtype"])
    return PackedSplit(tokens, counts["tokens"], counts["words"], counts["documents"])


def packed_corpus(
    corpus, tokenizer, tokenizer_digest: str, cache_dir: Path, workers: int = 1
) -> tuple[dict[str, PackedSplit], dict]:
    """Open the packed cache of `corpus` under `tokenizer`, building it first when needed (with
    `workers` tokenizing processes; 1: this one, the Rust tokenizer using every core).

    Returns the splits and the manifest. Call on one process at a time (the caller lets the main
    process build first): the folder is written under a temporary name and renamed when whole.
    """
    folder = Path(cache_dir) / "tokens" / cache_key(corpus.fingerprint, tokenizer_digest)
    clean_orphans(folder.parent)  # what a killed packing job of this host left behind
    manifest = read_manifest(folder)
    if manifest is None:
        manifest = build_cache(corpus, tokenizer, tokenizer_digest, folder, workers)
    splits = {split: open_split(folder, split, counts) for split, counts in manifest["splits"].items()}
    return splits, manifest


def build_cache(corpus, tokenizer, tokenizer_digest: str, folder: Path, workers: int = 1) -> dict:
    staged = staging_path(folder)  # unique: two jobs may build the same entry at once
    staged.mkdir(parents=True)
    try:
        manifest = write_cache(corpus, tokenizer, tokenizer_digest, staged, workers)
    except BaseException:
        discard(staged)
        raise
    finished_meanwhile = read_manifest(folder)
    if finished_meanwhile is not None:  # another job built the same entry: use theirs, which may be open
        discard(staged)
        return finished_meanwhile
    publish(staged, folder)  # replaces an incomplete or corrupt earlier attempt
    return manifest


def write_cache(corpus, tokenizer, tokenizer_digest: str, folder: Path, workers: int = 1) -> dict:
    """Pack both splits into `folder` and write its manifest (last); the manifest."""
    sources = {"train": corpus.train_documents, "validation": corpus.validation_documents}
    splits = {
        split: write_split(sources[split](), tokenizer, folder / f"{split}.bin", f"packing {split}", workers)
        for split in SPLITS
    }
    if splits["train"]["tokens"] == 0:
        raise UsageError(f"corpus {corpus.name} has no training text")
    manifest = {
        "format_version": PACKING_VERSION,
        "corpus": corpus.name,
        "source_fingerprint": corpus.fingerprint,
        "tokenizer_hash": tokenizer_digest,
        "vocab_size": len(tokenizer),
        "splits": splits,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest
