"""Training throughput of train_pretrain.py against the Hugging Face Trainer recipe, on a CPU or a GPU.

Every side trains the same model (by default hidden 256, 4 layers, 4 heads, intermediate 1024;
`--model_size 60m` etc. for a size preset) from the same initial weights, on the same text with the
same tokenizer, windows of 256 tokens, batches of 16 (`--seq_length`, `--batch_size`), in the same
precision (fp32 on a CPU, bf16 autocast on a GPU; `--precision`), with the same AdamW settings and
the same warmup + cosine schedule, for the same number of optimizer steps, one after the other and
with the same number of torch threads. `--objective` picks the model and the Trainer's recipe:

* causal (default): a LLaMA (untied head) with our byte-level BPE; the Trainer gets blocks with
  labels = inputs and `default_data_collator` (the run_clm recipe).
* mlm: a BERT (`BertForMaskedLM`) with our WordPiece, 15% of the tokens masked 80/10/10; the
  Trainer gets blocks and `DataCollatorForLanguageModeling(mlm_probability=0.15)` (the run_mlm
  recipe), which draws its own masks. Ours runs the vocabulary head on the masked positions only.
  ELECTRA and ELECTRA-MoE (8 experts, top-2) run too, ours only: their discriminator has the
  BERT's shape (the generator a quarter of its width), so their tokens/s sit next to the MLM's.

The sides (`--sides`, by default all four, in one invocation):

* ours: `python train_pretrain.py --dataset text ... --save_init true` with our defaults
  (`--torch_compile auto`: compiled on a GPU, and on a CPU when the run is long enough; the fused
  vocabulary loss), run like a user would. Its tokens/s comes from the run's metrics.jsonl (time
  inside its training steps only, no evaluation).
* ours-eager: the same with `--torch_compile false`.
* trainer: the Trainer's default recipe (eager); trainer-compiled: with `torch_compile=True`.
* the Trainer: the usual recipe (documents -> `datasets.map` tokenize + a boundary token (EOS;
  [CLS] for WordPiece, as ours) -> `group_texts` into 256-token blocks -> `Trainer.train()`), in a
  child process of this script, with the tokenizer that our first run trained and the model that it
  saved before its first step (milestones/init: the same config and initial weights). Its tokens/s
  comes from a callback that notes the time at the end of every step, so it covers the training
  steps only (no tokenization). It follows ours' learning-rate curve and weight-decay groups
  exactly (a subclass: the stock warmup starts at lr 0), so the losses can be compared step by
  step; its optimizer stays the stock one (fused AdamW on this torch).

Tokens/s counts input tokens on every side (batch x sequence per step), and all skip their first
logging interval (warm-up: allocator, thread pools, compilation, first-touch of the data). MFU puts
all against one peak (common.training.perf.peak_flops_for: a known GPU's data-sheet bf16 peak, else a
matmul peak measured here) with ours' FLOPs per token (from its metrics:
common.training.perf.training_flops_per_token), the Trainer with the same figure as ours. Peak memory is
each side's own: allocated GPU memory, or the process's resident memory on a CPU. That
figure counts the vocabulary head at every position, so for MLM it is the Trainer's work, and
ours' MFU is nominal (in step with its tokens/s). Quality: the training losses logged at the same
steps (so after the same tokens), and both final models' loss on the same held-out windows
(next-token loss, or for MLM the loss on masked tokens under one fixed set of masks).

    python benchmarks/bench_pretrain.py                       # causal, 40 steps, the four sides
    python benchmarks/bench_pretrain.py --objective mlm       # BERT vs the Trainer, and ELECTRA(-MoE)
    python benchmarks/bench_pretrain.py --steps 20 --threads 2 --output /tmp/pretrain_cpu.json
    python benchmarks/bench_pretrain.py --sides ours trainer  # two of the sides
    python benchmarks/bench_pretrain.py --device cuda --model_size 60m --batch_size 64 --steps 300

The text is --data_file (the figures in docs/benchmarks.md use TinyStories' validation file);
without it a synthetic corpus from common.data.synthetic is written to a temporary file.
Temporary run folders are removed unless --keep.

On a shared 2-core machine other processes steal whole cores. Each run's report says how many
cores other processes used meanwhile (from /proc/stat, less the run's own CPU time); with
--repeats N every side runs N times, alternating, and the best tokens/s of each side counts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as `python benchmarks/bench_pretrain.py`: make `common` importable

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from common.data.packing import boundary_token_id  # noqa: E402
from common.models.build import SIZE_PRESETS, auto_class  # noqa: E402
from common.models.families import IGNORE  # noqa: E402
from common.optimizer import learning_rate_at  # noqa: E402
from common.training.objectives import CausalLM, MaskedLM  # noqa: E402
from common.training.perf import mfu, peak_memory_gb, synchronize  # noqa: E402

SYNTHETIC_WORDS = 300_000

# The default workload. The shape goes to every side; everything else must match too.
SHAPE = {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 1024}
SEED = 42
VALIDATION_PERCENT = 1.0  # ours holds out 1% of the documents; the Trainer gets the same 99%
OPTIMIZER = {
    "learning_rate": 1e-3,
    "weight_decay": 0.1,
    "adam_beta1": 0.9,
    "adam_beta2": 0.95,
    "adam_epsilon": 1e-8,
    "max_grad_norm": 1.0,
}
MIN_LR_RATIO = 0.1  # ours decays to 10% of the peak (cosine); the Trainer gets the same curve
MLM_PROBABILITY = 0.15

MASKING = ("--mlm_probability", str(MLM_PROBABILITY))
# Ours' model for each objective (the one the Trainer runs too).
OURS_MODEL = {"causal": ("--model_type", "llama"), "mlm": ("--model_type", "bert", *MASKING)}
# The MLM benchmark's ours-only rows. Their discriminator gets SHAPE like the BERT; the generator
# is a quarter of its width and the discriminator loss weighs 50 (ELECTRA-Small's settings),
# spelled out so that a changed default does not silently change the workload.
ELECTRA_FLAGS = (*MASKING, "--generator_size_divisor", "4", "--disc_weight", "50")
ELECTRA_VARIANTS = {
    "ELECTRA": ("--model_type", "electra", *ELECTRA_FLAGS),
    "ELECTRA-MoE": ("--model_type", "electra_moe", "--num_experts", "8", "--num_experts_per_tok", "2", *ELECTRA_FLAGS),
}
VARIANT_LABELS = {"ELECTRA": "ELECTRA", "ELECTRA-MoE": "ELECTRA-MoE (8 experts, top-2)"}
# The sides of the comparison: (runner, its setting): ours' extra flags, or the Trainer's torch_compile.
SIDES = {
    "ours": ("ours", ()),
    "ours-eager": ("ours", ("--torch_compile", "false")),
    "ours-compiled": ("ours", ("--torch_compile", "true")),
    "trainer": ("trainer", False),
    "trainer-compiled": ("trainer", True),
}
SIDE_LABELS = {
    "ours": "ours (defaults)",
    "ours-eager": "ours, eager",
    "ours-compiled": "ours, compiled",
    "trainer": "HF Trainer",
    "trainer-compiled": "HF Trainer, torch_compile",
}


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--objective",
        choices=tuple(OURS_MODEL),
        default="causal",
        help="causal: LLaMA vs the run_clm recipe; mlm: BERT vs the run_mlm recipe, "
        "plus ours' ELECTRA and ELECTRA-MoE at the same discriminator shape",
    )
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps for each side")
    parser.add_argument(
        "--logging_steps",
        type=int,
        default=5,
        help="log interval of every side; the first interval is warm-up and not timed",
    )
    parser.add_argument("--data_file", default=None, help="training text (default: a synthetic corpus)")
    parser.add_argument(
        "--threads",
        type=int,
        default=usable_cores(),
        help="torch threads for every side (default: every core this process may use)",
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="run every side this many times, alternating; report each side's best"
    )
    parser.add_argument(
        "--sides",
        nargs="+",
        choices=tuple(SIDES),
        default=["ours", "ours-eager", "trainer", "trainer-compiled"],
        help="which sides to run (default: all but ours-compiled, which ours' default is on a GPU)",
    )
    parser.add_argument("--skip_electra", action="store_true", help="--objective mlm without the ELECTRA rows")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where every side trains")
    parser.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default=None,
        help="every side's precision: fp32, or bf16 autocast (default: fp32 on a CPU, bf16 on a GPU)",
    )
    parser.add_argument(
        "--model_size", default=None, help="a size preset (20m, 60m, 180m) instead of the default shape"
    )
    parser.add_argument("--vocab_size", type=int, default=8000, help="tokenizer vocabulary (8000; 50257 as GPT-2)")
    parser.add_argument("--batch_size", type=int, default=16, help="windows per step")
    parser.add_argument("--seq_length", type=int, default=256, help="tokens per window")
    parser.add_argument("--keep", action="store_true", help="keep the temporary run folders")
    parser.add_argument("--output", default=None, help="also write the results as JSON here")
    parser.add_argument("--_run_trainer", default=None, help=argparse.SUPPRESS)  # the child: a spec file
    args = parser.parse_args()
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be positive")
    if args.steps < 2 * args.logging_steps:
        parser.error("--steps must cover at least two logging intervals (the first one is warm-up)")
    if args.model_size is not None and args.model_size not in SIZE_PRESETS:
        parser.error(f"--model_size {args.model_size}: not one of {', '.join(SIZE_PRESETS)}")
    if args.device == "cuda" and not args._run_trainer and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")
    args.precision = args.precision or ("bf16" if args.device == "cuda" else "fp32")
    return args


def shape_flags(args) -> list[str]:
    """The model shape every side trains: a size preset, or the default shape."""
    return ["--model_size", args.model_size] if args.model_size else flag_pairs(SHAPE)


def warmup_steps(steps: int) -> int:
    return max(1, round(0.1 * steps))


# --- running the sides -------------------------------------------------------------------------


def thread_env(threads: int, precision: str, device: str) -> dict:
    """The environment of every child: the same thread count, no network, the benchmark's precision
    (not one from an accelerate environment)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ACCELERATE_")}
    env.update(
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        ACCELERATE_MIXED_PRECISION="bf16" if precision == "bf16" else "no",
        **({"CUDA_VISIBLE_DEVICES": ""} if device == "cpu" else {}),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="true",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
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
            print(
                f"[bench] warning: other processes used {others:.2f} cores during the {name} run: "
                f"its timing is disturbed",
                file=sys.stderr,
                flush=True,
            )
    return {"wall_s": wall, "other_cores": others}


def flag_pairs(values: dict) -> list[str]:
    return [item for name, value in values.items() for item in (f"--{name}", str(value))]


def run_ours(name: str, model_flags: tuple, data_file: Path, workdir: Path, args, env: dict, round_: int) -> dict:
    """One train_pretrain.py run of `model_flags` (model type, objective and side settings) on the
    benchmark's shape, data and optimizer; its init is saved for the Trainer to start from."""
    run_dir = workdir / f"{name.lower()}-{round_}"
    command = [
        sys.executable,
        "train_pretrain.py",
        "--dataset",
        "text",
        "--data_files",
        str(data_file),
        *(["--tokenizer_name_or_path", str(args.padded_tokenizer)] if args.padded_tokenizer else []),
        "--vocab_size",
        str(args.vocab_size),
        *model_flags,
        *shape_flags(args),
        "--seq_length",
        str(args.seq_length),
        "--per_device_train_batch_size",
        str(args.batch_size),
        "--max_steps",
        str(args.steps),
        "--output_dir",
        str(run_dir),
        "--cache_dir",
        str(workdir / "cache"),
        "--logging_steps",
        str(args.logging_steps),
        "--eval_steps",
        str(args.steps),  # no mid-run evaluation
        "--max_eval_samples",
        "64",
        "--checkpointing_steps",
        "0",
        "--seed",
        str(SEED),
        "--save_init",
        "true",
        "--validation_split_percentage",
        str(VALIDATION_PERCENT),
        "--lr_scheduler_type",
        "cosine",
        "--min_lr_ratio",
        str(MIN_LR_RATIO),
        "--warmup_steps",
        str(warmup_steps(args.steps)),
        *flag_pairs(OPTIMIZER),
    ]
    child = run_child(name, command, env, workdir / f"{run_dir.name}.log")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train = [r for r in records if r.get("train/loss") is not None]
    last = train[-1]
    return {
        "tokens_per_s": timed_tokens_per_s(train),
        "timed_steps": args.steps - train[0]["step"],
        "losses": {r["step"]: r["train/loss"] for r in train},
        "tokens_seen": last["tokens_seen"],
        "flops_per_token": last["perf/tflops_per_process"] * 1e12 / last["perf/tokens_per_s"],
        "peak_memory_gb": max(r["perf/peak_memory_gb"] for r in train),
        "compiled": "torch.compile on" in (workdir / f"{run_dir.name}.log").read_text(encoding="utf-8"),
        **child,
        "model_dir": str(run_dir / "final"),
        "init_dir": str(run_dir / "milestones" / "init"),
        "tokenizer_dir": str(run_dir / "tokenizer"),
    }


def timed_tokens_per_s(train_records: list[dict]) -> float:
    """Tokens over seconds of every logged interval but the first (warm-up). Each record covers
    the steps since the previous one, so intervals weigh by their time."""
    tokens, seconds, previous = 0, 0.0, train_records[0]["tokens_seen"]
    for record in train_records[1:]:
        interval = record["tokens_seen"] - previous
        tokens, seconds, previous = (
            tokens + interval,
            seconds + interval / record["perf/tokens_per_s"],
            record["tokens_seen"],
        )
    return tokens / seconds


def run_trainer(
    name: str, compiled: bool, data_file: Path, workdir: Path, args, env: dict, ours: dict, round_: int
) -> dict:
    """The Trainer recipe in a child process, starting from `ours`' tokenizer and initial model."""
    run_dir = workdir / f"{name}-{round_}"
    spec = {
        "objective": args.objective,
        "data_file": str(data_file),
        "tokenizer_dir": ours["tokenizer_dir"],
        "init_dir": ours["init_dir"],
        "run_dir": str(run_dir),
        "steps": args.steps,
        "logging_steps": args.logging_steps,
        "threads": args.threads,
        "torch_compile": compiled,
        "device": args.device,
        "bf16": args.precision == "bf16",
        "batch_size": args.batch_size,
        "seq_length": args.seq_length,
        "result": str(run_dir.with_suffix(".json")),
    }
    spec_path = workdir / f"{name}-{round_}-spec.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    env = {**env, "HF_DATASETS_CACHE": str(workdir / "hf_datasets")}
    child = run_child(
        name,
        [sys.executable, str(Path(__file__).resolve()), "--_run_trainer", str(spec_path)],
        env,
        workdir / f"{name}-{round_}.log",
    )
    result = json.loads(Path(spec["result"]).read_text(encoding="utf-8"))
    result["losses"] = {int(step): loss for step, loss in result["losses"].items()}
    return {
        **result,
        **child,
        "compiled": compiled,
        "model_dir": str(run_dir / "final"),
        "tokenizer_dir": ours["tokenizer_dir"],
        "flops_per_token": ours["flops_per_token"],  # the same model as the run it started from
    }


def run_rounds(data_file: Path, workdir: Path, args, env: dict) -> dict[str, list[dict]]:
    """Every side --repeats times, alternating, so that a slow spell of the machine hits all of
    them. Keys: the chosen sides in SIDES' order, then the ELECTRA variants (MLM only). The first
    of ours' runs trains the tokenizer and saves the initial model that the Trainer starts from."""
    # The ELECTRA rows are compared with ours' MLM, so they run with it
    with_variants = args.objective == "mlm" and not args.skip_electra and "ours" in args.sides
    variants = ELECTRA_VARIANTS if with_variants else {}
    sides = [name for name in SIDES if name in args.sides]
    runs = {name: [] for name in (*sides, *variants)}
    first_ours = None
    for round_ in range(1, args.repeats + 1):
        for name in sides:
            runner, setting = SIDES[name]
            if runner == "ours":
                run = run_ours(name, (*OURS_MODEL[args.objective], *setting), data_file, workdir, args, env, round_)
                first_ours = first_ours or run
            else:
                first_ours = first_ours or run_ours(
                    "init", OURS_MODEL[args.objective], data_file, workdir, args, env, round_
                )  # only the Trainer was asked for: it still starts from our initial model
                run = run_trainer(name, setting, data_file, workdir, args, env, first_ours, round_)
            runs[name].append(run)
        for name, flags in variants.items():
            runs[name].append(run_ours(name, flags, data_file, workdir, args, env, round_))
    return runs


# --- the Trainer side (runs in a child process) ------------------------------------------------


def group_texts(examples: dict, block_size: int, with_labels: bool) -> dict:
    """The run_clm / run_mlm recipe: concatenate, drop the remainder, cut into blocks; for causal
    models labels = inputs (the MLM collator makes its own)."""
    ids = [token for row in examples["input_ids"] for token in row]
    usable = len(ids) // block_size * block_size
    blocks = [ids[start : start + block_size] for start in range(0, usable, block_size)]
    return {"input_ids": blocks, **({"labels": [list(block) for block in blocks]} if with_labels else {})}


def token_blocks(documents: list[str], tokenizer, block_size: int, with_labels: bool):
    """Documents -> a datasets.Dataset of `block_size` blocks, each document followed by the token
    that separates documents in ours' packed data (EOS, or [CLS] for WordPiece)."""
    from datasets import Dataset

    boundary = boundary_token_id(tokenizer)
    raw = Dataset.from_dict({"text": documents})
    tokenized = raw.map(
        lambda batch: {
            "input_ids": [ids + [boundary] for ids in tokenizer(batch["text"], add_special_tokens=False)["input_ids"]]
        },
        batched=True,
        remove_columns=["text"],
    )
    return tokenized.map(group_texts, batched=True, fn_kwargs={"block_size": block_size, "with_labels": with_labels})


def corpus_documents(data_file: str) -> tuple[list[str], list[str]]:
    """The training and held-out documents exactly as ours splits the file (blank-line separated,
    1% held out), so both sides train on the same text."""
    from common.data.sources import load_corpus

    corpus = load_corpus("text", data_files=[data_file], validation_split_percentage=VALIDATION_PERCENT)
    return list(corpus.train_documents()), list(corpus.validation_documents())


def trainer_collator(objective: str, tokenizer):
    """The stock collator of each recipe: blocks as they are, or BERT's 80/10/10 masking."""
    from transformers import DataCollatorForLanguageModeling, default_data_collator

    if objective == "causal":
        return default_data_collator
    return DataCollatorForLanguageModeling(tokenizer, mlm_probability=MLM_PROBABILITY)


def trainer_main(spec_path: str) -> None:
    from transformers import AutoTokenizer, Trainer, TrainerCallback, TrainingArguments, set_seed

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    objective = spec["objective"]
    torch.set_num_threads(spec["threads"])
    tokenizer = AutoTokenizer.from_pretrained(spec["tokenizer_dir"])
    train_documents, _ = corpus_documents(spec["data_file"])
    dataset = token_blocks(train_documents, tokenizer, spec["seq_length"], with_labels=objective == "causal")

    set_seed(SEED)  # dropout, the data order and the collator's masks
    model = auto_class(objective).from_pretrained(spec["init_dir"])  # ours' config and initial weights

    class MatchedTrainer(Trainer):
        """The stock Trainer with ours' learning-rate curve and decay groups. Neither costs time,
        but both move the loss: the stock warmup starts at lr 0 (ours at lr/warmup, so the stock
        one loses a step) and the stock groups also decay the embeddings."""

        def create_scheduler(self, num_training_steps, optimizer=None):
            if self.lr_scheduler is None:
                warmup = self.args.get_warmup_steps(num_training_steps)
                self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
                    optimizer or self.optimizer,
                    lambda step: learning_rate_at(step, 1.0, num_training_steps, warmup, "cosine", MIN_LR_RATIO),
                )
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
            synchronize(args.device)  # a GPU step has ended when its kernels have
            self.times.append(time.perf_counter())

    run_dir = Path(spec["run_dir"])
    training_args = TrainingArguments(
        output_dir=str(run_dir),
        max_steps=spec["steps"],
        per_device_train_batch_size=spec["batch_size"],
        gradient_accumulation_steps=1,
        **OPTIMIZER,
        warmup_steps=warmup_steps(spec["steps"]),
        logging_steps=spec["logging_steps"],
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        use_cpu=spec["device"] == "cpu",
        bf16=spec["bf16"],
        fp16=False,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        seed=SEED,
        data_seed=SEED,
        torch_compile=spec["torch_compile"],
    )
    clock = StepClock()
    trainer = MatchedTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        data_collator=trainer_collator(objective, tokenizer),
        callbacks=[clock],
    )
    trainer.train()
    trainer.save_model(str(run_dir / "final"))

    skip = spec["logging_steps"]  # the same warm-up interval that ours leaves out
    timed_steps = len(clock.times) - skip
    tokens_per_step = spec["batch_size"] * spec["seq_length"]
    tokens_per_s = timed_steps * tokens_per_step / (clock.times[-1] - clock.times[skip - 1])
    losses = {entry["step"]: entry["loss"] for entry in trainer.state.log_history if "loss" in entry}
    result = {
        "tokens_per_s": tokens_per_s,
        "timed_steps": timed_steps,
        "losses": losses,
        "tokens_seen": len(clock.times) * tokens_per_step,
        "peak_memory_gb": peak_memory_gb(torch.device(spec["device"])),
        "blocks": len(dataset),
        "optim": str(training_args.optim),
        "attn_implementation": model.config._attn_implementation,
    }
    Path(spec["result"]).write_text(json.dumps(result), encoding="utf-8")


