"""CX metrics: interval formulas against statsmodels/scipy and hand-computed cases,
coverage of the intervals over many seeded draws, and metrics on a small workspace
whose every figure is counted by hand in the comments."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint, proportions_ztest

import keymoments as km
from keymoments.insights import intervals as iv


@pytest.mark.parametrize("k,n", [(0, 1), (0, 20), (3, 7), (50, 100), (99, 100), (12, 13), (400, 1000)])
def test_wilson_matches_statsmodels(k, n):
    low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert iv.wilson(k, n) == pytest.approx((low, high), abs=1e-12)
    low90, high90 = proportion_confint(k, n, alpha=0.10, method="wilson")
    assert iv.wilson(k, n, 0.90) == pytest.approx((low90, high90), abs=1e-12)


def test_nps_by_hand():
    # 50 promoters, 30 passives, 20 detractors: NPS = 50% - 20% = 30
    nps, low, high = iv.nps_interval(50, 30, 20)
    assert nps == 30.0
    # adjusted Wald (Rocks 2016; Lewis and Sauro 2021): 3/4 added to promoters and to
    # detractors, 3 to the answers: p = 50.75/103, d = 20.75/103,
    # se = sqrt((p + d - (p - d)^2) / 103)
    p, d = 50.75 / 103, 20.75 / 103
    se = np.sqrt((p + d - (p - d) ** 2) / 103)
    assert (low, high) == pytest.approx((100 * (p - d - 1.959964 * se), 100 * (p - d + 1.959964 * se)),
                                        abs=1e-3)


def test_tests_match_reference_libraries():
    _, p = proportions_ztest([45, 30], [100, 120])
    assert iv.two_proportion_test(45, 100, 30, 120) == pytest.approx(p, rel=1e-9)
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 30), rng.normal(0.5, 2, 45)
    want = stats.ttest_ind(a, b, equal_var=False).pvalue
    got = iv.welch_test(len(a), a.sum(), (a * a).sum(), len(b), b.sum(), (b * b).sum())
    assert got == pytest.approx(want, rel=1e-8)
    pv = rng.uniform(0, 0.1, 12)
    for ours, theirs in (("holm", "holm"), ("bh", "fdr_bh")):
        assert iv.adjust_pvalues(pv, ours) == pytest.approx(multipletests(pv, method=theirs)[1].tolist())
    mean, low, high = iv.mean_interval(len(a), a.sum(), (a * a).sum())
    ci = stats.t.interval(0.95, len(a) - 1, loc=a.mean(), scale=stats.sem(a))
    assert (mean, low, high) == pytest.approx((a.mean(), *ci))


def test_interval_coverage_near_nominal():
    rng = np.random.default_rng(2024)
    draws = 3000
    # CSAT: 150 answers, true top-2 share 0.8
    k = rng.binomial(150, 0.8, draws)
    cover = np.mean([lo <= 0.8 <= hi for lo, hi in (iv.wilson(x, 150) for x in k)])
    assert 0.935 <= cover <= 0.965, cover
    # small sample: 20 answers, share 0.9 (where Wald undercovers badly)
    k = rng.binomial(20, 0.9, draws)
    cover = np.mean([lo <= 0.9 <= hi for lo, hi in (iv.wilson(x, 20) for x in k)])
    assert 0.92 <= cover <= 0.99, cover
    # NPS: 200 answers, 50% promoters, 30% passives, 20% detractors: true NPS 30
    counts = rng.multinomial(200, [0.5, 0.3, 0.2], draws)
    cover = np.mean([lo <= 30 <= hi for _, lo, hi in (iv.nps_interval(*c) for c in counts)])
    assert 0.935 <= cover <= 0.965, cover
    # NPS, small: 40 answers
    counts = rng.multinomial(40, [0.4, 0.35, 0.25], draws)
    cover = np.mean([lo <= 15 <= hi for _, lo, hi in (iv.nps_interval(*c) for c in counts)])
    assert 0.92 <= cover <= 0.975, cover
    # median of exponential waits (true median ln 2)
    cover = np.mean([lo <= np.log(2) <= hi for _, lo, hi in
                     (iv.median_interval(rng.exponential(1, 80)) for _ in range(1000))])
    assert 0.93 <= cover <= 0.985, cover


CONFIG = """
name: metrics
journeys:
  types:
    - {name: issue_resolution, key: ticket, start: [ticket_opened], end: [ticket_resolved], abandon_after: 30d}
    - {name: purchase, key: order, start: [order_placed], end: [order_delivered], abandon_after: 20d}
