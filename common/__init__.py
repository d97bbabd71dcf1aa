"""babytrain's one shared package: the scripts at the top of the repository build their pieces here.

Its subpackages follow the data (common/README.md has the map): `data` (corpus -> tokenizer ->
packed tokens) -> `models` -> `training` (the loop, checkpoints, milestones) -> `evaluation` and
`finetuning`. The modules directly in `common/` are what every stage uses: `errors`, `config`,
`files`, `jsonl`, `distributed` (the one place that talks to accelerate and DeepSpeed),
`tracking`, `model_source` and `optimizer`. Lower stages never import higher ones
(pyproject.toml's import-linter contracts, checked in CI).
"""
