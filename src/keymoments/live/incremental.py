"""Incremental processing: new events update only the people they touch.

The journeys, journey events and moments of the affected persons (those of the
new events; identity merges land there too, since a merge always comes with a new
event) are rebuilt by the public engine (:func:`keymoments.pipeline.derive`, over
the events filtered to those persons) and replace the persons' old rows in one
transaction, together with the actions their new state triggers (see
:mod:`keymoments.live.actions`) and the mark that the loads are processed.
Persons that disappeared in a merge lose their rows in the same transaction.

Everything the engine derives is per person, except two global quantities:

* ``as_of`` (the time statuses are judged at; unset, the latest event): the
  affected persons are judged at the current one, the others keep the value they
  were built with. Pin ``journeys.as_of`` (or rebuild) when all statuses must move.
* the default ``stall_after`` (the 90th-percentile duration of the type's completed
  journeys): computed by the engine over its input, so here the values over the
  whole stored ``journeys`` table stand in for it (read at most every
  :data:`P90_EVERY` seconds into a working table the plan joins: the plan does not
  change with them).

With ``journeys.as_of`` and every type's ``stall_after`` set, an incremental
update gives exactly the tables of a full :func:`keymoments.pipeline.build`
(``tests/test_live_incremental.py`` streams events and compares).

The engine's plan is compiled once per configuration, and its six steps are
PREPAREd on the workspace's connection outside any transaction (:func:`warm_up`,
which the service runs when it starts and after every load): planning the
general SQL afresh was most of an update's time. The steps write working tables
``_km_live_*`` of the workspace's database, emptied and refilled by each update
(DuckDB re-plans a prepared statement on every EXECUTE once a table was created
or dropped in a database it reads, and the load makes TEMP tables on every
request). An update that finds the steps not prepared runs the compiled SQL.
"""

from __future__ import annotations

import re
import time
import weakref
from datetime import datetime, timezone
from functools import lru_cache
from typing import TYPE_CHECKING

import pyarrow as pa

import ibis

from ..engine.small import derive_small
from ..moment.fitting import apply_chosen, chosen_weights
from ..pipeline import ENGINE_EVENT_COLUMNS, derive, journey_types, resolve_as_of
from ..sql import ident, literal, member_of, registered, rollback
from ..store.schema import COLUMN_DOCS
from ..valence.cache import text_hash, update_text_scores
from ..valence.text import get_scorer

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["pending_loads", "process_pending", "process_load", "update_persons", "warm_up"]

_DERIVED = ("journey_events", "journeys", "moments")
#: the working tables of an update are tables of the workspace's own database, not
#: TEMP ones: the engine's steps are PREPAREd once per connection (planning them is
#: most of an update's time), and DuckDB re-plans a prepared statement on every
#: EXECUTE once any table of a database it reads was created or dropped, which the
#: load does in TEMP on every request
_PERSONS, _EVENTS, _P90 = "_km_live_persons", "_km_live_events", "_km_live_p90"
_WORKING = {"journey_events": "_km_live_je", "journeys": "_km_live_journeys",
          "moments": "_km_live_moments"}
#: the events' columns an update reads (the engine, the text scores and the action
#: rules): a returning customer's events are spread over the table, so each column
#: read costs a decode of most of it (the identifiers map alone ~30% of the read)
_LIVE_COLUMNS = ", ".join(ident(c) for c in COLUMN_DOCS["events"] if c not in (
    "anchor", "identifiers", "source", "source_file", "source_line", "load_id"))


def pending_loads(ws: Workspace) -> list[str]:
    """Loads of posted events whose persons are not yet updated (oldest first)."""
    from .events import API_SOURCE

    return [r[0] for r in ws.con.execute(
        "SELECT load_id FROM loads WHERE source = ? AND load_id NOT IN "
        "(SELECT load_id FROM live_loads) ORDER BY started_at, load_id", [API_SOURCE]).fetchall()]


def process_pending(ws: Workspace, now: float | None = None) -> dict:
    """Update the persons of every pending load; returns what was done."""
    loads = pending_loads(ws)
    if not loads:
        return {"loads": 0, "persons": 0, "actions": 0}
    persons = [r[0] for r in ws.con.execute(
        "SELECT DISTINCT person_id FROM events WHERE list_contains(?, load_id) "
        "AND person_id IS NOT NULL ORDER BY 1", [loads]).fetchall()]
    out = update_persons(ws, persons, loads)
    return {"loads": len(loads), **out}


