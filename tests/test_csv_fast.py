"""DuckDB's CSV reader (the fast path) against the Python reader (the oracle): for every
file the fast path accepts, both stage the same columns, rows, values and line
numbers; files it cannot read exactly as the Python reader does go to the Python reader.
"""

from __future__ import annotations

import csv
import io

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keymoments.config.models import CsvOptions
from keymoments.sources import readers
from keymoments.sources.csv_fast import stage_csv_fast


def _rows(con, table: str, columns: list[str]) -> list[tuple]:
    cols = ", ".join(f'"{c}"' for c in columns)
    return con.execute(f"SELECT {cols}, _km_line, _km_file FROM {table} "
                       "ORDER BY _km_file, _km_line").fetchall()


def _python(con, files, options):
    old = readers.FAST_CSV
    readers.FAST_CSV = False
    try:
        return readers.stage_file(con, files, "csv", options, "_py")
    finally:
        readers.FAST_CSV = old


def check_same(files: list[str], options: CsvOptions, expect_fast: bool | None = True):
    """Stage ``files`` both ways; the fast path must agree wherever it is used."""
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")  # as a workspace sets it
    py = _python(con, files, options)
    fast = stage_csv_fast(con, files, options, "_fast")
    if expect_fast is not None:
        assert (fast is not None) == expect_fast, files
    if fast is None:
        return None
    columns, rows, own = fast
    assert columns == py.columns and own == py.file_columns  # (each file's header too)
    assert rows == py.rows and not py.rejects
    assert _rows(con, "_fast", columns) == _rows(con, "_py", py.columns)
    return fast


@pytest.mark.parametrize("name, options", [
    ("helpdesk/helpdesk.csv", {}),
    ("olist-sample/olist_orders_dataset.csv", {}),
    ("olist-sample/olist_order_reviews_dataset.csv", {}),  # Portuguese text, line breaks
    ("olist-sample/olist_order_items_dataset.csv", {}),
    ("olist-funnel/olist_marketing_qualified_leads_dataset.csv", {}),
    ("olist-funnel/olist_closed_deals_dataset.csv", {}),
    ("telco-churn/telco_customer_churn.csv", {}),
    ("uwv-complaints/complaints.csv", {"delimiter": ";", "encoding": "latin-1"}),
])
def test_real_exports_read_the_same(shared_data, name, options):
    check_same([str(shared_data / name)], CsvOptions(**options))


def test_whitespace_delimited_goes_to_the_python_reader(shared_data):
    assert check_same([str(shared_data / "cdnow/CDNOW_master.txt")],
                      CsvOptions(delimiter="whitespace", header=False), expect_fast=False) is None


def test_multiline_fields_keep_their_line_numbers(tmp_path):
    text = ('id,text,n\r\n1,"two\r\nlines",\r\n2,"a ""q"" b",""\r\n'
            '3,"three\r\nline\r\nbreaks",x\r\n4,  x ,5\r\n')
    path = tmp_path / "a.csv"
    path.write_bytes(text.encode())
    check_same([str(path)], CsvOptions())
    con = duckdb.connect()
    stage_csv_fast(con, [str(path)], CsvOptions(), "_f")
    got = con.execute("SELECT id, _km_line, text FROM _f ORDER BY _km_line").fetchall()
    assert got == [("1", 2, "two\r\nlines"), ("2", 4, 'a "q" b'),
                   ("3", 5, "three\r\nline\r\nbreaks"), ("4", 8, "  x ")]


@pytest.mark.parametrize("text, why", [
    (b"id,text\n1,\"open\n2,b\n", "unbalanced quote"),
    (b"id,text\n1,a,extra\n2,b\n", "too many fields"),
    (b"id,text\n1\n2,b\n", "too few fields"),
    (b"id,text\n1,a\n\n2,b\n", "blank line between records"),
    (b"id,text\n1,caf\xe9\n", "not utf-8"),
    (b"id,text\r1,a\r2,b\r", "bare CR line ends"),
    (b"id,text\n1,\"a\rb\"\n", "bare CR in a field"),
    (b"id,\"te\nxt\"\n1,a\n", "header over two lines"),
    (b"", "empty file"),
    # what DuckDB's strict mode reads and the Python reader rejects
    (b"a,b\n1,2,,\n", "extra empty fields at the end of a record"),
    (b"a,b\n,,\"", "an unclosed quote at the end of the file"),
    (b"a,b\n\"x\" ,y\n", "a blank after a closing quote"),
    (b"a,b\n,\"\" \"\"\n", "two quoted parts in one field"),
    (b"a,b\nc\"\"c,1\n,\"\" \"\"\n", "a bad field beside a quote taken as it is"),
])
def test_what_the_python_reader_must_read(tmp_path, text, why):
    path = tmp_path / "bad.csv"
    path.write_bytes(text)
    con = duckdb.connect()
    assert stage_csv_fast(con, [str(path)], CsvOptions(), "_f") is None, why


def test_blank_lines_at_the_end_are_skipped_as_the_python_reader_does(tmp_path):
    for text in ("id,t\n1,a\n2,b\n\n\n", "id,t\r\n1,a\r\n\r\n", "id,t\n1,\"x\ny\"\n\n"):
        path = tmp_path / "t.csv"
        path.write_bytes(text.encode())
        check_same([str(path)], CsvOptions())


