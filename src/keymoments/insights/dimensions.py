"""The dimensions an insight can be cut by, as plain SQL over the workspace tables.

A journey is described by the columns of ``journeys`` (``journey_type``, ``status``)
and by dimensions derived from its events:

========================  =====================================================
``channel``               the channel of its first event
``agent``                 the first agent who handled it
``language``              the first language seen in it
``stage``                 the stage of its last staged event (how far it got)
``segment``               the person's latest ``segment`` attribute
``discovery``             the person's first ``discovery_source`` attribute
                          (first-touch attribution)
``attr:<key>``            the journey's first value of attribute ``<key>``
                          (``attr:carrier``, ``attr:product_category``...)
========================  =====================================================

The SQL is portable: ``min_by``/``max_by`` with ``FILTER`` and map lookups
``m['key']`` read the same on DuckDB and Spark SQL.

>>> sorted(DIMENSIONS)[:4]
['agent', 'channel', 'discovery', 'journey_type']
>>> dimension_sql(["channel", "attr:carrier"])[1]
['channel', 'attr:carrier']
"""

from __future__ import annotations

import re

from ..errors import KeymomentsError
from ..sql import literal

__all__ = ["DIMENSIONS", "PERIODS", "dimension_sql", "period_sql", "check_dimension", "column_name",
           "event_keys"]

#: Journey-level dimensions computed from the journey's events.
_FROM_EVENTS = {
    "channel": "min_by(je.channel, je.seq) FILTER (WHERE je.channel IS NOT NULL)",
    "agent": "min_by(je.agent, je.seq) FILTER (WHERE je.agent IS NOT NULL)",
    "language": "min_by(je.language, je.seq) FILTER (WHERE je.language IS NOT NULL)",
    "stage": "max_by(je.stage, je.seq) FILTER (WHERE je.stage IS NOT NULL)",
}
_FROM_JOURNEY = ("journey_type", "status")
_FROM_PERSON = {
    "segment": "max_by(e.attributes['segment'], e.ts) FILTER (WHERE e.attributes['segment'] IS NOT NULL)",
    "discovery": ("min_by(e.attributes['discovery_source'], e.ts) "
                  "FILTER (WHERE e.attributes['discovery_source'] IS NOT NULL)"),
}
DIMENSIONS = (*_FROM_EVENTS, *_FROM_JOURNEY, *_FROM_PERSON)
PERIODS = ("day", "week", "month", "quarter", "year")
#: column names an attribute dimension cannot take: those of :func:`dimension_sql`'s
#: query and those the analyses add to it or to their results (metrics, recurrence)
_TAKEN = frozenset(
    ["journey_id", "person_id", "journey_type", "start_ts", "end_ts", "y", "top", "det", "n",
     "k", "value", "low", "high", "p_value", "p_adjusted", "differs", "small_sample",
     "compared_to", "journeys", "rate", "repeat_contacts",
     *(f"{s}{x}" for s in ("share_top2", "share_easy") for x in ("", "_low", "_high"))])
_ATTR = re.compile(r"^attr:([A-Za-z0-9_\-.]+)$")


def event_keys(ws, column: str) -> list[str]:
    """The keys the events' map ``column`` (``attributes``, ``measures``) holds, sorted:
    to name the ones there when a key asked for is none of them."""
    if column not in ("attributes", "measures", "refs", "identifiers"):
        raise ValueError(f"not a map column of events: {column!r}")
    return [r[0] for r in ws.con.execute(
        f"SELECT DISTINCT unnest(map_keys({column})) AS k FROM events ORDER BY k").fetchall()]


def column_name(dim: str) -> str:
    """The result column of a dimension (``attr:carrier`` -> ``carrier``).

    >>> column_name("attr:carrier"), column_name("agent")
    ('carrier', 'agent')
    """
    m = _ATTR.match(dim)
    return m.group(1) if m else dim


