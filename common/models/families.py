"""Model types and their families: the one place that says which types are causal, masked or ELECTRA.

A family decides everything that is not the architecture itself: the objective that trains it, the
tokenizer trained for it, and the `Auto` class a saved model of it loads with. Adding a causal
model type is one entry in `CAUSAL_CONFIGS`: its `transformers` config from the fields every
causal type shares.
"""

from __future__ import annotations

from collections.abc import Callable

from transformers import Gemma2Config, Llama4TextConfig, LlamaConfig, Olmo2Config, PretrainedConfig

# The label of a position no loss is computed for: the ignore_index of PyTorch's cross-entropy and
# of every `transformers` loss.
IGNORE = -100

# config(fields, head_dim, positions): `fields` holds vocabulary, widths, depth, heads, key/value
# heads, positions and special-token ids; `positions` is the longest window the model will see.
CausalConfig = Callable[[dict, int, int], PretrainedConfig]
CAUSAL_CONFIGS: dict[str, CausalConfig] = {
    "llama": lambda fields, head_dim, positions: LlamaConfig(**fields),
    "gemma2": lambda fields, head_dim, positions: Gemma2Config(
        **fields, head_dim=head_dim, query_pre_attn_scalar=head_dim, sliding_window=positions
    ),
    "olmo2": lambda fields, head_dim, positions: Olmo2Config(**fields),
    # The text-only Llama 4 stack with dense feed-forward layers (no MoE layers) at this size.
    "llama4": lambda fields, head_dim, positions: Llama4TextConfig(
        **fields,
        head_dim=head_dim,
        intermediate_size_mlp=fields["intermediate_size"],
        moe_layers=[],
        attention_chunk_size=positions,
    ),
}
CAUSAL_MODEL_TYPES = tuple(CAUSAL_CONFIGS)
MASKED_MODEL_TYPES = ("bert",)
ELECTRA_MODEL_TYPES = ("electra", "electra_moe")

# Families are named by the objective that trains them (the values of --objective).
CAUSAL, MASKED, ELECTRA = "causal", "mlm", "electra"
FAMILIES = (CAUSAL, MASKED, ELECTRA)
MODEL_FAMILY = {
    **dict.fromkeys(CAUSAL_MODEL_TYPES, CAUSAL),
    **dict.fromkeys(MASKED_MODEL_TYPES, MASKED),
    **dict.fromkeys(ELECTRA_MODEL_TYPES, ELECTRA),
}
# The tokenizer trained for each family: byte-level BPE for decoders, BERT's WordPiece for encoders.
TOKENIZER_KIND = {CAUSAL: "bpe", MASKED: "wordpiece", ELECTRA: "wordpiece"}
# The class a saved model of each family loads with (ELECTRA: its discriminator; the generator is
# the folder's generator/ subfolder, an `AutoModelForMaskedLM`).
AUTO_CLASS_NAMES = {CAUSAL: "AutoModelForCausalLM", MASKED: "AutoModelForMaskedLM", ELECTRA: "AutoModelForPreTraining"}
