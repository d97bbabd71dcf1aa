"""A real one-node Slurm cluster on localhost (Debian's slurm-wlm 22.05 + munge), for tests that
submit the sbatch templates as a user would.

Needs root (munged runs as the munge user, the daemons as root) and the packages that .ci/run
installs; `LocalSlurm.unavailable()` says why it cannot run here otherwise. The daemons this
class starts are stopped by their pid files; a munged that was already running is left alone.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("slurmctld", "slurmd", "munged", "sbatch", "scontrol", "squeue")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def memory_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024 * 9 // 10  # leave the rest to the OS, as real nodes do
    raise RuntimeError("no MemTotal in /proc/meminfo")


def slurm_conf(folder: Path, host: str) -> str:
    return (
        "\n".join(
            [
                "ClusterName=babytrain-test",
                f"SlurmctldHost={host}",
                "AuthType=auth/munge",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core",
                "JobAcctGatherType=jobacct_gather/none",
                "SlurmUser=root",
                "SlurmdUser=root",
                "MpiDefault=none",
                "ReturnToService=2",
                # the main scheduling loop every 2 s, not 60: a requeued job or an array task waits for it
                "SchedulerParameters=sched_interval=2",
                "KillWait=30",  # the trainer's checkpoint on SIGTERM has this long
                f"SlurmctldPort={free_port()}",
                f"SlurmdPort={free_port()}",
                f"StateSaveLocation={folder / 'state'}",
                f"SlurmdSpoolDir={folder / 'spool'}",
                f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
                f"SlurmdPidFile={folder / 'slurmd.pid'}",
                f"SlurmctldLogFile={folder / 'slurmctld.log'}",
                f"SlurmdLogFile={folder / 'slurmd.log'}",
                f"NodeName={host} CPUs={os.cpu_count()} RealMemory={memory_mib()} State=UNKNOWN",
                f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP",
            ]
        )
        + "\n"
    )


class LocalSlurm:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.host = socket.gethostname().split(".")[0]
        self.conf = self.folder / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.started_munged = False
        self.hurried: set[str] = set()

    @staticmethod
    def unavailable() -> str | None:
        """Why a cluster cannot be started here (None: it can)."""
        missing = [name for name in DAEMONS if not shutil.which(name) and not Path("/usr/sbin", name).exists()]
        if missing:
            return f"Slurm is not installed ({', '.join(missing)} missing; apt-get install slurm-wlm munge)"
        if os.geteuid() != 0:
            return "a local Slurm cluster needs root (munged and slurmd)"
        return None

    # --- daemons ---------------------------------------------------------------------------

    def start(self) -> LocalSlurm:
        for sub in ("state", "spool"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(slurm_conf(self.folder, self.host))
        self.start_munge()
        subprocess.run(["slurmctld", "-f", str(self.conf)], check=True, env=self.env)
        subprocess.run(["slurmd", "-f", str(self.conf)], check=True, env=self.env)
        deadline = time.time() + 60
        while time.time() < deadline:
            state = self.run(["sinfo", "-h", "-o", "%T"], check=False).stdout.strip()
            if state == "idle":
                return self
            time.sleep(0.5)
        raise RuntimeError(f"the local Slurm node did not become idle:\n{self.logs()}")

    def start_munge(self) -> None:
        if subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode == 0:
            return  # a munged is already running with a key: share it
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            key.parent.mkdir(parents=True, exist_ok=True)
            key.write_bytes(os.urandom(128))
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
        run_dir = Path("/run/munge")
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.chown(run_dir, "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)
        self.started_munged = True

    def stop(self) -> None:
        for name in ("slurmd", "slurmctld"):
            stop_by_pid_file(self.folder / f"{name}.pid")
        if self.started_munged:
            stop_by_pid_file(Path("/run/munge/munged.pid"))

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.folder.glob("*.log")))

    # --- jobs ------------------------------------------------------------------------------

    def run(self, command: list[str], check: bool = True, **options) -> subprocess.CompletedProcess:
        return subprocess.run(command, env=self.env, capture_output=True, text=True, check=check, **options)

    def submit(
        self, script: str, sbatch_options: list[str], arguments: list[str], cwd: Path, export: dict[str, str]
    ) -> str:
        """sbatch a template from `cwd` (the repository) with options over its #SBATCH lines;
        `export`: settings the job sees in its environment on top of this process's."""
        exported = ",".join(["ALL", *(f"{key}={value}" for key, value in export.items())])
        done = self.run(
            ["sbatch", "--parsable", f"--export={exported}", *sbatch_options, script, *arguments], cwd=cwd, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"sbatch {script} failed: {done.stderr}")
        return done.stdout.strip().split(";")[0]

    def job_fields(self, job_id: str) -> list[dict[str, str]]:
        """`scontrol show job` as key=value mappings (one per array task), [] once it is gone."""
        shown = self.run(["scontrol", "-o", "show", "job", job_id], check=False)
        if shown.returncode != 0:
            return []
        return [
            dict(item.split("=", 1) for item in line.split() if "=" in item)
            for line in shown.stdout.splitlines()
            if line.strip()
        ]

    def wait(self, job_id: str, timeout: float = 600, while_pending=None) -> list[dict[str, str]]:
        """Wait until every task of the job has ended; their final fields. `while_pending(fields)`
        is called for a task that waits (e.g. to make a requeued one eligible at once)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            tasks = self.job_fields(job_id)
            for task in tasks:
                if task.get("JobState") == "PENDING" and while_pending:
                    while_pending(task)
            if tasks and all(t.get("JobState") in ENDED for t in tasks):
                return tasks
            time.sleep(1)
        raise TimeoutError(f"job {job_id} did not end within {timeout} s: {self.job_fields(job_id)}\n{self.logs()}")

    def start_now(self, task: dict[str, str]) -> None:
        """A requeued job waits ~2 minutes before it may start again (Slurm's BeginTime on
        requeue); a test need not. A few seconds stay: started at once, the new run can fail
        (exit 1, no output) while the node still clears the old one."""
        key = f"{task['JobId']}:{task.get('Restarts')}"
        if task.get("Reason") == "BeginTime" and key not in self.hurried:
            self.hurried.add(key)
            self.run(["scontrol", "update", f"JobId={task['JobId']}", "StartTime=now+5"], check=False)


ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED"}


def stop_by_pid_file(path: Path) -> None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
