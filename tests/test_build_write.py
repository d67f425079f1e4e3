"""How a build writes: the two journey-assignment paths (keyed journeys that never
split, and runs cut by a gap) and the swap of the new tables (old or new, never a
mix, nothing left behind). Expected journeys are worked out by hand in comments."""

from __future__ import annotations

import json

import pytest

CONFIG = """
name: build-write
journeys:
  as_of: "2024-03-01T00:00:00Z"
  catch_all_gap: 30m
  types:
    - {name: support, key: ticket}
    - {name: rental, key: order, gap: 1h}
sources:
  events:
    path: events.jsonl
    identifiers: {customer_id: customer}
    refs: {order: order_id, ticket: ticket_id}
    event_type: event_type
    ts: ts
    channel: channel
"""


def ev(customer, ts, event_type, channel="web", **extra):
    return {"customer": customer, "ts": ts, "event_type": event_type, "channel": channel, **extra}


ROWS = [
    # ticket T1 (keyed, no gap): 10 hours apart, still one journey; web -> phone is a switch
    ev("ana", "2024-01-01T10:00:00Z", "ticket_opened", ticket_id="T1"),
    ev("ana", "2024-01-01T20:00:00Z", "agent_reply", channel="phone", ticket_id="T1"),
    # order R1 (keyed, gap 1h): 10:00, 10:30 | 12:00 (90 min > 1h: a new run), 13:00
    # (exactly 1h later: the same run)
    ev("ana", "2024-01-02T10:00:00Z", "pickup", order_id="R1"),
    ev("ana", "2024-01-02T10:30:00Z", "drive", channel="app", order_id="R1"),
    ev("ana", "2024-01-02T12:00:00Z", "drive", channel="app", order_id="R1"),
    ev("ana", "2024-01-02T13:00:00Z", "return", order_id="R1"),
    # catch-all visits of bruno: 09:00, 09:20 | 10:00 (40 min > 30 min)
    ev("bruno", "2024-01-03T09:00:00Z", "page_view"),
    ev("bruno", "2024-01-03T09:20:00Z", "page_view"),
    ev("bruno", "2024-01-03T10:00:00Z", "page_view"),
]


@pytest.fixture
def ws(make_workspace):
    ws = make_workspace(CONFIG, {"events.jsonl": "\n".join(json.dumps(r) for r in ROWS) + "\n"})
    assert ws.ingest("events").rows_quarantined == 0
    ws.build()
    return ws


def _journeys(ws):
    rows = ws.con.execute("""
        SELECT j.journey_id, j.journey_type, j.journey_key, list(e.event_type ORDER BY je.seq) AS types,
               list(je.seq ORDER BY je.seq) AS seqs, sum(je.channel_switch) AS switches
        FROM journeys j JOIN journey_events je USING (journey_id) JOIN events e USING (event_id)
        GROUP BY ALL ORDER BY min(e.ts)""").fetchall()
    return [(t, k, list(ty), list(s), int(sw)) for _, t, k, ty, s, sw in rows]


def test_keyed_journeys_split_only_by_their_gap(ws):
    assert _journeys(ws) == [
        ("support", "T1", ["ticket_opened", "agent_reply"], [0, 1], 1),
        ("rental", "R1", ["pickup", "drive"], [0, 1], 1),
        ("rental", "R1", ["drive", "return"], [0, 1], 1),
        ("visit", None, ["page_view", "page_view"], [0, 1], 0),
        ("visit", None, ["page_view"], [0], 0),
    ]


def _derived_tables(ws):
    return sorted(r[0] for r in ws.con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
        " AND table_catalog = current_database()").fetchall())


def test_rebuild_swaps_the_tables_and_leaves_nothing_behind(ws):
    before = _derived_tables(ws)
    assert not [t for t in before if t.endswith("__new") or t.startswith("_km_")]
    ws.build()
    assert _derived_tables(ws) == before
    assert len(_journeys(ws)) == 5