sources:
  csat:
    path: csat.jsonl
    identifiers: {customer_id: customer}
    refs: {order: order_id, ticket: ticket_id}
    event_type: event_type
    ts: ts
    channel: channel
    agent: agent
    rating: {column: score, scale: csat5}
  nps:
    path: nps.jsonl
    identifiers: {customer_id: customer}
    refs: {order: order_id}
    event_type: {value: nps_answered}
    ts: ts
    channel: channel
    rating: {column: score, scale: nps10}
"""


def _rows(rows):
    return "\n".join(json.dumps(r) for r in rows) + "\n"


@pytest.fixture(scope="module")
def shop_root(tmp_path_factory):
    """The workspace folder, built once for the module."""
    csat, nps = [], []
    # tickets: T1 by chat resolved after 30 min with a first reply after 6 min, CSAT 5;
    # T2 by phone transferred (not first-contact), reply after 12 min, CSAT 2;
    # T3 by chat, reply after 3 min, resolved, CSAT 4.
    for t, ch, reply_min, transfer, score in (("T1", "chat", 6, False, 5), ("T2", "phone", 12, True, 2),
                                              ("T3", "chat", 3, False, 4)):
        c = f"c{t}"
        csat.append({"customer": c, "ticket_id": t, "event_type": "ticket_opened", "channel": ch,
                     "ts": "2024-01-10T10:00:00Z"})
        csat.append({"customer": c, "ticket_id": t, "event_type": "agent_reply", "channel": ch,
                     "agent": "a1", "ts": f"2024-01-10T10:{reply_min:02d}:00Z"})
        if transfer:
            csat.append({"customer": c, "ticket_id": t, "event_type": "transferred", "channel": ch,
                         "agent": "a1", "ts": "2024-01-10T10:20:00Z"})
        csat.append({"customer": c, "ticket_id": t, "event_type": "ticket_resolved", "channel": ch,
                     "agent": "a1", "ts": "2024-01-10T10:30:00Z"})
        csat.append({"customer": c, "ticket_id": t, "event_type": "csat_answered", "channel": ch,
                     "score": score, "ts": "2024-01-10T11:00:00Z"})
    # orders: 10 web orders in January, 10 app orders in February, each with one NPS
    # answer: web 9,9,9,9,9,10,7,8,3,5 (6 promoters, 2 detractors: NPS 40);
    # app 10,10,6,6,6,6,6,8,8,2 (2 promoters, 6 detractors: NPS -40)
    scores = {"web": [9, 9, 9, 9, 9, 10, 7, 8, 3, 5], "app": [10, 10, 6, 6, 6, 6, 6, 8, 8, 2]}
    for ch, month in (("web", "01"), ("app", "02")):
        for i, s in enumerate(scores[ch]):
            o, c = f"O{ch}{i}", f"c{ch}{i}"
            csat.append({"customer": c, "order_id": o, "event_type": "order_placed", "channel": ch,
                         "ts": f"2024-{month}-{i + 1:02d}T09:00:00Z"})
            nps.append({"customer": c, "order_id": o, "channel": ch, "score": s,
                        "ts": f"2024-{month}-{i + 2:02d}T09:00:00Z"})
    root = tmp_path_factory.mktemp("shop")
    (root / "csat.jsonl").write_text(_rows(csat), encoding="utf-8")
    (root / "nps.jsonl").write_text(_rows(nps), encoding="utf-8")
    (root / "keymoments.yaml").write_text(CONFIG, encoding="utf-8")
    ws = km.open(root)
    ws.ingest()
    ws.build()
    ws.close()
    return root


@pytest.fixture
def shop(shop_root):
    ws = km.open(shop_root, read_only=True)
    yield ws
    ws.close()


def test_metrics_by_hand(shop):
    csat = km.metrics(shop, "csat", by="channel").to_pylist()
    by = {r["channel"]: r for r in csat}
    # chat: 5 and 4 are top-2 (2/2); phone: 2 is not (0/1)
    assert (by["chat"]["k"], by["chat"]["n"], by["phone"]["k"], by["phone"]["n"]) == (2, 2, 0, 1)
    assert (by["chat"]["low"], by["chat"]["high"]) == pytest.approx(proportion_confint(2, 2, method="wilson"))
    assert all(r["small_sample"] for r in csat)

    nps = km.metrics(shop, "nps", by="channel", min_n=5)
    rows = {r["channel"]: r for r in nps.to_pylist()}
    assert rows["web"]["value"] == pytest.approx(40.0) and rows["app"]["value"] == pytest.approx(-40.0)
    assert (rows["web"]["promoters"], rows["web"]["detractors"]) == (6, 2)
    # the two channels are each other's "rest": the same p-value, Holm doubles it (capped at 1)
    p = iv.nps_difference_test((6, 2, 2), (2, 2, 6))
    assert rows["web"]["p_value"] == pytest.approx(p) and rows["web"]["p_adjusted"] == pytest.approx(min(1, 2 * p))
    assert nps.meta["overall"]["value"] == pytest.approx(0.0) and nps.meta["n"] == 20

    by_month = km.metrics(shop, "nps", period="month").to_pylist()
    assert [r["value"] for r in by_month] == pytest.approx([40.0, -40.0])
    assert by_month[0]["p_value"] is None and by_month[1]["compared_to"] == "previous period"

    fcr = km.metrics(shop, "fcr").to_pylist()[0]
    assert (fcr["k"], fcr["n"]) == (2, 3)  # T2 was transferred
    first = km.metrics(shop, "first_response").to_pylist()[0]
    assert first["value"] == pytest.approx(6 / 60)  # median of 6, 12, 3 minutes, in hours
    res = km.metrics(shop, "resolution_time").to_pylist()[0]
    assert res["value"] == pytest.approx(0.5)

    since = km.metrics(shop, "nps", since="2024-02-01")
    assert since.meta["n"] == 10


def test_metric_errors_teach(shop):
    with pytest.raises(km.KeymomentsError, match="use one of"):
        km.metrics(shop, "happiness")
    with pytest.raises(km.KeymomentsError, match="attr:<attribute key>"):
        km.metrics(shop, "csat", by="colour")
    with pytest.raises(km.KeymomentsError, match="unknown period"):
        km.metrics(shop, "csat", period="fortnight")
    with pytest.raises(km.KeymomentsError, match="since: '2018-13-01' is not an ISO 8601 time"):
        km.metrics(shop, "churn", since="2018-13-01")
    with pytest.raises(km.KeymomentsError, match="until: 'soon'"):
        km.metrics(shop, "csat", until="soon")


def test_overall_mean_and_median_pool_every_unit(shop):
    first = km.metrics(shop, "first_response", by="channel")
    # chat replies after 6 and 3 minutes, phone after 12: the pooled median is 6 minutes
    assert first.meta["overall"]["value"] == pytest.approx(0.1) and first.meta["overall"]["n"] == 3
    assert {r["channel"]: r["n"] for r in first.to_pylist()} == {"chat": 2, "phone": 1}


def test_cli_is_a_thin_shell_over_the_api(shop_root):
    from click.testing import CliRunner

    from keymoments.cli import main

    root = str(shop_root)
    with km.open(shop_root, read_only=True) as ws:
        api = km.metrics(ws, "nps", by="channel", min_n=5).to_pylist()
    runner = CliRunner()
    out = runner.invoke(main, ["-w", root, "metrics", "nps", "--by", "channel", "--min-n", "5", "--json"])
    assert out.exit_code == 0, out.output
    got = json.loads(out.output)
    assert [r["value"] for r in got["rows"]] == pytest.approx([r["value"] for r in api])
    assert got["meta"]["metric"] == "nps" and got["meta"]["n"] == 20
    table = runner.invoke(main, ["-w", root, "metrics", "csat"])
    assert table.exit_code == 0 and "csat: 0.667" in table.output
    funnel = runner.invoke(main, ["-w", root, "funnel", "order_placed", "nps_answered", "--json"])
    assert json.loads(funnel.output)["rows"][-1]["units"] == 20
    # the window runs from the first step: the three tickets' replies came 3-12 minutes
    # after the opening, their CSAT answers 60 minutes after it, 48-57 after the reply;
    # within 0.04 days (57.6 minutes) of the first step, no ticket reaches the answer
    window = ["-w", root, "funnel", "ticket_opened", "agent_reply", "csat_answered",
              "--unit", "journey", "--within-days", "0.04"]
    rows = json.loads(runner.invoke(main, [*window, "--json"]).output)["rows"]
    assert [r["units"] for r in rows] == [3, 3, 0]
    assert "each step counted within 0.04 days of the first" in runner.invoke(main, window).output
    # too few journeys for a drivers model: one red line, exit 1
    drivers = runner.invoke(main, ["-w", root, "drivers"])
    assert drivers.exit_code == 1 and "drivers need at least 30" in drivers.output
    assert "pick another outcome" in drivers.output and "build the workspace" not in \
        drivers.output  # (it is built: a rebuild would not help)
    # a date that is none: a one-line error (exit 1), not an internal error (exit 2)
    bad = runner.invoke(main, ["-w", root, "metrics", "churn", "--since", "2018-13-01"])
    assert bad.exit_code == 1 and "not an ISO 8601 time" in bad.output


def test_recurrence_by_hand(make_workspace):
    from keymoments.insights import recurrence

    config = """
