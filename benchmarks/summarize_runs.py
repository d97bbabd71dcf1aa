"""One Markdown row per training run: median tokens/s, model TFLOP/s per process and MFU.

    python benchmarks/summarize_runs.py RUN_DIR [RUN_DIR ...] [--skip 2] [--nominal_peak_tflops 989]

Reads each run's metrics.jsonl (written by train_pretrain.py). The first --skip logging intervals
are left out because they hold compilation and allocator warm-up. MFU is against the matmul peak
the trainer measured at start-up; with --nominal_peak_tflops (e.g. 989 for an H100 SXM's dense
bf16) a second column gives MFU against the vendor's figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def run_summary(run_dir: Path, skip: int) -> dict:
    metrics_file = run_dir / "metrics.jsonl"
    if not metrics_file.is_file():
        raise SystemExit(f"error: {metrics_file} does not exist (did the run fail? see its log)")
    rows = [json.loads(line) for line in metrics_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    perf = [r for r in rows if "perf/tokens_per_s" in r][skip:]
    if not perf:
        raise SystemExit(f"error: {metrics_file} has no throughput rows after skipping {skip}")
    return {
        "run": run_dir.name,
        "tokens_per_s": statistics.median(r["perf/tokens_per_s"] for r in perf),
        "tflops": statistics.median(r["perf/tflops_per_process"] for r in perf),
        "mfu": statistics.median(r["perf/mfu"] for r in perf),
        "final_loss": perf[-1]["train/loss"],
    }


def markdown(summaries: list[dict], nominal_peak_tflops: float | None) -> str:
    header = "| run | tokens/s | model TFLOP/s | MFU (measured peak) |"
    rule = "|---|---:|---:|---:|"
    if nominal_peak_tflops:
        header += f" MFU ({nominal_peak_tflops:g} TFLOP/s) |"
        rule += "---:|"
    lines = [header + " last train loss |", rule + "---:|"]
    for s in summaries:
        row = f"| {s['run']} | {s['tokens_per_s']:,.0f} | {s['tflops']:.1f} | {s['mfu']:.1%} |"
        if nominal_peak_tflops:
            row += f" {s['tflops'] / nominal_peak_tflops:.1%} |"
        lines.append(row + f" {s['final_loss']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--skip", type=int, default=2, help="leading logging intervals to leave out")
    parser.add_argument("--nominal_peak_tflops", type=float, default=None)
    args = parser.parse_args(argv)
    print(markdown([run_summary(d, args.skip) for d in args.run_dirs], args.nominal_peak_tflops))


if __name__ == "__main__":
    main(sys.argv[1:])
