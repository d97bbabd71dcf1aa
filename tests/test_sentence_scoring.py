"""Sentence and completion scores: batching plans, PLL masks, head detection, agreement with
minicons, and conditional scores against a direct one-text-at-a-time computation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tokenizers.processors import TemplateProcessing
from transformers import AutoConfig, AutoTokenizer, BertConfig, BertModel, LlamaConfig

from common.errors import UsageError
from common.evaluation.sentence_scoring import (
    ScoringOptions,
    load_scorer,
    plan_batches,
    pll_rows,
    score_completions,
    score_sentences,
    scorer_kind,
    sentence_rows,
)
from common.evaluation.tasks import read_task_folder, synthetic_tasks
from common.evaluation.zero_shot_results import outcomes
from tests.helpers import shared_data_dir

minicons_scorer = pytest.importorskip("minicons.scorer", reason="minicons (a test dependency) is not installed")


def evaluation_pairs(count_per_source: int = 30) -> list:
    """Synthetic pairs plus, when the real data is beside the checkout, real BLiMP ones."""
    pairs = list(synthetic_tasks(20)[0].items)[::3][:count_per_source]
    real = shared_data_dir()
    if real is not None:
        pairs += list(read_task_folder(real / "blimp").items)[::97][:count_per_source]
    return pairs


def distinct_sentences(pairs: list) -> list[str]:
    return sorted({text for pair in pairs for text, _ in pair.candidates})


def evaluation_sentences(count_per_source: int = 30) -> list[str]:
    return distinct_sentences(evaluation_pairs(count_per_source))


def test_plan_batches_sorts_by_length_and_respects_both_limits():
    lengths = [5, 3, 9, 3, 5, 12, 4]
    batches = plan_batches(lengths, batch_size=3, max_batch_tokens=20)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    flat = [i for batch in batches for i in batch]
    assert [lengths[i] for i in flat] == sorted(lengths)  # length order, ties by index
    for batch in batches:
        assert len(batch) <= 3
        assert max(lengths[i] for i in batch) * len(batch) <= 20 or len(batch) == 1
    assert plan_batches(lengths, batch_size=3, max_batch_tokens=20) == batches  # deterministic


def test_pll_rows_mask_one_token_or_the_rest_of_its_word():
    # [CLS] a b c d [SEP] and a shorter sentence; "b c" are two pieces of one word.
    scored = [[False, True, True, True, True, False], [False, True, False]]  # not [CLS], [SEP]
    sentences = sentence_rows([[101, 5, 6, 7, 8, 102], [101, 9, 102]], scored, pad_id=0)
    original = pll_rows(sentences, None)
    assert original.sentence.tolist() == [0, 0, 0, 0, 1]
    assert original.target.tolist() == [1, 2, 3, 4, 1] and original.mask_end.tolist() == [1, 2, 3, 4, 1]
    within_word = pll_rows(sentences, [[None, 0, 1, 1, 2, None], [None, 0, None]])
    assert within_word.mask_end.tolist() == [1, 3, 3, 4, 1]

    ids, attention = within_word.batch(np.array([1, 4]), mask_id=-1)
    assert ids.tolist() == [[101, 5, -1, -1, 8, 102], [101, -1, 102, 0, 0, 0]]
    assert attention.tolist() == [[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]


def test_scorer_kind_from_architectures():
    assert scorer_kind(LlamaConfig(architectures=["LlamaForCausalLM"])) == "causal"
    assert scorer_kind(AutoConfig.for_model("gpt2", architectures=["GPT2LMHeadModel"])) == "causal"
    assert scorer_kind(BertConfig(architectures=["BertForMaskedLM"])) == "masked"
    assert scorer_kind(AutoConfig.for_model("electra", architectures=["ElectraForPreTraining"])) == "electra"
    assert scorer_kind(AutoConfig.for_model("electra", architectures=["ElectraForMaskedLM"])) == "masked"
    with pytest.raises(UsageError, match="cannot score sentences"):
        scorer_kind(BertConfig(architectures=["BertForSequenceClassification"]))


def test_a_tie_is_wrong():
    correct, ties = outcomes(np.array([[-3.0, -3.0], [-2.0, -4.0], [-5.0, -1.0]]))
    assert correct.tolist() == [False, True, False]
    assert ties.tolist() == [True, False, False]
    # Several candidates: the first must beat the best of the others; -inf pads a shorter item.
    correct, ties = outcomes(np.array([[-1.0, -2.0, -1.0], [-1.0, -3.0, -np.inf], [-2.0, -1.5, -3.0]]))
    assert correct.tolist() == [False, True, False] and ties.tolist() == [True, False, False]


@pytest.mark.parametrize("bos", ["prepend", "none"])
def test_causal_scores_match_minicons(tiny_models, accelerator, bos):
    pairs = evaluation_pairs()
    sentences = distinct_sentences(pairs)
    scorer = load_scorer(str(tiny_models["causal"]), None, ScoringOptions(bos=bos, batch_size=16), accelerator.device)
    ours = score_sentences(scorer, sentences, accelerator, progress=False)
    reference = minicons_scorer.IncrementalLMScorer(scorer.model, device="cpu", tokenizer=scorer.tokenizer)
    theirs = np.array(
        reference.sequence_score(sentences, reduction=lambda x: x.sum(0).item(), bos_token=bos == "prepend")
    )
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)
    assert_same_decisions(ours, theirs, sentences, pairs)


@pytest.mark.parametrize("variant, minicons_name", [("original", "original"), ("word_l2r", "within_word_l2r")])
def test_masked_pll_matches_minicons(tiny_models, accelerator, variant, minicons_name):
    pairs = evaluation_pairs()
    sentences = distinct_sentences(pairs)
    options = ScoringOptions(pll_variant=variant, batch_size=64)
    scorer = load_scorer(str(tiny_models["masked"]), None, options, accelerator.device)
    ours = score_sentences(scorer, sentences, accelerator, progress=False)
    reference = minicons_scorer.MaskedLMScorer(
        scorer.model, device="cpu", tokenizer=minicons_tokenizer(tiny_models["masked"])
    )
    theirs = np.array(
        reference.sequence_score(sentences, reduction=lambda x: x.sum(0).item(), PLL_metric=minicons_name)
    )
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)
    assert_same_decisions(ours, theirs, sentences, pairs)


def minicons_tokenizer(folder):
    """The model's tokenizer for minicons 0.3.39, whose masked scorer still calls `batch_encode_plus`
    (removed in transformers 5; calling the tokenizer does the same)."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.batch_encode_plus = tokenizer.__call__
    return tokenizer


