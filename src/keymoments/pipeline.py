"""Build the derived tables: events -> scored journey events -> journeys -> moments.

Every step is an Ibis expression (see :mod:`keymoments.engine`); the results
replace ``journey_events``, ``journeys`` and ``moments`` in one transaction, so a
reader sees the old tables or the new ones, never a mix.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING

import ibis

from .config.analysis import JourneyType
from .engine import backend
from .journey.assign import assign_journeys
from .journey.summary import summarize_journeys
from .moment.extract import extract_moments
from .sql import ident
from .store.schema import COLUMN_DOCS
from .valence.cache import update_text_scores
from .valence.rules import add_window_inputs, effective_rules
from .valence.score import score_events
from .valence.text import get_scorer

if TYPE_CHECKING:
    from .store.workspace import Workspace

__all__ = ["BuildReport", "build", "journey_types"]

_EVENT_COLS = ["event_id", "ts", "person_id", "event_type", "stage", "moment", "channel", "agent",
               "language", "refs", "rating", "rating_scale", "rating_min", "rating_max", "text",
               "measures", "expected_ts", "expected_value"]


@dataclass
class BuildReport:
    """What a build produced and how long each step took."""

    journeys: int
    events: int
    moments: int
    texts_scored: int
    seconds: dict[str, float] = field(default_factory=dict)


@lru_cache(maxsize=1)
def _default_types() -> tuple[JourneyType, ...]:
    from ruamel.yaml import YAML

    text = resources.files("keymoments").joinpath("defaults/journeys.yaml").read_text("utf-8")
    return tuple(JourneyType.model_validate(t) for t in YAML(typ="safe").load(text)["types"])


def journey_types(ws: Workspace) -> list[JourneyType]:
    """The workspace's journey types (its config, else the packaged defaults)."""
    configured = ws.config.journeys.types
    return list(configured) if configured is not None else list(_default_types())


def _materialize(ws: Workspace, name: str, expr) -> None:
    sql = ibis.to_sql(expr, dialect="duckdb")
    ws.con.execute(f"CREATE OR REPLACE TEMP TABLE {ident(name)} AS {sql}")


def resolve_as_of(ws: Workspace, je=None):
    """The time statuses are judged at: ``journeys.as_of`` or the latest event."""
    from datetime import datetime, timezone

    if ws.config.journeys.as_of:
        ts = datetime.fromisoformat(ws.config.journeys.as_of.replace("Z", "+00:00"))
        return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
    latest = ws.con.execute("SELECT max(ts) FROM events").fetchone()[0]
    return latest or datetime.now(timezone.utc)


def build(ws: Workspace) -> BuildReport:
    """Recompute journeys and moments from the events."""
    cfg = ws.config
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    scorer = get_scorer(cfg.valence.text_scorer)
    scored_texts = update_text_scores(ws, scorer)
    timings["text"] = time.perf_counter() - t0

    b = backend(ws)
    events = b.table("events")
    events = events.filter(events.person_id.notnull()).select(*_EVENT_COLS)
    types = journey_types(ws)
    t = time.perf_counter()
    assigned = assign_journeys(events, cfg.journeys, types)
    _materialize(ws, "_km_jn", add_window_inputs(assigned, effective_rules(cfg.valence)))
    narrow = b.table("_km_jn")
    wide = events.drop("event_type", "ts", "person_id", "stage")
    joined = narrow.join(wide, "event_id")
    texts = b.table("text_scores")
    texts = texts.filter(texts.scorer == scorer.name)
    scored = score_events(joined, cfg.valence, texts)
    je_cols = list(COLUMN_DOCS["journey_events"])
    _materialize(ws, "_km_je", scored.select(*je_cols))
    timings["journey_events"] = time.perf_counter() - t

    t = time.perf_counter()
    je = b.table("_km_je")
    as_of = ibis.literal(resolve_as_of(ws, je), type="timestamp('UTC')")
    person_last = events.group_by("person_id").aggregate(
        last_ts=events.ts.max(), churn_ts=events.ts.min(where=events.stage == "churn"))
    journeys = summarize_journeys(je, cfg.journeys, types, cfg.outcomes, cfg.moments, as_of,
                                  person_last)
    _materialize(ws, "_km_journeys", journeys)
    timings["journeys"] = time.perf_counter() - t
    t = time.perf_counter()
    _materialize(ws, "_km_moments", extract_moments(je, cfg.moments, cfg.outcomes))
    timings["moments"] = time.perf_counter() - t

    t = time.perf_counter()
    con = ws.con
    con.execute("BEGIN TRANSACTION")
    try:
        _replace(ws, "journey_events", "SELECT * FROM _km_je")
        _replace(ws, "journeys", """
            SELECT j.*, e.rating AS outcome_rating, e.rating_scale AS outcome_scale
            FROM _km_journeys j LEFT JOIN events e ON e.event_id = j.outcome_event_id""")
        _replace(ws, "moments", "SELECT * FROM _km_moments")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        for tmp in ("_km_jn", "_km_je", "_km_journeys", "_km_moments"):
            con.execute(f"DROP TABLE IF EXISTS temp.main.{ident(tmp)}")
    timings["write"] = time.perf_counter() - t
    counts = [con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
              for t in ("journeys", "journey_events", "moments")]
    timings["total"] = time.perf_counter() - t0
    return BuildReport(counts[0], counts[1], counts[2], scored_texts, timings)


def _replace(ws: Workspace, table: str, select: str) -> None:
    """Replace ``table`` by ``select``, with the documented columns and types."""
    cols = ", ".join(
        f"CAST(s.{ident(c)} AS {t.replace(' NOT NULL', '')}) AS {ident(c)}"
        for c, (t, _) in COLUMN_DOCS[table].items()
    )
    ws.con.execute(f"CREATE OR REPLACE TABLE {ident(table)} AS SELECT {cols} FROM ({select}) s")
