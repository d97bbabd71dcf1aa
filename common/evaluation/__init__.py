"""Stage 4a: zero-shot evaluation of saved models.

Owns the zero-shot tasks' data: BLiMP-style minimal pairs, the BabyLM challenge's EWoK, entity
tracking, WUG and COMPS, and the synthetic corpus's tasks (`tasks`); log-likelihood scores of
whole texts and of completions after a context, from causal, masked and ELECTRA models, batched
and sharded over processes (`sentence_scoring`); the evaluation of one model or of every snapshot
of a run (`zero_shot`), its accuracies, correlations, tables, curves and files
(`zero_shot_results`), and runs drawn side by side (`comparison`).

May import: the core of `common`, `common.models` and `common.data`. Not training or fine-tuning.
"""