# --- measuring and comparing -------------------------------------------------------------------


def evaluation_objective(objective: str, tokenizer) -> CausalLM | MaskedLM:
    """Ours' batch maker for held-out windows: next-token targets, or masks drawn from its fixed
    validation stream, so both models are scored on the same masked positions."""
    return CausalLM() if objective == "causal" else MaskedLM(tokenizer, MLM_PROBABILITY, SEED)


@torch.no_grad()
def held_out_loss(model_dir: str, windows: np.ndarray, objective: CausalLM | MaskedLM) -> float:
    """Mean loss per target token over the same held-out windows, one definition for both models."""
    model = auto_class(objective.name).from_pretrained(model_dir).eval()
    total, count, rows_per_batch = 0.0, 0, 16
    for start in range(0, len(windows), rows_per_batch):
        rows = windows[start : start + rows_per_batch]
        batch = objective.make_batch(rows, torch.device("cpu"), range(start, start + len(rows)), evaluation=True)
        logits = model(input_ids=batch["input_ids"]).logits
        total += F.cross_entropy(
            logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORE, reduction="sum"
        ).item()
        count += int((batch["labels"] != IGNORE).sum())
    return total / count


def held_out_windows(data_file: str, tokenizer, stride: int) -> np.ndarray | None:
    """The held-out documents, each after the boundary token as in ours' packed data, as windows
    of stride + 1 tokens, ours' layout (`window_stride`: seq_length next-token targets, or the text
    of a masked model's [CLS] ... [SEP] window after one token of context)."""
    _, documents = corpus_documents(data_file)
    boundary = boundary_token_id(tokenizer)
    ids = [token for ids in tokenizer(documents, add_special_tokens=False)["input_ids"] for token in [boundary, *ids]]
    count = (len(ids) - 1) // stride
    if count == 0:
        return None
    return np.array([ids[i * stride : i * stride + stride + 1] for i in range(count)], dtype=np.int64)


