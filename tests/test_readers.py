"""Readers: every format and layout users export, checked against an independent
reading (Python's csv and json modules, pyarrow, or values written by hand)."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keymoments as km
from keymoments.config.models import CsvOptions
from keymoments.sources.readers import read_csv_records


def source(path: str, extra: str = "", ids: str = "{customer_id: id}", ts: str = "when",
           text: str | None = "note", name: str = "s", header: bool = True) -> str:
    text_line = f"text: {text}" if text else ""
    return f"""{"sources:" if header else ""}
  {name}:
    path: {path}
    identifiers: {ids}
    event_type: {{value: visit}}
    ts: {ts}
    {text_line}
    {extra}
"""


def events(ws, cols="identifiers['customer_id'], text, source_line"):
    return ws.con.execute(f"SELECT {cols} FROM events ORDER BY source_file, source_line").fetchall()


def read(data: bytes, **options):
    rows, rejects = [], []
    header = read_csv_records(io.BytesIO(data), CsvOptions(**options), rows.append,
                              rejects.append)
    return header, rows, rejects


def oracle(text: str, delimiter: str = ","):
    """(header, [(start line, fields)]) as the csv module reads it; a record starts
    on the line after the previous record ended."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader)
    out, last = [], reader.line_num
    for fields in reader:
        if fields:
            out.append((last + 1, fields))
        last = reader.line_num
    return header, out


# ------------------------------------------------------------------- CSV layouts

NOTES = ["plain", "with, comma", 'say "hi"', "two\nlines", "tab\there", "semi;colon",
         "pipe|bar", "ünïcödé ☕", "", "crlf\r\ninside", "a  b"]


@pytest.mark.parametrize("delimiter, named", [(";", ";"), ("\t", "tab"), ("|", "pipe"),
                                              (",", "comma")])
@pytest.mark.parametrize("terminator", ["\n", "\r\n"])
def test_delimiters_and_line_ends(make_workspace, delimiter, named, terminator):
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator=terminator)
    w.writerow(["id", "when", "note"])
    for i, note in enumerate(NOTES):
        w.writerow([f"c{i}", f"2024-01-{i + 1:02d}", note])
    text = buf.getvalue()
    ws = make_workspace(source("d.csv", f"csv: {{delimiter: {json.dumps(named)}}}"),
                        {"d.csv": text.encode("utf-8")})
    rep = ws.ingest("s")
    _, want = oracle(text, delimiter)
    assert rep.rows_read == rep.rows_loaded == len(NOTES)
    got = events(ws)
    assert [(g[0], g[2]) for g in got] == [(f[0], line) for line, f in want]
    expected_text = [f[2].strip(" \t\r\n") or None for _, f in want]
    assert [g[1] for g in got] == expected_text


def test_whitespace_delimited(make_workspace):
    text = "id   when        amount\n  c1 2024-01-01   3.5\n\nc2\t2024-01-02 4\n"
    extra = "csv: {delimiter: whitespace}\n    measures: {amount: amount}"
    ws = make_workspace(source("d.txt", extra, text=None), {"d.txt": text})
    ws.ingest("s")
    got = ws.con.execute("SELECT identifiers['customer_id'], measures['amount'], source_line "
                         "FROM events ORDER BY source_line").fetchall()
    assert got == [("c1", 3.5, 2), ("c2", 4.0, 4)]


@pytest.mark.parametrize("encoding, note", [
    ("latin-1", "beëindiging à la carte"),
    ("cp1252", "€ 5 – “quoted” ’s"),
    ("utf-8-sig", "ünïcödé"),
    ("utf-16", "ünïcödé 中文"),
])
def test_encodings(make_workspace, encoding, note):
    text = f"id,when,note\r\nc1,2024-01-01,{note}\r\nc2,2024-01-02,\"{note}\r\n2\"\r\n"
    data = text.encode(encoding)
    if encoding == "utf-8-sig":
        assert data.startswith(b"\xef\xbb\xbf")
        enc = "utf-8"  # the BOM is recognised without saying so
    else:
        enc = encoding
    ws = make_workspace(source("d.csv", f"csv: {{encoding: {enc}}}"), {"d.csv": data})
    rep = ws.ingest("s")
    assert (rep.rows_read, rep.rows_loaded, rep.rows_quarantined) == (2, 2, 0)
    assert events(ws) == [("c1", note, 2), ("c2", f"{note}\r\n2", 3)]


def test_wrong_encoding_rejects_only_the_bad_lines(make_workspace):
    data = ("id,when,note\nc1,2024-01-01,ok\n".encode()
            + "c2,2024-01-02,€uro\n".encode("cp1252")
            + "c3,2024-01-03,fine ☕\n".encode())
    ws = make_workspace(source("d.csv"), {"d.csv": data})
    rep = ws.ingest("s")
    assert (rep.rows_read, rep.rows_loaded, rep.rows_quarantined) == (3, 2, 1)
    q = ws.quarantine().to_pylist()[0]
    assert (q["line"], q["field"]) == (3, "note")
    assert "byte 0x80" in q["reason"] and "cp1252" in q["reason"]


def test_old_mac_line_ends(make_workspace):
    text = 'id,when,note\r c1,2024-01-01,a\rc2,2024-01-02,"two\rlines"\rc3,2024-01-03,c\r'
    ws = make_workspace(source("d.csv"), {"d.csv": text.encode()})
    rep = ws.ingest("s")
    assert rep.rows_read == rep.rows_loaded == 3
    assert events(ws) == [("c1", "a", 2), ("c2", "two\rlines", 3), ("c3", "c", 5)]


