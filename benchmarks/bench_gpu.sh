#!/usr/bin/env bash
# Throughput of the size presets on one GPU (--num_processes 1 overrides the configs' GPU count): tokens/s and MFU from the trainer's own metrics.jsonl,
# for plain bf16 autocast, bf16 + torch.compile, and DeepSpeed ZeRO-2 (bf16).
#
#   bash benchmarks/bench_gpu.sh [OUT_DIR] [STEPS]
#   ONLY='zero2|electra' bash benchmarks/bench_gpu.sh   # only the runs whose name matches
#
# Runs on the synthetic corpus, so it needs no data and no network. The summary (one row per run)
# is printed at the end and written to OUT_DIR/summary.md; benchmarks/summarize_runs.py reads
# the runs' metrics, skipping the first logging intervals (compilation and warm-up).
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-bench_gpu_runs}
steps=${2:-300}
mkdir -p "$out"

run() {  # name, accelerate config, extra trainer flags...
  local name=$1 config=$2; shift 2
  if [[ -n "${ONLY:-}" && ! "$name" =~ $ONLY ]]; then return; fi
  echo "== $name"
  accelerate launch --config_file "accelerate_configs/$config" --num_processes 1 train_pretrain.py \
    --dataset synthetic --synthetic_words 4000000 --vocab_size 8000 --seq_length 256 \
    --max_steps "$steps" --logging_steps 20 --eval_steps 100000 --max_eval_samples 64 --checkpointing_steps 0 \
    --save_init false --output_dir "$out/$name" --overwrite_output_dir "$@" \
    > "$out/$name.log" 2>&1 || { echo "$name failed:"; tail -20 "$out/$name.log"; }
}

for size in 60m 180m; do
  run "llama-$size-bf16" single_gpu.yaml --model_size "$size" --per_device_train_batch_size 64
  run "llama-$size-bf16-compile" single_gpu.yaml --model_size "$size" --per_device_train_batch_size 64 --torch_compile
  run "llama-$size-zero2" deepspeed_zero2.yaml --model_size "$size" --per_device_train_batch_size 64
done
# The masked objectives at the 60m discriminator shape (ELECTRA's generator is a quarter as wide).
run "bert-60m-bf16" single_gpu.yaml --model_type bert --model_size 60m --per_device_train_batch_size 64
run "electra-60m-bf16" single_gpu.yaml --model_type electra --model_size 60m --per_device_train_batch_size 64
run "electra_moe-8x2-60m-bf16" single_gpu.yaml --model_type electra_moe --num_experts 8 --num_experts_per_tok 2 \
  --model_size 60m --per_device_train_batch_size 64
run "electra-60m-zero2" deepspeed_zero2.yaml --model_type electra --model_size 60m --per_device_train_batch_size 64

python benchmarks/summarize_runs.py "$out"/*/ --nominal_peak_tflops "${NOMINAL_PEAK_TFLOPS:-989}" | tee "$out/summary.md"
