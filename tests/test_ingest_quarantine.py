"""What the quarantine keeps for a rejected row: file, line, field, value, a reason that
says what is wrong and what to do, and the whole raw row. Files are written by hand
here, so every expected line number and value is known without keymoments."""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import keymoments as km

BASE = """
sources:
  s:
    path: {path}
    identifiers: {{customer_id: id, email: email}}
    event_type: {{value: visit}}
    ts: {ts}
    rating: {{column: score, scale: {scale}}}
    text: note
    measures: {{amount: amount}}
    {extra}
"""


def cfg(path="data.csv", ts="when", scale="csat5", extra=""):
    return BASE.format(path=path, ts=ts, scale=scale, extra=extra)


HEADER = "id,email,when,score,note,amount\n"


def quarantine(ws) -> dict[int, dict]:
    rows = ws.quarantine().to_pylist()
    assert len({r["line"] for r in rows}) == len(rows), "one quarantine row per record"
    return {r["line"]: r for r in rows}


def raw_row(text: str, line: int) -> dict:
    """The record starting at ``line`` as the csv module reads it (the oracle)."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    for row in reader:
        if reader.line_num >= line:  # line_num is the record's last line
            return row
    raise AssertionError(line)


def test_every_field_of_a_quarantine_row(make_workspace):
    text = (HEADER
            + "1,,2024-01-01 10:00:00,4,fine,12.5\n"                      # 2 good
            + '2,,2024-31-01,4,"multi\nline",1\n'                         # 3 bad date (2 lines)
            + ",,2024-01-01,4,no id,1\n"                                  # 5
            + "4,,2024-01-01,great,x,1\n"                                 # 6 rating not a number
            + "5,,2024-01-01,7,x,1\n"                                     # 7 off the scale
            + "6,not-an-email,2024-01-01,3,x,1\n"                         # 8 bad email
            + "7,,2024-01-01,3,x,12€\n"                                   # 9 measure not a number
            + "8,,2024-01-01,3,x,nan\n"                                   # 10 NaN is not a number
            + "9,,,3,x,1\n")                                              # 11 no timestamp
    ws = make_workspace(cfg(), {"data.csv": text})
    rep = ws.ingest("s")
    assert (rep.rows_read, rep.rows_loaded, rep.rows_quarantined) == (9, 1, 8)
    q = quarantine(ws)
    assert sorted(q) == [3, 5, 6, 7, 8, 9, 10, 11]
    for line, row in q.items():
        assert row["source"] == "s" and row["file"].endswith("data.csv")
        assert json.loads(row["raw"]) == raw_row(text, line), line
        assert row["reason"]

    def check(line, field, value, *words):
        row = q[line]
        assert (row["field"], row["value"]) == (field, value), row
        for w in words:
            assert w in row["reason"], (w, row["reason"])

    check(3, "ts", "2024-31-01", "cannot read the value as a timestamp", "ISO 8601",
          "'when'", "format")
    check(5, "identifiers", None, "no identifier", "id", "email")
    check(6, "rating", "great", "not a number", "'score'")
    check(7, "rating", "7", "outside the csat5 scale (1 to 5)", "'score'")
    check(8, "identifiers.email", "not-an-email", "not an email address")
    check(9, "measures.amount", "12€", "not a number", "'amount'")
    check(10, "measures.amount", "nan", "not a number")
    check(11, "ts", None, "no timestamp", "when")
    # nothing NaN was stored anywhere
    nans = ws.con.execute("SELECT count(*) FROM events WHERE isnan(rating) "
                          "OR list_contains(map_values(measures), 'NaN'::DOUBLE)").fetchone()[0]
    assert nans == 0


@pytest.mark.parametrize("extra, value, words", [
    ("timestamps: {format: '%d/%m/%Y %H:%M'}", "2024-01-05", ["format '%d/%m/%Y %H:%M'"]),
    ("timestamps: {unit: s}", "soon", ["epoch seconds"]),
    ("timestamps: {unit: ms}", "1e30", ["epoch milliseconds"]),
    ("timestamps: {unit: s}", "inf", ["epoch seconds"]),
    ("timestamps: {unit: s}", "1_709_287_200", ["epoch seconds"]),  # DuckDB's cast reads it
    ("timestamps: {unit: ms}", "+-1709287200000", ["epoch milliseconds"]),
])
def test_timestamp_reasons_name_the_expected_layout(make_workspace, extra, value, words):
    ws = make_workspace(cfg(extra=extra), {"data.csv": HEADER + f"1,,{value},3,x,1\n"})
    rep = ws.ingest("s")  # an epoch out of range is a bad row, not a failed load
    assert rep.rows_quarantined == 1
    row = quarantine(ws)[2]
    assert (row["field"], row["value"]) == ("ts", value)
    assert "cannot read the value as a timestamp; expected" in row["reason"]
    assert "'when'" in row["reason"]
    for w in words:
        assert w in row["reason"]


def test_reader_rejects_keep_the_line_text_and_name_the_column(make_workspace):
    good = "1,,2024-01-01,3,ok,1\n"
    data = (HEADER.encode() + good.encode()                         # 2
            + "2,,2024-01-02,3,caf\xe9,1\n".encode("latin-1")       # 3 latin-1 byte
            + b'3,,"2024-01-03,3,x,1\n'                             # 4 unterminated quote
            + b"4,,2024-01-04,3\n"                                  # 5 too few fields
            + b"5,,2024-01-05,3,ok,1\n")                            # 6
    ws = make_workspace(cfg(), {"data.csv": data})
    rep = ws.ingest("s")
    assert (rep.rows_read, rep.rows_loaded, rep.rows_quarantined) == (5, 2, 3)
    q = quarantine(ws)
    assert sorted(q) == [3, 4, 5]
    enc = q[3]
    assert enc["field"] == "note" and enc["value"] == "caf\\xe9"
    assert enc["raw"] == "2,,2024-01-02,3,caf\\xe9,1"  # the byte stays visible
    assert enc["reason"].startswith("not valid utf-8 text (byte 0xe9")
    assert "'note'" in enc["reason"] and "csv.encoding" in enc["reason"]
    quote = q[4]
    assert quote["field"] == "when" and quote["value"] == "2024-01-03,3,x,1"
    assert quote["reason"].startswith("unbalanced quote in column 'when'")
    assert quote["raw"] == '3,,"2024-01-03,3,x,1'
    width = q[5]
    assert width["reason"] == "expected 6 fields, found 4" and width["field"] is None
    assert width["raw"] == "4,,2024-01-04,3"
    assert sorted(ws.con.execute("SELECT source_line FROM events").fetchall()) == [(2,), (6,)]


def test_quarantine_is_not_doubled_and_fixed_rows_load(make_workspace):
    ws = make_workspace(cfg(), {"data.csv": HEADER + "1,,2024-01-01,3,x,1\n2,,bad,3,x,1\n"})
    ws.ingest("s")
    ws.ingest("s")
    assert len(ws.quarantine()) == 1
    # fix the file: the fixed row loads, the one already loaded stays as it was
    (ws.root / "data.csv").write_text(HEADER + "1,,2024-01-01,3,x,1\n2,,2024-01-02,3,x,1\n")
    rep = ws.ingest("s")
    assert (rep.rows_loaded, rep.rows_duplicate, rep.rows_quarantined) == (1, 1, 0)
    assert ws.con.execute("SELECT count(*) FROM events").fetchone()[0] == 2


def test_wide_table_row_with_one_bad_timestamp(make_workspace):
    text = ("order,cust,placed,shipped,promised\n"
            "o1,c1,2024-01-01 10:00:00,2024-01-03 09:00:00,2024-01-05\n"
            "o2,c2,2024-01-01 11:00:00,,2024-01-05\n"         # not shipped yet: skipped
            "o3,c3,2024-01-01 12:00:00,someday,2024-01-05\n")  # bad: the row is rejected
    ws = make_workspace("""
