"""ELECTRA-MoE: routing and dispatch against a dense reference, the router losses against hand-computed
values, and save/load through the Auto classes, in this process and as remote code in a fresh one."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call
from torch.fx.experimental.proxy_tensor import make_fx
from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols
from transformers import (
    CONFIG_MAPPING,
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
)

from common.models.modeling_electra_moe import (
    ElectraMoeConfig,
    ElectraMoeForPreTraining,
    ElectraMoeForSequenceClassification,
    ElectraMoeModel,
    MoeFeedForward,
    compute_dtype,
    grouped_mm_is_sync_free,
    register_electra_moe,
)

# The brief's tiny discriminator; dropout off so that two forward passes can be compared.
TINY = dict(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    embedding_size=16,
    intermediate_size=64,
    num_experts=4,
    num_experts_per_tok=2,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)
INPUT_IDS = [[5, 17, 42, 8, 99, 3, 61, 28], [7, 7, 12, 90, 33, 2, 0, 0]]
ATTENTION_MASK = [[1] * 8, [1] * 6 + [0] * 2]


def tiny_model(cls=ElectraMoeForPreTraining, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return cls(ElectraMoeConfig(**{**TINY, **overrides})).eval()


def moe_block(num_experts: int, top_k: int, hidden_size: int = 16, seed: int = 0) -> MoeFeedForward:
    torch.manual_seed(seed)
    config = ElectraMoeConfig(
        hidden_size=hidden_size,
        intermediate_size=24,
        num_attention_heads=2,
        num_experts=num_experts,
        num_experts_per_tok=top_k,
    )
    block = MoeFeedForward(config)
    # Random, not the near-zero initial router, so that routing differs between tokens.
    torch.nn.init.normal_(block.router.weight)
    return block


def reference_routing(block: MoeFeedForward, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, experts) mixing weights (renormalised top-k probabilities, zero elsewhere) and top-k ids."""
    probs = (tokens @ block.router.weight.T).softmax(dim=-1)
    top_probs, top_experts = probs.topk(block.top_k, dim=-1)
    weights = torch.zeros_like(probs).scatter(1, top_experts, top_probs / top_probs.sum(-1, keepdim=True))
    return weights, top_experts


EXPERT_CASES = [(2, 1), (4, 2), (8, 4)]


