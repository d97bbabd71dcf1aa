"""The one place that talks to accelerate / DeepSpeed internals, and rank-aware logging.

On a machine without a GPU, `accelerate launch --num_processes 2` only really runs two ranks
when the Accelerator is built just so: under DeepSpeed the process group must use gloo (then
ZeRO-2 and ZeRO-3 train on the CPU); without DeepSpeed `cpu=True` gives MULTI_CPU over gloo.
A bare `Accelerator()` there silently gives every process a world of one, and `cpu=True` under a
DeepSpeed config silently falls back to plain DDP (measured with accelerate 1.15, DeepSpeed
0.19.8 and torch 2.13). The tests assert the world size and the distributed type of each launch.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import logging
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, InitProcessGroupKwargs, broadcast_object_list, gather_object

from common.errors import UsageError
from common.files import discard, staging_path

log = logging.getLogger("babytrain")


def deepspeed_requested() -> bool:
    """True when `accelerate launch` was given a DeepSpeed config (it says so in the environment)."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def build_accelerator(gradient_accumulation_steps: int = 1) -> Accelerator:
    """The Accelerator for this launch; trackers are attached once the run folder is known."""
    options = dict(gradient_accumulation_steps=gradient_accumulation_steps)
    if not torch.cuda.is_available():
        if deepspeed_requested():
            options["kwargs_handlers"] = [InitProcessGroupKwargs(backend="gloo")]
        else:
            options["cpu"] = True
    accelerator = Accelerator(**options)
    setup_logging(accelerator)
    return accelerator


def end_run(accelerator: Accelerator) -> None:
    """The last collective of a launch: every rank waits for the others, then the process group
    is torn down (a rank tearing it down while another still works can abort the launch)."""
    accelerator.wait_for_everyone()
    accelerator.end_training()


def same_on_every_rank(accelerator: Accelerator, value, what: str) -> None:
    """Refuse to go on unless every rank holds the main process's `value` (a digest, say)."""
    if accelerator.num_processes == 1:
        return
    values = gather_object([value])
    if any(other != values[0] for other in values):
        raise UsageError(
            f"{what} differs between processes ({', '.join(map(str, values))}); every rank must train on the same"
        )


def main_process_value(accelerator: Accelerator, value):
    """The main process's `value`, on every rank."""
    if accelerator.num_processes == 1:
        return value
    return broadcast_object_list([value], from_process=0)[0]


