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
from common.evaluation.blimp import evaluate_model, evaluate_run, run_snapshots
from common.evaluation.minimal_pairs import (
    PairSet,
    load_pair_set,
    read_pair_folder,
    select_paradigms,
    synthetic_pair_set,
)
from common.evaluation.sentence_scoring import ScoringOptions, load_scorer
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
    pair_set = read_pair_folder(real / "blimp")
    assert len(pair_set.paradigms) == 6 and len(pair_set.pairs) == 6000
    assert {p.field for p in pair_set.pairs} == {"morphology", "syntax", "semantics"}
    assert all(p.good and p.bad and p.good != p.bad for p in pair_set.pairs)

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
    results = read_json(out / "results.json")
    assert results["data"] == {
        "name": "blimp",
        "source": str((real / "blimp").resolve()),
        "paradigms": 6,
        "pairs": 6000,
        "sentences": results["data"]["sentences"],
    }
    paradigms = results["accuracy"]["paradigms"]
    assert sorted(paradigms) == sorted(path.stem for path in (real / "blimp").glob("*.jsonl"))
    assert all(0.0 <= p["accuracy"] <= 1.0 and p["pairs"] == 1000 for p in paradigms.values())
    with open(out / "results.csv", encoding="utf-8") as rows:
        by_level = {}
        for row in csv.DictReader(rows):
            by_level.setdefault(row["level"], []).append(row)
    assert sorted(row["name"] for row in by_level["field"]) == ["morphology", "semantics", "syntax"]
    assert len(by_level["paradigm"]) == 6 and len(by_level["overall"]) == 1
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
    pair_set = read_pair_folder(tmp_path / "filtered")
    assert pair_set.name == "filtered"
    by_uid = {p.uid: p for p in pair_set.pairs}
    assert by_uid["hypernym"].pair_id == "7" and by_uid["hypernym"].field == "other"
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
    assert f"{folder / 'agreement.jsonl'}:3" in line and "sentence_bad" in line and "--skip_bad_lines" in line
    assert not out.exists()

    kept = read_pair_folder(folder, skip_bad_lines=True)  # what --skip_bad_lines evaluates
    assert [p.pair_id for p in kept.pairs] == ["0", "1", "3"]
    results, _ = evaluate_model(accelerate.Accelerator(cpu=True), str(causal_run / "final"), kept, ScoringOptions())
    assert results["data"]["pairs"] == 3


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


def same_length_pairs(tokenizer, count: int = 150) -> PairSet:
    """Synthetic pairs whose two sentences have the same number of tokens (so constant logits tie)."""
    pairs = synthetic_pair_set(100).pairs
    length = lambda sentence: len(tokenizer(sentence, add_special_tokens=False)["input_ids"])  # noqa: E731
    kept = tuple(p for p in pairs if length(p.good) == length(p.bad))[:count]
    assert len(kept) >= 50
    return PairSet("same_length", "synthetic pairs of equal token length", kept)


@pytest.mark.parametrize("kind", ["causal", "masked", "electra"])
def test_constant_logits_score_zero_not_one_hundred(kind, tiny_models, tmp_path):
    folder = flatten_head(tiny_models[kind], kind, tmp_path / "flat")
    pair_set = same_length_pairs(AutoTokenizer.from_pretrained(folder))
    results, pair_scores = evaluate_model(accelerate.Accelerator(cpu=True), str(folder), pair_set, ScoringOptions())
    overall = results["accuracy"]["overall"]
    assert overall["ties"] == overall["pairs"] == len(pair_set.pairs)
    assert overall["accuracy"] == 0.0 and overall["micro_accuracy"] == 0.0
    assert all(row["score_good"] == row["score_bad"] and not row["correct"] for row in pair_scores)


def test_electra_can_be_scored_by_its_generator(tiny_models, accelerator):
    pair_set = synthetic_pair_set(20)
    by_discriminator, _ = evaluate_model(accelerator, str(tiny_models["electra"]), pair_set, ScoringOptions())
    by_generator, scores = evaluate_model(
        accelerator, str(tiny_models["electra"]), pair_set, ScoringOptions(electra_scorer="generator")
    )
    assert by_discriminator["scorer"].startswith("ELECTRA discriminator")
    assert by_generator["scorer"].startswith("masked, pseudo-log-likelihood")
    assert by_generator["settings"]["electra_scorer"] == "generator"
    assert all(row["score_good"] < 0 for row in scores)  # PLLs are sums of log-probabilities


def test_pair_order_does_not_matter(tiny_models, accelerator):
    pairs = synthetic_pair_set(30).pairs
    forward, forward_scores = evaluate_model(
        accelerator, str(tiny_models["masked"]), PairSet("a", "a", pairs), ScoringOptions()
    )
    backward, backward_scores = evaluate_model(
        accelerator, str(tiny_models["masked"]), PairSet("a", "a", pairs[::-1]), ScoringOptions()
    )
    assert forward["accuracy"] == backward["accuracy"]
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
    one, one_scores = evaluate_model(
        accelerate.Accelerator(cpu=True),
        str(tiny_models["masked"]),
        select_paradigms(synthetic_pair_set(), SOME_PARADIGMS),
        ScoringOptions(batch_size=32),
    )
    two = read_json(tmp_path / "two" / "results.json")
    two_scores = [json.loads(line) for line in (tmp_path / "two" / "pair_scores.jsonl").read_text().splitlines()]
    assert (one["num_processes"], two["num_processes"]) == (1, 2)
    assert one["accuracy"] == two["accuracy"]
    assert one_scores == two_scores  # every score bit for bit, each pair once, in the same order
    assert len(two_scores) == 600
    assert launched.stdout.count("[overall]") == 1  # one report, from the main process


