"""DuckDB's own CSV reader for the files it reads exactly as the Python reader does.

The Python reader (:func:`keymoments.sources.readers.read_csv_records`) keeps each
record's line number and rejects a bad line alone, at ~4 s per million rows. Most
exports are well formed, and DuckDB reads those in a fraction of that time, so a
file is first read by DuckDB in strict mode, and the Python reader is used only
when DuckDB could differ from it:

* DuckDB stops at the first problem (a broken quote, a wrong field count, bytes
  that are not valid in the encoding): the Python reader then reads the file and
  rejects the bad lines one by one;
* the line numbers: records are read in file order, so the record ``i`` (from 0)
  starts on line ``first + i + n``, where ``n`` counts the line breaks inside the
  quoted fields of the records before it. That holds only if the file has no blank
  line (the Python reader skips those), so the physical lines of the file are
  counted and must add up, or the Python reader is used;
* what DuckDB reads itself: one-character delimiters (not ``whitespace``), UTF-8 and
  Latin-1, a header on one line, LF or CRLF line ends (not bare CR), and no bare CR
  inside a field.

Empty fields are empty strings (as from Python's ``csv``; the mapping turns the
configured ``null_values`` into NULL), never NULL. ``tests/test_csv_fast.py``
checks that both readers stage the same rows, line numbers and values, for the
data sets in ``../shared/data`` and for generated files.
"""

from __future__ import annotations

import csv
import os

import duckdb

from ..config.models import CsvOptions
from ..sql import ident, literal

__all__ = ["stage_csv_fast"]

#: encodings (their ``codecs`` names) DuckDB's CSV reader decodes itself
_ENCODINGS = {"utf-8": "utf-8", "utf-8-sig": "utf-8", "iso8859-1": "latin-1"}
#: the null string: a lone U+0001 (a field holding exactly that is NULL, and the
#: file goes to the Python reader), so empty fields stay empty strings
_NO_NULL = "chr(1)"


def _header(path: str, options: CsvOptions) -> tuple[list[str], bytes, bytes] | None:
    """(fields of the first record, the skipped lines, the record's line) if that
    record is one line and more follow."""
    with open(path, "rb") as fh:
        prefix = b"".join(fh.readline() for _ in range(options.skip_rows))
        raw = fh.readline()
    try:
        text = raw.decode(_ENCODINGS[options.encoding])
    except UnicodeDecodeError:
        return None
    if text.startswith("\ufeff") and not options.header and not options.skip_rows:
        return None  # (the Python reader drops it; DuckDB would keep it in the value)
    text = text.removeprefix("\ufeff").removesuffix("\n").removesuffix("\r")
    if not text or "\r" in text or "\n" in text:
        return None
    try:
        rows = list(csv.reader([text], delimiter=options.delimiter, quotechar=options.quote,
                               doublequote=True, strict=True))
    except csv.Error:
        return None
    if len(rows) != 1 or not rows[0] or (options.header and not raw.endswith(b"\n")):
        return None  # (a header alone: nothing to read)
    return rows[0], prefix, raw


def _count(path: str, delimiter: bytes, quote: bytes) -> tuple[int, int, int] | None:
    """(physical lines as the Python reader counts them, delimiters, quotes) of the
    file, or None when a carriage return does not end a line (Python's ``csv`` and
    DuckDB split lines differently there)."""
    lines = delims = quotes = bare_cr = 0
    last = b"\n"
    with open(path, "rb") as fh:
        while block := fh.read(1 << 24):
            if last == b"\r" and block[:1] != b"\n":
                bare_cr += 1
            lines += block.count(b"\n")
            delims += block.count(delimiter)
            quotes += block.count(quote)
            bare_cr += block.count(b"\r") - block.count(b"\r\n") - (block[-1:] == b"\r")
            last = block[-1:]
    if bare_cr or last == b"\r":
        return None
    return lines + (last != b"\n"), delims, quotes


