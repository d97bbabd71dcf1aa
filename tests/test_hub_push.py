"""train_pretrain.py --push_to_hub against a local fake of the Hub (tests/fake_hub.py, on loopback,
reached through HF_ENDPOINT): a branch per milestone, final/ on main, a model card, a retry after
an injected failure, --milestone_store hub, and the token in no file of the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import huggingface_hub
import pytest
from huggingface_hub import HfApi

from common.config import parse_config
from common.errors import UsageError
from common.training.hub import HubPusher, model_card
from common.training.pretrain_config import PretrainConfig
from tests.fake_hub import FakeHub
from tests.helpers import REPO, TINY_DATA, TINY_MODEL, check_launch_allowed, error_line

TOKEN = "hf_babytrain_test_token_4f1c2d"
REPO_ID = "babylm/tiny-llama"


def hub_env(hub: FakeHub, tmp_path, token: str | None = TOKEN) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_TOKEN", "ACCELERATE_USE_DEEPSPEED")}
    env.update(
        HF_ENDPOINT=hub.url,
        HF_HOME=str(tmp_path / "hf_home"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        NO_PROXY="127.0.0.1,localhost",
    )
    if token:
        env["HF_TOKEN"] = token
    return env


def train(env: dict, *args: str) -> subprocess.CompletedProcess:
    check_launch_allowed("train_pretrain.py")
    return subprocess.run(
        [
            sys.executable,
            "train_pretrain.py",
            *TINY_MODEL,
            *TINY_DATA,
            "--max_steps",
            "12",
            "--logging_steps",
            "4",
            "--eval_steps",
            "1000",
            "--max_eval_samples",
            "16",
            *args,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.e2e
def test_milestones_go_to_branches_final_to_main_with_a_retry(tmp_path):
    out = tmp_path / "run"
    with FakeHub(token=TOKEN) as hub:
        # The first milestone's branch cannot be made at first (huggingface_hub retries commits itself,
        # not branch creation): the pusher's own retry must bring it.
        hub.fail_next(1, method="POST", path_contains="/branch/", status=503)
        done = train(
            hub_env(hub, tmp_path),
            "--save_init",
            "--milestones",
            "2K,4K",
            "--output_dir",
            str(out),
            "--push_to_hub",
            "--hub_model_id",
            REPO_ID,
            "--hub_private",
            "--milestone_store",
            "hub",
        )
        assert done.returncode == 0, done.stderr[-4000:]
        assert not hub.server_errors
        assert hub.is_private(REPO_ID)
        assert hub.branches(REPO_ID) == {"main", "init", "tokens-2K", "tokens-4K"}
        branch_requests = hub.requests_to("/branch/", method="POST")
        assert [r.status for r in branch_requests][:2] == [503, 200]
        for branch, name in (
            ("init", "init"),
            ("tokens-2K", "tokens-2K"),
            ("tokens-4K", "tokens-4K"),
            ("main", "final"),
        ):
            files = hub.files(REPO_ID, branch)
            assert {
                "model.safetensors",
                "config.json",
                "tokenizer.json",
                "milestone.json",
                "README.md",
                "training_config.yaml",
            } <= set(files), (branch, sorted(files))
            assert json.loads(files["milestone.json"])["name"] == name
            card = files["README.md"].decode()
            assert f"# {REPO_ID} ({name})" in card and "library_name: transformers" in card
            if branch != "main":
                assert f'revision="{branch}"' in card
        final_weights = (out / "final" / "model.safetensors").read_bytes()
        assert hub.files(REPO_ID, "main")["model.safetensors"] == final_weights
    assert "hub: pushing init to babylm/tiny-llama@init failed (attempt 1 of 5)" in done.stderr
    assert "hub: 4 snapshot(s) pushed to babylm/tiny-llama, 0 failed" in done.stderr
    assert "HTTP Request:" not in done.stderr  # the client's request log stays quiet
    # --milestone_store hub: the milestones left the disk once pushed; final/ stays
    assert not any((out / "milestones").iterdir()) and (out / "final" / "README.md").is_file()
    # the token is in no file of the run, nor in what it printed
    for path in out.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert TOKEN not in done.stdout + done.stderr


@pytest.mark.e2e
def test_no_token_or_no_hub_stops_before_training(tmp_path):
    with FakeHub(token=TOKEN) as hub:
        no_token = train(
            hub_env(hub, tmp_path, token=None),
            "--output_dir",
            str(tmp_path / "a"),
            "--push_to_hub",
            "--hub_model_id",
            REPO_ID,
        )
        # A token the Hub refuses, in process: the pusher's client pointed at the fake.
        huggingface_hub.constants.HF_HUB_DISABLE_TELEMETRY = True  # no user-agent fetch from the real Hub
        refused = HubPusher(REPO_ID, private=False)
        refused.api, refused.secret = HfApi(endpoint=hub.url, token="hf_wrong"), "hf_wrong"
        with pytest.raises(UsageError, match=f"--hub_model_id {REPO_ID}: cannot create or reach the repository"):
            refused.open()
        assert REPO_ID not in hub.repos()
    assert no_token.returncode == 2 and "no Hugging Face token" in error_line(no_token)
    assert not (tmp_path / "a" / "checkpoints").exists()  # nothing trained


@pytest.mark.parametrize(
    "args, message",
    [
        (["--push_to_hub"], "--push_to_hub needs --hub_model_id"),
        (["--hub_model_id", "a/b"], "--hub_model_id is only used with --push_to_hub"),
        (["--milestone_store", "hub"], "--milestone_store hub needs --push_to_hub"),
    ],
)
def test_hub_flags_go_together(args, message):
    with pytest.raises(UsageError, match=message):
        parse_config(PretrainConfig, args)


def test_model_card_names_the_snapshot_and_how_to_load_it():
    info = {"name": "tokens-25M", "tokens_seen": 25_000_000, "step": 1525, "train_loss": 3.21, "val_loss": 3.3}
    card = model_card("me/tiny", info, {"model_type": "bert", "model_size": "20m", "vocab_size": 8000})
    assert 'AutoModelForMaskedLM.from_pretrained("me/tiny", revision="tokens-25M")' in card
    assert "| tokens seen | 25000000 |" in card and "| validation loss | 3.3000 |" in card
    assert "- `vocab_size`: 8000" in card
