"""The engine for a few persons, in plain Python: what the live service runs on a
small group instead of the engine's SQL.

:func:`derive_small` computes, from a few persons' events, exactly the rows the
Ibis engine (:func:`keymoments.pipeline.derive`) derives for them: their journey
events, journeys and moments. It exists for speed only. The engine's statements
cost DuckDB ~10-15 ms each however few their rows (planning and building the
operators' states of a wide plan), ~75 ms for the six of an update, while a few
hundred events take a few milliseconds here. The Ibis engine stays the reference:
every rule below follows the expression it names, and
``tests/test_engine_small.py`` checks the two on random and planted events (floats
to 1e-9: sums may add in another order).

Semantics that follow the SQL the Ibis engine compiles to: NULL (``None``)
propagates through arithmetic and ``||``, a comparison with NULL is not true,
division by zero is IEEE (DuckDB: ``1.0 / 0.0`` is ``inf``), ``round`` is half away
from zero, ``row_number`` is 0-based, and strings order by code point.

>>> from datetime import datetime, timezone
>>> from keymoments.config import Config
>>> t = datetime(2026, 3, 1, 10, tzinfo=timezone.utc)
>>> rows = derive_small([{"event_id": "e1", "ts": t, "person_id": "p1",
...     "event_type": "order_placed", "refs": {"order": "o1"}, "moment": "purchase",
...     "rating": None}], Config(), [], t)
>>> [(j["journey_type"], j["status"]) for j in rows.journeys]
[('visit', 'open')]
>>> sorted(m["kind"] for m in rows.moments)
['first_interaction', 'purchase']
"""

from __future__ import annotations

import bisect
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from itertools import groupby
from typing import TYPE_CHECKING

import pyarrow as pa

from ..config.analysis import UNIT_SECONDS
from ..taxonomy import is_purchase_event
from ..valence.cache import text_hash
from ..valence.rules import WINDOW_KINDS, effective_rules

if TYPE_CHECKING:
    from ..config.analysis import JourneyType, ValenceRule
    from ..config.models import Config

