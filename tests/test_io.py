"""Atomic writes: whole file or old file, and ordinary permissions (not mkstemp's 0600)."""

import os
import stat

import pytest

from keymoments.io import atomic_write_bytes, atomic_write_text


def test_new_file_gets_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        p = tmp_path / "report.html"
        atomic_write_text(p, "<p>x</p>")
        assert stat.S_IMODE(p.stat().st_mode) == 0o644
    finally:
        os.umask(old)


def test_existing_file_keeps_its_permissions(tmp_path):
    p = tmp_path / "out.json"
    p.write_text("old")
    p.chmod(0o640)
    atomic_write_text(p, "new")
    assert p.read_text() == "new"
    assert stat.S_IMODE(p.stat().st_mode) == 0o640


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    p = tmp_path / "out.bin"
    atomic_write_bytes(p, b"old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"old"
    assert [f.name for f in tmp_path.iterdir()] == ["out.bin"]


def test_a_failed_write_is_an_oserror_and_says_where(tmp_path, monkeypatch):
    """A full disk: the error names the file and is an OSError still, so the outbox's
    delivery, which retries a failed case file, counts an attempt (a KeymomentsError
    alone escaped it: webhooks sent in that pass were sent again on every pass)."""
    import errno
    import tempfile

    import keymoments as km

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", full)
    with pytest.raises(OSError) as info:
        atomic_write_text(tmp_path / "cases" / "a.json", "{}")
    assert isinstance(info.value, km.OutputError) and isinstance(info.value, km.KeymomentsError)
    assert "cannot write" in str(info.value) and "No space left on device" in str(info.value)
    assert not (tmp_path / "cases" / "a.json").exists()


def test_a_disk_that_fills_while_writing_names_the_file(tmp_path, monkeypatch):
    """The temporary file was made but the disk filled while it was written: an
    OutputError naming the file (the report said only 'No space left on device'), the
    old file as it was, no temporary file left."""
    import errno

    import keymoments as km

    p = tmp_path / "report.html"
    atomic_write_text(p, "old")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(km.OutputError) as info:
        atomic_write_text(p, "new")
    assert str(info.value).startswith(f"cannot write {p}: No space left on device")
    assert isinstance(info.value.__cause__, OSError)
    assert p.read_text() == "old" and [f.name for f in tmp_path.iterdir()] == ["report.html"]


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    """A writer killed half-way leaves ``.report.html.<random>.tmp``; the next
    successful write of report.html removes it once it is over an hour old, and
    keeps a recent one (a writer still at work) and another target's."""
    target = tmp_path / "report[1].html"  # (glob characters in the name)
    hour_ago = os.path.getmtime(tmp_path) - 2 * 3600
    stale = tmp_path / ".report[1].html.abc123.tmp"
    running = tmp_path / ".report[1].html.def456.tmp"
    other = tmp_path / ".other.html.ghi789.tmp"
    for p in (stale, running, other):
        p.write_text("half a page")
    for p in (stale, other):
        os.utime(p, (hour_ago, hour_ago))
    atomic_write_text(target, "<p>whole</p>")
    assert target.read_text() == "<p>whole</p>"
    assert not stale.exists()
    assert running.exists() and other.exists()