def held_out_comparison(data_file: str, args, sides: dict[str, dict]) -> dict | None:
    """Every side's final model's loss on the held-out documents (None when they fill no window)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(next(iter(sides.values()))["tokenizer_dir"])
    scorer = evaluation_objective(args.objective, tokenizer)
    windows = held_out_windows(data_file, tokenizer, scorer.window_stride(args.seq_length))
    if windows is None:
        return None
    return {
        "windows": len(windows),
        **{name: held_out_loss(side["model_dir"], windows, scorer) for name, side in sides.items()},
    }


def tail_mean(losses: dict[int, float], count: int = 5) -> float:
    values = [losses[step] for step in sorted(losses)[-count:]]
    return sum(values) / len(values)


def synthetic_text_file(path: Path) -> Path:
    from common.data.synthetic import synthetic_documents

    path.write_text("\n\n".join(synthetic_documents(num_words=SYNTHETIC_WORDS)) + "\n", encoding="utf-8")
    return path


def summarise(runs: list[dict], per_token: float, peak: float) -> dict:
    """One side over its rounds: the best tokens/s (least disturbed), losses of the first round
    (the runs are seeded, so later rounds train the same way)."""
    best = max(runs, key=lambda run: run["tokens_per_s"])
    first = runs[0]
    return {
        **first,
        "tokens_per_s": best["tokens_per_s"],
        "mfu": mfu(best["tokens_per_s"], per_token, peak, 1),
        "flops_per_token": per_token,
        "rounds": [{key: run[key] for key in ("tokens_per_s", "other_cores", "wall_s")} for run in runs],
        "final_loss": first["losses"][max(first["losses"])],
        "tail_loss": tail_mean(first["losses"]),
    }


def compare(runs: dict[str, list[dict]], data_file: Path, args, peak: tuple[float, str]) -> dict:
    """Every side summarised, each against the Trainer's default recipe (when it ran) and the
    ELECTRA variants against ours' MLM."""
    peak_flops, peak_source = peak
    # Every side trains the same model: one FLOPs-per-token figure (ours' own) for all
    per_token = next(side[0]["flops_per_token"] for name, side in runs.items() if name in SIDES)
    sides = {name: summarise(side, per_token, peak_flops) for name, side in runs.items() if name in SIDES}
    results = {
        "objective": args.objective,
        "device": device_name(args.device),
        "precision": args.precision,
        "model": args.model_size or "default shape",
        "vocab_size": args.vocab_size,
        "steps": args.steps,
        "threads": args.threads,
        "repeats": args.repeats,
        "data": str(data_file),
        "tokens_per_step": args.batch_size * args.seq_length,
        "peak_tflops": peak_flops / 1e12,
        "peak_source": peak_source,
        "flops_per_token": per_token,
        "sides": sides,
    }
    if "trainer" in sides:
        for side in sides.values():
            side["ratio"] = side["tokens_per_s"] / sides["trainer"]["tokens_per_s"]
            side["loss_gap"] = side["tail_loss"] - sides["trainer"]["tail_loss"]
    held_out = held_out_comparison(str(data_file), args, sides)
    if held_out:
        results["held_out"] = held_out
    variants = {
        name: summarise(side, side[0]["flops_per_token"], peak_flops)
        for name, side in runs.items()
        if name in ELECTRA_VARIANTS
    }
    if variants and "ours" in sides:
        for variant in variants.values():
            variant["ratio_vs_mlm"] = variant["tokens_per_s"] / sides["ours"]["tokens_per_s"]
        results["variants"] = variants
    return results


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"CPU ({platform.processor() or platform.machine()}, {usable_cores()} cores)"


