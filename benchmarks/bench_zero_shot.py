"""Zero-shot task speed of eval_blimp.py's scorer against the BabyLM pipeline's own scoring code
and minicons, same model, same items, one run.

Every side scores every item of each task with the same saved model (fp32, on the GPU when there is
one, else the CPU with the same torch threads; one process), one after the other; items/s counts
tokenizing and scoring (not loading the model). The decisions are compared too, so the sides are
known to do the same work:

* ours: `evaluate_model` (texts sorted by length into batches; completions scored after their
  context), with the pipeline's causal rule (`--bos tokenizer`) so the numbers can be equal;
* the BabyLM pipeline (babylm/evaluation-pipeline-2025, `evaluation_pipeline/sentence_zero_shot`):
  its dataloader and `compute_results` at its default batch size of 64, imported from a clone you
  name with `--pipeline_dir` (it is not a package, and its code is not part of this repository);
  per-UID accuracies compared with ours counted the pipeline's way (ties right);
* minicons (causal only): `sequence_score` for whole sentences, `conditional_score` for
  completions after a prefix, its per-item decisions compared with ours.

    git clone https://github.com/babylm/evaluation-pipeline-2025 /tmp/evaluation-pipeline-2025
    python benchmarks/bench_zero_shot.py --pipeline_dir /tmp/evaluation-pipeline-2025          # synthetic tasks
    python benchmarks/bench_zero_shot.py --pipeline_dir ... --data_dir evaluation_data --tasks fast \\
        --model runs/my-run/final

Without --data_dir the synthetic corpus's tasks are written in the release's layout (its minimal
pairs as a BLiMP folder, its completions as an entity-tracking file) and an untrained model of
--model_size is saved with a tokenizer trained on the synthetic corpus (speed does not depend on
the weights).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from argparse import Namespace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as `python benchmarks/bench_zero_shot.py`: make `common` importable

import numpy as np  # noqa: E402
import torch  # noqa: E402
from accelerate import Accelerator  # noqa: E402

from common.data.synthetic import synthetic_completions, synthetic_documents, synthetic_minimal_pairs  # noqa: E402
from common.data.tokenizer import train_tokenizer  # noqa: E402
from common.evaluation.sentence_scoring import ScoringOptions, load_scorer  # noqa: E402
from common.evaluation.tasks import Task, load_tasks  # noqa: E402
from common.evaluation.zero_shot import evaluate_model  # noqa: E402
from common.models.build import build_model, resolve_shape  # noqa: E402

# Our families the pipeline scores, by its --task name.
PIPELINE_TASKS = {"minimal_pairs": "blimp", "ewok": "ewok", "entity_tracking": "entity_tracking", "wug": "wug"}


def write_synthetic_layout(root: Path, items_per_paradigm: int) -> Path:
    """The synthetic tasks as the release lays tasks out: BLiMP-style files and an entity-tracking file."""
    pairs = root / "synthetic_blimp"
    pairs.mkdir(parents=True)
    for record in synthetic_minimal_pairs(items_per_paradigm):
        with open(pairs / f"{record['UID']}.jsonl", "a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")
    tracking = root / "entity_tracking"
    tracking.mkdir()
    with open(tracking / "regular.jsonl", "w", encoding="utf-8") as file:  # the pipeline averages known file names
        for record in synthetic_completions(items_per_paradigm):
            file.write(json.dumps({**record, "numops": 0}) + "\n")
    return root


def save_untrained_model(folder: Path, kind: str, model_size: str, vocab_size: int, model_vocab: int) -> Path:
    """An untrained model with a tokenizer trained on the synthetic corpus (whose few hundred word
    types fill far less than `vocab_size`), its output layer widened to `model_vocab` entries: the
    LM head of a real BabyLM model costs what a 16k vocabulary costs."""
    documents = list(synthetic_documents(300_000, seed=0))
    tokenizer_kind, model_type, objective = {
        "causal": ("bpe", "llama", "causal"),
        "masked": ("wordpiece", "bert", "mlm"),
    }[kind]
    tokenizer = train_tokenizer(tokenizer_kind, documents, vocab_size)
    torch.manual_seed(0)
    model = build_model(model_type, objective, resolve_shape(model_size), tokenizer, max_positions=1024)
    model.resize_token_embeddings(max(len(tokenizer), model_vocab))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def timed(work):
    started = time.perf_counter()
    value = work()
    return value, time.perf_counter() - started


def run_ours(model: Path, task: Task, accelerator, batch_size: int | None) -> tuple[dict, list[dict], float]:
    options = ScoringOptions(bos="tokenizer", batch_size=batch_size)
    load_scorer(str(model), None, options, accelerator.device)  # warm-up: threads, allocator, file cache
    [(results, item_scores)] = evaluate_model(accelerator, str(model), [task], options)
    return results, item_scores, results["seconds"]


def run_pipeline(pipeline_dir: Path, model: Path, task: Task, kind: str, batch_size: int) -> tuple[dict, float, float]:
    """The pipeline's per-UID accuracies (or WUG correlation), its headline, and its seconds, run
    through its own model loading, dataloader and compute_results (imported from the clone; its code
    is not part of this repository). tests/test_zero_shot_tasks.py checks ours against it too."""
    sys.path.insert(0, str(pipeline_dir))
    try:
        from evaluation_pipeline.sentence_zero_shot.compute_results import compute_results
        from evaluation_pipeline.sentence_zero_shot.dataset import get_dataloader
        from evaluation_pipeline.sentence_zero_shot.run import get_model, process_results
    finally:
        sys.path.remove(str(pipeline_dir))

    args = Namespace(
        data_path=Path(task.source),
        task=PIPELINE_TASKS[task.family],
        model_path_or_name=str(model),
        backend="causal" if kind == "causal" else "mlm",
        images_path=None,
        image_split=None,
        image_template=None,
        revision_name=None,
        batch_size=batch_size,
        non_causal_batch_size=64,
        full_sentence_scores=False,
        save_predictions=False,
    )
    network = get_model(args)
    results, seconds = timed(lambda: compute_results(args, network, get_dataloader(args), [1.0])[0])
    accuracies, averages = process_results(args, results)
    return accuracies[1.0], averages[1.0], seconds


def run_minicons(model: Path, task: Task, device: str, batch_size: int) -> tuple[np.ndarray, float]:
    """minicons' candidate scores (items x candidates): whole sentences, or completions after a prefix."""
    from minicons import scorer as minicons_scorer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lm = minicons_scorer.IncrementalLMScorer(
        AutoModelForCausalLM.from_pretrained(model), device=device, tokenizer=AutoTokenizer.from_pretrained(model)
    )
    total = lambda x: x.sum(0).item()  # noqa: E731
    candidates = [candidate for item in task.items for candidate in item.candidates]

    def score_all():
        scores = []
        for start in range(0, len(candidates), batch_size):
            batch = candidates[start : start + batch_size]
            if all(begin == 0 for _, begin in batch):
                scores += lm.sequence_score([text for text, _ in batch], reduction=total)
            else:
                # minicons joins prefix and stimulus with its separator: the space between them
                prefixes = [text[:begin].rstrip() for text, begin in batch]
                stimuli = [text[begin:].lstrip() for text, begin in batch]
                scores += lm.conditional_score(prefixes, stimuli, separator=" ", reduction=total)
        return scores

    scores, seconds = timed(score_all)
    width = len(task.items[0].candidates)
    return np.array(scores).reshape(len(task.items), width), seconds


