"""BLiMP scoring speed of eval_blimp.py's scorers against minicons, same models, same pairs, one run.

Both sides score every sentence of the same minimal pairs with the same model object in memory
(fp32, on the GPU when there is one, else the CPU with the same torch threads; one process), one
after the other, and the pairs/s of each counts the tokenizing and scoring of all of them (not the
loading of the model):

* causal: a LLaMA at `--model_size`, summed token log-probabilities after BOS. minicons:
  `IncrementalLMScorer.sequence_score(batch, reduction=sum, bos_token=True)` over the pairs'
  sentences in data order. Ours: `score_sentences` (rows sorted by length into batches of
  up to `--ours_batches` rows / 16384 tokens, each distinct sentence once).
* masked: a BERT at `--model_size`, the original pseudo-log-likelihood. minicons:
  `MaskedLMScorer.sequence_score(batch, PLL_metric="original")`, whose one forward per call holds
  every masked copy of its sentences. Ours: the same batching, the MLM head on the masked
  position only.

Each side runs once for each of a few batch sizes, and its fastest counts.

Untrained weights (speed does not depend on them) with a BPE / WordPiece tokenizer of
`--vocab_size` trained on the synthetic corpus. The two sides' scores are compared too (the
largest difference and the pair decisions), so they are known to do the same work.

    python benchmarks/bench_blimp.py --blimp_dir data/blimp           # 20m models, 1000 real BLiMP pairs
    python benchmarks/bench_blimp.py --model_size tiny --pairs 2000 --output /tmp/blimp_cpu.json

Pairs: a BLiMP folder given as --blimp_dir (one <UID>.jsonl per paradigm; the figures in
docs/benchmarks.md use six real paradigms), every n-th pair so that all paradigms are in it;
without it, the synthetic corpus's pairs.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as `python benchmarks/bench_blimp.py`: make `common` importable

import numpy as np  # noqa: E402
import torch  # noqa: E402
from accelerate import Accelerator  # noqa: E402
from minicons import scorer as minicons_scorer  # noqa: E402

from common.data.synthetic import synthetic_documents  # noqa: E402
from common.data.tokenizer import train_tokenizer  # noqa: E402
from common.evaluation.sentence_scoring import CausalScorer, MaskedScorer, ScoringOptions, score_sentences  # noqa: E402
from common.evaluation.tasks import read_task_folder, synthetic_tasks  # noqa: E402
from common.models.build import build_model, resolve_shape  # noqa: E402


def benchmark_pairs(blimp_dir: Path | None, count: int) -> list:
    pairs = read_task_folder(blimp_dir).items if blimp_dir else synthetic_tasks(count)[0].items
    step = max(1, len(pairs) // count)
    return list(pairs[::step][:count])


def minicons_scores(kind: str, model, tokenizer, sentences: list[str], batch_size: int, device: str) -> np.ndarray:
    total = lambda x: x.sum(0).item()  # noqa: E731
    if kind == "causal":
        scorer = minicons_scorer.IncrementalLMScorer(model, device=device, tokenizer=tokenizer)
        score = lambda batch: scorer.sequence_score(batch, reduction=total, bos_token=True)  # noqa: E731
    else:
        tokenizer.batch_encode_plus = tokenizer.__call__  # minicons 0.3.39 calls this pre-transformers-5 name
        scorer = minicons_scorer.MaskedLMScorer(model, device=device, tokenizer=tokenizer)
        score = lambda batch: scorer.sequence_score(batch, reduction=total, PLL_metric="original")  # noqa: E731
    scores = []
    for start in range(0, len(sentences), batch_size):
        scores += score(sentences[start : start + batch_size])
    return np.array(scores)


def run_side(name: str, work, repeats: int) -> tuple[np.ndarray, float]:
    """Run `work` `repeats` times; its scores and the fastest time (a shared machine's noise only
    ever adds time)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        scores = work()
        times.append(time.perf_counter() - started)
    print(f"  {name:>34}: {min(times):7.2f} s" + (f" (best of {repeats})" if repeats > 1 else ""), flush=True)
    return scores, min(times)


