"""Training throughput of train_pretrain.py against the Hugging Face Trainer recipe, on the CPU.

Both sides train the same LLaMA (hidden 256, 4 layers, 4 heads, intermediate 1024, untied head),
on the same text, with the same BPE tokenizer, windows of 256 tokens, batches of 16, fp32, the
same AdamW settings and the same warmup + cosine schedule, for the same number of optimizer
steps, one after the other and with the same number of torch threads:

* ours: `python train_pretrain.py --dataset text ...`, run like a user would. Its tokens/s comes
  from the run's metrics.jsonl (time inside its training steps only, no evaluation).
* the Trainer: the usual recipe (documents -> `datasets.map` tokenize + EOS -> `group_texts`
  into 256-token blocks -> `Trainer.train()`), in a child process of this script, with the
  tokenizer that our run trained. Its tokens/s comes from a callback that notes the time at
  the end of every step, so it covers the training steps only (no tokenization). It follows
  ours' learning-rate curve and weight-decay groups exactly (a subclass: the stock warmup starts
  at lr 0), so the losses can be compared step by step; its optimizer stays the stock one
  (fused AdamW on this torch).

Tokens/s counts input tokens on both sides (16 x 256 per step), and both skip their first
logging interval (warm-up: allocator, thread pools, first-touch of the data). MFU puts both
against one matmul peak measured here (common.perf.measure_matmul_peak) with the same FLOPs per
token (common.models.training_flops_per_token). Quality: the training losses logged at the
same steps (so after the same tokens), and both final models' loss on the same held-out blocks.

    python benchmarks/bench_pretrain.py                       # 40 steps on the TinyStories sample
    python benchmarks/bench_pretrain.py --steps 20 --threads 2 --output /tmp/pretrain_cpu.json
    python benchmarks/bench_pretrain.py --skip_trainer        # ours only

Without ../shared/data/pretrain/tinystories_valid.txt (or --data_file) a synthetic corpus from
common.synthetic is written to a temporary file. Temporary run folders are removed unless --keep.

On a shared 2-core machine other processes steal whole cores. Each run's report says how many
cores other processes used meanwhile (from /proc/stat, less the run's own CPU time); with
--repeats N both sides run N times, alternating, and the best tokens/s of each side counts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as `python benchmarks/bench_pretrain.py`: make `common` importable

import torch  # noqa: E402

from common.models import matmul_parameters, training_flops_per_token  # noqa: E402
from common.perf import measure_matmul_peak, mfu  # noqa: E402
from common.schedule import learning_rate_at  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "pretrain" / "tinystories_valid.txt"
SYNTHETIC_WORDS = 300_000

# The workload of the issue. The shape goes to both sides; everything else must match too.
SHAPE = {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 1024}
SEQ_LENGTH = 256
BATCH_SIZE = 16
VOCAB_SIZE = 8000
SEED = 42
VALIDATION_PERCENT = 1.0  # ours holds out 1% of the documents; the Trainer gets the same 99%
OPTIMIZER = {"learning_rate": 1e-3, "weight_decay": 0.1, "adam_beta1": 0.9, "adam_beta2": 0.95,
             "adam_epsilon": 1e-8, "max_grad_norm": 1.0}
MIN_LR_RATIO = 0.1  # ours decays to 10% of the peak (cosine); the Trainer gets the same curve


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps for each side")
    parser.add_argument("--logging_steps", type=int, default=5,
                        help="log interval of both sides; the first interval is warm-up and not timed")
    parser.add_argument("--data_file", default=None, help=f"training text (default: {DEFAULT_DATA} if present, "
                                                          "else a synthetic corpus)")
    parser.add_argument("--threads", type=int, default=usable_cores(),
                        help="torch threads for both sides (default: every core this process may use)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="run both sides this many times, alternating; report each side's best")
    parser.add_argument("--skip_trainer", action="store_true", help="only run train_pretrain.py")
    parser.add_argument("--torch_compile", action="store_true", help="ours with --torch_compile")
    parser.add_argument("--trainer_torch_compile", action="store_true",
                        help="the Trainer with its own torch_compile=True (for a like-for-like compiled comparison)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary run folders")
    parser.add_argument("--output", default=None, help="also write the results as JSON here")
    parser.add_argument("--_run_trainer", default=None, help=argparse.SUPPRESS)  # the child: a spec file
    args = parser.parse_args()
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be positive")
    if args.steps < 2 * args.logging_steps:
        parser.error("--steps must cover at least two logging intervals (the first one is warm-up)")
    return args


def warmup_steps(steps: int) -> int:
    return max(1, round(0.1 * steps))


# --- running both sides ------------------------------------------------------------------------

def thread_env(threads: int) -> dict:
    """The environment of both children: the same thread count, no network, fp32 (no mixed
    precision from an accelerate environment)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ACCELERATE_")}
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), ACCELERATE_MIXED_PRECISION="no",
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="true",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return env


