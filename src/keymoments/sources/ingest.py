"""Load one source into the workspace: read, map, validate, deduplicate, stitch
identities, all in a single transaction.

Accounting is per source row (record): every row read is exactly one of

* **loaded**: it produced at least one new event, or (a source with a ``key``) it
  changed its stored events: counted also as **updated**;
* **quarantined**: it failed validation (or could not be read); it is kept in the
  ``quarantine`` table with file, line, field, value, reason and the raw row;
* **duplicate**: all its events were already stored as they are, or repeat an
  earlier row (a source with a ``key``: a later row of this load has its key).

so ``read == loaded + quarantined + duplicate`` always holds. A failure or a kill
before the commit leaves the store as it was; loading the same file again
changes nothing, because event ids are stable.

A source with a ``key`` of columns (not ``_line``) loads as a merge on it: its
events' ids derive from the key (the same for every version of a row; a key must
identify a record: for a status log, the status's time is part of it), so a row
edited in its file since it was
loaded (a score corrected, a time changed) finds its stored events, and its new
version replaces them in the load's transaction (same ids; compared on every
mapped column, not on file, line or load). The row's stored events it no longer
gives (a timestamp column emptied) are deleted, and the identities are redone as if
the new version had been loaded instead. An event type read from a column is part
of the id: a row whose type changed (a ticket's status) adds an event of the new
type and keeps the old one, as a status log does. Rows of one load with the same
key load as successive loads would: the last by file, then line (daily files whose
names sort by date: the newest), whose version is stored. Without a
``key``, an event's id is its content, so an edited row is a new event beside the
old one.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import duckdb
import pyarrow as pa
from pydantic import BaseModel

from ..config.models import FieldSpec, JoinSpec, SourceSpec
from ..config.loader import CONFIG_FILE, key_line
from ..errors import ConfigError, NotFoundError, SourceError
from ..people.identity import normalise_phone, stitch
from ..retag import current_fingerprint, gives_stage, mark_tagged, retag
from ..sql import few_values, ident, literal, member_of, rollback
from ..store.schema import quarantine_loaded_since
from ..taxonomy import resolve_taxonomy
from .mapping import (KEY_COLUMN, LATEST_EVENT_ID_SCHEME, PHONE_TABLE, compile_source,
                      keyed_event_id, phone_text_expressions)
from .readers import (FILE_COLUMN, LINE_COLUMN, Progress, Staged, expand_paths, stage_file,
                      stage_records, unreadable_parquet, wrapped_error)

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["LoadReport", "NEW_EVENTS", "ingest_source", "event_id_scheme", "mapping_fingerprint"]

SCHEME_KEY = "event_id_scheme"  # in km_meta
#: km_meta key prefix: ``mapping:<source>`` -> the fingerprint of the source's mapping
#: at its last load (see :func:`mapping_fingerprint`)
MAPPING_KEY = "mapping:"
#: the temporary table of a load's new events (see ``before_commit``)
NEW_EVENTS = "_km_new_events"

_EVENT_COLUMNS = (
    "event_id", "ts", "person_id", "anchor", "identifiers", "channel", "event_type", "stage",
    "moment", "refs", "agent", "language", "rating", "rating_scale", "rating_min", "rating_max",
    "text", "measures", "expected_ts", "expected_value", "expectation_kind", "attributes",
    "source", "source_file", "source_line", "load_id",
)


@dataclass(frozen=True)
class LoadReport:
    """What a load did; ``rows_read == rows_loaded + rows_quarantined + rows_duplicate``."""

    source: str
    load_id: str
    files: tuple[str, ...]
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    rows_duplicate: int
    events_loaded: int
    identifiers_relinked: int
    seconds: float
    #: the persons of the new events when every one of them is new (all their
    #: identifiers were): a live update then looks nothing up (set by the Python load
    #: of a small posted batch; None: not known)
    new_persons: tuple[str, ...] | None = field(default=None, repr=False, compare=False)
    #: what may be wrong without stopping the load: a mapped field that no record of a
    #: JSON lines or XES file has (a typo there is not an error: a record may leave
    #: out an empty field, so a column may be missing from a whole file); a map none of
    #: whose keys is a value; a join side file with rows that could not be read (they
    #: are in the quarantine, not in these counts, which are the source file's rows) or
    #: with keys whose rows differ
    warnings: tuple[str, ...] = ()
    #: of ``rows_loaded``, the rows of a source with a ``key`` that were already
    #: stored and changed in the file: their new version replaced the stored events
    #: (see the module doc)
    rows_updated: int = 0

    def as_dict(self) -> dict:
        """Plain dictionary (for JSON)."""
        out = asdict(self)
        out.pop("new_persons")
        return out


def record_load(con, report: LoadReport) -> None:
    """Write the ``loads`` row of ``report`` (inside the load's transaction)."""
    con.execute(
        "INSERT INTO loads (load_id, source, files, started_at, finished_at, rows_read, "
        "rows_loaded, rows_quarantined, rows_duplicate, events_loaded, rows_updated) "
        "VALUES (?, ?, ?, to_timestamp(?), now(), ?, ?, ?, ?, ?, ?)",
        [report.load_id, report.source, list(report.files), time.time() - report.seconds,
         report.rows_read, report.rows_loaded, report.rows_quarantined,
         report.rows_duplicate, report.events_loaded, report.rows_updated],
    )


def _fault(point: str) -> None:
    """Fault injection for crash tests: ``KEYMOMENTS_FAULT=<point>:<seconds>`` sleeps
    there (so a test can kill the process mid-load)."""
    spec = os.environ.get("KEYMOMENTS_FAULT", "")
    if spec.startswith(point + ":"):
        print(f"keymoments-fault: {point}", file=sys.stderr, flush=True)  # the test waits for it
        time.sleep(float(spec.split(":", 1)[1]))


def ingest_source(ws: Workspace, name: str, progress: Progress | None = None,
                  before_commit: Callable[[LoadReport], None] | None = None,
                  records: list[dict] | None = None,
                  accept_mapping_change: bool = False) -> LoadReport:
    """Load the source ``name`` of the workspace's config; see the module doc.

    ``records``: rows given in memory instead of the source's file (staged as a JSON
    lines file of them would be; the source's ``path`` names them).

    ``before_commit(report)`` runs inside the load's transaction, after its events
    are written (the live service derives their journeys and actions there, so the
    events and the actions they cause commit together); if it raises, nothing of
    the load is stored. While it runs, the temporary table :data:`NEW_EVENTS` holds
    the events the load wrote (their ``event_id``, ``ts``, ``anchor``...).

    A source's mapping is remembered at each load (:func:`mapping_fingerprint`). When
    it has changed since the source's events were loaded, the load is refused (a
    :class:`~keymoments.errors.ConfigError`): event ids are hashed from the mapped
    values, so rows already loaded would load again as new events (with a ``key``,
    their new mapping would replace their stored events, unless the key or the
    event types changed too, which changes the ids).
    ``accept_mapping_change`` loads anyway and remembers the new mapping."""
    if name not in ws.config.sources:
        import difflib

        close = difflib.get_close_matches(name, list(ws.config.sources), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        known = ", ".join(sorted(ws.config.sources)) or "none yet"
        raise NotFoundError(f"no source {name!r} in keymoments.yaml (sources: {known}){hint}")
    try:
        return _ingest_source(ws, name, progress, before_commit, records, accept_mapping_change)
    except ConfigError as exc:
        if exc.file is not None or not (exc.key or "").startswith("sources."):
            raise
        path = ws.root / CONFIG_FILE
        raise ConfigError(exc.message, file=str(path), line=key_line(path, exc.key),
                          key=exc.key, hint=exc.hint) from None
    except duckdb.Error:
        fault = unreadable_parquet(_parquet_files(ws, name)) if records is None else None
        if fault is not None:
            raise fault from None
        raise


def _parquet_files(ws: Workspace, name: str) -> list[str]:
    """The Parquet files a source reads, its joins' included."""
    spec = ws.config.sources[name]
    found = expand_paths(spec.path, ws.root) if spec.resolved_format() == "parquet" else []
    for join in spec.joins:
        if _join_format(join) == "parquet":
            found += expand_paths(join.path, ws.root)
    return found


def _ingest_source(ws: Workspace, name: str, progress, before_commit, records,
                   accept_mapping_change: bool = False) -> LoadReport:
    started = time.perf_counter()
    spec = ws.config.sources[name]
    con = ws.con
    # (posted events have a mapping of their own, made per batch: not remembered)
    fingerprint = (None if records is not None
                   else _check_mapping(ws, name, spec, accept_mapping_change))
    # stored events first take the current taxonomy's tags (this load's get them), so
    # a keyed row is compared with tags of the same taxonomy
    retagged = retag(ws)
    load_id = f"load-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    if records is not None:
        files = [spec.path]
        staged = stage_records(con, records, "_km_raw", spec.path)
    else:
        files = expand_paths(spec.path, ws.root)
        staged = stage_file(con, files, spec.resolved_format(), spec.csv, "_km_raw", progress)
    drift: tuple[str, ...] = ()
    if records is None:
        before = {r[0] for r in con.execute(
            "SELECT DISTINCT unnest(files) FROM loads WHERE source = ?", [name]).fetchall()}
        drift = _missing_in_a_file(name, spec, staged, before) + _gone_files(before, files)
    if not staged.columns:
        # only empty files (not even a header): nothing to map, and no columns to map
        # from; give the staging table the mapped columns so the load reads 0 rows
        for column in _mapped_columns(spec):
            con.execute(f"ALTER TABLE {ident(staged.table)} ADD COLUMN {ident(column)} VARCHAR")
    table, sides = _apply_joins(ws, name, spec, staged.table)
    types = {r[0]: r[1] for r in con.execute(f"DESCRIBE {ident(table)}").fetchall()}
    _refuse_wrapped(spec, staged, types)
    warnings = drift + ((*_absent_columns(ws, name, spec, types),
                 *_unmatched_maps(ws, name, spec, table, types)) if records is None else ())
    if retagged is not None:
        warnings += (f"the taxonomy changed since the stored events loaded: "
                     f"{retagged.summary()}",)
    for bookkeeping in (LINE_COLUMN, FILE_COLUMN):
        types.pop(bookkeeping, None)
    scheme, scheme_is_new = event_id_scheme(con)
    _stage_phones(ws, spec, name, types, table, scheme)
    sql = compile_source(spec, name, types, table, ws.config.identity,
                         lenient_columns=spec.resolved_format() in ("jsonl", "xes"),
                         event_id_scheme=scheme)
    con.execute(f"CREATE OR REPLACE TEMP TABLE _km_mapped AS {sql}")
    _stage_taxonomy(ws)
    # a keyed source with stored events: its rows are matched with their stored
    # events (none stored, as on a first load: every valid row is new). Not a `_line`
    # key: a line is no record's identity once a line above it is removed (each row
    # after it would replace its predecessor), so such rows are new or duplicates
    keyed = bool(spec.key) and "_line" not in spec.key
    merge = keyed and con.execute(
        f"SELECT EXISTS (SELECT 1 FROM events WHERE source = {literal(name)})").fetchone()[0]
    if merge:
        _stage_slot_types(con, spec, name)
    counts = _classify(con, one_event_per_row=len(spec.event_specs()) == 1,
                       ts_in_id=not spec.key, redact=spec.redact_text,
                       keyed_source=name if merge else None, keyed=keyed,
                       stage_given=gives_stage(spec), fixed_slots=fixed_slots(spec))
    warnings += tuple(w for side in sides for w in side.warnings(con, ws.root))
    warnings += tuple(_key_versions_warning(con, ws.root, spec.key or []))
    warnings += _future_warning(con)
    # the side files' unreadable rows are kept like the source's own (they are no rows
    # of the source: not in its counts, which are about the source's file)
    side_rejects = [r for side in sides for r in side.rejects]
    raw_cols = [c for c in types if c in staged.columns]
    con.execute("BEGIN TRANSACTION")
    try:
        # stitch first, so the new events are written with their person (no UPDATE
        # of what was just written); earlier events of merged persons are re-linked
        if scheme_is_new:
            con.execute("INSERT INTO km_meta VALUES (?, ?)", [SCHEME_KEY, str(scheme)])
        if fingerprint is not None:
            key = literal(MAPPING_KEY + name)
            con.execute(f"DELETE FROM km_meta WHERE key = {key}")
            con.execute(f"INSERT INTO km_meta VALUES ({key}, {literal(fingerprint)})")
        con.execute(f"ALTER TABLE _km_new_events ADD COLUMN source VARCHAR DEFAULT {literal(name)}")
        mark_tagged(con, name, current_fingerprint(ws))  # (the new events' tags)
        if counts.replaces:
            # a keyed row edited in its file: its stored events go, its new ones are
            # written below (same ids), identities as if the new version had loaded
            relinked = _replace_stored(con)
        else:
            relinked, all_new = stitch(con, "_km_new_events")
        events_loaded = _write_events(con, name, load_id)
        _fault("after_events_insert")
        rejected = bool(counts.quarantined or staged.rejects or side_rejects)
        if rejected:  # (else nothing to write)
            _write_quarantine(con, name, load_id, raw_cols, [*staged.rejects, *side_rejects])
        _settle_quarantine(con, name, ["_km_raw", *(side.table for side in sides)], rejected)
        if counts.replaces:
            _refresh_people(con, None, merged=True, persons="_km_people_replaced")
        else:
            _refresh_people(con, load_id if all_new else None, merged=relinked > 0)
        report = LoadReport(
            source=name, load_id=load_id, files=tuple(files),
            rows_read=staged.rows + len(staged.rejects),
            rows_loaded=counts.loaded, rows_quarantined=counts.quarantined + len(staged.rejects),
            rows_duplicate=counts.duplicate, events_loaded=events_loaded,
            identifiers_relinked=relinked, seconds=time.perf_counter() - started,
            warnings=warnings, rows_updated=counts.updated,
        )
        record_load(con, report)
        if before_commit is not None:
            before_commit(report)
        _fault("before_commit")
        con.execute("COMMIT")
    except BaseException:
        rollback(con)
        raise
    finally:
        _drop_temps(con)
    return report


def mapping_fingerprint(spec: SourceSpec, identity: BaseModel) -> str:
    """What a source's events depend on besides its files: its mapping (every key but
    ``path``, so new files of the same export load as before) and the identity rules,
    as a hash. Keys left at their defaults are left out, so a release that adds a
    setting does not change it.

    >>> a = SourceSpec.model_validate({"path": "a.csv", "identifiers": {"customer_id": "cid"},
    ...                                "event_type": "kind", "ts": "at"})
    >>> b = a.model_copy(update={"path": "2025/*.csv"})
    >>> c = SourceSpec.model_validate({"path": "a.csv", "identifiers": {"customer_id": "cid"},
    ...                                "event_type": "kind", "ts": {"column": "at"},
    ...                                "agent": "clerk"})
    >>> from keymoments.config.models import IdentityConfig
    >>> fp = lambda s: mapping_fingerprint(s, IdentityConfig())
    >>> fp(a) == fp(b), fp(a) == fp(c)
    (True, False)
    """
    data = {"source": _former_defaults(spec.model_dump(mode="json", exclude={"path"},
                                                       exclude_defaults=True)),
            "identity": identity.model_dump(mode="json", exclude_defaults=True)}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]


def _former_defaults(data):
    """A dumped mapping without the values that were defaults when workspaces were made
    (a rating's ``scale: csat5``, required since): the fingerprints stored then stay
    valid.

    >>> _former_defaults({"rating": {"column": "x", "scale": "csat5"},
    ...                   "events": [{"rating": {"column": "y", "scale": "nps10"}}]})
    {'rating': {'column': 'x'}, 'events': [{'rating': {'column': 'y', 'scale': 'nps10'}}]}
    """
    if isinstance(data, list):
        return [_former_defaults(v) for v in data]
    if not isinstance(data, dict):
        return data
    out = {k: _former_defaults(v) for k, v in data.items()}
    rating = out.get("rating")
    if isinstance(rating, dict) and rating.get("scale") == "csat5":
        out["rating"] = {k: v for k, v in rating.items() if k != "scale"}
    return out


def _check_mapping(ws: Workspace, name: str, spec: SourceSpec, accept: bool) -> str | None:
    """The fingerprint to remember for this load, or None when it is the one stored;
    refuses a changed mapping of a source that has events (see :func:`ingest_source`)."""
    con = ws.con
    fingerprint = mapping_fingerprint(spec, ws.config.identity)
    row = con.execute("SELECT value FROM km_meta WHERE key = "
                      f"{literal(MAPPING_KEY + name)}").fetchone()
    if row is not None and row[0] == fingerprint:
        return None
    if row is None or accept:  # (None: a first load, or loads made before this check)
        return fingerprint
    last = con.execute(f"SELECT max(finished_at) FROM loads WHERE source = {literal(name)}"
                       ).fetchone()[0]
    has_events = con.execute(f"SELECT count(*) FROM (SELECT 1 FROM events WHERE source = "
                             f"{literal(name)} LIMIT 1)").fetchone()[0]
    if not has_events:
        return fingerprint
    when = f" (last loaded {last:%Y-%m-%d %H:%M} UTC)" if last is not None else ""
    raise ConfigError(
        f"the mapping of source {name!r} changed since its events were loaded{when}: "
        "event ids are hashed from the mapped values, so rows already loaded would load "
        "again as new events (with a `key`: replace their stored events with the new "
        "mapping's, unless the key or the event types changed, which changes the ids)",
        key=f"sources.{name}",
        hint="restore the mapping; or load every source into a new workspace "
             "('keymoments init NEW', copy keymoments.yaml, 'keymoments -w NEW ingest'); "
             f"or, to keep what is stored and load with the new mapping anyway, run "
             f"'keymoments ingest {name} --accept-mapping-change'")


def _refuse_wrapped(spec: SourceSpec, staged: Staged, types: dict[str, str]) -> None:
    """A JSON file read as one record that holds the records in a member: when no
    identifier column is in the data, that is why (the mapping would only say the
    columns are missing)."""
    if not staged.wrapped or any(s.column is None or s.default is not None or s.column in types
                                 for s in spec.identifiers.values()):
        return
    raise wrapped_error(*next(iter(staged.wrapped.items())))


def _absent_columns(ws: Workspace, name: str, spec: SourceSpec,
                    types: dict[str, str]) -> tuple[str, ...]:
    """Warnings for the mapped columns that no record has, in the formats whose
    records may leave fields out (a CSV or Parquet file without a mapped column is
    a config error instead)."""
    import difflib

    from .mapping import field_naming

    if spec.resolved_format() not in ("jsonl", "xes") or not types:
        return ()
    have = [c for c in types if c not in (FILE_COLUMN, LINE_COLUMN)]
    path = ws.root / CONFIG_FILE
    out = []
    for column in _mapped_columns(spec):
        if column in types:
            continue
        key = f"sources.{name}." + ".".join(str(p) for p in field_naming(spec, column) or ())
        close = difflib.get_close_matches(column, have, n=1)
        mean = f"; did you mean {close[0]!r}?" if close else ""
        out.append(f"{path}:{key_line(path, key)}: {key}: no record has {column!r}, so the "
                   f"field is empty in every event{mean}")
    return tuple(out)


def _fields(spec: object, at: tuple = ()):
    """(key path, field) of every field of a source's mapping (its joins' keys and
    columns are no fields)."""
    if isinstance(spec, FieldSpec):
        yield at, spec
        return
    if isinstance(spec, BaseModel) and not isinstance(spec, JoinSpec):
        items = [(n, getattr(spec, n)) for n in type(spec).model_fields]
    elif isinstance(spec, dict):
        items = list(spec.items())
    elif isinstance(spec, (list, tuple)):
        items = list(enumerate(spec))
    else:
        return
    for key, value in items:
        yield from _fields(value, at + (key,))


def _unmatched_maps(ws: Workspace, name: str, spec: SourceSpec, table: str,
                    types: dict[str, str]) -> tuple[str, ...]:
    """Warnings for the maps none of whose keys is a value of their column (a typo,
    or a different case: keys are matched exactly), which would leave every value
    as it is."""
    path = ws.root / CONFIG_FILE
    out = []
    for at, field_spec in _fields(spec):
        column = field_spec.column
        if not field_spec.map or column not in types:
            continue  # (a missing column is reported by the mapping)
        keys = [str(k) for k in field_spec.map]
        value = f"trim(CAST({ident(column)} AS VARCHAR))"
        exact, folded, present = ws.con.execute(
            f"SELECT count(*) FILTER (WHERE {value} IN ({', '.join(literal(k) for k in keys)})), "
            f"count(*) FILTER (WHERE lower({value}) IN "
            f"({', '.join(literal(k.lower()) for k in keys)})), count({value}) "
            f"FROM {ident(table)}").fetchone()
        if exact or not present:
            continue
        key = f"sources.{name}." + ".".join(str(p) for p in (*at, "map"))
        if folded:
            why = "they match only if case is ignored, and map keys are matched exactly"
        else:
            seen = [r[0] for r in ws.con.execute(
                f"SELECT DISTINCT {value} FROM {ident(table)} WHERE {value} IS NOT NULL "
                "ORDER BY 1 LIMIT 6").fetchall()]
            why = "values there: " + ", ".join(repr(v) for v in seen[:5]) + (
                ", ..." if len(seen) > 5 else "")
        out.append(f"{path}:{key_line(path, key)}: {key}: none of its keys "
                   f"({', '.join(repr(k) for k in keys)}) is a value of column {column!r}, so "
                   f"every value loads as it is; {why}")
    return tuple(out)


def event_id_scheme(con) -> tuple[int, bool]:
    """The workspace's event id scheme (see
    :data:`~keymoments.sources.mapping.EVENT_ID_SCHEMES`) and whether it is still to
    be recorded: the one in ``km_meta``; else scheme 1 for a store that already
    holds events (written before schemes were recorded, so with scheme 1), else the
    latest.

    >>> import duckdb
    >>> from keymoments.store.schema import migrate
    >>> con = duckdb.connect(); _ = migrate(con)
    >>> event_id_scheme(con)
    (4, True)
    >>> _ = con.execute("INSERT INTO km_meta VALUES ('event_id_scheme', '1')")
    >>> event_id_scheme(con)
    (1, False)
    """
    row = con.execute("SELECT value FROM km_meta WHERE key = ?", [SCHEME_KEY]).fetchone()
    if row is not None:
        return int(row[0]), False
    has_events = con.execute("SELECT EXISTS (SELECT 1 FROM events)").fetchone()[0]
    return (1 if has_events else LATEST_EVENT_ID_SCHEME), True


def _missing_in_a_file(name: str, spec: SourceSpec, staged: Staged,
                       loaded_before: set[str]) -> tuple[str, ...]:
    """Mapped columns a file of several lacks while others have them: files are
    combined by name, so its rows have no value there. A column that makes the events
    (a time, the event type, an identifier, the key) is a SourceError (a day's export
    with the delivery time renamed lost its deliveries, on a keyed source the stored
    ones too; a file with another delimiter has one column); any other (a column added
    in later exports, or renamed: the agent) is a warning, for the files
    ``loaded_before`` leaves out (said once, not at every load of the glob)."""
    from .mapping import field_naming

    own = staged.file_columns
    if len(own) < 2:
        return ()
    lowered = {f: {c.lower() for c in cols} for f, cols in own.items() if cols}
    somewhere = set().union(*lowered.values()) if lowered else set()
    mapped = [c for c in _mapped_columns(spec) if c.lower() in somewhere]
    lacking = {f: [c for c in mapped if c.lower() not in cols] for f, cols in lowered.items()}
    lacking = {f: cols for f, cols in lacking.items() if cols}

    def naming(column: str) -> tuple:
        return field_naming(spec, column) or ()

    def makes_events(column: str) -> bool:
        at = naming(column)
        return bool(at) and (at[0] in ("identifiers", "event_type", "ts", "key")
                             or (at[0] == "events" and at[-1] in ("ts", "event_type")))

    warnings = []
    for path, missing in lacking.items():
        header = own[path]
        shown = ", ".join(repr(c) for c in header[:8]) + (
            f" and {len(header) - 8} more" if len(header) > 8 else "")
        fatal = [c for c in missing if makes_events(c)]
        column = (fatal or missing)[0]
        where = ".".join(str(p) for p in naming(column))
        also = [c for c in missing if c != column]
        nor = f" (nor {', '.join(repr(c) for c in also)})" if also else ""
        said = (f"{path} has no column {column!r}{nor}, which the mapping reads (sources.{name}"
                f"{'.' + where if where else ''}) and the source's other files have")
        if fatal:
            delimiter = (" (one column only: is it separated by another delimiter? see "
                         "csv.delimiter)" if len(header) == 1 and spec.resolved_format() == "csv"
                         else "")
            lost = "its rows would lose their events" + (
                ", and the stored events of their keys be replaced" if spec.key else "")
            raise SourceError(f"{said}: {lost}. Its columns: {shown}{delimiter}. Give the "
                              "column its name in that file, then load again; nothing was "
                              "loaded")
        if path in loaded_before:
            continue
        warnings.append(f"{said}: its rows load without it (a column added in later "
                        f"exports needs nothing; if it was renamed, give it its name in that "
                        f"file and load again). Its columns: {shown}")
    return tuple(warnings)


def _future_warning(con) -> tuple[str, ...]:
    """A warning when the load's new events include some dated after tomorrow: the
    analyses judge journeys at the latest event (unless ``journeys.as_of`` is set), so
    one event from a wrong clock or time zone makes every journey look idle."""
    n, latest = con.execute("SELECT count(*), max(ts) FROM _km_new_events "
                            "WHERE ts > now() + INTERVAL 1 DAY").fetchone()
    if not n:
        return ()
    return (f"{n:,} event(s) are dated after today (the latest {latest:%Y-%m-%d %H:%M %Z}): "
            "statuses, idle times and outcomes are judged at the latest event unless "
            "journeys.as_of is set, so every journey would look idle until then; check the "
            "source's time format and zone (or the exporting system's clock), or set "
            "journeys.as_of",)


def _gone_files(loaded_before: set[str], files: list[str]) -> tuple[str, ...]:
    """A warning when files loaded before are no longer there: their events stay."""
    gone = sorted(loaded_before - set(files))
    if not gone:
        return ()
    shown = ", ".join(gone[:3]) + (f" and {len(gone) - 3} more" if len(gone) > 3 else "")
    return (f"{len(gone)} file(s) loaded before are no longer found ({shown}): their events "
            "stay in the workspace (a load adds and updates, never deletes); to drop them, "
            "load the source into a new workspace (keymoments init) from the files there are",)


def _mapped_columns(spec: SourceSpec) -> list[str]:
    """The source columns a mapping names (not those its joins bring in)."""
    found = dict.fromkeys(f.column for _, f in _fields(spec) if f.column is not None)
    for join in spec.joins:
        found.update(dict.fromkeys(join.on))
    found.update(dict.fromkeys(k for k in spec.key or [] if k != "_line"))
    for join in spec.joins:
        for joined in join.column_map().values():
            found.pop(joined, None)
    return list(found)


#: the reason of a join side file's row that could not be read starts so (its file is
#: the side file; the reader's reason follows)
SIDE_REJECT = "join side file row, not read (so no row of the source joins it): "


@dataclass
class _Side:
    """What joining one side file found: its unreadable rows (as quarantine entries)
    and the source's rows whose key is only on those (in the table ``needy``)."""

    source: str
    table: str  # the staged side file
    key: tuple[str, ...]  # the source's key columns
    columns: tuple[str, ...]  # the joined columns
    rejects: list = field(default_factory=list)
    needy: str | None = None  # temp table (file, line, key) or None: not known
    #: the warning about keys whose rows differ in the joined columns, if any
    conflicts: str | None = None

    def warnings(self, con, root: Path) -> list[str]:
        """The load's warnings about this side file (after ``_classify``)."""
        found = [self.conflicts] if self.conflicts else []
        return found + self._unread(con, root) if self.rejects else found

    def _unread(self, con, root: Path) -> list[str]:
        files = sorted({r.file for r in self.rejects})
        where = ", ".join(relative(f, root) for f in files)
        lines = _some_lines([r.line for r in self.rejects])
        on = " and ".join(self.key)
        head = (f"{len(self.rejects):,} row(s) of {where} (joined to source {self.source!r} on "
                f"{on}) could not be read (line {lines}) and are in the quarantine "
                "('keymoments quarantine' says why)")
        fix = f"; fix those lines of {where} and load again"
        joined = ", ".join(repr(c) for c in self.columns)
        if self.needy is None:
            return [f"{head}; the source's rows whose {on} is only on "
                    f"those lines found no row to join, so their {joined} are empty{fix}"]
        rows = con.execute(f"""
            SELECT n.file, n.line, n.key, r.status = 'quarantined' AS q
            FROM {ident(self.needy)} n
            LEFT JOIN _km_rows r ON r.{FILE_COLUMN} = n.file AND r.{LINE_COLUMN} = n.line
            ORDER BY n.file, n.line""").fetchall()
        if not rows:
            return [f"{head}; no row of the source has their {on}, so none needed them"]
        quarantined = [r for r in rows if r[3]]
        other = len(rows) - len(quarantined)
        main = sorted({relative(r[0], root) for r in rows})
        keys = sorted({r[2] for r in rows})
        shown = ", ".join(repr(k) for k in keys[:3]) + (", ..." if len(keys) > 3 else "")
        q_lines = _some_lines([r[1] for r in quarantined])
        outcome = [f"{len(quarantined):,} quarantined (line {q_lines} of {', '.join(main)}: "
                   f"their reason names what the empty {joined} left missing)"
                   if quarantined else "",
                   f"{other:,} loaded (or already stored) without them" if other else ""]
        return [f"{head}; {len(rows):,} row(s) of the source needed them ({on} {shown}) and "
                f"found no row to join, so their {joined} are empty: "
                f"{'; '.join(o for o in outcome if o)}{fix}"]


def _some_lines(lines: list[int], most: int = 5) -> str:
    """Up to ``most`` line numbers, in order.

    >>> _some_lines([9, 3, 4]), _some_lines(list(range(1, 9)))
    ('3, 4, 9', '1, 2, 3, 4, 5, ... (8 in all)')
    """
    ordered = sorted(set(lines))
    more = f", ... ({len(ordered):,} in all)" if len(ordered) > most else ""
    return ", ".join(str(n) for n in ordered[:most]) + more


def _apply_joins(ws: Workspace, name: str, spec: SourceSpec,
                 table: str) -> tuple[str, list[_Side]]:
    """Left-join each side table (first row per key wins); returns the joined view and
    what each join found (see :class:`_Side`)."""
    con = ws.con
    current = table
    sides = []
    for i, join in enumerate(spec.joins):
        side = f"_km_side_{i}"
        files = expand_paths(join.path, ws.root)
        staged = stage_file(con, files, _join_format(join), join.csv, side)
        _check_join_columns(con, join, side, current, f"sources.{name}.joins.{i}")
        found = _Side(name, side, tuple(join.on), tuple(join.column_map().values()))
        found.rejects = [replace(r, reason=SIDE_REJECT + r.reason) for r in staged.rejects]
        sides.append(found)
        keys = [ident(r) for r in join.on.values()]
        picked = ", ".join(f"{ident(src)} AS {ident(dst)}" for src, dst in join.column_map().items())
        cond = " AND ".join(f"j.{ident(left)} = s.{ident(right)}" for left, right in join.on.items())
        if staged.rejects:
            found.needy = _needy_rows(con, join, staged, current, cond, f"_km_side_needy_{i}")
        found.conflicts = _conflicts(con, join, side, name, ws.root)
        dedup = f"_km_side_first_{i}"
        # (the files of a glob in their sorted order: a key's first row is the same at
        # every load)
        con.execute(f"""
            CREATE OR REPLACE TEMP VIEW {dedup} AS
            SELECT * FROM {ident(side)}
            QUALIFY row_number() OVER (PARTITION BY {', '.join(keys)}
                                       ORDER BY {FILE_COLUMN}, {LINE_COLUMN}) = 1
        """)
        joined = f"_km_joined_{i}"
        sel = ", ".join(f"s.{ident(dst)}" for dst in join.column_map().values())
        con.execute(f"""
            CREATE OR REPLACE TEMP VIEW {joined} AS
            SELECT j.*, {sel} FROM {ident(current)} j
            LEFT JOIN (SELECT {', '.join(keys)}, {picked} FROM {dedup}) s ON {cond}
        """)
        current = joined
    return current, sides


def _conflicts(con, join: JoinSpec, side: str, name: str, root: Path) -> str | None:
    """The warning for the keys of a side file with rows that differ in the joined
    columns (the first row wins: the others are left out silently), or None. Rows
    that repeat the same values are no conflict."""
    keys = [ident(c) for c in join.on.values()]
    cols = list(join.column_map())
    values = "CAST(to_json(struct_pack(" + ", ".join(
        f"{ident(c)} := {ident(c)}" for c in cols) + ")) AS VARCHAR)"
    has_key = " AND ".join(f"{k} IS NOT NULL" for k in keys)
    found = con.execute(f"""
        SELECT count(*) OVER (), {', '.join(keys)} FROM {ident(side)} WHERE {has_key}
        GROUP BY ALL HAVING count(DISTINCT {values}) > 1
        ORDER BY min({FILE_COLUMN}), min({LINE_COLUMN}) LIMIT 1""").fetchone()
    if found is None:
        return None
    n_keys, key = found[0], found[1:]
    match = " AND ".join(f"{k} = ?" for k in keys)
    rows = con.execute(f"""
        SELECT {FILE_COLUMN}, {LINE_COLUMN}, {', '.join(ident(c) for c in cols)}
        FROM {ident(side)} WHERE {match} ORDER BY {FILE_COLUMN}, {LINE_COLUMN} LIMIT 4""",
        list(key)).fetchall()
    several = len({r[0] for r in rows}) > 1

    def where(row) -> str:
        return f"{relative(row[0], root)} line {row[1]}" if several else f"line {row[1]}"

    def at(row) -> str:
        return where(row) + ": " + ", ".join(f"{c} {v!r}" for c, v in zip(cols, row[2:]))

    files = ", ".join(sorted({relative(r[0], root) for r in rows}))
    key_text = ", ".join(f"{c} {v!r}" for c, v in zip(join.on.values(), key))
    more = "; ..." if len(rows) > 3 else ""
    return (f"{files} (joined to source {name!r} on {' and '.join(join.on)}) has {n_keys:,} "
            f"key(s) whose rows differ in {', '.join(cols)}, the first {key_text} "
            f"({'; '.join(at(r) for r in rows[:3])}{more}); the join uses each key's first row "
            f"({where(rows[0])} here) and leaves out the others: dedupe the side file so that "
            f"each key has one row (or rows with the same {', '.join(cols)}), then load again")


def _needy_rows(con, join: JoinSpec, staged: Staged, current: str, cond: str,
                table: str) -> str | None:
    """The temp table ``table`` (file, line, key) of the source's rows that find no
    side row and whose key is that of a side row that could not be read (read from
    its raw line, as well as it can be: a CSV side file), or None when the keys of
    those rows cannot be known."""
    if _join_format(join) != "csv" or join.csv.delimiter == "whitespace":
        return None
    from .readers import _split_line

    at = {c: k for k, c in enumerate(staged.columns)}
    if not join.csv.header or any(c not in at for c in join.on.values()):
        return None
    keys = set()
    for reject in staged.rejects:
        values = _split_line(reject.raw, join.csv)
        picked = [values[at[c]] if at[c] < len(values) else None for c in join.on.values()]
        if None not in picked:
            keys.add(tuple(picked))
    if not keys:
        return None
    names = [f"k{k}" for k in range(len(join.on))]
    con.register("_km_side_keys", pa.table({n: pa.array([k[j] for k in sorted(keys)], pa.string())
                                            for j, n in enumerate(names)}))
    try:
        left = [f"CAST(j.{ident(c)} AS VARCHAR)" for c in join.on]
        shown = left[0] if len(left) == 1 else "concat_ws(' / ', " + ", ".join(left) + ")"
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE {ident(table)} AS
            SELECT j.{FILE_COLUMN} AS file, j.{LINE_COLUMN} AS line, {shown} AS key
            FROM {ident(current)} j
            JOIN _km_side_keys k ON {' AND '.join(f'{a} = k.{b}' for a, b in zip(left, names))}
            WHERE NOT EXISTS (SELECT 1 FROM {ident(staged.table)} s WHERE {cond})""")
    finally:
        con.unregister("_km_side_keys")
    return table


def _join_format(join: JoinSpec) -> str:
    return join.format or SourceSpec(path=join.path, identifiers={"x": {"value": "x"}},
                                     event_type={"value": "x"}, ts="x").resolved_format()


def _check_join_columns(con, join: JoinSpec, side: str, current: str, at: str) -> None:
    import difflib

    from ..errors import ConfigError

    def closest(name: str, cols: set[str]) -> str | None:
        close = difflib.get_close_matches(name, sorted(cols), n=1)
        return f"did you mean {close[0]!r}?" if close else None

    side_cols = {r[0] for r in con.execute(f"DESCRIBE {ident(side)}").fetchall()}
    own_cols = {r[0] for r in con.execute(f"DESCRIBE {ident(current)}").fetchall()}
    own_cols -= {FILE_COLUMN, LINE_COLUMN}
    side_cols -= {FILE_COLUMN, LINE_COLUMN}
    for left, right in join.on.items():
        if left not in own_cols:
            raise ConfigError(f"join key {left!r} is not a column of the source",
                              key=f"{at}.on.{left}", hint=closest(left, own_cols))
        if right not in side_cols:
            raise ConfigError(f"join key {right!r} is not a column of {join.path}",
                              key=f"{at}.on.{left}", hint=closest(right, side_cols))
    for src, dst in join.column_map().items():
        if src not in side_cols:
            raise ConfigError(f"no column {src!r} in {join.path}", key=f"{at}.columns",
                              hint=closest(src, side_cols))
        if dst in own_cols:
            raise ConfigError(f"joined column {dst!r} already exists in the source; rename it "
                              f"with columns: {{{src}: new_name}}", key="joins.columns")


def _stage_phones(ws: Workspace, spec: SourceSpec, name: str, types: dict, table: str,
                  scheme: int) -> None:
    """Normalise the distinct phone values once, in Python (libphonenumber)."""
    con = ws.con
    exprs = phone_text_expressions(spec, name, types, ws.config.identity, scheme)
    if not exprs:
        return  # no phone identifiers: the mapping does not read the phone table
    union = " UNION ".join(f"SELECT {e} AS raw FROM {ident(table)}" for e in exprs)
    raws = [r[0] for r in con.execute(
        f"SELECT DISTINCT raw FROM ({union}) WHERE raw IS NOT NULL ORDER BY raw").fetchall()]
    region = ws.config.identity.phone_region
    norms = [normalise_phone(r, region) for r in raws]
    con.register("_km_phone_arrow", pa.table({"raw": pa.array(raws, pa.string()),
                                              "norm": pa.array(norms, pa.string())}))
    con.execute(f"CREATE OR REPLACE TEMP TABLE {PHONE_TABLE} AS SELECT * FROM _km_phone_arrow")
    con.unregister("_km_phone_arrow")


def _stage_taxonomy(ws: Workspace) -> None:
    con = ws.con
    taxonomy = resolve_taxonomy(ws.config.taxonomy)
    types = [r[0] for r in con.execute(
        "SELECT DISTINCT event_type FROM _km_mapped WHERE event_type IS NOT NULL").fetchall()]
    looked = [taxonomy.lookup(t) for t in types]
    con.register("_km_tax_arrow", pa.table({
        "event_type": pa.array(types, pa.string()),
        "stage": pa.array([s for s, _ in looked], pa.string()),
        "moment": pa.array([m for _, m in looked], pa.string()),
    }))
    con.execute("CREATE OR REPLACE TEMP TABLE _km_tax AS SELECT * FROM _km_tax_arrow")
    con.unregister("_km_tax_arrow")


#: up to this many distinct channels, a person's channel list is built from one flag
#: per channel (see :func:`_refresh_people`)
CHANNEL_FLAGS_MAX = 64

#: loads of up to this many new events look for stored duplicates among the stored
#: events of the same times only (see :func:`_classify`)
SMALL_LOAD = 10_000


class _Counts(NamedTuple):
    """The rows of a load by status (see the module doc), before the transaction."""

    loaded: int
    quarantined: int
    duplicate: int
    #: of ``loaded``, the keyed rows whose stored events change
    updated: int = 0
    #: stored events to delete (replaced by a new version, or no longer given by
    #: their row): listed in ``_km_replaced``
    replaces: int = 0


def _redact(con) -> None:
    from ..text.redact import redact_table_column  # not at import: it loads ibis

    redact_table_column(con, "_km_new_events", "text")


def _classify(con, one_event_per_row: bool = False, ts_in_id: bool = False,
              redact: bool = False, keyed_source: str | None = None,
              keyed: bool = False, stage_given: bool = False,
              fixed_slots: tuple[int, ...] = ()) -> _Counts:
    """The new events and the status of the rows, before the transaction (``redact``:
    the new events' text redacted); returns the rows by status. With one event per
    row, a row's status is its event's own: only the quarantined rows are listed (no
    grouping, no join), and a valid row is loaded when its event is new.
    ``keyed_source``: the source has a ``key``; its rows already stored are matched
    with their stored events (:func:`_match_keyed`). ``keyed``: the source has a
    ``key`` that identifies records (not ``_line``): of a key's rows in this load the
    last is loaded."""
    present = "coalesce(_km_present, false)"
    key = f", {KEY_COLUMN}" if keyed_source else ""
    if one_event_per_row:
        rows = f"""
            SELECT {FILE_COLUMN}, {LINE_COLUMN}, _km_err_field AS field, _km_err_value AS value,
                   _km_err_reason AS reason, CAST({present} AS BIGINT) AS n_present,
                   NULL::VARCHAR AS status{key}
            FROM _km_mapped WHERE _km_err_reason IS NOT NULL OR NOT {present}"""
    else:
        rows = f"""
            SELECT {FILE_COLUMN}, {LINE_COLUMN},
                   arg_min(_km_err_field, _km_slot) FILTER (WHERE _km_err_reason IS NOT NULL) AS field,
                   arg_min(_km_err_value, _km_slot) FILTER (WHERE _km_err_reason IS NOT NULL) AS value,
                   arg_min(_km_err_reason, _km_slot) FILTER (WHERE _km_err_reason IS NOT NULL) AS reason,
                   count(*) FILTER (WHERE _km_present) AS n_present,
                   NULL::VARCHAR AS status{key}
            FROM _km_mapped GROUP BY ALL"""
    con.execute(f"CREATE OR REPLACE TEMP TABLE _km_rows AS {rows}")
    con.execute("""
        UPDATE _km_rows SET reason = 'no event: every timestamp column of this row is empty',
                            field = 'ts'
        WHERE reason IS NULL AND n_present = 0
    """)
    if one_event_per_row:
        # the mapped rows less the quarantined ones are the new events: no copy
        n_rows = con.execute("SELECT count(*) FROM _km_mapped").fetchone()[0]
        con.execute(f"DELETE FROM _km_mapped WHERE _km_err_reason IS NOT NULL OR NOT {present}")
        con.execute("ALTER TABLE _km_mapped RENAME TO _km_new_events")
    else:
        # a row with an error in any of its events is quarantined whole
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _km_new_events AS
            SELECT m.* FROM _km_mapped m JOIN _km_rows r USING ({FILE_COLUMN}, {LINE_COLUMN})
            WHERE r.reason IS NULL AND m._km_present
        """)
    # an event repeated in the file keeps its first row; found by grouping on the id
    # alone, so only the few repeated rows are sorted. A key's rows keep the last (by
    # file, then line), as a later load's version of a key replaces the stored one:
    # daily files of a glob, the newest last, give each record's newest version
    con.execute("DROP TABLE IF EXISTS _km_key_versions")
    if keyed:
        _stage_key_versions(con)
    order = (f"{FILE_COLUMN} DESC, {LINE_COLUMN} DESC" if keyed
             else f"{FILE_COLUMN}, {LINE_COLUMN}")
    con.execute(f"""
        DELETE FROM _km_new_events n USING (
            SELECT event_id, {FILE_COLUMN}, {LINE_COLUMN}, _km_slot FROM _km_new_events
            WHERE event_id IN (SELECT event_id FROM _km_new_events GROUP BY 1 HAVING count(*) > 1)
            QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY {order}, _km_slot) > 1
        ) d
        WHERE n.event_id = d.event_id AND n.{FILE_COLUMN} = d.{FILE_COLUMN}
          AND n.{LINE_COLUMN} = d.{LINE_COLUMN} AND n._km_slot = d._km_slot
    """)
    if keyed and fixed_slots:
        # as successive loads would: an event of a fixed-type slot that the key's last
        # row no longer gives (its time emptied since) goes with the earlier row
        place = f"struct_pack(f := {FILE_COLUMN}, l := {LINE_COLUMN})"
        con.execute(f"""
            DELETE FROM _km_new_events n USING (
                SELECT {KEY_COLUMN} AS k, max({place}) AS last FROM _km_new_events
                GROUP BY 1 HAVING count(DISTINCT {place}) > 1
            ) r
            WHERE n.{KEY_COLUMN} = r.k AND n._km_slot IN ({", ".join(map(str, fixed_slots))})
              AND struct_pack(f := n.{FILE_COLUMN}, l := n.{LINE_COLUMN}) < r.last
        """)
    if keyed_source is not None:
        if redact:  # (before matching: the stored text is the redacted one)
            _redact(con)
        if one_event_per_row:
            con.execute("UPDATE _km_rows SET status = 'quarantined'")
        else:
            con.execute("UPDATE _km_rows SET status = 'quarantined' WHERE reason IS NOT NULL")
        quarantined = con.execute(
            "SELECT count(*) FROM _km_rows WHERE status = 'quarantined'").fetchone()[0]
        if not one_event_per_row:
            n_rows = con.execute("SELECT count(*) FROM _km_rows").fetchone()[0]
        loaded, updated, replaces = _match_keyed(con, keyed_source, stage_given)
        return _Counts(loaded, quarantined, n_rows - quarantined - loaded, updated, replaces)
    # an event already stored has the same id; with a content id (no ``key``) its time
    # is part of the id, so the same time too: joining on the time as well lets DuckDB
    # skip every row group of other times (a live post of recent events no longer
    # scans every stored id: 41 -> 1 ms on a 1M-event workspace). Only for a small
    # load: for a large one the second key costs more than the row groups it skips
    on_ts = ""
    if ts_in_id and con.execute(
            f"SELECT count(*) <= {SMALL_LOAD} FROM _km_new_events").fetchone()[0]:
        on_ts = " AND e.ts = n.ts"
    con.execute(f"DELETE FROM _km_new_events n USING events e WHERE e.event_id = n.event_id{on_ts}")
    if redact:
        _redact(con)
    if one_event_per_row:
        con.execute("UPDATE _km_rows SET status = 'quarantined'")
        quarantined = con.execute("SELECT count(*) FROM _km_rows").fetchone()[0]
        loaded = con.execute("SELECT count(*) FROM _km_new_events").fetchone()[0]
        return _Counts(loaded, quarantined, n_rows - quarantined - loaded)
    con.execute(f"""
        UPDATE _km_rows SET status = CASE
            WHEN reason IS NOT NULL THEN 'quarantined'
            WHEN EXISTS (SELECT 1 FROM _km_new_events n
                         WHERE n.{FILE_COLUMN} = _km_rows.{FILE_COLUMN}
                           AND n.{LINE_COLUMN} = _km_rows.{LINE_COLUMN}) THEN 'loaded'
            ELSE 'duplicate' END
    """)
    return _Counts(*con.execute("""
        SELECT count(*) FILTER (WHERE status = 'loaded'),
               count(*) FILTER (WHERE status = 'quarantined'),
               count(*) FILTER (WHERE status = 'duplicate')
        FROM _km_rows
    """).fetchone())


#: what tells two versions of a keyed record apart (what a load writes of a row but
#: its place in the file)
_VERSIONED = ("ts", "anchor", "identifiers", "channel", "refs", "agent", "language", "rating",
              "rating_scale", "rating_min", "rating_max", "text", "measures", "expected_ts",
              "expected_value", "expectation_kind", "attributes", "stage")


def _stage_key_versions(con) -> None:
    """``_km_key_versions``: the keys of a keyed source that rows of this load give in
    different versions (a record edited between two daily files: its rows' events
    differ), each with the places of its first and last row (see
    :func:`_key_versions_warning`)."""
    place = f"struct_pack(f := {FILE_COLUMN}, l := {LINE_COLUMN})"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _km_key_versions AS
        WITH rows AS (
            SELECT {KEY_COLUMN} AS key, {place} AS place,
                   bit_xor(hash(_km_slot, event_type, {", ".join(_VERSIONED)})) AS version
            FROM _km_new_events
            WHERE {KEY_COLUMN} IN (SELECT {KEY_COLUMN} FROM _km_new_events GROUP BY 1
                                   HAVING count(DISTINCT {place}) > 1)
            GROUP BY ALL
        )
        SELECT key, min(place) AS first, max(place) AS last FROM rows
        GROUP BY key HAVING count(DISTINCT version) > 1
    """)


def _key_versions_warning(con, root: Path, key_columns: list[str]) -> list[str]:
    """A warning when rows of this load gave a key in different versions and the
    last one loads (after :func:`_classify`: not when it is stored already, so the
    same files loaded again say nothing), naming one such key and its rows."""
    exists = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_catalog = "
                         "'temp' AND table_name = '_km_key_versions'").fetchone()[0]
    if not exists:
        return []
    n, key, first, first_line, last, last_line = con.execute(f"""
        SELECT count(*), min(key), arg_min(first.f, key), arg_min(first.l, key),
               arg_min(last.f, key), arg_min(last.l, key)
        FROM _km_key_versions
        WHERE key IN (SELECT {KEY_COLUMN} FROM _km_new_events)""").fetchone()
    if not n:
        return []
    shown = ", ".join(f"{c}={v!r}" for c, v in zip(key_columns, key.split("\x1f")))
    return [f"{n:,} key(s) are given by more than one row of this load with different "
            f"values; each key's last row (by file, then line) is the version stored, as "
            f"a later load's version of a key replaces the stored one (e.g. {shown}: "
            f"{relative(last, root)} line {last_line} over {relative(first, root)} line "
            f"{first_line}). If such rows are distinct records, add the column that tells "
            "them apart (a time, a line id) to the source's `key`"]


def fixed_slots(spec: SourceSpec) -> tuple[int, ...]:
    """The event slots of a source whose event type the mapping fixes (not read from a
    column).

    >>> spec = SourceSpec.model_validate({"path": "o.csv", "identifiers": {"c": "c"},
    ...     "events": [{"event_type": {"value": "placed"}, "ts": "a"},
    ...                {"event_type": {"column": "status"}, "ts": "b"}]})
    >>> fixed_slots(spec)
    (0,)
    """
    return tuple(i for i, e in enumerate(spec.event_specs()) if e.event_type.column is None)


def _stage_slot_types(con, spec: SourceSpec, name: str) -> None:
    """``_km_slot_types``: the (slot, event type) pairs of this load's mapped rows, the
    ids a keyed row's stored events may have, each with whether the slot's type is
    fixed by the mapping (``fixed``). Before :func:`_classify` (it needs every mapped
    row)."""
    fixed = f"_km_slot IN ({', '.join(map(str, fixed_slots(spec)))})" if fixed_slots(spec) \
        else "false"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _km_slot_types AS
        SELECT DISTINCT _km_slot, event_type, {fixed} AS fixed FROM _km_mapped
        WHERE event_type IS NOT NULL
    """)


