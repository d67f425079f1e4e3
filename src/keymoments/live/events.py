"""Posted events: the canonical event model of the REST service, and their load.

A posted batch is validated here (pydantic: a bad timestamp, an unknown stage or
rating scale refuses the whole request, nothing stored), then loaded like a JSON
lines export of the built-in source ``api``: the same stable content ids (posting
an event twice stores it once), deduplication, identity stitching, quarantine and
load log as any file source (:mod:`keymoments.sources.ingest`).

>>> e = PostedEvent.model_validate({"ts": "2026-03-01T10:00:00+01:00", "event_type": "order_placed",
...     "identifiers": {"email": "Ana@Example.com"}, "refs": {"order": "o1"}})
>>> e.ts.isoformat()
'2026-03-01T09:00:00+00:00'
>>> try:
...     PostedEvent.model_validate({"ts": "2026-03-01 10:00", "event_type": "x",
...                                 "identifiers": {"email": "a@b.c"}})
... except ValueError as exc:
...     print("a timestamp needs an offset" in str(exc))
True
"""

from __future__ import annotations

import math
import unicodedata
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, field_validator, model_validator

from ..config.base import LANGUAGE_TAG, RATING_SCALES, STAGES
from ..config.models import SourceSpec
from ..errors import ConfigError

if TYPE_CHECKING:
    from ..sources.ingest import LoadReport
    from ..store.workspace import Workspace

__all__ = ["PostedEvent", "EventBatch", "API_SOURCE", "load_events", "api_source_spec"]

#: The built-in source name of posted events.
API_SOURCE = "api"
#: Identifier kinds in the order the anchor (the identifier that resolves the person)
#: is picked; other kinds follow alphabetically.
ANCHOR_ORDER = ("customer_id", "account", "email", "phone", "device")


def _utc(value: object) -> object:
    if value is None or isinstance(value, datetime):
        ts = value
    else:
        text = str(value).strip()
        try:
            ts = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError(f"not an ISO 8601 timestamp: {text!r} (e.g. 2026-03-01T10:00:00Z)") from None
    if ts is None:
        return None
    if ts.tzinfo is None:
        raise ValueError("a timestamp needs an offset: write it as ISO 8601 with 'Z' or '+hh:mm' "
                         "(e.g. 2026-03-01T10:00:00Z)")
    if not 1900 <= ts.year <= 2200:
        raise ValueError(f"timestamp year {ts.year} is out of range (1900-2200)")
    return ts.astimezone(timezone.utc)