sources:
  orders:
    path: orders.csv
    identifiers: {customer_id: cust}
    refs: {order: order}
    events:
      - {event_type: {value: order_placed}, ts: placed}
      - event_type: {value: order_shipped}
        ts: shipped
        expectation: {kind: promised_delivery, ts: promised}
""", {"orders.csv": text})
    rep = ws.ingest("orders")
    assert (rep.rows_read, rep.rows_loaded, rep.rows_quarantined, rep.events_loaded) == (3, 2, 1, 3)
    row = quarantine(ws)[4]
    assert (row["field"], row["value"]) == ("ts", "someday")
    assert "'shipped'" in row["reason"]


def test_parquet_rejects_carry_the_row_number_and_a_clean_raw_row(make_workspace, tmp_path):
    table = pa.table({
        "id": pa.array(["a", "b", "c", "d"]),
        "when": pa.array(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]),
        "score": pa.array([3, 9, None, 2], pa.int64()),
        "note": pa.array(["x", "y", "z", "w"]),
        "amount": pa.array([1.5, 2.0, float("nan"), 4.0]),
        "email": pa.array([None, None, None, None], pa.string()),
        "filename": pa.array(["f1", "f2", "f3", "f4"]),  # a real column with this name
    })
    buf = io.BytesIO()
    pq.write_table(table, buf)
    ws = make_workspace(cfg(path="data.parquet"), {"data.parquet": buf.getvalue()})
    rep = ws.ingest("s")
    assert (rep.rows_read, rep.rows_loaded, rep.rows_quarantined) == (4, 3, 1)
    row = quarantine(ws)[2]  # rows count from 1, like lines
    assert (row["field"], row["value"]) == ("rating", "9")
    assert json.loads(row["raw"]) == {"id": "b", "when": "2024-01-02", "score": 9, "note": "y",
                                      "amount": 2.0, "email": None, "filename": "f2"}
    # a NaN in a typed column is a missing measure, never a stored NaN
    amounts = dict(ws.con.execute(
        "SELECT identifiers['customer_id'], measures['amount'] FROM events").fetchall())
    assert amounts == {"a": 1.5, "c": None, "d": 4.0}
    assert not any(isinstance(v, float) and math.isnan(v) for v in amounts.values())


def test_a_header_in_the_wrong_encoding_is_a_clear_error(make_workspace):
    data = "id;note;when\n1;x;2024-01-01\n".replace("note", "bemerkung_ä").encode("latin-1")
    config = cfg().replace("path: data.csv", "path: data.csv\n    csv: {delimiter: ';'}")
    ws = make_workspace(config, {"data.csv": data})
    with pytest.raises(km.SourceError, match=r"header \(line 1\).*csv.encoding"):
        ws.ingest("s")
    assert ws.con.execute("SELECT count(*) FROM loads").fetchone()[0] == 0


def test_a_language_that_is_not_a_code_is_quarantined(make_workspace):
    """A language goes into a webhook's Content-Language header: a value with a line
    break (a header injection) or in another script is rejected with its row."""
    text = ("id,email,when,score,note,amount,lang\n"
            "1,,2024-01-01,3,x,1,pt\n"                        # 2 loads
            '2,,2024-01-01,3,x,1,"pt\r\nX-Injected: yes"\n'   # 3 (2 lines)
            "3,,2024-01-01,3,x,1,pt-BR\n"                     # 5 loads, lower-cased
            "4,,2024-01-01,3,x,1,日本語\n"                    # 6
            "5,,2024-01-01,3,x,1,Portuguese\n"                # 7
            "6,,2024-01-01,3,x,1,\n")                         # 8 no language: loads
    ws = make_workspace(cfg(extra="language: lang"), {"data.csv": text})
    rep = ws.ingest("s")
    assert (rep.rows_read, rep.rows_loaded, rep.rows_quarantined) == (6, 3, 3)
    q = quarantine(ws)
    assert sorted(q) == [3, 6, 7]
    assert {(r["field"], r["value"]) for r in q.values()} == {
        ("language", "pt\r\nX-Injected: yes"), ("language", "日本語"),
        ("language", "Portuguese")}
    assert all("ISO 639" in r["reason"] for r in q.values())
    langs = ws.con.execute("SELECT language FROM events ORDER BY source_line").fetchall()
    assert langs == [("pt",), ("pt-br",), (None,)]


def test_a_quoted_field_longer_than_the_csv_modules_limit_loads_whole(make_workspace):
    """Python's csv refuses fields over 131,072 characters: the record was rejected as
    an unbalanced quote and the lines inside its quotes read as records (an event
    for customer 9 that the file does not have). The blank line sends the file to
    the Python reader."""
    long = "x" * 140_000
    text = (HEADER + f'1,,2024-01-01,3,"start\n9,,2024-06-06,3,fabricated,1\n{long}",1\n'
            "\n" + "3,,2024-01-03,3,y,1\n")
    ws = make_workspace(cfg(), {"data.csv": text})
    rep = ws.ingest("s")
    assert (rep.rows_read, rep.rows_loaded, rep.rows_quarantined) == (2, 2, 0)
    got = ws.con.execute("SELECT identifiers['customer_id'], length(text) FROM events "
                         "ORDER BY ts").fetchall()
    note = next(csv.DictReader(io.StringIO(text, newline="")))["note"]  # the oracle
    assert got == [("1", len(note)), ("3", 1)]


@pytest.mark.parametrize("unit", ["s", "ms"])
def test_an_epoch_time_before_1971_is_quarantined_asking_for_the_unit(make_workspace, unit):
    """Epoch seconds mapped with ``unit: ms`` read as January 1970 (1709287200 as
    1970-01-20), and a 0 placeholder as 1970-01-01: both loaded silently. No customer
    event happened before 1971; 1971-01-01 00:00:00 UTC itself (31536000 s) loads."""
    k = 1000 if unit == "ms" else 1
    wrong = 1709287200 if unit == "ms" else -86400  # seconds read as ms; 1969-12-31
    text = (HEADER + f"1,,{1709287200 * k},3,x,1\n"   # 2 loads: 2024-03-01 10:00 UTC
            f"2,,0,3,x,1\n"                           # 3
            f"3,,{31536000 * k},3,x,1\n"              # 4 loads: 1971-01-01 00:00 UTC
            f"4,,{31535999 * k},3,x,1\n"              # 5 1970-12-31 23:59:59
            f"5,,{wrong},3,x,1\n")                    # 6
    ws = make_workspace(cfg(extra=f"timestamps: {{unit: {unit}}}"), {"data.csv": text})
    rep = ws.ingest("s")
    assert (rep.rows_read, rep.rows_loaded, rep.rows_quarantined) == (5, 2, 3)
    got = [ts for (ts,) in ws.con.execute("SELECT ts FROM events ORDER BY ts").fetchall()]
    assert got == [datetime(1971, 1, 1, tzinfo=timezone.utc),
                   datetime(2024, 3, 1, 10, tzinfo=timezone.utc)]
    q = quarantine(ws)
    assert sorted(q) == [3, 5, 6]
    assert [q[line]["value"] for line in (3, 5, 6)] == ["0", str(31535999 * k), str(wrong)]
    for row in q.values():
        assert row["field"] == "ts"
        assert "before 1971" in row["reason"] and "check 'unit'" in row["reason"], row["reason"]


def test_a_time_outside_the_years_1_to_9999_is_quarantined(make_workspace):
    """DuckDB reads year 10000 and 1 BC, Python and Arrow do not: such a row loaded,
    then every build failed. 'epoch' is a placeholder DuckDB reads as 1970."""
    text = (HEADER + "1,,2024-01-01,3,x,1\n"   # 2 loads
            "2,,10000-01-01,3,x,1\n"            # 3
            "3,,0000-01-01,3,x,1\n"             # 4: 1 BC
            "4,,epoch,3,x,1\n"                  # 5
            "5,,9999-12-31T23:59:59Z,3,x,1\n")  # 6 loads: the last second of 9999
    ws = make_workspace(cfg(), {"data.csv": text})
    rep = ws.ingest("s")
    assert (rep.rows_read, rep.rows_loaded, rep.rows_quarantined) == (5, 2, 3)
    q = quarantine(ws)
    assert sorted(q) == [3, 4, 5]
    assert "outside the years 1 to 9999" in q[3]["reason"] and q[3]["value"] == "10000-01-01"
    assert "outside the years 1 to 9999" in q[4]["reason"]
    assert "cannot read the value as a timestamp" in q[5]["reason"]
    ws.build()  # the loaded times are ones every reader can hold
    assert [r[0].year for r in ws.con.execute("SELECT ts FROM events ORDER BY ts").fetchall()] \
        == [2024, 9999]


@pytest.mark.parametrize("ts_field", ["when", "{column: when, format: '%Y-%m-%d %H:%M'}"])
def test_a_wall_time_the_clocks_skip_is_quarantined_not_merged(make_workspace, ts_field):
    """New York skips 02:00-03:00 on 2024-03-10: 02:30 read as 03:30 made it the same
    instant as the real 03:30 event, and one of the two was dropped as a duplicate.
    The oracle is zoneinfo: a wall time exists when it survives the round trip."""
    from datetime import datetime, timezone
    from zoneinfo import ZoneInfo

    ny = ZoneInfo("America/New_York")
    times = ["2024-03-10 01:59", "2024-03-10 02:00", "2024-03-10 02:30", "2024-03-10 03:30",
             "2024-11-03 01:30", "2024-06-01 12:00"]

    def exists(text):
        wall = datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=ny)
        back = wall.astimezone(timezone.utc).astimezone(ny)
        return back.replace(tzinfo=None) == wall.replace(tzinfo=None)

    text = HEADER + "".join(f"1,,{t},3,x,1\n" for t in times)
    extra = "timestamps: {timezone: America/New_York}"
    ws = make_workspace(cfg(ts=ts_field, extra=extra), {"data.csv": text})
    rep = ws.ingest("s")
    skipped = [i + 2 for i, t in enumerate(times) if not exists(t)]
    assert skipped == [3, 4]
    assert sorted(quarantine(ws)) == skipped
    assert (rep.rows_loaded, rep.rows_duplicate) == (len(times) - 2, 0)


@pytest.mark.parametrize("python_reader", [False, True])
def test_names_equal_but_for_case_are_one_column_across_files(make_workspace, python_reader):
    """DuckDB's column names ignore case: two files with `note` and `Note` are one
    column (as DuckDB's own union_by_name), in either reader (a blank line sends a
    file to the Python one); before, the load failed or renamed one `note_1`."""
    blank = "\n" if python_reader else ""
    files = {"a.csv": f"id,when,note\n1,2024-01-01,first\n{blank}",
             "b.csv": f"id,when,Note\n2,2024-01-02,second\n{blank}"}
    text = """
