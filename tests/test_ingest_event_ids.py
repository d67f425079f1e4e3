"""Event id schemes: a new workspace hashes the scalar values the maps are made of
(scheme 2, and 3, which hashes alike and reads whole numbers in floating-point
columns as integers); a workspace loaded before schemes were recorded keeps scheme 1
(the maps cast to text), so re-loading its files is still a no-op.

The oracle computes both ids in Python (``hashlib.md5``) from the documented
definitions and the values written in the files by hand."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

import pytest

import keymoments as km
import keymoments.sources.ingest as ingest_module

CONFIG = """
sources:
  s:
    path: {path}
    identifiers: {{customer_id: id, email: email}}
    event_type: kind
    ts: when
    channel: channel
    rating: {{column: score, scale: csat5}}
    text: note
    refs: {{order: order_id}}
    measures: {{amount: amount}}
    attributes: {{carrier: carrier}}
"""
HEADER = "id,email,kind,when,channel,score,note,order_id,amount,carrier\n"
ROWS = [
    # id, email, kind, when, channel, score, note, order_id, amount, carrier
    ("C1", "Ana@X.com", "order_placed", "2024-01-01T10:00:00Z", "web", "4", "fine", "O1", "12.5", ""),
    ("C1", "Ana@X.com", "order_placed", "2024-01-01T10:00:00Z", "web", "4", "fine", "O1", "12.50", ""),
    # the same text in another map: another event
    ("C1", "", "order_placed", "2024-01-01T10:00:00Z", "web", "", "", "O1", "", ""),
    ("C1", "", "order_placed", "2024-01-01T10:00:00Z", "web", "", "", "", "", "O1"),
    ("", "bo@y.org", "visit", "2024-01-02T08:30:00Z", "", "", "", "", "", ""),
]
SEP = "\x1f"


def csv_text(rows) -> str:
    return HEADER + "".join(",".join(r) + "\n" for r in rows)


def _epoch_us(when: str) -> str:
    dt = datetime.fromisoformat(when.replace("Z", "+00:00")).astimezone(timezone.utc)
    return str(int(dt.timestamp()) * 1_000_000)


def _num(text: str) -> str | None:
    return repr(float(text)) if text else None


def oracle_id(row, scheme: int, source: str = "s") -> str:
    """The documented id of one row's event, from the values as written."""
    cid, email, kind, when, channel, score, note, order, amount, carrier = (v or None for v in row)
    email = email.lower() if email else None
    identifiers = [("customer_id", cid), ("email", email)]
    rating = _num(score or "")
    maps = {"identifiers": identifiers, "refs": [("order", order)],
            "measures": [("amount", _num(amount or ""))], "attributes": [("carrier", carrier)]}
    if scheme == 2:
        top = [kind, _epoch_us(when), channel, None, rating, note, None, None, None, None]
        entries = SEP.join(f"{field}.{k}={v}" for field, pairs in maps.items()
                           for k, v in pairs if v is not None)
        parts = [source, *(p or "" for p in top), entries]
    else:
        def text(pairs):
            return "{" + ", ".join(f"{k}={v}" for k, v in pairs if v is not None) + "}"

        anchor = f"customer_id:{cid}" if cid else f"email:{email}"
        parts = [source, kind, _epoch_us(when), anchor, text(identifiers), channel or "", "",
                 rating or "", note or "", text(maps["refs"]), text(maps["measures"]), "", "",
                 text(maps["attributes"]), "", ""]
    return hashlib.md5(SEP.join(parts).encode("utf-8")).hexdigest()


def _ids(ws) -> dict[int, str]:
    return dict(ws.con.execute("SELECT source_line, event_id FROM events").fetchall())


def _scheme(ws) -> str | None:
    row = ws.con.execute("SELECT value FROM km_meta WHERE key = 'event_id_scheme'").fetchone()
    return row and row[0]