def assert_same_decisions(
    ours: np.ndarray, theirs: np.ndarray, sentences: list[str], pairs: list, tolerance: float = 1e-4
) -> None:
    """Whether the good sentence wins, pair by pair, under both sets of scores. A pair whose two
    scores are closer than the scores' tolerance has no decided winner: float32 sums in another
    order may flip it, so it is left out (a pair of a fixture model came within 3e-5)."""
    index = {sentence: i for i, sentence in enumerate(sentences)}
    good = np.array([index[p.candidates[0][0]] for p in pairs])
    bad = np.array([index[p.candidates[1][0]] for p in pairs])
    decided = np.abs(theirs[good] - theirs[bad]) > 2 * tolerance
    ours_correct, _ = outcomes(np.stack([ours[good], ours[bad]], axis=1))
    theirs_correct, _ = outcomes(np.stack([theirs[good], theirs[bad]], axis=1))
    assert decided.mean() > 0.95
    assert ours_correct[decided].tolist() == theirs_correct[decided].tolist()
    assert 0 < ours_correct.sum() < len(pairs)  # a mix of right and wrong: the comparison can fail


def test_word_l2r_differs_from_original_when_words_split(tiny_models, accelerator):
    # A made-up long word is split into pieces by the small WordPiece vocabulary.
    sentences = ["The zorblaxifying cats sleep.", "The cats sleep."]
    scores, spans = {}, {}
    for variant in ("original", "word_l2r"):
        scorer = load_scorer(str(tiny_models["masked"]), None, ScoringOptions(pll_variant=variant), accelerator.device)
        scores[variant] = score_sentences(scorer, sentences, accelerator, progress=False)
        rows = scorer.rows(sentences, [0, 0])
        spans[variant] = (rows.mask_end - rows.target)[rows.sentence == 0]
    # The split word's first pieces are masked together with the pieces after them; that is a
    # different input, so a different score (how different depends on the trained model, which a
    # WordPiece vocabulary trained anew each session changes: only inequality is model-independent).
    assert spans["original"].max() == 0 and spans["word_l2r"].max() >= 2
    assert scores["original"][0] != scores["word_l2r"][0]
    assert scores["original"][1] == pytest.approx(scores["word_l2r"][1], abs=1e-5)  # one piece per word: the same
    word_ids = scorer.tokenizer(sentences[1]).word_ids()
    assert len(set(word_ids) - {None}) == len(word_ids) - 2


