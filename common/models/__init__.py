"""Stage 2: the models, as stock `transformers` classes.

Owns the model types and their families (`families`: causal, masked, ELECTRA; the one place a new
type is declared), construction from size presets (`build`), the ELECTRA generator and
discriminator trained as one module (`electra`), and the ELECTRA-MoE model type
(`modeling_electra_moe`, a file that saved folders carry, so it imports nothing of this
repository).

May import: the core of `common` and `common.data`. Never training, evaluation or fine-tuning.
"""
