"""Journeys, valence and moments on small named personas, written as data, with
every expected figure computed by hand (in the comments) from the rules' formulas."""

from __future__ import annotations

import json
import random

import pytest

CONFIG = """
name: personas
journeys:
  as_of: "2024-03-01T00:00:00Z"
  catch_all_gap: 30m
  types:
    - {name: issue_resolution, key: ticket, start: [ticket_opened], end: [ticket_resolved], abandon_after: 30d}
    - {name: purchase, key: order, start: [order_placed], end: [order_delivered], stall_after: 10d, abandon_after: 20d}
outcomes:
  repurchase_within: 40d   # O1 ended 54 days before as_of: its window has passed
sources:
  events:
    path: events.jsonl
    identifiers: {customer_id: customer}
    refs: {order: order_id, ticket: ticket_id}
    event_type: event_type
    ts: ts
    channel: channel
    agent: agent
    rating: {column: csat, scale: csat5}
    measures: {wait_seconds: wait_seconds}
    expectation: {kind: promise, ts: promised_at, value: sla_minutes}
"""


def ev(customer, ts, event_type, channel="web", **extra):
    return {"customer": customer, "ts": ts, "event_type": event_type, "channel": channel, **extra}


PERSONAS = [
    # Ana: an order delivered 2 days after the promise, then a CSAT of 2.
    ev("ana", "2024-01-01T10:00:00Z", "order_placed", order_id="O1"),
    ev("ana", "2024-01-01T11:00:00Z", "payment_approved", order_id="O1"),
    ev("ana", "2024-01-02T10:00:00Z", "order_shipped", order_id="O1"),
    ev("ana", "2024-01-06T10:00:00Z", "order_delivered", order_id="O1",
       promised_at="2024-01-04T10:00:00Z"),
    ev("ana", "2024-01-07T10:00:00Z", "csat_answered", channel="email", order_id="O1", csat=2),
    # Ana orders again 29 days after O1's end (within 40 days): O1 was followed by a
    # repurchase. O2 has no end and is idle from 2024-02-05 to as_of (25 days >
    # abandon_after 20d): abandoned; too recent (25 < 40 days) to know a repurchase.
    ev("ana", "2024-02-05T10:00:00Z", "order_placed", order_id="O2"),
    # Bruno: a chat ticket, waited 10 min against a 5 min SLA, transferred, resolved.
    ev("bruno", "2024-02-01T09:00:00Z", "ticket_opened", channel="chat", ticket_id="T1",
       wait_seconds=600, sla_minutes=5),
    ev("bruno", "2024-02-01T09:10:00Z", "transferred", channel="chat", ticket_id="T1", agent="a1"),
    ev("bruno", "2024-02-01T09:20:00Z", "agent_reply", channel="phone", ticket_id="T1", agent="a2"),
    ev("bruno", "2024-02-01T09:30:00Z", "ticket_resolved", channel="phone", ticket_id="T1", agent="a2"),
    # Bruno again within 7 days: a repeat contact.
    ev("bruno", "2024-02-05T09:00:00Z", "ticket_opened", channel="email", ticket_id="T2"),
    # Carla: web visits; the gap rule is strict: exactly 30 min later is the same visit.
    ev("carla", "2024-02-10T10:00:00Z", "page_view"),
    ev("carla", "2024-02-10T10:30:00Z", "page_view"),
    ev("carla", "2024-02-10T11:00:01Z", "page_view"),
    # Dan: an order shipped 12 days before as_of with no delivery: stalled (> 10d, < 20d).
    ev("dan", "2024-02-18T10:00:00Z", "order_placed", order_id="O3"),
    # Eve: two payment failures of equal valence: the peak and the valley are the earliest.
    ev("eve", "2024-02-20T10:00:00Z", "payment_failed", order_id="O4"),
    ev("eve", "2024-02-20T10:05:00Z", "payment_failed", order_id="O4"),
    ev("eve", "2024-02-20T10:10:00Z", "order_placed", order_id="O4"),
]


def write(rows):
    return "\n".join(json.dumps(r) for r in rows) + "\n"


