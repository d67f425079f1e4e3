"""Paths on the seeded demo: directly-follows counts and variants equal pm4py's (a
dev-only reference, AGPL, never imported by keymoments itself), and the planted
truth is found: the switch to phone after two failed chats, the inconsistent agent
(and the poor-welcome one), the detour back from checkout to product pages."""

from __future__ import annotations

from collections import Counter

import pytest

import keymoments as km
from keymoments.demo import generate_demo

pm4py = pytest.importorskip("pm4py")  # in the dev extra; the suite installs it

DESIGN = {"name": "buy", "journey_types": ["purchase"],
          "steps": ["checkout_started", "order_placed", "payment_approved", "order_shipped",
                    "order_delivered"]}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("paths-demo")
    truth = generate_demo(out, n_events=20_000, seed=7)
    ws = km.open(out)
    ws.ingest()
    ws.build()
    yield ws, truth
    ws.close()


def _log(ws):
    """The journey events as pm4py reads a log: one row per event, in journey order
    (ties in time keep that order: pm4py sorts stably)."""
    df = ws.con.execute("SELECT journey_id, event_type, ts FROM journey_events "
                        "ORDER BY journey_id, seq").to_arrow_table().to_pandas()
    return df.reset_index(drop=True)


def test_directly_follows_and_variants_equal_pm4py(demo):
    ws, _ = demo
    df = pm4py.format_dataframe(_log(ws), case_id="journey_id", activity_key="event_type",
                                timestamp_key="ts")
    dfg, starts, ends = pm4py.discover_dfg(df)
    pm = km.process_map(ws)
    ours = {(e["source"], e["target"]): e["count"] for e in pm.edges.to_pylist()}
    assert ours == dict(dfg)
    nodes = {n["activity"]: n for n in pm.nodes.to_pylist()}
    assert {a: n["starts"] for a, n in nodes.items() if n["starts"]} == dict(starts)
    assert {a: n["ends"] for a, n in nodes.items() if n["ends"]} == dict(ends)
    ref = pm4py.get_variants(df)
    got = {tuple(r["path"]): r["journeys"] for r in km.variants(ws, limit=None).variants.to_pylist()}
    assert got == {tuple(k): v for k, v in ref.items()}
    assert len(got) > 100


def test_switch_after_two_failed_chats_is_found(demo):
    ws, truth = demo
    assert len(truth.switchers) >= 10
    s = km.channel_switching(ws)
    contacts = {r["journey_key"]: r for r in s.contacts.to_pylist()}
    for sw in truth.switchers:
        second = contacts[sw["tickets"][1]]
        assert second["pattern"] == "chat unresolved > chat unresolved", sw
        assert second["switch"] and second["lost_context"] and second["next_channel"] == "phone"
    frequent = [p for p in s.precedes.to_pylist() if p["contacts"] >= 5]
    top = frequent[0]
    assert top["pattern"] == "chat unresolved > chat unresolved"
    assert top["to_channel"] == "phone" and top["switch_rate"] >= 0.9 and top["lift"] > 5
    model = s.model
    assert model is not None and model.meta["n_test"] > 30
    assert model.meta["accuracy"] >= model.meta["baseline_accuracy"]
    coef = {r["feature"]: r["coefficient"] for r in model.to_pylist()}
    assert coef["unresolved_streak"] == max(coef.values())


def test_inconsistent_and_poor_welcome_agents_are_named(demo):
    ws, truth = demo
    r = km.consistency(ws, by=["agent"], kinds=["welcome"])
    flagged = {o["group"]: o["flag"] for o in r.meta["outliers"]}
    assert flagged == {truth.inconsistent_agent: "inconsistent", truth.poor_welcome_agent: "low"}
    rows = sorted(r.to_pylist(), key=lambda x: -x["shrunk_sd"])
    assert rows[0]["group"] == truth.inconsistent_agent


def test_planted_detour_is_the_top_deviation(demo):
    ws, truth = demo
    c = km.conformance(ws, DESIGN)
    top = c.deviations.to_pylist()[0]
    if top["kind"] == "conforms":
        top = c.deviations.to_pylist()[1]
    assert (top["kind"], top["after"], top["activity"]) == ("detour", "checkout_started",
                                                             "product_view")
    # every planted detour order is a journey that left the design there, and only those
    journeys = ws.con.execute("""
        SELECT count(DISTINCT journey_id) FROM journey_events je WHERE journey_type = 'purchase'
        AND event_type = 'product_view'""").fetchone()[0]
    assert top["journeys"] == journeys == truth.detour["orders"]
    m = c.summary.meta
    assert m["counts"]["conforms"] + sum(v for k, v in m["counts"].items() if k != "conforms") \
        == m["journeys"]
    lo, hi = m["share_conforming_ci95"]
    assert lo < m["share_conforming"] < hi


def test_filters_by_outcome_and_segment(demo):
    ws, _ = demo
    all_j = {r["journey_id"]: r for r in km.journeys(ws).to_pylist()}
    det = km.variants(ws, outcome="detractor", limit=None).variants
    want = Counter()
    for j in all_j.values():
        if j["outcome_scale"] == "nps10":
            want["d"] += j["outcome_rating"] <= 6
        elif j["outcome_valence"] is not None:
            want["d"] += j["outcome_valence"] < 0
    assert sum(r["journeys"] for r in det.to_pylist()) == want["d"] > 0
    vip = km.process_map(ws, segment="vip").nodes.meta["n_journeys"]
    assert 0 < vip < len(all_j)


def test_exported_xes_opens_in_pm4py_with_the_same_variants(demo, tmp_path):
    ws, _ = demo
    out = km.export_log(ws, tmp_path / "tickets.xes", journey_type="issue_resolution")
    log = pm4py.read_xes(str(tmp_path / "tickets.xes"))
    assert log["case:concept:name"].nunique() == out["traces"] and len(log) == out["events"]
    ref = pm4py.get_variants(log)
    got = km.variants(ws, journey_type="issue_resolution", limit=None, flows=False).variants
    assert {tuple(r["path"]): r["journeys"] for r in got.to_pylist()} == \
        {tuple(k): v for k, v in ref.items()}
