"""Tests for common/config.py and common/training/pretrain_config.py: presets, flags, validation, provenance."""

import dataclasses
import sys

import pytest
import yaml

from common.config import parse_config, split_config_flag, write_config_yaml
from common.errors import UsageError
from common.training.pretrain_config import PretrainConfig


def preset(tmp_path, text: str):
    path = tmp_path / "preset.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


# --- --config presets --------------------------------------------------------------------------


def test_defaults_without_any_flag():
    config = parse_config(PretrainConfig, [])
    assert config == PretrainConfig()
    assert config.dataset == "synthetic" and config.seq_length == 128


def test_preset_values_become_the_config(tmp_path):
    path = preset(
        tmp_path,
        "seq_length: 64\nlearning_rate: 2.0e-3\nlr_scheduler_type: linear\n"
        "gradient_checkpointing: true\nmilestones: 1M,2M\n",
    )
    config = parse_config(PretrainConfig, ["--config", path])
    assert config.seq_length == 64
    assert config.learning_rate == 2e-3
    assert config.lr_scheduler_type == "linear"
    assert config.gradient_checkpointing is True
    assert [a.name for a in config.anchors()] == ["tokens-1M", "tokens-2M"]


def test_command_line_flag_overrides_the_preset(tmp_path):
    path = preset(tmp_path, "seq_length: 64\nvocab_size: 500\n")
    config = parse_config(PretrainConfig, ["--config", path, "--seq_length", "32"])
    assert config.seq_length == 32
    assert config.vocab_size == 500


def test_flag_before_config_also_overrides_it(tmp_path):
    path = preset(tmp_path, "seq_length: 64\n")
    assert parse_config(PretrainConfig, ["--seq_length", "16", f"--config={path}"]).seq_length == 16


def test_preset_string_numbers_are_converted_like_flags(tmp_path):
    # PyYAML reads 1e-3 (no dot) as a string; the parser must still give a float.
    config = parse_config(PretrainConfig, ["--config", preset(tmp_path, "learning_rate: 1e-3\n")])
    assert config.learning_rate == pytest.approx(1e-3)
    assert isinstance(config.learning_rate, float)


def test_preset_list_option(tmp_path):
    path = preset(tmp_path, "dataset: text\ndata_files: [a.txt, 'b/*.txt']\n")
    assert parse_config(PretrainConfig, ["--config", path]).data_files == ["a.txt", "b/*.txt"]


def test_empty_preset_keeps_the_defaults(tmp_path):
    assert parse_config(PretrainConfig, ["--config", preset(tmp_path, "")]) == PretrainConfig()


def test_unknown_preset_key_is_refused_by_name(tmp_path):
    path = preset(tmp_path, "seq_length: 64\nlearning_rat: 0.1\nbogus_option: 1\n")
    with pytest.raises(UsageError, match="unknown option.*bogus_option, learning_rat"):
        parse_config(PretrainConfig, ["--config", path])


def test_missing_preset_file_is_a_usage_error(tmp_path):
    missing = str(tmp_path / "missing.yaml")
    with pytest.raises(UsageError, match="--config .*missing.yaml: no such file"):
        parse_config(PretrainConfig, ["--config", missing])


def test_invalid_yaml_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="not valid YAML"):
        parse_config(PretrainConfig, ["--config", preset(tmp_path, "seq_length: [64\n")])


def test_preset_that_is_not_a_mapping_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="expected a mapping"):
        parse_config(PretrainConfig, ["--config", preset(tmp_path, "- seq_length\n- 64\n")])


def test_config_flag_without_a_file_is_a_usage_error():
    with pytest.raises(UsageError, match="--config needs a YAML file"):
        parse_config(PretrainConfig, ["--seq_length", "8", "--config"])


@pytest.mark.parametrize(
    "argv, expected",
    [
        ([], (None, [])),
        (["--config", "a.yaml", "--x", "1"], ("a.yaml", ["--x", "1"])),
        (["--x", "1", "--config=b.yaml"], ("b.yaml", ["--x", "1"])),
        (["--configuration", "1"], (None, ["--configuration", "1"])),
    ],
)
def test_split_config_flag(argv, expected):
    assert split_config_flag(argv) == expected


def test_invalid_value_in_a_preset_is_validated_like_a_flag(tmp_path):
    with pytest.raises(UsageError, match="--per_device_train_batch_size must be positive"):
        parse_config(PretrainConfig, ["--config", preset(tmp_path, "per_device_train_batch_size: -4\n")])


@pytest.mark.parametrize("line", ["lr_scheduler_type: bogus", "model_type: bogus", "model_size: huge"])
def test_preset_value_outside_the_choices_is_refused(tmp_path, line):
    with pytest.raises(UsageError):
        parse_config(PretrainConfig, ["--config", preset(tmp_path, line + "\n")])


@pytest.mark.parametrize(
    "line, check",
    [
        ("max_train_tokens: 100000000", lambda c: c.train_token_limit() == 100_000_000),
        ("milestones: 1000000", lambda c: [a.name for a in c.anchors()] == ["tokens-1M"]),
    ],
    ids=["max_train_tokens", "milestones"],
)
def test_preset_plain_integer_counts_are_accepted(tmp_path, line, check):
    assert check(parse_config(PretrainConfig, ["--config", preset(tmp_path, line + "\n")]))