@pytest.fixture
def built(make_workspace):
    ws = make_workspace(CONFIG, {"events.jsonl": write(PERSONAS)})
    r = ws.ingest("events")
    assert r.rows_quarantined == 0, ws.quarantine().to_pylist()
    ws.build()
    return ws


def _built(make_workspace, events, config=CONFIG):
    """A workspace of ``events`` (persona rows, see :func:`ev`), loaded and built."""
    ws = make_workspace(config, {"events.jsonl": write(events)})
    ws.ingest("events")
    ws.build()
    return ws


def journey(ws, key):
    rows = ws.con.execute("SELECT * FROM journeys WHERE journey_key = ?", [key]).to_arrow_table().to_pylist()
    assert len(rows) == 1
    return rows[0]


def moment(ws, journey_id, kind):
    rows = ws.con.execute("SELECT m.*, e.event_type AS et, e.ts AS ets FROM moments m "
                          "JOIN events e USING (event_id) WHERE journey_id = ? AND kind = ?",
                          [journey_id, kind]).to_arrow_table().to_pylist()
    return rows


def test_late_delivery_is_the_valley_with_the_gap_in_its_reason(built):
    j = journey(built, "O1")
    assert (j["journey_type"], j["status"], j["n_events"]) == ("purchase", "completed", 5)
    assert j["duration_s"] == 6 * 86400
    # delivered 2 days late; tolerance 0, late_start 0.2, full_at 7 d: -(0.2 + 0.8 * 2 / 7)
    late = -(0.2 + 0.8 * 2 / 7)
    valley = moment(built, j["journey_id"], "valley")[0]
    assert valley["et"] == "order_delivered"
    assert valley["valence"] == pytest.approx(late)
    assert "2.0 days late" in valley["reason"]
    # the CSAT is the outcome, not a moment: 2 on csat5 (neutral 3) is (2-3)/(3-1) = -0.5
    assert j["outcome_valence"] == pytest.approx(-0.5)
    assert j["outcome_rating"] == 2 and j["outcome_scale"] == "csat5"
    assert j["end_v"] == pytest.approx(late) and j["n_valenced"] == 1
    # peak-end default: mean of the most intense moment and the end
    assert j["remembered"] == pytest.approx(late)
    assert j["repurchased"] is True
    assert j["channels"] == ["email", "web"]
    # web -> the CSAT by email: an answer about the journey, not a step on another
    # channel (a feedback event is no switch)
    assert j["channel_switches"] == 0


def test_ticket_with_wait_transfer_and_resolution(built):
    j = journey(built, "T1")
    assert (j["journey_type"], j["status"], j["n_events"]) == ("issue_resolution", "completed", 4)
    jid = j["journey_id"]
    first = moment(built, jid, "first_impression")[0]
    # waited 10 min against a 5 min SLA: gap 5 min, full_at 60: -5/60
    assert first["et"] == "ticket_opened"
    assert first["valence"] == pytest.approx(-5 / 60)
    assert "5.0 minutes late" in first["reason"]
    valley = moment(built, jid, "valley")[0]
    assert valley["et"] == "transferred" and valley["valence"] == pytest.approx(-0.3)
    peak = moment(built, jid, "peak")[0]
    # resolved after a transfer: the first-contact rule's else_valence 0.2
    assert peak["et"] == "ticket_resolved" and peak["valence"] == pytest.approx(0.2)
    assert "only after transferred" in peak["reason"]
    farewell = moment(built, jid, "farewell")[0]
    assert farewell["event_id"] == peak["event_id"]
    assert j["channel_switches"] == 1  # chat -> phone
    # trend: valences -0.0833, -0.3, 0.2 at positions 1, 2, 3 (agent_reply has none)
    xs, ys = [1, 2, 3], [-5 / 60, -0.3, 0.2]
    n = 3
    slope = (n * sum(x * y for x, y in zip(xs, ys)) - sum(xs) * sum(ys)) / (n * sum(x * x for x in xs) - sum(xs) ** 2)
    assert j["trend_v"] == pytest.approx(slope)
    assert j["mean_v"] == pytest.approx(sum(ys) / 3)


