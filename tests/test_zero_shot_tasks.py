"""The BabyLM zero-shot tasks: their readers on the released formats, the data folder layout, the
decisions and averages against a direct computation written from the BabyLM pipeline's
definitions, and eval_blimp.py over tasks, runs and runs compared."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

from common.errors import UsageError
from common.evaluation.sentence_scoring import ScoringOptions
from common.evaluation.tasks import Item, Task, load_tasks, read_task_folder
from common.evaluation.zero_shot import evaluate_model
from common.evaluation.zero_shot_results import accuracy_summary, correlation_summary, preferences
from tests.helpers import FIXTURES, babylm_evaluation_data, run_in_process, save_tiny_model, shared_data_dir


def needs_shared() -> Path:
    shared = shared_data_dir()
    if shared is None:
        pytest.skip("../shared/data (the BabyLM evaluation samples) is not beside this checkout")
    return shared


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def long_models(tmp_path_factory, training_documents) -> dict:
    """Tiny causal and masked models with room for entity tracking's long prefixes."""
    folder = tmp_path_factory.mktemp("long_models")
    return {
        kind: save_tiny_model(folder / kind, model_type, training_documents, max_positions=1024)
        for kind, model_type in (("causal", "llama"), ("masked", "bert"))
    }


# --- readers ----------------------------------------------------------------------------------


def test_the_release_formats_read_as_the_pipeline_defines_them():
    shared = needs_shared()
    samples = shared / "babylm_eval"

    supplement = read_task_folder(samples / "supplement_fast")
    assert supplement.family == "minimal_pairs" and len(supplement.items) == 200
    assert supplement.uids == [
        "hypernym",
        "qa_congruence_easy",
        "qa_congruence_tricky",
        "subject_aux_inversion",
        "turn_taking",
    ]
    assert {item.field for item in supplement.items} == {"supplement"}  # no `field`: grouped by file

    tracking = read_task_folder(samples / "entity_tracking")
    first = json.loads((samples / "entity_tracking" / "ambiref.jsonl").read_text().splitlines()[0])
    item = tracking.items[0]
    assert item.uid == f"ambiref_{first['numops']}_ops" and item.field == "ambiref"
    assert item.candidates == tuple(
        (first["input_prefix"] + option, len(first["input_prefix"])) for option in first["options"]
    )
    assert {len(item.candidates) for item in tracking.items} == {5}

    wug = read_task_folder(samples / "wug_adj_nominalization")
    record = json.loads(
        (samples / "wug_adj_nominalization" / "wug_adj_nominalization.jsonl").read_text().splitlines()[0]
    )
    assert wug.family == "wug" and wug.metric == "spearman" and len(wug.items) == 40
    assert wug.items[0].candidates == tuple((s, 0) for s in record["sentences"].split("\t"))
    assert wug.items[0].ratio == record["ratio"]


def test_ewok_and_comps_fixtures_read_as_their_documented_layout():
    ewok = read_task_folder(FIXTURES / "ewok_filtered")
    assert ewok.family == "ewok" and ewok.uids == ["agent-properties", "physical-relations"]
    line = json.loads((FIXTURES / "ewok_filtered" / "agent-properties.jsonl").read_text().splitlines()[0])
    context = line["Context1"]
    # Both targets after the first context; the target (with its leading space) is what is scored.
    assert ewok.items[0].candidates == (
        (f"{context} {line['Target1']}", len(context)),
        (f"{context} {line['Target2']}", len(context)),
    )
    assert len(ewok.items) == 12  # each item twice, contexts swapped, as the release stores them

    comps = read_task_folder(FIXTURES / "comps")
    first = comps.items[0]
    assert first.candidates == (("A dog can bark", len("A dog")), ("A cat can bark", len("A cat")))
    assert comps.family == "comps" and first.uid == "comps_base"


