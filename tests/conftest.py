"""Shared fixtures: one small synthetic corpus and a byte-level BPE tokenizer trained on it."""

import pytest

from common.synthetic import synthetic_documents
from common.tokenizer import train_tokenizer


@pytest.fixture(scope="session")
def training_documents() -> list[str]:
    return list(synthetic_documents(5000, seed=0))


@pytest.fixture(scope="session")
def bpe_tokenizer(training_documents):
    # Tests must not mutate it: it is shared by the whole session.
    return train_tokenizer("bpe", training_documents, 400)
