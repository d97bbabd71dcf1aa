#!/usr/bin/env bash
# The GPU benchmarks in one script, sized for a short lease of one GPU (each stage prints as it
# ends; ONLY='regex' runs the stages whose name matches, e.g. ONLY='side|loss').
#
#   bash benchmarks/bench_gpu.sh [OUT_DIR] [STEPS]
#
# Stages (bf16 on every side; the TinyStories sample as text when DATA names it, else a synthetic
# corpus; a tokenizer smaller than the asked vocabulary is padded with unused tokens):
#   side-<size>      bench_pretrain.py: ours (defaults: compiled, fused loss), ours eager, the HF Trainer
#                    eager and with torch_compile, 64 x 256 tokens per step, vocabulary 8000
#   table-<size>-<V> ours alone (defaults) for the size presets x vocabularies 8000 and 50257
#   masked-60m       BERT vs the Trainer's run_mlm recipe, and ours' ELECTRA and ELECTRA-MoE 8x2, 60m shape
#   loss             the fused vocabulary loss against the model's own logits at 50257 (time, memory)
#   moe              the MoE block's dispatch, grouped vs the old per-expert loop
# Everything is written under OUT_DIR (JSON per stage, logs, summary.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-bench_gpu_runs}
steps=${2:-200}
data=(${DATA:+--data_file "$DATA"})
mkdir -p "$out"

stage() {  # name, command...
  local name=$1; shift
  if [[ -n "${ONLY:-}" && ! "$name" =~ $ONLY ]]; then return; fi
  echo "== $name" | tee -a "$out/summary.txt"
  if "$@" > "$out/$name.log" 2>&1; then
    grep -v '^\[bench\]\|Loading weights' "$out/$name.log" | tail -40 | tee -a "$out/summary.txt"
  else
    echo "$name failed:" | tee -a "$out/summary.txt"; tail -20 "$out/$name.log" | tee -a "$out/summary.txt"
  fi
}

bench=(python benchmarks/bench_pretrain.py --device cuda --batch_size 64 --seq_length 256 --steps "$steps"
       --logging_steps 20 "${data[@]}")
for size in 60m 180m; do
  stage "side-$size" "${bench[@]}" --model_size "$size" --vocab_size 8000 --output "$out/side-$size.json"
done
for size in 20m 60m 180m; do
  for vocab in 8000 50257; do
    stage "table-$size-$vocab" "${bench[@]}" --model_size "$size" --vocab_size "$vocab" --sides ours \
      --output "$out/table-$size-$vocab.json"
  done
done
stage masked-60m "${bench[@]}" --objective mlm --model_size 60m --vocab_size 8000 --sides ours trainer \
  --output "$out/masked-60m.json"
stage loss python benchmarks/bench_loss.py --device cuda --precision bf16 --model_size 60m --batch_size 64 \
  --vocab_size 50257
stage moe python benchmarks/bench_moe.py --device cuda --dtype bfloat16 --output "$out/moe.json"