def test_repeat_contact_within_window(built):
    t2 = journey(built, "T2")
    first = moment(built, t2["journey_id"], "first_impression")[0]
    assert first["valence"] == pytest.approx(-0.4)
    assert "contacted again" in first["reason"]
    # T2 is open: idle 2024-02-05 -> 2024-03-01 = 25 days, below abandon_after 30d,
    # and issue_resolution has no stall_after: p90 of completed tickets (T1, 30 min).
    assert t2["status"] == "stalled"


def test_gap_is_strict(built):
    visits = built.con.execute(
        "SELECT n_events FROM journeys WHERE journey_type = 'visit' ORDER BY start_ts").fetchall()
    assert [v[0] for v in visits] == [2, 1]


def test_statuses_by_idle_time(built):
    assert journey(built, "O2")["status"] == "abandoned"   # idle 25 d > 20 d
    assert journey(built, "O3")["status"] == "stalled"     # idle 12 d > 10 d
    assert journey(built, "O2")["repurchased"] is None


def test_ties_go_to_the_earliest(built):
    j = journey(built, "O4")
    peak = moment(built, j["journey_id"], "peak")[0]
    valley = moment(built, j["journey_id"], "valley")[0]
    assert str(peak["ets"]).startswith("2024-02-20 10:00") and peak["valence"] == -0.6
    assert valley["event_id"] == peak["event_id"]


def test_single_unscored_event_has_no_experience_moments(built):
    j = journey(built, "O3")
    kinds = {m["kind"] for m in built.moments(journey=j["journey_id"]).to_pylist()}
    assert kinds & {"peak", "valley", "first_impression", "farewell"} == set()
    assert "first_interaction" in kinds and j["n_valenced"] == 0 and j["remembered"] is None


def test_business_moments(built):
    ana = built.resolve_person("ana")
    kinds = [m["kind"] for m in built.moments(person=ana).to_pylist() if m["category"] == "business"]
    assert kinds.count("first_interaction") == 1
    assert kinds.count("repeat_purchase") == 1      # O2
    assert "purchase" in kinds and "post_purchase" in kinds and "feedback" in kinds


def snapshot(ws):
    return {
        t: sorted(ws.con.execute(f"SELECT * EXCLUDE ({excl}) FROM {t}").fetchall(), key=repr)
        for t, excl in (("journeys", "as_of"), ("moments", "agent"), ("journey_events", "agent"))
    }


def test_out_of_order_arrival_gives_the_same_journeys(make_workspace, built):
    rows = PERSONAS[:]
    random.Random(3).shuffle(rows)
    ws = make_workspace(CONFIG, {"events.jsonl": write(rows[:9]), "late.jsonl": write(rows[9:])},
                        folder="shuffled")
    # later half first, earlier half second: events arrive out of order across loads
    ws2_config = CONFIG.replace("path: events.jsonl", "path: late.jsonl")
    (ws.root / "keymoments.yaml").write_text(ws2_config)
    ws.reload_config()
    ws.ingest("events")
    ws.build()
    (ws.root / "keymoments.yaml").write_text(CONFIG)
    ws.reload_config()
    ws.ingest("events")
    ws.build()
    assert snapshot(ws) == snapshot(built)


def test_valence_in_range_and_null_not_nan(built):
    bad = built.con.execute("SELECT count(*) FROM journey_events WHERE valence < -1 OR valence > 1 "
                            "OR isnan(valence)").fetchone()[0]
    assert bad == 0
    nulls = built.con.execute("SELECT count(*) FROM journey_events WHERE valence IS NULL").fetchone()[0]
    assert nulls > 0


def test_every_event_in_exactly_one_journey(built):
    n_events = built.con.execute("SELECT count(*) FROM events").fetchone()[0]
    rows = built.con.execute("SELECT count(*), count(DISTINCT event_id) FROM journey_events").fetchone()
    assert rows == (n_events, n_events)