@pytest.mark.parametrize("when", ["before the moments", "between two parts of the moments"])
def test_a_failed_build_keeps_the_old_tables(ws, monkeypatch, when):
    import duckdb

    import keymoments.pipeline as pipeline

    old = ws.con.execute("SELECT count(*) FROM journeys").fetchone()[0]
    real = pipeline.moment_parts

    def broken(*args, **kwargs):
        if when == "before the moments":
            raise RuntimeError("boom")
        parts = real(*args, **kwargs)
        # the first part is written, then the second fails in DuckDB ('purchase', ...)
        return [parts[0], parts[1].mutate(kind=parts[1].kind.cast("int64")), *parts[2:]]

    # fail after journey_events__new and journeys__new have been written
    monkeypatch.setattr(pipeline, "moment_parts", broken)
    with pytest.raises(RuntimeError if when == "before the moments"
                       else duckdb.ConversionException):
        ws.build()
    monkeypatch.setattr(pipeline, "moment_parts", real)
    assert ws.con.execute("SELECT count(*) FROM journeys").fetchone()[0] == old == 5
    assert not [t for t in _derived_tables(ws) if t.endswith("__new")]
    assert ws.con.execute("SELECT count(*) FROM moments").fetchone()[0] > 0


def _compression(ws, table, column):
    ws.con.execute("CHECKPOINT")
    return {r[0].upper() for r in ws.con.execute(
        "SELECT DISTINCT compression FROM pragma_storage_info(?) "
        "WHERE column_name = ? AND segment_type = 'VARCHAR'", [table, column]).fetchall()}


def test_columns_are_stored_with_their_compression_hint(ws):
    from keymoments.store.schema import ID_COMPRESSION

    ws.build()  # a second build: the swapped-in tables keep the hints
    checked = 0
    for table, columns in ID_COMPRESSION.items():
        if not ws.con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]:
            continue  # nothing stored: no segment to look at
        for column, method in columns.items():
            assert _compression(ws, table, column) == {method.upper()}, (table, column)
            checked += 1
    assert checked >= 12  # ids of events, journey_events (2), journeys, moments (2); vocabularies
    # the oracle: without the hint DuckDB picks another method for these few rows
    ws.con.execute("CREATE TABLE plain AS SELECT event_id FROM events")
    assert _compression(ws, "plain", "event_id") != {"FSST"}


def test_built_tables_hold_no_null_in_their_documented_not_null_columns(ws):
    """docs/schema.md marks columns NOT NULL; the tables a build swaps in keep the types
    but not the constraints (the engine's expressions read their columns as nullable),
    so the promise is of the content: no NULL there, after a first and a second build."""
    from keymoments.store.schema import COLUMN_DOCS

    for _ in range(2):
        ws.build()
        for table in ("journey_events", "journeys", "moments"):
            assert ws.con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] > 0, table
            for c, (t, _) in COLUMN_DOCS[table].items():
                if t.endswith("NOT NULL"):
                    n = ws.con.execute(f'SELECT count(*) FROM "{table}" WHERE "{c}" IS NULL'
                                       ).fetchone()[0]
                    assert n == 0, (table, c, n)


def test_a_store_written_before_the_hints_still_loads_and_builds(make_workspace, tmp_path):
    import duckdb

    import keymoments as km
    from keymoments.store.schema import COLUMN_DOCS

    ws = make_workspace(CONFIG, {"events.jsonl": "\n".join(json.dumps(r) for r in ROWS) + "\n"},
                        folder="old")
    root = ws.root
    ws.close()
    con = duckdb.connect(str(root / "keymoments.duckdb"))
    cols = ", ".join(f'"{c}" {t}' for c, (t, _) in COLUMN_DOCS["events"].items())
    con.execute("DROP TABLE events")
    con.execute(f"CREATE TABLE events ({cols})")  # as stores created before the hints
    con.close()
    with km.open(root) as old:
        assert old.ingest("events").events_loaded == len(ROWS)
        old.build()
        assert old.con.execute("SELECT count(*) FROM journey_events").fetchone()[0] == len(ROWS)
        assert _compression(old, "events", "event_id") != {"FSST"}  # no hint: auto, as before
