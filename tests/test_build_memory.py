"""A build under a small DuckDB memory limit gives the same tables as an unconstrained
one, and the channel lists built from per-channel flags (the spillable path) equal
the list aggregate they replace. Channel lists of the hand-made journeys are worked
out in comments."""

from __future__ import annotations

import json

import pytest

import keymoments as km
from keymoments.demo import generate_demo

TABLES = {"journeys": "journey_id", "journey_events": "event_id",
          "moments": "journey_id, kind, event_id"}


def _snapshot(ws) -> dict[str, list[tuple]]:
    return {t: ws.con.execute(f"SELECT * FROM {t} ORDER BY {key}").fetchall()
            for t, key in TABLES.items()}


def _scratch_tables(ws) -> list[str]:
    return [r[0] for r in ws.con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database()"
        " AND (table_name LIKE '\\_km\\_%' ESCAPE '\\' OR table_name LIKE '%\\_\\_new' ESCAPE '\\')"
    ).fetchall()]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("build-memory")
    generate_demo(out, n_events=20_000, seed=11, fmt="parquet")
    ws = km.open(out)
    ws.ingest()
    ws.build()
    yield ws, out
    ws.close()


@pytest.mark.parametrize("steps", ["in memory", "in the scratch file"])
def test_build_under_a_small_memory_limit_gives_the_same_tables(demo, monkeypatch, steps):
    from keymoments import pipeline

    ws, out = demo
    free = _snapshot(ws)
    assert len(free["journeys"]) > 1000 and len(free["moments"]) > 1000
    con = ws.con
    limit = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    # a configured limit: the steps in memory while the events' fit (20k events: 5 MB
    # against 96 MB), else stored in the scratch file
    monkeypatch.setattr(ws, "config", ws.config.model_copy(update={"memory_limit": "96MB"}))
    if steps == "in the scratch file":
        monkeypatch.setattr(pipeline, "STEP_BYTES_PER_EVENT", 10_000)  # 200 MB: over
    used = []
    real = pipeline._materialize
    monkeypatch.setattr(pipeline, "_materialize",
                        lambda *a: used.append(a[-1]) or real(*a))
    con.execute("SET memory_limit = '96MB'")
    con.execute(f"SET temp_directory = '{out / 'spill'}'")
    con.execute("SET threads = 1")
    try:
        report = ws.build()
        limited = _snapshot(ws)
    finally:
        con.execute(f"SET memory_limit = '{limit}'")
        con.execute("RESET threads")
    assert set(used) == {steps == "in memory"} and "retry" not in report.seconds
    for table in TABLES:
        assert limited[table] == free[table], table
    assert _scratch_tables(ws) == []


def test_a_build_out_of_memory_with_its_steps_in_memory_runs_again_from_the_file(
        demo, monkeypatch):
    import duckdb

    from keymoments import pipeline

    ws, _ = demo
    free = _snapshot(ws)
    monkeypatch.setattr(ws, "config", ws.config.model_copy(update={"memory_limit": "8GB"}))
    used = []
    real = pipeline._materialize

    def materialize(ws_, name, expr, backend, in_memory):
        used.append((name, in_memory))
        if in_memory and name == "_km_jbase":  # as DuckDB does past its limit
            raise duckdb.OutOfMemoryException("Out of Memory Error: (planted)")
        return real(ws_, name, expr, backend, in_memory)

    monkeypatch.setattr(pipeline, "_materialize", materialize)
    report = ws.build()
    assert used[:2] == [("_km_jn", True), ("_km_jbase", True)]
    assert used[2:] and all(not in_memory for _, in_memory in used[2:])
    assert "retry" in report.seconds
    assert _snapshot(ws) == free
    assert _scratch_tables(ws) == []
    assert not pipeline.scratch_path(ws).exists()


def test_a_build_out_of_memory_leaves_no_scratch_tables_and_keeps_the_old(demo):
    import duckdb

    ws, _ = demo
    before = ws.con.execute("SELECT count(*) FROM journeys").fetchone()[0]
    limit = ws.con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    ws.con.execute("SET memory_limit = '4MB'")
    try:
        with pytest.raises(duckdb.OutOfMemoryException):
            ws.build()
    finally:
        ws.con.execute(f"SET memory_limit = '{limit}'")
    assert _scratch_tables(ws) == []
    assert ws.con.execute("SELECT count(*) FROM journeys").fetchone()[0] == before


