"""Shared fixtures: one small synthetic corpus and a byte-level BPE tokenizer trained on it."""

import pytest

from common.data.synthetic import synthetic_documents
from common.data.tokenizer import train_tokenizer


@pytest.fixture(scope="session")
def training_documents() -> list[str]:
    return list(synthetic_documents(5000, seed=0))


@pytest.fixture(scope="session")
def bpe_tokenizer(training_documents):
    # Tests must not mutate it: it is shared by the whole session.
    return train_tokenizer("bpe", training_documents, 400)


def small_run_arguments(model_type: str, *extra: str) -> list[str]:
    from tests.helpers import TINY_MODEL

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
        "128",
        *extra,
    ]  # room for real BLiMP sentences


CAUSAL_RUN = small_run_arguments("llama", "--save_init", "--milestones", "5K,20K")


def train_small_run(folder, model_type: str, *extra: str):
    """A short train_pretrain.py run (seconds on 2 cores) whose snapshots the evaluation tests score."""
    from tests.helpers import run_script

    run_script("train_pretrain.py", [*small_run_arguments(model_type, *extra), "--output_dir", str(folder)])
    return folder


@pytest.fixture(scope="session")
def causal_run(tmp_path_factory):
    """A tiny LLaMA run with an init snapshot and two token milestones before final/ (CAUSAL_RUN)."""
    from tests.helpers import run_script

    folder = tmp_path_factory.mktemp("causal") / "run"
    run_script("train_pretrain.py", [*CAUSAL_RUN, "--output_dir", str(folder)])
    return folder


@pytest.fixture(scope="session")
def masked_run(tmp_path_factory):
    return train_small_run(tmp_path_factory.mktemp("masked") / "run", "bert")


@pytest.fixture(scope="session")
def electra_run(tmp_path_factory):
    return train_small_run(tmp_path_factory.mktemp("electra") / "run", "electra")
