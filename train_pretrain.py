"""Pretrain a language model from scratch: corpus -> tokenizer -> packed tokens -> model -> training.

    python train_pretrain.py                      # a tiny LLaMA on the embedded synthetic corpus
    python train_pretrain.py --model_type bert    # a tiny BERT (masked LM, WordPiece) on the same
    accelerate launch --config_file accelerate_configs/deepspeed_zero2.yaml \
        train_pretrain.py --config configs/babylm_llama.yaml --data_dir data/train_10M

Writes into --output_dir: config.yaml (resolved config + provenance), tokenizer/, metrics.jsonl,
tb/ (TensorBoard), checkpoints/step-*/ (resume), milestones/<name>/ and final/ (HF models).
"""

from pathlib import Path

from accelerate.utils import set_seed

from common.config import parse_config
from common.data.mixture import MIXTURE, Mixture, load_mixture, single_source
from common.data.packing import PackedSource, boundary_token_id, packed_corpus
from common.data.report import report_table, write_corpus_report
from common.data.sources import load_corpus
from common.data.tokenizer import (
    load_tokenizer,
    tokenizer_files,
    tokenizer_from_files,
    tokenizer_hash,
    trained_or_cached_tokenizer,
)
from common.distributed import (
    build_accelerator,
    end_run,
    main_process_value,
    same_on_every_rank,
    training_dtype,
    uses_deepspeed,
)
from common.errors import TrainingStopped, UsageError, run_main
from common.evaluation.sentence_scoring import ScoringOptions
from common.evaluation.tasks import Task, load_tasks
from common.evaluation.zero_shot import check_tasks_fit, close_boards, evaluate_snapshot, report, tensorboard_boards
from common.models.build import build_model, load_model, max_positions, resolve_shape
from common.models.families import TOKENIZER_KIND
from common.training.hub import HubPusher
from common.training.objectives import objective_for
from common.training.perf import peak_flops_for
from common.training.pretrain import (
    Pretraining,
    StopRequest,
    resumable_state,
    run_signature,
    save_run_files,
)
from common.training.pretrain_config import PretrainConfig
from common.training.rundir import claim_output_dir, default_run_dir, hold_run_folder, make_room


def load_sources(cfg: PretrainConfig) -> Mixture:
    """The run's corpus (--dataset), or its weighted sources (--dataset_mixture, datasets:)."""
    options = {
        "text_column": cfg.text_column,
        "validation_split_percentage": cfg.validation_split_percentage,
        "synthetic_words": cfg.synthetic_words,
        "seed": cfg.seed,
        "streaming": cfg.streaming,
    }
    specs = cfg.source_specs()
    if specs is not None:
        return load_mixture(specs, **options)
    return single_source(load_corpus(cfg.dataset, data_dir=cfg.data_dir, data_files=cfg.data_files, **options))


def pack_sources(
    mixture: Mixture, tokenizer, tokenizer_digest: str, cache_dir: Path, workers: int
) -> list[PackedSource]:
    """Each source in its own cache entry, keyed by the source and the tokenizer."""
    packed = []
    for name, corpus, weight in zip(mixture.names, mixture.corpora, mixture.weights):
        splits, manifest = packed_corpus(corpus, tokenizer, tokenizer_digest, cache_dir, workers)
        packed.append(PackedSource(name, weight, splits, manifest))
    return packed


def data_description(mixture: Mixture, packed: list[PackedSource]) -> dict:
    """data.json: the packed cache's manifest, or for a mixture each source's with its weight."""
    if not mixture.is_mixture:
        return packed[0].manifest
    sources = [{"name": source.name, "weight": source.weight, **source.manifest} for source in packed]
    return {"mixture_fingerprint": mixture.fingerprint, "sources": sources}