sources:
  s:
    path: "*.csv"
    identifiers: {customer_id: id}
    event_type: {value: visit}
    ts: when
    text: note
"""
    ws = make_workspace(text, files)
    rep = ws.ingest("s")
    assert (rep.rows_read, rep.rows_loaded) == (2, 2)
    got = ws.con.execute("SELECT text FROM events ORDER BY ts").fetchall()
    assert got == [("first",), ("second",)]


def test_json_field_names_a_column_cannot_take_are_quarantined(make_workspace):
    text = """
sources:
  s:
    path: e.jsonl
    identifiers: {customer_id: id}
    event_type: {value: visit}
    ts: when
"""
    rows = ['{"id": "1", "when": "2024-01-01"}',                 # 1 loads
            '{"id": "2", "when": "2024-01-02", "": "x"}',        # 2 empty name
            '{"id": "3", "when": "2024-01-03", "_km_line": 7}',  # 3 keymoments's own
            '{"id": "4", "when": "2024-01-04", "a": 1, "A": 2}',  # 4 equal but for case
            '{"id": "5", "When": "2024-01-05"}',                 # 5 loads: `when` itself
            '{"id": "6", "when": "2024-01-06", "_km_text_0": 1}',  # 6 keymoments's own too
            '{"id": "7", "when": "2024-01-07", "n\\u0000": 1}']     # 7 a NUL
    ws = make_workspace(text, {"e.jsonl": "\n".join(rows) + "\n"})
    rep = ws.ingest("s")
    assert (rep.rows_read, rep.rows_loaded, rep.rows_quarantined) == (7, 2, 5)
    q = quarantine(ws)
    assert sorted(q) == [2, 3, 4, 6, 7]
    assert "empty name" in q[2]["reason"] and "begins with _km_" in q[3]["reason"]
    assert "begins with _km_" in q[6]["reason"] and "NUL character" in q[7]["reason"]
    assert "'a' and 'A' differ only in case" in q[4]["reason"]
    assert ws.con.execute("SELECT count(*) FROM events WHERE source_line = 7").fetchone()[0] == 0


@pytest.mark.parametrize("name, why", [("_km_line", "begins with _km_"),
                                       ("_KM_text_0", "begins with _km_"),
                                       ("no\x00te", "holds a NUL character")])
def test_a_csv_column_named_like_keymomentss_own_is_refused(make_workspace, name, why):
    """'_km_text_0' stood in for the mapping's working column of that name (every row's
    time read from it: all quarantined as bad times); a NUL failed with an internal error."""
    ws = make_workspace(cfg(), {"data.csv": f"id,email,when,score,note,amount,{name}\n"
                                            "1,,2024-01-01,3,x,1,99\n"})
    with pytest.raises(km.KeymomentsError, match=f"data.csv: column 7 of the header, .*{why}"):
        ws.ingest("s")
    assert ws.con.execute("SELECT count(*) FROM events").fetchone()[0] == 0


def test_a_parquet_column_named_like_keymomentss_own_is_refused(make_workspace, tmp_path):
    ws = make_workspace(cfg(path="data.parquet"))
    pq.write_table(pa.table({"id": ["1"], "when": ["2024-01-01"], "_km_text_0": ["x"]}),
                   tmp_path / "ws" / "data.parquet")
    with pytest.raises(km.KeymomentsError, match="'_km_text_0' begins with _km_"):
        ws.ingest("s")


def test_a_compressed_file_is_named_as_such(make_workspace, tmp_path):
    """A gzip file read as text fails on its first byte (0x8b) as a wrong encoding;
    the load says it is compressed instead, and writes nothing."""
    import gzip

    data = gzip.compress((HEADER + "1,,2024-01-01,3,x,1\n").encode())
    ws = make_workspace(cfg(path="data.csv.gz"), {"data.csv.gz": data})
    with pytest.raises(km.KeymomentsError, match="data.csv.gz is compressed.*decompress"):
        ws.ingest("s")
    assert ws.con.execute("SELECT count(*) FROM loads").fetchone()[0] == 0


def test_a_list_column_mapped_as_a_measure_is_a_config_error(make_workspace):
    """A Parquet list column has no single number per row: before, the load stopped
    with DuckDB's conversion error; now the mapping is named with its line."""
    table = pa.table({"id": ["1", "2"], "when": pa.array([0, 1], pa.timestamp("s", tz="UTC")),
                      "amount": pa.array([[1, 2], [3]], pa.list_(pa.int64()))})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    text = """
sources:
  s:
    path: data.parquet
    identifiers: {customer_id: id}
    event_type: {value: visit}
    ts: when
    measures: {amount: amount}
"""
    ws = make_workspace(text, {"data.parquet": buf.getvalue()})
    with pytest.raises(km.ConfigError, match=r"column 'amount' holds BIGINT\[\] values") as info:
        ws.ingest("s")
    assert info.value.key == "sources.s.measures.amount" and info.value.line == 8