def test_discriminator_score_is_the_sum_of_log_p_original(tiny_models, accelerator):
    scorer = load_scorer(str(tiny_models["electra"]), None, ScoringOptions(), accelerator.device)
    sentences = ["The cats sleep.", "No dog ever barks at the cats."]
    ours = score_sentences(scorer, sentences, accelerator, progress=False)
    for sentence, score in zip(sentences, ours):
        encoded = scorer.tokenizer(sentence, return_tensors="pt")
        with torch.no_grad():
            logits = scorer.model(**encoded).logits[0, 1:-1]  # without [CLS] and [SEP]
        assert score == pytest.approx(float(torch.nn.functional.logsigmoid(-logits).sum()), abs=1e-4)


def test_scores_do_not_depend_on_batching_or_order(tiny_models, accelerator):
    sentences = evaluation_sentences(40)
    big = load_scorer(str(tiny_models["masked"]), None, ScoringOptions(batch_size=256), accelerator.device)
    small = load_scorer(str(tiny_models["masked"]), None, ScoringOptions(batch_size=7), accelerator.device)
    forward = score_sentences(big, sentences, accelerator, progress=False)
    backward = score_sentences(small, sentences[::-1], accelerator, progress=False)[::-1]
    np.testing.assert_allclose(forward, backward, atol=1e-5, rtol=0)


def test_a_model_without_a_scoring_head_is_refused(tmp_path, tiny_models):
    tokenizer_files = tiny_models["masked"]
    BertModel(
        BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    ).save_pretrained(tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((tokenizer_files / name).read_bytes())
    with pytest.raises(UsageError, match="BertModel model cannot score sentences"):
        load_scorer(str(tmp_path), None, ScoringOptions(), torch.device("cpu"))
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["BertModel"]


# --- conditional scores: log P(completion | context) ----------------------------------------------

# (context, completion) pairs: a completion that starts a new word, one that continues a word (the
# token straddling the boundary is scored: the BabyLM pipeline's rule), and an empty context.
COMPLETIONS = [
    ("The dogs near the cat", " run."),
    ("No dog ever", " sees the birds."),
    ("The girls see", " themselves."),
    ("The cat", "s sleep."),
    ("", "The cats sleep."),
]


def completion_texts() -> list[tuple[str, int]]:
    return [(context + completion, len(context)) for context, completion in COMPLETIONS]


def scored_positions(offsets: list[tuple[int, int]], start: int) -> list[int]:
    """The token positions a completion's score sums: those ending after the context."""
    return [i for i, (_, end) in enumerate(offsets) if end > start]


def direct_causal_score(model, tokenizer, text: str, start: int, bos_id: int | None) -> float:
    """One text, one forward, no batching: the sum over the completion's tokens of
    log P(token | every token before it)."""
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = ([bos_id] if bos_id is not None else []) + encoded["input_ids"]
    shift = 1 if bos_id is not None else 0
    with torch.no_grad():
        log_probs = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].double(), dim=-1)
    return sum(
        float(log_probs[i + shift - 1, ids[i + shift]])
        for i in scored_positions(encoded["offset_mapping"], start)
        if i + shift > 0  # without BOS the first token has nothing to be predicted from
    )


