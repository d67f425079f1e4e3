"""Incremental processing gives the tables of a full batch build: stream seeded
events in (out of order, with identity merges arriving late), update only the
affected persons after each batch, then rebuild everything and compare."""

from __future__ import annotations

import random
import time

import pytest

import keymoments as km
import keymoments.sql
from keymoments.sources.ingest import NEW_EVENTS
from keymoments.store.cluster import CLUSTERED, cluster, unordered_share
from keymoments.live.events import PostedEvent, load_events
from keymoments.live import incremental
from keymoments.live.incremental import pending_loads, process_load, process_pending, warm_up

CONFIG = """
journeys:
  as_of: "2026-06-01T00:00:00Z"
  types:
    - {name: issue_resolution, key: ticket, start: [ticket_opened], end: [ticket_resolved], stall_after: 2d, abandon_after: 30d}
    - {name: purchase, key: order, start: [order_placed], end: [order_delivered], stall_after: 5d, abandon_after: 60d}
    - {name: browsing, key: session, start: [page_view], end: [checkout_started], stall_after: 1h, abandon_after: 1d}
"""


def stream(n_people: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    base = 1_775_000_000  # 2026-04
    for i in range(n_people):
        email, cid = f"p{i}@shop.example", f"c{i}"
        lang = rng.choice(["pt", "en"])
        t = base + rng.randrange(0, 30 * 86400)

        def ts(s):
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t + s))

        # first seen by email only (web), linked to the customer id later
        out.append({"ts": ts(0), "event_type": "page_view", "identifiers": {"email": email},
                    "refs": {"session": f"s{i}"}, "channel": "web", "language": lang})
        for k in range(rng.randint(1, 3)):
            o, s0 = f"o{i}-{k}", 3600 + k * 20 * 86400
            out.append({"ts": ts(s0), "event_type": "order_placed",
                        "identifiers": {"customer_id": cid, **({"email": email} if k == 0 else {})},
                        "refs": {"order": o}, "channel": rng.choice(["web", "app"]),
                        "measures": {"amount": float(rng.randint(10, 200))}})
            late = rng.choice([-1, 0, 2, 6])
            if rng.random() < 0.85:
                out.append({"ts": ts(s0 + (3 + late) * 86400), "event_type": "order_delivered",
                            "identifiers": {"customer_id": cid}, "refs": {"order": o},
                            "expected_ts": ts(s0 + 3 * 86400), "expectation_kind": "promised_delivery"})
            if rng.random() < 0.4:
                out.append({"ts": ts(s0 + 8 * 86400), "event_type": "survey_answered",
                            "identifiers": {"email": email}, "refs": {"order": o}, "stage": "feedback",
                            "rating": float(rng.randint(1, 5)), "rating_scale": "csat5"})
        if rng.random() < 0.5:
            out.append({"ts": ts(5 * 86400), "event_type": "ticket_opened",
                        "identifiers": {"phone": f"+1415555{i:04d}", "customer_id": cid},
                        "refs": {"ticket": f"t{i}"}, "channel": "phone", "language": lang,
                        "text": rng.choice(["terrible, still waiting", "thanks, great help",
                                            "where is my order?"])})
            if rng.random() < 0.6:
                out.append({"ts": ts(6 * 86400), "event_type": "ticket_resolved",
                            "identifiers": {"phone": f"+1415555{i:04d}"}, "refs": {"ticket": f"t{i}"},
                            "channel": "phone"})
        if rng.random() < 0.15:
            out.append({"ts": ts(50 * 86400), "event_type": "account_closed", "stage": "churn",
                        "identifiers": {"customer_id": cid}})
    rng.shuffle(out)  # arrival order is not time order
    return out


def _snapshot(ws) -> dict[str, list[tuple]]:
    keys = {"journeys": "journey_id", "journey_events": "event_id", "moments": "journey_id, kind"}
    out = {}
    for table, order in keys.items():
        rows = ws.con.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
        out[table] = [tuple(round(v, 9) if isinstance(v, float) else v for v in r) for r in rows]
    return out


#: the engine's SQL for every live update (else small ones derive in Python)
SQL_ENGINE = """
service: {python_engine_max_events: 0}
"""


