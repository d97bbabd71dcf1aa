"""Fixtures shared by the test files, and the two test tiers.

Fast tier (`python -m pytest -m "not e2e"`): everything runs in this process. End-to-end tier
(`-m e2e`): tests that launch a script or train a run. A test is marked e2e when it asks for one of
the session runs below (marked here, automatically) or carries `@pytest.mark.e2e` itself; the
launch helpers in tests/helpers.py refuse to start a script from a test without the mark, so the
fast tier cannot quietly grow slow.
"""

from __future__ import annotations

import os

import pytest

# Tests never touch the network, in this process either (read by huggingface_hub and datasets at
# import, so before any test module imports them).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from tests import helpers

# Fixtures that train a run or launch a script: a test that asks for one is end-to-end.
RUN_FIXTURES = {"causal_run", "glue_results", "slurm"}


def pytest_collection_modifyitems(items):
    for item in items:
        if RUN_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


def pytest_runtest_setup(item):
    # Before any fixture of the test is set up, so a session run started for it is checked too.
    helpers.allow_launches(item.get_closest_marker("e2e") is not None, item.nodeid)


# --- in process ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def training_documents() -> list[str]:
    from common.data.synthetic import synthetic_documents

    return list(synthetic_documents(5000, seed=0))


@pytest.fixture(scope="session")
def bpe_tokenizer(training_documents):
    from common.data.tokenizer import train_tokenizer

    # Tests must not mutate it: it is shared by the whole session.
    return train_tokenizer("bpe", training_documents, 400)


@pytest.fixture(scope="session")
def accelerator():
    """A one-process CPU Accelerator, as build_accelerator makes it on a machine without a GPU."""
    from common.distributed import build_accelerator

    return build_accelerator()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, training_documents) -> dict:
    """Freshly initialised tiny models of each family, saved the way a run saves its snapshots
    (model + tokenizer; ELECTRA's discriminator with its generator in generator/), keyed
    causal / masked / electra. Built in this process in about a second."""
    folder = tmp_path_factory.mktemp("tiny_models")
    return {
        family: helpers.save_tiny_model(folder / family, model_type, training_documents)
        for family, model_type in (("causal", "llama"), ("masked", "bert"), ("electra", "electra"))
    }


# --- end to end: the session's run of train_pretrain.py ----------------------------------------


@pytest.fixture(scope="session")
def causal_run(tmp_path_factory):
    """A tiny LLaMA run with an init snapshot and two token milestones before final/ (CAUSAL_RUN)."""
    return helpers.train_small_run(tmp_path_factory.mktemp("causal") / "run", *helpers.CAUSAL_RUN)