def test_a_utf16_file_read_as_utf8_says_to_set_utf16(make_workspace):
    """A UTF-16 file (as Excel's "Unicode text" saves) read as UTF-8: the error names
    UTF-16 and the setting, and that setting reads every row."""
    text = "id,when,note\nc1,2024-01-01,a\nc2,2024-01-02,b\n"
    ws = make_workspace(source("d.csv"), {"d.csv": text.encode("utf-16")})
    with pytest.raises(km.SourceError) as err:
        ws.ingest("s")
    message = str(err.value)
    assert "the file is UTF-16" in message and "`encoding: utf-16` under the `csv:`" in message
    assert "latin-1" not in message  # (the advice for a file in a one-byte encoding)
    fixed = make_workspace(source("d.csv", "csv: {encoding: utf-16}"),
                           {"d.csv": text.encode("utf-16")}, "fixed")
    assert fixed.ingest("s").rows_loaded == 2
    assert events(fixed) == [("c1", "a", 2), ("c2", "b", 3)]


@pytest.mark.parametrize("order", ["16-le", "16-be", "32-le", "32-be"])
def test_a_utf16_file_without_a_byte_order_mark_names_its_byte_order(make_workspace, order):
    """UTF-16 saved without the mark (some exporters do): read as UTF-8 its header's
    names held NUL characters and the load failed with an internal error. The error
    names the file, UTF-16 and the byte order's setting, and that setting reads
    every row; a UTF-8 file with a NUL in a value is not taken for UTF-16."""
    text = "id,when,note\nc1,2024-01-01,a\nc2,2024-01-02,b\n"
    ws = make_workspace(source("d.csv"), {"d.csv": text.encode(f"utf-{order}")})
    with pytest.raises(km.SourceError) as err:
        ws.ingest("s")
    message = str(err.value)
    assert message.startswith(str(ws.root / "d.csv"))
    assert "without a byte order mark" in message
    assert f"`encoding: utf-{order}` under the `csv:`" in message
    fixed = make_workspace(source("d.csv", f"csv: {{encoding: utf-{order}}}"),
                           {"d.csv": text.encode(f"utf-{order}")}, "fixed")
    assert fixed.ingest("s").rows_loaded == 2
    assert events(fixed) == [("c1", "a", 2), ("c2", "b", 3)]
    nul = make_workspace(source("d.csv"), {"d.csv": "id,when,note\nc1,2024-01-01,a\x00b\n"},
                         "nul")
    assert nul.ingest("s").rows_read == 1


#: the reasons stored for these rejects by keymoments before their advice was added
#: beside them (they are part of each entry's identity, so they must not change)
RAGGED = "expected 4 fields, found 5"
SPANNING = "expected 4 fields, found 5 (a quote may be unbalanced)"
STRAY_CR = ("unbalanced quote: the record starting here cannot be read (new-line character "
            "seen in unquoted field - do you need to open the file in universal-newline "
            "mode?); fix the quoting of this line")


def test_ragged_and_stray_cr_rows_keep_their_reason_and_say_what_to_do(make_workspace):
    text = ("id,when,kind,note\n"
            'a,2024-03-01,ev,"Delivery was late.\n'           # 2: its quote closes on 3
            'b,2024-03-02,ev,see ticket",EXTRA\n'             # 3
            "c,2024-03-03,ev,fine,EXTRA\n"                    # 4: a field too many
            "d,2024-03-04,ev,old\rmac\n"                      # 5: a CR alone, unquoted
            "e,2024-03-05,ev,fine\n")                         # 6
    ws = make_workspace(source("d.csv"), {"d.csv": text.encode()})
    rep = ws.ingest("s")
    assert (rep.rows_read, rep.rows_loaded, rep.rows_quarantined) == (5, 1, 4)
    raw = text.split("\n")
    q = {r["line"]: r for r in ws.quarantine().to_pylist()}
    assert {n: (r["reason"], r["raw"]) for n, r in q.items()} == {
        2: (SPANNING, raw[1]), 3: (RAGGED, raw[2]), 4: (RAGGED, raw[3]), 5: (STRAY_CR, raw[4])}
    for n in (2, 3, 4):
        assert q[n]["hint"].startswith("the row has 5 fields where the header has 4: check "
                                       "the delimiter"), q[n]["hint"]
        assert "then load again" in q[n]["hint"]
    assert "may close on a later one" in q[2]["hint"]
    assert "may close on a later one" not in q[3]["hint"]
    assert q[5]["hint"].startswith("not a quoting problem: the line holds a carriage return")
    assert "convert them all to LF" in q[5]["hint"]
    # an entry stored by a version before the hints (the same source, file, line, reason
    # and raw row, its id the same hash of them) is not doubled by loading again
    ws.con.execute("UPDATE quarantine SET quarantine_id = md5(concat_ws(chr(31), source, file, "
                   "CAST(line AS VARCHAR), reason, raw))")
    before = sorted(ws.con.execute("SELECT * FROM quarantine").fetchall())
    again = ws.ingest("s")
    assert (again.rows_quarantined, again.rows_duplicate) == (4, 1)
    assert sorted(ws.con.execute("SELECT * FROM quarantine").fetchall()) == before


def test_the_quarantine_command_shows_what_to_do(make_workspace):
    from click.testing import CliRunner

    from keymoments.cli import main

    text = "id,when,note\nc1,2024-01-01,a,EXTRA\nc2,2024-01-02,b\n"
    ws = make_workspace(source("d.csv"), {"d.csv": text})
    ws.ingest("s")
    root = ws.root
    ws.close()
    out = CliRunner().invoke(main, ["-w", str(root), "quarantine"], terminal_width=400).output
    flat = " ".join(out.replace("│", " ").split())
    assert "expected 3 fields, found 4. What to do: the row has 4 fields where the header " \
           "has 3" in flat, out


def test_multiline_fields_keep_later_line_numbers(make_workspace):
    text = ('id,when,note\n'
            'c1,2024-01-01,"one\ntwo\nthree"\n'
            '\n'
            'c2,2024-01-02,"say ""hi""\n"\n'
            'c3,2024-01-03,last\n')
    ws = make_workspace(source("d.csv"), {"d.csv": text})
    ws.ingest("s")
    _, want = oracle(text)
    assert [line for line, _ in want] == [2, 6, 8]  # checked by hand too
    assert [(g[0], g[2]) for g in events(ws)] == [(f[0], line) for line, f in want]


