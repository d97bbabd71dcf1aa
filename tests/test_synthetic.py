"""Tests for common/data/synthetic.py: determinism, word budget, the grammar's agreement, the minimal pairs."""

import json
import random
import time
from collections import Counter

import pytest

from common.data import synthetic
from common.data.synthetic import (
    SYNTHETIC_VERSION,
    synthetic_documents,
    synthetic_minimal_pairs,
)
from common.evaluation.tasks import read_task_folder, synthetic_tasks
from tests.helpers import write_pair_folder

BLIMP_KEYS = {"sentence_good", "sentence_bad", "field", "linguistics_term", "UID", "pairID"}
SAMPLE_WORDS = 300_000
PAIRS_PER_PARADIGM = 100

# The lexicon, read back from the module, as the facts the checks below need.
NOUN_NUMBER = {form: number for noun in synthetic._NOUNS for number, form in enumerate(noun.forms)}
AGREEING_NUMBER = {
    form: number
    for forms in [
        *(verb.forms for verb in synthetic._INTRANSITIVE_VERBS + synthetic._TRANSITIVE_VERBS),
        synthetic._BE,
        synthetic._DO,
    ]
    for number, form in enumerate(forms)
}
ADJECTIVES = synthetic._ADJECTIVES
REFLEXIVES = {"himself", "herself", "itself", "themselves"}
# "that" is left out: it is also the relative pronoun.
DETERMINER_NUMBER = {word: 0 for word in ("a", "an", "this", "every")} | {
    word: 1 for word in ("these", "those", "some", "many", "two", "three", "any")
}
DEMONSTRATIVE_NUMBER = {"this": 0, "that": 0, "these": 1, "those": 1}


def split_sentences(document: str) -> list[str]:
    assert document.endswith(".")
    return [sentence + "." for sentence in document[:-1].split(". ")]


def sentence_words(sentence: str) -> list[str]:
    """The words of a formatted sentence as the grammar produced them: lower case, no period."""
    return sentence[:-1].lower().split()


def head_noun_index(words: list[str]) -> int:
    # Every sentence starts with its subject, so the first noun is the subject's head.
    return next(index for index, word in enumerate(words) if word in NOUN_NUMBER)


def count_words(documents: list[str]) -> int:
    return sum(len(document.split()) for document in documents)


@pytest.fixture(scope="module")
def documents() -> list[str]:
    return list(synthetic_documents(SAMPLE_WORDS, seed=0))


@pytest.fixture(scope="module")
def sentences(documents) -> list[str]:
    return [sentence for document in documents for sentence in split_sentences(document)]


@pytest.fixture(scope="module")
def pairs() -> list[dict]:
    return synthetic_minimal_pairs(PAIRS_PER_PARADIGM, seed=0)


# --- Documents ---------------------------------------------------------------------------------


def test_version_is_a_nonempty_string():
    assert isinstance(SYNTHETIC_VERSION, str) and SYNTHETIC_VERSION


def test_same_seed_gives_identical_documents():
    assert list(synthetic_documents(20_000, seed=3)) == list(synthetic_documents(20_000, seed=3))


def test_other_seed_gives_other_documents():
    assert list(synthetic_documents(20_000, seed=3)) != list(synthetic_documents(20_000, seed=4))


@pytest.mark.parametrize("budget", [1, 57, 10_000, 123_457])
def test_stops_right_after_the_document_that_crosses_the_budget(budget):
    documents = list(synthetic_documents(budget, seed=1))
    assert count_words(documents) >= budget
    assert count_words(documents[:-1]) < budget


def test_no_budget_gives_no_documents():
    assert list(synthetic_documents(0)) == []


def test_budget_only_decides_where_the_stream_stops():
    small, large = list(synthetic_documents(1_000, seed=2)), list(synthetic_documents(50_000, seed=2))
    assert large[: len(small)] == small


def test_document_format(documents):
    for document in documents:
        assert " ".join(document.split()) == document
        sentences = split_sentences(document)
        assert synthetic.MIN_SENTENCES_PER_DOCUMENT <= len(sentences) <= synthetic.MAX_SENTENCES_PER_DOCUMENT
        for sentence in sentences:
            assert sentence[0].isupper() and sentence[1:-1] == sentence[1:-1].lower()
            assert sentence.endswith(".") and "." not in sentence[:-1]


