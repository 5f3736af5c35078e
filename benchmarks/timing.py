"""Timing one callable in its own block, and the thread pools it runs on.

Each contestant is timed alone: warm-up calls first, then several timed
rounds, and the median counts. Timing two libraries call by call
(interleaved) is not fair on a small machine: OpenBLAS's and torch's OpenMP
worker threads keep spinning for a while after a call and slow the other
library's next call. The warm-up of each block absorbs the previous block's
spinning tail.

The memory allocator is pinned too (`pin_allocator`). By default glibc hands
a large freed block back to the operating system, so a call that allocates a
16 MB result page-faults all of it in again, call after call, depending on
what was allocated before: the same convolution then took 1 ms in one block
and 10 ms in another. Pinned, every call reuses memory, as a long-running
program's would, and a time is the library's own work.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import statistics
import time
from collections.abc import Callable, Iterator

import torch
from threadpoolctl import threadpool_info, threadpool_limits


def time_alone(
    fn: Callable[[], object], rounds: int = 20, warmup: int = 3, warmup_seconds: float = 0.2
) -> dict[str, float]:
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
    return summary(time_rounds({"fn": fn}, rounds, warmup, warmup_seconds)["fn"])


def time_rounds(
    fns: dict[str, Callable[[], object]], rounds: int = 20, warmup: int = 3, warmup_seconds: float = 0.2
) -> dict[str, list[float]]:
    """Time callables of one library in the same rounds: each round calls each once, in turn.

    Work that is compared with itself (a convolution and the matrix product inside it)
    then meets the same state of a busy machine, round by round, and the ratio of two
    times is taken within each round. Two libraries are still timed each alone
    (`time_alone`): their worker threads would slow each other.

    Returns:
        Each name's times in ms, one per round. Raises as `time_alone` does.
    """
    if rounds < 1 or warmup < 0 or warmup_seconds < 0:
        raise ValueError(
            f"need rounds >= 1, warmup >= 0 and warmup_seconds >= 0, "
            f"got rounds={rounds}, warmup={warmup}, warmup_seconds={warmup_seconds}"
        )
    start, calls = time.perf_counter(), 0
    while calls < warmup or time.perf_counter() - start < warmup_seconds:
        for fn in fns.values():
            fn()
        calls += 1
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def summary(times_ms: list[float]) -> dict[str, float]:
    """``{"median_ms", "min_ms", "max_ms"}`` of a list of times in ms."""
    return {"median_ms": statistics.median(times_ms), "min_ms": min(times_ms), "max_ms": max(times_ms)}


# glibc's mallopt parameters (malloc.h): keep freed memory in the process.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
PINNED = {"M_MMAP_THRESHOLD": 2**30, "M_TRIM_THRESHOLD": 2**31 - 1}


def pin_allocator() -> dict | None:
    """Make glibc's malloc keep freed memory (no mmap below 1 GiB, no trimming); return what was set.

    Returns None where the C library is not glibc (macOS, Windows, musl):
    there the allocator is left as it is, and results.json says so.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not (
        mallopt(_M_MMAP_THRESHOLD, PINNED["M_MMAP_THRESHOLD"])
        and mallopt(_M_TRIM_THRESHOLD, PINNED["M_TRIM_THRESHOLD"])
    ):
        return None
    return {"library": "glibc", "mallopt": PINNED}


def thread_pools() -> list[dict]:
    """The native thread pools loaded in this process, as threadpoolctl reads them."""
    return [
        {key: pool.get(key) for key in ("user_api", "internal_api", "prefix", "version", "num_threads")}
        for pool in threadpool_info()
    ]


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
            yield thread_pools() + [
                {
                    "user_api": "torch",
                    "internal_api": "torch.get_num_threads",
                    "prefix": "torch",
                    "version": torch.__version__,
                    "num_threads": torch.get_num_threads(),
                }
            ]
    finally:
        torch.set_num_threads(previous)
