"""Timing one callable in its own block, and the thread pools it runs on.

Each contestant is timed alone: warm-up calls first, then several timed
rounds, and the median counts. Timing two libraries call by call
(interleaved) is not fair on a small machine: OpenBLAS's and torch's OpenMP
worker threads keep spinning for a while after a call and slow the other
library's next call. The warm-up of each block absorbs the previous block's
spinning tail.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Callable, Iterator

import torch
from threadpoolctl import threadpool_info, threadpool_limits


def time_alone(fn: Callable[[], object], rounds: int = 20, warmup: int = 3,
               warmup_seconds: float = 0.2) -> dict[str, float]:
    """Time a zero-argument callable in its own block.

    Args:
        fn: The work, taking no arguments (wrap arguments in a lambda).
        rounds: Timed calls (at least 1).
        warmup: Untimed calls first (caches, allocator, lazy initialisation).
        warmup_seconds: Keep warming up at least this long, so that the worker
            threads of whatever ran before have gone quiet.

    Returns:
        ``{"median_ms", "min_ms", "max_ms"}`` of the timed calls, wall clock.

    Raises:
        ValueError: If ``rounds < 1``, ``warmup < 0`` or ``warmup_seconds < 0``.
    """
    if rounds < 1 or warmup < 0 or warmup_seconds < 0:
        raise ValueError(f"need rounds >= 1, warmup >= 0 and warmup_seconds >= 0, "
                         f"got rounds={rounds}, warmup={warmup}, warmup_seconds={warmup_seconds}")
    start, calls = time.perf_counter(), 0
    while calls < warmup or time.perf_counter() - start < warmup_seconds:
        fn()
        calls += 1
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median_ms": statistics.median(times) * 1e3, "min_ms": min(times) * 1e3, "max_ms": max(times) * 1e3}


def thread_pools() -> list[dict]:
    """The native thread pools loaded in this process, as threadpoolctl reads them."""
    return [{key: pool.get(key) for key in ("user_api", "internal_api", "prefix", "version", "num_threads")}
            for pool in threadpool_info()]


@contextlib.contextmanager
def same_threads(threads: int) -> Iterator[list[dict]]:
    """Run NumPy's BLAS and torch on `threads` threads each; yields every pool's threads as read inside."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            # Read back, not assumed: a BLAS that ignores the limit shows here.
            yield thread_pools() + [{"user_api": "torch", "internal_api": "torch.get_num_threads",
                                     "prefix": "torch", "version": torch.__version__,
                                     "num_threads": torch.get_num_threads()}]
    finally:
        torch.set_num_threads(previous)
