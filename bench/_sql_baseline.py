"""A hand-written DuckDB baseline: the journeys and moments of ``_pandas_baseline``
(the same scope and semantics, see its docstring) written as SQL over the Parquet
export, as a data engineer who knows DuckDB would write them for this one file: no
store, no mapping, no validation, no identity graph, no config; two tables written
(``journeys`` and ``moments``) into a fresh DuckDB file, the scored events kept in
memory.

The issue that set the engine's speed target quotes such a prototype ("journeys plus
per-journey moments alone reached about 3.3x" the floor). Timed in the same run as
the floor and keymoments (``bench/engine.py``), it says what this subset costs on
the same machine, so that keymoments's ratio can be read against it; on the check
size the engine benchmark compares its tables with the pandas baseline's
(:func:`compare_with_pandas`).
"""

from __future__ import annotations

import time

from _pandas_baseline import (ABANDON_S, END, GAP_S, PURCHASE_EVENTS, REPEAT_WINDOW_S, STAGE,
                              START)

CONTACTS = ("ticket_opened", "complaint")
RESOLUTIONS = ("ticket_resolved", "Resolve ticket")
INTERRUPTIONS = ("transferred", "ticket_reopened", "Require upgrade")
WEIGHTS = {"v_feedback": 1.0, "v_rules": 1.0, "v_text": 0.5}


