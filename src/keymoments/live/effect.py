"""Effect of actions: per rule, the outcome of treated versus held-out persons.

The unit is a person and a rule: the rule's first decision on the person (by trigger
time) puts the person in an arm, treated (pending, delivered or failed: intention to
treat, so failed deliveries do not flatter the action) or held out, and the rule's
later decisions on that person keep that arm (:mod:`keymoments.live.actions`). A
person's several journeys are no independent draws (they share the arm and, for
churn, the outcome), so each person counts once. A decision is traced to its person
through its trigger event, so a person merged with another since counts once too.

The outcome is measured from the events after that first trigger, within a window:

* ``churned``: a churn-stage event within ``outcomes.churn_within``, or no event at
  all within ``outcomes.inactive_churn_after``;
* ``repurchased``: a purchase event (taxonomy moment ``purchase`` or
  ``repeat_purchase``) within ``outcomes.repurchase_within``;
* ``feedback``: a feedback-stage event within ``actions.feedback_within``.

It is known once the whole window has passed by ``as_of`` (``journeys.as_of``, else
the latest event, but not later than now: an event from a wrong clock would judge
every window as passed): persons whose window is still open are left out either way (an
early yes would count, an early no not yet: the share would be biased) and counted
in ``meta["outcome_unknown"]``. Each share has a Wilson score interval; the
difference (treated - holdout) has Newcombe's hybrid score interval (method 10 of
Newcombe, 1998):

>>> low, high = newcombe_interval(56, 70, 48, 80)
>>> round(low, 4), round(high, 4)
(0.0524, 0.3339)
>>> [round(x, 4) for x in wilson_interval(81, 263)]
[0.2553, 0.3662]
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import pyarrow as pa

from ..errors import KeymomentsError
from ..results import Result
from ..sql import interval_seconds, literal

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["OUTCOMES", "action_effect", "wilson_interval", "newcombe_interval"]

Z95 = 1.959963984540054
OUTCOMES = ("churned", "repurchased", "feedback")
_COUNTED = "('pending', 'delivered', 'failed', 'held_out')"


def wilson_interval(x: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of the share ``x / n`` (NaN for ``n == 0``)."""
    if n == 0:
        return (math.nan, math.nan)
    p = x / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def newcombe_interval(x1: int, n1: int, x2: int, n2: int, z: float = Z95) -> tuple[float, float]:
    """Interval of ``x1/n1 - x2/n2`` from the two Wilson intervals (Newcombe's method 10)."""
    if n1 == 0 or n2 == 0:
        return (math.nan, math.nan)
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson_interval(x1, n1, z)
    l2, u2 = wilson_interval(x2, n2, z)
    d = p1 - p2
    return (d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
            d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))


def _outcome_sql(ws: Workspace, outcome: str) -> tuple[str, str]:
    """(the window the outcome needs, as an SQL interval; the outcome, 1 or 0, over the
    person's events ``x`` after the trigger ``u.t0`` within that window)."""
    cfg = ws.config
    if outcome == "churned":
        churn, idle = cfg.outcomes.churn_within, cfg.outcomes.inactive_churn_after
        y = (f"CASE WHEN bool_or(x.stage = 'churn' AND x.ts <= u.t0 + {interval_seconds(churn)}) "
             f"OR count(x.ts) FILTER (WHERE x.ts <= u.t0 + {interval_seconds(idle)}) = 0 "
             "THEN 1 ELSE 0 END")
        return interval_seconds(max(churn, idle)), y
    if outcome == "repurchased":
        y = "CASE WHEN bool_or(x.moment IN ('purchase', 'repeat_purchase')) THEN 1 ELSE 0 END"
        return interval_seconds(cfg.outcomes.repurchase_within), y
    return (interval_seconds(cfg.actions.feedback_within),
            "CASE WHEN bool_or(x.stage = 'feedback') THEN 1 ELSE 0 END")


