"""Sentence log-likelihood scores from causal, masked and ELECTRA models, batched and sharded.

- Causal: the sum of the sentence's token log-probabilities, after a BOS token by default (the
  first token is then predicted too; without it the first token has no context and no score).
  `bos="tokenizer"` is the BabyLM pipeline's rule instead: the special tokens the tokenizer adds
  itself (a LLaMA tokenizer's BOS, a GPT-2 one's nothing), and the first token never scored.
- Masked: the pseudo-log-likelihood (Salazar et al. 2020): each token masked in turn, summing
  log P(original token). `word_l2r` (Kauf & Ivanova 2023) also masks the later pieces of the same
  word, so a word split into pieces is not scored from its own other pieces.
- ELECTRA: the discriminator's sum over tokens of log P(token is original).

Work is cut into rows (a sentence, or one masked copy of it), sorted by length, and packed into
batches before anything is sharded: every process runs whole batches of that one plan, so a
sentence's score is the same on any number of processes. A causal model scores the candidates of
one long context (entity tracking's five endings of a 150-token story) as a group instead: one pass
over the context fills a KV cache, then the endings run after it together (measured 3x faster on
entity tracking than padding every candidate to full length; slower for EWoK's short contexts, so
only groups that save enough tokens are formed).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from accelerate.utils import gather_object
from tqdm.auto import tqdm
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForPreTraining,
    AutoTokenizer,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

import common.models.modeling_electra_moe  # noqa: F401  (registers electra_moe with the Auto classes)
from common.errors import UsageError, first_line
from common.model_source import ModelSource
from common.models.families import ELECTRA_MODEL_TYPES, IGNORE

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
CAUSAL_BOS_NAMES = {"prepend": " after BOS", "tokenizer": " (the tokenizer's special tokens)", "none": ""}
# A causal forward holds (tokens x vocabulary) logits: at most this many, 1 GiB in fp32.
MAX_LOGITS = 2**28


@dataclass(frozen=True)
class ScoringOptions:
    bos: str = "prepend"  # causal: prepend | tokenizer (the BabyLM pipeline's rule) | none
    pll_variant: str = "original"  # masked: original | word_l2r
    electra_scorer: str = "discriminator"  # ELECTRA: discriminator | generator (its PLL)
    batch_size: int | None = None  # rows per forward (None: 512 on a GPU, 64 on the CPU)
    max_batch_tokens: int = 16384  # padded tokens per forward
    dtype: str = "float32"
    trust_remote_code: bool = False  # for Hub models whose architecture ships as code (LTG-BERT)
    # causal: share one pass over a context among its candidates when that saves this many tokens (0: never)
    shared_prefix_tokens: int = 256


# --- which head scores a model ---------------------------------------------------------------


def scorer_kind(config) -> str:
    """causal | masked | electra, from the architectures a config names (else its model type)."""
    architectures = config.architectures or []
    if config.model_type in ELECTRA_MODEL_TYPES and any(a.endswith("ForPreTraining") for a in architectures):
        return "electra"
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        return "causal"
    if any(a.endswith(("ForMaskedLM", "ForPreTraining")) for a in architectures):
        return "masked"
    if not architectures:
        if config.model_type in ELECTRA_MODEL_TYPES:
            return "electra"
        if config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
            return "masked"
        if config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
            return "causal"
    described = ", ".join(architectures) or config.model_type
    raise UsageError(
        f"a {described} model cannot score sentences: it needs a causal LM head, a masked LM head "
        f"or an ELECTRA discriminator"
    )


def load_scorer(name_or_path: str, revision: str | None, options: ScoringOptions, device) -> SentenceScorer:
    """The scorer for a saved model folder or Hub id (a revision is a Hub branch, tag or commit)."""
    source = ModelSource(name_or_path, revision)
    source.check()
    flag, hub = source.flag, source.hub_options()
    if options.trust_remote_code:
        hub["trust_remote_code"] = True
    try:
        config = AutoConfig.from_pretrained(name_or_path, **hub)
        kind = scorer_kind(config)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, **hub)
        dtype = DTYPES[options.dtype]
        if kind == "electra" and options.electra_scorer == "generator":
            model = AutoModelForMaskedLM.from_pretrained(name_or_path, subfolder="generator", dtype=dtype, **hub)
            kind = "masked"
        else:
            auto = {"causal": AutoModelForCausalLM, "masked": AutoModelForMaskedLM, "electra": AutoModelForPreTraining}[
                kind
            ]
            model = auto.from_pretrained(name_or_path, dtype=dtype, **hub)
    except UsageError as error:
        raise UsageError(f"{flag}: {error}") from None
    except (OSError, ValueError, KeyError) as error:
        raise UsageError(f"{flag}: cannot load ({first_line(error)})") from None
    model.to(device).eval()
    scorer = {"causal": CausalScorer, "masked": MaskedScorer, "electra": DiscriminatorScorer}[kind]
    return scorer(model, tokenizer, options)


# --- scorers: rows of token ids in, one float per row out -------------------------------------


@dataclass(frozen=True)
class Rows:
    """The forward rows of a scoring job as arrays, so that a batch of any size is assembled by
    a few numpy operations (on a GPU, host-side Python per row would cost more than the model).

    A row is a sentence's tokens, for masked scoring with the span target..mask_end replaced by
    the mask token (one position for the original PLL, the rest of the word too for word_l2r).
    """

    tokens: np.ndarray  # (sentences, longest): token ids, padded
    scored: np.ndarray  # (sentences, longest): True where a token counts (not special, not padding)
    sentence: np.ndarray  # (rows,): the sentence of each row
    length: np.ndarray  # (rows,): its number of tokens
    target: np.ndarray  # (rows,): masked scoring: the position predicted (else -1)
    mask_end: np.ndarray  # (rows,): masked scoring: the last position masked with it (else -1)

    def __len__(self) -> int:
        return len(self.sentence)

    def batch(self, indices: np.ndarray, mask_id: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, attention) of these rows, cut to their longest, masked when mask_id is given."""
        width = int(self.length[indices].max())
        ids = self.tokens[self.sentence[indices], :width].copy()
        columns = np.arange(width)
        attention = (columns < self.length[indices, None]).astype(np.int64)
        if mask_id is not None:
            span = (columns >= self.target[indices, None]) & (columns <= self.mask_end[indices, None])
            ids[span] = mask_id
        return ids, attention


