"""The moments of every journey (an Ibis expression).

Experience moments come from the journey's scored events outside the excluded
stages (feedback: the answer about the journey is no step in it): the **first
impression** (first), the **peak** (highest valence), the **valley** (lowest) and
the **farewell** (last). They span the whole journey, events after the customer's
answer included (a parcel delivered late after a review written on the promised
day is still the valley); the remembered score's inputs on ``journeys``
(``first_v`` ... ``end_v``) stop at the answer, which they predict. Ties go to the
earliest event. A journey with no scored event has none of them.

Business moments: the first event of the journey tagged with each key moment by
the taxonomy (purchase, support, resolution, post_purchase, feedback, loyalty);
``first_interaction`` marks the person's first event ever, and
``repeat_purchase`` the first purchase event of every purchase after the person's
first. A purchase is a journey of one of ``outcomes.purchase_types`` that holds a
purchase event (tagged ``purchase`` or ``repeat_purchase``: see
:data:`keymoments.taxonomy.PURCHASE_MOMENTS`); a journey of a review, a ticket or a
delivery of an order placed before the data begins is none. A person's purchases
are ordered by their first purchase events (time, then event id).
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from ..config.analysis import MomentsConfig, OutcomesConfig
from ..journey.summary import moment_candidates
from ..taxonomy import is_purchase_event

__all__ = ["extract_moments", "moment_parts", "EXPERIENCE_KINDS"]

EXPERIENCE_KINDS = ("first_impression", "peak", "valley", "farewell")
_COLS = ["journey_id", "journey_type", "person_id", "event_id", "ts", "event_type", "stage",
         "channel", "agent", "valence"]


def _pick(t: ir.Table, kind: str, category: str) -> ir.Table:
    return t.select(*_COLS, kind=ibis.literal(kind), category=ibis.literal(category),
                    reason=t.valence_reason)


def extract_moments(je: ir.Table, moments: MomentsConfig, outcomes: OutcomesConfig) -> ir.Table:
    """One row per (journey, moment kind): the union of :func:`moment_parts`."""
    parts = moment_parts(je, moments, outcomes)
    out = parts[0]
    for p in parts[1:]:
        out = out.union(p)
    return out


def moment_parts(je: ir.Table, moments: MomentsConfig,
                 outcomes: OutcomesConfig) -> list[ir.Table]:
    """The moments in four parts with the same columns: the experience moments,
    the first event of each key-moment tag, the first interactions and the repeat
    purchases (the first purchase event of each purchase after the person's
    first). Written one statement each, they cost DuckDB less than their union in
    one, whose branches run together and compete for memory: 10M events under a
    3GB limit took 19.5 s in one statement, 10.6 s in four (the whole build 121 ->
    112 s)."""
    c = moment_candidates(je, moments, before_outcome=False)
    g = c.journey_id
    ranks = {
        "first_impression": ibis.window(group_by=g, order_by=[c.seq]),
        "farewell": ibis.window(group_by=g, order_by=[ibis.desc(c.seq)]),
        "peak": ibis.window(group_by=g, order_by=[ibis.desc(c.valence), c.seq]),
        "valley": ibis.window(group_by=g, order_by=[c.valence, c.seq]),
    }
    c = c.mutate(**{f"_r_{k}": ibis.row_number().over(w) for k, w in ranks.items()})
    picks = [_pick(c.filter(c[f"_r_{k}"] == 0), k, "experience") for k in EXPERIENCE_KINDS]
    experience = picks[0]
    for p in picks[1:]:  # one statement: the four share the candidates and their ranks
        experience = experience.union(p)
    parts = [experience]

    tagged = je.filter(je.moment.notnull() & (je.moment != "first_interaction")
                       & (je.moment != "repeat_purchase"))
    # the first of each (journey, tag): an aggregate and a join (seq is unique in a
    # journey), cheaper than a window over every tagged event (2.2 s -> ~1 s at 1M)
    first = tagged.group_by(_tj=tagged.journey_id, _tm=tagged.moment).aggregate(_ts=tagged.seq.min())
    first_tag = tagged.join(first, [tagged.journey_id == first._tj, tagged.moment == first._tm,
                                    tagged.seq == first._ts])
    parts.append(first_tag.select(*_COLS, kind=first_tag.moment, category=ibis.literal("business"),
                                  reason=first_tag.valence_reason))

    # the person's first event: earliest time, then smallest event id (aggregates
    # and joins instead of a window over every event)
    first_ts = je.group_by(_fp=je.person_id).aggregate(_fts=je.ts.min())
    at_first = je.join(first_ts, [je.person_id == first_ts._fp, je.ts == first_ts._fts])
    first_id = at_first.group_by(_ip=at_first.person_id).aggregate(_iid=at_first.event_id.min())
    first_ever = je.join(first_id, [je.person_id == first_id._ip, je.event_id == first_id._iid])
    parts.append(_pick(first_ever, "first_interaction", "business"))

    # each purchase's first purchase event (an aggregate and a join, as above), then
    # the person's purchases in order: all but the first are repeat purchases
    bought = je.filter(je.journey_type.isin(outcomes.purchase_types) & is_purchase_event(je.moment))
    first_buy = bought.group_by(_bj=bought.journey_id).aggregate(_bs=bought.seq.min())
    purchases = bought.join(first_buy, [bought.journey_id == first_buy._bj,
                                        bought.seq == first_buy._bs])
    wpp = ibis.window(group_by=purchases.person_id, order_by=[purchases.ts, purchases.event_id])
    purchases = purchases.mutate(_r=ibis.row_number().over(wpp))
    parts.append(_pick(purchases.filter(purchases._r > 0), "repeat_purchase", "business"))
    return parts