@pytest.mark.parametrize("num_experts,top_k", EXPERT_CASES)
def test_moe_equals_dense_mixture_of_all_experts(num_experts, top_k):
    block = moe_block(num_experts, top_k)
    hidden = torch.randn(3, 5, 16)
    tokens = hidden.reshape(-1, 16)
    weights, _ = reference_routing(block, tokens)
    dense = sum(weights[:, [e]] * expert(tokens) for e, expert in enumerate(block.experts))

    output, _ = block(hidden)

    assert output.shape == hidden.shape
    torch.testing.assert_close(output.reshape(-1, 16), dense, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("num_experts,top_k", EXPERT_CASES)
def test_each_expert_runs_on_exactly_the_tokens_routed_to_it(num_experts, top_k):
    block = moe_block(num_experts, top_k)
    hidden = torch.randn(4, 6, 16)
    tokens = hidden.reshape(-1, 16)
    _, top_experts = reference_routing(block, tokens)
    seen = {}

    def record_rows(expert_index):
        def hook(module, args, output):
            seen[expert_index] = args[0].detach()

        return hook

    for e, expert in enumerate(block.experts):
        expert.register_forward_hook(record_rows(e))

    block(hidden)

    assert sum(rows.shape[0] for rows in seen.values()) == tokens.shape[0] * top_k
    for e in range(num_experts):
        routed = (top_experts == e).any(dim=1).nonzero().squeeze(1)
        torch.testing.assert_close(seen[e], tokens[routed], atol=0, rtol=0)


def test_padding_is_not_routed_and_not_counted():
    block = moe_block(4, 2)
    real = torch.randn(1, 5, 16)
    padded = torch.cat([real, torch.randn(1, 3, 16)], dim=1)
    mask = torch.tensor([[True] * 5 + [False] * 3])

    out_real, stats_real = block(real)
    out_padded, stats_padded = block(padded, token_mask=mask)

    torch.testing.assert_close(out_padded[:, :5], out_real)
    assert torch.count_nonzero(out_padded[:, 5:]) == 0
    for got, want in zip(stats_padded, stats_real):
        torch.testing.assert_close(got, want)


def test_balance_loss_is_one_for_a_uniform_router():
    block = moe_block(4, 2)
    torch.nn.init.zeros_(block.router.weight)

    _, stats = block(torch.randn(2, 7, 16))

    # P_e = 1/E for every expert, so E * sum_e f_e * P_e = sum_e f_e = 1 whichever experts the ties pick.
    assert stats.balance_loss.item() == pytest.approx(1.0, abs=1e-6)
    assert stats.expert_fractions.sum().item() == pytest.approx(1.0)


def test_router_losses_match_a_hand_computed_case():
    # Two experts, top-1, the router reads logits straight off the inputs.
    block = moe_block(2, 1, hidden_size=2)
    with torch.no_grad():
        block.router.weight.copy_(torch.eye(2))
    logits = [[2.0, 0.0], [0.0, 1.0], [1.0, 0.5], [0.5, 0.0]]  # argmax: expert 0, 1, 0, 0

    _, stats = block(torch.tensor(logits))

    fractions = [3 / 4, 1 / 4]
    probs = [[math.exp(a) / (math.exp(a) + math.exp(b)), math.exp(b) / (math.exp(a) + math.exp(b))] for a, b in logits]
    mean_probs = [sum(p[e] for p in probs) / 4 for e in range(2)]
    balance = 2 * sum(f * p for f, p in zip(fractions, mean_probs))
    z_loss = sum(math.log(math.exp(a) + math.exp(b)) ** 2 for a, b in logits) / 4
    assert stats.expert_fractions.tolist() == fractions
    assert stats.balance_loss.item() == pytest.approx(balance, abs=1e-6)
    assert stats.z_loss.item() == pytest.approx(z_loss, abs=1e-5)
    assert stats.balance_loss.dtype == stats.z_loss.dtype == torch.float32


def test_an_expert_without_tokens_still_gets_a_zero_gradient():
    block = moe_block(4, 2)
    with torch.no_grad():
        block.router.weight[3] = -10.0  # with all-positive inputs, expert 3 is never in the top 2
    output, stats = block(torch.rand(2, 5, 16) + 0.1)
    assert stats.expert_fractions[3] == 0

    (output.square().sum() + stats.balance_loss).backward()

    unused = [p.grad for p in block.experts[3].parameters()]
    assert all(g is not None and torch.count_nonzero(g) == 0 for g in unused)
    assert all(torch.count_nonzero(p.grad) > 0 for e in range(3) for p in block.experts[e].parameters())


def starved_block(top_k: int, dtype: torch.dtype = torch.float32) -> MoeFeedForward:
    """A 4-expert block whose expert 3 receives no token from `positive_tokens`, with non-zero biases."""
    block = moe_block(4, top_k)
    with torch.no_grad():
        block.router.weight[3] = -10.0  # with all-positive inputs, expert 3 is never in the top k
        for expert in block.experts:
            expert.intermediate.bias.normal_()
            expert.output.bias.normal_()
    return block.to(dtype)


def positive_tokens(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    torch.manual_seed(1)
    return (torch.rand(3, 7, 16) + 0.1).to(dtype)


PADDING = torch.tensor([[True] * 7, [True] * 4 + [False] * 3, [True] * 2 + [False] * 5])


def force_dispatch(block: MoeFeedForward, grouped: bool) -> MoeFeedForward:
    """The block with its dispatch chosen by the test, not by the device it runs on."""
    block.uses_grouped_mm = lambda tokens: grouped
    return block


def reference_moe(block: MoeFeedForward, hidden: torch.Tensor, mask: torch.Tensor | None):
    """Output and router losses the obvious way: every expert on the real tokens routed to it, one at a time."""
    tokens = hidden.reshape(-1, hidden.shape[-1])
    real = torch.ones(tokens.shape[0], dtype=torch.bool) if mask is None else mask.reshape(-1)
    logits = tokens[real] @ block.router.weight.T
    weights, top_experts = reference_routing(block, tokens[real])
    routed = torch.zeros_like(tokens[real])
    for e, expert in enumerate(block.experts):
        rows = (top_experts == e).any(dim=1)
        routed[rows] += weights[rows, e].unsqueeze(1) * expert(tokens[real][rows])
    output = torch.zeros_like(tokens).index_put((real.nonzero().squeeze(1),), routed)
    fractions = torch.stack([(top_experts == e).sum() for e in range(block.num_experts)]) / top_experts.numel()
    balance_loss = block.num_experts * (fractions * logits.softmax(-1).mean(0)).sum()
    z_loss = logits.logsumexp(-1).square().mean()
    return output.reshape(hidden.shape), balance_loss, z_loss


def loss_and_gradients(block: MoeFeedForward, forward, hidden: torch.Tensor, mask, upstream: torch.Tensor):
    """The output, and the gradients of the input and of every parameter (None where there is none) of
    a loss that touches the output and both router losses."""
    block.zero_grad(set_to_none=True)
    hidden = hidden.clone().requires_grad_()
    output, balance_loss, z_loss = forward(hidden, mask)
    loss = (output * upstream).sum() + balance_loss + z_loss
    loss.backward()
    return output, {"input": hidden.grad, **{name: p.grad for name, p in block.named_parameters()}}


@pytest.mark.parametrize("grouped", [False, True], ids=["split", "grouped"])
@pytest.mark.parametrize("padded", [False, True], ids=["no_padding", "padding"])
@pytest.mark.parametrize("top_k", [1, 2])
def test_dispatch_equals_a_per_expert_reference_in_outputs_and_gradients(top_k, padded, grouped):
    block = force_dispatch(starved_block(top_k), grouped)
    hidden, mask = positive_tokens(), PADDING if padded else None
    upstream = torch.randn(hidden.shape)

    def moe(hidden, mask):
        output, stats = block(hidden, mask)
        assert stats.expert_fractions[3] == 0  # the case of an expert without tokens is covered
        return output, stats.balance_loss, stats.z_loss

    output, gradients = loss_and_gradients(block, moe, hidden, mask, upstream)
    expected, expected_gradients = loss_and_gradients(
        block, lambda h, m: reference_moe(block, h, m), hidden, mask, upstream
    )

    torch.testing.assert_close(output, expected, atol=1e-5, rtol=1e-5)
    if padded:
        assert torch.count_nonzero(output[~PADDING]) == 0
    for name, expected_gradient in expected_gradients.items():
        torch.testing.assert_close(gradients[name], expected_gradient, atol=1e-5, rtol=1e-5, msg=name)
    starved = [gradient for name, gradient in gradients.items() if name.startswith("experts.3.")]
    assert len(starved) == 4 and all(torch.count_nonzero(gradient) == 0 for gradient in starved)


def test_grouped_mm_is_chosen_only_where_it_runs_without_host_sync():
    widths = (512, 2048)
    assert grouped_mm_is_sync_free("cuda", torch.bfloat16, (9, 0), widths)
    assert not grouped_mm_is_sync_free("cuda", torch.float32, (9, 0), widths)  # the fallback loop
    assert not grouped_mm_is_sync_free("cuda", torch.float16, (9, 0), widths)
    assert not grouped_mm_is_sync_free("cuda", torch.bfloat16, (8, 9), widths)  # L40S: the fallback loop
    assert not grouped_mm_is_sync_free("cuda", torch.bfloat16, (8, 0), widths)  # A100
    assert not grouped_mm_is_sync_free("cuda", torch.bfloat16, (10, 0), widths)  # B200: pytorch#172439
    assert not grouped_mm_is_sync_free("cuda", torch.bfloat16, None, widths)  # ROCm
    assert not grouped_mm_is_sync_free("cuda", torch.bfloat16, (9, 0), (512, 2044))  # rows not 16-byte aligned
    assert not grouped_mm_is_sync_free("cpu", torch.bfloat16, None, widths)


# aten ops that read a tensor's values to the host (data-dependent sizes, Python scalars).
HOST_SYNC_OPS = ("aten.nonzero", "aten._local_scalar_dense", "aten.item")


def host_syncs_in_a_training_step(block: MoeFeedForward) -> list[str]:
    """The ops of one forward + backward (traced with symbolic shapes, nothing computed) that need values
    on the host: named ones, and any whose output size depends on the data (an unbacked symbol). Python
    code that branches on such a size fails to trace (GuardOnDataDependentSymNode), as the old
    per-expert `torch.where` dispatch does."""
    params = dict(block.named_parameters())

    def step(params, hidden, mask):
        output, stats = functional_call(block, params, (hidden, mask))
        return torch.autograd.grad((output.float().square().sum() + stats.balance_loss), [hidden, *params.values()])

    hidden = positive_tokens(torch.bfloat16).requires_grad_()
    graph = make_fx(step, tracing_mode="symbolic")(params, hidden, PADDING)
    return [
        str(node.target)
        for node in graph.graph.nodes
        if node.op == "call_function"
        and (str(node.target).startswith(HOST_SYNC_OPS) or free_unbacked_symbols(node.meta.get("val")))
    ]


def test_grouped_dispatch_reads_nothing_back_to_the_host_in_forward_or_backward():
    # The path a Hopper GPU takes in bf16, traced on this CPU; `_grouped_mm`'s meta function wants bf16.
    grouped = force_dispatch(starved_block(2, torch.bfloat16), grouped=True)
    split = force_dispatch(starved_block(2, torch.bfloat16), grouped=False)

    assert host_syncs_in_a_training_step(grouped) == []
    # The same check sees the split dispatch's one read of the group sizes, so it is not blind.
    assert "aten._local_scalar_dense.default" in host_syncs_in_a_training_step(split)


def test_under_autocast_the_experts_compute_in_the_autocast_dtype():
    # accelerate's bf16 on a GPU: float32 weights and residual stream, autocast to bf16. The grouped
    # dispatch must then be chosen for bf16 and cast as `nn.Linear` does; the CPU's autocast stands in.
    hidden = positive_tokens()
    outputs = {}
    for grouped in (False, True):
        block = force_dispatch(starved_block(2), grouped)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert compute_dtype(hidden) == torch.bfloat16
            output, stats = block(hidden, PADDING)
        output.float().square().sum().backward()
        assert output.dtype == torch.float32 and stats.balance_loss.dtype == torch.float32
        assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in block.parameters())
        outputs[grouped] = output
    assert compute_dtype(hidden) == torch.float32
    torch.testing.assert_close(outputs[True], outputs[False], atol=2e-2, rtol=2e-2)


def hopper_gpu() -> bool:
    return torch.cuda.is_available() and torch.version.hip is None and torch.cuda.get_device_capability()[0] == 9


@pytest.mark.skipif(not hopper_gpu(), reason="the sync-free grouped dispatch runs on a Hopper GPU (none here)")
def test_a_training_step_on_a_hopper_gpu_does_not_synchronise():
    block = starved_block(2, torch.bfloat16).cuda()
    hidden, mask = positive_tokens(torch.bfloat16).cuda().requires_grad_(), PADDING.cuda()
    assert block.uses_grouped_mm(hidden)
    torch.cuda.synchronize()

    torch.cuda.set_sync_debug_mode("error")
    try:
        output, stats = block(hidden, mask)
        (output.float().square().sum() + stats.balance_loss + stats.z_loss).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")

    split = force_dispatch(starved_block(2, torch.bfloat16).cuda(), grouped=False)
    split_output, _ = split(hidden.detach(), mask)
    torch.testing.assert_close(output, split_output, atol=2e-2, rtol=2e-2)
    assert all(torch.count_nonzero(p.grad) == 0 for p in block.experts[3].parameters())


@pytest.mark.parametrize("top_k", [0, 5])
def test_top_k_outside_the_expert_count_is_rejected(top_k):
    with pytest.raises(ValueError, match=f"num_experts_per_tok={top_k}.*num_experts=4"):
        ElectraMoeConfig(num_experts=4, num_experts_per_tok=top_k)


def test_model_reports_layer_mean_of_router_losses():
    model = tiny_model(ElectraMoeModel)
    with torch.no_grad():
        for layer in model.encoder.layer:
            layer.feed_forward.router.weight.zero_()

    out = model(torch.tensor(INPUT_IDS), attention_mask=torch.tensor(ATTENTION_MASK), output_hidden_states=True)

    assert out.last_hidden_state.shape == (2, 8, 32)
    assert len(out.hidden_states) == TINY["num_hidden_layers"] + 1
    assert out.aux_loss.item() == pytest.approx(1.0, abs=1e-6)  # mean over layers, each exactly 1
    assert out.z_loss.item() == pytest.approx(math.log(4) ** 2, abs=1e-5)
    assert out.expert_fractions.shape == (2, 4)
    torch.testing.assert_close(out.expert_fractions.sum(dim=1), torch.ones(2))


def test_padding_changes_neither_real_logits_nor_router_statistics():
    model = tiny_model()
    ids = torch.tensor([INPUT_IDS[1][:6]])

    short = model(ids)
    padded = model(torch.tensor([INPUT_IDS[1]]), attention_mask=torch.tensor([ATTENTION_MASK[1]]))

    torch.testing.assert_close(padded.logits[:, :6], short.logits, atol=1e-5, rtol=1e-5)
    for field in ("aux_loss", "z_loss", "expert_fractions"):
        torch.testing.assert_close(padded[field], short[field], atol=1e-6, rtol=1e-5)


def test_pretraining_loss_is_detection_bce_plus_weighted_router_losses_and_trains_router_and_experts():
    model = tiny_model(router_z_loss_coef=1e-3).train()
    ids, mask = torch.tensor(INPUT_IDS), torch.tensor(ATTENTION_MASK)
    labels = torch.tensor([[0, 1, 0, 0, 1, 0, 0, 1], [1, 0, 0, 0, 0, 1, 0, 0]])

    out = model(ids, attention_mask=mask, labels=labels)
    out.loss.backward()

    real = mask.bool()
    bce = F.binary_cross_entropy_with_logits(out.logits[real], labels[real].float())
    torch.testing.assert_close(out.loss, bce + 0.01 * out.aux_loss + 1e-3 * out.z_loss)
    assert out.logits.shape == (2, 8)
    for layer, fractions in zip(model.electra.encoder.layer, out.expert_fractions):
        assert torch.count_nonzero(layer.feed_forward.router.weight.grad) > 0
        for expert, fraction in zip(layer.feed_forward.experts, fractions):
            if fraction > 0:
                assert all(torch.count_nonzero(p.grad) > 0 for p in expert.parameters())


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_gradient_checkpointing_gives_the_same_loss_and_router_gradients(use_reentrant):
    ids, mask = torch.tensor(INPUT_IDS), torch.tensor(ATTENTION_MASK)
    labels = torch.tensor(INPUT_IDS) % 2
    router_grads = []
    for checkpointing in (False, True):
        model = tiny_model(router_z_loss_coef=1e-3).train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": use_reentrant})
        loss = model(ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        router_grads.append([layer.feed_forward.router.weight.grad for layer in model.electra.encoder.layer])
    for plain, checkpointed in zip(*router_grads):
        torch.testing.assert_close(checkpointed, plain)


def test_sequence_classification_trains_on_labels():
    model = tiny_model(ElectraMoeForSequenceClassification, num_labels=3).train()

    out = model(torch.tensor(INPUT_IDS), attention_mask=torch.tensor(ATTENTION_MASK), labels=torch.tensor([2, 0]))
    out.loss.backward()

    assert out.logits.shape == (2, 3)
    assert model.config.problem_type == "single_label_classification"
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, torch.tensor([2, 0])) + 0.01 * out.aux_loss)
    assert torch.count_nonzero(model.classifier.out_proj.weight.grad) > 0


