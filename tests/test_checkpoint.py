"""Tests for common/training/checkpoint.py: finding, pruning, compatibility checks, and saving with accelerate."""

import json
import os

import accelerate
import pytest
import torch

from common.errors import UsageError
from common.files import HOST
from common.training import checkpoint
from common.training.checkpoint import (
    MANIFEST,
    STATE_FILE,
    abandon_newer,
    check_compatible,
    checkpoint_dir,
    complete_checkpoints,
    find_resume,
    is_legacy,
    problem_with,
    prune,
    read_state,
    write_manifest,
)
from common.training.rundir import (
    LOCK_FILE,
    Claim,
    claim_output_dir,
    default_run_dir,
    hold_run_folder,
    is_finished,
    make_room,
    take_lock,
)
from tests.helpers import dead_pid


def make_checkpoint(output_dir, step: int, state: dict | None = None, manifest: bool = True):
    """A checkpoint folder as save() leaves it (weights, trainer state, manifest last); without
    `manifest`, as checkpoints were written before they carried one."""
    folder = checkpoint_dir(output_dir, step)
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * (step % 50 + 1))
    (folder / STATE_FILE).write_text(json.dumps(state or {"step": step}), encoding="utf-8")
    if manifest:
        write_manifest(folder)
    return folder


def names(paths):
    return [p.name for p in paths]


def test_checkpoint_dir_is_zero_padded_under_checkpoints(tmp_path):
    assert checkpoint_dir(tmp_path, 42) == tmp_path / "checkpoints" / "step-00000042"


def test_no_checkpoints_folder_means_no_checkpoints(tmp_path):
    assert complete_checkpoints(tmp_path) == []


def test_complete_checkpoints_are_sorted_by_step_not_by_name(tmp_path):
    for step in (10, 2, 100_000_000, 9):
        make_checkpoint(tmp_path, step)
    assert names(complete_checkpoints(tmp_path)) == [
        "step-00000002",
        "step-00000009",
        "step-00000010",
        "step-100000000",
    ]


def test_temporary_and_incomplete_folders_are_not_checkpoints(tmp_path):
    make_checkpoint(tmp_path, 1)
    root = tmp_path / "checkpoints"
    tmp = root / ".tmp-step-00000005"
    tmp.mkdir()
    (tmp / STATE_FILE).write_text("{}", encoding="utf-8")  # not renamed into place yet
    (root / "step-00000003").mkdir()  # no manifest: never finished
    (root / "other").mkdir()
    (root / "other" / STATE_FILE).write_text("{}", encoding="utf-8")
    assert names(complete_checkpoints(tmp_path)) == ["step-00000001"]


def test_no_resume_when_not_asked(tmp_path):
    make_checkpoint(tmp_path, 1)
    assert find_resume(tmp_path, None) is None
    assert find_resume(tmp_path, "") is None


def test_auto_resumes_from_the_newest_complete_checkpoint(tmp_path):
    for step in (5, 20, 15):
        make_checkpoint(tmp_path, step)
    (tmp_path / "checkpoints" / ".tmp-step-00000025").mkdir()
    assert find_resume(tmp_path, "auto") == checkpoint_dir(tmp_path, 20)


def test_auto_without_checkpoints_is_a_fresh_start(tmp_path):
    assert find_resume(tmp_path, "auto") is None
    (tmp_path / "checkpoints").mkdir()
    assert find_resume(tmp_path, "auto") is None


def test_auto_with_only_broken_checkpoints_refuses_to_start_again_silently(tmp_path):
    (tmp_path / "checkpoints" / "step-00000004").mkdir(parents=True)
    with pytest.raises(UsageError, match=r"no checkpoint in .* is complete \(step-00000004 \(no manifest.json"):
        find_resume(tmp_path, "auto")


def test_auto_skips_a_checkpoint_whose_files_do_not_verify_and_names_it(tmp_path, caplog):
    make_checkpoint(tmp_path, 10)
    truncated = make_checkpoint(tmp_path, 20)
    with open(truncated / "model.safetensors", "r+b") as weights:  # a kill or a full disk cut it short
        weights.truncate(100)
    altered = make_checkpoint(tmp_path, 30)
    data = bytearray((altered / "model.safetensors").read_bytes())
    data[7] ^= 0xFF  # same size, other bytes
    (altered / "model.safetensors").write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="babytrain"):
        assert find_resume(tmp_path, "auto") == checkpoint_dir(tmp_path, 10)
    warning = caplog.records[-1].getMessage()
    assert "step-00000030 (model.safetensors does not match its digest in the manifest)" in warning
    assert "step-00000020 (model.safetensors has 100 bytes, the manifest says 5376)" in warning
    with pytest.raises(UsageError, match="step-00000020: not a complete checkpoint \\(model.safetensors has 100"):
        find_resume(tmp_path, str(truncated))


