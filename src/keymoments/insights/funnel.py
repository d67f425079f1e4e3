"""Funnels: conversion through ordered steps, with drop-off, time to convert, and
by discovery source or channel (the strongest and weakest acquisition).

A step is ``stage:<stage>``, ``moment:<business moment>``, ``event:<event type>``
or a bare event type. The default funnel is the customer lifecycle: awareness ->
consideration -> purchase -> post-purchase -> loyalty (steps no event matches are
left out and listed in ``meta["skipped_steps"]``).

Each unit (person, or journey with ``unit="journey"``) enters at its first event
of step 1 and reaches step k at its first event of step k at or after step k-1,
within ``within_days`` of entering. Every step is one portable SQL join over the
previous one; medians and intervals are computed on the per-unit times.

>>> parse_step("moment:purchase"), parse_step("order_placed")
(('moment', 'purchase'), ('event_type', 'order_placed'))
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import KeymomentsError
from ..results import Result
from ..sql import interval_days, literal
from . import intervals as iv

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["LIFECYCLE", "funnel", "parse_step"]

LIFECYCLE = ("stage:awareness", "stage:consideration", "moment:purchase", "moment:post_purchase",
             "stage:loyalty")
_KINDS = {"stage": "stage", "moment": "moment", "event": "event_type"}


def parse_step(step: str) -> tuple[str, str]:
    """(column, value) of a step."""
    kind, sep, value = step.partition(":")
    if sep and kind in _KINDS:
        return _KINDS[kind], value
    if sep:
        raise KeymomentsError(f"unknown funnel step kind {kind!r} in {step!r}; use stage:, moment:, "
                              "event: or a bare event type")
    return "event_type", step


#: the person values a funnel can be broken down by, and their attribute
_PERSON_VALUES = {"discovery": "discovery_source", "discovery_source": "discovery_source",
                  "segment": "segment"}


def _group_sql(by: str | None, unit: str) -> tuple[str, str]:
    """(expression over the step-1 event ``s`` and person tables, extra joins)."""
    if by is None:
        return "'all'", ""
    if by == "channel":
        return "s.channel", ""
    if by in _PERSON_VALUES:
        key, agg = _PERSON_VALUES[by], ("max_by" if by == "segment" else "min_by")
        return "pg.v", (f"LEFT JOIN (SELECT person_id, {agg}(attributes[{literal(key)}], ts) AS v FROM events "
                        f"WHERE attributes[{literal(key)}] IS NOT NULL GROUP BY person_id) pg "
                        f"ON pg.person_id = s.person_id")
    if by.startswith("attr:"):
        return f"s.attributes[{literal(by[5:])}]", ""
    raise KeymomentsError(f"cannot break a funnel down by {by!r}; use channel, discovery, segment "
                          "or attr:<key>")


def funnel(ws: Workspace, steps: list[str] | tuple[str, ...] = LIFECYCLE, *, by: str | None = None,
           within_days: float = 30.0, unit: str = "person", confidence: float = 0.95,
           correction: str = "holm", min_n: int = 30) -> Result:
    """Conversion through ``steps`` overall or by ``by`` (channel, discovery,
    segment, attr:<key>): one row per group and step with units reached, conversion
    from the start and from the previous step (Wilson intervals), drop-off, and
    median hours from the previous step and from the start. Groups' overall
    conversion is compared with the rest's (corrected); ``meta`` names the strongest
    and weakest.

    >>> import tempfile, keymoments as km
    >>> ws = km.init(tempfile.mkdtemp())
    >>> km.funnel(ws, ["page_view", "order_placed"]).meta["units"]
    0
    >>> ws.close()
    """
    if unit not in ("person", "journey"):
        raise KeymomentsError(f"unknown funnel unit {unit!r}; use person or journey")
    parsed = [parse_step(s) for s in steps]
    if len(parsed) < 2:
        raise KeymomentsError("a funnel needs at least two steps")
    table = "events" if unit == "person" else "journey_events"
    uid = "person_id" if unit == "person" else "journey_id"
    present, skipped = [], []
    for s, (col, val) in zip(steps, parsed):
        hit = ws.con.execute(f"SELECT 1 FROM {table} WHERE {col} = ? LIMIT 1", [val]).fetchone()
        (present if hit else skipped).append((s, col, val))
    if len(present) < 2 and not skipped:
        present = [(s, c, v) for s, (c, v) in zip(steps, parsed)]
    gexpr, gjoin = _group_sql(by, unit)
    attrs = "e.attributes" if unit == "person" else "ev.attributes"
    window = interval_days(within_days, "within_days")
    ctes, sel = [], []
    for i, (_, col, val) in enumerate(present):
        cond = f"e.{col} = {literal(val)} AND e.{uid} IS NOT NULL"
        if i == 0:
            ctes.append(f"s0 AS (SELECT e.{uid} AS u, min(e.ts) AS t, min(e.ts) AS t0 FROM {table} e "
                        f"WHERE {cond} GROUP BY e.{uid})")
        else:
            ctes.append(f"s{i} AS (SELECT p.u, min(e.ts) AS t, any_value(p.t0) AS t0 FROM s{i - 1} p "
                        f"JOIN {table} e ON e.{uid} = p.u AND e.ts >= p.t AND e.ts <= p.t0 + {window} "
                        f"WHERE {cond} GROUP BY p.u)")
        sel.append(f"s{i}.t AS t{i}")
    if len(present) < 2:
        rows = pa.table({"group": pa.array([], pa.string())})
    else:
        joins = " ".join(f"LEFT JOIN s{i} ON s{i}.u = s0.u" for i in range(1, len(present)))
        first = (f"(SELECT e.{uid} AS u, min_by(e.channel, e.ts) AS channel, "
                 f"min_by({attrs}, e.ts) AS attributes, any_value(e.person_id) AS person_id "
                 f"FROM {table} e {'' if unit == 'person' else 'JOIN events ev ON ev.event_id = e.event_id'} "
                 f"WHERE e.{present[0][1]} = {literal(present[0][2])} GROUP BY e.{uid})")
        # a person value: when the person's first event holding it came (see
        # _known_after_conversion)
        known, kjoin = "", ""
        if by in _PERSON_VALUES:
            known = ", k.first_ts AS _known_ts"
            kjoin = (f"LEFT JOIN (SELECT person_id, min(ts) AS first_ts FROM events WHERE "
                     f"attributes[{literal(_PERSON_VALUES[by])}] IS NOT NULL GROUP BY 1) k "
                     f"ON k.person_id = s.person_id")
        rows = ws.con.execute(f"""
            WITH {', '.join(ctes)}
            SELECT s0.u, coalesce(CAST({gexpr} AS VARCHAR), '(none)') AS "group", {', '.join(sel)}
                   {known}
            FROM s0 {joins} JOIN {first} s ON s.u = s0.u {gjoin} {kjoin}""").to_arrow_table()
    warnings = (_known_after_conversion(rows, _PERSON_VALUES[by], len(present) - 1)
                if by in _PERSON_VALUES and len(present) >= 2 else [])
    out, finals = _rows(rows, [p[0] for p in present], confidence)
    _compare(out, finals, correction, confidence, min_n)
    data = pa.Table.from_pylist(out) if out else pa.table({"group": pa.array([], pa.string())})
    ranked = sorted((f for f in finals if f["n"] >= min_n and f["group"] != "(none)"),
                    key=lambda f: -f["rate"])
    return Result(data, {
        "steps": [p[0] for p in present], "skipped_steps": [s[0] for s in skipped], "by": by,
        "unit": unit, "within_days": within_days, "units": int(rows.num_rows),
        "confidence": confidence, "correction": correction,
        "strongest": ranked[0]["group"] if len(ranked) > 1 and not warnings else None,
        "weakest": ranked[-1]["group"] if len(ranked) > 1 and not warnings else None,
        "method": ("ordered steps, first step-1 event as entry, each next step at or after the "
                   "previous within the window; Wilson intervals; each group's overall conversion "
                   "against the rest (pooled z-test, corrected)"),
        "warnings": warnings,
    })


def _known_after_conversion(rows: pa.Table, key: str, last: int) -> list[str]:
    """A warning when most units with a value of ``key`` get it only from events at or
    after their last step (``_known_ts`` against ``t<last>``): the value comes with
    the conversion (a won deal's segment), so grouping by it reads the outcome into
    the groups."""
    known = rows.column("_known_ts")
    valued = known.length() - known.null_count
    late = pc.sum(pc.greater_equal(known, rows.column(f"t{last}"))).as_py() or 0
    if not valued or late < valued / 2:
        return []
    return [f"{late:,} of the {valued:,} units with a {key} get it only from events at or after "
            f"their last step: it comes with the conversion (as a won deal's segment does), so "
            f"their groups convert by construction and '(none)' holds the others. Break the "
            f"funnel down by what is known at entry (channel, attr:<key> of the first step)"]


def _rows(rows: pa.Table, names: list[str], confidence: float):
    out, finals = [], []
    if rows.num_rows == 0:
        return out, finals
    groups = np.array(rows.column("group").to_pylist(), dtype=object)
    times = [rows.column(f"t{i}").cast(pa.timestamp("us", "UTC")).cast(pa.int64()).to_numpy(
        zero_copy_only=False) for i in range(len(names))]
    reached = [~np.isnan(t.astype(float)) if t.dtype.kind == "f" else ~rows.column(f"t{i}").is_null().to_numpy(
        zero_copy_only=False) for i, t in enumerate(times)]
    times = [np.where(r, t, 0).astype(float) / 3.6e9 for r, t in zip(reached, times)]  # hours
    for g in sorted(set(groups.tolist()), key=str):
        sel = groups == g
        n0 = int(sel.sum())
        prev_n = n0
        for i, name in enumerate(names):
            r = reached[i] & sel
            k = int(r.sum())
            low, high = iv.wilson(k, n0, confidence)
            plow, phigh = iv.wilson(k, prev_n, confidence)
            row = {"group": g, "step": i + 1, "step_name": name, "units": k,
                   "conversion": k / n0, "low": low, "high": high,
                   "from_previous": k / prev_n if prev_n else None, "from_previous_low": plow,
                   "from_previous_high": phigh, "drop_off": prev_n - k,
                   "median_hours_from_previous": (float(np.median(times[i][r] - times[i - 1][r]))
                                                  if i and k else None),
                   "median_hours_from_start": (float(np.median(times[i][r] - times[0][r]))
                                               if i and k else None)}
            out.append(row)
            prev_n = k
        finals.append({"group": g, "n": n0, "k": k, "rate": k / n0})
    return out, finals


def _compare(out, finals, correction, confidence, min_n):
    tot_n, tot_k = sum(f["n"] for f in finals), sum(f["k"] for f in finals)
    pv = [iv.two_proportion_test(f["k"], f["n"], tot_k - f["k"], tot_n - f["n"]) if len(finals) > 1
          else math.nan for f in finals]
    adj = iv.adjust_pvalues(pv, correction)
    by_group = {f["group"]: (p, q) for f, p, q in zip(finals, pv, adj)}
    for row in out:
        p, q = by_group[row["group"]]
        last = row["step"] == max(r["step"] for r in out if r["group"] == row["group"])
        row["p_value"] = None if (not last or math.isnan(p)) else p
        row["p_adjusted"] = None if (not last or math.isnan(q)) else q
        row["differs"] = bool(last and not math.isnan(q) and q < 1 - confidence)
        row["small_sample"] = next(f["n"] for f in finals if f["group"] == row["group"]) < min_n