def test_input_embeddings_can_be_shared_with_a_generator():
    generator_embeddings = torch.nn.Embedding(TINY["vocab_size"], TINY["embedding_size"])
    for cls in (ElectraMoeModel, ElectraMoeForPreTraining, ElectraMoeForSequenceClassification):
        model = tiny_model(cls)
        assert model.get_input_embeddings() is model.base_model.embeddings.word_embeddings
        model.set_input_embeddings(generator_embeddings)
        assert model.base_model.embeddings.word_embeddings is generator_embeddings


def test_weights_start_as_electra_initialises_them():
    model = tiny_model(initializer_range=0.5)
    layer = model.electra.encoder.layer[0]
    expert = layer.feed_forward.experts[0]
    assert torch.equal(layer.LayerNorm.weight, torch.ones(32))
    assert torch.count_nonzero(layer.LayerNorm.bias) == 0
    assert torch.count_nonzero(expert.intermediate.bias) == torch.count_nonzero(expert.output.bias) == 0
    for weight in (layer.feed_forward.router.weight, expert.intermediate.weight, expert.output.weight):
        assert weight.std().item() == pytest.approx(0.5, rel=0.2)


def test_registration_is_idempotent():
    register_electra_moe()
    register_electra_moe()
    assert CONFIG_MAPPING["electra_moe"] is ElectraMoeConfig


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny discriminator saved with save_pretrained, and its logits on INPUT_IDS."""
    model = tiny_model()
    path = tmp_path_factory.mktemp("electra_moe") / "model"
    model.save_pretrained(path)
    with torch.no_grad():
        out = model(torch.tensor(INPUT_IDS), attention_mask=torch.tensor(ATTENTION_MASK))
        hidden = model.electra(torch.tensor(INPUT_IDS), attention_mask=torch.tensor(ATTENTION_MASK))
    return path, out.logits, hidden.last_hidden_state


def test_saved_folder_carries_its_modelling_code(saved):
    path, _, _ = saved
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "electra_moe"
    assert config["num_experts"] == 4 and config["num_experts_per_tok"] == 2
    assert config["auto_map"] == {
        "AutoConfig": "modeling_electra_moe.ElectraMoeConfig",
        "AutoModel": "modeling_electra_moe.ElectraMoeModel",
        "AutoModelForPreTraining": "modeling_electra_moe.ElectraMoeForPreTraining",
        "AutoModelForSequenceClassification": "modeling_electra_moe.ElectraMoeForSequenceClassification",
    }
    copied = (path / "modeling_electra_moe.py").read_text()
    assert "from common" not in copied and "import common" not in copied


def test_registered_auto_classes_load_without_remote_code(saved):
    path, logits, _ = saved
    assert isinstance(AutoConfig.from_pretrained(path), ElectraMoeConfig)
    model = AutoModelForPreTraining.from_pretrained(path)
    assert type(model) is ElectraMoeForPreTraining
    with torch.no_grad():
        reloaded = model(torch.tensor(INPUT_IDS), attention_mask=torch.tensor(ATTENTION_MASK)).logits
    torch.testing.assert_close(reloaded, logits, atol=1e-5, rtol=0)
    assert type(AutoModel.from_pretrained(path)) is ElectraMoeModel
    classifier = AutoModelForSequenceClassification.from_pretrained(path, num_labels=3)
    assert type(classifier) is ElectraMoeForSequenceClassification
    torch.testing.assert_close(
        classifier.electra.encoder.layer[1].feed_forward.router.weight,
        model.electra.encoder.layer[1].feed_forward.router.weight,
    )


def run_python(code: str, cwd, pythonpath: str | None) -> dict:
    """Run `code` in a fresh interpreter with its own Hugging Face module cache; its last stdout line, as JSON."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_HOME=str(cwd / "hf_home"), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.e2e