def test_header_only_and_empty_files(make_workspace):
    ws = make_workspace(source("h.csv", name="h") + source("e.csv", name="e", header=False),
                        {"h.csv": "id,when,note\r\n", "e.csv": b""})
    for name in ("h", "e"):  # an empty export loads nothing, and says so
        rep = ws.ingest(name)
        assert (rep.rows_read, rep.rows_loaded, rep.rows_quarantined, rep.events_loaded) == (0,) * 4
    assert ws.con.execute("SELECT count(*) FROM loads").fetchone()[0] == 2
    assert ws.con.execute("SELECT count(*) FROM events").fetchone()[0] == 0


def test_duplicate_and_blank_header_names(make_workspace):
    text = "id,when,note,note, \nc1,2024-01-01,first,second,fifth\n"
    ws = make_workspace(source("d.csv", "attributes: {again: note_2, blank: column_5}"),
                        {"d.csv": text})
    ws.ingest("s")
    assert ws.con.execute("SELECT text, attributes FROM events").fetchall() == [
        ("first", {"again": "second", "blank": "fifth"})]


def test_no_header_and_skipped_preamble(make_workspace):
    data = b"exported by \xff tool\nreport 2024\nc1;2024-01-01;x\nc2;2024-01-02;y\n"
    ws = make_workspace(source("d.csv", "csv: {delimiter: ';', header: false, skip_rows: 2}",
                               ids="{customer_id: column_1}", ts="column_2", text="column_3"),
                        {"d.csv": data})
    rep = ws.ingest("s")
    assert (rep.rows_read, rep.rows_quarantined) == (2, 0)
    assert events(ws) == [("c1", "x", 3), ("c2", "y", 4)]


def test_glob_over_files_unions_columns_by_name(make_workspace):
    files = {
        "exports/2024-01.csv": "id,when,note\nc1,2024-01-01,a\nc2,2024-01-02,b\n",
        "exports/2024-02.csv": "note,id,when,extra\nc,c3,2024-02-01,e\n",  # reordered, + column
        "exports/2024-03.csv": "",  # empty export of a quiet month
        "exports/readme.txt": "not matched",
    }
    ws = make_workspace(source("exports/*.csv", "attributes: {extra: extra}"), files)
    rep = ws.ingest("s")
    assert rep.rows_read == rep.rows_loaded == 3
    assert len(rep.files) == 3
    got = ws.con.execute("SELECT regexp_extract(source_file, '[^/]*$'), source_line, "
                         "identifiers['customer_id'], text, attributes FROM events "
                         "ORDER BY source_file, source_line").fetchall()
    assert got == [("2024-01.csv", 2, "c1", "a", {}), ("2024-01.csv", 3, "c2", "b", {}),
                   ("2024-02.csv", 2, "c3", "c", {"extra": "e"})]


def test_glob_that_matches_nothing_is_a_clear_error(make_workspace):
    ws = make_workspace(source("exports/*.csv"), {"other.csv": "id\n"})
    with pytest.raises(km.SourceError, match="no file at .*exports"):
        ws.ingest("s")


# The reader alone, against the csv module, on random tables (no database: fast).

cells = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                max_size=8)


@settings(derandomize=True, max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([",", ";", "\t", "|"]), st.sampled_from(["\n", "\r\n"]),
       st.integers(1, 4).flatmap(lambda n: st.lists(st.lists(cells, min_size=n, max_size=n),
                                                    max_size=8)),
       st.booleans())
def test_reader_agrees_with_the_csv_module(delimiter, terminator, rows, bom):
    """Values as the csv module reads them; a record's line is counted from the b'\\n'
    bytes written before it (a lone CR inside a quoted value is not a line end)."""
    width = len(rows[0]) if rows else 2
    if terminator == "\n":
        # the csv module's writer leaves a lone CR unquoted unless the line end has one,
        # and no reader (its own included) can read that back
        rows = [[c.replace("\r", "") for c in row] for row in rows]

    def line_of(row):
        buf = io.StringIO()
        csv.writer(buf, delimiter=delimiter, lineterminator=terminator).writerow(row)
        return buf.getvalue()

    written = [line_of([f"h{i}" for i in range(width)])] + [line_of(r) for r in rows]
    text = "".join(written)
    starts, line = [], 1
    for chunk in written:
        starts.append(line)
        line += chunk.count("\n")
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")
    header, got, rejects = read(data, delimiter=delimiter)
    parsed = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    assert header == parsed[0] and rejects == []
    assert got == list(zip(starts[1:], parsed[1:]))


# --------------------------------------------------------------------- JSON lines


