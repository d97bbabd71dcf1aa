"""The fine-tuning building blocks: classifier heads over every model kind, encoding, the loop's
early stopping, GLUE result records and document reports (in process; the scripts are launched in
test_finetune_glue.py and test_classify_docs.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file
from transformers import PreTrainedTokenizerFast

from common.data.tokenizer import train_tokenizer
from common.errors import UsageError
from common.finetuning.classifier import (
    Llama4TextForSequenceClassification,
    collate,
    encode,
    head_and_tail,
    load_classification_tokenizer,
    load_classifier,
)
from common.finetuning.doc_results import accuracy_table, counts_table, document_metrics, write_reports
from common.finetuning.finetune import FinetuneSettings, finetune
from common.finetuning.glue import GLUE_TASKS, examples_from_hub_rows, glue_metrics, read_glue_split_files
from common.finetuning.glue_results import flat_metrics, gather, glue_score, task_result, write_task_result
from common.model_source import ModelSource
from common.models.build import build_model, resolve_shape
from tests.finetune_data import negation_rows, write_glue_dir


def checkpoint_weights(folder) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("family", ["causal", "masked", "electra"])
def test_the_body_is_the_pretrained_model_and_only_the_head_is_new(family, tiny_models):
    final = tiny_models[family]
    tokenizer, positions = load_classification_tokenizer(ModelSource(str(final)))
    model = load_classifier(ModelSource(str(final)), ("a", "b", "c"), tokenizer.pad_token_id)
    assert positions == 128 and model.config.num_labels == 3 and model.config.id2label[2] == "c"
    saved = checkpoint_weights(final)
    loaded = dict(model.named_parameters())
    shared = [name for name in saved if name in loaded]
    assert len(shared) >= len(loaded) - 6  # all but the head (and BERT's pooler)
    for name in shared:
        assert torch.equal(saved[name], loaded[name]), name
    assert model.config.pad_token_id == tokenizer.pad_token_id


def test_llama4_gets_a_last_token_head_over_its_text_model(tmp_path, bpe_tokenizer):
    model = build_model(
        "llama4",
        "causal",
        resolve_shape("tiny", hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
        bpe_tokenizer,
        64,
    )
    model.save_pretrained(tmp_path)
    bpe_tokenizer.save_pretrained(tmp_path)
    classifier = load_classifier(ModelSource(str(tmp_path)), ("0", "1"), bpe_tokenizer.pad_token_id)
    assert isinstance(classifier, Llama4TextForSequenceClassification)
    assert torch.equal(
        classifier.model.layers[0].self_attn.q_proj.weight, model.model.layers[0].self_attn.q_proj.weight
    )
    ids = torch.tensor([[5, 6, 7, bpe_tokenizer.pad_token_id], [5, 6, 7, 8]])
    logits = classifier(input_ids=ids).logits
    # The padded row is classified from its last real token: as if the padding were not there.
    assert torch.allclose(logits[0], classifier(input_ids=ids[:1, :3]).logits[0], atol=1e-5)


def test_a_body_that_does_not_load_is_refused(tmp_path, tiny_models):
    """An ELECTRA config over LLaMA weights: every body weight would be new, silently."""
    (tmp_path / "model.safetensors").write_bytes((tiny_models["causal"] / "model.safetensors").read_bytes())
    (tmp_path / "config.json").write_text((tiny_models["electra"] / "config.json").read_text())
    with pytest.raises(UsageError, match="weights of the model body are not in the checkpoint"):
        load_classifier(ModelSource(str(tmp_path)), ("0", "1"), 0)


def test_pad_token_falls_back_to_eos_and_is_required(tmp_path, tiny_models, bpe_tokenizer):
    final = tiny_models["causal"]
    folder = tmp_path / "no_pad"
    folder.mkdir()
    (folder / "config.json").write_text((final / "config.json").read_text())
    for name, special in (("eos", {"eos_token": "<|endoftext|>"}), ("none", {})):
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe_tokenizer.backend_tokenizer, **special)
        tokenizer.save_pretrained(folder)
        if name == "eos":
            loaded, _ = load_classification_tokenizer(ModelSource(str(folder)))
            assert loaded.pad_token == "<|endoftext|>"
        else:
            with pytest.raises(UsageError, match="no pad token and no EOS token to pad with"):
                load_classification_tokenizer(ModelSource(str(folder)))


def test_model_source_names_and_checks(tmp_path, tiny_models):
    for snapshot in ("final", "milestones/tokens-5K"):
        (tmp_path / "run" / snapshot).mkdir(parents=True)
    assert ModelSource(str(tmp_path / "run" / "final")).label == "run-final"
    assert ModelSource(str(tmp_path / "run" / "milestones" / "tokens-5K")).label == "run-tokens-5K"
    assert ModelSource(str(tiny_models["causal"])).label == "causal"
    assert ModelSource("babylm/babyllama", "chck_10M").label == "babylm__babyllama@chck_10M"
    with pytest.raises(UsageError, match="no such folder"):
        load_classification_tokenizer(ModelSource(str(tmp_path / "missing")))
    with pytest.raises(UsageError, match="--revision selects a Hub branch"):
        load_classification_tokenizer(ModelSource(str(tiny_models["causal"]), "main"))


# --- encoding -----------------------------------------------------------------------------------


def test_head_and_tail_keeps_both_ends():
    ids = list(range(100))
    assert head_and_tail(ids, 20) == list(range(5)) + list(range(85, 100))
    assert head_and_tail(ids[:10], 20) == ids[:10]


def test_encode_single_pairs_and_truncation(training_documents, bpe_tokenizer):
    wordpiece = train_tokenizer("wordpiece", training_documents, 400)
    long_text = " ".join(["the cat sleeps ."] * 50)
    head = encode(wordpiece, [(long_text,)], [0], 32)
    assert len(head.input_ids[0]) == 32 and head.input_ids[0][0] == wordpiece.cls_token_id
    both = encode(wordpiece, [(long_text + " the end is here",)], [0], 32, "head_tail")
    assert len(both.input_ids[0]) == 32
    assert both.input_ids[0][0] == wordpiece.cls_token_id and both.input_ids[0][-1] == wordpiece.sep_token_id
    assert wordpiece.decode(both.input_ids[0][-3:-1]) == "here"

    pair = encode(wordpiece, [("a dog runs .", "the cat sleeps .")], [1], 64)
    assert pair.token_type_ids[0][0] == 0 and pair.token_type_ids[0][-1] == 1
    # A byte-level BPE has no pair template: EOS goes between the texts.
    causal = encode(bpe_tokenizer, [("a dog runs .", "the cat sleeps .")], [2.5], 64)
    assert bpe_tokenizer.eos_token_id in causal.input_ids[0][1:-1] and causal.token_type_ids is None
    assert causal.labels.dtype == np.float32


def test_collate_right_pads_and_masks():
    batch = collate(
        [{"input_ids": [5, 6, 7], "labels": np.int64(1)}, {"input_ids": [8], "labels": np.int64(0)}], pad_token_id=0
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [1, 0]


# --- the loop -----------------------------------------------------------------------------------


def test_early_stopping_keeps_the_best_epoch(tiny_models, tmp_path):
    """A learning rate of zero never improves after the first epoch: patience 2 stops at epoch 3."""
    source = ModelSource(str(tiny_models["causal"]))
    tokenizer, _ = load_classification_tokenizer(source)
    rows = negation_rows(64)
    data = encode(tokenizer, [(s,) for s, _ in rows], [label for _, label in rows], 64)
    outcome = finetune(
        Accelerator(cpu=True),
        lambda: load_classifier(source, ("0", "1"), tokenizer.pad_token_id),
        data,
        {"dev": data},
        FinetuneSettings(learning_rate=0.0, num_train_epochs=10, patience=2, per_device_train_batch_size=16),
        tokenizer.pad_token_id,
        measure=document_metrics,
        monitor=lambda metrics: metrics["dev"]["accuracy"],
        name="frozen",
        tensorboard_dir=tmp_path,
    )
    assert [e.epoch for e in outcome.epochs] == [1, 2, 3] and outcome.stopped_early
    assert outcome.best.epoch == 1 and outcome.record()["best_epoch"] == 1
    assert len({e.score for e in outcome.epochs}) == 1  # nothing learned at lr 0
    assert list((tmp_path / "frozen").glob("events.out.tfevents.*"))


def test_stsb_trains_a_regression_head(tiny_models, tmp_path):
    """STS-B in its GLUE layout: one output, the squared error, Pearson and Spearman on dev."""
    task = GLUE_TASKS["stsb"]
    splits = read_glue_split_files(write_glue_dir(tmp_path / "glue", train=160, dev=60), task)
    source = ModelSource(str(tiny_models["causal"]))
    tokenizer, _ = load_classification_tokenizer(source)

    def encoded(examples):
        return encode(tokenizer, [e.texts for e in examples], [e.label for e in examples], 64)

    outcome = finetune(
        Accelerator(cpu=True),
        lambda: load_classifier(source, task.labels, tokenizer.pad_token_id),
        encoded(splits["train"]),
        {"dev": encoded(splits["dev"])},
        FinetuneSettings(learning_rate=1e-3, num_train_epochs=3, per_device_train_batch_size=16),
        tokenizer.pad_token_id,
        measure=lambda p, t: glue_metrics(task, p, t),
        monitor=glue_score,
        name="stsb",
    )
    assert set(outcome.best.metrics["dev"]) == {"pearson", "spearman"}
    predicted, true = outcome.epochs[-1].predictions["dev"]
    assert predicted.dtype == np.float32 and sorted(set(true.tolist())) == [0.0, 2.5, 5.0]
    assert outcome.epochs[-1].train_loss < 0.8 * outcome.epochs[0].train_loss  # scores of 0-5: it learns the scale


# --- results ------------------------------------------------------------------------------------


def test_hub_rows_become_examples():
    rows = [
        {"premise": "A man sleeps.", "hypothesis": "A man rests.", "label": 0, "idx": 0},
        {"premise": "A dog.", "hypothesis": "A cat.", "label": 2, "idx": 1},
    ]
    examples = examples_from_hub_rows(GLUE_TASKS["mnli"], rows, "nyu-mll/glue mnli validation_matched")
    assert [(e.texts, e.label) for e in examples] == [(("A man sleeps.", "A man rests."), 0), (("A dog.", "A cat."), 2)]
    stsb = examples_from_hub_rows(GLUE_TASKS["stsb"], [{"sentence1": "a", "sentence2": "b", "label": 3.8}], "x")
    assert stsb[0].label == 3.8
    with pytest.raises(UsageError, match="row 0: label -1 is not a class of rte"):
        examples_from_hub_rows(
            GLUE_TASKS["rte"], [{"sentence1": "a", "sentence2": "b", "label": -1}], "nyu-mll/glue rte test"
        )


def test_glue_score_and_records_average_seeds(tmp_path):
    mnli = {"matched": {"accuracy": 0.8}, "mismatched": {"accuracy": 0.7}}
    assert flat_metrics(mnli) == {"matched_accuracy": 0.8, "mismatched_accuracy": 0.7}
    assert glue_score(mnli) == pytest.approx(0.75)
    assert glue_score({"dev": {"f1": 0.9, "accuracy": 0.8}}) == pytest.approx(0.85)
    seeds = {
        1: {"metrics": {"dev": {"f1": 0.9, "accuracy": 0.8}}, "score": 0.85},
        2: {"metrics": {"dev": {"f1": 0.7, "accuracy": 0.6}}, "score": 0.65},
    }
    model = {"label": "m", "name_or_path": "m", "revision": None}
    result = task_result(GLUE_TASKS["mrpc"], model, seeds, {}, {"train": 3})
    assert result["metrics"] == pytest.approx({"f1": 0.8, "accuracy": 0.7})
    assert result["metrics_std"]["f1"] == pytest.approx(0.1) and result["score"] == pytest.approx(0.75)
    write_task_result(tmp_path / "m", result)
    other = task_result(
        GLUE_TASKS["cola"],
        {**model, "label": "n"},
        {1: {"metrics": {"dev": {"matthews_correlation": -0.2}}, "score": -0.2}},
        {},
        {},
    )
    write_task_result(tmp_path / "n", other)
    (tmp_path / "n" / "notes.json").write_text(json.dumps({"not": "a result"}))
    paths, rows, columns = gather(tmp_path)
    assert columns == ["model", "cola", "mrpc", "average", "tasks"]
    assert rows == [
        {"model": "m", "cola": None, "mrpc": 75.0, "average": 75.0, "tasks": 1},
        {"model": "n", "cola": -20.0, "mrpc": None, "average": -20.0, "tasks": 1},
    ]
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="no GLUE results"):
        gather(empty)
    with pytest.raises(UsageError, match="no such folder"):
        gather(tmp_path / "missing")


def test_document_metrics_and_table_by_hand():
    true, predicted = np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 1, 2, 0])
    metrics = document_metrics(predicted, true)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    # per class F1: 0 -> P 1/2 R 1/2 = 0.5; 1 -> P 2/3 R 1 = 0.8; 2 -> P 1 R 1/2 = 2/3
    assert metrics["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    runs = [
        {
            "model": "ours",
            "batch_size": 8,
            "history": [
                {"epoch": 1, "train_loss": 1.0, "metrics": {"test": {"accuracy": 0.5, "macro_f1": 0.4}}},
                {"epoch": 2, "train_loss": 0.5, "metrics": {"test": {"accuracy": 0.75, "macro_f1": 0.7}}},
            ],
        }
    ]
    rows, columns = accuracy_table(runs)
    assert columns == ["model", "batch size", "epoch 1", "epoch 2", "macro-F1"]
    assert rows == [{"model": "ours", "batch size": 8, "epoch 1": 50.0, "epoch 2": 75.0, "macro-F1": 70.0}]
    counts, _ = counts_table({"train": {"a": 3, "b": 1}, "test": {"a": 1}})
    assert counts[-1] == {"label": "total", "train": 4, "test": 1} and counts[1]["test"] == 0


def test_document_reports_are_written_with_a_confusion_matrix_per_model(tmp_path):
    history = [{"epoch": 1, "train_loss": 0.9, "metrics": {"test": {"accuracy": 0.5, "macro_f1": 0.4}}}]
    predictions = (np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]))
    runs = [
        {"model": model, "batch_size": size, "history": history, "test_predictions": predictions}
        for model in ("ours", "baseline")
        for size in (8, 16)
    ]
    counts = {"train": {"CS": 3, "Civil": 2, "Medical": 2}, "test": {"CS": 1, "Civil": 2, "Medical": 1}}
    paths = write_reports(tmp_path, runs, counts, ["CS", "Civil", "Medical"], {"config": {"seed": 1}})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "confusion_baseline.png",
        "confusion_ours.png",
        "label_counts.csv",
        "results.csv",
        "results.json",
        "results.md",
    ]
    assert paths["confusion ours"].read_bytes()[:4] == b"\x89PNG"
    assert "| ours | 8 | 50.00 | 40.00 |" in (tmp_path / "results.md").read_text()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["labels"] == ["CS", "Civil", "Medical"] and "test_predictions" not in saved["runs"][0]
    assert (tmp_path / "results.csv").read_text().splitlines()[1] == "ours,8,1,0.9,50.0,40.0"
