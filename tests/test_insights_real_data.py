"""Insights on real exports: probability-alive on CDNOW against the ``lifetimes``
package (the data set ships with it), churn survival and drivers by contract type on
the telco sample, each checked against an independent reading of the file."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import warnings
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from ruamel.yaml import YAML

import keymoments as km
from keymoments.insights.alive import BGNBD
from keymoments.insights.churn_drivers import churn_drivers

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("KEYMOMENTS_SHARED_DATA", ROOT.parent / "shared" / "data"))
REVIEWS = DATA / "olist-sample/olist_order_reviews_dataset.csv"


def guide_workspace(root: Path, *names: str):
    """A workspace at ``root`` with the sources of docs/mapping.md named ``names``."""
    guide = (ROOT / "docs" / "mapping.md").read_text(encoding="utf-8")
    sources, rest = {}, {}
    for block in re.findall(r"```yaml\n(.*?)```", guide, flags=re.S):
        data = YAML(typ="safe").load(block)
        mine = {n: s for n, s in (data.get("sources") or {}).items() if n in names}
        sources.update(mine)
        if mine:  # the block's other settings (journeys) go with its sources
            rest.update({k: v for k, v in data.items() if k != "sources"})
    buf = io.StringIO()
    YAML().dump({"sources": sources, **rest}, buf)
    root.mkdir(parents=True, exist_ok=True)
    (root / "keymoments.yaml").write_text("name: real\n" + buf.getvalue().replace("../shared/data", str(DATA)))
    return km.open(root)


def test_cdnow_probability_alive_matches_lifetimes(tmp_path, shared_data):
    lifetimes = pytest.importorskip("lifetimes", reason="dev-only reference: pip install -e .[dev]")
    ws = guide_workspace(tmp_path / "cdnow", "cdnow")
    ws.ingest("cdnow")
    r = km.probability_alive(ws, event_types=["order_placed"])
    # the reference: lifetimes' own summary of the raw file, and its BG/NBD fit
    lines = (shared_data / "cdnow/CDNOW_master.txt").read_text().splitlines()[1:]
    days: dict[str, set] = {}
    for line in lines:
        cid, date = line.split()[:2]
        days.setdefault(cid, set()).add(datetime.strptime(date, "%Y%m%d").toordinal())
    end = max(d for s in days.values() for d in s)
    ids = sorted(days)
    freq = np.array([len(days[i]) - 1 for i in ids], float)
    rec = np.array([max(days[i]) - min(days[i]) for i in ids], float)
    age = np.array([end - min(days[i]) for i in ids], float)
    ours = r.to_pylist()
    assert len(ours) == len(ids) == 23570
    got = {row["person_id"]: row for row in ours}
    # persons are named by their identifier; compare through the raw customer ids
    pid = dict(ws.con.execute("SELECT value, person_id FROM identifiers WHERE kind = 'customer_id'").fetchall())
    mine = np.array([[got[pid[i]]["frequency"], got[pid[i]]["recency"], got[pid[i]]["age"]]
                     for i in ids])
    assert np.array_equal(mine, np.column_stack([freq, rec, age]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = lifetimes.BetaGeoFitter().fit(freq, rec, age)
    for name in ("r", "alpha", "a", "b"):
        assert r.meta["params"][name] == pytest.approx(ref.params_[name], rel=1e-4)
    want = ref.conditional_probability_alive(freq, rec, age)
    have = np.array([got[pid[i]]["p_alive"] for i in ids])
    assert np.max(np.abs(have - want)) < 1e-4
    exp_want = ref.conditional_expected_number_of_purchases_up_to_time(90, freq, rec, age)
    exp_have = np.array([got[pid[i]]["expected_purchases"] for i in ids])
    assert np.max(np.abs(exp_have - exp_want)) < 1e-3
    root = ws.root
    ws.close()
    # the CLI: the repeat buyers least likely still active, from the same fit
    from click.testing import CliRunner

    from keymoments.cli import main

    out = CliRunner().invoke(main, ["-w", str(root), "alive", "--limit", "3"])
    assert out.exit_code == 0, out.output
    gone = sorted((r for r in ours if r["frequency"] > 0),
                  key=lambda r: (r["p_alive"], r["person_id"]))
    shown = [line.split("│")[1].strip() for line in out.stdout.splitlines()
             if line.startswith("│")]
    assert shown == [r["person_id"] for r in gone[:3]]
    assert f"{int((freq > 0).sum()):,} bought again" in out.stdout
    # the JSON holds the same rows (it held the first buyers by id, one-time ones too)
    out = CliRunner().invoke(main, ["-w", str(root), "alive", "--limit", "3", "--json"])
    assert out.exit_code == 0, out.output
    assert [r["person_id"] for r in json.loads(out.stdout)["rows"]] == \
        [r["person_id"] for r in gone[:3]]


def test_cdnow_repeat_purchases_with_the_guides_journeys_match_a_hand_count(tmp_path, shared_data):
    """The guide's CDNOW journeys (a customer's purchases of a day) and the default 90
    days: a purchase day is repurchased when the customer buys again within 90 days,
    and counted only when the file goes on for 90 days after it (else a recent day
    would count when it was repurchased and not when it was not)."""
    ws = guide_workspace(tmp_path / "cdnow", "cdnow")
    ws.ingest("cdnow")
    ws.build()
    days: dict[str, list] = {}
    for line in (shared_data / "cdnow/CDNOW_master.txt").read_text().splitlines()[1:]:
        cid, date = line.split()[:2]
        days.setdefault(cid, []).append(datetime.strptime(date, "%Y%m%d").toordinal())
    end = max(max(v) for v in days.values())
    repeat = known = n_days = 0
    for seen in days.values():
        seen = sorted(set(seen))
        n_days += len(seen)
        for i, d in enumerate(seen):
            again = i + 1 < len(seen) and seen[i + 1] - d <= 90
            if d + 90 <= end:
                known += 1
                repeat += again
    journeys = ws.con.execute(
        "SELECT count(*) FROM journeys WHERE journey_type = 'purchase'").fetchone()[0]
    assert journeys == n_days == 67591
    r = km.metrics(ws, "repeat_purchase")
    assert r.meta["n"] == known == 61972
    assert r.to_pylist()[0]["value"] == pytest.approx(repeat / known, abs=1e-9)
    ws.close()


def test_bgnbd_recovers_simulated_parameters():
    # an independent oracle: simulate the model's own story and fit it back
    rng = np.random.default_rng(11)
    n, T = 4000, 52.0
    r, alpha, a, b = 0.8, 6.0, 0.7, 2.5
    lam = rng.gamma(r, 1 / alpha, n)
    p = rng.beta(a, b, n)
    x, tx = np.zeros(n), np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > T:
                break
            x[i] += 1
            tx[i] = t
            if rng.random() < p[i]:
                break
    m = BGNBD().fit(x, tx, np.full(n, T))
    assert m.params_["r"] == pytest.approx(r, rel=0.15)
    assert m.params_["alpha"] == pytest.approx(alpha, rel=0.25)
    assert m.params_["a"] == pytest.approx(a, rel=0.35)
    assert m.params_["b"] == pytest.approx(b, rel=0.45)


@pytest.fixture(scope="module")
def telco(tmp_path_factory):
    ws = guide_workspace(tmp_path_factory.mktemp("telco") / "ws", "telco")
    ws.ingest("telco")
    with open(DATA / "telco-churn/telco_customer_churn.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    yield ws, rows
    ws.close()


def test_telco_survival_by_contract_type(telco):
    ws, rows = telco
    r = km.churn(ws, by="attr:contract", tenure_measure="tenure_months", horizons=(12.0, 24.0))
    got = {x["group"]: x for x in r.summary.to_pylist()}
    people = Counter(x["Contract"] for x in rows)
    churned = Counter(x["Contract"] for x in rows if x["Churn"] == "Yes")
    assert {g: x["people"] for g, x in got.items()} == dict(people)
    assert {g: x["churned"] for g, x in got.items()} == dict(churned)
    # Kaplan-Meier by hand at 12 months for month-to-month: product over event times
    # t <= 12 of (1 - churned at t / at risk at t)
    mm = [(float(x["tenure"]), x["Churn"] == "Yes") for x in rows if x["Contract"] == "Month-to-month"]
    s = 1.0
    for t in sorted({t for t, e in mm if e and t <= 12}):
        at_risk = sum(1 for u, _ in mm if u >= t)
        s *= 1 - sum(1 for u, e in mm if u == t and e) / at_risk
    assert got["Month-to-month"]["survival_12"] == pytest.approx(s, rel=1e-9)
    # the longer the contract, the lower the hazard
    assert r.meta["reference_group"] == "Month-to-month"
    assert got["Two year"]["hazard_ratio_high"] < got["One year"]["hazard_ratio_low"] < 1
    assert got["Month-to-month"]["survival_24"] < got["One year"]["survival_24"] < got["Two year"]["survival_24"]
    assert r.meta["logrank"]["p_value"] < 1e-10
    # without horizons: quarters of the longest tenure in the file, in months (not days
    # past the data); the same hand-computed Kaplan-Meier at the middle one
    longest = max(float(x["tenure"]) for x in rows)
    d = km.churn(ws, by="attr:contract", tenure_measure="tenure_months")
    assert d.meta["horizons"] == [round(longest * q) for q in (0.25, 0.5, 0.75, 1.0)]
    mid = d.meta["horizons"][1]
    s = 1.0
    for t in sorted({t for t, e in mm if e and t <= mid}):
        s *= 1 - sum(1 for u, e in mm if u == t and e) / sum(1 for u, _ in mm if u >= t)
    by_group = {x["group"]: x for x in d.summary.to_pylist()}
    assert by_group["Month-to-month"][f"survival_{mid:g}"] == pytest.approx(s, rel=1e-9)
    assert not any(k.startswith("survival_365") for k in by_group["Month-to-month"])


def test_telco_churn_without_a_tenure_says_why_instead_of_a_result(telco):
    """A snapshot has every event at one date: followed from their first event, every
    customer is observed for no time, so survival and hazards would be meaningless
    (NaN hazard rates, hazard ratios from ties at 0). It is refused, naming the fix."""
    ws, _ = telco
    for run in (lambda: km.churn(ws, by="segment"), lambda: churn_drivers(ws)):
        with pytest.raises(km.KeymomentsError, match="followed for no time.*tenure_measure"):
            run()
    with pytest.raises(km.KeymomentsError, match="in its own unit"):
        km.churn(ws, tenure_measure="tenure_months", unit_days=30)


def test_telco_churn_drivers(telco):
    ws, rows = telco
    d = churn_drivers(ws, tenure_measure="tenure_months")
    top = d.to_pylist()
    assert top[0]["feature"] == "contract=Two year" and top[0]["high"] < 1
    assert d.meta["references"]["contract"] == Counter(x["Contract"] for x in rows).most_common(1)[0][0]
    assert d.meta["heldout"]["score"] > 0.7
    feats = {x["feature"]: x for x in top}
    # fibre optic (the reference) churns more than DSL or no internet
    assert feats["internet=DSL"]["high"] < 1 and feats["internet=No"]["high"] < 1


def test_marketplace_late_delivery_is_a_top_root_cause_of_low_reviews(tmp_path):
    ws = guide_workspace(tmp_path / "olist", "olist_reviews")
    ws.ingest()
    ws.build()
    result = km.root_causes(ws, outcome="feedback")
    rows = result.to_pylist()
    # no tickets or cases: repeat contacts cannot be counted, and the result says so
    assert any(w.startswith("repeat contacts count journeys of type issue_resolution, case")
               for w in result.meta["warnings"])
    said = "theme=late_delivery (said in the feedback)"  # the review's own comment
    late = next(x for x in rows if x["cause"] == said)
    assert late["rank"] <= 2 and late["effect_high"] < 0
    # the biggest effect of any frequent cause (seen on 100+ journeys)
    frequent = [x for x in rows if x["journeys"] >= 100 and x["effect"] is not None]
    assert min(frequent, key=lambda x: x["effect"])["cause"] == said
    # independently, from the review file: stars of reviews whose message says the
    # order was late or never came, against the others
    from keymoments.insights.themes import DEFAULT_THEMES

    pattern = re.compile(DEFAULT_THEMES["late_delivery"])
    with open(REVIEWS, newline="", encoding="utf-8") as fh:
        reviews = list(csv.DictReader(fh))
    hit = [int(r["review_score"]) for r in reviews if pattern.search(r["review_comment_message"].lower())]
    miss = [int(r["review_score"]) for r in reviews if not pattern.search(r["review_comment_message"].lower())]
    assert np.mean(hit) < np.mean(miss) - 1.5
    # stars 1..5 map to valence -1..1: the engine's effect is the same gap, halved
    assert late["mean_with"] == pytest.approx((np.mean(hit) - 3) / 2, abs=0.1)
    ws.close()


def test_marketplace_purchases_are_the_orders_of_the_orders_file(tmp_path):
    """Most of the sample's order journeys hold only a review of an order the orders
    file (an independent sample) does not have: no purchase. The repeat-purchase
    metric counts the journeys whose window has passed and whose order the raw orders
    file holds with a purchase time, and every repeat_purchase moment is an order's
    placement in that file (this sample has none: its customers file, another
    independent sample, links no customer to two orders)."""
    ws = guide_workspace(tmp_path / "olist", "olist_orders", "olist_reviews")
    ws.ingest()
    ws.build()
    with open(DATA / "olist-sample/olist_orders_dataset.csv", newline="") as fh:
        placed = {o["order_id"] for o in csv.DictReader(fh) if o["order_purchase_timestamp"]}
    known = [k for (k,) in ws.con.execute(
        "SELECT journey_key FROM journeys WHERE journey_type = 'purchase' "
        "AND repurchased IS NOT NULL").fetchall()]
    bought = [k for k in known if k in placed]
    assert len(known) == 8759 and len(bought) == 3584  # 5,175 review-only journeys
    r = km.metrics(ws, "repeat_purchase")
    assert r.meta["n"] == len(bought)
    moments = ws.con.execute(
        "SELECT j.journey_key, e.event_type FROM moments m JOIN journeys j USING (journey_id) "
        "JOIN events e USING (event_id) WHERE m.kind = 'repeat_purchase'").fetchall()
    assert all(k in placed and t == "order_placed" for k, t in moments)
    ws.close()


def test_star_ratings_are_a_metric_of_their_own(tmp_path):
    """The marketplace's reviews are star ratings (stars5): ``stars`` gives their mean
    with its t interval and the share of 4-5 stars with its Wilson interval (oracles:
    the review file, scipy and statsmodels), and the report shows both."""
    from scipy import stats
    from statsmodels.stats.proportion import proportion_confint

    from keymoments.insights.report import insight_sections

    ws = guide_workspace(tmp_path / "olist", "olist_orders", "olist_reviews")
    ws.ingest()
    ws.build()
    with open(REVIEWS, newline="", encoding="utf-8") as fh:
        scores = np.array([float(r["review_score"]) for r in csv.DictReader(fh)])
    r = km.metrics(ws, "stars")
    o, n, top = r.meta["overall"], len(scores), int((scores >= 4).sum())
    assert o["n"] == n and r.meta["scale"] == "1..5"
    assert o["value"] == pytest.approx(scores.mean())
    want = stats.t.interval(0.95, n - 1, loc=scores.mean(), scale=stats.sem(scores))
    assert (o["low"], o["high"]) == pytest.approx(want)
    assert o["share_top2"] == pytest.approx(top / n)
    assert (o["share_top2_low"], o["share_top2_high"]) == pytest.approx(
        proportion_confint(top, n, method="wilson"))
    row = r.to_pylist()[0]
    assert row["share_top2"] == pytest.approx(top / n) and "share_easy" not in row
    assert sum(x["n"] for x in km.metrics(ws, "stars", period="month").to_pylist()) == n
    # the three reviews of unavailable orders are all 1 star: no spread for a t interval,
    # so the Wilson interval of their place on the 1-5 scale, and no certain difference
    # (Welch with that spread, against scipy on the pooled rest)
    with open(DATA / "olist-sample/olist_orders_dataset.csv", newline="") as fh:
        status = {o["order_id"]: o["order_status"] for o in csv.DictReader(fh)}
    with open(REVIEWS, newline="", encoding="utf-8") as fh:
        by_status = [(status.get(r["order_id"]), float(r["review_score"]))
                     for r in csv.DictReader(fh)]
    na = [x for s, x in by_status if s == "unavailable"]
    rest = np.array([x for s, x in by_status if s != "unavailable"])
    assert na == [1.0, 1.0, 1.0]
    rows = {x["order_status"]: x for x in km.metrics(ws, "stars", by="attr:order_status",
                                                     correction="none").to_pylist()}
    w_low, w_high = proportion_confint(0, 3, method="wilson")
    assert (rows["unavailable"]["low"], rows["unavailable"]["high"]) == pytest.approx(
        (1 + 4 * w_low, 1 + 4 * w_high))
    p = (0 + 2) / (3 + 4)  # two answers added at each end of the scale
    ref = stats.ttest_ind_from_stats(1.0, np.sqrt(p * (1 - p) * 16), 3, rest.mean(),
                                     rest.std(ddof=1), len(rest), equal_var=False)
    assert rows["unavailable"]["p_value"] == pytest.approx(ref.pvalue) and ref.pvalue > 0.05
    assert all(x["low"] >= 1 and x["high"] <= 5 for x in rows.values() if x["low"] == x["low"])
    # a dimension most answers lack: they are one (none) group, and a warning says so
    by_state = km.metrics(ws, "stars", by="attr:state")
    none = next(x for x in by_state.to_pylist() if x["state"] is None)
    assert none["n"] > n / 2
    assert f"{none['n']:,} of {n:,} answers" in " ".join(by_state.meta["warnings"])
    # predicted CSAT reads csat5 answers; the refusal names the scale there is, one
    # outcome per reviewed order (an order's journey has one first answer)
    with open(REVIEWS, newline="", encoding="utf-8") as fh:
        orders = {r["order_id"] for r in csv.DictReader(fh)}
    with pytest.raises(km.KeymomentsError, match=rf"outcomes here: stars5 \({len(orders):,}\)"):
        km.predicted_experience(ws, "csat")
    shown = next(x for x in insight_sections(ws)[0]["rows"] if x["metric"] == "stars")
    assert shown["value"] == f"{scores.mean():.2f} / 5 ({100 * top / n:.1f}% 4-5 stars)"
    ws.close()


def test_the_guides_seller_funnel_joins_each_lead_to_its_deal(tmp_path, shared_data):
    """With the guide's lead journeys, a deal follows its lead's first contact in one
    journey: the directly-follows edges counted by hand from the two CSV files."""
    ws = guide_workspace(tmp_path / "funnel", "leads", "deals")
    ws.ingest("leads")
    ws.ingest("deals")
    ws.build()
    folder = shared_data / "olist-funnel"
    with open(folder / "olist_marketing_qualified_leads_dataset.csv", newline="") as fh:
        first = {r["mql_id"]: datetime.strptime(r["first_contact_date"], "%m/%d/%Y")
                 for r in csv.DictReader(fh)}
    with open(folder / "olist_closed_deals_dataset.csv", newline="") as fh:
        won = {r["mql_id"]: datetime.strptime(r["won_date"], "%m/%d/%Y %H:%M")
               for r in csv.DictReader(fh)}
    after = sum(1 for lead, at in won.items() if at > first[lead])
    before = sum(1 for lead, at in won.items() if at < first[lead])
    edges = {(e["source"], e["target"]): e["count"]
             for e in km.process_map(ws).edges.to_pylist()}
    assert edges == {("lead_created", "deal_won"): after, ("deal_won", "lead_created"): before}
    assert (after, before) == (379, 1)
    n = ws.con.execute("SELECT count(*) FROM journeys WHERE journey_type = 'seller_acquisition'")
    assert n.fetchone()[0] == len(first) == 8000
    # the business segment is on the won deal only: by segment, every segment converts
    # by construction; the funnel says so and names no strongest or weakest segment
    r = km.funnel(ws, ["lead_created", "deal_won"], by="segment", within_days=365)
    # (the deals the funnel reaches: won at or after the first contact, within 365 days)
    late = sum(1 for lead, at in won.items() if 0 <= (at - first[lead]).days < 365)
    (w,) = r.meta["warnings"]
    assert w.startswith(f"{late:,} of the {len(won):,} units with a segment get it only from")
    assert r.meta["strongest"] is None and r.meta["weakest"] is None
    assert not km.funnel(ws, ["lead_created", "deal_won"], by="channel",
                         within_days=365).meta["warnings"]
    ws.close()


def test_telco_hazard_ratios_are_lifelines_plain_fit_on_the_file(telco):
    """The hazard ratios and intervals are the plain (unpenalised) Cox fit: lifelines
    on a frame built from the CSV alone gives the same numbers (a ridge penalty of
    0.01, the old default, moved a two-year contract's ratio from ~0.02 to ~0.05)."""
    import pandas as pd
    from lifelines import CoxPHFitter

    ws, rows = telco
    d = churn_drivers(ws, tenure_measure="tenure_months", attributes=["contract"])
    got = {x["feature"]: x for x in d.to_pylist()}
    assert d.meta["penalizer"] == 0 and not d.meta["warnings"]
    frame = pd.DataFrame({"T": [max(float(x["tenure"]), 1e-9) for x in rows],
                          "E": [int(x["Churn"] == "Yes") for x in rows]})
    common = Counter(x["Contract"] for x in rows).most_common(1)[0][0]
    for value in sorted({x["Contract"] for x in rows} - {common}):
        frame[f"contract={value}"] = [float(x["Contract"] == value) for x in rows]
    covariates = [c for c in frame if c.startswith("contract=")]
    ref = CoxPHFitter().fit(frame, "T", "E").summary
    assert set(got) == set(covariates)
    for c in covariates:
        assert got[c]["hazard_ratio"] == pytest.approx(ref.loc[c, "exp(coef)"], rel=1e-4)
        assert got[c]["low"] == pytest.approx(ref.loc[c, "exp(coef) lower 95%"], rel=1e-4)
        assert got[c]["high"] == pytest.approx(ref.loc[c, "exp(coef) upper 95%"], rel=1e-4)
    assert got["contract=Two year"]["hazard_ratio"] < 0.03


def test_an_unknown_tenure_measure_is_named_with_the_measures_there(telco):
    ws, _ = telco
    for run in (lambda: km.churn(ws, tenure_measure="tenure_mnths"),
                lambda: churn_drivers(ws, tenure_measure="tenure_mnths")):
        with pytest.raises(km.KeymomentsError, match="no event has the measure 'tenure_mnths'.*"
                                                     "tenure_months"):
            run()
