"""Fine-tuning speed of common/finetuning/finetune.py against the Hugging Face `Trainer` recipe, same work, one run.

Both sides fine-tune the same saved model (`--model_type` at `--model_size`, untrained weights:
speed does not depend on them) for sequence classification on the same tokenised examples with
the same settings: AdamW at `--learning_rate` with weight decay 0.01, linear warmup (10%) and
decay, `--batch_size` examples a step, padding to the longest example of each batch,
`--epochs` epochs, an evaluation of the dev split after every epoch, one process. On a GPU both
use bf16 autocast (`Accelerator(mixed_precision="bf16")`, `TrainingArguments(bf16=True)`), on
the CPU fp32. The time counts loading the model, training and the evaluations; the data are
tokenised once beforehand for both.

    python benchmarks/bench_finetune.py                              # bert 20m, 8000 examples, 2 epochs
    python benchmarks/bench_finetune.py --model_type llama --model_size tiny --examples 2000 --cpu

The task is the synthetic corpus's negation detection (label: does the sentence contain "not"),
half of each label, so both sides also report a dev accuracy that should be near 100%.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as `python benchmarks/bench_finetune.py`: make `common` importable

import numpy as np  # noqa: E402
import torch  # noqa: E402
from accelerate import Accelerator  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

from common.data.synthetic import synthetic_documents  # noqa: E402
from common.data.tokenizer import train_tokenizer  # noqa: E402
from common.finetuning.classifier import encode, load_classifier  # noqa: E402
from common.finetuning.finetune import FinetuneSettings, finetune  # noqa: E402
from common.model_source import ModelSource  # noqa: E402
from common.models.build import build_model, resolve_shape  # noqa: E402

KINDS = {"llama": ("bpe", "causal"), "bert": ("wordpiece", "mlm"), "electra": ("wordpiece", "electra")}


def negation_task(count: int) -> list[tuple[str, int]]:
    sentences = [s.strip() + " ." for d in synthetic_documents(60 * count, seed=1) for s in d.split(".") if s.strip()]
    negated = [s for s in sentences if " not " in s][: count // 2]
    plain = [s for s in sentences if " not " not in s][: count - len(negated)]
    rows = [(s, 1) for s in negated] + [(s, 0) for s in plain]
    random.Random(0).shuffle(rows)
    return rows


def accuracy(predicted: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean(predicted == true))


def run_ours(folder: Path, train, dev, args, bf16: bool) -> tuple[float, float]:
    accelerator = Accelerator(cpu=args.cpu, mixed_precision="bf16" if bf16 else "no")
    source = ModelSource(str(folder))
    settings = FinetuneSettings(
        learning_rate=args.learning_rate,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64,
        num_train_epochs=args.epochs,
        patience=0,
        seed=42,
    )
    started = time.perf_counter()
    outcome = finetune(
        accelerator,
        lambda: load_classifier(source, ("0", "1"), args.pad_token_id),
        train,
        {"dev": dev},
        settings,
        args.pad_token_id,
        measure=lambda predicted, true: {"accuracy": accuracy(predicted, true)},
        monitor=lambda metrics: metrics["dev"]["accuracy"],
        name="ours",
    )
    return time.perf_counter() - started, outcome.epochs[-1].score


def run_trainer(folder: Path, tokenizer, train, dev, args, bf16: bool) -> tuple[float, float]:
    def dataset(encoded):
        return Dataset.from_dict({"input_ids": encoded.input_ids, "labels": encoded.labels.tolist()})

    with tempfile.TemporaryDirectory() as output_dir:
        training = TrainingArguments(
            output_dir=output_dir,
            per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=64,
            num_train_epochs=args.epochs,
            learning_rate=args.learning_rate,
            weight_decay=0.01,
            warmup_steps=0.1,
            lr_scheduler_type="linear",
            eval_strategy="epoch",
            save_strategy="no",
            logging_strategy="no",
            report_to="none",
            seed=42,
            bf16=bf16,
            use_cpu=args.cpu,
            disable_tqdm=True,
        )
        started = time.perf_counter()
        model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2, pad_token_id=args.pad_token_id)
        trainer = Trainer(
            model=model,
            args=training,
            train_dataset=dataset(train),
            eval_dataset=dataset(dev),
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=lambda p: {"accuracy": accuracy(p.predictions.argmax(-1), p.label_ids)},
        )
        trainer.train()
        seconds = time.perf_counter() - started
        return seconds, trainer.evaluate()["eval_accuracy"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_type", default="bert", choices=sorted(KINDS))
    parser.add_argument("--model_size", default="20m", choices=["tiny", "20m", "60m", "180m"])
    parser.add_argument("--vocab_size", type=int, default=8000)
    parser.add_argument("--examples", type=int, default=8000, help="training examples (dev: a quarter as many)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=5e-5)
    parser.add_argument("--repeats", type=int, default=1, help="alternate the sides this many times, keep the best")
    parser.add_argument("--cpu", action="store_true", help="stay on the CPU even when a GPU is there")
    parser.add_argument("--output", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args()
    args.cpu = args.cpu or not torch.cuda.is_available()
    bf16 = not args.cpu

    rows = negation_task(args.examples + args.examples // 4)
    tokenizer_kind, objective = KINDS[args.model_type]
    tokenizer = train_tokenizer(tokenizer_kind, synthetic_documents(300_000, seed=0), args.vocab_size)
    args.pad_token_id = tokenizer.pad_token_id
    encoded = encode(tokenizer, [(s,) for s, _ in rows], [label for _, label in rows], 128)
    train = type(encoded)(encoded.input_ids[: args.examples], None, encoded.labels[: args.examples])
    dev = type(encoded)(encoded.input_ids[args.examples :], None, encoded.labels[args.examples :])
    machine = f"CPU, {torch.get_num_threads()} torch threads" if args.cpu else torch.cuda.get_device_name()
    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        model = build_model(args.model_type, objective, resolve_shape(args.model_size), tokenizer, 128)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        print(
            f"{args.model_type} {args.model_size}, {len(train)} training / {len(dev)} dev examples "
            f"({np.mean([len(ids) for ids in train.input_ids]):.1f} tokens each), {args.epochs} epochs of "
            f"batch {args.batch_size}, {'bf16' if bf16 else 'fp32'} on {machine}",
            flush=True,
        )
        best = {"ours": (float("inf"), 0.0), "trainer": (float("inf"), 0.0)}
        for _ in range(args.repeats):
            for side, work in (
                ("ours", lambda: run_ours(Path(folder), train, dev, args, bf16)),
                ("trainer", lambda: run_trainer(Path(folder), tokenizer, train, dev, args, bf16)),
            ):
                seconds, dev_accuracy = work()
                print(f"  {side:>8}: {seconds:7.2f} s, dev accuracy {100 * dev_accuracy:.1f}%", flush=True)
                best[side] = min(best[side], (seconds, dev_accuracy))
    examples = len(train) * args.epochs
    report = {
        "machine": f"{machine}, torch {torch.__version__}",
        "model": f"{args.model_type} {args.model_size}",
        "precision": "bf16" if bf16 else "fp32",
        "examples": len(train),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        **{f"{side}_examples_per_s": examples / seconds for side, (seconds, _) in best.items()},
        **{f"{side}_dev_accuracy": acc for side, (_, acc) in best.items()},
        "speedup": best["trainer"][0] / best["ours"][0],
    }
    print(
        f"ours {report['ours_examples_per_s']:.0f} examples/s, Trainer {report['trainer_examples_per_s']:.0f} "
        f"examples/s: {report['speedup']:.2f}x"
    )
    print(json.dumps(report, indent=2))
    if args.output:
        args.output.write_text(json.dumps(report, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