def test_a_checkpoint_from_before_manifests_is_resumed_unverified(tmp_path, caplog):
    legacy = make_checkpoint(tmp_path, 7, manifest=False)
    assert is_legacy(legacy) and problem_with(legacy) is None
    with caplog.at_level("WARNING", logger="babytrain"):
        assert find_resume(tmp_path, "auto") == legacy
    assert "written before checkpoints carried a manifest" in caplog.text


def test_explicit_path_to_a_complete_checkpoint(tmp_path):
    folder = make_checkpoint(tmp_path / "elsewhere", 7)
    assert find_resume(tmp_path, str(folder)) == folder


def test_explicit_path_without_state_is_a_usage_error(tmp_path):
    folder = tmp_path / "checkpoints" / "step-00000007"
    folder.mkdir(parents=True)
    with pytest.raises(UsageError, match="--resume_from_checkpoint .*step-00000007: not a complete checkpoint"):
        find_resume(tmp_path, str(folder))
    with pytest.raises(UsageError, match="--resume_from_checkpoint"):
        find_resume(tmp_path, str(tmp_path / "does-not-exist"))


@pytest.mark.parametrize("keep, kept", [(1, [4]), (2, [3, 4]), (3, [2, 3, 4]), (10, [1, 2, 3, 4])])
def test_prune_keeps_the_newest(tmp_path, keep, kept):
    for step in (1, 2, 3, 4):
        make_checkpoint(tmp_path, step)
    prune(tmp_path, keep)
    assert names(complete_checkpoints(tmp_path)) == [f"step-{s:08d}" for s in kept]
    assert sorted(names((tmp_path / "checkpoints").iterdir())) == [f"step-{s:08d}" for s in kept]


@pytest.mark.parametrize("keep", [None, 0])
def test_prune_without_a_limit_keeps_everything(tmp_path, keep):
    for step in (1, 2, 3):
        make_checkpoint(tmp_path, step)
    prune(tmp_path, keep)
    assert len(complete_checkpoints(tmp_path)) == 3


def test_prune_leaves_incomplete_folders_alone(tmp_path):
    for step in (1, 2, 3):
        make_checkpoint(tmp_path, step)
    in_progress = tmp_path / "checkpoints" / ".tmp-step-00000004"
    in_progress.mkdir()
    prune(tmp_path, 1)
    assert names(complete_checkpoints(tmp_path)) == ["step-00000003"]
    assert in_progress.is_dir()


def test_read_state_returns_the_saved_json(tmp_path):
    folder = make_checkpoint(tmp_path, 3, {"step": 3, "cursor": 96, "made_for": {"vocab_size": 400}})
    assert read_state(folder) == {"step": 3, "cursor": 96, "made_for": {"vocab_size": 400}}


MADE_FOR = {"model_type": "llama", "hidden_size": 64, "tokenizer_hash": "abc123"}


def test_compatible_checkpoint_passes(tmp_path):
    check_compatible(tmp_path, {"made_for": dict(MADE_FOR, extra="ignored")}, MADE_FOR)


@pytest.mark.parametrize("key", ["model_type", "hidden_size", "tokenizer_hash"])
def test_incompatible_checkpoint_names_the_differing_key(tmp_path, key):
    saved = dict(MADE_FOR, **{key: "something else"})
    with pytest.raises(UsageError) as error:
        check_compatible(tmp_path, {"made_for": saved}, MADE_FOR)
    message = str(error.value)
    assert message.startswith("--resume_from_checkpoint ")
    assert f"{key}='something else'" in message
    assert f"{key}={MADE_FOR[key]!r}" in message
    assert all(f"{other}=" not in message for other in MADE_FOR if other != key)


def test_checkpoint_without_made_for_is_incompatible(tmp_path):
    with pytest.raises(UsageError, match="was not made by train_pretrain.py"):
        check_compatible(tmp_path, {"step": 3}, MADE_FOR)