class PostedEvent(BaseModel):
    """One event as posted to ``POST /v1/events``: the canonical event model."""

    model_config = ConfigDict(extra="forbid")

    ts: datetime = Field(description="when it happened: ISO 8601 with an offset ('Z' for UTC)")
    event_type: str = Field(min_length=1, max_length=200)
    identifiers: dict[str, str] = Field(
        description="kind -> value (customer_id, email, phone, device, account, ...); at least one")
    channel: str | None = None
    stage: str | None = None
    agent: str | None = None
    language: str | None = Field(default=None, pattern=f"^{LANGUAGE_TAG}$",
                                 description="ISO 639 code, such as en or pt-BR")
    rating: float | None = Field(default=None, strict=True)  # a number: not "5", not true
    rating_scale: str | None = Field(default=None, description="csat5, nps10, ces7 or stars5")
    text: str | None = Field(default=None, max_length=20000)
    refs: dict[str, str] = Field(default_factory=dict, description="order, ticket, session, case ...")
    measures: dict[str, StrictFloat] = Field(default_factory=dict)
    expected_ts: datetime | None = None
    expected_value: float | None = Field(default=None, strict=True)
    expectation_kind: str | None = None
    attributes: dict[str, str] = Field(default_factory=dict)

    _ts = field_validator("ts", "expected_ts", mode="before")(_utc)

    @field_validator("event_type")
    @classmethod
    def _event_type(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("event_type is blank: name what happened (e.g. order_placed)")
        return v.strip()

    @field_validator("identifiers")
    @classmethod
    def _ids(cls, v: dict[str, str]) -> dict[str, str]:
        v = {k.strip(): s.strip() for k, s in v.items() if s and s.strip()}
        if not v:
            raise ValueError("give at least one non-empty identifier (customer_id, email, phone...)")
        for key in v:
            if not key.replace("_", "").isalnum():
                raise ValueError(f"identifier kind {key!r}: use letters, digits and '_'")
        _one_spelling([v])
        return v

    @field_validator("refs", "attributes", "measures")
    @classmethod
    def _keys(cls, v: dict) -> dict:
        for key in v:
            if not key or "." in key or any(unicodedata.category(c) == "Cc" for c in key):
                raise ValueError(f"key {key!r}: a non-empty name without '.' or control "
                                 "characters")
        _one_spelling([v])
        return v

    @field_validator("event_type", "identifiers", "channel", "stage", "agent", "text", "refs",
                     "expectation_kind", "attributes")
    @classmethod
    def _no_nul(cls, v):
        values = v.values() if isinstance(v, dict) else [v]
        if any(isinstance(x, str) and "\x00" in x for x in values):
            raise ValueError("holds a NUL character (U+0000), which is no text: remove it")
        return v

    @field_validator("measures")
    @classmethod
    def _finite(cls, v: dict[str, float]) -> dict[str, float]:
        for key, num in v.items():
            if not math.isfinite(num):
                raise ValueError(f"measure {key!r} is not a finite number")
        return v

    @field_validator("stage")
    @classmethod
    def _stage(cls, v: str | None) -> str | None:
        if v is not None and v.lower() not in STAGES:
            raise ValueError(f"unknown stage {v!r} (stages: {', '.join(STAGES)})")
        return v

    @model_validator(mode="after")
    def _rating(self) -> PostedEvent:
        if self.rating_scale is not None and self.rating_scale not in RATING_SCALES:
            raise ValueError(f"unknown rating_scale {self.rating_scale!r} "
                             f"(use {', '.join(RATING_SCALES)})")
        if (self.expected_ts is not None or self.expected_value is not None) and not (
                self.expectation_kind or "").strip():
            raise ValueError("expected_ts or expected_value needs expectation_kind (what was "
                             "promised: delivery, response, ...), or it cannot be scored")
        if self.rating is not None:
            scale = self.rating_scale
            if scale is None:  # a 9 is a promoter on nps10 and off the scale on csat5
                raise ValueError(f"rating needs rating_scale ({', '.join(RATING_SCALES)}): "
                                 "another scale is another question, so none is assumed")
            low, high = RATING_SCALES[scale]
            if not (math.isfinite(self.rating) and low <= self.rating <= high):
                raise ValueError(f"rating {self.rating} is outside the {scale} scale ({low:g}-{high:g})")
        return self


def _one_spelling(maps: list[dict]) -> None:
    """A ValueError when two keys of ``maps`` differ only in case. A batch is stored as
    a JSON lines export would be read, whose columns ignore case: ``Tier`` and ``tier``
    (or ``customer_id`` and ``Customer_ID``) would be one column there, and be two
    keys when the batch is small enough to be stored in Python."""
    seen: dict[str, str] = {}
    for m in maps:
        for key in m:
            other = seen.setdefault(key.casefold(), key)
            if other != key:
                raise ValueError(f"keys {other!r} and {key!r} differ only in case: use one "
                                 "spelling")


class EventBatch(BaseModel):
    """A batch of events as posted to ``POST /v1/events/batch``."""

    model_config = ConfigDict(extra="forbid")

    events: list[PostedEvent] = Field(min_length=1)

    @model_validator(mode="after")
    def _spelling(self) -> EventBatch:
        for name in ("identifiers", "refs", "measures", "attributes"):
            _one_spelling([getattr(e, name) for e in self.events])
        return self


def _slot(e: PostedEvent) -> tuple[str, str]:
    return (e.rating_scale or "" if e.rating is not None else "", e.expectation_kind or "")


def _anchor_order(kinds: set[str]) -> list[str]:
    return [k for k in ANCHOR_ORDER if k in kinds] + sorted(kinds - set(ANCHOR_ORDER))


def api_source_spec(path: str, events: list[PostedEvent]) -> SourceSpec:
    """The mapping of a batch staged as JSON lines records by :func:`load_events`: one event
    slot per (rating scale, expectation kind) in the batch, each row filling only its
    own slot's timestamp, so every event keeps its own scale and expectation."""
    ids = _anchor_order({k for e in events for k in e.identifiers})
    maps = {name: sorted({k for e in events for k in getattr(e, name)})
            for name in ("refs", "measures", "attributes")}
    slots = sorted({_slot(e) for e in events})
    spec_events = []
    for i, (scale, kind) in enumerate(slots):
        ev: dict = {"event_type": "event_type", "ts": f"_ts{i}", "when_missing": "skip"}
        if scale:
            ev["rating"] = {"column": "rating", "scale": scale}
        if kind:
            ev["expectation"] = {"kind": kind, "ts": "expected_ts", "value": "expected_value"}
        spec_events.append(ev)
    spec = {
        "path": path, "format": "jsonl",
        "identifiers": {k: f"identifiers.{k}" for k in ids},
        **{f: f for f in ("channel", "stage", "agent", "language", "text")},
        **{name: {k: f"{name}.{k}" for k in keys} for name, keys in maps.items()},
        "events": spec_events,
    }
    return SourceSpec.model_validate(spec)


def _row(e: PostedEvent, slot: int) -> dict:
    row = e.model_dump(exclude_none=True, exclude={"ts", "expected_ts", "rating_scale",
                                                   "expectation_kind"})
    row[f"_ts{slot}"] = e.ts.isoformat()
    if e.expected_ts is not None:
        row["expected_ts"] = e.expected_ts.isoformat()
    for name in ("refs", "measures", "attributes"):
        if not row.get(name):
            row.pop(name, None)
    return row


def load_events(ws: Workspace, events: list[PostedEvent],
                before_commit: Callable[[LoadReport], None] | None = None) -> LoadReport:
    """Store posted events as a load of the ``api`` source (one transaction;
    ``before_commit`` runs inside it, see :func:`keymoments.sources.ingest.ingest_source`)."""
    from ..sources.ingest import ingest_source
    from .small_load import load_small

    if API_SOURCE in ws.config.sources:
        raise ConfigError(f"the source name {API_SOURCE!r} is reserved for posted events; "
                          "rename that source in keymoments.yaml", key=f"sources.{API_SOURCE}")
    small = load_small(ws, events, before_commit)  # (None: this batch needs the SQL load)
    if small is not None:
        return small
    slots = {s: i for i, s in enumerate(sorted({_slot(e) for e in events}))}
    records = [_row(e, slots[_slot(e)]) for e in events]  # as a JSON lines export would read
    spec = api_source_spec(f"posted:{uuid.uuid4().hex}", events)
    saved = ws.config
    ws.config = saved.model_copy(update={"sources": {**saved.sources, API_SOURCE: spec}})
    try:
        return ingest_source(ws, API_SOURCE, before_commit=before_commit, records=records)
    finally:
        ws.config = saved
