"""Atomic file writes, and a lock that keeps two runs out of one folder.

A crash mid-write never leaves a half-written file, a finished write survives
a power cut, and a rewritten file keeps its permissions (a new one gets what a
plain `open` gives it: 0666 minus the umask). The lock never follows a
symbolic link: nothing outside the locked folder is created or changed.
"""

import contextlib
import errno
import os
import re
import secrets
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["FolderLockedError", "LOCK_NAME", "atomic_path", "check_can_create", "lock_folder", "write_text_atomic"]

LOCK_NAME = ".cnnlesson.lock"
# Temporary files are named ".NAME.PID-TOKEN.tmpSUFFIX": the PID tells a later
# write whether the process that made one is gone (a kill -9 mid-save).
_TMP_NAME = ".{name}.{pid}-{token}.tmp{suffix}"
_STALE_SECONDS = 3600  # where a PID cannot be checked (Windows), only this old counts as orphaned
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # Windows has none: there the link is looked for first
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class FolderLockedError(OSError):
    """Another process holds the lock on a folder."""


def _pid_alive(pid: int) -> bool | None:
    """Whether process `pid` runs on this machine; None where that cannot be asked."""
    if os.name != "posix":
        return None  # os.kill(pid, 0) would terminate the process on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    return True


def _remove_orphans(path: Path) -> None:
    """Delete temporary files of `path` left by a writer that died mid-write."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)-[0-9a-f]+\.tmp{re.escape(path.suffix)}")
    for candidate in path.parent.iterdir():
        match = pattern.fullmatch(candidate.name)
        if match is None:
            continue
        alive = _pid_alive(int(match.group(1)))
        with contextlib.suppress(OSError):  # gone already, or not ours to delete
            if alive is False or (alive is None and time.time() - candidate.lstat().st_mtime > _STALE_SECONDS):
                candidate.unlink()


def _create_temp(path: Path) -> Path:
    """Create an empty temporary file next to `path`: with `path`'s mode if it exists, else 0666 minus the umask."""
    while True:
        tmp = path.parent / _TMP_NAME.format(
            name=path.name, pid=os.getpid(), token=secrets.token_hex(8), suffix=path.suffix
        )
        try:
            # Unlike mkstemp (always 0600), os.open applies the umask as open() does.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        try:
            with contextlib.suppress(FileNotFoundError):
                os.chmod(fd if os.chmod in os.supports_fd else tmp, stat.S_IMODE(os.stat(path).st_mode))
        finally:
            os.close(fd)
        return tmp


