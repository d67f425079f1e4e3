"""Operational valence rules as Ibis column expressions (see
:class:`~keymoments.config.analysis.ValenceRule` for the kinds).

Each rule yields a ``(valence, reason)`` pair of columns, NULL where it does not
apply. The packaged defaults are in ``keymoments/defaults/valence.yaml``.

>>> gap_valence(0.2, tolerance=0.5, full_at=7, on_time=0.3, early=0.4)
0.3
>>> gap_valence(3.75, tolerance=0.5, full_at=7, on_time=0.3, early=0.4)
-0.5
>>> gap_valence(-2, tolerance=0.5, full_at=7, on_time=0.3, early=0.4)
0.4
>>> gap_valence(2, tolerance=0, full_at=4, on_time=0.8, early=0.9, late_start=0.4, early_by=1)
-0.7
>>> gap_valence(-0.5, tolerance=0, full_at=4, on_time=0.8, early=0.9, late_start=0.4, early_by=1)
0.8
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import ibis
import ibis.expr.types as ir
from ruamel.yaml import YAML

from ..config.analysis import UNIT_SECONDS, ValenceConfig, ValenceRule
from ..engine.expr import epoch_micros, epoch_seconds

__all__ = ["gap_valence", "rule_inputs", "rule_outputs", "rule_window_inputs", "window_columns",
           "effective_rules", "default_rules", "WINDOW_KINDS", "add_window_inputs"]

_F = "float64"


def gap_valence(gap: float, tolerance: float, full_at: float, on_time: float, early: float,
                late_start: float = 0.0, late_floor: float = -1.0,
                early_by: float | None = None) -> float:
    """The valence of an expectation gap (the reference for the column expression):
    later than ``tolerance`` falls linearly from ``-late_start`` to -1 at ``full_at``
    (floored at ``late_floor``); earlier than ``early_by`` (default: the tolerance)
    scores ``early``; otherwise ``on_time``."""
    early_by = tolerance if early_by is None else early_by
    if gap > tolerance:
        late = late_start + (1 - late_start) * (gap - tolerance) / (full_at - tolerance)
        return round(max(-min(1.0, late), late_floor), 12)
    if gap < -early_by:
        return early
    return on_time


@lru_cache(maxsize=1)
def default_rules() -> tuple[ValenceRule, ...]:
    """The rules that ship with keymoments."""
    text = resources.files("keymoments").joinpath("defaults/valence.yaml").read_text("utf-8")
    data = YAML(typ="safe").load(text)
    return tuple(ValenceRule.model_validate(r) for r in data["rules"])


def effective_rules(config: ValenceConfig) -> list[ValenceRule]:
    """Default rules (unless disabled) with the workspace's rules replacing same names."""
    own = {r.name: r for r in config.rules}
    base = [r for r in default_rules() if r.name not in own] if config.use_default_rules else []
    return [*base, *config.rules]


def _fmt(x: ir.NumericValue) -> ir.StringValue:
    """``x`` with one decimal, written the same on every engine: from whole tenths as
    integers (a double cast to text is Java's ``1.2345678E7`` on Spark); beyond 10^15
    (or NaN), as the engine writes the rounded double."""
    tenths = (x * 10).round().cast("int64")
    whole, tenth = tenths.abs() // 10, tenths.abs() % 10
    sign = ibis.cases((tenths < 0, ibis.literal("-")), else_=ibis.literal(""))
    exact = sign.concat(whole.cast("string"), ".", tenth.cast("string"))
    return ibis.cases((x.abs() < 1e15, exact), else_=x.round(1).cast("string"))


def _amount(size: ir.FloatingValue, unit: str) -> ir.StringValue:
    """A gap's ``size`` (>= 0, in ``unit``) with its unit: in ``unit`` from 1 of it (or
    0), below that in the largest smaller unit it makes 1 of ("3.0 hours late", not "0.1
    days late"; an hour late read "0.0 days late"), down to seconds. "1 of it" is as
    written, with one decimal: 23.97 hours is "1.0 days", not "24.0 hours"."""
    smaller = sorted((u for u, s in UNIT_SECONDS.items() if s < UNIT_SECONDS[unit]),
                     key=UNIT_SECONDS.get, reverse=True)
    if not smaller:
        return _fmt(size).concat(" ", unit)
    secs = size * UNIT_SECONDS[unit]

    def one(x):  # x written with one decimal reads at least "1.0" (0.96 hours: "1.0 hours")
        return (x * 10).round() >= 10

    cases = [(one(size) | (size == 0), _fmt(size).concat(" ", unit))]
    cases += [(one(secs / UNIT_SECONDS[u]), _fmt(secs / UNIT_SECONDS[u]).concat(" ", u))
              for u in smaller[:-1]]
    return ibis.cases(*cases, else_=_fmt(secs).concat(" seconds"))