name: recurrence
sources:
  tickets:
    path: t.jsonl
    identifiers: {customer_id: customer}
    refs: {ticket: ticket_id}
    event_type: {value: ticket_opened}
    ts: ts
    attributes: {topic: topic}
"""
    rows = [  # (customer, ticket, day, topic)
        ("a", "T1", 1, "delivery"), ("a", "T2", 5, "delivery"),   # again after 4 days: a repeat
        ("b", "T3", 1, "delivery"), ("b", "T4", 11, "delivery"),  # after 10 days: outside 7
        ("c", "T5", 1, "payment"), ("c", "T6", 3, "delivery"),    # another topic: not a repeat
    ]
    ws = make_workspace(config, {"t.jsonl": _rows([
        {"customer": c, "ticket_id": t, "ts": f"2024-03-{d:02d}T10:00:00Z", "topic": topic}
        for c, t, d, topic in rows])})
    ws.ingest()
    ws.build()
    got = {r["topic"]: r for r in recurrence(ws, within_days=7).to_pylist()}
    assert (got["delivery"]["journeys"], got["delivery"]["repeat_contacts"]) == (5, 1)
    assert (got["payment"]["journeys"], got["payment"]["repeat_contacts"]) == (1, 0)
    assert recurrence(ws, within_days=12).to_pylist()[0]["repeat_contacts"] == 2  # T3 -> T4 now counts
    assert recurrence(ws).meta["warnings"] == []
    none = recurrence(ws, journey_type="case")  # (no such journeys: says so, names the types)
    assert len(none) == 0 and "no journey of type 'case'" in none.meta["warnings"][0]
    assert "issue_resolution (" in none.meta["warnings"][0]


def test_typed_requests_run_the_same_analysis(shop):
    from keymoments.insights.requests import MetricsRequest, parse_request

    req = parse_request("metrics", {"metric": "nps", "by": ["channel"], "min_n": 5})
    assert isinstance(req, MetricsRequest)
    direct = km.metrics(shop, "nps", by="channel", min_n=5)
    assert req.run(shop).to_pylist() == direct.to_pylist()
    # one name, as km.metrics and the command line take it
    one = parse_request("metrics", {"metric": "nps", "by": "channel", "min_n": 5})
    assert one.by == ["channel"] and one.run(shop).to_pylist() == direct.to_pylist()
    funnel = parse_request("funnel", {"steps": ["order_placed", "nps_answered"]}).run(shop)
    assert funnel.to_pylist() == km.funnel(shop, ["order_placed", "nps_answered"]).to_pylist()
    with pytest.raises(km.ConfigError, match="request.period"):
        parse_request("metrics", {"metric": "nps", "period": "fortnight"})
    with pytest.raises(km.ConfigError, match="request.confidence"):
        parse_request("churn", {"confidence": 1.5})
    with pytest.raises(km.ConfigError) as every:  # every mistake at once, each at its field
        parse_request("metrics", {"metric": "nps", "period": "fortnight", "min_n": 0})
    assert "request.period" in str(every.value) and "request.min_n" in str(every.value)
    with pytest.raises(km.ConfigError, match="unknown analysis"):
        parse_request("happiness", {})


def test_a_survey_metric_without_answers_says_which_scales_there_are(shop):
    scales = dict(shop.con.execute("SELECT rating_scale, count(*) FROM events "
                                   "WHERE rating IS NOT NULL GROUP BY 1").fetchall())
    assert "ces7" not in scales and scales  # the fixture's surveys are CSAT and NPS
    r = km.metrics(shop, "ces")
    assert r.meta["n"] == 0
    [warning] = r.meta["warnings"]
    assert warning.startswith("no ces7 answers: ces counts ratings on the ces7 scale only")
    for scale, n in scales.items():
        assert f"{scale} ({n:,})" in warning
    assert not any(w.startswith("no csat5") for w in km.metrics(shop, "csat").meta["warnings"])


def test_probability_alive_warns_when_nobody_or_few_repeat(make_workspace):
    text = """\
