"""eval_blimp.py as a user runs it: data folders, run folders, processes, outputs and bad input."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import accelerate
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import AutoTokenizer

from common.errors import UsageError
from common.evaluation.sentence_scoring import ScoringOptions, load_scorer
from common.evaluation.tasks import Task, load_tasks, read_task_folder, select_uids, synthetic_tasks
from common.evaluation.zero_shot import evaluate_model, evaluate_run, run_snapshots
from eval_blimp import BlimpConfig
from tests.helpers import (
    REPO,
    TINY_DATA,
    TINY_MODEL,
    accelerate_launch,
    error_line,
    quiet_env,
    run_in_process,
    shared_data_dir,
)

SOME_PARADIGMS = ["simple_subject_verb_agreement", "determiner_noun_agreement", "npi_ever_licensed_by_no"]
SYNTHETIC = ["synthetic", "synthetic_completions"]


def some_synthetic(items_per_paradigm: int = 200) -> list[Task]:
    """The synthetic tasks cut to SOME_PARADIGMS, as `--paradigms` cuts them."""
    return select_uids(synthetic_tasks(items_per_paradigm), SOME_PARADIGMS)


def evaluate_one(accelerator, folder, task: Task, options: ScoringOptions) -> tuple[dict, list[dict]]:
    return evaluate_model(accelerator, str(folder), [task], options)[0]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def write_jsonl(path: Path, records: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")


def blimp_record(uid: str, number: int, key: str = "pairID", **extra) -> dict:
    return {
        "sentence_good": f"The cat sleeps {number}.",
        "sentence_bad": f"The cat sleep {number}.",
        "field": "morphology",
        "linguistics_term": "subject_verb_agreement",
        "UID": uid,
        key: str(number),
        **extra,
    }


# --- data --------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_real_blimp_paradigms_parse_and_score(causal_run, tmp_path, capsys):
    real = shared_data_dir()
    if real is None:
        pytest.skip("../shared/data (real BLiMP sample) is not beside this checkout")
    task = read_task_folder(real / "blimp")
    assert len(task.uids) == 6 and len(task.items) == 6000 and task.family == "minimal_pairs"
    assert {p.field for p in task.items} == {"morphology", "syntax", "semantics"}
    assert all(len({text for text, _ in p.candidates}) == 2 for p in task.items)

    out = tmp_path / "results"
    result = run_in_process(
        "eval_blimp.py",
        [
            "--model_name_or_path",
            str(causal_run / "final"),
            "--blimp_dir",
            str(real / "blimp"),
            "--output_dir",
            str(out),
        ],
        capsys,
    )
    results = read_json(out / "blimp" / "results.json")
    assert results["data"] == {
        "name": "blimp",
        "family": "minimal_pairs",
        "source": str((real / "blimp").resolve()),
        "uids": 6,
        "items": 6000,
        "texts": results["data"]["texts"],
    }
    paradigms = results["scores"]["uids"]
    assert sorted(paradigms) == sorted(path.stem for path in (real / "blimp").glob("*.jsonl"))
    assert all(
        0.0 <= p["accuracy"] <= p["accuracy_ties_right"] <= 1.0 and p["items"] == 1000 for p in paradigms.values()
    )
    with open(out / "blimp" / "results.csv", encoding="utf-8") as rows:
        by_level = {}
        for row in csv.DictReader(rows):
            by_level.setdefault(row["level"], []).append(row)
    assert sorted(row["name"] for row in by_level["field"]) == ["morphology", "semantics", "syntax"]
    assert len(by_level["uid"]) == 6 and len(by_level["overall"]) == 1
    macro = sum(p["accuracy"] for p in paradigms.values()) / 6
    assert float(by_level["overall"][0]["accuracy"]) == pytest.approx(macro)
    assert "[overall]" in result.stdout and "adjunct_island" in result.stdout


def test_babylm_filtered_files_use_pair_id_and_may_lack_a_field(tmp_path):
    write_jsonl(
        tmp_path / "filtered" / "hypernym.jsonl",
        [
            {
                "sentence_good": "A dog is an animal.",
                "sentence_bad": "An animal is a dog.",
                "UID": "hypernym",
                "pair_id": 7,
            }
        ],
    )
    write_jsonl(tmp_path / "filtered" / "agreement.jsonl", [blimp_record("agreement", 0, key="pair_id")])
    task = read_task_folder(tmp_path / "filtered")
    assert task.name == "filtered"
    by_uid = {p.uid: p for p in task.items}
    assert by_uid["hypernym"].item_id == "7" and by_uid["hypernym"].field == "supplement"
    assert by_uid["agreement"].field == "morphology"


@pytest.mark.e2e
def test_a_bad_line_is_named_or_skipped_on_request(causal_run, tmp_path, capsys):
    folder = tmp_path / "pairs"
    write_jsonl(
        folder / "agreement.jsonl",
        [blimp_record("agreement", i) for i in range(2)]
        + ['{"sentence_good": "The cat sleeps."}']
        + [blimp_record("agreement", 3)],
    )
    out = tmp_path / "out"
    args = ["--model_name_or_path", str(causal_run / "final"), "--blimp_dir", str(folder), "--output_dir", str(out)]
    refused = run_in_process("eval_blimp.py", args, capsys, check=False)
    assert refused.returncode == 2
    line = error_line(refused)
    assert f"{folder / 'agreement.jsonl'}:3" in line and "no 'sentence_bad'" in line and "--skip_bad_lines" in line
    assert not out.exists()

    kept = read_task_folder(folder, skip_bad_lines=True)  # what --skip_bad_lines evaluates
    assert [p.item_id for p in kept.items] == ["0", "1", "3"]
    results, _ = evaluate_one(accelerate.Accelerator(cpu=True), causal_run / "final", kept, ScoringOptions())
    assert results["data"]["items"] == 3


# --- scoring rules -----------------------------------------------------------------------------


def flatten_head(folder: Path, kind: str, out: Path) -> Path:
    """A copy of a saved model whose output layer is all zeros: every logit is the same constant."""
    scorer = load_scorer(str(folder), None, ScoringOptions(), torch.device("cpu"))
    model = scorer.model
    with torch.no_grad():
        if kind == "causal":
            model.lm_head.weight.zero_()
        elif kind == "masked":
            model.cls.predictions.decoder.weight.zero_()
            model.cls.predictions.bias.zero_()
        else:
            model.discriminator_predictions.dense_prediction.weight.zero_()
            model.discriminator_predictions.dense_prediction.bias.zero_()
    model.save_pretrained(out)
    scorer.tokenizer.save_pretrained(out)
    return out


def same_length_pairs(tokenizer, count: int = 150) -> Task:
    """Synthetic pairs whose two sentences have the same number of tokens (so constant logits tie)."""
    pairs = synthetic_tasks(100)[0].items
    length = lambda sentence: len(tokenizer(sentence, add_special_tokens=False)["input_ids"])  # noqa: E731
    kept = tuple(p for p in pairs if length(p.candidates[0][0]) == length(p.candidates[1][0]))[:count]
    assert len(kept) >= 50
    return Task("same_length", "minimal_pairs", "synthetic pairs of equal token length", kept)


@pytest.mark.parametrize("kind", ["causal", "masked", "electra"])
def test_constant_logits_score_zero_not_one_hundred(kind, tiny_models, tmp_path):
    """Ties both ways: every pair ties, so 0% with ties wrong (ours) and 100% with ties right
    (the BabyLM pipeline's argmax), and the tie count says why."""
    folder = flatten_head(tiny_models[kind], kind, tmp_path / "flat")
    task = same_length_pairs(AutoTokenizer.from_pretrained(folder))
    results, item_scores = evaluate_one(accelerate.Accelerator(cpu=True), folder, task, ScoringOptions())
    overall = results["scores"]["overall"]
    assert overall["ties"] == overall["items"] == len(task.items)
    assert overall["accuracy"] == 0.0 and overall["micro_accuracy"] == 0.0
    assert overall["accuracy_ties_right"] == 1.0
    assert all(row["scores"][0] == row["scores"][1] and row["tie"] and not row["correct"] for row in item_scores)


def test_electra_can_be_scored_by_its_generator(tiny_models, accelerator):
    task = synthetic_tasks(20)[0]
    by_discriminator, _ = evaluate_one(accelerator, tiny_models["electra"], task, ScoringOptions())
    by_generator, scores = evaluate_one(
        accelerator, tiny_models["electra"], task, ScoringOptions(electra_scorer="generator")
    )
    assert by_discriminator["scorer"].startswith("ELECTRA discriminator")
    assert by_generator["scorer"].startswith("masked, pseudo-log-likelihood")
    assert by_generator["settings"]["electra_scorer"] == "generator"
    assert all(row["scores"][0] < 0 for row in scores)  # PLLs are sums of log-probabilities


def test_pair_order_does_not_matter(tiny_models, accelerator):
    pairs = synthetic_tasks(30)[0].items
    forward, forward_scores = evaluate_one(
        accelerator, tiny_models["masked"], Task("a", "minimal_pairs", "a", pairs), ScoringOptions()
    )
    backward, backward_scores = evaluate_one(
        accelerator, tiny_models["masked"], Task("a", "minimal_pairs", "a", pairs[::-1]), ScoringOptions()
    )
    assert forward["scores"] == backward["scores"]
    assert forward_scores == backward_scores[::-1]  # bit for bit


# --- processes, runs, outputs ------------------------------------------------------------------


@pytest.mark.e2e
def test_two_processes_give_the_same_scores_as_one(tiny_models, tmp_path):
    args = [
        "--model_name_or_path",
        str(tiny_models["masked"]),
        "--paradigms",
        *SOME_PARADIGMS,
        "--save_pair_scores",
        "--batch_size",
        "32",
    ]
    launched = accelerate_launch("cpu", "eval_blimp.py", [*args, "--output_dir", str(tmp_path / "two")])
    tasks = some_synthetic()
    every_one = evaluate_model(
        accelerate.Accelerator(cpu=True), str(tiny_models["masked"]), tasks, ScoringOptions(batch_size=32)
    )
    for task, (one, one_scores) in zip(tasks, every_one):  # minimal pairs and completions after a prefix
        two = read_json(tmp_path / "two" / task.name / "results.json")
        two_scores = [
            json.loads(line) for line in (tmp_path / "two" / task.name / "item_scores.jsonl").read_text().splitlines()
        ]
        assert (one["num_processes"], two["num_processes"]) == (1, 2)
        assert one["scores"] == two["scores"]
        assert one_scores == two_scores  # every score bit for bit, each item once, in the same order
    assert [len(task.items) for task in tasks] == [600, 400]  # the NPI paradigm has no completion form
    assert launched.stdout.count("[overall]") == 2  # one report per task, from the main process


@pytest.mark.e2e
def test_two_processes_share_contexts_like_one(tiny_models, tmp_path):
    """Causal completions scored after one pass over each shared context, dealt out to 2 processes:
    the same scores as in one, bit for bit."""
    args = ["--model_name_or_path", str(tiny_models["causal"]), "--tasks", "synthetic_completions"]
    args += ["--paradigms", *SOME_PARADIGMS[:2], "--shared_prefix_tokens", "1", "--save_pair_scores"]
    accelerate_launch("cpu", "eval_blimp.py", [*args, "--output_dir", str(tmp_path / "two")])
    task = select_uids(synthetic_tasks(), SOME_PARADIGMS[:2])[1]
    # With the launched processes' one thread each: a context's single-row pass is a small matrix
    # product whose float rounding depends on how many threads split it (the plan does not).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one, one_scores = evaluate_one(
            accelerate.Accelerator(cpu=True), tiny_models["causal"], task, ScoringOptions(shared_prefix_tokens=1)
        )
    finally:
        torch.set_num_threads(threads)
    folder = tmp_path / "two" / "synthetic_completions"
    assert [json.loads(line) for line in (folder / "item_scores.jsonl").read_text().splitlines()] == one_scores
    assert read_json(folder / "results.json")["scores"] == one["scores"]


