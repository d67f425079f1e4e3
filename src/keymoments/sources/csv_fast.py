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
  quoted fields of the records before it. That holds only if no blank line comes
  before a record (both readers skip blank lines), so the physical lines of the
  file are counted and must add up, or the Python reader is used;
* what DuckDB's strict mode reads and the Python reader rejects: a record ending
  with extra empty fields (``1,2,,`` for two columns), an unclosed quote at the end
  of the file, blanks after a closing quote (``"a" ,b``), two quoted parts in one
  field (``"" ""``). The records with a quote inside a value are read again by the
  Python reader from their raw lines (they are few) and must give the same fields;
  in the others every quote opens or closes a quoted field, and the file's bytes,
  delimiters, quotes and the pairs where quoted fields open (after a delimiter or
  line feed) and close (before a delimiter or line end) are counted and must add
  up with the values DuckDB read;
* what DuckDB reads itself: one-character delimiters (not ``whitespace``), UTF-8 and
  Latin-1, a header on one line, LF or CRLF line ends and no other CR.

Empty fields are empty strings (as from Python's ``csv``; the mapping turns the
configured ``null_values`` into NULL), never NULL. ``tests/test_csv_fast.py``
checks that both readers stage the same rows, line numbers and values, for the
data sets in ``../shared/data`` and for generated files.
"""

from __future__ import annotations

import csv
import io
import os

import duckdb

from ..config.models import CsvOptions
from ..sql import ident, literal

__all__ = ["stage_csv_fast"]

#: encodings (their ``codecs`` names) DuckDB's CSV reader decodes itself
_ENCODINGS = {"utf-8": "utf-8", "utf-8-sig": "utf-8", "iso8859-1": "latin-1"}
#: the file is counted in blocks of this many bytes
BLOCK = 1 << 24
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


def _patterns(delimiter: bytes, quote: bytes) -> dict[str, bytes]:
    """Byte pairs where a quoted field opens (after a delimiter or a line feed) or
    closes (before a delimiter, a line feed or a carriage return)."""
    return {"open_d": delimiter + quote, "open_n": b"\n" + quote,
            "close_d": quote + delimiter, "close_n": quote + b"\n", "close_r": quote + b"\r"}


def _singles(delimiter: bytes, quote: bytes) -> dict[str, bytes]:
    """The single bytes counted in the file (see :func:`_count`)."""
    return {"lf": b"\n", "cr": b"\r", "delims": delimiter, "quotes": quote}


def _count(path: str, delimiter: bytes, quote: bytes) -> dict[str, int] | None:
    """Bytes, line feeds, carriage returns, delimiters, quotes and the pairs of
    :func:`_patterns` in the file, and its lines as the Python reader counts them;
    None when a carriage return does not end a line (Python's ``csv`` and DuckDB
    split lines differently there)."""
    pairs = _patterns(delimiter, quote)
    singles = _singles(delimiter, quote)
    n = dict.fromkeys(("size", "crlf", *singles, *pairs), 0)
    last, first = b"", b""
    with open(path, "rb") as fh:
        while block := fh.read(BLOCK):
            first = first or block[:1]
            n["size"] += len(block)
            seam = last + block[:1]  # a pair split between two blocks
            has_cr = b"\r" in block  # (most files have none: two searches fewer)
            for name, part in [*singles.items(), *pairs.items(), ("crlf", b"\r\n")]:
                if has_cr or b"\r" not in part:
                    n[name] += block.count(part)
                n[name] += len(part) == 2 and seam == part
            last = block[-1:]
    if n["cr"] != n["crlf"] or last == b"\r":
        return None
    n["lines"] = n["lf"] + (last != b"\n")
    n["starts_quoted"], n["ends_quoted"] = int(first == quote), int(last == quote)
    return n


def _blank_tail(path: str) -> int | None:
    """How many blank lines end the file (both readers skip them; one in the middle
    shifts DuckDB's line numbers, and the counts send that file to the Python
    reader)."""
    with open(path, "rb") as fh:
        fh.seek(max(os.path.getsize(path) - (1 << 16), 0))
        tail = fh.read()
    kept = tail.rstrip(b"\r\n")
    if not kept:
        return None  # (64 KiB of line ends: let the Python reader count them)
    return max(tail[len(kept):].count(b"\n") - 1, 0)


#: at most this many records with a quote in a value are read again by Python
MAX_RECHECK = 200_000


def _raw_records(path: str, spans: dict[int, int]) -> dict[int, bytes]:
    """The raw bytes of the records starting on the lines of ``spans`` (line ->
    how many physical lines the record takes)."""
    out: dict[int, bytes] = {}
    start, need, buf = 0, 0, []
    with open(path, "rb") as fh:
        for no, line in enumerate(fh, 1):
            if need:
                buf.append(line)
                need -= 1
            elif no in spans:
                start, need, buf = no, spans[no] - 1, [line]
            else:
                continue
            if not need:
                out[start] = b"".join(buf)
    return out


def _read_one(con: duckdb.DuckDBPyConnection, path: str, options: CsvOptions, table: str,
              width: int, prefix: bytes) -> tuple[str, int] | None:
    """Read the records of ``path`` after ``prefix`` (skipped lines and header) into
    ``table`` (columns c0..); returns (a query of them with their line numbers as
    ``line``, their count), or None when the Python reader must read the file."""
    encoding = _ENCODINGS[options.encoding]
    delim, quote = options.delimiter.encode(encoding), options.quote.encode(encoding)
    pairs = _patterns(delim, quote)
    n, blank = _count(path, delim, quote), _blank_tail(path)
    if n is None or blank is None:
        return None
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

    joined = "concat(" + ", ".join(cols) + ")"
    q, d = literal(options.quote), literal(options.delimiter)

    def occurrences(char: str) -> str:  # (in bytes: cheaper than in characters)
        k = len(char.encode("utf-8"))
        return f"coalesce(sum(strlen(s) - strlen(replace(s, {literal(char)}, ''))), 0) // {k}"

    # 1. line numbers: the records with line breaks inside fields (few), and the lines
    # before each; a blank line before a record (both readers skip it, but DuckDB's
    # count would be one short from there) makes the file's lines not add up
    nulls = " + ".join(f"count(*) - count({c})" for c in cols)
    rows, nulls = con.execute(f"SELECT count(*), {nulls} FROM {ident(table)}").fetchone()
    ml = f"{table}_breaks"
    con.execute(f"CREATE OR REPLACE TEMP TABLE {ident(ml)} AS SELECT r, n, sum(n) OVER "
                f"(ORDER BY r) AS before FROM (SELECT rowid AS r, {joined} AS s, "
                f"strlen(s) - strlen(replace(s, chr(10), '')) AS n FROM {ident(table)} "
                f"WHERE contains({joined}, chr(10)))")
    breaks = con.execute(f"SELECT coalesce(sum(n), 0) FROM {ident(ml)}").fetchone()[0]
    if nulls or n["lines"] != skip + rows + breaks + blank:
        return None
    first = skip + 1
    lines = f"SELECT *, {first} + rowid AS line FROM {ident(table)}"
    if breaks:  # the breaks of the records before: the running sum of the last one
        lines = (f"SELECT t.*, {first} + t.rowid + coalesce(p.before, 0) AS line "
                 f"FROM {ident(table)} t ASOF LEFT JOIN {ident(ml)} p ON t.rowid > p.r")

    # 2. the records with a quote inside a value are read again by the Python reader
    # from their raw lines and must give the same fields (a quote in a value is
    # doubled in a quoted field, or taken as it is in an unquoted one: the counts
    # below cannot tell which)
    quoted = con.execute(
        f"SELECT line, strlen({joined}) - strlen(replace({joined}, chr(10), '')), "
        f"{', '.join(cols)} FROM ({lines}) WHERE contains({joined}, {q})").fetchall()
    if len(quoted) > MAX_RECHECK:
        return None
    raw = _raw_records(path, {r[0]: r[1] + 1 for r in quoted}) if quoted else {}
    rest = dict.fromkeys(("size", "lf", "cr", "delims", "quotes", *pairs), 0)
    starts_quoted, ends_quoted = n["starts_quoted"] and not prefix, n["ends_quoted"]
    for line, _, *values in quoted:
        text = raw.get(line)
        if text is None:
            return None
        try:
            parsed = list(csv.reader(io.StringIO(text.decode(encoding), newline=""),
                                     delimiter=options.delimiter, quotechar=options.quote,
                                     doublequote=True, strict=True))
        except (csv.Error, UnicodeDecodeError):
            return None
        if parsed != [values]:
            return None
        lead = b"\n" if line > 1 else b""  # (a pair across the line before: this record's)
        starts_quoted = starts_quoted and line > 1
        ends_quoted = ends_quoted and text.endswith(b"\n")
        rest["size"] += len(text)
        for key, part in _singles(delim, quote).items():
            rest[key] += text.count(part)
        for key, pair in pairs.items():
            rest[key] += (lead + text).count(pair)

    # 3. the other records, whose values hold no quote: every quote in their bytes
    # opens or closes a quoted field. What DuckDB's strict mode lets pass and the
    # Python reader rejects shows in their counts: a record ending with extra empty
    # fields ('1,2,,' for two columns) has more delimiters than its fields take; an
    # unclosed quote makes their number odd; blanks after a closing quote ('"a" ,b')
    # or a second quoted part in a field ('"" ""') leave a quote that does not open
    # after a delimiter or line feed or close before one, or bytes that no value,
    # quote, delimiter or line end accounts for
    size = "length" if encoding == "latin-1" else "strlen"  # (Latin-1: a byte a character)
    # a value that ends with a delimiter or line feed puts a (delimiter|LF, quote) pair
    # before its closing quote; one that starts with a delimiter, LF or CR a (quote,
    # delimiter|LF|CR) pair after its opening quote
    ends = " + ".join(f"(suffix({c}, {d}) OR suffix({c}, chr(10)))::INT" for c in cols)
    starts = " + ".join(f"(prefix({c}, {d}) OR prefix({c}, chr(10)) OR prefix({c}, chr(13)))::INT"
                        for c in cols)
    value_bytes = " + ".join(f"coalesce(sum({size}({c})), 0)" for c in cols)
    n_rest, value_bytes = con.execute(
        f"SELECT count(*), {value_bytes} FROM {ident(table)} "
        f"WHERE NOT contains({joined}, {q})").fetchone()
    # (only records holding a line feed or a delimiter can have those in values)
    in_lf, in_cr, in_delims, false_open, false_close = con.execute(
        f"SELECT {occurrences(chr(10))}, {occurrences(chr(13))}, "
        f"{occurrences(options.delimiter)}, coalesce(sum({ends}), 0), "
        f"coalesce(sum({starts}), 0) FROM (SELECT *, {joined} AS s FROM {ident(table)}) "
        f"WHERE NOT contains(s, {q}) AND (contains(s, chr(10)) OR contains(s, {d}))"
    ).fetchone()

    single = {**_singles(delim, quote), **pairs}

    def left(key: str) -> int:  # in the bytes after the prefix, less the re-read records
        return n[key] - prefix.count(single[key]) - rest[key]

    around = left("quotes")
    outside = n_rest * (width - 1)
    opened = left("open_d") + left("open_n") - false_open + starts_quoted
    closed = left("close_d") + left("close_n") + left("close_r") - false_close + ends_quoted
    body = value_bytes + around + outside + left("lf") - in_lf + left("cr") - in_cr
    if (around % 2 or not opened == closed == around // 2
            or left("delims") != outside + in_delims
            or n["size"] - len(prefix) - rest["size"] != body):
        return None
    return lines, rows


def stage_csv_fast(con: duckdb.DuckDBPyConnection, files: list[str], options: CsvOptions,
                   table: str) -> tuple[list[str], int, dict[str, list[str]]] | None:
    """Stage ``files`` as the view ``table`` (their columns as text, ``_km_line``,
    ``_km_file``; files combined by column name, as the Python reader does) with
    DuckDB's reader; returns (columns, rows, each file's own columns), or None when any
    file needs the Python reader (nothing is staged then)."""
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
            names, before = _unique_header(fields, path), skipped + first
        else:
            names, before = [f"column_{k + 1}" for k in range(len(fields))], skipped
        read = _read_one(con, path, options, f"{table}__{i}", len(fields), before)
        if read is None:
            return None
        parts.append((path, names, read[0]))
        # combined by name, and names equal but for case are one (DuckDB's ignore it)
        columns += [n for n in names if n.lower() not in {c.lower() for c in columns}]
        total += read[1]
    selects = []
    for path, names, query in parts:
        at = {n.lower(): k for k, n in enumerate(names)}
        picked = ", ".join(f"c{at[c.lower()]} AS {ident(c)}" if c.lower() in at
                           else f"NULL::VARCHAR AS {ident(c)}" for c in columns)
        selects.append(f"SELECT {picked}, line::BIGINT AS {LINE_COLUMN}, "
                       f"{literal(path)} AS {FILE_COLUMN} FROM ({query})")
    con.execute(f"CREATE OR REPLACE TEMP VIEW {ident(table)} AS " + " UNION ALL ".join(selects))
    return columns, total, {path: names for path, names, _ in parts}

