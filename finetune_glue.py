"""Fine-tune and evaluate a pretrained model on (Super)GLUE; gather results of many models into one table.

    python finetune_glue.py --model_name_or_path runs/my-run/final --glue_dir data/glue --tasks all
    python finetune_glue.py --model_name_or_path runs/my-run/final --tasks rte mrpc --seeds 1 2 3   # Hub data
    python finetune_glue.py --config configs/finetune_babylm2025.yaml --model_name_or_path runs/my-run/final \\
        --glue_dir evaluation_data/full_eval/glue_filtered          # the BabyLM 2025 recipe, its 7 tasks
    python finetune_glue.py --model_name_or_path babylm/babyllama-10m-2024 --revision chck_10M --tasks cola
    accelerate launch --config_file accelerate_configs/multi_gpu.yaml finetune_glue.py ...
    python finetune_glue.py gather results          # results/glue_results.{csv,png}: model x task

Each task and seed trains a fresh classification head with early stopping on the dev score and
reports the best dev epoch; seeds are averaged. Results: results/<model>/<task>.json, TensorBoard
logs in results/<model>/tb/ (docs/finetuning.md).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import yaml

from common.config import option, parse_config, write_config_yaml
from common.distributed import build_accelerator, end_run, log
from common.errors import UsageError, run_main
from common.files import markdown_table
from common.finetuning.classifier import encode, load_classification_tokenizer, load_classifier
from common.finetuning.finetune import FinetuneOptions, FinetuneSettings, finetune
from common.finetuning.glue import HUB_GLUE, GlueTask, glue_tasks, metrics_named
from common.finetuning.glue_layouts import describe, read_task_data
from common.finetuning.glue_results import (
    check_results_folder,
    gather,
    score_of,
    score_table,
    task_result,
    write_task_result,
)
from common.model_source import ModelSource

SETTINGS = [f.name for f in dataclasses.fields(FinetuneSettings) if f.name != "seed"]
DATA_SETTINGS = ["max_train_samples"]  # per-task overrides that choose data, not optimisation


@dataclass(frozen=True)
class GlueConfig(FinetuneOptions):
    model_name_or_path: Optional[str] = option(
        None, "a saved model folder (e.g. runs/NAME/final or a milestone) or a Hub model id"
    )
    revision: Optional[str] = option(None, "Hub branch, tag or commit of --model_name_or_path (e.g. chck_10M)")
    tasks: list[str] = option(
        ["all"], "tasks: cola sst2 mrpc stsb qqp mnli qnli rte wnli (all: these nine), boolq multirc wsc"
    )
    glue_dir: Optional[str] = option(
        None,
        f"the data: the GLUE download (<glue_dir>/CoLA/train.tsv, dev.tsv, ...), the SuperGLUE release "
        f"(BoolQ/train.jsonl, val.jsonl, ...) or the BabyLM glue_filtered/ folder (<task>.train.jsonl, "
        f"<task>.valid.jsonl); default: the Hub data set {HUB_GLUE} (needs the network; GLUE only)",
    )
    max_train_samples: Optional[int] = option(
        None, "train on at most this many examples per task (a fixed random subset; BabyLM uses 10000 for MNLI and QQP)"
    )
    max_eval_samples: Optional[int] = option(None, "evaluate on at most this many dev examples per split")
    max_length: int = option(
        128, "tokens per example (pairs lose tokens from the longer text first); at most the model's positions"
    )
    per_device_train_batch_size: int = option(32, "training examples per process and step")
    num_train_epochs: int = option(10, "the most epochs per task")
    patience: int = option(3, "stop a task after this many epochs without a better dev score (0: never)")
    seeds: list[int] = option(
        [42], "one run per seed (the head's initialisation and the data order); the results average them"
    )
    task_overrides: Optional[str] = option(
        None,
        "per-task settings over the flags' defaults: a YAML file, or the mapping itself, e.g. `{rte: "
        "{learning_rate: 2e-5, num_train_epochs: 20}, mnli: {max_train_samples: 10000}}`",
    )
    output_dir: str = option("results", "results go to <output_dir>/<model>/<task>.json")
    model_label: Optional[str] = option(None, "the <model> folder name (default: from the model's path or id)")
    gather: Optional[str] = option(
        None,
        "instead of fine-tuning: gather every <model>/<task>.json under this "
        "folder into glue_results.csv and glue_results.png there "
        "(also: `finetune_glue.py gather DIR`)",
    )

    def __post_init__(self):
        if not self.gather and not self.model_name_or_path:
            raise UsageError("give --model_name_or_path (a model to fine-tune) or gather RESULTS_DIR")
        for name in (
            "max_train_samples",
            "max_eval_samples",
            "max_length",
            "per_device_train_batch_size",
            "per_device_eval_batch_size",
            "num_train_epochs",
        ):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UsageError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.patience < 0:
            raise UsageError(f"--patience must be 0 (never stop early) or more, got {self.patience}")
        if not self.seeds:
            raise UsageError("--seeds needs at least one seed")
        glue_tasks(self.tasks)  # an unknown task fails here, before anything loads

    def settings(self, task: GlueTask, seed: int, overrides: dict[str, dict]) -> FinetuneSettings:
        values = {name: getattr(self, name) for name in SETTINGS}
        own = {name: value for name, value in overrides.get(task.name, {}).items() if name in SETTINGS}
        return FinetuneSettings(**{**values, **own}, seed=seed)

    def train_limit(self, task: GlueTask, overrides: dict[str, dict]) -> int | None:
        return overrides.get(task.name, {}).get("max_train_samples", self.max_train_samples)


def read_task_overrides(value: str | None) -> dict[str, dict]:
    """{task: {setting: value}} from --task_overrides (a YAML file, or the mapping written inline),
    every name and value checked."""
    if value is None:
        return {}
    inline = value.lstrip().startswith("{")
    where = "--task_overrides" + ("" if inline else f" {value}")
    if not inline and not Path(value).is_file():
        raise UsageError(f"--task_overrides {value}: no such file")
    try:
        document = yaml.safe_load(value if inline else Path(value).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise UsageError(f"{where}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(document, dict):
        raise UsageError(f"{where}: expected a mapping of task: {{setting: value}}")
    types = {f.name: f.type for f in dataclasses.fields(FinetuneSettings)} | dict.fromkeys(DATA_SETTINGS, "int")
    overrides = {}
    for task_name, values in document.items():
        if str(task_name).lower() == "all":
            raise UsageError(f"{where}: name tasks one by one, not `all`")
        (task,) = glue_tasks([str(task_name)])
        if not isinstance(values, dict) or set(values) - set(SETTINGS) - set(DATA_SETTINGS):
            raise UsageError(
                f"{where}: {task_name} must map settings ({', '.join(SETTINGS + DATA_SETTINGS)}) to values"
            )
        overrides[task.name] = {
            name: checked_setting(value, name, types[name], f"{where}: {task_name}.{name}")
            for name, value in values.items()
        }
    return overrides


def checked_setting(value, name: str, kind, where: str) -> int | float:
    """A per-task value as its flag would take it: a whole number of at least 1 (patience: 0 too),
    or a finite number not below 0 (YAML reads `2e-5` as text: it counts as the number it spells)."""
    wanted = float if kind in ("float", float) else int
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UsageError(f"{where} must be {'a whole number' if wanted is int else 'a number'}, got {value!r}")
    if wanted is int and not float(value).is_integer():
        raise UsageError(f"{where} must be a whole number, got {value!r}")
    lowest = 0 if wanted is float or name == "patience" else 1
    if value < lowest:
        raise UsageError(f"{where} must be at least {lowest}, got {value!r}")
    return wanted(value)


def subsample(examples: list, limit: int | None) -> list:
    """At most `limit` examples, the same subset for every seed and model (in file order)."""
    if limit is None or len(examples) <= limit:
        return examples
    keep = np.sort(np.random.default_rng(0).choice(len(examples), size=limit, replace=False))
    return [examples[i] for i in keep]


def main():
    argv = sys.argv[1:]
    if argv[:1] == ["gather"]:
        argv = ["--gather", *argv[1:]]
    cfg = parse_config(GlueConfig, argv)
    if cfg.gather:
        paths, rows, columns = gather(Path(cfg.gather))
        print(markdown_table(rows, columns))
        print(f"table: {paths['table']}\nplot: {paths['plot']}")
        return

    accelerator = build_accelerator()
    tasks = glue_tasks(cfg.tasks)
    overrides = read_task_overrides(cfg.task_overrides)
    source = ModelSource(cfg.model_name_or_path, cfg.revision)
    tokenizer, positions = load_classification_tokenizer(source)
    max_length = min(cfg.max_length, positions or cfg.max_length)
    if max_length < cfg.max_length:
        log.info(
            "--max_length %d is more than the model's %d positions: using %d", cfg.max_length, positions, max_length
        )
    # Every task's data is read (and checked) before the first one trains.
    data = {task.name: read_task_data(task, Path(cfg.glue_dir) if cfg.glue_dir else None) for task in tasks}
    for task in tasks:
        accelerator.print(f"{task.name}: {describe(data[task.name])}")
    model = {"label": cfg.model_label or source.label, "name_or_path": source.name_or_path, "revision": source.revision}
    output_dir = Path(cfg.output_dir) / model["label"]
    check_results_folder(output_dir, model)
    if accelerator.is_main_process:
        write_config_yaml(output_dir / "config.yaml", cfg, launch=accelerator.num_processes)

    results = []
    for task in tasks:
        task_data = data[task.name]
        splits = task_data.splits
        train = subsample(splits["train"], cfg.train_limit(task, overrides))
        evaluation = {
            name: subsample(examples, cfg.max_eval_samples) for name, examples in splits.items() if name != "train"
        }

        def encoded(examples):
            return encode(tokenizer, [e.texts for e in examples], [e.label for e in examples], max_length)

        evaluation_encoded = {name: encoded(examples) for name, examples in evaluation.items()}
        seeds = {}
        for seed in cfg.seeds:
            settings = cfg.settings(task, seed, overrides)
            outcome = finetune(
                accelerator,
                functools.partial(load_classifier, source, task.labels, tokenizer.pad_token_id),
                encoded(train),
                evaluation_encoded,
                settings,
                tokenizer.pad_token_id,
                measure=functools.partial(metrics_named, task_data.metrics),
                monitor=functools.partial(score_of, task_data.score_metrics),
                name=f"{task.name}-seed{seed}",
                tensorboard_dir=output_dir / "tb",
            )
            seeds[seed] = outcome.record()
        hyperparameters = {
            **dataclasses.asdict(cfg.settings(task, 0, overrides)),
            "max_length": max_length,
            "max_train_samples": cfg.train_limit(task, overrides),
            "processes": accelerator.num_processes,
        }
        del hyperparameters["seed"]
        result = task_result(
            task,
            model,
            seeds,
            hyperparameters,
            {"train": len(train), **{name: len(e) for name, e in evaluation.items()}},
            scoring={"layout": task_data.layout, "score": list(task_data.score_metrics)},
        )
        results.append(result)
        if accelerator.is_main_process:
            path = write_task_result(output_dir, result)
            log.info(
                "%s: score %.2f (%s) -> %s",
                task.name,
                100 * result["score"],
                ", ".join(f"{k} {100 * v:.2f}" for k, v in result["metrics"].items()),
                path,
            )
    accelerator.print(markdown_table(*score_table(results)))
    end_run(accelerator)


if __name__ == "__main__":
    run_main(main)
