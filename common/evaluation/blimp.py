"""BLiMP evaluation of one model, or of every snapshot of a pretraining run.

Shared by `eval_blimp.py` and the end of `train_pretrain.py`. Results of a snapshot folder go
inside it, under `blimp/<data set>/`, so a run's milestones carry their scores with them and a
second pass over a run can see which ones are already scored with the same data and options.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

from common.errors import UsageError
from common.evaluation.blimp_results import (
    accuracy_summary,
    pair_outcomes,
    paradigm_table,
    read_snapshot_results,
    tensorboard_scalars,
    write_learning_curve,
    write_results,
)
from common.evaluation.minimal_pairs import PairSet
from common.evaluation.sentence_scoring import ScoringOptions, load_scorer, score_sentences
from common.tracking import TensorBoard

log = logging.getLogger("babytrain")

# Options that do not change any score (only how the work is batched).
THROUGHPUT_OPTIONS = ("batch_size", "max_batch_tokens", "trust_remote_code")


def settings_of(pair_set: PairSet, options: ScoringOptions) -> dict:
    """What a stored result must match to count as already scored."""
    scoring = {k: v for k, v in asdict(options).items() if k not in THROUGHPUT_OPTIONS}
    return {"data": pair_set.name, "data_fingerprint": pair_set.fingerprint, **scoring}


def snapshot_info(folder: Path) -> dict:
    """Name, tokens seen and step of a saved model (from milestone.json when it has one)."""
    info_path = Path(folder) / "milestone.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    return {
        "name": info.get("name", Path(folder).name),
        "tokens_seen": info.get("tokens_seen"),
        "step": info.get("step"),
    }


def evaluate_model(
    accelerator, name_or_path: str, pair_set: PairSet, options: ScoringOptions, revision: str | None = None
) -> tuple[dict, list[dict]]:
    """Score every pair with one model: (results, pair scores). Every process takes part."""
    started = time.perf_counter()
    scorer = load_scorer(name_or_path, revision, options, accelerator.device)
    pairs = list(pair_set.pairs)
    sentences = pair_set.sentences()
    index = {sentence: i for i, sentence in enumerate(sentences)}
    scores = score_sentences(scorer, sentences, accelerator)
    good = scores[[index[pair.good] for pair in pairs]]
    bad = scores[[index[pair.bad] for pair in pairs]]
    correct, ties = pair_outcomes(good, bad)
    seconds = time.perf_counter() - started
    results = {
        "model": name_or_path,
        "revision": revision,
        "snapshot": snapshot_info(Path(name_or_path))
        if Path(name_or_path).is_dir()
        else {"name": name_or_path, "tokens_seen": None, "step": None},
        "scorer": scorer.name,
        "settings": settings_of(pair_set, options),
        "data": {
            "name": pair_set.name,
            "source": pair_set.source,
            "paradigms": len(pair_set.paradigms),
            "pairs": len(pairs),
            "sentences": len(sentences),
        },
        "accuracy": accuracy_summary(pairs, correct, ties),
        "seconds": round(seconds, 3),
        "pairs_per_s": round(len(pairs) / seconds, 1),
        "num_processes": accelerator.num_processes,
    }
    pair_scores = [
        {
            "UID": p.uid,
            "pair_id": p.pair_id,
            "sentence_good": p.good,
            "sentence_bad": p.bad,
            "score_good": float(g),
            "score_bad": float(b),
            "correct": bool(c),
        }
        for p, g, b, c in zip(pairs, good, bad, correct)
    ]
    return results, pair_scores


def snapshot_results_dir(folder: Path, pair_set: PairSet) -> Path:
    return Path(folder) / "blimp" / pair_set.name


def evaluate_snapshot(
    accelerator,
    folder: Path,
    pair_set: PairSet,
    options: ScoringOptions,
    save_pair_scores: bool = False,
    board: TensorBoard | None = None,
) -> dict:
    """Score a saved snapshot, write its results inside it (and its accuracies to `board` at the
    snapshot's token count, so a run's curve lines up with its training), return them."""
    results, pair_scores = evaluate_model(accelerator, str(folder), pair_set, options)
    if accelerator.is_main_process:
        write_results(snapshot_results_dir(folder, pair_set), results, pair_scores if save_pair_scores else None)
        if board is not None and results["snapshot"]["tokens_seen"] is not None:
            board.scalars(tensorboard_scalars(results["accuracy"]), step=results["snapshot"]["tokens_seen"])
    accelerator.wait_for_everyone()
    return results


def tensorboard_board(accelerator, run_dir: Path, pair_set: PairSet) -> TensorBoard:
    """A run's BLiMP scalars: `tb/blimp-<data>/`, one writer for all the snapshots scored in one go
    (so their events are read back in the order they were written)."""
    return TensorBoard(Path(run_dir) / "tb" / f"blimp-{pair_set.name}", accelerator.is_main_process)


def run_snapshots(run_dir: Path) -> list[Path]:
    """A run's milestones and final model, in the order they were trained."""
    if not run_dir.is_dir():
        raise UsageError(f"--run_dir {run_dir}: no such folder")
    folders = [p.parent for p in (run_dir / "milestones").glob("*/milestone.json")]
    if (run_dir / "final" / "milestone.json").is_file():
        folders.append(run_dir / "final")
    if not folders:
        raise UsageError(
            f"--run_dir {run_dir}: no milestones/*/ or final/ snapshots (is it a train_pretrain.py run folder?)"
        )
    return sorted(folders, key=lambda f: (snapshot_info(f)["tokens_seen"] or 0, f.name == "final", f.name))