def _reason(rule: ValenceRule, default: str | None, event_type: ir.StringValue, gap_text=None,
            value=None) -> ir.StringValue:
    """The rule's reason with its tokens filled (the config allows only the tokens its
    kind fills: ``ValenceRule``); without one, ``default`` (None: the rule's name, its
    tokens the kind fills filled, the others kept as written: "big {value}" of a
    measure_above rule reads "big 12.5", "{value} payment failed" of a constant one
    as written)."""
    template = rule.reason or (rule.name if default is None else default)
    parts: list = []
    rest = template
    while rest:
        cut = min([i for i in (rest.find("{gap}"), rest.find("{value}"), rest.find("{event_type}"))
                   if i >= 0], default=-1)
        if cut < 0:
            parts.append(ibis.literal(rest))
            break
        if cut:
            parts.append(ibis.literal(rest[:cut]))
        rest = rest[cut:]
        for token, expr in (("{gap}", gap_text), ("{value}", value), ("{event_type}", event_type)):
            if rest.startswith(token):
                parts.append(expr if expr is not None else ibis.literal(token))
                rest = rest[len(token):]
                break
    out = parts[0]
    for p in parts[1:]:
        out = out.concat(p)
    return out


def rule_inputs(e: ir.Table, i: int, rule: ValenceRule) -> dict[str, ir.Value]:
    """Columns a rule needs, computed once (``_a{i}``: applies; ``_g{i}``: the gap or
    measure, or the contact's time in microseconds; ``_p{i}``: the previous contact's; ``_x{i}``: interrupted so far)."""
    cols: dict[str, ir.Value] = {f"_a{i}": e.event_type.isin(rule.event_types)}
    if rule.kind == "expectation_gap":
        unit = UNIT_SECONDS[rule.unit]
        if rule.measure is None:
            actual = epoch_seconds(e.ts).cast(_F)
            promised = epoch_seconds(e.expected_ts).cast(_F)
        else:
            actual = e.measures.get(rule.measure) * UNIT_SECONDS[rule.measure_unit]
            promised = e.expected_value * UNIT_SECONDS[rule.expected_unit]
        gap = ((actual - promised) / promised.nullif(0)) if rule.relative else (actual - promised) / unit
        cols[f"_g{i}"] = gap
    elif rule.kind == "measure_above":
        cols[f"_g{i}"] = e.measures.get(rule.measure)
    elif rule.kind == "repeat_contact":
        cols[f"_g{i}"] = epoch_micros(e.ts)
    if rule.kind in WINDOW_KINDS and not all(c in e.columns for c in window_columns(i, rule)):
        cols.update(rule_window_inputs(e, i, rule))
    return cols


WINDOW_KINDS = ("repeat_contact", "first_contact_resolution")


def window_columns(i: int, rule: ValenceRule) -> list[str]:
    """Names of the window inputs of rule ``i`` (see :func:`rule_window_inputs`)."""
    return {"repeat_contact": [f"_p{i}"], "first_contact_resolution": [f"_x{i}"]}.get(rule.kind, [])


def rule_window_inputs(e: ir.Table, i: int, rule: ValenceRule) -> dict[str, ir.Value]:
    """The inputs of rule ``i`` that need a window over the person's or the journey's
    events. They need only narrow columns (``person_id, journey_id, ts, event_id,
    event_type``), so the pipeline computes them before joining the wide columns:
    sorting narrow rows is several times cheaper."""
    if rule.kind == "repeat_contact":
        applies = e.event_type.isin(rule.event_types)
        w = ibis.window(group_by=[e.person_id, applies], order_by=[e.ts, e.event_id])
        return {f"_p{i}": epoch_micros(e.ts).lag().over(w)}
    if rule.kind == "first_contact_resolution":
        w = ibis.window(group_by=e.journey_id, order_by=[e.ts, e.event_id], following=0)
        return {f"_x{i}": _interruptions(e, rule).sum().over(w) - _resolution(e, rule)}
    return {}


def _resolution(e: ir.Table, rule: ValenceRule) -> ir.IntegerValue:
    return e.event_type.isin(rule.event_types).cast("int64")


def _interruptions(e: ir.Table, rule: ValenceRule) -> ir.IntegerValue:
    """1 on an event that makes a later resolution of its journey not first-contact:
    an interruption (transfer, reopening) or an earlier resolution (a ticket
    resolved twice was not fixed the first time). Summed up to a resolution, minus
    the resolution itself (:func:`_resolution`): the interruptions before it."""
    return (e.event_type.isin(rule.interrupting)
            | e.event_type.isin(rule.event_types)).cast("int64")


