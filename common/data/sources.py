"""Turn a `--dataset` choice into training and validation documents.

`load_corpus(dataset, ...)` returns a `Corpus`: a short name, a fingerprint, and two
callables that each give a fresh iterator of documents (strings). Sources:

* ``synthetic`` (default): generated text from `common.data.synthetic`, no files needed.
* ``babylm``: a BabyLM folder (``--data_dir .../train_10M``) of line-oriented ``*.train``
  files. Each file is cleaned by rules chosen from its name (CHILDES and Switchboard lose
  their speaker labels) and its lines are grouped into documents. Validation comes from the
  sibling ``dev/`` folder (``*.dev`` files) when it has any.
* ``text``: plain text files (``--data_files``, paths or globs); documents are separated by
  blank lines.
* ``jsonl``: JSON-lines files (``--data_files``); the document is the ``--text_column`` field.
* anything else: a Hugging Face dataset id with an optional config after a colon
  (``wikitext:wikitext-103-raw-v1``, ``roneneldan/TinyStories``) or a local folder that
  `datasets.load_dataset` reads. Its own validation split is used when it has one.

Where a source has no validation split of its own, a held-out percentage of documents
(`--validation_split_percentage`) is spread evenly through the corpus (see `is_held_out`).

The fingerprint is a cache key for the tokenizer and the packed-token cache, and part of what a
checkpoint is made for: it changes when any input file's content changes (its name, size and
xxh3 digest; not its folder or time stamp), when an option changes, or when the cleaning rules
change (`FINGERPRINT_VERSION`).

Files are streamed line by line, so memory stays bounded however large the corpus is.
Bytes that are not valid UTF-8 become U+FFFD; they are counted per file (`Corpus.decode_errors`)
and logged once per file after the first full pass over it.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from common.data import synthetic
from common.data.batch_encoding import count_text_words
from common.errors import UsageError, first_line
from common.files import file_digest
from common.jsonl import json_object

# Bump when the cleaning or grouping rules change, so cached tokenizers and token packs
# built from the old text are not reused.
FINGERPRINT_VERSION = "2"

# BabyLM files have no document boundaries. Lines are grouped into documents of at most this
# many lines so that one document never holds a whole multi-GB file in memory, and so that the
# packer's end-of-text token (appended between documents) shows up at a reasonable rate
# instead of once per file.
LINES_PER_DOCUMENT = 64

# A plain text file may lack blank lines altogether; this cap keeps a document (and memory)
# bounded in that case. Real documents (stories, articles) are far shorter.
MAX_TEXT_DOCUMENT_LINES = 10_000
# Lines longer than this are read in pieces, and documents longer than this are split, so that a
# file of one enormous line (a web dump without line breaks) packs in bounded memory.
MAX_LINE_BYTES = 2**20
MAX_DOCUMENT_CHARS = 2**20

# A Hugging Face dataset's own validation split, tried in this order.
VALIDATION_SPLIT_NAMES = ("validation", "valid", "dev")

_FILE_SOURCES = ("text", "jsonl")
LOCAL_SOURCES = ("synthetic", "babylm", *_FILE_SOURCES)  # read line by line; the rest are Hugging Face's
_GLOB_CHARACTERS = re.compile(r"[*?\[]")
_CHILDES_SPEAKER = re.compile(r"^\*[^\s:]+:(?:\s+|$)")
_SWITCHBOARD_SPEAKER = re.compile(r"^[AB]:\s*")
_UNSAFE_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]+")

_logger = logging.getLogger(__name__)


class DecodeErrors:
    """Bytes replaced by U+FFFD in each file of one corpus, from the latest full pass over the
    file; a file with any is warned about once (a corpus is read again every epoch)."""

    def __init__(self):
        self.replaced: dict[str, int] = {}
        self.warned: set[str] = set()

    def record(self, path: Path, replaced: int) -> None:
        key = str(path.resolve())
        self.replaced[key] = replaced
        if replaced and key not in self.warned:
            self.warned.add(key)
            _logger.warning("%s: %d invalid UTF-8 byte sequence(s) replaced with U+FFFD", path, replaced)

    def __call__(self) -> dict[str, int]:
        """Files read in full at least once that had replaced bytes: path -> how many."""
        return {key: count for key, count in self.replaced.items() if count}


@dataclass(frozen=True)
class Corpus:
    """Documents for training and validation, with a cache key for everything derived from them."""

    name: str
    fingerprint: str
    train_documents: Callable[[], Iterator[str]]
    validation_documents: Callable[[], Iterator[str]]
    # Bytes replaced by U+FFFD so far, per file of this corpus read in full at least once.
    decode_errors: DecodeErrors = field(default_factory=DecodeErrors)


# ---------------------------------------------------------------------------------------------
# Pure helpers: decoding, cleaning, grouping, held-out split.


def decode_counting(data: bytes) -> tuple[str, int]:
    """Decode UTF-8, replacing invalid bytes with U+FFFD; also return how many were replaced."""
    try:
        return data.decode("utf-8"), 0
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        # U+FFFD already present in the input is valid text, not a replacement: subtract it.
        genuine = data.decode("utf-8", errors="ignore").count("\ufffd")
        return text, text.count("\ufffd") - genuine


def normalize_whitespace(line: str) -> str:
    """Strip both ends and collapse every run of whitespace inside the line to one space."""
    return " ".join(line.split())


def clean_childes_line(line: str) -> str:
    """`*CHI:\\tI want that .` -> `I want that .`; dependent tiers (`%mor:` ...) -> ``."""
    line = line.strip()
    if line.startswith("%"):
        return ""
    return normalize_whitespace(_CHILDES_SPEAKER.sub("", line))


def clean_switchboard_line(line: str) -> str:
    """`A:\\tyeah i know` -> `yeah i know`."""
    return normalize_whitespace(_SWITCHBOARD_SPEAKER.sub("", line.strip()))


def line_cleaner(path: Path) -> Callable[[str], str]:
    """The cleaning rule for a BabyLM file, chosen by its stem (`childes.train`, `switchboard.dev`)."""
    stem = path.stem.lower()
    if stem.startswith("childes"):
        return clean_childes_line
    if stem.startswith("switchboard"):
        return clean_switchboard_line
    return normalize_whitespace


def group_lines(
    lines: Iterable[str], clean: Callable[[str], str], max_lines: int = LINES_PER_DOCUMENT
) -> Iterator[str]:
    """Group cleaned lines into documents of at most `max_lines` lines joined by newlines.

    A blank line in the input ends the current document; a line that only becomes empty
    through cleaning (a dropped CHILDES tier) is skipped without ending it.
    """
    block: list[str] = []
    size = 0
    for line in lines:
        if not line.strip():
            if block:
                yield "\n".join(block)
                block, size = [], 0
            continue
        cleaned = clean(line)
        if not cleaned:
            continue
        block.append(cleaned)
        size += len(cleaned)
        if len(block) == max_lines or size >= MAX_DOCUMENT_CHARS:
            yield "\n".join(block)
            block, size = [], 0
    if block:
        yield "\n".join(block)


def split_paragraphs(lines: Iterable[str], max_lines: int = MAX_TEXT_DOCUMENT_LINES) -> Iterator[str]:
    """Documents separated by one or more blank lines; line breaks kept, trailing spaces stripped."""
    block: list[str] = []
    size = 0
    for line in lines:
        line = line.rstrip()
        if line:
            block.append(line)
            size += len(line)
        if block and (not line or len(block) == max_lines or size >= MAX_DOCUMENT_CHARS):
            yield "\n".join(block)
            block, size = [], 0
    if block:
        yield "\n".join(block)


def _held_out_rule(percentage: float) -> Callable[[int], bool]:
    # Exact decimal arithmetic, so that p=1 over 10,000 documents holds out exactly 100.
    rate = Fraction(repr(float(percentage))) / 100
    numerator, denominator = rate.numerator, rate.denominator
    return lambda index: (index + 1) * numerator // denominator > index * numerator // denominator


def is_held_out(index: int, percentage: float) -> bool:
    """Whether document `index` (0-based) goes to validation when holding out `percentage`%.

    Document i is held out when floor((i+1) * p/100) > floor(i * p/100): the running count
    of held-out documents steps up once every 100/p documents, so validation is spread
    evenly through the corpus, any fractional p works, and p=0 holds out nothing. The first
    document always goes to training (for p < 100).
    """
    return _held_out_rule(percentage)(index)


def held_out_split(documents: Iterable[str], percentage: float, validation: bool) -> Iterator[str]:
    """The validation (held-out) or training side of `documents`, per `is_held_out`."""
    held_out = _held_out_rule(percentage)
    for index, document in enumerate(documents):
        if held_out(index) == validation:
            yield document


def first_words(documents: Iterable[str], limit: int) -> Iterator[str]:
    """The documents up to the one that brings the running word count to `limit`."""
    words = 0
    for document in documents:
        if words >= limit:
            return
        words += count_text_words(document)
        yield document


def _capped(documents: Callable[[], Iterator[str]], limit: int | None) -> Callable[[], Iterator[str]]:
    return documents if limit is None else lambda: first_words(documents(), limit)


def _fingerprint(payload: dict) -> str:
    text = json.dumps({"version": FINGERPRINT_VERSION, **payload}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _file_contents(paths: Iterable[Path]) -> list[list]:
    """Each file's name, size and content digest, in order: what the corpus is, wherever it lies
    (another node's copy, a moved folder) and however it was touched (an edit that keeps the size
    and the time stamp still changes it)."""
    return [[path.name, path.stat().st_size, file_digest(path)] for path in paths]


def _safe_name(text: str) -> str:
    return _UNSAFE_NAME_CHARACTERS.sub("-", text).strip("-") or "dataset"


# ---------------------------------------------------------------------------------------------
# Reading files.


def read_lines(
    path: Path, decode_errors: DecodeErrors | None = None, max_line_bytes: int | None = MAX_LINE_BYTES
) -> Iterator[str]:
    """Stream a file's decoded lines without their line ends.

    Each line is decoded on its own: b"\\n" never occurs inside a UTF-8 multi-byte sequence,
    so this equals decoding the whole file, without holding it in memory. A line longer than
    `max_line_bytes` comes in pieces, cut at whitespace (None: whole lines, for JSON Lines, whose
    records cannot be cut).
    """
    replaced = 0
    with path.open("rb") as handle:
        raw_lines = handle if max_line_bytes is None else bounded_lines(handle, max_line_bytes)
        for number, raw in enumerate(raw_lines):
            text, bad = decode_counting(raw)
            replaced += bad
            if number == 0:
                text = text.removeprefix("\ufeff")  # byte-order mark from some Windows editors
            yield text.rstrip("\r\n")
    if decode_errors is not None:
        decode_errors.record(path, replaced)


def bounded_lines(handle, limit: int) -> Iterator[bytes]:
    """The lines of a binary file, each at most about `limit` bytes: a longer line comes in pieces,
    each cut after its last space or tab (in a line without any, between two characters), so that
    memory stays bounded whatever the file holds (a corpus of one 60 MB line, say)."""
    carry = b""
    while piece := handle.readline(limit):
        piece, carry = carry + piece, b""
        if len(piece) >= limit and not piece.endswith(b"\n"):  # a long line, cut by readline
            cut = max(piece.rfind(b" "), piece.rfind(b"\t")) + 1 or whole_characters(piece)
            piece, carry = piece[:cut], piece[cut:]
        yield piece
    if carry:
        yield carry


def whole_characters(data: bytes) -> int:
    """How many leading bytes of UTF-8 `data` hold whole characters: where a cut splits none."""
    start = len(data)
    while start > 0 and data[start - 1] & 0xC0 == 0x80:  # back over the last character's continuation bytes
        start -= 1
    if start == 0 or data[start - 1] < 0x80:
        return len(data)
    lead = data[start - 1]
    length = 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
    return len(data) if len(data) - (start - 1) >= length else start - 1


def _jsonl_documents(path: Path, text_column: str, decode_errors: DecodeErrors) -> Iterator[str]:
    for number, line in enumerate(read_lines(path, decode_errors, max_line_bytes=None), start=1):
        if not line.strip():
            continue
        row = json_object(line, f"{path}:{number}")
        if text_column not in row:
            raise UsageError(f"{path}:{number}: no field {text_column!r}")
        text = row[text_column]
        if not isinstance(text, str):
            raise UsageError(f"{path}:{number}: field {text_column!r} is not a string")
        if text.strip():
            yield text


def expand_data_files(patterns: list[str]) -> list[Path]:
    """Paths and glob patterns -> existing files, each glob sorted, duplicates dropped."""
    files: list[Path] = []
    seen: set[Path] = set()
    for pattern in patterns:
        if _GLOB_CHARACTERS.search(pattern):
            matches = [Path(match) for match in sorted(glob.glob(pattern, recursive=True))]
            matches = [match for match in matches if match.is_file()]
            if not matches:
                raise UsageError(f"--data_files: no file matches {pattern}")
        else:
            path = Path(pattern)
            if not path.is_file():
                reason = "is not a file" if path.exists() else "does not exist"
                raise UsageError(f"--data_files: {pattern} {reason}")
            matches = [path]
        for match in matches:
            if match.resolve() not in seen:
                seen.add(match.resolve())
                files.append(match)
    return files


# ---------------------------------------------------------------------------------------------
# Sources.


def _require_documents(documents: Callable[[], Iterator[str]], where: str) -> None:
    # Peeking reads only up to the first document, not the whole corpus.
    if next(documents(), None) is None:
        raise UsageError(f"no training documents in {where}")


def _with_held_out(
    name: str, fingerprint: str, documents: Callable[[], Iterator[str]], percentage: float, **extra
) -> Corpus:
    return Corpus(
        name=name,
        fingerprint=fingerprint,
        train_documents=lambda: held_out_split(documents(), percentage, validation=False),
        validation_documents=lambda: held_out_split(documents(), percentage, validation=True),
        **extra,
    )


def _synthetic_corpus(words: int, seed: int, percentage: float) -> Corpus:
    if isinstance(words, bool) or not isinstance(words, int) or words <= 0:
        raise UsageError(f"--synthetic_words must be a positive integer, got {words!r}")

    def documents() -> Iterator[str]:
        return synthetic.synthetic_documents(words, seed)

    _require_documents(documents, f"the synthetic source (--synthetic_words {words})")
    fingerprint = _fingerprint(
        {
            "kind": "synthetic",
            "synthetic_version": synthetic.SYNTHETIC_VERSION,
            "words": words,
            "seed": seed,
            "validation_split_percentage": percentage,
        }
    )
    return _with_held_out("synthetic", fingerprint, documents, percentage)


def _babylm_documents(paths: list[Path], decode_errors: DecodeErrors) -> Callable[[], Iterator[str]]:
    def documents() -> Iterator[str]:
        for path in paths:
            yield from group_lines(read_lines(path, decode_errors), line_cleaner(path))

    return documents


def _babylm_corpus(data_dir: str | None, percentage: float, max_words: int | None = None) -> Corpus:
    if not data_dir:
        raise UsageError("--dataset babylm needs --data_dir (a folder such as .../train_10M)")
    folder = Path(data_dir)
    if not folder.is_dir():
        raise UsageError(f"--data_dir {data_dir} is not a folder")
    train_files = sorted(folder.glob("*.train"))
    if not train_files:
        raise UsageError(f"--data_dir {data_dir} has no *.train files")
    dev_folder = folder.resolve().parent / "dev"
    dev_files = sorted(dev_folder.glob("*.dev")) if dev_folder.is_dir() else []

    decode_errors = DecodeErrors()
    train = _capped(_babylm_documents(train_files, decode_errors), max_words)
    _require_documents(train, data_dir)
    options = {
        "kind": "babylm",
        "lines_per_document": LINES_PER_DOCUMENT,
        "max_line_bytes": MAX_LINE_BYTES,
        "max_document_chars": MAX_DOCUMENT_CHARS,
        "files": _file_contents(train_files),
        "dev_files": _file_contents(dev_files),
        **({"max_words": max_words} if max_words else {}),
    }
    name = f"babylm-{_safe_name(folder.resolve().name)}"
    if dev_files:
        return Corpus(name, _fingerprint(options), train, _babylm_documents(dev_files, decode_errors), decode_errors)
    options["validation_split_percentage"] = percentage
    return _with_held_out(name, _fingerprint(options), train, percentage, decode_errors=decode_errors)


def _file_corpus(
    kind: str, data_files: list[str] | None, text_column: str, percentage: float, max_words: int | None = None
) -> Corpus:
    if not data_files:
        raise UsageError(f"--dataset {kind} needs --data_files (paths or glob patterns)")
    files = expand_data_files(list(data_files))
    decode_errors = DecodeErrors()

    def documents() -> Iterator[str]:
        for path in files:
            if kind == "text":
                yield from split_paragraphs(read_lines(path, decode_errors))
            else:
                yield from _jsonl_documents(path, text_column, decode_errors)

    documents = _capped(documents, max_words)
    _require_documents(documents, " ".join(data_files))
    options = {
        "kind": kind,
        "files": _file_contents(files),
        "validation_split_percentage": percentage,
        **({"max_words": max_words} if max_words else {}),
    }
    if kind == "text":
        options |= {
            "max_text_document_lines": MAX_TEXT_DOCUMENT_LINES,
            "max_line_bytes": MAX_LINE_BYTES,
            "max_document_chars": MAX_DOCUMENT_CHARS,
        }
    else:
        options["text_column"] = text_column
    name = f"{kind}-{_safe_name(files[0].stem)}"
    if len(files) > 1:
        name += f"-and-{len(files) - 1}-more"
    return _with_held_out(name, _fingerprint(options), documents, percentage, decode_errors=decode_errors)


def parse_dataset_id(dataset: str) -> tuple[str, str | None]:
    """`wikitext:wikitext-103-raw-v1` -> (`wikitext`, `wikitext-103-raw-v1`).

    An existing local path is kept whole, even if it contains a colon.
    """
    if Path(dataset).exists() or ":" not in dataset:
        return dataset, None
    name, config = dataset.rsplit(":", 1)
    return name, config or None


def _split_documents(split, text_column: str) -> Callable[[], Iterator[str]]:
    def documents() -> Iterator[str]:
        # Batches of the one column keep memory bounded on large splits.
        for batch in split.select_columns([text_column]).iter(batch_size=1024):
            for text in batch[text_column]:
                if isinstance(text, str) and text.strip():
                    yield text

    return documents


def _huggingface_corpus(
    dataset: str, text_column: str, percentage: float, streaming: bool = False, max_words: int | None = None
) -> Corpus:
    """A Hugging Face data set (a Hub id or a local folder `load_dataset` reads). With `streaming`,
    its splits are read example by example as packing asks for them, with no download and Arrow
    conversion of the whole data set first; a stream has no Arrow fingerprint, so the cache key is
    the data set's revision on the Hub, or the content of a local folder's files."""
    import datasets

    name, config = parse_dataset_id(dataset)
    try:
        loaded = datasets.load_dataset(name, config, streaming=streaming)
    except Exception as error:  # not found, offline, bad config: all user input problems here
        raise UsageError(f"--dataset {dataset}: cannot load ({first_line(error)})") from error

    if "train" not in loaded:
        raise UsageError(f"--dataset {dataset} has no 'train' split (splits: {', '.join(loaded)})")
    train_split = loaded["train"]
    _check_text_column(train_split, text_column, f"--dataset {dataset}")
    train = _capped(_split_documents(train_split, text_column), max_words)
    try:
        _require_documents(train, f"--dataset {dataset}")
    except KeyError:  # a stream whose features were unknown until its first example
        raise UsageError(f"--text_column {text_column!r} not in --dataset {dataset}") from None

    validation_name = next((split for split in VALIDATION_SPLIT_NAMES if split in loaded), None)
    options = {
        "kind": "huggingface-stream" if streaming else "huggingface",
        "dataset": name,
        "config": config,
        "text_column": text_column,
        "train": _stream_source(name) if streaming else train_split._fingerprint,
        **({"max_words": max_words} if max_words else {}),
    }
    corpus_name = _safe_name(Path(name).name if Path(name).exists() else name)
    if config:
        corpus_name += f"-{_safe_name(config)}"

    if validation_name is not None:
        validation_split = loaded[validation_name]
        _check_text_column(validation_split, text_column, f"split {validation_name!r} of {dataset}")
        options["validation"] = [validation_name, None if streaming else validation_split._fingerprint]
        return Corpus(corpus_name, _fingerprint(options), train, _split_documents(validation_split, text_column))
    options["validation_split_percentage"] = percentage
    return _with_held_out(corpus_name, _fingerprint(options), train, percentage)


def _check_text_column(split, text_column: str, where: str) -> None:
    columns = split.column_names  # None while a stream's features are unknown
    if columns is not None and text_column not in columns:
        raise UsageError(f"--text_column {text_column!r} not in {where} (columns: {', '.join(columns)})")


def _stream_source(name: str) -> list | str:
    """What a streamed data set is: a local folder's files (names, sizes, digests), or the Hub
    revision it resolves to now (streaming from the Hub needs the network anyway)."""
    folder = Path(name)
    if folder.exists():
        files = sorted(path for path in folder.rglob("*") if path.is_file() and ".cache" not in path.parts)
        return _file_contents(files)
    from huggingface_hub import HfApi

    try:
        return HfApi().dataset_info(name).sha
    except Exception as error:
        raise UsageError(
            f"--dataset {name}: cannot read its Hub revision for --streaming ({first_line(error)})"
        ) from None


def check_streamable(dataset: str) -> None:
    """--streaming is for Hugging Face data sets; the local sources are read lazily anyway."""
    if dataset in LOCAL_SOURCES:
        raise UsageError(
            f"--streaming reads Hugging Face data sets; --dataset {dataset} is already read line by line "
            f"(no download, bounded memory): leave --streaming out"
        )


def _check_percentage(percentage: float) -> float:
    is_number = isinstance(percentage, (int, float)) and not isinstance(percentage, bool)
    if not (is_number and math.isfinite(percentage) and 0 <= percentage < 100):
        raise UsageError(f"--validation_split_percentage must be in [0, 100), got {percentage!r}")
    return float(percentage)


def load_corpus(
    dataset: str = "synthetic",
    *,
    data_dir: str | None = None,
    data_files: list[str] | None = None,
    text_column: str = "text",
    validation_split_percentage: float = 1.0,
    synthetic_words: int = synthetic.DEFAULT_WORDS,
    seed: int = 0,
    streaming: bool = False,
    max_words: int | None = None,
) -> Corpus:
    """The corpus named by `dataset` (see the module docstring); UsageError on bad input.
    `streaming`: read a Hugging Face data set as a stream (local sources are always read lazily).
    `max_words`: only the first documents, up to this many words (held-out documents included,
    so that nothing past them is read; the synthetic corpus has --synthetic_words instead)."""
    percentage = _check_percentage(validation_split_percentage)
    if streaming:
        check_streamable(dataset)
    if dataset == "synthetic":
        return _synthetic_corpus(synthetic_words, seed, percentage)
    if dataset == "babylm":
        return _babylm_corpus(data_dir, percentage, max_words)
    if dataset in _FILE_SOURCES:
        return _file_corpus(dataset, data_files, text_column, percentage, max_words)
    return _huggingface_corpus(dataset, text_column, percentage, streaming, max_words)