def test_moment_summary_across_journeys(built):
    import keymoments as km

    rows = {r["kind"]: r for r in km.moment_summary(built, by=("kind",)).to_pylist()}
    # valleys: O1 late delivery, T1 transfer, T2 repeat contact, O4 payment failure
    valleys = [-(0.2 + 0.8 * 2 / 7), -0.3, -0.4, -0.6]
    assert rows["valley"]["n"] == 4
    assert rows["valley"]["mean_valence"] == pytest.approx(sum(valleys) / 4)
    assert rows["valley"]["share_negative"] == 1.0
    # peaks: the same except T1, whose peak is the resolution (0.2)
    assert rows["peak"]["share_positive"] == pytest.approx(1 / 4)
    # every key moment is counted, with a valence or not (the report's table too)
    stored = dict(built.con.execute("SELECT kind, count(*) FROM moments GROUP BY 1").fetchall())
    assert {k: r["n"] for k, r in rows.items()} == stored
    scored = dict(built.con.execute(
        "SELECT kind, count(valence) FROM moments GROUP BY 1").fetchall())
    assert {k: r["n_valenced"] for k, r in rows.items()} == scored
    assert any(n == 0 for n in scored.values())  # (a kind no scored event carries)
    with pytest.raises(km.KeymomentsError):
        km.moment_summary(built, by=("kind; DROP TABLE events",))


def test_a_measure_alone_scores_its_event(make_workspace):
    # Fay waited 40 minutes for a chat and gave nothing else (no rating, text or
    # promise): the default long_wait rule alone scores it, 2400 s > 1800 s -> -0.5.
    # Gil waited one minute: below the threshold, no valence.
    rows = [ev("fay", "2024-02-12T10:00:00Z", "chat_started", channel="chat", ticket_id="T9",
               wait_seconds=2400),
            ev("gil", "2024-02-12T11:00:00Z", "chat_started", channel="chat", ticket_id="T8",
               wait_seconds=60)]
    ws = make_workspace(CONFIG, {"events.jsonl": write(rows)}, folder="measure-alone")
    ws.ingest("events")
    ws.build()
    got = dict(ws.con.execute(
        "SELECT journey_key, [v_rules, valence, v_feedback, v_text] FROM journey_events").fetchall())
    assert got == {"T9": [-0.5, -0.5, None, None], "T8": [None, None, None, None]}
    reason = ws.con.execute("SELECT valence_reason FROM journey_events WHERE journey_key = 'T9'")
    assert "waited 2400" in reason.fetchone()[0]


# Hana: journeys of her orders that hold no purchase (reviews of orders placed before
# the data begins, O10, O12 and O14) between real purchases (O11, O13, O15); O13 opens
# with a complaint a month before its order is placed. A purchase is a purchase journey
# holding a purchase event (order_placed: tagged purchase), at its first purchase event.
HANA_CONFIG = CONFIG.replace('as_of: "2024-03-01T00:00:00Z"', 'as_of: "2024-05-01T00:00:00Z"')
HANA = [
    ev("hana", "2024-01-05T10:00:00Z", "review_posted", channel="email", order_id="O10"),
    ev("hana", "2024-01-10T10:00:00Z", "order_placed", order_id="O11"),
    ev("hana", "2024-01-12T10:00:00Z", "order_delivered", order_id="O11"),
    ev("hana", "2024-01-20T10:00:00Z", "review_posted", channel="email", order_id="O12"),
    ev("hana", "2024-02-01T10:00:00Z", "complaint", channel="phone", order_id="O13"),
    ev("hana", "2024-03-01T10:00:00Z", "order_placed", order_id="O13"),
    ev("hana", "2024-03-03T10:00:00Z", "order_delivered", order_id="O13"),
    ev("hana", "2024-03-20T10:00:00Z", "review_posted", channel="email", order_id="O14"),
    ev("hana", "2024-03-25T10:00:00Z", "order_placed", order_id="O15"),
]


@pytest.fixture
def hana(make_workspace):
    ws = make_workspace(HANA_CONFIG, {"events.jsonl": write(HANA)}, folder="hana")
    assert ws.ingest("events").rows_quarantined == 0
    ws.build()
    return ws


