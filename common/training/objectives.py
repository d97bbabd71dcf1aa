"""Training objectives: how token windows become model inputs, and which loss terms they train.

An objective has three parts:
- `make_batch` turns token windows into the tensors one forward takes (masks and sampling
  randomness are drawn per global sample index, so they survive resume and any world size). The
  windows hold `window_stride(L) + 1` tokens: L + 1 for a causal model (L inputs, L targets); for a
  masked model L - 2 tokens of text after one token of context, wrapped as [CLS] text [SEP] (below);
- a *training module* (`training_module`) wraps the model so that its forward returns the loss terms
  of a batch as *sums* (`{"loss": summed cross-entropy}`, or ELECTRA's generator, discriminator
  and router terms). The loop calls that one module, so DDP and DeepSpeed see one forward per
  micro-batch, and saves the model(s) inside it with `save_pretrained`;
- `terms`: for each summed quantity, the count that normalises it and its weight in the loss.

The loop all-reduces the counts of the whole global batch (all micro-batches, all ranks) before
the forward and trains on sum(weight x term_sum / global_count), so results do not depend on the
accumulation steps or the world size. Terms of weight 0 are only reported (an accuracy, say).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.bert.modeling_bert import BertLMPredictionHead

from common.errors import UsageError
from common.models.families import IGNORE

TRAIN_STREAM, EVAL_STREAM = 1, 2  # separate random streams for training and validation masks
SAMPLING_STREAM_OFFSET = 10  # ELECTRA's generator sampling: streams 11 (training) and 12 (validation)


@dataclass(frozen=True)
class Term:
    count: str  # the count that normalises the summed term ("targets", "masked", "tokens", ...)
    weight: float = 0.0  # its weight in the training loss; 0: reported, not trained on


class TrainingModule(nn.Module):
    """A Hugging Face model wrapped so that forward returns the objective's summed loss terms.

    `save_pretrained` saves the wrapped model alone (a state dict given to it, e.g. gathered under
    ZeRO-3, has this module's `model.` prefix, which is taken off), so what is saved loads with the
    stock `transformers` Auto classes.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    @property
    def config(self):
        return self.model.config

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module | None:
        return self.model.get_output_embeddings()

    def gradient_checkpointing_enable(self, **kwargs) -> None:
        self.model.gradient_checkpointing_enable(**kwargs)

    def save_pretrained(self, folder: str | Path, state_dict: dict | None = None, **kwargs) -> None:
        if state_dict is not None:
            state_dict = {key.removeprefix("model."): value for key, value in state_dict.items()}
        self.model.save_pretrained(folder, state_dict=state_dict, **kwargs)


class CausalLMTraining(TrainingModule):
    """Next-token loss of a `*ForCausalLM`. With `fused_loss`, the vocabulary projection and the
    cross-entropy run together in chunks of positions (`linear_cross_entropy_sum`), so the
    (positions x vocabulary) float32 logits never exist at once: at 64 x 256 tokens and a 50257-token
    vocabulary they alone are 3.3 GB, twice over with their gradient."""

    def __init__(self, model: nn.Module, fused_loss: bool = True):
        super().__init__(model)
        self.fused_loss = fused_loss and fusable_head(model)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        head = self.model.get_output_embeddings()
        if self.fused_loss and not partitioned(head.weight):
            hidden = self.model.model(input_ids=input_ids).last_hidden_state  # the decoder without its head
            return {"loss": linear_cross_entropy_sum(hidden.flatten(0, 1), head.weight, labels.flatten())}
        logits = self.model(input_ids=input_ids).logits
        return {
            "loss": F.cross_entropy(
                logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE, reduction="sum"
            )
        }


# The causal model types whose logits are exactly `lm_head(model.model(...))` (Gemma 2 only without
# its logit soft-capping). A model loaded from the Hub of another type (Granite scales its logits,
# Falcon-H1 multiplies them) keeps its own head.
FUSABLE_CAUSAL_TYPES = ("llama", "olmo2", "llama4_text", "gemma2")


def fusable_head(model: nn.Module) -> bool:
    """True when the model's logits are its decoder's (`model.model`) last hidden states times the
    output embedding and nothing else: a known model type, a bias-free linear head, no soft-capping."""
    head = model.get_output_embeddings()
    config = model.config
    return (
        config.model_type in FUSABLE_CAUSAL_TYPES
        and isinstance(getattr(model, "model", None), nn.Module)
        and isinstance(head, nn.Linear)
        and head.bias is None
        and getattr(config, "final_logit_softcapping", None) is None
    )


def partitioned(weight: torch.Tensor) -> bool:
    """A ZeRO-3 parameter outside its module's forward holds only this rank's shard; the head runs
    through its module then (DeepSpeed gathers the weight for the call)."""
    return hasattr(weight, "ds_id")


# Positions per chunk of the fused loss: as many as keep one chunk's float32 logits near 128 MB
# (2**25 values), e.g. 667 positions at a 50257-token vocabulary.
LOGITS_PER_CHUNK = 2**25


@torch.compiler.disable
def linear_cross_entropy_sum(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """sum over positions of cross_entropy(hidden @ weight.T [+ bias], labels), IGNORE labels skipped,
    without ever holding the full logits: `ChunkedLinearCrossEntropy` works a block of positions at a
    time. Under autocast the projection runs in the autocast dtype, as the model's own head would;
    the softmax and the sum are float32 either way. (PyTorch 2.13's own `linear_cross_entropy` with
    chunking options measured slower than the unfused head on a CPU, and under bf16 autocast it
    summed the loss in bf16: docs/benchmarks.md.)

    Never compiled: its work is three matmuls, which compiling does not speed up, and the chunk loop
    depends on the number of rows, which for masked positions changes every batch (each new count
    would recompile, until torch.compile gives up)."""
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
        hidden, weight = hidden.to(dtype), weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
    if bias is None:
        bias = weight.new_zeros(weight.shape[0])  # a constant: no gradient is asked of it
    chunk_rows = max(1, LOGITS_PER_CHUNK // weight.shape[0])
    return ChunkedLinearCrossEntropy.apply(hidden, weight, bias, labels, chunk_rows, torch.is_grad_enabled())


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """The summed cross-entropy of a linear projection, and its gradients, computed in one pass over
    chunks of positions: for each chunk the logits, their float32 log-sum-exp and target logit, and
    at once the gradient (softmax - one-hot) pushed through the projection into d hidden (that
    chunk's rows) and d weight and d bias (accumulated in float32, and kept so until backward has
    scaled them: a sum over thousands of positions can exceed float16's range before the loss scale
    is applied). Backward only scales what forward stored, so no chunk's logits are ever recomputed
    and at most one chunk's logits exist at a time. The matmuls are the unfused head's three
    (logits, d hidden, d weight); d bias is the column sum. Only the gradients that are asked for
    (`needs_input_grad`, all off under no_grad) are computed."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, labels, chunk_rows: int, grad_mode: bool):
        # (grad mode is always off in here: the caller's is passed in)
        wants = ctx.needs_input_grad[:3] if grad_mode else (False, False, False)
        want_hidden, want_weight, want_bias = wants
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_hidden = torch.empty_like(hidden) if want_hidden else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if want_weight else None
        grad_bias = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if want_bias else None
        for start in range(0, hidden.shape[0], chunk_rows):
            rows = slice(start, start + chunk_rows)
            chunk, targets = hidden[rows], labels[rows]
            logits = torch.addmm(bias, chunk, weight.T).float()
            scored = targets != IGNORE
            safe_targets = torch.where(scored, targets, 0).unsqueeze(1)
            log_normaliser = logits.logsumexp(dim=1)
            total += ((log_normaliser - logits.gather(1, safe_targets).squeeze(1)) * scored).sum()
            if any(wants):  # d(sum of losses)/d logits = softmax - one-hot, zero where nothing is scored
                grad_logits = logits.sub_(log_normaliser.unsqueeze(1)).exp_()
                grad_logits.scatter_add_(1, safe_targets, -scored.unsqueeze(1).float())
                grad_logits = grad_logits.mul_(scored.unsqueeze(1)).to(chunk.dtype)
                if want_hidden:
                    grad_hidden[rows] = grad_logits @ weight
                if want_weight:
                    grad_weight += (grad_logits.T @ chunk).float()
                if want_bias:
                    grad_bias += grad_logits.sum(dim=0, dtype=torch.float32)
        ctx.dtypes = (hidden.dtype, weight.dtype, bias.dtype)
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
        return total

    @staticmethod
    def backward(ctx, grad_total):
        grads = [
            None if grad is None else (grad * grad_total.to(grad.dtype)).to(dtype)
            for grad, dtype in zip(ctx.saved_tensors, ctx.dtypes)
        ]  # hidden, weight, bias
        return *grads, None, None, None


class MaskedLMTraining(TrainingModule):
    """Runs the vocabulary head on the masked positions only: with 15% masking that skips 85% of the
    largest matmul of a small encoder (hidden x vocabulary), which `*ForMaskedLM.forward` computes
    for every position.

    With `fused_loss` and BERT's head (transform, then a decoder with a bias), the decoder and the
    cross-entropy run chunked like the causal loss (`linear_cross_entropy_sum`): at 64 x 256 tokens
    the ~2,500 masked positions' float32 logits over a 50257-token vocabulary are another 0.5 GB."""

    def __init__(self, model: nn.Module, fused_loss: bool = True):
        super().__init__(model)
        # BERT's head is transform then decoder; MobileBERT's and RemBERT's, also `predictions`, are not
        self.fused_loss = fused_loss and isinstance(
            getattr(masked_lm_head(model), "predictions", None), BertLMPredictionHead
        )

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.model.base_model(input_ids=input_ids).last_hidden_state
        masked = labels != IGNORE
        head = masked_lm_head(self.model)
        if self.fused_loss and not partitioned(head.predictions.decoder.weight):
            predictions = head.predictions
            return {
                "loss": linear_cross_entropy_sum(
                    predictions.transform(hidden[masked]),
                    predictions.decoder.weight,
                    labels[masked],
                    bias=predictions.decoder.bias,
                )
            }
        logits = head(hidden[masked])
        return {"loss": F.cross_entropy(logits.float(), labels[masked], reduction="sum")}


def masked_lm_head(model: nn.Module) -> nn.Module:
    """The prediction head of a `*ForMaskedLM` (hidden states -> vocabulary logits)."""
    for name in ("cls", "lm_head"):  # BERT, RoBERTa
        if hasattr(model, name):
            return getattr(model, name)
    raise UsageError(f"{type(model).__name__}: no masked-LM head found (expected a BERT- or RoBERTa-style model)")


class CausalLM:
    """Next-token prediction: inputs are tokens 0..L-1 of a window, targets tokens 1..L."""

    name = "causal"
    terms = {"loss": Term("targets", 1.0)}
    perplexity_term = "loss"

    window_layout = "plain"  # recorded in what a checkpoint is made for

    def __init__(self, fused_loss: bool = True):
        self.fused_loss = fused_loss

    def training_module(self, model: nn.Module) -> nn.Module:
        return CausalLMTraining(model, self.fused_loss)

    @staticmethod
    def window_stride(seq_length: int) -> int:
        """Tokens of text each window moves on by (its rows hold one more)."""
        return seq_length

    def make_batch(
        self, windows: np.ndarray, device: torch.device, sample_ids, evaluation: bool = False, padding_rows: int = 0
    ) -> dict[str, torch.Tensor]:
        tokens = torch.from_numpy(windows).to(device)
        labels = tokens[:, 1:].clone()
        if padding_rows:  # rows that only keep ranks in step (evaluation): no targets
            labels[-padding_rows:] = IGNORE
        return {"input_ids": tokens[:, :-1], "labels": labels}

    @staticmethod
    def count_batch(batch: dict[str, torch.Tensor]) -> dict[str, int]:
        return {"targets": int((batch["labels"] != IGNORE).sum())}


def mask_tokens(
    tokens: np.ndarray,
    sample_ids,
    special: np.ndarray,
    replacement_ids: np.ndarray,
    mask_id: int,
    probability: float,
    seed: int,
    stream: int,
) -> tuple[np.ndarray, np.ndarray]:
    """BERT's dynamic masking of token rows: each non-special token is chosen with `probability`;
    a chosen token becomes [MASK] 80% of the time, a random token 10%, and stays 10%.

    Row r draws from a generator seeded by (seed, stream, sample_ids[r]): the same sample gets the
    same mask on any number of processes and after a resume, and a window seen again in a later
    epoch (a new sample index) gets a fresh one. Returns (inputs, labels), labels IGNORE where
    nothing is predicted.
    """
    inputs, labels = tokens.copy(), np.full_like(tokens, IGNORE)
    for row, sample in enumerate(sample_ids):
        rng = np.random.default_rng([seed, stream, int(sample)])
        choose, keep_or_random, which = rng.random((3, tokens.shape[1]))
        chosen = (choose < probability) & ~special[tokens[row]]
        labels[row, chosen] = tokens[row, chosen]
        masked = chosen & (keep_or_random < 0.8)
        randomised = chosen & (keep_or_random >= 0.8) & (which < 0.5)
        inputs[row, masked] = mask_id
        inputs[row, randomised] = rng.choice(replacement_ids, size=int(randomised.sum()))
    return inputs, labels


def sampling_uniforms(sample_ids, length: int, seed: int, stream: int) -> np.ndarray:
    """One U[0, 1) per position of each row, from a generator seeded by (seed, stream, sample id):
    ELECTRA's generator samples its replacement at a masked position from this number, so the
    replacements, like the masks, depend on nothing but the sample."""
    return np.stack(
        [np.random.default_rng([seed, stream, int(sample)]).random(length, dtype=np.float32) for sample in sample_ids]
    )


class MaskedLM:
    """BERT-style masked language modelling on windows of L tokens; targets are the masked ones.

    With `cls_windows` (the default) every window is `[CLS] text [SEP]`, L - 2 tokens of text in
    between, as BERT's inputs are: fine-tuning classifies from the state at position 0, and a model
    pretrained on windows that start anywhere in a document has almost never seen [CLS] there. The
    text windows tile the packed stream (stride L - 2), so no token is left out; a document that
    starts inside a window is still marked by its boundary token ([CLS] for a WordPiece tokenizer).
    Without it, windows are L tokens of the stream, wherever they start (the layout before).
    """

    name = "mlm"
    terms = {"loss": Term("targets", 1.0)}
    perplexity_term = "loss"

    def __init__(self, tokenizer, probability: float, seed: int, fused_loss: bool = True, cls_windows: bool = True):
        if tokenizer.mask_token_id is None:
            raise UsageError(
                f"--objective {self.name} needs a tokenizer with a mask token (e.g. a WordPiece "
                f"tokenizer trained here, or bert-base-uncased)"
            )
        if cls_windows and (tokenizer.cls_token_id is None or tokenizer.sep_token_id is None):
            raise UsageError(
                f"--objective {self.name} starts windows with [CLS] and ends them with [SEP]; this tokenizer "
                f"lacks one of them (give --cls_windows false to train on plain windows)"
            )
        self.mask_id, self.probability, self.seed = tokenizer.mask_token_id, probability, seed
        self.cls_windows = cls_windows
        self.wrap = (tokenizer.cls_token_id, tokenizer.sep_token_id)
        self.window_layout = "cls_sep" if cls_windows else "plain"
        self.fused_loss = fused_loss
        self.special = np.zeros(len(tokenizer), dtype=bool)
        self.special[tokenizer.all_special_ids] = True
        self.replacement_ids = np.flatnonzero(~self.special)

    def training_module(self, model: nn.Module) -> nn.Module:
        return MaskedLMTraining(model, self.fused_loss)

    def window_stride(self, seq_length: int) -> int:
        return seq_length - 2 if self.cls_windows else seq_length

    def model_inputs(self, windows: np.ndarray) -> np.ndarray:
        """The L tokens the model sees of each window: [CLS] + its text + [SEP] (its first token is
        the previous window's last, context for counting words only), or its first L tokens."""
        if not self.cls_windows:
            return windows[:, :-1]
        rows = len(windows)
        cls, sep = (np.full((rows, 1), token, dtype=windows.dtype) for token in self.wrap)
        return np.concatenate([cls, windows[:, 1:], sep], axis=1)

    def masked_windows(self, windows: np.ndarray, sample_ids, evaluation: bool, padding_rows: int):
        """(original tokens, masked inputs, labels) of the L model inputs of each window."""
        tokens = self.model_inputs(windows)
        inputs, labels = mask_tokens(
            tokens,
            sample_ids,
            self.special,
            self.replacement_ids,
            self.mask_id,
            self.probability,
            self.seed,
            EVAL_STREAM if evaluation else TRAIN_STREAM,
        )
        if padding_rows:
            labels[-padding_rows:] = IGNORE
        return tokens, inputs, labels

    def make_batch(
        self, windows: np.ndarray, device: torch.device, sample_ids, evaluation: bool = False, padding_rows: int = 0
    ) -> dict[str, torch.Tensor]:
        _, inputs, labels = self.masked_windows(windows, sample_ids, evaluation, padding_rows)
        return {"input_ids": torch.from_numpy(inputs).to(device), "labels": torch.from_numpy(labels).to(device)}

    count_batch = staticmethod(CausalLM.count_batch)


class Electra(MaskedLM):
    """ELECTRA's replaced-token detection: the generator fills BERT-masked windows by sampling, the
    discriminator tells, for every token, whether it was replaced (see `ElectraPair.forward`).

    Loss = generator MLM loss (per masked token) + disc_weight x discriminator BCE (per token)
    [+ the MoE router's balancing and z-losses, per micro-batch, weighted by their coefficients].
    """

    name = "electra"
    perplexity_term = "generator_loss"

    def __init__(
        self,
        tokenizer,
        probability: float,
        seed: int,
        disc_weight: float,
        router_loss_weights: dict[str, float] | None = None,
        cls_windows: bool = True,
    ):
        super().__init__(tokenizer, probability, seed, cls_windows=cls_windows)
        self.terms = {
            "generator_loss": Term("masked", 1.0),
            "discriminator_loss": Term("tokens", disc_weight),
            "discriminator_accuracy": Term("tokens"),
            "replaced_fraction": Term("tokens"),
        }
        if router_loss_weights is not None:
            self.terms |= {
                "router_aux_loss": Term("batches", router_loss_weights["aux"]),
                "router_z_loss": Term("batches", router_loss_weights["z"]),
                "expert_fraction": Term("batches"),
            }

    @staticmethod
    def training_module(model: nn.Module) -> nn.Module:
        return model  # an ElectraPair computes its terms itself

    def make_batch(
        self, windows: np.ndarray, device: torch.device, sample_ids, evaluation: bool = False, padding_rows: int = 0
    ) -> dict[str, torch.Tensor]:
        tokens, inputs, labels = self.masked_windows(windows, sample_ids, evaluation, padding_rows)
        stream = (EVAL_STREAM if evaluation else TRAIN_STREAM) + SAMPLING_STREAM_OFFSET
        token_weights = np.ones(tokens.shape, dtype=np.float32)
        if padding_rows:
            token_weights[-padding_rows:] = 0.0
        arrays = {
            "input_ids": inputs,
            "original_ids": tokens,
            "labels": labels,
            "uniforms": sampling_uniforms(sample_ids, tokens.shape[1], self.seed, stream),
            "token_weights": token_weights,
        }
        return {name: torch.from_numpy(np.ascontiguousarray(array)).to(device) for name, array in arrays.items()}

    @staticmethod
    def count_batch(batch: dict[str, torch.Tensor]) -> dict[str, int]:
        tokens = int(batch["token_weights"].sum())
        return {"masked": int((batch["labels"] != IGNORE).sum()), "tokens": tokens, "batches": int(tokens > 0)}


def objective_for(name: str, tokenizer, cfg):
    if name == "mlm":
        return MaskedLM(tokenizer, cfg.mlm_probability, cfg.seed, cfg.fused_loss, cfg.cls_windows)
    if name == "electra":
        router = (
            {"aux": cfg.router_aux_loss_coef, "z": cfg.router_z_loss_coef} if cfg.model_type == "electra_moe" else None
        )
        return Electra(tokenizer, cfg.mlm_probability, cfg.seed, cfg.disc_weight, router, cfg.cls_windows)
    return CausalLM(cfg.fused_loss)
