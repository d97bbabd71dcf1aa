"""Small fine-tuning data sets in real file layouts, made of the synthetic corpus's sentences (the
words the test models were pretrained on), with labels a tiny model can learn in seconds."""

from __future__ import annotations

import random
from pathlib import Path

from common.data.synthetic import synthetic_documents

# Web of Science's Data.txt header; Domain and keywords carry stray spaces like the real file's.
WOS_HEADER = "Y1\tY2\tY\tDomain\tarea\tkeywords\tAbstract"
# Three "domains", each recognisable by the nouns its sentences are about.
DOMAIN_NOUNS = {
    "CS": {"wolf", "wolves", "cat", "cats", "dog", "dogs", "pig", "pigs", "frogs", "foxes", "lions", "bears"},
    "Medical": {"aunt", "aunts", "uncle", "daughter", "daughters", "son", "sons", "sisters", "brother", "mother"},
    "Civil": {"bridge", "bridges", "box", "boxes", "cabinet", "clock", "clocks", "toy", "toys", "eggs"},
}


def synthetic_sentences(num_words: int = 40000, seed: int = 7) -> list[str]:
    return [s.strip() + " ." for d in synthetic_documents(num_words, seed=seed) for s in d.split(".") if s.strip()]


def negation_rows(count: int, seed: int = 0) -> list[tuple[str, int]]:
    """A separable sentence task: 1 when the sentence is negated ("... does not ..."), half of each."""
    sentences = synthetic_sentences()
    negated = [s for s in sentences if " not " in s][: count // 2]
    plain = [s for s in sentences if " not " not in s][: count - len(negated)]
    rows = [(s, 1) for s in negated] + [(s, 0) for s in plain]
    random.Random(seed).shuffle(rows)
    return rows


def write_tsv(path: Path, header: str | None, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(([header] if header else []) + lines) + "\n", encoding="utf-8")
    return path


def write_glue_dir(root: Path, train: int = 320, dev: int = 120) -> Path:
    """SST-2 (the negation task), MNLI (how many of two sentences are negated: entailment, neutral,
    contradiction for 0, 1, 2; with both dev files) and STS-B (the same count x 2.5 as a score),
    each in the GLUE download's layout."""
    rows = negation_rows(train + dev + 1)
    sst2 = [f"{s}\t{label}" for s, label in rows]
    write_tsv(root / "SST-2" / "train.tsv", "sentence\tlabel", sst2[:train])
    write_tsv(root / "SST-2" / "dev.tsv", "sentence\tlabel", sst2[train : train + dev])
    nli = ("entailment", "neutral", "contradiction")
    pairs = [(i, rows[i][0], rows[i + 1][0], rows[i][1] + rows[i + 1][1]) for i in range(train + dev)]
    mnli_header = "index\tpromptID\tpairID\tgenre\tsentence1\tsentence2\tlabel1\tgold_label"
    mnli = [f"{i}\t{i}\t{i}n\tfiction\t{a}\t{b}\t{nli[n]}\t{nli[n]}" for i, a, b, n in pairs]
    write_tsv(root / "MNLI" / "train.tsv", mnli_header, mnli[:train])
    write_tsv(root / "MNLI" / "dev_matched.tsv", mnli_header, mnli[train : train + dev // 2])
    write_tsv(root / "MNLI" / "dev_mismatched.tsv", mnli_header, mnli[train + dev // 2 : train + dev])
    stsb_header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    stsb = [
        f"{i}\tmain-captions\tMSRvid\t2012test\t{i:04d}\tnone\tnone\t{a}\t{b}\t{2.5 * n:.3f}" for i, a, b, n in pairs
    ]
    write_tsv(root / "STS-B" / "train.tsv", stsb_header, stsb[:train])
    write_tsv(root / "STS-B" / "dev.tsv", stsb_header, stsb[train : train + dev])
    return root


def domain_of(sentence: str) -> str | None:
    words = set(sentence.lower().replace(".", " ").split())
    domains = [name for name, nouns in DOMAIN_NOUNS.items() if words & nouns]
    return domains[0] if len(domains) == 1 else None


def write_wos_file(path: Path, per_domain: int = 40, seed: int = 0) -> Path:
    """A Web of Science Data.txt: abstracts of 3-5 sentences about one domain's nouns."""
    rng = random.Random(seed)
    by_domain = {name: [] for name in DOMAIN_NOUNS}
    for sentence in synthetic_sentences(120000):
        if domain_of(sentence):
            by_domain[domain_of(sentence)].append(sentence)
    lines = []
    for y1, (domain, sentences) in enumerate(by_domain.items()):
        for _ in range(per_domain):
            abstract = " ".join(rng.sample(sentences, rng.randint(3, 5)))
            lines.append(f"{y1}\t{rng.randint(0, 9)}\t{y1 * 10}\t{domain}  \t area \t keyword; other \t{abstract}")
    rng.shuffle(lines)
    return write_tsv(path, WOS_HEADER, lines)


def write_jsonl(path: Path, records: list[dict]) -> Path:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def write_babylm_glue_dir(root: Path, shared: Path, train: int = 64, dev: int = 32) -> Path:
    """The BabyLM 2025 glue_filtered/ layout with its seven tasks: BoolQ, MultiRC, RTE and WSC from
    the real samples in `shared` (../shared/data; the BoolQ and MultiRC samples are validation files
    only, so they serve as both splits), MRPC, QQP and MNLI made of negation pairs in the release's
    fields (1 when both sentences agree in negation; MNLI: how many are negated)."""
    import shutil

    samples = shared / "babylm_eval" / "glue_filtered"
    root.mkdir(parents=True, exist_ok=True)
    for name in ("rte.train", "rte.valid", "wsc.train", "wsc.valid", "boolq.valid", "multirc.valid"):
        shutil.copy(samples / f"{name}.jsonl", root)
    for task in ("boolq", "multirc"):
        shutil.copy(samples / f"{task}.valid.jsonl", root / f"{task}.train.jsonl")
    rows = negation_rows(train + dev + 1)
    pairs = [(rows[i][0], rows[i + 1][0], rows[i][1], rows[i + 1][1]) for i in range(train + dev)]
    fields = {"mrpc": ("sentence1", "sentence2"), "qqp": ("question1", "question2"), "mnli": ("premise", "hypothesis")}
    for task, (first, second) in fields.items():
        records = [
            {first: a, second: b, "label": (x + y) if task == "mnli" else int(x == y), "idx": i}
            for i, (a, b, x, y) in enumerate(pairs)
        ]
        write_jsonl(root / f"{task}.train.jsonl", records[:train])
        write_jsonl(root / f"{task}.valid.jsonl", records[train:])
    return root