#: the stored typical durations, re-read at most this often (seconds): the quantile
#: scans every stored journey, too much for every update
P90_EVERY = 60.0
#: per connection: when its typical durations were last read
_P90_AT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _refresh_typical(ws: Workspace, types) -> None:
    """Refill ``_km_live_p90`` with the typical duration (p90 of the completed
    journeys) of each stored journey type, at most every :data:`P90_EVERY` seconds;
    not read when every type sets its own ``stall_after``."""
    if all(t.stall_after is not None for t in types):
        return
    con, now = ws.con, time.monotonic()
    if now - _P90_AT.get(con, -float("inf")) <= P90_EVERY:
        return
    con.execute(f"DELETE FROM {_P90}")
    con.execute(f"INSERT INTO {_P90} SELECT journey_type, quantile_cont(duration_s, 0.9) "
                "FROM journeys WHERE has_end AND duration_s IS NOT NULL GROUP BY 1")
    _P90_AT[con] = now


#: as_of while planning: replaced in the compiled SQL by the real one, so the engine's
#: plan (seconds to compile) is compiled once per config and reused for every update
_SENTINEL = datetime(1901, 2, 3, 4, 5, 6, 789012, tzinfo=timezone.utc)
_PLANS: dict[tuple, list[tuple[str, str]]] = {}


@lru_cache(maxsize=64)
def _timestamp_sql(ts: datetime) -> str:
    t = ibis.table({"a": "int64"}, name="t")
    sql = ibis.to_sql(t.select(x=ibis.literal(ts, type="timestamp('UTC')")), dialect="duckdb")
    return re.search(r"MAKE_TIMESTAMPTZ\([^)]*\)", sql).group(0)


def _plan_key(ws: Workspace, types, scorer_name: str) -> tuple:
    cfg = ws.config  # only what the engine reads (not the name, sources or actions)
    return (cfg.model_dump_json(include={"valence", "journeys", "outcomes", "moments"}),
            tuple(t.model_dump_json() for t in types), scorer_name)


def _plan(ws: Workspace, types, scorer_name: str) -> list[tuple[str, str]]:
    """The engine's steps as (working table, SQL) over ``_km_live_events``, compiled
    by :func:`keymoments.pipeline.derive` once per (config, journey types, scorer)."""
    key = _plan_key(ws, types, scorer_name)
    if key in _PLANS:
        return _PLANS[key]
    from ..engine import backend

    _create_inputs(ws.con)
    b = backend(ws)  # the Ibis tables (each a catalog lookup): only when compiling
    texts = b.table("text_scores")
    texts = texts.filter(texts.scorer == scorer_name)
    events = b.table(_EVENTS)
    steps: list[tuple[str, str]] = []

    def materialize(name: str, expr):
        name = "_km_live_" + name.removeprefix("_km_")
        sql = ibis.to_sql(expr, dialect="duckdb")
        steps.append((name, sql))
        ws.con.execute(f"CREATE OR REPLACE TABLE {ident(name)} AS {sql}")
        return b.table(name)

    derive(events, ws.config, types, _SENTINEL, texts, materialize, typical=b.table(_P90))
    if not all(_timestamp_sql(_SENTINEL) in sql or "MAKE_TIMESTAMPTZ" not in sql
               for _, sql in steps):  # pragma: no cover - guards the substitution
        raise RuntimeError("the engine's plan does not show as_of as expected")
    if {*_WORKING.values()} - {name for name, _ in steps}:  # pragma: no cover
        raise RuntimeError("the engine's plan does not make the tables an update writes")
    if len(_PLANS) > 8:
        _PLANS.clear()
    _PLANS[key] = steps
    return steps


def _create_inputs(con) -> None:
    _P90_AT.pop(con, None)
    con.execute(f"CREATE OR REPLACE TABLE {_P90} (journey_type VARCHAR, p90 DOUBLE)")
    con.execute(f"CREATE OR REPLACE TABLE {_PERSONS} (person_id VARCHAR)")
    con.execute(f"CREATE OR REPLACE TABLE {_EVENTS} AS SELECT {_LIVE_COLUMNS} "
                "FROM events WHERE false")


def _create_tables(con, steps, inputs: bool = True) -> None:
    if inputs:
        _create_inputs(con)
    for table, sql in steps:  # (each step reads the tables made before it)
        con.execute(f"CREATE OR REPLACE TABLE {ident(table)} AS SELECT * FROM ({sql}) LIMIT 0")


#: per connection: the plan whose steps it has prepared
_PREPARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: optimisers off while preparing: their rewrites depend on the data at PREPARE time,
#: and DuckDB (1.5) reuses them on later EXECUTEs, when the data has changed (filters
#: replaced by an empty result, static join ranges: duckdb issues 23704 and 24182)
_DATA_DEPENDENT = ("statistics_propagation", "compressed_materialization")
_AS_OF = "CAST($1 AS TIMESTAMP WITH TIME ZONE)"