__all__ = ["SmallDerived", "derive_small", "duck_round", "duck_str", "epoch_micros",
           "epoch_seconds", "seconds_between"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICRO = timedelta(microseconds=1)
#: tags that are not a first-of-journey business moment (see moment.extract)
_NOT_TAGS = ("first_interaction", "repeat_purchase")


@dataclass
class SmallDerived:
    """The derived rows (dicts keyed by the stored columns) of a few persons."""

    journey_events: list[dict] = field(default_factory=list)
    journeys: list[dict] = field(default_factory=list)
    moments: list[dict] = field(default_factory=list)

    def arrow(self, table: str) -> pa.Table:
        """One of the three as an Arrow table with the stored columns and types."""
        from ..store.schema import COLUMN_DOCS

        rows = getattr(self, table)
        return pa.table({c: pa.array([r[c] for r in rows], _ARROW[t.replace(" NOT NULL", "")])
                         for c, (t, _) in COLUMN_DOCS[table].items()})


#: the stored tables' column types as Arrow types
_ARROW = {"VARCHAR": pa.string(), "BIGINT": pa.int64(), "DOUBLE": pa.float64(),
          "BOOLEAN": pa.bool_(), "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
          "VARCHAR[]": pa.list_(pa.string())}


# ---------------------------------------------------------------- SQL semantics


def epoch_seconds(ts: datetime | None) -> float | None:
    """``epoch(ts)`` in DuckDB: seconds with microseconds, as a double."""
    return None if ts is None else ((ts - _EPOCH) // _MICRO) / 1e6


def epoch_micros(ts: datetime) -> int:
    """``epoch_us(ts)``: whole microseconds (:func:`keymoments.engine.expr.epoch_micros`)."""
    return (ts - _EPOCH) // _MICRO


def seconds_between(later: datetime | None, earlier: datetime | None) -> float | None:
    """Seconds from ``earlier`` to ``later`` from their whole microseconds, as
    :func:`keymoments.engine.expr.seconds_between`."""
    if later is None or earlier is None:
        return None
    return (epoch_micros(later) - epoch_micros(earlier)) / 1e6


def _div(a: float | None, b: float | None) -> float | None:
    """``a / b`` on doubles, IEEE at zero (as DuckDB)."""
    if a is None or b is None:
        return None
    if b == 0:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def _order(x: float) -> tuple:
    """DuckDB's order of doubles: NaN equals NaN and is above every number."""
    return (True, 0.0) if math.isnan(x) else (False, x)


def _gt(a, b) -> bool:
    """``a > b`` in SQL: not true when either is NULL; DuckDB's NaN order."""
    return a is not None and b is not None and _order(a) > _order(b)


def _lt(a, b) -> bool:
    """``a < b`` in SQL: not true when either is NULL; DuckDB's NaN order."""
    return a is not None and b is not None and _order(a) < _order(b)


def _ge(a, b) -> bool:
    return a is not None and b is not None and _order(a) >= _order(b)


def _least(bound: float, x: float | None) -> float | None:
    """Ibis ``clip(upper=bound)``: NULL stays NULL."""
    return None if x is None else min(bound, x) if not math.isnan(x) else bound


def _greatest(bound: float, x: float | None) -> float | None:
    return None if x is None else max(bound, x) if not math.isnan(x) else x


def _clip(x: float | None, lo: float, hi: float) -> float | None:
    return _greatest(lo, _least(hi, x))


def duck_round(x: float, digits: int = 1) -> float:
    """DuckDB's ``round(double, digits)``: ``std::round(x * 10^d) / 10^d`` (half
    away from zero), infinities and NaN unchanged.

    >>> duck_round(0.25), duck_round(-0.25), duck_round(2.45), round(0.25, 1)
    (0.3, -0.3, 2.5, 0.2)
    """
    power = 10.0 ** digits
    v = x * power
    if math.isinf(v) or math.isnan(v):
        return x
    a = abs(v)
    r = math.floor(a)
    if a - r >= 0.5:
        r += 1.0
    return math.copysign(r, v) / power


def duck_str(x: float) -> str:
    """``CAST(x AS VARCHAR)`` of a DuckDB double (shortest round trip, as ``repr``).

    >>> duck_str(3.0), duck_str(1e16), duck_str(float("inf"))
    ('3.0', '1e+16', 'inf')
    """
    return repr(float(x))


def _fmt(x: float | None) -> str | None:
    """valence.rules._fmt: one decimal from whole tenths (``12345678.0``, never
    ``1.2345678e+07``), beyond 10^15 or NaN as DuckDB writes the rounded double.

    >>> _fmt(12345678.04), _fmt(-0.04), _fmt(2.25), _fmt(-2.25), _fmt(1e16)
    ('12345678.0', '0.0', '2.3', '-2.3', '1e+16')
    """
    if x is None:
        return None
    if not abs(x) < 1e15:
        return duck_str(duck_round(x, 1))
    tenths = int(duck_round(x * 10, 0))
    sign = "-" if tenths < 0 else ""
    return f"{sign}{abs(tenths) // 10}.{abs(tenths) % 10}"


def _amount(size: float, unit: str) -> str:
    """valence.rules._amount: in ``unit`` from 1 of it (or 0), else in the largest
    smaller unit it makes 1 of as written with one decimal, down to seconds.

    >>> _amount(23.97 / 24, "days"), _amount(0.9, "hours"), _amount(0.5, "days")
    ('1.0 days', '54.0 minutes', '12.0 hours')
    """
    def one(x: float) -> bool:
        return duck_round(x * 10, 0) >= 10

    if one(size) or size == 0 or unit == "seconds":
        return f"{_fmt(size)} {unit}"
    secs = size * UNIT_SECONDS[unit]
    for u in ("days", "hours", "minutes"):
        if UNIT_SECONDS[u] < UNIT_SECONDS[unit] and one(secs / UNIT_SECONDS[u]):
            return f"{_fmt(secs / UNIT_SECONDS[u])} {u}"
    return f"{_fmt(secs)} seconds"


def _cat(*parts: str | None) -> str | None:
    """``a || b || ...``: NULL when any part is."""
    return None if any(p is None for p in parts) else "".join(parts)


def _join_reasons(parts: Iterable[str | None]) -> str | None:
    """``NULLIF(CONCAT_WS('; ', ...), '')``."""
    return "; ".join(p for p in parts if p is not None) or None


# RE2 (DuckDB's regexp_replace) has ASCII \w and \d: hence re.ASCII
_R_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+", re.ASCII)
_R_PHONE = re.compile(r"\+?(\(?\d{1,4}\)?[ .-]?)?\d{2,5}[ .-]\d{3,5}([ .-]?\d{2,5})+", re.ASCII)
_R_ID = re.compile(r"\d{6,}", re.ASCII)
_R_DOT0 = re.compile(r"\.0$")


def _redact(text: str) -> str:
    """:func:`keymoments.text.redact.redact_expr` (the coarse SQL redaction)."""
    if "@" in text:  # (the pattern needs one; Python's re backtracks long texts)
        text = _R_EMAIL.sub("[email]", text)
    text = _R_PHONE.sub("[phone]", text)
    return _R_ID.sub("[id]", text)


def _quantile_cont(values: list[float], q: float) -> float | None:
    """DuckDB's ``quantile_cont``: linear between the order statistics."""
    if not values:
        return None
    v = sorted(values)
    rn = (len(v) - 1) * q
    lo, hi = math.floor(rn), math.ceil(rn)
    if lo == hi:
        return v[lo]
    d = rn - lo  # (as DuckDB 1.5 interpolates: to the last bit, it decides a status)
    return v[lo] * (1 - d) + v[hi] * d


# ------------------------------------------------------------ journey assignment


def _journey_of(e: dict, types: Sequence[JourneyType], catch_all: str) -> tuple[str, str | None]:
    """(journey_type, journey_key) of an event (journey.assign: first type that
    claims it, else the catch-all)."""
    refs = e.get("refs") or {}
    for t in types:
        if t.key is not None:
            if refs.get(t.key) is not None:
                return t.name, refs[t.key]
            continue
        names = {*t.event_types, *t.start, *t.end}
        if e["event_type"] in names or (e.get("stage") is not None and e["stage"] in t.stages):
            return t.name, None
    return catch_all, None


def _assign(events: list[dict], config: Config, types: Sequence[JourneyType]) -> None:
    """Add journey_type, journey_key, journey_id, seq and channel_switch to each
    event (journey.assign.assign_journeys and _runs)."""
    jc = config.journeys
    gap_of = {t.name: t.gap for t in types}
    gap_of[jc.catch_all] = jc.catch_all_gap
    keyed = {t.name for t in types if t.key is not None}
    starts = {t.name: set(t.start) for t in types if t.key is None and t.start}
    ends = {t.name: set(t.end) for t in types if t.key is None and t.end}
    parts: dict[tuple, list[dict]] = defaultdict(list)
    for e in events:
        jtype, key = _journey_of(e, types, jc.catch_all)
        e["journey_type"], e["journey_key"] = jtype, key if jtype in keyed else None
        parts[(e["person_id"], jtype, e["journey_key"])].append(e)
    for (person, jtype, key), rows in parts.items():
        rows.sort(key=lambda r: (r["ts"], r["event_id"]))
        gap = gap_of.get(jtype)
        run = run_start = 0
        prev = None
        for rn, e in enumerate(rows):
            new = (prev is None
                   or (gap is not None
                       and epoch_micros(e["ts"]) - epoch_micros(prev["ts"]) > gap * 1e6)
                   or e["event_type"] in starts.get(jtype, ())
                   or (prev["event_type"] in ends.get(jtype, ())))
            if new:
                run, run_start = run + 1, rn
            e["seq"] = rn - run_start
            e["journey_id"] = text_hash(f"{jtype}|{person}|{key or ''}|{run}")[:20]
            pc, ch = _switch_channel(prev), _switch_channel(e)
            e["channel_switch"] = int(e["seq"] > 0 and ch is not None
                                      and pc is not None and ch != pc)
            prev = e


def _switch_channel(e: dict | None) -> str | None:
    """The channel a switch is counted on (journey.assign): none for a feedback event."""
    if e is None or e.get("stage") == "feedback":
        return None
    return e.get("channel")


# ---------------------------------------------------------------------- valence


def _window_inputs(events: list[dict], rules: list[ValenceRule]) -> dict[int, dict[str, float]]:
    """Per rule index, per event id, the window input (valence.rules.add_window_inputs):
    repeat contacts' previous contact time, first-contact resolutions' interruptions."""
    out: dict[int, dict[str, float]] = {}
    for i, rule in enumerate(rules):
        if rule.kind not in WINDOW_KINDS:
            continue
        got: dict[str, float] = {}
        if rule.kind == "repeat_contact":
            kinds, group = set(rule.event_types), "person_id"
        else:
            kinds, group = {*rule.event_types, *rule.interrupting}, "journey_id"
        parts: dict[str, list[dict]] = defaultdict(list)
        for e in events:
            if e["event_type"] in kinds:
                parts[e[group]].append(e)
        for rows in parts.values():
            rows.sort(key=lambda r: (r["ts"], r["event_id"]))
            if rule.kind == "repeat_contact":
                for prev, e in zip(rows, rows[1:]):
                    got[e["event_id"]] = epoch_micros(prev["ts"])
            else:
                # interruptions and earlier resolutions before each resolution (and
                # the count so far on an interruption), as valence.rules does
                count = 0
                for e in rows:
                    resolution = e["event_type"] in rule.event_types
                    count += 1 if resolution or e["event_type"] in rule.interrupting else 0
                    got[e["event_id"]] = count - resolution
        out[i] = got
    return out


def _reason(rule: ValenceRule, default: str | None, event_type: str, gap: str | None = None,
            value: str | None = None) -> str | None:
    """valence.rules._reason: the template with its tokens filled (no reason and no
    ``default``: the name, the tokens its kind does not fill kept as written)."""
    template = rule.reason or (rule.name if default is None else default)
    filled = {"{gap}": gap, "{value}": value, "{event_type}": event_type}
    return re.sub(r"\{gap\}|\{value\}|\{event_type\}",
                  lambda m: filled[m.group(0)] if filled[m.group(0)] is not None else m.group(0),
                  template)


def _rule(e: dict, i: int, rule: ValenceRule, windows: dict) -> tuple[float | None, str | None]:
    """(valence, reason) of rule ``i`` on event ``e`` (valence.rules.rule_inputs and
    rule_outputs)."""
    if e["event_type"] not in rule.event_types:
        return None, None
    measures = e.get("measures") or {}
    if rule.kind == "constant":
        return float(rule.valence), _reason(rule, None, e["event_type"])
    if rule.kind == "expectation_gap":
        if rule.measure is None:
            actual, promised = epoch_seconds(e["ts"]), epoch_seconds(e.get("expected_ts"))
        else:
            m, ev = measures.get(rule.measure), e.get("expected_value")
            actual = None if m is None else m * UNIT_SECONDS[rule.measure_unit]
            promised = None if ev is None else ev * UNIT_SECONDS[rule.expected_unit]
        if actual is None or promised is None:
            return None, None
        if rule.relative:
            gap = _div(actual - promised, promised if promised != 0 else None)
        else:
            gap = _div(actual - promised, UNIT_SECONDS[rule.unit])
        if gap is None:
            return None, None
        tol, full = rule.tolerance, float(rule.full_at)
        early_by = tol if rule.early_by is None else rule.early_by
        start = rule.late_start
        if _gt(gap, tol):
            late = _least(1.0, start + _div((1 - start) * (gap - tol), full - tol))
            v, word = _greatest(rule.late_floor, -late), " late"
        elif _gt(-early_by, gap):
            v, word = rule.early_valence, " early"
        else:
            side = " late" if gap > 0 else " early" if gap < 0 else ""
            v, word = rule.on_time_valence, side + " (on time)"
        amount = (_fmt(abs(gap) * 100) + "%") if rule.relative else _amount(abs(gap), rule.unit)
        return v, _reason(rule, "{gap} against the promise", e["event_type"],
                      gap=amount + word)
    if rule.kind == "measure_above":
        m = measures.get(rule.measure)
        if not _gt(m, rule.threshold):
            return None, None
        return float(rule.valence), _reason(rule, None, e["event_type"], value=_fmt(m))
    if rule.kind == "repeat_contact":
        prev = windows[i].get(e["event_id"])
        if prev is None or not (epoch_micros(e["ts"]) - prev <= rule.window * 1e6):
            return None, None
        return float(rule.valence), _reason(rule, None, e["event_type"])
    # first_contact_resolution
    interrupted = windows[i].get(e["event_id"], 0) > 0
    alt = rule.else_valence
    if interrupted:
        if alt is None:
            return None, None
        after = " or ".join([*rule.interrupting, "an earlier resolution"])
        return float(alt), f"resolved, but only after {after}"
    return float(rule.valence), _reason(rule, None, e["event_type"])


def _score(events: list[dict], config: Config,
           text_scores: Mapping[str, tuple[float | None, float | None]]) -> None:
    """Add v_feedback, v_rules, v_text, valence and valence_reason to each event
    (valence.score.score_events)."""
    vc = config.valence
    rules = effective_rules(vc)
    windows = _window_inputs(events, rules)
    w = vc.weights
    wf, wr, wt = float(w.get("feedback", 1.0)), float(w.get("rules", 1.0)), float(w.get("text", 0.5))
    for e in events:
        rating = e.get("rating")
        if rating is None:
            vf, why_f = None, None
        else:
            lo, hi = e.get("rating_min"), e.get("rating_max")
            scale = e.get("rating_scale")
            centre = float(vc.neutral[scale]) if scale in vc.neutral else (
                None if lo is None or hi is None else (lo + hi) / 2)
            if _ge(rating, centre):
                vf = _div(rating - centre, None if hi is None or hi - centre == 0 else hi - centre)
            else:
                vf = _div(None if centre is None else rating - centre,
                          None if centre is None or lo is None or centre - lo == 0 else centre - lo)
            vf = _clip(0.0 if vf is None else vf, -1.0, 1.0)
            why_f = _cat("rated ", _R_DOT0.sub("", duck_str(rating)), "/",
                         None if hi is None else _R_DOT0.sub("", duck_str(hi)),
                         " (", scale, ")")
        fired, total, reasons = 0, 0.0, []
        for i, rule in enumerate(rules):
            v, why = _rule(e, i, rule, windows)
            if v is not None:
                fired, total = fired + 1, total + v
            reasons.append(why if v is not None else None)
        vr = total / fired if fired else None
        text = e.get("text")
        vt = None
        if text is not None:
            valence, confidence = text_scores.get(text_hash(text), (None, None))
            vt = valence if _gt(confidence, 0) else None
        why_t = None
        if vt is not None:
            tone = "positive" if _gt(vt, 0.2) else "negative" if _gt(-0.2, vt) else "neutral"
            why_t = f"text reads {tone}: '{_redact(text)[:60]}'"
        num = ((0.0 if vf is None else vf) * wf + (0.0 if vr is None else vr) * wr
               + (0.0 if vt is None else vt) * wt)
        den = (vf is not None) * wf + (vr is not None) * wr + (vt is not None) * wt
        e["v_feedback"], e["v_rules"], e["v_text"] = vf, vr, vt
        e["valence"] = _clip(_div(num, den), -1.0, 1.0) if den > 0 else None
        parts = ((why_f, wf), (_join_reasons(reasons), wr), (why_t, wt))  # weighed parts only
        e["valence_reason"] = _join_reasons([r for r, wp in parts if wp > 0])


# ------------------------------------------------------------------- journeys


def _candidates(rows: list[dict], exclude: set[str], before_outcome: bool = True) -> list[dict]:
    """journey.summary.moment_candidates, for one journey's rows (by seq)."""
    def is_fb(e):
        return e.get("stage") is not None and e["stage"] in exclude

    if not before_outcome:
        return [e for e in rows if e["valence"] is not None and not is_fb(e)]
    first_fb = min((e["seq"] for e in rows if is_fb(e) and e["v_feedback"] is not None),
                   default=None)
    return [e for e in rows if e["valence"] is not None and not is_fb(e)
            and (first_fb is None or e["seq"] < first_fb)]


def _summarize(by_journey: dict[str, list[dict]], events: list[dict], config: Config,
               types: Sequence[JourneyType], as_of: datetime,
               typical: Mapping[str, float], weights: dict | None = None) -> list[dict]:
    """journey.summary.summarize_journeys."""
    jc, oc, mc = config.journeys, config.outcomes, config.moments
    exclude = set(mc.exclude_stages)
    ends = {t.name: set(t.end) for t in types if t.end}
    starts = {t.name: set(t.start) for t in types if t.start}
    last: dict[str, datetime] = {}
    churn: dict[str, list[datetime]] = {}  # (each person's churn events, in time order)
    for e in events:
        p = e["person_id"]
        last[p] = max(last[p], e["ts"]) if p in last else e["ts"]
        if e.get("stage") == "churn":
            churn.setdefault(p, []).append(e["ts"])
    for times in churn.values():
        times.sort()
    purchase = set(oc.purchase_types)
    out = []
    for jid, rows in by_journey.items():
        first = rows[0]
        jtype = first["journey_type"]
        fbs = [e for e in rows if e.get("stage") is not None and e["stage"] in exclude
               and e["v_feedback"] is not None]
        fb = fbs[0] if fbs else None
        channels = sorted({e["channel"] for e in rows if e.get("channel") is not None}) or None
        start_ts = min(e["ts"] for e in rows)
        end_ts = max(e["ts"] for e in rows)
        c = _candidates(rows, exclude)
        j = {
            "journey_id": jid, "journey_type": jtype, "journey_key": first["journey_key"],
            "person_id": first["person_id"], "start_ts": start_ts, "end_ts": end_ts,
            "n_events": len(rows), "channels": channels,
            "channel_switches": sum(e["channel_switch"] for e in rows),
            "has_start": any(e["event_type"] in starts.get(jtype, ()) for e in rows),
            "has_end": any(e["event_type"] in ends.get(jtype, ()) for e in rows),
            "outcome_ts": fb["ts"] if fb else None,
            "outcome_rating": fb.get("rating") if fb else None,
            "outcome_scale": fb.get("rating_scale") if fb else None,
            "outcome_valence": fb["v_feedback"] if fb else None,
            "n_valenced": len(c),
        }
        if c:
            vals = [e["valence"] for e in c]
            n = float(len(c))
            sx = sy = sxy = sxx = 0.0
            for k, v in enumerate(vals):
                sx, sy, sxy, sxx = sx + k, sy + v, sxy + k * v, sxx + k * k
            denom = n * sxx - sx * sx
            j.update(first_v=vals[0], end_v=vals[-1], peak_v=max(vals), valley_v=min(vals),
                     mean_v=sy / n, trend_v=(n * sxy - sx * sy) / denom if denom > 0 else None)
            intense = j["peak_v"] if abs(j["peak_v"]) >= abs(j["valley_v"]) else j["valley_v"]
            j["remembered"], j["remembered_model"] = (intense + j["end_v"]) / 2, "peak_end"
            if weights is not None:  # journey.summary._learned, term by term
                from ..moment.remembered import FEATURES

                score = float(weights["intercept"])
                for f in FEATURES:
                    x = j[f] if j[f] is not None else 0.0  # (only trend_v can be None)
                    score = score + float(weights[f][0]) * x
                j["remembered"], j["remembered_model"] = _clip(score, -1.0, 1.0), "learned"
        else:
            j.update(first_v=None, end_v=None, peak_v=None, valley_v=None, mean_v=None,
                     trend_v=None, remembered=None, remembered_model="peak_end")
        j["duration_s"] = seconds_between(end_ts, start_ts)
        j["idle_s"] = seconds_between(as_of, end_ts)
        j["as_of"] = as_of
        # a purchase's first purchase event (None: the journey is no purchase)
        j["_pts"] = (min((e["ts"] for e in rows if is_purchase_event(e.get("moment"))),
                         default=None) if jtype in purchase else None)
        out.append(j)

    # typical durations: the given ones, else those of these journeys
    own: dict[str, list[float]] = defaultdict(list)
    for j in out:
        if j["has_end"]:
            own[j["journey_type"]].append(j["duration_s"])
    p90 = {t: _quantile_cont(v, 0.9) for t, v in own.items()}
    p90.update({t: v for t, v in typical.items() if v is not None})
    stall_cfg = {t.name: t.stall_after for t in types if t.stall_after is not None}
    abandon = {t.name: t.abandon_after for t in types}

    # the person's next purchase: the earliest first purchase event of the purchases
    # that start strictly later (not those of the same start instant)
    by_person: dict[str, list[dict]] = defaultdict(list)
    for j in out:
        by_person[j["person_id"]].append(j)
    for js in by_person.values():
        js.sort(key=lambda j: j["start_ts"], reverse=True)
        nxt = None
        for _, tied in groupby(js, key=lambda j: j["start_ts"]):
            tied = list(tied)
            for j in tied:
                j["_next"] = nxt
            for j in tied:
                pts = j.pop("_pts")
                if pts is not None:
                    nxt = pts if nxt is None else min(nxt, pts)
    for j in out:
        jtype, idle = j["journey_type"], j["idle_s"]
        stall = stall_cfg.get(jtype, p90.get(jtype))
        if j["has_end"]:
            status = "completed"
        elif jtype == jc.catch_all:
            status = "completed" if idle > jc.catch_all_gap else "open"
        elif idle >= abandon.get(jtype, float(jc.catch_all_gap)):
            status = "abandoned"
        elif _ge(idle, stall):
            status = "stalled"
        else:
            status = "open"
        j["status"] = status
        nxt = j.pop("_next")
        rep = oc.repurchase_within
        # both outcomes are known once their whole window has passed (as in the SQL)
        if _lt(idle, rep):
            j["repurchased"] = None
        else:
            j["repurchased"] = (nxt is not None
                                and seconds_between(nxt, j["end_ts"]) <= rep)
        person = j["person_id"]
        plast = last.get(person)
        # the person's first churn event from the journey's start on
        times = churn.get(person, [])
        at = bisect.bisect_left(times, j["start_ts"])
        after = seconds_between(times[at], j["start_ts"]) if at < len(times) else None
        if _lt(idle, oc.churn_within):
            j["churned"] = None
        elif after is not None and after <= oc.churn_within:
            j["churned"] = True
        elif (plast is not None and plast <= j["end_ts"]
              and seconds_between(as_of, plast) >= oc.inactive_churn_after):
            j["churned"] = True
        else:
            j["churned"] = False
    return out


# --------------------------------------------------------------------- moments

_MOMENT_COLS = ("journey_id", "journey_type", "person_id", "event_id", "ts", "event_type",
                "stage", "channel", "agent", "valence")


def _moment(e: dict, kind: str, category: str) -> dict:
    return {**{c: e.get(c) for c in _MOMENT_COLS}, "kind": kind, "category": category,
            "reason": e["valence_reason"]}


def _moments(by_journey: dict[str, list[dict]], je: list[dict], config: Config) -> list[dict]:
    """moment.extract.extract_moments."""
    exclude = set(config.moments.exclude_stages)
    out = []
    for rows in by_journey.values():
        c = _candidates(rows, exclude, before_outcome=False)
        if c:
            out.append(_moment(c[0], "first_impression", "experience"))
            out.append(_moment(max(c, key=lambda e: (e["valence"], -e["seq"])), "peak",
                               "experience"))
            out.append(_moment(min(c, key=lambda e: (e["valence"], e["seq"])), "valley",
                               "experience"))
            out.append(_moment(c[-1], "farewell", "experience"))
        seen: set[str] = set()
        for e in rows:
            tag = e.get("moment")
            if tag is not None and tag not in _NOT_TAGS and tag not in seen:
                seen.add(tag)
                out.append(_moment(e, tag, "business"))
    first: dict[str, dict] = {}
    for e in je:
        p = e["person_id"]
        if p not in first or (e["ts"], e["event_id"]) < (first[p]["ts"], first[p]["event_id"]):
            first[p] = e
    out += [_moment(e, "first_interaction", "business") for e in first.values()]
    # each purchase's first purchase event; the person's purchases after the first
    purchase = set(config.outcomes.purchase_types)
    purchases: dict[str, list[dict]] = defaultdict(list)
    for rows in by_journey.values():
        if rows[0]["journey_type"] in purchase:
            buy = next((e for e in rows if is_purchase_event(e.get("moment"))), None)
            if buy is not None:
                purchases[buy["person_id"]].append(buy)
    for rows in purchases.values():
        rows.sort(key=lambda e: (e["ts"], e["event_id"]))
        out += [_moment(e, "repeat_purchase", "business") for e in rows[1:]]
    return out


# ------------------------------------------------------------------------ all

_JE_COLS = ("event_id", "journey_id", "journey_type", "journey_key", "person_id", "seq",
            "channel_switch", "ts", "event_type", "stage", "moment", "channel", "agent",
            "language", "v_feedback", "v_rules", "v_text", "valence", "valence_reason")


def derive_small(events: Iterable[Mapping], config: Config, types: Sequence[JourneyType],
                 as_of: datetime, text_scores: Mapping[str, tuple] | None = None,
                 typical: Mapping[str, float] | None = None,
                 remembered_weights: dict | None = None) -> SmallDerived:
    """The journey events, journeys and moments of the persons of ``events`` (every
    event of each of them; missing keys read as NULL), as the engine derives them at
    ``as_of``. ``text_scores``: ``md5(text) -> (valence, confidence)`` of the texts'
    scores (the ``text_scores`` rows of the scorer); ``typical``: journey type ->
    typical (p90) duration in seconds standing in for that of these journeys (see
    :func:`keymoments.pipeline.derive`); ``remembered_weights``: the learned
    remembered-score model scoring the journeys (None: peak-end)."""
    rows = [{**e} for e in events if e.get("person_id") is not None]
    for e in rows:
        for c in ("stage", "moment", "channel", "agent", "language", "refs", "rating",
                  "rating_scale", "rating_min", "rating_max", "text", "measures",
                  "expected_ts", "expected_value"):
            e.setdefault(c, None)
    _assign(rows, config, types)
    _score(rows, config, text_scores or {})
    by_journey: dict[str, list[dict]] = defaultdict(list)
    for e in sorted(rows, key=lambda e: (e["journey_id"], e["seq"])):
        by_journey[e["journey_id"]].append(e)
    je = [{c: e[c] for c in _JE_COLS} for e in rows]
    journeys = _summarize(by_journey, rows, config, types, as_of, typical or {},
                          remembered_weights)
    moments = _moments(by_journey, rows, config)
    return SmallDerived(je, journeys, moments)
