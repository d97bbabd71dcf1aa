"""Tokenizers: train one on the corpus (byte-level BPE or WordPiece), or load one; hash it.

Trained tokenizers are cached under `<cache_dir>/tokenizers/<key>/`, keyed by the corpus
fingerprint and the training options, so a re-run on the same corpus skips training. Every run
saves its tokenizer (a standard Hugging Face folder that `AutoTokenizer` loads) inside the run.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from common.errors import UsageError, first_line
from common.files import atomic_path, clean_orphans

TOKENIZER_CACHE_VERSION = "1"

# GPT-2's convention: one token marks both the start and the end of a document, so a model
# scored with "BOS prepended" sees the same token that separated documents in training.
BPE_SPECIAL_TOKENS = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<pad>"}
WORDPIECE_SPECIAL_TOKENS = {
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "mask_token": "[MASK]",
    "unk_token": "[UNK]",
}


def distinct_special_tokens(special_tokens: dict[str, str]) -> list[str]:
    return list(dict.fromkeys(special_tokens.values()))


def minimum_vocab_size(kind: str) -> int:
    """The smallest vocabulary that holds the special tokens plus the base alphabet."""
    if kind == "bpe":
        return len(pre_tokenizers.ByteLevel.alphabet()) + len(distinct_special_tokens(BPE_SPECIAL_TOKENS)) + 1
    return len(distinct_special_tokens(WORDPIECE_SPECIAL_TOKENS)) + 1


def build_bpe_trainer(vocab_size: int) -> tuple[Tokenizer, trainers.Trainer, dict[str, str]]:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        special_tokens=distinct_special_tokens(BPE_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    return tokenizer, trainer, BPE_SPECIAL_TOKENS


def build_wordpiece_trainer(
    vocab_size: int, continuing_alphabet: tuple[str, ...] = ()
) -> tuple[Tokenizer, trainers.Trainer, dict[str, str]]:
    special = WORDPIECE_SPECIAL_TOKENS
    tokenizer = Tokenizer(models.WordPiece(unk_token=special["unk_token"]))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        special_tokens=[*distinct_special_tokens(special), *continuing_alphabet],
    )
    return tokenizer, trainer, special


def continuing_alphabet(documents: Iterable[str]) -> tuple[str, ...]:
    """Every `##<character>` a WordPiece vocabulary of these documents holds, sorted.

    The `tokenizers` WordPiece trainer (0.23) gives these tokens their ids while it walks a hash
    map, in an order that changes from process to process, and breaks ties between merges by id: the
    same corpus then gives another vocabulary in each process (upstream issue 1794). Declared up
    front, the tokens get fixed ids and the training is the same everywhere. An alphabet-only
    training finds them (it counts the words, but makes no merges)."""
    tokenizer, trainer, _ = build_wordpiece_trainer(minimum_vocab_size("wordpiece"))
    tokenizer.train_from_iterator(documents, trainer)
    return tuple(sorted(token for token in tokenizer.get_vocab() if token.startswith("##") and len(token) == 3))


def without_added_tokens(tokenizer: Tokenizer, contents: tuple[str, ...]) -> Tokenizer:
    """The tokenizer with `contents` no longer added (special) tokens; they stay in the vocabulary."""
    data = json.loads(tokenizer.to_str())
    data["added_tokens"] = [token for token in data["added_tokens"] if token["content"] not in set(contents)]
    return Tokenizer.from_str(json.dumps(data))


def wordpiece_post_processor(tokenizer: Tokenizer) -> processors.TemplateProcessing:
    """[CLS] A [SEP] (B [SEP]) like BERT, so sentence pairs encode as fine-tuning expects."""
    cls, sep = WORDPIECE_SPECIAL_TOKENS["cls_token"], WORDPIECE_SPECIAL_TOKENS["sep_token"]
    return processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, tokenizer.token_to_id(cls)), (sep, tokenizer.token_to_id(sep))],
    )


def train_tokenizer(
    kind: str, documents: Sequence[str] | Callable[[], Iterable[str]], vocab_size: int
) -> PreTrainedTokenizerFast:
    """Train a `kind` ("bpe" or "wordpiece") tokenizer with `vocab_size` entries on `documents` (a
    list, or a function giving a fresh iterator: WordPiece reads them twice). The same documents give
    the same tokenizer, byte for byte, in every process and on every machine."""
    smallest = minimum_vocab_size(kind)
    if vocab_size < smallest:
        raise UsageError(f"--vocab_size {vocab_size} is too small for a {kind} tokenizer: it needs at least {smallest}")
    read = documents if callable(documents) else lambda: documents
    if kind == "bpe":  # every byte is in the initial alphabet: no ids depend on an iteration order
        tokenizer, trainer, special_tokens = build_bpe_trainer(vocab_size)
        tokenizer.train_from_iterator(read(), trainer)
    else:
        continuing = continuing_alphabet(read())
        tokenizer, trainer, special_tokens = build_wordpiece_trainer(vocab_size, continuing)
        tokenizer.train_from_iterator(read(), trainer)
        tokenizer = without_added_tokens(tokenizer, continuing)
        tokenizer.post_processor = wordpiece_post_processor(tokenizer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **special_tokens)


def tokenizer_hash(tokenizer: PreTrainedTokenizerFast) -> str:
    """A short digest of everything that decides the token ids: vocabulary, merges, and which
    tokens are BOS/EOS/CLS/... (they mark document boundaries in the packed cache)."""
    content = tokenizer.backend_tokenizer.to_str() + json.dumps(tokenizer.special_tokens_map, sort_keys=True)
    return hashlib.sha256(content.encode("utf-8")).hexdigest()[:16]


def load_tokenizer(
    name_or_path: str, revision: str | None = None, flag: str = "--tokenizer_name_or_path"
) -> PreTrainedTokenizerFast:
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, revision=revision)
    except (OSError, ValueError) as error:
        raise UsageError(f"{flag} {name_or_path}: cannot load a tokenizer ({first_line(error)})") from None
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise UsageError(f"{flag} {name_or_path}: a fast (tokenizers-backed) tokenizer is needed")
    return tokenizer


def tokenizer_files(tokenizer: PreTrainedTokenizerFast) -> dict[str, bytes]:
    """The files `save_pretrained` writes for `tokenizer`, by name: what another process needs to
    hold the very same tokenizer (`tokenizer_from_files`)."""
    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        return {path.name: path.read_bytes() for path in Path(folder).iterdir() if path.is_file()}


def tokenizer_from_files(files: dict[str, bytes]) -> PreTrainedTokenizerFast:
    with tempfile.TemporaryDirectory() as folder:
        for name, content in files.items():
            (Path(folder) / name).write_bytes(content)
        return AutoTokenizer.from_pretrained(folder)


def tokenizer_cache_key(corpus_fingerprint: str, kind: str, vocab_size: int) -> str:
    raw = json.dumps([TOKENIZER_CACHE_VERSION, corpus_fingerprint, kind, vocab_size])
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:20]


def trained_or_cached_tokenizer(
    kind: str,
    documents_factory,
    vocab_size: int,
    corpus_fingerprint: str,
    cache_dir: Path,
) -> PreTrainedTokenizerFast:
    """The tokenizer trained on this corpus with these options, from the cache when it is there."""
    folder = Path(cache_dir) / "tokenizers" / tokenizer_cache_key(corpus_fingerprint, kind, vocab_size)
    clean_orphans(folder.parent)  # what a killed job of this host left behind
    if (folder / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(folder)
    tokenizer = train_tokenizer(kind, documents_factory, vocab_size)
    with atomic_path(folder) as staged:  # a job sharing the cache never sees half a tokenizer
        tokenizer.save_pretrained(staged)
    return tokenizer


# --- word accounting ---------------------------------------------------------------------------


def byte_level_decoder_table() -> dict[str, int]:
    """The inverse of GPT-2's bytes-to-printable-characters map used by byte-level BPE."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    shifted, extra = dict(), 0
    for byte in range(256):
        if byte in printable:
            shifted[chr(byte)] = byte
        else:
            shifted[chr(256 + extra)] = byte
            extra += 1
    return shifted