def test_a_million_words_is_fast():
    start = time.perf_counter()
    words = count_words(list(synthetic_documents(1_000_000, seed=5)))
    assert words >= 1_000_000
    assert time.perf_counter() - start < 15  # about 2 s on a laptop; loose for slow CI machines


# --- Grammar -----------------------------------------------------------------------------------


def test_word_classes_are_disjoint():
    # The agreement tables and the checks below find a word's class by its spelling alone.
    classes = [
        set(NOUN_NUMBER),
        set(AGREEING_NUMBER),
        ADJECTIVES,
        REFLEXIVES,
        set(DETERMINER_NUMBER),
        set(synthetic._PREPOSITIONS),
    ]
    assert sum(map(len, classes)) == len(set().union(*classes))


def test_verb_agrees_with_the_head_noun_not_the_attractor():
    rng = random.Random(11)
    mismatched_attractors = Counter()
    for _ in range(20_000):
        sentence = synthetic._clause(rng)
        words, head, verb = sentence.words, sentence.head, sentence.verb
        assert head == head_noun_index(words)
        assert AGREEING_NUMBER[words[verb]] == NOUN_NUMBER[words[head]], words
        attractors = [word for word in words[head + 1 : verb] if word in NOUN_NUMBER]
        if any(NOUN_NUMBER[word] != NOUN_NUMBER[words[head]] for word in attractors):
            mismatched_attractors[words[head + 1]] += 1
    # The check above was put to the test by attractors of the other number, in PPs and both
    # kinds of relative clause ("that" introduces them).
    assert mismatched_attractors["that"] > 1_000
    assert sum(mismatched_attractors[preposition] for preposition in synthetic._PREPOSITIONS) > 1_000


def test_reflexive_agrees_with_the_subject(sentences):
    reflexive_sentences = 0
    for sentence in sentences:
        words = sentence_words(sentence)
        if words[-1] in REFLEXIVES:
            reflexive_sentences += 1
            head = words[head_noun_index(words)]
            assert words[-1] == synthetic._NOUN_BY_FORM[head].reflexives[NOUN_NUMBER[head]], sentence
    assert reflexive_sentences > 1_000


def test_number_marked_determiners_agree_with_their_noun(sentences):
    for sentence in sentences:
        words = sentence_words(sentence)
        for index, word in enumerate(words):
            if word in DETERMINER_NUMBER:
                noun = words[index + 2] if words[index + 1] in ADJECTIVES else words[index + 1]
                assert NOUN_NUMBER[noun] == DETERMINER_NUMBER[word], sentence


def test_negative_polarity_items_appear_only_under_a_licensor(sentences):
    licensed = Counter()
    for sentence in sentences:
        words = sentence_words(sentence)
        for npi in ("ever", "any"):
            if npi in words:
                assert words[0] == "no" or "not" in words, sentence
                licensed[npi, "not" in words] += 1
    assert min(licensed[npi, negated] for npi in ("ever", "any") for negated in (False, True)) > 100


# --- Minimal pairs -----------------------------------------------------------------------------


def test_pairs_have_exactly_blimp_keys(pairs):
    assert all(set(pair) == BLIMP_KEYS for pair in pairs)


def test_required_paradigms_exist(pairs):
    uids = {pair["UID"] for pair in pairs}
    assert len(uids) >= 6
    terms = {(pair["field"], pair["linguistics_term"]) for pair in pairs}
    assert {
        ("morphology", "subject_verb_agreement"),
        ("morphology", "determiner_noun_agreement"),
        ("morphology", "anaphor_agreement"),
        ("semantics", "npi_licensing"),
    } <= terms
    assert any("prepositional_phrase" in uid for uid in uids)
    assert any("relative_clause" in uid for uid in uids)