def busy_cpu_seconds() -> float | None:
    """CPU time spent by everything on the machine so far (Linux /proc/stat), None elsewhere."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields)
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_child(name: str, command: list[str], env: dict, log_path: Path) -> dict:
    """Run one side to completion (never two at once); its output goes to a log file.

    Also returns how many cores other processes kept busy meanwhile: the machine's busy time
    less the child's own, over the wall time. Much above zero means the timings are disturbed.
    """
    print(f"[bench] {name}: {' '.join(command[1:4])} ... (log: {log_path})", file=sys.stderr, flush=True)
    busy, own, started = busy_cpu_seconds(), children_cpu_seconds(), time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        code = subprocess.call(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - started
    if code != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        sys.exit(f"[bench] {name} failed with exit code {code}; end of its log:\n{tail}")
    others = None
    if busy is not None:
        others = max(0.0, (busy_cpu_seconds() - busy) - (children_cpu_seconds() - own)) / wall
        if others > 0.25:
            print(f"[bench] warning: other processes used {others:.2f} cores during the {name} run: "
                  f"its timing is disturbed", file=sys.stderr, flush=True)
    return {"wall_s": wall, "other_cores": others}


def run_ours(data_file: Path, workdir: Path, args, env: dict, round_: int) -> dict:
    run_dir = workdir / f"ours-{round_}"
    command = [
        sys.executable, "train_pretrain.py", "--dataset", "text", "--data_files", str(data_file),
        "--vocab_size", str(VOCAB_SIZE), "--model_type", "llama",
        *[item for name, value in SHAPE.items() for item in (f"--{name}", str(value))],
        "--seq_length", str(SEQ_LENGTH), "--per_device_train_batch_size", str(BATCH_SIZE),
        "--max_steps", str(args.steps), "--output_dir", str(run_dir), "--cache_dir", str(workdir / "cache"),
        "--logging_steps", str(args.logging_steps), "--eval_steps", str(args.steps),  # no mid-run evaluation
        "--max_eval_samples", "64", "--checkpointing_steps", "0", "--seed", str(SEED),
        "--validation_split_percentage", str(VALIDATION_PERCENT),
        "--lr_scheduler_type", "cosine", "--min_lr_ratio", str(MIN_LR_RATIO),
        "--warmup_steps", str(warmup_steps(args.steps)),
        *[item for name, value in OPTIMIZER.items() for item in (f"--{name}", str(value))],
        *(["--torch_compile"] if args.torch_compile else []),
    ]
    child = run_child("ours", command, env, workdir / f"ours-{round_}.log")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train = [r for r in records if r.get("train/loss") is not None]
    # Each record covers the steps since the previous one; weight by time, skip the warm-up one.
    tokens, seconds, previous = 0, 0.0, train[0]["tokens_seen"]
    for record in train[1:]:
        interval = record["tokens_seen"] - previous
        tokens, seconds, previous = tokens + interval, seconds + interval / record["perf/tokens_per_s"], \
            record["tokens_seen"]
    return {"tokens_per_s": tokens / seconds, "timed_steps": args.steps - train[0]["step"],
            "losses": {r["step"]: r["train/loss"] for r in train}, "tokens_seen": train[-1]["tokens_seen"],
            **child, "model_dir": str(run_dir / "final"),
            "tokenizer_dir": str(run_dir / "tokenizer")}


def run_trainer(data_file: Path, workdir: Path, args, env: dict, tokenizer_dir: str, round_: int) -> dict:
    run_dir = workdir / f"trainer-{round_}"
    spec = {"data_file": str(data_file), "tokenizer_dir": tokenizer_dir, "run_dir": str(run_dir),
            "steps": args.steps, "logging_steps": args.logging_steps, "threads": args.threads,
            "torch_compile": args.trainer_torch_compile, "result": str(run_dir.with_suffix(".json"))}
    spec_path = workdir / f"trainer-{round_}-spec.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    env = {**env, "HF_DATASETS_CACHE": str(workdir / "hf_datasets")}
    child = run_child("HF Trainer", [sys.executable, str(Path(__file__).resolve()), "--_run_trainer",
                                     str(spec_path)], env, workdir / f"trainer-{round_}.log")
    result = json.loads(Path(spec["result"]).read_text(encoding="utf-8"))
    result["losses"] = {int(step): loss for step, loss in result["losses"].items()}
    return {**result, **child, "model_dir": str(run_dir / "final")}


# --- the Trainer side (runs in a child process) ------------------------------------------------

def group_texts(examples: dict, block_size: int) -> dict:
    """The run_clm recipe: concatenate, drop the remainder, cut into blocks; labels = inputs."""
    ids = [token for row in examples["input_ids"] for token in row]
    usable = len(ids) // block_size * block_size
    blocks = [ids[start:start + block_size] for start in range(0, usable, block_size)]
    return {"input_ids": blocks, "labels": [list(block) for block in blocks]}


def token_blocks(documents: list[str], tokenizer, block_size: int):
    """Documents -> a datasets.Dataset of `block_size` blocks, each document followed by EOS."""
    from datasets import Dataset

    eos = tokenizer.eos_token_id
    raw = Dataset.from_dict({"text": documents})
    tokenized = raw.map(lambda batch: {"input_ids": [ids + [eos] for ids in tokenizer(
        batch["text"], add_special_tokens=False)["input_ids"]]}, batched=True, remove_columns=["text"])
    return tokenized.map(group_texts, batched=True, fn_kwargs={"block_size": block_size})


def corpus_documents(data_file: str) -> tuple[list[str], list[str]]:
    """The training and held-out documents exactly as ours splits the file (blank-line separated,
    1% held out), so both sides train on the same text."""
    from common.sources import load_corpus

    corpus = load_corpus("text", data_files=[data_file], validation_split_percentage=VALIDATION_PERCENT)
    return list(corpus.train_documents()), list(corpus.validation_documents())


def trainer_main(spec_path: str) -> None:
    from transformers import (AutoModelForCausalLM, AutoTokenizer, LlamaConfig, Trainer, TrainerCallback,
                              TrainingArguments, default_data_collator, set_seed)

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    torch.set_num_threads(spec["threads"])
    tokenizer = AutoTokenizer.from_pretrained(spec["tokenizer_dir"])
    train_documents, _ = corpus_documents(spec["data_file"])
    dataset = token_blocks(train_documents, tokenizer, SEQ_LENGTH)

    set_seed(SEED)  # the same seed and config as ours: the same initial weights
    config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=SEQ_LENGTH, **SHAPE,
                         num_key_value_heads=SHAPE["num_attention_heads"], bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = AutoModelForCausalLM.from_config(config)

    class MatchedTrainer(Trainer):
        """The stock Trainer with ours' learning-rate curve and decay groups. Neither costs time,
        but both move the loss: the stock warmup starts at lr 0 (ours at lr/warmup, so the stock
        one loses a step) and the stock groups also decay the embeddings."""

        def create_scheduler(self, num_training_steps, optimizer=None):
            if self.lr_scheduler is None:
                warmup = self.args.get_warmup_steps(num_training_steps)
                self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
                    optimizer or self.optimizer, lambda step: learning_rate_at(
                        step, 1.0, num_training_steps, warmup, "cosine", MIN_LR_RATIO))
                self._created_lr_scheduler = True
            return self.lr_scheduler

        def get_decay_parameter_names(self, model):
            embeddings = {id(p) for p in model.get_input_embeddings().parameters()}
            return [name for name, p in model.named_parameters() if p.ndim >= 2 and id(p) not in embeddings]

    class StepClock(TrainerCallback):
        """perf_counter at the end of every optimizer step (so only training steps are timed)."""

        def __init__(self):
            self.times: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter())

    run_dir = Path(spec["run_dir"])
    training_args = TrainingArguments(
        output_dir=str(run_dir), max_steps=spec["steps"], per_device_train_batch_size=BATCH_SIZE,
        gradient_accumulation_steps=1, **OPTIMIZER, warmup_steps=warmup_steps(spec["steps"]),
        logging_steps=spec["logging_steps"], eval_strategy="no", save_strategy="no", report_to="none",
        use_cpu=True, bf16=False, fp16=False, dataloader_num_workers=0, dataloader_pin_memory=False,
        seed=SEED, data_seed=SEED, torch_compile=spec["torch_compile"])
    clock = StepClock()
    trainer = MatchedTrainer(model=model, args=training_args, train_dataset=dataset,
                             data_collator=default_data_collator, callbacks=[clock])
    trainer.train()
    trainer.save_model(str(run_dir / "final"))

    skip = spec["logging_steps"]  # the same warm-up interval that ours leaves out
    timed_steps = len(clock.times) - skip
    tokens_per_s = timed_steps * BATCH_SIZE * SEQ_LENGTH / (clock.times[-1] - clock.times[skip - 1])
    losses = {entry["step"]: entry["loss"] for entry in trainer.state.log_history if "loss" in entry}
    result = {"tokens_per_s": tokens_per_s, "timed_steps": timed_steps, "losses": losses,
              "tokens_seen": len(clock.times) * BATCH_SIZE * SEQ_LENGTH, "blocks": len(dataset),
              "optim": str(training_args.optim), "attn_implementation": model.config._attn_implementation}
    Path(spec["result"]).write_text(json.dumps(result), encoding="utf-8")


# --- measuring and comparing -------------------------------------------------------------------

def flops_per_token(model_dir: str) -> float:
    from transformers import AutoConfig, AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    return training_flops_per_token(model.config, matmul_parameters(model), SEQ_LENGTH)


def same_architecture(ours_dir: str, theirs_dir: str) -> list[str]:
    """Config fields that differ between the two saved models (should be none)."""
    keys = ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "intermediate_size", "max_position_embeddings", "tie_word_embeddings",
            "rms_norm_eps", "rope_parameters", "hidden_act", "attention_bias", "mlp_bias")
    ours, theirs = (json.loads((Path(d) / "config.json").read_text()) for d in (ours_dir, theirs_dir))
    return [f"{key}: {ours.get(key)} vs {theirs.get(key)}" for key in keys if ours.get(key) != theirs.get(key)]


@torch.no_grad()
def held_out_loss(model_dir: str, blocks: torch.Tensor) -> float:
    """Mean next-token loss over the same held-out blocks, the same definition for both models."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    total, count = 0.0, 0
    for batch in blocks.split(BATCH_SIZE):
        logits = model(input_ids=batch[:, :-1]).logits
        total += torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten(),
                                                   reduction="sum").item()
        count += batch[:, 1:].numel()
    return total / count


