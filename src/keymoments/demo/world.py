"""A simulated online shop: customers browse, buy, get deliveries, contact support,
answer surveys, write reviews, join the loyalty club or leave.

Everything is drawn with numpy over whole arrays, in monthly rounds so that what
happened in one round (a late delivery, a slow agent) changes what customers do in the
next: happy customers come back more often, unhappy ones churn. Entities are integer
indices, numbered in creation order; ``-1`` means "none" in every index or timestamp
column. Customers never interact with each other, so a subset of them is a valid
smaller world (:func:`restrict`). :mod:`.tables` turns a world into export files.

>>> world = simulate(n_customers=30, seed=1)
>>> world.n_events == sum(world.events_per_source().values())
True
>>> world.n_events == int(world.events_per_customer().sum())
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .blocks import Block, cat, renumber, take
from .browsing import ORDER_SLOTS, WEB_SLOTS, browse, place_orders, web_valence
from .comments import LANGUAGES
from .feedback import answer_surveys, write_reviews
from .moments import WEIGHTS, journey_moments, remembered
from .params import DAY, ET, EVENT_TYPES, SEGMENTS, SURVEYS, TYPE_VALENCE, ShopParams
from .support import open_tickets, ticket_events

__all__ = ["ORDER_MILESTONES", "CRM_MILESTONES", "World", "simulate", "restrict", "orders_long",
           "milestone_valence"]  # fmt: skip

#: Wide timestamp columns of the orders table and the event each records.
ORDER_MILESTONES = {
    "placed": "order_placed",
    "approved": "payment_approved",
    "shipped": "order_shipped",
    "delivered": "order_delivered",
    "cancelled": "order_cancelled",
}
#: Wide timestamp columns of the CRM table and the event each records.
CRM_MILESTONES = {
    "signup": "account_created",
    "loyalty": "loyalty_joined",
    "unsubscribed": "subscription_cancelled",
}
_AREA_CODES = np.array([212, 213, 305, 312, 415, 503, 512, 617, 646, 702,
                        713, 718, 773, 808, 917, 206, 303, 404, 480, 602])  # fmt: skip
_EXCHANGES = np.array([e for e in range(201, 1000) if e % 100 != 11 and e != 555])


@dataclass
class World:
    """The simulated shop: one block of columns per kind of record.

    ``web`` rows are session by session in time order (sessions in start order), with
    columns ``session, slot, ts``; the rest of a web event follows from its session.
    Row ``i`` of ``sessions``, ``orders`` and ``tickets`` is the entity numbered ``i``.
    """

    params: ShopParams
    seed: int
    customers: Block
    sessions: Block
    web: Block
    orders: Block
    tickets: Block
    ticket_events: Block
    surveys: Block
    reviews: Block

    @property
    def n_customers(self) -> int:
        return len(self.customers["signup"])

    @property
    def n_events(self) -> int:
        return sum(self.events_per_source().values())

    def web_etype(self) -> np.ndarray:
        return WEB_SLOTS[self.web["slot"]]

    def web_order(self) -> np.ndarray:
        """The order of each web event (from checkout on, in converting sessions), or -1."""
        return np.where(ORDER_SLOTS[self.web["slot"]], self.sessions["order"][self.web["session"]], -1)

    def events_per_source(self) -> dict[str, int]:
        o, c, kinds = self.orders, self.customers, self.surveys["kind"]
        return {
            "web_events": len(self.web["ts"]),
            "orders": sum(int((o[k] >= 0).sum()) for k in ORDER_MILESTONES),
            "tickets": len(self.ticket_events["ts"]),
            **{f"surveys_{s}": int((kinds == i).sum()) for i, s in enumerate(SURVEYS)},
            "reviews": len(self.reviews["ts"]),
            "customers": sum(int((c[k] >= 0).sum()) for k in CRM_MILESTONES),
        }

    def event_types(self) -> dict[str, int]:
        """How many events of each type the exports hold."""
        per_source = self.events_per_source()
        n = np.bincount(self.web_etype(), minlength=len(EVENT_TYPES))
        n += np.bincount(self.ticket_events["etype"], minlength=len(EVENT_TYPES))
        for col, event in ORDER_MILESTONES.items():
            n[ET[event]] += int((self.orders[col] >= 0).sum())
        for col, event in CRM_MILESTONES.items():
            n[ET[event]] += int((self.customers[col] >= 0).sum())
        for s in SURVEYS:
            n[ET[f"{s}_answered"]] += per_source[f"surveys_{s}"]
        n[ET["review_posted"]] += per_source["reviews"]
        return {EVENT_TYPES[i]: int(c) for i, c in enumerate(n) if c}

    def events_per_customer(self) -> np.ndarray:
        """How many events of the exports belong to each customer."""
        o, c = self.orders, self.customers
        n = np.zeros(self.n_customers, dtype=np.int64)
        per_session = np.bincount(self.web["session"], minlength=len(self.sessions["cust"]))
        n += np.bincount(self.sessions["cust"], weights=per_session, minlength=len(n)).astype(np.int64)
        for cust in (self.ticket_events["cust"], self.surveys["cust"], self.reviews["cust"]):
            n += np.bincount(cust, minlength=len(n))
        for col in ORDER_MILESTONES:
            n += np.bincount(o["cust"][o[col] >= 0], minlength=len(n))
        for col in CRM_MILESTONES:
            n += c[col] >= 0
        return n


def milestone_valence(o: Block, col: str, rows: np.ndarray) -> np.ndarray:
    """Planted valence of the milestone ``col`` of the orders ``rows``: the shipment's
    and the delivery's depend on their promises, the others are fixed."""
    if f"v_{col}" in o:
        return o[f"v_{col}"][rows]
    return np.full(len(rows), TYPE_VALENCE[ET[ORDER_MILESTONES[col]]])


