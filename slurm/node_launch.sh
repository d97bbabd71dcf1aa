#!/bin/bash
# One node's part of a run: `accelerate launch ARGS...`, with SIGUSR1 / SIGTERM passed on to the
# training processes (the launcher's children). The launcher itself would die of SIGUSR1; the
# trainer catches it, all ranks agree to stop at the same step, and a checkpoint is written.
# Used by the sbatch templates directly (one node) or through srun (one task per node).
${PYTHON:-python} -m accelerate.commands.launch "$@" &
launcher=$!
# shellcheck disable=SC2317  # called from the traps
forward() { pkill "-$1" -P "$launcher"; }
trap 'forward USR1' USR1
trap 'forward TERM' TERM
while true; do
  wait "$launcher"
  status=$?
  kill -0 "$launcher" 2>/dev/null || break
done
exit "$status"
