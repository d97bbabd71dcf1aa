"""Tokenizing batches of documents for the packed cache, in this process or in worker processes.

A batch becomes one flat array of token ids, each document preceded by the boundary token, and its
word count. With one worker the Rust tokenizer spreads each batch over the cores itself; the
Python around it (word counting, collecting ids) then runs on one core. With several workers each
process tokenizes whole batches on one core, word counting included, while this process reads the
next documents, so every part of the work is spread. The batches come back in order: the packed
file is the same byte for byte whatever the number of workers.

This module imports only numpy and `tokenizers`, so that a worker process starts in a fraction of
a second.
"""

from __future__ import annotations

import collections
import itertools
import multiprocessing
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from tokenizers import Tokenizer

DOCUMENTS_PER_BATCH = 2048
BATCHES_BEFORE_WORKERS = 4  # tokenized here first: a corpus no larger never starts a worker
BATCHES_IN_FLIGHT_PER_WORKER = 2  # keeps workers busy while bounding the documents held in memory


def count_text_words(text: str) -> int:
    """Words as runs of non-whitespace between ASCII whitespace (like `wc -w` in the C locale):
    the definition `count_words` reproduces exactly from tokens."""
    return len(text.encode("utf-8").split())


def batched(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def encode_batch(backend: Tokenizer, documents: list[str], boundary_id: int, dtype: np.dtype) -> np.ndarray:
    """Token ids of `documents`, each preceded by the boundary token, as one flat array."""
    encodings = backend.encode_batch_fast(documents, add_special_tokens=False)
    lengths = [len(encoding.ids) + 1 for encoding in encodings]
    flat = np.empty(sum(lengths), dtype=dtype)
    position = 0
    for encoding, length in zip(encodings, lengths):
        flat[position] = boundary_id
        flat[position + 1 : position + length] = encoding.ids
        position += length
    return flat


def encode_and_count(backend: Tokenizer, documents: list[str], boundary_id: int, dtype: np.dtype) -> tuple:
    """(flat token ids, words, documents) of one batch."""
    words = sum(count_text_words(document) for document in documents)
    return encode_batch(backend, documents, boundary_id, dtype), words, len(documents)


_worker: dict = {}


def _start_worker(tokenizer_json: str, boundary_id: int, dtype: str) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core per worker: the workers are the parallelism
    _worker.update(backend=Tokenizer.from_str(tokenizer_json), boundary_id=boundary_id, dtype=np.dtype(dtype))


def _worker_batch(documents: list[str]) -> tuple:
    return encode_and_count(_worker["backend"], documents, _worker["boundary_id"], _worker["dtype"])


def encoded_batches(
    documents: Iterable[str], backend: Tokenizer, boundary_id: int, dtype: np.dtype, workers: int
) -> Iterator[tuple]:
    """(flat token ids, words, documents) of each batch of `documents`, in order, from `workers`
    processes (1: this one)."""
    batches = batched(documents, DOCUMENTS_PER_BATCH)
    # A small corpus (a test's, a validation split) is done before worker processes would pay off.
    for batch in itertools.islice(batches, None if workers <= 1 else BATCHES_BEFORE_WORKERS):
        yield encode_and_count(backend, batch, boundary_id, dtype)
    if workers <= 1:
        return
    # fork: a worker starts at once with the tokenizer and nothing to import (spawn would import the
    # script, torch and all, in every worker); the forked workers run the tokenizer single-threaded
    context = multiprocessing.get_context("fork")
    setup = (backend.to_str(), boundary_id, np.dtype(dtype).name)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=setup) as pool:
        pending = collections.deque()
        for batch in batches:
            pending.append(pool.submit(_worker_batch, batch))
            if len(pending) >= workers * BATCHES_IN_FLIGHT_PER_WORKER:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def available_cores() -> int:
    """The cores this process may run on (a Slurm allocation's, not the whole node's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
