"""The selected journeys and their events as Ibis expressions over the workspace's
``journeys`` and ``journey_events`` (so they run on DuckDB and Spark); the filter
itself is :class:`~keymoments.paths.filters.JourneyFilter`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

import ibis

from ..engine import backend
from .filters import UNKNOWN, JourneyFilter, Level, Outcome, StrOrList  # noqa: F401

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["JourneyFilter", "Outcome", "Level", "select_journeys", "journey_events", "activity"]


def _list(value: StrOrList) -> list[str] | None:
    return None if value is None else ([value] if isinstance(value, str) else list(value))


def _utc(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def _outcome(j, outcome: str):
    nps = j.outcome_scale == "nps10"
    v, r = j.outcome_valence, j.outcome_rating
    return {
        "detractor": (nps & (r <= 6)) | (~nps & (v < 0)),
        "promoter": (nps & (r >= 9)) | (~nps & (v >= 0.5)),
        "passive": (nps & (r > 6) & (r < 9)) | (~nps & (v >= 0) & (v < 0.5)),
        "negative": v < 0,
        "positive": v > 0,
        "no_feedback": v.isnull(),
        "churned": j.churned,
        "repurchased": j.repurchased,
    }[outcome].fill_null(False)


def person_segments(ws: Workspace):
    """``person_id, segment``: each person's latest ``segment`` attribute."""
    ev = backend(ws).table("events")
    seg = ev.attributes["segment"]
    return (ev.filter(seg.notnull() & ev.person_id.notnull())
            .group_by("person_id").aggregate(segment=seg.argmax(ev.ts, where=seg.notnull())))


def select_journeys(ws: Workspace, flt: JourneyFilter | None = None):
    """The ``journeys`` table (an Ibis expression) restricted to ``flt``."""
    flt = flt or JourneyFilter()
    j = backend(ws).table("journeys")
    for col in ("journey_type", "status"):
        values = _list(getattr(flt, col))
        if values is not None:
            j = j.filter(j[col].isin(values))
    for col, values in (("journey_id", flt.journey_ids), ("journey_key", flt.journey_keys)):
        if values is None:
            continue
        if len(values) <= 100:
            j = j.filter(j[col].isin(values))
        else:  # a long list joins as a small table (a SQL IN list that long compiles slowly)
            keys = ibis.memtable({"_k": list(dict.fromkeys(values))})
            j = j.semi_join(keys, j[col] == keys._k)
    if flt.since is not None:
        j = j.filter(j.start_ts >= ibis.literal(_utc(flt.since), type="timestamp('UTC')"))
    if flt.until is not None:
        j = j.filter(j.start_ts < ibis.literal(_utc(flt.until), type="timestamp('UTC')"))
    if flt.outcome is not None:
        j = j.filter(_outcome(j, flt.outcome))
    channels = _list(flt.channel)
    if channels is not None:
        j = j.filter(ibis.or_(*[j.channels.contains(c) for c in channels]))
    segments = _list(flt.segment)
    if segments is not None:
        seg = person_segments(ws)
        seg = seg.filter(seg.segment.isin(segments)).select(_sp="person_id")
        j = j.semi_join(seg, j.person_id == seg._sp)
    return j


def journey_events(ws: Workspace, flt: JourneyFilter | None = None):
    """The ``journey_events`` of the selected journeys (all of them without a filter)."""
    je = backend(ws).table("journey_events")
    if flt is None or not flt.active():
        return je
    sel = select_journeys(ws, flt).select(_sj="journey_id")
    return je.semi_join(sel, je.journey_id == sel._sj)


def activity(je, level: Level = "event_type"):
    """The label of each event at ``level`` (missing values read ``(none)``)."""
    return je[level].fill_null(UNKNOWN)
