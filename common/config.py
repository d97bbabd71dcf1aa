"""Config parsing shared by every script: HF-style flags, `--config preset.yaml`, provenance.

A script declares one frozen dataclass whose fields carry their help text and whose
`__post_init__` validates once. `parse_config` reads `--config FILE` (if given, with the preset it
names as its `base`) as defaults and lets the command line override them, so a preset and a flag
compose like users expect from the Hugging Face examples.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import platform
import re
import subprocess
import sys
import typing
from pathlib import Path
from typing import Literal, TypeVar

import yaml
from transformers import HfArgumentParser

from common.errors import UsageError, first_line
from common.files import write_atomically

ConfigT = TypeVar("ConfigT")

COUNT_SUFFIXES = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9}
COUNT_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMBG]?)\s*$", re.IGNORECASE)

PROVENANCE_PACKAGES = ("torch", "transformers", "accelerate", "deepspeed", "tokenizers", "datasets")


def option(default, help: str, **kwargs):
    """A dataclass field with its help text (shown by --help)."""
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={"help": help, **kwargs})
    return dataclasses.field(default=default, metadata={"help": help, **kwargs})


def parse_count(text: str, flag: str) -> int:
    """A count like 25M, 1.5B or 100000 (tokens, words) as the number it names."""
    match = COUNT_PATTERN.match(text)
    if not match:
        raise UsageError(f"{flag}: {text.strip()!r} is not a count like 25M, 1.5B or 100000")
    value = round(float(match.group(1)) * COUNT_SUFFIXES[match.group(2).upper()])
    if value <= 0:
        raise UsageError(f"{flag}: {text.strip()!r} must be positive")
    return value


def split_config_flag(argv: list[str]) -> tuple[str | None, list[str]]:
    """Take `--config FILE` (or `--config=FILE`) out of argv; return (FILE or None, the rest)."""
    rest, config_path, i = [], None, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--config":
            if i + 1 >= len(argv):
                raise UsageError("--config needs a YAML file")
            config_path, i = argv[i + 1], i + 2
            continue
        if arg.startswith("--config="):
            config_path = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    return config_path, rest


def literal_choices(annotation) -> tuple:
    """The allowed values of a `Literal[...]` (or `Optional[Literal[...]]`) field, else ()."""
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    return next((literal_choices(arg) for arg in typing.get_args(annotation) if literal_choices(arg)), ())


def accepts(annotation, kind: type) -> bool:
    return annotation is kind or kind in typing.get_args(annotation)


def accepts_text(annotation) -> bool:
    return accepts(annotation, str)


def checked_preset_value(path: str, name: str, value, annotation):
    """A preset value as the flag would have given it: argparse never converts or checks
    defaults, so YAML's `100000000` (an int) must become the text a count option expects, and
    a value outside a choice field's choices must be refused here."""
    if accepts_text(annotation) and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    mappings = isinstance(value, dict) or (isinstance(value, list) and all(isinstance(item, dict) for item in value))
    if accepts_text(annotation) and typing.get_origin(annotation) is not list and value and mappings:
        value = json.dumps(value, default=str)  # mappings written inline (task_overrides, datasets)
    scalar_text = accepts_text(annotation) and typing.get_origin(annotation) is not list
    if scalar_text and not (value is None or isinstance(value, str)):
        raise UsageError(f"--config {path}: {name} must be text (or a mapping), got {value!r}")
    if typing.get_origin(annotation) is list and isinstance(value, str):
        value = [value]  # `data_files: a.txt` means the list [a.txt], not its characters
    if accepts(annotation, int) and not accepts(annotation, float) and isinstance(value, float):
        raise UsageError(f"--config {path}: {name} must be a whole number, got {value!r}")
    choices = literal_choices(annotation)
    if isinstance(value, bool) and {"true", "false"} <= set(choices):  # YAML's `true` for "true"
        value = str(value).lower()
    if choices and value not in choices and not (value is None and accepts(annotation, type(None))):
        raise UsageError(f"--config {path}: {name} {value!r} is not one of {', '.join(map(str, choices))}")
    return value


def read_preset(path: str, field_types: dict, chain: tuple[Path, ...] = ()) -> dict:
    """Load a YAML preset as a flat mapping of field names, rejecting keys the script lacks.

    `base: OTHER.yaml` (relative to this file's folder) reads OTHER first, the same way, and this
    file's values override its values, so a grid of presets can share one base. `chain`: the
    presets that named this one as their base, to report a cycle instead of recursing forever.
    """
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"--config {path}: no such file")
    try:
        values = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise UsageError(f"--config {path}: not valid YAML ({first_line(error)})") from None
    if not isinstance(values, dict):
        raise UsageError(f"--config {path}: expected a mapping of option: value")
    base = values.pop("base", None)
    unknown = sorted(set(values) - set(field_types))
    if unknown:
        raise UsageError(f"--config {path}: unknown option(s) {', '.join(unknown)}")
    own = {name: checked_preset_value(path, name, value, field_types[name]) for name, value in values.items()}
    if base is None:
        return own
    if not isinstance(base, str):
        raise UsageError(f"--config {path}: base must be a YAML file name, got {base!r}")
    base_file, chain = file.parent / base, (*chain, file)
    if any(base_file.resolve() == seen.resolve() for seen in chain):
        cycle = " -> ".join(str(seen) for seen in (*chain, base_file))
        raise UsageError(f"--config {path}: base {base} makes a cycle ({cycle})")
    if not base_file.is_file():
        raise UsageError(f"--config {path}: base {base} not found ({base_file} is no file)")
    return read_preset(str(base_file), field_types, chain) | own


def parse_config(config_type: type[ConfigT], argv: list[str] | None = None) -> ConfigT:
    """Parse argv (default: sys.argv[1:]) into `config_type`, with `--config` presets as defaults.

    Validation errors raised by the dataclass (`UsageError` or `ValueError`) surface as one line.
    """
    argv = sys.argv[1:] if argv is None else argv
    config_path, rest = split_config_flag(argv)
    parser = HfArgumentParser(config_type)
    if config_path:
        parser.set_defaults(**read_preset(config_path, typing.get_type_hints(config_type)))
    try:
        (config,) = parser.parse_args_into_dataclasses(args=rest)
    except ValueError as error:
        raise UsageError(str(error)) from None
    return config


def git_commit() -> str | None:
    """The commit of the code that is running, or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def library_versions() -> dict[str, str | None]:
    versions = {}
    for name in PROVENANCE_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def provenance(**extra) -> dict:
    """Where a result came from: code commit, library versions, python, plus caller facts."""
    return {
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "versions": library_versions(),
        "command": " ".join(sys.argv),
        **extra,
    }


def write_config_yaml(path: Path, config, **provenance_facts) -> dict:
    """Write the resolved config and its provenance as YAML (written whole, then renamed); the
    document written."""
    document = {"config": dataclasses.asdict(config), "provenance": provenance(**provenance_facts)}
    write_atomically(path, yaml.safe_dump(document, sort_keys=False))
    return document
