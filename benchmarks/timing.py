"""Side-by-side timing of callables that compute the same thing.

Machine noise (other processes, CPU frequency changes, cache state) drifts over
seconds, so timing one function fully and then the other would blame that drift
on whichever ran second.  `time_side_by_side` interleaves the calls round-robin
so that drift hits every candidate equally, and reports medians, which ignore
the occasional call that was descheduled.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable


def time_side_by_side(fns: dict[str, Callable[[], object]], repeat: int = 20,
                      warmup: int = 3) -> dict[str, float]:
    """Time several zero-argument callables interleaved and return their median times.

    Args:
        fns: Name -> callable taking no arguments (wrap arguments in a lambda).
        repeat: Timed calls of each callable (at least 1).
        warmup: Untimed calls of each callable first (caches, allocator, lazy init).

    Returns:
        Name -> median wall-clock seconds per call, in the order of ``fns``.

    Raises:
        ValueError: If ``fns`` is empty, ``repeat < 1`` or ``warmup < 0``.
    """
    if not fns:
        raise ValueError("fns must name at least one callable, got an empty dict")
    if repeat < 1 or warmup < 0:
        raise ValueError(f"need repeat >= 1 and warmup >= 0, got repeat={repeat}, warmup={warmup}")
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():  # round-robin: one call of each per round
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}