CONFIG = """
name: channels
journeys:
  as_of: "2024-03-01T00:00:00Z"
  catch_all_gap: 30m
  types:
    - {name: support, key: ticket}
sources:
  events:
    path: events.jsonl
    identifiers: {customer_id: customer}
    refs: {ticket: ticket_id}
    event_type: event_type
    ts: ts
    channel: channel
"""


def ev(customer, ts, event_type, channel, **extra):
    row = {"customer": customer, "ts": ts, "event_type": event_type, **extra}
    if channel is not None:
        row["channel"] = channel
    return row


ROWS = [
    # T1: web, phone, web, (none) -> ["phone", "web"] (distinct, sorted, no null)
    ev("ana", "2024-01-01T10:00:00Z", "ticket_opened", "web", ticket_id="T1"),
    ev("ana", "2024-01-01T11:00:00Z", "agent_reply", "phone", ticket_id="T1"),
    ev("ana", "2024-01-01T12:00:00Z", "agent_reply", "web", ticket_id="T1"),
    ev("ana", "2024-01-01T13:00:00Z", "agent_reply", None, ticket_id="T1"),
    # T2: no channel at all -> NULL
    ev("bruno", "2024-01-02T10:00:00Z", "ticket_opened", None, ticket_id="T2"),
    ev("bruno", "2024-01-02T11:00:00Z", "ticket_closed", None, ticket_id="T2"),
    # carla's visit: app, Zoo -> ["Zoo", "app"] ("Z" sorts before "a": code points);
    # dora's visit on the app alone -> ["app"]
    ev("carla", "2024-01-03T09:00:00Z", "page_view", "app"),
    ev("carla", "2024-01-03T09:10:00Z", "page_view", "Zoo"),
    ev("dora", "2024-01-03T09:30:00Z", "page_view", "app"),
]


@pytest.fixture
def channels_ws(make_workspace):
    ws = make_workspace(CONFIG, {"events.jsonl": "\n".join(json.dumps(r) for r in ROWS) + "\n"})
    assert ws.ingest("events").rows_quarantined == 0
    return ws


def _channels(ws) -> dict[tuple, list | None]:
    rows = ws.con.execute("SELECT journey_type, journey_key, strftime(start_ts, '%d %H:%M'), channels"
                          " FROM journeys").fetchall()
    return {(t, k, start): c for t, k, start, c in rows}


def test_channel_lists_worked_out_by_hand(channels_ws):
    channels_ws.build()
    assert _channels(channels_ws) == {
        ("support", "T1", "01 10:00"): ["phone", "web"],
        ("support", "T2", "02 10:00"): None,
        ("visit", None, "03 09:00"): ["Zoo", "app"],  # carla
        ("visit", None, "03 09:30"): ["app"],  # dora
    }


def test_channel_flags_equal_the_list_aggregate(channels_ws, monkeypatch):
    """Past MAX_CHANNEL_FLAGS channels the build falls back to the list aggregate:
    forcing it gives a second implementation to compare with."""
    import keymoments.journey.summary as summary

    channels_ws.build()
    flags = _snapshot(channels_ws)
    monkeypatch.setattr(summary, "MAX_CHANNEL_FLAGS", 1)
    from keymoments.engine import backend

    je = backend(channels_ws).table("journey_events")
    assert summary.channel_vocabulary(je) is None  # 4 channels > 1
    channels_ws.build()
    assert _snapshot(channels_ws) == flags


def test_a_temp_table_left_on_the_connection_does_not_hide_a_scratch_table(demo, monkeypatch):
    """A live update leaves TEMP tables named like the build's steps on its
    connection; a build with a configured limit stores its steps and must read those."""
    ws, _ = demo
    before = _snapshot(ws)
    ws.con.execute("CREATE OR REPLACE TEMP TABLE _km_jbase AS SELECT 1 AS junk")
    monkeypatch.setattr(ws, "config", ws.config.model_copy(update={"memory_limit": "2GB"}))
    ws.build()
    assert _snapshot(ws) == before
    assert _scratch_tables(ws) == []