# --- report ------------------------------------------------------------------------------------

MODEL_NAMES = {"causal": "LLaMA, causal LM", "mlm": "BERT, masked LM"}


def report(results: dict) -> None:
    print_setup(results)
    print_comparison(results)
    if results.get("variants"):
        print_objectives(results)
    print_rounds(results)
    if len(results["sides"]) > 1:
        print_losses(results)


def print_setup(results: dict) -> None:
    print(
        f"\n{MODEL_NAMES[results['objective']]}, {results['model']}, vocabulary {results['vocab_size']}; "
        f"{results['device']}, {results['precision']}, {results['threads']} threads, {results['steps']} steps "
        f"({results['tokens_per_step']} tokens/step), data: {results['data']}"
    )
    print(
        f"MFU against {results['peak_tflops']:.2f} TFLOP/s ({results['peak_source']}), "
        f"{results['flops_per_token'] / 1e6:.1f} MFLOP/token\n"
    )


def print_comparison(results: dict) -> None:
    """One row per side: tokens/s, x the Trainer's default recipe, MFU, peak memory, losses."""
    best_of = f", best of {results['repeats']}" if results["repeats"] > 1 else ""
    held = results.get("held_out", {})
    print(
        f"  {'side':<28} {'tokens/s' + best_of:>18} {'x Trainer':>10} {'MFU':>7} {'peak GB':>8} "
        f"{'last-5 loss':>12} {'held-out loss':>14}"
    )
    for name, side in results["sides"].items():
        compiled = " [compiled]" if side.get("compiled") and name == "ours" else ""
        ratio = f"{side['ratio']:.2f}" if "ratio" in side else "-"
        held_out = f"{held[name]:.4f}" if name in held else "-"
        print(
            f"  {SIDE_LABELS[name] + compiled:<28} {side['tokens_per_s']:>18.0f} {ratio:>10} {side['mfu']:>7.1%} "
            f"{side['peak_memory_gb']:>8.2f} {side['tail_loss']:>12.4f} {held_out:>14}"
        )
    if held:
        print(f"  (held-out loss over {held['windows']} windows of held-out documents)")


