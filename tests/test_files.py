"""Atomic writes: the old file survives a failed or killed write, the new one is durable
and readable like any other; the folder lock keeps a second process out."""

import contextlib
import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import cnnlesson
from cnnlesson.files import (
    LOCK_NAME,
    FolderLockedError,
    atomic_path,
    check_can_create,
    lock_folder,
    write_text_atomic,
)


def test_replaces_the_file_on_success(tmp_path):
    target = tmp_path / "sub" / "a.json"
    write_text_atomic(target, "old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]


def test_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(target) as tmp:
        tmp.write_text("half of the new conte")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_temporary_name_keeps_the_suffix(tmp_path):
    with atomic_path(tmp_path / "figure.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path
        tmp.write_bytes(b"x")


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002], ids=["022", "077", "002"])
def test_files_get_the_mode_a_plain_open_gives(tmp_path, mask):
    old = os.umask(mask)
    try:
        write_text_atomic(tmp_path / "a.json", "{}")
        (tmp_path / "plain.json").write_text("{}")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "a.json").stat().st_mode)
    assert mode == 0o666 & ~mask == stat.S_IMODE((tmp_path / "plain.json").stat().st_mode)


def test_the_file_is_replaced_not_rewritten_in_place(tmp_path):
    # A reader that opened the old file keeps reading the old, whole content: only a
    # rename gives that; copying over the old file would change what it reads.
    # (POSIX only for the open reader: Windows refuses to replace a file that is open.)
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"old" * 1000)
    before = target.stat().st_ino
    with open(target, "rb") if os.name == "posix" else contextlib.nullcontext() as reader:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"new")
            assert target.read_bytes() == b"old" * 1000  # nothing visible before the block ends
        if reader is not None:
            assert reader.read() == b"old" * 1000
    assert target.read_bytes() == b"new"
    if os.name == "posix":  # Windows has no stable inode numbers to compare
        assert target.stat().st_ino != before


def test_file_and_folder_are_synced_before_and_after_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(
        os, "fsync", lambda fd: events.append(("fsync", stat.S_ISDIR(os.fstat(fd).st_mode))) or real_fsync(fd)
    )
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("replace",)) or real_replace(a, b))
    write_text_atomic(tmp_path / "a.json", "{}")
    expected = [("fsync", False), ("replace",)] + ([("fsync", True)] if os.name == "posix" else [])
    assert events == expected


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


