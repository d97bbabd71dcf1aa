"""ELECTRA with a mixture-of-experts feed-forward block, as a `transformers` model type (`electra_moe`).

What: the ELECTRA discriminator (embeddings, optional embedding projection, post-LayerNorm encoder,
replaced-token-detection head) where every layer's feed-forward block is a set of ELECTRA-style FFN
experts behind a learned top-k router (Switch / Mixtral style). Each token is processed by only the
k experts it is routed to, so capacity grows with the number of experts while the compute per token
stays that of k dense FFNs.

Why a model type of its own: a saved model must load with `from_pretrained` like every other model of
this project. `register_electra_moe()` (run on import) registers the classes with the `Auto*` classes
for this process, and marks them for `save_pretrained` to copy this file next to the weights and write
an `auto_map` into `config.json`, so that anyone loads the folder with
`AutoModelForPreTraining.from_pretrained(path, trust_remote_code=True)` without this repository.
For that reason this file imports only `torch`, `transformers` and the standard library (it is
imported standalone as remote code) and needs transformers 5 (dataclass configs, the v5 ELECTRA
attention modules it reuses).

Router losses are returned, never added behind the caller's back: the heads add
`router_aux_loss_coef * aux_loss + router_z_loss_coef * z_loss` to their task loss when labels are
given, and report both terms and the per-layer expert load separately for logging.
"""

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    CONFIG_MAPPING,
    AutoConfig,
    AutoModel,
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
    ElectraConfig,
)
from transformers.activations import ACT2FN
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.models.electra.modeling_electra import (
    ElectraAttention,
    ElectraClassificationHead,
    ElectraDiscriminatorPredictions,
    ElectraEmbeddings,
    ElectraPreTrainedModel,
)
from transformers.utils import ModelOutput

# The name `save_pretrained` gives the copy of this file, whatever package it was imported from;
# `auto_map` entries are "<module>.<class>" relative to the saved folder.
MODULE_NAME = __name__.rsplit(".", 1)[-1]


class ElectraMoeConfig(ElectraConfig):
    """`ElectraConfig` plus the mixture-of-experts fields.

    num_experts: experts per layer. num_experts_per_tok: k, experts each token is routed to.
    router_aux_loss_coef: weight of the Switch load-balancing loss in the training loss.
    router_z_loss_coef: weight of the router z-loss (ST-MoE), 0 to leave it out.
    moe_intermediate_size: hidden width of each expert; None means `intermediate_size`.
    """

    model_type = "electra_moe"

    num_experts: int = 4
    num_experts_per_tok: int = 1
    router_aux_loss_coef: float = 0.01
    router_z_loss_coef: float = 0.0
    moe_intermediate_size: int | None = None

    def __post_init__(self, **kwargs):
        if not 1 <= self.num_experts_per_tok <= self.num_experts:
            raise ValueError(
                f"num_experts_per_tok={self.num_experts_per_tok} must be between 1 and num_experts={self.num_experts}"
            )
        super().__post_init__(**kwargs)


class RouterStats(NamedTuple):
    """What one MoE block reports about its routing, over the non-padding tokens of the batch."""

    balance_loss: torch.Tensor  # scalar, float32: num_experts * sum_e f_e * P_e (1.0 when balanced)
    z_loss: torch.Tensor  # scalar, float32: mean over tokens of logsumexp(router logits)^2
    expert_fractions: torch.Tensor  # (num_experts,), detached: f_e, share of (token, slot) assignments