def test_a_key_older_checkpoints_did_not_record_is_not_held_against_them(tmp_path):
    check_compatible(tmp_path, {"made_for": MADE_FOR}, dict(MADE_FOR, seed=1, corpus_fingerprint="f00"))


def test_a_masked_checkpoint_from_before_cls_windows_is_known_as_plain(tmp_path):
    check_compatible(tmp_path, {"made_for": MADE_FOR}, dict(MADE_FOR, windows="plain"))  # causal: as before
    with pytest.raises(UsageError, match="it was made for windows='plain', this run has windows='cls_sep'"):
        check_compatible(tmp_path, {"made_for": MADE_FOR}, dict(MADE_FOR, windows="cls_sep"))


# --- save with a real (CPU) Accelerator --------------------------------------------------------


@pytest.fixture(scope="module")
def prepared():
    accelerator = accelerate.Accelerator(cpu=True)
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model, optimizer = accelerator.prepare(model, optimizer)
    return accelerator, model, optimizer


def train_one_step(model, optimizer):
    optimizer.zero_grad()
    model(torch.ones(3, 4)).sum().backward()
    optimizer.step()


def test_save_writes_a_complete_checkpoint_without_leftovers(prepared, tmp_path):
    accelerator, model, _ = prepared
    state = {"step": 3, "cursor": 12, "made_for": {"hidden_size": 4}}
    final = checkpoint.save(accelerator, tmp_path, 3, state, keep=None)
    assert final == checkpoint_dir(tmp_path, 3)
    assert read_state(final) == state
    assert any(p.suffix in (".safetensors", ".bin") for p in final.iterdir())
    assert names((tmp_path / "checkpoints").iterdir()) == ["step-00000003"]
    assert find_resume(tmp_path, "auto") == final


def test_save_replaces_a_stale_temporary_folder_and_a_broken_copy_but_keeps_a_complete_one(prepared, tmp_path):
    accelerator, _, _ = prepared
    stale = tmp_path / "checkpoints" / ".tmp-step-00000005"
    stale.mkdir(parents=True)
    (stale / "junk.txt").write_text("from a crashed save", encoding="utf-8")
    broken = make_checkpoint(tmp_path, 5, {"step": 5, "old": True})
    (broken / "model.safetensors").write_bytes(b"cut short")
    final = checkpoint.save(accelerator, tmp_path, 5, {"step": 5}, keep=None)
    assert read_state(final) == {"step": 5} and problem_with(final) is None
    assert not (final / "junk.txt").exists()
    assert not stale.exists()
    # A run resumed at its last step saves that step again: the complete checkpoint stays as it was.
    stamp = (final / MANIFEST).stat().st_mtime_ns
    assert checkpoint.save(accelerator, tmp_path, 5, {"step": 5, "again": True}, keep=None) == final
    assert read_state(final) == {"step": 5} and (final / MANIFEST).stat().st_mtime_ns == stamp


def test_what_came_after_the_resumed_step_is_set_aside_with_its_milestones_and_records(tmp_path):
    for step in (10, 20, 30):
        make_checkpoint(tmp_path, step)
    for name, step in (("tokens-1K", 5), ("tokens-2K", 25)):
        (tmp_path / "milestones" / name).mkdir(parents=True)
        (tmp_path / "milestones" / name / "milestone.json").write_text(json.dumps({"step": step}))
    (tmp_path / "metrics.jsonl").write_text('{"step": 10}\n{"step": 20}\n{"step": 30}\n')
    kept_bytes = len('{"step": 10}\n')
    folder = abandon_newer(tmp_path, 10, kept_bytes)
    assert folder.parent == tmp_path / "checkpoints" and folder.name.startswith("abandoned-")
    assert names(complete_checkpoints(tmp_path)) == ["step-00000010"]
    assert sorted(names(folder.iterdir())) == ["metrics.jsonl", "milestones", "step-00000020", "step-00000030"]
    assert names((folder / "milestones").iterdir()) == ["tokens-2K"]
    assert names((tmp_path / "milestones").iterdir()) == ["tokens-1K"]
    assert (folder / "metrics.jsonl").read_text() == '{"step": 20}\n{"step": 30}\n'
    assert abandon_newer(tmp_path, 10, None) is None  # nothing newer: nothing moved


def test_save_prunes_to_the_newest_k(prepared, tmp_path):
    accelerator, _, _ = prepared
    for step in (1, 2, 3, 4):
        checkpoint.save(accelerator, tmp_path, step, {"step": step}, keep=2)
    assert sorted(names((tmp_path / "checkpoints").iterdir())) == ["step-00000003", "step-00000004"]


