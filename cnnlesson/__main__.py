"""`python -m cnnlesson ...` and the `cnnlesson` command (also `torchrun -m cnnlesson ...`).

Nothing but the standard library is imported before `main` runs, so a Ctrl-C
while the command line's modules import torch (seconds) ends the program as
a Ctrl-C anywhere else does: one line on stderr, then SIGINT.
"""

import sys

from cnnlesson._interrupt import end_by_sigint, wraps_ctrl_c


def main() -> None:
    """Import the command line and run it; a Ctrl-C during the import says so and ends by SIGINT."""
    try:
        from cnnlesson.cli import run
    except BaseException as err:
        if not wraps_ctrl_c(err):
            raise
        print("cnnlesson: interrupted; nothing was written", file=sys.stderr)
        end_by_sigint()
    run()


if __name__ == "__main__":
    main()
