"""The corpus report of `train_pretrain.py --prepare_only`: what each packed source holds.

Per source and in all: documents, words and tokens (training and validation splits), tokens per
word, how much of the vocabulary the training split uses, the unknown-token rate (WordPiece), and
the distribution of document lengths in tokens (percentiles, and a histogram PNG). Everything is
read from the packed cache, in chunks, so a corpus of billions of tokens is reported in bounded
memory.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from common.data.packing import SPLITS
from common.files import save_figure, write_atomically

CHUNK_TOKENS = 2**24
PERCENTILES = (10, 50, 90, 99)


def document_lengths(tokens: np.ndarray, boundary_id: int) -> np.ndarray:
    """The length in tokens (its boundary token included) of every document of a packed split,
    each of which starts with `boundary_id`."""
    chunks = range(0, len(tokens), CHUNK_TOKENS)
    starts = [np.flatnonzero(tokens[at : at + CHUNK_TOKENS] == boundary_id) + at for at in chunks]
    return np.diff(np.concatenate([*starts, [len(tokens)]]))


def token_counts(tokens: np.ndarray, vocab_size: int) -> np.ndarray:
    """How often each token id occurs in a packed split."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for at in range(0, len(tokens), CHUNK_TOKENS):
        counts += np.bincount(tokens[at : at + CHUNK_TOKENS], minlength=vocab_size)[:vocab_size]
    return counts


def source_statistics(splits: dict, tokenizer, boundary_id: int) -> tuple[dict, np.ndarray]:
    """One source's figures, and its training documents' lengths (for the histogram)."""
    train, validation = splits["train"], splits["validation"]
    counts = token_counts(train.tokens, len(tokenizer))
    text_ids = np.ones(len(tokenizer), dtype=bool)
    text_ids[tokenizer.all_special_ids] = False
    lengths = document_lengths(train.tokens, boundary_id)
    unk = tokenizer.unk_token_id
    figures = {
        "documents": {"train": train.num_documents, "validation": validation.num_documents},
        "words": {"train": train.num_words, "validation": validation.num_words},
        "tokens": {"train": train.num_tokens, "validation": validation.num_tokens},
        "tokens_per_word": train.num_tokens / train.num_words if train.num_words else None,
        # the vocabulary's text tokens (not the special ones) that occur in the training split
        "vocabulary_used": float((counts[text_ids] > 0).mean()),
        "unknown_token_rate": float(counts[unk] / counts.sum()) if unk is not None and counts.sum() else None,
        "document_tokens": {f"p{p}": float(np.percentile(lengths, p)) for p in PERCENTILES} if len(lengths) else {},
    }
    return figures, lengths


def pooled_statistics(per_source: dict[str, dict]) -> dict:
    """The sums over sources (ratios of sums, not means of ratios)."""
    total = {
        key: {split: sum(s[key][split] for s in per_source.values()) for split in SPLITS}
        for key in ("documents", "words", "tokens")
    }
    words = total["words"]["train"]
    return {**total, "tokens_per_word": total["tokens"]["train"] / words if words else None}


def report_table(report: dict) -> str:
    """The report as a Markdown table, one row per source (and the total of a mixture)."""
    header = "| source | weight | documents | words | tokens | tokens/word | vocabulary used | median doc tokens |"
    rows = [header, "|" + "---|" * 8]
    for name, figures in report["sources"].items():
        rows.append(
            f"| {name} | {figures['weight']:.3g} | {figures['documents']['train']:,} | {figures['words']['train']:,} "
            f"| {figures['tokens']['train']:,} | {figures['tokens_per_word'] or 0:.3f} "
            f"| {figures['vocabulary_used']:.1%} | {figures['document_tokens'].get('p50', 0):.0f} |"
        )
    if len(report["sources"]) > 1:
        total = report["total"]
        rows.append(
            f"| **all** | 1 | {total['documents']['train']:,} | {total['words']['train']:,} "
            f"| {total['tokens']['train']:,} | {total['tokens_per_word'] or 0:.3f} | | |"
        )
    return "\n".join(rows) + "\n\n(training split; validation counts are in corpus_report.json)\n"


def plot_document_lengths(path: Path, lengths: dict[str, np.ndarray]) -> None:
    """Each source's training documents by length in tokens, on log-spaced bins."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    longest = max((int(values.max()) for values in lengths.values() if len(values)), default=2)
    bins = np.unique(np.geomspace(1, max(longest, 2) + 1, 60).astype(int))
    figure, axes = plt.subplots(figsize=(7.5, 4.2))
    for name, values in lengths.items():
        axes.hist(values, bins=bins, histtype="step", linewidth=1.4, label=f"{name} ({len(values):,} documents)")
    axes.set_xscale("log")
    axes.set_xlabel("document length (tokens)")
    axes.set_ylabel("documents")
    axes.set_title("Training documents by length")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    save_figure(figure, path)


def write_corpus_report(folder: Path, sources: list, tokenizer, boundary_id: int) -> dict:
    """corpus_report.json, corpus_report.md and document_lengths.png in `folder`, each written whole;
    `sources`: the run's packed sources. Returns the report."""
    per_source, lengths = {}, {}
    for source in sources:
        figures, lengths[source.name] = source_statistics(source.splits, tokenizer, boundary_id)
        per_source[source.name] = {"weight": source.weight, **figures}
    report = {"vocab_size": len(tokenizer), "sources": per_source, "total": pooled_statistics(per_source)}
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(folder / "corpus_report.json", json.dumps(report, indent=2))
    write_atomically(folder / "corpus_report.md", report_table(report))
    plot_document_lengths(folder / "document_lengths.png", lengths)
    return report
