"""The pretraining loop in this process (common/training/pretrain.py): a few steps of a tiny model,
exact resume from a checkpoint, a stop request, milestones, and the run's records. The script
around it is launched in test_train_pretrain.py."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest
from accelerate.utils import set_seed
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from common.config import parse_config
from common.data.packing import PackedSource, packed_corpus
from common.data.sources import load_corpus
from common.data.tokenizer import tokenizer_hash
from common.distributed import build_accelerator
from common.models.build import build_model, resolve_shape
from common.training import checkpoint
from common.training.objectives import objective_for
from common.training.pretrain import EXIT_PREEMPTED, Pretraining, run_signature, save_run_files
from common.training.pretrain_config import PretrainConfig
from tests.helpers import TINY_MODEL, read_metrics, train_losses, wandb_history_and_config

STEPS = 8


@pytest.fixture(scope="module")
def corpus_and_tokenizer(tmp_path_factory, bpe_tokenizer):
    corpus = load_corpus("synthetic", synthetic_words=20000, seed=0)
    splits, manifest = packed_corpus(
        corpus, bpe_tokenizer, tokenizer_hash(bpe_tokenizer), tmp_path_factory.mktemp("cache")
    )
    return [PackedSource("synthetic", 1.0, splits, manifest)], manifest, bpe_tokenizer


def pretraining(corpus_and_tokenizer, output_dir: Path, *flags: str) -> Pretraining:
    """A Pretraining of the tiny LLaMA, wired as train_pretrain.py wires it (with an Accelerator of
    its own: accelerate saves and loads every model an Accelerator has prepared)."""
    sources, manifest, tokenizer = corpus_and_tokenizer
    accelerator = build_accelerator()
    cfg = parse_config(
        PretrainConfig,
        [*TINY_MODEL, "--max_steps", str(STEPS), "--logging_steps", "1", "--eval_steps", "4", "--max_eval_samples",
         "16", "--per_device_train_batch_size", "4", "--output_dir", str(output_dir), *flags],
    )  # fmt: skip
    set_seed(cfg.seed)
    model = build_model("llama", "causal", resolve_shape("tiny", **cfg.shape_overrides()), tokenizer, cfg.seq_length)
    objective = objective_for("causal", tokenizer, cfg)
    made_for = run_signature(model.config, tokenizer_hash(tokenizer), cfg, objective, "synthetic")
    save_run_files(accelerator, output_dir, cfg, tokenizer, manifest, made_for)
    return Pretraining(
        cfg, accelerator, model, tokenizer, objective, sources, output_dir, made_for, peak=(1e11, "a test value")
    )


def test_a_run_writes_its_records_milestones_checkpoints_and_final(corpus_and_tokenizer, tmp_path):
    out = tmp_path / "run"
    summary = pretraining(
        corpus_and_tokenizer, out, "--milestones", "256,512", "--save_init", "--checkpointing_steps", "4"
    ).run(None)
    assert summary["progress"]["step"] == STEPS and summary["final"]["val/loss"] < summary["initial"]["val/loss"]
    assert sorted(train_losses(out)) == list(range(1, STEPS + 1))
    records = read_metrics(out)
    assert {"perf/tokens_per_s", "perf/mfu", "train/lr", "train/grad_norm"} <= set(records[1])
    assert [r["step"] for r in records if "val/loss" in r] == [0, 2, 4, 8]  # start, the milestones, the end
    assert list((out / "tb").glob("events.out.tfevents.*"))
    for name, step in (("init", 0), ("tokens-256", 2), ("tokens-512", 4)):
        info = json.loads((out / "milestones" / name / "milestone.json").read_text())
        assert info["step"] == step and info["tokens_seen"] == step * 4 * 32
    assert [p.name for p in checkpoint.complete_checkpoints(out)] == ["step-00000004", "step-00000008"]
    model = AutoModelForCausalLM.from_pretrained(out / "final")
    assert model.config.num_hidden_layers == 2
    assert not list(out.rglob(".tmp-*"))  # every staged write was published


def test_resuming_a_checkpoint_continues_with_exactly_the_same_losses(corpus_and_tokenizer, tmp_path):
    whole = tmp_path / "whole"
    pretraining(corpus_and_tokenizer, whole, "--checkpointing_steps", "3", "--checkpoints_total_limit", "0").run(None)
    resumed = tmp_path / "resumed"
    start = checkpoint.checkpoint_dir(whole, 3)
    summary = pretraining(corpus_and_tokenizer, resumed).run(start)
    assert summary["start_step"] == 3
    expected = train_losses(whole)
    assert train_losses(resumed) == {step: expected[step] for step in range(4, STEPS + 1)}  # bit for bit


def test_a_stop_request_checkpoints_exits_75_and_gives_the_signal_handlers_back(
    corpus_and_tokenizer, tmp_path, monkeypatch
):
    out = tmp_path / "run"
    calls = []
    previous = signal.signal(signal.SIGUSR1, lambda *args: calls.append(args))
    training = pretraining(corpus_and_tokenizer, out)
    log_training = training.log_training

    def signal_at_step_3(result, interval):
        log_training(result, interval)
        if training.progress.step == 3:
            os.kill(os.getpid(), signal.SIGUSR1)  # what Slurm sends before a time limit

    monkeypatch.setattr(training, "log_training", signal_at_step_3)
    try:
        with pytest.raises(SystemExit) as stopped:
            training.run(None)
        assert stopped.value.code == EXIT_PREEMPTED
        assert [p.name for p in checkpoint.complete_checkpoints(out)] == ["step-00000004"]
        assert not (out / "final").exists() and calls == []  # the run's handler took the signal
        os.kill(os.getpid(), signal.SIGUSR1)
        assert len(calls) == 1  # and the one it replaced is back
    finally:
        signal.signal(signal.SIGUSR1, previous)


@pytest.mark.skipif(sys.platform != "linux", reason="signals as on a Linux cluster node")
def test_the_handlers_come_back_after_a_finished_run(corpus_and_tokenizer, tmp_path):
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    pretraining(corpus_and_tokenizer, tmp_path / "run", "--max_steps", "2").run(None)
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_a_resume_with_another_schedule_goes_on_and_says_so(corpus_and_tokenizer, tmp_path, capsys):
    whole = tmp_path / "whole"
    pretraining(corpus_and_tokenizer, whole, "--checkpointing_steps", "4", "--checkpoints_total_limit", "0").run(None)
    longer = pretraining(corpus_and_tokenizer, tmp_path / "longer", "--max_steps", str(STEPS + 4))
    capsys.readouterr()
    summary = longer.run(checkpoint.checkpoint_dir(whole, 4))
    assert summary["progress"]["step"] == STEPS + 4
    warned = capsys.readouterr().err  # the scripts' logging goes to stderr
    assert f"total_steps {STEPS} -> {STEPS + 4}" in warned and "learning-rate schedule differs" in warned


@pytest.mark.e2e  # compiles the training step (tens of seconds on 2 cores)
def test_a_compiled_run_resumes_eager_and_an_eager_one_compiled_with_the_same_losses(corpus_and_tokenizer, tmp_path):
    """The compiled step only wraps the loop's forward, so checkpoints and snapshots hold the
    model's own parameter names (no `_orig_mod.`) and either kind of run continues the other's."""
    keep = ("--checkpointing_steps", "3", "--checkpoints_total_limit", "0")
    compiled = pretraining(corpus_and_tokenizer, tmp_path / "compiled", "--torch_compile", "true", *keep)
    eager = pretraining(corpus_and_tokenizer, tmp_path / "eager", "--torch_compile", "false", *keep)
    assert compiled.compiled and not eager.compiled
    compiled.run(None)
    eager.run(None)
    saved = [name for file in (tmp_path / "compiled").rglob("*.safetensors") for name in load_file(file)]
    assert saved and not [name for name in saved if "_orig_mod" in name]  # checkpoints and snapshots
    for source, flag in (("compiled", "false"), ("eager", "true")):
        resumed_dir = tmp_path / f"{source}-resumed-{flag}"
        resumed = pretraining(corpus_and_tokenizer, resumed_dir, "--torch_compile", flag)
        resumed.run(checkpoint.checkpoint_dir(tmp_path / source, 3))
        expected, got = train_losses(tmp_path / source), train_losses(resumed_dir)
        assert got.keys() == set(range(4, STEPS + 1))
        # compiled kernels round differently from eager ones: equal to float32 noise, not bit for bit
        assert all(abs(got[step] - expected[step]) < 1e-4 for step in got), (source, expected, got)


def test_wandb_and_trackio_get_the_scalars_and_config_offline(corpus_and_tokenizer, tmp_path, monkeypatch):
    """W&B in offline mode writes its run under the run folder; Trackio its local database. Neither
    touches the network."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    monkeypatch.delitem(sys.modules, "trackio", raising=False)  # it reads TRACKIO_DIR when imported
    pytest.importorskip("wandb", reason="--report_to wandb needs the wandb package (requirements-dev.txt)")
    pytest.importorskip("trackio", reason="--report_to trackio needs the trackio package (requirements-dev.txt)")
    out = tmp_path / "run"
    reporting = ("--report_to", "tensorboard,wandb,trackio", "--max_steps", "4", "--checkpointing_steps", "2")
    pretraining(corpus_and_tokenizer, out, *reporting, "--checkpoints_total_limit", "0").run(None)
    records = read_metrics(out)
    last_train = [r for r in records if r.get("train/loss") is not None][-1]

    (run_file,) = (out / "wandb").glob("offline-run-*/run-*.wandb")
    history, config = wandb_history_and_config(run_file)
    logged = {row["_step"]: row for row in history}
    assert sorted(logged) == sorted({r["step"] for r in records})
    for record in records:  # the same scalars at the same steps as metrics.jsonl
        for name in ("train/loss", "val/loss", "train/lr"):
            if record.get(name) is not None:
                assert logged[record["step"]][name] == pytest.approx(record[name]), (record["step"], name)
    assert (
        config["learning_rate"] == 1e-3
        and config["max_steps"] == 4
        and config["report_to"] == "tensorboard,wandb,trackio"
    )
    run_id = (out / "tracker_run_id").read_text().strip()
    assert run_file.name == f"run-{run_id}.wandb"

    # A launch resuming the checkpoint of step 2 logs to the same W&B run (`wandb sync` merges them)
    pretraining(corpus_and_tokenizer, out, *reporting).run(checkpoint.checkpoint_dir(out, 2))
    first, resumed = sorted((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert first == run_file and resumed.name == run_file.name
    assert [row["_step"] for row in wandb_history_and_config(resumed)[0]] == [3, 4]

    (database,) = (tmp_path / "trackio").rglob("*.db")
    with sqlite3.connect(database) as connection:
        logged = [json.loads(row[0]) for row in connection.execute("SELECT metrics FROM metrics")]
    losses = [m["train/loss"] for m in logged if "train/loss" in m]
    assert losses and losses[-1] == pytest.approx(last_train["train/loss"])
