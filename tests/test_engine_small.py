"""The engine for a few persons in Python (``keymoments.engine.small``) against the
engine's SQL (the reference): the same events through both give the same journey
events, journeys and moments. The SQL side is the live update's compiled plan run
on the working table of events; random events (hypothesis) exercise every rule,
journey type and outcome of three configurations, and the planted demo data every
person of a realistic workspace (against a full build)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keymoments as km
from keymoments.demo import generate_demo
from keymoments.engine.small import derive_small, duck_round, duck_str
from keymoments.live import incremental
from keymoments.live.rules import candidates, candidates_small
from keymoments.pipeline import ENGINE_EVENT_COLUMNS, journey_types
from keymoments.store.schema import COLUMN_DOCS
from keymoments.valence.cache import text_hash
from keymoments.valence.text import get_scorer

#: default types and rules, with a pinned as_of
DEFAULT = """
journeys: {as_of: "2026-03-20T00:00:00Z"}
"""
#: own types (keyed with a gap, unkeyed with start/end/gap, stall_after set or not),
#: scales' neutral points, weights, rules of every kind with tokens in reasons
CUSTOM = """
journeys:
  catch_all: wander
  catch_all_gap: 2h
  types:
    - {name: issue_resolution, key: ticket, start: [ticket_opened], end: [ticket_resolved], stall_after: 2d, abandon_after: 10d, gap: 5d}
    - {name: purchase, key: order, start: [order_placed], end: [order_delivered], abandon_after: 20d}
    - {name: onboarding, event_types: [signup, page_view], stages: [awareness], start: [signup], end: [activated], gap: 1d, abandon_after: 3d}
outcomes: {purchase_types: [purchase, onboarding], repurchase_within: 5d, churn_within: 9d, inactive_churn_after: 6d}
moments: {exclude_stages: [feedback, loyalty]}
valence:
  weights: {feedback: 2.0, rules: 0.7, text: 1.3}
  neutral: {csat5: 4, nps10: 7}
  rules:
    - {name: late_delivery, kind: expectation_gap, event_types: [order_delivered], tolerance: 0.1, full_at: 2, late_start: 0.2, late_floor: -0.8, early_valence: 0.5, on_time_valence: 0.1, reason: "came {gap} ({event_type})"}
    - {name: chat_wait, kind: expectation_gap, event_types: [chat_started], measure: wait_seconds, relative: true, tolerance: 0.1, full_at: 2, late_start: 0.2, late_floor: -0.8, early_valence: 0.5, on_time_valence: 0.1, reason: "waited {gap} ({event_type})"}
    - {name: slow, kind: measure_above, event_types: [ticket_opened, chat_started], measure: wait_seconds, threshold: 60, valence: -0.7, reason: "waited {value}s ({event_type})"}
    - {name: sla, kind: expectation_gap, event_types: [ticket_opened], measure: wait_seconds, expected_unit: minutes, unit: minutes, tolerance: 2, full_at: 30, early_by: 1}
    - {name: first_contact_resolution, kind: first_contact_resolution, event_types: [ticket_resolved], interrupting: [transferred], valence: 0.6}
    - {name: repeat_contact, kind: repeat_contact, event_types: [ticket_opened, complaint], window: 2d, valence: -0.4}
    - {name: "a {gap} in a name is text", kind: constant, event_types: [loyalty_joined], valence: 0.4}
    - {name: "{value} s and {gap} ({event_type})", kind: measure_above, event_types: [chat_started], measure: wait_seconds, threshold: 30, valence: -0.2}
"""
#: no default rules, no types: everything is a catch-all visit
BARE = """
journeys: {as_of: "2026-03-20T00:00:00Z", types: []}
valence: {use_default_rules: false, weights: {text: 0.0}}
"""
#: action rules of every trigger and condition (the rules in Python against SQL)
ACTIONS = """
actions:
  rules:
    - {name: r_peak, trigger: {on: peak, valence_above: 0.1}, action: {kind: file}}
    - {name: r_valley, trigger: {on: valley, valence_below: 0.0, journey_types: [purchase, wander, visit]}, when: {segments: [gold]}, action: {kind: file}}
    - {name: r_purchase, trigger: {on: purchase_completed, within: 5d}, when: {min_value: 1}, action: {kind: case}}
    - {name: r_repeat, trigger: {on: repeat_purchase, n: 1}, when: {languages: [pt]}, action: {kind: file}}
    - {name: r_stalled, trigger: {on: stalled, idle: 1h}, when: {channels: [web, app]}, action: {kind: file}}
    - {name: r_unresolved, trigger: {on: ended_unresolved, journey_types: [issue_resolution, purchase]}, when: {max_value: 50}, action: {kind: file}}
    - {name: r_unresolved_default, trigger: {on: ended_unresolved}, action: {kind: file}}