def test_paradigms_come_one_after_another_with_blimp_pair_ids(pairs):
    uids_in_order = list(dict.fromkeys(pair["UID"] for pair in pairs))
    for position, uid in enumerate(uids_in_order):
        paradigm = pairs[position * PAIRS_PER_PARADIGM : (position + 1) * PAIRS_PER_PARADIGM]
        assert [pair["UID"] for pair in paradigm] == [uid] * PAIRS_PER_PARADIGM
        assert [pair["pairID"] for pair in paradigm] == [str(index) for index in range(PAIRS_PER_PARADIGM)]
        assert len({pair["sentence_good"] for pair in paradigm}) == PAIRS_PER_PARADIGM
    assert len(pairs) == len(uids_in_order) * PAIRS_PER_PARADIGM


def test_good_and_bad_differ_in_exactly_one_word(pairs):
    for pair in pairs:
        good, bad = pair["sentence_good"].split(), pair["sentence_bad"].split()
        assert len(good) == len(bad)
        assert sum(g != b for g, b in zip(good, bad)) == 1, pair


def test_the_differing_word_is_what_the_paradigm_tests(pairs):
    for pair in pairs:
        good, bad = sentence_words(pair["sentence_good"]), sentence_words(pair["sentence_bad"])
        index = next(i for i, (g, b) in enumerate(zip(good, bad)) if g != b)
        head = good[head_noun_index(good)]
        term = pair["linguistics_term"]
        if term == "subject_verb_agreement":
            assert AGREEING_NUMBER[good[index]] == NOUN_NUMBER[head] != AGREEING_NUMBER[bad[index]], pair
        elif term == "determiner_noun_agreement":
            determiner = good[index - 2] if good[index - 1] in ADJECTIVES else good[index - 1]
            number = DEMONSTRATIVE_NUMBER[determiner]
            assert NOUN_NUMBER[good[index]] == number != NOUN_NUMBER[bad[index]], pair
        elif term == "anaphor_agreement":
            assert good[index] in REFLEXIVES and bad[index] in REFLEXIVES, pair
            assert (good[index] == "themselves") == (NOUN_NUMBER[head] == 1) != (bad[index] == "themselves")
        else:
            assert term == "npi_licensing"
            assert (index, good[index], bad[index]) == (0, "no", "the"), pair


def test_pairs_are_deterministic_by_seed(pairs):
    assert synthetic_minimal_pairs(PAIRS_PER_PARADIGM, seed=0) == pairs
    assert synthetic_minimal_pairs(PAIRS_PER_PARADIGM, seed=1) != pairs


def test_good_sentences_use_only_corpus_words(pairs, sentences):
    vocabulary = {word for sentence in sentences for word in sentence_words(sentence)}
    for pair in pairs:
        assert set(sentence_words(pair["sentence_good"])) <= vocabulary, pair


def test_bad_sentences_never_appear_in_the_corpus(pairs, sentences):
    corpus = set(sentences)
    assert not [pair["sentence_bad"] for pair in pairs if pair["sentence_bad"] in corpus]


def test_a_paradigm_without_enough_distinct_pairs_is_an_error(monkeypatch):
    def same_pair_every_time(rng):
        return ["the", "dog", "runs"], ["the", "dog", "run"]

    only_one_pair = synthetic._Paradigm("tiny", "morphology", "subject_verb_agreement", same_pair_every_time)
    monkeypatch.setattr(synthetic, "_PARADIGMS", (only_one_pair,))
    assert len(synthetic_minimal_pairs(1)) == 1
    with pytest.raises(ValueError, match="tiny"):
        synthetic_minimal_pairs(2)


def test_the_pairs_as_a_blimp_folder_read_back_as_the_same_task(tmp_path):
    """The synthetic pairs written as BLiMP's release (one <UID>.jsonl per paradigm) are read back
    by the BLiMP reader as exactly the pairs eval_blimp.py scores by default."""
    records = synthetic_minimal_pairs(20, seed=0)
    paths = write_pair_folder(tmp_path / "synthetic", records)
    uids = list(dict.fromkeys(pair["UID"] for pair in records))
    assert [path.name for path in paths] == [f"{uid}.jsonl" for uid in uids]
    assert all({json.loads(line)["UID"] for line in path.read_text().splitlines()} == {path.stem} for path in paths)
    assert set(read_task_folder(tmp_path / "synthetic").items) == set(synthetic_tasks(20)[0].items)