def _read_one(con: duckdb.DuckDBPyConnection, path: str, options: CsvOptions, table: str,
              width: int, prefix: bytes) -> tuple[str, int] | None:
    """Read the records of ``path`` after ``prefix`` (skipped lines and header) into
    ``table`` (columns c0..); returns (a query of them with their line numbers as
    ``line``, their count), or None when the Python reader must read the file."""
    encoding = _ENCODINGS[options.encoding]
    delim, quote = options.delimiter.encode(encoding), options.quote.encode(encoding)
    counted = _count(path, delim, quote)
    if counted is None:
        return None
    lines, delims, quotes = counted
    skip = prefix.count(b"\n")
    cols = [f"c{i}" for i in range(width)]
    types = "{" + ", ".join(f"{literal(c)}: 'VARCHAR'" for c in cols) + "}"
    keep = con.execute("SELECT current_setting('preserve_insertion_order')").fetchone()[0]
    con.execute("SET preserve_insertion_order = true")  # rowid = order in the file
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {ident(table)} AS SELECT * FROM read_csv("
            f"{literal(path)}, header = false, skip = {skip}, auto_detect = false, "
            f"delim = {literal(options.delimiter)}, quote = {literal(options.quote)}, "
            f"escape = {literal(options.quote)}, columns = {types}, "
            f"nullstr = {_NO_NULL}, strict_mode = true, encoding = {literal(encoding)})")
    except duckdb.Error:
        return None
    finally:
        con.execute(f"SET preserve_insertion_order = {'true' if keep else 'false'}")

    # counted over each record's fields joined, and only in the records that hold a
    # line break, delimiter or quote at all (few): ~5x cheaper than field by field
    joined = "concat(" + ", ".join(cols) + ")"
    special = " OR ".join(f"contains(s, {literal(ch)})"
                          for ch in ("\n", options.delimiter, options.quote))

    def occurrences(char: str) -> str:  # (in bytes: cheaper than in characters)
        n = len(char.encode("utf-8"))
        return f"coalesce(sum(strlen(s) - strlen(replace(s, {literal(char)}, ''))), 0) // {n}"

    nulls = " + ".join(f"count(*) - count({c})" for c in cols)
    rows, nulls = con.execute(f"SELECT count(*), {nulls} FROM {ident(table)}").fetchone()
    breaks, in_delims, in_quotes = con.execute(
        f"SELECT {occurrences(chr(10))}, {occurrences(options.delimiter)}, "
        f"{occurrences(options.quote)} FROM (SELECT {joined} AS s FROM {ident(table)}) "
        f"WHERE {special}").fetchone()
    # what DuckDB's strict mode lets pass and the Python reader rejects shows in the
    # counts: a record ending with extra empty fields ('1,2,,' for two columns) has
    # more delimiters than its fields take, an unbalanced quote an odd number of
    # quotes around fields; a blank line (the Python reader skips it) is a line more
    around = quotes - prefix.count(quote) - 2 * in_quotes
    if (nulls or lines != skip + rows + breaks or around < 0 or around % 2
            or delims - prefix.count(delim) != rows * (width - 1) + in_delims):
        return None
    first = skip + 1
    if not breaks:
        return f"SELECT *, {first} + rowid AS line FROM {ident(table)}", rows
    # the records with line breaks inside fields (few): the lines before each record
    ml = f"{table}_breaks"
    con.execute(f"CREATE OR REPLACE TEMP TABLE {ident(ml)} AS SELECT r, sum(n) OVER "
                f"(ORDER BY r) AS before FROM (SELECT rowid AS r, {joined} AS s, "
                f"strlen(s) - strlen(replace(s, chr(10), '')) AS n FROM {ident(table)} "
                f"WHERE contains({joined}, chr(10)))")
    return (f"SELECT t.*, {first} + t.rowid + coalesce(m.before, 0) AS line "
            f"FROM {ident(table)} t ASOF LEFT JOIN {ident(ml)} m ON t.rowid > m.r"), rows


def stage_csv_fast(con: duckdb.DuckDBPyConnection, files: list[str], options: CsvOptions,
                   table: str) -> tuple[list[str], int] | None:
    """Stage ``files`` as the view ``table`` (their columns as text, ``_km_line``,
    ``_km_file``; files combined by column name, as the Python reader does) with
    DuckDB's reader; returns (columns, rows), or None when any file needs the Python
    reader (nothing is staged then)."""
    from .readers import FILE_COLUMN, LINE_COLUMN, _unique_header

    if options.delimiter == "whitespace" or options.encoding not in _ENCODINGS:
        return None
    parts: list[tuple[str, list[str], str]] = []
    columns: list[str] = []
    total = 0
    for i, path in enumerate(files):
        found = _header(path, options) if os.path.getsize(path) else None
        if found is None:
            return None
        fields, skipped, first = found
        if options.header:
            names, before = _unique_header(fields), skipped + first
        else:
            names, before = [f"column_{k + 1}" for k in range(len(fields))], skipped
        read = _read_one(con, path, options, f"{table}__{i}", len(fields), before)
        if read is None:
            return None
        parts.append((path, names, read[0]))
        columns += [n for n in names if n not in columns]
        total += read[1]
    selects = []
    for path, names, query in parts:
        picked = ", ".join(f"c{names.index(c)} AS {ident(c)}" if c in names
                           else f"NULL::VARCHAR AS {ident(c)}" for c in columns)
        selects.append(f"SELECT {picked}, line::BIGINT AS {LINE_COLUMN}, "
                       f"{literal(path)} AS {FILE_COLUMN} FROM ({query})")
    con.execute(f"CREATE OR REPLACE TEMP VIEW {ident(table)} AS " + " UNION ALL ".join(selects))
    return columns, total
