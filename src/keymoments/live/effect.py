"""Effect of actions: per rule, the outcome of treated versus held-out journeys.

Treated journeys are those the rule decided to act on (pending, delivered or
failed: intention to treat, so failed deliveries do not flatter the action);
held-out journeys are those its holdout kept from the action. Outcomes come from
``journeys``: ``churned``, ``repurchased`` (journeys whose outcome is still unknown
are left out) or ``feedback`` (feedback given in the journey after the action).
Each share has a Wilson score interval; the difference (treated - holdout) has
Newcombe's hybrid score interval (method 10 of Newcombe, 1998):

>>> low, high = newcombe_interval(56, 70, 48, 80)
>>> round(low, 4), round(high, 4)
(0.0524, 0.3339)
>>> [round(x, 4) for x in wilson_interval(81, 263)]
[0.2553, 0.3662]
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pyarrow as pa

from ..errors import KeymomentsError
from ..results import Result

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["OUTCOMES", "action_effect", "wilson_interval", "newcombe_interval"]

Z95 = 1.959963984540054
OUTCOMES = {
    "churned": "CAST(j.churned AS INTEGER)",
    "repurchased": "CAST(j.repurchased AS INTEGER)",
    "feedback": "CASE WHEN j.outcome_ts > o.trigger_ts THEN 1 ELSE 0 END",
}


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


def action_effect(ws: Workspace, outcome: str = "churned") -> Result:
    """One row per rule: treated and holdout journeys, their outcome shares with
    Wilson intervals, and the difference with its interval."""
    if outcome not in OUTCOMES:
        raise KeymomentsError(f"unknown outcome {outcome!r} (use {', '.join(OUTCOMES)})")
    unknown, acted = ws.con.execute(f"""
        SELECT count(*) FILTER (WHERE {OUTCOMES[outcome]} IS NULL), count(*)
        FROM outbox o JOIN journeys j ON j.journey_id = o.journey_id
        WHERE o.status IN ('pending', 'delivered', 'failed', 'held_out')""").fetchone()
    counts = ws.con.execute(f"""
        SELECT o.rule,
               count(*) FILTER (WHERE o.status <> 'held_out') AS n_treated,
               sum(y) FILTER (WHERE o.status <> 'held_out') AS x_treated,
               count(*) FILTER (WHERE o.status = 'held_out') AS n_holdout,
               sum(y) FILTER (WHERE o.status = 'held_out') AS x_holdout
        FROM (SELECT o.rule, o.status, {OUTCOMES[outcome]} AS y
              FROM outbox o JOIN journeys j ON j.journey_id = o.journey_id
              WHERE o.status IN ('pending', 'delivered', 'failed', 'held_out')) o
        WHERE y IS NOT NULL GROUP BY o.rule ORDER BY o.rule
    """).fetchall()
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
                   "n": sum(r["n_treated"] + r["n_holdout"] for r in out),
                   "outcome_unknown": unknown,
                   "hint": None if out else (
                       f"no action has a journey whose {outcome} outcome is known yet "
                       f"({acted:,} actions, {unknown:,} of them with the outcome still unknown)"
                       if acted else "the outbox has no action (treated or held out) yet")})