class ElectraMoeExpert(nn.Module):
    """One ELECTRA feed-forward network: hidden -> intermediate -> activation -> hidden."""

    def __init__(self, config: ElectraMoeConfig):
        super().__init__()
        intermediate_size = config.moe_intermediate_size or config.intermediate_size
        self.intermediate = nn.Linear(config.hidden_size, intermediate_size)
        self.activation = ACT2FN[config.hidden_act]
        self.output = nn.Linear(intermediate_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.output(self.activation(self.intermediate(hidden_states)))


def compute_dtype(tokens: torch.Tensor) -> torch.dtype:
    """The dtype the experts' matmuls run in: autocast's when it is on (as `nn.Linear` would), else the tokens'."""
    device_type = tokens.device.type
    return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else tokens.dtype


def grouped_mm_is_sync_free(
    device_type: str, dtype: torch.dtype, cuda_capability: tuple[int, int] | None, widths: tuple[int, ...]
) -> bool:
    """Whether `torch._grouped_mm` runs the experts with their group offsets left on the device.

    Only its CUTLASS kernel does: CUDA (not ROCm), bf16 operands and output, compute capability 9.x
    (torch 2.13 also sends 10.x there, but its weight gradient for an expert without tokens is not zero on
    B200, pytorch/pytorch#172439), and rows that are multiples of 16 bytes (8 bf16 values). Everywhere
    else `_grouped_mm` copies the offsets to the host for a per-group loop, so the split dispatch, with
    its one host sync, is no worse. cuda_capability: None off NVIDIA CUDA.
    """
    return (
        device_type == "cuda"
        and cuda_capability is not None
        and cuda_capability[0] == 9
        and dtype == torch.bfloat16
        and all(width % 8 == 0 for width in widths)
    )


class MoeFeedForward(nn.Module):
    """Top-k routed mixture of `ElectraMoeExpert`s, computing each expert only on the tokens routed to it.

    The router runs in float32 with autocast off, whatever the training precision: its softmax and the
    z-loss exponentiate the logits, where bf16 rounding is large (Switch Transformer's "selective
    precision"). Each token keeps its k most probable experts and mixes their outputs with those k
    probabilities renormalised to sum to 1.

    Dispatch: the (token, slot) assignments are sorted by expert once (a stable sort, so each expert sees
    its tokens in order), the tokens gathered in that order, every expert run on its contiguous group of
    rows, and the weighted outputs `index_add_`-ed back to their tokens. Two ways to run the groups:

    * grouped (`grouped_mm_is_sync_free`: bf16 on a Hopper GPU): the experts' weights are stacked and
      one `torch._grouped_mm` per projection runs every group, with the group ends computed on the
      device, so a step needs no device->host synchronisation (a per-expert `torch.where` costs one per
      expert, as its output size depends on the data). Biases are gathered per row by expert index.
    * split (everywhere else): the group sizes are read to the host once and each expert module runs on
      its slice.

    Every parameter takes part in every step: stacking (grouped) or running an expert on an empty slice
    (split) gives an expert that receives no token a zero gradient, not none. DDP without
    `find_unused_parameters` needs a gradient for every parameter, and under ZeRO-3 all ranks must
    gather the same parameters. ZeRO-3 gathers a module's parameters when that module runs; the grouped
    dispatch reads the experts' weights without running them, which DeepSpeed serves with one blocking
    all-gather per weight on first access. The block is therefore a ZeRO-3 leaf (`_z3_leaf`, read by
    DeepSpeed, as its `set_z3_leaf_modules` does for MoE blocks): its forward and its backward each
    gather the router and all experts in one fetch, the same on every rank, whichever dispatch runs.

    Padding: `token_mask` (True = real token) keeps padded positions out of the output and out of all
    statistics, so the losses do not depend on how much padding a batch carries. They are masked, not
    removed (removing them has a data-dependent size, a host sync): every token is routed, a padded one
    mixes its experts with weight 0 and counts with weight 0 in the statistics. The split dispatch, which
    reads the group sizes anyway, sorts padding after every expert and does not run it.
    """

    def __init__(self, config: ElectraMoeConfig):
        super().__init__()
        self.num_experts = config.num_experts
        self.top_k = config.num_experts_per_tok
        self.widths = (config.hidden_size, config.moe_intermediate_size or config.intermediate_size)
        self.router = nn.Linear(config.hidden_size, config.num_experts, bias=False)
        self.experts = nn.ModuleList(ElectraMoeExpert(config) for _ in range(config.num_experts))
        self.activation = ACT2FN[config.hidden_act]
        self._z3_leaf = True

    def forward(
        self, hidden_states: torch.Tensor, token_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, RouterStats]:
        """hidden_states (..., hidden); token_mask (...) bool or 0/1, None when nothing is padding."""
        tokens = hidden_states.reshape(-1, hidden_states.shape[-1])
        real = None if token_mask is None else token_mask.reshape(-1).bool()

        with torch.autocast(device_type=tokens.device.type, enabled=False):
            router_logits = F.linear(tokens.float(), self.router.weight.float())
        router_probs = router_logits.softmax(dim=-1)
        top_probs, top_experts = router_probs.topk(self.top_k, dim=-1)
        top_weights = top_probs / top_probs.sum(dim=-1, keepdim=True)
        if real is not None:
            top_weights = top_weights * real.unsqueeze(1)

        if self.uses_grouped_mm(tokens):
            order, expert_output = self.run_grouped(tokens, top_experts)
        else:
            order, expert_output = self.run_split(tokens, top_experts, real)
        # order[i] is the flat (token, slot) index of row i: token order[i] // k, slot order[i] % k.
        weighted = expert_output * top_weights.reshape(-1).index_select(0, order).unsqueeze(1)
        output = tokens.new_zeros(tokens.shape).index_add_(0, order // self.top_k, weighted.to(tokens.dtype))

        stats = self.router_stats(router_logits, router_probs, top_experts, real)
        return output.reshape(hidden_states.shape), stats

    def uses_grouped_mm(self, tokens: torch.Tensor) -> bool:
        if not hasattr(torch, "_grouped_mm"):  # arrived in torch 2.8; requirements.txt allows 2.4
            return False
        nvidia = tokens.device.type == "cuda" and torch.version.hip is None
        capability = torch.cuda.get_device_capability(tokens.device) if nvidia else None
        return grouped_mm_is_sync_free(tokens.device.type, compute_dtype(tokens), capability, self.widths)

    def run_grouped(self, tokens: torch.Tensor, top_experts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(order, expert outputs of the rows in that order): one `_grouped_mm` per projection, no host sync."""
        sorted_experts, order = top_experts.reshape(-1).sort(stable=True)
        # Every row is in a group (padding included), so `_grouped_mm` leaves no row of its output, or of
        # the input gradient, unwritten.
        group_ends = self.group_ends(sorted_experts)
        rows = tokens.index_select(0, order // self.top_k).to(compute_dtype(tokens))
        hidden = self.activation(self.grouped_linear("intermediate", rows, sorted_experts, group_ends))
        return order, self.grouped_linear("output", hidden, sorted_experts, group_ends)

    def grouped_linear(
        self, name: str, rows: torch.Tensor, sorted_experts: torch.Tensor, group_ends: torch.Tensor
    ) -> torch.Tensor:
        """Each row through its expert's `name` Linear, all experts in one `_grouped_mm`."""
        layers = [getattr(expert, name) for expert in self.experts]
        # (experts, out, in) seen as (experts, in, out): the column-major right operand the kernel reads as is.
        weight = torch.stack([layer.weight for layer in layers]).to(rows.dtype).transpose(-2, -1)
        bias = torch.stack([layer.bias for layer in layers]).to(rows.dtype).index_select(0, sorted_experts)
        return torch._grouped_mm(rows, weight, offs=group_ends) + bias

    def run_split(
        self, tokens: torch.Tensor, top_experts: torch.Tensor, real: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(order, expert outputs of the rows in that order): each expert module on its slice, one host sync."""
        if real is not None:
            # Padding sorts after the last expert, where no expert runs.
            top_experts = top_experts.masked_fill(~real.unsqueeze(1), self.num_experts)
        sorted_experts, order = top_experts.reshape(-1).sort(stable=True)
        group_ends = self.group_ends(sorted_experts).tolist()
        group_sizes = [end - start for start, end in zip([0, *group_ends], group_ends)]
        order = order[: group_ends[-1]]
        rows = tokens.index_select(0, order // self.top_k).split(group_sizes)
        return order, torch.cat([expert(group) for expert, group in zip(self.experts, rows)])

    def group_ends(self, sorted_experts: torch.Tensor) -> torch.Tensor:
        """(experts,) int32: group e ends after the last row routed to expert e (`_grouped_mm`'s offsets)."""
        expert_ids = torch.arange(self.num_experts, device=sorted_experts.device)
        return torch.searchsorted(sorted_experts, expert_ids, right=True, out_int32=True)

    def router_stats(
        self,
        router_logits: torch.Tensor,
        router_probs: torch.Tensor,
        top_experts: torch.Tensor,
        real: torch.Tensor | None,
    ) -> RouterStats:
        # Padding weighs 0 in every sum. Denominators floored at 1 so that a batch with no real token
        # gives zero losses, not NaN.
        token_weights = router_logits.new_ones(router_logits.shape[0]) if real is None else real.float()
        num_tokens = token_weights.sum().clamp(min=1)
        chosen = torch.zeros_like(router_probs).scatter_(1, top_experts, 1.0)
        expert_fractions = (chosen * token_weights.unsqueeze(1)).sum(dim=0) / (num_tokens * self.top_k)
        mean_probs = (router_probs * token_weights.unsqueeze(1)).sum(dim=0) / num_tokens
        balance_loss = self.num_experts * (expert_fractions * mean_probs).sum()
        z_loss = (router_logits.logsumexp(dim=-1).square() * token_weights).sum() / num_tokens
        return RouterStats(balance_loss, z_loss, expert_fractions.detach())


class ElectraMoeLayer(GradientCheckpointingLayer):
    """ELECTRA's post-LayerNorm encoder layer with `MoeFeedForward` in place of the dense FFN.

    The attention sublayer (and its parameter names) is ELECTRA's own; the feed-forward sublayer
    is dropout(MoE(x)) + x followed by LayerNorm, as in `ElectraOutput`.
    """

    def __init__(self, config: ElectraMoeConfig, layer_idx: int):
        super().__init__()
        self.attention = ElectraAttention(config, layer_idx=layer_idx)
        self.feed_forward = MoeFeedForward(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(layer output, balance loss, z-loss, expert fractions).

        A flat tuple of tensors rather than a `RouterStats`: reentrant gradient checkpointing only
        carries gradients through the top-level tensors a checkpointed layer returns.
        """
        attention_output, _ = self.attention(hidden_states, attention_mask)
        expert_output, stats = self.feed_forward(attention_output, token_mask)
        layer_output = self.LayerNorm(attention_output + self.dropout(expert_output))
        return layer_output, *stats


@dataclass
class ElectraMoeModelOutput(ModelOutput):
    """last_hidden_state (batch, seq, hidden); aux_loss and z_loss: layer means of the router losses
    (float32 scalars, differentiable); expert_fractions (layers, experts), detached; hidden_states:
    embedding output then every layer's output, when asked for."""

    last_hidden_state: torch.Tensor | None = None
    aux_loss: torch.Tensor | None = None
    z_loss: torch.Tensor | None = None
    expert_fractions: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


@dataclass
class ElectraMoeForPreTrainingOutput(ModelOutput):
    """loss (with labels): replaced-token-detection BCE + the weighted router losses; logits (batch, seq);
    the router fields as in `ElectraMoeModelOutput`."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    aux_loss: torch.Tensor | None = None
    z_loss: torch.Tensor | None = None
    expert_fractions: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


@dataclass
class ElectraMoeSequenceClassifierOutput(ModelOutput):
    """loss (with labels): classification/regression loss + the weighted router losses; logits
    (batch, num_labels); the router fields as in `ElectraMoeModelOutput`."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    aux_loss: torch.Tensor | None = None
    z_loss: torch.Tensor | None = None
    expert_fractions: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


class ElectraMoeEncoder(nn.Module):
    def __init__(self, config: ElectraMoeConfig):
        super().__init__()
        self.layer = nn.ModuleList(ElectraMoeLayer(config, layer_idx=i) for i in range(config.num_hidden_layers))

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        token_mask: torch.Tensor | None,
        output_hidden_states: bool,
    ) -> ElectraMoeModelOutput:
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        balance_losses, z_losses, expert_fractions = [], [], []
        for layer in self.layer:
            hidden_states, balance_loss, z_loss, fractions = layer(hidden_states, attention_mask, token_mask)
            balance_losses.append(balance_loss)
            z_losses.append(z_loss)
            expert_fractions.append(fractions)
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
        # Averaged over layers, not summed: the coefficients then mean the same at any depth, and a
        # perfectly balanced model scores exactly 1.0 as each layer does.
        return ElectraMoeModelOutput(
            last_hidden_state=hidden_states,
            aux_loss=torch.stack(balance_losses).mean(),
            z_loss=torch.stack(z_losses).mean(),
            expert_fractions=torch.stack(expert_fractions),
            hidden_states=all_hidden_states,
        )


class ElectraMoePreTrainedModel(ElectraPreTrainedModel):
    """ELECTRA's weight initialisation (normal(0, initializer_range) for Linear and Embedding, zero
    biases, LayerNorm ones/zeros, position-id buffers) applies unchanged: the router and the experts
    are plain `nn.Linear`s."""

    config_class = ElectraMoeConfig

    def get_input_embeddings(self) -> nn.Embedding:
        return self.base_model.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.base_model.embeddings.word_embeddings = value

    def save_pretrained(self, save_directory, *args, **kwargs):
        # transformers writes into auto_map only AutoConfig and the class being saved; naming every
        # class lets remote-code users load a discriminator checkpoint into any of them (e.g.
        # AutoModelForSequenceClassification to fine-tune on GLUE).
        self.config.auto_map = {**getattr(self.config, "auto_map", {}), **auto_map()}
        return super().save_pretrained(save_directory, *args, **kwargs)

    def router_loss(self, outputs: ElectraMoeModelOutput) -> torch.Tensor:
        """The router terms the heads add to their task loss."""
        return self.config.router_aux_loss_coef * outputs.aux_loss + self.config.router_z_loss_coef * outputs.z_loss


class ElectraMoeModel(ElectraMoePreTrainedModel):
    """The bare encoder: ELECTRA embeddings (projected when embedding_size != hidden_size) and MoE layers."""

    def __init__(self, config: ElectraMoeConfig):
        super().__init__(config)
        self.embeddings = ElectraEmbeddings(config)
        if config.embedding_size != config.hidden_size:
            self.embeddings_project = nn.Linear(config.embedding_size, config.hidden_size)
        self.encoder = ElectraMoeEncoder(config)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> ElectraMoeModelOutput:
        """attention_mask: (batch, seq), 1 for real tokens and 0 for padding; it masks attention and
        keeps padding out of the routing."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids and inputs_embeds")
        embedding_output = self.embeddings(
            input_ids=input_ids, token_type_ids=token_type_ids, position_ids=position_ids, inputs_embeds=inputs_embeds
        )
        if hasattr(self, "embeddings_project"):
            embedding_output = self.embeddings_project(embedding_output)
        # In the form the configured attention implementation (sdpa, eager, flash...) takes.
        expanded_attention_mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=embedding_output, attention_mask=attention_mask
        )
        token_mask = attention_mask.bool() if attention_mask is not None else None
        return self.encoder(embedding_output, expanded_attention_mask, token_mask, output_hidden_states)


class ElectraMoeForPreTraining(ElectraMoePreTrainedModel):
    """The ELECTRA discriminator: for every token, the logit that it was replaced by the generator."""

    def __init__(self, config: ElectraMoeConfig):
        super().__init__(config)
        self.electra = ElectraMoeModel(config)
        self.discriminator_predictions = ElectraDiscriminatorPredictions(config)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> ElectraMoeForPreTrainingOutput:
        """labels: (batch, seq), 1 where the token was replaced, 0 where it is original. The BCE is the
        mean over non-padding tokens."""
        outputs = self.electra(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_hidden_states=output_hidden_states,
        )
        logits = self.discriminator_predictions(outputs.last_hidden_state)

        loss = None
        if labels is not None:
            if attention_mask is None:
                detection_loss = F.binary_cross_entropy_with_logits(logits, labels.float())
            else:
                real = attention_mask.bool()
                detection_loss = F.binary_cross_entropy_with_logits(logits[real], labels[real].float())
            loss = detection_loss + self.router_loss(outputs)

        return ElectraMoeForPreTrainingOutput(
            loss=loss,
            logits=logits,
            aux_loss=outputs.aux_loss,
            z_loss=outputs.z_loss,
            expert_fractions=outputs.expert_fractions,
            hidden_states=outputs.hidden_states,
        )


class ElectraMoeForSequenceClassification(ElectraMoePreTrainedModel):
    """ELECTRA's classification head (first token -> dense -> gelu -> labels) over the MoE encoder.

    The loss follows `config.problem_type` like every `transformers` classifier (inferred on the first
    labelled call: regression for one label, single-label for integer labels, multi-label otherwise),
    and keeps the router losses so that fine-tuning does not unbalance the experts.
    """

    def __init__(self, config: ElectraMoeConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.electra = ElectraMoeModel(config)
        self.classifier = ElectraClassificationHead(config)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> ElectraMoeSequenceClassifierOutput:
        outputs = self.electra(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_hidden_states=output_hidden_states,
        )
        logits = self.classifier(outputs.last_hidden_state)

        loss = None
        if labels is not None:
            loss = self.task_loss(logits, labels) + self.router_loss(outputs)

        return ElectraMoeSequenceClassifierOutput(
            loss=loss,
            logits=logits,
            aux_loss=outputs.aux_loss,
            z_loss=outputs.z_loss,
            expert_fractions=outputs.expert_fractions,
            hidden_states=outputs.hidden_states,
        )

    def task_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.config.problem_type is None:
            if self.num_labels == 1:
                self.config.problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int):
                self.config.problem_type = "single_label_classification"
            else:
                self.config.problem_type = "multi_label_classification"
        if self.config.problem_type == "regression":
            return F.mse_loss(logits.squeeze(-1), labels.float().reshape(logits.shape[:-1]))
        if self.config.problem_type == "single_label_classification":
            return F.cross_entropy(logits.reshape(-1, self.num_labels), labels.reshape(-1))
        return F.binary_cross_entropy_with_logits(logits, labels.float())


AUTO_CLASSES = {
    AutoModel: ElectraMoeModel,
    AutoModelForPreTraining: ElectraMoeForPreTraining,
    AutoModelForSequenceClassification: ElectraMoeForSequenceClassification,
}


def auto_map() -> dict[str, str]:
    """The `config.json` auto_map naming this file's classes, as `save_pretrained` lays it out."""
    classes = {
        "AutoConfig": ElectraMoeConfig,
        **{auto_class.__name__: model_class for auto_class, model_class in AUTO_CLASSES.items()},
    }
    return {auto_name: f"{MODULE_NAME}.{cls.__name__}" for auto_name, cls in classes.items()}


def register_electra_moe() -> None:
    """Make `electra_moe` loadable through the Auto classes in this process, and make `save_pretrained`
    copy this file and write `auto_map`. Idempotent.

    This runs on import, also when transformers imports the copy saved next to some weights as
    remote code. If `electra_moe` already names a config (this repository's module and a
    remote-code copy in one process), the first one keeps it: `AutoConfig.register` would otherwise
    silently re-point the name. The model classes are registered under their own config class, which
    is a different object for each copy, so both copies' registrations coexist.
    """
    if ElectraMoeConfig.model_type not in CONFIG_MAPPING:
        AutoConfig.register(ElectraMoeConfig.model_type, ElectraMoeConfig)
    ElectraMoeConfig.register_for_auto_class()
    for auto_class, model_class in AUTO_CLASSES.items():
        auto_class.register(ElectraMoeConfig, model_class, exist_ok=True)
        model_class.register_for_auto_class(auto_class.__name__)


register_electra_moe()
