"""`python -m cnnlesson ...`: the `cnnlesson` command, also as `torchrun -m cnnlesson ...`."""

from cnnlesson.cli import run

run()
