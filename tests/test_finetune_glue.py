"""finetune_glue.py as a user runs it: a tiny pretrained LLaMA under DeepSpeed ZeRO-2 on two
processes and a tiny ELECTRA on one, on GLUE-layout files of a separable task, then `gather`.
(STS-B's regression head is trained in test_finetune.py, in process.)"""

from __future__ import annotations

import csv
import json
import sys

import pytest

import finetune_glue
from common.errors import UsageError
from common.finetuning.glue import GLUE_TASKS, read_glue_split_files
from finetune_glue import GlueConfig, read_task_overrides
from tests.finetune_data import write_babylm_glue_dir, write_glue_dir, write_tsv
from tests.helpers import REPO, accelerate_launch, error_line, run_in_process, run_script, shared_data_dir

pytestmark = pytest.mark.e2e  # every test here launches a script

FAST = ["--learning_rate", "1e-3", "--per_device_train_batch_size", "16", "--max_length", "64"]


@pytest.fixture(scope="module")
def glue_results(tmp_path_factory, causal_run, tiny_models):
    root = tmp_path_factory.mktemp("glue")
    glue_dir = write_glue_dir(root / "glue")
    results = root / "results"
    overrides = root / "overrides.yaml"  # one epoch is enough to see MNLI's two dev files at work
    overrides.write_text("mnli: {num_train_epochs: 1}\n")
    accelerate_launch(
        "deepspeed_zero2",
        "finetune_glue.py",
        [
            "--model_name_or_path",
            str(causal_run / "final"),
            "--glue_dir",
            str(glue_dir),
            "--tasks",
            "sst2",
            "mnli",
            "--num_train_epochs",
            "3",
            "--task_overrides",
            str(overrides),
            "--seeds",
            "1",
            "2",
            "--output_dir",
            str(results),
            *FAST,
        ],
    )
    # A freshly initialised tiny ELECTRA (as after a short pretraining, its first-token states hardly
    # differ between inputs): it sits at chance for an epoch or two before the head finds a signal,
    # and needs a larger learning rate than the pretrained LLaMA.
    electra = run_script(
        "finetune_glue.py",
        [
            "--model_name_or_path",
            str(tiny_models["electra"]),
            "--glue_dir",
            str(glue_dir),
            "--tasks",
            "sst-2",
            "--num_train_epochs",
            "8",
            "--patience",
            "2",
            "--model_label",
            "electra",
            "--output_dir",
            str(results),
            *FAST,
            "--learning_rate",
            "3e-3",
        ],
    )
    return results, electra


