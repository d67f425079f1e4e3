"""More personas written as data, each figure computed by hand from the documented
rules: every default valence rule (and several on one event), the first feedback as
the outcome, "stalled" as the type's p90, a reopened ticket with a peak-end tie,
onboarding, upgrade and renewal journeys, and churn by inactivity. (An audit planted
bugs these catch and the earlier personas did not: a reopened ticket scored +0.6,
several rules summed, the last feedback as the outcome, the p10 as "usual", no split
at an onboarding's end, `>` for the peak-end tie, no churn by inactivity.)"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_engine_personas import CONFIG, _built, ev, journey  # noqa: E402


def valences(ws) -> dict[str, tuple[float | None, str | None]]:
    """event type and time -> (valence, reason) of every journey event."""
    rows = ws.con.execute("SELECT e.event_type, e.ts, j.valence, j.valence_reason "
                          "FROM journey_events j JOIN events e USING (event_id)").fetchall()
    return {f"{t}@{ts:%m-%d %H:%M}": (v, why) for t, ts, v, why in rows}


def test_every_default_rule_and_several_on_one_event(make_workspace):
    ws = _built(make_workspace, [
        # Kim waited 40 min against a 30 min SLA: waited_past_sla -(10 / 60) (tolerance
        # 0, full_at 60 min, late_start 0) and long_wait -0.5 (2400 s > 1800): averaged
        ev("kim", "2024-02-10T09:00:00Z", "ticket_opened", channel="chat", ticket_id="K1",
           wait_seconds=2400, sla_minutes=30),
        # Max: early by 2 days (more than early_by 1 day): 0.4; 10 hours early: on time
        # 0.3; 10 days late: -(0.2 + 0.8 * 10 / 7) past -1: -1.0
        ev("max", "2024-02-01T10:00:00Z", "order_placed", order_id="M1"),
        ev("max", "2024-02-03T10:00:00Z", "order_delivered", order_id="M1",
           promised_at="2024-02-05T10:00:00Z"),
        ev("max", "2024-02-02T10:00:00Z", "order_placed", order_id="M2"),
        ev("max", "2024-02-04T10:00:00Z", "order_delivered", order_id="M2",
           promised_at="2024-02-04T20:00:00Z"),
        ev("max", "2024-02-05T10:00:00Z", "order_placed", order_id="M3"),
        ev("max", "2024-02-06T10:00:00Z", "order_cancelled", order_id="M3"),
        ev("max", "2024-02-07T10:00:00Z", "refund_granted", order_id="M3"),
        ev("max", "2024-02-08T10:00:00Z", "order_placed", order_id="M4"),
        ev("max", "2024-02-20T10:00:00Z", "order_delivered", order_id="M4",
           promised_at="2024-02-10T10:00:00Z"),
        ev("max", "2024-02-21T10:00:00Z", "loyalty_joined"),
    ])
    got = valences(ws)
    assert got["ticket_opened@02-10 09:00"] == (
        pytest.approx((-10 / 60 - 0.5) / 2),
        "replied 10.0 minutes late against the SLA; waited 2400.0 seconds")
    assert got["order_delivered@02-03 10:00"] == (
        pytest.approx(0.4), "delivered 2.0 days early against the promise")
    assert got["order_delivered@02-04 10:00"] == (
        pytest.approx(0.3), "delivered 10.0 hours early (on time) against the promise")
    assert got["order_cancelled@02-06 10:00"] == (pytest.approx(-0.4), "order cancelled")
    assert got["refund_granted@02-07 10:00"] == (pytest.approx(0.3), "refund granted")
    assert got["order_delivered@02-20 10:00"] == (
        pytest.approx(-1.0), "delivered 10.0 days late against the promise")
    assert got["loyalty_joined@02-21 10:00"] == (pytest.approx(0.5),
                                                 "joined the loyalty programme")
    loyalty = ws.con.execute("SELECT j.journey_type, m.valence FROM moments m JOIN journeys j "
                             "USING (journey_id) WHERE m.kind = 'loyalty'").fetchall()
    assert loyalty == [("visit", pytest.approx(0.5))]


def test_a_reopened_ticket_and_the_peak_end_tie(make_workspace):
    """Lia's ticket is resolved (first contact: 0.6), reopened (-0.6) and resolved
    again (after a reopening and an earlier resolution: 0.2). Peak 0.6 and valley -0.6
    are equally intense: the peak counts, (0.6 + 0.2) / 2 = 0.4."""
    ws = _built(make_workspace, [
        ev("lia", "2024-02-12T10:00:00Z", "ticket_opened", ticket_id="L1"),
        ev("lia", "2024-02-12T11:00:00Z", "ticket_resolved", ticket_id="L1"),
        ev("lia", "2024-02-13T10:00:00Z", "ticket_reopened", ticket_id="L1"),
        ev("lia", "2024-02-13T12:00:00Z", "ticket_resolved", ticket_id="L1"),
    ])
    got = valences(ws)
    assert got["ticket_resolved@02-12 11:00"] == (pytest.approx(0.6), "resolved on first contact")
    assert got["ticket_reopened@02-13 10:00"] == (pytest.approx(-0.6),
                                                  "the issue came back (ticket reopened)")
    assert got["ticket_resolved@02-13 12:00"][0] == pytest.approx(0.2)
    assert got["ticket_opened@02-12 10:00"] == (None, None)
    j = journey(ws, "L1")
    assert (j["status"], j["n_events"], j["n_valenced"]) == ("completed", 4, 3)
    assert (j["first_v"], j["peak_v"], j["valley_v"], j["end_v"]) == pytest.approx(
        (0.6, 0.6, -0.6, 0.2))
    assert j["mean_v"] == pytest.approx(0.2 / 3)
    # least squares of (1, 0.6), (2, -0.6), (3, 0.2): sum((k - 2) * v) / sum((k - 2)^2)
    assert j["trend_v"] == pytest.approx((-0.6 + 0.2) / 2)
    assert j["remembered"] == pytest.approx(0.4)
    business = dict(ws.con.execute(
        "SELECT m.kind, e.ts FROM moments m JOIN events e USING (event_id) "
        "WHERE m.journey_id = ? AND m.category = 'business'", [j["journey_id"]]).fetchall())
    assert {k: f"{v:%d %H:%M}" for k, v in business.items() if k in ("support", "resolution")} \
        == {"support": "12 10:00", "resolution": "12 11:00"}


def test_the_first_feedback_is_the_outcome_and_the_remembered_inputs_stop_there(
        make_workspace):
    """Nia's order: a failed payment (-0.6), a CSAT 4 (the outcome: (4 - 3) / (5 - 3) =
    0.5), a delivery 2 days late (-(0.2 + 0.8 * 2 / 7)) and a 1-star review after it.
    The remembered score's inputs are the events before the first feedback: the payment
    alone; the moments span the journey: the late delivery is its peak and farewell."""
    ws = _built(make_workspace, [
        ev("nia", "2024-01-10T09:55:00Z", "payment_failed", order_id="N1"),
        ev("nia", "2024-01-10T10:00:00Z", "order_placed", order_id="N1"),
        ev("nia", "2024-01-11T10:00:00Z", "csat_answered", channel="email", order_id="N1",
           csat=4),
        ev("nia", "2024-01-14T10:00:00Z", "order_delivered", order_id="N1",
           promised_at="2024-01-12T10:00:00Z"),
        ev("nia", "2024-01-15T10:00:00Z", "review_posted", order_id="N1", csat=1),
    ])
    j = journey(ws, "N1")
    assert j["outcome_valence"] == pytest.approx(0.5) and j["outcome_rating"] == 4
    assert j["n_valenced"] == 1
    assert (j["first_v"], j["peak_v"], j["valley_v"], j["end_v"], j["remembered"]) == \
        pytest.approx((-0.6,) * 5)
    late = -(0.2 + 0.8 * 2 / 7)
    kinds = dict(ws.con.execute("SELECT m.kind, m.valence FROM moments m WHERE journey_id = ? "
                                "AND category = 'experience'", [j["journey_id"]]).fetchall())
    assert kinds == {"first_impression": pytest.approx(-0.6), "valley": pytest.approx(-0.6),
                     "peak": pytest.approx(late), "farewell": pytest.approx(late)}


def test_stalled_is_idle_for_as_long_as_the_types_p90(make_workspace):
    """Five tickets took 1, 2, 3, 4 and 10 hours: the p90 (linear) is 4 + 0.6 * 6 = 7.6
    hours. At as_of (03-01 00:00) Q1 has been idle 5 h (open), Q2 8 h (stalled)."""
    events = []
    for i, hours in enumerate([1, 2, 3, 4, 10]):
        events += [ev(f"p{i}", "2024-02-01T00:00:00Z", "ticket_opened", ticket_id=f"P{i}"),
                   ev(f"p{i}", f"2024-02-01T{hours:02d}:00:00Z", "ticket_resolved",
                      ticket_id=f"P{i}")]
    events += [ev("q1", "2024-02-29T19:00:00Z", "ticket_opened", ticket_id="Q1"),
               ev("q2", "2024-02-29T16:00:00Z", "ticket_opened", ticket_id="Q2")]
    ws = _built(make_workspace, events)
    assert journey(ws, "Q1")["status"] == "open"
    assert journey(ws, "Q2")["status"] == "stalled"


TYPES = CONFIG.replace(
    "    refs: {order: order_id, ticket: ticket_id}",
    "    refs: {order: order_id, ticket: ticket_id, subscription: subscription_id}").replace(
    "    - {name: purchase,", """    - {name: onboarding, event_types: [signup, tutorial_step], start: [signup], end: [activated], gap: 1d, abandon_after: 3d}
    - {name: upgrade, event_types: [upgrade_started], start: [upgrade_started], end: [plan_upgraded], gap: 7d, abandon_after: 14d}
    - {name: renewal, key: subscription, start: [renewal_offered], end: [subscription_renewed, subscription_cancelled], abandon_after: 30d}
    - {name: purchase,""")


def test_onboarding_upgrade_and_renewal_journeys(make_workspace):
    """Pia signs up, does a tutorial step and is activated (3 events, 3 hours): the
    end closes it; a later step, a step 2 days on (past the 1 day gap) and a new signup
    (a start) each open a journey, idle 26-28 days at as_of: past abandon_after 3d.
    Ugo's upgrade ends in 2 days; his next one, idle 5 days, is past the type's p90 (2
    days) and within 14: stalled. Rui's renewal S1 ends in 2 days; S2, idle 15 days:
    stalled."""
    assert "onboarding" in TYPES
    ws = _built(make_workspace, [
        ev("pia", "2024-02-01T10:00:00Z", "signup"),
        ev("pia", "2024-02-01T12:00:00Z", "tutorial_step"),
        ev("pia", "2024-02-01T13:00:00Z", "activated"),
        ev("pia", "2024-02-01T14:00:00Z", "tutorial_step"),
        ev("pia", "2024-02-03T14:00:00Z", "tutorial_step"),
        ev("pia", "2024-02-03T15:00:00Z", "signup"),
        ev("ugo", "2024-02-20T10:00:00Z", "upgrade_started"),
        ev("ugo", "2024-02-22T10:00:00Z", "plan_upgraded"),
        ev("ugo", "2024-02-25T10:00:00Z", "upgrade_started"),
        ev("rui", "2024-02-10T10:00:00Z", "renewal_offered", subscription_id="S1"),
        ev("rui", "2024-02-12T10:00:00Z", "subscription_renewed", subscription_id="S1"),
        ev("rui", "2024-02-15T10:00:00Z", "renewal_offered", subscription_id="S2"),
    ], TYPES)
    rows = ws.con.execute("SELECT journey_type, journey_key, n_events, status, duration_s "
                          "FROM journeys WHERE journey_type IN ('onboarding', 'upgrade', "
                          "'renewal') ORDER BY journey_type, start_ts").fetchall()
    assert rows == [
        ("onboarding", None, 3, "completed", 3 * 3600.0),
        ("onboarding", None, 1, "abandoned", 0.0),
        ("onboarding", None, 1, "abandoned", 0.0),
        ("onboarding", None, 1, "abandoned", 0.0),
        ("renewal", "S1", 2, "completed", 2 * 86400.0),
        ("renewal", "S2", 1, "stalled", 0.0),
        ("upgrade", None, 2, "completed", 2 * 86400.0),
        ("upgrade", None, 1, "stalled", 0.0),
    ]


def test_churn_by_inactivity(make_workspace):
    """Oto's only order ended 2023-06-03 (and he did nothing after it): 272 days before
    as_of, past inactive_churn_after (200d) and churn_within (30d): churned. Pat's
    order, as old, was followed by another 100 days before as_of: not churned (he came
    back); her recent one is within churn_within: not known yet (NULL)."""
    config = CONFIG.replace("  repurchase_within: 40d", "  repurchase_within: 40d\n"
                            "  churn_within: 30d\n  inactive_churn_after: 200d")
    ws = _built(make_workspace, [
        ev("oto", "2023-06-01T00:00:00Z", "order_placed", order_id="T1"),
        ev("oto", "2023-06-03T00:00:00Z", "order_delivered", order_id="T1"),
        ev("pat", "2023-06-01T00:00:00Z", "order_placed", order_id="T2"),
        ev("pat", "2023-06-03T00:00:00Z", "order_delivered", order_id="T2"),
        ev("pat", "2024-02-20T00:00:00Z", "order_placed", order_id="T3"),
    ], config)
    got = dict(ws.con.execute("SELECT journey_key, churned FROM journeys "
                              "WHERE journey_type = 'purchase'").fetchall())
    assert got == {"T1": True, "T2": False, "T3": None}
