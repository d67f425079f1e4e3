"""The engine is written once: the same Ibis expressions (keymoments.pipeline.derive)
run on Spark give the same journeys, valences and moments as the DuckDB build.

Spark runs locally (two cores, a JVM). This is the cross-engine equality test the
design asks for; the full Spark suite is a later piece of work.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _spark_derive(ws, spark, tmp_path, remembered_weights=None):
    """Run the engine on Spark over the workspace's events, as a Spark user would."""
    import ibis

    from keymoments.engine import spark_backend
    from keymoments.pipeline import derive, journey_types, resolve_as_of
    from keymoments.valence.text import LexiconScorer

    for table in ("events", "text_scores"):
        path = tmp_path / f"{table}.parquet"
        ws.con.execute(f"COPY (SELECT * FROM {table}) TO '{path}' (FORMAT parquet)")
        spark.read.parquet(str(path)).createOrReplaceTempView(table)
    b = spark_backend(spark)
    texts = b.table("text_scores")
    derived = derive(b.table("events"), ws.config, journey_types(ws), resolve_as_of(ws),
                     texts.filter(texts.scorer == LexiconScorer.name),
                     lambda name, expr: expr.cache(), remembered_weights=remembered_weights)
    assert isinstance(ibis.__version__, str)
    return derived


def _rows(frame, key: list[str]) -> list[dict]:
    records = json.loads(frame.to_json(orient="records", date_format="iso", date_unit="us"))
    for r in records:  # Spark returns UTC instants without the zone (session zone UTC)
        for k, v in r.items():
            if isinstance(v, str) and len(v) == 27 and v.endswith("Z") and v[10] == "T":
                r[k] = v[:-1]
    return sorted(records, key=lambda r: tuple(str(r[k]) for k in key))


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is None and b is None
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def _compare(duck: list[dict], spark: list[dict], what: str) -> None:
    assert len(duck) == len(spark), f"{what}: {len(duck)} rows on DuckDB, {len(spark)} on Spark"
    for d, s in zip(duck, spark):
        for col in d:
            assert _same(d[col], s[col]), f"{what}.{col}: DuckDB {d[col]!r} != Spark {s[col]!r}\n{d}\n{s}"


def _check(ws, spark, tmp_path, remembered_weights=None):
    ws.build()
    derived = _spark_derive(ws, spark, tmp_path, remembered_weights)
    cols = ["journey_id", "journey_type", "journey_key", "person_id", "start_ts", "end_ts",
            "duration_s", "n_events", "channels", "channel_switches", "has_start", "has_end",
            "status", "outcome_valence", "outcome_rating", "repurchased", "churned", "first_v",
            "peak_v", "valley_v", "end_v", "mean_v", "trend_v", "n_valenced", "remembered"]
    duck_j = ws.con.execute(f"SELECT {', '.join(cols)} FROM journeys").df()
    spark_j = derived.journeys.select(*cols).to_pandas()
    _compare(_rows(duck_j, ["journey_id"]), _rows(spark_j, ["journey_id"]), "journeys")

    ecols = ["event_id", "journey_id", "seq", "channel_switch", "v_feedback", "v_rules", "v_text",
             "valence", "valence_reason"]
    _compare(_rows(ws.con.execute(f"SELECT {', '.join(ecols)} FROM journey_events").df(), ["event_id"]),
             _rows(derived.journey_events.select(*ecols).to_pandas(), ["event_id"]),
             "journey_events")

    mcols = ["journey_id", "kind", "category", "event_id", "valence", "reason"]
    _compare(_rows(ws.con.execute(f"SELECT {', '.join(mcols)} FROM moments").df(),
                   ["journey_id", "kind", "event_id"]),
             _rows(derived.moments.select(*mcols).to_pandas(), ["journey_id", "kind", "event_id"]),
             "moments")


def test_personas_are_the_same_on_spark(make_workspace, spark, tmp_path):
    sys.path.insert(0, str(HERE))
    from test_engine_personas import CONFIG, PERSONAS, write

    ws = make_workspace(CONFIG, {"events.jsonl": write(PERSONAS)})
    ws.ingest("events")
    _check(ws, spark, tmp_path)


def test_orders_placed_at_the_same_instant_are_the_same_on_spark(make_workspace, spark,
                                                                 tmp_path):
    """Purchases of one start instant are not each other's repurchase on Spark either
    (a range window by the start's microseconds)."""
    sys.path.insert(0, str(HERE))
    from test_engine_personas import CONFIG, TIED_ORDERS, write

    ws = make_workspace(CONFIG, {"events.jsonl": write(TIED_ORDERS)})
    ws.ingest("events")
    _check(ws, spark, tmp_path)
    got = dict(ws.con.execute("SELECT journey_key, repurchased FROM journeys").fetchall())
    assert got == {"O20": False, "O21": False, "O23": True, "O24": True, "O25": False}


