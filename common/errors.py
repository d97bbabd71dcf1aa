"""The one exception type for bad user input, and the wrapper that turns it into one line."""

import errno
import os
import re
import sys


class UsageError(Exception):
    """Bad input from the user (a flag, a file, a value): shown as one line, exit status 2."""


class TrainingStopped(Exception):
    """A run that stopped on purpose (e.g. too many non-finite losses): one line, exit status 1."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (or its type), to quote inside a one-line error."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# A full disk, a full quota, or a file-size limit (`ulimit -f`).
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def run_main(main) -> None:
    """Call `main()`; a UsageError becomes `error: <message>` on stderr and exit status 2, a
    TrainingStopped or a full disk one `error:` line and status 1."""
    try:
        main()
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)
    except TrainingStopped as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
    except Exception as error:
        if lost_a_peer(error):  # not this process's fault: another one failed first and said why
            rank = os.environ.get("RANK", "?")
            print(f"error: process {rank} stopped: another process of this launch failed first (its error is "
                  f"above, or in its node's log)", file=sys.stderr, flush=True)  # fmt: skip
            sys.exit(1)
        reason = disk_full(error)
        if reason is None:
            raise
        print(
            f"error: {reason}: nothing complete was replaced by what was being written (a run resumes from "
            f"its newest complete checkpoint); free some space and launch again",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(1)


# What the collective backends say when the process at the other end is gone (gloo over TCP, NCCL).
PEER_LOST = ("Connection closed by peer", "Connection reset by peer", "remote worker crashing",
             "NCCL communicator was aborted", "remote process exited")  # fmt: skip


def lost_a_peer(error: BaseException) -> bool:
    """Whether `error` is a collective failing because another process of the launch died."""
    return type(error).__name__ == "DistBackendError" or any(marker in str(error) for marker in PEER_LOST)


def disk_full(error: BaseException) -> str | None:
    """What a write that found no room said ("No space left on device while writing X"), or None
    when `error` (or what caused it) is something else. Libraries that write in Rust (safetensors)
    say it in their message ("... (os error 28)") rather than as an OSError."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in DISK_FULL:
            return f"{error.strerror}" + (f" while writing {error.filename}" if error.filename else "")
        match = re.search(r"\(os error (\d+)\)", str(error))
        if match and int(match.group(1)) in DISK_FULL:
            return f"{os.strerror(int(match.group(1)))} ({first_line(error)})"
        error = error.__cause__ or error.__context__
    return None
