"""Model construction: size presets mapped onto the `transformers` classes of each architecture.

Every model is a stock `transformers` class built from its config, so anything this project
saves loads with `AutoModelForCausalLM` / `AutoModelForMaskedLM` and no code from here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import transformers
from transformers import AutoConfig, BertConfig, ElectraConfig, PretrainedConfig

from common.errors import UsageError, first_line
from common.models.electra import ElectraPair
from common.models.families import AUTO_CLASS_NAMES, CAUSAL_CONFIGS, ELECTRA, MODEL_FAMILY
from common.models.modeling_electra_moe import ElectraMoeConfig


def auto_class(objective: str):
    """The `transformers` Auto class a model trained with `objective` saves and loads as."""
    return getattr(transformers, AUTO_CLASS_NAMES[objective])


@dataclass(frozen=True)
class Shape:
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    num_key_value_heads: int | None = None  # None: as many as attention heads (no GQA)
    embedding_size: int | None = None  # ELECTRA's factorised embeddings; None: hidden_size


SHAPE_FIELDS = tuple(field.name for field in dataclasses.fields(Shape))

# Parameter counts (with a 16k vocabulary, untied) land near the names; `tiny` is for laptops
# and tests. The 20m/60m/180m shapes follow the data-efficiency study's three sizes.
SIZE_PRESETS: dict[str, Shape] = {
    "tiny": Shape(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512),
    "20m": Shape(hidden_size=384, num_hidden_layers=6, num_attention_heads=6, intermediate_size=1024),
    "60m": Shape(hidden_size=512, num_hidden_layers=12, num_attention_heads=8, intermediate_size=1536),
    "180m": Shape(hidden_size=768, num_hidden_layers=18, num_attention_heads=12, intermediate_size=2048),
}


def resolve_shape(size: str, **overrides: int | None) -> Shape:
    """The preset `size` with every explicitly given (not None) dimension replacing its value."""
    preset = SIZE_PRESETS[size].__dict__
    shape = Shape(
        **{name: overrides.get(name) if overrides.get(name) is not None else value for name, value in preset.items()}
    )
    if shape.hidden_size % shape.num_attention_heads:
        raise UsageError(
            f"--hidden_size {shape.hidden_size} is not divisible by --num_attention_heads {shape.num_attention_heads}"
        )
    kv_heads = shape.num_key_value_heads or shape.num_attention_heads
    if shape.num_attention_heads % kv_heads:
        raise UsageError(
            f"--num_attention_heads {shape.num_attention_heads} is not divisible by --num_key_value_heads {kv_heads}"
        )
    return shape


def model_config(
    model_type: str,
    shape: Shape,
    vocab_size: int,
    max_positions: int,
    special_ids: dict,
    dropout: float | None = None,
    **extras,
) -> PretrainedConfig:
    """A `transformers` config for `model_type` with this shape, vocabulary and special tokens.

    extras: further config fields (the experts and router loss weights of `electra_moe`).
    """
    head_dim = shape.hidden_size // shape.num_attention_heads
    common = dict(
        vocab_size=vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads or shape.num_attention_heads,
        max_position_embeddings=max_positions,
        **special_ids,
    )
    if model_type in CAUSAL_CONFIGS:
        if dropout is not None:
            common["attention_dropout"] = dropout
        return CAUSAL_CONFIGS[model_type](common, head_dim, max_positions)
    if model_type not in MODEL_FAMILY:
        raise UsageError(f"--model_type {model_type}: unknown ({', '.join(MODEL_FAMILY)})")
    # BERT-family encoders: no grouped-query attention, BERT's dropouts
    del common["num_key_value_heads"]
    dropouts = {} if dropout is None else {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    if model_type == "bert":
        return BertConfig(**common, **dropouts)
    config_class = ElectraMoeConfig if model_type == "electra_moe" else ElectraConfig
    return config_class(**common, **dropouts, **extras, embedding_size=shape.embedding_size or shape.hidden_size)


def special_token_ids(tokenizer) -> dict[str, int | None]:
    return {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def build_model(
    model_type: str,
    objective: str,
    shape: Shape,
    tokenizer,
    max_positions: int,
    dropout: float | None = None,
    generator_size_divisor: int = 4,
    **extras,
):
    """A freshly initialised model; for ELECTRA the generator + discriminator pair it trains."""
    config = model_config(
        model_type, shape, len(tokenizer), max_positions, special_token_ids(tokenizer), dropout, **extras
    )
    if objective != ELECTRA:
        return auto_class(objective).from_config(config)
    try:
        return ElectraPair.build(config, generator_size_divisor)
    except ValueError as error:
        raise UsageError(f"--generator_size_divisor {generator_size_divisor}: {first_line(error)}") from None


def load_model(name_or_path: str, objective: str, tokenizer):
    """A saved model to continue training with `objective`; its vocabulary must hold the tokenizer's."""
    try:
        config = AutoConfig.from_pretrained(name_or_path)
        if objective == ELECTRA:
            model = ElectraPair.from_pretrained(name_or_path)
        else:
            model = auto_class(objective).from_pretrained(name_or_path)
    except (OSError, ValueError) as error:
        raise UsageError(
            f"--model_name_or_path {name_or_path}: cannot load a model for --objective {objective} "
            f"({first_line(error)})"
        ) from None
    if config.vocab_size < len(tokenizer):
        raise UsageError(
            f"--model_name_or_path {name_or_path}: its vocabulary ({config.vocab_size}) is smaller "
            f"than the tokenizer's ({len(tokenizer)})"
        )
    return model


def max_positions(config: PretrainedConfig) -> int:
    return int(getattr(config, "max_position_embeddings", 0) or 0)
