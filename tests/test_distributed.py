"""`accelerate launch` with two CPU processes: DDP, ZeRO-2 and ZeRO-3 really run as a world of two
and train like one process on the same global batch; a resumed 2-process run continues exactly."""

from __future__ import annotations

import json
import math
import shutil
import signal
import time

import psutil
import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoModelForPreTraining, AutoTokenizer

import common.models.modeling_electra_moe  # noqa: F401  (registers electra_moe with the Auto classes)
from tests.helpers import (
    REPO,
    TINY_DATA,
    TINY_MODEL,
    accelerate_launch,
    launch_command,
    read_metrics,
    run_and_preempt,
    run_in_process,
    train_losses,
)

pytestmark = pytest.mark.e2e  # every test here launches a script

# Two small local corpora of different styles for the mixture test (the third source is synthetic).
STORIES_TEXT = (
    "\n\n".join(
        f"Once upon a time a little {animal} found a {thing}. It was very happy and told its friend."
        for animal in ("cat", "dog", "bird", "fox", "bear", "frog")
        for thing in ("ball", "box", "hat", "stick", "shell", "leaf", "cup")
    )
    * 4
)
WEB_TEXT = "\n\n".join(
    f"Product review {number}: the {item} arrived quickly, works as described, {verdict} stars."
    for number in range(40)
    for item, verdict in (("kettle", "four"), ("lamp", "five"), ("charger", "three"))
)

