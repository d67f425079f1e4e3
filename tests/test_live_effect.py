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
