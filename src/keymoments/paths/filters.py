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

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["JourneyFilter", "Outcome", "Level", "UNKNOWN"]

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


