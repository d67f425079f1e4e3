"""A load killed with SIGKILL inside its transaction leaves the store exactly as it
was, and the next load loads everything.

The child process loads a ~20k-row file with ``KEYMOMENTS_FAULT=<point>:<seconds>``:
ingest prints ``keymoments-fault: <point>`` to stderr inside the transaction and then
sleeps, so the test kills it at a known point without guessing at timings.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

import keymoments as km

ROWS = 20_000
BAD_EVERY = 997  # some rows are bad, so the quarantine is written in the transaction too
TABLES = ("events", "identifiers", "identity_links", "people", "quarantine", "loads", "km_meta")
WAIT = 300  # seconds: generous, for a loaded machine

CONFIG = """
name: crash
sources:
  seed:
    path: seed.csv
    identifiers: {customer_id: cid, email: email}
    event_type: {value: signup}
    ts: when
  big:
    path: big.csv
    identifiers: {customer_id: cid, email: email}
    event_type: {column: kind}
    ts: when
    rating: {column: score, scale: csat5}
    text: comment
"""


def big_csv() -> tuple[str, int, int]:
    """The file, and how many rows are good and bad."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["cid", "email", "when", "kind", "score", "comment"])
    bad = 0
    for i in range(ROWS):
        when = f"2024-{i % 12 + 1:02d}-{i % 28 + 1:02d} {i % 24:02d}:{i % 60:02d}:00"
        if i % BAD_EVERY == 0:
            when, bad = "not a date", bad + 1
        w.writerow([f"c{i % 5000}", f"user{i % 3000}@example.org", when,
                    ["visit", "order_placed", "ticket_opened"][i % 3], i % 5 + 1,
                    f"comment {i}, with a comma" if i % 7 else "multi\nline"])
    return buf.getvalue(), ROWS - bad, bad


def snapshot(root: Path) -> dict[str, list]:
    with km.open(root) as ws:
        return {t: sorted(ws.con.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr)
                for t in TABLES}


@pytest.fixture
def workspace(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    (root / "keymoments.yaml").write_text(CONFIG, encoding="utf-8")
    (root / "seed.csv").write_text(
        "cid,email,when\nc1,user1@example.org,2023-12-01\nc9999,,2023-12-02\n", encoding="utf-8")
    text, good, bad = big_csv()
    (root / "big.csv").write_text(text, encoding="utf-8")
    with km.open(root) as ws:  # the store holds something before the crash
        assert ws.ingest("seed").rows_loaded == 2
    return root, good, bad


@pytest.mark.parametrize("point", ["after_events_insert", "before_commit"])
def test_kill_inside_the_transaction_leaves_the_store_as_it_was(workspace, point,
                                                                 kill_load_at):
    root, good, bad = workspace
    before = snapshot(root)
    assert len(before["events"]) == 2 and len(before["loads"]) == 1

    kill_load_at(root, "big", point, WAIT)
    after = snapshot(root)  # reopening replays the log of committed work only
    assert after == before

    # a second crash on top of the first changes nothing either
    kill_load_at(root, "big", point, WAIT)
    assert snapshot(root) == before

    # then a normal load loads it all
    with km.open(root) as ws:
        rep = ws.ingest("big")
        assert rep.rows_read == ROWS
        assert rep.rows_quarantined == bad
        assert rep.rows_loaded == rep.events_loaded == good  # every good row is distinct
        assert rep.rows_read == rep.rows_loaded + rep.rows_quarantined + rep.rows_duplicate
        count = "SELECT count(*) FROM events WHERE source = 'big'"
        assert ws.con.execute(count).fetchone()[0] == good
        assert ws.con.execute("SELECT count(*) FROM quarantine").fetchone()[0] == bad
        assert ws.con.execute("SELECT count(*) FROM loads").fetchone()[0] == 2
        # the seed's person c1 now also has the big file's events of c1
        n = ws.con.execute("""
            SELECT count(*) FROM events WHERE person_id =
                (SELECT person_id FROM identifiers WHERE identifier = 'customer_id:c1')
        """).fetchone()[0]
        assert n > 1


#: one event per row of orders.csv
ORDERS = """\
sources:
  orders:
    path: orders.csv
    identifiers: {customer_id: cid}
    event_type: {value: order_placed}
    ts: at
"""


def test_a_commit_that_fails_is_the_error_reported(make_workspace):
    """When the COMMIT itself fails (a full disk), its error reaches the user: the
    ROLLBACK after it found no transaction and raised an error of its own instead
    ('cannot rollback - no transaction is active')."""
    from keymoments.sources.ingest import ingest_source

    ws = make_workspace(ORDERS, {"orders.csv": "cid,at\n1,2024-01-01T00:00:00Z\n"})

    def commit_fails(report):
        ws.con.execute("COMMIT")  # (the transaction ends, as a failed COMMIT ends it)
        raise OSError(28, "Could not write file: No space left on device")

    with pytest.raises(OSError, match="No space left on device"):
        ingest_source(ws, "orders", before_commit=commit_fails)


def test_a_load_restored_in_part_after_a_crash_is_taken_out(make_workspace):
    """As DuckDB's log replay after a kill during COMMIT can leave it: the load's
    events stored, its loads row (and people) not. Opened after the crash (its log
    left behind), the workspace takes those events out and says so; the load run
    again stores them whole, with their persons."""
    import shutil

    import keymoments as km

    ws = make_workspace(ORDERS, {"orders.csv": "cid,at\n1,2024-01-01T00:00:00Z\n"})
    ws.ingest("orders")
    root = ws.root
    (root / "orders.csv").write_text("cid,at\n1,2024-01-01T00:00:00Z\n2,2024-01-02T00:00:00Z\n")
    ws.ingest("orders")
    last = ws.con.execute("SELECT load_id FROM loads ORDER BY started_at DESC LIMIT 1").fetchone()[0]
    # the partial state: the second load's row and its person gone, its event kept
    ws.con.execute("DELETE FROM loads WHERE load_id = ?", [last])
    ws.con.execute("DELETE FROM people WHERE person_id IN (SELECT person_id FROM events "
                   "WHERE load_id = ?)", [last])
    ws.con.execute("CREATE TABLE journeys__new AS SELECT * FROM journeys")
    ws.close()
    db = root / "keymoments.duckdb"
    (root / "keymoments.duckdb.wal").write_bytes(b"")  # (a crash leaves its log)
    shutil.copy(db, root / "before.duckdb")
    ws = km.open(root)
    assert ws.recovered.startswith("1 event(s) and 0 quarantined row(s) of a load that did "
                                   "not finish were taken out")
    assert "journeys__new" in ws.recovered
    assert ws.con.execute("SELECT count(*) FROM events").fetchone()[0] == 1
    report = ws.ingest("orders")
    assert (report.rows_loaded, report.rows_duplicate) == (1, 1)
    assert ws.con.execute("SELECT count(*) FROM people").fetchone()[0] == 2
    assert ws.con.execute("SELECT count(*) FROM events WHERE load_id NOT IN "
                          "(SELECT load_id FROM loads)").fetchone()[0] == 0
    ws.close()
    ws = km.open(root)  # (closed cleanly: nothing to do)
    assert ws.recovered is None
    ws.close()
