"""Build the derived tables: events -> scored journey events -> journeys -> moments.

Every step is an Ibis expression (see :mod:`keymoments.engine`); the results are
written once each, beside the stored tables, and replace ``journey_events``,
``journeys`` and ``moments`` in one short transaction, so a reader sees the old
tables or the new ones, never a mix.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import ibis

from .config.analysis import JourneyType
from .config.models import Config, memory_bytes
from .engine import backend
from .journey.assign import assign_journeys
from .journey.summary import channel_vocabulary, summarize_journeys
from .moment.extract import extract_moments, moment_parts
from .moment.fitting import chosen_weights
from .retag import RetagReport, retag
from .sql import ident, literal, rollback
from .store.cluster import forget_order
from .store.schema import COLUMN_DOCS, column_ddl
from .valence.cache import update_text_scores
from .valence.rules import add_window_inputs, effective_rules
from .valence.score import score_events
from .valence.text import get_scorer

if TYPE_CHECKING:
    from .store.workspace import Workspace

__all__ = ["BuildReport", "Derived", "build", "derive", "journey_types", "resolve_as_of"]

#: the events' columns the engine reads
ENGINE_EVENT_COLUMNS = ["event_id", "ts", "person_id", "event_type", "stage", "moment", "channel",
                        "agent", "language", "refs", "rating", "rating_scale", "rating_min",
                        "rating_max", "text", "measures", "expected_ts", "expected_value"]
#: the columns of every event that its journey event repeats: carried through the
#: journey assignment
CARRIED_COLUMNS = ("channel", "moment", "agent", "language")
#: the columns valence is scored from: joined to the assigned events that have one
SCORING_COLUMNS = ("rating", "rating_scale", "rating_min", "rating_max", "text", "measures",
                   "expected_ts", "expected_value")


@dataclass
class BuildReport:
    """What a build produced and how long each step took (``seconds``; with
    ``retry``, the seconds spent before it ran out of memory with its steps in
    memory and ran again with them in the scratch file)."""

    journeys: int
    events: int
    moments: int
    texts_scored: int
    seconds: dict[str, float] = field(default_factory=dict)
    #: the stored events re-tagged first because the taxonomy changed (see
    #: :mod:`keymoments.retag`), or None
    retagged: RetagReport | None = None
    #: what the build noticed that may not be what was meant
    warnings: tuple[str, ...] = ()


@lru_cache(maxsize=1)
def _default_types() -> tuple[JourneyType, ...]:
    from ruamel.yaml import YAML

    text = resources.files("keymoments").joinpath("defaults/journeys.yaml").read_text("utf-8")
    return tuple(JourneyType.model_validate(t) for t in YAML(typ="safe").load(text)["types"])


def journey_types(ws: Workspace) -> list[JourneyType]:
    """The workspace's journey types (its config, else the packaged defaults)."""
    return config_journey_types(ws.config)


def config_journey_types(config: Config) -> list[JourneyType]:
    """The journey types of ``config`` (``journeys.types``, else the packaged defaults)."""
    configured = config.journeys.types
    return list(configured) if configured is not None else list(_default_types())


#: the catalog of the build's scratch database (see :func:`_materialize`)
SCRATCH = "km_scratch"


def scratch_path(ws: Workspace) -> Path:
    """The file of the build's scratch database: beside the workspace's database,
    named after it (``keymoments.duckdb.scratch``); it exists only during a build
    whose steps do not fit in memory (:func:`steps_in_memory`)."""
    db = Path(ws.config.database)
    db = db if db.is_absolute() else ws.root / db
    return db.with_name(db.name + ".scratch")


#: memory allowed per event for keeping a build's intermediate steps in memory (see
#: :func:`steps_in_memory`): 10M events under a 3GB limit keep them there (measured:
#: peak RSS 3,399-3,436 MB); 50M go to the scratch file, as every limited build did
STEP_BYTES_PER_EVENT = 250

