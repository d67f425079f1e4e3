"""After a crash: the rows of a load that never committed are taken out.

A load writes its events, quarantined rows, people and identifiers and its ``loads``
row in one transaction. DuckDB 1.5 replaying its write-ahead log after a process was
killed during that ``COMMIT`` can restore some of the transaction's tables and not
others (reproduced with DuckDB alone; duckdb/duckdb#25931): events without their
load, whose persons have no ``people`` row, and which a second load skips as
duplicates, so the damage would stay. When a workspace opens after a crash (its
log was left behind), rows whose load has no ``loads`` row are deleted: the store is
as before that load, and running the load again loads them whole. A build's scratch
tables (``journey_events__new``...) left by a killed build are dropped too.
"""

from __future__ import annotations

import duckdb

from ..sql import ident, rollback

__all__ = ["drop_unfinished_loads"]

_UNFINISHED = "load_id NOT IN (SELECT load_id FROM loads)"


def drop_unfinished_loads(con: duckdb.DuckDBPyConnection) -> str | None:
    """Delete the events and quarantined rows of loads that did not commit and drop
    scratch tables a killed build left; returns what was done (None: nothing)."""
    events, quarantined = con.execute(
        f"SELECT (SELECT count(*) FROM events WHERE {_UNFINISHED}), "
        f"(SELECT count(*) FROM quarantine WHERE {_UNFINISHED})").fetchone()
    scratch = [r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = 'main' AND table_name LIKE '%\\_\\_new' ESCAPE '\\'").fetchall()]
    if not (events or quarantined or scratch):
        return None
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"DELETE FROM events WHERE {_UNFINISHED}")
        con.execute(f"DELETE FROM quarantine WHERE {_UNFINISHED}")
        for table in scratch:
            con.execute(f"DROP TABLE {ident(table)}")
        con.execute("COMMIT")
    except BaseException:
        rollback(con)
        raise
    done = []
    if events or quarantined:
        done.append(f"{events:,} event(s) and {quarantined:,} quarantined row(s) of a load "
                    "that did not finish were taken out (the process stopped while it "
                    "committed): run that ingest again to load them")
    if scratch:
        done.append(f"the scratch tables of a build that did not finish were dropped "
                    f"({', '.join(scratch)})")
    return "; ".join(done)