"""
CONFIGS = {"default": DEFAULT + ACTIONS, "custom": CUSTOM + ACTIONS, "bare": BARE}

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
EVENT_TYPES = ["page_view", "signup", "activated", "order_placed", "order_delivered",
               "ticket_opened", "ticket_resolved", "transferred", "ticket_reopened", "complaint",
               "survey_answered", "payment_failed", "chat_started", "account_closed",
               "loyalty_joined", "checkout_started"]
TEXTS = ["great, thanks!", "terrible: call me at +55 11 98765-4321 or ana@x.com",
         "order 1234567 never came", "ok", "Très bien, merci", "atrasado e quebrado " * 5,
         "meh", "hm"]
#: (a scorer's NaN too: DuckDB orders NaN above every number, Python compares it false)
SCORES = {text_hash(t): s for t, s in zip(TEXTS, [(0.8, 0.9), (-0.7, 0.5), (-0.3, 0.0),
                                                   (0.0, 0.2), (0.6, None),
                                                   (math.nan, 0.5), (0.3, math.nan)])}
SCALES = [("csat5", 1.0, 5.0), ("nps10", 0.0, 10.0), ("ces7", 1.0, 7.0), ("custom", None, None),
          (None, 1.0, 5.0)]


@st.composite
def events(draw):
    n_people = draw(st.integers(1, 4))
    out = []
    for p in range(n_people):
        for _ in range(draw(st.integers(1, 9))):
            # seconds on a coarse grid (gaps hit exactly) or with microseconds
            at = draw(st.one_of(st.integers(0, 80).map(lambda k: k * 1800.0),
                                st.floats(0, 20 * 86400, allow_nan=False)))
            ts = T0 + timedelta(seconds=at)
            etype = draw(st.sampled_from(EVENT_TYPES))
            e = {"event_id": f"e{len(out):03d}{draw(st.sampled_from(['a', 'b', '']))}",
                 "ts": ts, "person_id": f"p{p}", "event_type": etype,
                 "channel": draw(st.sampled_from(["web", "app", "phone", None])),
                 "stage": draw(st.sampled_from([None, None, "feedback", "churn", "awareness",
                                                "loyalty", "purchase"])),
                 "moment": draw(st.sampled_from([None, None, "purchase", "support", "feedback",
                                                 "first_interaction", "repeat_purchase"])),
                 "agent": draw(st.sampled_from([None, "ana"])),
                 "language": draw(st.sampled_from([None, "pt", "en"])),
                 "refs": draw(st.sampled_from([None, {}, {"order": "o1"}, {"order": "o2"},
                                               {"ticket": "t1"}, {"ticket": "t2", "order": "o1"},
                                               {"session": "s1"}])),
                 "text": draw(st.sampled_from([None, None, *TEXTS])),
                 "measures": draw(st.sampled_from([None, {"wait_seconds": 30.0},
                                                   {"wait_seconds": 3000.0},
                                                   {"wait_seconds": 90.0, "amount": 5.0}])),
                 "expected_value": draw(st.sampled_from([None, 0.0, 1.5, 10.0])),
                 "attributes": draw(st.sampled_from([None, {}, {"segment": "gold"},
                                                     {"segment": "silver", "x": "y"}])),
                 "expected_ts": draw(st.sampled_from([None, ts - timedelta(days=3),
                                                      ts + timedelta(hours=5), ts])),
                 }
            if draw(st.booleans()):
                scale, lo, hi = draw(st.sampled_from(SCALES))
                e.update(rating=draw(st.sampled_from([0.0, 1.0, 3.0, 4.0, 5.0, 7.0, 9.5])),
                         rating_scale=scale, rating_min=lo, rating_max=hi)
            out.append(e)
    return out


def _workspace(tmp_path, config: str):
    ws = km.init(tmp_path)
    with open(tmp_path / "keymoments.yaml", "a") as fh:
        fh.write(config)
    ws.reload_config()
    return ws


_ARROW = {"VARCHAR": pa.string(), "DOUBLE": pa.float64(), "BIGINT": pa.int64(),
          "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
          "MAP(VARCHAR, VARCHAR)": pa.map_(pa.string(), pa.string()),
          "MAP(VARCHAR, DOUBLE)": pa.map_(pa.string(), pa.float64())}


def _sql_derive(ws, rows: list[dict], as_of: datetime, typical: dict[str, float]):
    """The live update's compiled steps over ``rows``: the reference."""
    con, scorer = ws.con, get_scorer(ws.config.valence.text_scorer)
    types = journey_types(ws)
    steps = incremental._plan(ws, types, scorer.name)
    for table in (incremental._EVENTS, incremental._P90, *(t for t, _ in steps)):
        con.execute(f"DELETE FROM {table}")
    cols = [c for c in COLUMN_DOCS["events"] if c in incremental._LIVE_COLUMNS]
    data = {}
    for c in cols:
        kind = COLUMN_DOCS["events"][c][0].replace(" NOT NULL", "")
        values = [r.get(c) for r in rows]
        if kind.startswith("MAP"):
            values = [None if v is None else list(v.items()) for v in values]
        data[c] = pa.array(values, _ARROW[kind])
    con.register("_t_events", pa.table(data))
    con.execute(f"INSERT INTO {incremental._EVENTS} BY NAME SELECT * FROM _t_events")
    con.unregister("_t_events")
    con.execute("DELETE FROM text_scores")
    for h, (v, c) in SCORES.items():
        con.execute("INSERT INTO text_scores VALUES (?, ?, ?, ?, now())", [h, scorer.name, v, c])
    for t, v in typical.items():
        con.execute(f"INSERT INTO {incremental._P90} VALUES (?, ?)", [t, v])
    incremental._run_steps(ws, types, scorer.name, incremental._timestamp_sql(as_of),
                           prepared=False)
    return {t: _rows(con, incremental._WORKING[t]) for t in ("journey_events", "journeys",
                                                             "moments")}