def test_a_data_folder_in_the_release_layout_lists_its_tasks(tmp_path):
    root = babylm_evaluation_data(tmp_path / "evaluation_data", needs_shared())
    full, skipped = load_tasks(str(root))
    assert [t.name for t in full] == [
        "comps",
        "entity_tracking",
        "ewok_filtered",
        "supplement_filtered",
        "wug_adj_nominalization",
    ]
    assert set(skipped) == {"glue_filtered", "reading"}
    fast, _ = load_tasks(str(root), default_suite="fast_eval")
    assert [t.name for t in fast] == ["entity_tracking_fast", "ewok_fast", "supplement_fast", "wug_adj_nominalization"]
    assert [t.family for t in fast] == ["entity_tracking", "ewok", "minimal_pairs", "wug"]
    chosen, _ = load_tasks(str(root), ["ewok_fast", "full"])
    assert [t.name for t in chosen][:2] == ["ewok_fast", "comps"] and len(chosen) == 6
    one, _ = load_tasks(str(root / "fast_eval"), ["supplement_fast"])  # a suite folder given itself
    assert [t.name for t in one] == ["supplement_fast"]
    with pytest.raises(UsageError, match=r"--tasks blimp_fast: not in .* \(it has: .*ewok_fast"):
        load_tasks(str(root), ["blimp_fast"])


# --- the pipeline's definitions, computed directly ----------------------------------------------


def pipeline_items(family: str, path: Path) -> list[dict]:
    """The items of one file as the BabyLM pipeline builds them from the raw lines: whole
    `sentences`, the `completions` at their ends that are scored, the UID, the WUG ratio."""
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        if family == "minimal_pairs":
            sentences = completions = [r["sentence_good"], r["sentence_bad"]]
            uid = r["UID"] if "field" in r else path.stem
        elif family == "ewok":
            sentences = [" ".join([r["Context1"], r["Target1"]]), " ".join([r["Context1"], r["Target2"]])]
            completions, uid = [" " + r["Target1"], " " + r["Target2"]], r["Domain"]
        elif family == "entity_tracking":
            sentences = [r["input_prefix"] + option for option in r["options"]]
            completions, uid = r["options"], f"{path.stem}_{r['numops']}_ops"
        elif family == "wug":
            sentences = completions = r["sentences"].split("\t")
            uid = path.stem
        else:  # comps
            sentences = [
                f"{r['prefix_acceptable']} {r['property_phrase']}",
                f"{r['prefix_unacceptable']} {r['property_phrase']}",
            ]
            completions, uid = [" " + r["property_phrase"]] * 2, path.stem
        items.append(
            {"sentences": sentences, "completions": completions, "uid": uid, "file": path.stem, "ratio": r.get("ratio")}
        )
    return items


def pipeline_causal_score(model, tokenizer, sentence: str, completion: str) -> float:
    """The pipeline's causal score: the text tokenized with the tokenizer's own special tokens,
    the tokens ending after the completion's first character scored, the first token never."""
    encoded = tokenizer(sentence, return_offsets_mapping=True)
    tokens, offsets = encoded["input_ids"], encoded["offset_mapping"]
    start = len(sentence) - len(completion) + offsets[0][0]
    with torch.no_grad():
        log_probs = torch.log_softmax(model(input_ids=torch.tensor([tokens])).logits[0, :-1], dim=-1)
    return sum(float(log_probs[i - 1, tokens[i]]) for i in range(1, len(tokens)) if offsets[i][1] > start)


def pipeline_pll(model, tokenizer, sentence: str, completion: str) -> float:
    """The pipeline's MLM score: each completion token masked alone, log P(it) summed."""
    encoded = tokenizer(sentence, return_offsets_mapping=True)
    tokens, start, total = encoded["input_ids"], len(sentence) - len(completion), 0.0
    for i, (_, end) in enumerate(encoded["offset_mapping"]):
        if end > start:
            masked = list(tokens)
            masked[i] = tokenizer.mask_token_id
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([masked])).logits[0, i]
            total += float(torch.log_softmax(logits, dim=-1)[tokens[i]])
    return total