def test_new_workspace_uses_scheme_3_and_reloading_is_a_no_op(make_workspace):
    ws = make_workspace(CONFIG.format(path="a.csv"), {"a.csv": csv_text(ROWS)})
    report = ws.ingest("s")
    assert (report.rows_read, report.rows_loaded, report.rows_duplicate) == (5, 4, 1)
    assert _scheme(ws) == "4"  # (a CSV has no floating-point column: ids as scheme 2)
    ids = _ids(ws)
    # line 3 repeats line 2 (12.50 is 12.5): one event, the first row kept
    assert ids == {line: oracle_id(ROWS[line - 2], 2) for line in (2, 4, 5, 6)}
    assert len(set(ids.values())) == 4  # the same value in refs and in attributes differs
    again = ws.ingest("s")
    assert (again.rows_loaded, again.rows_duplicate, again.events_loaded) == (0, 5, 0)
    assert _ids(ws) == ids


def test_scheme_2_ids_are_stable_across_workspaces(make_workspace):
    one = make_workspace(CONFIG.format(path="a.csv"), {"a.csv": csv_text(ROWS)}, folder="one")
    two = make_workspace(CONFIG.format(path="b.csv"), {"b.csv": csv_text(ROWS[::-1])}, folder="two")
    one.ingest("s")
    two.ingest("s")
    ids_one = set(_ids(one).values())
    assert ids_one == set(_ids(two).values())
    assert len(ids_one) == 4


def test_old_workspace_keeps_scheme_1(make_workspace, monkeypatch, tmp_path):
    ws = make_workspace(CONFIG.format(path="a.csv"), {"a.csv": csv_text(ROWS[:3]),
                                                      "b.csv": csv_text(ROWS[3:])})
    # a store loaded by keymoments before schemes were recorded: scheme 1, no record
    with monkeypatch.context() as m:
        m.setattr(ingest_module, "LATEST_EVENT_ID_SCHEME", 1)
        ws.ingest("s")
    ws.con.execute("DELETE FROM km_meta WHERE key = 'event_id_scheme'")
    old_ids = _ids(ws)
    assert old_ids == {2: oracle_id(ROWS[0], 1), 4: oracle_id(ROWS[2], 1)}
    root = ws.root
    ws.close()

    ws = km.open(root)
    try:
        again = ws.ingest("s")
        assert (again.rows_loaded, again.rows_duplicate, again.events_loaded) == (0, 3, 0)
        assert _scheme(ws) == "1"
        assert _ids(ws) == old_ids
        # a new file into the old workspace: still scheme 1
        (root / "keymoments.yaml").write_text(CONFIG.format(path="b.csv"))
        ws.reload_config()
        new = ws.ingest("s")
        assert new.events_loaded == 2
        ids = ws.con.execute("SELECT event_id FROM events WHERE source_file LIKE '%b.csv'").fetchall()
        assert {r[0] for r in ids} == {oracle_id(r, 1) for r in ROWS[3:]}
        assert {r[0] for r in ids}.isdisjoint({oracle_id(r, 2) for r in ROWS[3:]})
    finally:
        ws.close()


def test_a_failed_first_load_records_no_scheme(make_workspace, monkeypatch):
    ws = make_workspace(CONFIG.format(path="a.csv"), {"a.csv": csv_text(ROWS)})

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ingest_module, "_refresh_people", boom)
    with pytest.raises(RuntimeError):
        ws.ingest("s")
    assert _scheme(ws) is None
    assert ws.con.execute("SELECT count(*) FROM events").fetchone()[0] == 0


def test_people_match_a_recount_of_the_events_after_a_merge(make_workspace):
    """people (one pass per person and channel) against a Python recount of the
    events, after a second load links C1's and bo@y.org's persons."""
    link = [("C1", "bo@y.org", "call", "2024-01-03T09:00:00Z", "phone", "", "", "", "", ""),
            ("C2", "", "visit", "2024-01-04T09:00:00Z", "", "", "", "", "", "")]
    ws = make_workspace(CONFIG.format(path="a.csv"), {"a.csv": csv_text(ROWS), "b.csv": csv_text(link)})
    ws.ingest("s")
    (ws.root / "keymoments.yaml").write_text(CONFIG.format(path="b.csv"))
    ws.reload_config()
    assert ws.ingest("s").identifiers_relinked > 0
    got, expected = _people_recount(ws)
    assert got == expected
    assert len(got) == 2
    channels = ws.con.execute("SELECT channels FROM people ORDER BY n_events DESC").fetchall()
    assert channels[0][0] == ["phone", "web"]  # sorted


