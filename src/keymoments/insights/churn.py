"""Churn over time: survival curves and hazards by segment and by moments experienced.

Each person is followed from their first event. Churn is, by ``kind``:

- ``contractual``: a churn-stage event (a cancellation); people without one are
  censored at the data's last event;
- ``inactivity`` (non-contractual): no activity for ``inactive_days`` before the
  data's end; the time to churn is then the time to their last activity, and the
  others are censored.

With ``tenure_measure`` the time comes from a measure instead (a snapshot table with
``tenure_months``, for example), in the measure's own unit (``unit_days`` is for
times from events), and churn is the contractual event.

Groups (``by``): ``segment``, ``discovery``, ``attr:<key>`` (the person's latest
value), ``first_valley`` (whether the person's first keyed journey, an order or a
ticket, had a negative valley: the moments they experienced; people with none are
grouped apart), ``had_valley`` (whether any of their keyed journeys had a valley
below -0.25; descriptive only: people followed longer have more chances of one,
so read it with ``first_valley``), or any journey dimension of their first journey
(``channel``, ``journey_type``...).

The estimators are lifelines' (Kaplan-Meier with exponential Greenwood intervals,
Cox proportional hazards, log-rank tests), not written here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import KeymomentsError, MissingExtraError
from ..results import Result
from ..sql import days, interval_days, literal
from .dimensions import check_dimension, column_name, dimension_sql, event_keys

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["ChurnResult", "churn", "churn_table"]


@dataclass(frozen=True)
class ChurnResult:
    """Survival ``curves`` (group, time, survival, interval, at risk) and a
    ``summary`` per group (people, churned, median time, survival at the horizons,
    hazard rate, hazard ratio against the largest group), plus ``meta``."""

    curves: Result
    summary: Result
    meta: dict = field(default_factory=dict)


def churn_table(ws: Workspace, *, by: str | None = None, kind: str = "contractual",
                inactive_days: float = 90.0, tenure_measure: str | None = None,
                unit_days: float = 1.0, churn_events: list[str] | None = None) -> pa.Table:
    """One row per person: ``group``, ``duration`` (in units of ``unit_days``) and
    ``churned`` (1 = event observed, 0 = censored). ``churn_events``: the event types
    that end a contract (default: every churn-stage event, which the default
    taxonomy also gives order cancellations)."""
    if kind not in ("contractual", "inactivity"):
        raise KeymomentsError(f"unknown churn kind {kind!r}; use contractual or inactivity")
    if tenure_measure and unit_days != 1.0:
        raise KeymomentsError(
            f"a tenure measure is read in its own unit (months for a measure of months), so "
            f"unit_days ({unit_days:g}) does not apply to {tenure_measure!r}: leave it out")
    per_unit = f"86400.0 / {days(unit_days, 'unit_days')}"
    is_churn = (f"e.event_type IN ({', '.join(literal(t) for t in churn_events)})" if churn_events
                else "e.stage = 'churn'")
    end = "(SELECT max(ts) FROM events)"
    if tenure_measure:
        m = literal(tenure_measure)
        known = event_keys(ws, "measures")
        if tenure_measure not in known:
            raise KeymomentsError(
                f"no event has the measure {tenure_measure!r} (--tenure-measure); measures in "
                f"the events: {', '.join(known[:20]) or 'none'}")
        dur = f"max(e.measures[{m}])"
        ev = f"max(CASE WHEN {is_churn} THEN 1 ELSE 0 END)"
        base = (f"SELECT e.person_id, {dur} AS duration, {ev} AS churned FROM events e "
                f"WHERE e.person_id IS NOT NULL GROUP BY e.person_id "
                f"HAVING max(e.measures[{m}]) IS NOT NULL")
    elif kind == "contractual":
        base = (f"SELECT e.person_id, (epoch(coalesce(min(e.ts) FILTER (WHERE {is_churn}), "
                f"any_value(x.end_ts))) - epoch(min(e.ts))) / {per_unit} AS duration, "
                f"max(CASE WHEN {is_churn} THEN 1 ELSE 0 END) AS churned "
                f"FROM events e CROSS JOIN (SELECT {end} AS end_ts) x "
                f"WHERE e.person_id IS NOT NULL GROUP BY e.person_id")
    else:
        window = interval_days(inactive_days, "inactive_days")
        base = (f"SELECT e.person_id, CASE WHEN max(e.ts) < any_value(x.end_ts) - {window} "
                f"THEN (epoch(max(e.ts)) - epoch(min(e.ts))) / {per_unit} "
                f"ELSE (epoch(any_value(x.end_ts)) - epoch(min(e.ts))) / {per_unit} END AS duration, "
                f"CASE WHEN max(e.ts) < any_value(x.end_ts) - {window} THEN 1 ELSE 0 END AS churned "
                f"FROM events e CROSS JOIN (SELECT {end} AS end_ts) x "
                f"WHERE e.person_id IS NOT NULL GROUP BY e.person_id")
    if by is None:
        grp, joins = "'all'", ""
    elif by == "first_valley":
        grp = ("CASE WHEN fv.has_valley = 1 THEN 'first journey had a valley' "
               "WHEN fv.has_valley = 0 THEN 'first journey without a valley' END")
        joins = ("LEFT JOIN (SELECT f.person_id, max(CASE WHEN m.valence < 0 THEN 1 ELSE 0 END) AS has_valley "
                 "FROM (SELECT person_id, min_by(journey_id, start_ts) AS journey_id FROM journeys "
                 "WHERE journey_key IS NOT NULL GROUP BY person_id) f LEFT JOIN moments m ON m.journey_id = f.journey_id "
                 "AND m.kind = 'valley' GROUP BY f.person_id) fv ON fv.person_id = b.person_id")
    elif by == "had_valley":
        grp = ("CASE WHEN hv.worst < -0.25 THEN 'had a valley' WHEN hv.worst IS NOT NULL "
               "THEN 'no valley' END")
        joins = ("LEFT JOIN (SELECT j.person_id, min(coalesce(m.valence, 0)) AS worst FROM journeys j "
                 "LEFT JOIN moments m ON m.journey_id = j.journey_id AND m.kind = 'valley' "
                 "WHERE j.journey_key IS NOT NULL GROUP BY j.person_id) hv ON hv.person_id = b.person_id")
    else:
        dim = check_dimension(by)
        if dim.startswith("attr:"):
            key = literal(column_name(dim))
            grp = "pa.v"
            joins = (f"LEFT JOIN (SELECT person_id, max_by(attributes[{key}], ts) AS v FROM events "
                     f"WHERE attributes[{key}] IS NOT NULL GROUP BY person_id) pa "
                     f"ON pa.person_id = b.person_id")
        else:
            dsql, _ = dimension_sql([dim])
            grp = f'fd."{column_name(dim)}"'
            joins = ("LEFT JOIN (SELECT person_id, min_by(journey_id, start_ts) AS journey_id "
                     "FROM journeys GROUP BY person_id) f ON f.person_id = b.person_id "
                     f"LEFT JOIN ({dsql}) fd ON fd.journey_id = f.journey_id")
    table = ws.con.execute(f"""
        SELECT b.person_id, coalesce(CAST({grp} AS VARCHAR), '(none)') AS "group",
               b.duration, b.churned
        FROM ({base}) b {joins} WHERE b.duration IS NOT NULL ORDER BY b.person_id""").to_arrow_table()
    if table.num_rows and not (pc.max(table.column("duration")).as_py() or 0) > 0:
        raise KeymomentsError(
            f"every one of the {table.num_rows:,} people is followed for no time: all their "
            "events are at one time (a snapshot export?). Take the time from a measure of "
            "tenure (tenure_measure, --tenure-measure), or load events over time")
    return table


def churn(ws: Workspace, *, by: str | None = None, kind: str = "contractual",
          inactive_days: float = 90.0, tenure_measure: str | None = None, unit_days: float = 1.0,
          churn_events: list[str] | None = None, horizons: tuple[float, ...] | None = None,
          confidence: float = 0.95, min_group: int = 10) -> ChurnResult:
    """Survival (share not yet churned) over time, by group, with hazards.

    ``horizons``: the times (in the time unit) the summary gives survival at, as
    ``survival_<h>``; by default 30, 90, 180 and 365 days for times from events (in
    units of ``unit_days``), and a quarter, half, three quarters and all of the
    longest observed time for a tenure measure (72 months: 18, 36, 54, 72). A horizon
    past the longest observed time is left out (a curve says nothing there).

    >>> import tempfile, keymoments as km
    >>> ws = km.init(tempfile.mkdtemp())
    >>> km.churn(ws)
    Traceback (most recent call last):
    ...
    keymoments.errors.KeymomentsError: no people to follow: load and build the workspace first
    >>> ws.close()
    """
    try:
        from lifelines import CoxPHFitter, KaplanMeierFitter
        from lifelines.statistics import multivariate_logrank_test
    except ImportError:  # pragma: no cover (a runtime dependency)
        raise MissingExtraError("lifelines", "survival") from None
    table = churn_table(ws, by=by, kind=kind, inactive_days=inactive_days,
                        tenure_measure=tenure_measure, unit_days=unit_days,
                        churn_events=churn_events)
    if table.num_rows == 0:
        raise KeymomentsError("no people to follow: load and build the workspace first")
    groups = np.array(table.column("group").to_pylist(), dtype=object)
    T = np.maximum(table.column("duration").to_numpy().astype(float), 0.0)
    E = table.column("churned").to_numpy().astype(int)
    names, counts = np.unique(groups, return_counts=True)
    keep = [g for g, c in zip(names, counts) if c >= min_group]
    dropped = [g for g, c in zip(names, counts) if c < min_group]
    if not keep:
        raise KeymomentsError(f"no group has {min_group} people; lower min_group or choose another `by`")
    reference = max(keep, key=lambda g: (counts[list(names).index(g)], str(g)))
    horizons, beyond = _horizons(horizons, T, tenure_measure, unit_days)
    curves, summary = [], []
    alpha = 1 - confidence
    hr = _hazard_ratios(CoxPHFitter, T, E, groups, keep, reference, alpha) if len(keep) > 1 else {}
    for g in keep:
        sel = groups == g
        km = KaplanMeierFitter(alpha=alpha).fit(T[sel], E[sel], label=str(g))
        sf = km.survival_function_.iloc[:, 0]
        ci = km.confidence_interval_survival_function_
        at_risk = km.event_table["at_risk"]
        for t, s, lo, hi, n in zip(sf.index, sf.values, ci.iloc[:, 0].values, ci.iloc[:, 1].values,
                                   at_risk.reindex(sf.index).fillna(0).values):
            curves.append({"group": str(g), "time": float(t), "survival": float(s),
                           "low": float(lo), "high": float(hi), "at_risk": int(n)})
        exposure, events = float(T[sel].sum()), int(E[sel].sum())
        rate = events / exposure if exposure > 0 else math.nan
        row = {"group": str(g), "people": int(sel.sum()), "churned": events,
               "churn_share": events / int(sel.sum()),
               "median_time": _finite(km.median_survival_time_),
               "hazard_rate": rate,
               "hazard_rate_low": _poisson(events, alpha / 2) / exposure if exposure > 0 else None,
               "hazard_rate_high": _poisson(events + 1, 1 - alpha / 2) / exposure if exposure > 0 else None}
        for h in horizons:
            lo_hi = ci[(ci.index <= h)]
            row[f"survival_{h:g}"] = float(km.survival_function_at_times(h).iloc[0])
            row[f"survival_{h:g}_low"] = float(lo_hi.iloc[-1, 0]) if len(lo_hi) else None
            row[f"survival_{h:g}_high"] = float(lo_hi.iloc[-1, 1]) if len(lo_hi) else None
        row.update(hr.get(g, {"hazard_ratio": 1.0 if g == reference else None,
                              "hazard_ratio_low": None, "hazard_ratio_high": None, "p_value": None}))
        summary.append(row)
    logrank = None
    if len(keep) > 1:
        sel = np.isin(groups, keep)
        res = multivariate_logrank_test(T[sel], groups[sel].astype(str), E[sel])
        logrank = {"statistic": float(res.test_statistic), "p_value": float(res.p_value),
                   "df": int(res.degrees_of_freedom)}
    warnings = ([f"horizons past the longest observed time ({float(T.max()):g}) left out: "
                 f"{', '.join(f'{h:g}' for h in beyond)}"] if beyond else [])
    if not E.sum() and kind == "contractual":
        warnings.append("nobody churned: contractual churn is a churn-stage event (or a "
                        "--churn-event type) and there is none here; for purchase histories "
                        "use --kind inactivity")
    at_zero = int(((T == 0) & (E == 1)).sum())
    if E.sum() and at_zero > E.sum() / 2:
        warnings.append(
            f"{at_zero:,} of {int(E.sum()):,} churned people churned at time 0 (their first "
            "event was their last, or their churn): the curves say little about when people "
            "leave; use a tenure measure (--tenure-measure) or data with history per person")
    meta = {"kind": kind if not tenure_measure else f"contractual (tenure from {tenure_measure})",
            "warnings": warnings, "by": by, "churn_events": churn_events or "stage churn",
            "n": int(len(T)), "churned": int(E.sum()), "unit_days": unit_days,
            "horizons": list(horizons),
            "inactive_days": inactive_days if kind == "inactivity" else None,
            "reference_group": str(reference), "logrank": logrank, "confidence": confidence,
            "groups_dropped": [str(g) for g in dropped], "min_group": min_group,
            "method": ("Kaplan-Meier (lifelines; exponential Greenwood interval), Cox proportional "
                       "hazards on group indicators for hazard ratios, multivariate log-rank test; "
                       "hazard rate = churns per unit of time at risk (exact Poisson interval)")}
    return ChurnResult(Result(pa.Table.from_pylist(curves), dict(meta)),
                       Result(pa.Table.from_pylist(summary), dict(meta)), meta)


def _horizons(given: tuple[float, ...] | None, T: np.ndarray, tenure_measure: str | None,
              unit_days: float) -> tuple[list[float], list[float]]:
    """The horizons to report (in the time unit) and those left out past the longest
    observed time.

    >>> _horizons(None, np.array([0.0, 72.0]), "tenure_months", 1.0)
    ([18.0, 36.0, 54.0, 72.0], [])
    >>> _horizons(None, np.array([0.0, 400.0]), None, 7.0)
    ([4.3, 12.9, 25.7, 52.1], [])
    >>> _horizons((30.0, 90.0), np.array([0.0, 60.0]), None, 1.0)
    ([30.0], [90.0])
    """
    longest = float(T.max()) if len(T) else 0.0
    if given is None:
        if tenure_measure:
            given = tuple(float(round(longest * q)) for q in (0.25, 0.5, 0.75, 1.0))
        else:
            given = tuple(round(d / unit_days, 1) for d in (30.0, 90.0, 180.0, 365.0))
    given = sorted(dict.fromkeys(h for h in given if h > 0))
    return [h for h in given if h <= longest], [h for h in given if h > longest]


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _poisson(k: int, q: float) -> float:
    from scipy.stats import chi2

    return float(chi2.ppf(q, 2 * k) / 2) if k > 0 else 0.0


def _hazard_ratios(CoxPHFitter, T, E, groups, keep, reference, alpha) -> dict:
    import pandas as pd

    sel = np.isin(groups, keep)
    others = [g for g in keep if g != reference]
    frame = pd.DataFrame({f"g{i}": (groups[sel] == g).astype(float) for i, g in enumerate(others)})
    frame["T"], frame["E"] = T[sel], E[sel]
    if frame["E"].sum() == 0:
        return {}
    cph = CoxPHFitter(alpha=alpha, penalizer=1e-6).fit(frame, "T", "E")
    s = cph.summary
    out = {}
    for i, g in enumerate(others):
        r = s.loc[f"g{i}"]
        out[g] = {"hazard_ratio": float(r["exp(coef)"]),
                  "hazard_ratio_low": float(r[f"exp(coef) lower {100 * (1 - alpha):g}%"]),
                  "hazard_ratio_high": float(r[f"exp(coef) upper {100 * (1 - alpha):g}%"]),
                  "p_value": float(r["p"])}
    return out
