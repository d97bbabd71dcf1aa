"""(Super)GLUE task files in their real layouts (GLUE's TSVs, SuperGLUE's and BabyLM's JSON Lines),
and the official metrics against hand-computed values."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from common.errors import UsageError
from common.finetuning.glue import GLUE_TASKS, Example, glue_metrics, glue_tasks, read_glue_file
from common.finetuning.glue_layouts import read_task_data
from common.finetuning.glue_results import glue_score
from tests.finetune_data import write_babylm_glue_dir, write_jsonl
from tests.helpers import shared_data_dir

# One dev file per task, in the layout of the GLUE download (tabs, no quoting).
LAYOUTS = {
    "cola": (
        "CoLA/dev.tsv",
        "",
        [
            "gj04\t1\t\tThe sailors rode the breeze clear of the rocks.",
            "gj04\t0\t*\tThe more does Bill smoke, the more Susan hates him.",
        ],
    ),
    "sst2": (
        "SST-2/dev.tsv",
        "sentence\tlabel",
        ["it 's a charming and often affecting journey . \t1", "unflinchingly bleak and desperate \t0"],
    ),
    "mrpc": (
        "MRPC/dev.tsv",
        "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String",
        [
            "1\t1355540\t1355592\tHe said the foodservice pie business doesn't fit.\t"
            "The foodservice pie business does not fit.",
            "0\t2029631\t2029565\tMagnarelli said Racicot hated the Iraqi regime.\t"
            'His wife said he was "100 percent behind George Bush".',
        ],
    ),
    "stsb": (
        "STS-B/dev.tsv",
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore",
        [
            "0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone\tA man with a hard hat is dancing.\t"
            "A man wearing a hard hat is dancing.\t5.000",
            "1\tmain-captions\tMSRvid\t2012test\t0002\tnone\tnone\tA young child is riding a horse.\t"
            "A child is riding a horse.\t4.750",
        ],
    ),
    "qqp": (
        "QQP/dev.tsv",
        "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
        [
            "201359\t303345\t303346\tWhy are African-Americans so beautiful?\tWhy are hispanics so beautiful?\t0",
            "263843\t69383\t380476\tI want to pursue PhD in Computer Science?\tHow do I pursue a PhD?\t1",
        ],
    ),
    "mnli": (
        "MNLI/dev_matched.tsv",
        "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
        "sentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label",
        [
            "0\t63735\t63735n\tslate\t( ( The )\t( ( The )\t(ROOT)\t(ROOT)\tThe new rights are nice enough\t"
            "Everyone really likes the newest benefits \tneutral\tentailment\tneutral\tneutral\tneutral\tneutral",
            "1\t91383\t91383c\tgovernment\t( ( This )\t( ( The )\t(ROOT)\t(ROOT)\tThis site includes a list.\t"
            "The Government Executive articles housed on the website are not able to be searched .\t"
            "contradiction\tcontradiction\tcontradiction\tcontradiction\tcontradiction\tcontradiction",
        ],
    ),
    "qnli": (
        "QNLI/dev.tsv",
        "index\tquestion\tsentence\tlabel",
        [
            "0\tWhat came into force after the new constitution was herald?\tAs of that day, the new "
            "constitution heralding the Second Republic came into force.\tentailment",
            "1\tWhat is the first major city in the stream of the Rhine?\tThe most important tributaries in "
            "this area are the Ill below of Strasbourg.\tnot_entailment",
        ],
    ),
    "rte": (
        "RTE/dev.tsv",
        "index\tsentence1\tsentence2\tlabel",
        [
            "0\tDana Reeve, the widow of the actor Christopher Reeve, has died of lung cancer at age 44.\t"
            "Christopher Reeve had an accident.\tnot_entailment",
            "1\tYet, we now are discovering that antibiotics are losing their effectiveness.\tBacteria is "
            "winning the war against antibiotics.\tentailment",
        ],
    ),
    "wnli": (
        "WNLI/dev.tsv",
        "index\tsentence1\tsentence2\tlabel",
        [
            "0\tThe drain is clogged with hair. It has to be cleaned.\tThe hair has to be cleaned.\t0",
            "1\tJane knocked on Susan's door but she did not answer.\tSusan did not answer.\t1",
        ],
    ),
}
EXPECTED_LABELS = {
    "cola": [1, 0],
    "sst2": [1, 0],
    "mrpc": [1, 0],
    "stsb": [5.0, 4.75],
    "qqp": [0, 1],
    "mnli": [1, 2],
    "qnli": [0, 1],
    "rte": [1, 0],
    "wnli": [0, 1],
}


def write_layout(root, task: str, extra_rows: tuple[str, ...] = ()):
    relative, header, rows = LAYOUTS[task]
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ([header] if header else []) + rows + list(extra_rows)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("task", sorted(LAYOUTS))
def test_each_task_reads_its_own_layout(tmp_path, task):
    examples = read_glue_file(write_layout(tmp_path, task), GLUE_TASKS[task])
    assert [e.label for e in examples] == EXPECTED_LABELS[task]
    assert all(len(e.texts) == len(GLUE_TASKS[task].text_columns) and all(e.texts) for e in examples)
    if task == "mrpc":  # the byte-order mark is not part of the first column's name
        assert examples[1].texts[1].endswith('"100 percent behind George Bush".')
    if task == "cola":
        assert examples[0].texts == ("The sailors rode the breeze clear of the rocks.",)


def test_real_sst2_and_cola_dev_files():
    real = shared_data_dir()
    if real is None:
        pytest.skip("../shared/data (real GLUE dev files) is not beside this checkout")
    sst2 = read_glue_file(real / "glue" / "SST-2" / "dev.tsv", GLUE_TASKS["sst2"])
    cola = read_glue_file(real / "glue" / "CoLA" / "dev.tsv", GLUE_TASKS["cola"])
    assert len(sst2) == 872 and len(cola) == 1043
    assert {e.label for e in sst2} == {0, 1} and {e.label for e in cola} == {0, 1}
    assert 0.4 < np.mean([e.label for e in sst2]) < 0.6  # SST-2 dev is balanced
    assert 0.6 < np.mean([e.label for e in cola]) < 0.75  # CoLA dev: ~69% acceptable


@pytest.mark.parametrize(
    "row, message",
    [
        ("it is fine\t7", "SST-2/dev.tsv:4: label '7' is not one of 0, 1"),
        ("just one field", "SST-2/dev.tsv:4: 1 fields, expected at least 2"),
    ],
)
def test_a_bad_row_names_the_file_and_line(tmp_path, row, message):
    path = write_layout(tmp_path, "sst2", extra_rows=(row,))
    with pytest.raises(UsageError, match=message):
        read_glue_file(path, GLUE_TASKS["sst2"])


def test_missing_files_columns_and_tasks_are_named(tmp_path):
    with pytest.raises(UsageError, match="RTE/dev.tsv: no such file"):
        read_glue_file(tmp_path / "RTE" / "dev.tsv", GLUE_TASKS["rte"])
    path = write_layout(tmp_path, "sst2")
    with pytest.raises(UsageError, match="no column 'sentence1', 'sentence2'.* is it the RTE file"):
        read_glue_file(path, GLUE_TASKS["rte"])
    with pytest.raises(UsageError, match="--tasks cola2: unknown GLUE task"):
        glue_tasks(["sst2", "cola2"])
    assert [t.name for t in glue_tasks(["SST-2", "sts-b", "sst2"])] == ["sst2", "stsb"]
    assert len(glue_tasks(["all"])) == 9


def test_metrics_against_hand_computed_values():
    cola, sst2, mrpc, stsb = (GLUE_TASKS[name] for name in ("cola", "sst2", "mrpc", "stsb"))
    # tp=2 fp=1 tn=1 fn=0: MCC = (2*1 - 1*0) / sqrt(3*2*2*1)
    assert glue_metrics(cola, np.array([1, 1, 1, 0]), np.array([1, 1, 0, 0]))["matthews_correlation"] == pytest.approx(
        2 / math.sqrt(12)
    )
    assert glue_metrics(sst2, np.array([1, 0, 1, 1]), np.array([1, 0, 0, 1])) == {"accuracy": 0.75}
    # tp=1 fp=1 fn=1: precision = recall = F1 = 0.5; 2 of 4 right
    assert glue_metrics(mrpc, np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0])) == {"f1": 0.5, "accuracy": 0.5}
    metrics = glue_metrics(stsb, np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 7.0]))
    assert metrics["pearson"] == pytest.approx(5 / math.sqrt(2 * 114 / 9))
    assert metrics["spearman"] == pytest.approx(1.0)
    assert glue_score({"dev": metrics}) == pytest.approx((metrics["pearson"] + 1.0) / 2)
    # A constant prediction has no correlation (0, not NaN) and MCC 0.
    assert glue_metrics(stsb, np.array([3.0, 3.0, 3.0]), np.array([2.0, 4.0, 7.0]))["pearson"] == 0.0
    assert glue_metrics(cola, np.array([1, 1, 1, 1]), np.array([1, 1, 0, 0]))["matthews_correlation"] == 0.0


# --- the JSON Lines layouts: SuperGLUE's release and the BabyLM challenge's --------------------------


def needs_shared():
    real = shared_data_dir()
    if real is None:
        pytest.skip("../shared/data (the SuperGLUE and BabyLM samples) is not beside this checkout")
    return real


def test_the_babylm_layout_reads_every_task_as_the_pipeline_pairs_it(tmp_path):
    glue_dir = write_babylm_glue_dir(tmp_path / "glue_filtered", needs_shared())
    samples = needs_shared() / "babylm_eval" / "glue_filtered"
    first = {
        name: json.loads((samples / f"{name}.valid.jsonl").read_text().splitlines()[0])
        for name in ("multirc", "wsc", "boolq")
    }
    data = {
        task.name: read_task_data(task, glue_dir)
        for task in glue_tasks(["boolq", "multirc", "rte", "wsc", "mrpc", "qqp", "mnli"])
    }
    assert {name: d.layout for name, d in data.items()} == dict.fromkeys(data, "BabyLM")
    m, w, b = first["multirc"], first["wsc"], first["boolq"]
    assert data["multirc"].splits["dev"][0] == Example(
        (f"Question: {m['question']} Answer: {m['answer']}", m["paragraph"]), m["label"]
    )
    assert data["wsc"].splits["dev"][0].texts == (
        f'Does "{w["span2_text"]}" refer to "{w["span1_text"]}" in this passage?',
        w["text"],
    )
    assert data["boolq"].splits["dev"][0] == Example((b["question"], b["passage"]), b["label"])
    assert len(data["rte"].splits["train"]) == 400 and {e.label for e in data["rte"].splits["dev"]} == {0, 1}
    assert {e.label for e in data["mnli"].splits["train"]} == {0, 1, 2}
    assert (data["rte"].metrics, data["rte"].score_metrics) == (("accuracy", "f1", "mcc"), ("accuracy",))
    assert data["mrpc"].score_metrics == data["qqp"].score_metrics == ("f1",)
    assert (data["mnli"].metrics, data["mnli"].score_metrics) == (("accuracy",), ("accuracy",))


def test_the_superglue_release_layout_reads_boolq_multirc_and_wsc(tmp_path):
    real = needs_shared() / "superglue"
    glue_dir = tmp_path / "superglue"
    shutil.copytree(real, glue_dir)
    shutil.copy(glue_dir / "BoolQ" / "val.jsonl", glue_dir / "BoolQ" / "train.jsonl")  # the sample has no train
    passages = [json.loads(line) for line in (real / "MultiRC" / "val.jsonl").read_text().splitlines()]
    answers = [(q, a) for p in passages for q in p["passage"]["questions"] for a in q["answers"]]
    multirc = read_task_data(GLUE_TASKS["multirc"], glue_dir)
    assert multirc.layout == "SuperGLUE" and len(multirc.splits["dev"]) == len(answers)  # one example per answer
    (question, answer), example = answers[0], multirc.splits["dev"][0]
    assert example == Example(
        (f"Question: {question['question']} Answer: {answer['text']}", passages[0]["passage"]["text"]),
        int(answer["label"]),
    )
    wsc = read_task_data(GLUE_TASKS["wsc"], glue_dir)
    line = json.loads((real / "WSC" / "val.jsonl").read_text().splitlines()[0])
    target = line["target"]
    assert wsc.splits["dev"][0] == Example(
        (f'Does "{target["span2_text"]}" refer to "{target["span1_text"]}" in this passage?', line["text"]),
        int(line["label"]),
    )
    boolq = read_task_data(GLUE_TASKS["boolq"], glue_dir)
    assert len(boolq.splits["dev"]) == 100 and {e.label for e in boolq.splits["dev"]} == {0, 1}  # booleans as 0/1
    assert boolq.score_metrics == ("accuracy",)


def test_an_unknown_superglue_or_babylm_layout_is_one_line(tmp_path):
    babylm = tmp_path / "babylm"
    write_jsonl(babylm / "boolq.train.jsonl", [{"question": "is it?", "text": "It is.", "label": 1}])
    write_jsonl(babylm / "boolq.valid.jsonl", [{"question": "is it?", "passage": "It is.", "label": 1}])
    with pytest.raises(
        UsageError,
        match=r"boolq.train.jsonl:1: no 'passage'; a line of the BabyLM boolq layout needs question, passage, "
        r"label \(fields here: label, question, text\)",
    ):
        read_task_data(GLUE_TASKS["boolq"], babylm)
    write_jsonl(babylm / "boolq.train.jsonl", [{"question": "is it?", "passage": "It is.", "label": 2}])
    with pytest.raises(UsageError, match="boolq.train.jsonl:1: label 2 is not a class of boolq"):
        read_task_data(GLUE_TASKS["boolq"], babylm)
    superglue = tmp_path / "superglue"
    write_jsonl(superglue / "MultiRC" / "train.jsonl", [{"passage": "just text", "idx": 0}])
    with pytest.raises(UsageError, match="train.jsonl:1: 'passage' needs text and questions"):
        read_task_data(GLUE_TASKS["multirc"], superglue)
    write_jsonl(superglue / "WSC" / "train.jsonl", [{"text": "He ran.", "target": {"span1_text": "He"}, "label": True}])
    with pytest.raises(UsageError, match="'target' needs span1_text and span2_text"):
        read_task_data(GLUE_TASKS["wsc"], superglue)
    with pytest.raises(
        UsageError, match=r"no wsc data \(expected wsc.train.jsonl \+ wsc.valid.jsonl \(BabyLM\) or WSC/train.jsonl"
    ):
        read_task_data(GLUE_TASKS["wsc"], tmp_path / "babylm")
    with pytest.raises(UsageError, match="--tasks boolq: SuperGLUE tasks are read from files"):
        read_task_data(GLUE_TASKS["boolq"], None)
    for passage, message in (
        ({"text": "T.", "questions": [{"question": "Q?", "answers": None}]}, "a question needs its text and a list"),
        ({"text": "T.", "questions": ["Q?"]}, "a question needs its text and a list"),
        ({"text": "T.", "questions": [{"question": "Q?", "answers": ["A"]}]}, "an answer needs its text and label"),
    ):
        write_jsonl(superglue / "MultiRC" / "train.jsonl", [{"passage": passage}])
        with pytest.raises(UsageError, match=message):
            read_task_data(GLUE_TASKS["multirc"], superglue)
    write_jsonl(babylm / "boolq.train.jsonl", [{"question": None, "passage": "It is.", "label": 1}])
    with pytest.raises(UsageError, match="boolq.train.jsonl:1: 'question' is None, not text"):
        read_task_data(GLUE_TASKS["boolq"], babylm)
