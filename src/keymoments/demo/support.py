"""Support contacts: why customers get in touch, and what happens in each ticket.

Late deliveries, failed payments and faulty products lead to tickets about the order;
some customers ask account questions. A ticket opens, an agent replies (the first
reply is the welcome), maybe more replies, maybe a transfer to another agent, then it
is resolved, and now and then reopened. Some customers give up on chat: two chats
without a resolution, then a phone call.

>>> from .params import ShopParams
>>> rng = np.random.default_rng(0)
>>> specs = {"cust": np.array([0]), "order": np.array([-1]), "opened": np.array([1000]),
...          "topic": np.array([3]), "channel": np.array([0]), "resolved": np.array([True]),
...          "chain": np.array([-1]), "chain_pos": np.array([-1])}
>>> tickets, events = ticket_events(rng, ShopParams(), specs, {"ticket": 0})
>>> [EVENT_TYPES[e] for e in events["etype"][:2]]
['ticket_opened', 'agent_reply']
"""

from __future__ import annotations

import numpy as np

from .blocks import Block, cat, expand, within
from .params import AGENTS, DAY, ET, EVENT_TYPES, HOUR, TYPE_VALENCE, VALENCE, ShopParams
from .valence import REPLY_SLA, expectation_valence

__all__ = ["TICKET_SLOTS", "open_tickets", "ticket_events"]

#: Event type of each ticket slot: opened, first reply (the welcome), further replies,
#: transfer, reply after the transfer, resolved, reopened, reply, resolved again.
TICKET_SLOTS = np.array([ET[e] for e in (
    "ticket_opened", "agent_reply", "agent_reply", "transferred", "agent_reply",
    "ticket_resolved", "ticket_reopened", "agent_reply", "ticket_resolved",
)])  # fmt: skip
_REPLY_SLOTS = (1, 2, 4, 7)


def open_tickets(
    rng: np.random.Generator, p: ShopParams, o: Block, lo: np.ndarray, hi: int,
    active: np.ndarray, counters: dict[str, int],
) -> Block:  # fmt: skip
    """Ticket specs (who, about which order, when, why, on which channel) for the orders
    ``o`` of a round, plus account questions of ``active`` customers in [lo, hi)."""
    O = len(o["order"])
    specs: list[Block] = []

    def about_orders(mask: np.ndarray, opened: np.ndarray, topic: int) -> None:
        specs.append({"cust": o["cust"][mask], "order": o["order"][mask],
                      "opened": opened[mask].astype(np.int64),
                      "topic": np.full(int(mask.sum()), topic)})  # fmt: skip

    est, dl = o["estimate"], o["delivered"]
    # "where is my order?" after the promised date passes, before the parcel arrives
    wait_room = np.maximum(np.minimum(34 * HOUR, dl - est - 2.5 * HOUR), 0)
    where_is_it = est + 2 * HOUR + rng.random(O) * wait_room
    about_orders(o["late"] & (rng.random(O) < p.ticket_when_late), where_is_it, 0)
    paid_later = o["placed"] + rng.integers(600, DAY, O)
    about_orders(o["payment_failed"] & (rng.random(O) < p.ticket_after_payment_fail), paid_later, 1)
    faulty = dl + rng.integers(2 * HOUR, 3 * DAY, O)
    about_orders((dl >= 0) & ~o["late"] & (rng.random(O) < p.ticket_product_issue), faulty, 2)
    asks = np.flatnonzero(active & (rng.random(len(active)) < p.ticket_account_question))
    specs.append({"cust": asks, "order": np.full(len(asks), -1),
                  "opened": lo[asks] + (rng.random(len(asks)) * (hi - lo[asks])).astype(np.int64),
                  "topic": np.full(len(asks), 3)})  # fmt: skip
    t = cat(specs)
    n = len(t["cust"])
    t["channel"] = rng.choice(3, n, p=p.ticket_channel_share)
    t["resolved"] = np.ones(n, dtype=bool)
    t["chain"] = np.full(n, -1)
    t["chain_pos"] = np.full(n, -1)
    sw = np.flatnonzero((t["order"] >= 0) & (t["channel"] == 0) & (rng.random(n) < p.switch_share))
    if len(sw) == 0:
        return t
    chain = counters["chain"] + np.arange(len(sw))
    counters["chain"] += len(sw)
    t["resolved"][sw] = False
    t["chain"][sw], t["chain_pos"][sw] = chain, 0
    second = t["opened"][sw] + rng.integers(3 * HOUR, 30 * HOUR, len(sw))
    third = second + rng.integers(HOUR, DAY, len(sw))
    later = [
        {"cust": t["cust"][sw], "order": t["order"][sw], "opened": when, "topic": t["topic"][sw],
         "channel": np.full(len(sw), ch), "resolved": np.full(len(sw), step == 2), "chain": chain,
         "chain_pos": np.full(len(sw), step)}
        for step, when, ch in ((1, second, 0), (2, third, 2))
    ]  # fmt: skip
    return cat([t, *later])


