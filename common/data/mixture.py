"""Several sources mixed by weight: how a run names them, their checks, and loading them.

A preset lists them under `datasets:`, each item a source as `--dataset` names one, with the
options it needs, a `weight` (or a `tokens` budget), and optionally `max_words` (only the source's
first documents, up to that many words: a slice of a web-scale corpus):

    datasets:
      - {dataset: text, data_files: [data/stories/*.txt], weight: 0.5, name: stories}
      - {dataset: roneneldan/TinyStories, weight: 0.3, streaming: true}
      - {dataset: synthetic, weight: 0.2}

The command line has a compact form of the same, `--dataset_mixture`: comma-separated
`SOURCE=WEIGHT` items, where SOURCE is `synthetic`, `babylm:FOLDER`, `text:FILE_OR_GLOB`,
`jsonl:FILE_OR_GLOB` or a Hugging Face dataset id with an optional `:config`:

    --dataset_mixture "text:data/stories/*.txt=0.5,roneneldan/TinyStories=0.3,synthetic=0.2"

Weights are shares of the training windows and need not add up to 1. A weight of 0 keeps a source
out of training but in validation (a held-out domain). Token budgets (`tokens: 100M`) give the
weights in proportion to the budgets and, unless --max_steps or --max_train_tokens says otherwise,
train for their sum.

Each source is a `Corpus` of its own, packed into its own cache entry. The mixture's fingerprint
covers every source's fingerprint, name and weight, since they decide which windows a run trains
on and how its records are named; the tokenizer trained for a mixture is keyed by its training
sample alone (`Mixture.tokenizer_fingerprint`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

from common.config import parse_count
from common.data.sampling import check_drawable
from common.data.sources import LOCAL_SOURCES, Corpus, check_streamable, load_corpus
from common.errors import UsageError

MIXTURE = "mixture"  # the --dataset of a run whose sources are a mixture
SOURCE_KEYS = ("dataset", "name", "weight", "tokens", "data_dir", "data_files", "text_column", "streaming", "max_words")
# The tokenizer of a mixture is trained on at most this much text, drawn from the sources by weight.
TOKENIZER_SAMPLE_CHARS = 10**9
_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(frozen=True)
class SourceSpec:
    """One item of a mixture, as written; `where` names it in error lines."""

    dataset: str
    where: str
    weight: float | None = None
    tokens: int | None = None
    name: str | None = None
    data_dir: str | None = None
    data_files: tuple[str, ...] = ()
    text_column: str | None = None  # None: the run's --text_column
    streaming: bool = False
    max_words: int | None = None  # only the source's first documents, up to this many words

    def identity(self) -> tuple:
        """What makes two items the same source."""
        return (self.dataset, self.data_dir, tuple(sorted(self.data_files)), self.text_column)


@dataclass(frozen=True)
class Mixture:
    """The loaded sources of a run (one, for a plain --dataset), their weights (adding up to 1)
    and the fingerprint of the whole."""

    names: tuple[str, ...]
    corpora: tuple[Corpus, ...]
    weights: tuple[float, ...]
    fingerprint: str

    @property
    def is_mixture(self) -> bool:
        return len(self.corpora) > 1

    def tokenizer_fingerprint(self) -> str:
        """What the tokenizer's training text depends on: a plain corpus's fingerprint, or the weighted
        sources' fingerprints and weights (not their names, nor the sources only validated on)."""
        if not self.is_mixture:
            return self.fingerprint
        sample = [[corpus.fingerprint, weight] for corpus, weight in zip(self.corpora, self.weights) if weight > 0]
        return digest(["tokenizer-sample", sample])

    def tokenizer_documents(self) -> Iterator[str]:
        """The text the tokenizer is trained on: a plain corpus's training documents, or for a
        mixture a sample of each source in proportion to its weight (see `weighted_documents`)."""
        if not self.is_mixture:
            return self.corpora[0].train_documents()
        return weighted_documents(self.corpora, self.weights)


def single_source(corpus: Corpus) -> Mixture:
    """A plain --dataset run: its corpus's own fingerprint, so its caches and checkpoints stay valid."""
    return Mixture((corpus.name,), (corpus,), (1.0,), corpus.fingerprint)


# ---------------------------------------------------------------------------------------------
# Reading what the user wrote.