def steps_in_memory(ws: Workspace) -> bool:
    """Whether the build keeps its intermediate steps as TEMP tables (in memory)
    rather than in a scratch database file (:func:`scratch_path`): without a
    ``memory_limit``, always; with one, when the events' steps fit in it
    (:data:`STEP_BYTES_PER_EVENT`). In memory they cost no compression and no
    writes: 10M events under a 3GB limit built in 110 s against 141 s with the
    steps in the scratch file (peak RSS 3,399 against 3,356 MB). A build that runs
    out of memory with its steps in memory is run again with them in the file."""
    if not ws.config.memory_limit:
        return True
    # the limit in effect, as DuckDB shows it ('2.7 GiB')
    shown = ws.con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    limit_bytes = memory_bytes(shown)
    n = ws.con.execute("SELECT count(*) FROM events").fetchone()[0]
    return limit_bytes is not None and n * STEP_BYTES_PER_EVENT <= limit_bytes


def _materialize(ws: Workspace, name: str, expr, backend, in_memory: bool) -> object:
    """Store an intermediate step (dropped once the derived table it feeds is
    written) and return a table expression over it: a TEMP table ``in_memory``, else
    a table of a scratch database file attached for the build
    (:func:`scratch_path`, deleted after it). DuckDB keeps TEMP tables in memory,
    and under a tight limit their blocks crowd out the joins that read them (a
    1M-event build under a 150MB limit ran out of memory joining two temporary
    tables, and passed with the same tables stored). Stored in the workspace's own
    file, the steps grew it for good (the freed blocks stay in the file: 3.15 ->
    14.1 GB at 50M events); in their own file they are gone with it.

    Spark: the same role is played by a cached DataFrame (see :func:`derive`)."""
    _create_step(ws, name, ibis.to_sql(expr, dialect="duckdb"), in_memory)
    return backend.table(name) if in_memory else backend.table(name, database=f"{SCRATCH}.main")


def _create_step(ws: Workspace, name: str, select: str, in_memory: bool) -> str:
    """Create the intermediate step ``name`` from the query ``select``: a TEMP table
    ``in_memory``, else a table of the scratch database (attached if need be); return
    its qualified name."""
    if in_memory:
        ws.con.execute(f"CREATE OR REPLACE TEMP TABLE {ident(name)} AS {select}")
        return f"temp.main.{ident(name)}"
    _attach_scratch(ws)
    step = f"{SCRATCH}.main.{ident(name)}"
    ws.con.execute(f"CREATE OR REPLACE TABLE {step} AS {select}")
    return step


def _stage_parts(ws: Workspace, name: str, table: str, selects: list[str],
                 in_memory: bool) -> str:
    """Store the rows of ``selects`` (one statement each, the columns of the derived
    ``table``, each part cast to their documented types as :func:`_write_new` casts
    them) as one intermediate step, as :func:`_materialize` does, and return a query
    of it. A derived table written from several ``INSERT``s costs DuckDB a second
    write: the parts smaller than a row group go through the WAL and the checkpoint
    rewrites the table's partial row groups (1M events: the moments in four
    ``INSERT``s, ~1 s of checkpoint at close); written from one query, its row groups
    are written once, as they fill."""
    cols = _documented(table)
    step = _create_step(ws, name, f"SELECT {cols} FROM ({selects[0]}) s", in_memory)
    for select in selects[1:]:
        ws.con.execute(f"INSERT INTO {step} SELECT {cols} FROM ({select}) s")
    return f"SELECT * FROM {step}"


def _drop_steps(ws: Workspace, names: list[str]) -> None:
    """Drop the intermediate steps ``names``, wherever they are (and empty the list)."""
    scratch = _scratch_attached(ws)
    for name in names:
        ws.con.execute(f"DROP TABLE IF EXISTS temp.main.{ident(name)}")
        if scratch:
            ws.con.execute(f"DROP TABLE IF EXISTS {SCRATCH}.main.{ident(name)}")
    names.clear()


def _scratch_attached(ws: Workspace) -> bool:
    return ws.con.execute("SELECT count(*) FROM duckdb_databases() "
                          f"WHERE database_name = {literal(SCRATCH)}").fetchone()[0] > 0