def _statement(i: int) -> str:
    return f"_km_live_step{i}"


def _prepare(ws: Workspace, types, scorer_name: str) -> None:
    """Make the plan's working tables and PREPARE its steps on this connection.

    Only outside a transaction: a statement prepared inside one records the
    transaction's own catalog version, which no later transaction has, so DuckDB
    would re-plan it on every EXECUTE."""
    steps = _plan(ws, types, scorer_name)
    con, key = ws.con, _plan_key(ws, types, scorer_name)
    if _PREPARED.get(con) == key:
        return
    _PREPARED.pop(con, None)
    _create_tables(con, steps)
    off = con.execute("SELECT current_setting('disabled_optimizers')").fetchone()[0]
    con.execute("SET disabled_optimizers = " + literal(",".join(
        [o for o in off.split(",") if o.strip()] + list(_DATA_DEPENDENT))))
    try:
        for i, (table, sql) in enumerate(steps):
            sql = sql.replace(_timestamp_sql(_SENTINEL), _AS_OF)
            con.execute(f"PREPARE {_statement(i)} AS INSERT INTO {ident(table)} "
                        f"SELECT * FROM ({sql})")
    finally:
        con.execute(f"SET disabled_optimizers = {literal(off)}")
    _PREPARED[con] = key


def warm_up(ws: Workspace) -> None:
    """Compile the engine's plan (1-2 s the first time) and prepare its steps on the
    workspace's connection, outside any transaction; the service calls it when it
    starts and after every update (then it costs a lookup), so that an update inside
    a load's transaction finds its steps prepared."""
    scorer = get_scorer(ws.config.valence.text_scorer)
    _prepare(ws, journey_types(ws), scorer.name)


def _run_steps(ws: Workspace, types, scorer_name: str, as_of: str, prepared: bool) -> None:
    """Fill the (empty) working tables of the steps: the prepared steps, or, in a
    transaction that finds them not prepared, the compiled SQL itself."""
    con, sentinel = ws.con, _timestamp_sql(_SENTINEL)
    for i, (table, sql) in enumerate(_plan(ws, types, scorer_name)):
        if prepared:
            con.execute(f"EXECUTE {_statement(i)}({as_of})" if sentinel in sql
                        else f"EXECUTE {_statement(i)}")
        else:
            con.execute(f"INSERT INTO {ident(table)} SELECT * FROM "
                        f"({sql.replace(sentinel, as_of)})")


def update_persons(ws: Workspace, persons: list[str], loads: list[str] = ()) -> dict:
    """Rebuild the derived rows of ``persons`` and fire their actions, in one
    transaction that also marks ``loads`` processed."""
    return _update(ws, persons, loads, own_transaction=True)


def process_load(ws: Workspace, load_id: str, merged: bool = True,
                 new_events: str | None = None,
                 new_persons: tuple[str, ...] | None = None) -> dict:
    """Update the persons of ``load_id`` inside the caller's open transaction (the
    load's own, so its events and the actions they cause commit together).
    ``merged``: whether the load re-linked identifiers (its report's
    ``identifiers_relinked``); without a merge no person was merged away, so no
    derived row can be left without its person and none is looked for.
    ``new_events``: the load's table of its new events
    (:data:`keymoments.sources.ingest.NEW_EVENTS`, from ``before_commit``): their
    persons are found from their anchors, not by a scan of every event's load id
    (which zone maps cannot skip: ids share their first 8 bytes).
    ``new_persons``: the load's persons when the load knows each is new (its report's
    ``new_persons``): nothing to look up."""
    if new_persons is not None:
        return _update(ws, sorted(new_persons), [load_id], own_transaction=False,
                       new_in=load_id, orphans=False)
    # per person: are all its events in this load (a new customer)? then its events
    # are read from the load alone (its rows are together, not spread over the
    # table: no scan of every event) and it has no derived rows to delete
    load = (f"SELECT i.person_id, count(*) AS n FROM {ident(new_events)} e JOIN identifiers i "
            "ON i.identifier = e.anchor WHERE i.person_id IS NOT NULL GROUP BY 1"
            if new_events else
            "SELECT person_id, count(*) AS n FROM events "
            f"WHERE load_id = {literal(load_id)} AND person_id IS NOT NULL GROUP BY 1")
    rows = ws.con.execute(
        f"SELECT l.person_id, coalesce(l.n = p.n_events, false) FROM ({load}) l "
        "LEFT JOIN people p USING (person_id) ORDER BY 1").fetchall()
    persons = [r[0] for r in rows]
    only_this_load = all(r[1] for r in rows)  # (no person: nothing to read or delete)
    return _update(ws, persons, [load_id], own_transaction=False,
                   new_in=load_id if only_this_load else None, orphans=merged)