def test_repeat_purchases_are_journeys_holding_a_purchase(hana):
    got = hana.con.execute(
        "SELECT m.journey_id, e.event_type, e.ts FROM moments m JOIN events e USING (event_id) "
        "WHERE m.kind = 'repeat_purchase' ORDER BY e.ts").fetchall()
    # O10 holds only a review: O11 is her first purchase, not a repeat one; O12 and O14
    # are no purchases; O13's moment is its order, not the complaint that opened it
    assert [(j, t, str(ts)[:10]) for j, t, ts in got] == [
        (journey(hana, "O13")["journey_id"], "order_placed", "2024-03-01"),
        (journey(hana, "O15")["journey_id"], "order_placed", "2024-03-25")]
    for key, kinds in (("O10", {"feedback"}), ("O11", {"purchase", "post_purchase"})):
        jid = journey(hana, key)["journey_id"]
        assert {m["kind"] for m in hana.moments(journey=jid).to_pylist()
                if m["category"] == "business"} - {"first_interaction"} == kinds


def test_repurchased_counts_purchases_only(hana):
    import keymoments as km

    # repurchase_within 40 d; as_of 2024-05-01. The next purchase is the earliest first
    # order_placed of the journeys that start later; reviews and the complaint are not.
    want = {
        "O10": True,   # ended 01-05, O11 ordered 01-10: 5 d
        "O11": False,  # ended 01-12, O13 ordered 03-01: 49 d (O12's review 8 d, O13's
                       # complaint 20 d: no purchases)
        "O12": False,  # ended 01-20, O13 ordered 03-01: 41 d
        "O13": True,   # ended 03-03, O15 ordered 03-25: 22 d (O14's review is none)
        "O14": True,   # ended 03-20, O15 ordered 03-25: 5 d
        "O15": None,   # ended 03-25: 37 d before as_of, under 40: not known
    }
    assert {k: journey(hana, k)["repurchased"] for k in want} == want
    # the metric counts purchases whose window has passed: O11 (no), O13 (yes); the
    # review-only O10, O12 and O14 are none
    r = km.metrics(hana, "repeat_purchase")
    assert r.meta["n"] == 2 and r.to_pylist()[0]["value"] == pytest.approx(1 / 2)


def test_exactly_a_gap_or_a_window_apart_holds_wherever_the_seconds_fall(make_workspace):
    """Around 2004-01-10T13:37:04Z the seconds since 1970 pass 2**30: two times with
    microseconds there, exactly 30 minutes apart, differed by 1800.0000000002 s as
    doubles, so a visit split in two, and a second ticket exactly 7 days later was no
    repeat contact. Whole microseconds compare exactly (by hand: one visit; the second
    ticket is a repeat contact; 1 microsecond more splits and is none)."""
    t0 = "2004-01-10T13:23:18.463632Z"
    events = [ev("v", t0, "page_view"), ev("v", "2004-01-10T13:53:18.463632Z", "page_view"),
              ev("w", t0, "page_view"), ev("w", "2004-01-10T13:53:18.463633Z", "page_view"),
              ev("t", "2004-01-08T09:38:14.849960Z", "ticket_opened", ticket_id="T1"),
              ev("t", "2004-01-15T09:38:14.849960Z", "ticket_opened", ticket_id="T2"),
              ev("u", "2004-01-08T09:38:14.849960Z", "ticket_opened", ticket_id="U1"),
              ev("u", "2004-01-15T09:38:14.849961Z", "ticket_opened", ticket_id="U2")]
    ws = _built(make_workspace, events)
    visits = dict(ws.con.execute(
        "SELECT identifiers['customer_id'], count(DISTINCT journey_id) FROM journey_events "
        "JOIN events USING (event_id) WHERE journey_type = 'visit' GROUP BY 1").fetchall())
    assert visits == {"v": 1, "w": 2}
    repeat = dict(ws.con.execute(
        "SELECT journey_key, v_rules IS NOT NULL FROM journey_events "
        "WHERE journey_key IN ('T2', 'U2')").fetchall())
    assert repeat == {"T2": True, "U2": False}