def _people_recount(ws) -> tuple[dict, dict]:
    expected: dict[str, list] = {}
    for person, ts, channel in ws.con.execute("SELECT person_id, ts, channel FROM events").fetchall():
        row = expected.setdefault(person, [0, ts, ts, set()])
        row[0] += 1
        row[1], row[2] = min(row[1], ts), max(row[2], ts)
        if channel is not None:
            row[3].add(channel)
    got = {p: [n, first, last, set(ch)] for p, n, first, last, ch in ws.con.execute(
        "SELECT person_id, n_events, first_seen, last_seen, channels FROM people").fetchall()}
    return got, expected


def test_people_match_a_recount_after_loads_of_only_new_customers(make_workspace):
    """A load whose identifiers are all new reads its persons' events from the load
    alone and deletes no people row: the people table still equals a recount, after
    a load of only new customers and after one that mixes new and known ones."""
    new_only = [("C7", "", "visit", "2024-02-01T09:00:00Z", "web", "", "", "", "", ""),
                ("C7", "", "call", "2024-02-02T09:00:00Z", "phone", "", "", "", "", ""),
                ("C8", "cy@z.org", "visit", "2024-02-03T09:00:00Z", "", "", "", "", "", "")]
    mixed = [("C7", "", "visit", "2024-03-01T09:00:00Z", "app", "", "", "", "", ""),
             ("C9", "", "visit", "2024-03-02T09:00:00Z", "web", "", "", "", "", "")]
    ws = make_workspace(CONFIG.format(path="a.csv"), {"a.csv": csv_text(ROWS), "b.csv": csv_text(new_only),
                                                      "c.csv": csv_text(mixed)})
    ws.ingest("s")
    before = ws.con.execute("SELECT count(*) FROM people").fetchone()[0]
    for path, added in (("b.csv", 2), ("c.csv", 1)):
        (ws.root / "keymoments.yaml").write_text(CONFIG.format(path=path))
        ws.reload_config()
        assert ws.ingest("s").rows_loaded > 0
        got, expected = _people_recount(ws)
        assert got == expected
        before += added
        assert len(got) == before


# --------------------------------------------------------- whole floats (scheme 3)

FLOAT_CONFIG = """
sources:
  p:
    path: p.parquet
    identifiers: {customer_id: cid}
    event_type: kind
    ts: when
    refs: {order: oid}
  c:
    path: c.csv
    identifiers: {customer_id: cid}
    event_type: kind
    ts: when
    refs: {order: oid}
"""
# pandas writes an integer column with a missing value as floats
FLOATS = [7.0, float("nan"), 2.5, -3.0, 2.0 ** 60]
CSV_ROWS = "cid,kind,when,oid\n7,review,2024-01-05T10:00:00Z,7\n"


def _float_files() -> dict[str, bytes | str]:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(FLOATS)
    table = pa.table({"cid": pa.array(FLOATS, pa.float64()),
                      "kind": ["order_placed"] * n,
                      "when": [f"2024-01-0{i + 1}T10:00:00Z" for i in range(n)],
                      "oid": pa.array(FLOATS, pa.float64())})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return {"p.parquet": buf.getvalue(), "c.csv": CSV_ROWS}


def _texts(ws, source: str) -> list[tuple]:
    return ws.con.execute(
        f"SELECT identifiers['customer_id'], refs['order'] FROM events "
        f"WHERE source = '{source}' ORDER BY ts").fetchall()