def print_objectives(results: dict) -> None:
    """Ours' objectives at the same (discriminator) shape: tokens/s and its ratio to the MLM's."""
    print(f"\n  {'ours, same encoder shape':<32} {'tokens/s':>10} {'x MLM':>7} {'MFU':>7} {'MFLOP/token':>12}")
    rows = [
        ("MLM (BERT)", {**results["sides"]["ours"], "ratio_vs_mlm": 1.0}),
        *((VARIANT_LABELS[name], side) for name, side in results["variants"].items()),
    ]
    for label, side in rows:
        print(
            f"  {label:<32} {side['tokens_per_s']:>10.0f} {side['ratio_vs_mlm']:>7.2f} {side['mfu']:>7.1%} "
            f"{side['flops_per_token'] / 1e6:>12.1f}"
        )


def print_rounds(results: dict) -> None:
    sides = [*results["sides"].items(), *results.get("variants", {}).items()]
    print("\n  round  side              tokens/s  cores used by others  wall s (incl. setup)")
    for side, summary in sides:
        for number, run in enumerate(summary["rounds"], 1):
            others = "?" if run["other_cores"] is None else f"{run['other_cores']:.2f}"
            print(f"  {number:>5}  {side:<16} {run['tokens_per_s']:>10.0f}  {others:>20}  {run['wall_s']:>20.0f}")


