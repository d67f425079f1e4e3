"""Order the person-keyed tables by person: fast reads of a few persons' rows.

A live update (:mod:`keymoments.live.incremental`) reads the stored events of the
persons it updates and deletes and rewrites their journeys, journey events and
moments. In arrival order a returning customer's events are spread over the whole
table, so reading 20 persons' events out of 1M decodes most of it (~100-200 ms on
this project's 2-core machine); ordered by person they sit together, DuckDB's zone
maps skip the row groups without them, and a dictionary-compressed ``person_id`` is
compared once per distinct value in a segment (~20 ms; see docs/benchmarks.md,
"Service").

:func:`cluster` rewrites a table ordered by person in one transaction (the ordered
copy is written as ``<table>__new``, then swapped in, as a build swaps its tables)
and records in ``km_meta`` how many rows it ordered (key ``ordered_rows:<table>``).
Rows appended later (new events, a live update's rewritten journeys) go to the end
of the table; :func:`unordered_share` estimates their share from that count. A build
replaces the derived tables, unordered, and forgets their keys. The live service
orders what needs it when it starts (``service.cluster_above``); ``keymoments
cluster`` does it on demand.

Ordering helps where a value repeats (a person's rows); for a column of unique values
looked up a few at a time (a request's identifiers) :data:`INDEXES` lists the DuckDB
indexes made with the ordering (:func:`ensure_indexes`).

The order and the indexes are a storage layout of the DuckDB workspace only: results
never depend on them (a Spark run reads the same rows in any order).

>>> import tempfile, keymoments as km
>>> ws = km.init(tempfile.mkdtemp())
>>> _ = ws.con.execute("INSERT INTO people (person_id) VALUES ('p-2'), ('p-1')")
>>> cluster(ws, ["people"])
{'people': 2}
>>> ws.con.execute("SELECT person_id FROM people").fetchall()
[('p-1',), ('p-2',)]
>>> unordered_share(ws, ["people"])
{'people': 0.0}
>>> ws.close()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..sql import ident, literal, rollback
from .schema import COLUMN_DOCS, column_ddl

if TYPE_CHECKING:
    from .workspace import Workspace

__all__ = ["CLUSTERED", "INDEXES", "MIN_ROWS", "cluster", "cluster_stale", "ensure_indexes",
           "unordered_share", "forget_order"]

#: fewer unordered rows than this are read quickly enough as they are
MIN_ROWS = 10_000

#: indexes for looking up a few rows by a column of unique values, where ordering does
#: not help (name: (table, column)). Stitching a request's events looks up its
#: identifiers: on a 10M-event store (~1M identifiers) 77-92 ms per lookup of 20
#: without, 3-8 ms with. Made with the ordering, not by every store: a bulk load of new
#: identifiers keeps the index up to date, ~0.8 s more per 1M events (100k identifiers)
#: in ``bench/ingest.py`` (docs/benchmarks.md, "Service").
INDEXES: dict[str, tuple[str, str]] = {
    "identifiers_identifier": ("identifiers", "identifier"),
}

#: the tables a live update reads or rewrites by person, with their order
CLUSTERED: dict[str, str] = {
    "events": "person_id, ts, event_id",
    "journey_events": "person_id, journey_id, ts, event_id",
    "journeys": "person_id, start_ts, journey_id",
    "moments": "person_id, journey_id, kind",
    "people": "person_id",
}


def _key(table: str) -> str:
    return f"ordered_rows:{table}"


def _unordered_rows(ws: Workspace, tables=None) -> dict[str, tuple[int, int]]:
    """Per table, (rows, rows appended after it was last ordered)."""
    con = ws.con
    out = {}
    for table in tables or CLUSTERED:
        rows = con.execute(f"SELECT count(*) FROM {ident(table)}").fetchone()[0]
        got = con.execute(
            f"SELECT value FROM km_meta WHERE key = {literal(_key(table))}").fetchone()
        out[table] = (rows, max(0, rows - (int(got[0]) if got else 0)))
    return out


def unordered_share(ws: Workspace, tables=None) -> dict[str, float]:
    """Per table, the share of its rows appended after it was last ordered (1.0 for
    a table never ordered; 0.0 for an empty one)."""
    return {t: late / n if n else 0.0 for t, (n, late) in _unordered_rows(ws, tables).items()}


def forget_order(con, tables) -> None:
    """Forget that ``tables`` were ordered (they were replaced)."""
    keys = ", ".join(literal(_key(t)) for t in tables)
    if keys:  # (written out: binding values makes DuckDB import pandas, ~0.8 s)
        con.execute(f"DELETE FROM km_meta WHERE key IN ({keys})")


def ensure_indexes(ws: Workspace) -> list[str]:
    """Create the indexes of :data:`INDEXES` that are missing; returns their names."""
    con = ws.con
    have = {r[0] for r in con.execute("SELECT index_name FROM duckdb_indexes()").fetchall()}
    made = []
    for name, (table, column) in INDEXES.items():
        if name not in have:
            con.execute(f"CREATE INDEX {ident(name)} ON {ident(table)} ({ident(column)})")
            made.append(name)
    return made


def cluster_stale(ws: Workspace, above: float) -> dict[str, int]:
    """Order the tables of :data:`CLUSTERED` of which more than ``above`` of the rows
    (and at least :data:`MIN_ROWS` rows) came after their last ordering, and create
    the missing :data:`INDEXES` (none of this when ``above`` is 1)."""
    if above >= 1.0:
        return {}
    ensure_indexes(ws)
    stale = [t for t, (n, late) in _unordered_rows(ws).items()
             if n and late / n > above and late >= MIN_ROWS]
    return cluster(ws, stale) if stale else {}


def cluster(ws: Workspace, tables=None) -> dict[str, int]:
    """Rewrite ``tables`` (default: :data:`CLUSTERED`) ordered by person, each in its
    own transaction; returns the rows ordered per table."""
    con = ws.con
    done = {}
    for table in tables or CLUSTERED:
        order = CLUSTERED[table]
        new = ident(table + "__new")
        cols = ", ".join(ident(c) for c in COLUMN_DOCS[table])
        # (a build writes its tables without the documented NOT NULLs: kept as found)
        not_null = any(r[2] == "NO" for r in con.execute(f"DESCRIBE {ident(table)}").fetchall())
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(f"CREATE TABLE {new} ({column_ddl(table, not_null=not_null)})")
            con.execute(f"INSERT INTO {new} SELECT {cols} FROM {ident(table)} ORDER BY {order}")
            con.execute(f"DROP TABLE {ident(table)}")
            con.execute(f"ALTER TABLE {new} RENAME TO {ident(table)}")
            rows = con.execute(f"SELECT count(*) FROM {ident(table)}").fetchone()[0]
            forget_order(con, [table])
            con.execute(
                f"INSERT INTO km_meta VALUES ({literal(_key(table))}, {literal(str(rows))})")
            con.execute("COMMIT")
        except BaseException:
            rollback(con)
            raise
        done[table] = rows
    return done