#: what an event's stored version is compared on, to tell an edited keyed row from
#: an unchanged one: every column the load writes but the bookkeeping (``source_file``,
#: ``source_line``, ``load_id``) and the person (from identity, redone on a change of
#: the identifiers); ``stage``/``moment`` as written (with the taxonomy's; a stage
#: the mapping gives and a row leaves empty is compared as the stored one, which may be
#: an earlier taxonomy's: see :mod:`keymoments.retag`)
_COMPARED = {
    **{c: f"n.{c}" for c in (
        "ts", "anchor", "identifiers", "channel", "event_type", "refs", "agent", "language",
        "rating", "rating_scale", "rating_min", "rating_max", "text", "measures",
        "expected_ts", "expected_value", "expectation_kind", "attributes")},
    "stage": "coalesce(n.stage, t.stage)",
    "moment": "t.moment",
}
#: of those, the ones identity depends on (first seen, the links and their event)
_IDENTITY_COLUMNS = ("ts", "anchor", "identifiers")


def _match_keyed(con, source: str, stage_given: bool = False) -> tuple[int, int, int]:
    """Match the rows of a keyed source with their stored events; returns the rows
    loaded, of those the rows updated, and how many stored events are to go.

    A row's events are found by its key: their ids are the hashes of the source,
    the row's key, each slot and each event type the slot has in this load
    (``_km_slot_types``). Of those stored: one the row gives unchanged is dropped
    from the new events (the row is a duplicate unless something else of it
    changed); one it gives changed is kept, to replace the stored one; one of a slot
    whose event type the mapping fixes that it no longer gives (its time became
    empty) goes. An event type read from a column is part of what happened: a row
    whose type changed (a ticket's status from opened to closed) gives a new event
    beside the stored one, as a status log's rows under one key do. A key with a
    quarantined row keeps its stored events: bad input loses nothing.

    Leaves ``_km_stored`` (the matched stored events) and ``_km_replaced`` (event
    id, whether identity is to be redone) for :func:`_replace_stored`."""
    src = literal(source)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _km_keyed_rows AS
        SELECT DISTINCT {FILE_COLUMN}, {LINE_COLUMN}, {KEY_COLUMN} FROM _km_new_events
    """)
    candidate = keyed_event_id(src, "t._km_slot", "t.event_type", f"k.{KEY_COLUMN}")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _km_stored AS
        WITH c AS (
            SELECT {candidate} AS event_id, k.{KEY_COLUMN}, t.fixed AS _km_fixed
            FROM (SELECT DISTINCT {KEY_COLUMN} FROM _km_keyed_rows) k, _km_slot_types t
        )
        SELECT c.{KEY_COLUMN}, c._km_fixed, e.* FROM events e JOIN c USING (event_id)
        WHERE e.source = {src}
    """)
    compared = {**_COMPARED, "stage": "coalesce(n.stage, s.stage)"} if stage_given else _COMPARED
    differs = " OR ".join(f"{expr} IS DISTINCT FROM s.{c}" for c, expr in compared.items())
    identity = " OR ".join(f"n.{c} IS DISTINCT FROM s.{c}" for c in _IDENTITY_COLUMNS)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _km_replaced AS
        SELECT n.event_id, ({identity}) AS restitch
        FROM _km_new_events n JOIN _km_stored s USING (event_id)
        LEFT JOIN _km_tax t ON t.event_type = n.event_type
        WHERE {differs}
    """)
    con.execute(f"""
        INSERT INTO _km_replaced
        SELECT s.event_id, true FROM _km_stored s
        WHERE s._km_fixed
          AND NOT EXISTS (SELECT 1 FROM _km_new_events n WHERE n.event_id = s.event_id)
          AND NOT EXISTS (SELECT 1 FROM _km_rows r WHERE r.status = 'quarantined'
                          AND r.{KEY_COLUMN} = s.{KEY_COLUMN})
    """)
    con.execute("""
        DELETE FROM _km_new_events WHERE event_id IN (SELECT event_id FROM _km_stored)
          AND event_id NOT IN (SELECT event_id FROM _km_replaced)
    """)
    # a row is loaded when it writes an event (new, or a new version) or its key loses
    # one; updated when one of its key's stored events is replaced or goes
    return con.execute(f"""
        WITH gone AS (
            SELECT DISTINCT s.{KEY_COLUMN} FROM _km_stored s JOIN _km_replaced r USING (event_id)
            WHERE NOT EXISTS (SELECT 1 FROM _km_new_events n WHERE n.event_id = s.event_id)
        ), writes AS (
            SELECT DISTINCT {FILE_COLUMN}, {LINE_COLUMN} FROM _km_new_events
        ), had AS (
            SELECT DISTINCT {KEY_COLUMN} FROM _km_stored s JOIN _km_replaced r USING (event_id)
        ), rows AS (
            SELECT k.{KEY_COLUMN}, w.{LINE_COLUMN} IS NOT NULL OR g.{KEY_COLUMN} IS NOT NULL
                   AS loaded
            FROM _km_keyed_rows k LEFT JOIN writes w USING ({FILE_COLUMN}, {LINE_COLUMN})
            LEFT JOIN gone g USING ({KEY_COLUMN})
        )
        SELECT count(*) FILTER (WHERE loaded),
               count(*) FILTER (WHERE loaded AND h.{KEY_COLUMN} IS NOT NULL),
               (SELECT count(*) FROM _km_replaced)
        FROM rows LEFT JOIN had h USING ({KEY_COLUMN})
    """).fetchone()


def _replace_stored(con) -> int:
    """Delete the stored events in ``_km_replaced`` and stitch the new events, with
    identity as if the rows' new versions had been loaded instead of the old: where an
    event's time or identifiers changed (or it is gone), the identifiers and links of
    its person are rebuilt from the person's remaining events (a link only the old
    version carried goes, splitting the person if it held it together; first seen
    times and the links' events follow the new times). Returns how many identifiers
    changed person; leaves ``_km_people_replaced``, the persons whose ``people`` rows
    are to be rebuilt. Inside the load's transaction."""
    con.execute("""
        CREATE OR REPLACE TEMP TABLE _km_old_persons AS
        SELECT DISTINCT s.person_id, r.restitch FROM _km_stored s JOIN _km_replaced r
        USING (event_id) WHERE s.person_id IS NOT NULL
    """)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE _km_old_ids AS
        SELECT identifier, person_id FROM identifiers
        WHERE person_id IN (SELECT person_id FROM _km_old_persons WHERE restitch)
    """)
    con.execute("DELETE FROM events WHERE event_id IN (SELECT event_id FROM _km_replaced)")
    old = "SELECT identifier FROM _km_old_ids"
    if con.execute("SELECT count(*) FROM _km_old_ids").fetchone()[0]:
        con.execute(f"DELETE FROM identity_links WHERE a IN ({old}) OR b IN ({old})")
        con.execute(f"DELETE FROM identifiers WHERE identifier IN ({old})")
        # (every event carrying one of them is anchored in the same person)
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _km_restitch AS
            SELECT event_id, ts, source, anchor, identifiers FROM events
            WHERE anchor IN ({old})
        """)
        stitch(con, "_km_restitch")
        # (stitch re-links the events of identifiers that had a person: these had none)
        con.execute(f"""
            UPDATE events SET person_id = i.person_id FROM identifiers i
            WHERE events.anchor = i.identifier AND i.identifier IN ({old})
              AND events.person_id IS DISTINCT FROM i.person_id
        """)
    con.execute("CREATE OR REPLACE TEMP TABLE _km_changed AS "
                "SELECT NULL::VARCHAR AS identifier, false AS relinked WHERE false")
    relinked, _ = stitch(con, "_km_new_events")
    # identifiers that changed person: those re-linked by the new events' stitching,
    # and those of the rebuilt persons whose person now differs from before (counted once)
    relinked += con.execute(f"""
        SELECT count(*) FILTER (WHERE i.person_id IS DISTINCT FROM o.person_id)
               - count(*) FILTER (WHERE c.relinked)
        FROM _km_old_ids o JOIN identifiers i USING (identifier)
        LEFT JOIN _km_changed c USING (identifier)
    """).fetchone()[0]
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _km_people_replaced AS
        SELECT person_id FROM _km_old_persons
        UNION
        SELECT person_id FROM identifiers
        WHERE identifier IN (SELECT identifier FROM _km_touched UNION {old})
          AND person_id IS NOT NULL
    """)
    return relinked


def _write_events(con, source: str, load_id: str) -> int:
    cols = ", ".join(ident(c) for c in _EVENT_COLUMNS)
    con.execute(f"""
        INSERT INTO events ({cols})
        SELECT n.event_id, n.ts, i.person_id, n.anchor, n.identifiers, n.channel, n.event_type,
               coalesce(n.stage, t.stage), t.moment, n.refs, n.agent, n.language, n.rating, n.rating_scale,
               n.rating_min, n.rating_max, n.text, n.measures, n.expected_ts, n.expected_value,
               n.expectation_kind, n.attributes,
               {literal(source)}, n.{FILE_COLUMN}, n.{LINE_COLUMN}, {literal(load_id)}
        FROM _km_new_events n LEFT JOIN identifiers i ON i.identifier = n.anchor
        LEFT JOIN _km_tax t ON t.event_type = n.event_type
    """)
    return con.execute("SELECT count(*) FROM _km_new_events").fetchone()[0]


def _write_quarantine(con, source: str, load_id: str, raw_cols: list[str], rejects) -> None:
    """Store the load's rejected rows: each distinct raw row once per file, line and
    reason (so loading the same file again adds nothing, and another row rejected on
    the line of an entry is an entry of its own)."""
    _stage_quarantine(con, raw_cols, rejects)
    _reopen_quarantine(con, source, load_id)
    con.execute(f"""
        INSERT INTO quarantine
        SELECT md5(concat_ws(chr(31), {literal(source)}, file, CAST(line AS VARCHAR), reason,
                             raw)) AS quarantine_id,
               {literal(load_id)}, {literal(source)}, file, line, field, value, reason, raw, now(),
               NULL
        FROM _km_q q
        WHERE NOT EXISTS (SELECT 1 FROM quarantine x WHERE {_same_entry("x", "q", source)})
    """)


def _stage_quarantine(con, raw_cols: list[str], rejects) -> None:
    """The load's rejected rows (the mapped ones and the reader's) as ``_km_q``."""
    if raw_cols:
        # VARCHAR, not JSON: the reader's rejects below add raw line text to this column
        raw = "CAST(to_json(struct_pack(" + ", ".join(
            f"{ident(c)} := s.{ident(c)}" for c in raw_cols) + ")) AS VARCHAR)"
    else:
        raw = "NULL::VARCHAR"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _km_q AS
        SELECT r.{FILE_COLUMN} AS file, r.{LINE_COLUMN} AS line, r.field, r.value, r.reason,
               {raw} AS raw
        FROM _km_rows r JOIN _km_raw s USING ({FILE_COLUMN}, {LINE_COLUMN})
        WHERE r.status = 'quarantined'
    """)
    if rejects:
        con.register("_km_rejects", pa.table({
            "file": [r.file for r in rejects], "line": pa.array([r.line for r in rejects], pa.int64()),
            "field": pa.array([r.field for r in rejects], pa.string()),
            "value": pa.array([r.value for r in rejects], pa.string()),
            "reason": [r.reason for r in rejects], "raw": [r.raw for r in rejects],
        }))
        con.execute("INSERT INTO _km_q SELECT * FROM _km_rejects")
        con.unregister("_km_rejects")