def sentence_rows(encoded: list[list[int]], scored_tokens: list[list[bool]], pad_id: int) -> Rows:
    """One row per text (causal and discriminator scoring); `scored_tokens` marks, per text, the
    tokens whose log-probability counts."""
    lengths = np.array([len(ids) for ids in encoded], dtype=np.int64)
    tokens = np.full((len(encoded), max(lengths, default=1)), pad_id, dtype=np.int64)
    scored = np.zeros(tokens.shape, dtype=bool)
    for i, (ids, counts) in enumerate(zip(encoded, scored_tokens)):
        tokens[i, : len(ids)] = ids
        scored[i, : len(ids)] = counts
    none = np.full(len(encoded), -1, dtype=np.int64)
    return Rows(tokens, scored, np.arange(len(encoded)), lengths, none, none)


def completion_tokens(offsets: list[tuple[int, int]], start: int, special: list[int] | None = None) -> list[bool]:
    """Which tokens of a text are scored when its first `start` characters are context: those that
    end after `start` (a token straddling the boundary counts, as in the BabyLM pipeline), never a
    special token."""
    special = special or [0] * len(offsets)
    return [end > start and not is_special for (_, end), is_special in zip(offsets, special)]


def pll_rows(sentences: Rows, word_ids: list[list[int | None]] | None) -> Rows:
    """One row per scored token of every sentence, masking it (and, with word_ids, the later
    pieces of its word: a word's pieces are consecutive, so that is a span)."""
    sentence, target, mask_end = [], [], []
    for i in range(len(sentences.sentence)):
        positions = np.flatnonzero(sentences.scored[i])
        ends = positions if word_ids is None else word_span_ends(positions, word_ids[i])
        sentence.append(np.full(len(positions), i))
        target.append(positions)
        mask_end.append(ends)
    sentence = np.concatenate(sentence).astype(np.int64)
    return Rows(
        sentences.tokens,
        sentences.scored,
        sentence,
        sentences.length[sentence],
        np.concatenate(target).astype(np.int64),
        np.concatenate(mask_end).astype(np.int64),
    )