def _attach_scratch(ws: Workspace) -> None:
    if not _scratch_attached(ws):
        path = scratch_path(ws)
        _remove_scratch_files(path)  # left by a build that was killed
        ws.con.execute(f"ATTACH {literal(str(path))} AS {SCRATCH}")


def _detach_scratch(ws: Workspace) -> None:
    """Detach the scratch database, if attached, and delete its files."""
    if _scratch_attached(ws):
        # drop the steps first: detaching checkpoints the database, which would
        # write them out in full
        for (table,) in ws.con.execute(
                "SELECT table_name FROM duckdb_tables() "
                f"WHERE database_name = {literal(SCRATCH)}").fetchall():
            ws.con.execute(f"DROP TABLE {SCRATCH}.main.{ident(table)}")
        ws.con.execute(f"DETACH {SCRATCH}")
        _remove_scratch_files(scratch_path(ws))


def _remove_scratch_files(path: Path) -> None:
    for f in (path, path.with_name(path.name + ".wal")):
        f.unlink(missing_ok=True)


def resolve_as_of(ws: Workspace):
    """The time statuses are judged at: ``journeys.as_of`` (one without an offset
    in the workspace's ``timezone``; a wall time the clocks repeat is the later one,
    as a source's are) or the latest event."""
    from datetime import datetime, timezone

    if ws.config.journeys.as_of:
        ts = datetime.fromisoformat(ws.config.journeys.as_of)
        if ts.tzinfo is None:
            ts = ws.con.execute("SELECT timezone(?, ?::TIMESTAMP)",
                                [ws.config.timezone, ts]).fetchone()[0]
        return ts.astimezone(timezone.utc)
    latest = ws.con.execute("SELECT max(ts) FROM events").fetchone()[0]
    return latest or datetime.now(timezone.utc)


@dataclass
class Derived:
    """The derived tables as engine expressions (Ibis), before they are written."""

    journey_events: object
    journeys: object
    moments: object


def derive(events, config: Config, types: list[JourneyType], as_of, text_scores,
           materialize: Callable[[str, object], object],
           timings: dict[str, float] | None = None, *, inline_stats: bool = False,
           typical=None, moments_in_parts: bool = False,
           remembered_weights: dict | None = None) -> Derived:
    """The whole engine as Ibis expressions over ``events`` (a table with the
    events' columns), on any backend. ``materialize(name, expr)`` stores an
    intermediate result and returns a table expression over it (DuckDB: a table;
    Spark: a cached DataFrame), so each step's plan stays small.

    ``inline_stats`` reads two small results once the journey events are stored,
    the distinct channels and the typical (p90) journey durations, and writes them
    into the later steps as literals: the channel lists then come from plain
    aggregates and the journeys step joins one table instead of three, so every
    statement spills under a DuckDB ``memory_limit`` (see :func:`build`). Leave it
    off for a plan compiled once and replayed on other data (live updates).
    ``typical`` (a table ``journey_type, p90``): typical durations that replace
    the ones of ``events``' journeys for the types it lists (live updates: those of
    the stored journeys).
    ``remembered_weights``: the learned remembered-score model scoring the journeys
    (:func:`~keymoments.moment.fitting.chosen_weights` of a workspace, or the same
    dict from elsewhere); None: peak-end.
    ``moments_in_parts`` hands ``materialize`` the moments as a list of tables
    (:func:`~keymoments.moment.extract.moment_parts`; the table is their union):
    the DuckDB build stages them one statement each and writes the table from the
    staged step in one (see :func:`_stage_parts`).
    """
    timings = {} if timings is None else timings
    events = events.filter(events.person_id.notnull()).select(*ENGINE_EVENT_COLUMNS)
    t = time.perf_counter()
    assigned = assign_journeys(events, config.journeys, types, carry=CARRIED_COLUMNS)
    narrow = materialize("_km_jn", assigned)
    # the rules' windows read the assigned rows three times: from a stored table
    narrow = add_window_inputs(narrow, effective_rules(config.valence))
    # the scoring inputs, joined only to the events that have one: joining every
    # event's wide row spills under a memory limit (10M events under 3GB: assignment
    # and scoring 35.5 -> 30.8 s, medians of 2; no change at 1M without a limit)
    inputs = events.select("event_id", *SCORING_COLUMNS)
    inputs = inputs.filter(ibis.or_(*[inputs[c].notnull() for c in SCORING_COLUMNS
                                      if c != "measures"], inputs.measures.length() > 0))
    joined = narrow.left_join(inputs, "event_id").drop("event_id_right")
    scored = score_events(joined, config.valence, text_scores)
    je = materialize("_km_je", scored.select(*list(COLUMN_DOCS["journey_events"])))
    timings["journey_events"] = time.perf_counter() - t

    t = time.perf_counter()
    as_of_expr = ibis.literal(as_of, type="timestamp('UTC')")
    person_last = events.group_by("person_id").aggregate(last_ts=events.ts.max())
    rated = events.filter(events.rating.notnull())  # an outcome is a rated event
    rated = rated.select("event_id", "rating", "rating_scale")
    journeys = summarize_journeys(je, config.journeys, types, config.outcomes, config.moments,
                                  as_of_expr, person_last, materialize,
                                  channel_vocabulary(je) if inline_stats else None, rated,
                                  inline_p90=inline_stats, typical=typical,
                                  remembered_weights=remembered_weights)
    journeys = materialize("_km_journeys", journeys)
    timings["journeys"] = time.perf_counter() - t
    t = time.perf_counter()
    if moments_in_parts:
        moments = materialize("_km_moments", moment_parts(je, config.moments, config.outcomes))
    else:
        moments = materialize("_km_moments", extract_moments(je, config.moments, config.outcomes))
    timings["moments"] = time.perf_counter() - t
    return Derived(je, journeys, moments)


