"""Typed config of the path analyses: designed journeys, contacts, teams.

A designed journey is the path the business intends, an ordered list of steps. A
step is written as the activity it matches, with a suffix for how often it may
happen: ``?`` optional, ``+`` repeatable, ``*`` optional and repeatable; or as a
mapping with ``events`` (several activities that all count as the step), ``name``,
``optional`` and ``repeatable``.

>>> d = DesignedJourney.model_validate({"name": "buy", "journey_types": ["purchase"],
...     "steps": ["checkout_started", "payment_failed*", "order_placed",
...               {"name": "ends", "events": ["order_delivered", "order_cancelled"]}]})
>>> [(s.name, s.optional, s.repeatable) for s in d.steps]
[('checkout_started', False, False), ('payment_failed', True, True), ('order_placed', False, False), ('ends', False, False)]
>>> ContactsConfig().window
604800.0
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from .analysis import Duration
from .base import Strict, require_unique_names

__all__ = ["DesignedStep", "DesignedJourney", "ContactsConfig", "PathsConfig"]

_SUFFIX = {"?": (True, False), "+": (False, True), "*": (True, True)}


class DesignedStep(Strict):
    """One step of a designed journey: the activities that count as it."""

    name: str
    events: list[str] = Field(min_length=1)
    optional: bool = False
    repeatable: bool = False

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            text = data.strip()
            optional, repeatable = _SUFFIX.get(text[-1:], (False, False))
            if text[-1:] in _SUFFIX:
                text = text[:-1].strip()
            return {"name": text, "events": [text], "optional": optional, "repeatable": repeatable}
        if isinstance(data, dict) and "name" not in data and data.get("events"):
            return {**data, "name": data["events"][0]}
        return data


class DesignedJourney(Strict):
    """The journey as designed, checked against the journeys as they ran
    (``keymoments conformance``).

    ``journey_types``: the journeys it applies to (empty: every journey).
    ``level``: what a step names (event types, stages or channels). Events of
    ``ignore`` activities or ``ignore_stages`` stages are neither steps nor
    deviations (by default feedback: a survey answer is not a detour).
    """

    name: str
    journey_types: list[str] = Field(default_factory=list)
    level: Literal["event_type", "stage", "channel"] = "event_type"
    steps: list[DesignedStep] = Field(min_length=1)
    ignore: list[str] = Field(default_factory=list)
    ignore_stages: list[str] = Field(default_factory=lambda: ["feedback"])

    @model_validator(mode="after")
    def _required_step(self) -> DesignedJourney:
        if all(s.optional for s in self.steps):
            raise ValueError("a designed journey needs at least one step that is not optional")
        return self


class ContactsConfig(Strict):
    """Which journeys are contacts with the company (for channel switching and lost
    context), and what makes two contacts about the same thing.

    A contact is one journey of ``journey_types``; its channel is its first event's.
    Two contacts of a person are about the same subject when they share the
    ``subject_ref`` reference (an order), or, without one, when the second follows
    within ``window``. A *switch* is a next contact within ``window`` on another
    channel; *lost context* is a switch about the same subject.
    """

    journey_types: list[str] = Field(default_factory=lambda: ["issue_resolution", "case"])
    subject_ref: str | None = "order"
    window: Duration = 7 * 86400.0


class PathsConfig(Strict):
    """Process map, variants, designed journeys, channel switching and consistency."""

    designed: list[DesignedJourney] = Field(default_factory=list)
    contacts: ContactsConfig = Field(default_factory=ContactsConfig)
    #: team -> its agents (for consistency by team; an event's ``team`` attribute wins)
    teams: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("designed")
    @classmethod
    def _unique(cls, v: list[DesignedJourney]) -> list[DesignedJourney]:
        return require_unique_names(v, "designed journey")
