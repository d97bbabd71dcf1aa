"""Every preset and launch file parses, and each size preset has the size its name promises."""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest
import torch
import transformers
import yaml
from accelerate.commands.config.config_args import ClusterConfig

from common.config import parse_config
from common.data.tokenizer import train_tokenizer
from common.finetuning.glue import glue_tasks
from common.models.build import build_model, resolve_shape
from common.models.families import AUTO_CLASS_NAMES, CAUSAL_MODEL_TYPES, MODEL_FAMILY, TOKENIZER_KIND
from common.training.perf import count_parameters
from common.training.pretrain_config import PretrainConfig
from tests.helpers import REPO

# Pretraining presets; configs/finetune_*.yaml are finetune_glue.py's (tested below).
PRESETS = sorted(p for p in (REPO / "configs").glob("*.yaml") if not p.name.startswith("finetune_"))
EXPECTED_MILLIONS = {"tiny": (0.5, 5), "20m": (12, 30), "60m": (40, 80), "180m": (130, 230)}
# Presets whose shape is set by the project they reproduce, not by a size preset, by the first
# prefix of their name that matches (babylm_electra before babylm). wikitext2 is measured with the
# test's 8000-entry vocabulary; bert-base-uncased's 30522 entries make it ~11M. ELECTRA counts the
# generator and the discriminator (measured: babylm_electra 5.1M, ELECTRA-Base 119.4M of which the
# discriminator 109.5M; MoE 2, 4, 8 experts 176.1M, 289.4M, 516.1M whatever the top-k).
REFERENCE_MILLIONS = {
    "babylm_electra": (4.5, 5.5),
    "babylm": (70, 260),
    "wikitext2": (4, 5),
    "electra_wikitext103": (110, 130),
    "electra_moe_2x": (165, 185),
    "electra_moe_4x": (275, 300),
    "electra_moe_8x": (500, 530),
}
MOE_PRESETS = sorted((REPO / "configs").glob("electra_moe_*.yaml"))
MOE_OPTIONS = ("model_type", "num_experts", "num_experts_per_tok")


class VocabOnly:
    """The tokenizer facts a model needs, without training one for a 48k vocabulary."""

    def __init__(self, size):
        self.size, self.bos_token_id, self.eos_token_id, self.pad_token_id = size, 0, 0, 1

    def __len__(self):
        return self.size


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_preset_builds_a_model_of_its_size(preset):
    extra = ["--data_dir", "unused"] if "babylm" in preset.stem else []
    cfg = parse_config(PretrainConfig, ["--config", str(preset), *extra])
    shape = resolve_shape(cfg.model_size, **cfg.shape_overrides())
    with torch.device("meta"):
        model = build_model(
            cfg.model_type,
            cfg.training_objective(),
            shape,
            VocabOnly(cfg.vocab_size),
            cfg.max_position_embeddings or cfg.seq_length,
            **cfg.model_options(),
        )
    millions = count_parameters(model) / 1e6
    reference = next((span for prefix, span in REFERENCE_MILLIONS.items() if preset.stem.startswith(prefix)), None)
    low, high = reference or EXPECTED_MILLIONS[cfg.model_size]
    assert low <= millions <= high, f"{preset.name}: {millions:.1f}M parameters"


def test_reference_babylm_presets_have_the_reference_shape():
    for arch in ("gemma2", "llama4", "olmo2"):
        cfg = parse_config(
            PretrainConfig, ["--config", str(REPO / "configs" / f"babylm_{arch}.yaml"), "--data_dir", "unused"]
        )
        assert (
            cfg.hidden_size,
            cfg.num_hidden_layers,
            cfg.vocab_size,
            cfg.seq_length,
            cfg.per_device_train_batch_size,
            cfg.num_train_epochs,
        ) == (768, 12, 48000, 128, 16, 3)
        assert cfg.model_type == arch


def test_wikitext2_preset_has_the_reference_setup():
    cfg = parse_config(PretrainConfig, ["--config", str(REPO / "configs" / "wikitext2_bert_mlm.yaml")])
    assert (cfg.model_type, cfg.training_objective(), cfg.dataset) == ("bert", "mlm", "wikitext:wikitext-2-raw-v1")
    assert (
        cfg.num_hidden_layers,
        cfg.hidden_size,
        cfg.num_attention_heads,
        cfg.intermediate_size,
        cfg.max_position_embeddings,
        cfg.dropout,
        cfg.seq_length,
    ) == (3, 256, 4, 1024, 512, 0.1, 128)
    assert (
        cfg.per_device_train_batch_size,
        cfg.per_device_eval_batch_size,
        cfg.learning_rate,
        cfg.lr_scheduler_type,
        cfg.warmup_ratio,
        cfg.max_grad_norm,
    ) == (8, 16, 5e-4, "linear", 0.06, 1.0)