def compare(
    kind: str,
    model,
    tokenizer,
    pairs: list,
    ours_batches: list[int],
    minicons_batches: list[int],
    accelerator,
    repeats: int,
) -> dict:
    sentences = [text for pair in pairs for text, _ in pair.candidates]  # minicons: in data order, as given
    tokens_per_sentence = float(
        np.mean([len(ids) for ids in tokenizer(sentences, add_special_tokens=False)["input_ids"]])
    )
    print(f"{kind}: {len(pairs)} pairs, {tokens_per_sentence:.1f} tokens a sentence", flush=True)
    distinct = list(dict.fromkeys(sentences))
    scorer_class = CausalScorer if kind == "causal" else MaskedScorer
    with torch.inference_mode():
        score_sentences(
            scorer_class(model, tokenizer, ScoringOptions()), sentences[:64], accelerator, progress=False
        )  # warm-up: threads, allocator
        ours_sweep = {}
        for size in ours_batches:  # ours' best batch size counts too
            scorer = scorer_class(model, tokenizer, ScoringOptions(batch_size=size))
            ours_sweep[size] = run_side(
                f"ours, {size} rows a batch",
                functools.partial(score_sentences, scorer, distinct, accelerator, progress=False),
                repeats,
            )
        ours_batch = min(ours_sweep, key=lambda size: ours_sweep[size][1])
        ours, ours_seconds = ours_sweep[ours_batch]
        sweep = {}
        for size in minicons_batches:  # minicons' best batch size counts
            sweep[size] = run_side(
                f"minicons, {size} sentences a call",
                functools.partial(minicons_scores, kind, model, tokenizer, sentences, size, str(accelerator.device)),
                repeats,
            )
        minicons_batch = min(sweep, key=lambda size: sweep[size][1])
        theirs, theirs_seconds = sweep[minicons_batch]
    index = {sentence: i for i, sentence in enumerate(distinct)}
    ours_all = ours[[index[s] for s in sentences]]
    agree = float(np.mean((ours_all[0::2] > ours_all[1::2]) == (theirs[0::2] > theirs[1::2])))
    result = {
        "pairs": len(pairs),
        "ours_pairs_per_s": len(pairs) / ours_seconds,
        "minicons_pairs_per_s": len(pairs) / theirs_seconds,
        "speedup": theirs_seconds / ours_seconds,
        "max_abs_score_difference": float(np.max(np.abs(ours_all - theirs))),
        "decisions_agree": agree,
        "minicons_sentences_per_call": minicons_batch,
        "minicons_seconds_by_batch": {size: seconds for size, (_, seconds) in sweep.items()},
        "ours_rows_per_batch": ours_batch,
        "ours_seconds_by_batch": {size: seconds for size, (_, seconds) in ours_sweep.items()},
    }
    print(
        f"  ours (best, {ours_batch} rows a batch) {result['ours_pairs_per_s']:.1f} pairs/s, "
        f"minicons (best, {minicons_batch} sentences a call) "
        f"{result['minicons_pairs_per_s']:.1f} pairs/s: "
        f"{result['speedup']:.2f}x; scores differ by at most {result['max_abs_score_difference']:.2e}, "
        f"decisions agree on {100 * agree:.1f}% of pairs",
        flush=True,
    )
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_size", default="20m", choices=["tiny", "20m", "60m", "180m"])
    parser.add_argument("--vocab_size", type=int, default=8000)
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument(
        "--ours_batches",
        type=int,
        nargs="+",
        default=[64, 512],
        help="ours' rows a batch to try (its best counts; 64 and 512 are its CPU and GPU defaults)",
    )
    parser.add_argument(
        "--causal_batches",
        type=int,
        nargs="+",
        default=[32, 128, 512],
        help="minicons' sentences a call to try for the causal model (its best counts)",
    )
    parser.add_argument(
        "--masked_batches",
        type=int,
        nargs="+",
        default=[4, 16, 64],
        help="minicons' sentences a call to try for the masked model (its best counts)",
    )
    parser.add_argument("--blimp_dir", type=Path, default=None, help="BLiMP JSONL folder (default: synthetic pairs)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=1, help="time each setting this many times, keep the best")
    parser.add_argument("--cpu", action="store_true", help="stay on the CPU even when a GPU is there")
    parser.add_argument("--only", choices=["causal", "masked"], default=None)
    parser.add_argument("--output", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    accelerator = Accelerator(cpu=args.cpu or not torch.cuda.is_available())
    pairs = benchmark_pairs(args.blimp_dir, args.pairs)
    documents = list(synthetic_documents(300_000, seed=0))
    shape = resolve_shape(args.model_size)
    machine = (
        torch.cuda.get_device_name()
        if accelerator.device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} torch threads"
    )
    report = {
        "machine": f"{machine}, torch {torch.__version__}",
        "model_size": args.model_size,
        "vocab_size": args.vocab_size,
        "data": str(args.blimp_dir) if args.blimp_dir else "synthetic",
    }
    for kind, tokenizer_kind, model_type, objective in (
        ("causal", "bpe", "llama", "causal"),
        ("masked", "wordpiece", "bert", "mlm"),
    ):
        if args.only and args.only != kind:
            continue
        tokenizer = train_tokenizer(tokenizer_kind, documents, args.vocab_size)
        torch.manual_seed(0)
        model = build_model(model_type, objective, shape, tokenizer, max_positions=128).eval().to(accelerator.device)
        batches = args.causal_batches if kind == "causal" else args.masked_batches
        report[kind] = compare(kind, model, tokenizer, pairs, args.ours_batches, batches, accelerator, args.repeats)
    print(json.dumps(report, indent=2))
    if args.output:
        args.output.write_text(json.dumps(report, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
