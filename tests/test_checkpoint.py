"""Tests for common/training/checkpoint.py: finding, pruning, compatibility checks, and saving with accelerate."""

import json

import accelerate
import pytest
import torch

from common.errors import UsageError
from common.training import checkpoint
from common.training.checkpoint import (
    STATE_FILE,
    check_compatible,
    checkpoint_dir,
    complete_checkpoints,
    find_resume,
    prune,
    read_state,
)
from common.training.rundir import claim_output_dir, default_run_dir, is_finished


def make_checkpoint(output_dir, step: int, state: dict | None = None):
    folder = checkpoint_dir(output_dir, step)
    folder.mkdir(parents=True)
    (folder / STATE_FILE).write_text(json.dumps(state or {"step": step}), encoding="utf-8")
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
    (tmp / STATE_FILE).write_text("{}", encoding="utf-8")  # written last, but not renamed yet
    (root / "step-00000003").mkdir()  # crashed before trainer_state.json
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
    (tmp_path / "checkpoints" / "step-00000004").mkdir(parents=True)
    assert find_resume(tmp_path, "auto") is None


def test_explicit_path_to_a_complete_checkpoint(tmp_path):
    folder = make_checkpoint(tmp_path / "elsewhere", 7)
    assert find_resume(tmp_path, str(folder)) == folder


def test_explicit_path_without_state_is_a_usage_error(tmp_path):
    folder = tmp_path / "checkpoints" / "step-00000007"
    folder.mkdir(parents=True)
    with pytest.raises(UsageError, match="--resume_from_checkpoint .*step-00000007.*trainer_state.json"):
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
    with pytest.raises(UsageError, match="model_type=None"):
        check_compatible(tmp_path, {"step": 3}, MADE_FOR)


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


def test_save_replaces_a_stale_temporary_folder_and_an_older_copy(prepared, tmp_path):
    accelerator, _, _ = prepared
    stale = tmp_path / "checkpoints" / ".tmp-step-00000005"
    stale.mkdir(parents=True)
    (stale / "junk.txt").write_text("from a crashed save", encoding="utf-8")
    make_checkpoint(tmp_path, 5, {"step": 5, "old": True})
    final = checkpoint.save(accelerator, tmp_path, 5, {"step": 5}, keep=None)
    assert read_state(final) == {"step": 5}
    assert not (final / "junk.txt").exists()
    assert not stale.exists()


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
    assert claim_output_dir(accelerator, tmp_path / "new", overwrite=False, resume_from=None) is None
    (tmp_path / "empty").mkdir()
    assert claim_output_dir(accelerator, tmp_path / "empty", overwrite=False, resume_from="auto") is None


def test_auto_resumes_the_newest_complete_checkpoint(tmp_path, accelerator):
    make_checkpoint(tmp_path, 10)
    newest = make_checkpoint(tmp_path, 20)
    (checkpoint_dir(tmp_path, 30)).mkdir()  # no state file: incomplete
    assert claim_output_dir(accelerator, tmp_path, overwrite=False, resume_from="auto") == newest


def test_a_folder_with_work_in_it_is_refused_and_left_as_it_was(tmp_path, accelerator):
    make_checkpoint(tmp_path, 10)
    with pytest.raises(UsageError, match="is not empty; pass --resume_from_checkpoint auto"):
        claim_output_dir(accelerator, tmp_path, overwrite=False, resume_from=None)
    (tmp_path / "final").mkdir()
    (tmp_path / "final" / "milestone.json").write_text("{}")
    with pytest.raises(UsageError, match="holds a finished run"):
        claim_output_dir(accelerator, tmp_path, overwrite=False, resume_from="auto")
    assert is_finished(tmp_path) and complete_checkpoints(tmp_path)  # nothing deleted
    assert claim_output_dir(accelerator, tmp_path, overwrite=True, resume_from="auto") is None
    assert list(tmp_path.iterdir()) == []  # --overwrite_output_dir: the old run is gone


def test_default_run_dir_names_the_run_and_its_start(monkeypatch):
    monkeypatch.setattr("time.strftime", lambda pattern: "20261201-101500")
    assert default_run_dir("llama", "tiny", "wikitext:wikitext-103-raw-v1").as_posix() == (
        "runs/llama-tiny-wikitext_wikitext-103-raw-v1-20261201-101500"
    )
