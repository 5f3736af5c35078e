"""`python -m cnnlesson ...`: the `cnnlesson` command, also as `torchrun -m cnnlesson ...`."""

import sys

from cnnlesson.cli import main

sys.exit(main())