name: shop
sources:
  orders:
    path: o.csv
    identifiers: {customer_id: cid}
    event_type: {value: order_placed}
    ts: at
"""
    once = "cid,at\n" + "".join(f"{i},2024-01-{1 + i % 20:02d}T10:00:00Z\n" for i in range(40))
    ws = make_workspace(text, {"o.csv": once})
    ws.ingest("orders")
    r = km.probability_alive(ws, event_types=["order_placed"])
    assert r.meta["repeaters"] == 0
    assert r.meta["warnings"][0].startswith("no person made a repeat purchase")
    again = once + "1,2024-02-10T10:00:00Z\n2,2024-02-11T10:00:00Z\n"
    ws2 = make_workspace(text, {"o.csv": again}, folder="ws2")
    ws2.ingest("orders")
    r2 = km.probability_alive(ws2, event_types=["order_placed"])
    assert r2.meta["repeaters"] == 2
    assert r2.meta["warnings"] == ["only 2 person(s) made a repeat purchase: the fit rests on "
                                   "few histories, read p_alive with care"]


def test_predicted_experience_warns_when_the_moments_tell_answers_apart_no_better_than_chance(
        make_workspace):
    """Planted: CSAT answers drawn at random, unrelated to anything in the journeys.
    The held-out Brier score is then no better than a constant's: say so."""
    import random

    import keymoments as km

    rng = random.Random(3)
    lines = ["customer,ts,event_type,order,csat"]
    for i in range(300):
        lines.append(f"c{i},2024-01-01T10:00:00Z,order_placed,o{i},")
        lines.append(f"c{i},2024-01-02T10:00:00Z,order_delivered,o{i},")
        if i < 200:
            lines.append(f"c{i},2024-01-03T10:00:00Z,survey_answered,o{i},{rng.randint(1, 5)}")
    config = """
name: noskill
sources:
  events:
    path: events.csv
    identifiers: {customer_id: customer}
    event_type: event_type
    ts: ts
    refs: {order: order}
    rating: {column: csat, scale: csat5}
"""
    ws = make_workspace(config, {"events.csv": "\n".join(lines) + "\n"})
    ws.ingest("events")
    ws.build()
    r = km.predicted_experience(ws, "csat")
    assert r.meta["brier"] >= 0.99 * r.meta["brier_baseline"]
    assert any("no better than" in w for w in r.meta["warnings"]), r.meta


