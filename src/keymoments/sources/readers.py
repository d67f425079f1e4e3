"""Readers: put the raw rows of an export into a DuckDB staging table, each row with
the line it came from (``_km_line``), and collect what cannot be read as rejects.

Text formats (CSV, JSON lines or arrays, XES) are read in Python so every record
keeps its exact line number, even with quoted multi-line fields, and so one bad line
(wrong encoding, broken quoting, wrong field count, invalid JSON) is rejected on its
own while the rest of the file loads (but for a JSON array, read whole: past a syntax
error its next element cannot be found). Parquet is read by DuckDB directly, with its
row number, and so is a well-formed CSV file when DuckDB reads it exactly as this reader
would (see :mod:`keymoments.sources.csv_fast`).

>>> import io
>>> lines = io.BytesIO(b'id,text\\n1,"two\\nlines"\\n2,"broken\\n3,ok\\n')
>>> rows, rejects = [], []
>>> header = read_csv_records(lines, CsvOptions(), rows.append, rejects.append)
>>> header, rows
(['id', 'text'], [(2, ['1', 'two\\nlines']), (5, ['3', 'ok'])])
>>> [(r.line, r.field, r.reason[:33]) for r in rejects]
[(4, 'text', "unbalanced quote in column 'text'")]
"""

from __future__ import annotations

import codecs
import csv
import glob
import io
import json
import math
import os
import re
import xml.sax
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import duckdb
import pyarrow as pa

from ..config.models import CsvOptions
from ..errors import SourceError
from ..sql import ident, literal

__all__ = ["Reject", "Staged", "stage_file", "stage_records", "read_csv_records", "expand_paths",
           "reject_hint", "unreadable_parquet", "wrapped_error"]

BATCH_ROWS = 50_000
#: read well-formed CSV files with DuckDB (see :mod:`keymoments.sources.csv_fast`);
#: the Python reader reads the others
FAST_CSV = True
LINE_COLUMN = "_km_line"
FILE_COLUMN = "_km_file"
Progress = Callable[[int], None]

# The csv module refuses a field over 131,072 characters ("field larger than field
# limit"), which read as a broken quote: the record was rejected and the lines of its
# quoted text read again as records of their own. A long comment or transcript is a
# field like another; the limit is raised once, for the process (it only ever grows).
csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))


@dataclass(frozen=True)
class Reject:
    """A record that could not be read: where, why, and its raw text."""

    line: int
    reason: str
    raw: str
    file: str = ""
    field: str | None = None
    value: str | None = None


@dataclass
class Staged:
    """A staged source: the DuckDB table holding its raw rows, and the rejects."""

    table: str
    columns: list[str]
    rows: int
    files: list[str]
    rejects: list[Reject] = field(default_factory=list)
    #: the JSON files read as one record that is an object holding the records in a
    #: member (``{"rows": [{...}, ...]}``), with that member's name
    wrapped: dict[str, str] = field(default_factory=dict)
    #: each CSV or Parquet file's own columns, when several are combined by name (a
    #: column one of them lacks is empty for its rows: see ingest's check)
    file_columns: dict[str, list[str]] = field(default_factory=dict)


def expand_paths(path: str, base: Path) -> list[str]:
    """The files a source path names (relative to ``base``; globs allowed), sorted."""
    full = path if os.path.isabs(path) else str(base / path)
    found = sorted(glob.glob(full)) if glob.has_magic(full) else [full]
    missing = [p for p in found if not os.path.isfile(p)]
    if not found or missing:
        raise SourceError(
            f"no file at {missing[0] if missing else full}: check the source's 'path' "
            f"(relative paths start at the workspace folder {base})"
        )
    return found


#: file name endings of compressed files (read as text, their bytes look like a wrong
#: encoding: say what they are instead)
_COMPRESSED = (".gz", ".zip", ".bz2", ".xz", ".zst", ".7z")


def stage_file(
    con: duckdb.DuckDBPyConnection,
    files: list[str],
    fmt: str,
    options: CsvOptions,
    table: str,
    progress: Progress | None = None,
) -> Staged:
    """Stage ``files`` of format ``fmt`` into the temporary table ``table``."""
    packed = [f for f in files if f.lower().endswith(_COMPRESSED)]
    if packed and fmt != "parquet":
        raise SourceError(f"{packed[0]} is compressed: keymoments reads {fmt} files as they "
                          "are, so decompress it first (gunzip, unzip ...)")
    if fmt == "parquet":
        return _stage_parquet(con, files, table, progress)
    if fmt == "csv":
        for path in files:
            _refuse_utf16_without_bom(path, options)
    if fmt == "csv" and FAST_CSV:
        from .csv_fast import stage_csv_fast

        fast = stage_csv_fast(con, files, options, table)
        if fast is not None:
            if progress:
                progress(sum(os.path.getsize(f) for f in files))
            return Staged(table, fast[0], fast[1], list(files), file_columns=fast[2])
    readers = {"csv": _csv_rows, "jsonl": _jsonl_rows, "xes": _xes_rows}
    if fmt not in readers:
        raise SourceError(f"unknown format {fmt!r}: use csv, parquet, jsonl or xes")
    sink = _BatchSink(con, table)
    rejects: list[Reject] = []
    for path in files:
        sink.file = path
        with open(path, "rb") as fh:
            readers[fmt](fh, options, sink, rejects, path, progress)
        sink.flush()
    return Staged(table, sink.columns, sink.rows, list(files), rejects, sink.wrapped,
                  sink.file_columns if fmt == "csv" else {})