def print_losses(results: dict) -> None:
    """The training losses of every side at the same steps (so after the same tokens)."""
    sides = results["sides"]
    if results["objective"] == "mlm":
        print("\n  (MLM: ours and the Trainer draw different masks, so their losses agree only roughly)")
    print("\n  step " + "".join(f"{name:>18}" for name in sides))
    steps = sorted(set().union(*(side["losses"] for side in sides.values())))
    for step in steps:
        print(f"  {step:>4} " + "".join(f"{side['losses'].get(step, float('nan')):>18.4f}" for side in sides.values()))


def padded_tokenizer(data_file: Path, args, folder: Path) -> Path | None:
    """A small text cannot train a tokenizer of 50257 tokens. For the cost of a vocabulary that large
    (the embedding and the output head), the tokenizer trained on the text is padded with unused
    tokens up to --vocab_size and every side gets that one (None: the text reaches the size)."""
    from common.data.sources import load_corpus
    from common.data.tokenizer import train_tokenizer

    kind = "bpe" if args.objective == "causal" else "wordpiece"
    corpus = load_corpus("text", data_files=[str(data_file)], validation_split_percentage=VALIDATION_PERCENT)
    tokenizer = train_tokenizer(kind, list(corpus.train_documents()), args.vocab_size)
    missing = args.vocab_size - len(tokenizer)
    if missing <= 0:
        return None
    tokenizer.add_tokens([f"<unused_{i}>" for i in range(missing)])
    tokenizer.save_pretrained(folder)
    print(f"[bench] the text gives {args.vocab_size - missing} tokens: padded to {len(tokenizer)}", file=sys.stderr)
    return folder


