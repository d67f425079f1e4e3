"""Combine the parts of an event's valence: explicit feedback, operational rules
and text sentiment, weighted (``valence.weights``), with a reason naming each part.

Several rules firing on one event average. An event with no part has a NULL
valence (never NaN) and no reason.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from ..config.analysis import ValenceConfig
from ..text.redact import redact_expr
from .feedback import rating_centre_expr, rating_valence_expr
from .rules import effective_rules, rule_inputs, rule_outputs

__all__ = ["score_events"]

_F = "float64"


def _join_reasons(parts: list[ir.StringValue]) -> ir.StringValue:
    """'a; b' of the parts that are not NULL (concat_ws skips NULLs on every engine)."""
    return ibis.literal("; ").join(parts).nullif("")


def score_events(e: ir.Table, config: ValenceConfig, text_scores: ir.Table | None = None) -> ir.Table:
    """``e`` (journey-assigned events) with ``v_feedback``, ``v_rules``, ``v_text``,
    ``valence`` and ``valence_reason``. ``text_scores`` has ``text_hash, valence,
    confidence`` (see :mod:`keymoments.valence.cache`).

    Built in stages (rule inputs, rule outputs, combination), each a projection of
    the one before, so every expression is computed once.
    """
    rules = effective_rules(config)
    inputs: dict[str, ir.Value] = {}
    for i, rule in enumerate(rules):
        inputs.update(rule_inputs(e, i, rule))
    # the stages below stay separate projections in the compiled SQL when a column
    # is used several times (the SQL compiler inlines a projection into the next
    # only when that does not repeat expressions), which keeps the query small
    # enough to plan in milliseconds (it matters for the live service's updates)
    e = e.mutate(**inputs, _text_hash=e.text.hexdigest("md5"),
                 _centre=rating_centre_expr(e, config.neutral))
    outputs: dict[str, ir.Value] = {
        "v_feedback": rating_valence_expr(e, config.neutral, centre=e._centre)}
    for i, rule in enumerate(rules):
        outputs[f"_v{i}"], outputs[f"_r{i}"] = rule_outputs(e, i, rule)
    rating_txt = e.rating.cast("string").re_replace(r"\.0$", "")
    max_txt = e.rating_max.cast("string").re_replace(r"\.0$", "")
    outputs["_why_f"] = ibis.cases(
        (e.rating.notnull(),
         ibis.literal("rated ").concat(rating_txt, "/", max_txt, " (", e.rating_scale, ")")),
        else_=ibis.null().cast("string"))
    e = e.mutate(**outputs)
    if rules:
        fired = sum((e[f"_v{i}"].notnull().cast("int64") for i in range(len(rules))), ibis.literal(0))
        total = sum((e[f"_v{i}"].fill_null(0.0) for i in range(len(rules))), ibis.literal(0.0))
        e = e.mutate(v_rules=ibis.cases((fired > 0, total / fired), else_=ibis.null().cast(_F)),
                     _why_r=_join_reasons([e[f"_r{i}"] for i in range(len(rules))]))
    else:
        e = e.mutate(v_rules=ibis.null().cast(_F), _why_r=ibis.null().cast("string"))
    if text_scores is not None:
        # v_text is decided on the scores' side of the join (a text without a score,
        # or with zero confidence, joins NULL; no text has no hash and joins nothing),
        # so later expressions refer to a column instead of repeating a CASE: the
        # engine fuses projections, and a repeated CASE nested in the combination
        # below made the compiled query ~70 KB, costing ~50 ms of planning per run
        ts = text_scores.select(_th=text_scores.text_hash, v_text=ibis.cases(
            (text_scores.confidence > 0, text_scores.valence), else_=ibis.null().cast(_F)))
        e = e.left_join(ts, e._text_hash == ts._th).drop("_th")
    else:
        e = e.mutate(v_text=ibis.null().cast(_F))
    tone = ibis.cases((e.v_text > 0.2, ibis.literal("positive")),
                      (e.v_text < -0.2, ibis.literal("negative")), else_=ibis.literal("neutral"))
    quoted = redact_expr(e.text).substr(0, 60)  # no email, phone or id in a reason
    why_t = ibis.cases((e.v_text.notnull(),
                        ibis.literal("text reads ").concat(tone, ": '", quoted, "'")),
                       else_=ibis.null().cast("string"))
    w = config.weights
    wf, wr, wt = float(w.get("feedback", 1.0)), float(w.get("rules", 1.0)), float(w.get("text", 0.5))
    num = (e.v_feedback.fill_null(0.0) * wf + e.v_rules.fill_null(0.0) * wr
           + e.v_text.fill_null(0.0) * wt)
    den = (e.v_feedback.notnull().cast(_F) * wf + e.v_rules.notnull().cast(_F) * wr
           + e.v_text.notnull().cast(_F) * wt)
    e = e.mutate(_vraw=num / ibis.cases((den > 0, den), else_=ibis.null().cast(_F)),
                 _vwhy=_join_reasons([r for r, wp in ((e._why_f, wf), (e._why_r, wr),
                                                      (why_t, wt)) if wp > 0]))
    e = e.mutate(valence=e._vraw.clip(-1.0, 1.0), valence_reason=e._vwhy)
    helpers = [c for c in e.columns if c.startswith("_")]
    return e.drop(*helpers)