def _reopen_quarantine(con, source: str, load_id: str) -> None:
    """An entry that had loaded since (its line was fixed and loaded) and that this
    load rejects again (an older version of the file) is open again: it becomes this
    load's. An open entry is left as it is, so loading the same file again changes
    nothing."""
    con.execute(f"""
        UPDATE quarantine SET load_id = {literal(load_id)}, quarantined_at = now()
        WHERE quarantine_id IN (
            SELECT x.quarantine_id FROM quarantine x JOIN _km_q q ON {_same_entry("x", "q", source)}
            WHERE {quarantine_loaded_since("x")})
    """)


def _settle_quarantine(con, source: str, staged: list[str], rejected: bool) -> None:
    """Open entries of ``source`` whose file and line this load read again (in one of
    the ``staged`` tables) without rejecting them are settled: the fixed row was a
    duplicate of a stored event (no event is stored from its line, so
    :func:`~keymoments.store.schema.quarantine_loaded_since` would never close it), or a
    join side file's line now reads. ``rejected``: this load staged its rejects as
    ``_km_q`` (they stay open)."""
    open_entries = (f"q.source = {literal(source)} AND q.file IS NOT NULL "
                    "AND NOT coalesce(q.settled_at > q.quarantined_at, false)")
    if not con.execute(f"SELECT EXISTS (SELECT 1 FROM quarantine q WHERE {open_entries})"
                       ).fetchone()[0]:
        return
    read = " UNION ALL ".join(f"SELECT {FILE_COLUMN} AS file, {LINE_COLUMN} AS line "
                              f"FROM {ident(t)}" for t in staged)
    again = ("AND NOT EXISTS (SELECT 1 FROM _km_q r WHERE r.file = q.file AND r.line = q.line)"
             if rejected else "")
    con.execute(f"""
        UPDATE quarantine q SET settled_at = now()
        WHERE {open_entries}
          AND EXISTS (SELECT 1 FROM ({read}) s WHERE s.file = q.file AND s.line = q.line)
          {again}
    """)


