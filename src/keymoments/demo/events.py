"""The simulated shop as one long canonical event log: exactly the events the demo's
source mapping produces, with the true person of each. The truth and the flat
benchmark file are computed from it.

Columns are built only when asked for, and ``with_refs`` keeps only events carrying an
order or ticket ref, so the truth of 10M-event demos stays cheap.

>>> from .world import simulate
>>> world = simulate(n_customers=20, seed=3)
>>> log = event_log(world, ("ts", "etype"))
>>> len(log["ts"]) == world.n_events
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from .blocks import Block
from .browsing import web_valence
from .params import ET, SCALES, SURVEYS, TYPE_VALENCE
from .world import CRM_MILESTONES, ORDER_MILESTONES, World, milestone_valence

__all__ = ["CHANNELS", "COLUMNS", "event_log"]

#: Channel codes of the canonical log (as the demo's ``keymoments.yaml`` maps them).
CHANNELS = ("web", "app", "delivery", "chat", "email", "phone", "survey")
#: Every column :func:`event_log` can build.
COLUMNS = ("ts", "etype", "cust", "session", "order", "ticket", "valence", "channel", "agent",
           "rating", "scale", "comment", "amount", "carrier", "wait", "sla", "expected")  # fmt: skip
_FLOAT = {"valence", "amount"}
_Source = dict[str, Callable[[], np.ndarray | float | int]]


def _web(w: World, rows: np.ndarray) -> _Source:
    e, s = w.web, w.sessions
    sess = lambda: e["session"][rows]  # noqa: E731
    return {
        "ts": lambda: e["ts"][rows], "etype": lambda: w.web_etype()[rows],
        "cust": lambda: s["cust"][sess()], "session": sess, "order": lambda: w.web_order()[rows],
        "valence": lambda: web_valence(e["slot"][rows]),
        "channel": lambda: s["app"][sess()].astype(np.int64),
    }  # fmt: skip


def _order_milestone(w: World, col: str, event: str) -> _Source:
    o = w.orders
    rows = np.flatnonzero(o[col] >= 0)
    delivery = col in ("shipped", "delivered")
    return {
        "ts": lambda: o[col][rows], "etype": lambda: ET[event], "cust": lambda: o["cust"][rows],
        "order": lambda: o["order"][rows],
        "valence": lambda: milestone_valence(o, col, rows),
        "channel": lambda: 2 if delivery else o["app"][rows].astype(np.int64),
        "amount": lambda: o["amount"][rows],
        "carrier": lambda: np.where(o["cancelled"][rows] >= 0, -1, o["carrier"][rows]),
        "expected": lambda: o["estimate"][rows] if col == "delivered" else
        o["ship_by"][rows] if col == "shipped" else -1,
    }  # fmt: skip


def _tickets(w: World) -> _Source:
    t = w.ticket_events
    cols: _Source = {k: (lambda k=k: t[k]) for k in ("ts", "etype", "cust", "order", "ticket",
                                                     "valence", "agent", "wait", "sla")}  # fmt: skip
    cols["channel"] = lambda: 3 + t["channel"]
    return cols


def _survey(w: World, k: int, name: str) -> _Source:
    sv = w.surveys
    rows = np.flatnonzero(sv["kind"] == k)
    return {
        "ts": lambda: sv["ts"][rows], "etype": lambda: ET[f"{name}_answered"],
        "cust": lambda: sv["cust"][rows], "order": lambda: sv["order"][rows],
        "ticket": lambda: sv["ticket"][rows], "channel": lambda: 6,
        "rating": lambda: sv["score"][rows], "scale": lambda: k, "comment": lambda: sv["comment"][rows],
    }  # fmt: skip


def _reviews(w: World) -> _Source:
    r = w.reviews
    return {
        "ts": lambda: r["ts"], "etype": lambda: ET["review_posted"], "cust": lambda: r["cust"],
        "order": lambda: r["order"], "channel": lambda: 0, "rating": lambda: r["stars"],
        "scale": lambda: list(SCALES).index("stars"), "comment": lambda: r["comment"],
    }  # fmt: skip


def _crm(w: World, col: str, event: str) -> _Source:
    rows = np.flatnonzero(w.customers[col] >= 0)
    return {
        "ts": lambda: w.customers[col][rows], "etype": lambda: ET[event], "cust": lambda: rows,
        "valence": lambda: TYPE_VALENCE[ET[event]], "channel": lambda: 0,
    }  # fmt: skip


def _sources(w: World, with_refs: bool) -> list[tuple[int, _Source]]:
    """(row count, column builders) of every source, in the order of the exports."""
    web_rows = np.flatnonzero(w.web_order() >= 0) if with_refs else np.arange(len(w.web["ts"]))
    found: list[_Source] = [_web(w, web_rows)]
    found += [_order_milestone(w, col, event) for col, event in ORDER_MILESTONES.items()]
    found.append(_tickets(w))
    found += [_survey(w, k, name) for k, name in enumerate(SURVEYS)]
    found.append(_reviews(w))
    if not with_refs:
        found += [_crm(w, col, event) for col, event in CRM_MILESTONES.items()]
    counts = [len(web_rows)]
    counts += [int((w.orders[col] >= 0).sum()) for col in ORDER_MILESTONES]
    counts.append(len(w.ticket_events["ts"]))
    counts += [int((w.surveys["kind"] == k).sum()) for k in range(len(SURVEYS))]
    counts.append(len(w.reviews["ts"]))
    if not with_refs:
        counts += [int((w.customers[col] >= 0).sum()) for col in CRM_MILESTONES]
    return list(zip(counts, found))


def event_log(world: World, columns: Iterable[str] = COLUMNS, with_refs: bool = False) -> Block:
    """The events of the world's exports (source by source, in file order within a
    source, except that the wide tables give one event per timestamp cell).

    ``valence`` is the planted valence (NaN for feedback: surveys and reviews);
    ``rating``/``scale`` hold survey scores and review stars (``scale`` indexes
    ``("csat", "nps", "ces", "stars")``); ``expected`` is the promised dispatch or delivery time;
    ``channel`` indexes :data:`CHANNELS`. Missing values are -1 (NaN for floats).
    """
    sources = _sources(world, with_refs)
    total = sum(n for n, _ in sources)
    log: Block = {}
    for col in columns:
        floats = col in _FLOAT
        out = np.full(total, np.nan if floats else -1, dtype=float if floats else np.int64)
        at = 0
        for n, src in sources:
            if col in src:
                out[at : at + n] = src[col]()
            at += n
        log[col] = out
    return log
