"""Document classification: fine-tune a pretrained model and baselines over a grid of batch sizes.

    python classify_docs.py --model_name_or_path runs/my-electra/final --data_file WOS46985/Data.txt
    python classify_docs.py --model_name_or_path runs/my-electra/final --baseline bert-base-uncased \\
        --data_file docs.jsonl --text_column body --label_column topic --truncation head_tail
    accelerate launch --config_file accelerate_configs/multi_gpu.yaml classify_docs.py ...

Web of Science `Data.txt` needs no column names (text: Abstract, label: Domain). Data without
splits is split 80/10/10 by label and --seed. Every model is trained once per batch size for
--num_train_epochs and evaluated on dev and test after each epoch. Results in --output_dir:
results.md (table), results.csv, results.json, label_counts.csv, confusion_<model>.png, tb/.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from common.config import option, parse_config, provenance
from common.distributed import build_accelerator, end_run, log
from common.errors import UsageError, first_line, run_main
from common.files import markdown_table
from common.finetuning.classifier import encode, load_classification_tokenizer, load_classifier
from common.finetuning.doc_results import accuracy_table, counts_table, document_metrics, write_reports
from common.finetuning.documents import check_labels, label_counts, read_documents, stratified_split
from common.finetuning.finetune import FinetuneOptions, FinetuneSettings, finetune
from common.model_source import ModelSource

DEFAULT_BASELINE = "bert-base-uncased"


@dataclass(frozen=True)
class DocsConfig(FinetuneOptions):
    model_name_or_path: Optional[str] = option(None, "the model to evaluate: a saved model folder or a Hub id")
    revision: Optional[str] = option(None, "Hub branch, tag or commit of --model_name_or_path")
    baseline: list[str] = option(
        [],
        f"models to compare with (folders or Hub ids); default: {DEFAULT_BASELINE} "
        f"when it can be loaded (online or cached); `none` for no baseline",
    )
    data_file: Optional[str] = option(
        None, "all documents, split here by label: Web of Science Data.txt (.txt/.tsv), .csv or .jsonl"
    )
    train_file: Optional[str] = option(
        None, "instead of --data_file: the training documents (with --dev_file and --test_file)"
    )
    dev_file: Optional[str] = option(None, "the dev documents (with --train_file)")
    test_file: Optional[str] = option(None, "the test documents (with --train_file)")
    text_column: Optional[str] = option(None, "column / JSON field of the text (default: Abstract in WOS, else text)")
    label_column: Optional[str] = option(None, "column / JSON field of the label (default: Domain in WOS, else label)")
    dev_fraction: float = option(0.1, "--data_file: the share of documents held out for dev")
    test_fraction: float = option(0.1, "--data_file: the share of documents held out for test")
    batch_sizes: list[int] = option([8, 16, 32], "one run per batch size (per process) for each model")
    num_train_epochs: int = option(3, "epochs per run; dev and test are evaluated after each")
    max_length: int = option(512, "tokens per document (at most the model's positions)")
    truncation: Literal["head", "head_tail"] = option(
        "head",
        "how a long document is cut: keep its head, or its first quarter and last three quarters "
        "(head_tail, Sun et al. 2019)",
    )
    seed: int = option(42, "seed of the split, the new heads and the data order")
    output_dir: str = option("doc_results", "where the table, CSV, JSON, plots and TensorBoard logs go")

    def __post_init__(self):
        if not self.model_name_or_path:
            raise UsageError("--model_name_or_path is required (the model to evaluate)")
        split_files = (self.train_file, self.dev_file, self.test_file)
        if bool(self.data_file) == any(split_files):
            raise UsageError("give either --data_file (split here) or --train_file, --dev_file and --test_file")
        if any(split_files) and not all(split_files):
            raise UsageError("--train_file, --dev_file and --test_file go together")
        if (
            not 0 < self.dev_fraction < 1
            or not 0 < self.test_fraction < 1
            or self.dev_fraction + self.test_fraction >= 1
        ):
            raise UsageError(
                f"--dev_fraction {self.dev_fraction} and --test_fraction {self.test_fraction} must be "
                f"between 0 and 1 and leave documents to train on"
            )
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise UsageError(f"--batch_sizes must be whole numbers of at least 1, got {self.batch_sizes}")
        for name in ("num_train_epochs", "max_length", "per_device_eval_batch_size"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name} must be at least 1, got {getattr(self, name)}")

    def settings(self, batch_size: int) -> FinetuneSettings:
        return FinetuneSettings(
            **self.optimisation(),
            per_device_train_batch_size=batch_size,
            num_train_epochs=self.num_train_epochs,
            patience=0,
            seed=self.seed,
        )


def read_splits(cfg: DocsConfig) -> dict:
    columns = (cfg.text_column, cfg.label_column)
    if cfg.data_file:
        return stratified_split(
            read_documents(Path(cfg.data_file), *columns), cfg.seed, cfg.dev_fraction, cfg.test_fraction
        )
    return {
        name: read_documents(Path(path), *columns, flag=f"--{name}_file")
        for name, path in (("train", cfg.train_file), ("dev", cfg.dev_file), ("test", cfg.test_file))
    }


def model_sources(cfg: DocsConfig) -> list[ModelSource]:
    """The model, then the baselines. The default baseline is used only when it loads without
    asking anyone (the Hub, or its local cache); offline, the comparison goes on without it."""
    sources = [ModelSource(cfg.model_name_or_path, cfg.revision)]
    if [name.lower() for name in cfg.baseline] == ["none"]:
        return sources
    if cfg.baseline:
        return sources + [ModelSource(name) for name in cfg.baseline]
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(DEFAULT_BASELINE)
    except (OSError, ValueError) as error:
        log.warning(
            "no baseline: %s cannot be loaded (%s); pass --baseline PATH to compare with a local model",
            DEFAULT_BASELINE,
            first_line(error),
        )
        return sources
    return sources + [ModelSource(DEFAULT_BASELINE)]


def distinct_labels(sources: list[ModelSource]) -> list[str]:
    """Row names for the table: each model's label, numbered where two would be the same."""
    labels = [source.label for source in sources]
    return [f"{label}-{i + 1}" if labels.count(label) > 1 else label for i, label in enumerate(labels)]