_STORED = {"_km_je": "journey_events", "_km_journeys": "journeys", "_km_moments": "moments"}


def build(ws: Workspace, progress: Callable[[int, int], None] | None = None) -> BuildReport:
    """Recompute journeys and moments from the events (DuckDB workspace).

    ``progress(done, total)`` is called while new texts are scored (the slow step
    with a model scorer), after each batch.

    Each derived table is written once, with its documented types, as
    ``<table>__new``; a short transaction then swaps the new tables in (drop the old,
    rename the new), so a reader sees the old tables or the new ones, never a mix.
    """
    cfg = ws.config
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    retagged = retag(ws)
    timings["retag"] = time.perf_counter() - t0
    t = time.perf_counter()
    scorer = get_scorer(cfg.valence.text_scorer)
    scored_texts = update_text_scores(ws, scorer, progress=progress)
    timings["text"] = time.perf_counter() - t

    b = backend(ws)
    texts = b.table("text_scores")
    texts = texts.filter(texts.scorer == scorer.name)
    con = ws.con
    temps: list[str] = []

    def derive_and_swap(in_memory: bool) -> None:
        def materialize(name: str, expr):
            stored = _STORED.get(name)
            if stored is None:  # an intermediate step
                table = _materialize(ws, name, expr, b, in_memory)
                temps.append(name)
                return table
            parts = expr if isinstance(expr, list) else [expr]
            selects = [ibis.to_sql(p, dialect="duckdb") for p in parts]
            if len(selects) > 1:  # staged, then written in one statement
                step = name + "_parts"
                temps.append(step)
                selects = [_stage_parts(ws, step, stored, selects, in_memory)]
            _write_new(ws, stored, selects)
            # the steps stored so far fed this table and nothing after it (see
            # derive): dropped now, their memory goes to the next steps
            _drop_steps(ws, temps)
            return b.table(f"{stored}__new")

        derive(b.table("events"), cfg, journey_types(ws), resolve_as_of(ws), texts, materialize,
               timings, inline_stats=True, moments_in_parts=True,
               remembered_weights=chosen_weights(ws))  # (a learned remembered score stays)
        t = time.perf_counter()
        con.execute("BEGIN TRANSACTION")
        try:
            for table in _STORED.values():
                con.execute(f"DROP TABLE IF EXISTS {ident(table)}")
                con.execute(f"ALTER TABLE {ident(table + '__new')} RENAME TO {ident(table)}")
            forget_order(con, _STORED.values())  # (new tables, in the build's order)
            con.execute("COMMIT")
        except BaseException:
            rollback(con)
            raise
        timings["write"] = time.perf_counter() - t

    def clean_up() -> None:
        _drop_steps(ws, temps)
        _detach_scratch(ws)
        for table in _STORED.values():
            con.execute(f"DROP TABLE IF EXISTS {ident(table + '__new')}")

    in_memory = steps_in_memory(ws)
    try:
        try:
            derive_and_swap(in_memory)
        except duckdb.OutOfMemoryException:
            if not in_memory:
                raise
            clean_up()  # and again, with the steps in the scratch file
            timings["retry"] = time.perf_counter() - t0
            derive_and_swap(False)
    finally:
        clean_up()
    counts = [con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
              for t in ("journeys", "journey_events", "moments")]
    timings["total"] = time.perf_counter() - t0
    return BuildReport(counts[0], counts[1], counts[2], scored_texts, timings, retagged,
                       _after_as_of(ws) + _unknown_event_types(ws))