def pipeline_results(family: str, items: list[dict], scores: list[list[float]]) -> tuple[list[bool], dict, float]:
    """(right per item, accuracy per UID, the headline): argmax takes the first of equal scores,
    so a tie is right; UIDs are averaged, entity tracking's per file first; WUG's headline is the
    Spearman correlation of softmax P(first candidate) with the human ratio."""
    if family == "wug":
        preference = [float(torch.softmax(torch.tensor(s), dim=0)[0]) for s in scores]
        return [], {}, float(spearmanr(preference, [item["ratio"] for item in items])[0])
    right = [int(np.argmax(s)) == 0 for s in scores]
    by_uid: dict[str, list[bool]] = {}
    for item, ok in zip(items, right):
        by_uid.setdefault(item["uid"], []).append(ok)
    per_uid = {uid: float(np.mean(oks)) for uid, oks in by_uid.items()}
    if family == "entity_tracking":
        files = sorted({item["file"] for item in items})
        headline = float(np.mean([np.mean([a for u, a in per_uid.items() if u.startswith(f)]) for f in files]))
    else:
        headline = float(np.mean(list(per_uid.values())))
    return right, per_uid, headline


def few_items_of_each_task(root: Path, lines_per_file: int) -> Path:
    """A copy of the data with only the first lines of each file (WUG: more, for a correlation)."""
    out = root.parent / f"{root.name}_few"
    for path in root.rglob("*.jsonl"):
        keep = path.read_text(encoding="utf-8").splitlines()[: 16 if "wug" in path.parent.name else lines_per_file]
        target = out / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("\n".join(keep) + "\n", encoding="utf-8")
    return out


@pytest.mark.parametrize("kind", ["causal", "masked"])
def test_every_task_decides_and_averages_as_the_pipeline_defines_it(kind, long_models, accelerator, tmp_path):
    """A handful of items of every family, scored by the model's forward one text at a time from
    the pipeline's definitions, against eval_blimp's batched scorer: the same decisions, the same
    per-UID accuracies and headlines (ties right, as the pipeline counts them), the same WUG
    correlation."""
    root = babylm_evaluation_data(tmp_path / "evaluation_data", needs_shared())
    few = few_items_of_each_task(root / "full_eval", lines_per_file=3)
    tasks, _ = load_tasks(str(few))
    options = ScoringOptions(bos="tokenizer")  # the pipeline's causal rule (masked models ignore it)
    every = evaluate_model(accelerator, str(long_models[kind]), tasks, options)
    auto = AutoModelForCausalLM if kind == "causal" else AutoModelForMaskedLM
    model = auto.from_pretrained(long_models[kind]).eval()
    tokenizer = AutoTokenizer.from_pretrained(long_models[kind])
    score = pipeline_causal_score if kind == "causal" else pipeline_pll
    assert sorted(task.family for task in tasks) == ["comps", "entity_tracking", "ewok", "minimal_pairs", "wug"]
    for task, (results, item_scores) in zip(tasks, every):
        items = [
            item for path in sorted((few / task.name).glob("*.jsonl")) for item in pipeline_items(task.family, path)
        ]
        scores = [[score(model, tokenizer, s, c) for s, c in zip(i["sentences"], i["completions"])] for i in items]
        np.testing.assert_allclose(
            [row["scores"] for row in item_scores], scores, atol=2e-4, err_msg=f"{task.name}: scores"
        )
        right, per_uid, headline = pipeline_results(task.family, items, scores)
        if task.family == "wug":
            assert results["scores"]["overall"]["spearman"] == pytest.approx(headline, abs=1e-5)
            continue
        # Decisions where the scores decide: a margin inside the float32 noise of two summation
        # orders may go either way, in the pipeline as here.
        decided = [abs(s[0] - max(s[1:])) > 1e-4 for s in scores]
        assert sum(decided) >= 0.6 * len(decided), f"{task.name}: too many items too close to call"
        ours = [row["correct"] or row["tie"] for row in item_scores]
        assert [o for o, d in zip(ours, decided) if d] == [r for r, d in zip(right, decided) if d], task.name
        # The averages, from the per-item scores by the pipeline's rules (exactly ours when all decide).
        _, our_per_uid, our_headline = pipeline_results(task.family, items, [row["scores"] for row in item_scores])
        assert {uid: u["accuracy_ties_right"] for uid, u in results["scores"]["uids"].items()} == pytest.approx(
            our_per_uid
        )
        assert results["scores"]["overall"]["accuracy_ties_right"] == pytest.approx(our_headline)
        if all(decided):
            assert our_headline == pytest.approx(headline)
        assert 0 < sum(right) < len(right) or len(right) < 6, f"{task.name}: all right or all wrong proves little"