def obtain_tokenizer(cfg: PretrainConfig, mixture: Mixture, run_tokenizer: Path | None):
    """The run's own tokenizer when it resumes (never the cache's: it may be gone, or another
    node's), else the one named, else one trained on the corpus (or found in the cache)."""
    if run_tokenizer is not None and (run_tokenizer / "tokenizer.json").is_file():
        return load_tokenizer(str(run_tokenizer), flag="the run's tokenizer")
    if cfg.tokenizer_name_or_path:
        return load_tokenizer(cfg.tokenizer_name_or_path)
    return trained_or_cached_tokenizer(
        TOKENIZER_KIND[cfg.training_objective()],
        mixture.tokenizer_documents,
        cfg.vocab_size,
        mixture.tokenizer_fingerprint(),
        Path(cfg.cache_dir),
    )


def obtain_model(cfg: PretrainConfig, tokenizer):
    if cfg.model_name_or_path:
        model = load_model(cfg.model_name_or_path, cfg.training_objective(), tokenizer)
        if cfg.seq_length > max_positions(model.config):
            raise UsageError(
                f"--seq_length {cfg.seq_length} is above the {max_positions(model.config)} positions "
                f"of --model_name_or_path {cfg.model_name_or_path}"
            )
        return model
    shape = resolve_shape(cfg.model_size, **cfg.shape_overrides())
    return build_model(
        cfg.model_type,
        cfg.training_objective(),
        shape,
        tokenizer,
        cfg.max_position_embeddings or cfg.seq_length,
        **cfg.model_options(),
    )


def end_of_training_tasks(cfg: PretrainConfig) -> list[Task]:
    """The zero-shot tasks final/ is scored on: --blimp_dir's (its full_eval/ for the BabyLM
    release), or the synthetic corpus's own tasks."""
    specs = cfg.source_specs()
    trains_on_synthetic = any(spec.dataset == "synthetic" for spec in specs) if specs else cfg.dataset == "synthetic"
    if not cfg.blimp_at_end or (not trains_on_synthetic and not cfg.blimp_dir):
        return []
    return load_tasks(cfg.blimp_dir, flag="--blimp_dir")[0]


def main():
    cfg = parse_config(PretrainConfig)
    blimp_tasks = end_of_training_tasks(cfg)
    accelerator = build_accelerator(cfg.gradient_accumulation_steps)
    dataset = MIXTURE if cfg.source_specs() else cfg.dataset
    if cfg.prepare_only:
        output_dir = Path(cfg.output_dir or main_process_value(accelerator, str(default_run_dir("corpus", dataset))))
        with StopRequest() as stop:
            report_corpus(cfg, accelerator, output_dir, stop)
        end_run(accelerator)
        return
    default_dir = default_run_dir(cfg.model_type, cfg.model_size, dataset)
    output_dir = Path(cfg.output_dir or main_process_value(accelerator, str(default_dir)))
    # Signals are caught from here on: a pre-emption during corpus loading or packing ends the
    # launch cleanly (status 75) instead of killing it halfway through a write.
    with StopRequest() as stop, hold_run_folder(accelerator, output_dir):
        summary = pretrain(cfg, accelerator, output_dir, stop, blimp_tasks)
    if summary["failed_pushes"]:
        raise TrainingStopped(
            f"{len(summary['failed_pushes'])} snapshot(s) were not pushed to {cfg.hub_model_id}: "
            f"{', '.join(summary['failed_pushes'])} (the commands to push them by hand are above)"
        )
    end_run(accelerator)


def prepare_data(cfg: PretrainConfig, accelerator, stop: StopRequest, run_tokenizer: Path | None) -> tuple:
    """Corpus -> tokenizer -> packed tokens: the sources, the tokenizer and its hash, the objective
    and the packed sources. Nothing in the run folder is written."""
    mixture = load_sources(cfg)
    stop.exit_if_requested("loading the corpus")
    # The main process trains (or loads) the tokenizer and every rank gets its very files, so no
    # node ever trains on other token ids; then every rank checks that it holds the same one.
    files = tokenizer_files(obtain_tokenizer(cfg, mixture, run_tokenizer)) if accelerator.is_main_process else None
    tokenizer = tokenizer_from_files(main_process_value(accelerator, files))
    tokenizer_digest = tokenizer_hash(tokenizer)
    same_on_every_rank(accelerator, tokenizer_digest, "the tokenizer's hash")
    objective = objective_for(cfg.training_objective(), tokenizer, cfg)  # refuses an unfit tokenizer early
    stop.exit_if_requested("preparing the tokenizer")
    with accelerator.main_process_first():  # the main process packs, the others read its cache
        packed = pack_sources(mixture, tokenizer, tokenizer_digest, Path(cfg.cache_dir), cfg.tokenizing_processes())
    stop.exit_if_requested("packing the corpus")
    return mixture, tokenizer, tokenizer_digest, objective, packed