def _unknown_event_types(ws: Workspace) -> tuple[str, ...]:
    """A warning per rule or journey type of the workspace's config that names event
    types no stored event has (a misspelt name makes a rule that never fires, a type
    that never starts or ends), with the closest stored names."""
    import difflib

    cfg = ws.config
    named: dict[str, list[str]] = {}
    for rule in cfg.valence.rules:
        given = rule.interrupting if "interrupting" in rule.model_fields_set else []
        named[f"valence rule {rule.name!r}"] = [*rule.event_types, *given]
    for t in cfg.journeys.types or []:
        named[f"journey type {t.name!r}"] = [*t.event_types, *t.start, *t.end]
    if not any(named.values()):
        return ()
    stored = {r[0] for r in ws.con.execute("SELECT DISTINCT event_type FROM events").fetchall()}
    if not stored:
        return ()
    out = []
    for what, types in named.items():
        missing = [t for t in dict.fromkeys(types) if t not in stored]
        if missing:
            close = {m: difflib.get_close_matches(m, stored, n=1, cutoff=0.75) for m in missing}
            said = ", ".join(repr(m) + (f" (did you mean {c[0]!r}?)" if c else "")
                             for m, c in close.items())
            out.append(f"{what} names event type(s) no event has: {said}; check the names "
                       "in keymoments.yaml against the stored events' types")
    return tuple(out)


def _after_as_of(ws: Workspace) -> tuple[str, ...]:
    """A warning when events are dated after ``journeys.as_of``: their journeys are
    judged at it (a journey completed after it is completed, its idle time negative)."""
    if not ws.config.journeys.as_of:
        return ()
    as_of = resolve_as_of(ws)
    n = ws.con.execute("SELECT count(*) FROM events WHERE ts > ?", [as_of]).fetchone()[0]
    if not n:
        return ()
    return (f"{n:,} event(s) are dated after journeys.as_of ({as_of:%Y-%m-%d %H:%M %Z}): they "
            "make their journeys as the others do, and those journeys are judged at as_of "
            "with them (a ticket resolved after it is completed, its idle time below 0); "
            "set as_of later, or leave it unset to judge at the latest event",)


def _documented(table: str) -> str:
    """The columns of the derived ``table``, from a subquery ``s``, each cast to its
    documented type (a part's NULL literal or narrower type is no type of the table)."""
    return ", ".join(f"CAST(s.{ident(c)} AS {t.replace(' NOT NULL', '')}) AS {ident(c)}"
                     for c, (t, _) in COLUMN_DOCS[table].items())


def _write_new(ws: Workspace, table: str, selects: list[str]) -> None:
    """Write the rows of ``selects`` (one statement each) as ``<table>__new``, with
    the documented columns, types and storage hints
    (:data:`~keymoments.store.schema.ID_COMPRESSION`)."""
    cols = _documented(table)
    new = ident(table + "__new")
    ws.con.execute(f"CREATE OR REPLACE TABLE {new} ({column_ddl(table, not_null=False)})")
    for select in selects:
        ws.con.execute(f"INSERT INTO {new} SELECT {cols} FROM ({select}) s")
