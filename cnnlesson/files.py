"""Durable atomic file writes, and a lock that keeps two runs out of one folder.

A crash mid-write never leaves a half-written file, a finished write survives
a power cut, and a file written here gets the permissions a plain `open`
would give it (0666 minus the umask).
"""

import contextlib
import glob
import os
import re
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path

# Temporary files are named ".NAME.PID-TOKEN.tmpSUFFIX": the PID tells a later
# write whether the process that made one is gone (a kill -9 mid-save).
_TMP_NAME = ".{name}.{pid}-{token}.tmp{suffix}"
_STALE_SECONDS = 3600  # where a PID cannot be checked (Windows), only this old counts as orphaned


def _pid_alive(pid: int) -> bool | None:
    """Whether process `pid` runs on this machine; None where that cannot be asked."""
    if os.name != "posix":
        return None  # os.kill(pid, 0) would terminate the process on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _remove_orphans(path: Path) -> None:
    """Delete temporary files of `path` left by a writer that died mid-write."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)-[0-9a-f]+\.tmp{re.escape(path.suffix)}")
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.*.tmp*"):
        match = pattern.fullmatch(candidate.name)
        if match is None:
            continue
        alive = _pid_alive(int(match.group(1)))
        with contextlib.suppress(OSError):  # gone already, or not ours to delete
            if alive is False or (alive is None and time.time() - candidate.stat().st_mtime > _STALE_SECONDS):
                candidate.unlink()


def _create_temp(path: Path) -> Path:
    """Create an empty temporary file next to `path`, mode 0666 minus the umask."""
    while True:
        tmp = path.parent / _TMP_NAME.format(name=path.name, pid=os.getpid(), token=secrets.token_hex(8), suffix=path.suffix)
        try:
            # Unlike mkstemp (always 0600), os.open applies the umask as open() does.
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def _fsync_file(path: Path) -> None:
    with open(path, "r+b") as f:  # Windows' fsync needs a handle open for writing
        os.fsync(f.fileno())


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX; Windows has no folder handles to sync)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; move it onto `path` on success.

    Write the whole file to the yielded path. When the block ends without an
    exception the file is flushed to disk and replaces `path` in one
    `os.replace` (atomic on POSIX and Windows, since both lie in the same
    folder), and the folder is synced so the rename survives a power cut;
    otherwise the temporary file is removed and `path` keeps its old content.
    Temporary files that a killed writer left behind for `path` are removed.

    Example:
        >>> with atomic_path("history.json") as tmp:  # doctest: +SKIP
        ...     tmp.write_text("[]")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path)
    # Keep the suffix so writers that infer a format from it (savefig) work.
    tmp = _create_temp(path)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` atomically (UTF-8) and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


class FolderLockedError(OSError):
    """Another process holds the lock on a folder."""


LOCK_NAME = ".cnnlesson.lock"


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def lock_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive OS lock on `folder` (created if missing) for the block.

    The lock is a `fcntl.flock` (POSIX) or `msvcrt.locking` (Windows) on
    `folder/.cnnlesson.lock`, so the OS drops it when the process ends, even
    by `kill -9`: a crashed run never leaves the folder locked. When the lock
    created `folder` and the block put nothing in it (a run that failed
    early), the lock file and the folders it created are removed again.

    Raises:
        FolderLockedError: another process holds the lock.
        OSError: the folder cannot be created or written.
    """
    folder = Path(folder)
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    unused = False
    try:
        if not _try_lock(fd):
            holder = "unknown"
            with contextlib.suppress(OSError):  # Windows forbids reading a locked byte
                holder = os.read(fd, 64).decode("ascii", "replace").strip() or holder
            raise FolderLockedError(f"{folder} is in use by another cnnlesson run (pid {holder})")
        with contextlib.suppress(OSError):  # the PID is only for the message above
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        try:
            yield folder
        finally:
            unused = bool(created) and _holds_only_the_lock(folder)
            if unused and os.name == "posix":
                # Unlinked while still locked: a run that opened the file meanwhile cannot lock it.
                with contextlib.suppress(OSError):
                    lock.unlink()
    finally:
        os.close(fd)  # closing releases the lock
        if unused:
            _remove_unused(lock, created)


def _holds_only_the_lock(folder: Path) -> bool:
    """Whether the lock file is all there is in `folder`."""
    try:
        return os.listdir(folder) == [LOCK_NAME]
    except OSError:
        return False


def _remove_unused(lock: Path, created: list[Path]) -> None:
    """Remove the lock file on Windows (POSIX unlinked it while locked) and the empty folders in `created`."""
    with contextlib.suppress(OSError):  # a run that came in meanwhile keeps its file, and so the folder
        if os.name != "posix":
            lock.unlink()  # Windows deletes no open file: only now, after the close
        for path in created:
            path.rmdir()
