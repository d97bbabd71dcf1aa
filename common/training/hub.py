"""Pushing a run's snapshots to the Hugging Face Hub: each milestone to its own branch, final/ to main.

Uploads run in a background thread, one after the other, each retried with growing waits; a push
that still fails is reported, never raised, so training goes on. The run waits for the queue at
its end (and before it exits for a pre-emption). The token comes from `HF_TOKEN` or the Hub's
login (`huggingface_hub` reads it itself): nothing here stores or prints it, and error messages
are scrubbed of it before they are logged.
"""

from __future__ import annotations

import json
import logging
import queue
import shutil
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from common.errors import UsageError, first_line
from common.files import write_atomically
from common.models.families import AUTO_CLASS_NAMES, MODEL_FAMILY

log = logging.getLogger("babytrain")
MAIN = "main"


@dataclass(frozen=True)
class Push:
    folder: Path
    branch: str
    message: str
    delete_after: bool = False  # --milestone_store hub: the local copy goes once the Hub has it


def branch_for(snapshot_name: str) -> str:
    """final/ goes to main; a milestone to a branch of its own name (tokens-25M, chck_1M, init)."""
    return MAIN if snapshot_name == "final" else snapshot_name


class HubPusher:
    """Uploads snapshots in a background thread. With `state_file`, the pushes not yet confirmed
    by the Hub are kept there (rewritten whole on every change), so that a launch killed before
    they went through finds them again (`push_pending`)."""

    def __init__(
        self, repo_id: str, private: bool, attempts: int = 5, first_wait: float = 2.0, state_file: Path | None = None
    ):
        from huggingface_hub import HfApi, get_token

        self.repo_id, self.private = repo_id, private
        self.attempts, self.first_wait = attempts, first_wait
        self.api = HfApi()
        self.secret = get_token()
        self.queue: queue.Queue[Push | None] = queue.Queue()
        self.pushed: list[Push] = []
        self.failed: list[Push] = []
        self.thread: threading.Thread | None = None
        self.state_file = Path(state_file) if state_file else None
        self.unconfirmed: list[Push] = []
        self.lock = threading.Lock()  # the pusher's thread and the training thread both change the list

    def open(self) -> HubPusher:
        """Create the repository (or find it) before training starts: a missing token or an
        unreachable Hub is a usage error now, not a surprise at the first milestone."""
        if not self.secret:
            raise UsageError("--push_to_hub: no Hugging Face token; set HF_TOKEN or run `hf auth login`")
        try:
            url = self.api.create_repo(self.repo_id, private=self.private, exist_ok=True)
        except Exception as error:  # HTTP, connection, bad name: all mean the same to the user
            raise UsageError(
                f"--hub_model_id {self.repo_id}: cannot create or reach the repository "
                f"({self.scrub(first_line(error))})"
            ) from None
        log.info("pushing snapshots to %s (%s)", url, "private" if self.private else "public")
        self.thread = threading.Thread(target=self.work, name="hub-pusher", daemon=True)
        self.thread.start()
        return self

    def push(self, folder: Path, snapshot_name: str, delete_after: bool = False) -> None:
        branch = branch_for(snapshot_name)
        self.enqueue(Push(Path(folder), branch, f"babytrain: {snapshot_name}", delete_after and branch != MAIN))

    def push_pending(self) -> None:
        """Push again what an earlier launch of the run queued but the Hub never confirmed (its
        folder still there): a run resumed after a kill loses no upload."""
        if self.state_file is None or not self.state_file.is_file():
            return
        for entry in json.loads(self.state_file.read_text(encoding="utf-8")):
            push = Push(Path(entry["folder"]), entry["branch"], entry["message"], entry["delete_after"])
            if push.folder.is_dir() and push not in self.unconfirmed:
                log.info("hub: pushing %s again (an earlier launch did not see it through)", push.folder)
                self.enqueue(push)

    def enqueue(self, push: Push) -> None:
        with self.lock:
            self.unconfirmed.append(push)
            self.save_unconfirmed()
        self.queue.put(push)

    def confirm(self, push: Push) -> None:
        with self.lock:
            self.unconfirmed.remove(push)
            self.save_unconfirmed()

    def save_unconfirmed(self) -> None:
        if self.state_file is not None:
            entries = [{**asdict(push), "folder": str(push.folder)} for push in self.unconfirmed]
            write_atomically(self.state_file, json.dumps(entries, indent=1))

    def finish(self) -> list[Push]:
        """Wait for every queued push; the ones that failed after all their attempts."""
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join()
            self.thread = None
        if self.pushed or self.failed:
            log.info("hub: %d snapshot(s) pushed to %s, %d failed", len(self.pushed), self.repo_id, len(self.failed))
        for push in self.failed:
            log.warning(
                "hub: %s was not pushed to %s@%s; push it by hand: hf upload %s %s --revision %s",
                push.folder,
                self.repo_id,
                push.branch,
                self.repo_id,
                push.folder,
                push.branch,
            )
        return self.failed

    # --- the background thread -------------------------------------------------------------

    def work(self) -> None:
        while (push := self.queue.get()) is not None:
            if self.upload_with_retries(push):
                self.pushed.append(push)
                self.confirm(push)
                if push.delete_after:
                    shutil.rmtree(push.folder, ignore_errors=True)
            else:
                self.failed.append(push)

    def upload_with_retries(self, push: Push) -> bool:
        for attempt in range(1, self.attempts + 1):
            try:
                self.upload(push)
                log.info("hub: pushed %s to %s@%s", push.folder.name, self.repo_id, push.branch)
                return True
            except Exception as error:  # the Hub, the network, a full disk: retry, never stop training
                wait = self.first_wait * 2 ** (attempt - 1)
                log.warning(
                    "hub: pushing %s to %s@%s failed (attempt %d of %d): %s%s",
                    push.folder.name,
                    self.repo_id,
                    push.branch,
                    attempt,
                    self.attempts,
                    self.scrub(first_line(error)),
                    f"; retrying in {wait:g} s" if attempt < self.attempts else "",
                )
                if attempt < self.attempts:
                    time.sleep(wait)
        return False

    def upload(self, push: Push) -> None:
        if push.branch != MAIN:
            self.api.create_branch(self.repo_id, branch=push.branch, exist_ok=True)
        self.api.upload_folder(
            repo_id=self.repo_id, folder_path=str(push.folder), revision=push.branch, commit_message=push.message
        )

    def scrub(self, text: str) -> str:
        return text.replace(self.secret, "***") if self.secret else text