def _same_entry(x: str, q: str, source: str) -> str:
    """SQL: the stored entry ``x`` is the rejected row ``q`` of ``source``: the same raw
    row at the same file and line, for the same reason (entries stored before the raw
    row was part of their id match too)."""
    return (f"{x}.source = {literal(source)} AND {x}.file IS NOT DISTINCT FROM {q}.file "
            f"AND {x}.line IS NOT DISTINCT FROM {q}.line AND {x}.reason = {q}.reason "
            f"AND {x}.raw IS NOT DISTINCT FROM {q}.raw")


def _refresh_people(con, only_load: str | None = None, merged: bool = True,
                    persons: str | None = None) -> None:
    """Rebuild the rows of ``people`` for every person with changed events.

    ``only_load``: the load holds every event of those persons (every identifier of
    its events was new): their events are read from the load's rows (appended
    together, so the rest of the table is skipped) and there is no row to delete.
    ``merged``: identifiers were re-linked, so persons merged away are deleted too
    (without a merge there are none, and the table is not scanned for them).
    ``persons``: a table (``person_id``) of the persons whose identifiers the load
    touched, when the caller knows them (else found from stitching's ``_km_touched``)."""
    if persons is None:
        # _km_touched (from stitch) holds every identifier of the new events, so their
        # anchors too: no semi-join with a row per new event
        con.execute("""
            CREATE OR REPLACE TEMP TABLE _km_people_touched AS
            SELECT DISTINCT i.person_id FROM identifiers i
            WHERE i.identifier IN (SELECT identifier FROM _km_touched)
        """)
    touched = f"SELECT person_id FROM {ident(persons or '_km_people_touched')}"
    if only_load is None:
        gone = (" OR person_id NOT IN (SELECT DISTINCT person_id FROM identifiers "
                "WHERE person_id IS NOT NULL)") if merged else ""
        con.execute(f"DELETE FROM people WHERE person_id IN ({touched}){gone}")
    # the load's events are exactly those of its persons when they are all new: no
    # semi-join of every event with the touched persons (millions on a first load)
    # (a few persons, a live request's, are written out for the events: see member_of)
    which = (f"load_id = {literal(only_load)} AND person_id IS NOT NULL" if only_load else
             member_of("person_id", few_values(con, touched), touched))
    # the channels of those events: up to a few dozen, each person's list is built from
    # one flag per channel, grouping by person only (10M events: 2.8 s against 4.2-5.6 s
    # grouping by person and channel first, see docs/benchmarks.md)
    vocabulary = sorted(r[0] for r in con.execute(
        f"SELECT DISTINCT channel FROM events WHERE ({which}) AND channel IS NOT NULL "
        f"LIMIT {CHANNEL_FLAGS_MAX + 1}").fetchall())
    if len(vocabulary) <= CHANNEL_FLAGS_MAX:
        flags = "".join(f", bool_or(channel = {literal(c)}) AS _c{i}"
                        for i, c in enumerate(vocabulary))
        per_person = f"""ev AS (
            SELECT person_id, count(*) AS n, min(ts) AS first_seen, max(ts) AS last_seen
                   {flags}
            FROM events WHERE {which}
            GROUP BY person_id
        )"""
        # (sorted in Python as list(... ORDER BY channel) sorts: by code point)
        items = ", ".join(f"CASE WHEN _c{i} THEN {literal(c)} END"
                          for i, c in enumerate(vocabulary))
        channels = (f"list_filter([{items}]::VARCHAR[], x -> x IS NOT NULL)" if vocabulary
                    else "[]::VARCHAR[]")
    else:
        # many channels: grouped by person and channel (a few groups per person), then
        # rolled up per person: no list of every event's channel per person, so a large
        # load can spill to disk instead of failing
        per_person = f"""pc AS (
            SELECT person_id, channel, count(*) AS n, min(ts) AS first_seen, max(ts) AS last_seen
            FROM events WHERE {which}
            GROUP BY person_id, channel
        ), ev AS (
            SELECT person_id, sum(n) AS n, min(first_seen) AS first_seen,
                   max(last_seen) AS last_seen,
                   list(channel ORDER BY channel) FILTER (WHERE channel IS NOT NULL) AS channels
            FROM pc GROUP BY person_id
        )"""
        channels = "coalesce(ev.channels, []::VARCHAR[])"
    con.execute(f"""
        INSERT INTO people
        WITH {per_person}, ids AS (
            SELECT person_id, count(*) AS n FROM identifiers
            WHERE person_id IN ({touched}) GROUP BY person_id
        )
        SELECT ev.person_id, coalesce(ids.n, 0), ev.n, ev.first_seen, ev.last_seen, {channels}
        FROM ev LEFT JOIN ids USING (person_id)
    """)


def _drop_temps(con) -> None:
    rows = con.execute(
        "SELECT table_name, table_type FROM information_schema.tables "
        "WHERE table_schema = 'main' AND table_catalog = 'temp' AND table_name LIKE '\\_km\\_%' ESCAPE '\\'"
    ).fetchall()
    for table, kind in rows:
        what = "VIEW" if kind == "VIEW" else "TABLE"
        con.execute(f"DROP {what} IF EXISTS temp.main.{ident(table)}")


def relative(path: str, root: Path) -> str:
    """A path relative to the workspace when inside it (for display)."""
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return path
