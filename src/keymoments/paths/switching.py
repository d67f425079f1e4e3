"""Channel switching: within journeys (the channel-to-channel transition matrix and
the switch rate by journey type) and across a customer's contacts (lost context,
what precedes a switch, and a model that predicts one).

A **contact** is a journey of ``paths.contacts.journey_types`` (tickets, cases); its
channel is its first event's, it is resolved when it reached an end event, and its
subject is its ``subject_ref`` reference (the order it is about). A contact is
followed by a **switch** when the person's next contact starts within ``window``
of its end on another channel; the switch **loses context** when the next contact
is about the same subject (the customer explains it all again). What precedes a
switch is read from the contact and the one before it about the same subject (within
the window), written ``chat unresolved > chat unresolved``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import ibis
import pyarrow as pa

from ..engine import backend
from ..engine.expr import epoch_seconds
from ..results import Result
from .dfg import _filter, labelled
from .selection import JourneyFilter, journey_events, select_journeys

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["ChannelSwitching", "channel_switching", "contacts_expr"]


@dataclass(frozen=True)
class ChannelSwitching:
    """``matrix``: channel -> channel transitions within journeys; ``by_type``: switch
    rate by journey type; ``contacts``: each contact with its next one, switch and lost
    context; ``precedes``: switch rate after each contact pattern; ``model``: held-out
    scores and coefficients of the switch model (None when too few contacts)."""

    matrix: Result
    by_type: Result
    contacts: Result
    precedes: Result
    model: Result | None


def contacts_expr(ws: Workspace, journey_types: list[str], subject_ref: str | None,
                  window: float, flt: JourneyFilter | None = None):
    """One row per contact with its features, the previous contact's, and whether a
    switch (and lost context) follows."""
    f = (flt or JourneyFilter()).model_copy(update={"journey_type": journey_types})
    je = journey_events(ws, f)
    ev = backend(ws).table("events")
    if subject_ref:
        refs = ev.select(_e="event_id", _subj=ev.refs[subject_ref])
        je = je.left_join(refs, je.event_id == refs._e).drop("_e")
    else:
        je = je.mutate(_subj=ibis.null().cast("string"))
    et = je.event_type
    c = je.group_by(["journey_id", "person_id"]).aggregate(
        channel=je.channel.argmin(je.seq), subject=je._subj.max(),
        n_events=je.count(), transfers=(et == "transferred").cast("int64").sum(),
        reopens=(et == "ticket_reopened").cast("int64").sum(),
        mean_valence=je.valence.mean(), min_valence=je.valence.min())
    j = select_journeys(ws, f).select("journey_id", "journey_key", "start_ts", "end_ts", "has_end")
    c = c.join(j, "journey_id").rename(resolved="has_end")
    c = c.mutate(channel=c.channel.fill_null("(none)"))
    w = ibis.window(group_by=c.person_id, order_by=[c.start_ts, c.journey_id])
    # the contact before: the person's previous one about the same subject (any
    # subject-less one when the contact has none)
    c = c.mutate(_topic=c.subject.fill_null(""))
    wp = ibis.window(group_by=[c.person_id, c._topic], order_by=[c.start_ts, c.journey_id])
    c = c.mutate(next_channel=c.channel.lead().over(w), next_start=c.start_ts.lead().over(w),
                 next_subject=c.subject.lead().over(w), next_journey=c.journey_id.lead().over(w),
                 prev_channel=c.channel.lag().over(wp), prev_end=c.end_ts.lag().over(wp),
                 prev_resolved=c.resolved.lag().over(wp), prev_subject=c.subject.lag().over(wp)
                 ).drop("_topic")
    gap_next = epoch_seconds(c.next_start) - epoch_seconds(c.end_ts)
    gap_prev = epoch_seconds(c.start_ts) - epoch_seconds(c.prev_end)
    follows = c.next_start.notnull() & (gap_next <= window)
    switch = (follows & (c.next_channel != c.channel)).fill_null(False)
    same = (c.subject == c.next_subject) if subject_ref else ibis.literal(True)
    has_prev = (c.prev_end.notnull() & (gap_prev <= window)).fill_null(False)
    state = lambda ch, ok: ch.concat(ibis.cases((ok, " resolved"), else_=" unresolved"))  # noqa: E731
    here = state(c.channel, c.resolved.fill_null(False))
    before = state(c.prev_channel, c.prev_resolved.fill_null(False))
    return c.mutate(
        repeat=follows.fill_null(False), switch=switch,
        lost_context=(switch & same.fill_null(False)),
        has_prev=has_prev,
        prev_same_subject=(has_prev & ((c.subject == c.prev_subject) if subject_ref
                                       else ibis.literal(True)).fill_null(False)),
        pattern=ibis.cases((has_prev, before.concat(" > ").concat(here)), else_=here),
    )


def channel_switching(ws: Workspace, *, filter: JourneyFilter | None = None,
                      model: bool = True, seed: int = 0, **filters) -> ChannelSwitching:
    """Channel switching within journeys and across contacts (see the module doc).

    >>> import tempfile, keymoments as km
    >>> ws = km.init(tempfile.mkdtemp())
    >>> s = km.channel_switching(ws)
    >>> len(s.matrix), s.model is None
    (0, True)
    >>> ws.close()
    """
    flt = _filter(filter, filters)
    cfg = ws.config.paths.contacts
    je = journey_events(ws, flt)
    # each transition with the engine's own switch flag (journey.assign: both channels
    # known and different, and neither event a feedback one), so the matrix counts
    # the switches journeys.channel_switches does
    t = labelled(je, "channel")
    flags = je.select(_j=je.journey_id, _q=je.seq, _sw=je.channel_switch)
    pairs = t.filter(~t.first)
    pairs = pairs.join(flags, [pairs.journey_id == flags._j, pairs.seq == flags._q])
    edges = pairs.group_by(source=pairs.prev, target=pairs.activity).aggregate(
        count=pairs.count(), journeys=pairs.journey_id.nunique(),
        switches=pairs._sw.sum().cast("int64"))
    out = edges.group_by("source").aggregate(_out=edges["count"].sum())
    m = edges.join(out, "source")
    m = m.mutate(share=m["count"].cast("float64") / m._out,
                 switch=m.switches > 0).drop("_out")
    matrix = m.order_by(["source", ibis.desc("count"), "target"]).to_pyarrow()

    j = select_journeys(ws, flt)
    by_type = j.group_by("journey_type").aggregate(
        journeys=j.count(), switch_rate=(j.channel_switches > 0).cast("float64").mean(),
        mean_switches=j.channel_switches.mean(),
        multichannel_rate=(j.channels.length() > 1).cast("float64").mean(),
    ).order_by([ibis.desc("journeys"), "journey_type"]).to_pyarrow()

    c = contacts_expr(ws, cfg.journey_types, cfg.subject_ref, cfg.window, flt)
    contacts = c.order_by(["person_id", "start_ts", "journey_id"]).to_pyarrow()
    n = contacts.num_rows
    overall = (sum(contacts.column("switch").to_pylist()) / n) if n else None
    p = c.group_by("pattern").aggregate(contacts=c.count(), switches=c.switch.cast("int64").sum(),
                                         lost_context=c.lost_context.cast("int64").sum())
    p = p.mutate(switch_rate=p.switches.cast("float64") / p.contacts)
    sw = c.filter(c.switch)
    to = sw.group_by(["pattern", "next_channel"]).aggregate(_k=sw.count())
    wt = ibis.window(group_by=to.pattern, order_by=[ibis.desc(to._k), to.next_channel])
    to = to.mutate(_r=ibis.row_number().over(wt)).filter(lambda t: t._r == 0)
    to = to.select(_p="pattern", to_channel="next_channel", _k="_k")
    p = p.left_join(to, p.pattern == to._p).drop("_p")
    p = p.mutate(share_to_channel=p._k.cast("float64") / p.switches).drop("_k")
    precedes = p.order_by([ibis.desc("switch_rate"), ibis.desc("contacts"), "pattern"]).to_pyarrow()
    lift = [None if overall in (None, 0) else r / overall
            for r in precedes.column("switch_rate").to_pylist()]
    precedes = precedes.append_column("lift", pa.array(lift, pa.float64()))
    meta = {"filters": flt.active(), "contacts": n, "switch_rate": overall,
            "lost_context": int(sum(contacts.column("lost_context").to_pylist())) if n else 0,
            "contact_types": list(cfg.journey_types), "subject_ref": cfg.subject_ref,
            "window_s": cfg.window}
    fitted = None
    if model:
        from .switch_model import fit_switch_model

        fitted = fit_switch_model(contacts, seed=seed)
    return ChannelSwitching(
        Result(matrix, {"filters": flt.active(), "method": "directly-follows channel pairs "
                                                             "within journeys"}),
        Result(by_type, {"filters": flt.active()}),
        Result(contacts, meta), Result(precedes, meta), fitted)