def model_card(repo_id: str | None, info: dict, config: dict) -> str:
    """README.md of a snapshot: what it is, how far it trained, how to load it, and the run's settings."""
    name = info.get("name", "snapshot")
    revision = "" if name == "final" or repo_id is None else f', revision="{branch_for(name)}"'
    auto = AUTO_CLASS_NAMES[MODEL_FAMILY[config["model_type"]]]
    rows = [
        ("snapshot", name),
        ("tokens seen", info.get("tokens_seen")),
        ("words seen", info.get("words_seen")),
        ("optimizer steps", info.get("step")),
        ("training loss", info.get("train_loss")),
        ("validation loss", info.get("val_loss")),
    ]
    settings = [
        (key, config.get(key))
        for key in (
            "model_type",
            "model_size",
            "dataset",
            "data_dir",
            "vocab_size",
            "seq_length",
            "per_device_train_batch_size",
            "gradient_accumulation_steps",
            "learning_rate",
            "seed",
            "milestones",
            "milestones_words",
        )
        if config.get(key) is not None
    ]
    table = "\n".join(
        f"| {key} | {value if not isinstance(value, float) else f'{value:.4f}'} |"
        for key, value in rows
        if value is not None
    )
    return "\n".join(
        [
            "---",
            "library_name: transformers",
            "tags:",
            "- babytrain",
            f"- {config.get('model_type', 'model')}",
            "---",
            f"# {repo_id or 'babytrain snapshot'} ({name})",
            "",
            f"A {config.get('model_type')} language model pretrained from scratch with babytrain.",
            "",
            "| | |",
            "|---|---|",
            table,
            "",
            "```python",
            f"from transformers import {auto}, AutoTokenizer",
            f'model = {auto}.from_pretrained("{repo_id or "."}"{revision})',
            f'tokenizer = AutoTokenizer.from_pretrained("{repo_id or "."}"{revision})',
            "```",
            "",
            "Training settings (the full resolved config is in `training_config.yaml`):",
            "",
            *[f"- `{key}`: {value}" for key, value in settings],
            "",
        ]
    )
