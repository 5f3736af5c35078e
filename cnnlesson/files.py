"""Atomic file writes: a crash mid-write never leaves a half-written file."""

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; move it onto `path` on success.

    Write the whole file to the yielded path. When the block ends without an
    exception the file replaces `path` in one `os.replace` (atomic on POSIX
    and Windows, since both lie in the same folder); otherwise it is removed
    and `path` keeps its old content.

    Example:
        >>> with atomic_path("history.json") as tmp:  # doctest: +SKIP
        ...     tmp.write_text("[]")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the suffix so writers that infer a format from it (savefig) work.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` atomically (UTF-8) and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