def read_json(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_causal_model_under_zero2_learns_the_separable_task(glue_results):
    results, _ = glue_results
    sst2 = read_json(results / "run-final" / "sst2.json")
    assert sst2["score"] > 0.85, sst2["metrics"]  # chance is 0.5
    assert [s["seed"] for s in sst2["seeds"]] == [1, 2]
    assert sst2["hyperparameters"]["processes"] == 2 and sst2["examples"] == {"train": 320, "dev": 120}
    for seed in sst2["seeds"]:
        best = max(seed["history"], key=lambda epoch: epoch["score"])
        assert seed["best_epoch"] == best["epoch"] and seed["metrics"] == best["metrics"]
        assert len(seed["history"]) == 3 and seed["history"][-1]["step"] == 3 * 10  # 320 / (16 x 2) per epoch
    mnli = read_json(results / "run-final" / "mnli.json")
    assert set(mnli["metrics"]) == {"matched_accuracy", "mismatched_accuracy"}
    assert mnli["examples"] == {"train": 320, "matched": 60, "mismatched": 60}
    assert mnli["hyperparameters"]["num_train_epochs"] == 1 and len(mnli["seeds"][0]["history"]) == 1
    runs = sorted(p.name for p in (results / "run-final" / "tb").iterdir())
    assert runs == ["mnli-seed1", "mnli-seed2", "sst2-seed1", "sst2-seed2"]
    assert (results / "run-final" / "config.yaml").is_file()


def test_electra_learns_it_too_and_stops_early(glue_results):
    results, electra = glue_results
    sst2 = read_json(results / "electra" / "sst2.json")
    assert sst2["score"] > 0.8, sst2["metrics"]
    seed = sst2["seeds"][0]
    if seed["stopped_early"]:  # patience 2: two epochs without a better dev score end it
        assert max(e["score"] for e in seed["history"][-2:]) <= seed["history"][-3]["score"]
        assert seed["epochs_trained"] < 8 and seed["best_epoch"] == seed["epochs_trained"] - 2
    assert "| electra | " in electra.stdout and "sst2" in electra.stdout


def test_gather_writes_the_table_and_the_chart(glue_results, capsys):
    results, _ = glue_results
    gathered = run_in_process("finetune_glue.py", ["gather", str(results)], capsys)
    with open(results / "glue_results.csv", encoding="utf-8") as lines:
        rows = {row["model"]: row for row in csv.DictReader(lines)}
    assert set(rows) == {"run-final", "electra"}
    ours = rows["run-final"]
    scores = [float(ours[t]) for t in ("sst2", "mnli")]
    assert float(ours["average"]) == pytest.approx(sum(scores) / 2, abs=0.02) and ours["tasks"] == "2"
    assert rows["electra"]["mnli"] == "" and rows["electra"]["tasks"] == "1"
    assert float(ours["sst2"]) == pytest.approx(100 * read_json(results / "run-final" / "sst2.json")["score"], abs=0.01)
    assert (results / "glue_results.png").read_bytes()[:4] == b"\x89PNG"
    assert (results / "glue_metrics.csv").read_text().count("\n") == 1 + 3 + 1  # header, ours, electra
    assert "| run-final |" in gathered.stdout


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, causal_run, monkeypatch, capsys):
    glue_dir = write_glue_dir(tmp_path / "glue", train=20, dev=10)
    (glue_dir / "SST-2" / "dev.tsv").unlink()
    out = tmp_path / "results"
    argv = [
        "finetune_glue.py",
        "--model_name_or_path",
        str(causal_run / "final"),
        "--glue_dir",
        str(glue_dir),
        "--tasks",
        "mnli",
        "sst2",
        "--output_dir",
        str(out),
    ]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(UsageError, match=f"^{glue_dir / 'SST-2' / 'dev.tsv'}: no such file"):
        finetune_glue.main()
    assert not out.exists()  # MNLI's files were fine, but nothing trained before every task's data was read
    offline = run_in_process(
        "finetune_glue.py",
        ["--model_name_or_path", str(causal_run / "final"), "--tasks", "rte", "--output_dir", str(out)],
        capsys,
        check=False,
    )  # tests run offline
    assert error_line(offline).startswith("error: cannot load nyu-mll/glue (rte): ")
    assert error_line(offline).endswith("pass --glue_dir with the GLUE download") and not out.exists()

    with pytest.raises(UsageError, match="--tasks sst3: unknown GLUE task"):
        GlueConfig(model_name_or_path="m", tasks=["sst2", "sst3"])
    bad_label = write_tsv(
        tmp_path / "bad" / "SST-2" / "train.tsv", "sentence\tlabel", ["a fine film .\t1", "a bad one .\t2"]
    )
    with pytest.raises(UsageError, match=f"{bad_label}:3: label '2' is not one of 0, 1"):
        read_glue_split_files(tmp_path / "bad", GLUE_TASKS["sst2"])