def test_fresh_process_loads_the_folder_as_remote_code(saved):
    path, logits, hidden = saved
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    loaded = run_python(
        f"""
        import importlib.util, json, sys
        import torch
        from transformers import AutoModel, AutoModelForPreTraining, AutoModelForSequenceClassification
        assert importlib.util.find_spec("common") is None, "the repository must not be importable here"
        path, ids, mask = {str(path)!r}, torch.tensor({INPUT_IDS}), torch.tensor({ATTENTION_MASK})
        discriminator = AutoModelForPreTraining.from_pretrained(path, trust_remote_code=True)
        encoder = AutoModel.from_pretrained(path, trust_remote_code=True)
        classifier = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True, num_labels=3)
        with torch.no_grad():
            result = dict(
                module=type(discriminator).__module__,
                encoder=type(encoder).__name__,
                classifier=type(classifier).__name__,
                logits=discriminator(ids, attention_mask=mask).logits.tolist(),
                hidden=encoder(ids, attention_mask=mask).last_hidden_state.tolist())
        # This repository's copy imported after the remote one: registering again must not fail,
        # and the name stays with the remote copy that claimed it first.
        sys.path.insert(0, {repo!r})
        import common.models.modeling_electra_moe
        reloaded = AutoModelForPreTraining.from_pretrained(path)
        result["reloaded_module"] = type(reloaded).__module__
        print(json.dumps(result))
        """,
        cwd=path.parent,
        pythonpath=None,
    )

    assert loaded["module"].startswith("transformers_modules.")
    assert loaded["module"].endswith(".modeling_electra_moe")
    assert loaded["encoder"] == "ElectraMoeModel"
    assert loaded["classifier"] == "ElectraMoeForSequenceClassification"
    torch.testing.assert_close(torch.tensor(loaded["logits"]), logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor(loaded["hidden"]), hidden, atol=1e-5, rtol=0)
    assert loaded["reloaded_module"] == loaded["module"]