def test_whole_floats_read_as_integers_so_a_csv_export_joins_them(make_workspace):
    """7.0 in a Parquet file is the customer and the order 7 of a CSV export: one
    person, one purchase journey; 2.5 stays 2.5, a missing value (NaN) stays empty,
    and a whole number past 2**53 (no longer exact as a double) keeps its float text."""
    ws = make_workspace(FLOAT_CONFIG, _float_files())
    ws.ingest("p")
    ws.ingest("c")
    assert _scheme(ws) == "4"
    big = ws.con.execute(f"SELECT CAST({2.0 ** 60!r}::DOUBLE AS VARCHAR)").fetchone()[0]
    # the expected texts, written by hand from FLOATS (the NaN row has no identifier:
    # quarantined)
    assert _texts(ws, "p") == [("7", "7"), ("2.5", "2.5"), ("-3", "-3"), (big, big)]
    assert big != str(2 ** 60)
    assert ws.con.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 1
    assert _texts(ws, "c") == [("7", "7")]
    persons = ws.con.execute("SELECT count(DISTINCT person_id) FROM events "
                             "WHERE identifiers['customer_id'] = '7'").fetchone()[0]
    assert persons == 1
    again = ws.ingest("p")
    assert (again.rows_loaded, again.events_loaded) == (0, 0)


def test_a_scheme_2_workspace_keeps_reading_floats_as_before(make_workspace):
    """A workspace whose first load used scheme 2 keeps it: its Parquet rows keep
    their text ('7.0') and their ids, so re-loading the file adds nothing."""
    ws = make_workspace(FLOAT_CONFIG, _float_files())
    ws.con.execute("INSERT INTO km_meta VALUES ('event_id_scheme', '2')")
    first = ws.ingest("p")
    assert first.events_loaded == 4
    assert _texts(ws, "p")[0] == ("7.0", "7.0")
    ids = sorted(r[0] for r in ws.con.execute("SELECT event_id FROM events").fetchall())
    again = ws.ingest("p")
    assert (again.rows_loaded, again.events_loaded) == (0, 0)
    assert sorted(r[0] for r in ws.con.execute("SELECT event_id FROM events").fetchall()) == ids
    assert _scheme(ws) == "2"


# ------------------------------------------------------------ decimals (scheme 4)

def _decimal_files() -> dict[str, bytes | str]:
    import io
    from decimal import Decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    values = [Decimal("7.00"), Decimal("7.50"), Decimal("-3.00"), Decimal("10.00"),
              Decimal("0.00")]
    n = len(values)
    table = pa.table({"cid": pa.array(values, pa.decimal128(10, 2)),
                      "kind": ["order_placed"] * n,
                      "when": [f"2024-01-0{i + 1}T10:00:00Z" for i in range(n)],
                      "oid": pa.array([Decimal(v) for v in ("70", "71", "72", "73", "74")],
                                      pa.decimal128(18, 0))})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return {"p.parquet": buf.getvalue(), "c.csv": CSV_ROWS}


def test_decimals_read_without_trailing_zeros_so_a_csv_export_joins_them(make_workspace):
    """A database export's DECIMAL(10,2) customer 7.00 is the customer 7 of a CSV
    export (one person); 7.50 is '7.5', 10.00 '10', 0.00 '0'; a scale of 0 keeps its
    digits (70 stays '70', not '7'). Re-loading adds nothing."""
    ws = make_workspace(FLOAT_CONFIG, _decimal_files())
    ws.ingest("p")
    ws.ingest("c")
    assert _scheme(ws) == "4"
    assert _texts(ws, "p") == [("7", "70"), ("7.5", "71"), ("-3", "72"), ("10", "73"),
                               ("0", "74")]
    persons = ws.con.execute("SELECT count(DISTINCT person_id) FROM events "
                             "WHERE identifiers['customer_id'] = '7'").fetchone()[0]
    assert persons == 1
    again = ws.ingest("p")
    assert (again.rows_loaded, again.events_loaded) == (0, 0)


def test_a_scheme_3_workspace_keeps_reading_decimals_as_before(make_workspace):
    """A workspace whose first load used scheme 3 keeps its decimals' text ('7.00')
    and ids: re-loading the file adds nothing."""
    ws = make_workspace(FLOAT_CONFIG, _decimal_files())
    ws.con.execute("INSERT INTO km_meta VALUES ('event_id_scheme', '3')")
    assert ws.ingest("p").events_loaded == 5
    assert _texts(ws, "p")[0] == ("7.00", "70")
    again = ws.ingest("p")
    assert (again.rows_loaded, again.events_loaded) == (0, 0)
    assert _scheme(ws) == "3"