def test_drivers_leave_out_constant_facts_and_warn_of_facts_that_go_together(make_workspace):
    """Planted: every journey is on the web (a constant: no effect to estimate); a
    failed payment always comes with a 'retry' attribute (two facts that cannot be
    told apart) and lowers the rating by 3 points; the rest is noise."""
    import random

    import keymoments as km

    rng = random.Random(5)
    lines = ["customer,ts,event_type,order,csat,retry"]
    for i in range(120):
        failed = i % 3 == 0
        lines.append(f"c{i},2024-01-01T10:00:00Z,order_placed,o{i},,{'yes' if failed else 'no'}")
        if failed:
            lines.append(f"c{i},2024-01-01T10:01:00Z,payment_failed,o{i},,yes")
        rating = max(1, min(5, (2 if failed else 5) - rng.randint(0, 1)))
        lines.append(f"c{i},2024-01-03T10:00:00Z,survey_answered,o{i},{rating},")
    config = """
name: drivers
sources:
  events:
    path: events.csv
    identifiers: {customer_id: customer}
    event_type: event_type
    ts: ts
    channel: {value: web}
    refs: {order: order}
    rating: {column: csat, scale: csat5}
    attributes: {retry: retry}
"""
    ws = make_workspace(config, {"events.csv": "\n".join(lines) + "\n"})
    ws.ingest("events")
    ws.build()
    r = km.drivers(ws, "feedback", n_boot=20, min_support=5)
    feats = {x["feature"]: x for x in r.to_pylist()}
    assert "channel=web" not in feats  # on every journey: left out, not a ~1e-13 effect
    assert all(x["support"] < r.meta["n"] for x in feats.values() if x["mean_with"] is not None)
    assert "retry=yes" in feats and "valley=payment_failed" in feats
    together = [w for w in r.meta["warnings"] if "go together" in w]
    assert any("retry=yes" in w and "valley=payment_failed" in w for w in together), together
    # the failure explains the ratings: no warning of a model without skill
    assert r.meta["heldout"]["score"] > 0.5
    assert not any("predict next to nothing" in w for w in r.meta["warnings"])
    # the same journeys rated at random: the held-out R2 is about 0, and a warning says so
    noise = [ln if not ln.split(",")[2] == "survey_answered" else
             ",".join([*ln.split(",")[:4], str(rng.randint(1, 5)), ""]) for ln in lines]
    ws2 = make_workspace(config, {"events.csv": "\n".join(noise) + "\n"}, folder="noise")
    ws2.ingest("events")
    ws2.build()
    r2 = km.drivers(ws2, "feedback", n_boot=20, min_support=5)
    assert r2.meta["heldout"]["score"] < 0.02
    assert any(w.startswith("held-out r2") and "predict next to nothing" in w
               for w in r2.meta["warnings"])