def _q(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _in(values) -> str:
    return "(" + ", ".join(_q(v) for v in values) + ")"


def _clip(x: str) -> str:
    """SQL: ``x`` clipped to [-1, 1], NULL kept (DuckDB's ``least``/``greatest`` skip a NULL)."""
    return f"CASE WHEN ({x}) IS NULL THEN NULL ELSE greatest(-1.0, least(1.0, {x})) END"


def _by_type(table: dict[str, list[str]]) -> str:
    """SQL: the event is one of its journey type's events in ``table``."""
    return "(" + " OR ".join(f"(jtype = {_q(t)} AND event_type IN {_in(v)})"
                             for t, v in table.items()) + ")"


def run(path: str, db: str, timings: dict[str, float] | None = None,
        memory_limit: str | None = None) -> dict[str, int]:
    """Write ``journeys`` and ``moments`` of the export at ``path`` into the DuckDB
    file ``db``; fill ``timings`` with seconds per step and return the row counts
    (with ``je``, the scored events). ``memory_limit``: DuckDB's, spilling beside
    ``db`` (the engine benchmark gives it the workspace's)."""
    import duckdb

    from keymoments.valence.text import LexiconScorer

    t = {} if timings is None else timings
    con = duckdb.connect(db)
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    if memory_limit:
        con.execute(f"SET memory_limit = {_q(memory_limit)}")
        con.execute(f"SET temp_directory = {_q(str(db) + '.spill')}")
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        t[name] = now - clock
        clock = now

    stages = ", ".join(f"({_q(k)}, {_q(v)})" for k, v in STAGE.items())
    src = _q(str(path))
    # ---- read, dedupe (exact repeated rows, the first kept), person, stage, journey key
    con.execute(f"""
        CREATE TEMP TABLE ev AS
        WITH raw AS (SELECT * EXCLUDE (file_row_number), file_row_number AS row
                     FROM read_parquet({src}, file_row_number = true)),
        d AS (SELECT * EXCLUDE (row), min(row) AS row FROM raw GROUP BY ALL),
        emails AS (SELECT lower(trim(email)) AS em, min(customer_id) AS cust FROM d
                   WHERE customer_id IS NOT NULL AND email IS NOT NULL GROUP BY 1)
        SELECT d.*, coalesce(d.customer_id, e.cust, 'email:' || lower(trim(d.email))) AS person,
               s.stage,
               CASE WHEN d.ticket_id IS NOT NULL THEN 'issue_resolution'
                    WHEN d.order_id IS NOT NULL THEN 'purchase' ELSE 'visit' END AS jtype,
               coalesce(d.ticket_id, d.order_id, '') AS jkey
        FROM d LEFT JOIN emails e ON e.em = lower(trim(d.email))
        LEFT JOIN (VALUES {stages}) s(event_type, stage) ON s.event_type = d.event_type""")
    lap("dedupe_person")

    # ---- journeys: runs per (person, type, key), visits cut after GAP_S; a journey is
    # named by its first event's row; ties in time by file order
    w = "PARTITION BY person, jtype, jkey ORDER BY ts, row"
    con.execute(f"""
        CREATE TEMP TABLE ja AS
        WITH a AS (
            SELECT *, CASE WHEN stage = 'feedback' THEN NULL ELSE channel END AS ch,
                   lag(ts) OVER w AS prev_ts, row_number() OVER w AS rn,
                   lag(CASE WHEN stage = 'feedback' THEN NULL ELSE channel END) OVER w AS prev_ch
            FROM ev WINDOW w AS ({w})),
        b AS (SELECT *, (prev_ts IS NULL OR (jtype = 'visit'
                         AND epoch_us(ts) - epoch_us(prev_ts) > {GAP_S}::BIGINT * 1000000))::INT AS new
              FROM a),
        c AS (SELECT *,
                     last_value(CASE WHEN new = 1 THEN row END IGNORE NULLS) OVER w AS journey,
                     max(CASE WHEN new = 1 THEN rn END) OVER w AS run_rn
              FROM b WINDOW w AS ({w} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW))
        SELECT * EXCLUDE (prev_ts, rn, run_rn, prev_ch, ch, new), rn - run_rn AS seq,
               (new = 0 AND ch IS NOT NULL AND prev_ch IS NOT NULL AND ch <> prev_ch)::BIGINT
                   AS channel_switch
        FROM c""")
    lap("journeys_assign")

    # ---- valence: feedback, the two rules that fire on this export, text
    texts = [r[0] for r in con.execute(
        "SELECT DISTINCT comment FROM ja WHERE comment IS NOT NULL").fetchall()]
    scores = LexiconScorer().score(texts, [None] * len(texts))
    import pyarrow as pa

    con.register("text_v", pa.table({"comment": texts,
                                     "v": [v if c > 0 else None for v, c in scores]}))
    num = " + ".join(f"coalesce({c}, 0) * {k}" for c, k in WEIGHTS.items())
    den = " + ".join(f"({c} IS NOT NULL)::INT * {k}" for c, k in WEIGHTS.items())
    con.execute(f"""
        CREATE TEMP TABLE je AS
        WITH rep AS (
            SELECT row, CASE WHEN epoch_us(ts) - epoch_us(lag(ts) OVER (
                       PARTITION BY person ORDER BY ts, jtype, jkey, row))
                       <= {REPEAT_WINDOW_S}::BIGINT * 1000000 THEN -0.4 END AS r
            FROM ja WHERE event_type IN {_in(CONTACTS)}),
        fcr AS (
            SELECT row, CASE WHEN count(*) OVER (PARTITION BY journey ORDER BY seq
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) > 0
                             THEN 0.2 ELSE 0.6 END AS f, event_type
            FROM ja WHERE event_type IN {_in(RESOLUTIONS + INTERRUPTIONS)}),
        s AS (
            SELECT ja.*, {_clip('(rating - 3) / 2.0')} AS v_feedback,
                   (coalesce(rep.r, 0) + coalesce(f, 0))
                       / nullif((rep.r IS NOT NULL)::INT + (f IS NOT NULL)::INT, 0) AS v_rules,
                   tv.v AS v_text
            FROM ja LEFT JOIN rep USING (row)
            LEFT JOIN (SELECT row, f FROM fcr WHERE event_type IN {_in(RESOLUTIONS)}) fr
                USING (row)
            LEFT JOIN text_v tv ON tv.comment = ja.comment)
        SELECT *, {_clip(f'({num}) / nullif({den}, 0)')} AS valence FROM s""")
    lap("valence")

    # ---- moments: first impression, peak, valley, farewell among the scored events
    # outside feedback (ties: earliest); repeat purchases (all but a person's first)
    con.execute(f"""
        CREATE TABLE moments AS
        WITH whole AS (SELECT * FROM je WHERE valence IS NOT NULL
                                         AND NOT coalesce(stage = 'feedback', false)),
        x AS (SELECT journey, arg_min(row, seq) AS first_impression,
                     arg_max(row, seq) AS farewell,
                     arg_max(row, {{'v': valence, 's': -seq}}) AS peak,
                     arg_min(row, {{'v': valence, 's': seq}}) AS valley
              FROM whole GROUP BY journey),
        picks AS (UNPIVOT x ON first_impression, farewell, peak, valley
                  INTO NAME kind VALUE row),
        buys AS (SELECT person, arg_min(row, seq) AS row, arg_min(ts, seq) AS ts FROM je
                 WHERE jtype = 'purchase' AND event_type IN {_in(PURCHASE_EVENTS)}
                 GROUP BY journey, person),
        repeat AS (SELECT 'repeat_purchase' AS kind, row FROM buys
                   QUALIFY row_number() OVER (PARTITION BY person ORDER BY ts, row) > 1),
        k AS (SELECT kind, row FROM picks UNION ALL SELECT kind, row FROM repeat)
        SELECT je.journey, je.jtype, je.person, k.row, je.ts, je.event_type, je.stage,
               je.channel, je.agent, je.valence, k.kind
        FROM k JOIN je USING (row)""")
    lap("moments")

    # ---- journeys: span, counts, flags, outcome, features before the first rated
    # feedback, status
    abandon = " ".join(f"WHEN {_q(k)} THEN {v}" for k, v in ABANDON_S.items())
    con.execute(f"""
        CREATE TABLE journeys AS
        WITH fb AS (SELECT journey, min(seq) AS first_fb, arg_min(v_feedback, seq) AS outcome
                    FROM je WHERE stage = 'feedback' AND v_feedback IS NOT NULL
                    GROUP BY journey),
        cand AS (SELECT je.journey, je.seq, je.valence FROM je LEFT JOIN fb USING (journey)
                 WHERE je.valence IS NOT NULL AND NOT coalesce(je.stage = 'feedback', false)
                   AND (fb.first_fb IS NULL OR je.seq < fb.first_fb)),
        feats AS (SELECT journey, arg_min(valence, seq) AS first_v, arg_max(valence, seq) AS end_v,
                         max(valence) AS peak_v, min(valence) AS valley_v, avg(valence) AS mean_v,
                         count(*) AS n_valenced
                  FROM cand GROUP BY journey),
        agg AS (SELECT journey, any_value(jtype) AS journey_type, any_value(jkey) AS journey_key,
                       any_value(person) AS person, min(ts) AS start_ts, max(ts) AS end_ts,
                       count(*) AS n_events, sum(channel_switch) AS channel_switches,
                       bool_or({_by_type(START)}) AS has_start,
                       bool_or({_by_type(END)}) AS has_end,
                       count(DISTINCT channel) AS n_channels
                FROM je GROUP BY journey),
        j AS (SELECT agg.*, fb.outcome AS outcome_valence, feats.* EXCLUDE (journey),
                     (epoch_us(end_ts) - epoch_us(start_ts)) / 1e6 AS duration_s,
                     (epoch_us((SELECT max(ts) FROM je)) - epoch_us(end_ts)) / 1e6 AS idle_s
              FROM agg LEFT JOIN fb USING (journey) LEFT JOIN feats USING (journey)),
        p90 AS (SELECT journey_type, quantile_cont(duration_s, 0.9) AS p90 FROM j
                WHERE has_end GROUP BY 1)
        SELECT j.* EXCLUDE (n_valenced), coalesce(n_valenced, 0) AS n_valenced,
               CASE WHEN has_end THEN 'completed'
                    WHEN j.journey_type = 'visit' AND idle_s > {GAP_S} THEN 'completed'
                    WHEN j.journey_type = 'visit' THEN 'open'
                    WHEN idle_s > CASE j.journey_type {abandon} ELSE {GAP_S} END THEN 'abandoned'
                    WHEN p90.p90 IS NOT NULL AND idle_s > p90.p90 THEN 'stalled'
                    ELSE 'open' END AS status
        FROM j LEFT JOIN p90 USING (journey_type)""")
    lap("journeys_table")
    counts = {name: con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
              for name in ("je", "journeys", "moments")}
    con.close()
    return counts


def compare_with_pandas(db: str, out: dict) -> dict:
    """How many journeys and moments of the SQL baseline (in ``db``) equal those of
    the pandas baseline's output ``out`` (journeys matched by their first event's
    row; numbers to 1e-9)."""
    import duckdb
    import numpy as np

    con = duckdb.connect(db, read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    sj = con.execute("SELECT * FROM journeys").df()
    sm = con.execute("SELECT journey, kind, row FROM moments").df()
    con.close()
    ev = out["events"]
    first_row = ev[ev.seq == 0].set_index("journey").row
    pj = out["journeys"].assign(first_row=lambda d: d.index.map(first_row)).reset_index(drop=True)
    m = pj.merge(sj, left_on="first_row", right_on="journey", how="outer", indicator=True,
                 suffixes=("_pd", "_sql"))
    both = m[m._merge == "both"]
    res: dict = {"journeys_pandas": len(pj), "journeys_sql": len(sj),
                 "journeys_matched": len(both)}

    def same(a, b):
        a, b = a.astype(float), b.astype(float)
        return (a.isna() & b.isna()) | (np.abs(a - b) < 1e-9)

    agree = {}
    for col in ("journey_type", "journey_key", "person", "status", "has_start", "has_end"):
        agree[col] = int((both[f"{col}_pd"].astype(str) == both[f"{col}_sql"].astype(str)).sum())
    for col in ("start_ts", "end_ts"):
        agree[col] = int((both[f"{col}_pd"] == both[f"{col}_sql"]).sum())
    for col in ("n_events", "channel_switches", "n_channels", "n_valenced", "outcome_valence",
                "first_v", "end_v", "peak_v", "valley_v", "mean_v", "duration_s"):
        agree[col] = int(same(both[f"{col}_pd"], both[f"{col}_sql"]).sum())
    res["columns_agree"] = agree
    pm = out["moments"].assign(journey=lambda d: d.journey.map(first_row))[["journey", "kind", "row"]]
    mm = pm.merge(sm, on=["journey", "kind", "row"], how="outer", indicator=True)
    res["moments_pandas"], res["moments_sql"] = len(pm), len(sm)
    res["moments_same"] = int((mm._merge == "both").sum())
    return res