def test_json_lines(make_workspace):
    lines = [
        '\ufeff{"customer": {"id": "c1", "tier": {"name": "gold"}}, "when": "2024-01-01", '
        '"note": "a"}',                                                         # 1 (with BOM)
        "not json at all",                                                      # 2
        "[1, 2]",                                                               # 3
        "null",                                                                 # 4
        '{"customer": {"id": 7}, "when": "2024-01-02T10:00:00+02:00", "note": {"x": 1}, '
        '"tags": ["a", "b"], "ok": true, "score": 4.5}',                        # 5
        "   ",                                                                  # 6 blank
        '{"customer": {"id": "c3"}, "when": "2024-01-03", "note": "tail"}',    # 7
    ]
    data = "\n".join(lines).encode("utf-8") + b'\n{"customer": {"id": "caf\xe9"}}\n'  # 8
    ws = make_workspace(source(
        "d.jsonl", "attributes: {tier: customer.tier.name, tags: tags, ok: ok}\n"
        "    measures: {score: score}", ids="{customer_id: customer.id}"), {"d.jsonl": data})
    rep = ws.ingest("s")
    # 7 non-blank lines + the undecodable one; "null" is not an object either
    assert (rep.rows_read, rep.rows_loaded, rep.rows_quarantined) == (7, 3, 4)
    got = ws.con.execute("""SELECT source_line, identifiers['customer_id'], ts, text, attributes,
                                   measures FROM events ORDER BY source_line""").fetchall()
    utc = timezone.utc
    assert got == [
        (1, "c1", datetime(2024, 1, 1, tzinfo=utc), "a", {"tier": "gold"}, {}),
        (5, "7", datetime(2024, 1, 2, 8, tzinfo=utc), None,
         {"tags": '["a", "b"]', "ok": "true"}, {"score": 4.5}),
        (7, "c3", datetime(2024, 1, 3, tzinfo=utc), "tail", {}, {}),
    ]
    q = {r["line"]: r for r in ws.quarantine().to_pylist()}
    assert sorted(q) == [2, 3, 4, 8]
    assert q[2]["reason"].startswith("not valid JSON at column 1")
    assert q[2]["raw"] == "not json at all"
    assert "must be an object" in q[3]["reason"] and q[3]["raw"] == "[1, 2]"
    assert "must be an object" in q[4]["reason"]
    assert q[8]["reason"].startswith("not valid utf-8 text (byte 0xe9")
    assert "\\xe9" in q[8]["raw"]


@pytest.mark.parametrize("ids", ["{customer_id: cust}", "{customer_id: cust, email: mail}"])
def test_json_records_without_any_identifier_column_are_a_config_error(make_workspace, ids):
    """A field no JSON record has only warns (a record may leave out an empty field),
    but with every identifier absent no row can load: it is the config error a CSV
    without the column gets, naming the line. (It was an internal error: DuckDB typed
    the always-empty anchor INTEGER, and stitching failed.)"""
    rows = "".join(f'{{"customer": "c{i}", "when": "2024-03-01", "note": "x"}}\n'
                   for i in range(3))
    ws = make_workspace(source("d.jsonl", ids=ids), {"d.jsonl": rows})
    with pytest.raises(km.ConfigError) as info:
        ws.ingest("s")
    err = info.value
    assert err.file.endswith("keymoments.yaml") and err.line == 4  # the identifiers line
    assert err.key == "sources.s.identifiers.customer_id"
    assert "no record has" in str(err) and "'cust'" in str(err)
    assert "did you mean 'customer'?" in str(err)
    assert ws.con.execute("SELECT count(*) FROM loads").fetchone()[0] == 0


@pytest.mark.parametrize("indent", [None, 2])
def test_a_json_file_that_is_one_object_wrapping_the_records_is_an_error(make_workspace,
                                                                         indent):
    """``{"rows": [{...}, ...]}`` is neither an array of records nor JSON lines: the
    error says so, and how to get the records out (it was an internal error)."""
    rows = [{"cust": f"c{i}", "when": "2024-03-01", "note": "x"} for i in range(3)]
    text = json.dumps({"rows": rows}, indent=indent) + "\n"
    ws = make_workspace(source("d.json", ids="{customer_id: cust}"), {"d.json": text})
    with pytest.raises(km.SourceError, match=r"d\.json: the file is one JSON object, not an "
                                             r"array of records or JSON lines: .*'rows'.*"
                                             r"jq -c '\.rows\[\]'"):
        ws.ingest("s")
    assert ws.con.execute("SELECT count(*) FROM loads").fetchone()[0] == 0
    # one JSON lines record with a list of objects in it is a record like another
    one = {"cust": "c1", "when": "2024-03-01", "note": "x", "items": [{"sku": 1}]}
    ws = make_workspace(source("d.json", ids="{customer_id: cust}"),
                        {"d.json": json.dumps(one) + "\n"}, folder="one")
    assert ws.ingest("s").rows_loaded == 1


JSON_ARRAY = """\ufeff[
  {
    "customer": {"id": "c1", "tier": "gold"},
    "when": "2024-01-01",
    "note": "a"
  },
  {"customer": {"id": "c2"}, "when": "2024-01-02", "note": "b"},
  42,
  {"customer": {"id": "c3"}, "when": "2024-01-03",
   "note": "two\\nlines"},
  null,
  {"customer": {"id": "c4"}, "when": "2024-01-04", "": "no name"},
  {"customer": {"id": "c5"}, "when": "2024-01-05", "note": "[1, {}]"}
]
"""


def test_a_json_array_of_objects(make_workspace):
    """A .json file that is one (pretty-printed) array: each element is a record, at
    the line its first character is on (written by hand below); the elements that
    are no objects are quarantined with their line. Before, the file was read as
    JSON lines: only the lines that were whole objects loaded."""
    ws = make_workspace(source("d.json", "attributes: {tier: customer.tier}",
                               ids="{customer_id: customer.id}"), {"d.json": JSON_ARRAY})
    rep = ws.ingest("s")
    assert (rep.rows_read, rep.rows_loaded, rep.rows_quarantined) == (7, 4, 3)
    got = ws.con.execute("""SELECT source_line, identifiers['customer_id'], text, attributes
                            FROM events ORDER BY source_line""").fetchall()
    elements = json.loads(JSON_ARRAY.lstrip("\ufeff"))  # the oracle of the values
    assert got == [(2, "c1", "a", {"tier": "gold"}), (7, "c2", "b", {}),
                   (9, "c3", "two\nlines", {}), (13, "c5", "[1, {}]", {})]
    assert [e["customer"]["id"] for e in elements if isinstance(e, dict)] == [
        "c1", "c2", "c3", "c4", "c5"]
    q = {r["line"]: r for r in ws.quarantine().to_pylist()}
    assert sorted(q) == [8, 11, 12]
    assert q[8]["reason"] == "a JSON array element must be an object {...}"
    assert q[8]["raw"] == "42" and q[11]["raw"] == "null"
    assert "empty name" in q[12]["reason"]
    assert json.loads(q[12]["raw"]) == elements[5]


