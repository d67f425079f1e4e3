"""CX metrics by dimension and period, each with its interval, sample size, a
small-sample warning and a test of whether it differs, corrected for multiple
comparisons.

Every metric is one SQL query over the workspace tables that returns one row per
unit (survey answer, journey or person) with its dimensions, its time and its
value; the sufficient statistics are summed in SQL (portable: counts, sums,
``date_trunc``), and the intervals and tests are computed on the small per-group
result (see :mod:`.intervals`). Spark note: times are differenced with DuckDB's
``epoch()`` (Spark: ``unix_micros() / 1e6``) and intervals written ``INTERVAL '1 day'``.

=====================  ===============================  ================================
metric                 unit                             value
=====================  ===============================  ================================
``csat``               CSAT answers (csat5)             share of the top two boxes (4-5)
``nps``                NPS answers (nps10)              % promoters (9-10) - % detractors (0-6)
``ces``                CES answers (ces7, 7 = easy)     mean; ``share_easy`` = 5-7
``stars``              star ratings (stars5: reviews)   mean; ``share_top2`` = 4-5 stars
``churn``              people                           share churned: a churn-stage event
                                                        (contractual) or, with
                                                        ``inactive_days``, no activity for that
                                                        long before the data's end
``repeat_purchase``    purchases whose repurchase       another purchase within
                       window has passed (journeys of   ``outcomes.repurchase_within``
                       ``outcomes.purchase_types``
                       holding a purchase event)
``conversion``         browsing journeys                a purchase (its purchase event) made
                                                        during the session or within a day
                                                        of its end, before the person's
                                                        next session
``fcr``                completed issue journeys         resolved once, no transfer or reopening
``first_response``     issue journeys with a reply      hours to the first agent event (median)
``resolution_time``    resolved issue journeys          hours from opening to the first end event
                                                        (median)
=====================  ===============================  ================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from ..errors import KeymomentsError
from ..results import Result
from ..sql import interval_days, literal
from ..taxonomy import purchase_event_sql
from . import intervals as iv
from .dimensions import column_name, dimension_sql, event_keys, period_sql

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["METRICS", "Metric", "metrics"]

_INTERRUPTING = ("transferred", "ticket_reopened", "Require upgrade")


@dataclass(frozen=True)
class Metric:
    """A metric: its unit query, the statistic, and how it reads."""

    name: str
    kind: str  # proportion | nps | mean | median
    definition: str
    unit: str
    #: the rating scale of an ``answers`` metric
    rating_scale: str | None = None
    #: a mean's second figure: the share of answers at or above a value, by name
    share: tuple[str, float] | None = None
    #: the range of a mean (``meta["scale"]``)
    range: str | None = None

    @property
    def bounds(self) -> tuple[float, float] | None:
        """The lowest and highest answer of a mean's scale (its intervals stay inside).

        >>> METRICS["stars"].bounds, METRICS["csat"].bounds
        ((1.0, 5.0), None)
        """
        if self.range is None:
            return None
        lo, hi = self.range.split("..")
        return (float(lo), float(hi))


METRICS = {m.name: m for m in (
    Metric("csat", "proportion", "share of CSAT answers in the top two boxes (4-5 of 5)", "answers",
           "csat5"),
    Metric("nps", "nps", "% promoters (9-10) minus % detractors (0-6) of NPS answers", "answers",
           "nps10"),
    Metric("ces", "mean", "mean CES answer (1-7, 7 = very easy); share_easy = answers 5-7",
           "answers", "ces7", ("share_easy", 5), "1..7"),
    Metric("stars", "mean", "mean star rating (1-5 stars, reviews); share_top2 = ratings of 4-5 "
           "stars", "answers", "stars5", ("share_top2", 4), "1..5"),
    Metric("churn", "proportion", "share of people who churned", "people"),
    Metric("repeat_purchase", "proportion", "share of purchases (purchase journeys holding a "
           "purchase event) followed by another purchase within the repurchase window, of those "
           "whose window has passed", "journeys"),
    Metric("conversion", "proportion", "share of browsing journeys with a purchase made (its "
           "purchase event) during the session or within a day of its end, before the person's "
           "next session",
           "journeys"),
    Metric("fcr", "proportion", "share of completed issue journeys resolved once, with no "
           "transfer or reopening (first-contact resolution)", "journeys"),
    Metric("first_response", "median", "hours from opening to the first agent event", "journeys"),
    Metric("resolution_time", "median", "hours from opening to the first end event (resolution)",
           "journeys"),
)}


def _unknown_attributes(ws: Workspace, dims: list[str]) -> list[str]:
    """A warning per ``attr:<key>`` dimension no event has (a misspelt key groups
    everything under no value)."""
    asked = [d.split(":", 1)[1] for d in dims if d.startswith("attr:")]
    if not asked:
        return []
    known = event_keys(ws, "attributes")
    return [f"no event has the attribute {k!r}, so every unit is in one group without a "
            f"value; attributes in the events: {', '.join(known[:20]) or 'none'}"
            for k in asked if k not in known]


def _resolutions(ws: Workspace) -> tuple[str, ...]:
    """The events that resolve an issue: the first-contact rule's, else the defaults'."""
    from ..valence.rules import effective_rules

    for rule in effective_rules(ws.config.valence):
        if getattr(rule, "kind", None) == "first_contact_resolution" and rule.event_types:
            return tuple(rule.event_types)
    return ("ticket_resolved", "Resolve ticket")


def _interrupting(ws: Workspace) -> tuple[str, ...]:
    """The events that make a resolution not first-contact: transfers and reopenings
    (the metric's definition), and those the workspace's first-contact rule adds. The
    rule's own list alone may leave transfers out (a valence choice), which would
    count transferred tickets as resolved on first contact."""
    extra: tuple[str, ...] = ()
    try:
        from ..valence.rules import effective_rules

        for rule in effective_rules(ws.config.valence):
            if getattr(rule, "kind", None) == "first_contact_resolution" and rule.interrupting:
                extra = tuple(rule.interrupting)
                break
    except Exception:  # noqa: BLE001 (the documented default applies)
        pass
    return tuple(dict.fromkeys(_INTERRUPTING + extra))


def _lit(values) -> str:
    return ", ".join(literal(str(v)) for v in values)


def unit_sql(ws: Workspace, metric: str, dims: list[str], *, inactive_days: float | None = None,
             issue_type: str = "issue_resolution") -> tuple[str, list[str]]:
    """One row per unit with its dimensions, ``_ts`` and the value columns
    (``y``; for NPS also ``det``)."""
    dsql, dims = dimension_sql(dims)
    cols = ", ".join(f'd."{column_name(d)}"' for d in dims)
    cols = cols + ", " if cols else ""
    m = METRICS[metric]
    if m.unit == "answers":
        if m.kind == "mean":
            y = (f"e.rating AS y, CASE WHEN e.rating >= {float(m.share[1])} THEN 1.0 ELSE 0.0 END "
                 "AS top")
        else:
            y = {"csat": "CASE WHEN e.rating >= e.rating_max - 1 THEN 1.0 ELSE 0.0 END AS y",
                 "nps": "CASE WHEN e.rating >= 9 THEN 1.0 ELSE 0.0 END AS y, "
                        "CASE WHEN e.rating <= 6 THEN 1.0 ELSE 0.0 END AS det"}[metric]
        return (f"SELECT {cols}e.ts AS _ts, {y} "
                f"FROM events e JOIN journey_events je ON je.event_id = e.event_id "
                f"JOIN ({dsql}) d ON d.journey_id = je.journey_id "
                f"WHERE e.rating_scale = '{m.rating_scale}' AND e.rating IS NOT NULL"), dims
    if metric == "churn":
        if inactive_days is None:
            y = ("CASE WHEN EXISTS (SELECT 1 FROM events c WHERE c.person_id = p.person_id "
                 "AND c.stage = 'churn') THEN 1.0 ELSE 0.0 END")
        else:
            y = (f"CASE WHEN p.last_seen < (SELECT max(ts) FROM events) - "
                 f"{interval_days(inactive_days, 'inactive_days')} THEN 1.0 ELSE 0.0 END")
        first = ("SELECT person_id, min_by(journey_id, start_ts) AS journey_id FROM journeys "
                 "GROUP BY person_id")
        return (f"SELECT {cols}p.first_seen AS _ts, {y} AS y FROM people p "
                f"LEFT JOIN ({first}) f ON f.person_id = p.person_id "
                f"LEFT JOIN ({dsql}) d ON d.journey_id = f.journey_id"), dims
    base = f"FROM ({dsql}) d JOIN journeys j ON j.journey_id = d.journey_id"
    if metric == "repeat_purchase":
        # ``repurchased`` is known (not NULL) only once the journey's whole window has
        # passed, either way (journey.summary), so the known ones are an unbiased set;
        # a purchase: a journey of a purchase type that holds a purchase event (as the
        # engine's, keymoments.taxonomy.PURCHASE_MOMENTS), not a review-only one
        types = ws.config.outcomes.purchase_types
        bought = (f"j.journey_type IN ({_lit(types)}) AND EXISTS "
                  f"(SELECT 1 FROM journey_events x WHERE x.journey_id = j.journey_id "
                  f"AND {purchase_event_sql('x.moment')})") if types else "FALSE"
        return (f"SELECT {cols}j.start_ts AS _ts, "
                f"CASE WHEN j.repurchased THEN 1.0 ELSE 0.0 END AS y "
                f"{base} WHERE {bought} AND j.repurchased IS NOT NULL"), dims
    if metric == "conversion":
        # a purchase (as for repeat_purchase: a journey of a purchase type that holds a
        # purchase event, at its first) is credited to the person's last session that
        # began before it (and ended at most a day before it), not to every earlier
        # session; a review or a ticket of an older order converts nothing
        types = ws.config.outcomes.purchase_types
        buys = (f"SELECT person_id, min(ts) AS buy_ts FROM journey_events x "
                f"WHERE x.journey_type IN ({_lit(types)}) AND {purchase_event_sql('x.moment')} "
                f"GROUP BY x.journey_id, x.person_id") if types else (
                "SELECT NULL::VARCHAR AS person_id, NULL::TIMESTAMPTZ AS buy_ts WHERE false")
        y = (f"CASE WHEN EXISTS (SELECT 1 FROM ({buys}) p WHERE p.person_id = j.person_id "
             "AND p.buy_ts >= j.start_ts AND p.buy_ts <= j.end_ts + INTERVAL '1 day' "
             "AND NOT EXISTS (SELECT 1 FROM journeys b WHERE b.person_id = j.person_id "
             "AND b.journey_type = 'browsing' AND b.start_ts > j.start_ts "
             "AND b.start_ts <= p.buy_ts)) THEN 1.0 ELSE 0.0 END")
        return f"SELECT {cols}j.start_ts AS _ts, {y} AS y {base} WHERE j.journey_type = 'browsing'", dims
    issue = f"j.journey_type = '{issue_type}'"
    if metric == "fcr":
        # not first-contact: a transfer or reopening, or a second resolution
        again = (f"(SELECT count(*) FROM journey_events x WHERE x.journey_id = j.journey_id "
                 f"AND x.event_type IN ({_lit(_resolutions(ws))})) > 1")
        y = (f"CASE WHEN EXISTS (SELECT 1 FROM journey_events x WHERE x.journey_id = j.journey_id "
             f"AND x.event_type IN ({_lit(_interrupting(ws))})) OR {again} THEN 0.0 ELSE 1.0 END")
        return f"SELECT {cols}j.start_ts AS _ts, {y} AS y {base} WHERE {issue} AND j.status = 'completed'", dims
    if metric == "first_response":
        first = ("SELECT journey_id, min(ts) AS reply_ts FROM journey_events "
                 "WHERE agent IS NOT NULL AND seq > 0 GROUP BY journey_id")
        return (f"SELECT {cols}j.start_ts AS _ts, "
                f"(epoch(r.reply_ts) - epoch(j.start_ts)) / 3600.0 AS y {base} "
                f"JOIN ({first}) r ON r.journey_id = j.journey_id WHERE {issue}"), dims
    if metric == "resolution_time":
        from ..pipeline import journey_types

        ends = [e for t in journey_types(ws) if t.name == issue_type for e in (t.end or [])]
        if not ends:
            raise KeymomentsError(f"journey type {issue_type!r} has no end events, so resolution "
                                  "time is undefined; give it `end:` events in keymoments.yaml")
        done = (f"SELECT journey_id, min(ts) AS end_ts FROM journey_events "
                f"WHERE event_type IN ({_lit(ends)}) GROUP BY journey_id")
        return (f"SELECT {cols}j.start_ts AS _ts, "
                f"(epoch(r.end_ts) - epoch(j.start_ts)) / 3600.0 AS y {base} "
                f"JOIN ({done}) r ON r.journey_id = j.journey_id WHERE {issue}"), dims
    raise AssertionError(metric)


def _other_scales(ws: Workspace, metric: str) -> str:
    """Why a survey metric has no answers: the ratings there are, by scale."""
    scale = METRICS[metric].rating_scale
    found = ws.con.execute("SELECT rating_scale, count(*) FROM events WHERE rating IS NOT NULL "
                           "GROUP BY 1 ORDER BY 2 DESC").fetchall()
    there = (", ".join(f"{s} ({n:,})" for s, n in found) if found
             else "none: no source maps a rating")
    return (f"no {scale} answers: {metric} counts ratings on the {scale} scale only "
            f"(ratings here: {there}); map the survey's rating with scale: {scale}")


def _one_purchase_each(ws: Workspace) -> list[str]:
    """A warning when nobody has a second purchase at all: repeat purchase then reads
    0 whatever the customers do, as when the export's customer id is one per order."""
    types = ws.config.outcomes.purchase_types
    buyers, purchases = ws.con.execute(
        f"SELECT count(DISTINCT person_id), count(DISTINCT journey_id) FROM journey_events x "
        f"WHERE x.journey_type IN ({_lit(types)}) AND {purchase_event_sql('x.moment')}"
    ).fetchone()
    if not purchases or purchases > buyers:
        return []
    return [f"none of the {buyers:,} people with a purchase has a second one, so repeat "
            "purchase reads 0 whatever the customers do: check that the purchases' "
            "identifier is the customer's and not one per order (the marketplace export's "
            "customer_id is per order; its customer_unique_id is the customer), or that "
            "the export covers more than one order per customer"]


#: the journey type a journey metric counts
_JOURNEY_TYPE = {"fcr": "issue_resolution", "first_response": "issue_resolution",
                 "resolution_time": "issue_resolution", "repeat_purchase": "purchase",
                 "conversion": "browsing"}


def journey_types_here(ws: Workspace) -> str:
    """The journey types of the workspace with their counts, most first (for messages
    about an analysis that found no journey of the type it counts)."""
    found = ws.con.execute("SELECT journey_type, count(*) FROM journeys GROUP BY 1 "
                           "ORDER BY 2 DESC, 1").fetchall()
    return ", ".join(f"{t} ({k:,})" for t, k in found) if found else f"none: {ws.next_step()}"


def _other_journey_types(ws: Workspace, metric: str) -> str:
    """Why a journey metric has no journeys: the journey types there are."""
    want = _JOURNEY_TYPE[metric]
    return (f"no journeys for {metric}: it counts {want} journeys ({METRICS[metric].definition}); "
            f"journey types here: {journey_types_here(ws)}")


def _no_purchase_events(ws: Workspace, metric: str) -> list[str]:
    """A warning when no journey of the purchase types holds a purchase event (the
    export's purchase event is not tagged ``moment: purchase``): no journey is a
    purchase, so repeat_purchase has none and conversion reads 0."""
    types = ws.config.outcomes.purchase_types
    if not types:
        return [f"outcomes.purchase_types is empty: no journey is a purchase, so {metric} "
                "finds none"]
    typed = f"journey_type IN ({_lit(types)})"
    n, bought = ws.con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE EXISTS (SELECT 1 FROM journey_events x "
        f"WHERE x.journey_id = j.journey_id AND {purchase_event_sql('x.moment')})) "
        f"FROM journeys j WHERE j.{typed}").fetchone()
    if not n or bought:
        return []
    found = ws.con.execute(f"SELECT event_type, count(*) FROM journey_events WHERE {typed} "
                           "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5").fetchall()
    kinds = ", ".join(f"{t} ({k:,})" for t, k in found)
    return [f"none of the {n:,} journeys of the purchase types ({', '.join(types)}) holds a "
            "purchase event (one the taxonomy tags moment: purchase), so none is a purchase "
            f"and {metric} counts none: tag the export's purchase event in "
            f"taxonomy.event_types (event types in those journeys: {kinds}), e.g. "
            "'<type>: {stage: purchase, moment: purchase}', then run 'keymoments build' "
            "(it re-tags the stored events with the changed taxonomy first)"]


def _too_short_for_inactivity(ws: Workspace, inactive_days: float) -> list[str]:
    """A warning when the data spans less than the inactivity window: nobody can have
    been inactive that long (a snapshot export reads 0 churn)."""
    span = ws.con.execute("SELECT (epoch(max(ts)) - epoch(min(ts))) / 86400.0 FROM events"
                          ).fetchone()[0]
    if span is None or span >= inactive_days:
        return []
    return [f"the events span {span:.1f} days, less than --inactive-days {inactive_days:g}: "
            "nobody can have been inactive that long, so churn reads 0 (a snapshot export? "
            "'keymoments churn --tenure-measure' reads churn from a tenure measure)"]


def _mostly_without_value(data: list[dict], dims: list[str], names: list[str], n: int,
                          unit: str) -> list[str]:
    """A warning per ``attr:`` dimension most units have no value of (they are all in
    one ``(none)`` group, and every other group is compared with it)."""
    out = []
    for dim, col in zip(dims, names):
        if not dim.startswith("attr:") or not n:
            continue
        without = sum(r["n"] for r in data if r.get(col) is None)
        if without > n / 2:
            out.append(f"{without:,} of {n:,} {unit} ({without / n:.0%}) have no {col!r} in "
                       "their journey: they are the group (none)")
    return out


def _iso_time(name: str, value, timezone: str = "UTC") -> str:
    """``value`` as an ISO 8601 time with its offset, or an error naming ``name``. A
    time without an offset is a local time in ``timezone`` (the workspace's, in which
    the periods are cut).

    >>> _iso_time("since", "2018-02-01"), _iso_time("until", "2018-02-01T10:00:00Z")
    ('2018-02-01T00:00:00+00:00', '2018-02-01T10:00:00+00:00')
    >>> _iso_time("since", "2018-02-01", "America/Sao_Paulo")  # summer time then
    '2018-02-01T00:00:00-02:00'
    >>> _iso_time("since", "2018-13-01")
    Traceback (most recent call last):
    ...
    keymoments.errors.KeymomentsError: since: '2018-13-01' is not an ISO 8601 time (month must be in 1..12); write e.g. 2018-01-31 or 2018-01-31T09:00:00Z
    """
    from datetime import datetime
    from zoneinfo import ZoneInfo

    try:
        t = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        return (t if t.tzinfo else t.replace(tzinfo=ZoneInfo(timezone))).isoformat()
    except ValueError as exc:
        raise KeymomentsError(f"{name}: {value!r} is not an ISO 8601 time ({exc}); write "
                              "e.g. 2018-01-31 or 2018-01-31T09:00:00Z") from None


def metrics(ws: Workspace, metric: str = "csat", *, by: str | list[str] | None = None,
            period: str | None = None, since: str | None = None, until: str | None = None,
            inactive_days: float | None = None, confidence: float = 0.95,
            correction: str = "holm", min_n: int = 30) -> Result:
    """A CX metric overall or by dimensions (``by``) and ``period`` (day, week,
    month, quarter, year), with intervals, sample sizes and difference tests.

    Each row is compared with the rest of its period (when cut by dimensions) or,
    with only a period, with the previous period; ``p_adjusted`` is corrected over
    all the rows' comparisons (``correction``: holm, bh or none) and
    ``differs`` says whether it is below ``1 - confidence``. Rows with fewer than
    ``min_n`` units are flagged ``small_sample`` and listed in ``meta["warnings"]``.

    >>> import tempfile, keymoments as km
    >>> ws = km.init(tempfile.mkdtemp())
    >>> r = km.metrics(ws, "nps", by="channel")
    >>> len(r), r.meta["metric"], r.meta["n"]
    (0, 'nps', 0)
    >>> ws.close()
    """
    if metric not in METRICS:
        raise KeymomentsError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    m = METRICS[metric]
    by = [by] if isinstance(by, str) else list(by or [])
    usql, dims = unit_sql(ws, metric, by, inactive_days=inactive_days)
    names = [column_name(d) for d in dims]
    keys = [f'"{n}"' for n in names]
    per = period_sql(period, "_ts", ws.config.timezone)
    if per:
        if "period" in (n.lower() for n in names):
            raise KeymomentsError("attr:period and --period would both be a column named "
                                  "'period': give the attribute another name in the source's "
                                  "mapping, or leave out one of them")
        keys.append(f"{per} AS period")
    where = []
    params: list = []
    for name, value, op in (("since", since, ">="), ("until", until, "<")):
        if value:
            where.append(f"_ts {op} CAST(? AS TIMESTAMPTZ)")
            params.append(_iso_time(name, value, ws.config.timezone))
    w = ("WHERE " + " AND ".join(where)) if where else ""
    group = [k.split(" AS ")[-1] for k in keys]
    out_cols = names + (["period"] if per else [])
    if m.kind == "median":
        sel = ", ".join(keys + ["y"]) if keys else "y"
        rows = ws.con.execute(f"SELECT {sel} FROM ({usql}) u {w}", params).to_arrow_table()
        data = _median_rows(rows, out_cols, confidence)
    else:
        extra = {"nps": ", sum(det) AS det",
                 "mean": ", sum(y * y) AS yy, sum(top) AS top"}.get(m.kind, "")
        sel = ", ".join(keys + ["count(*) AS n", "sum(y) AS k"]) + extra
        gb = f"GROUP BY {', '.join(group)} ORDER BY {', '.join(group)}" if group else ""
        rows = ws.con.execute(f"SELECT {sel} FROM ({usql}) u {w} {gb}", params).to_arrow_table()
        if not group and rows.num_rows == 1 and rows.column("n")[0].as_py() == 0:
            rows = rows.slice(0, 0)
        data = _stat_rows(m, rows, out_cols, confidence)
    overall = _overall(m, data, confidence)
    data = _compare(m.kind, data, names, bool(per), correction, confidence, m.bounds)
    n = int(sum(r["n"] for r in data))
    small = [r for r in data if r["n"] < min_n]
    for r in data:
        r["small_sample"] = r["n"] < min_n
    warnings = ([f"{len(small)} of {len(data)} rows have fewer than {min_n} {m.unit}: read their "
                 "intervals, not their values"] if small else [])
    if n == 0 and m.unit == "answers":
        warnings.append(_other_scales(ws, metric))
    elif n == 0 and m.unit == "journeys":
        warnings.append(_other_journey_types(ws, metric))
    if metric == "churn" and inactive_days is not None:
        warnings += _too_short_for_inactivity(ws, inactive_days)
    elif metric == "churn" and n and not ws.con.execute(
            "SELECT EXISTS (SELECT 1 FROM events WHERE stage = 'churn')").fetchone()[0]:
        warnings.append(
            "no event is in the churn stage, so churn reads 0: contractual churn is a "
            "cancellation the export records (tag its event type with stage: churn in "
            "taxonomy.event_types, then 'keymoments build'); for purchase histories read "
            "churn as inactivity (--inactive-days)")
    if metric in ("repeat_purchase", "conversion"):
        warnings += _no_purchase_events(ws, metric)
    if metric == "repeat_purchase" and n:
        warnings += _one_purchase_each(ws)
    warnings += _mostly_without_value(data, dims, names, n, m.unit)
    warnings += _unknown_attributes(ws, dims)
    table = pa.Table.from_pylist(data) if data else pa.table({c: pa.array([], pa.string()) for c in
                                                               [*out_cols, "n", "value", "low", "high"]})
    meta = {"metric": metric, "definition": m.definition, "unit": m.unit, "by": names,
            "period": period, "n": n, "confidence": confidence, "correction": correction,
            "method": _METHOD[m.kind], "overall": overall, "min_n": min_n, "warnings": warnings,
            "scale": "-100..100" if m.kind == "nps" else ("hours" if m.kind == "median" else
                                                          (m.range or "0..1"))}
    if metric == "churn":
        meta["churn_kind"] = "contractual" if inactive_days is None else f"inactive {inactive_days} days"
    return Result(table, meta)


_METHOD = {
    "proportion": "Wilson score interval; pooled two-proportion z-test (Fisher's exact test when "
                  "an expected count is under 5)",
    "nps": "adjusted-Wald interval on the multinomial difference; z-test on the NPS difference",
    "mean": "Student t interval within the scale (answers without spread: Wilson interval of "
            "the mean's place on the scale); Welch t-test; the share beside it: Wilson",
    "median": "order-statistic (binomial) interval of the median; Mann-Whitney U test",
}


def _stat_rows(m: Metric, rows: pa.Table, cols: list[str], confidence: float) -> list[dict]:
    kind = m.kind
    out = []
    for r in rows.to_pylist():
        n, k = int(r["n"]), float(r["k"] or 0)
        row = {c: r[c] for c in cols}
        row["n"] = n
        if kind == "proportion":
            low, high = iv.wilson(k, n, confidence)
            row.update(value=k / n if n else math.nan, low=low, high=high, k=int(k))
        elif kind == "nps":
            det = float(r["det"] or 0)
            value, low, high = iv.nps_interval(k, n - k - det, det, confidence)
            row.update(value=value, low=low, high=high, promoters=int(k), passives=int(n - k - det),
                       detractors=int(det))
        else:  # mean: k is the sum of answers
            value, low, high = iv.mean_interval(n, k, float(r["yy"] or 0), confidence,
                                                scale=m.bounds)
            row.update(value=value, low=low, high=high, _s=k, _ss=float(r["yy"] or 0),
                       _top=float(r["top"] or 0))
            row.update(_share(m, row["_top"], n, confidence))
        out.append(row)
    return out


def _median_rows(rows: pa.Table, cols: list[str], confidence: float) -> list[dict]:
    y = rows.column("y").to_numpy(zero_copy_only=False).astype(float)
    if cols:
        keys = list(zip(*[rows.column(c).to_pylist() for c in cols]))
    else:
        keys = [()] * len(y)
    groups: dict[tuple, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    out = []
    for k in sorted(groups, key=lambda t: tuple((x is None, str(x)) for x in t)):
        vals = y[groups[k]]
        med, low, high = iv.median_interval(vals, confidence)
        row = dict(zip(cols, k))
        row.update(n=len(vals), value=med, low=low, high=high, mean=float(np.nanmean(vals)),
                   _values=vals)
        out.append(row)
    return out


def _pvalue(kind: str, a: dict, b: dict, scale: tuple[float, float] | None = None) -> float:
    if kind == "proportion":
        return iv.two_proportion_test(a["k"], a["n"], b["k"], b["n"])
    if kind == "nps":
        return iv.nps_difference_test((a["promoters"], a["passives"], a["detractors"]),
                                      (b["promoters"], b["passives"], b["detractors"]))
    if kind == "mean":
        return iv.welch_test(a["n"], a["_s"], a["_ss"], b["n"], b["_s"], b["_ss"], scale=scale)
    from scipy import stats

    if len(a["_values"]) == 0 or len(b["_values"]) == 0:
        return math.nan
    return float(stats.mannwhitneyu(a["_values"], b["_values"], alternative="two-sided").pvalue)


def _pool(kind: str, rows: list[dict]) -> dict:
    """The rows summed into one (the sufficient statistics)."""
    pooled: dict = {"n": sum(r["n"] for r in rows)}
    for key in ("k", "promoters", "passives", "detractors", "_s", "_ss"):
        if rows and key in rows[0]:
            pooled[key] = sum(r[key] for r in rows)
    if kind == "median":
        pooled["_values"] = np.concatenate([r["_values"] for r in rows]) if rows else np.array([])
    return pooled


def _compare(kind: str, data: list[dict], names: list[str], has_period: bool, correction: str,
             confidence: float, scale: tuple[float, float] | None = None) -> list[dict]:
    pvals = []
    for r in data:
        if names:
            same = [o for o in data if o is not r and (not has_period or o["period"] == r["period"])]
            r["compared_to"] = "rest of period" if has_period else "rest"
            p = _pvalue(kind, r, _pool(kind, same), scale) if same else math.nan
        elif has_period:
            prev = [o for o in data if o["period"] < r["period"]]
            r["compared_to"] = "previous period"
            p = _pvalue(kind, r, prev[-1], scale) if prev else math.nan
        else:
            r["compared_to"] = None
            p = math.nan
        pvals.append(p)
    adj = iv.adjust_pvalues(pvals, correction)
    for r, p, q in zip(data, pvals, adj):
        r["p_value"] = None if math.isnan(p) else p
        r["p_adjusted"] = None if math.isnan(q) else q
        r["differs"] = (not math.isnan(q)) and q < 1 - confidence
        for private in ("_s", "_ss", "_top", "_values"):
            r.pop(private, None)
    return data


def _share(m: Metric, top: float, n: int, confidence: float) -> dict:
    """A mean's share of answers at or above its value (``share_easy``: 5-7 of a CES)
    with its Wilson interval."""
    name = m.share[0]
    low, high = iv.wilson(top, n, confidence)
    return {name: top / n if n else math.nan, f"{name}_low": low, f"{name}_high": high}


def _overall(m: Metric, data: list[dict], confidence: float) -> dict:
    kind = m.kind
    n = sum(r["n"] for r in data)
    if not n:
        return {"n": 0, "value": None, "low": None, "high": None}
    if kind == "proportion":
        k = sum(r["k"] for r in data)
        low, high = iv.wilson(k, n, confidence)
        return {"n": n, "value": k / n, "low": low, "high": high}
    if kind == "nps":
        value, low, high = iv.nps_interval(sum(r["promoters"] for r in data),
                                           sum(r["passives"] for r in data),
                                           sum(r["detractors"] for r in data), confidence)
        return {"n": n, "value": value, "low": low, "high": high}
    if kind == "mean":
        value, low, high = iv.mean_interval(n, sum(r["_s"] for r in data),
                                            sum(r["_ss"] for r in data), confidence,
                                            scale=m.bounds)
        return {"n": n, "value": value, "low": low, "high": high,
                **_share(m, sum(r["_top"] for r in data), n, confidence)}
    value, low, high = iv.median_interval(np.concatenate([r["_values"] for r in data]), confidence)
    return {"n": n, "value": value, "low": low, "high": high}