def _persons_events(persons: list[str], new_in: str | None) -> str:
    """The condition on ``events`` that selects the persons' events."""
    # (a load's rows are appended together: reading them skips the rest of the table)
    where = f"load_id = {literal(new_in)} AND " if new_in else ""
    return where + member_of("person_id", persons, f"SELECT person_id FROM {_PERSONS}")


def _derive(ws: Workspace, scorer, types, persons: list[str], new_in: str | None,
            prepared: bool, as_of) -> None:
    """Fill the working tables for ``persons`` with the engine's SQL steps (the
    working tables are empty)."""
    con = ws.con
    # the persons' events, read once (the engine reads its input several times)
    con.execute(f"INSERT INTO {_EVENTS} SELECT {_LIVE_COLUMNS} FROM events WHERE "
                + _persons_events(persons, new_in))
    unscored = con.execute(
        f"SELECT count(*) FROM {_EVENTS} e WHERE text IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM text_scores s WHERE s.text_hash = md5(e.text) AND s.scorer = ?)",
        [scorer.name]).fetchone()[0]
    if unscored:
        update_text_scores(ws, scorer, events=_EVENTS)
    # (as_of: the literal a build uses)
    _run_steps(ws, types, scorer.name, _timestamp_sql(as_of), prepared)


#: the events' columns the engine in Python and the action rules read
_SMALL_COLUMNS = ", ".join(ident(c) for c in [*ENGINE_EVENT_COLUMNS, "attributes"])


def _small_rows(ws: Workspace, persons: list[str], new_in: str | None) -> list[dict] | None:
    """The persons' events as dicts, or None when there are more than
    ``service.python_engine_max_events`` (then the SQL steps derive them)."""
    limit = ws.config.service.python_engine_max_events
    if not limit:
        return None
    cur = ws.con.execute(f"SELECT {_SMALL_COLUMNS} FROM events WHERE "
                         f"{_persons_events(persons, new_in)} LIMIT {int(limit) + 1}")
    rows = cur.fetchall()
    if len(rows) > limit:
        return None
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in rows]


def _text_scores(ws: Workspace, scorer, rows: list[dict]) -> dict[str, tuple]:
    """``md5(text) -> (valence, confidence)`` of the rows' texts, scoring those the
    scorer has not scored yet."""
    con = ws.con
    texts = {text_hash(r["text"]): r for r in rows if r["text"] is not None}
    if not texts:
        return {}

    def stored():
        return {h: (v, c) for h, v, c in con.execute(
            "SELECT text_hash, valence, confidence FROM text_scores WHERE scorer = ? AND "
            "list_contains(?, text_hash)", [scorer.name, sorted(texts)]).fetchall()}

    scores = stored()
    if len(scores) < len(texts):
        todo = [r for h, r in texts.items() if h not in scores]
        with registered(con, "_km_live_texts", pa.table({
            "text": pa.array([r["text"] for r in todo], pa.string()),
            "language": pa.array([r["language"] for r in todo], pa.string())})):
            update_text_scores(ws, scorer, events="_km_live_texts")
        scores = stored()
    return scores


def _write_small(ws: Workspace, rows: list[dict], scorer, types, persons: list[str],
                 new_in: str | None, orphans: bool, as_of) -> int:
    """Derive the persons' rows with the engine in Python
    (:func:`keymoments.engine.small.derive_small`), replace their stored rows and fire
    their actions (rules evaluated on the rows in memory); returns the actions
    written. A few events take milliseconds here, against ~75 ms for the SQL steps
    (planning and building their operators, whatever the rows)."""
    from .actions import fire_actions
    from .rules import candidates_small

    con = ws.con
    typical = dict(con.execute(f"SELECT journey_type, p90 FROM {_P90}").fetchall())
    derived = derive_small(rows, ws.config, types, as_of, _text_scores(ws, scorer, rows),
                           typical, chosen_weights(ws))
    for table in _DERIVED:
        _replace(ws, table, persons, new_in, orphans)
        cols = ", ".join(ident(c) for c in COLUMN_DOCS[table])
        with registered(con, "_km_live_small", derived.arrow(table)):
            con.execute(f"INSERT INTO {ident(table)} ({cols}) SELECT {cols} FROM _km_live_small")
    found = candidates_small(ws.config, rows, derived, as_of)
    if not found:
        return 0
    # (the decisions so far are traced to the persons' journeys just derived)
    with registered(con, "_km_live_small_je", derived.arrow("journey_events")) as je:
        return fire_actions(ws, _PERSONS, {"journey_events": je}, as_of=as_of, found=found)