def test_a_byte_order_mark_before_the_header_is_dropped(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbfid,t\r\n1,a\r\n2,\"b\r\nc\"\r\n")
    assert check_same([str(path)], CsvOptions())[:2] == (["id", "t"], 2)


def test_files_of_one_source_combine_by_column_name(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("id,x\n1,p\n2,q\n")
    b.write_text("y,id\nr,3\n")
    fast = check_same([str(a), str(b)], CsvOptions())
    assert fast == (["id", "x", "y"], 3, {str(a): ["id", "x"], str(b): ["y", "id"]})


def test_an_ingest_through_the_fast_path_loads_what_the_python_path_loads(make_workspace):
    config = """
sources:
  s:
    path: e.csv
    identifiers: {customer_id: cid}
    ts: when
    event_type: {column: kind}
    text: note
"""
    body = ("cid,when,kind,note\n"
            + "".join(f"c{i},2026-01-0{1 + i % 9}T10:00:00Z,order_placed,\"n {i}\nok\"\n"
                      for i in range(40))
            + "c9,not a date,order_placed,x\n")
    got = {}
    for fast in (True, False):
        old = readers.FAST_CSV
        readers.FAST_CSV = fast
        try:
            ws = make_workspace(config, {"e.csv": body}, folder=f"ws{fast}")
            r = ws.ingest("s")
            got[fast] = (
                (r.rows_read, r.rows_loaded, r.rows_quarantined),
                ws.con.execute("SELECT line, field FROM quarantine").fetchall(),
                ws.con.execute("SELECT event_id, source_line, text FROM events "
                               "ORDER BY source_line").fetchall())
        finally:
            readers.FAST_CSV = old
    assert got[True] == got[False]
    counts, quarantined, events = got[True]
    assert counts == (41, 40, 1)
    assert quarantined == [(82, "ts")]  # the bad row's line, after 40 two-line records
    assert [e[1] for e in events] == list(range(2, 82, 2))


_field = st.lists(st.sampled_from(list('ab ,;"\n\r\té\x01') + ["\r\n", "x y"]),
                  max_size=5).map("".join)


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(_field, min_size=3, max_size=3), min_size=1, max_size=8),
       delimiter=st.sampled_from([",", ";", "\t"]), crlf=st.booleans(), header=st.booleans(),
       skip=st.integers(0, 2), final_newline=st.booleans(), blank_tail=st.integers(0, 2))
def test_generated_files_read_the_same(tmp_path, rows, delimiter, crlf, header, skip,
                                       final_newline, blank_tail):
    buf = io.StringIO(newline="")
    for k in range(skip):
        buf.write(f"preamble {k}" + ("\r\n" if crlf else "\n"))
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\r\n" if crlf else "\n")
    if header:
        w.writerow(["h1", "h 2", "h1"])
    for row in rows:
        w.writerow(row)
    text = buf.getvalue()
    if not final_newline:
        text = text.removesuffix("\r\n").removesuffix("\n")
    elif blank_tail:
        text += ("\r\n" if crlf else "\n") * blank_tail
    path = tmp_path / "g.csv"
    path.write_bytes(text.encode())
    # a file whose first record is an empty line, or spans lines, may go either way;
    # a plain file (no blank record, no line break or CR in fields, no field that is
    # DuckDB's null string) must be fast
    plain = all(any(f for f in r) for r in rows) and not any(
        "\n" in f or "\r" in f or f == "\x01" for r in rows for f in r)
    check_same([str(path)], CsvOptions(delimiter=delimiter, header=header, skip_rows=skip),
               expect_fast=True if plain else None)


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.lists(st.sampled_from(['a', '"', 'b c', '""', ',', ' ', "é", "\r"]),
                               max_size=7).map("".join), min_size=1, max_size=6),
       crlf=st.booleans())
def test_raw_text_is_never_read_differently(tmp_path, lines, crlf):
    """Any text, well formed or not: when the fast path accepts a file, the Python
    reader reads the same rows from it and rejects none."""
    path = tmp_path / "r.csv"
    path.write_bytes(("a,b\n" + ("\r\n" if crlf else "\n").join(lines)).encode())
    check_same([str(path)], CsvOptions(), expect_fast=None)


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.lists(st.sampled_from([b",", b'"', b"\n", b"\r\n", b"a", b'""', b',"', b'"\r\n']),
                     max_size=30).map(b"".join), block=st.integers(1, 9))
def test_counts_do_not_depend_on_the_block_size(tmp_path, data, block, monkeypatch):
    """The file is counted block by block: pairs split between two blocks count once."""
    from keymoments.sources import csv_fast

    path = tmp_path / "c.csv"
    path.write_bytes(data)
    monkeypatch.setattr(csv_fast, "BLOCK", 1 << 24)
    whole = csv_fast._count(str(path), b",", b'"')
    monkeypatch.setattr(csv_fast, "BLOCK", block)
    assert csv_fast._count(str(path), b",", b'"') == whole
    if whole is not None:  # the oracle: the same counts over the whole bytes at once
        pairs = csv_fast._patterns(b",", b'"')
        assert {k: whole[k] for k in pairs} == {k: data.count(p) for k, p in pairs.items()}
        assert (whole["lf"], whole["quotes"], whole["size"]) == \
            (data.count(b"\n"), data.count(b'"'), len(data))
