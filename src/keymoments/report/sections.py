"""The report's sections on journeys, moments and the remembered score (title,
text, rows), read from a built workspace; :func:`report_sections` adds the
insights (:mod:`keymoments.insights.report`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..display import duration
from ..sql import literal

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["engine_sections", "remembered_sections", "report_sections"]

#: the kinds of experience moment (the others are key-moment tags)
_EXPERIENCE = "('first_impression', 'peak', 'valley', 'farewell')"


def _lateness(ws: Workspace) -> str:
    """SQL: how far past its promise the event ``e`` is, on the scale of the
    expectation rules that apply to it: the gap beyond ``tolerance`` as a share of
    the way to ``full_at`` (1: fully late), the largest of the rules'. Comparable
    across time and value promises (an SLA's minutes and a delivery's days), unlike
    the valence, which stops at -1 or ``late_floor``."""
    from ..valence.rules import UNIT_SECONDS, effective_rules

    cases = []
    for r in effective_rules(ws.config.valence):
        if r.kind != "expectation_gap":
            continue
        if r.measure is None:
            actual, promised = "epoch(e.ts)", "epoch(e.expected_ts)"
        else:
            actual = f"e.measures[{literal(r.measure)}] * {UNIT_SECONDS[r.measure_unit]!r}"
            promised = f"e.expected_value * {UNIT_SECONDS[r.expected_unit]!r}"
        scale = f"nullif({promised}, 0)" if r.relative else repr(float(UNIT_SECONDS[r.unit]))
        types = ", ".join(literal(t) for t in r.event_types)
        cases.append(f"CASE WHEN e.event_type IN ({types}) THEN "
                     f"(({actual} - {promised}) / {scale} - {r.tolerance!r}) "
                     f"/ {float(r.full_at) - r.tolerance!r} END")
    return f"greatest({', '.join(cases)})" if cases else "NULL"

def _rows(ws: Workspace, sql: str) -> list[dict[str, Any]]:
    return ws.con.execute(sql).to_arrow_table().to_pylist()


def engine_sections(ws: Workspace) -> list[dict]:
    """Journeys by type and status, the valleys and peaks that recur, and moment
    kinds by stage (experience moments, then key moments)."""
    journeys = _rows(ws, """
        SELECT journey_type AS type, status, count(*) AS journeys,
               median(duration_s) AS median_duration,
               round(avg(n_events), 1) AS mean_events,
               round(avg(CASE WHEN channel_switches > 0 THEN 1.0 ELSE 0 END), 3) AS share_switching,
               count(outcome_rating) AS with_feedback, round(avg(remembered), 3) AS mean_remembered
        FROM journeys GROUP BY ALL ORDER BY type, journeys DESC""")
    for r in journeys:
        r["median_duration"] = duration(r["median_duration"])
    kinds = """
        SELECT kind, coalesce(stage, '') AS stage, count(*) AS moments,
               count(valence) AS with_valence, round(avg(valence), 3) AS mean_valence,
               round(avg(CASE WHEN valence < 0 THEN 1.0 WHEN valence >= 0 THEN 0 END), 3)
                   AS share_negative
        FROM moments WHERE kind {} IN {}
        GROUP BY ALL ORDER BY kind, moments DESC, stage"""
    sections = [
        {"title": "Journeys by type and status", "rows": journeys,
         "text": _feedback_only(ws)},
        {"title": "Moments that carry the most negative valence",
         "text": "Valleys by event type and channel, the most negative valence in all first "
                 "(valleys x mean valence): where to look. The example is the reason of the "
                 "worst of them (at equal valence, the one furthest from its promise).",
         "rows": _rows(ws, """
            SELECT m.event_type, m.channel, count(*) AS valleys,
                   round(avg(m.valence), 3) AS mean_valence,
                   arg_min(m.reason, (m.valence, -coalesce(%s, 0), m.reason))
                       AS example_reason
            FROM moments m LEFT JOIN events e ON e.event_id = m.event_id
            WHERE m.kind = 'valley' AND m.valence < 0
            GROUP BY m.event_type, m.channel HAVING count(*) >= 3
            ORDER BY count(*) * avg(m.valence), m.event_type, m.channel LIMIT 12"""
                      % _lateness(ws))},
        {"title": "Peaks", "rows": _rows(ws, """
            SELECT event_type, channel, count(*) AS peaks, round(avg(valence), 3) AS mean_valence
            FROM moments WHERE kind = 'peak' AND valence > 0
            GROUP BY ALL HAVING count(*) >= 3 ORDER BY count(*) * avg(valence) DESC, event_type,
            channel LIMIT 8""")},
        {"title": "Experience moments by stage",
         "text": "The first impression, peak, valley and farewell of each journey, by the "
                 "stage of the event they fall on.",
         "rows": _rows(ws, kinds.format("", _EXPERIENCE))},
        {"title": "Key moments by stage",
         "text": "The first event of each key moment in a journey (purchase, support, "
                 "resolution, feedback...; first interaction: a person's first event; repeat "
                 "purchase: the purchase event of every purchase after a person's first). "
                 "Mean valence and share negative are of the moments with a valence.",
         "rows": _rows(ws, kinds.format("NOT", _EXPERIENCE))},
    ]
    why = {"Moments that carry the most negative valence": "valley with a negative valence",
           "Peaks": "peak with a positive valence"}
    for section in sections:
        if section["title"] in why and not section["rows"]:
            section["text"] = (f"None here: no {why[section['title']]} recurs on one event type "
                               "and channel (3 journeys or more). The valence rules and ratings "
                               "score what the export holds; see docs/concepts.md.")
    return sections


def _feedback_only(ws: Workspace) -> str:
    """A note when journeys hold nothing but feedback (a review of an order the export
    does not hold): their status reads the missing events as an abandoned journey."""
    found = ws.con.execute("""
        SELECT journey_type, count(*) FROM (
            SELECT journey_type, journey_id FROM journey_events GROUP BY ALL
            HAVING bool_and(coalesce(stage = 'feedback', false)))
        GROUP BY 1 ORDER BY 2 DESC, 1""").fetchall()
    if not found:
        return ""
    what = ", ".join(f"{t} {n:,}" for t, n in found)
    return (f"Journeys holding only feedback, by type: {what}. Their earlier events (the order a review "
            "is about) are not in the data, so their status says little: an abandoned or "
            "stalled one may be a review of an order the export leaves out.")


def remembered_sections(ws: Workspace, outcome: str = "feedback") -> list[dict]:
    """The latest stored fit of the remembered score for ``outcome``
    (``keymoments remembered``): the models compared and the learned weights."""
    which = f"outcome = {literal(outcome)}"
    models = _rows(ws, f"""
        SELECT model, metric, round(cv_score, 3) AS cv_score, round(cv_low, 3) AS low,
               round(cv_high, 3) AS high, n, CASE WHEN chosen THEN 'yes' ELSE '' END AS scoring,
               weights
        FROM remembered_models
        WHERE {which} AND fitted_at = (SELECT max(fitted_at) FROM remembered_models
                                       WHERE {which})
        ORDER BY cv_score DESC NULLS LAST""")
    title = f"Remembered score: which moments predict {outcome}"
    if not models:
        rated = ws.con.execute("SELECT count(outcome_rating) FROM journeys").fetchone()[0]
        if outcome == "feedback" and not rated:  # (the command would say so and stop)
            text = ("Not fitted: no journey has feedback (a survey answer, a review) to learn "
                    "what customers remember from; journeys are scored peak-end.")
        else:
            text = ("Not fitted yet: `keymoments remembered` learns it and compares it with "
                    "peak-end, the mean and the last moment.")
        return [{"title": title, "rows": [], "text": text}]
    chosen = [m["model"] for m in models if m["scoring"]]
    weights = next((json.loads(m["weights"]) for m in models if m["weights"]), {})
    weights.pop("intercept", None)
    return [
        {"title": f"{title} ({models[0]['n']:,} journeys)",
         "text": (f"Scoring the journeys now: {chosen[0]}. " if chosen else "")
         + "Scores are cross-validated with 95% bootstrap intervals."
         + (" No model predicts the outcome better than chance here (every cross-validated "
            "score is at most 0 for R2, 0.5 for AUC): read the weights as noise."
            if all((m["cv_score"] or 0) <= (0.5 if m["metric"] == "auc" else 0)
                   for m in models) else ""),
         "rows": [{k: v for k, v in m.items() if k not in ("weights", "n")} for m in models]},
        {"title": "Learned moment weights (95% bootstrap interval)",
         "rows": [{"feature": f, "weight": round(w, 3), "low": round(lo, 3),
                   "high": round(hi, 3)} for f, (w, lo, hi) in weights.items()]},
    ]


def report_sections(ws: Workspace) -> list[dict]:
    """Every section of the report of a built workspace."""
    from ..insights.report import insight_sections

    return engine_sections(ws) + remembered_sections(ws) + insight_sections(ws)
