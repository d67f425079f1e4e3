"""Which units a metric counts, on hand-made journeys whose answer is known without
keymoments: first-contact resolution (a transfer is not first contact, whatever the
valence rule lists), repeat purchase (only purchases whose window has passed) and
conversion (a purchase credited to the last session before it; a review of an older
order is no purchase)."""

from __future__ import annotations

import json

import pytest

import keymoments as km

CONFIG = """
name: units
journeys:
  as_of: "2024-06-30T00:00:00Z"
  types:
    - {name: issue_resolution, key: ticket, start: [ticket_opened], end: [ticket_resolved]}
    - {name: purchase, key: order, start: [order_placed], end: [order_delivered]}
    - {name: browsing, key: session, start: [page_view], end: [add_to_cart]}
outcomes:
  repurchase_within: 30d
valence:
  use_default_rules: false
  rules:
    # as in the demo: only a reopening lowers the resolution's valence
    - {name: resolution, kind: first_contact_resolution, event_types: [ticket_resolved],
       interrupting: [ticket_reopened], valence: 0.8, else_valence: 0.5}
sources:
  events:
    path: events.jsonl
    identifiers: {customer_id: customer}
    refs: {order: order_id, ticket: ticket_id, session: session_id}
    event_type: event_type
    ts: ts
"""


def ev(customer, ts, event_type, **refs):
    return {"customer": customer, "ts": ts, "event_type": event_type, **refs}


EVENTS = [
    # tickets: T1 resolved at once, T2 transferred then resolved, T3 reopened: 1 of 3
    ev("a", "2024-01-02T09:00:00Z", "ticket_opened", ticket_id="T1"),
    ev("a", "2024-01-02T09:30:00Z", "ticket_resolved", ticket_id="T1"),
    ev("b", "2024-01-02T09:00:00Z", "ticket_opened", ticket_id="T2"),
    ev("b", "2024-01-02T09:10:00Z", "transferred", ticket_id="T2"),
    ev("b", "2024-01-02T09:40:00Z", "ticket_resolved", ticket_id="T2"),
    ev("c", "2024-01-02T09:00:00Z", "ticket_opened", ticket_id="T3"),
    ev("c", "2024-01-02T09:20:00Z", "ticket_reopened", ticket_id="T3"),
    ev("c", "2024-01-02T09:50:00Z", "ticket_resolved", ticket_id="T3"),
    # orders, as_of 2024-06-30, window 30 days: O1 (ends 01-05) is followed by O2 on
    # 01-20: repurchased. O2 (ends 01-22) is not followed within 30 days: not. O3
    # (ends 06-20, 10 days before as_of) is followed by O4 on 06-25, but its window
    # has not passed, and neither has O4's: neither is counted. With O5 below (e's
    # order of 03-01, no other order after it): 1 of 3
    ev("d", "2024-01-03T10:00:00Z", "order_placed", order_id="O1"),
    ev("d", "2024-01-05T10:00:00Z", "order_delivered", order_id="O1"),
    ev("d", "2024-01-20T10:00:00Z", "order_placed", order_id="O2"),
    ev("d", "2024-01-22T10:00:00Z", "order_delivered", order_id="O2"),
    ev("d", "2024-06-18T10:00:00Z", "order_placed", order_id="O3"),
    ev("d", "2024-06-20T10:00:00Z", "order_delivered", order_id="O3"),
    ev("d", "2024-06-25T10:00:00Z", "order_placed", order_id="O4"),
    # sessions: e browses twice (S1, S2) in a morning and orders after the second:
    # the order is S2's, not S1's as well; S3 (another day, no order) does not convert
    ev("e", "2024-03-01T09:00:00Z", "page_view", session_id="S1"),
    ev("e", "2024-03-01T10:00:00Z", "page_view", session_id="S2"),
    ev("e", "2024-03-01T10:05:00Z", "order_placed", order_id="O5"),
    ev("e", "2024-03-05T10:00:00Z", "page_view", session_id="S3"),
    # ... where e reviews an order of before the data (O6: a purchase journey with no
    # purchase in it): no conversion of S3, and no purchase to repeat
    ev("e", "2024-03-05T11:00:00Z", "review_submitted", order_id="O6"),
]