def test_the_babylm_preset_runs_its_seven_tasks_on_the_babylm_layout(tmp_path, causal_run, capsys):
    """configs/finetune_babylm2025.yaml over glue_filtered/: each task scored as the BabyLM
    pipeline reports it (accuracy, F1, MCC; MNLI accuracy), its per-task settings applied (WSC's 30
    epochs, QQP's and MNLI's 10k cap), made quick by flags (one epoch, a few examples)."""
    shared = shared_data_dir()
    if shared is None:
        pytest.skip("../shared/data (the BabyLM glue_filtered samples) is not beside this checkout")
    glue_dir = write_babylm_glue_dir(tmp_path / "glue_filtered", shared)
    results = tmp_path / "results"
    quick = ["--num_train_epochs", "1", "--max_train_samples", "32", "--max_eval_samples", "16", "--max_length", "64"]
    done = run_in_process(
        "finetune_glue.py",
        [
            "--config",
            str(REPO / "configs" / "finetune_babylm2025.yaml"),
            "--model_name_or_path",
            str(causal_run / "final"),
            "--glue_dir",
            str(glue_dir),
            "--output_dir",
            str(results),
            *quick,
        ],
        capsys,
    )
    tasks = ["boolq", "multirc", "rte", "wsc", "mrpc", "qqp", "mnli"]
    records = {task: read_json(results / "run-final" / f"{task}.json") for task in tasks}
    for task, record in records.items():
        assert record["scoring"]["layout"] == "BabyLM", task
        assert set(record["metrics"]) == ({"accuracy"} if task == "mnli" else {"accuracy", "f1", "mcc"}), task
        score = "f1" if task in ("mrpc", "qqp") else "accuracy"
        assert record["scoring"]["score"] == [score] and record["score"] == pytest.approx(record["metrics"][score])
        assert record["hyperparameters"]["learning_rate"] == 3e-5 and record["examples"]["dev"] == 16
    assert len(records["wsc"]["seeds"][0]["history"]) == 30  # the preset's WSC epochs, every one trained
    assert records["boolq"]["hyperparameters"]["per_device_train_batch_size"] == 16
    assert records["qqp"]["hyperparameters"]["max_train_samples"] == 10000 and records["qqp"]["examples"]["train"] == 64
    assert records["rte"]["examples"]["train"] == 32
    assert "BabyLM layout" in done.stdout and all(f"| {task} " in done.stdout or task in done.stdout for task in tasks)


def test_task_overrides_are_checked(tmp_path):
    inline = read_task_overrides("{rte: {num_train_epochs: 3}, mnli: {max_train_samples: 10000}}")
    assert inline == {"rte": {"num_train_epochs": 3}, "mnli": {"max_train_samples": 10000}}
    good = tmp_path / "good.yaml"
    good.write_text("rte: {learning_rate: 2.0e-5, num_train_epochs: 20}\nSST-2: {patience: 0}\n")
    assert read_task_overrides(str(good)) == {
        "rte": {"learning_rate": 2e-5, "num_train_epochs": 20},
        "sst2": {"patience": 0},
    }
    config = GlueConfig(model_name_or_path="m", tasks=["rte", "cola"])
    assert config.settings(GLUE_TASKS["rte"], 7, read_task_overrides(str(good))).num_train_epochs == 20
    assert config.settings(GLUE_TASKS["cola"], 7, read_task_overrides(str(good))).num_train_epochs == 10
    assert read_task_overrides("{rte: {learning_rate: 2e-5}}") == {"rte": {"learning_rate": 2e-5}}  # YAML's text
    for text, message in (
        ("rte: {learning_rat: 1}", "rte must map settings"),
        ("rte: {num_train_epochs: 2.5}", "rte.num_train_epochs must be a whole number"),
        ("rte: {num_train_epochs: 0}", "rte.num_train_epochs must be at least 1"),
        ("rte: {max_train_samples: -3}", "rte.max_train_samples must be at least 1"),
        ("rte: {learning_rate: .nan}", "rte.learning_rate must be a number"),
        ("all: {patience: 1}", "name tasks one by one"),
        ("qnlx: {patience: 1}", "--tasks qnlx: unknown GLUE task"),
    ):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(UsageError, match=message):
            read_task_overrides(str(bad))
