"""Sessions on the web and in the app, and the orders some of them end in.

A session walks the designed path (page views, product views, add to cart, checkout)
as far as the visitor goes. Some buyers loop back from checkout to product pages
before paying (the detour), some payments fail first. Once checkout starts, the
session's web events carry the order id (the cart becomes the order), so they belong
to the order's journey. Logged-out visitors carry only a cookie, a fresh one when they
cleared it or use a new device; guests type their email at checkout, which later
links the cookie to the person.

>>> from .params import ShopParams
>>> rng = np.random.default_rng(0)
>>> counters = {"session": 0, "order": 0, "fresh": 0}
>>> web, sessions = browse(rng, ShopParams(), np.array([0, 1]), np.array([100, 200]), counters)
>>> int(web["ts"][0]), len(sessions["session"]) == counters["session"] == 2
(100, True)
"""

from __future__ import annotations

import numpy as np

from .blocks import Block, expand, within
from .params import CARRIERS, CATEGORIES, DAY, DISCOVERY, ET, HOUR, VALENCE, ShopParams
from .valence import DISPATCH, LATE_DELIVERY, expectation_valence

__all__ = ["WEB_SLOTS", "CHECKOUT_SLOTS", "ORDER_SLOTS", "browse", "place_orders", "web_valence"]

#: Event type of each session slot, in order: the designed path, then the detour back
#: from checkout to product pages, then a failed payment.
WEB_SLOTS = np.array([ET[e] for e in (
    "page_view", "product_view", "add_to_cart", "checkout_started",
    "product_view", "checkout_started", "payment_failed",
)])  # fmt: skip
#: Slots of the checkout pages (where a guest types an email).
CHECKOUT_SLOTS = np.array([False, False, False, True, False, True, True])
#: Slots after checkout started (in converting sessions they carry the order id).
ORDER_SLOTS = np.array([False, False, False, True, True, True, True])
_WEB_GAP = np.array([40.0, 60.0, 30.0, 45.0, 50.0, 30.0, 20.0])  # mean seconds before


def web_valence(slot: np.ndarray) -> np.ndarray:
    """Planted valence of web events by slot."""
    names = ("page_view", "product_view", "add_to_cart", "checkout_started",
             "product_view", "checkout_started", "payment_failed")  # fmt: skip
    return np.array([VALENCE[n] for n in names])[slot]


def browse(
    rng: np.random.Generator, p: ShopParams, cust: np.ndarray, start: np.ndarray,
    counters: dict[str, int],
) -> tuple[Block, Block]:  # fmt: skip
    """Web events (``session, slot, ts``) and session facts for sessions of ``cust``
    starting at ``start`` (sorted by start)."""
    S = len(cust)
    sess = counters["session"] + np.arange(S)
    counters["session"] += S
    logged = rng.random(S) < p.logged_in_share
    app = logged & (rng.random(S) < p.app_share)
    fresh = ~logged & (rng.random(S) < p.fresh_cookie_share)
    device = np.full(S, -1, dtype=np.int64)
    device[fresh] = counters["fresh"] + np.arange(int(fresh.sum()))
    counters["fresh"] += int(fresh.sum())
    utm = rng.choice(len(DISCOVERY), S, p=p.discovery_share)
    conv = rng.random(S) < np.asarray(p.conversion)[utm]
    detour = conv & (rng.random(S) < p.detour_share)

    k = np.zeros((S, len(WEB_SLOTS)), dtype=np.int64)
    k[:, 0] = 1 + rng.poisson(1.2, S)
    k[:, 1] = rng.poisson(1.5, S) + conv
    k[:, 2] = np.where(conv, 1 + (rng.random(S) < 0.25), rng.random(S) < 0.3)
    checkout = conv | ((k[:, 2] > 0) & (rng.random(S) < 0.35))
    k[:, 3] = checkout
    k[:, 4] = detour * (1 + rng.poisson(0.5, S))
    k[:, 5] = detour
    k[:, 6] = np.where(
        conv, rng.random(S) < p.payment_fail_converted,
        checkout & (rng.random(S) < p.payment_fail_abandoned),
    )  # fmt: skip
    gave_email = ~logged & checkout & (conv | (rng.random(S) < p.guest_email_share))

    owner, slot, _ = expand(k)
    per = k.sum(1)
    gaps = (rng.exponential(_WEB_GAP[slot]) + 2).astype(np.int64)
    ts = start[owner] + within(per, gaps)
    order = np.full(S, -1, dtype=np.int64)
    order[conv] = counters["order"] + np.arange(int(conv.sum()))
    web = {"session": sess[owner], "slot": slot, "ts": ts}
    sessions = {
        "session": sess, "cust": cust, "start": start, "end": ts[np.cumsum(per) - 1],
        "logged": logged, "app": app, "fresh": fresh, "device": device, "utm": utm,
        "conv": conv, "detour": detour, "order": order, "payment_failed": k[:, 6] > 0,
        "checkout": checkout, "gave_email": gave_email,
    }  # fmt: skip
    return web, sessions