def test_parquet_files_that_disagree_on_a_columns_type_are_refused(make_workspace):
    """Read together, an integer id in one file and a double in the other made every
    id 1.0, so the first file's events got other ids once the second was beside it,
    and a re-load stored them twice."""
    def parquet(table):
        buf = io.BytesIO()
        pq.write_table(table, buf)
        return buf.getvalue()

    when = pa.array([0], pa.timestamp("s", tz="UTC"))
    files = {"ex/a.parquet": parquet(pa.table({"id": pa.array([1], pa.int64()), "when": when})),
             "ex/b.parquet": parquet(pa.table({"id": pa.array([2.0]), "when": when}))}
    text = """
sources:
  s:
    path: ex/*.parquet
    identifiers: {customer_id: id}
    event_type: {value: visit}
    ts: when
"""
    ws = make_workspace(text, files)
    with pytest.raises(km.KeymomentsError, match="'id' is BIGINT in .*a.parquet but DOUBLE in "
                                                 ".*b.parquet"):
        ws.ingest("s")
    assert ws.con.execute("SELECT count(*) FROM events").fetchone()[0] == 0


@pytest.mark.parametrize("fmt", [None, "%Y-%m-%d %H:%M:%S %z"])
def test_an_impossible_utc_offset_is_quarantined(make_workspace, fmt):
    """No place is more than 14 hours from UTC, and an hour has 60 minutes; DuckDB
    read '+25:00' as a day earlier and '+05:75' as +06:15. The expected instants are
    worked out by hand."""
    from datetime import datetime, timezone

    utc = timezone.utc
    values = [  # (as written, the instant or None for quarantined)
        ("2024-01-05 10:00:00 +2500", None),
        ("2024-01-05 10:00:00 -1401", None),
        ("2024-01-05 10:00:00 +1500", None),
        ("2024-01-05 10:00:00 +0575", None),
        ("2024-01-05 10:00:00 +1400", datetime(2024, 1, 4, 20, tzinfo=utc)),
        ("2024-01-05 10:00:00 -1400", datetime(2024, 1, 6, 0, tzinfo=utc)),
        ("2024-01-05 10:00:00 +0545", datetime(2024, 1, 5, 4, 15, tzinfo=utc)),
        ("2024-01-05 10:00:00 -0930", datetime(2024, 1, 5, 19, 30, tzinfo=utc)),
    ]
    if fmt is None:  # ISO 8601 also writes the offset with a colon, or the hours alone
        values += [("2024-01-05T10:00:00+25:00", None), ("2024-01-05T10:00:00.5-14:30", None),
                   ("2024-01-05T10:00:00+99", None), ("2024-01-05T10:00:00+25:00:00", None),
                   ("2024-01-05T10:00:00+14:00:01", None), ("2024-01-05T10:00:00+02:00:60", None),
                   ("2024-01-05T10:00:00-14:00:00", datetime(2024, 1, 6, 0, tzinfo=utc)),
                   ("2024-01-05T10:00:00.5-14", datetime(2024, 1, 6, 0, 0, 0, 500000, utc)),
                   ("2024-01-05T10:00:00+14:00", datetime(2024, 1, 4, 20, tzinfo=utc))]
    ts = "when" if fmt is None else f"{{column: when, format: '{fmt}'}}"
    text = HEADER + "".join(f"{i},,{v},3,x,1\n" for i, (v, _) in enumerate(values))
    ws = make_workspace(cfg(ts=ts), {"data.csv": text})
    rep = ws.ingest("s")
    bad = [i + 2 for i, (_, want) in enumerate(values) if want is None]
    assert (rep.rows_read, rep.rows_quarantined) == (len(values), len(bad))
    q = quarantine(ws)
    assert sorted(q) == bad
    for line in bad:
        assert (q[line]["field"], q[line]["value"]) == ("ts", values[line - 2][0])
        assert q[line]["reason"].startswith("the UTC offset is impossible")
    got = ws.con.execute("SELECT source_line, ts FROM events ORDER BY source_line").fetchall()
    assert got == [(i + 2, want) for i, (_, want) in enumerate(values) if want is not None]


def test_a_year_of_fewer_than_four_digits_is_quarantined(make_workspace):
    """DuckDB reads '24-01-05' as 5 January of the year 24; with 'format' '%y-%m-%d'
    it is 2024, as the reason suggests. A year of four digits is taken as written."""
    from datetime import datetime, timezone

    values = ["24-01-05", "24-01-05 10:00:00", "124-01-05", "1-01-05",
              "24-01-05T10:00:00+02:00", "0024-01-05", "2024-01-05"]
    text = HEADER + "".join(f"{i},,{v},3,x,1\n" for i, v in enumerate(values))
    ws = make_workspace(cfg(), {"data.csv": text})
    rep = ws.ingest("s")
    assert (rep.rows_read, rep.rows_loaded, rep.rows_quarantined) == (7, 2, 5)
    q = quarantine(ws)
    assert sorted(q) == [2, 3, 4, 5, 6]
    for line, row in q.items():
        assert (row["field"], row["value"]) == ("ts", values[line - 2])
        assert row["reason"].startswith("a year of fewer than four digits in column 'when'")
        assert "set 'format' (e.g. '%y-%m-%d'" in row["reason"]
    got = ws.con.execute("SELECT ts FROM events ORDER BY source_line").fetchall()
    assert got == [(datetime(24, 1, 5, tzinfo=timezone.utc),),
                   (datetime(2024, 1, 5, tzinfo=timezone.utc),)]
    # the format the reason suggests reads the two-digit years of this century
    ws2 = make_workspace(cfg(ts="{column: when, format: '%y-%m-%d'}"),
                         {"data.csv": HEADER + "1,,24-01-05,3,x,1\n"}, folder="short")
    assert ws2.ingest("s").rows_loaded == 1
    assert ws2.con.execute("SELECT ts FROM events").fetchall() == [
        (datetime(2024, 1, 5, tzinfo=timezone.utc),)]


