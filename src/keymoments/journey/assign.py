"""Assign every event to a journey (an Ibis expression, the same on DuckDB and Spark).

Journey types are tried in order. A keyed type claims the events that carry its
reference (``refs[key]``): one journey per person and reference. An unkeyed type
claims the events of its ``event_types``/``stages`` and cuts them into runs that
begin at a start event, after an end event, or after ``gap`` of inactivity. Events
no type claims fall to the catch-all type, cut per person by ``catch_all_gap``.

A gap splits a journey only when the time since the previous event is *strictly
greater* than the gap: an event exactly ``gap`` later still belongs to it.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from ..config.analysis import JourneysConfig, JourneyType
from ..engine.expr import epoch_micros

__all__ = ["assign_journeys"]


def _member(e: ir.Table, jt: JourneyType) -> ir.BooleanValue:
    if jt.key is not None:
        return e[f"_ref_{jt.key}"].notnull()
    names = list(dict.fromkeys([*jt.event_types, *jt.start, *jt.end]))
    cond = ibis.literal(False)
    if names:
        cond = cond | e.event_type.isin(names)
    if jt.stages:
        cond = cond | e.stage.isin(list(jt.stages))
    return cond


def _by_type(jtype: ir.StringValue, types: list[JourneyType], value, default):
    cases = [(jtype == t.name, value(t)) for t in types if value(t) is not None]
    if not cases:
        return default
    return ibis.cases(*cases, else_=default)


def assign_journeys(events: ir.Table, config: JourneysConfig, types: list[JourneyType],
                    carry: tuple[str, ...] = ()) -> ir.Table:
    """Narrow rows (``event_id, ts, person_id, event_type, stage`` and the columns
    ``carry`` names) with ``journey_type``, ``journey_key``, ``journey_id``, ``seq``
    (0-based position in the journey, by time then event id) and
    ``channel_switch`` (1 when the channel differs from the previous event's, both
    known and neither a feedback event's); join
    them back to the events for more."""
    keyed = [t for t in types if t.key is not None]
    # narrow rows: sorting them is far cheaper than sorting whole events
    refs = {t.key: events.refs.get(t.key) for t in keyed}
    carried = [c for c in carry if c != "channel"]
    e = events.select("event_id", "ts", "person_id", "event_type", "stage", "channel", *carried,
                      **{f"_ref_{k}": v for k, v in refs.items()})
    claims = [(_member(e, t), t.name) for t in types]
    jtype = ibis.cases(*claims, else_=config.catch_all) if claims else ibis.literal(config.catch_all)
    e = e.mutate(journey_type=jtype)
    null_str = ibis.null().cast("string")
    jkey = (ibis.cases(*[(e.journey_type == t.name, e[f"_ref_{t.key}"]) for t in keyed],
                       else_=null_str) if keyed else null_str)
    e = e.mutate(journey_key=jkey, _epoch=epoch_micros(e.ts))

    gap_of = {t.name: t.gap for t in types}
    gap_of[config.catch_all] = config.catch_all_gap
    gap_expr = ibis.cases(*[(e.journey_type == n, ibis.literal(g)) for n, g in gap_of.items()
                            if g is not None], else_=ibis.null().cast("float64"))
    unkeyed = [t for t in types if t.key is None]
    starts = ibis.literal(False)
    ends = ibis.literal(False)
    for t in unkeyed:
        if t.start:
            starts = starts | ((e.journey_type == t.name) & e.event_type.isin(t.start))
        if t.end:
            ends = ends | ((e.journey_type == t.name) & e.event_type.isin(t.end))
    # the channel a switch is counted on: a feedback event (a survey, a review) is the
    # customer's answer about the journey, not a step taken in it on another channel
    e = e.mutate(_gap=gap_expr, _is_start=starts, _is_end=ends,
                 _swc=ibis.cases((e.stage == "feedback", null_str), else_=e.channel))

    # one window pipeline for every type: keyed types without a gap never start a
    # second run (no gap, no start or end events), so they get run 1 and their
    # position like the others. (Splitting them off into a branch of their own, to
    # save them the second sort, cost more than it saved on DuckDB 1.5: the branch
    # filters on the journey type were pushed into the shared subquery with the type
    # expression inlined into every IN item, ~20% of this step's CPU at 1M events.)
    e = _runs(e, carried)
    jid = (
        e.journey_type.concat("|", e.person_id, "|", e.journey_key.fill_null(""), "|",
                              e._run.cast("string"))
    ).hexdigest("md5")
    # a channel switch: same journey, both channels known, and different (a step to or
    # from a feedback event is none)
    switch = ((e.seq > 0) & e._swc.notnull() & e._prev_channel.notnull()
              & (e._swc != e._prev_channel))
    e = e.mutate(journey_id=jid.substr(0, 20), channel_switch=switch.cast("int64"))
    return e.drop("_run", "_prev_channel", "_swc", *([] if "channel" in carry else ["channel"]))


_OUT = ["event_id", "ts", "person_id", "event_type", "stage", "channel", "journey_type",
        "journey_key"]


def _runs(e: ir.Table, carried: list[str]) -> ir.Table:
    """Rows cut into runs at start events, after end events and after gaps."""
    w = ibis.window(group_by=[e.person_id, e.journey_type, e.journey_key],
                    order_by=[e.ts, e.event_id])
    prev_epoch = e._epoch.lag().over(w)
    prev_end = e._is_end.lag().over(w)
    prev_channel = e._swc.lag().over(w)
    new_run = (
        prev_epoch.isnull()
        | (e._gap.notnull() & ((e._epoch - prev_epoch) > e._gap * 1e6))
        | e._is_start
        | prev_end.fill_null(False)
    )
    # one sort order for everything: runs, their ids and the position in them
    e = e.mutate(_new=new_run.cast("int64"), _rn=ibis.row_number().over(w),
                 _prev_channel=prev_channel)
    cumulative = ibis.window(group_by=[e.person_id, e.journey_type, e.journey_key],
                             order_by=[e.ts, e.event_id], following=0)
    e = e.mutate(_run=e._new.sum().over(cumulative),
                 _run_rn=ibis.cases((e._new == 1, e._rn), else_=ibis.null().cast("int64"))
                 .max().over(cumulative))
    return e.select(*_OUT, *carried, _run=e._run, seq=e._rn - e._run_rn,
                    _prev_channel=e._prev_channel, _swc=e._swc)