@pytest.mark.parametrize("engine", ["python", "sql"])
@pytest.mark.parametrize("path", ["processor", "load_transaction", "service", "clustered"])
def test_streamed_updates_equal_a_full_build(tmp_path, path, engine, monkeypatch):
    """Both update paths: the processor's (``process_pending`` after the load) and the
    service's (``process_load`` inside the load's transaction, which reads a person
    with no earlier event from the load alone), the latter with the engine's steps
    run as compiled (nothing prepared them) and, as the service runs them, prepared
    outside the transaction (``warm_up`` after each load) and reused by every update
    that follows on other data. ``clustered``: the service's path with the tables
    ordered by person mid-stream (later rows appended after the ordered ones), and
    persons written out as lists only up to 3 (larger updates take the semi-join).
    ``engine``: the update derives with the engine in Python (up to 5,000 events, the
    last batch of the stream excepted: more) or always with the engine's SQL."""
    if path == "clustered":
        monkeypatch.setattr(keymoments.sql, "MEMBER_LIST_MAX", 3)
    ws = km.init(tmp_path)
    with open(tmp_path / "keymoments.yaml", "a") as fh:
        fh.write(CONFIG + (SQL_ENGINE if engine == "sql" else
                           "\nservice: {python_engine_max_events: 100}\n"))
    ws.reload_config()
    used = {"python": 0, "sql": 0}
    for name, fn in (("python", incremental._write_small), ("sql", incremental._run_steps)):
        monkeypatch.setattr(incremental, fn.__name__, lambda *a, _f=fn, _n=name, **k: (
            used.__setitem__(_n, used[_n] + 1), _f(*a, **k))[1])
    events = stream(40, seed=11)
    sizes = [1, 5, 30, 12, 60, 2, len(events)]
    at, updates = 0, 0
    for size in sizes:
        batch = events[at:at + size]
        at += size
        if not batch:
            break
        posted = [PostedEvent.model_validate(e) for e in batch]
        if path == "processor":
            load_events(ws, posted)
            done = process_pending(ws)
            assert done["loads"] == 1 and done["persons"] >= 1
        else:
            got: dict = {}
            # (the service finds the persons from the load's table of new events)
            new = NEW_EVENTS if path in ("service", "clustered") else None
            load_events(ws, posted, before_commit=lambda r: got.update(
                process_load(ws, r.load_id, merged=r.identifiers_relinked > 0, new_events=new,
                             new_persons=r.new_persons if new else None)))
            assert got["persons"] >= 1
            if path in ("service", "clustered"):
                warm_up(ws)
        if path == "clustered" and updates == 2:
            assert set(cluster(ws)) == set(CLUSTERED)
            assert set(unordered_share(ws).values()) == {0.0}
        prepared = incremental._PREPARED.get(ws.con) is not None
        assert prepared == (path != "load_transaction")
        updates += 1
    assert at >= len(events) and updates >= 5 and not pending_loads(ws)
    assert used["sql"] >= 1 and (used["python"] >= 3 if engine == "python" else
                                 used["python"] == 0), used
    merged = ws.con.execute("SELECT count(DISTINCT person_id) FROM events").fetchone()[0]
    assert merged == 40  # every person's identifiers were stitched into one person
    streamed = _snapshot(ws)
    assert len(streamed["journeys"]) > 60 and len(streamed["moments"]) > 150
    ws.build()
    rebuilt = _snapshot(ws)
    for table in rebuilt:
        assert streamed[table] == rebuilt[table], table
    ws.close()


def test_an_update_leaves_other_persons_untouched(tmp_path):
    ws = km.init(tmp_path)
    with open(tmp_path / "keymoments.yaml", "a") as fh:
        fh.write(CONFIG)
    ws.reload_config()
    events = stream(6, seed=3)
    load_events(ws, [PostedEvent.model_validate(e) for e in events])
    process_pending(ws)
    before = ws.con.execute("SELECT * FROM journeys WHERE person_id <> "
                            "(SELECT person_id FROM identifiers WHERE identifier = 'customer_id:c0') "
                            "ORDER BY journey_id").fetchall()
    load_events(ws, [PostedEvent.model_validate(
        {"ts": "2026-05-20T10:00:00Z", "event_type": "order_placed",
         "identifiers": {"customer_id": "c0"}, "refs": {"order": "new"}})])
    done = process_pending(ws)
    assert done["persons"] == 1
    after = ws.con.execute("SELECT * FROM journeys WHERE person_id <> "
                           "(SELECT person_id FROM identifiers WHERE identifier = 'customer_id:c0') "
                           "ORDER BY journey_id").fetchall()
    assert after == before
    n_new = ws.con.execute("SELECT count(*) FROM journeys WHERE journey_key = 'new'").fetchone()[0]
    assert n_new == 1
    ws.close()


