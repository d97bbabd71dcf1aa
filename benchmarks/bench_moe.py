"""Forward + backward time of one ELECTRA-MoE feed-forward block: the old per-expert dispatch against
the sorted one, with a dense ELECTRA FFN of the same width for scale.

Rows (all on the same tokens, with the same weights where they share a shape):

* dense: Linear(hidden -> intermediate) -> activation -> Linear(intermediate -> hidden), ELECTRA's
  feed-forward block; an MoE with top-k routing does about k times its matmul work.
* old (baseline, kept here only to compare): the dispatch `MoeFeedForward` had before issue 15, one
  `torch.where(top_experts == e)` per expert, whose data-dependent size costs a device->host sync per
  expert on a GPU, and `nonzero()` to drop padding.
* split: `MoeFeedForward` with one stable sort of the assignments, one read of the group sizes to the
  host, each expert on its contiguous slice (what it runs on a CPU and on GPUs without the CUTLASS
  grouped GEMM).
* grouped: `MoeFeedForward` with one sort and `torch._grouped_mm` per projection, the group ends left
  on the device (what it runs in bf16 on a Hopper GPU; forced here on any device for comparison: on a
  CPU, `_grouped_mm` is a per-group loop over the same matmuls).

Each iteration is forward, a loss (sum of output * a fixed random gradient, plus the balance loss)
and backward into the block's parameters and the input; the rows take turns one iteration at a time
(other load on a shared machine then falls on all alike), and each row's median over --iters
iterations, after --warmup, counts. Tokens/s counts input tokens (batch x sequence). On a shared
2-core machine, --threads 1 gives steady figures while another process holds a core; with two
threads competing with it, the figures here were erratic (the old row from 2x to 10x the dense FFN,
against a steady 2x with one thread).

    python benchmarks/bench_moe.py                                  # CPU, fp32, 16x256 tokens
    python benchmarks/bench_moe.py --device cuda --dtype bfloat16   # 64x256 tokens
    python benchmarks/bench_moe.py --tokens 4x256 --iters 5 --output /tmp/moe_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as `python benchmarks/bench_moe.py`: make `common` importable

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from transformers.activations import ACT2FN  # noqa: E402

from common.models.modeling_electra_moe import ElectraMoeConfig, MoeFeedForward  # noqa: E402


class OldWhereDispatch(MoeFeedForward):
    """BASELINE ONLY: MoeFeedForward's forward as it was before issue 15 (a `torch.where` per expert)."""

    def forward(self, hidden_states, token_mask=None):
        flat = hidden_states.reshape(-1, hidden_states.shape[-1])
        if token_mask is None:
            token_ids = torch.arange(flat.shape[0], device=flat.device)
        else:
            token_ids = token_mask.reshape(-1).nonzero().squeeze(1)
        tokens = flat[token_ids]
        with torch.autocast(device_type=flat.device.type, enabled=False):
            router_logits = F.linear(tokens.float(), self.router.weight.float())
        router_probs = router_logits.softmax(dim=-1)
        top_probs, top_experts = router_probs.topk(self.top_k, dim=-1)
        top_weights = top_probs / top_probs.sum(dim=-1, keepdim=True)
        output = flat.new_zeros(flat.shape)
        for expert_index, expert in enumerate(self.experts):
            rows, slots = torch.where(top_experts == expert_index)
            expert_output = expert(tokens[rows]) * top_weights[rows, slots].unsqueeze(1)
            output.index_add_(0, token_ids[rows], expert_output.to(output.dtype))
        num_tokens = router_logits.shape[0]
        assignments = torch.bincount(top_experts.reshape(-1), minlength=self.num_experts).float()
        fractions = assignments / max(num_tokens * self.top_k, 1)
        balance_loss = self.num_experts * (fractions * router_probs.sum(dim=0) / max(num_tokens, 1)).sum()
        return output.reshape(hidden_states.shape), (balance_loss,)


class ForcedDispatch(MoeFeedForward):
    """MoeFeedForward with its dispatch chosen by the benchmark instead of by the device."""

    def __init__(self, config: ElectraMoeConfig, grouped: bool):
        super().__init__(config)
        self.grouped = grouped

    def uses_grouped_mm(self, tokens: torch.Tensor) -> bool:
        return self.grouped


class DenseFeedForward(nn.Module):
    """ELECTRA's dense feed-forward block (ElectraIntermediate + ElectraOutput without norm and dropout)."""

    def __init__(self, config: ElectraMoeConfig):
        super().__init__()
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = ACT2FN[config.hidden_act]
        self.output = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden_states, token_mask=None):
        return self.output(self.activation(self.intermediate(hidden_states))), ()