@pytest.fixture
def ws(make_workspace):
    ws = make_workspace(CONFIG, {"events.jsonl": "".join(json.dumps(e) + "\n" for e in EVENTS)})
    ws.ingest("events")
    ws.build()
    return ws


@pytest.mark.parametrize("metric, value, n", [
    ("fcr", 1 / 3, 3),
    ("repeat_purchase", 1 / 3, 3),
    ("conversion", 1 / 3, 3),
])
def test_metric_counts_the_right_units(ws, metric, value, n):
    (row,) = km.metrics(ws, metric, min_n=1).to_pylist()
    assert (row["value"], row["n"]) == (pytest.approx(value), n)


def test_an_outcome_is_known_once_its_window_has_passed(ws):
    got = dict(ws.con.execute(
        "SELECT journey_key, repurchased FROM journeys WHERE journey_type = 'purchase'").fetchall())
    assert got == {"O1": True, "O2": False, "O3": None, "O4": None, "O5": False, "O6": False}


SALES = """
name: sales
journeys:
  as_of: "2024-06-30T00:00:00Z"
  types:
    - {name: purchase, key: order, start: [sale]}
    - {name: browsing, key: session, start: [page_view]}
outcomes:
  repurchase_within: 30d
TAXONOMY
sources:
  events:
    path: events.jsonl
    identifiers: {customer: customer}
    refs: {order: order_id, session: session_id}
    event_type: event_type
    ts: ts
"""
SALE_EVENTS = [
    ev("s", "2024-02-01T09:00:00Z", "page_view", session_id="B1"),
    ev("s", "2024-02-01T09:30:00Z", "sale", order_id="A1"),
    ev("s", "2024-02-11T09:30:00Z", "sale", order_id="A2"),
]


@pytest.mark.parametrize("tagged", [False, True])
def test_purchase_metrics_warn_when_no_purchase_event_is_tagged(make_workspace, tagged):
    """An export whose own purchase event ('sale') the taxonomy does not tag: its
    purchase journeys hold no purchase event, so repeat_purchase has none and
    conversion reads 0; both say why and name the event types to tag. Tagged, the
    hand count: A1 is repurchased (A2 ten days later), A2 not (1 of 2); B1 converts."""
    taxonomy = ("taxonomy:\n  event_types:\n    sale: {stage: purchase, moment: purchase}"
                if tagged else "")
    ws = make_workspace(SALES.replace("TAXONOMY", taxonomy),
                        {"events.jsonl": "".join(json.dumps(e) + "\n" for e in SALE_EVENTS)})
    ws.ingest("events")
    ws.build()
    repeat = km.metrics(ws, "repeat_purchase", min_n=1)
    conversion = km.metrics(ws, "conversion", min_n=1)
    for r, name in ((repeat, "repeat_purchase"), (conversion, "conversion")):
        said = [w for w in r.meta["warnings"] if "holds a purchase event" in w]
        if tagged:
            assert said == []
        else:
            assert len(said) == 1 and "none of the 2 journeys" in said[0]
            assert "sale (2)" in said[0] and f"{name} counts none" in said[0]
    if tagged:
        assert not [w for w in repeat.meta["warnings"] if "has a second one" in w]
        assert (repeat.meta["overall"]["value"], repeat.meta["n"]) == (pytest.approx(0.5), 2)
        assert conversion.meta["overall"]["value"] == pytest.approx(1.0)
    else:
        assert repeat.meta["n"] == 0
        assert conversion.meta["overall"]["value"] == 0