def ticket_events(
    rng: np.random.Generator, p: ShopParams, t: Block, counters: dict[str, int]
) -> tuple[Block, Block]:
    """Ticket facts and ticket events (with agent, wait, SLA and planted valence)."""
    T = len(t["cust"])
    tid = counters["ticket"] + np.arange(T)
    counters["ticket"] += T
    ch = t["channel"]
    a = rng.integers(0, len(AGENTS), T)
    b = (a + 1 + rng.integers(0, len(AGENTS) - 1, T)) % len(AGENTS)
    res = t["resolved"]
    tr = rng.random(T) < np.asarray(p.transfer_prob)[ch]
    reopen = res & (rng.random(T) < p.reopen_prob)
    k = np.zeros((T, len(TICKET_SLOTS)), dtype=np.int64)
    k[:, 0] = k[:, 1] = 1
    k[:, 2] = np.minimum(rng.poisson(np.where(res, 0.6, 1.2)), 5)
    k[:, 3] = k[:, 4] = tr
    k[:, 5] = res
    k[:, 6] = k[:, 7] = k[:, 8] = reopen
    owner, slot, pos = expand(k)
    n = len(owner)
    sla_s = np.asarray(p.sla_minutes)[ch][owner] * 60
    agent = np.select([np.isin(slot, (0, 6)), np.isin(slot, (1, 2, 3)), tr[owner]],
                      [-1, a[owner], b[owner]], default=a[owner])  # fmt: skip
    poor = a[owner] == p.poor_welcome_agent
    ratio = np.exp(rng.normal(np.log(0.5), 0.6, n))
    first_ratio = np.where(poor, np.exp(rng.normal(np.log(p.poor_welcome_wait_ratio), 0.35, n)),
                           np.exp(rng.normal(np.log(0.45), 0.6, n)))  # fmt: skip
    ratio = np.where(slot == 1, first_ratio, ratio)
    # the inconsistent agent: sometimes quick, sometimes very slow (capped at 6x the SLA)
    erratic = np.exp(rng.normal(np.log(p.inconsistent_wait_median), p.inconsistent_wait_sd, n))
    erratic = np.minimum(erratic, 6.0)
    ratio = np.where(agent == p.inconsistent_agent, erratic, ratio)
    is_reply = np.isin(slot, _REPLY_SLOTS)
    wait = ratio * sla_s
    wait = np.where(is_reply, np.maximum(wait, 5), 0).astype(np.int64)
    by_email = ch[owner] == 1
    think = np.where(by_email, rng.uniform(HOUR, DAY, n), rng.uniform(30, 600, n))
    close = np.where(by_email, rng.uniform(HOUR, 2 * DAY, n), rng.uniform(60, 900, n))
    gap = np.select(
        [slot == 0, slot == 2, slot == 3, slot == 6, np.isin(slot, (5, 8))],
        [0, think + wait, rng.uniform(20, 300, n), rng.uniform(DAY, 6 * DAY, n), close],
        default=wait,
    ).astype(np.int64)
    gap = np.where(slot == 0, 0, np.maximum(gap, 5))
    ts = t["opened"][owner] + within(k.sum(1), gap)
    etype = TICKET_SLOTS[slot]
    # valences by the demo's rules (see .valence): replies against the SLA, resolutions
    v_reply = expectation_valence((wait - sla_s) / sla_s, REPLY_SLA)
    v = np.where(is_reply, v_reply, TYPE_VALENCE[etype])
    v = np.where(slot == 8, VALENCE["ticket_resolved_after_reopen"], v)
    events = {
        "ticket": tid[owner],
        "cust": t["cust"][owner],
        "order": t["order"][owner],
        "etype": etype,
        "ts": ts,
        "pos": pos,
        "valence": np.clip(v, -1, 1),
        "agent": agent,
        "wait": np.where(is_reply, wait, -1),
        "sla": np.where(is_reply, sla_s // 60, -1),
        "channel": ch[owner],
    }
    tickets = {
        "ticket": tid, **t, "agent": a, "agent2": np.where(tr, b, -1), "transferred": tr,
        "reopened": reopen,
        "inconsistent": (a == p.inconsistent_agent) | (tr & (b == p.inconsistent_agent)),
        "email_case": rng.integers(0, 4, T), "phone_fmt": rng.integers(0, 6, T),
    }  # fmt: skip
    return tickets, events
