"""The objectives' training modules and the loop's term arithmetic, against direct computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, BertConfig, BertForMaskedLM, ElectraConfig

from common.data.tokenizer import train_tokenizer
from common.models.build import Shape, model_config
from common.models.electra import ElectraPair, sample_replacements
from common.models.families import IGNORE
from common.models.modeling_electra_moe import ElectraMoeConfig
from common.training import objectives
from common.training.objectives import CausalLMTraining, Electra, MaskedLMTraining, Term, sampling_uniforms
from common.training.perf import count_parameters, matmul_parameters
from common.training.pretrain import term_means, term_metrics, training_loss

VOCAB, LENGTH = 120, 16


def masked_batch(rows=3, seed=0, padding_rows=0):
    """A batch in `Electra.make_batch`'s layout, masks drawn here (15%, all [MASK]=1)."""
    rng = np.random.default_rng(seed)
    original = torch.from_numpy(rng.integers(5, VOCAB, size=(rows, LENGTH)))
    chosen = torch.from_numpy(rng.random((rows, LENGTH)) < 0.15)
    chosen[:, 0] = True  # at least one masked position per row
    labels = torch.where(chosen, original, torch.full_like(original, IGNORE))
    weights = torch.ones(rows, LENGTH)
    if padding_rows:
        labels[-padding_rows:] = IGNORE
        weights[-padding_rows:] = 0
    return {
        "input_ids": torch.where(chosen, torch.ones_like(original), original),
        "original_ids": original,
        "labels": labels,
        "uniforms": torch.from_numpy(rng.random((rows, LENGTH), dtype=np.float32)),
        "token_weights": weights,
    }


