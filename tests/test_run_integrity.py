"""A run on a pre-emptible cluster: killed at any moment it continues exactly, nothing complete is
ever lost, a resumed run is the same run (or is refused), and one launch at a time holds a folder.

Faults are caused, not imagined: SIGKILL at chosen moments of real launches (inside a checkpoint,
a milestone or final/ write, while packing, between steps), a torn last line in metrics.jsonl, a
file-size limit that makes a checkpoint write fail, two launches racing for one folder. Saves are
slowed in these tests (BABYTRAIN_TEST_SLOW_PUBLISH) so that a kill can land inside one.
"""

from __future__ import annotations

import json
import resource
import shutil
import signal
import sys

import pytest
from transformers import AutoModelForCausalLM

from tests.helpers import (
    TINY_MODEL,
    error_line,
    quiet_env,
    read_metrics,
    run_in_process,
    run_main_in_process,
    run_script,
    run_until,
)

pytestmark = pytest.mark.e2e  # every test here trains a run

STEPS = 40
RUN = [
    *TINY_MODEL,
    "--synthetic_words",
    "40000",
    "--blimp_at_end",
    "false",
    "--max_steps",
    str(STEPS),
    "--logging_steps",
    "1",
    "--eval_steps",
    "10",
    "--checkpointing_steps",
    "5",
    "--checkpoints_total_limit",
    "1",  # the harshest setting: one complete checkpoint at a time
    "--save_init",
    "--milestones",
    "2K,6K",
]


def run_args(out, cache) -> list[str]:
    return [*RUN, "--output_dir", str(out), "--cache_dir", str(cache), "--resume_from_checkpoint", "auto"]


def leftovers(folder) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if p.name.startswith((".tmp-", ".old-")))