def _replace(ws: Workspace, table: str, persons: list[str], new_in: str | None,
             orphans: bool) -> None:
    """Delete the persons' rows of a derived table (and, after a merge, the rows of
    persons merged away), before their new rows are inserted."""
    if new_in:  # (new persons have nothing to delete: no scan)
        return
    gone = " OR person_id NOT IN (SELECT person_id FROM people)" if orphans else ""
    mine = member_of("person_id", persons, f"SELECT person_id FROM {_PERSONS}")
    ws.con.execute(f"DELETE FROM {ident(table)} WHERE {mine}{gone}")


def _update(ws: Workspace, persons: list[str], loads, own_transaction: bool,
            new_in: str | None = None, orphans: bool = True) -> dict:
    """``new_in``: a load that holds every event of every person (none has an
    earlier event, so none has derived rows yet, and no person was merged away).
    ``orphans``: also delete the derived rows of persons merged away (a scan of
    each table against ``people``; only needed after a merge)."""
    from .actions import fire_actions

    con = ws.con
    t0 = time.perf_counter()
    scorer = get_scorer(ws.config.valence.text_scorer)
    types = journey_types(ws)
    prepared = _PREPARED.get(con) == _plan_key(ws, types, scorer.name)
    if not prepared and own_transaction:
        _prepare(ws, types, scorer.name)
        prepared = True
    if own_transaction:
        con.execute("BEGIN TRANSACTION")
    try:
        if not prepared:  # (in the caller's transaction: see warm_up)
            _PREPARED.pop(con, None)  # (statements prepared for the tables replaced here)
            _create_inputs(con)
        as_of = resolve_as_of(ws)  # (once: the latest event's time is a scan of a column)
        _refresh_typical(ws, types)
        con.register("_km_live_arrow", pa.table({"person_id": pa.array(persons, pa.string())}))
        con.execute(f"INSERT INTO {_PERSONS} SELECT * FROM _km_live_arrow")
        con.unregister("_km_live_arrow")
        rows = _small_rows(ws, persons, new_in)
        filled = [_PERSONS]
        if rows is not None:
            fired = _write_small(ws, rows, scorer, types, persons, new_in, orphans, as_of)
            t_derive = time.perf_counter() - t0
        else:
            if not prepared:
                _create_tables(con, _plan(ws, types, scorer.name), inputs=False)
            _derive(ws, scorer, types, persons, new_in, prepared, as_of)
            # the chosen remembered-score model scores the rows just derived, before the
            # action rules read them (their payloads carry the score)
            apply_chosen(ws, only_learned=True, table=_WORKING["journeys"])
            t_derive = time.perf_counter() - t0
            for table in _DERIVED:
                _replace(ws, table, persons, new_in, orphans)
                cols = ", ".join(ident(c) for c in COLUMN_DOCS[table])
                casts = ", ".join(f"CAST(s.{ident(c)} AS {t.replace(' NOT NULL', '')})"
                                  for c, (t, _) in COLUMN_DOCS[table].items())
                con.execute(f"INSERT INTO {ident(table)} ({cols}) SELECT {casts} "
                            f"FROM {_WORKING[table]} s")
            # the rules read the rows just derived (exactly these persons'), not the
            # stored tables: a scan of those grows with the workspace (~200 ms at 1M)
            fired = fire_actions(ws, _PERSONS, {"events": _EVENTS, **_WORKING}, as_of=as_of)
            filled += [_EVENTS, *(t for t, _ in _plan(ws, types, scorer.name))]
        for load in loads:
            con.execute(f"INSERT INTO live_loads VALUES ({literal(load)}, now())")
        # emptied in the transaction that filled them: their rows are never written
        for table in filled:
            con.execute(f"DELETE FROM {ident(table)}")
        if own_transaction:
            con.execute("COMMIT")
    except BaseException:
        _P90_AT.pop(con, None)  # (its refill, if any, is rolled back)
        if own_transaction:
            rollback(con)
        # (else the caller's transaction is failed: it rolls back, the working tables'
        # rows included; a statement now would only hide the error with another)
        raise
    return {"persons": len(persons), "actions": fired, "derive_s": t_derive,
            "total_s": time.perf_counter() - t0}