def _rows(con, table: str) -> list[dict]:
    cur = con.execute(f"SELECT * FROM {table}")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


_KEYS = {"journey_events": ("event_id",), "journeys": ("journey_id",),
         "moments": ("journey_id", "kind", "event_id")}


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def assert_same_rows(table: str, expected: list[dict], got: list[dict]) -> None:
    key = _KEYS[table]
    cols = list(COLUMN_DOCS[table])
    exp = {tuple(r[k] for k in key): r for r in expected}
    out = {tuple(r[k] for k in key): r for r in got}
    assert len(exp) == len(expected) and len(out) == len(got), f"{table}: duplicate keys"
    assert set(exp) == set(out), (table, sorted(set(exp) ^ set(out), key=str)[:5])
    for k, row in exp.items():
        for c in cols:
            assert _same(row[c], out[k][c]), (table, k, c, row[c], out[k][c])


def _python_rows(ws, rows, as_of, typical):
    small = derive_small(rows, ws.config, journey_types(ws), as_of, SCORES, typical)
    return {"journey_events": small.journey_events, "journeys": small.journeys,
            "moments": small.moments}


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory):
    out = {name: _workspace(tmp_path_factory.mktemp(name), cfg) for name, cfg in CONFIGS.items()}
    yield out
    for ws in out.values():
        ws.close()