def test_ties_both_ways_and_the_entity_tracking_average():
    """Ties are wrong in `accuracy`, right in `accuracy_ties_right`; entity tracking's headline
    averages its files (each the mean of its numops groups), not its groups."""

    def item(file: str, numops: int) -> Item:
        return Item(f"{file}_{numops}_ops", file, "", "0", (("a", 0), ("b", 0)))

    items = [item("regular", 0), item("regular", 1), item("regular", 1), item("ambiref", 0)]
    task = Task("entity_tracking", "entity_tracking", "test", tuple(items))
    correct = np.array([True, False, False, True])
    ties = np.array([False, True, False, False])
    summary = accuracy_summary(task, correct, ties)
    assert summary["uids"]["regular_1_ops"] == pytest.approx(
        {
            "field": "regular",
            "linguistics_term": "",
            "accuracy": 0.0,
            "accuracy_ties_right": 0.5,
            "correct": 0,
            "items": 2,
            "ties": 1,
        }
    )
    assert summary["fields"]["regular"]["accuracy"] == pytest.approx(0.5)  # (1 + 0) / 2
    assert summary["overall"]["accuracy"] == pytest.approx((0.5 + 1.0) / 2)  # files, not the 3 groups
    assert summary["overall"]["accuracy_ties_right"] == pytest.approx(((1 + 0.5) / 2 + 1.0) / 2)
    assert summary["overall"]["ties"] == 1 and summary["overall"]["micro_accuracy"] == 0.5

    pairs = Task("pairs", "minimal_pairs", "test", tuple(replace_uid(i, u) for i, u in zip(items, "xxyz")))
    assert accuracy_summary(pairs, correct, ties)["overall"]["accuracy"] == pytest.approx((0.5 + 0 + 1) / 3)


def replace_uid(item: Item, uid: str) -> Item:
    return Item(uid, "", "", item.item_id, item.candidates)


def test_wug_correlates_the_softmax_preference_with_the_ratio():
    matrix = np.array([[-1.0, -2.0], [-3.0, -1.0], [-2.0, -2.5], [-4.0, -1.0]])
    task = Task(
        "wug",
        "wug",
        "test",
        tuple(Item("w", "", "", str(i), (("a", 0), ("b", 0)), r) for i, r in enumerate([0.9, 0.2, 0.6, 0.1])),
    )
    preference = preferences(matrix)
    assert preference[0] == pytest.approx(np.exp(-1) / (np.exp(-1) + np.exp(-2)))
    summary = correlation_summary(task, preference)
    assert summary["overall"]["spearman"] == pytest.approx(1.0) and summary["overall"]["items"] == 4
    flat = correlation_summary(task, np.full(4, 0.5))
    assert flat["overall"]["spearman"] is None  # a constant preference has no rank correlation


# --- eval_blimp.py over the tasks ---------------------------------------------------------------


def test_one_model_on_the_release_layout_scores_its_full_tasks(long_models, tmp_path, capsys):
    root = babylm_evaluation_data(tmp_path / "evaluation_data", needs_shared())
    few = few_items_of_each_task(root, lines_per_file=4)
    out = tmp_path / "results"
    args = [
        "--model_name_or_path",
        str(long_models["causal"]),
        "--data_dir",
        str(few),
        "--output_dir",
        str(out),
        "--save_pair_scores",
    ]
    result = run_in_process("eval_blimp.py", args, capsys)
    assert "5 task(s) from" in result.stdout and "(skipped glue_filtered: fine-tuning data" in result.stdout
    for name in ("comps", "entity_tracking", "ewok_filtered", "supplement_filtered", "wug_adj_nominalization"):
        results = read_json(out / name / "results.json")
        assert results["data"]["name"] == name and (out / name / "results.csv").is_file()
        assert len((out / name / "item_scores.jsonl").read_text().splitlines()) == results["data"]["items"]
    wug = read_json(out / "wug_adj_nominalization" / "results.json")
    assert wug["metric"] == "spearman" and -1 <= wug["scores"]["overall"]["spearman"] <= 1
    with open(out / "ewok_filtered" / "results.csv", encoding="utf-8") as rows:
        header = next(csv.reader(rows))
    assert {"accuracy", "accuracy_ties_right", "ties"} <= set(header)
    assert "Spearman" in result.stdout and "with ties right" in result.stdout