@pytest.mark.parametrize("fmt", ["%d/%m/%Y", "%d/%m/%Y %z"])
def test_a_short_year_read_by_a_format_with_Y_is_quarantined(make_workspace, fmt):
    """%Y reads one to four digits: '05/01/24' would be 5 January of the year 24. Such a
    value is quarantined, pointing at %y; a year written with four digits ('0024',
    '2024') is taken as written."""
    from datetime import datetime, timedelta, timezone

    zone = " +0100" if fmt.endswith("%z") else ""
    values = ["05/01/24", "05/01/124", "05/01/2024", "05/01/0024", "06/01/9"]
    text = HEADER + "".join(f"{i},,{v}{zone},3,x,1\n" for i, v in enumerate(values))
    ws = make_workspace(cfg(ts=f"{{column: when, format: '{fmt}'}}"), {"data.csv": text})
    rep = ws.ingest("s")
    assert (rep.rows_read, rep.rows_loaded, rep.rows_quarantined) == (5, 2, 3)
    q = quarantine(ws)
    assert sorted(q) == [2, 3, 6]
    for line, row in q.items():
        assert (row["field"], row["value"]) == ("ts", values[line - 2] + zone)
        assert row["reason"].startswith("a year of fewer than four digits in column 'when'")
        assert "use %y in 'format'" in row["reason"]
    shift = timedelta(hours=1) if zone else timedelta(0)  # (+0100: an hour ahead of UTC)
    got = ws.con.execute("SELECT ts FROM events ORDER BY source_line").fetchall()
    assert got == [(datetime(2024, 1, 5, tzinfo=timezone.utc) - shift,),
                   (datetime(24, 1, 5, tzinfo=timezone.utc) - shift,)]


def test_a_row_fixed_in_place_and_loaded_again_leaves_the_open_list(make_workspace):
    """The quarantine keeps every rejected row; the listing leaves out the rows whose
    file line has loaded since, and says how many."""
    from click.testing import CliRunner

    from keymoments.cli import main

    text = """\
name: shop
sources:
  orders:
    path: orders.csv
    identifiers: {customer_id: cid}
    event_type: {value: order_placed}
    ts: at
"""
    bad = "cid,at\n1,2024-01-01T00:00:00Z\n2,yesterday\n3,never\n"
    ws = make_workspace(text, {"orders.csv": bad})
    assert ws.ingest("orders").rows_quarantined == 2
    assert [r["line"] for r in ws.quarantine().to_pylist()] == [3, 4]
    (ws.root / "orders.csv").write_text(bad.replace("yesterday", "2024-01-02T00:00:00Z"))
    report = ws.ingest("orders")
    assert (report.rows_loaded, report.rows_quarantined) == (1, 1)
    still = ws.quarantine()
    assert [r["line"] for r in still.to_pylist()] == [4] and still.meta["loaded_since"] == 1
    every = ws.quarantine(include_loaded=True).to_pylist()
    assert [(r["line"], r["loaded_since"]) for r in every] == [(3, True), (4, False)]
    # the same rows read again into a new load do not change what is open
    ws.ingest("orders")
    assert [r["line"] for r in ws.quarantine().to_pylist()] == [4]
    root = str(ws.root)
    ws.close()
    out = CliRunner().invoke(main, ["-w", root, "quarantine"])
    assert out.exit_code == 0 and "1 quarantined row(s) have loaded since" in out.output
    status = CliRunner().invoke(main, ["-w", root, "status"])
    assert "1 have loaded since" in status.output


@pytest.mark.parametrize("key", [None, "[cid, at]"])
def test_a_row_fixed_into_a_duplicate_leaves_the_open_list(make_workspace, key):
    """A rejected row fixed in place into a copy of a stored event loads as a duplicate:
    no event is stored from its line, yet it is no longer open; rejected again (the old
    file loaded once more), it is open again."""
    keyed = f"    key: {key}\n" if key else ""
    text = f"""\
name: shop
sources:
  orders:
    path: orders.csv
{keyed}    identifiers: {{customer_id: cid}}
    event_type: {{value: order_placed}}
    ts: at
"""
    bad = "cid,at\n1,2024-01-01T00:00:00Z\n1,yesterday\n3,never\n"
    ws = make_workspace(text, {"orders.csv": bad})
    ws.ingest("orders")
    assert [r["line"] for r in ws.quarantine().to_pylist()] == [3, 4]
    (ws.root / "orders.csv").write_text(bad.replace("yesterday", "2024-01-01T00:00:00Z"))
    report = ws.ingest("orders")
    assert (report.rows_loaded, report.rows_quarantined, report.rows_duplicate) == (0, 1, 2)
    assert ws.con.execute("SELECT count(*) FROM events").fetchone()[0] == 1
    still = ws.quarantine()
    assert [r["line"] for r in still.to_pylist()] == [4] and still.meta["loaded_since"] == 1
    ws.ingest("orders")  # the same file again changes nothing
    assert [r["line"] for r in ws.quarantine().to_pylist()] == [4]
    (ws.root / "orders.csv").write_text(bad)
    ws.ingest("orders")
    assert [r["line"] for r in ws.quarantine().to_pylist()] == [3, 4]


def entries(ws) -> list[tuple[int, str, str, bool]]:
    """(line, id, score, loaded_since) of every quarantine entry, read from its raw row."""
    rows = ws.quarantine(include_loaded=True).to_pylist()
    return sorted((r["line"], json.loads(r["raw"])["id"], json.loads(r["raw"])["score"],
                   r["loaded_since"]) for r in rows)


def stored(ws) -> list[tuple]:
    return sorted(ws.con.execute("SELECT * FROM quarantine").fetchall(), key=repr)


GOOD = "1,,2024-03-01,5,a,1\n"                                          # line 2, each version


def test_a_different_bad_row_on_the_same_line_is_kept_too(make_workspace):
    """A new version of a file rejects another row on the line of an entry: both
    rows are in the quarantine (the second was stored nowhere), each once."""
    ws = make_workspace(cfg(), {"data.csv": HEADER + GOOD + "2,,2024-03-02,9,b,1\n"})
    assert ws.ingest("s").rows_quarantined == 1
    (ws.root / "data.csv").write_text(HEADER + GOOD + "3,,2024-03-09,7,z,1\n")
    rep = ws.ingest("s")
    assert (rep.rows_read, rep.rows_loaded, rep.rows_quarantined, rep.rows_duplicate) == (
        2, 0, 1, 1)
    assert entries(ws) == [(3, "2", "9", False), (3, "3", "7", False)]
    assert [r["reason"] for r in ws.quarantine().to_pylist()] == [
        "rating outside the csat5 scale (1 to 5) in column 'score'"] * 2
    before = stored(ws)
    assert ws.ingest("s").rows_quarantined == 1  # the same load again adds nothing
    assert stored(ws) == before