def test_idle_exactly_stall_or_abandon_after_is_stalled_or_abandoned(make_workspace):
    """'Idle this long and it is abandoned': an order idle exactly 20 days at as_of
    (2024-03-01) is abandoned, one idle exactly 10 days stalled, 1 second less open
    and stalled (by hand from the purchase type's stall_after 10d, abandon_after 20d)."""
    events = [ev("a", "2024-02-10T00:00:00Z", "order_placed", order_id="A"),
              ev("b", "2024-02-10T00:00:01Z", "order_placed", order_id="B"),
              ev("c", "2024-02-20T00:00:00Z", "order_placed", order_id="C"),
              ev("d", "2024-02-20T00:00:01Z", "order_placed", order_id="D")]
    ws = _built(make_workspace, events)
    got = dict(ws.con.execute("SELECT journey_key, status FROM journeys").fetchall())
    assert got == {"A": "abandoned", "B": "stalled", "C": "stalled", "D": "open"}


def test_churn_counts_the_first_churn_event_from_the_journeys_start(make_workspace):
    """Eva cancels, comes back, orders and cancels again 3 days after that order: the
    order's journey churned (before, only her first cancellation counted: it came
    before this journey, so it was not churned). Her first order, cancelled 60 days
    after its start, is past churn_within (30d): not churned by that event; she came
    back, so not churned by inactivity either. By hand, as_of 2024-03-01."""
    config = CONFIG.replace("  repurchase_within: 40d", "  repurchase_within: 40d\n"
                            "  churn_within: 30d\n  inactive_churn_after: 200d")
    events = [ev("eva", "2023-09-01T00:00:00Z", "order_placed", order_id="E1"),
              ev("eva", "2023-10-31T00:00:00Z", "subscription_cancelled"),
              ev("eva", "2023-12-01T00:00:00Z", "order_placed", order_id="E2"),
              ev("eva", "2023-12-04T00:00:00Z", "subscription_cancelled")]
    ws = _built(make_workspace, events, config)
    got = dict(ws.con.execute("SELECT journey_key, churned FROM journeys "
                              "WHERE journey_type = 'purchase'").fetchall())
    assert got == {"E1": False, "E2": True}


def test_the_portable_form_counts_whole_microseconds_too():
    """The live service replays a plan compiled over unbound tables (Ibis's portable
    form, EPOCH of a TIMESTAMP): it rounds to whole microseconds as well, so the pair
    of the test above is exactly 1800 s apart there too (1800.0000000002 as doubles)."""
    import duckdb
    import ibis

    from keymoments.engine.expr import seconds_between

    u = ibis.table({"a": "timestamp('UTC')", "b": "timestamp('UTC')"}, name="u")
    sql = ibis.to_sql(seconds_between(u.a, u.b).name("d"), dialect="duckdb")
    assert "EPOCH_US" not in sql.upper()  # (the portable form, not DuckDB's shortcut)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE TABLE u AS SELECT TIMESTAMPTZ '2004-01-10 13:53:18.463632+00' AS a, "
                "TIMESTAMPTZ '2004-01-10 13:23:18.463632+00' AS b")
    assert con.execute(sql).fetchone()[0] == 1800.0


PLACEHOLDERS = CONFIG.replace("    expectation:", "    text: comment\n    expectation:") + """
valence:
  weights: {text: 0}
  rules:
    - {name: payment_failed, kind: constant, event_types: [payment_failed], valence: -0.6, reason: "{event_type} at checkout"}
    - {name: late_delivery, kind: expectation_gap, event_types: [order_delivered], unit: days, full_at: 7, reason: "{event_type} {gap}"}
    - {name: long_wait, kind: measure_above, event_types: [ticket_opened], measure: wait_seconds, threshold: 60, valence: -0.5, reason: "{event_type}: waited {value} s"}
"""


