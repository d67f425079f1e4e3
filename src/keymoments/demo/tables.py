"""The simulated shop as the tables a company would export from its silos.

Each system names people its own way: web analytics has a cookie and, once logged in,
the customer id; the shop has customer id (blank for guests), email and phone; the
contact centre has the customer id in chat, the email (typed in any case) on email
and only the phone number, written in many ways, on calls.

>>> from .world import simulate
>>> tables = source_tables(simulate(n_customers=20, seed=3))
>>> sorted(tables)[:3]
['customers', 'orders', 'reviews']
>>> tables["orders"].column_names[:4]
['order_id', 'customer_id', 'email', 'phone']
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .columns import PHONE_FORMATS, choose, codes_to_strings, ids, phones
from .comments import LANGUAGES, comment_pool
from .browsing import CHECKOUT_SLOTS, WEB_SLOTS
from .params import (
    AGENTS, CARRIERS, CATEGORIES, DISCOVERY, EVENT_TYPES, SEGMENTS, SURVEYS, TICKET_CHANNELS,
    TICKET_TOPICS,
)  # fmt: skip
from .world import World

__all__ = ["Labels", "source_tables", "TS"]

#: Arrow type of every timestamp column (seconds, UTC); writers render it per format.
TS = pa.timestamp("s", tz="UTC")

FIRST_NAMES = (
    "ana", "maria", "joao", "pedro", "lucas", "julia", "carlos", "sofia", "pablo", "lucia",
    "marie", "pierre", "camille", "louis", "anna", "lukas", "lena", "felix", "james", "emma",
    "olivia", "liam", "noah", "ava", "mia", "ethan", "chloe", "hugo", "ines", "diego",
)  # fmt: skip
LAST_NAMES = (
    "silva", "santos", "oliveira", "souza", "garcia", "martinez", "lopez", "sanchez", "martin",
    "bernard", "dubois", "moreau", "muller", "schmidt", "schneider", "fischer", "smith",
    "johnson", "brown", "taylor", "wilson", "davies", "costa", "pereira", "romero", "weber",
)  # fmt: skip
DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com")


def _ts(seconds: np.ndarray) -> pa.Array:
    s = np.asarray(seconds, dtype=np.int64)
    return pa.array(s, mask=s < 0).cast(TS)


def _rank(keys: tuple[np.ndarray, ...], valid: np.ndarray | None = None) -> np.ndarray:
    """1-based rank of each row when sorted by ``keys`` (last key first); 0 where invalid."""
    n = len(keys[0])
    valid = np.ones(n, bool) if valid is None else valid
    idx = np.flatnonzero(valid)
    order = idx[np.lexsort(tuple(k[idx] for k in keys))]
    rank = np.zeros(n, dtype=np.int64)
    rank[order] = np.arange(1, len(order) + 1)
    return rank


def _width(n: int) -> int:
    return max(6, len(str(n)))


def _scramble(x: np.ndarray) -> np.ndarray:
    """A bijection of [0, 2**32): cookie ids that do not reveal the customer number."""
    return (x.astype(np.uint64) * np.uint64(2_654_435_761) + np.uint64(97_531)) % np.uint64(2**32)


def _pick(labels: pa.Array, idx: np.ndarray) -> pa.Array:
    """``labels[idx]``, null where ``idx`` is -1."""
    idx = np.asarray(idx, dtype=np.int64)
    missing = idx < 0
    return labels.take(pa.array(idx, mask=missing) if missing.any() else pa.array(idx))


class Labels:
    """The printed ids and contact details of the world's entities.

    Ids are numbered in time order (``C000001`` signed up first, ``S000001`` is the first
    session, ``O000001`` the first order placed) as a company's sequences would be.
    """

    def __init__(self, world: World) -> None:
        self.world = world
        c, s, o, t = world.customers, world.sessions, world.orders, world.tickets
        self.C, S = len(c["signup"]), len(s["session"])
        self.session_no = np.arange(1, S + 1)  # sessions are simulated in start order
        self.order_no = _rank((o["order"], o["placed"]))
        self.ticket_no = _rank((t["ticket"], t["opened"]), t["exported"])
        self._customers = ids("C", np.arange(1, self.C + 1), _width(self.C))
        self._sessions = ids("S", self.session_no, _width(S))
        self._orders = ids("O", self.order_no, _width(len(self.order_no)))
        exported = np.where(self.ticket_no > 0, self.ticket_no, -1)
        self._tickets = ids("T", exported, _width(len(self.ticket_no)))
        self._emails = self._build_emails()
        self._phones: pa.Array | None = None
        # a browser cookie per customer, a new one per session for cleared cookies, an app id
        app, fresh = s["app"], s["fresh"]
        number = _scramble(np.where(fresh, self.C + s["device"], s["cust"]))
        self._devices = choose(app.astype(np.int64), [ids("ck-", number, 10), ids("app-", number, 10)])

    def customer(self, idx: np.ndarray) -> pa.Array:
        return _pick(self._customers, idx)

    def session(self, idx: np.ndarray) -> pa.Array:
        return _pick(self._sessions, idx)

    def device(self, session_idx: np.ndarray) -> pa.Array:
        return _pick(self._devices, session_idx)

    def order(self, idx: np.ndarray) -> pa.Array:
        return _pick(self._orders, idx)

    def ticket(self, idx: np.ndarray) -> pa.Array:
        return _pick(self._tickets, idx)

    def _build_emails(self) -> pa.Array:
        c = self.world.customers
        first = pa.array(FIRST_NAMES).take(pa.array(c["first_name"] % len(FIRST_NAMES)))
        last = pa.array(LAST_NAMES).take(pa.array(c["last_name"] % len(LAST_NAMES)))
        domain = pa.array(DOMAINS).take(pa.array(c["domain"] % len(DOMAINS)))
        number = pa.array(np.arange(1, self.C + 1)).cast(pa.string())
        return pc.binary_join_element_wise(first, ".", last, number, "@", domain, "")

    def email(self, idx: np.ndarray, case: np.ndarray | None = None) -> pa.Array:
        """Customers' emails; ``case`` 0..3 writes them lower, Title, UPPER or Capitalised."""
        emails = _pick(self._emails, idx)
        if case is not None:
            emails = choose(case, [emails, pc.utf8_title(emails), pc.utf8_upper(emails),
                                   pc.utf8_capitalize(emails)])  # fmt: skip
        return emails

    def phone(self, idx: np.ndarray, fmt: np.ndarray) -> pa.Array:
        """Customers' phone numbers written in format ``fmt`` (see ``PHONE_FORMATS``)."""
        if self._phones is None:  # every customer's number in every format, built once
            c = self.world.customers
            self._phones = pa.concat_arrays([
                phones(c["area"], c["exchange"], c["line"], np.full(self.C, f))
                for f in range(len(PHONE_FORMATS))
            ])  # fmt: skip
        idx = np.asarray(idx, dtype=np.int64)
        return _pick(self._phones, np.where(idx >= 0, np.asarray(fmt) * self.C + idx, -1))


