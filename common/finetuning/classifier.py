"""A pretrained model with a sequence-classification head, and texts encoded for it.

Every kind this project saves gets its stock `transformers` head: causal models classify from
their last non-pad token (so the config must name a pad token), BERT and ELECTRA from their first
token, ELECTRA-MoE through `ElectraMoeForSequenceClassification`. Llama 4's text model has no
classification class in `transformers`, so it gets the generic last-token head here.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
import transformers
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, Llama4TextConfig
from transformers.modeling_layers import GenericForSequenceClassification
from transformers.models.llama4.modeling_llama4 import Llama4PreTrainedModel

import common.models.modeling_electra_moe  # noqa: F401  (registers electra_moe with the Auto classes)
from common.errors import UsageError, first_line
from common.model_source import ModelSource


class Llama4TextForSequenceClassification(GenericForSequenceClassification, Llama4PreTrainedModel):
    """The last-non-pad-token head that LLaMA, Gemma 2 and OLMo 2 have, over Llama 4's text model."""

    config_class = Llama4TextConfig
    base_model_prefix = "model"  # Llama4ForCausalLM keeps its body in `model`, so the weights load


EXTRA_CLASSIFIERS = {"llama4_text": Llama4TextForSequenceClassification}


def load_config(source: ModelSource):
    try:
        return AutoConfig.from_pretrained(source.name_or_path, **source.hub_options())
    except (OSError, ValueError, KeyError) as error:
        raise UsageError(f"{source.flag}: cannot load ({first_line(error)})") from None


def load_classification_tokenizer(source: ModelSource):
    """The model's tokenizer, with a pad token: its own, else its EOS token (GPT-2 and most causal
    Hub models have none); a model with neither cannot pad a batch. Also the model's number of
    positions (None if its config does not say), the most tokens an example may have."""
    source.check()
    config = load_config(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.name_or_path, **source.hub_options())
    except (OSError, ValueError, KeyError) as error:
        raise UsageError(f"{source.flag}: cannot load its tokenizer ({first_line(error)})") from None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise UsageError(f"{source.flag}: its tokenizer has no pad token and no EOS token to pad with")
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.pad_token_id >= config.vocab_size:
        raise UsageError(
            f"{source.flag}: its pad token {tokenizer.pad_token!r} (id {tokenizer.pad_token_id}) is "
            f"outside the model's vocabulary of {config.vocab_size}"
        )
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    return tokenizer, positions


def load_classifier(source: ModelSource, labels: tuple[str, ...] | None, pad_token_id: int):
    """The model with a fresh head for `labels` (None: one regression output).

    Only head weights may be missing from the checkpoint: anything else means the body did not
    load (a model of another kind under the same name), which training would silently hide.
    """
    config = load_config(source)
    num_labels = 1 if labels is None else len(labels)
    head = dict(
        num_labels=num_labels,
        pad_token_id=pad_token_id,
        problem_type="regression" if labels is None else "single_label_classification",
    )
    if labels is not None:
        head.update(id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
    model_class = EXTRA_CLASSIFIERS.get(config.model_type, AutoModelForSequenceClassification)
    try:
        with quiet_transformers():
            model, loading = model_class.from_pretrained(
                source.name_or_path, output_loading_info=True, **head, **source.hub_options()
            )
    except (OSError, ValueError, KeyError) as error:
        raise UsageError(f"{source.flag}: cannot load a sequence classifier ({first_line(error)})") from None
    body = [key for key in loading["missing_keys"] if is_body_weight(key, model.base_model_prefix)]
    if body:
        raise UsageError(
            f"{source.flag}: {len(body)} weights of the model body are not in the checkpoint "
            f"(e.g. {sorted(body)[0]}): is it a {config.model_type} model?"
        )
    return model


def is_body_weight(key: str, prefix: str) -> bool:
    """Body weights live under the base-model prefix; BERT's pooler is new when the checkpoint
    was saved by a masked-LM model, like the head."""
    return key.startswith(prefix + ".") and ".pooler." not in key


@contextlib.contextmanager
def quiet_transformers():
    """Hide the load report listing the new head's weights, once per model and seed."""
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)


# --- texts -> token ids ------------------------------------------------------------------------


@dataclass(frozen=True)
class Encoded:
    """A tokenised split: one id list per example (token types when the model uses them)."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: np.ndarray  # int64 class indices, or float32 regression targets

    def __len__(self) -> int:
        return len(self.input_ids)


def encode(tokenizer, texts: list[tuple[str, ...]], labels, max_length: int, truncation: str = "head") -> Encoded:
    """Token ids of single texts or pairs, at most `max_length` each.

    `head` keeps the beginning (pairs lose tokens from the longer text first); `head_tail` keeps
    the first quarter and the last three quarters of the budget (Sun et al. 2019: for long
    documents both the opening and the conclusion carry the label), special tokens included, since
    the tokenizer puts them at both ends. A tokenizer without a pair template (a byte-level BPE)
    gets its EOS token between the two texts, so the model sees where one ends.
    """
    pairs = len(texts[0]) == 2 if texts else False
    if pairs and tokenizer.num_special_tokens_to_add(pair=True) == 0:
        texts = [(f"{a}{tokenizer.eos_token}{b}",) for a, b in texts]
        pairs = False
    columns = list(zip(*texts)) if texts else [[]]
    whole = truncation == "head_tail"
    encoding = tokenizer(
        *map(list, columns),
        truncation=False if whole else "longest_first",
        max_length=None if whole else max_length,
        return_token_type_ids=pairs or None,
        return_attention_mask=False,
    )
    input_ids = encoding["input_ids"]
    token_type_ids = encoding.get("token_type_ids") if pairs else None
    if whole:
        input_ids = [head_and_tail(ids, max_length) for ids in input_ids]
    dtype = np.float32 if labels is not None and np.asarray(labels).dtype.kind == "f" else np.int64
    return Encoded(input_ids, token_type_ids, np.asarray(labels, dtype=dtype))


def head_and_tail(ids: list[int], max_length: int) -> list[int]:
    if len(ids) <= max_length:
        return ids
    head = max_length // 4
    return ids[:head] + ids[len(ids) - (max_length - head) :]


class EncodedDataset(torch.utils.data.Dataset):
    def __init__(self, encoded: Encoded):
        self.encoded = encoded

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, index: int) -> dict:
        item = {"input_ids": self.encoded.input_ids[index], "labels": self.encoded.labels[index]}
        if self.encoded.token_type_ids is not None:
            item["token_type_ids"] = self.encoded.token_type_ids[index]
        return item


def collate(items: list[dict], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch to its longest example (causal heads find the last non-pad token)."""
    longest = max(len(item["input_ids"]) for item in items)
    batch = {
        "input_ids": torch.full((len(items), longest), pad_token_id, dtype=torch.long),
        "attention_mask": torch.zeros((len(items), longest), dtype=torch.long),
    }
    if "token_type_ids" in items[0]:
        batch["token_type_ids"] = torch.zeros((len(items), longest), dtype=torch.long)
    for row, item in enumerate(items):
        length = len(item["input_ids"])
        batch["input_ids"][row, :length] = torch.as_tensor(item["input_ids"])
        batch["attention_mask"][row, :length] = 1
        if "token_type_ids" in item:
            batch["token_type_ids"][row, :length] = torch.as_tensor(item["token_type_ids"])
    batch["labels"] = torch.as_tensor(np.stack([item["labels"] for item in items]))
    return batch
