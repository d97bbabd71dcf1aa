# The logic every sbatch template shares; the templates only set variables and call these.
# Sourced (not run) from the repository root by slurm/<cluster>/*.sbatch.

# The value of option $1 among the remaining arguments ("" when absent).
option_value() {
  local name=$1; shift
  while (( $# )); do
    if [[ $1 == "$name" ]]; then echo "${2:-}"; return; fi
    if [[ $1 == "$name="* ]]; then echo "${1#*=}"; return; fi
    shift
  done
}

# A train_pretrain.py run is finished once final/milestone.json exists (what the trainer checks too).
run_finished() { [[ -f "$1/final/milestone.json" ]]; }

# Run "$@" (a training command) in the background and wait for it. Slurm's warning before the time
# limit (--signal=B:USR1@...) reaches this shell only: pass it on, let the trainer write a
# checkpoint and exit, then requeue the job, which resumes with --resume_from_checkpoint auto.
# SIGTERM (scancel, pre-emption) is passed on too, so the trainer checkpoints, but it never
# requeues: Slurm itself decides what happens to a cancelled or pre-empted job.
# A run that finished (final/ written) is never requeued.
run_requeueable() {
  local output_dir=$1; shift
  local warned=0 terminated=0 status child
  "$@" &
  child=$!
  trap 'warned=1; echo "babytrain: time limit near (SIGUSR1): checkpointing"; kill -USR1 "$child" 2>/dev/null' USR1
  trap 'terminated=1; echo "babytrain: SIGTERM: checkpointing, not requeueing"; kill -TERM "$child" 2>/dev/null' TERM
  while true; do
    wait "$child"
    status=$?
    kill -0 "$child" 2>/dev/null || break  # wait returned for a trapped signal: the run goes on
  done
  trap - USR1 TERM
  if run_finished "$output_dir"; then
    echo "babytrain: $output_dir finished"
    return 0
  fi
  if (( terminated )); then
    echo "babytrain: $output_dir stopped by SIGTERM (status $status); not requeued"
    return "$status"
  fi
  if (( warned )) || (( status == 75 )); then  # 75: the trainer stopped with a checkpoint (EX_TEMPFAIL)
    echo "babytrain: $output_dir stopped with a checkpoint (status $status); requeueing job $SLURM_JOB_ID"
    scontrol requeue "$SLURM_JOB_ID"
    return 0
  fi
  return "$status"
}

# Refuse to start without an --output_dir: a requeued job must find its run again.
require_output_dir() {
  if [[ -z "$1" ]]; then
    echo "babytrain: pass --output_dir (a requeued job resumes from the checkpoints there)" >&2
    exit 2
  fi
}

# The first node of the allocation, where rank 0 and the rendezvous live.
head_node() { scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1; }

# A rendezvous port that two jobs sharing a node are unlikely to both pick.
rendezvous_port() { echo $(( 20000 + ${SLURM_JOB_ID:-0} % 20000 )); }

# --- what the templates run -------------------------------------------------------------------
# Each reads the settings block of its template: GPUS_PER_NODE, ACCELERATE_CONFIG, ENV_SETUP.

enter_repository() {
  cd "${BABYTRAIN_DIR:-$SLURM_SUBMIT_DIR}" || exit 2
  eval "$ENV_SETUP" || { echo "babytrain: ENV_SETUP failed: $ENV_SETUP" >&2; exit 2; }
  echo "babytrain: job ${SLURM_JOB_ID} on $(hostname -s), restart ${SLURM_RESTART_COUNT:-0}, $(date -Is)"
}

# train_pretrain.py on the GPUs of this node: pretrain_one_node TRAIN_PRETRAIN_ARGS...
pretrain_one_node() {
  enter_repository
  launch_pretraining "$@"
}

launch_pretraining() {
  local output_dir
  output_dir=$(option_value --output_dir "$@")
  require_output_dir "$output_dir"
  if run_finished "$output_dir"; then echo "babytrain: $output_dir already finished"; return 0; fi
  run_requeueable "$output_dir" bash slurm/node_launch.sh --config_file "$ACCELERATE_CONFIG" \
    --num_processes "$GPUS_PER_NODE" train_pretrain.py "$@" --resume_from_checkpoint auto
}

# train_pretrain.py over every node of the allocation, one `accelerate launch` per node (srun).
# SLURM_NODEID is read by each node's own shell (single quotes), never by this one.
pretrain_multi_node() {
  enter_repository
  local output_dir
  output_dir=$(option_value --output_dir "$@")
  require_output_dir "$output_dir"
  if run_finished "$output_dir"; then echo "babytrain: $output_dir already finished"; return 0; fi
  HEAD_NODE=$(head_node)
  RENDEZVOUS_PORT=$(rendezvous_port)
  export HEAD_NODE RENDEZVOUS_PORT GPUS_PER_NODE ACCELERATE_CONFIG
  echo "babytrain: $SLURM_NNODES nodes x $GPUS_PER_NODE processes, rendezvous at $HEAD_NODE:$RENDEZVOUS_PORT"
  # shellcheck disable=SC2016  # the single quotes are the point: each node expands these itself
  run_requeueable "$output_dir" srun --nodes="$SLURM_NNODES" --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c '
    exec bash slurm/node_launch.sh --config_file "$ACCELERATE_CONFIG" \
      --num_machines "$SLURM_NNODES" --machine_rank "$SLURM_NODEID" \
      --main_process_ip "$HEAD_NODE" --main_process_port "$RENDEZVOUS_PORT" \
      --num_processes $(( SLURM_NNODES * GPUS_PER_NODE )) "$@"' node_launch \
    train_pretrain.py "$@" --resume_from_checkpoint auto
}

# Row SLURM_ARRAY_TASK_ID of an experiment grid (experiments/*.csv) as one pretraining run.
pretrain_grid_row() {
  local grid=$1 arguments
  enter_repository
  arguments=$(${PYTHON:-python} -m common.training.grid "$grid" "$SLURM_ARRAY_TASK_ID") || exit 2
  echo "babytrain: $grid row $SLURM_ARRAY_TASK_ID: train_pretrain.py $arguments"
  eval "set -- $arguments"  # common.training.grid quotes each argument for the shell
  launch_pretraining "$@"
}

# An evaluation script (eval_blimp.py, finetune_glue.py, classify_docs.py) on this node's GPUs.
evaluate() {
  enter_repository
  bash slurm/node_launch.sh --config_file "$ACCELERATE_CONFIG" --num_processes "$GPUS_PER_NODE" "$@"
}
