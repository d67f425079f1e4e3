"""Ratings and text that disagree: five stars with an angry comment, one star
with praise. Either the customer mis-clicked the scale, or the text holds what
the rating hides; both are worth a look before a rating is trusted.

An event is flagged when its rating valence and its text valence have opposite
signs, each at least ``min_strength`` away from neutral. Works on any table
with ``v_feedback`` and ``v_text`` (``journey_events``), as an Ibis expression.

>>> import ibis
>>> je = ibis.memtable({"event_id": ["a", "b", "c", "d"], "v_feedback": [1.0, -1.0, 1.0, 0.5],
...                     "v_text": [-0.8, 0.9, 0.7, -0.1]})
>>> flag_disagreements(je).select("event_id", "disagreement").to_pyarrow().to_pylist()
[{'event_id': 'b', 'disagreement': 'low rating, positive text'}, {'event_id': 'a', 'disagreement': 'high rating, negative text'}]
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from ..results import Result

__all__ = ["flag_disagreements", "disagreements"]


def flag_disagreements(je: ir.Table, min_strength: float = 0.3) -> ir.Table:
    """The rows of ``je`` whose rating and text disagree, with ``disagreement``
    naming the direction and ``gap`` = v_feedback - v_text."""
    hi_neg = (je.v_feedback >= min_strength) & (je.v_text <= -min_strength)
    lo_pos = (je.v_feedback <= -min_strength) & (je.v_text >= min_strength)
    kind = ibis.cases((hi_neg, ibis.literal("high rating, negative text")),
                      (lo_pos, ibis.literal("low rating, positive text")),
                      else_=ibis.null().cast("string"))
    out = je.mutate(disagreement=kind, gap=je.v_feedback - je.v_text)
    return out.filter(out.disagreement.notnull()).order_by(ibis.desc(out.gap.abs()), out.event_id)


def disagreements(je: ir.Table, min_strength: float = 0.3) -> Result:
    """:func:`flag_disagreements` as a Result, with the share of events having
    both a rating and a text that disagree."""
    both = je.filter(je.v_feedback.notnull() & je.v_text.notnull())
    n_both = int(both.count().to_pyarrow().as_py())
    flagged = flag_disagreements(both, min_strength).to_pyarrow()
    return Result(flagged, {"n_rated_with_text": n_both, "n_flagged": flagged.num_rows,
                            "share": flagged.num_rows / n_both if n_both else None,
                            "min_strength": min_strength,
                            "method": "opposite signs of rating and text valence, "
                                      "each at least min_strength from neutral"})
