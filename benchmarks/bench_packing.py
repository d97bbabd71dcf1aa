"""Packing throughput: words/s, tokens/s and peak memory of turning a large text corpus into the
packed token cache, as train_pretrain.py does before its first step.

The text: --words words (default 100M) of documents, drawn in a seeded order from the synthetic
corpus (every document generated anew, so no paragraph repeats) and, with --data_file, the
paragraphs of real sample texts mixed in (each reused as often as needed: a third of the words
by default, --real_share); written once to --text and reused when it is already there. The
tokenizer: a byte-level BPE of --vocab_size trained on the first --tokenizer_words words (not
timed). Then a child process packs the file exactly as a run does (`load_corpus("text")` and
`packed_corpus`, into a fresh cache folder) and reports the seconds it took; its peak resident
memory comes from the operating system (`wait4`), so it covers everything the packing held.

    python benchmarks/bench_packing.py --words 10M --data_file sample.txt --text /tmp/pack10M.txt
    python benchmarks/bench_packing.py                 # 100M words: about 600 MB of text
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as `python benchmarks/bench_packing.py`: make `common` importable

from common.config import parse_count  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--words", default="100M", help="words of text to pack (e.g. 10M, 100M)")
    parser.add_argument("--data_file", nargs="*", default=[], help="real texts whose paragraphs are mixed in")
    parser.add_argument("--real_share", type=float, default=1 / 3, help="share of the words from --data_file")
    parser.add_argument("--text", default=None, help="where the generated text is kept (default: a temporary file)")
    parser.add_argument("--vocab_size", type=int, default=16000)
    parser.add_argument("--tokenizer_words", default="2M", help="words the tokenizer is trained on (not timed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="also write the results (one per --workers) as JSON here")
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[1],
        help="tokenizing processes (--packing_workers); several: one run each",
    )
    parser.add_argument("--_pack", nargs=4, metavar=("TEXT", "TOKENIZER", "CACHE", "WORKERS"), help=argparse.SUPPRESS)
    return parser.parse_args()


def real_paragraphs(files: list[str]) -> list[str]:
    """The blank-line separated paragraphs of the sample texts (each a document, as ours reads them)."""
    paragraphs = []
    for name in files:
        text = Path(name).read_text(encoding="utf-8", errors="replace")
        paragraphs += [part.strip() for part in text.split("\n\n") if part.strip()]
    return paragraphs


def write_text(path: Path, words: int, paragraphs: list[str], real_share: float, seed: int) -> int:
    """Documents separated by blank lines until `words` words; returns the documents written."""
    from common.data.synthetic import synthetic_documents

    rng = random.Random(seed)
    synthetic = synthetic_documents(num_words=words, seed=seed)
    written = documents = 0
    with open(path, "w", encoding="utf-8") as out:
        while written < words:
            use_real = paragraphs and rng.random() < real_share
            document = rng.choice(paragraphs) if use_real else next(synthetic, None)
            if document is None:  # the synthetic budget is spent: top up from a fresh seed
                synthetic = synthetic_documents(num_words=words - written, seed=seed + documents + 1)
                continue
            out.write(document + "\n\n")
            written += len(document.split())
            documents += 1
    return documents


def pack(text: str, tokenizer_dir: str, cache_dir: str, workers: str) -> None:
    """The child: pack `text` as a run would, and print the manifest and the seconds it took."""
    from transformers import AutoTokenizer

    from common.data.packing import packed_corpus
    from common.data.sources import load_corpus
    from common.data.tokenizer import tokenizer_hash

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    started = time.perf_counter()
    corpus = load_corpus("text", data_files=[text], validation_split_percentage=1.0)
    _, manifest = packed_corpus(corpus, tokenizer, tokenizer_hash(tokenizer), Path(cache_dir), int(workers))
    print(json.dumps({"seconds": time.perf_counter() - started, "manifest": manifest}))


def train_tokenizer_on(text: Path, words: int, vocab_size: int, folder: Path) -> None:
    from common.data.tokenizer import train_tokenizer

    documents, seen = [], 0
    with open(text, encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                documents.append(line.strip())
                seen += len(line.split())
                if seen >= words:
                    break
    train_tokenizer("bpe", documents, vocab_size).save_pretrained(folder)


def run_child(command: list[str]) -> tuple[dict, float, float]:
    """(the child's JSON, its wall seconds, the peak of the resident memory of it and its worker
    processes together, in GB, sampled every 50 ms)."""
    import psutil

    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    peak = 0
    watched = psutil.Process(child.pid)
    while child.poll() is None:
        try:
            tree = [watched, *watched.children(recursive=True)]
            peak = max(peak, sum(process.memory_info().rss for process in tree))
        except psutil.Error:  # a worker ended between listing and reading it
            pass
        time.sleep(0.05)
    output = child.stdout.read()
    wall = time.perf_counter() - started
    if child.returncode != 0:
        sys.exit(f"packing failed (exit {child.returncode})")
    return json.loads(output.strip().splitlines()[-1]), wall, peak / 1e9


def measure(text: Path, workdir: Path, workers: int) -> dict:
    """Pack `text` into a fresh cache in a child process with `workers`; print and return the figures."""
    cache = workdir / f"cache-{workers}"
    result, wall, peak_gb = run_child(
        [sys.executable, __file__, "--_pack", str(text), str(workdir / "tok"), str(cache), str(workers)]
    )
    shutil.rmtree(cache, ignore_errors=True)
    splits = result["manifest"]["splits"].values()
    totals = {key: sum(split[key] for split in splits) for key in ("tokens", "words", "documents")}
    seconds = result["seconds"]
    report = {
        "text_bytes": text.stat().st_size,
        **totals,
        "workers": workers,
        "seconds": seconds,
        "words_per_s": totals["words"] / seconds,
        "tokens_per_s": totals["tokens"] / seconds,
        "peak_rss_gb": peak_gb,
        "child_wall_s": wall,
        "cores": len(os.sched_getaffinity(0)),
    }
    print(
        f"packed {totals['words'] / 1e6:.1f}M words ({report['text_bytes'] / 1e6:.0f} MB, "
        f"{totals['documents']} documents) into {totals['tokens'] / 1e6:.1f}M tokens in {seconds:.1f} s "
        f"with {workers} worker(s) on {report['cores']} cores: {report['words_per_s'] / 1e6:.2f}M words/s, "
        f"{report['tokens_per_s'] / 1e6:.2f}M tokens/s, peak RSS {peak_gb:.2f} GB"
    )
    return report


def main() -> None:
    args = parse_args()
    if args._pack:
        pack(*args._pack)
        return
    words = parse_count(args.words, "--words")
    workdir = Path(tempfile.mkdtemp(prefix="bench_packing-"))
    try:
        text = Path(args.text) if args.text else workdir / "text.txt"
        if not text.exists():
            started = time.perf_counter()
            documents = write_text(text, words, real_paragraphs(args.data_file), args.real_share, args.seed)
            print(
                f"[bench] wrote {documents} documents to {text} in {time.perf_counter() - started:.0f} s",
                file=sys.stderr,
            )
        train_tokenizer_on(
            text, parse_count(args.tokenizer_words, "--tokenizer_words"), args.vocab_size, workdir / "tok"
        )
        reports = [measure(text, workdir, workers) for workers in args.workers]
        if args.output:
            Path(args.output).write_text(json.dumps(reports, indent=2), encoding="utf-8")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