def _sorted(columns: dict[str, pa.Array], order: np.ndarray) -> pa.Table:
    table = pa.table(columns)
    return table.take(pa.array(order)) if len(order) else table


def web_table(w: World, lab: Labels) -> pa.Table:
    """Web and app analytics, session by session (sessions in start order)."""
    e, s = w.web, w.sessions
    sess, slot = e["session"], e["slot"]
    logged, cust = s["logged"][sess], s["cust"][sess]
    checkout = CHECKOUT_SLOTS[slot]
    first = np.r_[True, sess[1:] != sess[:-1]] if len(sess) else np.zeros(0, bool)
    utm = np.where(first, s["utm"][sess], -1)
    cols = {
        "session_id": lab.session(sess),
        "customer_id": lab.customer(np.where(logged, cust, -1)),
        "device_id": lab.device(sess),
        "email": lab.email(np.where(checkout & s["gave_email"][sess], cust, -1)),
        "event": codes_to_strings(WEB_SLOTS[slot], EVENT_TYPES),
        "ts": _ts(e["ts"]),
        "channel": codes_to_strings(s["app"][sess].astype(np.int64), ("web", "app")),
        "utm_source": codes_to_strings(np.where(utm == DISCOVERY.index("direct"), -1, utm), DISCOVERY),
        "order_id": lab.order(w.web_order()),
    }
    return pa.table(cols)


def orders_table(w: World, lab: Labels) -> pa.Table:
    """The shop's orders, one wide row per order (blank: not happened by the export)."""
    o = w.orders
    shipped = o["cancelled"] < 0
    cols = {
        "order_id": lab.order(o["order"]),
        "customer_id": lab.customer(np.where(o["guest"], -1, o["cust"])),
        "email": lab.email(o["cust"]),
        "phone": lab.phone(o["cust"], o["phone_fmt"]),
        "channel": codes_to_strings(o["app"].astype(np.int64), ("web", "app")),
        "order_placed_at": _ts(o["placed"]),
        "payment_approved_at": _ts(o["approved"]),
        "shipped_at": _ts(o["shipped"]),
        "delivered_at": _ts(o["delivered"]),
        "cancelled_at": _ts(o["cancelled"]),
        "ship_by_at": _ts(o["ship_by"]),
        "estimated_delivery_at": _ts(o["estimate"]),
        "carrier": codes_to_strings(np.where(shipped, o["carrier"], -1), CARRIERS),
        "amount": pa.array(o["amount"]),
        "currency": pa.array(np.full(len(o["order"]), "USD")),
        "product_category": codes_to_strings(o["category"], CATEGORIES),
    }
    return _sorted(cols, np.argsort(lab.order_no, kind="stable"))


