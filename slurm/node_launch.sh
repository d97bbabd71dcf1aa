#!/bin/bash
# One node's part of a run: `accelerate launch ARGS...`, with SIGUSR1 / SIGTERM passed on to the
# training processes (the launcher's children). The launcher itself would die of SIGUSR1; the
# trainer catches it, all ranks agree to stop at the same step, and a checkpoint is written.
# Used by the sbatch templates directly (one node) or through srun (one task per node).
# The launcher ignores SIGUSR1: Slurm may signal every process of the step (proctrack/linuxproc,
# cgroup), and the launcher would die of it while its training processes checkpoint. The training
# processes install their own handler, which overrides the inherited "ignore".
(trap '' USR1; exec ${PYTHON:-python} -m accelerate.commands.launch "$@") &
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