def test_reason_placeholders_are_filled_and_a_weightless_part_leaves_no_reason(make_workspace):
    """``{event_type}`` is the event's type (it printed the word 'event_type'); text
    with weight 0 has no valence and no reason (its reason was still shown)."""
    ws = _built(make_workspace, [
        ev("ivo", "2024-02-20T10:00:00Z", "payment_failed", order_id="O9", comment="great shop"),
        ev("ivo", "2024-02-23T10:00:00Z", "order_delivered", order_id="O9",
           promised_at="2024-02-21T22:00:00Z"),
        ev("ivo", "2024-02-24T10:00:00Z", "ticket_opened", ticket_id="T9", wait_seconds=90,
           comment="awful"),
    ], PLACEHOLDERS)
    rows = ws.con.execute("SELECT e.event_type, j.valence, j.valence_reason, j.v_text "
                          "FROM journey_events j JOIN events e USING (event_id) "
                          "ORDER BY e.ts").fetchall()
    # 1.5 days late, late_start 0: -1.5 / 7; 90 s > 60 s: -0.5 (the texts' scores are
    # kept as parts, lexicon: great +1, awful -1, and weigh nothing)
    assert rows == [
        ("payment_failed", pytest.approx(-0.6), "payment_failed at checkout", 1.0),
        ("order_delivered", pytest.approx(-1.5 / 7), "order_delivered 1.5 days late", None),
        ("ticket_opened", pytest.approx(-0.5), "ticket_opened: waited 90.0 s", -1.0),
    ]


@pytest.mark.parametrize("late, shown", [
    ("2024-01-04T13:00:00Z", "3.0 hours late"),        # 0.125 days read "0.1 days late"
    ("2024-01-04T10:01:30Z", "1.5 minutes late"),      # it read "0.0 days late"
    ("2024-01-04T10:00:00.500Z", "0.5 seconds late"),
    ("2024-01-05T09:58:30Z", "1.0 days late"),         # 23.975 hours read "24.0 hours late"
    ("2024-01-04T10:59:59Z", "1.0 hours late"),        # it read "60.0 minutes late"
    ("2024-01-04T10:00:59.970Z", "1.0 minutes late"),  # it read "60.0 seconds late"
    ("2024-01-04T10:56:59Z", "57.0 minutes late"),
    ("2024-01-05T22:00:00Z", "1.5 days late"),         # a day or more: in the rule's unit
    ("2024-01-04T06:00:00Z", "4.0 hours early (on time)"),  # within early_by (1 day)
    ("2024-01-04T10:00:00Z", "0.0 days (on time)"),
])
def test_a_gap_under_one_unit_is_said_in_a_smaller_unit(make_workspace, late, shown):
    ws = _built(make_workspace, [
        ev("jo", "2024-01-01T10:00:00Z", "order_placed", order_id="O5"),
        ev("jo", late, "order_delivered", order_id="O5", promised_at="2024-01-04T10:00:00Z"),
    ])
    (reason,) = ws.con.execute("SELECT j.valence_reason FROM journey_events j JOIN events e "
                               "USING (event_id) WHERE e.event_type = 'order_delivered'"
                               ).fetchone()
    assert reason == f"delivered {shown} against the promise"


def test_a_rule_named_with_braces_and_no_reason_reads_its_name(make_workspace):
    """Without a reason, the name is the reason: the placeholders its kind fills filled
    (as before), the others as written ("{value} payment failed" of a constant rule
    failed the build, 'NoneType' has no 'concat', and the live engine dropped it)."""
    config = CONFIG + """
valence:
  use_default_rules: false
  rules:
    - {name: "{value} payment failed", kind: constant, event_types: [payment_failed], valence: -0.6}
    - {name: "waited {value} s ({gap}, {event_type})", kind: measure_above, event_types: [ticket_opened], measure: wait_seconds, threshold: 60, valence: -0.5}
"""
    ws = _built(make_workspace, [ev("uma", "2024-02-20T10:00:00Z", "payment_failed"),
                                 ev("uma", "2024-02-21T10:00:00Z", "ticket_opened",
                                    ticket_id="U1", wait_seconds=90)], config)
    got = ws.con.execute("SELECT valence, valence_reason FROM journey_events ORDER BY seq, "
                         "valence").fetchall()
    assert sorted(got) == [(pytest.approx(-0.6), "{value} payment failed"),
                           (pytest.approx(-0.5), "waited 90.0 s ({gap}, ticket_opened)")]


