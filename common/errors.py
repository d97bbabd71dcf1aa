"""The one exception type for bad user input, and the wrapper that turns it into one line."""

import sys


class UsageError(Exception):
    """Bad input from the user (a flag, a file, a value): shown as one line, exit status 2."""


class TrainingStopped(Exception):
    """A run that stopped on purpose (e.g. too many non-finite losses): one line, exit status 1."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (or its type), to quote inside a one-line error."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def run_main(main) -> None:
    """Call `main()`; a UsageError becomes `error: <message>` on stderr and exit status 2."""
    try:
        main()
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)
    except TrainingStopped as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
