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
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import ibis
import ibis.expr.types as ir
from ruamel.yaml import YAML

from ..config.analysis import UNIT_SECONDS, ValenceConfig, ValenceRule

__all__ = ["gap_valence", "rule_columns", "effective_rules", "default_rules"]

_F = "float64"


def gap_valence(gap: float, tolerance: float, full_at: float, on_time: float, early: float) -> float:
    """The valence of an expectation gap (the reference for the column expression):
    within ``tolerance`` of the promise scores ``on_time``; later falls linearly from
    0 at the tolerance to -1 at ``full_at``; earlier scores ``early``."""
    if abs(gap) <= tolerance:
        return on_time
    if gap < 0:
        return early
    return -min(1.0, (gap - tolerance) / (full_at - tolerance))


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
    return x.round(1).cast("string")


def _reason(rule: ValenceRule, default: str, gap_text=None, value=None) -> ir.StringValue:
    template = rule.reason or default
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
        for token, expr in (("{gap}", gap_text), ("{value}", value), ("{event_type}", None)):
            if rest.startswith(token):
                parts.append(expr if expr is not None else ibis.literal(token.strip("{}")))
                rest = rest[len(token):]
                break
    out = parts[0]
    for p in parts[1:]:
        out = out.concat(p)
    return out


def _gap_columns(e: ir.Table, rule: ValenceRule):
    unit = UNIT_SECONDS[rule.unit]
    if rule.measure is None:
        gap = (e.ts.epoch_seconds() - e.expected_ts.epoch_seconds()) / unit
        have = e.expected_ts.notnull()
    else:
        actual = e.measures.get(rule.measure) * UNIT_SECONDS[rule.measure_unit]
        promised = e.expected_value * UNIT_SECONDS[rule.expected_unit]
        gap = (actual - promised) / unit
        have = e.expected_value.notnull() & e.measures.get(rule.measure).notnull()
    tol, full = rule.tolerance, float(rule.full_at)
    late = -(((gap - tol) / (full - tol)).clip(upper=1.0))
    v = ibis.cases((gap.abs() <= tol, ibis.literal(rule.on_time_valence)),
                   (gap < 0, ibis.literal(rule.early_valence)), else_=late)
    word = ibis.cases((gap.abs() <= tol, ibis.literal(" (on time)")), (gap < 0, ibis.literal(" early")),
                      else_=ibis.literal(" late"))
    gap_text = _fmt(gap.abs()).concat(" ", rule.unit, word)
    return have, v, _reason(rule, "{gap} against the promise", gap_text=gap_text)


def rule_columns(e: ir.Table, rule: ValenceRule) -> tuple[ir.FloatingValue, ir.StringValue]:
    """(valence, reason) of one rule over the journey-assigned events ``e``."""
    applies = e.event_type.isin(rule.event_types)
    null_v = ibis.null().cast(_F)
    null_s = ibis.null().cast("string")
    if rule.kind == "constant":
        v, why, have = ibis.literal(float(rule.valence)), _reason(rule, rule.name), ibis.literal(True)
    elif rule.kind == "expectation_gap":
        have, v, why = _gap_columns(e, rule)
    elif rule.kind == "measure_above":
        m = e.measures.get(rule.measure)
        have = m > rule.threshold
        v, why = ibis.literal(float(rule.valence)), _reason(rule, rule.name, value=_fmt(m))
    elif rule.kind == "repeat_contact":
        w = ibis.window(group_by=[e.person_id, applies], order_by=[e.ts, e.event_id])
        prev = e.ts.epoch_seconds().lag().over(w)
        have = prev.notnull() & ((e.ts.epoch_seconds() - prev) <= rule.window)
        v, why = ibis.literal(float(rule.valence)), _reason(rule, rule.name)
    elif rule.kind == "first_contact_resolution":
        w = ibis.window(group_by=e.journey_id, order_by=[e.ts, e.event_id], following=0)
        interrupted = e.event_type.isin(rule.interrupting).cast("int64").sum().over(w) > 0
        alt = rule.else_valence
        v = ibis.cases((interrupted, ibis.literal(alt if alt is not None else 0.0)),
                       else_=ibis.literal(float(rule.valence)))
        why = ibis.cases((interrupted, ibis.literal("resolved after a transfer or reopening")),
                         else_=_reason(rule, rule.name))
        have = ibis.literal(True) if alt is not None else ~interrupted
    else:  # pragma: no cover (the config model forbids other kinds)
        raise ValueError(rule.kind)
    ok = applies & have
    return (ibis.cases((ok, v), else_=null_v), ibis.cases((ok, why), else_=null_s))