def test_a_bad_row_after_its_line_was_fixed_is_open(make_workspace):
    """Bad, fixed, then another bad row on the same line: the fixed entry has loaded
    since, the new one is open."""
    ws = make_workspace(cfg(), {"data.csv": HEADER + GOOD + "2,,2024-03-02,9,b,1\n"})
    ws.ingest("s")
    (ws.root / "data.csv").write_text(HEADER + GOOD + "2,,2024-03-02,4,b,1\n")
    assert ws.ingest("s").rows_loaded == 1
    (ws.root / "data.csv").write_text(HEADER + GOOD + "3,,2024-03-09,7,z,1\n")
    assert ws.ingest("s").rows_quarantined == 1
    assert entries(ws) == [(3, "2", "9", True), (3, "3", "7", False)]
    still = ws.quarantine()
    assert [json.loads(r["raw"])["id"] for r in still.to_pylist()] == ["3"]
    assert still.meta["loaded_since"] == 1
    before = stored(ws)
    ws.ingest("s")
    assert stored(ws) == before


def test_a_bad_row_back_after_its_line_was_fixed_is_open_again(make_workspace):
    """Bad, fixed, then the same bad row again (an older version of the file): the
    entry is not doubled, and is open again, rejected by the latest load."""
    bad = HEADER + GOOD + "2,,2024-03-02,9,b,1\n"
    ws = make_workspace(cfg(), {"data.csv": bad})
    ws.ingest("s")
    (ws.root / "data.csv").write_text(HEADER + GOOD + "2,,2024-03-02,4,b,1\n")
    ws.ingest("s")
    assert entries(ws) == [(3, "2", "9", True)]
    (ws.root / "data.csv").write_text(bad)
    again = ws.ingest("s")
    assert again.rows_quarantined == 1
    assert entries(ws) == [(3, "2", "9", False)]
    assert ws.con.execute("SELECT load_id FROM quarantine").fetchall() == [(again.load_id,)]
    before = stored(ws)
    ws.ingest("s")
    assert stored(ws) == before


def test_an_entry_stored_before_raw_rows_were_in_its_id_is_not_doubled(make_workspace):
    ws = make_workspace(cfg(), {"data.csv": HEADER + GOOD + "2,,2024-03-02,9,b,1\n"})
    ws.ingest("s")
    # the id an earlier keymoments gave it: a hash of source, file, line and reason
    ws.con.execute("UPDATE quarantine SET quarantine_id = md5(concat_ws(chr(31), source, file, "
                   "CAST(line AS VARCHAR), reason))")
    before = stored(ws)
    assert ws.ingest("s").rows_quarantined == 1
    assert stored(ws) == before


KEYED = """
sources:
  s:
    path: data.csv
    key: {key}
    identifiers: {{customer_id: cust}}
    event_type: {{value: order}}
    ts: when
    measures: {{amount: amount}}
"""


def test_a_row_with_an_empty_key_is_quarantined_not_a_duplicate(make_workspace):
    """Rows without a key value were all one key: every one after the first was
    dropped as a duplicate, in no table."""
    text = ("id,cust,when,amount\n"
            "o1,a,2024-03-01T10:00:00Z,1\n"                              # 2 loads
            ",b,2024-03-02T10:00:00Z,2\n"                                # 3 blank
            ",c,2024-03-03T10:00:00Z,3\n"                                # 4 blank
            "NULL,d,2024-03-04T10:00:00Z,4\n"                            # 5 a null marker
            "  ,e,2024-03-05T10:00:00Z,5\n")                             # 6 spaces
    ws = make_workspace(KEYED.format(key="[id]"), {"data.csv": text})
    rep = ws.ingest("s")
    assert (rep.rows_read, rep.rows_loaded, rep.rows_quarantined, rep.rows_duplicate) == (
        5, 1, 4, 0)
    q = quarantine(ws)
    assert sorted(q) == [3, 4, 5, 6]
    assert [json.loads(q[n]["raw"])["cust"] for n in (3, 4, 5, 6)] == ["b", "c", "d", "e"]
    for row in q.values():
        assert (row["field"], row["value"]) == ("key", None)
        assert row["reason"] == ("key column 'id' is empty: every row needs a value there, "
                                 "or drop 'key' from the source to identify rows by their "
                                 "content")
    assert ws.con.execute("SELECT identifiers['customer_id'] FROM events").fetchall() == [("a",)]
    before = stored(ws)
    again = ws.ingest("s")
    assert (again.rows_quarantined, again.rows_duplicate) == (4, 1) and stored(ws) == before


def test_a_key_of_several_columns_is_empty_only_when_all_are(make_workspace):
    """A row keyed by some of its key columns is told apart by those; a row with none
    of them is quarantined. A ``_line`` key part is never empty."""
    text = ("order,item,cust,when,amount\n"
            "o1,1,a,2024-03-01T10:00:00Z,1\n"                            # 2 loads
            "o1,,b,2024-03-02T10:00:00Z,2\n"                             # 3 loads (o1 alone)
            ",2,c,2024-03-03T10:00:00Z,3\n"                              # 4 loads (2 alone)
            ",,d,2024-03-04T10:00:00Z,4\n"                               # 5 no key
            ",,e,2024-03-05T10:00:00Z,5\n")                              # 6 no key
    ws = make_workspace(KEYED.format(key="[order, item]"), {"data.csv": text})
    rep = ws.ingest("s")
    assert (rep.rows_loaded, rep.rows_quarantined, rep.rows_duplicate) == (3, 2, 0)
    q = quarantine(ws)
    assert sorted(q) == [5, 6]
    assert q[5]["reason"] == ("key columns 'order', 'item' are all empty: every row needs a "
                              "value in one of them, or drop 'key' from the source to identify "
                              "rows by their content")
    by_line = make_workspace(KEYED.format(key="[_line, item]"), {"data.csv": text}, "line")
    rep = by_line.ingest("s")
    assert (rep.rows_loaded, rep.rows_quarantined, rep.rows_duplicate) == (5, 0, 0)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_channel_holding_a_nul_is_quarantined_not_a_failed_load(make_workspace, fmt):
    """A NUL in a channel (a corrupt export) failed the whole load with an internal
    error; now its row is quarantined, naming line, field and value, and the others load
    and build."""
    extra = "channel: ch"
    if fmt == "csv":
        data = HEADER.replace("\n", ",ch\n") + (
            "1,,2024-01-01,4,x,1,web\n" "2,,2024-01-01,4,x,1,app\x00x\n" "3,,2024-01-01,4,x,1,app\n")
    else:
        data = "".join(json.dumps({"id": str(i), "when": "2024-01-01", "ch": ch}) + "\n"
                       for i, ch in ((1, "web"), (2, "app\x00x"), (3, "app")))
    ws = make_workspace(cfg(path=f"data.{fmt}", extra=extra), {f"data.{fmt}": data})
    result = ws.ingest("s")
    assert (result.rows_loaded, result.rows_quarantined) == (2, 1)
    q = quarantine(ws)
    assert list(q) == [3 if fmt == "csv" else 2]
    row = next(iter(q.values()))
    assert (row["field"], row["value"]) == ("channel", "app\x00x") and "NUL" in row["reason"]
    ws.build()
    assert sorted(r[0] for r in ws.con.execute("SELECT channel FROM journey_events").fetchall()) \
        == ["app", "web"]


