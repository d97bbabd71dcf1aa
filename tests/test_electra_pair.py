"""ELECTRA generator/discriminator pair: the generator's config, shared and tied embeddings, the
save_pretrained layout reloading through the Auto classes (dense and MoE), and replacement sampling."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForPreTraining,
    ElectraConfig,
    ElectraForMaskedLM,
    ElectraForPreTraining,
    ElectraModel,
)

from common.models.electra import ElectraPair, generator_config, sample_replacements
from common.models.modeling_electra_moe import ElectraMoeConfig, ElectraMoeForPreTraining, register_electra_moe

# Tiny discriminator, dropout off so that in-memory and reloaded logits can be compared.
TINY = dict(
    vocab_size=120,
    embedding_size=16,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=128,
    max_position_embeddings=32,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)
INPUT_IDS = torch.tensor([[5, 17, 42, 8, 99, 3, 61, 28], [7, 7, 12, 90, 33, 2, 0, 0]])
ATTENTION_MASK = torch.tensor([[1] * 8, [1] * 6 + [0] * 2])


def tiny_pair(config=None, divisor: int = 2) -> ElectraPair:
    torch.manual_seed(0)
    return ElectraPair.build(config or ElectraConfig(**TINY), divisor).eval()


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=INPUT_IDS, attention_mask=ATTENTION_MASK).logits


def load_checked(auto_class, folder):
    """Load and assert that the checkpoint and the model class match key for key."""
    model, info = auto_class.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    return model.eval()


def test_generator_config_divides_sizes_and_keeps_shared_fields():
    disc = ElectraConfig(
        vocab_size=150,
        embedding_size=128,
        hidden_size=256,
        num_attention_heads=4,
        intermediate_size=1024,
        num_hidden_layers=3,
        max_position_embeddings=64,
        type_vocab_size=3,
        pad_token_id=1,
    )
    gen = generator_config(disc, 4)
    assert type(gen) is ElectraConfig
    assert (gen.hidden_size, gen.num_attention_heads, gen.intermediate_size) == (64, 1, 256)
    assert (
        gen.embedding_size,
        gen.vocab_size,
        gen.max_position_embeddings,
        gen.type_vocab_size,
        gen.pad_token_id,
        gen.num_hidden_layers,
    ) == (128, 150, 64, 3, 1, 3)
    assert gen.tie_word_embeddings


def test_generator_config_of_moe_discriminator_is_dense():
    gen = generator_config(ElectraMoeConfig(**TINY, num_experts=4, num_experts_per_tok=2), 2)
    assert type(gen) is ElectraConfig
    assert (gen.hidden_size, gen.num_attention_heads, gen.intermediate_size) == (32, 1, 64)


@pytest.mark.parametrize("hidden, heads, divisor", [(256, 4, 3), (100, 10, 4)])
def test_generator_config_rejects_indivisible_sizes(hidden, heads, divisor):
    # (256, 4, 3): 256 / 3 is no integer; (100, 10, 4): hidden 25 with 2 heads.
    disc = ElectraConfig(hidden_size=hidden, num_attention_heads=heads, intermediate_size=4 * hidden * divisor)
    with pytest.raises(ValueError, match="divisible"):
        generator_config(disc, divisor)


def test_pair_shares_embeddings_and_ties_generator_head():
    pair = tiny_pair()
    gen, disc = pair.generator, pair.discriminator
    assert gen.electra.embeddings is disc.electra.embeddings
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings", "LayerNorm"):
        assert getattr(gen.electra.embeddings, name) is getattr(disc.electra.embeddings, name)
    # embedding_size 16 != hidden sizes 64 / 32: each model projects with its own layer.
    assert gen.electra.embeddings_project is not disc.electra.embeddings_project
    assert gen.electra.embeddings_project.out_features == 32
    assert disc.electra.embeddings_project.out_features == 64
    assert gen.get_output_embeddings().weight is disc.get_input_embeddings().weight
    assert pair.get_input_embeddings() is disc.get_input_embeddings()
    assert pair.config is disc.config
    # The shared matrix is one parameter of the pair, not two.
    assert sum(p is disc.get_input_embeddings().weight for p in pair.parameters()) == 1


def test_generator_step_updates_discriminator_embeddings():
    pair = tiny_pair().train()
    before = pair.discriminator.get_input_embeddings().weight.detach().clone()
    labels = torch.full_like(INPUT_IDS, -100)
    labels[:, 2] = INPUT_IDS[:, 2]
    loss = pair.generator(input_ids=INPUT_IDS, attention_mask=ATTENTION_MASK, labels=labels).loss
    optimizer = torch.optim.SGD(pair.parameters(), lr=1.0)
    loss.backward()
    optimizer.step()
    after = pair.discriminator.get_input_embeddings().weight.detach()
    assert not torch.equal(before, after)
    assert pair.generator.get_output_embeddings().weight is pair.discriminator.get_input_embeddings().weight


def test_save_pretrained_layout_and_reload(tmp_path):
    pair = tiny_pair()
    pair.save_pretrained(tmp_path / "a")
    pair.save_pretrained(tmp_path / "b", state_dict=pair.state_dict())
    for folder in (tmp_path / "a", tmp_path / "b"):
        for sub in (folder, folder / "generator"):
            assert (sub / "config.json").is_file() and (sub / "model.safetensors").is_file()

        disc = load_checked(AutoModelForPreTraining, folder)
        assert type(disc) is ElectraForPreTraining
        torch.testing.assert_close(logits(disc), logits(pair.discriminator), atol=1e-5, rtol=0)
        assert type(AutoModel.from_pretrained(folder)) is ElectraModel

        gen = load_checked(AutoModelForMaskedLM, folder / "generator")
        assert type(gen) is ElectraForMaskedLM
        assert gen.get_output_embeddings().weight is gen.get_input_embeddings().weight
        torch.testing.assert_close(logits(gen), logits(pair.generator), atol=1e-5, rtol=0)

    for sub in ("model.safetensors", "generator/model.safetensors"):
        saved, explicit = load_file(tmp_path / "a" / sub), load_file(tmp_path / "b" / sub)
        assert saved.keys() == explicit.keys()
        for key in saved:
            assert torch.equal(saved[key], explicit[key]), key


def test_moe_pair_saves_and_reloads(tmp_path):
    register_electra_moe()
    pair = tiny_pair(ElectraMoeConfig(**TINY, num_experts=4, num_experts_per_tok=2), divisor=2)
    assert type(pair.discriminator) is ElectraMoeForPreTraining
    assert pair.generator.electra.embeddings is pair.discriminator.electra.embeddings
    pair.save_pretrained(tmp_path)
    disc = load_checked(AutoModelForPreTraining, tmp_path)
    assert type(disc) is ElectraMoeForPreTraining
    torch.testing.assert_close(logits(disc), logits(pair.discriminator), atol=1e-5, rtol=0)
    gen = load_checked(AutoModelForMaskedLM, tmp_path / "generator")
    torch.testing.assert_close(logits(gen), logits(pair.generator), atol=1e-5, rtol=0)


def test_sample_replacements_peaked_logits():
    logits_ = torch.full((50, 7), -30.0)
    logits_[:, 3] = 30.0
    tokens = sample_replacements(logits_, torch.rand(50, generator=torch.Generator().manual_seed(0)))
    assert tokens.dtype == torch.long
    assert torch.equal(tokens, torch.full((50,), 3))


def test_sample_replacements_stratified_uniforms_split_evenly():
    n = 400
    uniforms = (torch.arange(n) + 0.5) / n
    tokens = sample_replacements(torch.zeros(n, 4), uniforms)
    assert torch.equal(torch.bincount(tokens, minlength=4), torch.full((4,), n // 4))


def test_sample_replacements_matches_softmax():
    n = 200_000
    row = torch.tensor([1.0, -0.5, 2.0, 0.0, -3.0])
    rng = torch.Generator().manual_seed(0)
    tokens = sample_replacements(row.expand(n, -1), torch.rand(n, generator=rng))
    assert tokens.dtype == torch.long and tokens.min() >= 0 and tokens.max() < 5
    empirical = torch.bincount(tokens, minlength=5).double() / n
    torch.testing.assert_close(empirical, torch.softmax(row.double(), 0), atol=0.01, rtol=0)


def test_sample_replacements_takes_no_gradient_and_stays_in_vocabulary():
    logits_ = torch.randn(6, 9, requires_grad=True)
    tokens = sample_replacements(logits_.to(torch.bfloat16), torch.tensor([0.0, 0.2, 0.5, 0.9, 0.999999, 1.0]))
    assert not tokens.requires_grad
    assert tokens.min() >= 0 and tokens.max() < 9
