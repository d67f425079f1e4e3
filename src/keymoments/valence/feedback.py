"""Explicit feedback on its scale, mapped to [-1, 1] around the scale's neutral point.

Below neutral the rating falls linearly to -1 at the scale's minimum; above it,
rises to +1 at the maximum. NPS is neutral at 7 (passives), so a 6 is negative:

>>> rating_valence(6, 0, 10, 7), rating_valence(10, 0, 10, 7), rating_valence(3, 1, 5, 3)
(-0.14285714285714285, 1.0, 0.0)
>>> rating_valence(1, 1, 5, 3), rating_valence(4, 1, 5, 3)
(-1.0, 0.5)
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

__all__ = ["rating_valence", "rating_centre_expr", "rating_valence_expr"]


def rating_valence(rating: float, lo: float, hi: float, neutral: float) -> float:
    """The valence of one rating (the reference for :func:`rating_valence_expr`)."""
    if rating >= neutral:
        return (rating - neutral) / (hi - neutral) if hi > neutral else 0.0
    return (rating - neutral) / (neutral - lo) if neutral > lo else 0.0


def rating_centre_expr(e: ir.Table, neutral: dict[str, float]) -> ir.FloatingValue:
    """The neutral point of each row's scale (``neutral``, else the scale's middle)."""
    mid = (e.rating_min + e.rating_max) / 2
    return ibis.cases(*[(e.rating_scale == k, ibis.literal(float(v))) for k, v in neutral.items()],
                      else_=mid) if neutral else mid


def rating_valence_expr(e: ir.Table, neutral: dict[str, float],
                        centre: ir.FloatingValue | None = None) -> ir.FloatingValue:
    """Column expression of :func:`rating_valence` over ``rating`` and its scale.

    ``centre``: a column already holding :func:`rating_centre_expr` (the compiled SQL
    then refers to it instead of repeating its CASE at every use)."""
    centre = rating_centre_expr(e, neutral) if centre is None else centre
    up = (e.rating - centre) / (e.rating_max - centre).nullif(0)
    down = (e.rating - centre) / (centre - e.rating_min).nullif(0)
    v = ibis.cases((e.rating.isnull(), ibis.null().cast("float64")),
                   (e.rating >= centre, up.fill_null(0.0)), else_=down.fill_null(0.0))
    return v.clip(-1.0, 1.0)