def fake_run(folder: Path, model: Path, snapshots: dict[str, int], settings: dict) -> Path:
    """A run folder as train_pretrain.py lays it out: snapshots of `model` at these token counts."""
    for name, tokens in snapshots.items():
        target = folder / ("final" if name == "final" else f"milestones/{name}")
        shutil.copytree(model, target)
        info = {"name": name, "tokens_seen": tokens, "words_seen": tokens // 2, "step": tokens // 64}
        (target / "milestone.json").write_text(json.dumps(info))
    (folder / "config.yaml").write_text(json.dumps({"config": {"output_dir": str(folder), **settings}}))
    return folder


def test_runs_compared_draw_one_line_per_run_with_their_differing_settings(tiny_models, tmp_path, capsys):
    grid = tmp_path / "grid"
    fake_run(
        grid / "small",
        tiny_models["causal"],
        {"init": 0, "tokens-2K": 2048, "final": 4096},
        {"hidden_size": 64, "seed": 1},
    )
    fake_run(grid / "wide", tiny_models["causal"], {"init": 0, "final": 4096}, {"hidden_size": 128, "seed": 1})
    out = tmp_path / "comparison"
    args = [
        "--compare",
        str(grid),
        "--paradigms",
        "simple_subject_verb_agreement",
        "--synthetic_pairs_per_paradigm",
        "20",
        "--output_dir",
        str(out),
    ]
    result = run_in_process("eval_blimp.py", args, capsys)
    with open(out / "comparison.csv", encoding="utf-8") as rows:
        table = list(csv.DictReader(rows))
    assert {(r["run"], r["task"]) for r in table} == {
        (run, task) for run in ("small", "wide") for task in ("synthetic", "synthetic_completions")
    }
    assert [int(r["tokens_seen"]) for r in table if r["run"] == "small" and r["task"] == "synthetic"] == [0, 2048, 4096]
    assert all(r["score_ties_right"] for r in table)
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert "comparison of 2 runs" in result.stdout
    # every snapshot was scored on the way, as --run_dir scores it, and its curves drawn
    assert (grid / "wide" / "final" / "blimp" / "synthetic" / "results.json").is_file()
    assert (grid / "small" / "blimp" / "synthetic_completions" / "learning_curve.png").is_file()

    from common.evaluation.comparison import run_labels

    labels = run_labels([grid / "small", grid / "wide"])
    assert labels == {"small": "small (hidden_size=64)", "wide": "wide (hidden_size=128)"}  # seed is the same


# --- against the BabyLM pipeline's own code, where a clone of it is given ----------------------------


@pytest.mark.parametrize("kind", ["causal", "masked"])
def test_the_pipelines_own_code_gives_the_same_accuracies(kind, long_models, accelerator, tmp_path):
    """BABYLM_PIPELINE_DIR names a clone of babylm/evaluation-pipeline-2025: its scoring of a
    handful of items of each task it has gives the per-UID accuracies ours gives with ties right
    (and, for causal models, --bos tokenizer)."""
    clone = os.environ.get("BABYLM_PIPELINE_DIR")
    if not clone or not (Path(clone) / "evaluation_pipeline" / "sentence_zero_shot").is_dir():
        pytest.skip("BABYLM_PIPELINE_DIR does not name a clone of babylm/evaluation-pipeline-2025")
    root = babylm_evaluation_data(tmp_path / "evaluation_data", needs_shared())
    few = few_items_of_each_task(root / "full_eval", lines_per_file=4)
    from benchmarks.bench_zero_shot import run_pipeline  # the one piece of code that drives the pipeline

    for name in ("supplement_filtered", "ewok_filtered", "entity_tracking"):
        tasks, _ = load_tasks(str(few), [name])
        [(results, _)] = evaluate_model(accelerator, str(long_models[kind]), tasks, ScoringOptions(bos="tokenizer"))
        [task] = tasks
        theirs = run_pipeline(Path(clone), long_models[kind], task, kind, batch_size=16)[0]["UID"]
        ours = {uid: 100 * u["accuracy_ties_right"] for uid, u in results["scores"]["uids"].items()}
        assert {uid: theirs[uid] for uid in ours} == pytest.approx(ours), name
