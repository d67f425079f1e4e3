"""Triggers and conditions of action rules, as SQL over the derived tables.

:func:`candidates` lists, for the persons in a temp table, every (rule, journey)
whose trigger and conditions hold, with the event and time that fired it and
what the payload needs (journey, moment, person's segment, value and language).
The guards and the holdout are applied afterwards (:mod:`keymoments.live.actions`).
The SQL is plain (no DuckDB-only functions beyond list helpers that Spark has as
``arrays_overlap``/``array_contains``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from ..config.actions import ActionRule
from ..sql import ident, literal
from ..taxonomy import is_purchase_event, purchase_event_sql

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["candidates", "candidates_small"]

_UNRESOLVED_TYPES = ("issue_resolution", "case")


def _list(values) -> str:
    return "[" + ", ".join(literal(v) for v in values) + "]::VARCHAR[]"


#: the tables the rules read, by their stored name
STORED = {"events": "events", "journey_events": "journey_events", "journeys": "journeys",
          "moments": "moments"}


def _trigger_sql(rule: ActionRule, catch_all: str, as_of: str,
                 tables: dict[str, str] = STORED,
                 abandon_after: dict[str, float] | None = None) -> str:
    """(journey_id, event_id, trigger_ts) of the journeys the trigger fires on (inside
    :func:`candidates`' query: it may read its ``persons``).

    ``abandon_after``: seconds of idleness after which a journey of each type is
    abandoned: an abandoned journey ends unresolved then, its last event plus that
    time (so ``within`` counts from when it was abandoned, not from its last event,
    which is always older than the abandonment)."""
    t = rule.trigger
    moments, journeys = ident(tables["moments"]), ident(tables["journeys"])
    # a state (stalled, ended unresolved) points at the journey's last event: the
    # decision is traced through it after a merge or a renumbering (actions._History)
    last = (f"LEFT JOIN {ident(tables['journey_events'])} le "
            f"ON le.journey_id = j.journey_id AND le.seq = j.n_events - 1")
    types = t.journey_types
    jt = f"AND j.journey_type IN (SELECT unnest({_list(types)}))" if types else ""
    mt = f"AND m.journey_type IN (SELECT unnest({_list(types)}))" if types else ""
    if t.on == "purchase_completed":  # at the journey's first purchase event
        et = f"AND e.journey_type IN (SELECT unnest({_list(types)}))" if types else ""
        return (f"SELECT journey_id, event_id, ts AS trigger_ts FROM ("
                f"SELECT e.journey_id, e.event_id, e.ts, row_number() OVER ("
                f"PARTITION BY e.journey_id ORDER BY e.seq) AS _n "
                f"FROM {ident(tables['journey_events'])} e "
                f"WHERE {purchase_event_sql('e.moment')} {et} "
                f"AND e.person_id IN (SELECT person_id FROM persons)) WHERE _n = 1")
    if t.on in ("peak", "valley"):
        kind, cond = {"peak": ("peak", f"m.valence >= {t.valence_above!r}"),
                      "valley": ("valley", f"m.valence < {t.valence_below!r}")}[t.on]
        return (f"SELECT m.journey_id, m.event_id, m.ts AS trigger_ts FROM {moments} m "
                f"WHERE m.kind = {literal(kind)} AND {cond} {mt}")
    if t.on == "repeat_purchase":
        return (f"SELECT journey_id, event_id, ts AS trigger_ts FROM ("
                f"SELECT m.*, row_number() OVER (PARTITION BY m.person_id ORDER BY m.ts, m.event_id) "
                f"AS _n FROM {moments} m WHERE m.kind = 'repeat_purchase' {mt}) WHERE _n = {t.n}")
    if t.on == "stalled":
        return (f"SELECT j.journey_id, le.event_id, "
                f"j.end_ts + to_microseconds(CAST({int(t.idle * 1e6)} AS BIGINT)) AS trigger_ts "
                f"FROM {journeys} j {last} WHERE NOT coalesce(j.has_end, FALSE) "
                f"AND j.status IN ('open', 'stalled') "
                f"AND epoch_us({as_of}) - epoch_us(j.end_ts) >= {int(t.idle * 1e6)} "
                f"AND j.journey_type <> {literal(catch_all)} {jt}")
    assert t.on == "ended_unresolved"
    types = types or list(_UNRESOLVED_TYPES)
    after = " ".join(f"WHEN {literal(name)} THEN {int(s * 1e6)}"
                     for name, s in (abandon_after or {}).items())
    when = (f"CASE WHEN j.status = 'abandoned' THEN j.end_ts + to_microseconds(CAST("
            f"CASE j.journey_type {after} ELSE 0 END AS BIGINT)) ELSE j.end_ts END"
            if after else "j.end_ts")
    return (f"SELECT j.journey_id, le.event_id, {when} AS trigger_ts "
            f"FROM {journeys} j {last} "
            f"WHERE j.journey_type IN (SELECT unnest({_list(types)})) AND (j.status = 'abandoned' "
            f"OR (j.status = 'completed' AND NOT EXISTS (SELECT 1 FROM {moments} r "
            f"WHERE r.journey_id = j.journey_id AND r.kind = 'resolution')))")


def _recent(rule: ActionRule, as_of: str) -> str:
    """The ``within`` limit of a trigger, as a condition on its time."""
    within = rule.trigger.within
    return ("" if within is None else
            f" AND epoch_us({as_of}) - epoch_us(t.trigger_ts) <= {int(within * 1e6)}")


def _conditions(rule: ActionRule) -> str:
    w = rule.when
    out = []
    if w.segments:
        out.append(f"p.segment IN (SELECT unnest({_list(w.segments)}))")
    if w.languages:
        out.append(f"coalesce(j_lang.language, p.language) IN (SELECT unnest({_list(w.languages)}))")
    if w.channels:
        out.append(f"list_has_any(j.channels, {_list(w.channels)})")
    value = "p." + ident("value_" + w.value_measure)
    if w.min_value is not None:
        out.append(f"coalesce({value}, 0) >= {float(w.min_value)!r}")
    if w.max_value is not None:
        out.append(f"coalesce({value}, 0) <= {float(w.max_value)!r}")
    return " AND ".join(out) or "TRUE"


def candidates(ws: Workspace, persons_table: str, rules: list[ActionRule] | None = None,
               as_of=None, tables: dict[str, str] | None = None) -> list[dict]:
    """Every (rule, journey) of the persons in ``persons_table`` whose trigger and
    conditions hold, ordered by trigger time, person and rule order. Idle time
    (``stalled``) is judged at ``as_of`` (default: the workspace's, see
    :func:`keymoments.pipeline.resolve_as_of`).

    ``tables``: where to read the events and derived rows (default :data:`STORED`);
    an update passes the tables it just derived, which hold exactly its persons'
    rows, so the rules read a few rows instead of scanning the stored tables."""
    tables = {**STORED, **(tables or {})}
    from ..pipeline import resolve_as_of

    as_of_sql = f"CAST({literal((as_of or resolve_as_of(ws)).isoformat())} AS TIMESTAMPTZ)"
    cfg = ws.config
    rules = [r for r in (rules if rules is not None else cfg.actions.rules) if r.enabled]
    if not rules:
        return []
    measures = sorted({r.when.value_measure for r in rules})
    from ..pipeline import config_journey_types

    abandon = {t.name: t.abandon_after for t in config_journey_types(cfg)}
    value_cols = ", ".join(f"sum(measures[{literal(m)}]) AS {ident('value_' + m)}"
                           for m in measures)
    parts = []
    for order, rule in enumerate(rules):
        value = "p." + ident("value_" + rule.when.value_measure)
        parts.append(f"""
        SELECT {order} AS rule_order, {literal(rule.name)} AS rule, t.event_id, t.trigger_ts,
               j.journey_id, j.journey_type, j.journey_key, j.person_id, j.status, j.start_ts,
               j.end_ts, j.channels, j.remembered,
               coalesce(j_lang.language, p.language) AS language, p.segment, {value} AS value
        FROM ({_trigger_sql(rule, cfg.journeys.catch_all, as_of_sql, tables, abandon)}) t
        JOIN {ident(tables["journeys"])} j ON j.journey_id = t.journey_id
        JOIN person_facts p ON p.person_id = j.person_id
        LEFT JOIN journey_lang j_lang ON j_lang.journey_id = j.journey_id
        WHERE {_conditions(rule)}{_recent(rule, as_of_sql)}""")
    sql = f"""
    WITH persons AS (SELECT person_id FROM {persons_table}),
    person_facts AS (
        SELECT person_id,
               arg_max(attributes['segment'], ts) FILTER (WHERE attributes['segment'] IS NOT NULL) AS segment,
               arg_max(language, ts) FILTER (WHERE language IS NOT NULL) AS language,
               {value_cols}
        FROM {ident(tables["events"])} WHERE person_id IN (SELECT person_id FROM persons)
        GROUP BY person_id
    ),
    journey_lang AS (
        SELECT journey_id, arg_max(language, ts) AS language FROM {ident(tables["journey_events"])}
        WHERE language IS NOT NULL AND person_id IN (SELECT person_id FROM persons)
        GROUP BY journey_id
    )
    SELECT * FROM ({' UNION ALL '.join(parts)}) c
    WHERE c.person_id IN (SELECT person_id FROM persons)
    ORDER BY c.trigger_ts, c.person_id, c.rule_order, c.journey_id
    """
    cur = ws.con.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def _latest(rows, value) -> object:
    """``arg_max(value, ts) FILTER (WHERE value IS NOT NULL)``."""
    best = None
    for r in rows:
        v = value(r)
        if v is not None and (best is None or r["ts"] > best[0]):
            best = (r["ts"], v)
    return None if best is None else best[1]


def candidates_small(config, events: list[dict], derived, as_of,
                     rules: list[ActionRule] | None = None) -> list[dict]:
    """:func:`candidates` over rows in memory: ``events`` (the persons' events, with
    ``attributes``, ``language`` and ``measures``) and ``derived`` (their journey
    events, journeys and moments, :class:`keymoments.engine.small.SmallDerived`),
    for the live service's updates derived in Python. The same rows, in the same
    order (``tests/test_live_rules_small.py``)."""
    rules = [r for r in (rules if rules is not None else config.actions.rules) if r.enabled]
    if not rules:
        return []
    from ..engine.small import epoch_micros

    by_person: dict[str, list[dict]] = {}
    for e in events:
        if e["person_id"] is not None:
            by_person.setdefault(e["person_id"], []).append(e)
    measures = sorted({r.when.value_measure for r in rules})
    from ..pipeline import config_journey_types

    abandon = {t.name: t.abandon_after for t in config_journey_types(config)}
    facts = {}
    for person, rows in by_person.items():
        values = {}
        for m in measures:
            got = [(e["measures"] or {}).get(m) for e in rows]
            got = [v for v in got if v is not None]
            values[m] = sum(got) if got else None
        facts[person] = {"segment": _latest(rows, lambda e: (e.get("attributes") or {}).get(
            "segment")), "language": _latest(rows, lambda e: e["language"]), "values": values}
    lang: dict[str, list[dict]] = {}
    for e in derived.journey_events:
        lang.setdefault(e["journey_id"], []).append(e)
    journey_lang = {j: _latest(rows, lambda e: e["language"]) for j, rows in lang.items()}
    last = {j: max(rows, key=lambda e: e["seq"])["event_id"] for j, rows in lang.items()}
    journeys = {j["journey_id"]: j for j in derived.journeys}
    resolved = {m["journey_id"] for m in derived.moments if m["kind"] == "resolution"}
    as_of_us = epoch_micros(as_of)
    out = []
    for order, rule in enumerate(rules):
        t, w = rule.trigger, rule.when
        types = set(t.journey_types)
        fired: list[tuple[str, str | None, object]] = []  # (journey, event, trigger_ts)
        if t.on == "purchase_completed":
            first: dict[str, dict] = {}
            for e in derived.journey_events:
                if is_purchase_event(e["moment"]) and (not types or e["journey_type"] in types):
                    j = e["journey_id"]
                    if j not in first or e["seq"] < first[j]["seq"]:
                        first[j] = e
            fired += [(e["journey_id"], e["event_id"], e["ts"]) for e in first.values()]
        elif t.on in ("peak", "valley"):
            kind = t.on
            for m in derived.moments:
                if m["kind"] != kind or (types and m["journey_type"] not in types):
                    continue
                v = m["valence"]
                if (t.on == "peak" and not (v is not None and v >= t.valence_above)) or (
                        t.on == "valley" and not (v is not None and v < t.valence_below)):
                    continue
                fired.append((m["journey_id"], m["event_id"], m["ts"]))
        elif t.on == "repeat_purchase":
            per: dict[str, list[dict]] = {}
            for m in derived.moments:
                if m["kind"] == "repeat_purchase" and (not types or m["journey_type"] in types):
                    per.setdefault(m["person_id"], []).append(m)
            for ms in per.values():
                ms.sort(key=lambda m: (m["ts"], m["event_id"]))
                if len(ms) >= t.n:
                    m = ms[t.n - 1]
                    fired.append((m["journey_id"], m["event_id"], m["ts"]))
        elif t.on == "stalled":
            for j in derived.journeys:
                if (not j["has_end"] and j["status"] in ("open", "stalled")
                        and as_of_us - epoch_micros(j["end_ts"]) >= int(t.idle * 1e6)
                        and j["journey_type"] != config.journeys.catch_all
                        and not (types and j["journey_type"] not in types)):
                    fired.append((j["journey_id"], last.get(j["journey_id"]),
                                  j["end_ts"] + timedelta(microseconds=int(t.idle * 1e6))))
        else:  # ended_unresolved (an abandoned journey: when it was abandoned)
            types = types or set(_UNRESOLVED_TYPES)
            for j in derived.journeys:
                if j["journey_type"] in types and (j["status"] == "abandoned" or (
                        j["status"] == "completed" and j["journey_id"] not in resolved)):
                    after = abandon.get(j["journey_type"], 0.0) if j["status"] == "abandoned" else 0
                    fired.append((j["journey_id"], last.get(j["journey_id"]),
                                  j["end_ts"] + timedelta(microseconds=int(after * 1e6))))
        for journey_id, event_id, ts in fired:
            j = journeys.get(journey_id)
            p = facts.get(j["person_id"]) if j is not None else None
            if p is None:
                continue
            language = journey_lang.get(journey_id) or p["language"]
            value = p["values"][w.value_measure]
            if ((w.segments and p["segment"] not in w.segments)
                    or (w.languages and language not in w.languages)
                    or (w.channels and not set(j["channels"] or ()) & set(w.channels))
                    or (w.min_value is not None and not (value or 0) >= w.min_value)
                    or (w.max_value is not None and not (value or 0) <= w.max_value)
                    or (t.within is not None
                        and not as_of_us - epoch_micros(ts) <= int(t.within * 1e6))):
                continue
            out.append({"rule_order": order, "rule": rule.name, "event_id": event_id,
                        "trigger_ts": ts, "journey_id": journey_id,
                        "journey_type": j["journey_type"], "journey_key": j["journey_key"],
                        "person_id": j["person_id"], "status": j["status"],
                        "start_ts": j["start_ts"], "end_ts": j["end_ts"],
                        "channels": j["channels"], "remembered": j["remembered"],
                        "language": language, "segment": p["segment"], "value": value})
    out.sort(key=lambda c: (c["trigger_ts"], c["person_id"], c["rule_order"], c["journey_id"]))
    return out