@pytest.mark.e2e
def test_remote_copy_imported_after_this_module_keeps_the_registration(saved):
    path, logits, _ = saved
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    loaded = run_python(
        f"""
        import json
        import torch
        from transformers import CONFIG_MAPPING, AutoModelForPreTraining
        from transformers.dynamic_module_utils import get_class_from_dynamic_module
        import common.models.modeling_electra_moe as local
        path, ids, mask = {str(path)!r}, torch.tensor({INPUT_IDS}), torch.tensor({ATTENTION_MASK})
        remote_class = get_class_from_dynamic_module("modeling_electra_moe.ElectraMoeForPreTraining", path)
        with_remote_code = AutoModelForPreTraining.from_pretrained(path, trust_remote_code=True)
        with torch.no_grad():
            print(json.dumps(dict(
                distinct_classes=remote_class is not local.ElectraMoeForPreTraining,
                config_kept=CONFIG_MAPPING["electra_moe"] is local.ElectraMoeConfig,
                loaded_local=type(with_remote_code) is local.ElectraMoeForPreTraining,
                remote_logits=remote_class.from_pretrained(path)(ids, attention_mask=mask).logits.tolist())))
        """,
        cwd=path.parent,
        pythonpath=repo,
    )

    assert loaded["distinct_classes"] and loaded["config_kept"] and loaded["loaded_local"]
    torch.testing.assert_close(torch.tensor(loaded["remote_logits"]), logits, atol=1e-5, rtol=0)


