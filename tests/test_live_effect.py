"""Holdout assignment and the effect of actions, on a seeded fixture with a
planted effect: recovering a valley halves churn (0.4 -> 0.2)."""

from __future__ import annotations

import math
import random
import time

import numpy as np
import pytest
from scipy import stats

import keymoments as km
from keymoments.live.effect import action_effect, newcombe_interval, wilson_interval
from keymoments.live.events import PostedEvent, load_events
from keymoments.live.holdout import holdout_draw, is_held_out
from keymoments.live.incremental import process_pending


def test_holdout_is_deterministic_uniform_and_close_to_the_share():
    people = [f"p-{i:05d}" for i in range(20_000)]
    draws = np.array([holdout_draw("recover_valley", p) for p in people])
    assert draws.tolist() == [holdout_draw("recover_valley", p) for p in people]
    assert stats.kstest(draws, "uniform").pvalue > 0.001
    for share in (0.05, 0.1, 0.3):
        held = sum(is_held_out("recover_valley", p, share) for p in people)
        sd = math.sqrt(share * (1 - share) / len(people))
        assert abs(held / len(people) - share) < 4 * sd, share
    other = np.array([holdout_draw("ask_review", p) for p in people])
    assert abs(np.corrcoef(draws, other)[0, 1]) < 0.03  # rules draw independently


def test_interval_helpers_match_scipy_and_the_paper():
    for x, n in ((0, 10), (3, 10), (81, 263), (50, 50)):
        ci = stats.binomtest(x, n).proportion_ci(method="wilson")
        assert wilson_interval(x, n) == pytest.approx((ci.low, ci.high), abs=1e-12)
    # Newcombe (1998), table II, example (a): 56/70 - 48/80, method 10
    assert newcombe_interval(56, 70, 48, 80) == pytest.approx((0.0524, 0.3339), abs=5e-5)


CONFIG = """
journeys:
  as_of: "2027-06-01T00:00:00Z"
actions:
  frequency_cap: {count: 100, per: 7d}
  rules:
    - name: recover_valley
      trigger: {on: valley, valence_below: -0.3}
      action: {kind: file}
      holdout: 0.5
"""