def test_an_empty_json_array_reads_no_row(make_workspace):
    ws = make_workspace(source("d.json"), {"d.json": " \n[\n]\n"})
    rep = ws.ingest("s")
    assert (rep.rows_read, rep.rows_loaded, rep.rows_quarantined) == (0, 0, 0)


@pytest.mark.parametrize("text, line, column, words", [
    ('[\n {"id": "c1", "when": "2024-01-01"}\n {"id": "c2"}\n]\n', 3, 2, "',' delimiter"),
    ('[\n {"id": "c1", "when": "2024-01-01"},\n]\n', 3, 1, "Expecting value"),
    ('[\n {"id": "c1", "when": "2024-01-01"},\n {"id": "c2", "when: 1}\n]\n', 3, 24,
     "Invalid control character;"),  # the line break inside the unclosed string
    ('[\n {"id": "c1", "when": "2024-01-01"}\n]\n{"id": "c2"}\n', 4, 1, "Extra data"),
    ('[\n {"id": "c1", "when": "2024-01-01"},\n', 3, 1, "Expecting value"),
])
def test_a_broken_json_array_is_an_error_naming_line_and_column(make_workspace, text, line,
                                                               column, words):
    """After a syntax error, where the next element starts cannot be known: the load
    stops, naming the place, and nothing is stored."""
    ws = make_workspace(source("d.json", text=None), {"d.json": text})
    with pytest.raises(km.SourceError, match=rf"d\.json: not valid JSON at line {line}, "
                                             rf"column {column}: .*{words}"):
        ws.ingest("s")
    assert ws.con.execute("SELECT count(*) FROM events").fetchone()[0] == 0
    assert ws.con.execute("SELECT count(*) FROM loads").fetchone()[0] == 0


def test_a_compact_json_array_numbers_its_elements(make_workspace):
    """Two records on one line (a compact array, as ``json.dump`` writes by default)
    would share a line: the elements are numbered instead, from 1, each row a number
    of its own (quarantine, ``key: [_line]``, re-loading finds the duplicates)."""
    text = ('[{"id": "c1", "when": "2024-01-01"}, 7, {"id": "c2", "when": "2024-01-02"},\n'
            ' {"id": "c3", "when": "bad"}]\n')
    ws = make_workspace(source("d.json", text=None), {"d.json": text})
    rep = ws.ingest("s")
    assert (rep.rows_read, rep.rows_loaded, rep.rows_quarantined) == (4, 2, 2)
    got = ws.con.execute("SELECT source_line, identifiers['customer_id'] FROM events "
                         "ORDER BY source_line").fetchall()
    assert got == [(1, "c1"), (3, "c2")]  # elements 1 and 3 (element 2 is the 7)
    q = {r["line"]: (json.loads(r["raw"]), r["value"]) for r in ws.quarantine().to_pylist()}
    assert q == {2: (7, None), 4: ({"id": "c3", "when": "bad"}, "bad")}
    again = ws.ingest("s")
    assert (again.rows_loaded, again.rows_duplicate) == (0, 2)


# ------------------------------------------------------------------------ Parquet


def parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def test_parquet_typed_columns(make_workspace):
    ams = ZoneInfo("Europe/Amsterdam")
    aware = [datetime(2024, 1, 1, 10, tzinfo=timezone.utc), datetime(2024, 7, 1, 10, tzinfo=ams)]
    naive = [datetime(2024, 1, 1, 10), datetime(2024, 7, 1, 10)]
    table = pa.table({
        "id": pa.array([1, 2], pa.int64()),
        "aware": pa.array(aware, pa.timestamp("us", tz="UTC")),
        "naive": pa.array(naive, pa.timestamp("ms")),
        "score": pa.array([9, 3], pa.int32()),
        "note": pa.array(["x", None]),
    })
    extra = "rating: {column: score, scale: nps10}\n    timestamps: {timezone: Europe/Amsterdam}"
    cfg = source("d.parquet", extra, ts="aware") + source(
        "d.parquet", extra, ts="naive", name="n", header=False)
    ws = make_workspace(cfg, {"d.parquet": parquet(table)})
    ws.ingest("s")
    ws.ingest("n")
    got = ws.con.execute("SELECT source, source_line, identifiers['customer_id'], ts, rating, "
                         "text FROM events ORDER BY source, source_line").fetchall()
    want_naive = [n.replace(tzinfo=ams).astimezone(timezone.utc) for n in naive]
    assert got == [
        ("n", 1, "1", want_naive[0], 9.0, "x"), ("n", 2, "2", want_naive[1], 3.0, None),
        # an instant stays the instant it is, whatever the configured zone
        ("s", 1, "1", aware[0], 9.0, "x"), ("s", 2, "2", aware[1], 3.0, None),
    ]