@pytest.mark.parametrize("k1, n1, k2, n2", [(0, 3, 110, 134), (2, 9, 40, 50), (45, 100, 30, 100),
                                            (300, 1000, 250, 1000), (31, 499, 347, 7501)])
def test_two_proportion_test_is_exact_for_small_expected_counts(k1, n1, k2, n2):
    """Small expected counts: scipy's Fisher exact test; otherwise the pooled z-test
    written out by hand."""
    import math

    from scipy import stats

    from keymoments.insights.intervals import two_proportion_test

    share = (k1 + k2) / (n1 + n2)
    small = min(n * s for n in (n1, n2) for s in (share, 1 - share)) < 5
    if small:
        expected = stats.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]]).pvalue
    else:
        z = (k1 / n1 - k2 / n2) / math.sqrt(share * (1 - share) * (1 / n1 + 1 / n2))
        expected = 2 * stats.norm.sf(abs(z))
    assert two_proportion_test(k1, n1, k2, n2) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("n", [1, 3, 7, 20, 101, 999, 6123])
def test_wilson_bounds_are_exactly_0_and_1_at_the_ends(n):
    """No 5.55e-17 printed as a lower bound of nobody satisfied."""
    from keymoments.insights.intervals import wilson

    assert wilson(0, n)[0] == 0.0 and wilson(n, n)[1] == 1.0
    assert 0.0 < wilson(1, n)[0] or n == 1


def test_root_causes_say_why_there_are_none_and_json_keeps_the_limit(shop_root):
    from click.testing import CliRunner

    import keymoments as km
    from keymoments.cli import main

    ws = km.open(shop_root, read_only=True)
    try:
        r = km.root_causes(ws, min_journeys=1000)
    finally:
        ws.close()
    assert len(r) == 0 and "1000 journeys or more" in r.meta["hint"]
    out = CliRunner().invoke(main, ["-w", str(shop_root), "root-causes", "--min-journeys", "1000"])
    assert out.exit_code == 0 and "1000 journeys or more" in out.stdout


def test_json_output_keeps_the_limit(capsys):
    import json

    import pyarrow as pa

    from keymoments.insights.commands import _emit
    from keymoments.results import Result

    result = Result(pa.table({"rank": [1, 2, 3]}), {"n": 3})
    _emit(result, True, limit=2)
    assert json.loads(capsys.readouterr().out)["rows"] == [{"rank": 1}, {"rank": 2}]


def test_periods_are_counted_in_the_workspace_time_zone(make_workspace):
    """Two CSAT answers at 23:30 on 31 January in São Paulo (02:30 UTC on 1 February):
    in UTC they fall in February, with `timezone: America/Sao_Paulo` in January."""
    import keymoments as km

    rows = ("customer,ts,event_type,ticket,csat\n"
            "a,2024-01-31T23:30:00-03:00,csat_answered,t1,5\n"
            "b,2024-01-31T23:40:00-03:00,csat_answered,t2,1\n"
            "c,2024-02-15T12:00:00-03:00,csat_answered,t3,4\n")
    config = """
name: zones
{zone}
sources:
  answers:
    path: answers.csv
    identifiers: {{customer_id: customer}}
    event_type: event_type
    ts: ts
    refs: {{ticket: ticket}}
    rating: {{column: csat, scale: csat5}}
"""
    counts = {}
    for zone in ("", "timezone: America/Sao_Paulo"):
        ws = make_workspace(config.format(zone=zone), {"answers.csv": rows},
                            folder=f"ws{len(counts)}")
        ws.ingest("answers")
        ws.build()
        got = km.metrics(ws, "csat", period="month").to_pylist()
        counts[zone] = [(str(r["period"])[:7], r["n"]) for r in got]
        # a date without an offset is a local date of the same zone: February in São
        # Paulo begins after the two January answers, in UTC before them
        feb = km.metrics(ws, "csat", period="month", since="2024-02-01").to_pylist()
        counts[zone + " since"] = [(str(r["period"])[:7], r["n"]) for r in feb]
    assert counts[""] == [("2024-02", 3)] == counts[" since"]
    assert counts["timezone: America/Sao_Paulo"] == [("2024-01", 2), ("2024-02", 1)]
    assert counts["timezone: America/Sao_Paulo since"] == [("2024-02", 1)]