@pytest.mark.skipif(os.name != "posix", reason="orphans are recognised by PID on POSIX")
def test_orphans_of_a_killed_writer_are_removed_and_live_ones_kept(tmp_path):
    target = tmp_path / "checkpoint.pt"
    orphan = tmp_path / f".checkpoint.pt.{_dead_pid()}-0123456789abcdef.tmp.pt"
    live = tmp_path / f".checkpoint.pt.{os.getpid()}-0123456789abcdef.tmp.pt"  # a write still under way
    other = tmp_path / ".history.json.1-0123456789abcdef.tmp.json"  # another file's: not this write's business
    for path in (orphan, live, other):
        path.write_bytes(b"x" * 100)
    write_text_atomic(target, "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["checkpoint.pt", live.name, other.name])


@pytest.mark.skipif(os.name != "posix", reason="kill -9")
def test_a_write_killed_midway_leaves_the_old_file_and_its_orphan_is_cleaned_up(tmp_path):
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"old")
    code = (
        "import sys, time; from cnnlesson.files import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    tmp.write_bytes(b'half'); print('writing', flush=True); time.sleep(60)\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE, text=True, env=_env())
    assert writer.stdout.readline() == "writing\n"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert target.read_bytes() == b"old" and len(list(tmp_path.iterdir())) == 2  # the orphan
    write_text_atomic(target, "new")
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"] and target.read_text() == "new"


def _env():
    root = str(Path(cnnlesson.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}


HOLD = (
    "import sys, time; from cnnlesson.files import lock_folder\n"
    "with lock_folder(sys.argv[1]):\n"
    "    print('locked', flush=True); time.sleep(60)\n"
)


def test_a_second_process_cannot_lock_the_folder_until_the_first_dies(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=_env()
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        with (
            pytest.raises(
                FolderLockedError, match=rf"{re.escape(str(tmp_path))} is in use by another cnnlesson run \(pid"
            ),
            lock_folder(tmp_path),
        ):
            pass
    finally:
        holder.kill()  # SIGKILL on POSIX: no clean-up code runs, the OS drops the lock
        holder.wait()
    with lock_folder(tmp_path):
        pass


def test_the_lock_creates_the_folder_and_is_reentrant_after_release(tmp_path):
    with lock_folder(tmp_path / "new" / "out") as folder:
        assert folder.is_dir()
    with lock_folder(tmp_path / "new" / "out"):
        pass


def test_a_folder_the_lock_created_and_nothing_filled_is_removed(tmp_path):
    with lock_folder(tmp_path / "new" / "out"):
        pass  # a run that failed before writing anything
    assert list(tmp_path.iterdir()) == []
    with lock_folder(tmp_path / "kept") as folder:
        (folder / "history.json").write_text("[]")
    assert sorted(p.name for p in folder.iterdir()) == [".cnnlesson.lock", "history.json"]


@pytest.mark.skipif(os.name != "posix", reason="symbolic links need privileges on Windows")
def test_the_lock_never_follows_a_link(tmp_path):
    folder, victim = tmp_path / "out", tmp_path / "victim.txt"
    folder.mkdir()
    victim.write_bytes(b"the user's own file\n")
    (folder / LOCK_NAME).symlink_to(victim)
    with (
        pytest.raises(OSError, match=rf"^{re.escape(str(folder / LOCK_NAME))} is a symbolic link; remove it"),
        lock_folder(folder),
    ):
        pytest.fail("locked through a link")
    assert victim.read_bytes() == b"the user's own file\n"
    (folder / LOCK_NAME).unlink()
    (folder / LOCK_NAME).symlink_to(tmp_path / "nowhere")  # dangling: following it would create the file
    with pytest.raises(OSError, match="is a symbolic link"), lock_folder(folder):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "victim.txt"]


@pytest.mark.skipif(os.name != "posix", reason="hard links")
def test_the_lock_refuses_a_hard_link_to_another_file(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"keep me\n")
    (tmp_path / "out").mkdir()
    os.link(victim, tmp_path / "out" / LOCK_NAME)
    with pytest.raises(OSError, match="is not a plain file of its own"), lock_folder(tmp_path / "out"):
        pass
    assert victim.read_bytes() == b"keep me\n"


@pytest.mark.skipif(os.name != "posix", reason="symbolic links need privileges on Windows")
def test_a_link_loop_or_a_dangling_link_as_the_folder_is_named(tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with (
        pytest.raises(OSError, match=rf"^{re.escape(str(tmp_path / 'loop'))} is a symbolic link loop$"),
        lock_folder(tmp_path / "loop"),
    ):
        pass
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    with (
        pytest.raises(OSError, match=r"dangling is a symbolic link to .*gone, which does not exist$"),
        lock_folder(tmp_path / "dangling"),
    ):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "loop"]


def test_a_folder_where_the_lock_cannot_be_made_is_named(tmp_path, monkeypatch):
    real_open = os.open

    def refuse(path, flags, *args, **kwargs):
        if Path(path).name == LOCK_NAME:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    with (
        pytest.raises(
            PermissionError, match=rf"^cannot create files in {re.escape(str(tmp_path))} \(Permission denied\)$"
        ),
        lock_folder(tmp_path),
    ):
        pass


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_a_rewrite_keeps_the_files_mode(tmp_path):
    target = tmp_path / "history.json"
    target.write_text("[]")
    target.chmod(0o600)
    write_text_atomic(target, "[1]")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.read_text() == "[1]"


def test_a_full_disk_is_said_so_naming_the_file(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    with (
        pytest.raises(OSError, match=rf"^the disk is full: cannot write {re.escape(str(target))}$"),
        atomic_path(target),
    ):
        raise OSError(28, "No space left on device")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_the_write_probe_touches_no_file_already_there(tmp_path):
    # Any name the probe might pick, as a file, a folder or a dangling link: each is left as it was.
    (tmp_path / ".cnnlesson-write-test").write_text("mine")
    (tmp_path / "..cnnlesson-write-test.tmp").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert check_can_create(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert check_can_create(tmp_path) == tmp_path
    assert (tmp_path / ".cnnlesson-write-test").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, "new"])
    assert list((tmp_path / "new" / "deeper").iterdir()) == []


def test_the_write_probe_says_why_it_cannot_create(tmp_path, monkeypatch):
    real_open = os.open

    def full(path, flags, *args, **kwargs):
        if flags & os.O_CREAT:
            raise OSError(28, "No space left on device", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", full)
    with pytest.raises(OSError, match="No space left on device") as info:
        check_can_create(tmp_path)
    assert info.value.errno == 28 and list(tmp_path.iterdir()) == []