def test_parquet_glob_numbers_rows_per_file(make_workspace):
    a = pa.table({"id": ["a1", "a2"], "when": ["2024-01-01", "2024-01-02"]})
    b = pa.table({"when": ["2024-02-01", "bad", "2024-02-03"], "id": ["b1", "b2", "b3"],
                  "note": ["n", "n", "n"]})
    ws = make_workspace(source("p/*.parquet"), {"p/a.parquet": parquet(a),
                                                "p/b.parquet": parquet(b)})
    rep = ws.ingest("s")
    assert (rep.rows_read, rep.rows_loaded, rep.rows_quarantined) == (5, 4, 1)
    got = ws.con.execute("SELECT regexp_extract(source_file, '[^/]*$'), source_line, "
                         "identifiers['customer_id'] FROM events ORDER BY 1, 2").fetchall()
    assert got == [("a.parquet", 1, "a1"), ("a.parquet", 2, "a2"), ("b.parquet", 1, "b1"),
                   ("b.parquet", 3, "b3")]
    q = ws.quarantine().to_pylist()[0]
    assert (q["file"].endswith("b.parquet"), q["line"], q["value"]) == (True, 2, "bad")


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_a_nan_identifier_is_empty(make_workspace, fmt):
    """A float id column (as pandas writes a nullable integer column) holds NaN for a
    missing id, and so can a JSON record written by Python: it read as the identifier
    'nan', so every such row was one person. NaN is empty, as NULL: a row with no other
    identifier is quarantined, one with another has only that. A float column read as
    text (an attribute) is empty for NaN and infinity too."""
    nan, inf = float("nan"), float("inf")
    rows = [{"id": 1.0, "mail": None, "when": "2024-01-01", "size": 2.5},        # 1
            {"id": nan, "mail": None, "when": "2024-01-02", "size": 2.5},        # 2
            {"id": nan, "mail": "b@x.io", "when": "2024-01-03", "size": nan},    # 3
            {"id": nan, "mail": "c@x.io", "when": "2024-01-04", "size": inf}]    # 4
    data = (parquet(pa.Table.from_pylist(rows)) if fmt == "parquet" else
            "".join(json.dumps(r) + "\n" for r in rows))  # (json.dumps writes NaN)
    ws = make_workspace(source(f"d.{fmt}", "attributes: {size: size}", text=None,
                               ids="{customer_id: id, email: mail}"), {f"d.{fmt}": data})
    rep = ws.ingest("s")
    assert (rep.rows_read, rep.rows_loaded, rep.rows_quarantined) == (4, 3, 1)
    assert ws.quarantine().to_pylist()[0]["line"] == 2
    assert ws.quarantine().to_pylist()[0]["reason"].startswith("no identifier")
    got = events(ws, "source_line, map_keys(identifiers), identifiers['email'], attributes")
    assert got == [(1, ["customer_id"], None, {"size": "2.5"}),
                   (3, ["email"], "b@x.io", {}), (4, ["email"], "c@x.io", {})]
    assert ws.con.execute("SELECT count(DISTINCT person_id) FROM events").fetchone()[0] == 3


def corrupt_page(data: bytes) -> bytes:
    """The Parquet file ``data`` with bytes in the middle of its first column's pages
    flipped: the footer (schema, row counts) reads, the pages do not."""
    meta = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0).column(0)
    start = meta.dictionary_page_offset if meta.has_dictionary_page else meta.data_page_offset
    middle = start + meta.total_compressed_size // 2
    out = bytearray(data)
    for i in range(middle, middle + 16):
        out[i] ^= 0xFF
    return bytes(out)


@pytest.mark.parametrize("layout", ["one", "glob"])
def test_a_corrupt_parquet_page_is_a_source_error_naming_the_file(make_workspace, layout):
    """DuckDB reads a Parquet file's pages only when the mapping runs: a page that does
    not decompress was an internal error. It is a source error naming the file (the
    second of a glob here), and nothing of the source is stored."""
    table = pa.table({"id": [f"customer-{i:05d}" for i in range(3000)],
                      "when": ["2024-01-01"] * 3000})
    good = parquet(table)
    bad = corrupt_page(good)
    assert bad != good and len(bad) == len(good)
    files = {"p/a.parquet": good, "p/b.parquet": bad} if layout == "glob" else {"p/b.parquet": bad}
    ws = make_workspace(source("p/*.parquet", text=None), files)
    with pytest.raises(km.SourceError, match=r"corrupt Parquet data in \S*p/b\.parquet \(.+\): "
                                             r"re-export the file"):
        ws.ingest("s")
    for table_name in ("loads", "events", "quarantine"):
        assert ws.con.execute(f"SELECT count(*) FROM {table_name}").fetchone()[0] == 0


# ---------------------------------------------------------------------------- XES

XES = """<?xml version="1.0" encoding="UTF-8"?>
<log xes.version="1.0" xmlns="http://www.xes-standard.org/">
  <extension name="Concept" prefix="concept" uri="http://www.xes-standard.org/concept.xesext"/>
  <global scope="event"><string key="concept:name" value="UNKNOWN"/></global>
  <string key="concept:name" value="the log, not a trace"/>
  <trace>
    <string key="concept:name" value="case-1"/>
    <string key="customer" value="cust-9"/>
    <event>
      <string key="concept:name" value="ticket opened"/>
      <date key="time:timestamp" value="2024-01-01T10:00:00.000+01:00"/>
      <string key="org:resource" value="Ann"/>
      <float key="cost" value="2.5"/>
    </event>
    <event>
      <string key="concept:name" value="ticket closed"/>
      <date key="time:timestamp" value="2024-01-02T10:00:00.000+01:00"/>
      <list key="notes"><string key="n" value="ignored"/></list>
    </event>
  </trace>
  <trace>
    <string key="concept:name" value="case-2"/>
    <event>
      <string key="concept:name" value="ticket opened"/>
      <date key="time:timestamp" value="2024-02-01T08:00:00.000Z"/>
    </event>
  </trace>
</log>
"""

XES_SOURCE = """
sources:
  log:
    path: log.xes
    identifiers: {case: "case:concept:name"}
    refs: {ticket: "case:concept:name"}
    event_type: "concept:name"
    ts: "time:timestamp"
    agent: "org:resource"
    measures: {cost: cost}
    attributes: {customer: "case:customer"}
"""


def test_xes_events_carry_their_trace(make_workspace):
    ws = make_workspace(XES_SOURCE, {"log.xes": XES})
    rep = ws.ingest("log")
    assert (rep.rows_read, rep.rows_loaded) == (3, 3)
    got = ws.con.execute("""SELECT source_line, refs['ticket'], event_type, ts, agent, measures,
                                   attributes FROM events ORDER BY source_line""").fetchall()
    lines = XES.splitlines()
    event_lines = [i + 1 for i, line in enumerate(lines) if line.strip() == "<event>"]
    utc = timezone.utc
    assert got == [
        (event_lines[0], "case-1", "ticket opened", datetime(2024, 1, 1, 9, tzinfo=utc), "Ann",
         {"cost": 2.5}, {"customer": "cust-9"}),
        (event_lines[1], "case-1", "ticket closed", datetime(2024, 1, 2, 9, tzinfo=utc), None,
         {}, {"customer": "cust-9"}),
        (event_lines[2], "case-2", "ticket opened", datetime(2024, 2, 1, 8, tzinfo=utc), None,
         {}, {}),
    ]
    # one person per case, as the case id is the only identifier
    assert ws.con.execute("SELECT count(*) FROM people").fetchone()[0] == 2


