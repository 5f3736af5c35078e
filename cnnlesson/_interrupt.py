"""Ctrl-C in the `cnnlesson` program: what counts as one, and the end a program stopped by it has.

Only the standard library here: `cnnlesson.__main__` needs these before the
command line's modules have imported torch, which takes seconds.
"""

import os
import signal
import sys
from typing import NoReturn


def wraps_ctrl_c(err: BaseException) -> bool:
    """Whether `err` was raised by a Ctrl-C.

    Python 3.11 turns a KeyboardInterrupt raised in a class's ``__set_name__``
    (torch defines such classes while it imports) into a RuntimeError caused by it.
    """
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def end_by_sigint() -> NoReturn:
    """End the program by SIGINT, as Python ends any program Ctrl-C stopped (status 130 where there are no signals).

    So a shell loop running this program stops too (the shell's status is
    130 either way). Exiting with 130 would not be reliable: CPython ends the
    process by SIGINT anyway when the Ctrl-C landed in code run by exec() or
    eval() of a string, as namedtuple and dataclass do while torchvision imports.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    sys.exit(130)