def setup_logging(accelerator: Accelerator) -> None:
    """Info lines from the main process only; warnings and errors from every rank."""
    level = logging.INFO if accelerator.is_main_process else logging.WARNING
    logging.basicConfig(
        format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr, level=level, force=True
    )
    for noisy in ("deepspeed", "DeepSpeed", "torch.distributed", "accelerate", "datasets", "httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def uses_deepspeed(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type == DistributedType.DEEPSPEED


def zero_stage(accelerator: Accelerator) -> int:
    if not uses_deepspeed(accelerator):
        return 0
    return int(accelerator.state.deepspeed_plugin.deepspeed_config.get("zero_optimization", {}).get("stage", 0))


def configure_deepspeed(accelerator: Accelerator, micro_batch_size: int, max_grad_norm: float) -> None:
    """Fill the DeepSpeed "auto" values accelerate cannot infer without a DataLoader.

    accelerate would otherwise fill `gradient_clipping: auto` with 1.0 whatever the run asks for.
    """
    if not uses_deepspeed(accelerator):
        return
    config = accelerator.state.deepspeed_plugin.deepspeed_config
    config["train_micro_batch_size_per_gpu"] = micro_batch_size
    if config.get("gradient_clipping", "auto") == "auto":
        config["gradient_clipping"] = max_grad_norm


def reset_deepspeed_config(accelerator: Accelerator) -> None:
    """Give the DeepSpeed config back its "auto" values before another model is prepared in this
    process (fine-tuning runs one model per task and seed): accelerate fills them in place when it
    prepares a model, and a later run with another batch size would contradict them."""
    if not uses_deepspeed(accelerator):
        return
    plugin = accelerator.state.deepspeed_plugin
    config = plugin.deepspeed_config
    if not hasattr(plugin, "pristine_config"):
        plugin.pristine_config = copy.deepcopy(config)
    config.clear()  # in place: the HF integration holds this very dict
    config.update(copy.deepcopy(plugin.pristine_config))


def load_universal_checkpoints(accelerator: Accelerator) -> None:
    """Make the DeepSpeed engine (before `prepare`) load checkpoints in DeepSpeed's universal form:
    what a ZeRO checkpoint of another number of processes is turned into (`universal_copy`)."""
    accelerator.state.deepspeed_plugin.deepspeed_config["checkpoint"] = {"load_universal": True}


@contextlib.contextmanager
def universal_copy(accelerator: Accelerator, checkpoint: Path):
    """A copy of a ZeRO checkpoint (accelerate's layout: the engine's files in `pytorch_model/`)
    that any number of processes can load: DeepSpeed's universal checkpoint, one file per
    parameter and optimizer moment, made on the main process under a staging name and removed
    once loaded. Yields the folder to `load_state` from."""
    from deepspeed.checkpoint.ds_to_universal import main as convert

    staged = staging_path(Path(checkpoint).with_name(f"universal-{Path(checkpoint).name}"), shared=True)
    if accelerator.is_main_process:
        discard(staged)
        engine_files = Path(checkpoint) / "pytorch_model"
        log.info("%s is sharded for another number of processes: converting it to a universal checkpoint",
                 checkpoint)  # fmt: skip
        quiet = io.StringIO()
        with contextlib.redirect_stdout(quiet):  # the converter prints its progress
            convert(
                argparse.Namespace(
                    input_folder=str(engine_files),
                    output_folder=str(staged / "pytorch_model"),
                    num_extract_workers=1,
                    num_merge_workers=1,
                    keep_temp_folder=False,
                    strict=True,
                    inject_missing_state=True,  # accelerate's engines do not record Megatron's extra state
                )
            )
        for model_states in engine_files.glob("mp_rank_*_model_states.pt"):
            shutil.copy(model_states, staged / "pytorch_model" / model_states.name)
    accelerator.wait_for_everyone()
    try:
        yield staged
    finally:
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            discard(staged)


def training_dtype(accelerator: Accelerator) -> torch.dtype:
    """The dtype the matmuls run in (autocast or DeepSpeed's bf16/fp16), for the MFU peak."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(accelerator.mixed_precision, torch.float32)


def describe(accelerator: Accelerator) -> dict:
    """The facts about the launch that belong in logs and provenance."""
    return {
        "distributed_type": str(accelerator.distributed_type).split(".")[-1],
        "num_processes": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision,
        "zero_stage": zero_stage(accelerator),
        "device": str(accelerator.device),
    }


def all_reduce_sum(accelerator: Accelerator, values: list) -> list[float]:
    """Sum a few numbers (floats or 0-d tensors) over all ranks, in float64."""
    tensor = torch.stack([torch.as_tensor(v, dtype=torch.float64).to(accelerator.device) for v in values])
    if accelerator.num_processes > 1:
        tensor = accelerator.reduce(tensor, reduction="sum")
    return tensor.tolist()


def all_reduce_tensors(accelerator: Accelerator, values: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Sum named tensors of any shape over all ranks in one collective (float64, on the host)."""
    flat = torch.cat([v.detach().reshape(-1).to(torch.float64) for v in values.values()])
    if accelerator.num_processes > 1:
        flat = accelerator.reduce(flat, reduction="sum")
    flat = flat.cpu().numpy()
    out, offset = {}, 0
    for name, value in values.items():
        out[name] = flat[offset : offset + value.numel()].reshape(value.shape)
        offset += value.numel()
    return out
