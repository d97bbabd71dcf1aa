"""Stage 4a: zero-shot evaluation of saved models.

Owns minimal-pair data sets (`minimal_pairs`), sentence scores from causal, masked and ELECTRA
models, batched and sharded over processes (`sentence_scoring`), the evaluation of one model or
of every snapshot of a run (`blimp`) and its accuracies, tables, curves and files
(`blimp_results`).

May import: the core of `common`, `common.models` and `common.data`. Not training or fine-tuning.
"""
