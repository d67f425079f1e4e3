"""Ordering the person-keyed tables by person (keymoments.store.cluster) keeps every
row and type, orders the rows, is tracked until a build replaces a table; the
membership predicate the live path uses selects exactly its values."""

from __future__ import annotations

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keymoments as km
import keymoments.sql
import keymoments.store.cluster as clustering
from keymoments.demo.generator import generate_demo
from keymoments.sql import MEMBER_LIST_MAX, member_of
from keymoments.store.cluster import (CLUSTERED, INDEXES, cluster, cluster_stale,
                                      unordered_share)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A demo workspace with all but its last source loaded, and built."""
    root = tmp_path_factory.mktemp("cluster")
    generate_demo(root, n_events=3000, seed=3)
    ws = km.open(root)
    names = list(ws.config.sources)
    for name in names[:-1]:
        ws.ingest(name)
    ws.build()
    ws.close()
    return root, names[-1]


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return km.open(dst)


def _rows(ws, table):
    return sorted(ws.con.execute(f"SELECT * FROM {table}").fetchall(), key=repr)


def test_cluster_keeps_rows_and_types_and_orders_by_person(built, tmp_path):
    ws = _copy(built[0], tmp_path / "ws")
    before = {t: (_rows(ws, t), ws.con.execute(f"DESCRIBE {t}").fetchall()) for t in CLUSTERED}
    assert all(before[t][0] for t in CLUSTERED)
    assert set(unordered_share(ws).values()) == {1.0}  # never ordered
    done = cluster(ws)
    assert done == {t: len(before[t][0]) for t in CLUSTERED}
    for table in CLUSTERED:
        assert _rows(ws, table) == before[table][0], table
        assert ws.con.execute(f"DESCRIBE {table}").fetchall() == before[table][1], table
        stored = [r[0] for r in
                  ws.con.execute(f"SELECT person_id FROM {table} ORDER BY rowid").fetchall()]
        assert stored == sorted(stored), table  # the physical order is the person's
    # the storage hints survive (hash ids stored with FSST, vocabularies as dictionaries)
    ws.con.execute("CHECKPOINT")
    kinds = dict(ws.con.execute(
        "SELECT column_name, list(DISTINCT compression) FROM pragma_storage_info('events') "
        "WHERE segment_type = 'VARCHAR' GROUP BY 1").fetchall())
    assert kinds["event_id"] == ["FSST"] and kinds["channel"] == ["Dictionary"]
    assert set(unordered_share(ws).values()) == {0.0}
    ws.close()


def test_appended_rows_are_counted_and_a_build_forgets_the_order(built, tmp_path):
    ws = _copy(built[0], tmp_path / "ws")
    cluster(ws)
    n = ws.con.execute("SELECT count(*) FROM events").fetchone()[0]
    report = ws.ingest(built[1])
    assert report.events_loaded > 0
    share = unordered_share(ws)
    assert share["events"] == pytest.approx(report.events_loaded / (n + report.events_loaded))
    assert share["journeys"] == 0.0
    ws.build()
    share = unordered_share(ws)
    for table in ("journeys", "journey_events", "moments"):
        assert share[table] == 1.0, table  # replaced by the build, in its own order
    assert 0 < share["events"] < 1
    ws.close()


def test_cluster_stale_orders_only_what_is_past_the_share(built, tmp_path, monkeypatch):
    ws = _copy(built[0], tmp_path / "ws")
    assert cluster_stale(ws, above=1.0) == {}  # 1 never orders
    assert cluster_stale(ws, above=0.0) == {}  # every table is under MIN_ROWS
    monkeypatch.setattr(clustering, "MIN_ROWS", 0)
    cluster(ws, ["events"])
    ws.ingest(built[1])
    events_share = unordered_share(ws)["events"]
    got = cluster_stale(ws, above=events_share)  # events is at, not past, the share
    assert set(got) == set(CLUSTERED) - {"events"}
    assert set(cluster_stale(ws, above=events_share / 2)) == {"events"}
    ws.close()


def test_the_service_orders_the_tables_at_start(built, tmp_path, monkeypatch):
    from keymoments.live.runtime import LiveRuntime

    _copy(built[0], tmp_path / "ws").close()
    monkeypatch.setattr(clustering, "MIN_ROWS", 0)
    rt = LiveRuntime(tmp_path / "ws")
    rt.start()
    try:
        assert set(rt.ordered) == set(CLUSTERED)
        with rt.lock:  # (the connection is shared with the service's threads)
            names = {r[0] for r in
                     rt.ws.con.execute("SELECT index_name FROM duckdb_indexes()").fetchall()}
        assert names == set(INDEXES)
        out = rt.ingest([{"ts": "2026-03-01T10:00:00Z", "event_type": "order_placed",
                          "identifiers": {"customer_id": "c-new"}, "refs": {"order": "o-new"}}],
                        wait=True)
        assert out["events_loaded"] == 1 and out["processed"]
    finally:
        rt.stop()


def test_cluster_command(built, tmp_path):
    from click.testing import CliRunner

    from keymoments.cli import main

    _copy(built[0], tmp_path / "ws").close()
    runner = CliRunner()
    first = runner.invoke(main, ["-w", str(tmp_path / "ws"), "cluster"])
    assert first.exit_code == 0, first.output
    assert "events: " in first.output and "rows ordered" in first.output
    assert "index identifiers_identifier created" in first.output
    again = runner.invoke(main, ["-w", str(tmp_path / "ws"), "cluster"])
    assert again.exit_code == 0 and "rows ordered" not in again.output
    assert again.output.count("already in order") == len(CLUSTERED)
    assert "index" not in again.output


_values = st.text(alphabet=st.sampled_from("ab'\"é ,()%_\\\x00"), max_size=4)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wanted=st.sets(_values, max_size=8), others=st.lists(_values, max_size=4),
       many=st.booleans(), data=st.data())
def test_member_of_selects_exactly_its_values(wanted, others, many, data):
    """Oracle: Python's set membership, on values with quotes, NUL characters and
    NULLs, written out and (more than MEMBER_LIST_MAX values, or a NUL) as the subquery."""
    pool = sorted(wanted) + others
    column = data.draw(st.lists(st.one_of(st.none(), st.sampled_from(pool) if pool else st.none()),
                                max_size=40))
    wanted = sorted(wanted)
    if many:  # past the limit: the subquery form
        wanted = wanted + [f"pad{i}" for i in range(MEMBER_LIST_MAX + 1 - len(wanted))]
    con = duckdb.connect()
    con.execute("CREATE TABLE t (i INTEGER, v VARCHAR)")
    con.execute("CREATE TABLE w (v VARCHAR)")
    for i, v in enumerate(column):
        con.execute("INSERT INTO t VALUES (?, ?)", [i, v])
    for v in wanted:
        con.execute("INSERT INTO w VALUES (?)", [v])
    pred = member_of("v", wanted, "SELECT v FROM w")
    assert ("IN (SELECT" in pred) == (many or any("\x00" in v for v in wanted))
    got = sorted(r[0] for r in con.execute(f"SELECT i FROM t WHERE {pred}").fetchall())
    assert got == [i for i, v in enumerate(column) if v is not None and v in set(wanted)]
    assert keymoments.sql.MEMBER_LIST_MAX == MEMBER_LIST_MAX
