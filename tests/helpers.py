"""What the tests import: launching the scripts as a user would (subprocess, `accelerate launch`)
and reading their output, the tiny model and run shapes, and small builders of test data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """The real sample data beside the checkout (or $BABYTRAIN_REAL_DATA), when present."""
    candidate = Path(os.environ.get("BABYTRAIN_REAL_DATA", REPO.parent / "shared" / "data"))
    return candidate if candidate.is_dir() else None


# A model and corpus small enough that a run takes seconds on 2 CPU cores.
TINY_MODEL = [
    "--hidden_size",
    "64",
    "--num_hidden_layers",
    "2",
    "--num_attention_heads",
    "2",
    "--intermediate_size",
    "128",
    "--seq_length",
    "32",
    "--vocab_size",
    "600",
]
# (and no end-of-training BLiMP evaluation: tests of it turn it back on with --blimp_at_end true)
TINY_DATA = ["--synthetic_words", "40000", "--blimp_at_end", "false"]


# A short train_pretrain.py run of the tiny model on 60k synthetic words (seconds on 2 cores).
def small_run_arguments(model_type: str, *extra: str) -> list[str]:
    return [
        *TINY_MODEL,
        "--synthetic_words",
        "60000",
        "--model_type",
        model_type,
        "--max_steps",
        "60",
        "--logging_steps",
        "20",
        "--blimp_at_end",
        "false",
        "--max_position_embeddings",
        "128",  # room for real BLiMP sentences
        *extra,
    ]


# The session's causal run (conftest.causal_run): an init snapshot and two milestones before final/.
CAUSAL_RUN = small_run_arguments("llama", "--save_init", "--milestones", "5K,20K")

_launches = {"allowed": True, "test": ""}


def allow_launches(allowed: bool, test: str) -> None:
    """Called by conftest before each test: only end-to-end tests may launch a script."""
    _launches.update(allowed=allowed, test=test)


def check_launch_allowed(what: str) -> None:
    if not _launches["allowed"]:
        raise AssertionError(
            f"{_launches['test']} launches {what} but is not marked e2e: mark it @pytest.mark.e2e "
            f"(or keep it in process) so that the fast tier stays fast"
        )


def train_small_run(folder: Path, *arguments: str) -> Path:
    """A train_pretrain.py run into `folder` (its snapshots are what the evaluation tests score),
    in this process (the scripts are launched for real by the tests of launching)."""
    check_launch_allowed("train_pretrain.py")
    run_in_process("train_pretrain.py", [*arguments, "--output_dir", str(folder)], capsys=None)
    return folder


def run_in_process(script: str, args: list[str], capsys, check: bool = True) -> subprocess.CompletedProcess:
    """`python <script> args...` run in this process: the same main(), the same output and exit
    status as from the command line (as a CompletedProcess), without a new interpreter's seconds of
    imports. For one-process runs; signals, several processes and fresh interpreters need
    `run_script` or `accelerate_launch`."""
    import importlib
    import logging

    from common.errors import run_main

    main = importlib.import_module(Path(script).stem).main
    argv, handlers = sys.argv, logging.getLogger().handlers[:]
    if capsys is not None:  # None: for fixtures, which cannot take capsys; the output is not kept
        capsys.readouterr()
    sys.argv = [script, *args]
    try:
        run_main(main)
        status = 0
    except SystemExit as exit:
        status = exit.code if isinstance(exit.code, int) else 1
    finally:
        sys.argv = argv
        logging.getLogger().handlers[:] = handlers  # the script pointed logging at this test's capture
    out, err = capsys.readouterr() if capsys is not None else ("", "")
    result = subprocess.CompletedProcess([script, *args], status, out, err)
    if check and status != 0:
        raise AssertionError(f"{script} exited {status}\n--- stdout\n{out[-4000:]}\n--- stderr\n{err[-6000:]}")
    return result


def run_main_in_process(script: str, args: list[str], capsys) -> tuple[int, str]:
    """For bad input, refused before any work: (the exit status, the one `error:` line)."""
    result = run_in_process(script, args, capsys, check=False)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) <= 1, errors
    return result.returncode, errors[0] if errors else ""


def quiet_env(**extra: str) -> dict:
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        **extra,
    }
    env.pop("ACCELERATE_USE_DEEPSPEED", None)
    return env


def run_script(
    script: str, args: list[str], check: bool = True, timeout: int = 600, **popen
) -> subprocess.CompletedProcess:
    """`python <script> args...` from the repository root; on failure, show its output."""
    check_launch_allowed(script)
    result = subprocess.run(
        [sys.executable, script, *args],
        cwd=REPO,
        env=quiet_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        **popen,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{script} exited {result.returncode}\n--- stdout\n{result.stdout[-4000:]}"
            f"\n--- stderr\n{result.stderr[-6000:]}"
        )
    return result


def launch_command(config: str, script: str, args: list[str], num_processes: int = 2) -> list[str]:
    check_launch_allowed(f"accelerate launch {script}")
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        config if config.endswith(".yaml") else f"accelerate_configs/{config}.yaml",  # a name, or a path
        "--num_processes",
        str(num_processes),
        "--main_process_port",
        str(free_port()),
        script,
        *args,
    ]


def accelerate_launch(
    config: str, script: str, args: list[str], num_processes: int = 2, check: bool = True, timeout: int = 600
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        launch_command(config, script, args, num_processes),
        cwd=REPO,
        env=quiet_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"accelerate launch {config} exited {result.returncode}\n--- stdout\n"
            f"{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-8000:]}"
        )
    return result


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def read_metrics(output_dir: Path, strict: bool = True) -> list[dict]:
    """The records of a run's metrics.jsonl; `strict=False` for a file a live run is appending to
    (its last line may be half written)."""
    records = []
    for line in (Path(output_dir) / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if strict:
                raise
    return records


def train_losses(output_dir: Path) -> dict[int, float]:
    """step -> train/loss, from a run logged with --logging_steps 1."""
    return {r["step"]: r["train/loss"] for r in read_metrics(output_dir) if "train/loss" in r}


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one `error:` line a script prints for bad input."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, f"expected exactly one error line, got:\n{result.stderr[-3000:]}"
    return lines[0]


def run_and_preempt(
    command: list[str], out: Path, after_step: int, signal_target=lambda process: process, signal_number=signal.SIGUSR1
):
    """Run `command`; once its run folder `out` has logged `after_step`, send SIGUSR1 (by default:
    what Slurm sends before a time limit) to `signal_target(process)` (by default the process itself).
    Returns (exit status, stderr, the step of the newest checkpoint)."""
    check_launch_allowed(" ".join(command[:3]))
    process = subprocess.Popen(
        command, cwd=REPO, env=quiet_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline, signalled = time.time() + 300, False
    while not signalled and time.time() < deadline and process.poll() is None:
        if (out / "metrics.jsonl").exists() and any(r["step"] >= after_step for r in read_metrics(out, strict=False)):
            signal_target(process).send_signal(signal_number)
            signalled = True
        time.sleep(0.02)
    _, stderr = process.communicate(timeout=300)
    assert signalled, f"the run ended before step {after_step} was logged\n{stderr[-3000:]}"
    newest = sorted((out / "checkpoints").iterdir())[-1]
    return process.returncode, stderr, int(newest.name.split("-")[1])


def run_until(command: list[str], fire, signal_number=signal.SIGKILL, env: dict | None = None, timeout: float = 300):
    """Run `command` and send it `signal_number` the moment `fire()` (polled every few ms) turns
    true: a kill at a chosen point of a real run (during packing, inside a checkpoint write, ...).
    Returns (exit status, stderr, whether the signal was sent)."""
    check_launch_allowed(" ".join(command[:3]))
    process = subprocess.Popen(
        command, cwd=REPO, env=env or quiet_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline, fired = time.time() + timeout, False
    while not fired and time.time() < deadline and process.poll() is None:
        if fire():
            process.send_signal(signal_number)
            fired = True
        time.sleep(0.005)
    _, stderr = process.communicate(timeout=timeout)
    return process.returncode, stderr, fired


# --- small builders of test data -----------------------------------------------------------------


def dead_pid() -> int:
    """The pid of a process that has exited (what a killed launch leaves in its lock and staging names)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def write_pair_folder(folder: Path, records: list[dict]) -> list[Path]:
    """Minimal pairs (BLiMP-format records) as BLiMP's release lays them out: one `<UID>.jsonl`
    per paradigm, in the order the paradigms first appear."""
    folder.mkdir(parents=True, exist_ok=True)
    by_paradigm: dict[str, list[dict]] = {}
    for record in records:
        by_paradigm.setdefault(record["UID"], []).append(record)
    paths = []
    for uid, rows in by_paradigm.items():
        path = folder / f"{uid}.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        paths.append(path)
    return paths