def direct_pll(model, tokenizer, text: str, start: int) -> float:
    """Mask each completion token alone (the context and the other completion tokens stay
    visible) and sum log P(original token)."""
    encoded = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
    ids, total = encoded["input_ids"], 0.0
    for i in scored_positions(encoded["offset_mapping"], start):
        if encoded["special_tokens_mask"][i]:
            continue
        masked = list(ids)
        masked[i] = tokenizer.mask_token_id
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([masked])).logits[0, i].double()
        total += float(torch.log_softmax(logits, dim=-1)[ids[i]])
    return total


def test_causal_completion_scores_equal_a_direct_computation(tiny_models, accelerator):
    texts = completion_texts()
    for bos in ("prepend", "none"):
        scorer = load_scorer(
            str(tiny_models["causal"]), None, ScoringOptions(bos=bos, batch_size=2), accelerator.device
        )
        ours = score_completions(scorer, texts, accelerator, progress=False)
        bos_id = scorer.bos_id if bos == "prepend" else None
        direct = [direct_causal_score(scorer.model, scorer.tokenizer, text, start, bos_id) for text, start in texts]
        np.testing.assert_allclose(ours, direct, atol=1e-4, rtol=0)
    # The straddling token (" cats" holds the context's "cat") is scored: a completion of one
    # letter still gets a whole token's log-probability.
    offsets = scorer.tokenizer("The cats sleep.", add_special_tokens=False, return_offsets_mapping=True)
    assert any(begin < len("The cat") < end for begin, end in offsets["offset_mapping"])


def test_causal_chain_rule_whole_sentence_is_context_plus_completion(tiny_models, accelerator):
    """log P(context + completion) = log P(context) + log P(completion | context), when the
    completion starts a new token (these start with a space, which BPE attaches to the next word)."""
    scorer = load_scorer(str(tiny_models["causal"]), None, ScoringOptions(), accelerator.device)
    whole = [(context + completion, 0) for context, completion in COMPLETIONS[:3]]
    contexts = [(context, 0) for context, _ in COMPLETIONS[:3]]
    conditional = completion_texts()[:3]
    scores = score_completions(scorer, whole + contexts + conditional, accelerator, progress=False)
    np.testing.assert_allclose(scores[:3], scores[3:6] + scores[6:], atol=1e-4, rtol=0)


def test_masked_completion_pll_equals_a_direct_computation(tiny_models, accelerator):
    texts = completion_texts()
    scorer = load_scorer(str(tiny_models["masked"]), None, ScoringOptions(batch_size=5), accelerator.device)
    ours = score_completions(scorer, texts, accelerator, progress=False)
    direct = [direct_pll(scorer.model, scorer.tokenizer, text, start) for text, start in texts]
    np.testing.assert_allclose(ours, direct, atol=1e-4, rtol=0)
    whole = score_completions(scorer, [(text, 0) for text, _ in texts], accelerator, progress=False)
    assert np.all(ours[:4] > whole[:4])  # fewer (negative) terms: the context is not scored


def test_discriminator_completion_score_sums_the_completion_tokens(tiny_models, accelerator):
    texts = completion_texts()
    scorer = load_scorer(str(tiny_models["electra"]), None, ScoringOptions(), accelerator.device)
    ours = score_completions(scorer, texts, accelerator, progress=False)
    for (text, start), score in zip(texts, ours):
        encoded = scorer.tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
        with torch.no_grad():
            logits = scorer.model(input_ids=torch.tensor([encoded["input_ids"]])).logits[0].double()
        keep = [i for i in scored_positions(encoded["offset_mapping"], start) if not encoded["special_tokens_mask"][i]]
        assert score == pytest.approx(float(torch.nn.functional.logsigmoid(-logits[keep]).sum()), abs=1e-4)


