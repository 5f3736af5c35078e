"""Argument checks the modules share: one clear error naming the argument, what it got and what it expects."""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import TypeGuard


def is_int(value: object) -> TypeGuard[numbers.Integral]:
    """Return True for a Python or NumPy integer; False for bool, an int subclass but never a count."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and type(value).__name__ != "bool_"


def check_int(name: str, value: object, low: int | None = None, high: int | None = None) -> int:
    """Return `value` as a Python int, or raise naming `name`, the value and the range expected."""
    if not is_int(value):
        raise TypeError(f"{name}: expected an int, got {value!r} of type {type(value).__name__}")
    value = int(value)  # a Python int: NumPy integers overflow silently in arithmetic
    if (low is not None and value < low) or (high is not None and value > high):
        if high is None:
            expected = f"an int >= {low}"
        elif low is None:
            expected = f"an int <= {high}"
        else:
            expected = f"an int from {low} to {high}"
        raise ValueError(f"{name}: expected {expected}, got {value}")
    return value


def check_folder(name: str, value: object) -> Path:
    """Return `value` as a Path, or raise naming `name`: a str or os.PathLike is expected."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a folder path (str or os.PathLike), got {type(value).__name__}")
    path = Path(value)
    if "\x00" in str(path):  # the OS would only say "embedded null byte", naming no path
        raise ValueError(f"{name}: {str(path)!r} holds a NUL byte, which no path can hold")
    return path