def place_orders(rng: np.random.Generator, p: ShopParams, s: Block, counters: dict[str, int]) -> Block:
    """The orders of the converting sessions ``s``: the wide order timeline (``-1`` for
    a milestone that does not happen), promises (``ship_by``, ``estimate``), carrier,
    amount, and the planted valences of the shipment and the delivery."""
    conv = np.flatnonzero(s["conv"])
    O = len(conv)
    counters["order"] += O
    placed = s["end"][conv] + rng.integers(20, 180, O)
    approved = placed + rng.integers(5, 900, O)
    carrier = rng.choice(len(CARRIERS), O, p=p.carrier_share)
    category = rng.choice(len(CATEGORIES), O, p=[0.2, 0.25, 0.2, 0.15, 0.1, 0.1])
    base = np.array([180.0, 45.0, 70.0, 30.0, 18.0, 35.0])[category]
    amount = np.round(base * np.exp(rng.normal(0, 0.5, O)), 2)
    cancelled = rng.random(O) < p.cancel_share
    # the shop promises to ship by 18:00 the next day: most parcels leave within the
    # last 12 hours before that, some within hours of the payment (over 12 hours early:
    # ``ship_by - 13 h`` is at least 5 hours after the payment), some late
    ship_by = (placed // DAY + 1) * DAY + 18 * HOUR
    dispatch = rng.choice(3, O, p=p.dispatch_share)  # fast, on time, late
    fast = np.minimum(approved + rng.uniform(0.1, 0.4, O) * DAY, ship_by - 13 * HOUR)
    window = np.maximum(approved, ship_by - 12 * HOUR)
    shipped = np.select(
        [dispatch == 0, dispatch == 1],
        [fast, window + rng.random(O) * (ship_by - window)],
        ship_by + rng.uniform(2 * HOUR, 2 * DAY, O),
    ).astype(np.int64)  # fmt: skip
    v_shipped = expectation_valence((shipped - ship_by) / HOUR, DISPATCH)
    estimate = (placed // DAY + np.asarray(p.promise_days)[carrier]) * DAY + 20 * HOUR
    late = ~cancelled & (rng.random(O) < np.asarray(p.late_prob)[carrier])
    # on time: before the estimate (an hour at least), so ``late`` is "after the estimate"
    on_time = shipped + 6 * HOUR + rng.random(O) * (estimate - HOUR - shipped - 6 * HOUR)
    late_at = estimate + rng.uniform(3 * HOUR, 4 * DAY, O)
    delivered = np.where(late, late_at, on_time).astype(np.int64)
    v_delivered = expectation_valence((delivered - estimate) / DAY, LATE_DELIVERY)
    cancel_at = approved + rng.integers(HOUR, 30 * HOUR, O)
    return {
        "order": s["order"][conv],
        "session": s["session"][conv],
        "cust": s["cust"][conv],
        "guest": ~s["logged"][conv],
        "app": s["app"][conv],
        "payment_failed": s["payment_failed"][conv],
        "detour": s["detour"][conv],
        "placed": placed,
        "approved": approved,
        "shipped": np.where(cancelled, -1, shipped),
        "delivered": np.where(cancelled, -1, delivered),
        "cancelled": np.where(cancelled, cancel_at, -1),
        "estimate": estimate,
        "carrier": carrier,
        "category": category,
        "amount": amount,
        "late": late,
        "v_delivered": v_delivered,
        "ship_by": ship_by,
        "dispatch": np.where(cancelled, -1, dispatch),
        "v_shipped": v_shipped,
        "phone_fmt": rng.choice([2, 0, 3], O),
    }