def add_window_inputs(e: ir.Table, rules: list[ValenceRule]) -> ir.Table:
    """``e`` with the window inputs of every rule, computed over only the rows they
    concern (contacts; resolutions and interruptions), each rule's window over its
    own rows, and joined back once, so the sorts are small and the events are
    probed once."""
    specs = [(i, r) for i, r in enumerate(rules) if r.kind in WINDOW_KINDS]
    if not specs:
        return e
    wanted: list[str] = []
    for _, rule in specs:
        extra = rule.interrupting if rule.kind == "first_contact_resolution" else []
        wanted += [t for t in [*rule.event_types, *extra] if t not in wanted]
    sub = e.filter(e.event_type.isin(wanted))
    cols: dict[str, ir.Value] = {}
    for i, rule in specs:
        if rule.kind == "repeat_contact":
            member = sub.event_type.isin(rule.event_types)
            w = ibis.window(group_by=[sub.person_id, member], order_by=[sub.ts, sub.event_id])
            value = epoch_micros(sub.ts).lag().over(w)
            cols[f"_p{i}"] = ibis.cases((member, value), else_=ibis.null().cast(value.type()))
        else:  # first_contact_resolution
            member = sub.event_type.isin([*rule.event_types, *rule.interrupting])
            w = ibis.window(group_by=[sub.journey_id, member], order_by=[sub.ts, sub.event_id],
                            following=0)
            count = _interruptions(sub, rule).sum().over(w) - _resolution(sub, rule)
            cols[f"_x{i}"] = ibis.cases((member, count), else_=ibis.null().cast("int64"))
    part = sub.select(_eid=sub.event_id, **cols)
    e = e.left_join(part, e.event_id == part._eid).drop("_eid")
    return e.mutate(**{f"_x{i}": e[f"_x{i}"].fill_null(0) for i, r in specs
                       if r.kind == "first_contact_resolution"})


def rule_outputs(e: ir.Table, i: int, rule: ValenceRule) -> tuple[ir.FloatingValue, ir.StringValue]:
    """(valence, reason) of rule ``i`` from the columns of :func:`rule_inputs`."""
    applies = e[f"_a{i}"]
    null_v, null_s = ibis.null().cast(_F), ibis.null().cast("string")
    named = _reason(rule, None, e.event_type)  # (the kinds whose reason has no number)
    if rule.kind == "constant":
        have, v, why = ibis.literal(True), ibis.literal(float(rule.valence)), named
    elif rule.kind == "expectation_gap":
        gap = e[f"_g{i}"]
        tol, full = rule.tolerance, float(rule.full_at)
        early_by = tol if rule.early_by is None else rule.early_by
        start = rule.late_start
        late = -((start + (1 - start) * (gap - tol) / (full - tol)).clip(upper=1.0))
        late = late.clip(lower=rule.late_floor)
        is_late, is_early = gap > tol, gap < -early_by
        v = ibis.cases((is_late, late), (is_early, ibis.literal(rule.early_valence)),
                       else_=ibis.literal(rule.on_time_valence))
        # within the tolerances: on time, and which side of the promise it fell on
        word = ibis.cases((is_late, ibis.literal(" late")), (is_early, ibis.literal(" early")),
                          (gap > 0, ibis.literal(" late (on time)")),
                          (gap < 0, ibis.literal(" early (on time)")),
                          else_=ibis.literal(" (on time)"))
        amount = _fmt(gap.abs() * 100).concat("%") if rule.relative else \
            _amount(gap.abs(), rule.unit)
        have, why = gap.notnull(), _reason(rule, "{gap} against the promise", e.event_type,
                                           gap_text=amount.concat(word))
    elif rule.kind == "measure_above":
        m = e[f"_g{i}"]
        have = m > rule.threshold
        v = ibis.literal(float(rule.valence))
        why = _reason(rule, None, e.event_type, value=_fmt(m))
    elif rule.kind == "repeat_contact":
        prev = e[f"_p{i}"]
        have = prev.notnull() & ((e[f"_g{i}"] - prev) <= rule.window * 1e6)  # (microseconds)
        v, why = ibis.literal(float(rule.valence)), named
    elif rule.kind == "first_contact_resolution":
        interrupted = e[f"_x{i}"] > 0
        alt = rule.else_valence
        v = ibis.cases((interrupted, ibis.literal(alt if alt is not None else 0.0)),
                       else_=ibis.literal(float(rule.valence)))
        after = " or ".join([*rule.interrupting, "an earlier resolution"])
        why = ibis.cases((interrupted, ibis.literal(f"resolved, but only after {after}")),
                         else_=named)
        have = ibis.literal(True) if alt is not None else ~interrupted
    else:  # pragma: no cover (the config model forbids other kinds)
        raise ValueError(rule.kind)
    ok = applies & have.fill_null(False)
    return ibis.cases((ok, v), else_=null_v), ibis.cases((ok, why), else_=null_s)