def test_broken_xes_keeps_what_was_read_and_quarantines_the_rest(make_workspace):
    broken = XES.replace("</trace>\n  <trace>", "</trace>\n  <trace <oops>", 1)
    ws = make_workspace(XES_SOURCE, {"log.xes": broken})
    rep = ws.ingest("log")
    assert (rep.rows_loaded, rep.rows_quarantined) == (2, 1)
    q = ws.quarantine().to_pylist()[0]
    bad_line = next(i + 1 for i, line in enumerate(broken.splitlines()) if "<oops>" in line)
    assert q["line"] == bad_line and "not well-formed" in q["reason"]


# ---------------------------------------------------------------------- timestamps

AMS = ZoneInfo("Europe/Amsterdam")


def utc(local: datetime, zone=AMS) -> datetime:
    return local.replace(tzinfo=zone).astimezone(timezone.utc)


def ts_workspace(make_workspace, values: list[str], extra: str, folder: str = "ws"):
    text = "id,when\n" + "".join(f"c{i},{v}\n" for i, v in enumerate(values))
    ws = make_workspace(source("d.csv", extra, text="id"), {"d.csv": text}, folder=folder)
    rep = ws.ingest("s")
    assert rep.rows_quarantined == 0, ws.quarantine().to_pylist()
    rows = ws.con.execute("SELECT source_line, ts FROM events ORDER BY source_line").fetchall()
    return [ts for _, ts in rows]


def test_naive_local_times_across_daylight_saving_changes(make_workspace):
    # every 20 minutes through both changes of 2024 (spring: 02:00 -> 03:00 on 31 March;
    # autumn: 03:00 -> 02:00 on 27 October), except the autumn's repeated hour and the
    # spring's skipped one (02:xx does not exist that night: quarantined, see
    # test_ingest_quarantine.py)
    spring = [datetime(2024, 3, 30, 23) + timedelta(minutes=20 * k) for k in range(16)]
    autumn = [datetime(2024, 10, 26, 23) + timedelta(minutes=20 * k) for k in range(16)]
    spring = [t for t in spring if not (t.day == 31 and t.hour == 2)]
    autumn = [t for t in autumn if t.hour != 2]
    local = spring + autumn
    got = ts_workspace(make_workspace, [t.strftime("%Y-%m-%d %H:%M:%S") for t in local],
                       "timestamps: {timezone: Europe/Amsterdam}")
    assert got == [utc(t) for t in local]  # zoneinfo's reading
    assert {t.hour for t in spring} >= {1, 3}


def test_the_repeated_autumn_hour_is_one_of_its_two_instants(make_workspace):
    local = datetime(2024, 10, 27, 2, 30)
    got = ts_workspace(make_workspace, ["2024-10-27 02:30:00"],
                       "timestamps: {timezone: Europe/Amsterdam}")
    both = {local.replace(tzinfo=AMS, fold=f).astimezone(timezone.utc) for f in (0, 1)}
    assert len(both) == 2 and got[0] in both


def test_explicit_offsets_keep_them_whatever_the_zone(make_workspace):
    values = ["2024-03-31T02:30:00+05:00", "2024-03-31T02:30:00Z", "2024-03-31 02:30:00 UTC",
              "2024-03-31T02:30:00.250-03:30", "2024-03-31 02:30:00 +0100",
              "2024-07-01", "2024-01-01"]
    got = ts_workspace(make_workspace, values, "timestamps: {timezone: Europe/Amsterdam}")
    want = [datetime.fromisoformat(v.replace(" UTC", "+00:00")).astimezone(timezone.utc)
            for v in values[:5]]
    # a plain date is local midnight in the configured zone
    want += [utc(datetime(2024, 7, 1)), utc(datetime(2024, 1, 1))]
    assert got == want


@pytest.mark.parametrize("zone", ["UTC", "Europe/Amsterdam"])
def test_offsets_with_seconds_keep_them(make_workspace, zone):
    """PostgreSQL writes a time before standard zones with its local mean time
    ('+00:19:32' in Amsterdam before 1937): the TIMESTAMP cast dropped such an offset
    and read the wall time in the configured zone. The oracle is Python's reading."""
    values = ["1900-01-01 00:00:00+00:19:32", "2024-03-31T02:30:00+02:00:00",
              "2024-01-05 10:00:00.25 -03:30:15", "2024-01-05T10:00:00Z"]
    got = ts_workspace(make_workspace, values, f"timestamps: {{timezone: {zone}}}")
    assert got == [datetime.fromisoformat(v.replace(" -", "-")).astimezone(timezone.utc)
                   for v in values]


@pytest.mark.parametrize("unit", ["s", "ms"])
def test_epoch_numbers(make_workspace, unit):
    # from 1971-01-01 00:00:00 UTC (earlier is quarantined), incl. 2000-02-29
    values = [31_536_000, 1_700_000_000, 1_711_846_800, 951_782_400, 4_102_444_800]
    if unit == "ms":
        values = [v * 1000 + k * 7 for k, v in enumerate(values)]
    # the zone does not apply: an epoch is an instant
    got = ts_workspace(make_workspace, [str(v) for v in values],
                       f"timestamps: {{unit: {unit}, timezone: America/New_York}}")
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    step = timedelta(seconds=1) if unit == "s" else timedelta(milliseconds=1)
    assert got == [epoch + v * step for v in values]


