"""Sentence log-likelihood scores from causal, masked and ELECTRA models, batched and sharded.

- Causal: the sum of the sentence's token log-probabilities, after a BOS token by default (the
  first token is then predicted too; without it the first token has no context and no score).
- Masked: the pseudo-log-likelihood (Salazar et al. 2020): each token masked in turn, summing
  log P(original token). `word_l2r` (Kauf & Ivanova 2023) also masks the later pieces of the same
  word, so a word split into pieces is not scored from its own other pieces.
- ELECTRA: the discriminator's sum over tokens of log P(token is original).

Work is cut into rows (a sentence, or one masked copy of it), sorted by length, and packed into
batches before anything is sharded: every process runs whole batches of that one plan, so a
sentence's score is the same on any number of processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from accelerate.utils import gather_object
from tqdm.auto import tqdm
from transformers import (
    AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForPreTraining, AutoTokenizer,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

import common.modeling_electra_moe  # noqa: F401  (registers electra_moe with the Auto classes)
from common.errors import UsageError, first_line

SCORER_KINDS = ("causal", "masked", "electra")
ELECTRA_TYPES = ("electra", "electra_moe")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class ScoringOptions:
    bos: bool = True                       # causal: prepend BOS so the first token is scored too
    pll_variant: str = "original"          # masked: original | word_l2r
    electra_scorer: str = "discriminator"  # ELECTRA: discriminator | generator (its PLL)
    batch_size: int = 128                  # rows per forward
    max_batch_tokens: int = 16384          # padded tokens per forward
    dtype: str = "float32"


class Row(NamedTuple):
    sentence: int                 # index into the sentence list
    ids: list[int]
    target: int = -1              # masked scoring: the position whose token is predicted
    masked: tuple[int, ...] = ()  # masked scoring: every position replaced by the mask token


# --- which head scores a model ---------------------------------------------------------------


def scorer_kind(config) -> str:
    """causal | masked | electra, from the architectures a config names (else its model type)."""
    architectures = config.architectures or []
    if config.model_type in ELECTRA_TYPES and any(a.endswith("ForPreTraining") for a in architectures):
        return "electra"
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        return "causal"
    if any(a.endswith(("ForMaskedLM", "ForPreTraining")) for a in architectures):
        return "masked"
    if not architectures:
        if config.model_type in ELECTRA_TYPES:
            return "electra"
        if config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
            return "masked"
        if config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
            return "causal"
    described = ", ".join(architectures) or config.model_type
    raise UsageError(f"a {described} model cannot score sentences: it needs a causal LM head, a masked LM head "
                     f"or an ELECTRA discriminator")


def load_scorer(name_or_path: str, revision: str | None, options: ScoringOptions, device) -> "SentenceScorer":
    """The scorer for a saved model folder or Hub id (a revision is a Hub branch, tag or commit)."""
    flag = f"--model_name_or_path {name_or_path}" + (f" --revision {revision}" if revision else "")
    if revision and Path(name_or_path).is_dir():
        raise UsageError(f"{flag}: --revision selects a Hub branch; {name_or_path} is a local folder")
    if looks_like_path(name_or_path) and not Path(name_or_path).is_dir():
        raise UsageError(f"{flag}: no such folder")
    hub = {"revision": revision} if revision else {}
    try:
        config = AutoConfig.from_pretrained(name_or_path, **hub)
        kind = scorer_kind(config)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, **hub)
        dtype = DTYPES[options.dtype]
        if kind == "electra" and options.electra_scorer == "generator":
            model = AutoModelForMaskedLM.from_pretrained(name_or_path, subfolder="generator", dtype=dtype, **hub)
            kind = "masked"
        else:
            auto = {"causal": AutoModelForCausalLM, "masked": AutoModelForMaskedLM,
                    "electra": AutoModelForPreTraining}[kind]
            model = auto.from_pretrained(name_or_path, dtype=dtype, **hub)
    except UsageError as error:
        raise UsageError(f"{flag}: {error}") from None
    except (OSError, ValueError, KeyError) as error:
        raise UsageError(f"{flag}: cannot load ({first_line(error)})") from None
    model.to(device).eval()
    scorer = {"causal": CausalScorer, "masked": MaskedScorer, "electra": DiscriminatorScorer}[kind]
    return scorer(model, tokenizer, options)


def looks_like_path(name: str) -> bool:
    """A Hub id is `name` or `owner/name`; anything else names a local folder."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1