def save_tiny_model(
    folder: Path, model_type: str, documents: list[str], seed: int = 0, max_positions: int = 128
) -> Path:
    """A freshly initialised model of TINY_MODEL's shape with a tokenizer trained on `documents`,
    saved like a run's snapshot (ELECTRA: the discriminator, with its generator in generator/)."""
    import torch

    from common.data.tokenizer import train_tokenizer
    from common.models.build import Shape, build_model
    from common.models.families import MODEL_FAMILY, TOKENIZER_KIND

    family = MODEL_FAMILY[model_type]
    tokenizer = train_tokenizer(TOKENIZER_KIND[family], documents, 600)
    torch.manual_seed(seed)
    shape = Shape(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
    model = build_model(model_type, family, shape, tokenizer, max_positions=max_positions)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


FIXTURES = REPO / "tests" / "fixtures"


def babylm_evaluation_data(root: Path, shared: Path) -> Path:
    """The BabyLM 2025 evaluation_data/ layout (full_eval/ and fast_eval/) built from the real
    samples in `shared` (../shared/data) and this repository's EWoK and COMPS fixtures."""
    import shutil

    samples = shared / "babylm_eval"
    full, fast = root / "full_eval", root / "fast_eval"
    for suite, folder, source in (
        (full, "supplement_filtered", samples / "supplement_fast"),
        (full, "ewok_filtered", FIXTURES / "ewok_filtered"),
        (full, "entity_tracking", samples / "entity_tracking"),
        (full, "wug_adj_nominalization", samples / "wug_adj_nominalization"),
        (full, "comps", FIXTURES / "comps"),
        (full, "glue_filtered", samples / "glue_filtered"),
        (full, "reading", samples / "reading"),
        (fast, "supplement_fast", samples / "supplement_fast"),
        (fast, "ewok_fast", FIXTURES / "ewok_filtered"),
        (fast, "wug_adj_nominalization", samples / "wug_adj_nominalization"),
        (fast, "reading", samples / "reading"),
    ):
        shutil.copytree(source, suite / folder)
    (fast / "entity_tracking_fast").mkdir()
    shutil.copy(samples / "entity_tracking" / "regular.jsonl", fast / "entity_tracking_fast")
    return root


def wandb_offline_records(path: Path) -> list:
    """The records of a W&B offline run file (`run-<id>.wandb`), as wandb's protobuf `Record`s.

    The file is a 7-byte header (":W&B", a 2-byte magic, a version byte) followed by a LevelDB-style
    log: 32 KiB blocks of chunks, each a 7-byte header (CRC32, little-endian length, type: 1 whole,
    2 first, 3 middle, 4 last) and its bytes; a block's tail shorter than a header is padding."""
    from wandb.proto import wandb_internal_pb2

    data, block, header = path.read_bytes(), 32 * 1024, 7
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    records, pending, offset = [], b"", header
    while offset + header <= len(data):
        room = block - offset % block
        if room < header:  # padding at the end of a block
            offset += room
            continue
        length = int.from_bytes(data[offset + 4 : offset + 6], "little")
        kind = data[offset + 6]
        chunk = data[offset + header : offset + header + length]
        offset += header + length
        if kind in (1, 2):
            pending = chunk
        elif kind in (3, 4):
            pending += chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def wandb_history_and_config(path: Path) -> tuple[list[dict], dict]:
    """(every logged row, the run's config) of a W&B offline run file."""
    history, config = [], {}
    for record in wandb_offline_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append(
                {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            )
        elif kind == "config":
            config |= {item.key: json.loads(item.value_json) for item in record.config.update}
    return history, config