def test_repeat_purchase_warns_when_nobody_has_a_second_purchase(make_workspace):
    """Three customers, one sale each (an export whose customer id is one per order):
    repeat purchase reads 0 of 3, and says that nobody could have repurchased."""
    taxonomy = "taxonomy:\n  event_types:\n    sale: {stage: purchase, moment: purchase}"
    events = [ev(c, f"2024-02-0{i}T09:30:00Z", "sale", order_id=f"A{i}")
              for i, c in enumerate("xyz", start=1)]
    ws = make_workspace(SALES.replace("TAXONOMY", taxonomy),
                        {"events.jsonl": "".join(json.dumps(e) + "\n" for e in events)})
    ws.ingest("events")
    ws.build()
    r = km.metrics(ws, "repeat_purchase", min_n=1)
    assert (r.meta["overall"]["value"], r.meta["n"]) == (0, 3)
    said = [w for w in r.meta["warnings"] if "has a second one" in w]
    assert len(said) == 1 and "none of the 3 people with a purchase" in said[0]


def test_the_report_says_why_the_purchase_metrics_found_no_purchase(make_workspace):
    """The report's metrics table: conversion's row carries the warning, and the
    repeat purchase, not measured, is named with it."""
    from keymoments.insights.report import insight_sections

    ws = make_workspace(SALES.replace("TAXONOMY", ""),
                        {"events.jsonl": "".join(json.dumps(e) + "\n" for e in SALE_EVENTS)})
    ws.ingest("events")
    ws.build()
    section = insight_sections(ws)[0]
    rows = {r["metric"]: r for r in section["rows"]}
    assert "repeat_purchase" not in rows
    assert "holds a purchase event" in rows["conversion"]["warning"]
    assert "Not measured: repeat_purchase: none of the 2 journeys" in section["text"]


def test_rfm_counts_an_exports_repeat_purchase_events_as_purchases(make_workspace):
    """An event the taxonomy tags repeat_purchase is a purchase (PURCHASE_MOMENTS), for
    probability-alive's histories too: r bought on 01-01 and again on 01-10, so one
    repeat purchase day, 9 days after the first (the data ends on 01-20)."""
    from keymoments.insights.alive import rfm

    events = [ev("r", "2024-01-01T10:00:00Z", "order_placed", order_id="R1"),
              ev("r", "2024-01-10T10:00:00Z", "repeat_purchase", order_id="R2"),
              ev("r", "2024-01-20T10:00:00Z", "page_view", session_id="R3")]
    ws = make_workspace(CONFIG, {"events.jsonl": "".join(json.dumps(e) + "\n" for e in events)})
    ws.ingest("events")
    (row,) = rfm(ws).to_pylist()
    assert (row["frequency"], row["recency"], row["age"]) == (1, 9.0, 19.0)


def test_rfm_counts_purchase_days_in_the_workspace_timezone(make_workspace):
    """Orders at 20:00 and 22:30 in São Paulo (-03:00) on 2024-01-05 are one purchase
    day (in UTC they fell on the 5th and the 6th: a repeat purchase that was none); the
    third, 2024-01-09 at 23:00 local (the 10th in UTC), is 4 days later; the data's last
    day is 2024-01-20 there. Counted by hand."""
    from keymoments.insights.alive import rfm

    events = [ev("s", "2024-01-05T23:00:00Z", "order_placed", order_id="S1"),
              ev("s", "2024-01-06T01:30:00Z", "order_placed", order_id="S2"),
              ev("s", "2024-01-10T02:00:00Z", "order_placed", order_id="S3"),
              ev("s", "2024-01-21T02:00:00Z", "page_view", session_id="S4")]
    files = {"events.jsonl": "".join(json.dumps(e) + "\n" for e in events)}
    ws = make_workspace("timezone: America/Sao_Paulo\n" + CONFIG, files)
    ws.ingest("events")
    (row,) = rfm(ws).to_pylist()
    assert (row["frequency"], row["recency"], row["age"]) == (1, 4.0, 15.0)
    utc = make_workspace(CONFIG, files, folder="utc")
    utc.ingest("events")
    (row,) = rfm(utc).to_pylist()
    assert (row["frequency"], row["recency"], row["age"]) == (2, 5.0, 16.0)
