#!/bin/bash
# One node's part of a run: `accelerate launch ARGS...`, with SIGUSR1 / SIGTERM passed on to the
# training processes (the launcher's children): the trainer catches either, all ranks agree to stop
# at the same step, and a checkpoint is written.
# Used by the sbatch templates directly (one node) or through srun (one task per node).
# The launcher itself is kept out of the way of both signals. Slurm may signal every process of the
# step (proctrack/linuxproc, cgroup): the launcher would die of SIGUSR1, and on SIGTERM it would
# pass the signal on and SIGKILL its training processes 30 s later, in the middle of a large
# checkpoint. So it ignores both, and torch's launcher is told not to handle SIGTERM
# (TORCHELASTIC_SIGNALS_TO_HANDLE); the training processes install their own handlers, which
# override the inherited "ignore". Slurm's own KillWait still bounds how long a job may take to end.
(
  trap '' USR1 TERM
  export TORCHELASTIC_SIGNALS_TO_HANDLE=SIGINT,SIGHUP,SIGQUIT
  exec ${PYTHON:-python} -m accelerate.commands.launch "$@"
) &
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