@pytest.mark.parametrize("fast", [True, False])
def test_a_mapped_column_missing_from_one_file_of_a_glob_is_refused(make_workspace, fast,
                                                                     monkeypatch):
    """Day 2's export renamed `when`, day 3's is separated by ';': their rows loaded
    without a time (all quarantined as such, with no hint; on a keyed source, stored
    events removed). A column that makes the events is now an error naming the file and
    the column, and nothing loads; fixed, every row loads once."""
    from keymoments.sources import readers

    monkeypatch.setattr(readers, "FAST_CSV", fast)
    ws = make_workspace(cfg(path="day*.csv"), {
        "day1.csv": HEADER + "1,,2024-01-01,4,x,1\n",
        "day2.csv": HEADER.replace("when", "when_utc") + "2,,2024-01-02,4,x,1\n",
        "day3.csv": HEADER.replace(",", ";") + "3;;2024-01-03;4;x;1\n"})
    with pytest.raises(km.KeymomentsError, match=r"day2.csv has no column 'when', ") as e:
        ws.ingest("s")
    assert "sources.s.ts" in str(e.value) and "'when_utc'" in str(e.value)
    assert ws.con.execute("SELECT count(*) FROM events").fetchone()[0] == 0
    (ws.root / "day2.csv").write_text(HEADER + "2,,2024-01-02,4,x,1\n")
    with pytest.raises(km.KeymomentsError, match="day3.csv has no column .*another delimiter"):
        ws.ingest("s")
    (ws.root / "day3.csv").write_text(HEADER + "3,,2024-01-03,4,x,1\n")
    assert ws.ingest("s").rows_loaded == 3


def test_a_column_added_in_later_exports_loads_with_a_warning_once(make_workspace):
    """An older file without a column the newer ones have (the comment, added later) loads
    without it, saying so, and only while the file is new to the source; a file loaded
    before and gone since is named (its events stay)."""
    old = HEADER.replace(",note", "") + "1,,2024-01-01,4,1\n"
    ws = make_workspace(cfg(path="day*.csv"), {"day1.csv": old,
                                                "day2.csv": HEADER + "2,,2024-01-02,4,x,1\n"})
    first = ws.ingest("s")
    assert first.rows_loaded == 2
    said = [w for w in first.warnings if "day1.csv has no column 'note'" in w]
    assert len(said) == 1 and "sources.s.text" in said[0] and "load without it" in said[0]
    (ws.root / "day3.csv").write_text(HEADER + "3,,2024-01-03,4,y,1\n")
    again = ws.ingest("s")
    assert again.rows_loaded == 1 and not [w for w in again.warnings if "no column" in w]
    (ws.root / "day2.csv").unlink()
    gone = ws.ingest("s")
    assert [w for w in gone.warnings if "1 file(s) loaded before are no longer found" in w
            and "day2.csv" in w]
    assert ws.con.execute("SELECT count(*) FROM events").fetchone()[0] == 3


def test_a_mapped_column_missing_from_one_parquet_file_is_refused(make_workspace, tmp_path):
    ws = make_workspace(cfg(path="d*.parquet"))
    full = {"id": ["1"], "email": [None], "when": ["2024-01-01"], "score": ["4"],
            "note": ["x"], "amount": ["1"]}
    pq.write_table(pa.table(full), tmp_path / "ws" / "d1.parquet")
    pq.write_table(pa.table({k: v for k, v in full.items() if k != "when"}),
                   tmp_path / "ws" / "d2.parquet")
    with pytest.raises(km.KeymomentsError, match="d2.parquet has no column 'when'"):
        ws.ingest("s")


@pytest.mark.parametrize("fast", [True, False])
def test_a_bad_byte_inside_a_quoted_multi_line_field_rejects_its_record_only(
        make_workspace, fast, monkeypatch):
    """The second line of record 1's comment and of record 4's hold Latin-1 bytes in a
    UTF-8 file: the bad line was dropped, the quoting went out of step, and records 2
    and 3 were stored as record 1's comment (lost). Now records 1 and 4 are quarantined
    at their first lines with their whole text, the others load; converted, all load.
    Oracle: Python's csv module reading the file as Latin-1 (5 records)."""
    from keymoments.sources import readers

    monkeypatch.setattr(readers, "FAST_CSV", fast)
    raw = (b"id,email,when,score,note,amount\n"
           b'1,,2024-01-01,4,"Chegou hoje\nsem coment\xe1rios",1\n'
           b"2,,2024-01-02,5,,1\n" b"3,,2024-01-03,2,ruim,1\n"
           b'4,,2024-01-04,3,"n\xe3o chegou\nat\xe9 hoje\nfim",1\n' b"5,,2024-01-05,5,bom,1\n")
    records = list(csv.DictReader(io.StringIO(raw.decode("latin-1"), newline="")))
    assert len(records) == 5
    ws = make_workspace(cfg(extra="key: [id]"), {"data.csv": raw})
    rep = ws.ingest("s")
    assert (rep.rows_read, rep.rows_loaded, rep.rows_quarantined) == (5, 3, 2)
    q = quarantine(ws)
    assert sorted(q) == [2, 6]  # the records' first lines
    assert "line 3 is in the record starting here" in q[2]["reason"]
    assert q[2]["raw"].count("\n") == 1 and "sem coment" in q[2]["raw"]
    notes = dict(ws.con.execute("SELECT identifiers['customer_id'], text FROM events").fetchall())
    assert notes == {"2": None, "3": "ruim", "5": "bom"}
    (ws.root / "data.csv").write_bytes(raw.decode("latin-1").encode("utf-8"))
    again = ws.ingest("s")
    assert (again.rows_loaded, again.rows_quarantined) == (2, 0)
    assert len(ws.quarantine()) == 0
    assert ws.con.execute("SELECT count(*) FROM events").fetchone()[0] == 5


def test_events_dated_after_today_are_pointed_out(make_workspace):
    """A load whose events include some after tomorrow warns (they would make every
    journey look idle); one without such events does not."""
    text = """\
name: shop
sources:
  orders:
    path: orders.csv
    identifiers: {customer_id: cid}
    event_type: {value: order_placed}
    ts: at
"""
    ws = make_workspace(text, {"orders.csv": "cid,at\n1,2024-01-01T00:00:00Z\n"})
    assert not any("after today" in w for w in ws.ingest("orders").warnings)
    (ws.root / "orders.csv").write_text(
        "cid,at\n1,2024-01-01T00:00:00Z\n2,2099-03-04T05:06:00Z\n3,2098-01-01T00:00:00Z\n")
    (warning,) = [w for w in ws.ingest("orders").warnings if "after today" in w]
    assert warning.startswith("2 event(s) are dated after today (the latest 2099-03-04 05:06")
    assert "journeys.as_of" in warning