def parse_dataset_mixture(text: str) -> list[SourceSpec]:
    """`--dataset_mixture "synthetic=0.2,text:a/*.txt=0.8"` -> its items (checked by `check_sources`)."""
    specs = []
    for number, item in enumerate(text.split(","), start=1):
        where = f"--dataset_mixture item {number} ({item.strip()!r})"
        source, equals, weight = item.strip().rpartition("=")
        if not equals or not source:
            raise UsageError(f"{where}: write SOURCE=WEIGHT, e.g. synthetic=0.5 or text:data/*.txt=0.5")
        kind, colon, argument = source.partition(":")
        if kind in ("text", "jsonl") and colon:
            specs.append(SourceSpec(kind, where, data_files=(argument,)))
        elif kind == "babylm" and colon:
            specs.append(SourceSpec("babylm", where, data_dir=argument))
        elif kind in ("text", "jsonl", "babylm"):
            raise UsageError(f"{where}: {kind} needs its files or folder after a colon, e.g. {kind}:PATH=0.5")
        else:
            specs.append(SourceSpec(source, where))
        specs[-1] = _with_weight(specs[-1], weight)
    return specs


def _with_weight(spec: SourceSpec, text: str) -> SourceSpec:
    try:
        weight = float(text)
    except ValueError:
        raise UsageError(f"{spec.where}: weight {text.strip()!r} is not a number") from None
    return dataclasses.replace(spec, weight=weight)


def parse_datasets_list(text: str) -> list[SourceSpec]:
    """A preset's `datasets:` list (which reaches the config as JSON text) -> its items."""
    try:
        items = json.loads(text)
    except ValueError:
        raise UsageError(f"datasets: not a list of sources ({text[:80]!r})") from None
    if not isinstance(items, list) or not items:
        raise UsageError("datasets: must be a list of sources, each a mapping with a dataset and a weight")
    return [_spec_from_mapping(item, f"datasets item {number}") for number, item in enumerate(items, start=1)]


def _spec_from_mapping(item, where: str) -> SourceSpec:
    if not isinstance(item, dict) or "dataset" not in item:
        raise UsageError(f"{where}: must be a mapping with at least `dataset:` (and `weight:` or `tokens:`)")
    unknown = sorted(set(item) - set(SOURCE_KEYS))
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(SOURCE_KEYS)})")
    for key in ("dataset", "name", "data_dir", "text_column"):
        if item.get(key) is not None and not isinstance(item[key], str):
            raise UsageError(f"{where}: {key} must be text, got {item[key]!r}")
    files = item.get("data_files") or ()
    files = (files,) if isinstance(files, str) else files
    if not isinstance(files, (list, tuple)) or not all(isinstance(file, str) for file in files):
        raise UsageError(f"{where}: data_files must be a path, a glob or a list of them, got {files!r}")
    if not isinstance(item.get("streaming", False), bool):
        raise UsageError(f"{where}: streaming must be true or false, got {item['streaming']!r}")
    weight = item.get("weight")
    if weight is not None and (isinstance(weight, bool) or not isinstance(weight, (int, float))):
        raise UsageError(f"{where}: weight {weight!r} is not a number")
    tokens = item.get("tokens")
    if tokens is not None:
        tokens = parse_count(str(tokens), f"{where}: tokens")
    max_words = item.get("max_words")
    if max_words is not None:
        max_words = parse_count(str(max_words), f"{where}: max_words")
    return SourceSpec(
        dataset=item["dataset"],
        where=where,
        weight=None if weight is None else float(weight),
        tokens=tokens,
        name=item.get("name"),
        data_dir=item.get("data_dir"),
        data_files=tuple(files),
        text_column=item.get("text_column"),
        streaming=item.get("streaming", False),
        max_words=max_words,
    )


