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
    python benchmarks/bench_loss.py --profile --model_size tiny --vocab_size 8000   # where a step's time goes

`--profile` runs `torch.profiler` over one training step of the fused variant (forward, backward,
the fused AdamW step) and prints the operators that take the most time.
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

from common.models.build import SHAPE_FIELDS, SIZE_PRESETS, model_config, resolve_shape  # noqa: E402
from common.optimizer import adamw  # noqa: E402
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
    parser.add_argument("--shape", default=None, help="hidden,layers,heads,intermediate instead of --model_size")
    parser.add_argument("--profile", action="store_true", help="profile one step of the fused variant instead")
    parser.add_argument("--rows", type=int, default=15, help="--profile: operators to print")
    parser.add_argument("--_variant", choices=tuple(VARIANTS), help=argparse.SUPPRESS)  # the child
    return parser.parse_args()


def training_step(args, fused: bool):
    """A LLaMA of the asked shape and a function running one forward + backward (+ an AdamW step
    when `optimizer_step`) on a fixed batch of random tokens; it returns the summed loss."""
    from transformers import AutoModelForCausalLM

    device = torch.device(args.device)
    torch.manual_seed(0)
    specials = {"bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0}
    shape = dict(zip(SHAPE_FIELDS, map(int, args.shape.split(",")))) if args.shape else {}
    config = model_config("llama", resolve_shape(args.model_size, **shape), args.vocab_size, args.seq_length, specials)
    model = AutoModelForCausalLM.from_config(config).to(device)
    training = CausalLMTraining(model, fused_loss=fused)
    optimizer = adamw(model, 1e-3, 0.1, device)
    tokens = torch.randint(0, args.vocab_size, (args.batch_size, args.seq_length + 1), device=device)
    batch = {"input_ids": tokens[:, :-1], "labels": tokens[:, 1:]}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")

    def step(optimizer_step: bool = False) -> float:
        with autocast:
            loss = training(**batch)["loss"]
        loss.backward()
        if optimizer_step:
            optimizer.step()
        model.zero_grad(set_to_none=False)  # the gradients stay allocated, as in training
        return loss.item()

    return step


def profile(args) -> None:
    """The operators of one training step (fused loss, AdamW included), most time first."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    step = training_step(args, fused=True)
    for _ in range(2):
        step(optimizer_step=True)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
    with torch_profile(activities=activities) as profiler:
        step(optimizer_step=True)
        synchronize(torch.device(args.device))
    sort_by = "self_cuda_time_total" if args.device == "cuda" else "self_cpu_time_total"
    print(profiler.key_averages().table(sort_by=sort_by, row_limit=args.rows))


def measure(args) -> dict:
    """One variant, in this process: seconds per step, peak memory, and the loss per target token."""
    device = torch.device(args.device)
    step = training_step(args, fused=VARIANTS[args._variant])

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
    if args.profile:
        profile(args)
        return
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