def write(folder, name: str, text: str):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return str(folder / name)


def test_preset_inherits_its_base(tmp_path):
    write(tmp_path, "base.yaml", "seq_length: 64\nvocab_size: 500\n")
    path = write(tmp_path, "child.yaml", "base: base.yaml\nlearning_rate: 0.002\n")
    config = parse_config(PretrainConfig, ["--config", path])
    assert (config.seq_length, config.vocab_size, config.learning_rate) == (64, 500, 0.002)


def test_preset_overrides_its_base_and_the_command_line_overrides_both(tmp_path):
    write(tmp_path, "base.yaml", "seq_length: 64\nvocab_size: 500\n")
    path = write(tmp_path, "child.yaml", "base: base.yaml\nseq_length: 32\n")
    assert parse_config(PretrainConfig, ["--config", path]).seq_length == 32
    config = parse_config(PretrainConfig, ["--config", path, "--seq_length", "16", "--vocab_size", "600"])
    assert (config.seq_length, config.vocab_size) == (16, 600)


def test_base_is_found_beside_the_preset_not_in_the_working_directory(tmp_path, monkeypatch):
    write(tmp_path / "configs", "base.yaml", "seq_length: 64\n")
    write(tmp_path, "base.yaml", "seq_length: 8\n")
    write(tmp_path / "configs" / "grid", "child.yaml", "base: ../base.yaml\n")
    monkeypatch.chdir(tmp_path)
    assert parse_config(PretrainConfig, ["--config", "configs/grid/child.yaml"]).seq_length == 64


def test_chain_of_two_bases(tmp_path):
    write(tmp_path, "grand.yaml", "seq_length: 64\nvocab_size: 500\nlearning_rate: 0.001\n")
    write(tmp_path, "parent.yaml", "base: grand.yaml\nvocab_size: 600\nlearning_rate: 0.003\n")
    path = write(tmp_path, "child.yaml", "base: parent.yaml\nlearning_rate: 0.002\n")
    config = parse_config(PretrainConfig, ["--config", path])
    assert (config.seq_length, config.vocab_size, config.learning_rate) == (64, 600, 0.002)


@pytest.mark.parametrize(
    "files",
    [
        {"a.yaml": "base: a.yaml\n"},
        {"a.yaml": "base: b.yaml\n", "b.yaml": "base: c.yaml\n", "c.yaml": "base: a.yaml\n"},
    ],
    ids=["itself", "three"],
)
def test_base_cycle_is_a_usage_error_naming_the_files(tmp_path, files):
    for name, text in files.items():
        write(tmp_path, name, text)
    with pytest.raises(UsageError, match="makes a cycle") as error:
        parse_config(PretrainConfig, ["--config", str(tmp_path / "a.yaml")])
    message = str(error.value)
    assert "\n" not in message
    assert all(name in message for name in files)


def test_missing_base_is_a_usage_error_naming_both_files(tmp_path):
    path = write(tmp_path, "child.yaml", "base: gone.yaml\nseq_length: 64\n")
    with pytest.raises(UsageError, match=r"--config .*child.yaml: base gone.yaml not found"):
        parse_config(PretrainConfig, ["--config", path])


def test_error_in_a_base_names_the_base(tmp_path):
    write(tmp_path, "base.yaml", "bogus_option: 1\n")
    path = write(tmp_path, "child.yaml", "base: base.yaml\n")
    with pytest.raises(UsageError, match=r"--config .*base.yaml: unknown option\(s\) bogus_option"):
        parse_config(PretrainConfig, ["--config", path])


def test_base_that_is_not_a_file_name_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="base must be a YAML file name"):
        parse_config(PretrainConfig, ["--config", preset(tmp_path, "base: [a.yaml, b.yaml]\n")])


# --- PretrainConfig validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--per_device_train_batch_size", "-1"], "--per_device_train_batch_size must be positive"),
        (["--per_device_eval_batch_size", "0"], "--per_device_eval_batch_size must be positive"),
        (["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps must be positive"),
        (["--vocab_size", "0"], "--vocab_size must be positive"),
        (
            ["--seq_length", "256", "--max_position_embeddings", "128"],
            "--seq_length 256 is above --max_position_embeddings 128",
        ),
        (["--milestones", "25M,25X"], "--milestones: '25X'"),
        (["--milestones_words", "1M,1M"], "--milestones_words"),
        (["--max_train_tokens", "lots"], "--max_train_tokens"),
        (["--dataset", "babylm"], "--dataset babylm needs --data_dir"),
        (["--dataset", "text"], "--dataset text needs --data_files"),
        (["--dataset", "jsonl"], "--dataset jsonl needs --data_files"),
        (["--learning_rate", "0"], "--learning_rate must be positive"),
        (["--warmup_ratio", "1.0"], "--warmup_ratio must be in"),
        (["--validation_split_percentage", "100"], "--validation_split_percentage must be in"),
        (["--num_train_epochs", "0"], "--num_train_epochs, --max_steps or --max_train_tokens"),
    ],
)
def test_invalid_flags_raise_a_usage_error_naming_the_flag(argv, flag):
    with pytest.raises(UsageError) as error:
        parse_config(PretrainConfig, argv)
    assert flag in str(error.value)


