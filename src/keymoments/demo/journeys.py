"""Per-journey truth: every session, order and ticket journey of a demo with its span,
event count, moments, remembered score, valley and survey answer.

Journeys partition the events as the engine's journey types do (see the demo's
``keymoments.yaml``): an event belongs to the journey of its ticket if it has one,
else of its order, else of its session. So a ticket journey is the ticket's events
and its survey answers; an order journey is the web events from checkout on (they
carry the order id), the order's milestones, its survey answers and reviews, but not
the tickets about it; a session journey is the session's other web events. Events
with none of these refs (the CRM's) are not listed. Moments (first, peak, valley,
end) are taken over the journey's events in time order, except feedback (surveys and
reviews); feedback always comes after the journey's other events.

Columns: ``kind`` (session, order, ticket), ``ref`` (its id), ``customer_id`` (the true
person), ``start``, ``end``, ``n_events``; the moments ``first``, ``peak``, ``valley``,
``end_valence`` and the ``remembered`` score; the worst event (``valley_event``,
``valley_ts``); the survey answered about it (``survey``, ``score``); and what was
planted: ``carrier``, ``dispatch`` (fast, on_time, late), ``late`` (delivered after the
estimate), ``detour``, ``cancelled``, ``guest`` (orders),
``agent`` (first agent), ``channel``, ``transferred``, ``reopened``, ``resolved``,
``switch_step`` (0, 1: the unresolved chats, 2: the call) (tickets),
``discovery_source``, ``converted``, ``detour`` (sessions).

>>> from .world import simulate
>>> world = simulate(n_customers=20, seed=3)
>>> table = journey_table(world, Labels(world))
>>> sorted(set(table.column("kind").to_pylist()))
['order', 'session', 'ticket']
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .blocks import Block
from .browsing import web_valence
from .columns import codes_to_strings
from .events import event_log
from .moments import WEIGHTS, journey_moments, remembered, run_moments
from .params import AGENTS, CARRIERS, DISCOVERY, EVENT_TYPES, SURVEYS, TICKET_CHANNELS
from .tables import TS, Labels
from .world import World

__all__ = ["journey_table", "DISPATCH_KINDS"]

#: How an order was shipped against the promised dispatch time.
DISPATCH_KINDS = ("fast", "on_time", "late")


def _journeys(world: World, kind: str, log: Block) -> dict[str, np.ndarray]:
    """Span (over all events) and moments (over valenced events) of every journey of
    ``kind``, keyed by entity number."""
    if kind == "session":  # web events are already session by session, in time order
        rows = np.flatnonzero(world.web_order() < 0)  # from checkout on: the order's
        e = {k: v[rows] for k, v in world.web.items()}
        sess = e["session"]  # every session keeps its first page view
        starts = np.flatnonzero(np.r_[True, sess[1:] != sess[:-1]]) if len(sess) else sess
        span = m = run_moments(starts, e["ts"], web_valence(e["slot"]))
        span.key = sess[starts]
        m.valley_at = rows[m.valley_at]
        etype, ts = world.web_etype(), world.web["ts"]
    else:
        key = log[kind] if kind == "ticket" else np.where(log["ticket"] >= 0, -1, log["order"])
        span = journey_moments(key, log["ts"], np.zeros(len(key)))
        m = journey_moments(np.where(np.isnan(log["valence"]), -1, key), log["ts"], log["valence"])
        etype, ts = log["etype"], log["ts"]
    at = np.searchsorted(m.key, span.key)  # every journey has a valenced event
    return {
        "key": span.key, "start": span.start_ts, "end": span.end_ts, "count": span.count,
        "first": m.first[at], "peak": m.peak[at], "valley": m.valley[at], "end_valence": m.end[at],
        "remembered": remembered(m, WEIGHTS)[at], "valley_event": etype[m.valley_at[at]],
        "valley_ts": ts[m.valley_at[at]],
    }  # fmt: skip


def journey_table(world: World, lab: Labels) -> pa.Table:
    """One row per session, order and ticket journey (see the module docs)."""
    log = event_log(world, ("ts", "etype", "order", "ticket", "valence"), with_refs=True)
    o, t, s = world.orders, world.tickets, world.sessions
    parts = []
    for kind in ("session", "order", "ticket"):
        j = _journeys(world, kind, log)
        number = {"session": lab.session_no, "order": lab.order_no, "ticket": lab.ticket_no}[kind]
        perm = np.argsort(number[j["key"]], kind="stable")  # rows in id order
        j = {k: v[perm] for k, v in j.items()}
        keys = j["key"]
        n = len(keys)
        none = np.full(n, -1)
        survey, score, carrier, agent, channel, utm, step = none, none, none, none, none, none, none
        dispatch = none
        flags: dict[str, np.ndarray] = {}
        if kind == "order":
            survey, score = o["survey"][keys], o["score"][keys]
            carrier = np.where(o["cancelled"][keys] >= 0, -1, o["carrier"][keys])
            dispatch = np.where(o["shipped"][keys] >= 0, o["dispatch"][keys], -1)
            delivered = o["delivered"][keys]
            flags = {
                "late": (delivered >= 0) & (delivered > o["estimate"][keys]),
                "detour": o["detour"][keys], "cancelled": o["cancelled"][keys] >= 0,
                "guest": o["guest"][keys],
            }  # fmt: skip
        elif kind == "ticket":
            survey, score = t["survey"][keys], t["score"][keys]
            agent, channel, step = t["agent"][keys], t["channel"][keys], t["chain_pos"][keys]
            flags = {"transferred": t["transferred"][keys], "reopened": t["reopened"][keys],
                     "resolved": t["resolved"][keys]}  # fmt: skip
        else:
            utm = s["utm"][keys]
            flags = {"converted": s["conv"][keys], "detour": s["detour"][keys]}
        label = {"session": lab.session, "order": lab.order, "ticket": lab.ticket}[kind]
        owner = {"session": s["cust"], "order": o["cust"], "ticket": t["cust"]}[kind]
        cols = {
            "kind": pa.array(np.full(n, kind)),
            "ref": label(keys),
            "customer_id": lab.customer(owner[keys]),
            "start": pa.array(j["start"]).cast(TS),
            "end": pa.array(j["end"]).cast(TS),
            "n_events": pa.array(j["count"]),
            **{k: pa.array(j[k]) for k in ("first", "peak", "valley", "end_valence", "remembered")},
            "valley_event": codes_to_strings(j["valley_event"], EVENT_TYPES),
            "valley_ts": pa.array(j["valley_ts"]).cast(TS),
            "survey": codes_to_strings(survey, SURVEYS),
            "score": pa.array(score, mask=score < 0),
            "carrier": codes_to_strings(carrier, CARRIERS),
            "dispatch": codes_to_strings(dispatch, DISPATCH_KINDS),
            "agent": codes_to_strings(agent, AGENTS),
            "channel": codes_to_strings(channel, TICKET_CHANNELS),
            "discovery_source": codes_to_strings(utm, DISCOVERY),
            "switch_step": pa.array(step, mask=step < 0),
        }
        for name in ("late", "detour", "cancelled", "guest", "transferred", "reopened", "resolved",
                     "converted"):  # fmt: skip
            cols[name] = pa.array(flags[name]) if name in flags else pa.nulls(n, pa.bool_())
        parts.append(pa.table(cols))
    return pa.concat_tables(parts)
