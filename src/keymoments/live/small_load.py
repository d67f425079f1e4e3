"""A small batch of posted events loaded in Python, with the rows the SQL load writes.

The general load of posted events (:func:`keymoments.live.events.load_events`, a
load of the built-in ``api`` source by :mod:`keymoments.sources.ingest`) stages the
records, compiles the source mapping to SQL, classifies, stitches and refreshes
people in ~45 statements: ~50 ms however few the events, most of a live cycle once
the engine runs in Python (:mod:`keymoments.engine.small`). For a batch that mapping
would load whole, :func:`load_small` computes the same event rows, identifiers,
links and persons in Python and writes them with a handful of statements, in one
transaction with the same ``before_commit`` hook.

It declines (returns None, and the general load runs) whenever the general load
could do something it does not: a row it would quarantine (an email or phone
identifier it rejects, a non-finite expected value, an event type that cleans to
nothing), a store on the older event id scheme, a non-ASCII value that SQL
lower-cases, or more than ``service.python_load_max_events`` events.
``tests/test_live_small_load.py`` posts the same batches both ways and compares
every table.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pyarrow as pa

from ..config.base import RATING_SCALES
from ..engine.small import duck_str
from ..people.identity import normalise_phone, person_id_for
from ..sql import registered, rollback
from ..retag import current_fingerprint, mark_tagged, retag
from ..taxonomy import resolve_taxonomy
from ..valence.cache import text_hash

if TYPE_CHECKING:
    from ..sources.ingest import LoadReport
    from ..store.workspace import Workspace
    from .events import PostedEvent

__all__ = ["load_small"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: the mapping's email check (RE2's \s is [\t\n\f\r ])
_EMAIL_OK = re.compile(r"^[^@\t\n\f\r ]+@[^@\t\n\f\r ]+\.[^@\t\n\f\r ]+$")
_STRIP_PLUS = re.compile(r"\+[^@]*@")
_TS = pa.timestamp("us", tz="UTC")
_STR_MAP = pa.map_(pa.string(), pa.string())
_US = timedelta(microseconds=1)


class _Declined(Exception):
    """The batch needs the general load."""


def _epoch_us(ts: datetime) -> int:
    return (ts - _EPOCH) // _US


@dataclass
class _Row:
    line: int
    event: dict


def _map(ws: Workspace, events: list[PostedEvent], path: str) -> list[_Row]:
    """Each posted event as the row the mapping of the ``api`` source gives it
    (:func:`keymoments.sources.mapping.compile_source` over the staged records):
    text cleaned (trimmed, null markers), identifiers normalised, maps of the
    present values, the scheme-2 (and 3, 4) content id; raises :class:`_Declined` where the
    mapping would quarantine or the two could differ."""
    from .events import _slot, api_source_spec

    spec = api_source_spec(path, events)
    identity = ws.config.identity
    nulls = set(spec.csv.null_values)
    kinds = list(spec.identifiers)
    keys = {name: sorted(getattr(spec, name)) for name in ("refs", "measures", "attributes")}
    slots = sorted({_slot(e) for e in events})

    def clean(value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip(" \t\r\n")
        return None if value in nulls else value

    def lower(value: str | None) -> str | None:
        if value is not None and not value.isascii():
            raise _Declined  # (DuckDB's and Python's Unicode case maps may differ)
        return None if value is None else value.lower()

    def number(value: float | None) -> float | None:
        text = clean(None if value is None else repr(float(value)))
        if text is None:
            return None
        num = float(text)
        if num != num or num in (float("inf"), float("-inf")):
            raise _Declined  # (quarantined: not a number)
        return num

    rows = []
    for line, e in enumerate(events, start=1):
        scale, kind = _slot(e)
        event_type = clean(e.event_type)
        if event_type is None:
            raise _Declined
        ids: list[tuple[str, str]] = []
        for k in kinds:
            text = clean(e.identifiers.get(k))
            if text is None:
                continue
            how = identity.normalise.get(k, "strip")
            if how == "email":
                if not _EMAIL_OK.match(text):
                    raise _Declined
                value = lower(text)
                if identity.email_strip_plus:
                    value = _STRIP_PLUS.sub("@", value, count=1)
            elif how == "phone":
                value = normalise_phone(text, identity.phone_region)
                if value is None:
                    raise _Declined
            elif how == "lower":
                value = lower(text)
            else:
                value = text
            ids.append((k, value))
        if not ids:
            raise _Declined
        rating = lo = hi = None
        if scale:
            rating = number(e.rating)
            if rating is not None:
                lo, hi = (float(b) for b in RATING_SCALES[scale])
                if not lo <= rating <= hi:
                    raise _Declined
        exp_ts = exp_value = exp_kind = None
        if kind:
            exp_ts = e.expected_ts
            exp_value = number(e.expected_value)
            exp_kind = kind if exp_ts is not None or exp_value is not None else None
        maps = {
            "refs": [(k, v) for k in keys["refs"] if (v := clean(e.refs.get(k))) is not None],
            "measures": [(k, v) for k in keys["measures"]
                         if (v := number(e.measures.get(k))) is not None],
            "attributes": [(k, v) for k in keys["attributes"]
                           if (v := clean(e.attributes.get(k))) is not None],
        }
        stage, language = lower(clean(e.stage)), lower(clean(e.language))
        channel, agent, text = clean(e.channel), clean(e.agent), clean(e.text)
        entries = [f"identifiers.{k}={v}" for k, v in ids]
        entries += [f"refs.{k}={v}" for k, v in maps["refs"]]
        entries += [f"measures.{k}={duck_str(v)}" for k, v in maps["measures"]]
        entries += [f"attributes.{k}={v}" for k, v in maps["attributes"]]
        parts = ["api", event_type, str(_epoch_us(e.ts)), channel or "", agent or "",
                 "" if rating is None else duck_str(rating), text or "",
                 "" if exp_ts is None else str(_epoch_us(exp_ts)),
                 "" if exp_value is None else duck_str(exp_value), language or "", stage or "",
                 "\x1f".join(entries)]
        rows.append(_Row(line, {
            "event_id": text_hash("\x1f".join(parts)), "ts": e.ts,
            "anchor": f"{ids[0][0]}:{ids[0][1]}", "identifiers": ids, "channel": channel,
            "event_type": event_type, "stage": stage, "refs": maps["refs"], "agent": agent,
            "language": language, "rating": rating,
            "rating_scale": scale if rating is not None else None,
            "rating_min": lo, "rating_max": hi, "text": text, "measures": maps["measures"],
            "expected_ts": exp_ts, "expected_value": exp_value, "expectation_kind": exp_kind,
            "attributes": maps["attributes"], "_slot": slots.index((scale, kind)),
        }))
    return rows


def _dedupe(con, rows: list[_Row]) -> list[_Row]:
    """The rows whose event is new: the first of each id in the batch (by line and
    slot), less those already stored (looked for among the stored events of the
    same times, as the general load does for a small load)."""
    first: dict[str, _Row] = {}
    for r in sorted(rows, key=lambda r: (r.line, r.event["_slot"])):
        first.setdefault(r.event["event_id"], r)
    if not first:
        return []
    probe = pa.table({"event_id": list(first),
                      "ts": pa.array([r.event["ts"] for r in first.values()], _TS)})
    with registered(con, "_km_small_ids", probe):
        stored = {r[0] for r in con.execute(
            "SELECT n.event_id FROM _km_small_ids n JOIN events e "
            "ON e.event_id = n.event_id AND e.ts = n.ts").fetchall()}
    return [r for i, r in first.items() if i not in stored]


@dataclass
class _Stitched:
    person: dict[str, str]  # identifier -> person, for every identifier touched
    relinked: int
    all_new: bool
    persons: list[str]  # the persons of the touched identifiers


def _components(nodes: list[str], edges: list[tuple[str, str]]) -> dict[str, str]:
    """Each node's component, named by its smallest node (union-find)."""
    parent = {n: n for n in nodes}

    def root(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for a, b in edges:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {n: root(n) for n in nodes}


def _stitch(con, new: list[dict]) -> _Stitched:
    """:func:`keymoments.people.identity.stitch` for the new events ``new``: the same
    identifiers, links (each pair keeps its earliest event) and persons, the
    earlier events of merged persons re-linked."""
    ids: dict[str, tuple[str, str, datetime]] = {}
    for e in new:
        for kind, value in e["identifiers"]:
            key = f"{kind}:{value}"
            seen = ids.get(key)
            if seen is None or e["ts"] < seen[2]:
                ids[key] = (kind, value, e["ts"])
    stored: dict[str, tuple[str | None, datetime | None]] = {}
    if ids:
        with registered(con, "_km_small_keys", pa.table({"identifier": list(ids)})):
            stored = {i: (p, f) for i, p, f in con.execute(
                "SELECT i.identifier, i.person_id, i.first_seen FROM identifiers i "
                "JOIN _km_small_keys k USING (identifier)").fetchall()}
    all_new = not stored
    # links: per (anchor, identifiers) of events with more than one identifier, its
    # earliest event; each pair keeps its earliest (time, event id)
    groups: dict[tuple, dict] = {}
    for e in new:
        if len(e["identifiers"]) > 1:
            g = groups.setdefault((e["anchor"], tuple(e["identifiers"])), e)
            if (e["ts"], e["event_id"]) < (g["ts"], g["event_id"]):
                groups[(e["anchor"], tuple(e["identifiers"]))] = e
    links: dict[tuple[str, str], tuple[datetime, str]] = {}
    for (anchor, identifiers), e in groups.items():
        for kind, value in identifiers:
            other = f"{kind}:{value}"
            if other == anchor:
                continue
            pair = (min(anchor, other), max(anchor, other))
            if pair not in links or (e["ts"], e["event_id"]) < links[pair]:
                links[pair] = (e["ts"], e["event_id"])
    if links and not all_new:
        pairs = pa.table({"a": [a for a, _ in links], "b": [b for _, b in links]})
        with registered(con, "_km_small_pairs", pairs):
            for a, b, ts, event_id in con.execute(
                    "SELECT l.a, l.b, l.ts, l.event_id FROM identity_links l "
                    "JOIN _km_small_pairs p ON l.a = p.a AND l.b = p.b").fetchall():
                if ts is not None and (ts, event_id) <= links[(a, b)]:
                    del links[(a, b)]  # the stored link is earlier: kept
    seed = set(ids) | {x for pair in links for x in pair}
    old: dict[str, str | None] = {i: stored[i][0] if i in stored else None for i in seed}
    persons = sorted({p for p in old.values() if p is not None})
    if persons:
        with registered(con, "_km_small_persons", pa.table({"person_id": persons})):
            old.update(dict(con.execute(
                "SELECT i.identifier, i.person_id FROM identifiers i "
                "JOIN _km_small_persons p USING (person_id)").fetchall()))
    nodes = sorted(old)
    edges = list(links)
    if not all_new:  # (stored links only join stored identifiers)
        with registered(con, "_km_small_nodes", pa.table({"identifier": nodes})):
            edges += con.execute(
                "SELECT l.a, l.b FROM identity_links l "
                "JOIN _km_small_nodes na ON na.identifier = l.a "
                "JOIN _km_small_nodes nb ON nb.identifier = l.b").fetchall()
    label = _components(nodes, edges)
    person = {n: person_id_for(label[n]) for n in nodes}
    # writes: new identifiers with their person, earlier first sightings, changed
    # persons, re-linked events, the links
    fresh = [i for i in ids if i not in stored]
    if fresh:
        _insert(con, "identifiers", pa.table({
            "identifier": fresh, "kind": [ids[i][0] for i in fresh],
            "value": [ids[i][1] for i in fresh], "person_id": [person[i] for i in fresh],
            "first_seen": pa.array([ids[i][2] for i in fresh], _TS)}))
    earlier = {i for i in ids if i in stored and stored[i][1] is not None
               and ids[i][2] < stored[i][1]}
    fresh_set = set(fresh)
    changed = [n for n in nodes if n not in fresh_set and old[n] != person[n]]
    targets = sorted(set(changed) | earlier)
    if targets:
        moved = set(changed)
        with registered(con, "_km_small_updates", pa.table({
            "identifier": targets,
            "person_id": [person[n] if n in moved else None for n in targets],
            "first_seen": pa.array([ids[n][2] if n in earlier else None for n in targets], _TS)})):
            con.execute("UPDATE identifiers SET person_id = coalesce(u.person_id, "
                        "identifiers.person_id), first_seen = coalesce(u.first_seen, "
                        "identifiers.first_seen) FROM _km_small_updates u "
                        "WHERE identifiers.identifier = u.identifier")
    relinked = [n for n in changed if old[n] is not None]
    if relinked:
        with registered(con, "_km_small_relinked", pa.table({
            "identifier": relinked, "person_id": [person[n] for n in relinked]})):
            con.execute("UPDATE events SET person_id = r.person_id FROM _km_small_relinked r "
                        "WHERE events.anchor = r.identifier")
    if links:
        table = pa.table({"a": [a for a, _ in links], "b": [b for _, b in links],
                          "event_id": [v[1] for v in links.values()],
                          "source": ["api"] * len(links),
                          "ts": pa.array([v[0] for v in links.values()], _TS)})
        if not all_new:
            with registered(con, "_km_small_links", table):
                con.execute("DELETE FROM identity_links l USING _km_small_links n "
                            "WHERE l.a = n.a AND l.b = n.b")
        _insert(con, "identity_links", table)
    return _Stitched(person, len(relinked), all_new, sorted(set(person.values())))


def _insert(con, table: str, data: pa.Table) -> None:
    with registered(con, "_km_small_rows", data):
        con.execute(f"INSERT INTO {table} ({', '.join(data.column_names)}) "
                    f"SELECT * FROM _km_small_rows")


def _new_people(stitched: _Stitched, events: list[dict]) -> pa.Table:
    """The ``people`` rows of persons whose every event and identifier is new (what
    :func:`keymoments.sources.ingest._refresh_people` computes from the events)."""
    ids: dict[str, int] = defaultdict(int)
    for person in stitched.person.values():
        ids[person] += 1
    rows: dict[str, list] = {}
    for e in events:
        p = stitched.person[e["anchor"]]
        row = rows.setdefault(p, [0, e["ts"], e["ts"], set()])
        row[0] += 1
        row[1], row[2] = min(row[1], e["ts"]), max(row[2], e["ts"])
        if e["channel"] is not None:
            row[3].add(e["channel"])
    persons = sorted(rows)
    return pa.table({
        "person_id": persons, "n_identifiers": pa.array([ids[p] for p in persons], pa.int64()),
        "n_events": pa.array([rows[p][0] for p in persons], pa.int64()),
        "first_seen": pa.array([rows[p][1] for p in persons], _TS),
        "last_seen": pa.array([rows[p][2] for p in persons], _TS),
        "channels": pa.array([sorted(rows[p][3]) for p in persons], pa.list_(pa.string()))})


_MAPS = {"identifiers": _STR_MAP, "refs": _STR_MAP, "attributes": _STR_MAP,
         "measures": pa.map_(pa.string(), pa.float64())}
_TYPES = {"ts": _TS, "expected_ts": _TS, "rating": pa.float64(), "rating_min": pa.float64(),
          "rating_max": pa.float64(), "expected_value": pa.float64(), "source_line": pa.int64(),
          **_MAPS}


def load_small(ws: Workspace, events: list[PostedEvent],
               before_commit: Callable[[LoadReport], None] | None = None) -> LoadReport | None:
    """Load ``events`` as :func:`keymoments.live.events.load_events` would (a load of
    the ``api`` source, one transaction, ``before_commit`` inside it with
    :data:`~keymoments.sources.ingest.NEW_EVENTS` naming the new events), or return
    None, having stored nothing, when the batch needs the general load."""
    from ..sources.ingest import (NEW_EVENTS, SCHEME_KEY, _EVENT_COLUMNS, LoadReport,
                                  _refresh_people, event_id_scheme, record_load)
    from ..text.redact import CANDIDATE_PATTERN, redact
    from .events import API_SOURCE

    if not events or len(events) > ws.config.service.python_load_max_events:
        return None
    started = time.perf_counter()
    con = ws.con
    retag(ws)  # (a lookup, unless the taxonomy changed since the last load or build)
    scheme, scheme_is_new = event_id_scheme(con)
    if scheme not in (2, 3, 4):  # (3 and 4 read whole floats and decimals in text
        return None              # columns alike: posted text fields are strings, as 2)
    path = f"posted:{uuid.uuid4().hex}"
    try:
        rows = _map(ws, events, path)
    except _Declined:
        return None
    load_id = f"load-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    new = _dedupe(con, rows)
    taxonomy = resolve_taxonomy(ws.config.taxonomy)
    candidate = re.compile(CANDIDATE_PATTERN)
    for r in new:  # (after the id: it hashes the text as posted)
        text = r.event["text"]
        if text is not None and candidate.search(text):
            r.event["text"] = redact(text)
    registered: list[str] = []
    con.execute("BEGIN TRANSACTION")
    try:
        if scheme_is_new:
            con.execute("INSERT INTO km_meta VALUES (?, ?)", [SCHEME_KEY, str(scheme)])
        mark_tagged(con, API_SOURCE, current_fingerprint(ws))
        stitched = _stitch(con, [r.event for r in new])
        out: dict[str, list] = {c: [] for c in _EVENT_COLUMNS}
        for r in new:
            e = r.event
            stage, moment = taxonomy.lookup(e["event_type"])
            values = {**e, "person_id": stitched.person.get(e["anchor"]),
                      "stage": e["stage"] if e["stage"] is not None else stage,
                      "moment": moment, "source": API_SOURCE, "source_file": path,
                      "source_line": r.line, "load_id": load_id}
            for c in _EVENT_COLUMNS:
                out[c].append(values[c])
        data = pa.table({c: pa.array(v, _TYPES.get(c, pa.string())) for c, v in out.items()})
        if new:
            _insert(con, "events", data)
        if stitched.all_new:  # (their events are this load's: their rows from memory)
            _insert(con, "people", _new_people(stitched, [r.event for r in new]))
        else:
            con.register("_km_small_people", pa.table({"person_id": pa.array(
                stitched.persons, pa.string())}))
            registered.append("_km_small_people")
            _refresh_people(con, None, merged=stitched.relinked > 0, persons="_km_small_people")
        report = LoadReport(
            source=API_SOURCE, load_id=load_id, files=(path,), rows_read=len(events),
            rows_loaded=len(new), rows_quarantined=0, rows_duplicate=len(events) - len(new),
            events_loaded=len(new), identifiers_relinked=stitched.relinked,
            seconds=time.perf_counter() - started,
            new_persons=tuple(stitched.persons) if stitched.all_new else None)
        record_load(con, report)  # (posted events have no key: nothing is updated)
        if before_commit is not None:
            con.register(NEW_EVENTS, data)
            registered.append(NEW_EVENTS)
            before_commit(report)
        con.execute("COMMIT")
    except BaseException:
        rollback(con)
        raise
    finally:
        for name in registered:
            con.unregister(name)
    return report