def test_a_misspelt_attribute_dimension_is_a_warning_naming_the_attributes(shop_root):
    from click.testing import CliRunner

    import keymoments as km
    from keymoments.cli import main

    ws = km.open(shop_root, read_only=True)
    try:
        r = km.metrics(ws, "nps", by="attr:chanel")
    finally:
        ws.close()
    assert any("no event has the attribute 'chanel'" in w for w in r.meta["warnings"])
    out = CliRunner().invoke(main, ["-w", str(shop_root), "metrics", "nps", "--by", "attr:chanel"])
    assert out.exit_code == 0 and "no event has the attribute 'chanel'" in out.stdout
    assert "(none)" in out.stdout  # the one group, without a value, says so


def test_churn_warns_when_most_churn_happens_at_time_zero(make_workspace):
    """Planted: 30 people each with a single event, 20 of them a cancellation (their
    first event is their churn), and 10 people followed for a month: the curves
    would say most people leave at once."""
    import keymoments as km

    lines = ["customer,ts,event_type"]
    for i in range(20):
        lines.append(f"a{i},2024-01-{1 + i % 28:02d}T10:00:00Z,subscription_cancelled")
    for i in range(10):
        lines.append(f"b{i},2024-01-01T10:00:00Z,page_view")
        lines.append(f"b{i},2024-02-01T10:00:00Z,page_view")
    config = """
name: churn0
sources:
  events:
    path: events.csv
    identifiers: {customer_id: customer}
    event_type: event_type
    ts: ts
"""
    ws = make_workspace(config, {"events.csv": "\n".join(lines) + "\n"})
    ws.ingest("events")
    r = km.churn(ws, churn_events=["subscription_cancelled"])
    assert r.meta["churned"] == 20
    assert not any(w.startswith("no event is in the churn stage")
                   for w in km.metrics(ws, "churn").meta["warnings"])
    assert any("20 of 20 churned people churned at time 0" in w for w in r.meta["warnings"])


def test_root_causes_count_repeat_contacts_of_the_contact_types_and_say_when_empty(
        make_workspace):
    """Complaint cases (journey type ``case``, a contact type by default): Ana's first
    case reads 'terrible' (its valley) and she opens another case 3 days later, whose
    valley is the default rule's repeat contact; Ben's does not come back. Counted by
    hand: 3 journeys with a complaint valley, 1 followed by a contact (C1 by C2)."""
    rows = ("customer,ts,event_type,case,text\n"
            "ana,2024-03-01T10:00:00Z,complaint,C1,terrible service\n"
            "ana,2024-03-04T10:00:00Z,complaint,C2,\n"
            "ben,2024-03-01T12:00:00Z,complaint,C3,terrible service\n")
    config = """
name: cases
journeys:
  types:
    - {name: case, key: case}
sources:
  complaints:
    path: complaints.csv
    identifiers: {customer_id: customer}
    refs: {case: case}
    event_type: event_type
    ts: ts
    text: text
"""
    ws = make_workspace(config, {"complaints.csv": rows})
    ws.ingest("complaints")
    ws.build()
    r = km.root_causes(ws, min_journeys=2)
    row = next(x for x in r.to_pylist() if x["cause"] == "complaint")
    assert (row["journeys"], row["repeat_contacts"]) == (3, 1)
    assert r.meta["contact_types"] == ["issue_resolution", "case"]
    # nothing rated: the effect is empty, and the result says why
    assert row["effect"] is None
    said = [w for w in r.meta["warnings"] if "no journey has the outcome 'feedback'" in w]
    assert len(said) == 1 and "first feedback answer" in said[0] and "j." not in said[0]


def test_empty_metrics_say_why(shop):
    """A journey metric with none of its journeys names the types there are; churn by
    inactivity longer than the data is a warning (the module's shop, counted by hand:
    20 orders and 3 tickets)."""
    conv = km.metrics(shop, "conversion")  # no browsing journeys in the shop
    assert conv.meta["n"] == 0
    [w] = [w for w in conv.meta["warnings"] if w.startswith("no journeys for conversion")]
    assert "it counts browsing journeys" in w
    assert "purchase (20)" in w and "issue_resolution (3)" in w
    # the events run from 1 January 09:00 (the first order) to 11 February 09:00 (the
    # last NPS answer): 41 days, so nobody can be 400 days inactive
    churn = km.metrics(shop, "churn", inactive_days=400)
    assert any(w.startswith("the events span 41.0 days, less than --inactive-days 400")
               for w in churn.meta["warnings"])
    assert not any("the events span" in w for w in
                   km.metrics(shop, "churn", inactive_days=30).meta["warnings"])
    # no churn-stage event in the shop: contractual survival says nobody churned, and why
    survival = km.churn(shop)
    assert survival.meta["churned"] == 0
    assert any(w.startswith("nobody churned: contractual churn is a churn-stage event")
               for w in survival.meta["warnings"])
    # and the churn metric, which read 0 with a tight interval and said nothing
    contractual = km.metrics(shop, "churn")
    assert contractual.meta["n"] > 0 and contractual.to_pylist()[0]["value"] == 0
    assert any(w.startswith("no event is in the churn stage, so churn reads 0")
               for w in contractual.meta["warnings"])