def compare_task(args, model: Path, kind: str, task: Task, accelerator) -> dict:
    results, item_scores, ours_seconds = run_ours(model, task, accelerator, args.ours_batch)
    items = len(task.items)
    row = {"task": task.name, "family": task.family, "items": items, "ours_items_per_s": items / ours_seconds}
    print(f"{task.name} ({task.family}, {items} items): ours {items / ours_seconds:.1f} items/s", flush=True)
    if args.pipeline_dir and task.family in PIPELINE_TASKS:
        try:
            per_key, headline, seconds = run_pipeline(args.pipeline_dir, model, task, kind, args.pipeline_batch)
        except Exception as error:  # its versions differ: say what broke and go on with the others
            print(f"  BabyLM pipeline failed on {task.name}: {type(error).__name__}: {error}", flush=True)
            row["pipeline_error"] = f"{type(error).__name__}: {error}"
            per_key = None
    else:
        per_key = None
    if per_key is not None:
        row |= {"pipeline_items_per_s": items / seconds, "speedup_vs_pipeline": seconds / ours_seconds}
        if task.metric == "spearman":
            row["pipeline_spearman"], row["ours_spearman"] = headline, results["scores"]["overall"]["spearman"]
        else:
            ours_uids = {uid: 100 * u["accuracy_ties_right"] for uid, u in results["scores"]["uids"].items()}
            theirs_uids = per_key["UID"]  # for entity tracking it also holds each file's average
            row["uid_accuracies_equal"] = set(ours_uids) <= set(theirs_uids) and all(
                abs(theirs_uids[uid] - value) < 1e-9 for uid, value in ours_uids.items()
            )
            row["pipeline_average"] = headline
            row["ours_average_ties_right"] = 100 * results["scores"]["overall"]["accuracy_ties_right"]
        print(
            f"  BabyLM pipeline {row['pipeline_items_per_s']:.1f} items/s: ours {row['speedup_vs_pipeline']:.2f}x; "
            + (
                f"per-UID accuracies equal: {row['uid_accuracies_equal']}"
                if "uid_accuracies_equal" in row
                else f"Spearman {row['pipeline_spearman']:.4f} vs ours {row['ours_spearman']:.4f}"
            ),
            flush=True,
        )
    if kind == "causal" and task.metric == "accuracy" and len({len(i.candidates) for i in task.items}) == 1:
        theirs, seconds = run_minicons(model, task, str(accelerator.device), args.minicons_batch)
        ours = np.array([row["scores"] for row in item_scores])
        decided = np.abs(theirs[:, 0] - theirs[:, 1:].max(axis=1)) > 1e-3
        agree = (ours[:, 0] > ours[:, 1:].max(axis=1)) == (theirs[:, 0] > theirs[:, 1:].max(axis=1))
        row |= {
            "minicons_items_per_s": items / seconds,
            "speedup_vs_minicons": seconds / ours_seconds,
            "minicons_decisions_agree": float(agree[decided].mean()),
        }
        print(
            f"  minicons {row['minicons_items_per_s']:.1f} items/s: ours {row['speedup_vs_minicons']:.2f}x; "
            f"decisions agree on {100 * row['minicons_decisions_agree']:.1f}% of decided items",
            flush=True,
        )
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline_dir", type=Path, default=None, help="a clone of babylm/evaluation-pipeline-2025")
    parser.add_argument("--data_dir", type=Path, default=None, help="the BabyLM evaluation_data/ (default: synthetic)")
    parser.add_argument("--tasks", nargs="*", default=[], help="as eval_blimp.py --tasks (default: full_eval/)")
    parser.add_argument("--model", type=Path, default=None, help="a saved model folder (default: untrained, built)")
    parser.add_argument("--kinds", nargs="+", default=["causal", "masked"], choices=["causal", "masked"])
    parser.add_argument("--model_size", default="20m", choices=["tiny", "20m", "60m", "180m"])
    parser.add_argument("--vocab_size", type=int, default=8000)
    parser.add_argument("--model_vocab", type=int, default=16384, help="the built model's output vocabulary")
    parser.add_argument("--items_per_paradigm", type=int, default=100, help="synthetic items per paradigm")
    parser.add_argument("--ours_batch", type=int, default=None, help="our rows a batch (default: ours)")
    parser.add_argument("--pipeline_batch", type=int, default=64, help="the pipeline's batch size (its default)")
    parser.add_argument("--minicons_batch", type=int, default=64)
    parser.add_argument("--cpu", action="store_true", help="stay on the CPU even when a GPU is there")
    parser.add_argument("--output", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args()
    accelerator = Accelerator(cpu=args.cpu or not torch.cuda.is_available())
    scratch = Path(tempfile.mkdtemp(prefix="bench_zero_shot_"))
    data_dir = args.data_dir or write_synthetic_layout(scratch / "data", args.items_per_paradigm)
    tasks, _ = load_tasks(str(data_dir), args.tasks)
    machine = (
        torch.cuda.get_device_name() if accelerator.device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    )
    report = {
        "machine": f"{machine}, torch {torch.__version__}",
        "data": str(args.data_dir or "synthetic"),
        "kinds": {},
    }
    for kind in args.kinds:
        model = args.model or save_untrained_model(
            scratch / kind, kind, args.model_size, args.vocab_size, args.model_vocab
        )
        print(f"== {kind}: {model}", flush=True)
        report["kinds"][kind] = [compare_task(args, model, kind, task, accelerator) for task in tasks]
        if args.model:
            break
    if not args.pipeline_dir:
        print("(the BabyLM pipeline was not measured: give --pipeline_dir with a clone of it)")
    print(json.dumps(report, indent=2))
    if args.output:
        args.output.write_text(json.dumps(report, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
