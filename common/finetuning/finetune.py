"""The one sequence-classification fine-tuning loop (GLUE and document classification).

A run: seed, build the model, train epoch by epoch on the prepared data loader (sharded over
processes, DDP or DeepSpeed alike), predict every evaluation split after each epoch, and stop
once the monitored score has not improved for `patience` epochs. The caller decides what is
measured (`measure`) and which number is watched (`monitor`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from common.config import option
from common.distributed import all_reduce_sum, configure_deepspeed, reset_deepspeed_config
from common.finetuning.classifier import Encoded, EncodedDataset, collate
from common.optimizer import adamw, learning_rate_at, warmup_steps_for
from common.tracking import TensorBoard

log = logging.getLogger("babytrain")

Measure = Callable[[np.ndarray, np.ndarray], dict[str, float]]  # (predictions, labels) -> metrics
Monitor = Callable[[dict[str, dict[str, float]]], float]  # metrics per split -> higher is better


@dataclass(frozen=True)
class FinetuneOptions:
    """The optimisation flags of both fine-tuning scripts (their configs extend this)."""

    learning_rate: float = option(5e-5, "peak learning rate (linear warmup, then linear decay)")
    per_device_eval_batch_size: int = option(64, "evaluation examples per process and forward pass")
    warmup_ratio: float = option(0.1, "fraction of the steps spent warming up the learning rate")
    weight_decay: float = option(0.01, "AdamW weight decay (not on norms, biases and embeddings)")
    max_grad_norm: float = option(1.0, "clip gradients to this norm")

    def optimisation(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(FinetuneOptions)}


@dataclass(frozen=True)
class FinetuneSettings(FinetuneOptions):
    """One run's settings: the shared optimisation options plus the run's own."""

    per_device_train_batch_size: int = 32
    num_train_epochs: int = 10
    patience: int = 3  # epochs without a better monitored score before stopping; 0: never stop early
    seed: int = 42


@dataclass
class EpochResult:
    epoch: int
    step: int
    train_loss: float
    metrics: dict[str, dict[str, float]]  # split -> metric -> value
    score: float  # the monitored number
    predictions: dict[str, tuple[np.ndarray, np.ndarray]] = field(repr=False)  # split -> (predicted, true)

    def record(self) -> dict:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "train_loss": self.train_loss,
            "score": self.score,
            "metrics": self.metrics,
        }


@dataclass
class FinetuneOutcome:
    epochs: list[EpochResult]
    best: EpochResult
    stopped_early: bool
    seconds: float

    def record(self) -> dict:
        return {
            "best_epoch": self.best.epoch,
            "epochs_trained": len(self.epochs),
            "stopped_early": self.stopped_early,
            "metrics": self.best.metrics,
            "score": self.best.score,
            "seconds": round(self.seconds, 2),
            "history": [epoch.record() for epoch in self.epochs],
        }


def finetune(
    accelerator: Accelerator,
    build_model: Callable[[], torch.nn.Module],
    train: Encoded,
    evaluation: dict[str, Encoded],
    settings: FinetuneSettings,
    pad_token_id: int,
    measure: Measure,
    monitor: Monitor,
    name: str,
    tensorboard_dir: Path | None = None,
) -> FinetuneOutcome:
    """Fine-tune the model `build_model()` makes (called after seeding, so its new head is the
    seed's) and return every epoch's evaluation plus the best one."""
    started = time.perf_counter()
    set_seed(settings.seed)
    model = build_model()
    regression = train.labels.dtype.kind == "f"
    batches = functools.partial(collate, pad_token_id=pad_token_id)
    train_loader = DataLoader(
        EncodedDataset(train),
        batch_size=settings.per_device_train_batch_size,
        shuffle=True,
        collate_fn=batches,
        generator=torch.Generator().manual_seed(settings.seed),
    )
    eval_loaders = [
        DataLoader(EncodedDataset(split), batch_size=settings.per_device_eval_batch_size, collate_fn=batches)
        for split in evaluation.values()
    ]
    optimizer = adamw(model, settings.learning_rate, settings.weight_decay, accelerator.device)
    reset_deepspeed_config(accelerator)
    configure_deepspeed(accelerator, settings.per_device_train_batch_size, settings.max_grad_norm)
    model, optimizer, train_loader, *eval_loaders = accelerator.prepare(model, optimizer, train_loader, *eval_loaders)
    total_steps = settings.num_train_epochs * len(train_loader)
    warmup = warmup_steps_for(total_steps, settings.warmup_ratio)
    board = TensorBoard(tensorboard_dir / name if tensorboard_dir else None, accelerator.is_main_process)
    bar = tqdm(total=total_steps, desc=name, unit="step", disable=not accelerator.is_local_main_process)
    step, epochs, best, since_best = 0, [], None, 0
    for epoch in range(1, settings.num_train_epochs + 1):
        model.train()
        loss_sum = torch.zeros((), device=accelerator.device)
        for batch in train_loader:
            lr = learning_rate_at(step, settings.learning_rate, total_steps, warmup, "linear")
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = model(**batch).loss
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach().float()
            step += 1
            bar.update(1)
            board.scalars({"train/lr": lr}, step)
        # The mean over the epoch's batches on every rank (each rank runs as many).
        train_loss = all_reduce_sum(accelerator, [loss_sum])[0] / (len(train_loader) * accelerator.num_processes)
        predictions = {
            split: predict(accelerator, model, loader, regression) for split, loader in zip(evaluation, eval_loaders)
        }
        metrics = {split: measure(*predicted) for split, predicted in predictions.items()}
        result = EpochResult(epoch, step, train_loss, metrics, monitor(metrics), predictions)
        epochs.append(result)
        improved = best is None or result.score > best.score
        best, since_best = (result, 0) if improved else (best, since_best + 1)
        board.scalars(
            {
                "train/loss": train_loss,
                "eval/score": result.score,
                **{
                    f"eval/{split}/{metric}": value
                    for split, values in metrics.items()
                    for metric, value in values.items()
                },
            },
            step,
        )
        bar.set_postfix(loss=f"{train_loss:.3f}", score=f"{result.score:.3f}")
        log.info(
            "%s epoch %d: train loss %.4f, %s%s",
            name,
            epoch,
            train_loss,
            describe_metrics(metrics),
            " (best)" if improved else "",
        )
        if settings.patience and since_best >= settings.patience:
            log.info("%s: no better score for %d epochs, stopping early (best: epoch %d)", name, since_best, best.epoch)
            break
    bar.close()
    board.close()
    accelerator.free_memory()  # the next run prepares a new model; let this one go
    return FinetuneOutcome(
        epochs, best, stopped_early=len(epochs) < settings.num_train_epochs, seconds=time.perf_counter() - started
    )


@torch.no_grad()
def predict(accelerator: Accelerator, model, loader, regression: bool) -> tuple[np.ndarray, np.ndarray]:
    """Predicted and true labels of a whole split, gathered from every process (without the
    examples a short last shard repeats)."""
    model.eval()
    predicted, true = [], []
    for batch in loader:
        labels = batch.pop("labels")
        logits = model(**batch).logits
        guesses = logits.squeeze(-1).float() if regression else logits.argmax(-1)
        guesses, labels = accelerator.gather_for_metrics((guesses, labels))
        predicted.append(guesses.cpu().numpy())
        true.append(labels.cpu().numpy())
    return np.concatenate(predicted), np.concatenate(true)


def describe_metrics(metrics: dict[str, dict[str, float]]) -> str:
    return ", ".join(
        f"{split} {name} {value:.4f}" for split, values in metrics.items() for name, value in values.items()
    )