def held_out_blocks(data_file: str, tokenizer_dir: str) -> torch.Tensor | None:
    """The held-out documents as windows of SEQ_LENGTH + 1 tokens (SEQ_LENGTH targets each)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    _, documents = corpus_documents(data_file)
    ids = [token for ids in tokenizer(documents, add_special_tokens=False)["input_ids"]
           for token in [tokenizer.eos_token_id, *ids]]
    count = (len(ids) - 1) // SEQ_LENGTH
    if count == 0:
        return None
    return torch.tensor([ids[i * SEQ_LENGTH:i * SEQ_LENGTH + SEQ_LENGTH + 1] for i in range(count)])


def tail_mean(losses: dict[int, float], count: int = 5) -> float:
    values = [losses[step] for step in sorted(losses)[-count:]]
    return sum(values) / len(values)


def synthetic_text_file(path: Path) -> Path:
    from common.synthetic import synthetic_documents

    path.write_text("\n\n".join(synthetic_documents(num_words=SYNTHETIC_WORDS)) + "\n", encoding="utf-8")
    return path


# --- report ------------------------------------------------------------------------------------

def summarise(runs: list[dict], per_token: float, peak: float) -> dict:
    """One side over its rounds: the best tokens/s (least disturbed), losses of the first round
    (the runs are seeded, so later rounds train the same way)."""
    best = max(runs, key=lambda run: run["tokens_per_s"])
    first = runs[0]
    return {**first, "tokens_per_s": best["tokens_per_s"], "mfu": mfu(best["tokens_per_s"], per_token, peak, 1),
            "rounds": [{key: run[key] for key in ("tokens_per_s", "other_cores", "wall_s")} for run in runs],
            "final_loss": first["losses"][max(first["losses"])], "tail_loss": tail_mean(first["losses"])}


def report(results: dict) -> None:
    ours, theirs = results["ours"], results.get("trainer")
    both = lambda fmt, key: (fmt.format(ours[key]), fmt.format(theirs[key]) if theirs else "-")  # noqa: E731
    compiled = {True: "torch.compile", False: "eager"}
    print(f"\nours: {compiled[results['torch_compile']['ours']]}, "
          f"HF Trainer: {compiled[results['torch_compile']['trainer']]}")
    print(f"pretraining throughput, CPU, {results['threads']} threads, fp32, {results['steps']} steps "
          f"({results['tokens_per_step']} tokens/step), data: {results['data']}")
    print(f"matmul peak {results['peak_gflops']:.1f} GFLOP/s, {results['flops_per_token'] / 1e6:.1f} MFLOP/token\n")
    best_of = f" (best of {results['repeats']})" if results["repeats"] > 1 else ""
    rows = [("", "ours", "HF Trainer"),
            (f"tokens/s{best_of}", *both("{:.0f}", "tokens_per_s")),
            ("MFU", *both("{:.1%}", "mfu")),
            ("final logged train loss", *both("{:.4f}", "final_loss")),
            ("mean of last 5 logged losses", *both("{:.4f}", "tail_loss"))]
    if results.get("held_out"):
        held = results["held_out"]
        rows.append((f"held-out loss ({held['windows']} windows)", f"{held['ours']:.4f}", f"{held['trainer']:.4f}"))
    for label, a, b in rows:
        print(f"  {label:<32} {a:>12} {b:>12}")
    print("\n  round  side        tokens/s  cores used by others  wall s (incl. setup)")
    for side, summary in (("ours", ours), ("Trainer", theirs)):
        for number, run in enumerate(summary["rounds"] if summary else [], 1):
            others = "?" if run["other_cores"] is None else f"{run['other_cores']:.2f}"
            print(f"  {number:>5}  {side:<9} {run['tokens_per_s']:>10.0f}  {others:>20}  {run['wall_s']:>20.0f}")
    if theirs:
        print(f"\n  ratio ours / Trainer tokens/s: {results['ratio']:.3f}  (target >= 1.3)")
        print(f"  loss gap (last-5 mean, ours - Trainer): {results['loss_gap']:+.4f} nats")
        print("\n  step  ours loss  Trainer loss")
        for step in sorted(ours["losses"]):
            print(f"  {step:>4} {ours['losses'][step]:>10.4f} {theirs['losses'].get(step, float('nan')):>13.4f}")
        for difference in results["config_differences"]:
            print(f"  WARNING: model configs differ: {difference}")


def main() -> None:
    args = parse_args()
    if args._run_trainer:
        trainer_main(args._run_trainer)
        return
    torch.set_num_threads(args.threads)
    workdir = Path(tempfile.mkdtemp(prefix="bench_pretrain-"))
    try:
        if args.data_file:
            data_file = Path(args.data_file).resolve()
        elif DEFAULT_DATA.is_file():
            data_file = DEFAULT_DATA
        else:
            data_file = synthetic_text_file(workdir / "synthetic.txt")
        env = thread_env(args.threads)
        ours_runs, trainer_runs = [], []
        for round_ in range(1, args.repeats + 1):  # alternating, so slow spells hit both sides
            ours_runs.append(run_ours(data_file, workdir, args, env, round_))
            if not args.skip_trainer:
                trainer_runs.append(run_trainer(data_file, workdir, args, env, ours_runs[0]["tokenizer_dir"], round_))

        # Measured after the runs, with nothing of ours running, for 2 s rather than 0.5 s.
        peak = measure_matmul_peak(torch.device("cpu"), torch.float32, seconds=2.0)
        per_token = flops_per_token(ours_runs[0]["model_dir"])
        ours = summarise(ours_runs, per_token, peak)
        results = {"steps": args.steps, "threads": args.threads, "repeats": args.repeats, "data": str(data_file),
                   "tokens_per_step": BATCH_SIZE * SEQ_LENGTH, "peak_gflops": peak / 1e9,
                   "flops_per_token": per_token, "ours": ours,
                   "torch_compile": {"ours": args.torch_compile, "trainer": args.trainer_torch_compile}}
        if trainer_runs:
            theirs = results["trainer"] = summarise(trainer_runs, per_token, peak)
            results["ratio"] = ours["tokens_per_s"] / theirs["tokens_per_s"]
            results["loss_gap"] = ours["tail_loss"] - theirs["tail_loss"]
            results["config_differences"] = same_architecture(ours["model_dir"], theirs["model_dir"])
            blocks = held_out_blocks(str(data_file), ours["tokenizer_dir"])
            if blocks is not None:
                results["held_out"] = {"windows": len(blocks), "ours": held_out_loss(ours["model_dir"], blocks),
                                       "trainer": held_out_loss(theirs["model_dir"], blocks)}
        report(results)
        if args.output:
            Path(args.output).parent.mkdir(parents=True, exist_ok=True)
            Path(args.output).write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
            print(f"\nresults written to {args.output}")
    finally:
        if args.keep:
            print(f"[bench] run folders kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