def _fsync(path: Path, folder: bool = False) -> None:
    """Flush `path` to disk; a folder on POSIX only (Windows has no folder handles to sync)."""
    if folder and os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY if folder else os.O_RDWR)  # Windows' fsync needs a file open for writing
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

    Raises:
        OSError: the write failed; a full disk is said so, naming `path`.

    Example:
        >>> with atomic_path("history.json") as tmp:  # doctest: +SKIP
        ...     tmp.write_text("[]")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path)
    # Keep the suffix so writers that infer a format from it (savefig) work.
    try:
        tmp = _create_temp(path)
    except OSError as err:  # a disk out of inodes refuses the new file itself
        if err.errno in _DISK_FULL:
            raise OSError(f"the disk is full: cannot write {path}") from None
        raise
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)  # replaces a symbolic link itself, never writes through it
        _fsync(path.parent, folder=True)
    except OSError as err:
        if err.errno in _DISK_FULL:
            raise OSError(f"the disk is full: cannot write {path}") from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def check_can_create(folder: str | os.PathLike) -> Path:
    """Create `folder` if missing, then a new file in it, and remove that file again; return the folder.

    The probe file gets a name no file has yet (random, and created with
    O_EXCL, which fails on any existing name), so no file already in the
    folder is touched, whatever its name.

    Raises:
        OSError: `folder` cannot be made, or no file can be created in it (the OS's reason in `strerror`).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / ".cnnlesson-write-test"
    _remove_orphans(probe)  # probes of earlier runs killed between the create and the unlink below
    tmp = folder / _TMP_NAME.format(name=probe.name, pid=os.getpid(), token=secrets.token_hex(8), suffix="")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # O_EXCL: never an existing name
    tmp.unlink()
    return folder


def what_is(path: str | os.PathLike) -> str:
    """What is at `path`, in words ("a folder", "a symbolic link loop", ...), for errors that expected a plain file."""
    path = Path(path)
    try:
        info = os.stat(path)
    except OSError as err:
        if not os.path.islink(path):
            return "nothing" if isinstance(err, FileNotFoundError) else f"unreadable ({err.strerror})"
        if err.errno == errno.ELOOP:
            return "a symbolic link loop"
        return f"a symbolic link to {os.readlink(path)}, which does not exist"
    kinds = {stat.S_ISDIR: "a folder", stat.S_ISFIFO: "a named pipe", stat.S_ISSOCK: "a socket"}
    kind = next((name for test, name in kinds.items() if test(info.st_mode)), None)
    if kind is None:
        kind = "a file" if stat.S_ISREG(info.st_mode) else "a device"
    return f"a symbolic link to {kind}" if os.path.islink(path) else kind


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` atomically (UTF-8) and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


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


def _make_folder(folder: Path) -> None:
    """Create `folder` and its parents, or raise one clear error naming it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        try:
            os.stat(folder)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise OSError(f"{folder} is a symbolic link loop") from None
            raise OSError(f"{folder} is a symbolic link to {os.readlink(folder)}, which does not exist") from None
        raise NotADirectoryError(f"{folder} is a file, not a folder") from None
    except NotADirectoryError:
        file = next((p for p in folder.parents if os.path.isfile(p)), folder.parent)
        raise NotADirectoryError(f"{file} is a file, not a folder") from None
    except PermissionError as err:
        raise PermissionError(f"cannot create {err.filename or folder} (Permission denied)") from None


def _open_lock(folder: Path, lock: Path) -> int:
    """Open (or create) the lock file without following a link; refuse anything but a plain file."""
    if _NOFOLLOW == 0 and os.path.islink(lock):
        raise OSError(f"{lock} is a symbolic link; remove it (the lock must be a plain file)")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o666)
    except OSError as err:
        if os.path.islink(lock):  # ELOOP on Linux and macOS, EMLINK on FreeBSD
            raise OSError(f"{lock} is a symbolic link; remove it (the lock must be a plain file)") from None
        if isinstance(err, (PermissionError, FileNotFoundError)) or err.errno in (errno.EROFS, *_DISK_FULL):
            raise type(err)(f"cannot create files in {folder} ({err.strerror})") from None
        raise OSError(f"cannot open the lock file {lock} ({err.strerror})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        os.close(fd)  # a hard link's other name lies elsewhere: writing here would change that file
        raise OSError(f"{lock} is not a plain file of its own (a hard link?); remove it")
    return fd


@contextlib.contextmanager
def lock_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive OS lock on `folder` (created if missing) for the block.

    The lock is a `fcntl.flock` (POSIX) or `msvcrt.locking` (Windows) on
    `folder/.cnnlesson.lock`, so the OS drops it when the process ends, even
    by `kill -9`: a crashed run never leaves the folder locked. The lock file
    is opened without following links, and refused if it is anything but a
    plain file. When the lock created `folder` and the block put nothing in it
    (a run that failed early), the lock file and the folders it created are
    removed again.

    Raises:
        FolderLockedError: another process holds the lock.
        OSError: the folder cannot be created or written, or the lock file is
            a link; each message names the folder or the file.
    """
    folder = Path(folder)
    created = [p for p in (folder, *folder.parents) if not os.path.lexists(p)]  # deepest first
    _make_folder(folder)
    lock = folder / LOCK_NAME
    fd = _open_lock(folder, lock)
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
            with contextlib.suppress(OSError):  # a run that came in meanwhile keeps its file, and so the folder
                if os.name != "posix":
                    lock.unlink()  # Windows deletes no open file: only now, after the close
                for path in created:
                    path.rmdir()


def _holds_only_the_lock(folder: Path) -> bool:
    """Whether the lock file is all there is in `folder`."""
    try:
        return os.listdir(folder) == [LOCK_NAME]
    except OSError:
        return False
