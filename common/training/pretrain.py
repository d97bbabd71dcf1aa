"""The pretraining loop, written once for every objective, model and launch type.

One optimizer step takes the next global batch (samples [cursor, cursor + G) of the seeded
window order), spreads it over micro-batches and ranks, and normalises the summed loss by the
global target count. Milestones, checkpoints, validation and logging hang off the step counter.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from common.config import write_config_yaml
from common.data.sampling import MixtureSampler, WindowSampler, micro_batch_indices, num_windows, read_windows
from common.data.tokenizer import count_words, word_start_tables
from common.distributed import (
    all_reduce_sum,
    all_reduce_tensors,
    configure_deepspeed,
    describe,
    end_run,
    load_universal_checkpoints,
    log,
    universal_copy,
    uses_deepspeed,
    zero_stage,
)
from common.errors import TrainingStopped, UsageError
from common.files import atomic_path, write_atomically
from common.models.build import SHAPE_FIELDS
from common.optimizer import adamw, learning_rate_at, warmup_steps_for
from common.tracking import RunLog, external_trackers
from common.training import checkpoint
from common.training.hub import model_card
from common.training.milestones import due, save_snapshot
from common.training.perf import (
    compile_pays,
    estimated_seconds,
    matmul_parameters,
    mfu,
    peak_memory_gb,
    training_flops_per_token,
)

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: a checkpoint was written, resume with --resume_from_checkpoint auto


@dataclass
class Progress:
    """Everything besides model and optimizer that a resumed run needs to continue exactly."""

    step: int = 0
    cursor: int = 0  # global index of the next training sample
    tokens_seen: int = 0  # input tokens, all ranks (the targets too, for causal models)
    words_seen: int = 0
    nonfinite_steps: int = 0
    milestones_done: list[str] = field(default_factory=list)
    tokens_per_source: dict[str, int] = field(default_factory=dict)  # a mixture's input tokens by source


class StopRequest:
    """While active, remembers SIGTERM / SIGUSR1 (Slurm pre-emption) so the loop can checkpoint and
    exit; the handlers it replaced are put back when it ends."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self):
        self.signal_name: str | None = None
        self.replaced: dict = {}

    def __enter__(self) -> StopRequest:
        self.replaced = {sig: signal.signal(sig, self.remember) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc_info) -> None:
        for sig, handler in self.replaced.items():
            signal.signal(sig, handler)

    def remember(self, signum, _frame) -> None:
        self.signal_name = signal.Signals(signum).name

    def exit_if_requested(self, during: str) -> None:
        """Before training there is nothing to checkpoint: a signal caught during the preparation
        ends the launch here, between two steps of it, with the status that says "start me again"."""
        if self.signal_name is not None:
            log.warning("stopped by %s while %s, before training; launch again to continue", self.signal_name, during)
            raise SystemExit(EXIT_PREEMPTED)


def step_seed(seed: int, step: int, rank: int) -> int:
    """Dropout randomness as a function of (seed, step, rank): a resumed step draws the same."""
    return (seed * 1_000_003 + step) * 1_009 + rank