def token_surface_forms(tokenizer: PreTrainedTokenizerFast) -> list[bytes | None]:
    """Each token id's UTF-8 bytes as they appear in the input (with its leading space), None
    for specials. Bytes, not text: a byte-level token may hold part of a character.

    Byte-level BPE and SentencePiece-style tokens carry their whitespace, so word starts are
    exact. WordPiece drops whitespace: a token without '##' is taken as a word start, which
    counts punctuation as words (the only inexact case).
    """
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    decoder_type = (backend.get("decoder") or {}).get("type")
    special_ids = set(tokenizer.all_special_ids)
    byte_table = byte_level_decoder_table() if decoder_type == "ByteLevel" else None
    forms: list[str | None] = []
    for token_id, token in enumerate(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))):
        if token is None or token_id in special_ids:
            forms.append(None)
        elif byte_table is not None:
            forms.append(bytes(byte_table.get(ch, 0x3F) for ch in token))
        elif decoder_type == "Metaspace":
            forms.append(token.replace("▁", " ").encode("utf-8"))
        elif decoder_type == "WordPiece":
            forms.append((token[2:] if token.startswith("##") else " " + token).encode("utf-8"))
        else:
            forms.append(token.encode("utf-8"))
    return forms


def word_start_tables(tokenizer: PreTrainedTokenizerFast) -> dict[str, np.ndarray]:
    """Boolean tables over the vocabulary used to count whitespace-separated words exactly.

    A token starts a word when it has non-whitespace bytes and either begins with whitespace or
    follows a token that ends with whitespace (or a special token, i.e. a document boundary).
    """
    forms = token_surface_forms(tokenizer)
    has_text = np.array([bool(f and f.strip()) for f in forms])
    starts_with_space = np.array([bool(f) and f[:1].isspace() for f in forms])
    ends_with_space = np.array([f is None or (bool(f) and f[-1:].isspace()) for f in forms])
    return {"has_text": has_text, "starts_with_space": starts_with_space, "ends_with_space": ends_with_space}


def count_words(windows: np.ndarray, tables: dict[str, np.ndarray]) -> int:
    """Words that begin among the targets (positions 1..) of token windows shaped (n, L+1)."""
    previous, current = windows[..., :-1], windows[..., 1:]
    starts = tables["has_text"][current] & (tables["starts_with_space"][current] | tables["ends_with_space"][previous])
    return int(starts.sum())