STEPS = [
    "--max_steps",
    "5",
    "--logging_steps",
    "1",
    "--eval_steps",
    "1000",
    "--max_eval_samples",
    "32",
    "--checkpointing_steps",
    "0",
    "--warmup_steps",
    "1",
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def one_process_losses(cache_dir, tmp_path_factory):
    """The reference: one process with the global batch (2 x 4 windows) of the 2-process runs."""
    out = tmp_path_factory.mktemp("single") / "run"
    run_in_process(  # one process needs no launch of its own: the same main(), without the imports
        "train_pretrain.py",
        [
            *TINY_MODEL,
            *TINY_DATA,
            *STEPS,
            "--per_device_train_batch_size",
            "8",
            "--output_dir",
            str(out),
            "--cache_dir",
            str(cache_dir),
        ],
        capsys=None,
    )
    return train_losses(out)


# bf16 under DeepSpeed (its configs fix the precision) cannot match an fp32 run bit for bit. ZeRO-2's
# shipped config trains ELECTRA-MoE below, and both stages resume across world sizes (fp32) further down.
@pytest.mark.parametrize(
    "config, distributed_type, zero_stage, tolerance",
    [
        ("cpu", "MULTI_CPU", 0, 1e-4),
        ("deepspeed_zero3", "DEEPSPEED", 3, 3e-2),
    ],
)
def test_two_processes_train_like_one(
    tmp_path, cache_dir, one_process_losses, config, distributed_type, zero_stage, tolerance
):
    out = tmp_path / "run"
    # DDP also scores final/ on the minimal pairs after training, as the default run does: the
    # scoring is sharded over both processes after the run's records are closed.
    blimp = ["--blimp_at_end", "true", "--max_position_embeddings", "64"] if config == "cpu" else []
    launched = accelerate_launch(
        config,
        "train_pretrain.py",
        [
            *TINY_MODEL,
            *TINY_DATA,
            *STEPS,
            *blimp,
            "--per_device_train_batch_size",
            "4",
            "--output_dir",
            str(out),
            "--cache_dir",
            str(cache_dir),
        ],
    )
    if blimp:
        results = json.loads((out / "final" / "blimp" / "synthetic" / "results.json").read_text())
        assert results["num_processes"] == 2 and results["data"]["items"] == 2000
        assert launched.stdout.count("[overall]") == 2  # one report per task, from the main process
    launch = yaml.safe_load((out / "config.yaml").read_text())["provenance"]["launch"]
    assert launch["num_processes"] == 2
    assert launch["distributed_type"] == distributed_type
    assert launch["zero_stage"] == zero_stage
    losses = train_losses(out)
    assert sorted(losses) == sorted(one_process_losses)
    for step, expected in one_process_losses.items():
        assert abs(losses[step] - expected) <= tolerance * max(1.0, abs(expected)), (step, losses[step], expected)
    final = json.loads((out / "final" / "milestone.json").read_text())
    assert final["tokens_seen"] == 5 * 8 * 32

    model = AutoModelForCausalLM.from_pretrained(out / "final")
    tokenizer = AutoTokenizer.from_pretrained(out / "final")
    generated = model.generate(
        **tokenizer("The dog", return_tensors="pt"),
        max_new_tokens=4,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
    )
    assert generated.shape[1] > 2


def test_bf16_autocast_on_a_cpu_trains_like_float32(tmp_path, cache_dir, one_process_losses):
    """accelerate_configs/cpu_bf16.yaml: one process, bf16 autocast, float32 weights."""
    out = tmp_path / "run"
    launched = accelerate_launch(
        "cpu_bf16",
        "train_pretrain.py",
        [*TINY_MODEL, *TINY_DATA, *STEPS, "--per_device_train_batch_size", "8", "--output_dir", str(out),
         "--cache_dir", str(cache_dir)],
        num_processes=1,
    )  # fmt: skip
    launch = yaml.safe_load((out / "config.yaml").read_text())["provenance"]["launch"]
    assert launch["mixed_precision"] == "bf16" and launch["num_processes"] == 1
    assert "measured bfloat16 matmul peak" in launched.stderr
    losses = train_losses(out)
    assert sorted(losses) == sorted(one_process_losses)
    for step, expected in one_process_losses.items():
        assert abs(losses[step] - expected) <= 3e-2 * max(1.0, abs(expected)), (step, losses[step], expected)
    model = AutoModelForCausalLM.from_pretrained(out / "final")
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def interrupt_launch(args: list[str], out, after_step: int) -> int:
    """Launch 2 processes, send SIGUSR1 to one rank once `after_step` is logged; return the checkpoint step.

    One rank is enough: the ranks agree on stopping through the per-step all-reduce."""

    def first_worker(launcher):
        return next(
            p
            for p in psutil.Process(launcher.pid).children(recursive=True)
            if "train_pretrain.py" in " ".join(p.cmdline())
        )

    returncode, stderr, step = run_and_preempt(
        launch_command("cpu", "train_pretrain.py", args), out, after_step, signal_target=first_worker
    )
    assert returncode != 0, stderr[-3000:]
    return step


def source_records(run, after_step: int) -> dict:
    """The per-source validation losses and token counts a run logged after `after_step`."""
    return {
        (record["step"], key): value
        for record in read_metrics(run)
        if record["step"] > after_step
        for key, value in record.items()
        if key.startswith(("val/", "train/tokens_seen/"))
    }


def test_a_mixture_resumes_exactly_on_two_processes_and_one_process_can_take_over(tmp_path, cache_dir):
    """Two local text sources and the synthetic corpus by weight: the 2-process run stopped and
    resumed, and its checkpoint continued by one process, train on exactly the windows of the
    uninterrupted run, and log per-source validation losses and token counts."""
    stories, web = tmp_path / "stories.txt", tmp_path / "web.txt"
    stories.write_text(STORIES_TEXT, encoding="utf-8")
    web.write_text(WEB_TEXT, encoding="utf-8")
    mixture = f"text:{stories}=0.5,text:{web}=0.3,synthetic=0.2"
    steps = [
        "--max_steps",
        "30",
        "--logging_steps",
        "1",
        "--eval_steps",
        "10",
        "--max_eval_samples",
        "16",
        "--checkpointing_steps",
        "0",
        "--milestones",
        "5K",
        "--validation_split_percentage",
        "10",
        "--per_device_train_batch_size",
        "4",
    ]
    common = [*TINY_MODEL, *TINY_DATA, "--dataset_mixture", mixture, *steps, "--cache_dir", str(cache_dir)]
    reference = tmp_path / "uninterrupted"
    accelerate_launch("cpu", "train_pretrain.py", [*common, "--output_dir", str(reference)])
    expected = train_losses(reference)

    resumed = tmp_path / "resumed"
    stopped_at = interrupt_launch([*common, "--output_dir", str(resumed)], resumed, after_step=3)
    assert 3 <= stopped_at < 30
    checkpoint = resumed / "checkpoints" / f"step-{stopped_at:08d}"
    taken_over = tmp_path / "taken_over"  # the same checkpoint continued by one process, same global batch
    run_in_process(
        "train_pretrain.py",
        [
            *common[: -len(steps) - 2],
            *steps[:-1],
            "8",
            "--cache_dir",
            str(cache_dir),
            "--output_dir",
            str(taken_over),
            "--resume_from_checkpoint",
            str(checkpoint),
        ],
        capsys=None,
    )
    accelerate_launch(
        "cpu", "train_pretrain.py", [*common, "--output_dir", str(resumed), "--resume_from_checkpoint", "auto"]
    )

    two, one = train_losses(resumed), train_losses(taken_over)
    for step in (s for s in expected if s > stopped_at):
        assert abs(two[step] - expected[step]) <= 1e-5, (step, two[step], expected[step])
        assert abs(one[step] - expected[step]) <= 1e-4, (step, one[step], expected[step])

    names = ["text-stories", "text-web", "synthetic"]
    expected_records = source_records(reference, stopped_at)
    assert source_records(resumed, stopped_at) == pytest.approx(expected_records, rel=2e-5)
    assert source_records(taken_over, stopped_at) == pytest.approx(expected_records, rel=2e-5)
    final = {key: value for r in read_metrics(reference) if r["step"] == 30 for key, value in r.items()}
    per_source = [final[f"train/tokens_seen/{name}"] for name in names]
    assert sum(per_source) == final["train/tokens_seen"] == 30 * 8 * 32
    assert all(abs(count / sum(per_source) - share) < 0.1 for count, share in zip(per_source, (0.5, 0.3, 0.2)))
    pooled, parts = final["val/loss"], [final[f"val/{name}/loss"] for name in names]
    assert min(parts) <= pooled <= max(parts)
    milestone = json.loads((reference / "milestones" / "tokens-5K" / "milestone.json").read_text())
    assert sum(milestone["tokens_per_source"].values()) == milestone["tokens_seen"]
    data = json.loads((reference / "data.json").read_text())
    assert [source["name"] for source in data["sources"]] == names


# ELECTRA-MoE is ELECTRA's generator-discriminator pair with expert layers: under ZeRO-2 it covers the
# plain pair too (trained on one process in test_electra_training.py), at half the suite's time.
@pytest.mark.parametrize("model_type", ["electra_moe"])
def test_electra_trains_under_zero2_with_two_processes(tmp_path, cache_dir, model_type):
    out = tmp_path / "run"
    extra = ["--num_experts", "4", "--num_experts_per_tok", "2"] if model_type == "electra_moe" else []
    accelerate_launch(
        "deepspeed_zero2",
        "train_pretrain.py",
        [
            "--model_type",
            model_type,
            *extra,
            *TINY_MODEL,
            *TINY_DATA,
            *STEPS,
            "--generator_size_divisor",
            "2",
            "--per_device_train_batch_size",
            "4",
            "--output_dir",
            str(out),
            "--cache_dir",
            str(cache_dir),
        ],
    )
    launch = yaml.safe_load((out / "config.yaml").read_text())["provenance"]["launch"]
    assert (launch["num_processes"], launch["distributed_type"], launch["zero_stage"]) == (2, "DEEPSPEED", 2)
    records = [r for r in read_metrics(out) if "train/loss" in r]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    assert all(math.isfinite(r["train/loss"]) and 0 < r["train/replaced_fraction"] < 0.2 for r in records)
    assert records[-1]["train/generator_loss"] < records[0]["train/generator_loss"]
    final = json.loads((out / "final" / "milestone.json").read_text())
    assert final["tokens_seen"] == 5 * 8 * 32 and final["model_type"] == model_type
    discriminator = AutoModelForPreTraining.from_pretrained(out / "final")
    assert type(discriminator).__name__ == (
        "ElectraMoeForPreTraining" if model_type == "electra_moe" else "ElectraForPreTraining"
    )
    assert (out / "final" / "generator" / "model.safetensors").is_file()


def fp32_deepspeed_config(stage: int, folder) -> str:
    """Our ZeRO config without its bf16 section: fp32, so that a resharded resume can be compared
    with the uninterrupted run to 1e-5 (bf16 sums in another order differ by more)."""
    ds_config = json.loads((REPO / "ds_configs" / f"zero{stage}.json").read_text())
    ds_config.pop("bf16", None)
    (folder / f"zero{stage}.json").write_text(json.dumps(ds_config))
    launch = (REPO / "accelerate_configs" / f"deepspeed_zero{stage}.yaml").read_text()
    (folder / f"zero{stage}.yaml").write_text(
        launch.replace(f"ds_configs/zero{stage}.json", str(folder / f"zero{stage}.json"))
    )
    return str(folder / f"zero{stage}.yaml")


@pytest.mark.parametrize("stage, before, after", [(2, 2, 1), (3, 1, 2)])
def test_a_zero_checkpoint_resumes_on_another_number_of_processes(tmp_path, cache_dir, stage, before, after):
    """A requeued job may land on fewer or more GPUs: the ZeRO checkpoint is converted to
    DeepSpeed's universal form and the run goes on as if nothing had changed."""
    config = fp32_deepspeed_config(stage, tmp_path)
    run = [*TINY_MODEL, *TINY_DATA, "--max_steps", "12", "--logging_steps", "1", "--checkpointing_steps", "6",
           "--checkpoints_total_limit", "0", "--cache_dir", str(cache_dir)]  # fmt: skip
    global_batch = 8
    reference = tmp_path / "reference"
    accelerate_launch(
        config, "train_pretrain.py", [*run, "--per_device_train_batch_size", str(global_batch // before),
                                      "--output_dir", str(reference)], num_processes=before
    )  # fmt: skip
    resumed = tmp_path / "resumed"
    shutil.copytree(reference, resumed, ignore=shutil.ignore_patterns("final", "step-00000012"))
    launched = accelerate_launch(
        config,
        "train_pretrain.py",
        [*run, "--per_device_train_batch_size", str(global_batch // after), "--output_dir", str(resumed),
         "--resume_from_checkpoint", "auto"],
        num_processes=after,
    )  # fmt: skip
    assert "converting it to a universal checkpoint" in launched.stderr
    expected, got = train_losses(reference), train_losses(resumed)
    assert sorted(got) == sorted(expected)
    for step in range(7, 13):
        assert abs(got[step] - expected[step]) <= 1e-5, (step, got[step], expected[step])
    assert not list((resumed / "checkpoints").glob(".tmp-*"))  # the universal copy is gone once loaded


def test_when_one_process_fails_the_others_stop_too_and_the_error_shows_once(tmp_path, cache_dir):
    """A rank that dies (here: SIGKILL, as the kernel's OOM killer does) or refuses its input leaves
    the others blocked in a collective; they notice, stop with one line, and the launch ends."""
    out = tmp_path / "run"
    args = [*TINY_MODEL, *TINY_DATA, "--max_steps", "200", "--logging_steps", "1", "--checkpointing_steps", "5",
            "--checkpoints_total_limit", "0", "--per_device_train_batch_size", "4", "--output_dir", str(out),
            "--cache_dir", str(cache_dir)]  # fmt: skip

    def second_worker(launcher):
        workers = [
            p
            for p in psutil.Process(launcher.pid).children(recursive=True)
            if "train_pretrain.py" in " ".join(p.cmdline())
        ]
        return next(p for p in workers if p.environ().get("RANK") == "1")

    started = time.time()
    status, stderr, _ = run_and_preempt(launch_command("cpu", "train_pretrain.py", args), out, 12,
                                        signal_target=second_worker, signal_number=signal.SIGKILL)  # fmt: skip
    assert status != 0 and time.time() - started < 120
    assert "error: process 0 stopped: another process of this launch failed first" in stderr
    assert "[rank0]: Traceback" not in stderr

    with open(out / "checkpoints" / "step-00000010" / "model.safetensors", "r+b") as weights:
        weights.truncate(100)
    refused = accelerate_launch(
        "cpu", "train_pretrain.py", [*args, "--resume_from_checkpoint", str(out / "checkpoints" / "step-00000010")],
        check=False,
    )  # fmt: skip
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error: ")]
    assert refused.returncode != 0 and "not a complete checkpoint" in errors[0]
    assert len(errors) == 2 and errors[1].startswith("error: process 1 stopped: another process of this launch failed")
    assert "[rank1]: Traceback" not in refused.stderr