def test_direct_construction_validates_too():
    with pytest.raises(UsageError, match="--seq_length 64 is above --max_position_embeddings 32"):
        PretrainConfig(seq_length=64, max_position_embeddings=32)


@pytest.mark.parametrize(
    "argv",
    [
        ["--seq_length", "128", "--max_position_embeddings", "128"],
        ["--dataset", "babylm", "--data_dir", "/data/train_10M"],
        ["--dataset", "text", "--data_files", "a.txt", "b.txt"],
        ["--num_train_epochs", "0", "--max_steps", "10"],
        ["--num_train_epochs", "0", "--max_train_tokens", "1M"],
        ["--milestones", "50M,25M", "--milestones_words", "1M,10M"],
    ],
)
def test_valid_edge_combinations_are_accepted(argv):
    assert isinstance(parse_config(PretrainConfig, argv), PretrainConfig)


def test_anchors_combine_token_and_word_milestones():
    config = parse_config(PretrainConfig, ["--milestones", "50M,25M", "--milestones_words", "10M,1M"])
    assert [a.name for a in config.anchors()] == ["tokens-25M", "tokens-50M", "chck_1M", "chck_10M"]


def test_train_token_limit_parses_the_count():
    assert parse_config(PretrainConfig, ["--max_train_tokens", "1.5B"]).train_token_limit() == 1_500_000_000
    assert PretrainConfig().train_token_limit() is None


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PretrainConfig().seq_length = 8


# --- provenance --------------------------------------------------------------------------------


def test_write_config_yaml_writes_config_and_provenance(tmp_path):
    config = parse_config(PretrainConfig, ["--seq_length", "32", "--data_files", "x.txt", "--dataset", "text"])
    path = tmp_path / "run" / "config.yaml"
    write_config_yaml(path, config, world_size=2)
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert document["config"] == dataclasses.asdict(config)
    assert document["config"]["seq_length"] == 32 and document["config"]["data_files"] == ["x.txt"]
    facts = document["provenance"]
    assert "git_commit" in facts
    assert facts["git_commit"] is None or isinstance(facts["git_commit"], str)
    assert facts["versions"]["torch"] and facts["versions"]["transformers"] and facts["versions"]["tokenizers"]
    assert set(facts["versions"]) >= {"torch", "transformers", "accelerate", "tokenizers"}
    assert facts["world_size"] == 2
    assert facts["python"].count(".") == 2
    assert not (tmp_path / "run" / "config.yaml.tmp").exists()


def test_written_config_can_be_read_back_as_a_preset(tmp_path):
    config = parse_config(PretrainConfig, ["--seq_length", "32", "--milestones", "1M", "--lr_scheduler_type", "linear"])
    path = tmp_path / "config.yaml"
    write_config_yaml(path, config)
    values = yaml.safe_load(path.read_text(encoding="utf-8"))["config"]
    again = parse_config(PretrainConfig, ["--config", preset(tmp_path, yaml.safe_dump(values))])
    assert again == config


def test_the_compile_flag_takes_auto_true_false_bare_and_yaml_booleans(tmp_path):
    assert parse_config(PretrainConfig, []).torch_compile == "auto"
    assert parse_config(PretrainConfig, ["--torch_compile", "--seed", "3"]).torch_compile == "true"  # bare, as before
    assert parse_config(PretrainConfig, ["--torch_compile", "false"]).torch_compile == "false"
    preset = tmp_path / "p.yaml"
    preset.write_text("torch_compile: true\n")  # what older presets and run configs hold
    assert parse_config(PretrainConfig, ["--config", str(preset)]).torch_compile == "true"


@pytest.mark.parametrize(
    "report_to, reporters",
    [("tensorboard", ("tensorboard",)), (" tensorboard , tensorboard", ("tensorboard",)), ("none", ())],
)
def test_report_to_names_the_reporters(report_to, reporters):
    assert parse_config(PretrainConfig, ["--report_to", report_to]).reporters() == reporters


def test_an_unknown_reporter_or_a_missing_tracker_package_is_refused_with_the_pip_command(monkeypatch):
    with pytest.raises(UsageError, match="--report_to tensorboard,comet: unknown reporter comet"):
        parse_config(PretrainConfig, ["--report_to", "tensorboard,comet"])
    monkeypatch.setitem(sys.modules, "trackio", None)  # as if it were not installed: importing it fails
    with pytest.raises(UsageError, match="--report_to trackio needs the trackio package: pip install trackio"):
        parse_config(PretrainConfig, ["--report_to", "trackio"])


def test_streaming_a_local_source_is_refused_when_the_flags_are_read():
    with pytest.raises(UsageError, match="--streaming reads Hugging Face data sets; --dataset synthetic"):
        parse_config(PretrainConfig, ["--streaming"])
    assert parse_config(PretrainConfig, ["--dataset", "roneneldan/TinyStories", "--streaming"]).streaming