def records_without_timings(output_dir) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in read_metrics(output_dir)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, and the cache every launch here shares."""
    root = tmp_path_factory.mktemp("reference")
    run_in_process("train_pretrain.py", run_args(root / "run", root / "cache"), capsys=None)
    return root / "run", root / "cache"


def present(folder, prefix: str):
    return lambda: folder.is_dir() and any(p.name.startswith(prefix) for p in folder.iterdir())


def logged_step(out, step: int):
    return lambda: (
        (out / "metrics.jsonl").exists()
        and any(r["step"] >= step and "train/loss" in r for r in read_metrics(out, strict=False))
    )


def test_killed_anywhere_the_run_continues_exactly(reference, tmp_path, capsys):
    ref, cache = reference
    out = tmp_path / "run"
    slow = quiet_env(BABYTRAIN_TEST_SLOW_PUBLISH="0.15")
    private_cache = tmp_path / "cache"  # without the packed tokens: the first launch packs, and is killed doing it
    shutil.copytree(cache, private_cache)
    shutil.rmtree(private_cache / "tokens")
    command = [sys.executable, "train_pretrain.py", *run_args(out, private_cache)]
    moments = [
        ("while packing", command, present(private_cache / "tokens", ".tmp-")),
        ("between two steps", command, logged_step(out, 7)),
        ("inside a checkpoint write", command, present(out / "checkpoints", ".tmp-")),
        ("inside a milestone write", command, lambda: present(out / "milestones", ".tmp-tokens-6K")()),
        ("inside final/'s write", command, present(out, ".tmp-final")),
    ]  # fmt: skip
    for moment, launch, fire in moments:
        status, stderr, fired = run_until(launch, fire, env=slow)
        assert fired and status == -9, f"not killed {moment} (status {status})\n{stderr[-3000:]}"
        if moment == "between two steps":  # a kill in the middle of an append tears the last line
            with open(out / "metrics.jsonl", "a", encoding="utf-8") as records:
                records.write('{"step": 8, "train/lo')
    assert not (out / "final").exists()
    finished = run_in_process("train_pretrain.py", run_args(out, private_cache), capsys)
    assert "resumed from" in finished.stderr

    assert records_without_timings(out) == records_without_timings(ref)  # every record once, the same losses
    assert sorted(r["step"] for r in read_metrics(out) if "train/loss" in r) == list(range(1, STEPS + 1))
    assert json.loads((out / "final" / "milestone.json").read_text())["step"] == STEPS
    assert (out / "final" / "model.safetensors").read_bytes() == (ref / "final" / "model.safetensors").read_bytes()
    AutoModelForCausalLM.from_pretrained(out / "final")
    for name in ("init", "tokens-2K", "tokens-6K"):
        info = json.loads((out / "milestones" / name / "milestone.json").read_text())
        assert info == json.loads((ref / "milestones" / name / "milestone.json").read_text())
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-00000040"]
    assert leftovers(out) == [] and leftovers(private_cache) == []
    assert not (out / ".lock").exists()
    assert len((out / "launches.jsonl").read_text().splitlines()) == 5  # the launches that got past validation


def test_a_full_disk_during_a_checkpoint_keeps_the_older_one_and_the_next_launch_resumes(reference, tmp_path):
    ref, cache = reference
    out = tmp_path / "run"
    args = [*run_args(out, cache), "--checkpoints_total_limit", "0"]
    status, _, _ = run_until([sys.executable, "train_pretrain.py", *args], logged_step(out, 12))
    assert status == -9 and (out / "checkpoints" / "step-00000010" / "manifest.json").is_file()
    before = sorted(p.name for p in (out / "checkpoints").iterdir())
    limit = 200_000  # bytes a file may grow to: smaller than the optimizer state of a checkpoint

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    full = run_script("train_pretrain.py", args, check=False, preexec_fn=small_files)
    assert full.returncode == 1, full.stderr[-3000:]
    assert "File too large" in error_line(full) and "free some space and launch again" in error_line(full)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before  # intact, nothing half-written
    run_in_process("train_pretrain.py", args, capsys=None)
    assert records_without_timings(out) == records_without_timings(ref)


def test_resuming_an_older_checkpoint_sets_the_newer_trajectory_aside(reference, tmp_path, capsys):
    ref, cache = reference
    out = tmp_path / "run"
    args = [*run_args(out, cache), "--checkpoints_total_limit", "0"]
    status, _, _ = run_until([sys.executable, "train_pretrain.py", *args], logged_step(out, 27))
    assert status == -9
    older = out / "checkpoints" / "step-00000010"
    explicit = [*args[:-2], "--resume_from_checkpoint", str(older)]
    assert run_main_in_process("train_pretrain.py", explicit, capsys)[0] == 0
    (abandoned,) = (out / "checkpoints").glob("abandoned-*")
    assert {"step-00000015", "step-00000020", "step-00000025"} <= {p.name for p in abandoned.iterdir()}
    assert (abandoned / "milestones" / "tokens-6K").is_dir()  # taken at step 12, after the resumed step
    assert (abandoned / "metrics.jsonl").is_file()
    assert records_without_timings(out) == records_without_timings(ref)  # the new trajectory, each record once


def test_one_launch_at_a_time_holds_a_folder(reference, tmp_path, capsys):
    _, cache = reference
    out = tmp_path / "run"
    first = run_until(
        [sys.executable, "train_pretrain.py", *run_args(out, cache)],
        lambda: present(out / "checkpoints", ".tmp-")() and _second_launch_refused(out, cache, capsys),
        env=quiet_env(BABYTRAIN_TEST_SLOW_PUBLISH="1"),
    )
    assert first[2], "the second launch was not refused while the first held the folder"
    status, error = run_main_in_process("train_pretrain.py", run_args(out, cache), capsys)  # the first is dead
    assert status == 0 and "taking over the lock" not in error


def _second_launch_refused(out, cache, capsys) -> bool:
    status, error = run_main_in_process("train_pretrain.py", run_args(out, cache), capsys)
    assert status == 2 and "is in use by pid" in error, error
    return True


def test_a_resume_that_would_be_another_run_is_refused_and_changes_nothing(reference, tmp_path, capsys):
    ref, cache = reference
    out = tmp_path / "run"
    shutil.copytree(ref, out)
    shutil.rmtree(out / "final")  # unfinished: its last checkpoint is there to resume
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    for flags, changed in (
        (["--seed", "7"], "seed=42, this run has seed=7"),
        (["--seq_length", "16"], "seq_length=32"),
        (["--synthetic_words", "50000"], "corpus_fingerprint="),
    ):
        status, error = run_main_in_process("train_pretrain.py", [*run_args(out, cache), *flags], capsys)
        assert status == 2 and changed in error, error
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # not even config.yaml or tokenizer/


def test_a_resume_uses_the_runs_own_tokenizer_whatever_the_cache_holds(reference, tmp_path, capsys):
    ref, cache = reference
    out = tmp_path / "run"
    shutil.copytree(ref, out)
    shutil.rmtree(out / "final")
    status, error = run_main_in_process(
        "train_pretrain.py", [*run_args(out, tmp_path / "an_empty_scratch_cache"), "--max_steps", str(STEPS)], capsys
    )
    assert status == 0, error
    assert not (tmp_path / "an_empty_scratch_cache" / "tokenizers").exists()  # nothing retrained


def test_a_signal_while_preparing_ends_the_launch_cleanly(reference, tmp_path):
    _, cache = reference
    out = tmp_path / "run"
    fresh_cache = tmp_path / "cache"
    status, stderr, fired = run_until(
        [sys.executable, "train_pretrain.py", *run_args(out, fresh_cache)],
        present(fresh_cache / "tokenizers", ".tmp-"),  # while the trained tokenizer is being saved
        signal_number=signal.SIGUSR1,  # as Slurm sends it before the time limit
        env=quiet_env(BABYTRAIN_TEST_SLOW_PUBLISH="0.5"),
    )
    assert fired and status == 75, stderr[-3000:]
    assert "before training; launch again to continue" in stderr
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == []  # nothing of the run written
    assert leftovers(fresh_cache) == []


def test_overwrite_deletes_nothing_until_every_input_is_good(reference, tmp_path, capsys):
    ref, cache = reference
    out = tmp_path / "run"
    shutil.copytree(ref, out)  # a finished run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    typo = [*RUN, "--output_dir", str(out), "--cache_dir", str(cache), "--overwrite_output_dir",
            "--dataset", "text", "--data_files", str(tmp_path / "storiess.txt")]  # fmt: skip
    status, error = run_main_in_process("train_pretrain.py", typo, capsys)
    assert status == 2 and "storiess.txt" in error
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # the finished run is all there