def test_purchases_without_a_purchase_event_are_the_same_on_spark(make_workspace, spark,
                                                                  tmp_path):
    """Hana's order journeys that hold only a review or open with a complaint: the
    repeat purchases and ``repurchased`` read purchase events on Spark too."""
    sys.path.insert(0, str(HERE))
    from test_engine_personas import HANA, HANA_CONFIG, write

    ws = make_workspace(HANA_CONFIG, {"events.jsonl": write(HANA)})
    ws.ingest("events")
    _check(ws, spark, tmp_path)


def test_demo_is_the_same_on_spark(tmp_path, spark):
    import keymoments as km
    from keymoments.demo import generate_demo

    generate_demo(tmp_path / "demo", n_events=3000, seed=11)
    ws = km.open(tmp_path / "demo")
    try:
        ws.ingest()
        _check(ws, spark, tmp_path)
    finally:
        ws.close()


def test_fractions_of_a_second_count_on_spark(make_workspace, spark, tmp_path):
    """Gaps, windows and durations with a fraction of a second: Ibis's portable epoch on
    Spark (``unix_timestamp``) is whole seconds, which joined Gil's visits 1800.8 s apart
    (floor(.9) - floor(.1) = 1800, not > the 30 min gap), missed Hal's repeat contact
    7 days minus 0.4 s later as 7 days and gave whole-second durations."""
    sys.path.insert(0, str(HERE))
    from test_engine_personas import CONFIG, ev, write

    rows = [
        ev("gil", "2024-02-10T10:00:00.100Z", "page_view"),
        ev("gil", "2024-02-10T10:30:00.900Z", "page_view"),   # 1800.8 s later: a new visit
        ev("gil", "2024-02-10T10:45:00.250Z", "page_view"),
        ev("hal", "2024-02-01T09:00:00.700Z", "ticket_opened", channel="chat", ticket_id="T7",
           wait_seconds=12345678),  # (Spark wrote "waited 1.2345678E7 seconds")
        ev("hal", "2024-02-01T09:00:01.300Z", "ticket_resolved", channel="chat", ticket_id="T7"),
        ev("hal", "2024-02-08T09:00:01.300Z", "ticket_opened", channel="email", ticket_id="T8"),
    ]
    ws = make_workspace(CONFIG, {"events.jsonl": write(rows)})
    assert ws.ingest("events").rows_quarantined == 0
    _check(ws, spark, tmp_path)
    visits = ws.con.execute("SELECT n_events, duration_s FROM journeys WHERE person_id IN "
                            "(SELECT person_id FROM events WHERE event_type = 'page_view') "
                            "ORDER BY start_ts").fetchall()
    assert visits == [(1, 0.0), (2, 899.35)]
    t7 = ws.con.execute("SELECT duration_s FROM journeys WHERE journey_key = 'T7'").fetchone()
    assert t7 == (0.6,)
    (why,) = ws.con.execute("SELECT valence_reason FROM journey_events j JOIN events e "
                            "USING (event_id) WHERE e.measures['wait_seconds'] > 0").fetchone()
    assert "waited 12345678.0 seconds" in why


def test_no_channel_and_a_learned_remembered_score_are_the_same_on_spark(make_workspace, spark,
                                                                         tmp_path):
    """A journey whose events have no channel has channels NULL on Spark too (its list
    aggregate gave []), and the learned remembered-score model a workspace chose scores
    the journeys derived on Spark when its weights are given (it was applied by an
    UPDATE of the DuckDB table only: Spark wrote peak-end)."""
    import json

    sys.path.insert(0, str(HERE))
    from test_engine_personas import CONFIG, PERSONAS, ev, write

    from keymoments.moment.fitting import chosen_weights
    from keymoments.moment.remembered import FEATURES

    rows = [*PERSONAS, ev("kim", "2024-02-11T10:00:00Z", "page_view", channel=None),
            ev("kim", "2024-02-11T10:05:00Z", "payment_failed", channel=None, order_id="O8")]
    ws = make_workspace(CONFIG, {"events.jsonl": write(rows)})
    assert ws.ingest("events").rows_quarantined == 0
    weights = {f: [w, w - 0.1, w + 0.1] for f, w in zip(FEATURES, [0.3, 0.2, 0.4, 0.9, -0.5, 0.7])}
    ws.con.execute("INSERT INTO remembered_models VALUES (now(), 'feedback', 'learned', ?, 'r2', "
                   "0.5, 0.4, 0.6, 40, TRUE)", [json.dumps(weights | {"intercept": -0.05})])
    assert chosen_weights(ws) is not None
    _check(ws, spark, tmp_path, chosen_weights(ws))
    got = ws.con.execute("SELECT DISTINCT remembered_model FROM journeys WHERE n_valenced > 0"
                         ).fetchall()
    assert got == [("learned",)]
    assert ws.con.execute("SELECT count(*) FROM journeys WHERE channels IS NULL").fetchone()[0] >= 1
