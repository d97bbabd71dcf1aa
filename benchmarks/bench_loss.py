"""The causal loss with and without the fused (chunked) vocabulary projection: time per training
step and peak memory, at a vocabulary as large as GPT-2's.

Each variant runs in a process of its own, so that its peak memory is its own: the resident set
(RSS) on a CPU, the most allocated memory on a GPU. One step is a forward and backward of
`CausalLMTraining` (common/training/objectives.py) on a batch of random tokens, as the training loop
runs it; the first steps are warm-up and not timed. The two variants' losses are printed side by
side (the same model and batch: they must agree).

    python benchmarks/bench_loss.py                                   # 20m LLaMA, vocab 50257, 16 x 256
    python benchmarks/bench_loss.py --vocab_size 8000 --model_size tiny
    python benchmarks/bench_loss.py --device cuda --batch_size 64 --precision bf16
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as `python benchmarks/bench_loss.py`: make `common` importable

import torch  # noqa: E402

from common.models.build import SIZE_PRESETS, model_config, resolve_shape  # noqa: E402
from common.training.objectives import CausalLMTraining  # noqa: E402
from common.training.perf import peak_memory_gb, synchronize  # noqa: E402

VARIANTS = {"unfused": False, "fused": True}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_size", choices=tuple(SIZE_PRESETS), default="20m")
    parser.add_argument("--vocab_size", type=int, default=50257)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--seq_length", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5, help="timed steps (after 2 of warm-up)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="bf16: autocast")
    parser.add_argument("--_variant", choices=tuple(VARIANTS), help=argparse.SUPPRESS)  # the child
    return parser.parse_args()


def measure(args) -> dict:
    """One variant, in this process: seconds per step, peak memory, and the loss per target token."""
    from transformers import AutoModelForCausalLM

    device = torch.device(args.device)
    torch.manual_seed(0)
    specials = {"bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0}
    config = model_config("llama", resolve_shape(args.model_size), args.vocab_size, args.seq_length, specials)
    model = AutoModelForCausalLM.from_config(config).to(device)
    training = CausalLMTraining(model, fused_loss=VARIANTS[args._variant])
    tokens = torch.randint(0, args.vocab_size, (args.batch_size, args.seq_length + 1), device=device)
    batch = {"input_ids": tokens[:, :-1], "labels": tokens[:, 1:]}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")

    def step() -> float:
        with autocast:
            loss = training(**batch)["loss"]
        loss.backward()
        model.zero_grad(set_to_none=False)  # the gradients stay allocated, as in training
        return loss.item()

    for _ in range(2):
        loss = step()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    synchronize(device)
    seconds = (time.perf_counter() - started) / args.steps
    return {
        "seconds_per_step": seconds,
        "tokens_per_s": args.batch_size * args.seq_length / seconds,
        "peak_memory_gb": peak_memory_gb(device),
        "loss_per_token": loss / (args.batch_size * args.seq_length),
    }


def main() -> None:
    args = parse_args()
    if args._variant:
        print(json.dumps(measure(args)))
        return
    results = {}
    for variant in VARIANTS:
        command = [sys.executable, __file__, *sys.argv[1:], "--_variant", variant]
        output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO).stdout
        results[variant] = json.loads(output.strip().splitlines()[-1])
    logits_gb = args.batch_size * args.seq_length * args.vocab_size * 4 / 1e9
    print(
        f"LLaMA {args.model_size}, vocabulary {args.vocab_size}, {args.batch_size} x {args.seq_length} tokens, "
        f"{args.device}, {args.precision} (the float32 logits alone: {logits_gb:.2f} GB)"
    )
    print(f"  {'variant':<10} {'ms/step':>9} {'tokens/s':>10} {'peak GB':>9} {'loss/token':>11}")
    for variant, result in results.items():
        print(
            f"  {variant:<10} {result['seconds_per_step'] * 1000:>9.0f} {result['tokens_per_s']:>10.0f} "
            f"{result['peak_memory_gb']:>9.2f} {result['loss_per_token']:>11.5f}"
        )
    fused, unfused = results["fused"], results["unfused"]
    print(
        f"  fused / unfused: {unfused['seconds_per_step'] / fused['seconds_per_step']:.2f}x the speed, "
        f"{fused['peak_memory_gb'] / unfused['peak_memory_gb']:.2f}x the peak memory"
    )


if __name__ == "__main__":
    main()
