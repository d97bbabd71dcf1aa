"""BLiMP scoring speed of eval_blimp.py's scorers against minicons, same models, same pairs, one run.

Both sides score every sentence of the same minimal pairs with the same model object in memory
(fp32, on the GPU when there is one, else the CPU with the same torch threads; one process), one after the other, and the pairs/s of each counts
the tokenizing and scoring of all of them (not the loading of the model):

* causal: a LLaMA at `--model_size`, summed token log-probabilities after BOS. minicons:
  `IncrementalLMScorer.sequence_score(batch, reduction=sum, bos_token=True)` over the pairs'
  sentences in data order, `--batch_size` sentences a call. Ours: `score_sentences`, batches of
  `--batch_size` rows sorted by length, each distinct sentence once.
* masked: a BERT at `--model_size`, the original pseudo-log-likelihood. minicons:
  `MaskedLMScorer.sequence_score(batch, PLL_metric="original")`, whose one forward per call holds
  every masked copy of its sentences; it gets as many sentences a call as make `--batch_size`
  masked copies on average, so both sides run forwards of about the same number of rows.

Untrained weights (speed does not depend on them) with a BPE / WordPiece tokenizer of
`--vocab_size` trained on the synthetic corpus. The two sides' scores are compared too (the
largest difference and the pair decisions), so they are known to do the same work.

    python benchmarks/bench_blimp.py                                  # 20m models, 1000 real BLiMP pairs
    python benchmarks/bench_blimp.py --model_size tiny --pairs 2000 --output /tmp/blimp_cpu.json

Pairs: the real BLiMP sample in ../shared/data/blimp (or --blimp_dir), every n-th pair so that all
paradigms are in it; the synthetic pairs without it.
"""

from __future__ import annotations

import argparse
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

from common.minimal_pairs import read_pair_folder, synthetic_pair_set  # noqa: E402
from common.models import build_model, resolve_shape  # noqa: E402
from common.sentence_scoring import CausalScorer, MaskedScorer, ScoringOptions, score_sentences  # noqa: E402
from common.synthetic import synthetic_documents  # noqa: E402
from common.tokenizer import train_tokenizer  # noqa: E402

DEFAULT_BLIMP = REPO.parent / "shared" / "data" / "blimp"


def benchmark_pairs(blimp_dir: Path, count: int) -> list:
    pairs = read_pair_folder(blimp_dir).pairs if blimp_dir.is_dir() else synthetic_pair_set(count).pairs
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
        scores += score(sentences[start:start + batch_size])
    return np.array(scores)


def run_side(name: str, work) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    scores = work()
    seconds = time.perf_counter() - started
    print(f"  {name:>9}: {seconds:7.2f} s", flush=True)
    return scores, seconds


def compare(kind: str, model, tokenizer, pairs: list, batch_size: int, accelerator) -> dict:
    sentences = [s for pair in pairs for s in (pair.good, pair.bad)]  # minicons: in data order, as given
    options = ScoringOptions(batch_size=batch_size)
    ours_scorer = (CausalScorer if kind == "causal" else MaskedScorer)(model, tokenizer, options)
    tokens_per_sentence = float(np.mean([len(ids) for ids in tokenizer(sentences, add_special_tokens=False)["input_ids"]]))
    minicons_batch = batch_size if kind == "causal" else max(1, round(batch_size / tokens_per_sentence))
    print(f"{kind}: {len(pairs)} pairs, {tokens_per_sentence:.1f} tokens a sentence; minicons gets "
          f"{minicons_batch} sentences a call", flush=True)
    with torch.inference_mode():
        score_sentences(ours_scorer, sentences[:64], accelerator, progress=False)  # warm-up: threads, allocator
        distinct = list(dict.fromkeys(sentences))
        ours, ours_seconds = run_side("ours", lambda: score_sentences(ours_scorer, distinct, accelerator,
                                                                      progress=False))
        theirs, theirs_seconds = run_side("minicons", lambda: minicons_scores(kind, model, tokenizer, sentences,
                                                                              minicons_batch, str(accelerator.device)))
    index = {sentence: i for i, sentence in enumerate(distinct)}
    ours_all = ours[[index[s] for s in sentences]]
    agree = float(np.mean((ours_all[0::2] > ours_all[1::2]) == (theirs[0::2] > theirs[1::2])))
    result = {"pairs": len(pairs), "ours_pairs_per_s": len(pairs) / ours_seconds,
              "minicons_pairs_per_s": len(pairs) / theirs_seconds, "speedup": theirs_seconds / ours_seconds,
              "max_abs_score_difference": float(np.max(np.abs(ours_all - theirs))), "decisions_agree": agree,
              "minicons_sentences_per_call": minicons_batch, "rows_per_forward": batch_size}
    print(f"  ours {result['ours_pairs_per_s']:.1f} pairs/s, minicons {result['minicons_pairs_per_s']:.1f} pairs/s: "
          f"{result['speedup']:.2f}x; scores differ by at most {result['max_abs_score_difference']:.2e}, "
          f"decisions agree on {100 * agree:.1f}% of pairs", flush=True)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_size", default="20m", choices=["tiny", "20m", "60m", "180m"])
    parser.add_argument("--vocab_size", type=int, default=8000)
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--batch_size", type=int, default=128, help="rows per forward (ours' --batch_size)")
    parser.add_argument("--blimp_dir", type=Path, default=DEFAULT_BLIMP)
    parser.add_argument("--threads", type=int, default=None)
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
    machine = torch.cuda.get_device_name() if accelerator.device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} torch threads"
    report = {"machine": f"{machine}, torch {torch.__version__}", "model_size": args.model_size,
              "vocab_size": args.vocab_size, "data": str(args.blimp_dir) if args.blimp_dir.is_dir() else "synthetic"}
    for kind, tokenizer_kind, model_type, objective in (("causal", "bpe", "llama", "causal"),
                                                        ("masked", "wordpiece", "bert", "mlm")):
        if args.only and args.only != kind:
            continue
        tokenizer = train_tokenizer(tokenizer_kind, documents, args.vocab_size)
        torch.manual_seed(0)
        model = build_model(model_type, objective, shape, tokenizer, max_positions=128).eval().to(accelerator.device)
        report[kind] = compare(kind, model, tokenizer, pairs, args.batch_size, accelerator)
    print(json.dumps(report, indent=2))
    if args.output:
        args.output.write_text(json.dumps(report, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
