"""The file names a workspace stores (``events.source_file``, ``quarantine.file``,
``loads.files``) are absolute.

A workspace opened as ``-w shop`` from its parent folder used to store its files as
``shop/orders.csv``, and the same workspace opened from inside (or as an absolute
path) stored ``orders.csv`` or ``/home/ana/shop/orders.csv``: the same file under
several names, so its quarantined rows were stored again and files "loaded before"
were said to be gone. The workspace's folder is now made absolute when it is opened;
names stored relative by earlier loads are rewritten once, to the file of a source
they name (the one whose absolute path ends with them), and left as they are when
no source's file matches (a file since removed). A row quarantined under two names
of its file is then one entry.

The folder the names were made absolute in is kept (``km_meta``); a workspace
moved or copied to another folder, its exports with it, has the names under its old
folder rewritten to the new one when it is next opened to write, so its files are
not "no longer found" and their quarantined rows not stored again under new names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from ..errors import KeymomentsError
from ..sql import registered, rollback

if TYPE_CHECKING:
    from ..config.models import Config

__all__ = ["absolute_paths", "match_stored", "moved_paths"]

#: the ``km_meta`` key set once the stored names are absolute
DONE_KEY = "file_names"
#: labels that are no files (the live service's posted batches)
_LABELS = ("posted:",)


def match_stored(stored: str, files: list[str]) -> str | None:
    """The file of ``files`` (absolute, normalised) a relative stored name stands for:
    the one ending with it (after ``..`` is resolved), when exactly one does.

    >>> files = ["/w/shop/orders.csv", "/w/data/orders.csv", "/w/shop/tickets.csv"]
    >>> match_stored("shop/orders.csv", files), match_stored("shop/../data/orders.csv", files)
    ('/w/shop/orders.csv', '/w/data/orders.csv')
    >>> match_stored("orders.csv", files) is None  # (two files end so: not guessed)
    True
    """
    name = os.path.normpath(stored)
    found = [f for f in files if f == name or f.endswith(os.sep + name)]
    return found[0] if len(found) == 1 else None


def _source_files(root: Path, config: Config) -> list[str]:
    from ..sources.readers import expand_paths

    files: list[str] = []
    for spec in config.sources.values():
        for path in (spec.path, *(j.path for j in spec.joins)):
            try:
                files += expand_paths(path, root)
            except KeymomentsError:  # (a source whose files are not there now)
                continue
    return sorted({os.path.normpath(f) for f in files})


def _rename(con: duckdb.DuckDBPyConnection, names: dict[str, str]) -> None:
    """Store each old file name of ``names`` as its new one (events, quarantine,
    loads), in the caller's transaction."""
    table = pa.table({"old": list(names), "new": list(names.values())})
    with registered(con, "_km_names", table):
        con.execute("UPDATE events SET source_file = n.new FROM _km_names n "
                    "WHERE events.source_file = n.old")
        con.execute("UPDATE quarantine SET file = n.new FROM _km_names n "
                    "WHERE quarantine.file = n.old")
    for load_id, files_read in con.execute("SELECT load_id, files FROM loads").fetchall():
        if files_read and any(f in names for f in files_read):
            con.execute("UPDATE loads SET files = ? WHERE load_id = ?",
                        [[names.get(f, f) for f in files_read], load_id])


def absolute_paths(con: duckdb.DuckDBPyConnection, root: Path, config: Config) -> int:
    """Rewrite, once, the relative file names stored by earlier loads as the absolute
    names of the files they stand for (:func:`match_stored`); returns how many names
    were rewritten."""
    done = con.execute(f"SELECT value FROM km_meta WHERE key = '{DONE_KEY}'").fetchone()
    if done is not None:
        return moved_paths(con, done[0], root, config)
    stored = [r[0] for r in con.execute("""
        SELECT DISTINCT f FROM (
            SELECT DISTINCT source_file AS f FROM events
            UNION SELECT DISTINCT file FROM quarantine
            UNION SELECT DISTINCT unnest(files) FROM loads)
        WHERE f IS NOT NULL""").fetchall()]
    relative = [f for f in stored if not os.path.isabs(f) and not f.startswith(_LABELS)]
    names: dict[str, str] = {}
    if relative:
        files = _source_files(root, config)
        names = {f: m for f in relative if (m := match_stored(f, files)) is not None}
    con.execute("BEGIN TRANSACTION")
    try:
        if names:
            _rename(con, names)
            # the same row stored under two names of its file is one entry (the
            # latest rejection kept: it says whether the entry is open)
            con.execute("""
                DELETE FROM quarantine WHERE quarantine_id IN (
                    SELECT quarantine_id FROM quarantine QUALIFY row_number() OVER (
                        PARTITION BY source, file, line, reason, raw
                        ORDER BY quarantined_at DESC, quarantine_id) > 1)""")
        con.execute(f"INSERT INTO km_meta VALUES ('{DONE_KEY}', ?)", [str(root)])
        con.execute("COMMIT")
    except BaseException:
        rollback(con)
        raise
    return len(names)


def moved_paths(con: duckdb.DuckDBPyConnection, before: str, root: Path,
                config: Config) -> int:
    """Rewrite the stored names under ``before`` (the folder the workspace was in at
    its last write; ``absolute`` from versions that did not keep it) to the same
    names under ``root``, each only when that is a file a source reads now and the old
    name is not (a copy whose config still names the original's files by their full
    path keeps them); returns how many distinct names were rewritten."""
    here = str(root)
    if before == here or (os.path.isabs(before)
                          and os.path.realpath(before) == os.path.realpath(here)):
        return 0  # (the same folder, or the same by another link to it)
    prefix = before.rstrip(os.sep) + os.sep
    names: dict[str, str] = {}
    if os.path.isabs(before):
        stored = [r[0] for r in con.execute("""
            SELECT DISTINCT f FROM (
                SELECT DISTINCT source_file AS f FROM events
                UNION SELECT DISTINCT file FROM quarantine
                UNION SELECT DISTINCT unnest(files) FROM loads)
            WHERE starts_with(f, ?)""", [prefix]).fetchall()]
        if stored:
            files = set(_source_files(root, config))
            new = here.rstrip(os.sep) + os.sep
            names = {f: new + f[len(prefix):] for f in stored
                     if new + f[len(prefix):] in files and f not in files}
    con.execute("BEGIN TRANSACTION")
    try:
        if names:
            _rename(con, names)
        con.execute(f"UPDATE km_meta SET value = ? WHERE key = '{DONE_KEY}'", [here])
        con.execute("COMMIT")
    except BaseException:
        rollback(con)
        raise
    return len(names)