@pytest.mark.parametrize("config", list(CONFIGS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(rows=events(), typical=st.sampled_from([{}, {"purchase": 86400.0},
                                                {"issue_resolution": 3600.0, "wander": 10.0}]),
       late=st.sampled_from([0, 1800, 3600, 7200, 30 * 86400]))
def test_python_engine_equals_the_sql_engine(workspaces, config, rows, typical, late):
    _check(workspaces[config], rows, max(r["ts"] for r in rows) + timedelta(seconds=late), typical)


def _check(ws, rows, as_of, typical=None):
    typical = typical or {}
    expected = _sql_derive(ws, rows, as_of, typical)
    got = _python_rows(ws, rows, as_of, typical)
    for table in expected:
        assert_same_rows(table, expected[table], got[table])


@pytest.mark.parametrize("config", ["default", "custom"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(rows=events(), late=st.sampled_from([0, 3600, 5 * 86400, 30 * 86400]))
def test_python_rules_equal_the_sql_rules(workspaces, config, rows, late):
    """The action rules evaluated on rows in memory (``candidates_small``) give the
    candidates of the rules' SQL over the same derived rows, in the same order.
    (Times made distinct per person: the latest language or segment of events at the
    same time is any of them in SQL.)"""
    ws = workspaces[config]
    rows = [{**r, "ts": r["ts"] + timedelta(microseconds=i)} for i, r in enumerate(rows)]
    as_of = max(r["ts"] for r in rows) + timedelta(seconds=late)
    expected, got, _ = _both_candidates(ws, rows, as_of)
    assert [(c["rule"], c["journey_id"]) for c in got] == [
        (c["rule"], c["journey_id"]) for c in expected]
    for a, b in zip(expected, got):
        for key in a:
            assert _same(a[key], b[key]), (key, a, b)


def _both_candidates(ws, rows, as_of):
    """The action candidates of the rules' SQL and of the Python rules, and the
    Python engine's derived rows."""
    _sql_derive(ws, rows, as_of, {})
    con = ws.con
    con.execute(f"DELETE FROM {incremental._PERSONS}")
    for p in sorted({r["person_id"] for r in rows}):
        con.execute(f"INSERT INTO {incremental._PERSONS} VALUES (?)", [p])
    expected = candidates(ws, incremental._PERSONS, as_of=as_of,
                          tables={"events": incremental._EVENTS, **incremental._WORKING})
    small = derive_small(rows, ws.config, journey_types(ws), as_of, SCORES)
    return expected, candidates_small(ws.config, rows, small, as_of), small


def test_purchase_completed_fires_once_at_each_journeys_first_purchase_event(workspaces):
    """An export's own repeat-order event (tagged repeat_purchase) is a purchase event:
    its journey is a completed purchase, at it; a journey of two purchase events fires
    once, at the first (hand count: o1 at x00, o2 at x02; o3 holds none)."""
    amount = {"measures": {"amount": 5.0}}
    rows = [_event(0, 0, "reorder", refs={"order": "o1"}, moment="repeat_purchase", **amount),
            _event(1, 1, "order_delivered", refs={"order": "o1"}, moment="post_purchase"),
            _event(2, 30, "order_placed", refs={"order": "o2"}, moment="purchase", **amount),
            _event(3, 31, "reorder", refs={"order": "o2"}, moment="repeat_purchase", **amount),
            _event(4, 32, "order_delivered", refs={"order": "o3"}, moment="post_purchase")]
    blank = dict.fromkeys(["channel", "stage", "agent", "language", "text", "measures",
                           "expected_value", "expected_ts", "attributes", "rating",
                           "rating_scale", "rating_min", "rating_max"])
    rows = [{**blank, **r} for r in rows]
    ws = workspaces["default"]
    expected, got, small = _both_candidates(ws, rows, rows[-1]["ts"])
    journey = {e["event_id"]: e["journey_id"] for e in small.journey_events}
    for found in (expected, got):
        fired = [(c["journey_id"], c["event_id"]) for c in found if c["rule"] == "r_purchase"]
        assert fired == [(journey["x00"], "x00"), (journey["x02"], "x02")]


def _event(i: int, hours: float, event_type: str, **more) -> dict:
    return {"event_id": f"x{i:02d}", "ts": T0 + timedelta(hours=hours), "person_id": "p1",
            "event_type": event_type, **more}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_edge_cases_equal_the_sql_engine(workspaces, config):
    """Ties and exact boundaries, which random events rarely hit: equal valences in
    a journey (peak and valley go to the earliest), events exactly one gap apart,
    a journey idle exactly its gap at as_of, two purchases at the same time."""
    rows = [_event(1, 0, "payment_failed", channel="web"),
            _event(2, 0.25, "payment_failed", channel="app"),
            _event(3, 0.5, "survey_answered", rating=4.0, rating_scale="csat5", rating_min=1.0,
                   rating_max=5.0),
            _event(4, 0.75, "survey_answered", rating=4.0, rating_scale="csat5", rating_min=1.0,
                   rating_max=5.0, stage="feedback"),
            _event(5, 1.25, "page_view"), _event(6, 1.75, "page_view"),  # 30 min apart
            _event(7, 3.75, "page_view"),  # 2 h apart
            _event(8, 10, "order_placed", refs={"order": "o1"}),
            _event(9, 10, "order_placed", refs={"order": "o2"}),
            _event(10, 10, "ticket_opened", refs={"ticket": "t1"}, measures={"wait_seconds": 60.0},
                   expected_value=1.0)]
    rated = {"rating": 5.0, "rating_scale": "csat5", "rating_min": 1.0, "rating_max": 5.0}
    rows += [{**_event(11 + k, 20 + k / 6, "survey_answered", **rated), "person_id": "p2"}
             for k in range(3)]  # (a tie at the top and at the bottom)
    for late in (0.0, 0.5, 2.0):
        _check(workspaces[config], rows, rows[-1]["ts"] + timedelta(hours=late))


@pytest.mark.parametrize("config", ["default", "custom"])
def test_purchases_without_a_purchase_event_equal_the_sql_engine(workspaces, config):
    """Purchase journeys that hold no purchase event (reviews of orders placed before
    the data, a complaint before the order): repeat purchases and the next purchase
    are read from purchase events alone, in both engines (the hand count: a repeat
    purchase at o13's order and o15's, not at o11, the first, nor at a review)."""
    tags = {"review_posted": ("feedback", "feedback"), "order_placed": ("purchase", "purchase"),
            "order_delivered": ("purchase", "post_purchase"), "complaint": ("support", "support")}
    plan = [(0, "review_posted", "o10"), (120, "order_placed", "o11"),
            (168, "order_delivered", "o11"), (360, "review_posted", "o12"),
            (648, "complaint", "o13"), (1344, "order_placed", "o13"),
            (1392, "order_delivered", "o13"), (1800, "review_posted", "o14"),
            (1920, "order_placed", "o15")]
    rows = [_event(i, h, t, refs={"order": o}, stage=tags[t][0], moment=tags[t][1])
            for i, (h, t, o) in enumerate(plan)]
    for late in (0.0, 100 * 24.0):
        as_of = rows[-1]["ts"] + timedelta(hours=late)
        _check(workspaces[config], rows, as_of)
        small = derive_small(rows, workspaces[config].config, journey_types(workspaces[config]),
                             as_of, SCORES)
        assert sorted(m["event_id"] for m in small.moments if m["kind"] == "repeat_purchase") == [
            "x05", "x08"]


def test_typical_duration_interpolates_as_duckdb(workspaces):
    """An open journey idle exactly the p90 of its type's completed ones (eight
    onboardings): the last bit of the interpolation decides stalled or open."""
    rows, t = [], 0.0
    for k, took in enumerate([0, 18000, 19800, 23400, 30600, 52200, 54000, 75600]):
        rows += [_event(2 * k, t / 3600, "signup"), _event(2 * k + 1, (t + took) / 3600,
                                                             "activated")]
        t += 2 * 86400
    rows.append(_event(50, t / 3600, "signup"))
    _check(workspaces["custom"], rows, rows[-1]["ts"] + timedelta(seconds=60480))


def test_planted_demo_data_equals_a_full_build(tmp_path):
    """Every person of the demo workspace (planted journeys, feedback, texts, the
    demo's own types and rules) through the Python engine gives the rows of a build."""
    generate_demo(tmp_path, n_events=8_000, seed=5, fmt="parquet")
    ws = km.open(tmp_path)
    ws.ingest()
    ws.build()
    con = ws.con
    as_of = incremental.resolve_as_of(ws)
    cols = ", ".join(ENGINE_EVENT_COLUMNS)
    rows = _rows(con, f"(SELECT {cols} FROM events)")
    scorer = get_scorer(ws.config.valence.text_scorer)
    scores = {h: (v, c) for h, v, c in con.execute(
        "SELECT text_hash, valence, confidence FROM text_scores WHERE scorer = ?",
        [scorer.name]).fetchall()}
    small = derive_small(rows, ws.config, journey_types(ws), as_of, scores)
    assert len(small.journeys) > 300 and len(small.moments) > 1000
    for table in ("journey_events", "journeys", "moments"):
        assert_same_rows(table, _rows(con, table), getattr(small, table))
    ws.close()


def test_sql_number_semantics():
    """The helpers that stand for DuckDB's round and double-to-text casts."""
    import duckdb

    con = duckdb.connect()
    values = [0.25, -0.25, 2.45, 0.05, 1e16, 123456.789, -0.04, 3.0, 1e-5, 7.15, 1 / 3]
    for v in values:
        want = con.execute("SELECT CAST(CAST(ROUND(?::DOUBLE, 1) AS DOUBLE) AS VARCHAR), "
                           "CAST(?::DOUBLE AS VARCHAR)", [v, v]).fetchone()
        assert (duck_str(duck_round(v, 1)), duck_str(v)) == want, v
