"""Stage 1 of the pipeline: text in, packed token windows out.

Owns the corpus sources (`sources`: synthetic, BabyLM folders, text and JSONL files, Hugging Face
data sets), the embedded synthetic corpus and its minimal pairs (`synthetic`), tokenizer training,
loading and word counting (`tokenizer`), weighted mixtures of sources (`mixture`), the packed token
cache (`packing`, tokenizing in `batch_encoding`), the corpus report (`report`) and the window
samplers addressed by one global sample index (`sampling`).

May import: the core of `common` (errors, files, jsonl, config). Never another stage: everything above
builds on this, so it knows nothing of models, training or evaluation.
"""