def test_scratch_steps_live_in_their_own_file_deleted_after_the_build(demo, monkeypatch):
    """Under a limit the events' steps do not fit in (here: forced), the intermediate
    steps are tables of an attached scratch database, never of the workspace's file
    (whose freed blocks would stay in it); each is dropped once the table it feeds
    is written, and the scratch file is gone after the build, the tables unchanged."""
    import keymoments.pipeline as pipeline

    ws, _ = demo
    before = _snapshot(ws)
    seen: dict[str, object] = {"scratch": set(), "drops": []}
    real_detach, real_drop = pipeline._detach_scratch, pipeline._drop_steps

    def scratch_tables(w):
        return {r[0] for r in w.con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = ?",
            [pipeline.SCRATCH]).fetchall()}

    def drop(w, names):  # the steps at each drop, before it
        seen["scratch"] |= scratch_tables(w)
        seen["drops"].append(sorted(names))
        real_drop(w, names)

    def detach(w):  # what the build left just before it cleans up
        seen["exists"] = pipeline.scratch_path(w).exists()
        seen["left"] = scratch_tables(w)
        seen["main"] = _scratch_tables(w)
        real_detach(w)

    monkeypatch.setattr(pipeline, "_detach_scratch", detach)
    monkeypatch.setattr(pipeline, "_drop_steps", drop)
    monkeypatch.setattr(pipeline, "STEP_BYTES_PER_EVENT", 10**6)  # 20 GB: over the limit
    monkeypatch.setattr(ws, "config", ws.config.model_copy(update={"memory_limit": "2GB"}))
    ws.build()
    assert seen["exists"] is True
    assert {"_km_jn", "_km_jbase", "_km_jnext"} <= seen["scratch"]
    # _km_jn fed journey_events, _km_jbase and _km_jnext the journeys, the staged
    # parts the moments
    assert {"_km_moments_parts"} <= seen["scratch"]
    assert seen["drops"][:3] == [["_km_jn"], ["_km_jbase", "_km_jnext"], ["_km_moments_parts"]]
    assert seen["left"] == set()
    assert seen["main"] == []  # the swap already renamed the __new tables
    assert not pipeline.scratch_path(ws).exists()
    assert ws.con.execute("SELECT count(*) FROM duckdb_databases() WHERE database_name = ?",
                          [pipeline.SCRATCH]).fetchone()[0] == 0
    assert _snapshot(ws) == before


def test_out_of_memory_while_staging_the_moments_runs_again_from_the_file(demo, monkeypatch):
    """The moments' parts are staged in one step before one INSERT; running out of
    memory there (steps in memory) runs the build again with its steps in the
    scratch file: the same tables, no step left in the workspace or its temp schema."""
    import duckdb

    from keymoments import pipeline

    ws, _ = demo
    free = _snapshot(ws)
    monkeypatch.setattr(ws, "config", ws.config.model_copy(update={"memory_limit": "8GB"}))
    staged = []
    real = pipeline._stage_parts

    def stage(ws_, name, table, selects, in_memory):
        staged.append((name, in_memory))
        if in_memory:  # as DuckDB does past its limit
            raise duckdb.OutOfMemoryException("Out of Memory Error: (planted)")
        return real(ws_, name, table, selects, in_memory)

    monkeypatch.setattr(pipeline, "_stage_parts", stage)
    report = ws.build()
    assert staged == [("_km_moments_parts", True), ("_km_moments_parts", False)]
    assert "retry" in report.seconds
    assert _snapshot(ws) == free
    assert _scratch_tables(ws) == []
    assert ws.con.execute("SELECT count(*) FROM duckdb_tables() "
                          "WHERE table_name LIKE '\\_km\\_%' ESCAPE '\\'").fetchone()[0] == 0
    assert not pipeline.scratch_path(ws).exists()


@pytest.mark.parametrize("in_memory", [True, False])
def test_staged_parts_take_the_documented_types_whatever_the_first_part_says(demo, in_memory):
    """A part's column typed by a bare NULL (INTEGER in DuckDB) must not type the
    staged step: a later part's 0.25 stays 0.25, as when each part was written
    to the table on its own."""
    from keymoments import pipeline

    ws, _ = demo
    first = "SELECT * REPLACE (NULL AS valence) FROM moments LIMIT 1"
    later = "SELECT * REPLACE (0.25 AS valence) FROM moments"
    query = pipeline._stage_parts(ws, "_km_test_parts", "moments", [first, later], in_memory)
    try:
        got = ws.con.execute(f"SELECT count(*), count(valence), sum(valence) FROM ({query})"
                             ).fetchone()
        n = ws.con.execute("SELECT count(*) FROM moments").fetchone()[0]
        assert got == (n + 1, n, pytest.approx(0.25 * n))
    finally:
        pipeline._drop_steps(ws, ["_km_test_parts"])
        pipeline._detach_scratch(ws)
    assert not pipeline.scratch_path(ws).exists()