# --- scorers: rows of token ids in, one float per row out -------------------------------------


class SentenceScorer:
    """Turns sentences into rows and a batch of rows into one log-likelihood term per row."""

    name = ""

    def __init__(self, model, tokenizer, options: ScoringOptions):
        self.model, self.tokenizer, self.options = model, tokenizer, options
        self.device = next(model.parameters()).device
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def rows(self, sentences: list[str]) -> list[Row]:
        raise NotImplementedError

    def score_rows(self, rows: list[Row]) -> torch.Tensor:
        raise NotImplementedError

    def padded(self, rows: list[Row], mask_id: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded input ids and attention mask of a batch, on the model's device; with
        mask_id, each row's `masked` positions hold it. Built on the host in one piece, so a
        batch costs one copy to the GPU, not one small kernel per row."""
        width = max(len(row.ids) for row in rows)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        attention = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, :len(row.ids)] = row.ids
            attention[i, :len(row.ids)] = 1
            if mask_id is not None:
                ids[i, list(row.masked)] = mask_id
        return torch.from_numpy(ids).to(self.device), torch.from_numpy(attention).to(self.device)

    def check_lengths(self, rows: list[Row], sentences: list[str]) -> None:
        limit = getattr(self.model.config, "max_position_embeddings", None)
        longest = max(rows, key=lambda row: len(row.ids), default=None)
        if limit and longest and len(longest.ids) > limit:
            raise UsageError(f"the sentence {sentences[longest.sentence]!r} takes {len(longest.ids)} tokens, more "
                             f"than the model's {limit} positions")


class CausalScorer(SentenceScorer):
    def __init__(self, model, tokenizer, options: ScoringOptions):
        super().__init__(model, tokenizer, options)
        self.bos_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        if options.bos and self.bos_id is None:
            raise UsageError("the tokenizer has neither a BOS nor an EOS token to prepend; pass --no_bos")
        self.name = "causal, sum of token log-probabilities" + (" after BOS" if options.bos else "")

    def rows(self, sentences: list[str]) -> list[Row]:
        encoded = self.tokenizer(sentences, add_special_tokens=False)["input_ids"]
        prefix = [self.bos_id] if self.options.bos else []
        return [Row(i, prefix + ids) for i, ids in enumerate(encoded)]

    def score_rows(self, rows: list[Row]) -> torch.Tensor:
        ids, attention = self.padded(rows)
        logits = self.model(input_ids=ids, attention_mask=attention).logits[:, :-1]
        targets = ids[:, 1:].masked_fill(attention[:, 1:] == 0, -100)
        token_logp = -F.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=-100, reduction="none")
        return token_logp.double().sum(dim=1)


class MaskedScorer(SentenceScorer):
    def __init__(self, model, tokenizer, options: ScoringOptions):
        super().__init__(model, tokenizer, options)
        if tokenizer.mask_token_id is None:
            raise UsageError("the tokenizer has no mask token, so pseudo-log-likelihoods cannot be computed")
        if options.pll_variant == "word_l2r" and not tokenizer.is_fast:
            raise UsageError("--pll_variant word_l2r needs a fast tokenizer (it uses word ids)")
        self.head = prediction_head(model)
        self.name = f"masked, pseudo-log-likelihood ({options.pll_variant})"

    def rows(self, sentences: list[str]) -> list[Row]:
        encoded = self.tokenizer(sentences, return_special_tokens_mask=True)
        rows = []
        for i, (ids, special) in enumerate(zip(encoded["input_ids"], encoded["special_tokens_mask"])):
            words = encoded.word_ids(i) if self.options.pll_variant == "word_l2r" else None
            rows += [Row(i, ids, position, masked) for position, masked in pll_masks(special, words)]
        return rows

    def score_rows(self, rows: list[Row]) -> torch.Tensor:
        ids, attention = self.padded(rows, mask_id=self.tokenizer.mask_token_id)
        originals = torch.tensor([row.ids[row.target] for row in rows], device=self.device)
        targets = torch.tensor([row.target for row in rows], device=self.device)
        logits = masked_position_logits(self.model, self.head, ids, attention, targets)
        return -F.cross_entropy(logits.float(), originals, reduction="none").double()


class DiscriminatorScorer(SentenceScorer):
    name = "ELECTRA discriminator, sum of log P(original)"

    def rows(self, sentences: list[str]) -> list[Row]:
        # Row.masked holds the special-token positions here: they are not scored.
        encoded = self.tokenizer(sentences, return_special_tokens_mask=True)
        return [Row(i, ids, masked=tuple(p for p, s in enumerate(special) if s))
                for i, (ids, special) in enumerate(zip(encoded["input_ids"], encoded["special_tokens_mask"]))]

    def score_rows(self, rows: list[Row]) -> torch.Tensor:
        ids, attention = self.padded(rows)
        scored = torch.from_numpy(scored_positions(rows, ids.shape[1])).to(self.device)
        replaced_logits = self.model(input_ids=ids, attention_mask=attention).logits.float()
        log_original = F.logsigmoid(-replaced_logits).masked_fill(~scored, 0.0)
        return log_original.double().sum(dim=1)


def scored_positions(rows: list[Row], width: int) -> np.ndarray:
    """(rows, width) booleans: the real, non-special tokens of each row."""
    scored = np.zeros((len(rows), width), dtype=bool)
    for i, row in enumerate(rows):
        scored[i, :len(row.ids)] = True
        scored[i, list(row.masked)] = False
    return scored


def pll_masks(special_mask: list[int], word_ids: list[int | None] | None) -> list[tuple[int, tuple[int, ...]]]:
    """(target position, positions to mask) for each scored token of one sentence.

    word_ids given (word_l2r): the target's later pieces of the same word are masked with it.
    """
    targets = [p for p, special in enumerate(special_mask) if not special]
    if word_ids is None:
        return [(p, (p,)) for p in targets]
    return [(p, (p, *[q for q in targets if q > p and word_ids[q] is not None and word_ids[q] == word_ids[p]]))
            for p in targets]


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
    """The log-likelihood score of every sentence (float64), the same on any number of processes."""
    rows = scorer.rows(sentences)
    scorer.check_lengths(rows, sentences)
    batches = plan_batches([len(row.ids) for row in rows], scorer.options.batch_size, scorer.options.max_batch_tokens)
    mine = batches[accelerator.process_index::accelerator.num_processes]
    values = []
    bar = tqdm(mine, desc="scoring", unit="batch", disable=not accelerator.is_main_process or not progress or None)
    with torch.inference_mode():
        for batch in bar:
            scores = scorer.score_rows([rows[i] for i in batch]).cpu().tolist()
            values += zip(batch, scores)
    if accelerator.num_processes > 1:
        values = gather_object(values)
    row_scores = np.zeros(len(rows), dtype=np.float64)
    for index, value in values:
        row_scores[index] = value
    totals = np.zeros(len(sentences), dtype=np.float64)
    np.add.at(totals, np.array([row.sentence for row in rows], dtype=np.int64), row_scores)  # in row order
    if not np.all(np.isfinite(totals)):
        raise UsageError(f"{int((~np.isfinite(totals)).sum())} sentence scores are not finite (NaN or inf): "
                         f"the model's outputs overflow; try --dtype float32")
    return totals
