"""The Slurm templates, submitted to a real one-node Slurm cluster on localhost, and the grid helper.

The templates ask for GPUs; this node has none, so each submission overrides that request with
`--gpus-per-node=0` (sbatch options win over #SBATCH lines; Slurm refuses the request otherwise),
and the job gets its CPU settings through its environment: the `cpu` accelerate config,
GPUS_PER_NODE processes, no module setup. Everything else (the #SBATCH lines, lib.sh, node_launch.sh,
srun, requeue) is what a cluster user runs.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from common.config import parse_config
from common.errors import UsageError
from common.training.grid import main as grid_main
from common.training.grid import read_grid, row_arguments
from common.training.pretrain_config import PretrainConfig
from tests.helpers import CAUSAL_RUN, REPO, TINY_MODEL, read_metrics
from tests.slurm_cluster import LocalSlurm

TEMPLATES = sorted((REPO / "slurm").glob("*/*.sbatch"))
SHELL_FILES = [REPO / "slurm" / "lib.sh", REPO / "slurm" / "node_launch.sh", *TEMPLATES]
CPU_JOB = {
    "ACCELERATE_CONFIG": "accelerate_configs/cpu.yaml",
    "ENV_SETUP": "true",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "PYTHONUNBUFFERED": "1",
}
SMALL = ["--gpus-per-node=0", "--partition", "debug", "--time", "00:15:00"]  # the CPU override


# --- files --------------------------------------------------------------------------------------


def test_every_template_exists_for_both_clusters_and_passes_bash_and_shellcheck():
    names = {"pretrain.sbatch", "pretrain_multinode.sbatch", "grid.sbatch", "eval_blimp.sbatch", "finetune_glue.sbatch"}
    assert {p.name for p in TEMPLATES if p.parent.name == "borah"} == names
    assert {p.name for p in TEMPLATES if p.parent.name == "snellius"} == names
    for path in SHELL_FILES:
        assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0, path
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck); bash -n passed")
    checked = subprocess.run(
        ["shellcheck", "-s", "bash", "-x", *map(str, SHELL_FILES)], cwd=REPO, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout
    for path in TEMPLATES:  # what a user must look at is marked
        text = path.read_text()
        assert "EDIT" in text and "#SBATCH --partition=" in text and "--gpus-per-node=" in text
        if "pretrain" in path.name or "grid" in path.name:
            assert "#SBATCH --signal=B:USR1@" in text and "#SBATCH --requeue" in text


def test_data_efficiency_grid_rows_honour_every_column():
    grid = REPO / "experiments" / "data_efficiency.csv"
    rows = read_grid(grid)
    assert len(rows) == 3 * 2 * 4  # sizes x data sets x vocabularies
    seen = set()
    for index, row in enumerate(rows):
        config = parse_config(PretrainConfig, row_arguments(grid, index))
        assert config.model_size == row["model_config"] and config.dataset == row["dataset"]
        assert config.data_dir == (row["data_dir"] or None)
        assert config.num_train_epochs == float(row["epochs"])
        assert config.per_device_train_batch_size == int(row["batch_size"])
        assert config.gradient_accumulation_steps == int(row["grad_accum"])
        assert config.seq_length == int(row["seq_length"]) and config.seed == int(row["seed"])
        assert config.vocab_size == int(row["tokenizer_vocab_size"])
        assert [a.value for a in config.anchors()] == [int(m * 1e6) for m in json.loads(row["anchors"])]
        assert config.train_token_limit() == 2_000_000_000
        assert config.output_dir == f"runs/data_efficiency/{row['name']}"
        seen.add((row["model_config"], row["dataset"], row["tokenizer_vocab_size"]))
    assert len(seen) == 24
    for index in range(len(read_grid(REPO / "experiments" / "electra_moe.csv"))):
        parse_config(PretrainConfig, row_arguments(REPO / "experiments" / "electra_moe.csv", index))


def test_grid_errors_name_the_file_row_or_column(tmp_path):
    grid = tmp_path / "grid.csv"
    grid.write_text("name,model_config,learning_rat\na,20m,1e-3\n")
    with pytest.raises(UsageError, match="column\\(s\\) learning_rat are not train_pretrain.py options"):
        read_grid(grid)
    grid.write_text('name,anchors,seed\na,[-1],1\nb,"25,50",2\n')
    assert row_arguments(grid, 0) == ["--seed", "1", "--output_dir", "runs/grid/a"]  # [-1]: no anchors
    with pytest.raises(UsageError, match=f"{grid}:3: anchors '25,50' is not a JSON list"):
        row_arguments(grid, 1)
    with pytest.raises(UsageError, match="no row 2 \\(it has rows 0-1\\)"):
        row_arguments(grid, 2)


# --- a real cluster ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    reason = LocalSlurm.unavailable()
    if reason:
        pytest.skip(reason)
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm")).start()
    yield cluster
    cluster.stop()


def job_log(path: Path) -> str:
    return path.read_text() if path.exists() else f"(no log at {path})"


TINY_RUN = [
    *TINY_MODEL,
    "--synthetic_words",
    "40000",
    "--blimp_at_end",
    "false",
    "--logging_steps",
    "1",
    "--eval_steps",
    "1000",
    "--max_eval_samples",
    "32",
]


def test_grid_runs_as_a_job_array_one_row_per_task(slurm, tmp_path):
    grid = tmp_path / "tiny.csv"
    columns = [
        "name",
        "model_config",
        "dataset",
        "epochs",
        "batch_size",
        "grad_accum",
        "seq_length",
        "anchors",
        "tokenizer_vocab_size",
        "seed",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "synthetic_words",
        "blimp_at_end",
        "output_dir",
    ]
    rows = [
        ["a", "tiny", "synthetic", "1", "8", "1", "32", "[0.002,0.004]", "600", "1"],
        ["b", "tiny", "synthetic", "1", "4", "2", "16", "[-1]", "700", "2"],
    ]
    with open(grid, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([*row, "64", "2", "2", "128", "8000", "false", str(tmp_path / "runs" / row[0])])
    job = slurm.submit(
        "slurm/snellius/grid.sbatch",
        [*SMALL, "--array=0-1%2", "--cpus-per-task=1", f"--output={tmp_path}/grid-%a.out"],
        [str(grid)],
        cwd=REPO,
        export={**CPU_JOB, "GPUS_PER_NODE": "1"},
    )
    tasks = slurm.wait(job, timeout=600)
    logs = "\n".join(job_log(tmp_path / f"grid-{i}.out") for i in range(2))
    assert [t["JobState"] for t in tasks] == ["COMPLETED"] * 2, logs
    for name, vocab, seed, milestones in (("a", 600, 1, ["tokens-2K", "tokens-4K"]), ("b", 700, 2, [])):
        run = tmp_path / "runs" / name
        config = (run / "config.yaml").read_text()
        assert f"vocab_size: {vocab}" in config and f"seed: {seed}" in config, logs
        assert sorted(p.name for p in (run / "milestones").glob("*")) == milestones
        assert (run / "final" / "milestone.json").is_file()
    config = (tmp_path / "runs" / "b" / "config.yaml").read_text()
    assert "gradient_accumulation_steps: 2" in config and "seq_length: 16" in config
    assert "per_device_train_batch_size: 4" in config and "num_train_epochs: 1.0" in config
    # the 4K-token limit of row a (its last anchor): 4000 / (8 x 32) tokens a step -> 16 steps
    assert json.loads((tmp_path / "runs" / "a" / "final" / "milestone.json").read_text())["step"] == 16


def test_time_limit_warning_checkpoints_requeues_and_resumes_to_the_same_losses(slurm, tmp_path, causal_run):
    """USR1 to the batch shell (what --signal=B:USR1@600 sends before the time limit) under the
    multi-node template on one node: srun passes it on, the trainer checkpoints, the job requeues
    itself and resumes; it ends where the uninterrupted session fixture run with the same
    arguments (causal_run) ended: the same final training and validation losses."""
    out = tmp_path / "preempted"
    log = tmp_path / "job.out"
    job = slurm.submit(
        "slurm/borah/pretrain_multinode.sbatch",
        [*SMALL, "--nodes=1", "--cpus-per-task=2", f"--output={log}"],
        [*CAUSAL_RUN, "--output_dir", str(out)],
        cwd=REPO,
        export={**CPU_JOB, "GPUS_PER_NODE": "1"},
    )
    deadline = time.time() + 300
    # Signal early (its first milestone, step 10): the 60 steps take about a second on 2 cores, and a
    # signal that lands after the last step finds a finished run, which is rightly not requeued.
    while not ((out / "metrics.jsonl").exists() and any(r["step"] >= 10 for r in read_metrics(out))):
        assert time.time() < deadline, job_log(log)
        time.sleep(0.05)
    slurm.run(["scancel", "--signal=USR1", "--batch", job])
    (task,) = slurm.wait(job, timeout=600, while_pending=slurm.start_now)
    text = job_log(log)
    assert task["JobState"] == "COMPLETED" and task["Restarts"] == "1", f"{task}\n{text}"
    assert "requeueing job" in text and "restart 1" in text and f"{out} finished" in text
    assert "babytrain: 1 nodes x 1 processes, rendezvous at" in text
    resumed = re.search(r"resumed from \S+ at step (\d+)", text)
    assert resumed and 10 <= int(resumed.group(1)) < 60, text
    ours, reference = (json.loads((run / "final" / "milestone.json").read_text()) for run in (out, causal_run))
    assert (ours["step"], ours["train_loss"], ours["val_loss"]) == (
        reference["step"],
        reference["train_loss"],
        reference["val_loss"],
    )


def test_eval_template_scores_a_run(slurm, tmp_path, causal_run):
    run = shutil.copytree(causal_run, tmp_path / "run")  # other tests expect the fixture run unscored
    log = tmp_path / "eval.out"
    job = slurm.submit(
        "slurm/snellius/eval_blimp.sbatch",
        [*SMALL, "--cpus-per-task=1", f"--output={log}"],
        ["--run_dir", str(run), "--paradigms", "anaphor_number_agreement"],
        cwd=REPO,
        export={**CPU_JOB, "GPUS_PER_NODE": "1"},
    )
    (task,) = slurm.wait(job, timeout=300)
    assert task["JobState"] == "COMPLETED", job_log(log)
    assert (run / "blimp" / "synthetic" / "learning_curve.png").is_file()
    assert (
        len(list(run.glob("*/*/blimp/synthetic/results.json")) + list(run.glob("final/blimp/synthetic/results.json")))
        == 4
    )


def test_the_grid_command_prints_a_rows_arguments_or_the_count(tmp_path, capsys):
    grid = tmp_path / "grid.csv"
    grid.write_text('name,model_config,anchors\nsmall,tiny,"[1,2]"\nbig,60m,[-1]\n')
    grid_main([str(grid), "--count"])
    grid_main([str(grid), "0"])
    assert capsys.readouterr().out.splitlines() == [
        "2",
        "--model_size tiny --milestones 1M,2M --max_train_tokens 2M --output_dir runs/grid/small",
    ]
    with pytest.raises(UsageError, match="row index 'x' is not a whole number"):
        grid_main([str(grid), "x"])
    with pytest.raises(UsageError, match="usage: python -m common.training.grid"):
        grid_main([str(grid)])


# A training command that checkpoints (exits 75) on either signal, as train_pretrain.py does.
FAKE_TRAINER = "trap 'echo checkpoint written; exit 75' USR1 TERM; while true; do sleep 0.05; done"


@pytest.mark.parametrize("signal_name, requeued", [("USR1", True), ("TERM", False)])
def test_the_time_limit_warning_requeues_and_sigterm_never_does(tmp_path, signal_name, requeued):
    """slurm/lib.sh's run_requeueable in a real shell, with a stand-in for scontrol that records
    what it was asked: SIGUSR1 (the time-limit warning) checkpoints and requeues, SIGTERM
    (scancel, pre-emption) checkpoints and leaves the decision to Slurm."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/bash\necho "$@" >> {tmp_path / "scontrol.log"}\n')
    (bin_dir / "scontrol").chmod(0o755)
    script = f'source slurm/lib.sh; run_requeueable {tmp_path / "run"} bash -c "{FAKE_TRAINER}"; echo "status $?"'
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "42"}
    shell = subprocess.Popen(["bash", "-c", script], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)  # the trainer is running
    shell.send_signal(getattr(signal, f"SIG{signal_name}"))
    out, _ = shell.communicate(timeout=30)
    assert "checkpoint written" in out
    log = tmp_path / "scontrol.log"
    if requeued:
        assert log.read_text() == "requeue 42\n" and out.strip().endswith("status 0")
    else:
        assert not log.exists() and "not requeued" in out and out.strip().endswith("status 75")


@pytest.mark.parametrize(
    "text, message",
    [
        ("name,seed\na,1\nb,2,3\n", "grid.csv:3: 3 cells, but the header names 2"),
        ("name,seed,seed\na,1,2\n", "column\\(s\\) seed appear twice"),
        ("name,seed\na,1\na,2\n", "run name\\(s\\) a appear twice; two runs would share a folder"),
    ],
)
def test_a_grid_that_would_run_something_else_than_it_says_is_refused(tmp_path, text, message):
    grid = tmp_path / "grid.csv"
    grid.write_text(text)
    with pytest.raises(UsageError, match=message):
        read_grid(grid)