@pytest.mark.e2e
def test_run_dir_scores_every_snapshot_draws_the_curve_and_skips_scored_ones(causal_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(causal_run, run)
    args = ["--run_dir", str(run), "--paradigms", *SOME_PARADIGMS]
    first = run_in_process("eval_blimp.py", args, capsys)
    snapshots = ["init", "tokens-5K", "tokens-20K", "final"]
    folders = [run / "milestones" / name for name in snapshots[:-1]] + [run / "final"]
    results = [read_json(folder / "blimp" / "synthetic" / "results.json") for folder in folders]
    tokens = [r["snapshot"]["tokens_seen"] for r in results]
    assert tokens[0] == 0 and tokens == sorted(tokens) and len(set(tokens)) == 4

    with open(run / "blimp" / "synthetic" / "learning_curve.csv", encoding="utf-8") as rows:
        curve = list(csv.DictReader(rows))
    assert [row["snapshot"] for row in curve] == snapshots
    assert [int(row["tokens_seen"]) for row in curve] == tokens
    assert {"overall", "overall_micro", "morphology", "semantics"} <= set(curve[0])
    assert [float(row["overall"]) for row in curve] == pytest.approx(
        [r["accuracy"]["overall"]["accuracy"] for r in results]
    )
    assert (run / "blimp" / "synthetic" / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"

    events = EventAccumulator(str(run / "tb" / "blimp-synthetic"))
    events.Reload()
    logged = events.Scalars("blimp/overall")
    assert [e.step for e in logged] == tokens
    assert [e.value for e in logged] == pytest.approx([float(row["overall"]) for row in curve])
    assert "blimp/field/morphology" in events.Tags()["scalars"]
    assert "[overall]" in first.stdout and "learning_curve.png" in first.stdout

    stamps = [(folder / "blimp" / "synthetic" / "results.json").stat().st_mtime_ns for folder in folders]
    pair_set = select_paradigms(synthetic_pair_set(), SOME_PARADIGMS)  # what the command line asked for
    again = evaluate_run(accelerate.Accelerator(cpu=True), run, pair_set, ScoringOptions())
    assert again == results  # read back, not scored again
    assert stamps == [(folder / "blimp" / "synthetic" / "results.json").stat().st_mtime_ns for folder in folders]
    evaluate_run(accelerate.Accelerator(cpu=True), run, pair_set, ScoringOptions(bos=False))  # other options
    assert all(
        read_json(folder / "blimp" / "synthetic" / "results.json")["settings"]["bos"] is False for folder in folders
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
    local, _ = evaluate_model(
        accelerate.Accelerator(cpu=True),
        str(causal_run / "milestones" / "tokens-5K"),
        select_paradigms(synthetic_pair_set(), SOME_PARADIGMS),
        ScoringOptions(),
    )
    assert read_json(out / "results.json")["accuracy"] == local["accuracy"]
    assert read_json(out / "results.json")["revision"] == "chck_10M"

    missing = evaluate("--model_name_or_path", "babylm/tiny-llama", "--revision", "chck_99M")
    assert missing.returncode == 2
    assert "--revision chck_99M" in error_line(missing)


# --- bad input and the end of pretraining ------------------------------------------------------


def test_bad_input_names_the_flag_or_file(tmp_path):
    with pytest.raises(UsageError, match=f"--blimp_dir {tmp_path / 'nope'}: no such folder"):
        load_pair_set(str(tmp_path / "nope"))
    with pytest.raises(UsageError, match=r"--paradigms island_effects: not in .* \(it has: simple_subject_verb"):
        select_paradigms(synthetic_pair_set(5), ["simple_subject_verb_agreement", "island_effects"])
    with pytest.raises(UsageError, match="no milestones/\\*/ or final/ snapshots"):
        run_snapshots(tmp_path)
    with pytest.raises(UsageError, match="--model_name_or_path .*/no/model: no such folder"):
        load_scorer(str(tmp_path / "no" / "model"), None, ScoringOptions(), torch.device("cpu"))
    with pytest.raises(UsageError, match="give either --model_name_or_path"):
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
    """common/evaluation/blimp.py over a run laid out as train_pretrain.py lays it out: every
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
    pair_set = select_paradigms(synthetic_pair_set(10), SOME_PARADIGMS)
    first = evaluate_run(accelerator, run, pair_set, ScoringOptions())
    assert [r["snapshot"]["name"] for r in first] == ["init", "tokens-2K", "final"]
    assert (run / "final" / "blimp" / "synthetic" / "results.json").is_file()
    assert (run / "blimp" / "synthetic" / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    events = EventAccumulator(str(run / "tb" / "blimp-synthetic"))
    events.Reload()
    assert [e.step for e in events.Scalars("blimp/overall")] == [0, 2048, 4096]

    def no_scoring(*args, **kwargs):
        raise AssertionError("a scored snapshot was scored again")

    monkeypatch.setattr("common.evaluation.blimp.load_scorer", no_scoring)
    assert evaluate_run(accelerator, run, pair_set, ScoringOptions(batch_size=7)) == first  # batching changes no score