def test_typical_durations_are_reread_at_most_every_p90_every(tmp_path, monkeypatch):
    """The p90 durations that stand in for an unset ``stall_after`` come from the stored
    journeys, read into a working table at most every ``P90_EVERY`` seconds (the
    plan joins it: a new value compiles nothing); types that set their own need no
    read at all."""
    ws = km.init(tmp_path)
    with open(tmp_path / "keymoments.yaml", "a") as fh:
        fh.write(CONFIG.replace(", stall_after: 5d", ""))  # purchase: the stored p90
    ws.reload_config()
    load_events(ws, [PostedEvent.model_validate(e) for e in stream(12, seed=5)])
    process_pending(ws)
    expected = ws.con.execute("SELECT quantile_cont(duration_s, 0.9) FROM journeys "
                              "WHERE has_end AND journey_type = 'purchase'").fetchone()[0]
    assert expected is not None

    def purchase_stall():
        incremental._refresh_typical(ws, incremental.journey_types(ws))
        return ws.con.execute("SELECT max(p90) FROM _km_live_p90 WHERE journey_type = 'purchase'"
                              ).fetchone()[0]

    monkeypatch.setattr(incremental, "P90_EVERY", 3600.0)
    incremental._P90_AT.clear()
    assert purchase_stall() == pytest.approx(expected)
    ws.con.execute("UPDATE journeys SET duration_s = duration_s * 2")
    assert purchase_stall() == pytest.approx(expected)  # kept: not re-read yet
    monkeypatch.setattr(incremental, "P90_EVERY", 0.0)
    assert purchase_stall() == pytest.approx(2 * expected)  # re-read
    plans = len(incremental._PLANS)
    load_events(ws, [PostedEvent.model_validate(e) for e in stream(3, seed=6)])
    process_pending(ws)
    assert len(incremental._PLANS) == plans  # the new value compiled nothing
    monkeypatch.setattr(incremental, "P90_EVERY", 3600.0)
    (tmp_path / "keymoments.yaml").write_text((tmp_path / "keymoments.yaml").read_text()
                                              .replace(", end: [order_delivered]",
                                                       ", end: [order_delivered], stall_after: 5d"))
    ws.reload_config()
    incremental._P90_AT.clear()
    ws.con.execute("DELETE FROM _km_live_p90")
    assert purchase_stall() is None  # every type set its own: nothing read
    ws.close()


@pytest.mark.parametrize("engine", ["python", "sql"])
def test_a_stored_typical_duration_decides_a_live_journeys_stall(tmp_path, monkeypatch, engine):
    """Hand case: one open purchase journey, idle 3 days at ``as_of``; the stored
    typical purchase takes 1 day (stalled) or 10 days (open)."""
    monkeypatch.setattr(incremental, "P90_EVERY", 0.0)
    ws = km.init(tmp_path)
    with open(tmp_path / "keymoments.yaml", "a") as fh:
        fh.write(CONFIG.replace(", stall_after: 5d", "")
                 .replace('as_of: "2026-06-01T00:00:00Z"', 'as_of: "2026-03-10T00:00:00Z"')
                 + (SQL_ENGINE if engine == "sql" else ""))
    ws.reload_config()
    done = [{"ts": f"2026-01-0{d}T10:00:00Z", "event_type": t, "channel": "web",
             "identifiers": {"customer_id": "old"}, "refs": {"order": "o1"}}
            for d, t in ((1, "order_placed"), (2, "order_delivered"))]
    load_events(ws, [PostedEvent.model_validate(e) for e in done])
    process_pending(ws)
    stored = ws.con.execute("SELECT duration_s FROM journeys WHERE journey_key = 'o1'"
                            ).fetchone()[0]
    assert stored == 86400.0
    open_ = {"ts": "2026-03-07T00:00:00Z", "event_type": "order_placed", "channel": "web",
             "identifiers": {"customer_id": "new"}, "refs": {"order": "o2"}}

    def status():
        return ws.con.execute("SELECT status FROM journeys WHERE journey_key = 'o2'").fetchone()[0]

    load_events(ws, [PostedEvent.model_validate(open_)])
    process_pending(ws)
    assert status() == "stalled"  # idle 3 days > 1 day
    ws.con.execute("UPDATE journeys SET duration_s = 10 * 86400 WHERE journey_key = 'o1'")
    person = ws.con.execute("SELECT person_id FROM journeys WHERE journey_key = 'o2'").fetchone()[0]
    incremental.update_persons(ws, [person])
    assert status() == "open"  # idle 3 days < 10 days
    ws.close()