@pytest.mark.parametrize("bad", [math.nan, math.inf, 0, -3, 1e300])
def test_a_window_in_days_must_be_a_positive_finite_number(shop, bad):
    """Windows were formatted into SQL as given: nan, inf or 1e300 days failed with an
    internal error (a conversion or binder error) instead of saying what to give."""
    runs = [lambda: km.metrics(shop, "churn", inactive_days=bad),
            lambda: km.funnel(shop, ["order_placed", "nps_answered"], within_days=bad),
            lambda: km.root_causes(shop, within_days=bad),
            lambda: km.churn(shop, kind="inactivity", inactive_days=bad)]
    for name, run in zip(["inactive_days", "within_days", "within_days", "inactive_days"], runs):
        with pytest.raises(km.KeymomentsError, match=f"{name} must be a number of days above 0"):
            run()
    if not 0 < bad <= 1:  # (a valence threshold: -1 to 1)
        with pytest.raises(km.KeymomentsError, match="threshold must be a valence from -1 to 1"):
            km.root_causes(shop, threshold=bad * 2 if bad else math.nan)


@pytest.mark.parametrize("by, words", [
    (["attr:period"], "both be a column named 'period'"), (["attr:y"], "named like the built-in"),
    (["channel", "attr:channel"], "both be a column named 'channel'"),
    (["attr:value"], "named like the built-in"), (["attr:journey_type"], "named like the built-in")])
def test_an_attribute_named_like_a_built_in_column_is_refused(shop, by, words):
    """attr:<key> became a column named <key>: 'period' or 'y' failed inside the query,
    attr:channel beside channel showed the real channels twice, and attr:journey_type
    grouped by the journey type. Each is now an error saying what to rename."""
    with pytest.raises(km.KeymomentsError, match=words):
        km.metrics(shop, "csat", by=by, period="year" if by == ["attr:period"] else None)


def test_an_attribute_named_like_a_dimension_not_asked_for_groups_as_itself(make_workspace):
    """attr:status (an order's status) beside no status dimension is the attribute (a hand
    count: two answers of shipped orders, one of a delivered order)."""
    rows = ("customer,ts,event_type,csat,status\n"
            "c1,2024-01-01T10:00:00Z,survey_answered,5,shipped\n"
            "c2,2024-01-02T10:00:00Z,survey_answered,3,shipped\n"
            "c3,2024-01-03T10:00:00Z,survey_answered,1,delivered\n")
    config = """
sources:
  s:
    path: s.csv
    identifiers: {customer_id: customer}
    event_type: event_type
    ts: ts
    rating: {column: csat, scale: csat5}
    attributes: {status: status, period: status}
"""
    ws = make_workspace(config, {"s.csv": rows})
    ws.ingest()
    ws.build()
    got = {r["status"]: (r["n"], r["value"]) for r in
           km.metrics(ws, "csat", by="attr:status", min_n=1).to_pylist()}
    assert got == {"shipped": (2, 0.5), "delivered": (1, 0.0)}
    assert {r["period"] for r in km.metrics(ws, "csat", by="attr:period", min_n=1).to_pylist()} \
        == {"shipped", "delivered"}


def test_the_nps_difference_test_keeps_its_level_for_small_groups():
    """Under the null (both groups drawn from the same answers), a group of 1, 3, 10
    or 30 answers against 200 differs at the 5% level at most about 5% of the time
    (simulated: the plain variance made a single answer differ at p = 0 every time)."""
    from keymoments.insights.intervals import nps_difference_test

    rng = np.random.default_rng(7)
    probs, sims = [0.4, 0.3, 0.3], 2000
    for n1 in (1, 3, 10, 30):
        rejected = sum(
            nps_difference_test(tuple(rng.multinomial(n1, probs)),
                                tuple(rng.multinomial(200, probs))) < 0.05
            for _ in range(sims)) / sims
        assert rejected <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / sims), (n1, rejected)
        if n1 == 30:
            assert rejected >= 0.02, rejected  # (not blind either)