@pytest.mark.e2e
def test_run_dir_scores_every_snapshot_draws_the_curve_and_skips_scored_ones(causal_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(causal_run, run)
    args = ["--run_dir", str(run), "--paradigms", *SOME_PARADIGMS]
    first = run_in_process("eval_blimp.py", args, capsys)
    snapshots = ["init", "tokens-5K", "tokens-20K", "final"]
    folders = [run / "milestones" / name for name in snapshots[:-1]] + [run / "final"]
    results = [read_json(folder / "blimp" / "synthetic" / "results.json") for folder in folders]
    assert all((folder / "blimp" / "synthetic_completions" / "results.json").is_file() for folder in folders)
    tokens = [r["snapshot"]["tokens_seen"] for r in results]
    assert tokens[0] == 0 and tokens == sorted(tokens) and len(set(tokens)) == 4

    with open(run / "blimp" / "synthetic" / "learning_curve.csv", encoding="utf-8") as rows:
        curve = list(csv.DictReader(rows))
    assert [row["snapshot"] for row in curve] == snapshots
    assert [int(row["tokens_seen"]) for row in curve] == tokens
    assert {"overall", "overall_ties_right", "words_seen", "morphology", "semantics"} <= set(curve[0])
    assert [float(row["overall"]) for row in curve] == pytest.approx(
        [r["scores"]["overall"]["accuracy"] for r in results]
    )
    assert [int(row["words_seen"]) for row in curve] == [r["snapshot"]["words_seen"] for r in results]
    assert (run / "blimp" / "synthetic" / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"

    events = EventAccumulator(str(run / "tb" / "blimp-synthetic"))
    events.Reload()
    logged = events.Scalars("synthetic/overall")
    assert [e.step for e in logged] == tokens
    assert [e.value for e in logged] == pytest.approx([float(row["overall"]) for row in curve])
    assert {"synthetic/field/morphology", "synthetic/overall_ties_right"} <= set(events.Tags()["scalars"])
    assert "[overall]" in first.stdout and "learning_curve.png" in first.stdout

    stamps = [(folder / "blimp" / "synthetic" / "results.json").stat().st_mtime_ns for folder in folders]
    tasks = some_synthetic()  # what the command line asked for
    again = evaluate_run(accelerate.Accelerator(cpu=True), run, tasks, ScoringOptions())
    assert again["synthetic"] == results  # read back, not scored again
    assert stamps == [(folder / "blimp" / "synthetic" / "results.json").stat().st_mtime_ns for folder in folders]
    evaluate_run(accelerate.Accelerator(cpu=True), run, tasks[:1], ScoringOptions(bos="none"))  # other options
    assert all(
        read_json(folder / "blimp" / "synthetic" / "results.json")["settings"]["bos"] == "none" for folder in folders
    )


@pytest.mark.e2e
def test_hub_model_revision_from_the_cache(causal_run, tmp_path):
    """A Hub id with --revision, served offline from a Hugging Face cache (as on a compute node)."""
    repo = tmp_path / "hub" / "models--babylm--tiny-llama"
    for ref, source in (("main", causal_run / "final"), ("chck_10M", causal_run / "milestones" / "tokens-5K")):
        commit = hashlib.sha1(ref.encode()).hexdigest()
        shutil.copytree(source, repo / "snapshots" / commit)
        write_ref = repo / "refs" / ref
        write_ref.parent.mkdir(parents=True, exist_ok=True)
        write_ref.write_text(commit)
    env = {**quiet_env(), "HF_HUB_CACHE": str(tmp_path / "hub")}

    def evaluate(*args):
        return subprocess.run(
            [sys.executable, "eval_blimp.py", "--paradigms", *SOME_PARADIGMS, *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    out = tmp_path / "hub_results"
    done = evaluate("--model_name_or_path", "babylm/tiny-llama", "--revision", "chck_10M", "--output_dir", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    local, _ = evaluate_one(
        accelerate.Accelerator(cpu=True), causal_run / "milestones" / "tokens-5K", some_synthetic()[0], ScoringOptions()
    )
    assert read_json(out / "synthetic" / "results.json")["scores"] == local["scores"]
    assert read_json(out / "synthetic" / "results.json")["revision"] == "chck_10M"

    missing = evaluate("--model_name_or_path", "babylm/tiny-llama", "--revision", "chck_99M")
    assert missing.returncode == 2
    assert "--revision chck_99M" in error_line(missing)


# --- bad input and the end of pretraining ------------------------------------------------------


def test_bad_input_names_the_flag_or_file(tmp_path):
    with pytest.raises(UsageError, match=f"--data_dir {tmp_path / 'nope'}: no such folder"):
        load_tasks(str(tmp_path / "nope"))
    with pytest.raises(UsageError, match=r"--paradigms island_effects: not in .* \(it has: simple_subject_verb"):
        select_uids(synthetic_tasks(5), ["simple_subject_verb_agreement", "island_effects"])
    with pytest.raises(UsageError, match="no milestones/\\*/ or final/ snapshots"):
        run_snapshots(tmp_path)
    with pytest.raises(UsageError, match="no milestones/\\*/ or final/ snapshots"):
        evaluate_run(accelerate.Accelerator(cpu=True), tmp_path, synthetic_tasks(5)[:1], ScoringOptions())
    assert not (tmp_path / "tb").exists()  # refused before a TensorBoard folder was made
    with pytest.raises(UsageError, match="--model_name_or_path .*/no/model: no such folder"):
        load_scorer(str(tmp_path / "no" / "model"), None, ScoringOptions(), torch.device("cpu"))
    with pytest.raises(UsageError, match="give one of --model_name_or_path"):
        BlimpConfig(blimp_dir=str(tmp_path))
    with pytest.raises(UsageError, match="--revision selects a Hub branch"):
        load_scorer(str(tmp_path), "chck_10M", ScoringOptions(), torch.device("cpu"))


@pytest.mark.e2e
def test_pretraining_refuses_pairs_longer_than_its_positions_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    args = [*TINY_MODEL, *TINY_DATA, "--seq_length", "8", "--blimp_at_end", "true", "--output_dir", str(out)]
    result = run_in_process("train_pretrain.py", args, capsys, check=False)
    assert result.returncode == 2
    assert "--blimp_at_end false" in error_line(result) and "8 positions" in error_line(result)
    assert not (out / "config.yaml").exists()


def test_a_run_folder_is_scored_snapshot_by_snapshot_in_process(tiny_models, accelerator, tmp_path, monkeypatch):
    """common/evaluation/zero_shot.py over a run laid out as train_pretrain.py lays it out: every
    snapshot in token order, results inside each, the curve, TensorBoard, then a second pass that
    reads the results back instead of scoring again."""
    run = tmp_path / "run"
    for folder, tokens in (
        (run / "milestones" / "tokens-2K", 2048),
        (run / "milestones" / "init", 0),
        (run / "final", 4096),
    ):
        shutil.copytree(tiny_models["causal"], folder)
        info = {"name": folder.name, "tokens_seen": tokens, "step": tokens // 512}
        (folder / "milestone.json").write_text(json.dumps(info))
    tasks = some_synthetic(10)
    first = evaluate_run(accelerator, run, tasks, ScoringOptions())
    assert list(first) == SYNTHETIC
    assert [r["snapshot"]["name"] for r in first["synthetic"]] == ["init", "tokens-2K", "final"]
    assert (run / "final" / "blimp" / "synthetic" / "results.json").is_file()
    assert (run / "blimp" / "synthetic" / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    events = EventAccumulator(str(run / "tb" / "blimp-synthetic"))
    events.Reload()
    assert [e.step for e in events.Scalars("synthetic/overall")] == [0, 2048, 4096]

    def no_scoring(*args, **kwargs):
        raise AssertionError("a scored snapshot was scored again")

    monkeypatch.setattr("common.evaluation.zero_shot.load_scorer", no_scoring)
    assert evaluate_run(accelerator, run, tasks, ScoringOptions(batch_size=7)) == first  # batching changes no score
