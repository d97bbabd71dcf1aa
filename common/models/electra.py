"""ELECTRA pretraining: a small generator and the discriminator, trained together as one module.

What: `generator_config` derives the generator's config from the discriminator's, `ElectraPair` holds
the generator (`ElectraForMaskedLM`) and the discriminator (`ElectraForPreTraining`, or
`ElectraMoeForPreTraining` for an `ElectraMoeConfig`) with shared embeddings, and
`sample_replacements` draws the generator's replacement tokens.

Why one module: the training loop, accelerate/DeepSpeed and checkpointing handle a single model, and
the ELECTRA paper shares the token (and position/type) embeddings between the two networks, so they
are one set of parameters. The discriminator is the model that is kept: `save_pretrained` writes it
as the main model of the folder (what `AutoModel*.from_pretrained(folder)` fine-tunes) and the
generator beside it in `folder/generator`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForPreTraining, ElectraConfig, ElectraForMaskedLM, ElectraForPreTraining

from common.models.families import IGNORE
from common.models.modeling_electra_moe import ElectraMoeConfig, ElectraMoeForPreTraining

GENERATOR_FOLDER = "generator"


def generator_config(discriminator_config: ElectraConfig, size_divisor: int) -> ElectraConfig:
    """The generator's config: hidden_size, num_attention_heads and intermediate_size divided by
    `size_divisor` (ELECTRA-Small uses 4), everything the two models share or exchange (embedding
    size, vocabulary, positions, token types, padding id) and the depth kept.

    The generator is always a dense `ElectraConfig`, also for an `ElectraMoeConfig` discriminator: it
    is small and thrown away after pretraining, so experts would buy nothing there.
    """
    if size_divisor < 1:
        raise ValueError(f"size_divisor must be at least 1, got {size_divisor}")
    d = discriminator_config
    for name in ("hidden_size", "intermediate_size"):
        if getattr(d, name) % size_divisor:
            raise ValueError(f"{name}={getattr(d, name)} is not divisible by size_divisor={size_divisor}")
    hidden_size = d.hidden_size // size_divisor
    num_heads = max(1, d.num_attention_heads // size_divisor)
    if hidden_size % num_heads:
        raise ValueError(
            f"generator hidden_size={hidden_size} (discriminator {d.hidden_size} / {size_divisor}) is not "
            f"divisible by its num_attention_heads={num_heads} (discriminator {d.num_attention_heads} / "
            f"{size_divisor})"
        )
    return ElectraConfig(
        vocab_size=d.vocab_size,
        embedding_size=d.embedding_size,
        hidden_size=hidden_size,
        num_hidden_layers=d.num_hidden_layers,
        num_attention_heads=num_heads,
        intermediate_size=d.intermediate_size // size_divisor,
        hidden_act=d.hidden_act,
        hidden_dropout_prob=d.hidden_dropout_prob,
        attention_probs_dropout_prob=d.attention_probs_dropout_prob,
        max_position_embeddings=d.max_position_embeddings,
        type_vocab_size=d.type_vocab_size,
        initializer_range=d.initializer_range,
        layer_norm_eps=d.layer_norm_eps,
        pad_token_id=d.pad_token_id,
        # The MLM head's output matrix is the (shared) input embedding matrix, as in the paper.
        tie_word_embeddings=True,
    )


class ElectraPair(nn.Module):
    """Generator and discriminator with one embeddings module (word, position and token-type
    embeddings and their LayerNorm). When embedding_size != hidden_size each model keeps its own
    `embeddings_project`, since their hidden sizes differ."""

    def __init__(self, generator: ElectraForMaskedLM, discriminator: ElectraForPreTraining | ElectraMoeForPreTraining):
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator
        generator.electra.embeddings = discriminator.electra.embeddings
        # Replacing the module leaves generator_lm_head pointing at the generator's old, now unused
        # embedding matrix; tie it to the shared one so that the head and the inputs stay one tensor.
        generator.generator_lm_head.weight = discriminator.get_input_embeddings().weight
        if generator.get_output_embeddings().weight is not discriminator.get_input_embeddings().weight:
            raise RuntimeError("the generator's output head is not tied to the shared word embeddings")

    @classmethod
    def build(cls, discriminator_config: ElectraConfig, generator_size_divisor: int) -> ElectraPair:
        """A freshly initialised pair for `discriminator_config` (an `ElectraMoeConfig` gives an MoE
        discriminator)."""
        discriminator_class = (
            ElectraMoeForPreTraining if isinstance(discriminator_config, ElectraMoeConfig) else ElectraForPreTraining
        )
        generator = ElectraForMaskedLM(generator_config(discriminator_config, generator_size_divisor))
        return cls(generator, discriminator_class(discriminator_config))

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> ElectraPair:
        """The pair saved by `save_pretrained` (discriminator in `folder`, generator in `folder/generator`),
        to train further."""
        generator_folder = Path(folder) / GENERATOR_FOLDER
        if not (generator_folder / "config.json").is_file():
            raise OSError(f"{folder} has no {GENERATOR_FOLDER}/ subfolder with the generator ELECTRA training needs")
        return cls(
            ElectraForMaskedLM.from_pretrained(generator_folder), AutoModelForPreTraining.from_pretrained(folder)
        )

    @property
    def config(self) -> ElectraConfig:
        return self.discriminator.config

    def get_input_embeddings(self) -> nn.Embedding:
        return self.discriminator.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module:
        """The generator's vocabulary head: the pair's only projection onto the vocabulary."""
        return self.generator.get_output_embeddings()

    def corrupt(
        self, input_ids: torch.Tensor, original_ids: torch.Tensor, labels: torch.Tensor, uniforms: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the generator's logits at the masked positions, the windows with its samples there)."""
        masked = labels != IGNORE
        generator_hidden = self.generator.electra(input_ids=input_ids).last_hidden_state[masked]
        generator_logits = self.generator.generator_lm_head(self.generator.generator_predictions(generator_hidden))
        corrupted = original_ids.masked_scatter(masked, sample_replacements(generator_logits, uniforms[masked]))
        return generator_logits, corrupted

    def forward(
        self,
        input_ids: torch.Tensor,
        original_ids: torch.Tensor,
        labels: torch.Tensor,
        uniforms: torch.Tensor,
        token_weights: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """One ELECTRA pass over a batch, as summed loss terms (see `common.training.objectives.Electra`).

        input_ids: the BERT-masked windows (batch, L); original_ids: the windows before masking;
        labels: the original token where one was masked, IGNORE elsewhere; uniforms: one U[0, 1)
        per position, from which the generator's replacement there is drawn; token_weights: 1 for
        real tokens, 0 for rows that only pad a validation batch.

        The generator's head runs on the masked positions only. The discriminator reads the windows
        with the generator's samples in the masked positions; a position whose sample equals the
        original token counts as original, as in the paper.
        """
        masked = labels != IGNORE
        generator_logits, corrupted = self.corrupt(input_ids, original_ids, labels, uniforms)
        generator_loss = F.cross_entropy(generator_logits.float(), labels[masked], reduction="sum")
        replaced = (corrupted != original_ids).float()
        outputs = self.discriminator(input_ids=corrupted)
        logits = outputs.logits.float()
        terms = {
            "generator_loss": generator_loss,
            "discriminator_loss": F.binary_cross_entropy_with_logits(
                logits, replaced, weight=token_weights, reduction="sum"
            ),
            "discriminator_accuracy": (((logits > 0).float() == replaced).float() * token_weights).sum().detach(),
            "replaced_fraction": (replaced * token_weights).sum().detach(),
        }
        if isinstance(self.discriminator, ElectraMoeForPreTraining):
            # Per micro-batch means; a validation batch made only of padding rows contributes nothing.
            real = (token_weights.sum() > 0).float()
            terms |= {
                "router_aux_loss": outputs.aux_loss * real,
                "router_z_loss": outputs.z_loss * real,
                "expert_fraction": outputs.expert_fractions * real,
            }
        return terms

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        for model in (self.generator, self.discriminator):
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gradient_checkpointing_kwargs)

    def save_pretrained(
        self,
        folder: str | Path,
        state_dict: dict[str, torch.Tensor] | None = None,
        safe_serialization: bool = True,
        **kwargs,
    ) -> None:
        """The discriminator into `folder`, the generator into `folder/generator`.

        state_dict: a full state dict of the pair (keys `generator.*` and `discriminator.*`, e.g.
        gathered under ZeRO-3, where the in-memory parameters are shards); each model is saved from
        its part. Other keyword arguments go to both models' `save_pretrained`.
        """
        if not safe_serialization:
            raise ValueError("transformers 5 saves only safetensors; safe_serialization=False is not supported")
        folder = Path(folder)
        for name, model, target in (
            ("discriminator", self.discriminator, folder),
            ("generator", self.generator, folder / GENERATOR_FOLDER),
        ):
            part = None
            if state_dict is not None:
                prefix = f"{name}."
                part = {key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)}
            model.save_pretrained(target, state_dict=part, **kwargs)


def sample_replacements(generator_logits: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """One token per masked position, drawn exactly from softmax(generator_logits) by inverse CDF.

    generator_logits: (n_masked, vocab). uniforms: (n_masked,), in [0, 1). Returns (n_masked,) long.

    The randomness comes in as `uniforms` rather than from a generator state here: the caller draws
    them per global sample index, so the replacement a sample gets does not depend on the batch it
    lands in, the number of processes, or where a run was resumed. Sampling is not differentiated
    (ELECTRA does not backpropagate the discriminator loss through it).
    """
    with torch.no_grad():
        # float32 so that bf16/fp16 logits still give a monotone, accurate CDF over a large vocabulary.
        cdf = torch.softmax(generator_logits.float(), dim=-1).cumsum(dim=-1)
        # Scaling by the last CDF value, not 1, absorbs cumsum rounding so every u finds a bucket.
        targets = (uniforms.float() * cdf[:, -1]).unsqueeze(-1).contiguous()
        tokens = torch.searchsorted(cdf, targets, right=True).squeeze(-1)
        return tokens.clamp_(max=generator_logits.shape[-1] - 1)
