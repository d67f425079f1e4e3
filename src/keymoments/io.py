"""Atomic file writes: write to a temporary file in the same folder, flush, fsync,
then rename over the target, so a reader never sees half a file. The new file gets
the target's permissions if it exists, else the usual ones for a new file (0666 less
the umask), not the private 0600 of a temporary file.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "report.html"
>>> atomic_write_text(p, "<p>hi</p>")
>>> p.read_text()
'<p>hi</p>'

A file written piece by piece (an export of millions of rows) goes through
:func:`atomic_open`: if the writer fails half-way, the previous file is still there.

>>> with atomic_open(p, "w") as fh:
...     _ = fh.write("<p>new</p>")
...     raise RuntimeError("the export failed")
Traceback (most recent call last):
RuntimeError: the export failed
>>> p.read_text()
'<p>hi</p>'
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_open", "atomic_write_text", "atomic_write_bytes"]


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path`` for writing (``mode`` "w" or "wb", with
    ``open``'s other arguments); when the block ends without an exception, it replaces
    ``path``; otherwise it is removed and ``path`` is left as it was."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes a whole file: mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # a folder that is a file, no permission, a full disk
        from .errors import OutputError

        file = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        why = (f"{file} is a file, not a folder" if file is not None else
               f"{exc.strerror or exc} ({exc.filename or path.parent})")
        raise OutputError(f"cannot write {path}: {why}; choose another path") from None
    try:
        os.fchmod(fd, _mode_for(path))
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        from .errors import OutputError

        if isinstance(exc, OSError) and exc.errno in _WRITE_ERRORS and not isinstance(
                exc, OutputError):
            raise OutputError(f"cannot write {path}: {exc.strerror}; it is as it was before "
                              "(make room, then run the command again)") from exc
        raise
    _remove_stale(path)


#: a temporary file of the same target this much older than now was left by a writer
#: that was killed (a running writer touches its file as it writes): removed after
#: the next write of the target succeeds
STALE_AFTER = 3600.0


def _remove_stale(path: Path) -> None:
    """Remove the temporary files a killed writer of ``path`` left beside it."""
    import glob
    import time

    pattern = os.path.join(glob.escape(str(path.parent)), f".{glob.escape(path.name)}.*.tmp")
    for tmp in glob.glob(pattern):
        try:
            if time.time() - os.stat(tmp).st_mtime > STALE_AFTER:
                os.unlink(tmp)
        except OSError:  # (removed by another writer meanwhile, or not ours to remove)
            pass


#: errors of writing a file itself (a full disk, a quota, a read-only file system)
_WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def _mode_for(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``text`` atomically."""
    atomic_write_bytes(path, text.encode(encoding))
