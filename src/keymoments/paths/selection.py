"""Which journeys an analysis looks at: a typed filter, compiled to Ibis over the
workspace's ``journeys`` and ``journey_events`` (so it runs on DuckDB and Spark).

Outcomes a filter can ask for (a journey's outcome is its first feedback, see
docs/concepts.md): ``detractor`` (NPS 0-6, or a negative rating on another
scale), ``promoter`` (NPS 9-10, or a rating of valence 0.5 and up), ``passive``,
``negative``/``positive`` (outcome valence below/above 0), ``no_feedback``,
``churned``, ``repurchased``.

>>> JourneyFilter(journey_type="purchase", outcome="detractor").active()
{'journey_type': 'purchase', 'outcome': 'detractor'}
>>> JourneyFilter.model_validate({"outcome": "sad"})
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for JourneyFilter
...
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Literal

import ibis
from pydantic import BaseModel, ConfigDict

from ..engine import backend

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["JourneyFilter", "Outcome", "Level", "select_journeys", "journey_events", "activity"]

Outcome = Literal["detractor", "promoter", "passive", "negative", "positive", "no_feedback",
                  "churned", "repurchased"]
#: What a node of a path is: the event type, the stage, the channel or the business moment.
Level = Literal["event_type", "stage", "channel", "moment"]
#: Label of events that have no value at the chosen level (a stage-less event).
UNKNOWN = "(none)"

StrOrList = str | list[str] | None


class JourneyFilter(BaseModel):
    """A selection of journeys. Every given field must hold (AND); a list means any of."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    journey_type: StrOrList = None
    status: StrOrList = None
    segment: StrOrList = None
    outcome: Outcome | None = None
    channel: StrOrList = None
    journey_ids: list[str] | None = None
    journey_keys: list[str] | None = None
    since: datetime | None = None
    until: datetime | None = None

    def active(self) -> dict[str, object]:
        """The fields that filter something (for a result's ``meta``)."""
        return {k: (v.isoformat() if isinstance(v, datetime) else v)
                for k, v in self.model_dump().items() if v is not None}


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
    if flt.journey_ids is not None:
        j = j.filter(j.journey_id.isin(flt.journey_ids))
    if flt.journey_keys is not None:
        j = j.filter(j.journey_key.isin(flt.journey_keys))
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