def test_explicit_format_with_zone(make_workspace):
    values = ["31/03/2024 01:59", "31/03/2024 03:00", "05/01/2024 12:00"]
    got = ts_workspace(make_workspace, values,
                       "timestamps: {format: '%d/%m/%Y %H:%M', timezone: Europe/Amsterdam}")
    assert got == [utc(datetime.strptime(v, "%d/%m/%Y %H:%M")) for v in values]


def test_naive_times_in_utc_keep_every_microsecond(make_workspace):
    # UTC needs no calendar (make_timestamptz of the microseconds): the same instants
    # as Python's reading, before 1970, at leap days and with fractions
    values = ["2024-02-29 23:59:59.999999", "1969-12-31 23:59:59.5", "1900-01-01 00:00:00",
              "2024-03-31 02:30:00", "2000-01-01T00:00:00.000001", "2024-07-01"]
    got = ts_workspace(make_workspace, values, "")
    assert got == [datetime.fromisoformat(v).replace(tzinfo=timezone.utc) for v in values]
    fmt = ts_workspace(make_workspace, ["31/12/1969 23:59", "29/02/2024 12:00"],
                       "timestamps: {format: '%d/%m/%Y %H:%M'}", folder="fmt")
    assert fmt == [datetime(1969, 12, 31, 23, 59, tzinfo=timezone.utc),
                   datetime(2024, 2, 29, 12, tzinfo=timezone.utc)]


@pytest.mark.parametrize("zone", ["UTC", "Europe/Amsterdam"])
def test_an_infinite_time_is_quarantined(make_workspace, tmp_path, zone):
    text = "id,when\nc1,infinity\nc2,2024-01-01 10:00:00\nc3,-infinity\n"
    ws = make_workspace(source("d.csv", f"timestamps: {{timezone: {zone}}}", text="id"),
                        {"d.csv": text})
    rep = ws.ingest("s")
    assert (rep.rows_loaded, rep.rows_quarantined) == (1, 2)
    q = sorted((r["line"], r["field"], r["value"]) for r in ws.quarantine().to_pylist())
    assert q == [(2, "ts", "infinity"), (4, "ts", "-infinity")]
    # a naive TIMESTAMP column (Parquet written by DuckDB, which can store infinity)
    import duckdb

    naive = [datetime(2024, 1, 1, 10), datetime(2024, 7, 2, 10, 0, 0, 7)]
    path = tmp_path / "d.parquet"
    duckdb.sql("SELECT * FROM (VALUES (1, TIMESTAMP 'infinity'), (2, ?::TIMESTAMP), "
               "(3, ?::TIMESTAMP)) v(id, \"when\")", params=naive).write_parquet(str(path))
    ws2 = make_workspace(source("d.parquet", f"timestamps: {{timezone: {zone}}}", text="id"),
                         {"d.parquet": path.read_bytes()}, folder="pq")
    rep = ws2.ingest("s")
    assert (rep.rows_loaded, rep.rows_quarantined) == (2, 1)
    assert [(r["line"], r["field"]) for r in ws2.quarantine().to_pylist()] == [(1, "ts")]
    got = [ts for (ts,) in ws2.con.execute("SELECT ts FROM events ORDER BY source_line").fetchall()]
    assert got == [t.replace(tzinfo=ZoneInfo(zone)).astimezone(timezone.utc) for t in naive]


def test_an_infinite_instant_is_quarantined(make_workspace, tmp_path):
    import duckdb

    path = tmp_path / "d.parquet"
    duckdb.sql("SELECT * FROM (VALUES (1, TIMESTAMPTZ '2024-01-01 10:00:00.5+02'), "
               "(2, TIMESTAMPTZ '-infinity')) v(id, \"when\")").write_parquet(str(path))
    ws = make_workspace(source("d.parquet", "timestamps: {timezone: Asia/Tokyo}", text="id"),
                        {"d.parquet": path.read_bytes()})
    rep = ws.ingest("s")
    assert (rep.rows_loaded, rep.rows_quarantined) == (1, 1)
    assert [(r["line"], r["field"]) for r in ws.quarantine().to_pylist()] == [(2, "ts")]
    # an instant stays the instant it is, whatever the configured zone
    assert ws.con.execute("SELECT ts FROM events").fetchall() == [
        (datetime(2024, 1, 1, 8, 0, 0, 500000, tzinfo=timezone.utc),)]


def test_a_map_whose_keys_match_no_value_warns_naming_its_line(make_workspace):
    """Keys are matched exactly: 'yes' does not match 'Yes', so every value would load
    as it is; the load says so (and where), and still loads."""
    text = """\
name: shop
sources:
  telco:
    path: t.csv
    identifiers: {customer_id: cid}
    ts: at
    event_type:
      column: churn
      map: {"yes": subscription_cancelled, "no": null}
    channel: {column: plan, map: {gold: premium}}
"""
    rows = "cid,at,churn,plan\n1,2024-01-01T00:00:00Z,Yes,basic\n2,2024-01-01T00:00:00Z,No,x\n"
    ws = make_workspace(text, {"t.csv": rows})
    report = ws.ingest("telco")
    assert report.events_loaded == 2
    [case] = [w for w in report.warnings if "event_type.map" in w]
    [values] = [w for w in report.warnings if "channel.map" in w]
    assert len(report.warnings) == 2
    assert "keymoments.yaml:9: sources.telco.event_type.map: none of its keys ('yes', 'no')" \
        in case and "only if case is ignored" in case
    assert "keymoments.yaml:10: sources.telco.channel.map" in values
    assert "values there: 'basic', 'x'" in values
    # a map with a key that matches: no warning
    (ws.root / "t.csv").write_text(rows.replace("basic", "gold"))
    ws2 = make_workspace(text.replace('"yes"', '"Yes"').replace('"no"', '"No"'),
                         {"t.csv": rows.replace("basic", "gold")}, folder="ws2")
    assert ws2.ingest("telco").warnings == ()