def orders_long(o: Block) -> Block:
    """The wide orders as one event per non-blank milestone (milestone by milestone)."""
    parts = []
    for col, event in ORDER_MILESTONES.items():
        keep = o[col] >= 0
        n = int(keep.sum())
        v = milestone_valence(o, col, np.flatnonzero(keep))
        parts.append({"order": o["order"][keep], "ts": o[col][keep], "valence": v,
                      "etype": np.full(n, ET[event])})  # fmt: skip
    return cat(parts)


class _Shop:
    """The simulation state across rounds."""

    def __init__(self, n_customers: int, seed: int, params: ShopParams) -> None:
        self.p = params
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.C = n_customers
        self.counters = {"session": 0, "order": 0, "ticket": 0, "fresh": 0, "chain": 0}
        self.out: dict[str, list[Block]] = {
            k: [] for k in ("sessions", "web", "orders", "tickets", "ticket_events", "surveys", "reviews")
        }
        p, rng, C = self.p, self.rng, n_customers
        before = rng.random(C) < p.signed_up_before_share
        signup = np.where(
            before,
            p.start - (rng.random(C) * 365 * DAY).astype(np.int64),
            p.start + (rng.random(C) * (p.end - p.start - 14 * DAY)).astype(np.int64),
        )
        signup.sort()  # customers are numbered in sign-up order
        weight = np.minimum(rng.pareto(1.6, C) + 1.0, p.activity_cap)  # a few very active
        phone = rng.choice(len(_AREA_CODES) * len(_EXCHANGES) * 10_000, C, replace=False)
        self.cust: Block = {
            "signup": signup,
            "segment": rng.choice(len(SEGMENTS), C, p=[0.6, 0.3, 0.1]),
            "lang": rng.choice(len(LANGUAGES), C, p=[0.45, 0.2, 0.15, 0.1, 0.1]),
            "first_name": rng.integers(0, 1 << 30, C),
            "last_name": rng.integers(0, 1 << 30, C),
            "domain": rng.integers(0, 1 << 30, C),
            "area": _AREA_CODES[phone // (len(_EXCHANGES) * 10_000)],
            "exchange": _EXCHANGES[phone // 10_000 % len(_EXCHANGES)],
            "line": phone % 10_000,
            "crm_phone_fmt": rng.choice([3, 1, 0], C, p=[0.6, 0.2, 0.2]),
        }
        self.weight = weight / weight.mean()
        self.boost = np.ones(C)
        self.churned = np.zeros(C, dtype=bool)
        self.churn_ts = np.full(C, -1, dtype=np.int64)
        self.ever_bad = np.zeros(C, dtype=bool)

    def round(self, t_lo: int, t_hi: int) -> None:
        """One month: sessions, orders, tickets, feedback, then who leaves or comes back more."""
        p, rng, C = self.p, self.rng, self.C
        hi = min(t_hi, p.end - DAY)  # sessions end before the export
        lo = np.maximum(t_lo, self.cust["signup"])
        span = np.clip(hi - lo, 0, None)
        active = ~self.churned & (span > 0)
        lam = p.sessions_per_round * self.weight * self.boost * span / (t_hi - t_lo)
        cust = np.repeat(np.arange(C), rng.poisson(np.where(active, lam, 0.0)))
        start = lo[cust] + (rng.random(len(cust)) * span[cust]).astype(np.int64)
        by_start = np.argsort(start, kind="stable")
        web, sessions = browse(rng, p, cust[by_start], start[by_start], self.counters)
        orders = place_orders(rng, p, sessions, self.counters)
        specs = open_tickets(rng, p, orders, lo, hi, active, self.counters)
        tickets, tev = ticket_events(rng, p, specs, self.counters)

        # journeys partition events as the engine's do (ticket > order > session): an
        # order's journey is its web events from checkout on and its milestones; the
        # tickets about it are journeys of their own
        first_session = sessions["session"][0] if len(cust) else 0
        checkout = ORDER_SLOTS[web["slot"]] & sessions["conv"][web["session"] - first_session]
        ck = np.flatnonzero(checkout)
        web_ev = {
            "order": sessions["order"][web["session"][ck] - first_session], "ts": web["ts"][ck],
            "valence": web_valence(web["slot"][ck]), "etype": WEB_SLOTS[web["slot"][ck]],
        }  # fmt: skip
        cols = ("order", "ts", "valence", "etype")
        order_ev = cat([{k: b[k] for k in cols} for b in (web_ev, orders_long(orders))])
        _note_moments(orders, "order", order_ev)
        _note_moments(tickets, "ticket", tev)

        lang = self.cust["lang"]
        self.out["surveys"].append(answer_surveys(rng, p, orders, tickets, lang))
        self.out["reviews"].append(write_reviews(rng, p, orders, lang))
        self._churn(sessions, orders, tickets)
        for name, block in (("sessions", sessions), ("web", web), ("orders", orders),
                            ("tickets", tickets), ("ticket_events", tev)):  # fmt: skip
            self.out[name].append(block)

    def _churn(self, s: Block, o: Block, t: Block) -> None:
        """Customers with a bad journey this round churn more; happy ones come back more."""
        p, rng, C = self.p, self.rng, self.C
        j_cust = np.concatenate([o["cust"], t["cust"]])
        j_r = np.concatenate([o["remembered"], t["remembered"]])
        j_end = np.concatenate([o["journey_end"], t["journey_end"]])
        worst, best = np.full(C, np.inf), np.full(C, -np.inf)
        last = np.full(C, -1, dtype=np.int64)
        np.minimum.at(worst, j_cust, j_r)
        np.maximum.at(best, j_cust, j_r)
        np.maximum.at(last, j_cust, j_end)
        np.maximum.at(last, s["cust"], s["end"])
        bad = worst < p.bad_threshold
        leaves = rng.random(C) < np.where(bad, p.churn_after_bad, p.churn_otherwise)
        churn = ~self.churned & (last >= 0) & leaves
        self.churn_ts[churn] = last[churn] + rng.integers(DAY, 14 * DAY, int(churn.sum()))
        self.churned |= churn
        self.ever_bad |= bad
        happy = (best > p.happy_threshold) & ~bad
        self.boost[happy] = np.minimum(self.boost[happy] * p.happy_boost, p.boost_cap)

    def finish(self) -> World:
        """Loyalty sign-ups, subscription cancellations, then the export cut."""
        p, rng, C = self.p, self.rng, self.C
        out = {k: cat(v) for k, v in self.out.items()}
        o = out["orders"]
        # repeat buyers with good experiences join the club after their second order
        n_orders = np.bincount(o["cust"], minlength=C)
        mean_r = np.bincount(o["cust"], weights=o["remembered"], minlength=C) / np.maximum(n_orders, 1)
        by = np.lexsort((o["placed"], o["cust"]))
        rank = np.arange(len(by)) - np.repeat(np.cumsum(n_orders) - n_orders, n_orders)
        second_placed = np.full(C, -1, dtype=np.int64)
        second_placed[o["cust"][by][rank == 1]] = o["placed"][by][rank == 1]
        joins = (n_orders >= 2) & (mean_r > 0.2) & (rng.random(C) < p.loyalty_prob)
        loyalty = np.where(joins, second_placed + rng.integers(DAY, 20 * DAY, C), -1)
        loyalty = np.where(self.churned & (loyalty > self.churn_ts), -1, loyalty)
        plus = self.cust["segment"] == SEGMENTS.index("plus")
        out["customers"] = {
            **self.cust, "loyalty": loyalty,
            "unsubscribed": np.where(self.churned & plus, self.churn_ts, -1),
            "churned": self.churned, "churn_ts": self.churn_ts, "ever_bad": self.ever_bad,
        }  # fmt: skip
        return _export_cut(out, p, self.seed)


def _note_moments(block: Block, key: str, events: Block) -> None:
    """Store each journey's remembered score (over its events with a valence), end time
    and worst event type on ``block``."""
    n = len(block[key])
    first = block[key][0] if n else 0  # this round's entities are numbered consecutively
    span = journey_moments(events[key], events["ts"], np.zeros(len(events[key])))
    m = journey_moments(np.where(np.isnan(events["valence"]), -1, events[key]), events["ts"],
                        events["valence"])  # fmt: skip
    block["remembered"] = np.full(n, np.nan)
    block["remembered"][m.key - first] = remembered(m, WEIGHTS)
    block["journey_end"] = np.full(n, -1, dtype=np.int64)
    block["journey_end"][span.key - first] = span.end_ts
    block["valley_type"] = np.full(n, -1, dtype=np.int64)
    block["valley_type"][m.key - first] = events["etype"][m.valley_at]


def _export_cut(out: dict[str, Block], p: ShopParams, seed: int) -> World:
    """Keep what had happened by the export time: later events vanish, later cells blank."""
    end = p.end
    for name in ("web", "ticket_events", "surveys", "reviews"):
        after = out[name]["ts"] > end
        if after.any():
            out[name] = take(out[name], ~after)
    o, c, t = out["orders"], out["customers"], out["tickets"]
    for block, cols in ((o, ORDER_MILESTONES), (c, CRM_MILESTONES)):
        for col in cols:
            block[col] = np.where(block[col] <= end, block[col], -1)
    t["exported"] = t["opened"] <= end  # later tickets do not exist yet
    for b in (o, t):  # nor do later survey answers
        late = b["survey_ts"] > end
        for col in ("survey", "score", "survey_ts"):
            b[col] = np.where(late, -1, b[col])
    return World(
        params=p, seed=seed, customers=c, sessions=out["sessions"], web=out["web"], orders=o,
        tickets=t, ticket_events=out["ticket_events"], surveys=out["surveys"], reviews=out["reviews"],
    )


def simulate(n_customers: int, seed: int, params: ShopParams | None = None) -> World:
    """Run the shop for ``params.rounds`` monthly rounds with ``n_customers`` customers."""
    shop = _Shop(n_customers, seed, params or ShopParams())
    bounds = np.linspace(shop.p.start, shop.p.end, shop.p.rounds + 1).astype(np.int64)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        shop.round(int(lo), int(hi))
    return shop.finish()


def restrict(world: World, keep: np.ndarray) -> World:
    """The world of the customers ``keep`` only, entities renumbered in their order."""
    maps = {
        "cust": renumber(keep),
        "session": renumber(keep[world.sessions["cust"]]),
        "order": renumber(keep[world.orders["cust"]]),
        "ticket": renumber(keep[world.tickets["cust"]]),
    }

    def cut(block: Block, owner: np.ndarray) -> Block:
        out = take(block, keep[owner])
        for col, new in maps.items():
            if col in out:
                out[col] = np.where(out[col] >= 0, new[np.maximum(out[col], 0)], -1)
        return out

    w = world
    return World(
        params=w.params, seed=w.seed, customers=take(w.customers, keep),
        sessions=cut(w.sessions, w.sessions["cust"]),
        web=cut(w.web, w.sessions["cust"][w.web["session"]]),
        orders=cut(w.orders, w.orders["cust"]), tickets=cut(w.tickets, w.tickets["cust"]),
        ticket_events=cut(w.ticket_events, w.ticket_events["cust"]),
        surveys=cut(w.surveys, w.surveys["cust"]), reviews=cut(w.reviews, w.reviews["cust"]),
    )  # fmt: skip