def electra_config(moe: bool = False):
    shape = dict(
        vocab_size=VOCAB,
        embedding_size=16,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=LENGTH,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return ElectraMoeConfig(**shape, num_experts=4, num_experts_per_tok=2) if moe else ElectraConfig(**shape)


@pytest.mark.parametrize("fused_loss", [False, True], ids=["head", "fused"])
def test_masked_lm_head_on_masked_positions_equals_the_full_forward(fused_loss, monkeypatch):
    monkeypatch.setattr(objectives, "LOGITS_PER_CHUNK", 3 * VOCAB)  # the fused loss in chunks of 3 positions
    torch.manual_seed(0)
    model = BertForMaskedLM(
        BertConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
    ).eval()
    batch = masked_batch()
    count = int((batch["labels"] != IGNORE).sum())
    training = MaskedLMTraining(model, fused_loss=fused_loss)
    assert training.fused_loss == fused_loss
    ours, ours_grads = loss_and_gradients(training, batch_of(batch, "input_ids", "labels"))
    model.zero_grad()
    reference = model(input_ids=batch["input_ids"], labels=batch["labels"]).loss * count
    reference.backward()
    torch.testing.assert_close(ours, reference.detach(), rtol=1e-5, atol=1e-5)
    for name, parameter in training.named_parameters():  # the decoder's bias included
        torch.testing.assert_close(ours_grads[name], parameter.grad, rtol=1e-4, atol=1e-6, msg=name)


def batch_of(batch: dict, *names: str) -> dict:
    return {name: batch[name] for name in names}


@pytest.mark.parametrize("moe", [False, True], ids=["electra", "electra_moe"])
def test_electra_terms_equal_a_direct_computation(moe):
    torch.manual_seed(0)
    pair = ElectraPair.build(electra_config(moe), generator_size_divisor=2).eval()
    batch = masked_batch(rows=4, padding_rows=1)
    terms = pair(**batch)

    masked = batch["labels"] != IGNORE
    generator_logits = pair.generator(input_ids=batch["input_ids"]).logits[masked]
    torch.testing.assert_close(
        terms["generator_loss"], F.cross_entropy(generator_logits, batch["labels"][masked], reduction="sum")
    )
    corrupted = batch["original_ids"].clone()
    corrupted[masked] = sample_replacements(generator_logits, batch["uniforms"][masked])
    replaced = (corrupted != batch["original_ids"]).float()
    real = batch["token_weights"].bool()
    logits = pair.discriminator(input_ids=corrupted).logits
    torch.testing.assert_close(
        terms["discriminator_loss"], F.binary_cross_entropy_with_logits(logits[real], replaced[real], reduction="sum")
    )
    assert terms["replaced_fraction"] == replaced[real].sum()
    assert terms["discriminator_accuracy"] == ((logits[real] > 0).float() == replaced[real]).sum()
    assert (corrupted[~masked] == batch["original_ids"][~masked]).all()  # only masked positions change
    if moe:
        fractions = terms["expert_fraction"]
        assert fractions.shape == (2, 4)
        torch.testing.assert_close(fractions.sum(dim=1), torch.ones(2))
        assert terms["router_aux_loss"] > 0 and terms["router_z_loss"] > 0


def test_electra_terms_reach_both_networks_and_the_shared_embeddings():
    torch.manual_seed(0)
    pair = ElectraPair.build(electra_config(), generator_size_divisor=2)
    terms = pair(**masked_batch())
    (terms["generator_loss"] + 50 * terms["discriminator_loss"]).backward()
    for name in (
        "generator.electra.encoder.layer.0.attention.self.query.weight",
        "discriminator.electra.encoder.layer.0.attention.self.query.weight",
        "discriminator.electra.embeddings.word_embeddings.weight",
        "discriminator.discriminator_predictions.dense_prediction.weight",
    ):
        assert pair.get_parameter(name).grad.abs().sum() > 0, name


def test_electra_batches_depend_only_on_sample_ids():
    tokenizer = train_tokenizer("wordpiece", ["the dog runs . the cats run ."] * 50, 300)
    objective = Electra(tokenizer, 0.15, seed=3, disc_weight=50.0)
    windows = np.random.default_rng(0).integers(5, len(tokenizer), size=(4, objective.window_stride(LENGTH) + 1))
    together = objective.make_batch(windows, torch.device("cpu"), [10, 11, 12, 13])
    apart = objective.make_batch(windows[2:], torch.device("cpu"), [12, 13])
    for name in ("input_ids", "labels", "uniforms"):
        torch.testing.assert_close(together[name][2:], apart[name])
    later_epoch = objective.make_batch(windows[2:], torch.device("cpu"), [112, 113])
    assert not torch.equal(later_epoch["uniforms"], apart["uniforms"])
    validation = objective.make_batch(windows[2:], torch.device("cpu"), [12, 13], evaluation=True)
    assert not torch.equal(validation["uniforms"], apart["uniforms"])
    assert objective.count_batch(together) == {
        "masked": int((together["labels"] != IGNORE).sum()),
        "tokens": 4 * LENGTH,
        "batches": 1,
    }
    padded = objective.make_batch(windows, torch.device("cpu"), [10, 11, 12, 13], evaluation=True, padding_rows=4)
    assert objective.count_batch(padded) == {"masked": 0, "tokens": 0, "batches": 0}


def test_sampling_uniforms_are_in_the_unit_interval_and_seeded():
    first = sampling_uniforms([1, 2], 1000, seed=0, stream=11)
    assert first.shape == (2, 1000) and first.min() >= 0 and first.max() < 1
    np.testing.assert_array_equal(first, sampling_uniforms([1, 2], 1000, seed=0, stream=11))
    assert not np.array_equal(first, sampling_uniforms([1, 2], 1000, seed=1, stream=11))


def test_term_arithmetic_weights_means_and_averages_vectors_over_layers():
    terms = {
        "generator_loss": Term("masked", 1.0),
        "discriminator_loss": Term("tokens", 50.0),
        "discriminator_accuracy": Term("tokens"),
        "expert_fraction": Term("batches"),
    }
    sums = {
        "generator_loss": 40.0,
        "discriminator_loss": 10.0,
        "discriminator_accuracy": 90.0,
        "expert_fraction": np.array([[0.5, 1.5], [1.0, 1.0]]),
    }
    counts = {"masked": 10, "tokens": 100, "batches": 2}
    means = term_means(terms, sums, counts)
    assert training_loss(terms, means) == pytest.approx(4.0 + 50 * 0.1)
    metrics = term_metrics("train", terms, sums, counts)
    assert metrics["train/loss"] == pytest.approx(9.0)
    assert metrics["train/discriminator_accuracy"] == pytest.approx(0.9)
    assert metrics["train/expert_fraction_0"] == pytest.approx(0.375)  # mean over the two layers of 0.25, 0.5
    assert metrics["train/expert_fraction_1"] == pytest.approx(0.625)
    assert term_metrics("val", {"loss": Term("targets", 1.0)}, {"loss": 6.0}, {"targets": 3}) == {"val/loss": 2.0}


def test_flops_count_only_the_active_experts():
    dense = ElectraPair.build(electra_config(), generator_size_divisor=2)
    moe = ElectraPair.build(electra_config(moe=True), generator_size_divisor=2)
    experts = sum(p.numel() for name, p in moe.named_parameters() if ".experts." in name)
    assert (
        matmul_parameters(moe)
        == count_parameters(moe, include_embeddings=False) + moe.get_output_embeddings().weight.numel() - experts // 2
    )  # top-2 of 4 experts run per token
    assert matmul_parameters(dense) < matmul_parameters(moe)  # the router and the extra expert's share


CAUSAL_SPECIALS = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}