def evaluate_run(
    accelerator,
    run_dir: Path,
    pair_set: PairSet,
    options: ScoringOptions,
    rescore: bool = False,
    save_pair_scores: bool = False,
) -> list[dict]:
    """Score every snapshot of a run (those already scored with the same data and options are
    read back, unless rescore) and draw the learning curve; return all results."""
    settings = settings_of(pair_set, options)
    every = []
    board = tensorboard_board(accelerator, run_dir, pair_set)
    for number, folder in enumerate(run_snapshots(run_dir), start=1):
        stored = read_snapshot_results(snapshot_results_dir(folder, pair_set))
        if stored is not None and stored.get("settings") == settings and not rescore:
            log.info(
                "[%d] %s: already scored (overall %.2f%%), skipped",
                number,
                folder.name,
                100 * stored["accuracy"]["overall"]["accuracy"],
            )
            every.append(stored)
            continue
        results = evaluate_snapshot(
            accelerator,
            folder,
            pair_set,
            options,
            save_pair_scores,
            board=board,
        )
        log.info(
            "[%d] %s (%s tokens): overall %.2f%% (%.0f pairs/s)",
            number,
            folder.name,
            results["snapshot"]["tokens_seen"],
            100 * results["accuracy"]["overall"]["accuracy"],
            results["pairs_per_s"],
        )
        every.append(results)
    board.close()
    if accelerator.is_main_process:
        write_learning_curve(
            run_dir / "blimp" / pair_set.name, every, title=f"BLiMP ({pair_set.name}) over training: {run_dir.name}"
        )
    accelerator.wait_for_everyone()
    return every


def summary_line(results: dict) -> str:
    overall = results["accuracy"]["overall"]
    return (
        f"BLiMP ({results['data']['name']}, {results['data']['pairs']} pairs, {results['scorer']}): "
        f"{100 * overall['accuracy']:.2f}% macro, {100 * overall['micro_accuracy']:.2f}% micro"
    )


def report(results: dict) -> str:
    """The console report of one model: the table, then the summary line."""
    return f"{paradigm_table(results['accuracy'])}\n{summary_line(results)}"


def check_pairs_fit(pair_set: PairSet, tokenizer, positions: int) -> None:
    """Refuse, before training, pairs whose sentences will not fit the model being trained."""
    encoded = tokenizer(pair_set.sentences(), add_special_tokens=False)["input_ids"]
    longest = max(len(ids) for ids in encoded) + 2  # BOS / CLS+SEP
    if longest > positions:
        raise UsageError(
            f"--blimp_at_end: the longest sentence of the minimal pairs ({pair_set.source}) takes "
            f"{longest} tokens with this tokenizer, more than the model's {positions} positions; raise "
            f"--max_position_embeddings or pass --blimp_at_end false"
        )