def tickets_table(w: World, lab: Labels) -> pa.Table:
    """The contact centre's ticket events in time order; who it was depends on the channel."""
    e, t = w.ticket_events, w.tickets
    tk = e["ticket"]  # ticket indices equal their row in w.tickets
    ch = e["channel"]
    cust = e["cust"]
    cols = {
        "ticket_id": lab.ticket(tk),
        "order_id": lab.order(e["order"]),
        "customer_id": lab.customer(np.where(ch == 0, cust, -1)),
        "email": lab.email(np.where(ch == 1, cust, -1), t["email_case"][tk]),
        "phone": lab.phone(np.where(ch == 2, cust, -1), t["phone_fmt"][tk]),
        "channel": codes_to_strings(ch, TICKET_CHANNELS),
        "event": codes_to_strings(e["etype"], EVENT_TYPES),
        "ts": _ts(e["ts"]),
        "agent": codes_to_strings(e["agent"], AGENTS),
        "wait_seconds": pa.array(e["wait"], mask=e["wait"] < 0),
        "sla_minutes": pa.array(e["sla"], mask=e["sla"] < 0),
        "topic": codes_to_strings(t["topic"][tk], TICKET_TOPICS),
        "language": codes_to_strings(w.customers["lang"][cust], LANGUAGES),
    }
    return _sorted(cols, np.lexsort((e["pos"], tk, e["ts"])))


def _comments(idx: np.ndarray) -> pa.Array:
    pool, _, _ = comment_pool()
    return pa.array(pool).take(pa.array(idx, mask=idx < 0))


def survey_table(w: World, lab: Labels, kind: int) -> pa.Table:
    """Answers to one survey type (CSAT, NPS or CES) in time order."""
    s = w.surveys
    keep = np.flatnonzero(s["kind"] == kind)
    cols = {
        "ts": _ts(s["ts"][keep]),
        "customer_id": lab.customer(s["cust"][keep]),
        "order_id": lab.order(s["order"][keep]),
        "ticket_id": lab.ticket(s["ticket"][keep]),
        f"{SURVEYS[kind]}_score": pa.array(s["score"][keep]),
        "comment": _comments(s["comment"][keep]),
        "language": codes_to_strings(w.customers["lang"][s["cust"][keep]], LANGUAGES),
    }
    return _sorted(cols, np.lexsort((s["cust"][keep], s["ts"][keep])))


def reviews_table(w: World, lab: Labels) -> pa.Table:
    """Product reviews (1-5 stars) in time order."""
    r = w.reviews
    order = np.lexsort((r["order"], r["ts"]))
    cols = {
        "review_id": ids("R", _rank((r["order"], r["ts"])), _width(len(r["ts"]))),
        "order_id": lab.order(r["order"]),
        "customer_id": lab.customer(r["cust"]),
        "posted_at": _ts(r["ts"]),
        "stars": pa.array(r["stars"]),
        "text": _comments(r["comment"]),
        "language": codes_to_strings(w.customers["lang"][r["cust"]], LANGUAGES),
    }
    return _sorted(cols, order)


def customers_table(w: World, lab: Labels) -> pa.Table:
    """The CRM: one wide row per customer, in customer id order."""
    c = w.customers
    idx = np.arange(lab.C)
    return pa.table({
        "customer_id": lab.customer(idx),
        "email": lab.email(idx),
        "phone": lab.phone(idx, c["crm_phone_fmt"]),
        "segment": codes_to_strings(c["segment"], SEGMENTS),
        "preferred_language": codes_to_strings(c["lang"], LANGUAGES),
        "signup_at": _ts(c["signup"]),
        "loyalty_joined_at": _ts(c["loyalty"]),
        "subscription_cancelled_at": _ts(c["unsubscribed"]),
    })  # fmt: skip


def source_tables(world: World, labels: Labels | None = None) -> dict[str, pa.Table]:
    """Every export of the shop, by source name (sorted)."""
    lab = labels or Labels(world)
    tables = {
        "web_events": web_table(world, lab),
        "orders": orders_table(world, lab),
        "tickets": tickets_table(world, lab),
        **{f"surveys_{s}": survey_table(world, lab, i) for i, s in enumerate(SURVEYS)},
        "reviews": reviews_table(world, lab),
        "customers": customers_table(world, lab),
    }
    return dict(sorted(tables.items()))