def test_babylm_electra_preset_has_the_reference_shape():
    cfg = parse_config(
        PretrainConfig, ["--config", str(REPO / "configs" / "babylm_electra.yaml"), "--data_dir", "unused"]
    )
    assert (cfg.model_type, cfg.training_objective(), cfg.dataset) == ("electra", "electra", "babylm")
    assert (
        cfg.num_hidden_layers,
        cfg.hidden_size,
        cfg.num_attention_heads,
        cfg.embedding_size,
        cfg.intermediate_size,
        cfg.max_position_embeddings,
        cfg.seq_length,
        cfg.mlm_probability,
    ) == (18, 196, 4, 64, 128, 512, 512, 0.15)
    shape = resolve_shape(cfg.model_size, **cfg.shape_overrides())
    with torch.device("meta"):
        pair = build_model(
            cfg.model_type,
            cfg.training_objective(),
            shape,
            VocabOnly(cfg.vocab_size),
            cfg.max_position_embeddings,
            **cfg.model_options(),
        )
    generator = pair.generator.config
    assert (
        generator.hidden_size,
        generator.num_attention_heads,
        generator.intermediate_size,
        generator.embedding_size,
    ) == (49, 1, 32, 64)


def test_electra_wikitext103_preset_is_electra_base():
    cfg = parse_config(PretrainConfig, ["--config", str(REPO / "configs" / "electra_wikitext103.yaml")])
    assert (cfg.model_type, cfg.dataset, cfg.tokenizer_name_or_path, cfg.vocab_size) == (
        "electra",
        "wikitext:wikitext-103-raw-v1",
        None,
        30522,
    )
    assert (
        cfg.hidden_size,
        cfg.num_hidden_layers,
        cfg.num_attention_heads,
        cfg.intermediate_size,
        cfg.embedding_size,
        cfg.generator_size_divisor,
        cfg.disc_weight,
    ) == (768, 12, 12, 3072, 768, 3, 50)
    assert (cfg.learning_rate, cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps) == (2e-4, 256)


@pytest.mark.parametrize("preset", MOE_PRESETS, ids=lambda p: p.stem)
def test_moe_preset_is_its_base_with_its_own_experts(preset):
    cfg = parse_config(PretrainConfig, ["--config", str(preset)])
    base = parse_config(PretrainConfig, ["--config", str(REPO / "configs" / "electra_wikitext103.yaml")])
    experts, top_k = map(int, preset.stem.removeprefix("electra_moe_").split("x"))
    assert (cfg.model_type, cfg.num_experts, cfg.num_experts_per_tok) == ("electra_moe", experts, top_k)
    assert dataclasses.replace(cfg, **{name: getattr(base, name) for name in MOE_OPTIONS}) == base
    assert cfg.model_options()["router_aux_loss_coef"] == 0.01