def check_dimension(dim: str) -> str:
    """``dim`` if it names a dimension, else an error listing them."""
    if dim == "discovery_source":
        return "discovery"
    if dim in DIMENSIONS or _ATTR.match(dim):
        return dim
    raise KeymomentsError(
        f"unknown dimension {dim!r}; use one of {', '.join(DIMENSIONS)} or attr:<attribute key> "
        "(for example attr:carrier)")


def period_sql(period: str | None, ts: str, timezone: str = "UTC") -> str | None:
    """``date_trunc`` of ``ts`` to ``period``, or None: in UTC, or as the local
    start of the period in ``timezone`` (a time without offset).

    >>> period_sql("month", "_ts", "America/Sao_Paulo")
    "date_trunc('month', timezone('America/Sao_Paulo', _ts))"
    """
    if period is None:
        return None
    if period not in PERIODS:
        raise KeymomentsError(f"unknown period {period!r}; use one of {', '.join(PERIODS)}")
    if timezone != "UTC":
        return f"date_trunc('{period}', timezone({literal(timezone)}, {ts}))"
    return f"date_trunc('{period}', {ts})"


def dimension_sql(dims: list[str]) -> tuple[str, list[str]]:
    """A query with one row per journey: ``journey_id``, ``person_id``,
    ``journey_type``, ``start_ts``, ``end_ts`` and one column per dimension in
    ``dims`` (named by :func:`column_name`). Returns (sql, dims as checked)."""
    dims = [check_dimension(d) for d in dims]
    named: dict[str, str] = {}
    for d in dims:
        key = column_name(d)
        other = named.setdefault(key.lower(), d)
        if other != d:
            raise KeymomentsError(f"{other} and {d} would both be a column named {key!r}: "
                                  "ask for one of them")
        if _ATTR.match(d) and (key.lower() in _TAKEN or key.startswith("_")):
            raise KeymomentsError(
                f"{d} would be a column named like the built-in {key!r} (a column of the "
                "query or of its result): give the attribute another name in the source's "
                f"mapping (attributes: {{{key}_attr: <its column>}}), then load again")
    joins, cols = [], []
    ev = [d for d in dims if d in _FROM_EVENTS]
    if ev:
        sel = ", ".join(f"{_FROM_EVENTS[d]} AS {d}" for d in ev)
        joins.append(f"LEFT JOIN (SELECT je.journey_id, {sel} FROM journey_events je "
                     "GROUP BY je.journey_id) jd ON jd.journey_id = j.journey_id")
        cols += [f"jd.{d}" for d in ev]
    pe = [d for d in dims if d in _FROM_PERSON]
    if pe:
        sel = ", ".join(f"{_FROM_PERSON[d]} AS {d}" for d in pe)
        joins.append(f"LEFT JOIN (SELECT e.person_id, {sel} FROM events e "
                     "GROUP BY e.person_id) pd ON pd.person_id = j.person_id")
        cols += [f"pd.{d}" for d in pe]
    for i, d in enumerate(d for d in dims if _ATTR.match(d)):
        key = column_name(d)
        alias = f"a{i}"
        lit = "'" + key.replace("'", "''") + "'"
        joins.append(
            f"LEFT JOIN (SELECT je.journey_id, min_by(e.attributes[{lit}], je.seq) AS v "
            f"FROM journey_events je JOIN events e ON e.event_id = je.event_id "
            f"WHERE e.attributes[{lit}] IS NOT NULL GROUP BY je.journey_id) {alias} "
            f"ON {alias}.journey_id = j.journey_id")
        cols.append(f'{alias}.v AS "{key}"')
    cols += [f"j.{d}" for d in dims if d in _FROM_JOURNEY and d != "journey_type"]
    extra = (", " + ", ".join(cols)) if cols else ""
    sql = (f"SELECT j.journey_id, j.person_id, j.journey_type, j.start_ts, j.end_ts{extra} "
           f"FROM journeys j {' '.join(joins)}")
    return sql, dims