def parse_tokens(text: str) -> tuple[int, int]:
    batch, _, seq = text.partition("x")
    if not (batch.isdigit() and seq.isdigit()):
        raise argparse.ArgumentTypeError(f"--tokens takes BATCHxSEQUENCE, e.g. 16x256, not {text!r}")
    return int(batch), int(seq)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="weights and tokens")
    parser.add_argument(
        "--tokens", type=parse_tokens, default=None, help="BATCHxSEQUENCE (default: 16x256 on cpu, 64x256 on cuda)"
    )
    parser.add_argument("--hidden", type=int, default=512, help="hidden size")
    parser.add_argument("--intermediate", type=int, default=2048, help="width of each expert and of the dense FFN")
    parser.add_argument("--experts", type=int, default=8, help="experts in the block")
    parser.add_argument("--top_k", type=int, default=2, help="experts per token")
    parser.add_argument("--padding", type=float, default=0.0, help="fraction of each sequence that is padding")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations first")
    parser.add_argument("--iters", type=int, default=10, help="timed iterations (the median counts)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="also write the results as JSON here")
    return parser.parse_args()


def one_step(block: nn.Module, hidden: torch.Tensor, mask: torch.Tensor | None, upstream: torch.Tensor) -> float:
    """Seconds of one forward + backward."""
    synchronize = torch.cuda.synchronize if hidden.device.type == "cuda" else lambda: None
    block.zero_grad(set_to_none=True)
    inputs = hidden.detach().requires_grad_()
    synchronize()
    start = time.perf_counter()
    output, stats = block(inputs, mask)
    loss = (output * upstream).sum() + (stats[0] if stats else 0)
    loss.backward()
    synchronize()
    return time.perf_counter() - start


def time_rows(rows: dict[str, nn.Module], hidden: torch.Tensor, mask: torch.Tensor | None, args) -> dict:
    """Median seconds per row. The rows take turns, one iteration each, so that load from other
    processes on a shared machine falls on all of them alike."""
    upstream = torch.randn_like(hidden)
    times = {name: [] for name in rows}
    for step in range(args.warmup + args.iters):
        for name, block in rows.items():
            if times[name] is None:
                continue
            try:
                seconds = one_step(block, hidden, mask, upstream)
            except RuntimeError as error:  # e.g. _grouped_mm refusing this dtype or device
                print(f"[bench] {name}: {str(error).splitlines()[0]}", file=sys.stderr)
                times[name] = None
                continue
            if step >= args.warmup:
                times[name].append(seconds)
    return {name: statistics.median(seconds) for name, seconds in times.items() if seconds}


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    batch, seq = args.tokens or ((64, 256) if args.device == "cuda" else (16, 256))
    config = ElectraMoeConfig(
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_attention_heads=8,
        num_experts=args.experts,
        num_experts_per_tok=args.top_k,
    )
    torch.manual_seed(args.seed)
    hidden = torch.randn(batch, seq, args.hidden, device=device, dtype=dtype)
    real_length = seq - round(seq * args.padding)
    mask = (torch.arange(seq, device=device) < real_length).expand(batch, seq) if args.padding else None

    rows = {
        "dense FFN": DenseFeedForward(config),
        "old: torch.where per expert (baseline)": OldWhereDispatch(config),
        "new: sort + split": ForcedDispatch(config, grouped=False),
        "new: sort + _grouped_mm": ForcedDispatch(config, grouped=True),
    }
    shared = rows["new: sort + split"].state_dict()
    for name, block in rows.items():
        if isinstance(block, MoeFeedForward):
            block.load_state_dict(shared)  # every MoE row routes the same tokens to the same experts
        rows[name] = block.to(device=device, dtype=dtype)

    results = {
        name: {"ms_per_iter": seconds * 1e3, "tokens_per_s": batch * seq / seconds}
        for name, seconds in time_rows(rows, hidden, mask, args).items()
    }

    chosen = MoeFeedForward.uses_grouped_mm(rows["new: sort + split"], hidden)
    print(
        f"\nMoE block fwd+bwd: {batch}x{seq} tokens, hidden {args.hidden}, intermediate {args.intermediate}, "
        f"{args.experts} experts top-{args.top_k}, padding {args.padding:.0%}, {args.dtype} on {args.device} "
        f"({torch.get_num_threads()} threads, torch {torch.__version__}, {platform.processor() or platform.machine()})"
    )
    print(f"MoeFeedForward picks here: {'_grouped_mm' if chosen else 'split'}\n")
    old = results.get("old: torch.where per expert (baseline)", {}).get("ms_per_iter")
    dense = results.get("dense FFN", {}).get("ms_per_iter")
    print(f"  {'':<40} {'ms/iter':>9} {'tokens/s':>10} {'old/this':>9} {'this/dense':>11}")
    for name, result in results.items():
        ms = result["ms_per_iter"]
        speedup = f"{old / ms:.2f}x" if old else "-"
        vs_dense = f"{ms / dense:.2f}x" if dense else "-"
        result.update(speedup_vs_old=old / ms if old else None, cost_vs_dense=ms / dense if dense else None)
        print(f"  {name:<40} {ms:>9.1f} {result['tokens_per_s']:>10.0f} {speedup:>9} {vs_dense:>11}")
    if args.output:
        Path(args.output).write_text(json.dumps({"args": vars(args) | {"tokens": [batch, seq]}, "results": results}))
        print(f"\nresults written to {args.output}")


if __name__ == "__main__":
    main()
