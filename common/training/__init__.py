"""Stage 3: pretraining, from a packed corpus and a model to milestones and final/.

Owns `train_pretrain.py`'s config (`pretrain_config`), the training loop (`pretrain`), the
objectives that turn windows into loss terms (`objectives`), resumable checkpoints (`checkpoint`),
milestone snapshots (`milestones`), the run folder (`rundir`), Hub pushes (`hub`), throughput and
MFU (`perf`) and experiment grids (`grid`, also `python -m common.training.grid`).

May import: the core of `common`, `common.models` and `common.data`. Not evaluation or
fine-tuning: the script runs the end-of-training evaluation.
"""