def main():
    cfg = parse_config(DocsConfig)
    accelerator = build_accelerator()
    splits = read_splits(cfg)
    labels = check_labels(splits)
    counts = label_counts(splits)
    accelerator.print(markdown_table(*counts_table(counts)))
    sources = model_sources(cfg)
    # Every model's tokenizer loads (and has a pad token) before the first run trains.
    tokenizers = [load_classification_tokenizer(source) for source in sources]
    output_dir = Path(cfg.output_dir)
    label_ids = {label: i for i, label in enumerate(labels)}

    runs = []
    for source, name, (tokenizer, positions) in zip(sources, distinct_labels(sources), tokenizers):
        max_length = min(cfg.max_length, positions or cfg.max_length)
        encoded = {
            split: encode(
                tokenizer,
                [(d.text,) for d in documents],
                [label_ids[d.label] for d in documents],
                max_length,
                cfg.truncation,
            )
            for split, documents in splits.items()
        }
        for batch_size in cfg.batch_sizes:
            outcome = finetune(
                accelerator,
                functools.partial(load_classifier, source, tuple(labels), tokenizer.pad_token_id),
                encoded["train"],
                {"dev": encoded["dev"], "test": encoded["test"]},
                cfg.settings(batch_size),
                tokenizer.pad_token_id,
                measure=document_metrics,
                monitor=lambda metrics: metrics["dev"]["accuracy"],
                name=f"{name}-bs{batch_size}",
                tensorboard_dir=output_dir / "tb",
            )
            runs.append(
                {
                    "model": name,
                    "name_or_path": source.name_or_path,
                    "revision": source.revision,
                    "batch_size": batch_size,
                    "max_length": max_length,
                    "seconds": round(outcome.seconds, 2),
                    "history": [epoch.record() for epoch in outcome.epochs],
                    "test_predictions": outcome.epochs[-1].predictions["test"],
                }
            )
    table = markdown_table(*accuracy_table(runs))
    if accelerator.is_main_process:
        paths = write_reports(
            output_dir,
            runs,
            counts,
            labels,
            {"config": dataclasses.asdict(cfg), "provenance": provenance(processes=accelerator.num_processes)},
        )
        log.info("results: %s", ", ".join(str(path) for path in paths.values()))
    accelerator.print(table)
    end_run(accelerator)


if __name__ == "__main__":
    run_main(main)