def test_bos_tokenizer_follows_the_special_tokens_the_tokenizer_adds(tiny_models, accelerator, tmp_path):
    """--bos tokenizer (the BabyLM pipeline): our BPE tokenizer adds nothing, so the first token is
    unscored (as --bos none); a tokenizer that adds a BOS itself (LLaMA's) makes it --bos prepend."""
    texts = completion_texts()

    def scores(folder, bos):
        scorer = load_scorer(str(folder), None, ScoringOptions(bos=bos), accelerator.device)
        return score_completions(scorer, texts, accelerator, progress=False)

    np.testing.assert_allclose(scores(tiny_models["causal"], "tokenizer"), scores(tiny_models["causal"], "none"))
    adds_bos = tmp_path / "adds_bos"
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["causal"])
    bos = tokenizer.bos_token
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, tokenizer.bos_token_id)]
    )
    tokenizer.save_pretrained(adds_bos)
    for name in ("config.json", "model.safetensors"):
        (adds_bos / name).write_bytes((tiny_models["causal"] / name).read_bytes())
    assert AutoTokenizer.from_pretrained(adds_bos)("The cats")["input_ids"][0] == tokenizer.bos_token_id
    np.testing.assert_allclose(scores(adds_bos, "tokenizer"), scores(tiny_models["causal"], "prepend"), atol=1e-5)


def test_a_shared_context_scored_once_gives_the_padded_batch_scores(tiny_models, accelerator):
    """Candidates of one long context share a pass over it (a KV cache): the same scores as each
    candidate padded to full length, a word split at the boundary included (its tokens are not
    shared: the first scored token ends the shared part)."""
    context = "The dogs near the cats see the birds. No dog ever runs. The girls see themselves. The cat"
    endings = ["s sleep.", " sleeps.", " sleep near the dogs.", " runs."]
    texts = [(context + ending, len(context)) for ending in endings] + completion_texts()

    def scores(shared_prefix_tokens):
        options = ScoringOptions(shared_prefix_tokens=shared_prefix_tokens, batch_size=4)
        scorer = load_scorer(str(tiny_models["causal"]), None, options, accelerator.device)
        rows = scorer.rows([text for text, _ in texts], [start for _, start in texts])
        groups = scorer.prefix_groups(rows, [text[:start] for text, start in texts])
        return score_completions(scorer, texts, accelerator, progress=False), groups

    padded, none = scores(0)
    shared, groups = scores(1)
    assert none == [] and [sorted(group.tolist()) for group in groups] == [[0, 1, 2, 3]]  # the others stand alone
    np.testing.assert_allclose(shared, padded, atol=1e-5, rtol=0)
    assert scores(10_000)[1] == []  # too little saved: padded


def test_a_context_with_many_candidates_is_cut_to_the_batch_limits(tiny_models, accelerator):
    context = "No dog ever sees the cats near the birds. The girls see"
    endings = [f" the {noun}." for noun in ("cats", "dogs", "birds", "pigs", "foxes", "lions", "bears")]
    texts = [(context + ending, len(context)) for ending in endings]
    options = ScoringOptions(shared_prefix_tokens=1, batch_size=3)
    scorer = load_scorer(str(tiny_models["causal"]), None, options, accelerator.device)
    rows = scorer.rows([text for text, _ in texts], [start for _, start in texts])
    groups = scorer.prefix_groups(rows, [context] * len(texts))
    assert [len(group) for group in groups] == [3, 3, 1] and sorted(np.concatenate(groups)) == list(range(7))
    padded = score_completions(
        load_scorer(str(tiny_models["causal"]), None, ScoringOptions(shared_prefix_tokens=0), accelerator.device),
        texts,
        accelerator,
        progress=False,
    )
    np.testing.assert_allclose(score_completions(scorer, texts, accelerator, progress=False), padded, atol=1e-5)


def test_a_text_with_nothing_to_score_is_refused(tiny_models, accelerator):
    scorer = load_scorer(str(tiny_models["causal"]), None, ScoringOptions(), accelerator.device)
    with pytest.raises(UsageError, match="nothing to score in 'The cats' after its first 8 characters"):
        score_completions(scorer, [("The cats sleep.", 8), ("The cats", 8)], accelerator, progress=False)