def _refuse_utf16_without_bom(path: str, options: CsvOptions) -> None:
    """A text file read in an encoding where every other byte is NUL: UTF-16 saved
    without a byte order mark (read as UTF-8 its header's names hold NULs and no row
    reads right). Files with the mark are told apart by :func:`_utf16_header`."""
    try:
        if codecs.lookup(options.encoding).name.startswith(("utf-16", "utf-32")):
            return
    except LookupError:  # (refused with its own message when the file is read)
        return
    with open(path, "rb") as fh:
        head = fh.read(4096)
    head = head[:len(head) // 4 * 4]
    if len(head) < 8 or head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return
    nul = [head[i::4].count(0) for i in range(4)]  # NULs at each position mod 4
    quarter = len(head) // 4
    if min(nul[1:]) > quarter // 2 and nul[0] < quarter // 2:
        width, order = "32", "little"  # (ASCII in UTF-32: three NULs after each byte)
    elif min(nul[:3]) > quarter // 2 and nul[3] < quarter // 2:
        width, order = "32", "big"
    elif nul[1] + nul[3] > len(head) // 4 and nul[1] + nul[3] > 2 * (nul[0] + nul[2]):
        width, order = "16", "little"  # (ASCII in UTF-16: a NUL after each byte)
    elif nul[0] + nul[2] > len(head) // 4 and nul[0] + nul[2] > 2 * (nul[1] + nul[3]):
        width, order = "16", "big"
    else:
        return
    raise SourceError(
        f"{path}: the file looks like UTF-{width} ({order}-endian) without a byte order mark "
        f"(NUL bytes between its characters), not {options.encoding}: set "
        f"`encoding: utf-{width}-{order[0]}e` under the `csv:` of the source (or join) that "
        "reads it, or save the file again as UTF-8 (CSV UTF-8 in Excel)")


def _same_types(con, files: list[str]) -> None:
    """Files of one source must give each column one type: read together, DuckDB
    promotes the column (an integer id becomes 1.0, a local time is read as an
    instant), so a row's values, hence its event id, would depend on the other files,
    and a re-load after a file is added would store its events again."""
    seen: dict[str, tuple[str, str]] = {}  # lower-cased name -> (type, file)
    for path in files:
        try:
            described = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [path]).fetchall()
        except duckdb.Error as exc:
            raise SourceError(f"cannot read Parquet {path}: {exc}") from None
        for name, kind, *_ in described:
            first = seen.setdefault(name.lower(), (kind, path))
            if first[0] != kind:
                raise SourceError(
                    f"column {name!r} is {first[0]} in {first[1]} but {kind} in {path}: "
                    "export the files of a source with one type per column (read together, "
                    "their values would change with the files beside them)")


def _stage_parquet(con, files, table, progress) -> Staged:
    if len(files) > 1:
        _same_types(con, files)
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW {ident(table)} AS SELECT * EXCLUDE (file_row_number), "
            f"file_row_number + 1 AS {LINE_COLUMN} "
            f"FROM read_parquet([{', '.join(literal(f) for f in files)}], "
            f"file_row_number = true, filename = {literal(FILE_COLUMN)}, union_by_name = true)"
        )
    except duckdb.Error as exc:
        raise SourceError(f"cannot read Parquet {files[0]}: {exc}") from None
    rows = con.execute(f"SELECT count(*) FROM {ident(table)}").fetchone()[0]
    cols = [r[0] for r in con.execute(f"DESCRIBE {ident(table)}").fetchall()]
    cols = [c for c in cols if c not in (LINE_COLUMN, FILE_COLUMN)]
    if progress:
        progress(sum(os.path.getsize(f) for f in files))
    own = {f: [r[0] for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [f]).fetchall()]
           for f in files} if len(files) > 1 else {}
    return Staged(table, cols, rows, list(files), file_columns=own)