def _ts(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@pytest.mark.slow
def test_effect_report_recovers_a_planted_churn_effect(tmp_path):
    ws = km.init(tmp_path)
    with open(tmp_path / "keymoments.yaml", "a") as fh:
        fh.write(CONFIG)
    ws.reload_config()
    rng = random.Random(2026)
    n, base = 500, 1_780_000_000
    first = []
    for i in range(n):
        t, ids = base + i * 600, {"customer_id": f"c{i}"}
        first += [{"ts": _ts(t), "event_type": "order_placed", "identifiers": ids,
                   "refs": {"order": f"o{i}"}, "language": "en"},
                  {"ts": _ts(t + 9 * 86400), "event_type": "order_delivered", "identifiers": ids,
                   "refs": {"order": f"o{i}"}, "expected_ts": _ts(t + 2 * 86400),
                   "expectation_kind": "promised_delivery"}]
    load_events(ws, [PostedEvent.model_validate(e) for e in first])
    process_pending(ws)
    decided = dict(ws.con.execute(
        "SELECT o.person_id, o.status FROM outbox o WHERE rule = 'recover_valley'").fetchall())
    assert len(decided) == n and set(decided.values()) == {"pending", "held_out"}
    # planted truth: churn 0.4 without the action, 0.2 with it
    pid = dict(ws.con.execute("SELECT value, person_id FROM identifiers").fetchall())
    later = []
    truth = {"treated": [], "holdout": []}
    for i in range(n):
        t, ids = base + i * 600, {"customer_id": f"c{i}"}
        arm = "holdout" if decided[pid[f"c{i}"]] == "held_out" else "treated"
        churn = rng.random() < (0.4 if arm == "holdout" else 0.2)
        truth[arm].append(churn)
        if churn:
            later.append({"ts": _ts(t + 30 * 86400), "event_type": "account_closed",
                          "stage": "churn", "identifiers": ids})
        else:
            later.append({"ts": _ts(t + 100 * 86400), "event_type": "page_view",
                          "identifiers": ids, "refs": {"session": f"s{i}"}})
    load_events(ws, [PostedEvent.model_validate(e) for e in later])
    process_pending(ws)
    (row,) = action_effect(ws, "churned").to_pylist()
    ws.close()
    # the report counts exactly the planted outcomes
    assert row["n_treated"] == len(truth["treated"]) and row["n_holdout"] == len(truth["holdout"])
    assert row["treated_rate"] == pytest.approx(np.mean(truth["treated"]))
    assert row["holdout_rate"] == pytest.approx(np.mean(truth["holdout"]))
    # and its intervals cover the planted rates and effect, and exclude no effect
    assert row["treated_low"] < 0.2 < row["treated_high"]
    assert row["holdout_low"] < 0.4 < row["holdout_high"]
    assert row["diff_low"] < -0.2 < row["diff_high"] and row["diff_high"] < 0


DAY = 86400
BASE = 1_780_000_000


def _workspace(tmp_path, extra: str = "", holdout: float = 0.5, pinned: bool = True):
    ws = km.init(tmp_path)
    config = CONFIG.replace("holdout: 0.5", f"holdout: {holdout}") + extra
    if not pinned:  # (judged at the latest event)
        config = config.replace('journeys:\n  as_of: "2027-06-01T00:00:00Z"\n', "")
    with open(tmp_path / "keymoments.yaml", "a") as fh:
        fh.write(config)
    ws.reload_config()
    return ws


def _post(ws, events: list[dict]) -> None:
    load_events(ws, [PostedEvent.model_validate(e) for e in events])
    process_pending(ws)


def _late_order(i: int, ids: dict) -> list[dict]:
    """An order delivered a week after its promise: a valley the rule acts on."""
    t = BASE + i * 600
    return [{"ts": _ts(t), "event_type": "order_placed", "identifiers": ids,
             "refs": {"order": f"o{i}"}},
            {"ts": _ts(t + 9 * DAY), "event_type": "order_delivered", "identifiers": ids,
             "refs": {"order": f"o{i}"}, "expected_ts": _ts(t + 2 * DAY),
             "expectation_kind": "promised_delivery"}]


def _decisions(ws) -> list[tuple]:
    return ws.con.execute("SELECT event_id, status FROM outbox ORDER BY event_id").fetchall()


def test_a_merge_decides_no_journey_again_and_keeps_each_arm(tmp_path):
    """Linking each customer to an account whose identifier sorts first changes the
    person id, so every journey id: the journeys decided before are not decided
    again, and each person stays in the arm of the first decision."""
    ws = _workspace(tmp_path)
    n = 40
    _post(ws, [e for i in range(n) for e in _late_order(i, {"customer_id": f"c{i}"})])
    before = _decisions(ws)
    assert len(before) == n and {s for _, s in before} == {"pending", "held_out"}
    persons = {r[0] for r in ws.con.execute("SELECT person_id FROM outbox").fetchall()}
    _post(ws, [{"ts": _ts(BASE + i * 600 + 20 * DAY), "event_type": "page_view",
                "identifiers": {"account_id": f"a{i}", "customer_id": f"c{i}"}}
               for i in range(n)])
    now = {r[0] for r in ws.con.execute("SELECT DISTINCT person_id FROM events").fetchall()}
    assert len(now) == n and not now & persons  # (every person id changed)
    assert _decisions(ws) == before
    # a new valley of a merged person: decided, in the arm the person had
    _post(ws, [e for e in _late_order(1000, {"account_id": "a3"})])
    arm = dict(before)
    (new,) = [r for r in _decisions(ws) if r not in before]
    old = ws.con.execute("SELECT o.status FROM outbox o JOIN events e USING (event_id) "
                         "JOIN identifiers i ON i.person_id = e.person_id "
                         "WHERE i.identifier = 'account_id:a3' AND o.event_id <> ?",
                         [new[0]]).fetchall()
    assert [s for (s,) in old] == [new[1]] and new[1] in set(arm.values())
    ws.close()


def test_an_earlier_event_posted_late_decides_no_journey_again(tmp_path):
    """Visit journeys (no reference, split by inactivity): an earlier event posted
    late becomes run 1, renumbering the decided journey; it is not decided again."""
    ws = _workspace(tmp_path, holdout=0.0)
    n = 30
    angry = "terrible service, awful, still waiting, very angry"
    _post(ws, [{"ts": _ts(BASE + 10 * DAY + i * 600), "event_type": "chat_message",
                "identifiers": {"customer_id": f"v{i}"}, "language": "en", "text": angry}
               for i in range(n)])
    before = _decisions(ws)
    assert len(before) == n
    ids = {r[0] for r in ws.con.execute("SELECT journey_id FROM outbox").fetchall()}
    _post(ws, [{"ts": _ts(BASE + 2 * DAY + i * 600), "event_type": "chat_message",
                "identifiers": {"customer_id": f"v{i}"}, "language": "en",
                "text": "hello, a question about my account"} for i in range(n)])
    now = {r[0] for r in ws.con.execute(
        "SELECT journey_id FROM journey_events WHERE event_id IN (SELECT event_id FROM outbox)"
    ).fetchall()}
    assert len(now) == n and not now & ids  # (the decided journeys were renumbered)
    assert _decisions(ws) == before
    ws.close()


def test_the_effect_counts_each_person_once_from_the_first_trigger(tmp_path):
    """Outcomes computed here from the posted events alone (a second implementation):
    a person counts once per rule, in the arm of the rule's first decision, with the
    outcome in the window after that decision's trigger (a churn event before it is
    no outcome of the action; no event at all within inactive_churn_after is churn;
    feedback counts within actions.feedback_within)."""
    ws = _workspace(tmp_path)
    n = 80
    posted: dict[str, list[dict]] = {}
    for i in range(n):
        ids = {"customer_id": f"c{i}"}
        t0 = BASE + i * 600 + 9 * DAY  # the late delivery: the valley, the trigger
        evs = _late_order(i, ids)
        k = i % 4
        if k == 0:  # buys again (a second valley: a second decision), answers a survey
            evs += [{**e, "refs": {"order": f"o{i}b"}, "ts": _ts(t0 + 11 * DAY + j * 9 * DAY)}
                    for j, e in enumerate(_late_order(i, ids))]
            evs[-1]["expected_ts"] = _ts(t0 + 13 * DAY)
            evs.append({"ts": _ts(t0 + 5 * DAY), "event_type": "survey_answered",
                        "stage": "feedback", "identifiers": ids, "rating": 2,
                        "rating_scale": "csat5"})
        elif k == 1:  # closes the account after the action; answered before it
            evs += [{"ts": _ts(t0 + 10 * DAY), "event_type": "account_closed", "stage": "churn",
                     "identifiers": ids},
                    {"ts": _ts(t0 - 2 * DAY), "event_type": "survey_answered",
                     "stage": "feedback", "identifiers": ids, "rating": 1,
                     "rating_scale": "csat5"}]
        elif k == 3:  # a churn-stage event before the trigger; active after; late survey
            evs += [{"ts": _ts(t0 - DAY), "event_type": "account_closed", "stage": "churn",
                     "identifiers": ids},
                    {"ts": _ts(t0 + 50 * DAY), "event_type": "page_view", "identifiers": ids},
                    {"ts": _ts(t0 + 40 * DAY), "event_type": "survey_answered",
                     "stage": "feedback", "identifiers": ids, "rating": 4,
                     "rating_scale": "csat5"}]
        # (k == 2: nothing after the delivery: churned by inactivity)
        posted[f"c{i}"] = evs
    _post(ws, [e for evs in posted.values() for e in evs])
    pid = dict(ws.con.execute("SELECT value, person_id FROM identifiers").fetchall())
    first = dict(ws.con.execute(
        "SELECT person_id, arg_min(status, trigger_ts) FROM outbox GROUP BY 1").fetchall())
    assert ws.con.execute("SELECT count(*) FROM outbox").fetchone()[0] == n + n // 4

    def outcome(evs: list[dict], name: str) -> int:
        t0 = min(_epoch(e["ts"]) for e in evs if e["event_type"] == "order_delivered")
        after = [e for e in evs if _epoch(e["ts"]) > t0]
        if name == "churned":
            return int(any(e.get("stage") == "churn" and _epoch(e["ts"]) <= t0 + 180 * DAY
                           for e in after) or not any(_epoch(e["ts"]) <= t0 + 180 * DAY
                                                      for e in after))
        return int(any(e.get("stage") == "feedback" and _epoch(e["ts"]) <= t0 + 30 * DAY
                       for e in after))

    for name in ("churned", "feedback"):
        arms: dict[str, list[int]] = {"treated": [], "holdout": []}
        for cid, evs in posted.items():
            arm = "holdout" if first[pid[cid]] == "held_out" else "treated"
            arms[arm].append(outcome(evs, name))
        result = action_effect(ws, name)
        (row,) = result.to_pylist()
        assert (row["n_treated"], row["n_holdout"]) == (len(arms["treated"]), len(arms["holdout"]))
        assert row["treated_rate"] == pytest.approx(np.mean(arms["treated"]))
        assert row["holdout_rate"] == pytest.approx(np.mean(arms["holdout"]))
        low, high = newcombe_interval(sum(arms["treated"]), len(arms["treated"]),
                                      sum(arms["holdout"]), len(arms["holdout"]))
        assert (row["diff_low"], row["diff_high"]) == pytest.approx((low, high))
        assert result.meta["outcome_unknown"] == 0 and result.meta["hint"] is None
    # k == 1 and k == 2 churned, k == 0 and k == 3 did not: half of everyone
    assert sum(outcome(evs, "churned") for evs in posted.values()) == n // 2
    ws.close()


def test_outcomes_whose_window_has_not_passed_are_left_out_and_said(tmp_path):
    """Judged 100 days after the triggers, no churn outcome is known (its window is
    180 days) and the feedback outcome (30 days) is: the report says how many persons
    it leaves out and why."""
    ws = _workspace(tmp_path)
    n = 20
    _post(ws, [e for i in range(n) for e in _late_order(i, {"customer_id": f"c{i}"})])
    text = (tmp_path / "keymoments.yaml").read_text()
    (tmp_path / "keymoments.yaml").write_text(
        text.replace("2027-06-01T00:00:00Z", _ts(BASE + 109 * DAY)))
    ws.reload_config()
    churn = action_effect(ws, "churned")
    assert churn.to_pylist() == [] and churn.meta["outcome_unknown"] == n
    assert churn.meta["hint"].startswith(f"no person's churned outcome is known yet: {n} of {n}")
    feedback = action_effect(ws, "feedback")
    (row,) = feedback.to_pylist()
    assert row["n_treated"] + row["n_holdout"] == n and feedback.meta["outcome_unknown"] == 0
    assert row["treated_rate"] in (0, None) and row["holdout_rate"] in (0, None)
    ws.close()


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_a_state_trigger_is_traced_through_a_merge(tmp_path):
    """A stalled journey's decision points at its last event; after a merge changes
    every person id, the journey is not decided again, the person keeps the arm, and
    the effect finds the person's later events (not a person without events, which
    would read as churned by inactivity)."""
    ws = _workspace(tmp_path, extra="""
    - name: nudge
      trigger: {on: stalled, idle: 2d, journey_types: [purchase]}
      action: {kind: file}
      holdout: 0.5
""", pinned=False)
    n = 30
    orders = [{"ts": _ts(BASE + i * 600), "event_type": "order_placed",
               "identifiers": {"customer_id": f"c{i}"}, "refs": {"order": f"o{i}"}}
              for i in range(n)]
    clock = {"ts": _ts(BASE + 10 * DAY), "event_type": "page_view",
             "identifiers": {"customer_id": "clock"}}
    _post(ws, [*orders, clock])
    from keymoments.live.actions import sweep_time_triggers

    sweep_time_triggers(ws)
    before = ws.con.execute("SELECT event_id, status FROM outbox WHERE rule = 'nudge' "
                            "ORDER BY event_id").fetchall()
    placed = {r[0] for r in ws.con.execute(
        "SELECT event_id FROM events WHERE event_type = 'order_placed'").fetchall()}
    assert len(before) == n and {e for e, _ in before} == placed  # (each journey's last event)
    _post(ws, [{"ts": _ts(BASE + i * 600 + 20 * DAY), "event_type": "page_view",
                "identifiers": {"account_id": f"a{i}", "customer_id": f"c{i}"}}
               for i in range(n)])
    sweep_time_triggers(ws)
    assert ws.con.execute("SELECT event_id, status FROM outbox WHERE rule = 'nudge' "
                          "ORDER BY event_id").fetchall() == before
    _post(ws, [{**clock, "ts": _ts(BASE + 400 * DAY)}])  # (churn's window has passed)
    (row,) = [r for r in action_effect(ws, "churned").to_pylist() if r["rule"] == "nudge"]
    assert row["n_treated"] + row["n_holdout"] == n
    assert row["treated_rate"] in (0, None) and row["holdout_rate"] in (0, None)
    ws.close()


def test_an_event_from_a_wrong_clock_does_not_close_every_window(tmp_path):
    """Unpinned, the effect is judged at the latest event but not after now: one event
    dated 2099 does not make the feedback windows of actions taken days ago pass."""
    ws = _workspace(tmp_path, pinned=False)
    now = int(time.time())
    orders = []
    for i in range(10):
        ids, t = {"customer_id": f"c{i}"}, now - 12 * DAY + i * 600
        orders += [{"ts": _ts(t), "event_type": "order_placed", "identifiers": ids,
                    "refs": {"order": f"o{i}"}},
                   {"ts": _ts(t + 9 * DAY), "event_type": "order_delivered", "identifiers": ids,
                    "refs": {"order": f"o{i}"}, "expected_ts": _ts(t + 2 * DAY),
                    "expectation_kind": "promised_delivery"}]
    _post(ws, orders)
    assert ws.con.execute("SELECT count(*) FROM outbox").fetchone()[0] == 10
    load_events(ws, [PostedEvent.model_validate(
        {"ts": "2099-01-01T00:00:00Z", "event_type": "page_view",
         "identifiers": {"customer_id": "clock"}})])
    result = action_effect(ws, "feedback")
    assert result.to_pylist() == [] and result.meta["outcome_unknown"] == 10
    assert result.meta["as_of"] < "2099"
    ws.close()
