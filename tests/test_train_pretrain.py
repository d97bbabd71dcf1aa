"""End-to-end runs of train_pretrain.py in one process, launched as a user would."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import AutoModelForCausalLM, AutoTokenizer

import train_pretrain
from common.config import parse_config
from common.data.tokenizer import tokenizer_hash
from common.training.pretrain_config import PretrainConfig
from tests.helpers import (
    CAUSAL_RUN,
    TINY_DATA,
    TINY_MODEL,
    error_line,
    read_metrics,
    run_and_preempt,
    run_in_process,
    run_main_in_process,
    run_script,
    shared_data_dir,
    train_losses,
)

pytestmark = pytest.mark.e2e  # every test here launches a script


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One tokenizer/token cache for the module: runs after the first reuse it."""
    return tmp_path_factory.mktemp("cache")


def tiny_args(output_dir, cache_dir, *extra: str) -> list[str]:
    return [
        *TINY_MODEL,
        *TINY_DATA,
        "--output_dir",
        str(output_dir),
        "--cache_dir",
        str(cache_dir),
        "--logging_steps",
        "1",
        "--eval_steps",
        "1000",
        "--max_eval_samples",
        "64",
        *extra,
    ]


def assert_loads_and_generates(folder):
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    inputs = tokenizer("The dog", return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert output.shape[1] > inputs["input_ids"].shape[1]
    assert isinstance(tokenizer.decode(output[0]), str)


def test_default_run_learns_and_writes_a_complete_run_folder(tmp_path, cache_dir):
    out = tmp_path / "run"
    result = run_script(
        "train_pretrain.py",
        ["--max_steps", "60", "--output_dir", str(out), "--cache_dir", str(cache_dir), "--synthetic_words", "100000"],
    )
    assert f"run folder: {out}" in result.stdout
    before, after = [float(x) for x in result.stdout.split("validation loss ")[1].split(",")[0].split(" -> ")]
    assert after < before - 1.0, f"validation loss did not fall clearly: {before} -> {after}"

    assert_loads_and_generates(out / "final")
    final_info = json.loads((out / "final" / "milestone.json").read_text())
    assert final_info["step"] == 60 and final_info["tokens_seen"] == 60 * 16 * 128

    # The default run ends by scoring final/ on the synthetic tasks and printing their tables.
    assert "[overall]" in result.stdout and "synthetic (2000 items" in result.stdout
    assert "synthetic_completions (1600 items" in result.stdout
    blimp = json.loads((out / "final" / "blimp" / "synthetic" / "results.json").read_text())
    assert blimp["snapshot"] == {
        "name": "final",
        "tokens_seen": 60 * 16 * 128,
        "words_seen": final_info["words_seen"],
        "step": 60,
    }
    assert len(blimp["scores"]["uids"]) == 10
    assert any(path.name.startswith("events") for path in (out / "tb" / "blimp-synthetic").iterdir())

    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["config"]["model_type"] == "llama"
    assert config["provenance"]["world_size"] == 1
    assert set(config["provenance"]["versions"]) >= {"torch", "transformers", "accelerate", "tokenizers"}
    assert len(config["provenance"]["tokenizer_hash"]) == 16
    assert (out / "tokenizer" / "tokenizer.json").is_file()

    records = read_metrics(out)
    train_keys = {"train/loss", "train/lr", "train/grad_norm", "train/tokens_seen", "perf/tokens_per_s", "perf/mfu"}
    assert any(train_keys <= set(r) for r in records)
    assert any({"val/loss", "val/ppl"} <= set(r) for r in records)
    mfus = [r["perf/mfu"] for r in records if "perf/mfu" in r]
    # The peak is measured once at start-up; on a busy machine it can read low, so allow some slack
    # (a wrong dtype or FLOPs formula is off by far more).
    assert all(0 < m < 2 for m in mfus)
    events = EventAccumulator(str(next((out / "tb").rglob("events.out.tfevents.*")).parent))
    events.Reload()
    assert train_keys | {"val/loss", "val/ppl"} <= set(events.Tags()["scalars"])
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-00000060"]
    for saved in (out / "final", out / "checkpoints" / "step-00000060"):
        assert yaml.safe_load((saved / "training_config.yaml").read_text())["config"]["max_steps"] == 60


def test_milestones_are_saved_exactly_at_their_anchors(tmp_path, cache_dir, capsys):
    out = tmp_path / "run"
    tokens_per_step = 4 * 32
    run_in_process(
        "train_pretrain.py",
        tiny_args(
            out,
            cache_dir,
            "--max_steps",
            "12",
            "--per_device_train_batch_size",
            "4",
            "--milestones",
            f"{3 * tokens_per_step + 1},{8 * tokens_per_step}",
            "--milestones_words",
            "300",
            "--save_init",
            "--eval_steps",
            "4",
        ),
        capsys,
    )
    milestones = sorted(p.name for p in (out / "milestones").iterdir())
    assert milestones == ["chck_300", "init", "tokens-1024", "tokens-385"]
    token_steps = {
        name: json.loads((out / "milestones" / name / "milestone.json").read_text())["step"] for name in milestones
    }
    assert token_steps["init"] == 0
    assert token_steps["tokens-385"] == 4  # the first step whose counter passes the anchor
    assert token_steps["tokens-1024"] == 8  # exactly on the anchor
    words = {r["step"]: r["train/words_seen"] for r in read_metrics(out) if "train/words_seen" in r}
    first_step_past_300_words = min(step for step, seen in words.items() if seen >= 300)
    assert token_steps["chck_300"] == first_step_past_300_words
    for name in milestones:
        assert_loads_and_generates(out / "milestones" / name)
    # one validation pass per step, even when a milestone falls on an --eval_steps step
    eval_steps = [r["step"] for r in read_metrics(out) if "val/loss" in r]
    assert len(eval_steps) == len(set(eval_steps)), eval_steps


def start_and_interrupt(args: list[str], out, after_step: int) -> int:
    """Start a run, send SIGUSR1 once it has logged `after_step`, return the step it checkpointed."""
    returncode, stderr, step = run_and_preempt([sys.executable, "train_pretrain.py", *args], out, after_step)
    assert returncode == 75, f"expected the pre-emption exit status 75, got {returncode}\n{stderr[-3000:]}"
    return step


def test_resume_continues_with_exactly_the_same_losses(tmp_path, cache_dir, capsys):
    steps = [
        "--max_steps",
        "16",
        "--checkpointing_steps",
        "0",
        "--per_device_train_batch_size",
        "4",
        "--gradient_accumulation_steps",
        "2",
    ]
    reference = tmp_path / "uninterrupted"
    run_in_process("train_pretrain.py", tiny_args(reference, cache_dir, *steps), capsys)

    resumed = tmp_path / "interrupted"  # a real process, for a real signal
    stopped_at = start_and_interrupt(tiny_args(resumed, cache_dir, *steps), resumed, after_step=3)
    assert 3 <= stopped_at < 16
    result = run_in_process(
        "train_pretrain.py", tiny_args(resumed, cache_dir, *steps, "--resume_from_checkpoint", "auto"), capsys
    )
    assert f"(this launch resumed at step {stopped_at})" in result.stdout

    expected, got = train_losses(reference), train_losses(resumed)
    after = [step for step in expected if step > stopped_at]
    assert after and all(got[step] == expected[step] for step in after), [
        (step, expected[step], got[step]) for step in after if got[step] != expected[step]
    ]
    final = json.loads((resumed / "final" / "milestone.json").read_text())
    assert final["tokens_seen"] == json.loads((reference / "final" / "milestone.json").read_text())["tokens_seen"]


def test_gradient_checkpointing_gives_the_same_losses(tmp_path, cache_dir, capsys):
    steps = ["--max_steps", "3", "--per_device_train_batch_size", "4"]
    run_in_process("train_pretrain.py", tiny_args(tmp_path / "plain", cache_dir, *steps), capsys)
    run_in_process(
        "train_pretrain.py", tiny_args(tmp_path / "recomputed", cache_dir, *steps, "--gradient_checkpointing"), capsys
    )
    plain, recomputed = train_losses(tmp_path / "plain"), train_losses(tmp_path / "recomputed")
    assert plain.keys() == recomputed.keys() == {1, 2, 3}
    assert all(abs(plain[s] - recomputed[s]) < 1e-5 for s in plain), (plain, recomputed)


def test_cache_is_reused_and_rebuilt_when_the_source_changes(tmp_path, capsys):
    """A run fills the cache; the same pipeline (train_pretrain.py's own functions, in process) then
    reuses it untouched for the same source and builds a second entry for a changed one."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(f"The dog {i} runs to the park and the cats sleep." for i in range(400)))
    args = tiny_args(
        tmp_path / "first",
        tmp_path / "cache",
        "--dataset",
        "text",
        "--data_files",
        str(corpus),
        "--max_steps",
        "2",
        "--per_device_train_batch_size",
        "2",
    )
    run_in_process("train_pretrain.py", args, capsys)
    token_folders = list((tmp_path / "cache" / "tokens").iterdir())
    assert len(token_folders) == 1
    stamp = (token_folders[0] / "train.bin").stat().st_mtime_ns

    def pack_again():
        cfg = parse_config(PretrainConfig, args)
        sources = train_pretrain.load_sources(cfg)
        tokenizer = train_pretrain.obtain_tokenizer(cfg, sources, run_tokenizer=None)
        train_pretrain.pack_sources(sources, tokenizer, tokenizer_hash(tokenizer), Path(cfg.cache_dir), workers=1)

    pack_again()
    assert list((tmp_path / "cache" / "tokens").iterdir()) == token_folders
    assert (token_folders[0] / "train.bin").stat().st_mtime_ns == stamp, "the cache was rewritten"
    corpus.write_text(corpus.read_text() + "\n\nA new story about the birds.")
    pack_again()
    assert len(list((tmp_path / "cache" / "tokens").iterdir())) == 2, "a changed source did not rebuild the cache"
    manifests = [json.loads((f / "manifest.json").read_text()) for f in (tmp_path / "cache" / "tokens").iterdir()]
    assert len({m["source_fingerprint"] for m in manifests}) == 2


def test_real_tinystories_sample_trains(tmp_path, cache_dir, capsys):
    data = shared_data_dir()
    if data is None or not (data / "pretrain" / "tinystories_valid.txt").is_file():
        pytest.skip("the real sample ../shared/data/pretrain/tinystories_valid.txt is not present")
    out = tmp_path / "run"
    run_in_process(
        "train_pretrain.py",
        tiny_args(
            out,
            tmp_path / "cache",
            "--dataset",
            "text",
            "--data_files",
            str(data / "pretrain" / "tinystories_valid.txt"),
            "--max_steps",
            "40",
            "--vocab_size",
            "2000",
            "--validation_split_percentage",
            "5",
        ),
        capsys,
    )
    manifest = json.loads((out / "data.json").read_text())
    assert 140_000 < manifest["splits"]["train"]["words"] + manifest["splits"]["validation"]["words"] < 170_000
    evals = [r["val/loss"] for r in read_metrics(out) if "val/loss" in r]
    assert evals[-1] < evals[0] - 1.0


# --- bad input: one clear line, non-zero exit, nothing lost --------------------------------------


def test_empty_corpus_names_the_file(tmp_path, cache_dir, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n   \n")
    result = run_in_process(
        "train_pretrain.py",
        tiny_args(tmp_path / "run", cache_dir, "--dataset", "text", "--data_files", str(empty)),
        capsys,
        check=False,
    )
    assert result.returncode == 2 and str(empty) in error_line(result)


def test_non_utf8_bytes_are_replaced_and_counted(tmp_path, cache_dir, capsys):
    corpus = tmp_path / "latin1.txt"
    corpus.write_bytes("\n\n".join(f"The caf\xe9 {i} is open and the dogs run." for i in range(300)).encode("latin-1"))
    result = run_in_process(
        "train_pretrain.py",
        tiny_args(tmp_path / "run", cache_dir, "--dataset", "text", "--data_files", str(corpus), "--max_steps", "1"),
        capsys,
    )
    assert "300" in result.stderr and str(corpus) in result.stderr, result.stderr[-2000:]


def test_finished_run_is_not_touched_without_overwrite(tmp_path, cache_dir, causal_run, capsys):
    out = shutil.copytree(causal_run, tmp_path / "run")  # a finished run (the session's fixture, copied)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    status, error = run_main_in_process("train_pretrain.py", [*CAUSAL_RUN, "--output_dir", str(out)], capsys)
    assert status == 2 and "holds a finished run" in error
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    run_in_process("train_pretrain.py", tiny_args(out, cache_dir, "--max_steps", "3", "--overwrite_output_dir"), capsys)
    assert json.loads((out / "final" / "milestone.json").read_text())["step"] == 3
    assert not (out / "milestones").exists()  # the old run's files went with --overwrite_output_dir


def test_resuming_a_checkpoint_of_another_shape_is_refused(tmp_path, causal_run, capsys):
    out = shutil.copytree(causal_run, tmp_path / "run")
    shutil.rmtree(out / "final")  # unfinished: its last checkpoint (step 60) is there to resume
    resume = [*CAUSAL_RUN, "--output_dir", str(out), "--resume_from_checkpoint", "auto"]
    status, error = run_main_in_process("train_pretrain.py", [*resume, "--hidden_size", "128"], capsys)
    assert status == 2 and "made for hidden_size=64" in error
    status, error = run_main_in_process("train_pretrain.py", [*resume, "--per_device_train_batch_size", "8"], capsys)
    assert status == 2 and "it was trained with 16 windows per step; this launch has 8" in error


def test_non_finite_losses_stop_the_run_with_a_checkpoint(tmp_path, cache_dir, causal_run, capsys):
    first = causal_run
    broken = tmp_path / "broken"
    model = AutoModelForCausalLM.from_pretrained(first / "final")
    with torch.no_grad():
        model.model.norm.weight.fill_(math.nan)
    model.save_pretrained(broken)
    AutoTokenizer.from_pretrained(first / "final").save_pretrained(broken)
    out = tmp_path / "run"
    result = run_in_process(
        "train_pretrain.py",
        tiny_args(
            out,
            cache_dir,
            "--model_name_or_path",
            str(broken),
            "--tokenizer_name_or_path",
            str(broken),
            "--max_steps",
            "10",
            "--max_nonfinite_steps",
            "2",
        ),
        capsys,
        check=False,
    )
    assert result.returncode == 1 and "3 steps had a non-finite loss" in error_line(result)
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-00000003"]