def unreadable_parquet(files: list[str]) -> SourceError | None:
    """The error for the first of ``files`` whose data cannot be read whole, or None
    when every one reads. DuckDB reads a page only when a query needs it: staging reads
    the footers, so a corrupt page fails the mapping's query, with an error that may
    not name the file. Read on a connection of its own (that error may have left the
    caller's unusable); the whole row (``hash(t)``) makes every column's pages read."""
    con = duckdb.connect()
    try:
        for path in files:
            try:
                con.execute("SELECT count(hash(t)) FROM read_parquet(?) t", [path]).fetchone()
            except duckdb.Error as exc:
                detail = re.sub(r'^[A-Za-z ]*Error: (Failed to read file "[^"]*": )?', "",
                                str(exc).splitlines()[0])
                return SourceError(f"corrupt Parquet data in {path} ({detail}): re-export the "
                                   "file; nothing of the source was loaded")
        return None
    finally:
        con.close()


class _BatchSink:
    """Collects records as columns of strings and appends them to the staging table."""

    def __init__(self, con: duckdb.DuckDBPyConnection, table: str) -> None:
        self.con, self.table = con, table
        self.columns: list[str] = []
        self.rows = 0
        self.file = ""
        self.wrapped: dict[str, str] = {}  # see Staged.wrapped
        self._lines: list[int] = []
        self._values: dict[str, list[str | None]] = {}
        self._canon: dict[str, str] = {}  # lower-cased name -> the column's name
        self.file_columns: dict[str, list[str]] = {}  # a CSV file -> its header
        self._created = False

    def clash(self, record: dict[str, str | None]) -> str | None:
        """Why the record's field names cannot be columns (empty, reserved, or equal to
        another but for case, as DuckDB's names ignore case), or None."""
        known: dict[str, str] = {}
        for name in record:
            if not name:
                return "a field has an empty name: name it in the export"
            why = _not_a_column_name(name)
            if why:
                return f"the field name {name!r} {why}: rename it in the export"
            other = known.setdefault(name.lower(), name)
            if other != name:
                return (f"the fields {other!r} and {name!r} differ only in case, which column "
                        "names ignore: rename one in the export")
        return None

    def set_columns(self, names: list[str]) -> None:
        """Add the columns not there yet; a name equal to a column's but for case is
        that column (files combined by name, as DuckDB's names ignore case)."""
        for name in names:
            if name.lower() not in self._canon:
                self._canon[name.lower()] = name
                self.columns.append(name)
                self._values[name] = [None] * len(self._lines)
                if self._created:
                    self.con.execute(
                        f"ALTER TABLE {ident(self.table)} ADD COLUMN {ident(name)} VARCHAR"
                    )

    def add(self, line: int, record: dict[str, str | None]) -> None:
        for name in record:
            if name.lower() not in self._canon:
                self.set_columns([name])
        if any(name not in self._values for name in record):
            record = {self._canon[name.lower()]: value for name, value in record.items()}
        self._lines.append(line)
        for name, values in self._values.items():
            values.append(record.get(name))
        if len(self._lines) >= BATCH_ROWS:
            self.flush()

    def add_row(self, line: int, values: list[str]) -> None:
        """Fast path for positional records matching ``columns``."""
        self._lines.append(line)
        for name, value in zip(self.columns, values):
            self._values[name].append(value)
        if len(self._lines) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self._created:
            cols = ", ".join(f"{ident(c)} VARCHAR" for c in self.columns)
            sep = ", " if cols else ""
            self.con.execute(
                f"CREATE OR REPLACE TEMP TABLE {ident(self.table)} "
                f"({cols}{sep}{LINE_COLUMN} BIGINT, {FILE_COLUMN} VARCHAR)"
            )
            self._created = True
        if not self._lines:
            return
        n = len(self._lines)
        arrays = [pa.array(self._values[c], pa.string()) for c in self.columns]
        arrays += [pa.array(self._lines, pa.int64()), pa.array([self.file] * n, pa.string())]
        batch = pa.table(arrays, names=[*self.columns, LINE_COLUMN, FILE_COLUMN])
        names = ", ".join(ident(c) for c in batch.column_names)
        self.con.register("_km_batch", batch)
        try:
            self.con.execute(
                f"INSERT INTO {ident(self.table)} ({names}) SELECT {names} FROM _km_batch"
            )
        finally:
            self.con.unregister("_km_batch")
        self.rows += n
        self._lines = []
        self._values = {c: [] for c in self.columns}


# --------------------------------------------------------------------------- CSV


def _split_line(text: str, options: CsvOptions) -> list[str]:
    """The fields of one line, leniently (to name the column of a reject)."""
    if options.delimiter == "whitespace":
        return text.split()
    try:
        return next(csv.reader([text], delimiter=options.delimiter, quotechar=options.quote),
                    [])
    except csv.Error:
        return []