def test_a_configuration_change_mid_stream_prepares_again(tmp_path):
    """Updates under configuration A, then B (an extra valence rule for an event type
    the stream never has: another plan, the same results), then A again, each
    update inside the load's transaction and ``warm_up`` after it as the service
    does, equal a full build under A: each switch runs the new plan's compiled SQL
    once (its working tables made in the load's transaction), then prepares it."""
    ws = km.init(tmp_path)
    path = tmp_path / "keymoments.yaml"
    with open(path, "a") as fh:
        fh.write(CONFIG + SQL_ENGINE)  # (the plans are the engine's SQL)
    config_a = path.read_text()
    config_b = config_a + """
valence:
  rules:
    - {name: never_seen, kind: constant, event_types: [never_posted], valence: -0.9, reason: "never"}
"""
    events = stream(30, seed=3)
    keys = set()
    for i, config in enumerate([config_a, config_b, config_a, config_b, config_a]):
        path.write_text(config)
        ws.reload_config()
        got: dict = {}
        batch = [PostedEvent.model_validate(e) for e in events[i * 30:(i + 1) * 30]]
        load_events(ws, batch, before_commit=lambda r: got.update(
            process_load(ws, r.load_id, merged=r.identifiers_relinked > 0)))
        assert got["persons"] >= 1
        warm_up(ws)
        keys.add(incremental._PREPARED.get(ws.con))
    assert len(keys) == 2  # both plans were prepared in turn
    rest = [PostedEvent.model_validate(e) for e in events[150:]]
    load_events(ws, rest, before_commit=lambda r: process_load(ws, r.load_id))
    streamed = _snapshot(ws)
    ws.build()
    rebuilt = _snapshot(ws)
    for table in rebuilt:
        assert streamed[table] == rebuilt[table], table
    ws.close()


@pytest.mark.parametrize("engine", ["python", "sql"])
def test_a_learned_remembered_score_scores_live_updates_and_their_actions(tmp_path, engine):
    """With a learned remembered-score model chosen, each live update scores the
    journeys it derives with it before the action rules read them: the actions'
    documents carry the stored score (they carried peak-end, the stored rows were
    updated afterwards), and the streamed tables equal a rebuild's."""
    import json

    from keymoments.moment.remembered import FEATURES

    ws = km.init(tmp_path)
    with open(tmp_path / "keymoments.yaml", "a") as fh:
        fh.write(CONFIG + (SQL_ENGINE if engine == "sql" else
                           "\nservice: {python_engine_max_events: 100}\n")
                 + "actions:\n  rules:\n    - {name: low, trigger: {on: valley}, holdout: 0, "
                   "action: {kind: file}}\n")
    ws.reload_config()
    # full-precision weights, as a fit gives, each one a bare literal in SQL reads an ulp
    # off (a DECIMAL converted to a double: ~8% of doubles; DuckDB's 0.028717887829401434
    # is not Python's), so the Python engine's scores differed from a build's
    found = [0.028717887829401434, 0.13198962463818587, 0.025474179798920138,
             0.42898880082548707, 0.16398346178012357, 0.21378392297146998]
    assert ws.con.execute(f"SELECT {found[0]!r}::DOUBLE <> ?", [found[0]]).fetchone()[0]
    weights = {f: [w, w - 0.1, w + 0.1] for f, w in zip(FEATURES, found)}
    ws.con.execute("INSERT INTO remembered_models VALUES (now(), 'feedback', 'learned', ?, 'r2', "
                   "0.5, 0.4, 0.6, 40, TRUE)",
                   [json.dumps(weights | {"intercept": 0.10692016991902667})])
    events = stream(25, seed=5)
    for at in range(0, len(events), 9):
        load_events(ws, [PostedEvent.model_validate(e) for e in events[at:at + 9]])
        process_pending(ws)
    streamed = _snapshot(ws)
    models = {r[0] for r in ws.con.execute("SELECT DISTINCT remembered_model FROM journeys "
                                           "WHERE n_valenced > 0").fetchall()}
    assert models == {"learned"}
    stored = dict(ws.con.execute("SELECT journey_id, remembered FROM journeys").fetchall())
    docs = [json.loads(p) for (p,) in ws.con.execute("SELECT payload FROM outbox").fetchall()]
    assert len(docs) >= 5
    # (a journey's later updates may move its score: each action carries the score the
    # journey had when it fired, so compare the journeys no later event changed)
    fired = {d["journey"]["id"]: d["journey"]["remembered"] for d in docs}
    ws.build()
    assert _snapshot(ws) == streamed
    # bit for bit, not to 9 digits
    assert dict(ws.con.execute("SELECT journey_id, remembered FROM journeys").fetchall()) == stored
    same = [j for j, r in fired.items() if r is not None and stored.get(j) is not None]
    equal = [j for j in same if abs(fired[j] - stored[j]) < 1e-12]
    assert len(equal) >= len(same) / 2, (len(equal), len(same))
    peak_end = dict(ws.con.execute(
        "SELECT journey_id, ((CASE WHEN abs(peak_v) >= abs(valley_v) THEN peak_v "
        "ELSE valley_v END) + end_v) / 2 FROM journeys").fetchall())
    assert not any(fired[j] == peak_end[j] != stored[j] for j in same)