def test_electra_moe_grid_names_its_presets_and_agrees_with_them():
    with open(REPO / "experiments" / "electra_moe.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    # experiments/README.md: every column but name is a train_pretrain.py option (--config included)
    assert set(rows[0]) - {"name", "config"} <= {field.name for field in dataclasses.fields(PretrainConfig)}
    assert len({row["name"] for row in rows}) == len({row["output_dir"] for row in rows}) == len(rows) == 7
    expected = ["configs/electra_wikitext103.yaml", *(f"configs/{preset.name}" for preset in MOE_PRESETS)]
    assert sorted(row["config"] for row in rows) == sorted(expected)
    for row in rows:
        cfg = parse_config(PretrainConfig, ["--config", str(REPO / row["config"]), "--seed", row["seed"]])
        assert cfg.model_type == row["model_type"], row["name"]
        if cfg.model_type == "electra_moe":
            assert (cfg.num_experts, cfg.num_experts_per_tok) == (
                int(row["num_experts"]),
                int(row["num_experts_per_tok"]),
            ), row["name"]
        else:
            assert row["num_experts"] == row["num_experts_per_tok"] == "", row["name"]


@pytest.mark.parametrize("path", sorted((REPO / "accelerate_configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_accelerate_config_parses_and_points_at_real_files(path):
    parsed = ClusterConfig.from_yaml_file(str(path))  # as `accelerate launch --config_file` reads it
    assert parsed.num_processes >= 1 and str(parsed.distributed_type).endswith(("NO", "MULTI_GPU", "DEEPSPEED"))
    config = yaml.safe_load(path.read_text())
    assert config["distributed_type"] in {"NO", "MULTI_GPU", "DEEPSPEED"}
    assert isinstance(config["num_processes"], int) and config["num_processes"] >= 1
    if config["distributed_type"] == "DEEPSPEED":
        assert "mixed_precision" not in config, "accelerate refuses mixed_precision beside a DeepSpeed JSON"
        assert (REPO / config["deepspeed_config"]["deepspeed_config_file"]).is_file()


@pytest.mark.parametrize("path", sorted((REPO / "ds_configs").glob("*.json")), ids=lambda p: p.stem)
def test_deepspeed_config_leaves_run_dependent_values_to_accelerate(path):
    config = json.loads(path.read_text())
    for key in (
        "train_batch_size",
        "train_micro_batch_size_per_gpu",
        "gradient_accumulation_steps",
        "gradient_clipping",
    ):
        assert config[key] == "auto", key
    assert config["zero_optimization"]["stage"] in (2, 3)
    assert config.get("bf16", {}).get("enabled") or config.get("fp16", {}).get("enabled")
    if config["zero_optimization"]["stage"] == 3:  # milestones need the full weights gathered
        assert config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


@pytest.mark.parametrize("model_type", sorted(MODEL_FAMILY))
def test_every_model_type_saves_and_loads_with_its_familys_auto_class(model_type, bpe_tokenizer, tmp_path):
    """A model type is declared once (common/models/families.py); building, the training
    objective, the tokenizer kind and the class that loads a saved model all follow from it."""
    family = MODEL_FAMILY[model_type]
    config = PretrainConfig(model_type=model_type)
    assert config.training_objective() == family and TOKENIZER_KIND[family] in ("bpe", "wordpiece")
    shape = resolve_shape("tiny", hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    tokenizer = bpe_tokenizer if family == "causal" else train_tokenizer("wordpiece", ["the cat sleeps ."] * 50, 120)
    model = build_model(model_type, family, shape, tokenizer, 32)
    model.save_pretrained(tmp_path)
    loaded = getattr(transformers, AUTO_CLASS_NAMES[family]).from_pretrained(tmp_path)
    assert loaded.config.model_type == ("llama4_text" if model_type == "llama4" else model_type)
    assert (model_type in CAUSAL_MODEL_TYPES) == (family == "causal")


def test_the_babylm_finetuning_preset_is_the_2025_recipe():
    """configs/finetune_babylm2025.yaml: the BabyLM 2025 eval_finetuning.sh settings, per task."""
    from finetune_glue import GlueConfig, read_task_overrides

    cfg = parse_config(
        GlueConfig, ["--config", str(REPO / "configs" / "finetune_babylm2025.yaml"), "--model_name_or_path", "m"]
    )
    assert cfg.tasks == ["boolq", "multirc", "rte", "wsc", "mrpc", "qqp", "mnli"]
    assert (cfg.learning_rate, cfg.max_length, cfg.seeds, cfg.patience) == (3e-5, 512, [42], 0)
    overrides = read_task_overrides(cfg.task_overrides)
    batch = {task.name: cfg.settings(task, 42, overrides).per_device_train_batch_size for task in glue_tasks(cfg.tasks)}
    epochs = {task.name: cfg.settings(task, 42, overrides).num_train_epochs for task in glue_tasks(cfg.tasks)}
    limits = {task.name: cfg.train_limit(task, overrides) for task in glue_tasks(cfg.tasks)}
    assert batch == {"boolq": 16, "multirc": 16, "rte": 32, "wsc": 32, "mrpc": 32, "qqp": 32, "mnli": 32}
    assert epochs == {"boolq": 10, "multirc": 10, "rte": 10, "wsc": 30, "mrpc": 10, "qqp": 10, "mnli": 10}
    assert limits == {
        "boolq": None,
        "multirc": None,
        "rte": None,
        "wsc": None,
        "mrpc": None,
        "qqp": 10000,
        "mnli": 10000,
    }


def test_the_hybrid_preset_streams_five_hub_sources_by_weight():
    cfg = parse_config(PretrainConfig, ["--config", str(REPO / "configs" / "efficiency_hybrid.yaml")])
    specs = cfg.source_specs()
    assert [spec.name for spec in specs] == ["wikipedia", "bookcorpus", "openwebtext", "c4", "cc_news"]
    assert all(spec.streaming and "/" in spec.dataset for spec in specs)
    assert sum(spec.weight for spec in specs) == pytest.approx(1.0)
    assert sum(spec.max_words for spec in specs) == 3_000_000_000  # a slice of each, not all of C4
    assert cfg.model_size == "60m" and cfg.max_train_tokens == "2000M"  # efficiency_60m.yaml's run