def add_terms(total: dict | None, terms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Running sums of the loss terms of several micro-batches (detached)."""
    return add_arrays(total, {name: value.detach().to(torch.float64) for name, value in terms.items()})


def term_means(terms: dict, sums: dict, counts: dict) -> dict:
    """Each summed term over its count (a vector term, such as expert fractions, stays a vector)."""
    return {name: sums[name] / max(counts[term.count], 1) for name, term in terms.items()}


def training_loss(terms: dict, means: dict) -> float:
    """The loss the model trains on: the weighted sum of the term means."""
    return float(sum(term.weight * means[name] for name, term in terms.items() if term.weight))


def term_metrics(prefix: str, terms: dict, sums: dict, counts: dict) -> dict[str, float]:
    """`prefix/loss` and, for objectives of several terms, each term (a vector term, e.g. the token
    fraction of each expert per layer, averaged over all but its last axis: one value per expert)."""
    means = term_means(terms, sums, counts)
    metrics = {f"{prefix}/loss": training_loss(terms, means)}
    if len(terms) > 1:
        for name, mean in means.items():
            if np.ndim(mean) == 0:
                metrics[f"{prefix}/{name}"] = float(mean)
            else:
                per_last_axis = np.asarray(mean).reshape(-1, np.shape(mean)[-1]).mean(axis=0)
                metrics |= {f"{prefix}/{name}_{i}": float(v) for i, v in enumerate(per_last_axis)}
    return metrics


def add_arrays(total: dict | None, *parts: dict) -> dict:
    """Element-wise sum of dicts of numbers or arrays with the same keys (None: nothing yet)."""
    for part in parts:
        total = dict(part) if total is None else {name: total[name] + part[name] for name in total}
    return total


def new_interval() -> dict:
    """What the loop accumulates between two logging steps."""
    return {"sums": None, "counts": None, "tokens": 0, "seconds": 0.0}


def planned_steps(cfg, windows_per_epoch: int, global_batch: int) -> int:
    if cfg.max_steps > 0:
        return cfg.max_steps
    token_limit = cfg.train_token_limit()
    if token_limit:
        return math.ceil(token_limit / (global_batch * cfg.seq_length))
    return max(1, math.ceil(cfg.num_train_epochs * windows_per_epoch / global_batch))


class Pretraining:
    def __init__(
        self,
        cfg,
        accelerator,
        model,
        tokenizer,
        objective,
        sources,
        output_dir: Path,
        made_for: dict,
        peak: tuple[float, str],
        pusher=None,
        universal_resume: bool = False,
    ):
        self.cfg, self.accelerator, self.tokenizer, self.objective = cfg, accelerator, tokenizer, objective
        self.output_dir = output_dir
        self.made_for = made_for
        self.pusher = pusher  # a HubPusher on the main process with --push_to_hub, else None
        self.world, self.rank = accelerator.num_processes, accelerator.process_index
        # `sources`: the run's packed sources (one, unless it trains on a mixture)
        self.source_names = [source.name for source in sources] if len(sources) > 1 else []
        train = [source.splits["train"].tokens for source in sources]
        self.stride = objective.window_stride(cfg.seq_length)  # text tokens per window
        self.sampler = (
            MixtureSampler(train, [s.weight for s in sources], self.stride, cfg.seed, self.source_names)
            if self.source_names
            else WindowSampler(train[0], self.stride, cfg.seed)
        )
        self.validation = {source.name: source.splits["validation"].tokens for source in sources}
        self.source_weights = {source.name: source.weight for source in sources}
        self.word_tables = word_start_tables(tokenizer)
        self.global_batch = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * self.world
        self.total_steps = planned_steps(cfg, self.sampler.windows_per_epoch, self.global_batch)
        self.warmup = warmup_steps_for(self.total_steps, cfg.warmup_ratio, cfg.warmup_steps)
        model = objective.training_module(model)  # its forward returns the objective's summed loss terms
        self.flops_per_token = training_flops_per_token(model.config, matmul_parameters(model), cfg.seq_length)
        self.peak_flops, peak_source = peak  # FLOP/s per process, and what it is
        log.info("MFU against %.1f TFLOP/s per process (%s)", self.peak_flops / 1e12, peak_source)
        self.anchors = cfg.anchors()
        # The run's config.yaml (resolved config + provenance), copied next to everything saved.
        self.provenance_files = {"training_config.yaml": (output_dir / "config.yaml").read_text(encoding="utf-8")}
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        optimizer = adamw(
            model,
            cfg.learning_rate,
            cfg.weight_decay,
            accelerator.device,
            betas=(cfg.adam_beta1, cfg.adam_beta2),
            eps=cfg.adam_epsilon,
        )
        configure_deepspeed(accelerator, cfg.per_device_train_batch_size, cfg.max_grad_norm)
        # A ZeRO checkpoint of another number of processes is loaded in DeepSpeed's universal form,
        # which the engine must be told of before it is made.
        self.universal_resume = universal_resume
        if universal_resume:
            load_universal_checkpoints(accelerator)
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        # Only the training forward is compiled: evaluation's other batch shape would recompile.
        # The model itself is not wrapped, so nothing saved carries torch.compile's `_orig_mod.`.
        eager_seconds = estimated_seconds(
            self.total_steps * self.global_batch * cfg.seq_length, self.flops_per_token, self.peak_flops * self.world
        )
        self.compiled = compile_pays(cfg.torch_compile, accelerator.device.type, eager_seconds, zero_stage(accelerator))
        log.info(
            "torch.compile %s (--torch_compile %s; an eager run would take about %.0f s here)",
            f"on, mode {cfg.compile_mode}" if self.compiled else "off",
            cfg.torch_compile,
            eager_seconds,
        )
        self.training_terms = (
            torch.compile(self.forward_terms, mode=cfg.compile_mode) if self.compiled else self.forward_terms
        )
        self.progress = Progress()
        self.last = {"train/loss": None, "val/loss": None}
        self.stop = StopRequest()
        self.log: RunLog | None = None

    # --- the loop ------------------------------------------------------------------------------

    def run(self, resume_path: Path | None, stop: StopRequest | None = None) -> dict:
        """Train from the start or `resume_path` to the planned step, then evaluate and save final/.

        A stop request (SIGTERM, SIGUSR1) ends the run early with a checkpoint and SystemExit(75).
        `stop`: one the caller made active earlier (the script does at start-up, so that a signal
        during corpus loading or packing is not lost); else the run makes its own.
        """
        self.stop = stop or StopRequest()
        with contextlib.nullcontext() if stop else self.stop:
            return self.train(resume_path)

    def train(self, resume_path: Path | None) -> dict:
        cfg, accelerator = self.cfg, self.accelerator
        state = self.resume(resume_path) if resume_path else {}
        start_step = self.progress.step
        reporters = cfg.reporters()
        self.log = RunLog(
            self.output_dir,
            accelerator.is_main_process,
            resumed_step=start_step,
            keep_bytes=state.get("metrics_bytes"),
            tensorboard="tensorboard" in reporters,
            trackers=external_trackers(
                reporters, self.output_dir, cfg.tracker_project, asdict(cfg), accelerator.is_main_process
            ),
        )
        log.info("launch: %s", describe(accelerator))
        log.info(
            "plan: %d steps of %d windows x %d tokens (%d steps of warmup), %d windows per epoch",
            self.total_steps,
            self.global_batch,
            cfg.seq_length,
            self.warmup,
            self.sampler.windows_per_epoch,
        )
        if cfg.save_init and start_step == 0:
            self.snapshot(self.output_dir / "milestones" / "init", {"name": "init"})
        initial_eval = self.evaluate()
        if not resume_path:  # a resumed run's records up to its checkpoint are already there
            self.record(initial_eval)
        self.train_steps()
        final_eval = self.evaluate()
        # The checkpoint first, then the record: a launch killed while final/ is written resumes
        # from this checkpoint and records the final evaluation once, not twice.
        self.save_checkpoint()
        self.record(final_eval)
        self.snapshot(self.output_dir / "final", {"name": "final"})
        failed_pushes = self.finish_pushes()
        self.log.close()
        return {
            "initial": initial_eval,
            "final": final_eval,
            "progress": asdict(self.progress),
            "total_steps": self.total_steps,
            "start_step": start_step,
            "failed_pushes": failed_pushes,
        }

    def train_steps(self) -> None:
        """The optimizer steps up to the planned one, with what hangs off each: logging,
        milestones, validation, checkpoints, and stopping on request or after non-finite losses."""
        cfg = self.cfg
        interval = new_interval()
        bar = tqdm(
            total=self.total_steps,
            initial=self.progress.step,
            desc="pretraining",
            unit="step",
            disable=not self.accelerator.is_local_main_process,
        )
        try:
            while self.progress.step < self.total_steps:
                started = time.perf_counter()
                result = self.train_step()
                interval["seconds"] += time.perf_counter() - started
                interval["tokens"] += self.global_batch * cfg.seq_length
                if result["finite"]:
                    interval["sums"] = add_arrays(interval["sums"], result["sums"])
                    interval["counts"] = add_arrays(interval["counts"], result["counts"])
                bar.update(1)
                step = self.progress.step
                if step % cfg.logging_steps == 0 or step == self.total_steps:
                    self.log_training(result, interval)
                    bar.set_postfix(loss=f"{self.last['train/loss']:.3f}")
                    interval = new_interval()
                evaluated = self.save_due_milestones()
                if step % cfg.eval_steps == 0 and step < self.total_steps and not evaluated:
                    self.record(self.evaluate())
                if result["stop_votes"]:
                    self.stop_for_preemption()
                if self.progress.nonfinite_steps > cfg.max_nonfinite_steps:
                    self.save_checkpoint()
                    raise TrainingStopped(
                        f"{self.progress.nonfinite_steps} steps had a non-finite loss "
                        f"(--max_nonfinite_steps {cfg.max_nonfinite_steps}); checkpoint written"
                    )
                if cfg.checkpointing_steps and step % cfg.checkpointing_steps == 0 and step < self.total_steps:
                    self.save_checkpoint()
        except TrainingStopped:
            raise
        except Exception:
            if self.world == 1:  # a lone process can always save; several may be stuck in a collective
                self.save_checkpoint()
            raise
        finally:
            bar.close()

    def stop_for_preemption(self) -> None:
        """Every rank voted to stop (one of them got a signal): checkpoint, let the Hub uploads
        finish, and leave together with the status that says "resume me"."""
        self.save_checkpoint()
        self.finish_pushes()
        self.log.close()
        log.warning(
            "stopped by %s at step %d; checkpoint written, resume with --resume_from_checkpoint auto",
            self.stop.signal_name or "a signal",
            self.progress.step,
        )
        end_run(self.accelerator)
        raise SystemExit(EXIT_PREEMPTED)

    def train_step(self) -> dict:
        cfg, accelerator, progress = self.cfg, self.accelerator, self.progress
        lr = learning_rate_at(
            progress.step, cfg.learning_rate, self.total_steps, self.warmup, cfg.lr_scheduler_type, cfg.min_lr_ratio
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        torch.manual_seed(step_seed(cfg.seed, progress.step, self.rank))
        batches, local_words = [], 0
        for micro_step in range(cfg.gradient_accumulation_steps):
            indices = micro_batch_indices(
                progress.cursor, micro_step, self.rank, self.world, cfg.per_device_train_batch_size
            )
            windows = self.sampler.windows(indices)
            local_words += count_words(windows, self.word_tables)
            batches.append(self.objective.make_batch(windows, accelerator.device, indices))
        local_counts = add_arrays(None, *(self.objective.count_batch(b) for b in batches))
        *count_values, words, stop_votes = all_reduce_sum(
            accelerator, [*local_counts.values(), local_words, float(self.stop.signal_name is not None)]
        )
        counts = dict(zip(local_counts, count_values))
        # Backends average gradients over ranks and divide by the accumulation steps; undo both so
        # the gradient is that of sum(weight x summed term in the global batch / its global count).
        # Counts are floored at 1: an MLM batch may mask nothing.
        scale = self.world * cfg.gradient_accumulation_steps
        weights = {
            name: term.weight * scale / max(counts[term.count], 1)
            for name, term in self.objective.terms.items()
            if term.weight
        }
        self.model.train()
        local_sums = None
        for batch in batches:
            with accelerator.accumulate(self.model):
                terms = self.training_terms(batch)
                accelerator.backward(sum(weight * terms[name] for name, weight in weights.items()))
                local_sums = add_terms(local_sums, terms)
        sums = all_reduce_tensors(accelerator, local_sums)
        loss = training_loss(self.objective.terms, term_means(self.objective.terms, sums, counts))
        grad_norm = accelerator.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm or float("inf"))
        grad_norm = float(grad_norm) if grad_norm is not None else float("nan")
        # With fp16 the GradScaler skips overflowing steps itself (and must see every step to
        # adjust its scale); DeepSpeed already stepped inside backward(). Otherwise skip here.
        self_skipping = accelerator.scaler is not None or uses_deepspeed(accelerator)
        finite = math.isfinite(loss) and (self_skipping or math.isfinite(grad_norm))
        if finite or self_skipping:
            self.optimizer.step()
        if not finite:
            progress.nonfinite_steps += 1
            log.warning(
                "step %d: non-finite loss or gradient, update skipped (%d so far)",
                progress.step,
                progress.nonfinite_steps,
            )
        self.optimizer.zero_grad(set_to_none=True)
        progress.step += 1
        progress.cursor += self.global_batch
        progress.tokens_seen += self.global_batch * cfg.seq_length  # input tokens (= targets when causal)
        if self.source_names:  # every rank knows the whole global batch's sources without asking
            step_counts = self.sampler.source_counts(range(progress.cursor - self.global_batch, progress.cursor))
            for name, windows in zip(self.source_names, step_counts):
                seen = progress.tokens_per_source.get(name, 0)
                progress.tokens_per_source[name] = seen + int(windows) * cfg.seq_length
        progress.words_seen += int(words)
        return {
            "sums": sums,
            "counts": counts,
            "finite": finite,
            "lr": lr,
            "grad_norm": grad_norm,
            "stop_votes": stop_votes,
        }

    def forward_terms(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.model(**batch)

    # --- records -------------------------------------------------------------------------------

    def log_training(self, result: dict, interval: dict) -> None:
        if interval["sums"] is None:  # every step of the interval was skipped as non-finite
            losses = {"train/loss": float("nan")}
        else:
            losses = term_metrics("train", self.objective.terms, interval["sums"], interval["counts"])
        tokens_per_s = interval["tokens"] / interval["seconds"] if interval["seconds"] else 0.0
        self.last["train/loss"] = losses["train/loss"]
        self.record(
            {
                **losses,
                "train/lr": result["lr"],
                "train/grad_norm": result["grad_norm"],
                "train/tokens_seen": self.progress.tokens_seen,
                "train/words_seen": self.progress.words_seen,
                "train/nonfinite_steps": self.progress.nonfinite_steps,
                **{f"train/tokens_seen/{name}": count for name, count in self.progress.tokens_per_source.items()},
                "perf/tokens_per_s": tokens_per_s,
                "perf/mfu": mfu(tokens_per_s, self.flops_per_token, self.peak_flops, self.world),
                "perf/tflops_per_process": tokens_per_s * self.flops_per_token / self.world / 1e12,
                "perf/peak_memory_gb": peak_memory_gb(self.accelerator.device),
            }
        )

    def record(self, values: dict) -> None:
        if "val/loss" in values:
            self.last["val/loss"] = values["val/loss"]
            parts = [
                f"{name.removeprefix('val/')} {value:.4f}"
                for name, value in values.items()
                if name not in ("val/loss", "val/ppl") and "expert_fraction" not in name
            ]
            which = self.objective.perplexity_term.removesuffix("loss").replace("_", " ")
            log.info(
                "step %d: validation loss %.4f%s, %sperplexity %.2f",
                self.progress.step,
                values["val/loss"],
                f" ({', '.join(parts)})" if parts else "",
                which,
                values["val/ppl"],
            )
        self.log.log(values, self.progress.step, self.progress.tokens_seen)

    @torch.no_grad()
    def evaluate(self) -> dict:
        """Validation loss over the first --max_eval_samples windows of each source. For a mixture,
        `val/<source>/loss` is each source's, and `val/loss` (and every other term, and `val/ppl`)
        their mean weighted by the training weights: the loss on the training mixture. A source of
        weight 0 (validated on, never trained on) has only its own."""
        terms = self.objective.terms
        per_source = {name: self.validation_sums(tokens) for name, tokens in self.validation.items()}
        per_source = {name: result for name, result in per_source.items() if result is not None}
        pooled_weights = {name: self.source_weights[name] for name in per_source if self.source_weights[name] > 0}
        if not pooled_weights:
            return {}
        total = sum(pooled_weights.values())
        metrics, pooled, log_ppl = {}, {}, 0.0
        for name, (sums, counts) in per_source.items():
            own = term_metrics("val", terms, sums, counts)
            if self.source_names:
                metrics |= {key.replace("val/", f"val/{name}/", 1): value for key, value in own.items()}
            if name in pooled_weights:
                share = pooled_weights[name] / total
                pooled = {key: pooled.get(key, 0.0) + share * value for key, value in own.items()}
                log_ppl += share * float(term_means(terms, sums, counts)[self.objective.perplexity_term])
        return {**pooled, "val/ppl": math.exp(min(log_ppl, 700.0)), **metrics}

    def validation_sums(self, val_tokens: np.ndarray) -> tuple[dict, dict] | None:
        """The loss terms summed over the first --max_eval_samples windows of `val_tokens`, and their
        counts, over all ranks (None when it holds no window).

        Every rank runs the same number of batches (short shards are padded with rows that have
        no targets) because ZeRO-3 gathers weights collectively in each forward.
        """
        cfg = self.cfg
        total = min(num_windows(len(val_tokens), self.stride), cfg.max_eval_samples)
        if total == 0:
            return None
        per_rank = math.ceil(total / self.world)
        mine = list(range(self.rank, total, self.world))
        padding = per_rank - len(mine)
        window_ids = np.array(mine + [0] * padding, dtype=np.int64)
        self.model.eval()
        local_sums, local_counts = None, None
        for start in range(0, per_rank, cfg.per_device_eval_batch_size):
            chunk = window_ids[start : start + cfg.per_device_eval_batch_size]
            chunk_padding = max(0, start + len(chunk) - len(mine))
            batch = self.objective.make_batch(
                read_windows(val_tokens, chunk, self.stride),
                self.accelerator.device,
                chunk,
                evaluation=True,
                padding_rows=min(chunk_padding, len(chunk)),
            )
            local_sums = add_terms(local_sums, self.model(**batch))
            local_counts = add_arrays(local_counts, self.objective.count_batch(batch))
        sums = all_reduce_tensors(self.accelerator, local_sums)
        counts = dict(zip(local_counts, all_reduce_sum(self.accelerator, list(local_counts.values()))))
        return sums, counts

    # --- saving --------------------------------------------------------------------------------

    def snapshot(self, folder: Path, info: dict) -> None:
        info = {
            **info,
            "step": self.progress.step,
            "tokens_seen": self.progress.tokens_seen,
            "words_seen": self.progress.words_seen,
            **({"tokens_per_source": dict(self.progress.tokens_per_source)} if self.source_names else {}),
            "train_loss": self.last["train/loss"],
            "val_loss": self.last["val/loss"],
            **self.made_for,
        }
        card = model_card(self.cfg.hub_model_id, info, asdict(self.cfg))
        save_snapshot(
            self.accelerator, self.model, self.tokenizer, folder, info, {**self.provenance_files, "README.md": card}
        )
        if self.pusher is not None:
            self.pusher.push(folder, info["name"], delete_after=self.cfg.milestone_store == "hub")

    def finish_pushes(self) -> list:
        """Wait for the Hub uploads still queued (the main process's); the ones that failed."""
        return [str(push.folder) for push in self.pusher.finish()] if self.pusher is not None else []

    def save_due_milestones(self) -> bool:
        """Snapshot every anchor reached by this step (after a validation pass, whose loss goes
        into milestone.json); return whether that validation pass ran."""
        counters = {"tokens": self.progress.tokens_seen, "words": self.progress.words_seen}
        reached = due(self.anchors, set(self.progress.milestones_done), counters)
        if reached:
            self.record(self.evaluate())
        for anchor in reached:
            self.snapshot(
                self.output_dir / "milestones" / anchor.name,
                {"name": anchor.name, "counter": anchor.counter, "anchor": anchor.value},
            )
            self.progress.milestones_done.append(anchor.name)
            log.info("milestone %s saved at step %d", anchor.name, self.progress.step)
        return bool(reached)

    def save_checkpoint(self) -> None:
        state = {
            "progress": asdict(self.progress),
            "made_for": self.made_for,
            "last": self.last,
            "world_size": self.world,
            "global_batch": self.global_batch,
            "metrics_bytes": self.log.flushed_size() if self.accelerator.is_main_process else None,
            "schedule": self.schedule(),
        }
        checkpoint.save(
            self.accelerator,
            self.output_dir,
            self.progress.step,
            state,
            self.cfg.checkpoints_total_limit,
            self.provenance_files,
        )

    def resume(self, path: Path) -> dict:
        """Load the checkpoint at `path` (checked again here: the script checks it before it writes
        anything); its trainer state."""
        state = resumable_state(path, self.made_for, self.global_batch)
        if self.universal_resume:
            with universal_copy(self.accelerator, path) as loadable:
                checkpoint.load(self.accelerator, loadable)
        else:
            checkpoint.load(self.accelerator, path)
        self.progress = Progress(**state["progress"])
        self.last = state["last"]
        log.info("resumed from %s at step %d (%d tokens seen)", path, self.progress.step, self.progress.tokens_seen)
        changed = {key: (value, self.schedule()[key]) for key, value in state.get("schedule", {}).items()
                   if self.schedule().get(key) != value}  # fmt: skip
        if changed:
            log.warning(
                "the learning-rate schedule differs from the one the checkpoint was trained with (%s): the run "
                "goes on, but not as one uninterrupted run would have",
                ", ".join(f"{key} {before} -> {now}" for key, (before, now) in changed.items()),
            )
        return state

    def schedule(self) -> dict:
        """The learning rate of every step follows from these (a resume may change them, with a warning)."""
        cfg = self.cfg
        return {"total_steps": self.total_steps, "warmup_steps": self.warmup, "learning_rate": cfg.learning_rate,
                "lr_scheduler_type": cfg.lr_scheduler_type, "min_lr_ratio": cfg.min_lr_ratio}  # fmt: skip


def resumable_state(path: Path, made_for: dict, global_batch: int) -> dict:
    """The trainer state of the checkpoint at `path`, once it is known to fit this launch: made for
    the same model, tokenizer and run (`made_for`) and the same global batch. The number of
    processes may differ (a ZeRO checkpoint is converted to a universal one to load)."""
    state = checkpoint.read_state(path)
    checkpoint.check_compatible(path, state, made_for)
    if state["global_batch"] != global_batch:
        raise UsageError(
            f"--resume_from_checkpoint {path}: it was trained with {state['global_batch']} windows "
            f"per step; this launch has {global_batch} (per-device batch x accumulation x "
            f"processes); choose --per_device_train_batch_size / --gradient_accumulation_steps "
            f"to match"
        )
    return state


def run_signature(config, tokenizer_digest: str, cfg, objective, corpus_fingerprint: str) -> dict:
    """What a checkpoint is only valid for: the model's shape, its tokenizer, the objective, and what
    decides the data order (the corpus's content, the window length and layout, and the seed). A
    resume with any of them changed would silently be another run."""
    keys = ("model_type", "vocab_size", *SHAPE_FIELDS, "num_experts", "num_experts_per_tok")
    return {
        **{key: getattr(config, key, None) for key in keys},
        "tokenizer_hash": tokenizer_digest,
        "seq_length": cfg.seq_length,
        "objective": objective.name,
        "windows": objective.window_layout,
        "seed": cfg.seed,
        "corpus_fingerprint": corpus_fingerprint,
    }


def save_run_files(accelerator, output_dir: Path, cfg, tokenizer, manifest: dict, made_for: dict) -> None:
    """config.yaml (this launch's resolved config + provenance), launches.jsonl (one line per launch
    of the run, appended), tokenizer/ and data.json, from the main process."""
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        document = write_config_yaml(
            output_dir / "config.yaml",
            cfg,
            world_size=accelerator.num_processes,
            tokenizer_hash=made_for["tokenizer_hash"],
            launch=describe(accelerator),
        )
        with open(output_dir / "launches.jsonl", "a", encoding="utf-8") as launches:
            launches.write(json.dumps(document) + "\n")
        with atomic_path(output_dir / "tokenizer") as staged:
            tokenizer.save_pretrained(staged)
        write_atomically(output_dir / "data.json", json.dumps(manifest, indent=2))
    accelerator.wait_for_everyone()