def causal_model(model_type: str):
    torch.manual_seed(0)
    shape = Shape(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    config = model_config(model_type, shape, VOCAB, LENGTH, CAUSAL_SPECIALS)
    return AutoModelForCausalLM.from_config(config).float()


def loss_and_gradients(module, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    module.zero_grad()
    loss = module(**batch)["loss"]
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}


def causal_batch(rows=3, seed=0):
    tokens = torch.from_numpy(np.random.default_rng(seed).integers(3, VOCAB, size=(rows, LENGTH + 1)))
    labels = tokens[:, 1:].clone()
    labels[0, :5] = IGNORE  # some positions without a target
    return {"input_ids": tokens[:, :-1], "labels": labels}


@pytest.mark.parametrize("model_type, rows_per_chunk", [("llama", 7), ("llama", 1000), ("olmo2", 16), ("llama4", 5)])
def test_the_fused_causal_loss_equals_the_models_own_logits_with_the_same_gradients(
    model_type, rows_per_chunk, monkeypatch
):
    """In chunks of a few rows (the last one ragged) or all at once."""
    monkeypatch.setattr(objectives, "LOGITS_PER_CHUNK", rows_per_chunk * VOCAB)
    model, batch = causal_model(model_type), causal_batch()
    fused, plain = CausalLMTraining(model, fused_loss=True), CausalLMTraining(model, fused_loss=False)
    assert fused.fused_loss and not plain.fused_loss
    fused_loss, fused_grads = loss_and_gradients(fused, batch)
    plain_loss, plain_grads = loss_and_gradients(plain, batch)
    assert fused_loss.dtype == torch.float32
    assert abs(fused_loss.item() - plain_loss.item()) <= 1e-5 * abs(plain_loss.item())
    assert fused_grads.keys() == plain_grads.keys() and len(fused_grads) > 0
    for name, grad in plain_grads.items():
        torch.testing.assert_close(fused_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_a_head_with_soft_capped_logits_keeps_the_models_own_loss():
    """Gemma 2 caps its logits with tanh: the fused projection would skip that, so it is not used."""
    model = causal_model("gemma2")
    assert model.config.final_logit_softcapping is not None
    training = CausalLMTraining(model, fused_loss=True)
    assert not training.fused_loss
    batch = causal_batch()
    logits = model(input_ids=batch["input_ids"]).logits
    expected = F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORE, reduction="sum")
    torch.testing.assert_close(training(**batch)["loss"], expected)


def test_under_bf16_autocast_the_fused_loss_stays_within_bf16_rounding_of_the_unfused_one():
    model, batch = causal_model("llama"), causal_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = CausalLMTraining(model, fused_loss=True)(**batch)["loss"]
        plain = CausalLMTraining(model, fused_loss=False)(**batch)["loss"]
    assert fused.dtype == torch.float32
    assert abs(fused.item() - plain.item()) <= 1e-2 * abs(plain.item())


def test_the_fused_loss_without_gradients_is_the_same_sum(monkeypatch):
    """Validation runs under no_grad: the chunks then skip the gradient work."""
    monkeypatch.setattr(objectives, "LOGITS_PER_CHUNK", 5 * VOCAB)
    model, batch = causal_model("llama"), causal_batch()
    with torch.no_grad():
        fused = CausalLMTraining(model, fused_loss=True)(**batch)["loss"]
        plain = CausalLMTraining(model, fused_loss=False)(**batch)["loss"]
    assert not fused.requires_grad
    assert abs(fused.item() - plain.item()) <= 1e-5 * abs(plain.item())


def test_a_frozen_head_still_passes_the_gradient_to_the_hidden_states():
    model, batch = causal_model("llama"), causal_batch()
    model.get_output_embeddings().weight.requires_grad_(False)
    fused_loss, fused_grads = loss_and_gradients(CausalLMTraining(model, fused_loss=True), batch)
    plain_loss, plain_grads = loss_and_gradients(CausalLMTraining(model, fused_loss=False), batch)
    assert "model.lm_head.weight" not in fused_grads and fused_grads.keys() == plain_grads.keys()
    for name, grad in plain_grads.items():
        torch.testing.assert_close(fused_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_compiled_masked_training_does_not_recompile_for_each_masked_count(monkeypatch):
    """The masked positions differ in number every batch; the fused loss stays out of the graph."""
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 3)
    monkeypatch.setattr(torch._dynamo.config, "fail_on_recompile_limit_hit", True)
    torch._dynamo.reset()
    torch.manual_seed(0)
    config = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=64)  # fmt: skip
    training = MaskedLMTraining(BertForMaskedLM(config), fused_loss=True)
    compiled = torch.compile(training, backend="eager")  # tracing is what recompiles; no code generation needed
    for seed in range(8):
        batch = masked_batch(seed=seed)
        assert torch.isfinite(compiled(input_ids=batch["input_ids"], labels=batch["labels"])["loss"])
    torch._dynamo.reset()