def action_effect(ws: Workspace, outcome: str = "churned") -> Result:
    """One row per rule: treated and held-out persons, their outcome shares with
    Wilson intervals, and the difference with its interval."""
    from ..pipeline import resolve_as_of

    if outcome not in OUTCOMES:
        raise KeymomentsError(f"unknown outcome {outcome!r} (use {', '.join(OUTCOMES)})")
    as_of = resolve_as_of(ws)
    if not ws.config.journeys.as_of:
        as_of = min(as_of, datetime.now(timezone.utc))
    window, y = _outcome_sql(ws, outcome)
    at = f"CAST({literal(as_of.isoformat())} AS TIMESTAMPTZ)"
    ws.con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _km_effect AS
        WITH units AS (
            SELECT o.rule, coalesce(e.person_id, o.person_id) AS person,
                   arg_min(o.status, (o.trigger_ts, o.seq)) AS status, min(o.trigger_ts) AS t0
            FROM outbox o LEFT JOIN events e ON e.event_id = o.event_id
            WHERE o.status IN {_COUNTED}
            GROUP BY ALL
        )
        SELECT u.rule, u.status, u.t0 + {window} <= {at} AS known, {y} AS y
        FROM units u LEFT JOIN events x
          ON x.person_id = u.person AND x.ts > u.t0 AND x.ts <= u.t0 + {window}
        GROUP BY u.rule, u.person, u.status, u.t0""")
    try:
        unknown, acted = ws.con.execute(
            "SELECT count(*) FILTER (WHERE NOT known), count(*) FROM _km_effect").fetchone()
        counts = ws.con.execute("""
            SELECT rule,
                   count(*) FILTER (WHERE status <> 'held_out') AS n_treated,
                   sum(y) FILTER (WHERE status <> 'held_out') AS x_treated,
                   count(*) FILTER (WHERE status = 'held_out') AS n_holdout,
                   sum(y) FILTER (WHERE status = 'held_out') AS x_holdout
            FROM _km_effect WHERE known GROUP BY rule ORDER BY rule""").fetchall()
    finally:
        ws.con.execute("DROP TABLE IF EXISTS _km_effect")
    out = []
    for rule, nt, xt, nh, xh in counts:
        xt, xh = int(xt or 0), int(xh or 0)
        lt, ut = wilson_interval(xt, nt)
        lh, uh = wilson_interval(xh, nh)
        ld, ud = newcombe_interval(xt, nt, xh, nh)
        out.append({"rule": rule, "outcome": outcome,
                    "n_treated": nt, "treated_rate": xt / nt if nt else None,
                    "treated_low": lt, "treated_high": ut,
                    "n_holdout": nh, "holdout_rate": xh / nh if nh else None,
                    "holdout_low": lh, "holdout_high": uh,
                    "difference": (xt / nt - xh / nh) if nt and nh else None,
                    "diff_low": ld, "diff_high": ud})
    nan = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
           for r in out]
    schema = pa.schema([("rule", pa.string()), ("outcome", pa.string()), ("n_treated", pa.int64()),
                        ("treated_rate", pa.float64()), ("treated_low", pa.float64()),
                        ("treated_high", pa.float64()), ("n_holdout", pa.int64()),
                        ("holdout_rate", pa.float64()), ("holdout_low", pa.float64()),
                        ("holdout_high", pa.float64()), ("difference", pa.float64()),
                        ("diff_low", pa.float64()), ("diff_high", pa.float64())])
    return Result(pa.Table.from_pylist(nan, schema=schema),
                  {"outcome": outcome, "confidence": 0.95,
                   "method": "Wilson score per arm; Newcombe hybrid score for the difference",
                   "unit": "person and rule (the rule's first decision on the person)",
                   "as_of": as_of.isoformat(),
                   "n": sum(r["n_treated"] + r["n_holdout"] for r in out),
                   "outcome_unknown": unknown,
                   "hint": _hint(outcome, acted, unknown, bool(out))})


def _hint(outcome: str, acted: int, unknown: int, shown: bool) -> str | None:
    """What the reader should know: persons whose outcome is not known yet."""
    if not acted:
        return "the outbox has no action (treated or held out) yet"
    if not unknown:
        return None
    said = (f"{unknown:,} of {acted:,} persons acted on are left out: the window of their "
            f"{outcome} outcome has not passed yet (by as_of: journeys.as_of, else the "
            "latest event, at most now)")
    return said if shown else f"no person's {outcome} outcome is known yet: {said}"