@pytest.mark.parametrize("ts_field", ["when", "{column: when, format: '%Y-%m-%d'}"])
def test_a_date_whose_midnight_the_clocks_skip_starts_at_its_first_hour(make_workspace,
                                                                        ts_field):
    """Cairo goes forward at midnight (2024-04-26 00:00 -> 01:00): the plain date
    2024-04-26 is a day that starts at 01:00, not a wall time to quarantine (the whole
    row was lost). A skipped time past midnight is still quarantined. The oracle:
    zoneinfo's first instant of the day (a fold-free wall time that survives the round
    trip, tried hour by hour)."""
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    cairo = ZoneInfo("Africa/Cairo")

    def first_instant(day: str) -> datetime:
        start = datetime.fromisoformat(day)
        for h in range(3):
            wall = (start + timedelta(hours=h)).replace(tzinfo=cairo)
            back = wall.astimezone(timezone.utc).astimezone(cairo).replace(tzinfo=None)
            if back == wall.replace(tzinfo=None):
                return wall.astimezone(timezone.utc)
        raise AssertionError(day)

    days = ["2024-04-26", "2024-04-25", "2024-10-31"]
    rows = "".join(f"{i},,{d},3,x,1\n" for i, d in enumerate(days, 1))
    if ts_field == "when":
        rows += "9,,2024-04-26 00:30,3,x,1\n"  # (a time the clocks skipped)
    extra = "timestamps: {timezone: Africa/Cairo}"
    ws = make_workspace(cfg(ts=ts_field, extra=extra), {"data.csv": HEADER + rows})
    ws.ingest("s")
    got = dict(ws.con.execute("SELECT identifiers['customer_id'], ts FROM events").fetchall())
    assert got == {str(i): first_instant(d) for i, d in enumerate(days, 1)}
    assert got["1"] == datetime(2024, 4, 25, 22, tzinfo=timezone.utc)  # (01:00 +03:00)
    assert sorted(quarantine(ws)) == ([5] if ts_field == "when" else [])


def test_a_whole_day_promise_ends_at_midnight_in_its_own_offset(make_workspace):
    """A promised day written with an offset ends at the next midnight at that offset
    (2026-06-15T00:00:00+02:00: 2026-06-15T22:00Z), not at midnight UTC (it was
    2026-06-15T00:00Z: a delivery on the promised day was 'late'); one without an
    offset ends at midnight in the source's zone, across a DST change too."""
    config = """
sources:
  s:
    path: d.csv
    identifiers: {customer_id: id}
    timestamps: {timezone: America/Sao_Paulo}
    events:
      - event_type: {value: order_delivered}
        ts: at
        expectation: {kind: promised_delivery, ts: promise, whole_day: true}
"""
    rows = [("1", "2026-06-15T10:00:00+02:00", "2026-06-15T00:00:00+02:00"),
            ("2", "2026-06-15T10:00:00+09:00", "2026-06-15T00:00:00+09:00"),
            ("3", "2026-06-16T01:00:00Z", "2026-06-15 00:00:00Z"),
            ("4", "2026-06-15T10:00:00-03:00", "2026-06-15T00:00:00-03:00"),
            ("5", "2018-11-04T10:00:00", "2018-11-03"),  # (the next midnight is skipped)
            ("6", "2026-06-15T10:00:00", "2026-06-15"),
            ("7", "2026-06-15T10:00:00Z", "2026-06-15 00:00:00 GMT"),
            ("8", "2026-06-15T10:00:00Z", "2026-06-15 00:00:00 utc")]
    text = "id,at,promise\n" + "".join(",".join(r) + "\n" for r in rows)
    ws = make_workspace(config, {"d.csv": text})
    ws.ingest("s")
    got = dict(ws.con.execute("SELECT identifiers['customer_id'], expected_ts FROM events"
                              ).fetchall())
    utc = timezone.utc
    # by hand: the next midnight at the offset written, in UTC; Sao Paulo is -03:00 in
    # 2026 (no DST), and 2018-11-04 starts at 01:00 -02:00 (03:00Z: DST began at midnight)
    assert got == {"1": datetime(2026, 6, 15, 22, tzinfo=utc),
                   "2": datetime(2026, 6, 15, 15, tzinfo=utc),
                   "3": datetime(2026, 6, 16, 0, tzinfo=utc),
                   "4": datetime(2026, 6, 16, 3, tzinfo=utc),
                   "5": datetime(2018, 11, 4, 3, tzinfo=utc),
                   "6": datetime(2026, 6, 16, 3, tzinfo=utc),
                   "7": datetime(2026, 6, 16, 0, tzinfo=utc),  # (' GMT' ended at 03:00Z)
                   "8": datetime(2026, 6, 16, 0, tzinfo=utc)}
    # a workspace on an older event id scheme ends them in the zone, as it did (the
    # promise is part of the event id: re-loading its files adds nothing)
    old = make_workspace(config, {"d.csv": text}, folder="old")
    old.con.execute("INSERT INTO km_meta VALUES ('event_id_scheme', '3')")
    old.ingest("s")
    ends = dict(old.con.execute("SELECT identifiers['customer_id'], expected_ts FROM events"
                                ).fetchall())
    # (1: 2026-06-14T22:00Z is the 14th in Sao Paulo, whose day ends at 06-15T03:00Z)
    assert (ends["1"], ends["4"]) == (datetime(2026, 6, 15, 3, tzinfo=utc),
                                      datetime(2026, 6, 16, 3, tzinfo=utc))
    assert {k: v for k, v in ends.items() if k in "56"} == {
        k: v for k, v in got.items() if k in "56"}
    assert old.ingest("s").events_loaded == 0


def test_a_zone_abbreviation_is_quarantined_and_utc_is_read_in_any_case(make_workspace):
    """'BST' was read as Bangladesh (+06, not British Summer Time), 'CST' and 'IST'
    stand for several zones: such a time is quarantined with what to write instead. A
    zone name, UTC and GMT (in any case: ' utc' was read as a local time) and offsets
    read as written. Expected instants by hand (Amsterdam is +01:00 on 2026-03-28)."""
    values = ["2026-03-28 10:00:00 BST", "2026-03-28 10:00:00 EST5EDT",
              "2026-03-28 10:00:00 IST", "2026-03-28 10:00:00 Europe/London",
              "2026-03-28 10:00:00 utc", "2026-03-28T10:00:00.5 Gmt",
              "2026-03-28 10:00:00 UTC+2", "2026-03-28T10:00:00+02:00", "2026-03-28 10:00:00"]
    text = HEADER + "".join(f"{i},,{v},3,x,1\n" for i, v in enumerate(values))
    extra = "timestamps: {timezone: Europe/Amsterdam}"
    ws = make_workspace(cfg(extra=extra), {"data.csv": text})
    ws.ingest("s")
    q = quarantine(ws)
    assert sorted(q) == [2, 3, 4]
    assert all("time zone abbreviation in column 'when'" in q[n]["reason"]
               and "+01:00" in q[n]["reason"] for n in q)
    got = dict(ws.con.execute("SELECT identifiers['customer_id'], ts FROM events").fetchall())
    utc = timezone.utc
    assert got == {"3": datetime(2026, 3, 28, 10, tzinfo=utc),
                   "4": datetime(2026, 3, 28, 10, tzinfo=utc),
                   "5": datetime(2026, 3, 28, 10, 0, 0, 500000, tzinfo=utc),
                   "6": datetime(2026, 3, 28, 8, tzinfo=utc),
                   "7": datetime(2026, 3, 28, 8, tzinfo=utc),
                   "8": datetime(2026, 3, 28, 9, tzinfo=utc)}
    # a workspace on an older event id scheme reads them as it did (the time is part of
    # the event id: re-loading its files adds nothing)
    old = make_workspace(cfg(extra=extra), {"data.csv": text}, folder="old")
    old.con.execute("INSERT INTO km_meta VALUES ('event_id_scheme', '3')")
    first = old.ingest("s")
    assert (first.rows_loaded, first.rows_quarantined) == (9, 0)
    assert old.ingest("s").events_loaded == 0
