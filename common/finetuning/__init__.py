"""Stage 4b: fine-tuning saved models for sequence classification.

Owns classification heads over every model kind and the encoding of texts for them
(`classifier`), the one fine-tuning loop (`finetune`), GLUE's tasks, files and metrics (`glue`)
and their result files and tables (`glue_results`), and labelled documents (`documents`) with
their reports (`doc_results`).

May import: the core of `common`, `common.models` and `common.data`. Not training or evaluation.
"""
