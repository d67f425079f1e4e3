"""Typed config of the engine: valence rules, journey types, outcomes, moments.

Durations are written ``30m``, ``2h``, ``14d``, ``8w`` or ``1y`` (or seconds):

>>> parse_duration("14d"), parse_duration("90m"), parse_duration(45)
(1209600.0, 5400.0, 45.0)
>>> JourneyType.model_validate({"name": "purchase", "key": "order", "end": ["order_delivered"]}).gap
>>> ValenceRule.model_validate({"name": "late", "kind": "expectation_gap",
...     "event_types": ["order_delivered"], "unit": "days", "full_at": 7}).tolerance
0.0
"""

from __future__ import annotations

import functools
import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from .base import STAGES, Strict, require_unique_names

__all__ = [
    "Duration",
    "parse_duration",
    "ValenceRule",
    "ValenceConfig",
    "JourneyType",
    "JourneysConfig",
    "OutcomesConfig",
    "MomentsConfig",
]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
UNIT_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}
#: the longest duration a config takes (100 years): longer ones overflow the queries
MAX_DURATION = 100 * 365 * 86400


def parse_duration(value: object) -> float:
    """Seconds in a duration written as a number of seconds or ``<n><s|m|h|d|w|y>``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        seconds = float(value)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdwy])\s*", str(value))
        if not match:
            raise ValueError(f"not a duration: {value!r} (write e.g. 30m, 2h, 14d, 8w, 1y)")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not seconds <= MAX_DURATION:  # (NaN too)
        raise ValueError(f"not a duration: {value!r} (at most 100 years: write e.g. 30m, 2h, "
                         "14d, 8w, 1y)")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class ValenceRule(Strict):
    """An operational rule that gives matching events a valence and a reason.

    Kinds:

    * ``constant``: a fixed ``valence`` (payment failed, transferred, refund granted).
    * ``expectation_gap``: actual against promised. For a time promise, the gap is
      ``ts - expected_ts``; for a value promise, ``measures[measure]`` (in
      ``measure_unit``) minus ``expected_value`` (in ``expected_unit``); with
      ``relative`` (value promises only), the gap is a fraction of the promise (0.5 =
      half as long again).
      Later than ``tolerance``: valence ``-late_start`` falling linearly to -1 at
      ``full_at`` (never below ``late_floor``); earlier than ``early_by`` (default:
      the tolerance): ``early_valence``; in between: ``on_time_valence``.
    * ``measure_above``: ``measures[measure]`` above ``threshold`` scores ``valence``.
    * ``repeat_contact``: another event of these types by the same person within
      ``window`` before this one (the issue was not fixed) scores ``valence``. Events
      at the same time are ordered by event id, as a journey's ``seq`` (an id hashes
      the source's name: the same two events posted to the service may order the
      other way).
    * ``first_contact_resolution``: a resolution (an event of its ``event_types``) in
      a journey with no transfer, reopening (``interrupting``) or earlier resolution
      (an earlier event of its ``event_types``) before it scores ``valence``;
      otherwise ``else_valence``.

    ``reason`` may use ``{event_type}`` (the event's type) and, in an
    ``expectation_gap`` rule, ``{gap}`` (the amount with its unit and direction:
    ``2.0 days late``, ``1.5 days early``, ``0.0 days (on time)``,
    ``4.0 hours early (on time)`` (within the tolerances); under one ``unit``, in
    the largest smaller unit it makes one of: ``3.0 hours late``) or, in a
    ``measure_above`` rule, ``{value}`` (the measure); any other ``{...}`` is an error.
    Without a ``reason``, the rule's ``name`` is shown (the placeholders its kind fills
    filled, any other braces as written).
    """

    name: str
    kind: Literal["constant", "expectation_gap", "measure_above", "repeat_contact",
                  "first_contact_resolution"] = "constant"
    event_types: list[str]
    valence: float | None = Field(default=None, ge=-1, le=1)
    reason: str | None = None
    unit: Literal["seconds", "minutes", "hours", "days"] = "hours"
    measure: str | None = None
    measure_unit: Literal["seconds", "minutes", "hours", "days"] = "seconds"
    expected_unit: Literal["seconds", "minutes", "hours", "days"] = "minutes"
    tolerance: float = 0.0
    full_at: float | None = None
    late_start: float = Field(default=0.0, ge=0, le=1)
    late_floor: float = Field(default=-1.0, ge=-1, le=0)
    early_by: float | None = None
    relative: bool = False
    on_time_valence: float = Field(default=0.0, ge=-1, le=1)
    early_valence: float = Field(default=0.0, ge=-1, le=1)
    threshold: float | None = None
    window: Duration = 7 * 86400.0
    interrupting: list[str] = Field(default_factory=lambda: ["transferred", "ticket_reopened"])
    else_valence: float | None = Field(default=None, ge=-1, le=1)

    @model_validator(mode="after")
    def _complete(self) -> ValenceRule:
        need = {
            "constant": ["valence"],
            "expectation_gap": ["full_at"],
            "measure_above": ["measure", "threshold", "valence"],
            "repeat_contact": ["valence"],
            "first_contact_resolution": ["valence"],
        }[self.kind]
        missing = [k for k in need if getattr(self, k) is None]
        if missing:
            raise ValueError(f"a {self.kind} rule needs {', '.join(missing)}")
        if self.full_at is not None and self.full_at <= self.tolerance:
            raise ValueError("full_at must be larger than tolerance")
        fills = {"expectation_gap": {"gap"}, "measure_above": {"value"}}.get(self.kind, set())
        for token in re.findall(r"\{([^{}]*)\}", self.reason or ""):
            if token not in fills | {"event_type"}:
                can = ", ".join(f"{{{t}}}" for t in sorted(fills | {"event_type"}))
                known = token in ("gap", "value")
                a = "an" if self.kind[0] in "aeiou" else "a"
                raise ValueError(
                    f"rule {self.name!r}: reason: {{{token}}} is "
                    + (f"not filled by {a} {self.kind} rule" if known else "not a placeholder")
                    + f"; {a} {self.kind} rule's reason may use {can} (braces are for "
                    "placeholders only)")
        if self.relative and self.measure is None:
            raise ValueError(
                "relative: true needs a value promise ('measure', compared with the "
                "event's expected_value): a promised time has no length the gap could be "
                "a fraction of; leave relative out to measure the gap in 'unit'")
        return self


class ValenceConfig(Strict):
    """How events get their valence in [-1, 1].

    The valence of an event is the weighted mean of the parts it has: explicit
    feedback (its rating on its scale), operational rules, and text sentiment.
    ``neutral`` is the rating that scores 0 on each scale (NPS 7: passives are not
    happy customers); it counts for every source rating on that scale's name (a
    ``min``/``max`` range given without a name is the scale ``custom``: name it to give
    it a neutral of its own; without one, a custom range is scored from its middle).
    A weight of 0 leaves its part out of the valence and the reason. Rules are the packaged defaults
    (``keymoments/defaults/valence.yaml``) plus these, a rule of the same name
    replacing the default one.
    """

    weights: dict[Literal["feedback", "rules", "text"], float] = Field(
        default_factory=lambda: {"feedback": 1.0, "rules": 1.0, "text": 0.5})
    neutral: dict[str, float] = Field(
        default_factory=lambda: {"csat5": 3, "stars5": 3, "nps10": 7, "ces7": 4})
    rules: list[ValenceRule] = Field(default_factory=list)
    use_default_rules: bool = True
    #: ``lexicon`` (light default), ``multilingual`` (needs ``keymoments[text]``),
    #: ``dir:/path/to/model`` (a local model directory) or ``package.module:scorer``
    #: (a plug-in); see docs/text.md
    text_scorer: str = "lexicon"

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        """A part weighs 0 or more (a negative weight turned a failed payment into a
        good moment), and some part weighs more than 0."""
        for part, w in v.items():
            if not (0 <= w < float("inf")):
                raise ValueError(f"weights.{part} is {w!r}: a weight is 0 (the part is left "
                                 "out) or a positive number")
        if not any({"feedback": 1.0, "rules": 1.0, "text": 0.5, **v}.values()):
            raise ValueError("every weight is 0: no event could have a valence; give the "
                             "parts to count a weight above 0")
        return v

    @field_validator("neutral")
    @classmethod
    def _neutral_on_scale(cls, v: dict[str, float]) -> dict[str, float]:
        """A built-in scale's neutral point lies on the scale (CES 9 scored a 7, 'very
        easy', as negative); a custom scale's is checked against its sources (Config)."""
        from .base import RATING_SCALES

        for scale, point in v.items():
            if scale in RATING_SCALES:
                lo, hi = RATING_SCALES[scale]
                if not lo <= point <= hi:
                    raise ValueError(f"neutral.{scale} is {point:g}, off the scale: {scale} "
                                     f"runs from {lo:g} to {hi:g}")
        return v

    @field_validator("text_scorer")
    @classmethod
    def _scorer_name(cls, v: str) -> str:
        """A built-in name, ``dir:PATH``, a path or ``module:attribute``: what else is
        a typo, told now rather than at the build."""
        import difflib

        v = v.strip()
        if v in ("lexicon", "multilingual", "e5") or ":" in v or "/" in v or "\\" in v:
            return v
        close = difflib.get_close_matches(v, ["lexicon", "multilingual"], n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"unknown text scorer {v!r}: {hint}use 'lexicon', 'multilingual', "
                         "'dir:/path/to/model' or 'package.module:scorer'")


class JourneyType(Strict):
    """A kind of journey. With ``key``, a journey is every event of a person that
    carries that reference (an order, a ticket). Without it, a journey is a run of
    the person's events of ``event_types``/``stages`` and its ``start`` and ``end``
    events, that begins at a ``start`` event (or after more than ``gap`` of
    inactivity) and ends at an ``end`` event.

    ``stall_after``: idle this long (or longer) without an end event and the journey
    is stalled (default: the 90th percentile duration of this type's completed
    journeys, interpolated linearly between the two nearest, as DuckDB's
    ``quantile_cont``); ``abandon_after``: idle this long (or longer) and it is
    abandoned.
    """

    name: str
    key: str | None = None
    event_types: list[str] = Field(default_factory=list)
    stages: list[Literal[STAGES]] = Field(default_factory=list)  # type: ignore[valid-type]
    start: list[str] = Field(default_factory=list)
    end: list[str] = Field(default_factory=list)
    gap: Duration | None = None
    stall_after: Duration | None = None
    abandon_after: Duration = 30 * 86400.0

    @model_validator(mode="after")
    def _member(self) -> JourneyType:
        if self.key is None and not (self.event_types or self.stages or self.start):
            raise ValueError("a journey type needs a 'key' (a correlation reference such as "
                             "order or ticket), or the event_types/stages it is made of")
        if self.key is not None and (self.event_types or self.stages):
            raise ValueError(f"journey type {self.name!r} has a 'key': it is every event that "
                             f"carries a {self.key} reference, so 'event_types' and 'stages' "
                             "would be ignored; remove them, or the key for a type made of "
                             "those events")
        return self


@functools.cache
def default_type_names() -> list[str]:
    """The names of the packaged journey types (``keymoments/defaults/journeys.yaml``).

    >>> default_type_names()
    ['issue_resolution', 'case', 'purchase', 'browsing']
    """
    from importlib import resources

    from ruamel.yaml import YAML

    text = resources.files("keymoments").joinpath("defaults/journeys.yaml").read_text("utf-8")
    return [t["name"] for t in YAML(typ="safe").load(text)["types"]]


def as_of_text(value: object) -> str | None:
    """``journeys.as_of`` as ISO 8601 text, checked (YAML reads an unquoted date as a
    date: taken too).

    >>> import datetime
    >>> as_of_text(datetime.date(2024, 6, 30)), as_of_text(" 2024-06-30T12:00:00Z ")
    ('2024-06-30', '2024-06-30T12:00:00Z')
    >>> as_of_text("yesterday")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: not a time: 'yesterday'; write it in ISO 8601, e.g. '2024-06-30T00:00:00Z' ...
    """
    from datetime import date, datetime

    if value is None or isinstance(value, (date, datetime)):
        return None if value is None else value.isoformat()
    if isinstance(value, str):
        text = value.strip()
        try:
            datetime.fromisoformat(text)
            return text
        except ValueError:
            pass
    raise ValueError(f"not a time: {value!r}; write it in ISO 8601, e.g. "
                     "'2024-06-30T00:00:00Z' (without an offset it is in the workspace's "
                     "timezone)")


class JourneysConfig(Strict):
    """Journey types, tried in order; events no type claims fall to the catch-all,
    split per person by ``catch_all_gap`` of inactivity. ``types`` replaces the
    built-in list (`issue_resolution` keyed by `ticket`, `case` by `case`, `purchase`
    by `order`, `browsing` by `session`; `keymoments config show` prints them): to
    add a type, list the built-in ones you use too."""

    types: list[JourneyType] | None = None
    catch_all: str = "visit"
    catch_all_gap: Duration = 30 * 60.0
    #: the time statuses, idle times and outcomes are judged at (ISO 8601; a time
    #: without an offset is in the workspace's ``timezone``, a date its midnight);
    #: unset: the latest event. Events after it still make their journeys.
    as_of: str | None = None

    @field_validator("as_of", mode="before")
    @classmethod
    def _time(cls, v: object) -> str | None:
        return as_of_text(v)

    @field_validator("types")
    @classmethod
    def _unique(cls, v: list[JourneyType] | None) -> list[JourneyType] | None:
        return require_unique_names(v, "journey type")

    @model_validator(mode="after")
    def _catch_all_apart(self) -> JourneysConfig:
        names = ({t.name for t in self.types} if self.types is not None
                 else set(default_type_names()))
        if self.catch_all in names:
            raise ValueError(f"catch_all {self.catch_all!r} is also the name of a journey type: "
                             "its journeys would be judged as the catch-all's; give it another "
                             "name")
        return self


class OutcomesConfig(Strict):
    """What counts as a journey's outcome: feedback given in it, a repurchase
    within ``repurchase_within`` of its end, churn (the person's first churn-stage
    event from the journey's start on, within ``churn_within`` of that start; or no
    activity at all for ``inactive_churn_after`` after the journey, judged at
    ``journeys.as_of``: a person who came back is not churned).

    A purchase is a journey of one of ``purchase_types`` that holds a purchase event:
    an event the taxonomy tags with the key moment ``purchase`` (``order_placed``,
    ``subscription_started``) or ``repeat_purchase``; it happens at its first. A
    journey of those types without one (a review, a ticket or a delivery of an order
    placed before the data begins) is no purchase: it is no repeat purchase, does not
    count as the person's first purchase, is no repurchase of an earlier journey and
    is not counted by the ``repeat_purchase`` metric. The stage is not enough
    (``checkout_started``, ``payment_failed`` and ``order_delivered`` are stage
    purchase): tag an export's own purchase event in ``taxonomy.event_types`` with
    ``moment: purchase``."""

    repurchase_within: Duration = 90 * 86400.0
    churn_within: Duration = 180 * 86400.0
    inactive_churn_after: Duration = 180 * 86400.0
    purchase_types: list[str] = Field(default_factory=lambda: ["purchase"])


class MomentsConfig(Strict):
    """Which events can be moments. Feedback is the outcome a journey is judged by,
    so by default it is not itself a peak, valley or end. The moments span the whole
    journey, events after the answer included; the remembered score's inputs stop at
    the answer."""

    exclude_stages: list[str] = Field(default_factory=lambda: ["feedback"])


class TextConfig(Strict):
    """Free-text analysis: the languages texts are identified among, the theme
    taxonomy the user pins beside the automatic themes, and how many automatic
    themes to find.

    A pinned theme lists keywords per language (``{pt: [atras, demor], en: [late]}``)
    or one list for every language; a keyword matches a word starting with it (any
    substring in Chinese and Japanese)."""

    #: ISO 639-1 codes texts are identified among; unset: 28 common languages
    languages: list[str] | None = None
    #: pinned themes: name -> keywords per language, or one list for all languages
    themes: dict[str, dict[str, list[str]] | list[str]] = Field(default_factory=dict)
    #: how many automatic themes; unset: chosen by silhouette between 5 and 12
    n_themes: int | None = Field(default=None, ge=2)