def test_load_restores_the_saved_weights(prepared, tmp_path):
    accelerator, model, optimizer = prepared
    final = checkpoint.save(accelerator, tmp_path, 1, {"step": 1}, keep=None)
    saved = {k: v.clone() for k, v in accelerator.unwrap_model(model).state_dict().items()}
    train_one_step(model, optimizer)
    assert not torch.equal(accelerator.unwrap_model(model).weight, saved["weight"])
    checkpoint.load(accelerator, final)
    for key, value in accelerator.unwrap_model(model).state_dict().items():
        assert torch.equal(value, saved[key])


# --- claiming a run folder (common/training/rundir.py) -------------------------------------------


def test_a_new_or_empty_folder_starts_fresh(tmp_path, accelerator):
    assert claim_output_dir(accelerator, tmp_path / "new", overwrite=False, resume_from=None) == Claim(None, False)
    (tmp_path / "empty").mkdir()
    assert claim_output_dir(accelerator, tmp_path / "empty", overwrite=False, resume_from="auto") == Claim(None, False)


def test_auto_resumes_the_newest_complete_checkpoint(tmp_path, accelerator):
    make_checkpoint(tmp_path, 10)
    newest = make_checkpoint(tmp_path, 20)
    (tmp_path / "checkpoints" / ".tmp-step-00000030").mkdir()  # a killed save, cleaned up
    assert claim_output_dir(accelerator, tmp_path, overwrite=False, resume_from="auto") == Claim(newest, False)
    assert not (tmp_path / "checkpoints" / ".tmp-step-00000030").exists()


def test_a_folder_with_work_in_it_is_refused_and_left_as_it_was(tmp_path, accelerator):
    make_checkpoint(tmp_path, 10)
    with pytest.raises(UsageError, match="is not empty; pass --resume_from_checkpoint auto"):
        claim_output_dir(accelerator, tmp_path, overwrite=False, resume_from=None)
    (tmp_path / "final").mkdir()
    (tmp_path / "final" / "milestone.json").write_text("{}")
    with pytest.raises(UsageError, match="holds a finished run"):
        claim_output_dir(accelerator, tmp_path, overwrite=False, resume_from="auto")
    with pytest.raises(UsageError, match="--overwrite_output_dir and --resume_from_checkpoint contradict"):
        claim_output_dir(accelerator, tmp_path, overwrite=True, resume_from="auto")
    claim = claim_output_dir(accelerator, tmp_path, overwrite=True, resume_from=None)
    assert claim == Claim(None, replace=True)
    assert is_finished(tmp_path) and complete_checkpoints(tmp_path)  # deciding deletes nothing
    make_room(accelerator, tmp_path, claim, None)  # every input checked: now the old run goes
    assert list(tmp_path.iterdir()) == []


def test_one_run_per_folder(tmp_path, accelerator, monkeypatch):
    with hold_run_folder(accelerator, tmp_path / "run"):
        with pytest.raises(UsageError, match=f"is in use by pid {os.getpid()} on host {HOST}"):
            take_lock(tmp_path / "run")
    assert not (tmp_path / "run").exists()  # released, and the folder it made (still empty) removed
    (tmp_path / "run").mkdir()
    lock = tmp_path / "run" / LOCK_FILE
    lock.write_text(json.dumps({"host": HOST, "pid": dead_pid(), "since": "yesterday"}))  # a killed launch
    assert take_lock(tmp_path / "run") == lock
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    lock.write_text(json.dumps({"host": "othernode", "pid": 1, "since": "09:00"}))
    with pytest.raises(UsageError, match=r"in use by pid 1 on host othernode, since 09:00; .* delete .*\.lock"):
        take_lock(tmp_path / "run")
    lock.write_text(json.dumps({"host": "othernode", "pid": 1, "slurm_job_id": "77"}))
    monkeypatch.setenv("SLURM_JOB_ID", "77")  # the same job, requeued onto another node
    assert take_lock(tmp_path / "run") == lock


def test_default_run_dir_names_the_run_and_its_start(monkeypatch):
    monkeypatch.setattr("time.strftime", lambda pattern: "20261201-101500")
    assert default_run_dir("llama", "tiny", "wikitext:wikitext-103-raw-v1").as_posix() == (
        "runs/llama-tiny-wikitext_wikitext-103-raw-v1-20261201-101500"
    )
