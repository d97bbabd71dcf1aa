"""BLiMP minimal-pair evaluation: does the model prefer the grammatical sentence of each pair?

    python eval_blimp.py --model_name_or_path runs/my-run/final          # on the synthetic pairs
    python eval_blimp.py --model_name_or_path gpt2 --blimp_dir data/blimp
    python eval_blimp.py --model_name_or_path babylm/babyllama-10m-2024 --revision chck_10M --blimp_dir nyu-mll/blimp
    python eval_blimp.py --run_dir runs/my-run --blimp_dir data/blimp_filtered   # every milestone + curve
    accelerate launch --num_processes 2 eval_blimp.py ...                  # pairs sharded, same numbers

Causal models are scored by summed token log-probability, masked models by pseudo-log-likelihood,
ELECTRA by its discriminator (docs/evaluation.md). Results: a table on the console,
results.json and results.csv (inside the model folder under blimp/<data>/ for a local model, in
--output_dir otherwise), TensorBoard and learning_curve.{png,csv} for a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from common.config import option, parse_config
from common.distributed import build_accelerator, end_run
from common.errors import UsageError, run_main
from common.evaluation.blimp import evaluate_model, evaluate_run, report
from common.evaluation.blimp_results import write_results
from common.evaluation.minimal_pairs import HUB_BLIMP, load_pair_set, select_paradigms
from common.evaluation.sentence_scoring import DTYPES, ScoringOptions
from common.model_source import ModelSource


@dataclass(frozen=True)
class BlimpConfig:
    model_name_or_path: Optional[str] = option(None, "a saved model folder or a Hub model id to evaluate")
    revision: Optional[str] = option(None, "Hub branch, tag or commit of --model_name_or_path (e.g. chck_10M)")
    run_dir: Optional[str] = option(
        None, "a train_pretrain.py run folder: evaluate every milestone and final/, then draw the learning curve"
    )
    blimp_dir: Optional[str] = option(
        None,
        f"BLiMP JSONL folder (one file per paradigm), the BabyLM filtered-BLiMP "
        f"folder, or {HUB_BLIMP} (the Hub data set; needs the network); "
        f"default: the synthetic corpus's minimal pairs",
    )
    paradigms: list[str] = option([], "evaluate only these paradigms (UIDs)")
    skip_bad_lines: bool = option(
        False, "leave out JSONL lines without sentence_good/sentence_bad (with a warning) instead of stopping"
    )
    synthetic_pairs_per_paradigm: int = option(200, "pairs per synthetic paradigm when --blimp_dir is not given")
    no_bos: bool = option(False, "causal models: do not prepend the BOS token (the first token is then unscored)")
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
    dtype: Literal[tuple(DTYPES)] = option(
        "float32", "weights' dtype (bfloat16 is faster on GPUs; float32 is what published numbers use)"
    )
    trust_remote_code: bool = option(
        False,
        "allow Hub models whose architecture ships as code (e.g. LTG-BERT baselines); that code runs on this machine",
    )
    output_dir: Optional[str] = option(
        None,
        "where results go for --model_name_or_path (default: inside a local "
        "model folder under blimp/<data>/, else blimp_results/<model>/<data>)",
    )
    save_pair_scores: bool = option(False, "also write pair_scores.jsonl: both sentences' scores for every pair")
    rescore: bool = option(
        False, "--run_dir: score snapshots again even when they hold results for the same data and options"
    )

    def __post_init__(self):
        if bool(self.model_name_or_path) == bool(self.run_dir):
            raise UsageError("give either --model_name_or_path (one model) or --run_dir (every snapshot of a run)")
        if self.revision and not self.model_name_or_path:
            raise UsageError("--revision goes with --model_name_or_path (a Hub model)")
        if self.output_dir and self.run_dir:
            raise UsageError("--output_dir goes with --model_name_or_path; a run's results go inside its snapshots")
        for name in ("batch_size", "max_batch_tokens", "synthetic_pairs_per_paradigm"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UsageError(f"--{name} must be at least 1, got {getattr(self, name)}")

    def scoring_options(self) -> ScoringOptions:
        return ScoringOptions(
            bos=not self.no_bos,
            pll_variant=self.pll_variant,
            electra_scorer=self.electra_scorer,
            batch_size=self.batch_size,
            max_batch_tokens=self.max_batch_tokens,
            dtype=self.dtype,
            trust_remote_code=self.trust_remote_code,
        )


def model_output_dir(cfg: BlimpConfig, data_name: str) -> Path:
    if cfg.output_dir:
        return Path(cfg.output_dir)
    if Path(cfg.model_name_or_path).is_dir():
        return Path(cfg.model_name_or_path) / "blimp" / data_name
    return Path("blimp_results") / ModelSource(cfg.model_name_or_path, cfg.revision).label / data_name


def evaluate_one_model(cfg: BlimpConfig, accelerator, pair_set) -> None:
    results, pair_scores = evaluate_model(
        accelerator, cfg.model_name_or_path, pair_set, cfg.scoring_options(), cfg.revision
    )
    output_dir = model_output_dir(cfg, pair_set.name)
    if accelerator.is_main_process:
        write_results(output_dir, results, pair_scores if cfg.save_pair_scores else None)
    accelerator.print(report(results))
    accelerator.print(f"results: {output_dir / 'results.json'} ({results['pairs_per_s']:.0f} pairs/s)")


def evaluate_whole_run(cfg: BlimpConfig, accelerator, pair_set) -> None:
    run_dir = Path(cfg.run_dir)
    every = evaluate_run(accelerator, run_dir, pair_set, cfg.scoring_options(), cfg.rescore, cfg.save_pair_scores)
    accelerator.print(report(every[-1]))
    for results in every:
        overall = results["accuracy"]["overall"]
        accelerator.print(
            f"{results['snapshot']['name']:>16}  {results['snapshot']['tokens_seen']:>12} tokens  "
            f"{100 * overall['accuracy']:6.2f}%"
        )
    accelerator.print(f"learning curve: {run_dir / 'blimp' / pair_set.name / 'learning_curve.png'}")


def main():
    cfg = parse_config(BlimpConfig)
    accelerator = build_accelerator()
    pair_set = select_paradigms(
        load_pair_set(cfg.blimp_dir, cfg.skip_bad_lines, cfg.synthetic_pairs_per_paradigm), cfg.paradigms
    )
    accelerator.print(f"{len(pair_set.pairs)} pairs in {len(pair_set.paradigms)} paradigms from {pair_set.source}")
    if cfg.run_dir:
        evaluate_whole_run(cfg, accelerator, pair_set)
    else:
        evaluate_one_model(cfg, accelerator, pair_set)
    end_run(accelerator)


if __name__ == "__main__":
    run_main(main)
