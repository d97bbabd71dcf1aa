"""Model construction: size presets mapped onto the `transformers` classes of each architecture.

Every model is a stock `transformers` class built from its config, so anything this project
saves loads with `AutoModelForCausalLM` / `AutoModelForMaskedLM` and no code from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import (
    AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForPreTraining, BertConfig, ElectraConfig,
    Gemma2Config, LlamaConfig, Llama4TextConfig, Olmo2Config, PretrainedConfig,
)

from common.models.electra import ElectraPair
from common.errors import UsageError, first_line
from common.models.modeling_electra_moe import ElectraMoeConfig

CAUSAL_MODEL_TYPES = ("llama", "gemma2", "olmo2", "llama4")
# The objectives each model type can train, its default first.
MODEL_OBJECTIVES = {**{name: ("causal",) for name in CAUSAL_MODEL_TYPES}, "bert": ("mlm",),
                    "electra": ("electra",), "electra_moe": ("electra",)}
# Which tokenizer a trained one should be for each objective: BERT's WordPiece for masked models.
TOKENIZER_KIND = {"causal": "bpe", "mlm": "wordpiece", "electra": "wordpiece"}
# How a saved model is loaded to train it further (ELECTRA: the discriminator, see ElectraPair).
AUTO_CLASSES = {"causal": AutoModelForCausalLM, "mlm": AutoModelForMaskedLM, "electra": AutoModelForPreTraining}


@dataclass(frozen=True)
class Shape:
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    num_key_value_heads: int | None = None   # None: as many as attention heads (no GQA)
    embedding_size: int | None = None        # ELECTRA's factorised embeddings; None: hidden_size


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
    shape = Shape(**{name: overrides.get(name) if overrides.get(name) is not None else value
                     for name, value in preset.items()})
    if shape.hidden_size % shape.num_attention_heads:
        raise UsageError(
            f"--hidden_size {shape.hidden_size} is not divisible by --num_attention_heads {shape.num_attention_heads}")
    kv_heads = shape.num_key_value_heads or shape.num_attention_heads
    if shape.num_attention_heads % kv_heads:
        raise UsageError(
            f"--num_attention_heads {shape.num_attention_heads} is not divisible by --num_key_value_heads {kv_heads}")
    return shape


def model_config(model_type: str, shape: Shape, vocab_size: int, max_positions: int, special_ids: dict,
                 dropout: float | None = None, **extras) -> PretrainedConfig:
    """A `transformers` config for `model_type` with this shape, vocabulary and special tokens.

    extras: further config fields (the experts and router loss weights of `electra_moe`).
    """
    head_dim = shape.hidden_size // shape.num_attention_heads
    common = dict(
        vocab_size=vocab_size, hidden_size=shape.hidden_size, intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers, num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads or shape.num_attention_heads,
        max_position_embeddings=max_positions, **special_ids,
    )
    if model_type in ("bert", "electra", "electra_moe"):  # BERT-family encoders: no GQA, BERT's dropouts
        del common["num_key_value_heads"]
        dropouts = {} if dropout is None else {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
        if model_type == "bert":
            return BertConfig(**common, **dropouts)
        config_class = ElectraMoeConfig if model_type == "electra_moe" else ElectraConfig
        return config_class(**common, **dropouts, **extras, embedding_size=shape.embedding_size or shape.hidden_size)
    if dropout is not None:
        common["attention_dropout"] = dropout
    if model_type == "llama":
        return LlamaConfig(**common)
    if model_type == "gemma2":
        return Gemma2Config(**common, head_dim=head_dim, query_pre_attn_scalar=head_dim, sliding_window=max_positions)
    if model_type == "olmo2":
        return Olmo2Config(**common)
    if model_type == "llama4":
        # The text-only Llama 4 stack with dense feed-forward layers (no MoE layers) at this size.
        return Llama4TextConfig(**common, head_dim=head_dim, intermediate_size_mlp=shape.intermediate_size,
                                moe_layers=[], attention_chunk_size=max_positions)
    raise UsageError(f"--model_type {model_type}: unknown ({', '.join(MODEL_OBJECTIVES)})")


def special_token_ids(tokenizer) -> dict[str, int | None]:
    return {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id}


def build_model(model_type: str, objective: str, shape: Shape, tokenizer, max_positions: int,
                dropout: float | None = None, generator_size_divisor: int = 4, **extras):
    """A freshly initialised model; for ELECTRA the generator + discriminator pair it trains."""
    config = model_config(model_type, shape, len(tokenizer), max_positions, special_token_ids(tokenizer), dropout,
                          **extras)
    if objective != "electra":
        return AUTO_CLASSES[objective].from_config(config)
    try:
        return ElectraPair.build(config, generator_size_divisor)
    except ValueError as error:
        raise UsageError(f"--generator_size_divisor {generator_size_divisor}: {first_line(error)}") from None


def load_model(name_or_path: str, objective: str, tokenizer):
    """A saved model to continue training with `objective`; its vocabulary must hold the tokenizer's."""
    try:
        config = AutoConfig.from_pretrained(name_or_path)
        if objective == "electra":
            model = ElectraPair.from_pretrained(name_or_path)
        else:
            model = AUTO_CLASSES[objective].from_pretrained(name_or_path)
    except (OSError, ValueError) as error:
        raise UsageError(f"--model_name_or_path {name_or_path}: cannot load a model for --objective {objective} "
                         f"({first_line(error)})") from None
    if config.vocab_size < len(tokenizer):
        raise UsageError(f"--model_name_or_path {name_or_path}: its vocabulary ({config.vocab_size}) is smaller "
                         f"than the tokenizer's ({len(tokenizer)})")
    return model


def max_positions(config: PretrainedConfig) -> int:
    return int(getattr(config, "max_position_embeddings", 0) or 0)


def count_parameters(model, include_embeddings: bool = True) -> int:
    """Distinct parameters (tied weights once); embeddings optional, as in FLOPs estimates."""
    seen, total = set(), 0
    embedding_ids = {id(p) for p in model.get_input_embeddings().parameters()}
    for parameter in model.parameters():
        if id(parameter) in seen or (not include_embeddings and id(parameter) in embedding_ids):
            continue
        seen.add(id(parameter))
        total += parameter.numel()
    return total


def matmul_parameters(model) -> int:
    """Weights that take part in a token's matmuls: all but the input embedding lookup (the output
    head counts even when it shares the embedding matrix), and of a mixture of experts only the
    k-of-E share that each token runs through."""
    tied_head = model.get_output_embeddings() is not None and \
        model.get_output_embeddings().weight is model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight.numel() if tied_head else 0
    total = count_parameters(model, include_embeddings=False) + head
    num_experts = getattr(model.config, "num_experts", None)
    if num_experts:
        experts = sum(p.numel() for name, p in model.named_parameters() if ".experts." in name)
        total -= experts - experts * model.config.num_experts_per_tok // num_experts
    return total


def training_flops_per_token(config: PretrainedConfig, non_embedding_params: int, seq_length: int) -> float:
    """Forward+backward FLOPs per trained token: 6N for the weights plus attention (PaLM, App. B)."""
    attention = 12 * config.num_hidden_layers * config.hidden_size * seq_length
    return 6 * non_embedding_params + attention