# A folder saved by train_pretrain.py before common/ had subpackages (when this file was
# common/modeling_electra_moe.py), with the discriminator's logits on one sentence as that code
# computed them.
BEFORE_THE_MOVE = Path(__file__).parent / "fixtures" / "electra_moe_saved_before_subpackages"


def expected_before_the_move() -> tuple[list[int], torch.Tensor]:
    expected = json.loads((BEFORE_THE_MOVE / "expected_logits.json").read_text())
    return expected["input_ids"], torch.tensor(expected["logits"])


def test_a_folder_saved_before_the_package_moved_loads_through_the_registered_type():
    input_ids, logits = expected_before_the_move()
    model = AutoModelForPreTraining.from_pretrained(BEFORE_THE_MOVE)  # this module registered electra_moe
    assert type(model) is ElectraMoeForPreTraining
    with torch.no_grad():
        torch.testing.assert_close(model(torch.tensor([input_ids])).logits[0], logits, atol=1e-5, rtol=0)
    generator = AutoModelForMaskedLM.from_pretrained(BEFORE_THE_MOVE / "generator")
    assert generator.config.model_type == "electra"


@pytest.mark.e2e
def test_a_folder_saved_before_the_package_moved_loads_alone_as_remote_code(tmp_path):
    input_ids, logits = expected_before_the_move()
    loaded = run_python(
        f"""
        import importlib.util, json
        import torch
        from transformers import AutoModelForPreTraining
        assert importlib.util.find_spec("common") is None, "the repository must not be importable here"
        model = AutoModelForPreTraining.from_pretrained({str(BEFORE_THE_MOVE)!r}, trust_remote_code=True)
        with torch.no_grad():
            logits = model(torch.tensor([{input_ids}])).logits[0].tolist()
        print(json.dumps(dict(module=type(model).__module__, logits=logits)))
        """,
        cwd=tmp_path,
        pythonpath=None,
    )
    assert loaded["module"].startswith("transformers_modules.")
    torch.testing.assert_close(torch.tensor(loaded["logits"]), logits, atol=1e-5, rtol=0)