def report_corpus(cfg: PretrainConfig, accelerator, output_dir: Path, stop: StopRequest) -> None:
    """--prepare_only: pack (or find in the cache) every source, then write and print the corpus
    report into `output_dir`, without building a model."""
    _, tokenizer, _, _, packed = prepare_data(cfg, accelerator, stop, run_tokenizer=None)
    if accelerator.is_main_process:
        report = write_corpus_report(output_dir, packed, tokenizer, boundary_token_id(tokenizer))
        accelerator.print(report_table(report))
        accelerator.print(f"corpus report: {output_dir}/corpus_report.{{json,md}}, {output_dir}/document_lengths.png")
    accelerator.wait_for_everyone()


def pretrain(cfg: PretrainConfig, accelerator, output_dir: Path, stop: StopRequest, blimp_tasks: list[Task]) -> dict:
    """Everything is read and checked first; only then is the run folder written to."""
    claim = claim_output_dir(accelerator, output_dir, cfg.overwrite_output_dir, cfg.resume_from_checkpoint)
    # The Hub repository is created (or found) before any work: no token, no training.
    pusher = (
        HubPusher(cfg.hub_model_id, cfg.hub_private, state_file=output_dir / "hub_pushes.json").open()
        if cfg.push_to_hub and accelerator.is_main_process
        else None
    )
    run_tokenizer = output_dir / "tokenizer" if claim.resume_path else None
    mixture, tokenizer, tokenizer_digest, objective, packed = prepare_data(cfg, accelerator, stop, run_tokenizer)

    set_seed(cfg.seed)
    model = obtain_model(cfg, tokenizer)
    check_tasks_fit(blimp_tasks, tokenizer, max_positions(model.config))
    made_for = run_signature(model.config, tokenizer_digest, cfg, objective, mixture.fingerprint)
    global_batch = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * accelerator.num_processes
    resume_state = resumable_state(claim.resume_path, made_for, global_batch) if claim.resume_path else None
    # Every input is good: now, and only now, the run folder changes.
    make_room(accelerator, output_dir, claim, resume_state)
    save_run_files(accelerator, output_dir, cfg, tokenizer, data_description(mixture, packed), made_for)
    if pusher is not None:
        pusher.push_pending()

    training = Pretraining(
        cfg,
        accelerator,
        model,
        tokenizer,
        objective,
        packed,
        output_dir,
        made_for,
        peak=peak_flops_for(accelerator.device, training_dtype(accelerator)),
        pusher=pusher,
        # ZeRO shards a checkpoint per process: with another number of processes it is resharded
        universal_resume=bool(resume_state)
        and uses_deepspeed(accelerator)
        and resume_state["world_size"] != accelerator.num_processes,
    )
    summary = training.run(claim.resume_path, stop)

    before, after = summary["initial"], summary["final"]
    accelerator.print(f"run folder: {output_dir}")
    if before and after:
        resumed = f" (this launch resumed at step {summary['start_step']})" if summary["start_step"] else ""
        accelerator.print(
            f"validation loss {before['val/loss']:.4f} -> {after['val/loss']:.4f}, "
            f"perplexity {before['val/ppl']:.2f} -> {after['val/ppl']:.2f}{resumed}"
        )
    if blimp_tasks:
        boards = tensorboard_boards(accelerator, output_dir, blimp_tasks)
        every = evaluate_snapshot(accelerator, output_dir / "final", blimp_tasks, ScoringOptions(), boards=boards)
        close_boards(boards)
        for results in every:
            accelerator.print(report(results))
    return summary


if __name__ == "__main__":
    run_main(main)
