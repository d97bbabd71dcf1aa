"""Zero-shot evaluation: BLiMP minimal pairs and the BabyLM challenge's other zero-shot tasks
(BLiMP supplement, EWoK, entity tracking, WUG, COMPS), for one model, every snapshot of a run, or
several runs side by side.

    python eval_blimp.py --model_name_or_path runs/my-run/final          # the synthetic tasks
    python eval_blimp.py --model_name_or_path gpt2 --data_dir evaluation_data          # full_eval/
    python eval_blimp.py --model_name_or_path babylm/babyllama-10m-2024 --revision chck_10M --blimp_dir nyu-mll/blimp
    python eval_blimp.py --run_dir runs/my-run --data_dir evaluation_data   # fast_eval/ at every snapshot + curves
    python eval_blimp.py --compare runs/a runs/b --data_dir evaluation_data --tasks blimp_fast ewok_fast
    accelerate launch --num_processes 2 eval_blimp.py ...                  # work sharded, same numbers

Causal models are scored by summed token log-probability, masked models by pseudo-log-likelihood,
ELECTRA by its discriminator; a completion after a context by the same sums over its tokens only
(docs/evaluation.md). Results: a table per task on the console, results.json and results.csv
(inside the model folder under blimp/<task>/ for a local model, in --output_dir/<task>/
otherwise), TensorBoard and learning_curve.{png,csv} for a run, comparison.{png,csv} for runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from common.config import option, parse_config
from common.distributed import build_accelerator, end_run
from common.errors import UsageError, run_main
from common.evaluation.comparison import run_labels, runs_to_compare, write_comparison
from common.evaluation.sentence_scoring import DTYPES, ScoringOptions
from common.evaluation.tasks import HUB_BLIMP, describe, load_tasks, select_uids
from common.evaluation.zero_shot import RESULTS_FOLDER, evaluate_model, evaluate_run, report
from common.evaluation.zero_shot_results import headline_text, write_results
from common.model_source import ModelSource


@dataclass(frozen=True)
class BlimpConfig:
    model_name_or_path: Optional[str] = option(None, "a saved model folder or a Hub model id to evaluate")
    revision: Optional[str] = option(None, "Hub branch, tag or commit of --model_name_or_path (e.g. chck_10M)")
    run_dir: Optional[str] = option(
        None, "a train_pretrain.py run folder: evaluate every milestone and final/, then draw the learning curves"
    )
    compare: list[str] = option(
        [],
        "run folders (or folders of runs, such as a grid's) to draw side by side: every snapshot of each is "
        "evaluated as with --run_dir (what is already scored is read back), then comparison.{png,csv}",
    )
    data_dir: Optional[str] = option(
        None,
        f"the tasks' data: a folder of *.jsonl files (one task: BLiMP, BLiMP filtered, the supplement, EWoK, "
        f"entity tracking, WUG, COMPS), a folder of such folders (the BabyLM release's evaluation_data/, "
        f"full_eval/ or fast_eval/), or {HUB_BLIMP} (the Hub data set; needs the network); "
        f"default: the synthetic corpus's tasks",
    )
    blimp_dir: Optional[str] = option(None, "the same as --data_dir (its older name)")
    tasks: list[str] = option(
        [],
        "the tasks (folder names, e.g. blimp_fast ewok_fast), or full / fast for all of the release's "
        "full_eval/ or fast_eval/; default: full_eval/'s for one model, fast_eval/'s for a run, else all found",
    )
    paradigms: list[str] = option([], "evaluate only these uids (BLiMP paradigms, EWoK domains, ...)")
    skip_bad_lines: bool = option(
        False, "leave out JSONL lines that lack a task's fields (with a warning) instead of stopping"
    )
    synthetic_pairs_per_paradigm: int = option(200, "items per synthetic paradigm when no --data_dir is given")
    bos: Literal["prepend", "tokenizer", "none"] = option(
        "prepend",
        "causal models: prepend a BOS token so the first token is scored too (prepend), add only the special "
        "tokens the tokenizer adds itself, the first token unscored (tokenizer: the BabyLM pipeline's rule), "
        "or nothing (none)",
    )
    no_bos: bool = option(False, "the same as --bos none")
    pll_variant: Literal["original", "word_l2r"] = option(
        "original",
        "masked models: mask each token in turn (original), or also the rest of its word (word_l2r, "
        "Kauf & Ivanova 2023)",
    )
    electra_scorer: Literal["discriminator", "generator"] = option(
        "discriminator",
        "ELECTRA: score with the discriminator, or with the generator's pseudo-log-likelihood "
        "(from the model's generator/ subfolder)",
    )
    batch_size: Optional[int] = option(
        None, "rows (sentences, or masked copies of them) per forward pass (default: 512 on a GPU, 64 on the CPU)"
    )
    max_batch_tokens: int = option(
        16384,
        "padded tokens per forward pass (long sentences make smaller batches; causal "
        "models also keep their logits under 1 GiB)",
    )
    shared_prefix_tokens: int = option(
        256,
        "causal models: score the candidates of one context (entity tracking's endings) after a single pass over "
        "it when that saves at least this many tokens for the context (0: pad every candidate to full length instead)",
    )
    dtype: Literal[tuple(DTYPES)] = option(
        "float32", "weights' dtype (bfloat16 is faster on GPUs; float32 is what published numbers use)"
    )
    trust_remote_code: bool = option(
        False,
        "allow Hub models whose architecture ships as code (e.g. LTG-BERT baselines); that code runs on this machine",
    )
    output_dir: Optional[str] = option(
        None,
        "where results go: for --model_name_or_path each task's in <output_dir>/<task>/ (default: inside a local "
        "model folder under blimp/<task>/, else blimp_results/<model>/<task>/); for --compare the figure and "
        "CSV (default: comparison/)",
    )
    save_pair_scores: bool = option(
        False, "also write item_scores.jsonl: every candidate's score for every item, and the decision"
    )
    rescore: bool = option(
        False, "--run_dir, --compare: score snapshots again even when they hold results for the same data and options"
    )

    def __post_init__(self):
        if sum(map(bool, (self.model_name_or_path, self.run_dir, self.compare))) != 1:
            raise UsageError(
                "give one of --model_name_or_path (one model), --run_dir (every snapshot of a run) or "
                "--compare (several runs)"
            )
        if self.revision and not self.model_name_or_path:
            raise UsageError("--revision goes with --model_name_or_path (a Hub model)")
        if self.output_dir and self.run_dir:
            raise UsageError("--output_dir goes with --model_name_or_path or --compare; a run's results go inside it")
        if self.data_dir and self.blimp_dir and self.data_dir != self.blimp_dir:
            raise UsageError(
                f"--data_dir {self.data_dir} and --blimp_dir {self.blimp_dir}: give one (they are the same)"
            )
        if self.no_bos and self.bos != "prepend":
            raise UsageError(f"--no_bos and --bos {self.bos}: give one (--no_bos is --bos none)")
        if self.shared_prefix_tokens < 0:
            raise UsageError(f"--shared_prefix_tokens must be 0 (never) or more, got {self.shared_prefix_tokens}")
        for name in ("batch_size", "max_batch_tokens", "synthetic_pairs_per_paradigm"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UsageError(f"--{name} must be at least 1, got {getattr(self, name)}")

    @property
    def data_folder(self) -> str | None:
        return self.data_dir or self.blimp_dir

    def scoring_options(self) -> ScoringOptions:
        return ScoringOptions(
            bos="none" if self.no_bos else self.bos,
            pll_variant=self.pll_variant,
            electra_scorer=self.electra_scorer,
            batch_size=self.batch_size,
            max_batch_tokens=self.max_batch_tokens,
            dtype=self.dtype,
            trust_remote_code=self.trust_remote_code,
            shared_prefix_tokens=self.shared_prefix_tokens,
        )


def model_output_dir(cfg: BlimpConfig, task_name: str) -> Path:
    if cfg.output_dir:
        return Path(cfg.output_dir) / task_name
    if Path(cfg.model_name_or_path).is_dir():
        return Path(cfg.model_name_or_path) / RESULTS_FOLDER / task_name
    return Path("blimp_results") / ModelSource(cfg.model_name_or_path, cfg.revision).label / task_name


def evaluate_one_model(cfg: BlimpConfig, accelerator, tasks) -> None:
    every = evaluate_model(accelerator, cfg.model_name_or_path, tasks, cfg.scoring_options(), cfg.revision)
    for task, (results, item_scores) in zip(tasks, every):
        output_dir = model_output_dir(cfg, task.name)
        if accelerator.is_main_process:
            write_results(output_dir, results, item_scores if cfg.save_pair_scores else None)
        accelerator.print(f"\n{report(results)}")
        accelerator.print(f"results: {output_dir / 'results.json'} ({results['items_per_s']:.0f} items/s)")
    if len(tasks) > 1:
        accelerator.print("\n" + "\n".join(f"{r['data']['name']:>24}  {headline_text(r)}" for r, _ in every))


def evaluate_whole_run(cfg: BlimpConfig, accelerator, tasks) -> None:
    run_dir = Path(cfg.run_dir)
    every = evaluate_run(accelerator, run_dir, tasks, cfg.scoring_options(), cfg.rescore, cfg.save_pair_scores)
    for task in tasks:
        accelerator.print(f"\n{report(every[task.name][-1])}")
        for results in every[task.name]:
            snapshot = results["snapshot"]
            accelerator.print(f"{snapshot['name']:>16}  {snapshot['tokens_seen']:>12} tokens  {headline_text(results)}")
        accelerator.print(f"learning curve: {run_dir / RESULTS_FOLDER / task.name / 'learning_curve.png'}")


def compare_runs(cfg: BlimpConfig, accelerator, tasks) -> None:
    runs = runs_to_compare(cfg.compare)
    every = {}
    for run in runs:
        accelerator.print(f"run {run}")
        every[run.name] = evaluate_run(
            accelerator, run, tasks, cfg.scoring_options(), cfg.rescore, cfg.save_pair_scores
        )
    if accelerator.is_main_process:
        csv_path, png_path = write_comparison(Path(cfg.output_dir or "comparison"), every, run_labels(runs))
        accelerator.print(f"comparison of {len(runs)} runs: {png_path}, {csv_path}")
    accelerator.wait_for_everyone()


def main():
    cfg = parse_config(BlimpConfig)
    accelerator = build_accelerator()
    default_suite = "full_eval" if cfg.model_name_or_path else "fast_eval"
    flag = "--blimp_dir" if cfg.blimp_dir else "--data_dir"
    tasks, skipped = load_tasks(
        cfg.data_folder, cfg.tasks, cfg.skip_bad_lines, cfg.synthetic_pairs_per_paradigm, default_suite, flag
    )
    tasks = select_uids(tasks, cfg.paradigms)
    accelerator.print(f"{len(tasks)} task(s) from {cfg.data_folder or 'the synthetic corpus'}:")
    for task in tasks:
        accelerator.print(f"  {describe(task)}")
    for name, why in skipped.items():
        accelerator.print(f"  (skipped {name}: {why})")
    if cfg.compare:
        compare_runs(cfg, accelerator, tasks)
    elif cfg.run_dir:
        evaluate_whole_run(cfg, accelerator, tasks)
    else:
        evaluate_one_model(cfg, accelerator, tasks)
    end_run(accelerator)


if __name__ == "__main__":
    run_main(main)