class _TranscodedLines:
    """``readline()`` of a file in an encoding that is not ASCII-compatible (UTF-16,
    UTF-32), as UTF-8 bytes: splitting its bytes at b'\\n' would cut characters."""

    def __init__(self, fh: IO[bytes], encoding: str, path: str) -> None:
        self._text = io.TextIOWrapper(fh, encoding=encoding, newline="\n")
        self._encoding, self._path = encoding, path

    def readline(self) -> bytes:
        try:
            return self._text.readline().encode("utf-8")
        except UnicodeDecodeError as exc:
            raise SourceError(f"{self._path}: not valid {self._encoding} ({exc.reason}); "
                              f"check the source's csv.encoding") from None

    def release(self) -> None:
        self._text.detach()  # the caller's file stays open


class _CrLines:
    """``readline()`` of a file whose lines end with a bare CR (old Mac exports)."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._text = io.TextIOWrapper(fh, encoding="latin-1", newline="\r")  # bytes as-is

    def readline(self) -> bytes:
        return self._text.readline().encode("latin-1")

    def release(self) -> None:
        self._text.detach()  # the caller's file stays open


def _line_source(fh: IO[bytes], encoding: str, path: str) -> tuple[object, str]:
    """Something with ``readline()`` giving one physical line as bytes, and the
    encoding to decode those bytes with."""
    if "a\n,;".encode(encoding, errors="replace") != b"a\n,;":
        return _TranscodedLines(fh, encoding, path), "utf-8"
    if fh.seekable():
        head = fh.read(1 << 16)
        fh.seek(0)
        if b"\r" in head and b"\n" not in head:
            return _CrLines(fh), encoding
    return fh, encoding


class _Lines:
    """Decoded lines of a binary file with their numbers, with push-back, so a
    broken record can be rejected alone and reading resumes at its next line."""

    def __init__(self, fh: IO[bytes], encoding: str, rejects: list[Reject], path: str,
                 progress: Progress | None, options: CsvOptions | None = None) -> None:
        self._encoding, self._rejects, self._path = encoding, rejects, path
        self._fh, self._decode_as = _line_source(fh, encoding, path)
        self._progress = progress
        self._options = options or CsvOptions()
        self.header: list[str] | None = None  # known once read: names the bad column
        self._pending: list[tuple[int, str]] = []
        self.number = 0  # physical line number of the last line handed out
        self.taken: list[tuple[int, str]] = []  # lines handed out for the current record
        self._bytes = 0
        self._bad: dict[int, Reject] = {}  # undecodable lines, by number: see bad_record

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self._pending:
            self.number, text = self._pending.pop(0)
            self.taken.append((self.number, text))
            return text
        while True:
            raw = self._fh.readline()
            if not raw:
                raise StopIteration
            self.number += 1
            self._bytes += len(raw)
            if self._progress and self.number % 65536 == 0:
                self._progress(self._bytes)
                self._bytes = 0
            try:
                text = raw.decode(self._decode_as)
            except UnicodeDecodeError as exc:
                # handed out all the same (its bad bytes as \xe1): dropped, a line inside a
                # quoted field put the quoting out of step, and the records after it were
                # read as that field's text; its record is rejected whole (bad_record)
                self._bad[self.number] = self._undecodable(raw, exc)
                text = raw.decode(self._decode_as, errors="backslashreplace")
            if self.number == 1 and text.startswith("\ufeff"):
                text = text[1:]
            self.taken.append((self.number, text))
            return text

    def bad_record(self, start: int) -> Reject | None:
        """The reject of the record just read (starting at line ``start``) when a line
        of it could not be decoded, or None: at the record's first line, with its whole
        text (a column is named only when the bad line is the first)."""
        bad = [self._bad.pop(n) for n, _ in self.taken if n in self._bad]
        if not bad:
            return None
        first = bad[0]
        if first.line == start:
            return first
        text = "".join(t for _, t in self.taken).rstrip("\r\n")
        reason = first.reason.replace(" of the line", f" of line {first.line}", 1)
        reason = re.sub(r", in column '[^']*'", "", reason)
        return Reject(start, f"{reason} (line {first.line} is in the record starting here)",
                      text, self._path)

    def skip(self) -> None:
        """Pass one physical line without reading it (``skip_rows``)."""
        if self._fh.readline():
            self.number += 1

    def _undecodable(self, raw: bytes, exc: UnicodeDecodeError) -> Reject:
        # backslashreplace keeps the bad bytes visible (\xe9) in the raw text; the
        # column is the one the first bad byte falls in
        text = raw.decode(self._decode_as, errors="backslashreplace").rstrip("\r\n")
        field = value = None
        if self.header:
            prefix = raw[:exc.start].decode(self._decode_as, errors="replace")
            index = max(len(_split_line(prefix, self._options)) - 1, 0)
            if self._options.delimiter == "whitespace" and (not prefix or prefix[-1].isspace()):
                index = len(prefix.split())
            values = _split_line(text, self._options)
            if index < len(self.header) and index < len(values):
                field, value = self.header[index], values[index]
        where = f", in column {field!r}" if field else ""
        return Reject(
            self.number,
            f"not valid {self._encoding} text (byte 0x{raw[exc.start]:02x} at position "
            f"{exc.start + 1} of the line{where}): if the whole file uses another encoding, "
            f"convert it (iconv -f latin1 -t {self._encoding}), or set the source's "
            f"csv.encoding (for example latin-1 or cp1252) when every file of it does",
            text, self._path, field, value,
        )

    def push_back(self, lines: list[tuple[int, str]]) -> None:
        self._pending[:0] = lines

    def finish(self) -> None:
        if self._progress and self._bytes:
            self._progress(self._bytes)
            self._bytes = 0
        if hasattr(self._fh, "release"):
            self._fh.release()


def _not_a_column_name(name: str) -> str | None:
    """Why ``name`` cannot be a source's column, or None: keymoments's own columns
    (``_km_...``: the line and file of each row, and the mapping's working columns,
    one of which a column of that name would stand in for) and a NUL character (which
    cannot be written into a query at all). (Every record's field names pass here: kept
    to two string operations.)"""
    if name[:4].lower() == "_km_":
        return "begins with _km_, which keymoments keeps for its own columns"
    if "\x00" in name:
        return "holds a NUL character"
    return None


def _unique_header(names: list[str], path: str | None = None) -> list[str]:
    r"""Column names for a header: blanks named by position, repeats numbered (names
    equal but for case are repeats: DuckDB's names ignore case); names keymoments keeps
    (``_km_...``) or that hold a NUL are refused.

    >>> _unique_header(["id", "ID", "", "id"])
    ['id', 'ID_2', 'column_3', 'id_3']
    >>> _unique_header(["id", "no\x00te"])
    Traceback (most recent call last):
    ...
    keymoments.errors.SourceError: column 2 of the header, 'no\x00te', holds a NUL character: rename it in the export
    >>> _unique_header(["_KM_text_0"], "a.csv")
    Traceback (most recent call last):
    ...
    keymoments.errors.SourceError: a.csv: column 1 of the header, '_KM_text_0', begins with _km_, which keymoments keeps for its own columns: rename it in the export
    """
    out: list[str] = []
    for i, name in enumerate(names):
        name = name.strip() or f"column_{i + 1}"
        why = _not_a_column_name(name)
        if why:
            raise SourceError(f"{path + ': ' if path else ''}column {i + 1} of the header, "
                              f"{name!r}, {why}: rename it in the export")
        base, k = name, 2
        while name.lower() in {o.lower() for o in out}:
            name, k = f"{base}_{k}", k + 1
        out.append(name)
    return out


def read_csv_records(
    fh: IO[bytes],
    options: CsvOptions,
    emit: Callable[[tuple[int, list[str]]], None],
    reject: Callable[[Reject], None],
    path: str = "",
    progress: Progress | None = None,
    on_header: Callable[[list[str]], None] | None = None,
) -> list[str]:
    """Read delimited records, calling ``emit((line, fields))`` for each good one and
    ``reject(Reject)`` for each bad one. Returns the header (also given to
    ``on_header`` as soon as it is known)."""
    rejects: list[Reject] = []
    lines = _Lines(fh, options.encoding, rejects, path, progress, options)

    def drain() -> None:
        while rejects:
            bad = rejects.pop(0)
            if header is None and options.header:
                raise SourceError(f"{path}: the header (line {bad.line}) cannot be read: "
                                  f"{_utf16_header(bad, options) or bad.reason}")
            reject(bad)

    for _ in range(options.skip_rows):
        lines.skip()
    header: list[str] | None = None
    whitespace = options.delimiter == "whitespace"
    reader = None if whitespace else _new_reader(lines, options)
    width = 0
    while True:
        lines.taken = []
        try:
            if whitespace:
                text = next(lines)
                fields = text.split()
                if not fields:
                    lines.bad_record(lines.number)
                    continue
            else:
                fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            drain()
            taken = lines.taken
            if not taken:
                break
            first = taken[0]
            field, value = _unterminated(first[1], options, header)
            where = f" in column {field!r}" if field else ""
            reject(Reject(first[0], f"unbalanced quote{where}: the record starting here cannot "
                          f"be read ({exc}); fix the quoting of this line",
                          first[1].rstrip("\r\n"), path, field, value))
            lines.push_back(taken[1:])
            reader = _new_reader(lines, options)
            continue
        drain()
        start = lines.taken[0][0] if lines.taken else lines.number
        if not fields:
            continue  # blank line (a quoted empty value, '""', is a record)
        bad = lines.bad_record(start) if len(fields) == width or header is None else None
        if bad is not None:
            rejects.append(bad)
            drain()  # (the header's: an error)
            continue
        if header is None:
            if options.header:
                header = _unique_header(fields, path)
            else:
                header = [f"column_{i + 1}" for i in range(len(fields))]
            width = len(header)
            lines.header = header
            if on_header:
                on_header(header)
            if options.header:
                continue
        if len(fields) != width:
            taken = lines.taken
            spans = len(taken) > 1
            hint = " (a quote may be unbalanced)" if spans else ""
            raw = taken[0][1] if taken else ""
            reject(Reject(start, f"expected {width} fields, found {len(fields)}{hint}",
                          raw.rstrip("\r\n"), path))
            if spans:
                lines.push_back(taken[1:])
                if reader is not None:
                    reader = _new_reader(lines, options)
            continue
        emit((start, fields))
    drain()
    lines.finish()
    return header or []


def _utf16_header(bad: Reject, options: CsvOptions) -> str | None:
    """The reason for a header that starts with a UTF-16 byte order mark and was not
    read as UTF-16 (as Excel's "Unicode text" and many Windows tools save), or None.

    >>> bad = Reject(1, "not valid utf-8 text", "\\\\xff\\\\xfec")
    >>> _utf16_header(bad, CsvOptions())[:46]
    'the file is UTF-16 (it starts with the byte or'
    """
    if not bad.raw.startswith(("\\xff\\xfe", "\\xfe\\xff")):
        return None
    return (f"the file is UTF-16 (it starts with the byte order mark of UTF-16 text), not "
            f"{options.encoding}: set `encoding: utf-16` under the `csv:` of the source (or "
            "join) that reads it, or save the file again as UTF-8 (CSV UTF-8 in Excel)")


def reject_hint(reason: str) -> str | None:
    """What to do about a row the reader rejected, from the reason stored in the
    quarantine, when the reason does not say it itself; or None.

    A quarantine entry's identity holds its reason (loading the same file again adds
    no entry because the same row gets the same reason), so the reasons stored by
    earlier versions stay as they are and the advice is given beside them (see
    ``Workspace.quarantine``).

    >>> print(reject_hint("expected 4 fields, found 5"))  # doctest: +ELLIPSIS
    the row has 5 fields where the header has 4: check the delimiter ...
    >>> reject_hint("not a number in column 'amount'") is None
    True
    """
    if _BARE_CR in reason:
        return ("not a quoting problem: the line holds a carriage return (CR) outside "
                "quotes that does not end it. Either the file mixes old-Mac line ends (a CR "
                "alone) with LF ones: convert them all to LF (for example: dos2unix -c mac "
                "FILE; or tr '\\r' '\\n' < FILE > NEW when every line ends with a CR alone), "
                "then load again; or a value holds a CR: quote that value in the export")
    width = _WIDTH.search(reason)
    if width is None:
        return None
    expected, found = width.group(1), width.group(2)
    spans = (" A quote opened on this line may close on a later one, whose lines were "
             "then read into this row." if width.group(3) else "")
    return (f"the row has {found} fields where the header has {expected}: check the "
            "delimiter (csv.delimiter: a semicolon or tab file read as commas splits "
            "wrongly) and this line's quoting (a value holding the delimiter must be "
            "quoted: \"a, b\"; a quote inside a quoted value doubled: \"\")." + spans +
            " Fix the line in the file, or set csv.delimiter / csv.quote, then load again")


#: Python's csv module's message for a CR inside an unquoted field (kept in the stored
#: reason of an 'unbalanced quote' reject)
_BARE_CR = "new-line character seen in unquoted field"
_WIDTH = re.compile(r"expected (\d+) fields, found (\d+)( \(a quote may be unbalanced\))?")


def _unterminated(text: str, options: CsvOptions,
                  header: list[str] | None) -> tuple[str | None, str | None]:
    """(column, value) of a quote opened on this line and never closed on it."""
    try:
        next(csv.reader([text], delimiter=options.delimiter, quotechar=options.quote,
                        strict=True), None)
        return None, None
    except csv.Error as exc:
        if "end of data" not in str(exc):
            return None, None
    fields = _split_line(text, options)
    if header and 0 < len(fields) <= len(header):
        return header[len(fields) - 1], fields[-1].rstrip("\r\n")
    return None, None


def _new_reader(lines: _Lines, options: CsvOptions):
    return csv.reader(lines, delimiter=options.delimiter, quotechar=options.quote,
                      doublequote=True, strict=True)


def _csv_rows(fh, options, sink: _BatchSink, rejects, path, progress) -> None:
    names: list[str] = []

    def on_header(header: list[str]) -> None:
        # files of one source are combined by column name (as Parquet's union_by_name):
        # a column missing from a file is empty for its rows
        sink.set_columns(header)
        sink.file_columns[path] = list(header)
        names[:] = header

    def emit(rec: tuple[int, list[str]]) -> None:
        line, fields = rec
        if names == sink.columns:
            sink.add_row(line, fields)
        else:
            sink.add(line, dict(zip(names, fields)))

    read_csv_records(fh, options, emit, rejects.append, path, progress, on_header)


# ------------------------------------------------------------ JSON lines and arrays


def _jsonl_rows(fh, options, sink: _BatchSink, rejects, path, progress) -> None:
    if _first_byte(fh) == b"[":
        _json_array_rows(fh, sink, rejects, path, progress)
        return
    done, records = 0, []  # (the first two records: is the file one object?)
    for number, raw in enumerate(fh, start=1):
        done += len(raw)
        if progress and number % 65536 == 0:
            progress(done)
            done = 0
        text = raw.strip()
        if not text:
            continue
        if number == 1 and text.startswith(b"\xef\xbb\xbf"):
            text = text[3:]  # UTF-8 byte order mark
        shown = raw.decode("utf-8", errors="backslashreplace").rstrip("\r\n")
        try:
            obj = json.loads(text.decode("utf-8"))
        except UnicodeDecodeError as exc:
            rejects.append(Reject(number, f"not valid utf-8 text (byte 0x{text[exc.start]:02x} "
                                  f"at position {exc.start + 1}): JSON lines files must be "
                                  f"UTF-8", shown, path))
            continue
        except json.JSONDecodeError as exc:
            rejects.append(Reject(number, f"not valid JSON at column {exc.colno}: {exc.msg}",
                                  shown, path))
            continue
        if not isinstance(obj, dict):
            rejects.append(Reject(number, "a JSON lines record must be an object {...}",
                                  text.decode("utf-8", errors="replace"), path))
            continue
        if len(records) < 2:
            records.append(obj)
        record = _json_record(obj)
        clash = sink.clash(record)
        if clash:
            rejects.append(Reject(number, clash, shown, path))
            continue
        sink.add(number, record)
    if progress and done:
        progress(done)
    _note_wrapper(fh, sink, path, records)


def _note_wrapper(fh, sink: _BatchSink, path: str, records: list[dict]) -> None:
    """A file that is one object holding the records in a member: noted (in
    ``sink.wrapped``) when it was read as one record (a JSON lines file of one record
    may hold a list of objects: only a mapping that finds no identifier in it makes
    it an error), refused when written over several lines, none of them a record."""
    if records:
        member = _wrapper_member(records[0]) if len(records) == 1 else None
        if member is not None:
            sink.wrapped[path] = member
        return
    if _first_byte(fh) != b"{":
        return
    try:
        whole = json.loads(fh.read().decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return
    member = _wrapper_member(whole)
    if member is not None:
        raise wrapped_error(path, member)


def _wrapper_member(obj: object) -> str | None:
    """The member of a JSON object that holds a list of objects, as an export
    wrapping its records in one object does (``{"rows": [{...}, ...]}``), or None.

    >>> _wrapper_member({"count": 2, "rows": [{"id": 1}, {"id": 2}]}), _wrapper_member({"id": 1})
    ('rows', None)
    """
    if not isinstance(obj, dict):
        return None
    return next((k for k, v in obj.items()
                 if isinstance(v, list) and v and all(isinstance(e, dict) for e in v)), None)


def wrapped_error(path: str, member: str) -> SourceError:
    """The error for a JSON file that is one object holding the records in ``member``."""
    at = f".{member}" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", member) else (
        f".[{json.dumps(member)}]")
    return SourceError(
        f"{path}: the file is one JSON object, not an array of records or JSON lines: its "
        f"member {member!r} holds the records; extract them (jq -c '{at}[]' "
        f"{os.path.basename(path)} > records.jsonl) and point the source's path at that file")


def _first_byte(fh: IO[bytes]) -> bytes:
    """The first byte of the file that is not blank, after a UTF-8 byte order mark
    (b'' for a blank file); the file is read again from its start after."""
    start = 3 if fh.read(3) == b"\xef\xbb\xbf" else 0
    fh.seek(start)
    found = b""
    while not found and (chunk := fh.read(1 << 16)):
        found = chunk.lstrip()[:1]
    fh.seek(0)
    return found


_BLANKS = re.compile(r"[ \t\n\r]*")  # JSON's whitespace


def _json_array_rows(fh, sink: _BatchSink, rejects, path, progress) -> None:
    """A file that is one JSON array: each element a record, numbered by the line it
    starts on when each starts on a line of its own (a pretty-printed array), else by
    its position in the array, from 1 (a compact one: ``[{...}, {...}]`` on one line,
    as ``json.dump`` writes by default), so that each row keeps a number of its own. An
    element that is not an object is rejected; a syntax error is an error for the
    whole file (where the next element starts cannot be known).

    The array is walked by hand, an element at a time with ``raw_decode``: ``json.load``
    gives the objects but not where each starts, and every row needs its line (for the
    quarantine, and ``key: [_line]``). The file is read whole, as ``json.load`` would."""
    data = fh.read()
    if progress:
        progress(len(data))
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SourceError(f"{path}: not valid utf-8 text at line {line} (byte "
                          f"0x{data[exc.start]:02x}): a JSON file must be UTF-8; nothing of "
                          "it was loaded") from None
    decoder = json.JSONDecoder()

    def fail(message: str, at: int) -> SourceError:
        where = json.JSONDecodeError(message, text, at)  # (counts the line and column)
        return SourceError(f"{path}: not valid JSON at line {where.lineno}, column "
                           f"{where.colno}: {message}; a JSON array is read whole, so nothing "
                           "of the file was loaded (fix it, or export JSON lines: one object "
                           "per line)")

    elements = []  # (line it starts on, its text, the value)
    line, counted = 1, 0  # the line at text[counted]
    pos = _BLANKS.match(text, _BLANKS.match(text).end() + 1).end()  # past the '['
    closed = text.startswith("]", pos)
    while not closed:
        line, counted = line + text.count("\n", counted, pos), pos
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise fail(exc.msg.removesuffix(" at"), exc.pos) from None
        elements.append((line, text[pos:end], obj))
        pos = _BLANKS.match(text, end).end()
        closed = text.startswith("]", pos)
        if not closed:
            if not text.startswith(",", pos):
                raise fail("Expecting ',' delimiter or ']'", pos)
            pos = _BLANKS.match(text, pos + 1).end()
    pos = _BLANKS.match(text, pos + 1).end()
    if pos < len(text):
        raise fail("Extra data after the array", pos)
    by_line = len({e[0] for e in elements}) == len(elements)
    for number, (line, raw, obj) in enumerate(elements, start=1):
        at = line if by_line else number
        if not isinstance(obj, dict):
            rejects.append(Reject(at, "a JSON array element must be an object {...}", raw, path))
            continue
        record = _json_record(obj)
        clash = sink.clash(record)
        if clash:
            rejects.append(Reject(at, clash, raw, path))
        else:
            sink.add(at, record)


def stage_records(con: duckdb.DuckDBPyConnection, records: list[dict], table: str,
                  label: str) -> Staged:
    """Stage in-memory records exactly as a JSON lines file of them would be staged
    (nested objects become dotted columns, values text), without writing the file;
    ``label`` stands for the file name (the live service's posted batches)."""
    sink = _BatchSink(con, table)
    sink.file = label
    for number, obj in enumerate(records, start=1):
        sink.add(number, _json_record(obj))
    sink.flush()
    return Staged(table, sink.columns, sink.rows, [label])


def _json_record(obj: dict) -> dict[str, str | None]:
    """A JSON object as a staged row: dotted columns, text values."""
    return {k: _json_scalar(v) for k, v in _flatten(obj).items()}


def _flatten(obj: dict, prefix: str = "") -> dict[str, object]:
    """Nested objects become dotted columns: {"a": {"b": 1}} -> {"a.b": 1}."""
    out: dict[str, object] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _json_scalar(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):  # NaN and Infinity (Python writes them) are no value
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


# ---------------------------------------------------------------------------- XES


class _XesHandler(xml.sax.ContentHandler):
    """Streams XES: each <event> becomes a row of its attributes plus the trace's
    attributes prefixed ``case:`` (as process-mining tools name them)."""

    _ATTRS = {"string", "date", "int", "float", "boolean", "id"}

    def __init__(self, sink: _BatchSink) -> None:
        super().__init__()
        self.sink = sink
        self.depth_kind: list[str] = []
        self.trace: dict[str, str] = {}
        self.event: dict[str, str] | None = None
        self.event_line = 0
        self._locator = None

    def setDocumentLocator(self, locator) -> None:  # noqa: N802 (SAX API)
        self._locator = locator

    def startElement(self, name, attrs) -> None:  # noqa: N802
        if name == "trace":
            self.trace = {}
        elif name == "event":
            self.event = {}
            self.event_line = self._locator.getLineNumber() if self._locator else 0
        elif name in self._ATTRS and "key" in attrs and len(self.depth_kind) >= 1:
            parent = self.depth_kind[-1]
            key, value = attrs["key"], attrs.get("value")
            if parent == "event" and self.event is not None:
                self.event[key] = value
            elif parent == "trace":
                self.trace[f"case:{key}"] = value
        self.depth_kind.append(name)

    def endElement(self, name) -> None:  # noqa: N802
        self.depth_kind.pop()
        if name == "event" and self.event is not None:
            if self.depth_kind and self.depth_kind[-1] == "trace":
                self.sink.add(self.event_line, {**self.trace, **self.event})
            self.event = None


def _xes_rows(fh, options, sink: _BatchSink, rejects, path, progress) -> None:
    handler = _XesHandler(sink)
    try:
        xml.sax.parse(fh, handler)
    except xml.sax.SAXParseException as exc:
        rejects.append(Reject(exc.getLineNumber(),
                              f"XES is not well-formed XML at column {exc.getColumnNumber()}: "
                              f"{exc.getMessage()}; events after this point were not read",
                              "", path))
    if progress:
        progress(os.path.getsize(path))