#: orders placed at the same instant (two each), and a later one
TIED_ORDERS = [ev("tia", "2024-01-10T10:00:00Z", "order_placed", order_id="O20"),
               ev("tia", "2024-01-10T10:00:00Z", "order_placed", order_id="O21"),
               ev("uma", "2024-01-10T10:00:00Z", "order_placed", order_id="O23"),
               ev("uma", "2024-01-10T10:00:00Z", "order_placed", order_id="O24"),
               ev("uma", "2024-01-20T10:00:00Z", "order_placed", order_id="O25")]


def test_orders_placed_at_the_same_instant_are_no_repurchase_of_each_other(make_workspace):
    """A purchase repurchases a journey when it *started after* it (docs/schema.md):
    two orders placed at the same instant are not each other's repurchase, whatever
    their journey ids; a later order is the repurchase of both. The engine in Python
    (the live service's) agrees."""
    from keymoments.engine.small import derive_small
    from keymoments.pipeline import journey_types

    ws = _built(make_workspace, TIED_ORDERS)
    # as_of 2024-03-01, repurchase_within 40 d: every window has passed (O25's: 41 d)
    want = {"O20": False, "O21": False, "O23": True, "O24": True, "O25": False}
    assert {k: journey(ws, k)["repurchased"] for k in want} == want
    cur = ws.con.execute("SELECT * FROM events")
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r)) for r in cur.fetchall()]
    as_of = journey(ws, "O20")["as_of"]
    small = derive_small(rows, ws.config, journey_types(ws), as_of)
    assert {j["journey_key"]: j["repurchased"] for j in small.journeys} == want


def test_a_churn_fit_does_not_see_the_cancellation(make_workspace):
    """A churn-stage event is the churn a churn fit predicts: the features it reads stop
    before it, as they stop before a rated feedback; the stored features (the feedback
    fit's, the remembered score's) keep it, as a cancellation before a survey is part
    of what the customer rates. Hand-computed: O40 is placed (no valence), its payment
    fails (-0.6, payment_failed), it is cancelled (-0.4, order_cancelled, stage churn)
    and the payment fails again (-0.6)."""
    from keymoments.moment.fitting import fit_table

    ws = _built(make_workspace, [
        ev("vic", "2024-01-01T10:00:00Z", "order_placed", order_id="O40"),
        ev("vic", "2024-01-01T10:05:00Z", "payment_failed", order_id="O40"),
        ev("vic", "2024-01-01T10:10:00Z", "order_cancelled", order_id="O40"),
        ev("vic", "2024-01-01T10:15:00Z", "payment_failed", order_id="O40"),
        # the cancellation alone: nothing before it to score
        ev("wes", "2024-01-01T10:00:00Z", "order_cancelled", order_id="O41"),
        # no churn event: the same features either way
        ev("xia", "2024-01-01T10:00:00Z", "payment_failed", order_id="O42"),
        ev("xia", "2024-01-01T10:05:00Z", "order_placed", order_id="O42")],
        CONFIG.replace("repurchase_within: 40d", "repurchase_within: 40d\n  churn_within: 30d"))
    j = journey(ws, "O40")
    assert (j["n_valenced"], j["first_v"], j["end_v"]) == (3, -0.6, -0.6)
    assert j["mean_v"] == pytest.approx(-1.6 / 3) and j["peak_v"] == pytest.approx(-0.4)
    assert j["churned"] is True  # (its cancellation came within 30 days of its start)
    keys = dict(ws.con.execute("SELECT journey_id, journey_key FROM journeys").fetchall())
    rows = {keys[r["journey_id"]]: r for r in fit_table(ws, "churn").to_pylist()}
    assert set(rows) == {"O40", "O42"}  # (O41: nothing scored before its cancellation)
    o40 = rows["O40"]
    assert (o40["first_v"], o40["peak_v"], o40["valley_v"], o40["end_v"], o40["mean_v"],
            o40["trend_v"], o40["churned"]) == (-0.6, -0.6, -0.6, -0.6, -0.6, None, True)
    o42 = journey(ws, "O42")
    assert {f: rows["O42"][f] for f in ("first_v", "end_v", "mean_v", "trend_v")} == {
        f: o42[f] for f in ("first_v", "end_v", "mean_v", "trend_v")}