def word_span_ends(positions: np.ndarray, word_ids: list[int | None]) -> np.ndarray:
    """For each scored position, the last scored position of the same word."""
    ends = positions.copy()
    for k in range(len(positions) - 2, -1, -1):
        here, after = word_ids[positions[k]], word_ids[positions[k + 1]]
        if here is not None and here == after and positions[k + 1] == positions[k] + 1:
            ends[k] = ends[k + 1]
    return ends


class SentenceScorer:
    """Turns sentences into rows and a batch of rows into one log-likelihood term per row."""

    name = ""

    def __init__(self, model, tokenizer, options: ScoringOptions):
        self.model, self.tokenizer, self.options = model, tokenizer, options
        self.device = next(model.parameters()).device
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def rows(self, texts: list[str], starts: list[int]) -> Rows:
        """The rows that score each text from its character `start` on (0: the whole text)."""
        raise NotImplementedError

    def score_rows(self, rows: Rows, indices: np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    def prefix_groups(self, rows: Rows, contexts: list[str]) -> list[np.ndarray]:
        """Texts scored together after one pass over the context they share (causal models only)."""
        return []

    def score_group(self, rows: Rows, group: np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    def rows_per_batch(self) -> int:
        # Measured: on a GPU small models are bound by kernel launches, so bigger batches win; on
        # the CPU matmuls that fit the caches do.
        return self.options.batch_size or (512 if self.device.type == "cuda" else 64)

    def tokens_per_batch(self) -> int:
        return self.options.max_batch_tokens

    def on_device(self, *arrays: np.ndarray) -> list[torch.Tensor]:
        return [torch.from_numpy(array).to(self.device) for array in arrays]

    def check_lengths(self, rows: Rows, texts: list[str]) -> None:
        limit = getattr(self.model.config, "max_position_embeddings", None)
        longest = int(np.argmax(rows.length)) if len(rows) else None
        if limit and longest is not None and rows.length[longest] > limit:
            raise UsageError(
                f"the text {texts[rows.sentence[longest]]!r} takes {rows.length[longest]} "
                f"tokens, more than the model's {limit} positions"
            )


class CausalScorer(SentenceScorer):
    def __init__(self, model, tokenizer, options: ScoringOptions):
        super().__init__(model, tokenizer, options)
        self.bos_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        if options.bos == "prepend" and self.bos_id is None:
            raise UsageError("the tokenizer has neither a BOS nor an EOS token to prepend; pass --bos tokenizer")
        self.name = "causal, sum of token log-probabilities" + CAUSAL_BOS_NAMES[options.bos]

    def tokens_per_batch(self) -> int:
        # Logits come for every position, so a large vocabulary (GPT-2's 50k) makes batches smaller.
        return max(1, min(self.options.max_batch_tokens, MAX_LOGITS // self.model.config.vocab_size))

    def rows(self, texts: list[str], starts: list[int]) -> Rows:
        if self.options.bos == "tokenizer":  # whatever the tokenizer adds; score_rows never scores the first
            encoded = self.tokenizer(texts, return_special_tokens_mask=True, return_offsets_mapping=True)
            return sentence_rows(encoded["input_ids"], scored_by_offsets(encoded, starts), self.pad_id)
        encoded = self.tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        prefix = [self.bos_id] if self.options.bos == "prepend" else []
        scored = [[False] * len(prefix) + completion_tokens(offsets, start)
                  for offsets, start in zip(encoded["offset_mapping"], starts)]  # fmt: skip
        return sentence_rows([prefix + ids for ids in encoded["input_ids"]], scored, self.pad_id)

    def score_rows(self, rows: Rows, indices: np.ndarray) -> torch.Tensor:
        ids, attention = rows.batch(indices)
        scored = rows.scored[rows.sentence[indices], : ids.shape[1]]
        ids, attention, scored = self.on_device(ids, attention, scored)
        logits = self.model(input_ids=ids, attention_mask=attention).logits[:, :-1]
        targets = ids[:, 1:].masked_fill(~scored[:, 1:], IGNORE)  # the first token has no context
        token_logp = -F.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=IGNORE, reduction="none")
        return token_logp.double().sum(dim=1)

    def prefix_groups(self, rows: Rows, contexts: list[str]) -> list[np.ndarray]:
        """Texts with the same non-empty context, grouped when one pass over the tokens they share
        before their first scored one saves at least `shared_prefix_tokens` tokens (and the
        model's cache can be repeated for the group)."""
        if not self.options.shared_prefix_tokens or not self.can_share_prefixes():
            return []
        by_context: dict[str, list[int]] = {}
        for index, context in enumerate(contexts):
            if context:
                by_context.setdefault(context, []).append(index)
        groups = []
        for members in by_context.values():
            group = np.array(members, dtype=np.int64)
            if len(group) < 2:
                continue
            shared = shared_prefix_length(rows, group)
            if shared > 0 and (len(group) - 1) * shared >= self.options.shared_prefix_tokens:
                groups += self.within_batch_limits(rows, group)
        return groups

    def within_batch_limits(self, rows: Rows, group: np.ndarray) -> list[np.ndarray]:
        """A context's texts in chunks that keep a batch's limits (each chunk passes over the
        context once): rows per batch, and padded tokens (context included) per batch."""
        ordered = group[np.argsort(rows.length[group], kind="stable")]
        chunks, current = [], []
        for index in ordered:
            grown = len(current) + 1
            if current and (grown > self.rows_per_batch() or grown * rows.length[index] > self.tokens_per_batch()):
                chunks.append(np.array(current, dtype=np.int64))
                current = []
            current.append(index)
        return [*chunks, np.array(current, dtype=np.int64)]

    def can_share_prefixes(self) -> bool:
        """Whether this model returns a KV cache that can be repeated for several continuations."""
        if not hasattr(self, "_can_share"):
            with torch.inference_mode():
                out = self.model(input_ids=torch.tensor([[self.pad_id]], device=self.device), use_cache=True)
            self._can_share = hasattr(returned_cache(out), "batch_repeat_interleave")
        return self._can_share

    def score_group(self, rows: Rows, group: np.ndarray) -> torch.Tensor:
        """The group's shared tokens run once, filling the cache; each text's remaining tokens then
        run after it in one padded batch. The same sums as score_rows (to float32 rounding)."""
        shared = shared_prefix_length(rows, group)
        lengths = rows.length[group]
        width = int(lengths.max()) - shared
        context, rest = self.on_device(
            rows.tokens[group[0], None, :shared], rows.tokens[group, shared : shared + width]
        )
        scored, lengths = self.on_device(rows.scored[group, shared : shared + width], lengths - shared)
        attention = torch.cat(
            [
                torch.ones(len(group), shared, dtype=torch.long, device=self.device),
                (torch.arange(width, device=self.device) < lengths[:, None]).long(),
            ],
            dim=1,
        )
        first = self.model(input_ids=context, use_cache=True)
        cache = returned_cache(first)
        cache.batch_repeat_interleave(len(group))
        after = self.model(input_ids=rest, attention_mask=attention, **{self.cache_argument(): cache}).logits
        # the context's last position predicts each text's first remaining token
        logits = torch.cat([first.logits[:, -1:].expand(len(group), 1, -1), after[:, :-1]], dim=1)
        targets = rest.masked_fill(~scored, IGNORE)
        token_logp = -F.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=IGNORE, reduction="none")
        return token_logp.double().sum(dim=1)

    def cache_argument(self) -> str:
        # transformers renamed `past_key_values` to `cache` during 5.x
        return "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"


def returned_cache(output):
    """A forward's KV cache (`cache` in newer transformers 5 releases, `past_key_values` before)."""
    return output["cache"] if "cache" in output else output.get("past_key_values")


def shared_prefix_length(rows: Rows, group: np.ndarray) -> int:
    """How many leading tokens every text of the group has in common before any is scored."""
    first_scored = int(min(np.argmax(rows.scored[i]) for i in group))  # every text has a scored token
    tokens = rows.tokens[group, :first_scored]
    differs = np.flatnonzero((tokens != tokens[0]).any(axis=0))
    return int(differs[0]) if differs.size else first_scored


class MaskedScorer(SentenceScorer):
    def __init__(self, model, tokenizer, options: ScoringOptions):
        super().__init__(model, tokenizer, options)
        if tokenizer.mask_token_id is None:
            raise UsageError("the tokenizer has no mask token, so pseudo-log-likelihoods cannot be computed")
        if options.pll_variant == "word_l2r" and not tokenizer.is_fast:
            raise UsageError("--pll_variant word_l2r needs a fast tokenizer (it uses word ids)")
        self.head = prediction_head(model)
        self.name = f"masked, pseudo-log-likelihood ({options.pll_variant})"

    def rows(self, texts: list[str], starts: list[int]) -> Rows:
        encoded = self.tokenizer(texts, return_special_tokens_mask=True, return_offsets_mapping=True)
        words = [encoded.word_ids(i) for i in range(len(texts))] if self.options.pll_variant == "word_l2r" else None
        return pll_rows(sentence_rows(encoded["input_ids"], scored_by_offsets(encoded, starts), self.pad_id), words)

    def score_rows(self, rows: Rows, indices: np.ndarray) -> torch.Tensor:
        ids, attention = rows.batch(indices, mask_id=self.tokenizer.mask_token_id)
        originals = rows.tokens[rows.sentence[indices], rows.target[indices]]
        ids, attention, targets, originals = self.on_device(ids, attention, rows.target[indices], originals)
        logits = masked_position_logits(self.model, self.head, ids, attention, targets)
        return -F.cross_entropy(logits.float(), originals, reduction="none").double()


class DiscriminatorScorer(SentenceScorer):
    name = "ELECTRA discriminator, sum of log P(original)"

    def rows(self, texts: list[str], starts: list[int]) -> Rows:
        encoded = self.tokenizer(texts, return_special_tokens_mask=True, return_offsets_mapping=True)
        return sentence_rows(encoded["input_ids"], scored_by_offsets(encoded, starts), self.pad_id)

    def score_rows(self, rows: Rows, indices: np.ndarray) -> torch.Tensor:
        ids, attention = rows.batch(indices)
        scored = rows.scored[rows.sentence[indices], : ids.shape[1]]
        ids, attention, scored = self.on_device(ids, attention, scored)
        replaced_logits = self.model(input_ids=ids, attention_mask=attention).logits.float()
        log_original = F.logsigmoid(-replaced_logits).masked_fill(~scored, 0.0)
        return log_original.double().sum(dim=1)


def scored_by_offsets(encoded, starts: list[int]) -> list[list[bool]]:
    """Per text of a batch encoded with special tokens, the tokens scored from character `start` on."""
    columns = zip(encoded["offset_mapping"], starts, encoded["special_tokens_mask"])
    return [completion_tokens(offsets, start, special) for offsets, start, special in columns]


def prediction_head(model):
    """The MLM head as a function of hidden states, so it runs on the masked positions only;
    None for an architecture it is not known for (then the full logits are computed)."""
    if hasattr(model, "generator_lm_head"):  # ELECTRA generator
        return lambda hidden: model.generator_lm_head(model.generator_predictions(hidden))
    for name in ("cls", "lm_head"):  # BERT, RoBERTa
        if hasattr(model, name) and hasattr(model, "base_model"):
            return getattr(model, name)
    return None


def masked_position_logits(model, head, ids, attention, positions) -> torch.Tensor:
    rows = torch.arange(ids.shape[0], device=ids.device)
    if head is None:
        return model(input_ids=ids, attention_mask=attention).logits[rows, positions]
    hidden = model.base_model(input_ids=ids, attention_mask=attention).last_hidden_state
    return head(hidden[rows, positions])


# --- planning and running --------------------------------------------------------------------


def check_something_scored(rows: Rows, texts: list[tuple[str, int]]) -> None:
    """Refuse a text with no token to score (an empty completion would score 0, probability 1)."""
    empty = np.flatnonzero(~rows.scored.any(axis=1)[: len(texts)])
    if empty.size:
        text, start = texts[int(empty[0])]
        raise UsageError(f"nothing to score in {text!r} after its first {start} characters (an empty completion?)")


def plan_batches(lengths: list[int], batch_size: int, max_batch_tokens: int) -> list[list[int]]:
    """Row indices grouped into batches of similar length: sorted by (length, index), cut when a
    batch would exceed batch_size rows or max_batch_tokens padded tokens."""
    batches, current, width = [], [], 0
    for index in sorted(range(len(lengths)), key=lambda i: (lengths[i], i)):
        grown = max(width, lengths[index])
        if current and (len(current) == batch_size or grown * (len(current) + 1) > max_batch_tokens):
            batches.append(current)
            current, grown = [], lengths[index]
        current.append(index)
        width = grown
    if current:
        batches.append(current)
    return batches


def score_sentences(scorer: SentenceScorer, sentences: list[str], accelerator, progress: bool = True) -> np.ndarray:
    """The log-likelihood score of every whole sentence (float64), the same on any number of processes."""
    return score_completions(scorer, [(sentence, 0) for sentence in sentences], accelerator, progress)


def score_completions(
    scorer: SentenceScorer, texts: list[tuple[str, int]], accelerator, progress: bool = True
) -> np.ndarray:
    """log P(completion | context) of every (text, start) (float64): the text's tokens from
    character `start` on, scored with what comes before visible and unscored (the causal model's
    left context; the masked model's PLL of the completion with the context unmasked; the
    discriminator's log P(original) of the completion tokens). The same on any number of processes."""
    sentences, starts = [text for text, _ in texts], [start for _, start in texts]
    rows = scorer.rows(sentences, starts)
    scorer.check_lengths(rows, sentences)
    check_something_scored(rows, texts)
    groups = scorer.prefix_groups(rows, [text[:start] for text, start in texts])
    grouped = np.isin(rows.sentence, np.concatenate(groups)) if groups else np.zeros(len(rows), dtype=bool)
    loose = np.flatnonzero(~grouped)
    batches = plan_batches(rows.length[loose].tolist(), scorer.rows_per_batch(), scorer.tokens_per_batch())
    # One plan of units (padded batches of rows, then groups of a shared context's texts, whose
    # causal rows are the texts themselves), dealt out to the processes in turn.
    units = [("rows", loose[batch]) for batch in batches] + [("group", group) for group in groups]
    mine = units[accelerator.process_index :: accelerator.num_processes]
    done_rows, done_values = [], []
    bar = tqdm(mine, desc="scoring", unit="batch", disable=not accelerator.is_main_process or not progress or None)
    with torch.inference_mode():
        for kind, indices in bar:
            score = scorer.score_rows if kind == "rows" else scorer.score_group
            done_rows.append(indices)
            done_values.append(score(rows, indices).cpu().numpy())
    finished = [(np.concatenate(done_rows or [np.zeros(0, np.int64)]), np.concatenate(done_values or [np.zeros(0)]))]
    if accelerator.num_processes > 1:
        finished = gather_object(finished)
    row_scores = np.zeros(len(rows), dtype=np.float64)
    for indices, values in finished:
        row_scores[indices] = values
    totals = np.zeros(len(sentences), dtype=np.float64)
    np.add.at(totals, rows.sentence, row_scores)  # in row order, whatever the number of processes
    if not np.all(np.isfinite(totals)):
        raise UsageError(
            f"{int((~np.isfinite(totals)).sum())} sentence scores are not finite (NaN or inf): "
            f"the model's outputs overflow; try --dtype float32"
        )
    return totals