def measured_peak(args, env: dict) -> tuple[float, str]:
    """The peak MFU divides by: a known GPU's data-sheet figure, else a matmul peak measured after the
    runs in a fresh child with the sides' environment and threads (nothing else of ours running)."""
    dtype = "bfloat16" if args.precision == "bf16" else "float32"
    code = (
        "import json, torch; from common.training.perf import peak_flops_for; "
        f"torch.set_num_threads({args.threads}); "
        f"print(json.dumps(peak_flops_for(torch.device('{args.device}'), torch.{dtype})))"
    )
    output = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=True)
    flops, source = json.loads(output.stdout.strip().splitlines()[-1])
    return flops, source


def data_file_for(args, workdir: Path) -> Path:
    if args.data_file:
        return Path(args.data_file).resolve()
    return synthetic_text_file(workdir / "synthetic.txt")


def main() -> None:
    args = parse_args()
    if args._run_trainer:
        trainer_main(args._run_trainer)
        return
    torch.set_num_threads(args.threads)
    workdir = Path(tempfile.mkdtemp(prefix="bench_pretrain-"))
    try:
        data_file = data_file_for(args, workdir)
        args.padded_tokenizer = padded_tokenizer(data_file, args, workdir / "padded_tokenizer")
        env = thread_env(args.threads, args.precision, args.device)
        runs = run_rounds(data_file, workdir, args, env)
        peak = measured_peak(args, env)
        results = compare(runs, data_file, args, peak)
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
