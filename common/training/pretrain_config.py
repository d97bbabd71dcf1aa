"""The configuration of `train_pretrain.py`: every option, its help text, and its validation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from common.config import option, parse_count
from common.data import synthetic
from common.data.batch_encoding import available_cores
from common.data.mixture import MIXTURE, SourceSpec, check_sources, parse_dataset_mixture, parse_datasets_list
from common.data.sources import LOCAL_SOURCES, check_streamable
from common.errors import UsageError
from common.models.build import SHAPE_FIELDS, SIZE_PRESETS
from common.models.families import ELECTRA, FAMILIES, MODEL_FAMILY
from common.optimizer import SCHEDULES
from common.tracking import parse_report_to
from common.training.milestones import parse_anchors

# Each packing worker holds about 0.2 GB; past this many the main process's reading is the bound anyway.
MAX_DEFAULT_PACKING_WORKERS = 16


@dataclass(frozen=True)
class PretrainConfig:
    # --- data ---
    dataset: str = option(
        "synthetic",
        "synthetic | babylm | text | jsonl | a Hugging Face dataset id, "
        "optionally with its config after a colon (wikitext:wikitext-103-raw-v1) | mixture (the "
        "sources of --dataset_mixture or a preset's datasets:)",
    )
    data_dir: Optional[str] = option(None, "BabyLM folder with *.train files (e.g. .../train_10M) for --dataset babylm")
    data_files: list[str] = option([], "text or JSONL files or globs for --dataset text|jsonl")
    text_column: str = option("text", "the text field of JSONL rows / Hugging Face datasets")
    validation_split_percentage: float = option(
        1.0, "percent of documents held out for validation when the dataset has no validation split of its own"
    )
    streaming: bool = option(
        False,
        "read a Hugging Face --dataset as a stream while packing, with no full download and Arrow "
        "conversion first (local files are always read line by line)",
    )
    dataset_mixture: Optional[str] = option(
        None,
        "several sources by weight instead of --dataset: SOURCE=WEIGHT items, comma-separated; SOURCE is "
        "synthetic, babylm:FOLDER, text:FILE_OR_GLOB, jsonl:FILE_OR_GLOB or a Hugging Face id[:config] "
        "(e.g. text:data/*.txt=0.7,synthetic=0.3; see docs/pretraining.md)",
    )
    datasets: Optional[str] = option(
        None,
        "a preset's `datasets:` list of weighted sources, each as --dataset names one (see docs/pretraining.md); "
        "JSON on the command line",
    )
    synthetic_words: int = option(
        synthetic.DEFAULT_WORDS, "words of synthetic corpus to generate for --dataset synthetic"
    )
    cache_dir: str = option(".cache/babytrain", "where trained tokenizers and packed token files are cached")
    packing_workers: int = option(
        0,
        "processes that tokenize while packing (0: one per available core, at most 16; 1: this process alone, "
        "the Rust tokenizer spreading each batch over the cores); the packed cache is the same either way",
    )
    prepare_only: bool = option(
        False,
        "pack the corpus (or find it in the cache) and write a corpus report into --output_dir (default "
        "runs/corpus-<dataset>-<time>): documents, words, tokens, tokens per word, vocabulary use and "
        "a histogram of document lengths per source; no model is built",
    )
    # --- tokenizer ---
    tokenizer_name_or_path: Optional[str] = option(None, "use this tokenizer (path or Hub id) instead of training one")
    vocab_size: int = option(8000, "vocabulary size of the trained tokenizer")
    # --- model ---
    model_type: Literal[tuple(MODEL_FAMILY)] = option("llama", "architecture to train")
    objective: Optional[Literal[FAMILIES]] = option(
        None,
        "training objective (default: the model type's own: causal for decoders, mlm for bert, "
        "electra for electra and electra_moe)",
    )
    mlm_probability: float = option(
        0.15, "fraction of tokens masked for --objective mlm and electra (80/10/10 replacement)"
    )
    cls_windows: bool = option(
        True,
        "masked objectives (mlm, electra): every window is [CLS] text [SEP], as BERT's inputs are, so "
        "fine-tuning's classifier reads a position pretraining trained (false: plain windows that "
        "start anywhere in a document)",
    )
    dropout: Optional[float] = option(None, "dropout of hidden states and attention (default: the model's own)")
    model_size: Literal[tuple(SIZE_PRESETS)] = option("tiny", "size preset; the shape flags below override it")
    hidden_size: Optional[int] = option(None, "hidden size (overrides the preset)")
    num_hidden_layers: Optional[int] = option(None, "number of layers (overrides the preset)")
    num_attention_heads: Optional[int] = option(None, "attention heads (overrides the preset)")
    num_key_value_heads: Optional[int] = option(None, "key/value heads for grouped-query attention (default: all)")
    intermediate_size: Optional[int] = option(None, "feed-forward width (overrides the preset)")
    max_position_embeddings: Optional[int] = option(None, "position table size (default: --seq_length)")
    # --- ELECTRA and ELECTRA-MoE ---
    embedding_size: Optional[int] = option(
        None, "ELECTRA: embedding width, projected to --hidden_size when it differs (default: the hidden size)"
    )
    generator_size_divisor: int = option(
        4,
        "ELECTRA: the generator's hidden size, heads and FFN width are the "
        "discriminator's divided by this (4 as in ELECTRA-Small)",
    )
    disc_weight: float = option(50.0, "ELECTRA: weight of the discriminator loss next to the generator's")
    num_experts: int = option(4, "ELECTRA-MoE: experts per feed-forward layer")
    num_experts_per_tok: int = option(1, "ELECTRA-MoE: experts each token is routed to (top-k)")
    router_aux_loss_coef: float = option(0.01, "ELECTRA-MoE: weight of the Switch load-balancing loss")
    router_z_loss_coef: float = option(0.0, "ELECTRA-MoE: weight of the router z-loss (0: off)")
    model_name_or_path: Optional[str] = option(None, "continue training this saved model instead of a new one")
    gradient_checkpointing: bool = option(False, "recompute activations in backward to save memory")
    torch_compile: Literal["auto", "true", "false"] = option(
        "auto",
        "compile the training forward + loss with torch.compile: auto (on a GPU always; on a CPU when "
        "the run is long enough to earn back the compilation, see docs/pretraining.md), true, false "
        "(a bare --torch_compile means true)",
        nargs="?",
        const="true",
    )
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = option(
        "default", "torch.compile mode when compiling (reduce-overhead: CUDA graphs, for small models on a GPU)"
    )
    fused_loss: bool = option(
        True,
        "causal and BERT models: compute the vocabulary projection and cross-entropy in chunks of "
        "positions, never the full logits (same loss; false: the model's own logits)",
    )
    seq_length: int = option(128, "tokens per training window")
    # --- optimisation ---
    output_dir: Optional[str] = option(None, "run folder (default: runs/<model>-<size>-<dataset>-<time>)")
    overwrite_output_dir: bool = option(False, "replace a finished or unrelated run in --output_dir")
    seed: int = option(42, "seed for initialisation, sampling order and dropout")
    per_device_train_batch_size: int = option(16, "windows per process per micro-batch")
    per_device_eval_batch_size: int = option(32, "windows per process per validation batch")
    gradient_accumulation_steps: int = option(1, "micro-batches per optimizer step")
    learning_rate: float = option(1e-3, "peak learning rate")
    weight_decay: float = option(0.1, "AdamW weight decay (never applied to norms, biases, embeddings)")
    adam_beta1: float = option(0.9, "AdamW beta1")
    adam_beta2: float = option(0.95, "AdamW beta2")
    adam_epsilon: float = option(1e-8, "AdamW epsilon")
    max_grad_norm: float = option(1.0, "gradient clipping norm (0: no clipping)")
    lr_scheduler_type: Literal[SCHEDULES] = option("cosine", "learning-rate decay after warmup")
    warmup_ratio: float = option(0.05, "fraction of steps spent warming up")
    warmup_steps: int = option(0, "warmup steps (overrides --warmup_ratio when > 0)")
    min_lr_ratio: float = option(0.1, "final learning rate as a fraction of the peak")
    num_train_epochs: float = option(1.0, "passes over the training windows (when neither limit below is set)")
    max_steps: int = option(0, "optimizer steps to train (> 0 overrides epochs and tokens)")
    max_train_tokens: Optional[str] = option(None, "train until this many input tokens (e.g. 100M)")
    # --- records ---
    logging_steps: int = option(10, "log training scalars every N steps")
    eval_steps: int = option(200, "validation loss every N steps (and before and after training)")
    max_eval_samples: int = option(512, "validation windows used per evaluation")
    checkpointing_steps: int = option(500, "resumable checkpoint every N steps (0: only at the end)")
    checkpoints_total_limit: int = option(2, "keep the newest N checkpoints (0: all)")
    resume_from_checkpoint: Optional[str] = option(None, "auto (newest in --output_dir, or a fresh start) or a path")
    milestones: Optional[str] = option(None, "token anchors for HF snapshots, e.g. 25M,50M,100M")
    milestones_words: Optional[str] = option(None, "word anchors for HF snapshots named chck_<N>M, e.g. 1M,2M,10M")
    save_init: bool = option(False, "also snapshot the randomly initialised model as milestones/init")
    push_to_hub: bool = option(
        False,
        "push each milestone to its own branch of --hub_model_id and final/ to main "
        "(in the background; the token comes from HF_TOKEN or `hf auth login`)",
    )
    hub_model_id: Optional[str] = option(None, "the Hub repository to push to, USER/NAME (created if missing)")
    hub_private: bool = option(False, "create --hub_model_id as a private repository")
    milestone_store: Literal["local", "hub"] = option(
        "local",
        "where milestones live: local (kept in milestones/, also pushed with --push_to_hub) or hub "
        "(pushed, then the local copy is removed to save disk; final/ always stays)",
    )
    max_nonfinite_steps: int = option(20, "stop (with a checkpoint) after this many steps with a non-finite loss")
    report_to: str = option(
        "tensorboard",
        "where the run's scalars go besides metrics.jsonl: any of tensorboard, wandb, trackio, "
        "comma-separated, or none (W&B offline: WANDB_MODE=offline, then `wandb sync`)",
    )
    tracker_project: str = option("babytrain", "the W&B / Trackio project of --report_to wandb or trackio")
    # --- evaluation of the final model ---
    blimp_at_end: bool = option(
        True,
        "score final/ on zero-shot tasks when training ends (eval_blimp.py's "
        "defaults): the synthetic corpus's own tasks, or --blimp_dir's",
    )
    blimp_dir: Optional[str] = option(
        None,
        "zero-shot data for the end-of-training evaluation: a BLiMP JSONL folder, a task folder, the "
        "BabyLM evaluation_data/ (its full_eval/ tasks) or nyu-mll/blimp; without it only "
        "synthetic-corpus runs are scored",
    )

    def __post_init__(self):
        positive = (
            "vocab_size",
            "seq_length",
            "per_device_train_batch_size",
            "per_device_eval_batch_size",
            "gradient_accumulation_steps",
            "logging_steps",
            "eval_steps",
            "synthetic_words",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise UsageError(f"--{name} must be positive, got {getattr(self, name)}")
        non_negative = (
            "packing_workers",
            "max_grad_norm",
            "warmup_steps",
            "max_steps",
            "checkpointing_steps",
            "checkpoints_total_limit",
            "max_nonfinite_steps",
            "weight_decay",
            "disc_weight",
            "router_aux_loss_coef",
            "router_z_loss_coef",
        )
        for name in non_negative:
            if getattr(self, name) < 0:
                raise UsageError(f"--{name} must not be negative, got {getattr(self, name)}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise UsageError(f"--min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.learning_rate <= 0:
            raise UsageError(f"--learning_rate must be positive, got {self.learning_rate}")
        if not 0 <= self.warmup_ratio < 1:
            raise UsageError(f"--warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not 0 <= self.validation_split_percentage < 100:
            raise UsageError(
                f"--validation_split_percentage must be in [0, 100), got {self.validation_split_percentage}"
            )
        if self.num_train_epochs <= 0 and self.max_steps <= 0 and not self.train_token_limit():
            raise UsageError("give a positive --num_train_epochs, --max_steps or --max_train_tokens")
        if self.max_position_embeddings is not None and self.seq_length > self.max_position_embeddings:
            raise UsageError(
                f"--seq_length {self.seq_length} is above --max_position_embeddings {self.max_position_embeddings}"
            )
        if self.dataset == "babylm" and not self.data_dir:
            raise UsageError("--dataset babylm needs --data_dir (a BabyLM folder such as train_10M)")
        if self.dataset in ("text", "jsonl") and not self.data_files:
            raise UsageError(f"--dataset {self.dataset} needs --data_files")
        if self.objective is not None and self.objective != MODEL_FAMILY[self.model_type]:
            raise UsageError(
                f"--objective {self.objective} cannot train --model_type {self.model_type} "
                f"(it trains: {MODEL_FAMILY[self.model_type]})"
            )
        self.reporters()  # an unknown reporter or a missing package: refused before any work
        self.check_sources()
        if self.training_objective() != "causal" and self.cls_windows and self.seq_length < 3:
            raise UsageError(f"--seq_length {self.seq_length} leaves no room for text between [CLS] and [SEP]")
        if not 0 < self.mlm_probability < 1:
            raise UsageError(f"--mlm_probability must be in (0, 1), got {self.mlm_probability}")
        if self.embedding_size is not None and MODEL_FAMILY[self.model_type] != ELECTRA:
            raise UsageError(f"--embedding_size applies to --model_type electra and electra_moe, not {self.model_type}")
        for name in ("embedding_size", "generator_size_divisor", "num_experts", "num_experts_per_tok"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UsageError(f"--{name} must be positive, got {getattr(self, name)}")
        if self.num_experts_per_tok > self.num_experts:
            raise UsageError(
                f"--num_experts_per_tok {self.num_experts_per_tok} is more than --num_experts {self.num_experts}"
            )
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise UsageError(f"--dropout must be in [0, 1), got {self.dropout}")
        self.anchors()  # malformed milestone lists fail here, before any work
        self.train_token_limit()
        self.check_hub_options()

    def source_specs(self) -> list[SourceSpec] | None:
        """The weighted sources of --dataset_mixture or a preset's `datasets:`; None for one --dataset."""
        if self.dataset_mixture and self.datasets:
            raise UsageError("give --dataset_mixture or a datasets: list, not both")
        if self.dataset_mixture:
            return parse_dataset_mixture(self.dataset_mixture)
        return parse_datasets_list(self.datasets) if self.datasets else None

    def check_sources(self) -> None:
        specs = self.source_specs()
        if specs is None:
            if self.dataset == MIXTURE:
                raise UsageError("--dataset mixture needs its sources: --dataset_mixture or a datasets: list")
            if self.streaming:
                check_streamable(self.dataset)
            return
        check_sources(specs)
        # --dataset may be left at its default or say `mixture` (a preset over a base that names one)
        if self.dataset not in ("synthetic", MIXTURE) or self.data_dir or self.data_files:
            raise UsageError(
                "a mixture names its own sources: leave --dataset (or give --dataset mixture), --data_dir "
                "and --data_files out (each source carries its own)"
            )
        if self.streaming and all(spec.dataset in LOCAL_SOURCES for spec in specs):
            raise UsageError("--streaming reads Hugging Face data sets; this mixture has none (leave it out)")

    def check_hub_options(self) -> None:
        if self.push_to_hub and not self.hub_model_id:
            raise UsageError("--push_to_hub needs --hub_model_id USER/NAME")
        if self.hub_model_id and not self.push_to_hub:
            raise UsageError("--hub_model_id is only used with --push_to_hub")
        if self.milestone_store == "hub" and not self.push_to_hub:
            raise UsageError("--milestone_store hub needs --push_to_hub and --hub_model_id")

    def reporters(self) -> tuple[str, ...]:
        return parse_report_to(self.report_to)

    def anchors(self):
        return parse_anchors(self.milestones, "tokens", "--milestones") + parse_anchors(
            self.milestones_words, "words", "--milestones_words"
        )

    def train_token_limit(self) -> int | None:
        """--max_train_tokens, else the sum of a mixture's token budgets, else None (epochs)."""
        if self.max_train_tokens:
            return parse_count(self.max_train_tokens, "--max_train_tokens")
        budgets = [spec.tokens for spec in self.source_specs() or []]
        return sum(budgets) if budgets and all(budgets) else None

    def tokenizing_processes(self) -> int:
        return self.packing_workers or min(available_cores(), MAX_DEFAULT_PACKING_WORKERS)

    def training_objective(self) -> str:
        return self.objective or MODEL_FAMILY[self.model_type]

    def shape_overrides(self) -> dict:
        """The shape flags (each field of `Shape`), None where the preset's value stands."""
        return {name: getattr(self, name) for name in SHAPE_FIELDS}

    def model_options(self) -> dict:
        """`build_model`'s keyword arguments beyond the shape: the ELECTRA generator's size and the
        experts and router loss weights of ELECTRA-MoE."""
        options = {"dropout": self.dropout, "generator_size_divisor": self.generator_size_divisor}
        if self.model_type == "electra_moe":
            options |= {
                name: getattr(self, name)
                for name in ("num_experts", "num_experts_per_tok", "router_aux_loss_coef", "router_z_loss_coef")
            }
        return options
