"""Typed config of the live service and of action rules (``service:`` and
``actions:`` in ``keymoments.yaml``).

A rule fires on a moment or a journey state, when its conditions hold, and
writes one action (a webhook call, a case for a human queue, or a file record)
to the outbox, unless a guard stops it or the person is in the rule's holdout:

>>> rule = ActionRule.model_validate({
...     "name": "recover_valley",
...     "trigger": {"on": "valley", "valence_below": -0.5},
...     "when": {"languages": ["pt", "en"]},
...     "action": {"kind": "webhook", "url": "http://localhost:9/hook",
...                "payload": {"text": "Sorry, {{ person.id }}", "lang": "{{ language }}"}},
...     "holdout": 0.1})
>>> rule.trigger.on, rule.action.kind, rule.holdout
('valley', 'webhook', 0.1)
>>> try:
...     ActionRule.model_validate({"name": "x", "trigger": {"on": "valley"},
...                                "action": {"kind": "webhook"}})
... except ValueError as exc:
...     print("a webhook action needs 'url'" in str(exc))
True
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from .analysis import Duration
from .base import Strict, require_unique_names

__all__ = [
    "TriggerSpec",
    "ConditionSpec",
    "ActionSpec",
    "ActionRule",
    "FrequencyCap",
    "DeliveryConfig",
    "ActionsConfig",
    "RateLimit",
    "ServiceConfig",
]

TRIGGERS = ("peak", "valley", "stalled", "ended_unresolved", "purchase_completed",
            "repeat_purchase")


class TriggerSpec(Strict):
    """What makes a rule fire, judged on each journey of an updated person.

    * ``peak``: the journey's peak moment has valence at least ``valence_above``;
    * ``valley``: its valley moment has valence below ``valence_below``;
    * ``stalled``: no end event and idle for ``idle`` (judged at the latest event);
    * ``ended_unresolved``: the journey was abandoned, or ended without a
      ``resolution`` moment (journeys of ``journey_types``; default: issue_resolution, case);
    * ``purchase_completed``: the journey holds a purchase event (an event tagged
      ``purchase`` or ``repeat_purchase``), at its first;
    * ``repeat_purchase``: the journey is the person's ``n``-th repeat purchase
      (``n: 1`` is the second purchase: a journey of ``outcomes.purchase_types`` that
      holds a purchase event, see ``outcomes``), at its first purchase event.

    ``journey_types`` limits the rule to those journey types (empty: any).
    ``within`` limits it to triggers at most that long before the latest event (unset:
    any age): a service started on a workspace with history then does not act on a
    returning customer's old moments the first time the customer is updated.
    """

    on: Literal[TRIGGERS]  # type: ignore[valid-type]
    valence_above: float = Field(default=0.5, ge=-1, le=1)
    valence_below: float = Field(default=-0.3, ge=-1, le=1)
    idle: Duration = 48 * 3600.0
    n: int = Field(default=1, ge=1)
    journey_types: list[str] = Field(default_factory=list)
    within: Duration | None = None


class ConditionSpec(Strict):
    """Who a rule applies to; every condition given must hold (empty: everyone).

    ``segments`` match the person's latest ``attributes.segment``; ``channels``
    any channel of the journey; ``languages`` the person's language; customer
    value is the sum of ``measures[value_measure]`` over the person's events.
    """

    segments: list[str] = Field(default_factory=list)
    channels: list[str] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=list)
    min_value: float | None = None
    max_value: float | None = None
    value_measure: str = "amount"


class ActionSpec(Strict):
    """What the rule does.

    * ``webhook``: POST the payload as JSON to ``url`` with an ``Idempotency-Key``
      header (the action id), retried with backoff until the receiver answers 2xx;
    * ``case``: a case for a human queue, written as ``<cases_dir>/<action id>.json``;
    * ``file``: a record written as ``<outbox_dir>/<action id>.json``.

    ``payload`` is a JSON-like structure whose strings are Jinja templates,
    rendered in a sandbox with ``action``, ``rule``, ``person``, ``journey``,
    ``moment`` and ``language``; the JSON is built from the rendered values, never
    from template text. Unset: the whole action document.
    """

    kind: Literal["webhook", "case", "file"]
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    payload: Any = None
    queue: str = "default"

    @model_validator(mode="after")
    def _needs(self) -> ActionSpec:
        if self.kind == "webhook" and not self.url:
            raise ValueError("a webhook action needs 'url'")
        if self.url and not re.match(r"https?://", self.url):
            raise ValueError(f"url {self.url!r}: use an http:// or https:// address")
        if self.payload is not None:
            from ..templating import check_templates

            check_templates(self.payload)
        return self


class ActionRule(Strict):
    """One action rule. ``holdout`` is the share of persons (drawn deterministically
    from a hash of the rule name and the person) who get no action, recorded as
    held out so the effect can be measured."""

    name: str
    trigger: TriggerSpec
    when: ConditionSpec = Field(default_factory=ConditionSpec)
    action: ActionSpec
    holdout: float = Field(default=0.1, ge=0, le=0.9)
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", v):
            raise ValueError(f"rule name {v!r}: use letters, digits, '_', '-', '.'")
        return v


class FrequencyCap(Strict):
    """At most ``count`` actions to one person within ``per`` (event time)."""

    count: int = Field(default=3, ge=1)
    per: Duration = 7 * 86400.0


class DeliveryConfig(Strict):
    """How the delivery worker retries: after attempt ``k`` it waits
    ``backoff * 2**(k-1)`` (at most ``max_backoff``); after ``max_attempts`` the
    action is ``failed`` (visible, and replayable with ``keymoments actions replay``)."""

    max_attempts: int = Field(default=8, ge=1)
    backoff: Duration = 1.0
    max_backoff: Duration = 600.0
    timeout: Duration = 5.0
    poll: Duration = 0.05


class ActionsConfig(Strict):
    """Action rules and the guards every rule shares: one action of a kind per
    journey, a per-person ``frequency_cap`` and a ``quiet_period`` after any action.
    ``feedback_within``: the window after an action in which the person's feedback
    counts as its ``feedback`` outcome (``keymoments actions effect``)."""

    rules: list[ActionRule] = Field(default_factory=list)
    frequency_cap: FrequencyCap = Field(default_factory=FrequencyCap)
    quiet_period: Duration = 0.0
    feedback_within: Duration = 30 * 86400.0
    default_language: str = "en"
    outbox_dir: str = "outbox"
    cases_dir: str = "cases"
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)

    @field_validator("rules")
    @classmethod
    def _unique(cls, v: list[ActionRule]) -> list[ActionRule]:
        return require_unique_names(v, "rule")


class RateLimit(Strict):
    """Requests per second allowed per API key (a token bucket of ``burst``)."""

    per_second: float = Field(default=50.0, gt=0)
    burst: int = Field(default=100, ge=1)


class ServiceConfig(Strict):
    """The REST service (``keymoments serve``)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8787, ge=0, le=65535)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_batch: int = Field(default=10000, ge=1)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    #: seconds between sweeps of time-based triggers (stalled journeys)
    sweep_every: Duration = 60.0
    #: a posted event timed more than this after the service's clock is refused (422):
    #: one event from a wrong clock would make every journey look idle until then
    max_future: Duration = 3600.0
    #: at start, order a person-keyed table (events, journeys...) by person when more
    #: than this share of its rows came after its last ordering, and index identifiers
    #: (1: neither; see docs/service.md)
    cluster_above: float = Field(default=0.25, ge=0.0, le=1.0)
    #: a live update that reads at most this many events derives their journeys and
    #: moments with the engine in Python (the same rows without SQL planning, see
    #: keymoments.engine.small); 0: always with the engine's SQL
    python_engine_max_events: int = Field(default=500, ge=0)
    #: a posted batch of at most this many events is mapped, stitched and written in
    #: Python (the rows of the SQL load, see keymoments.live.small_load) when the SQL
    #: load would quarantine none of it; 0: always the SQL load
    python_load_max_events: int = Field(default=500, ge=0)