def check_sources(specs: list[SourceSpec]) -> None:
    """Every item's weight or budget, names and options, before anything is read."""
    budgets = [spec.tokens is not None for spec in specs]
    if any(budgets) and not all(budgets):
        raise UsageError(f"{specs[budgets.index(False)].where}: give every source a token budget, or none")
    seen: dict[tuple, str] = {}
    for spec in specs:
        if spec.weight is not None and spec.tokens is not None:
            raise UsageError(f"{spec.where}: give weight or tokens, not both")
        if spec.weight is None and spec.tokens is None:
            raise UsageError(f"{spec.where}: needs a weight (or a token budget, tokens: 100M)")
        if spec.weight is not None and not (math.isfinite(spec.weight) and spec.weight >= 0):
            raise UsageError(f"{spec.where}: weight {spec.weight!r} must be a finite number of at least 0")
        if spec.name is not None and not _NAME.match(spec.name):
            raise UsageError(f"{spec.where}: name {spec.name!r} may hold only letters, digits, '.', '_' and '-'")
        if spec.streaming:
            check_streamable(spec.dataset)
        if spec.max_words is not None and spec.dataset == "synthetic":
            raise UsageError(f"{spec.where}: the synthetic source's size is --synthetic_words, not max_words")
        if spec.identity() in seen:
            raise UsageError(f"{spec.where}: the same source as {seen[spec.identity()]} (list each source once)")
        seen[spec.identity()] = spec.where
    if all((spec.weight or spec.tokens or 0) == 0 for spec in specs):
        flag = specs[0].where.partition(" item")[0]
        raise UsageError(f"{flag}: every weight is 0; give at least one source a weight")
    check_drawable(list(source_weights(specs)), [spec.where for spec in specs])


def source_weights(specs: list[SourceSpec]) -> tuple[float, ...]:
    """The items' shares of the training windows, adding up to 1."""
    raw = [float(spec.tokens if spec.tokens is not None else spec.weight) for spec in specs]
    return tuple(value / sum(raw) for value in raw)


# ---------------------------------------------------------------------------------------------
# Loading.


def load_mixture(
    specs: list[SourceSpec],
    *,
    text_column: str,
    validation_split_percentage: float,
    synthetic_words: int,
    seed: int,
    streaming: bool,
) -> Mixture:
    """Every source's corpus (checked as `--dataset` checks one), named uniquely. `streaming`
    (the run's --streaming) streams the Hugging Face sources among them."""
    check_sources(specs)
    corpora = []
    for spec in specs:
        try:
            corpora.append(
                load_corpus(
                    spec.dataset,
                    data_dir=spec.data_dir,
                    data_files=list(spec.data_files) or None,
                    text_column=spec.text_column or text_column,
                    validation_split_percentage=validation_split_percentage,
                    synthetic_words=synthetic_words,
                    seed=seed,
                    streaming=spec.streaming or (streaming and spec.dataset not in LOCAL_SOURCES),
                    max_words=spec.max_words,
                )
            )
        except UsageError as error:
            raise UsageError(f"{spec.where}: {error}") from None
    names = tuple(spec.name or corpus.name for spec, corpus in zip(specs, corpora))
    for spec, name in zip(specs, names):
        if names.count(name) > 1:
            raise UsageError(f"{spec.where}: another source is also named {name!r}; give each a `name:`")
    weights = source_weights(specs)
    fingerprint = digest([[name, corpus.fingerprint, weight] for name, corpus, weight in zip(names, corpora, weights)])
    return Mixture(names, tuple(corpora), weights, fingerprint)


def digest(payload) -> str:
    return hashlib.sha256(json.dumps(payload).encode("utf-8")).hexdigest()


def weighted_documents(
    corpora: tuple[Corpus, ...], weights: tuple[float, ...], max_chars: int = TOKENIZER_SAMPLE_CHARS
) -> Iterator[str]:
    """Training documents of all sources, interleaved so that each source's share of the characters
    follows its weight: the next document comes from the source furthest below its share. A source
    read to its end starts again (its weight may ask for more text than it has), until every
    weighted source has been read once or `max_chars` characters have been given."""
    active = [index for index, weight in enumerate(weights) if weight > 0]
    streams = {index: corpora[index].train_documents() for index in active}
    taken = dict.fromkeys(active, 0)
    read_through: set[int] = set()
    total = 0
    while total < max_chars and len(read_through) < len(active):
        index = min(active, key=lambda source: taken[source] / weights[source])
        document = next(streams[index], None)
        if document is None:
            if taken[index] == 0:
                raise UsageError(f"source {corpora[index].name} has no training documents")
            read_through.add(index)
            streams[index] = corpora[index].train_documents()
            continue
        taken[index] += len(document)
        total += len(document)
        yield document
