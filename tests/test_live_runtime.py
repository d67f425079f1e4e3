"""The live runtime's cycle: posted events, their journeys and moments and the
actions they cause commit in one transaction; when deriving fails, the events are
stored all the same and the processor finishes their load later."""

from __future__ import annotations

import keymoments as km
from keymoments.live import incremental
from keymoments.live.runtime import LiveRuntime

RULE = """
actions:
  rules:
    - {name: thanks, trigger: {on: purchase_completed}, action: {kind: file}}
"""


def _events(n0: int, n: int) -> list[dict]:
    return [{"ts": f"2026-03-01T10:{i % 60:02d}:00Z", "event_type": "order_placed",
             "identifiers": {"customer_id": f"c{i}"}, "refs": {"order": f"o{i}"}}
            for i in range(n0, n0 + n)]


def _counts(rt: LiveRuntime) -> tuple[int, int, int, int]:
    with rt.lock:
        con = rt.ws.con
        return tuple(con.execute(q).fetchone()[0] for q in (
            "SELECT count(*) FROM events", "SELECT count(*) FROM journeys",
            "SELECT count(*) FROM outbox",
            "SELECT count(*) FROM loads WHERE load_id NOT IN (SELECT load_id FROM live_loads)"))


def _workspace(tmp_path):
    km.init(tmp_path).close()
    with open(tmp_path / "keymoments.yaml", "a", encoding="utf-8") as fh:
        fh.write(RULE)
    return tmp_path


def test_the_post_returns_with_events_journeys_and_actions_committed(tmp_path, monkeypatch):
    import keymoments.live.runtime as runtime_module

    # the processor does nothing here: the post alone must derive and fire
    monkeypatch.setattr(runtime_module, "process_pending", lambda ws: {"actions": 0})
    rt = LiveRuntime(_workspace(tmp_path))
    rt.start()
    try:
        out = rt.ingest(_events(0, 3))
        assert out["events_loaded"] == 3
        assert _counts(rt) == (3, 3, 3, 0)  # nothing left pending
        out = rt.ingest(_events(0, 3))  # the same events again: nothing new
        assert out["duplicate"] == 3 and _counts(rt) == (3, 3, 3, 0)
    finally:
        rt.stop()


def test_a_failed_update_stores_the_events_and_the_processor_finishes_them(tmp_path, monkeypatch):
    rt = LiveRuntime(_workspace(tmp_path))
    real = incremental.process_load
    calls = {"n": 0}

    def broken(ws, load_id, merged=True, new_events=None, new_persons=None):
        calls["n"] += 1
        # writes inside the transaction ... then fails: all rolled back
        real(ws, load_id, merged, new_events, new_persons)
        raise RuntimeError("engine broke")

    import keymoments.live.runtime as runtime_module

    monkeypatch.setattr(runtime_module, "process_load", broken)
    rt.start()
    try:
        out = rt.ingest(_events(0, 2), wait=True, timeout=20)
        assert calls["n"] == 1
        assert out["events_loaded"] == 2
        # the processor picked the load up: journeys and actions exist exactly once
        assert out["processed"] is True
        assert _counts(rt) == (2, 2, 2, 0)
        with rt.lock:
            loads = rt.ws.con.execute("SELECT count(*) FROM loads").fetchone()[0]
        assert loads == 1  # the rolled-back attempt left no load behind
    finally:
        rt.stop()


def test_a_database_error_inside_the_update_is_the_error_reported(tmp_path, monkeypatch):
    """A failed statement inside the shared transaction: the error kept for
    /v1/status is that one (not a later statement's 'transaction is aborted'), and the
    events are stored and processed all the same."""
    import keymoments.live.actions as actions_module

    real = actions_module.fire_actions
    calls = {"n": 0}

    def failing(ws, persons_table, tables=None, as_of=None, found=None):
        calls["n"] += 1
        if calls["n"] == 1:
            ws.con.execute("SELECT CAST('no_such_number_here' AS INTEGER)")
        return real(ws, persons_table, tables, as_of, found)

    monkeypatch.setattr(actions_module, "fire_actions", failing)
    rt = LiveRuntime(_workspace(tmp_path))
    seen: list[str] = []
    original = LiveRuntime._store

    def spy(self, group):
        out = original(self, group)
        seen.append(self.last_error or "")
        return out

    monkeypatch.setattr(LiveRuntime, "_store", spy)
    rt.start()
    try:
        out = rt.ingest(_events(0, 2), wait=True, timeout=20)
        assert "no_such_number_here" in seen[0], seen
        assert out["events_loaded"] == 2 and out["processed"] is True
        assert _counts(rt) == (2, 2, 2, 0)
    finally:
        rt.stop()


def test_a_small_group_runs_on_one_thread_and_the_setting_comes_back(tmp_path, monkeypatch):
    import keymoments.live.runtime as runtime_module

    seen: list[int] = []
    real = runtime_module.process_load

    def spy(ws, load_id, merged=True, new_events=None, new_persons=None):
        seen.append(int(ws.con.execute("SELECT current_setting('threads')").fetchone()[0]))
        return real(ws, load_id, merged, new_events, new_persons)

    monkeypatch.setattr(runtime_module, "process_load", spy)
    rt = LiveRuntime(_workspace(tmp_path))
    rt.ws.con.execute("SET threads = 2")
    rt.start()
    try:
        rt.ingest(_events(0, 2))
        monkeypatch.setattr(runtime_module, "SMALL_GROUP", 1)
        rt.ingest(_events(2, 2))  # above the (patched) size: the configured threads
        with rt.lock:
            after = int(rt.ws.con.execute("SELECT current_setting('threads')").fetchone()[0])
        assert seen == [1, 2] and after == 2
    finally:
        rt.stop()


def test_within_keeps_a_rule_off_a_returning_customers_old_moments(tmp_path):
    """History loaded in batch (an order of c1 in January), then c1's new order posted
    in March: without ``within`` the first update acts on both purchase journeys (the
    old one too); with ``within: 1d`` only on the new one."""
    import json

    from keymoments.live.events import PostedEvent, load_events

    history = {"customer": "c1", "ts": "2026-01-05T09:00:00Z", "event_type": "order_placed",
               "order": "o-old"}
    source = """
sources:
  shop:
    path: history.jsonl
    identifiers: {customer_id: customer}
    event_type: event_type
    ts: ts
    refs: {order: order}
"""
    found = {}
    for within in ("", ", within: 1d"):
        root = tmp_path / f"ws{len(found)}"
        km.init(root).close()
        (root / "history.jsonl").write_text(json.dumps(history) + "\n")
        text = (root / "keymoments.yaml").read_text().replace("\nsources: {}\n", "\n" + source)
        (root / "keymoments.yaml").write_text(text + RULE.replace(
            "{on: purchase_completed}", "{on: purchase_completed" + within + "}"))
        with km.open(root) as ws:
            ws.ingest("shop")
            ws.build()
            load_events(ws, [PostedEvent.model_validate(e) for e in _events(1, 1)],
                        before_commit=lambda r: incremental.process_load(ws, r.load_id, merged=False))
            found[within] = sorted(r[0] for r in ws.con.execute(
                "SELECT j.journey_key FROM outbox o JOIN journeys j USING (journey_id)").fetchall())
    assert found[""] == ["o-old", "o1"]
    assert found[", within: 1d"] == ["o1"]


def test_the_engine_plan_is_compiled_at_start_not_by_the_first_request(tmp_path, monkeypatch):
    """Compiling the plan takes 1-2 s: start() does it, so the first post only reuses it."""
    monkeypatch.setattr(incremental, "_PLANS", {})
    rt = LiveRuntime(_workspace(tmp_path))
    rt.start()
    try:
        assert len(incremental._PLANS) == 1
        compiled = []
        real = incremental.derive
        monkeypatch.setattr(incremental, "derive", lambda *a, **k: compiled.append(1) or real(*a, **k))
        out = rt.ingest(_events(0, 2), wait=True, timeout=20)
        assert out["processed"] is True and out["events_loaded"] == 2
        assert compiled == []  # the first request compiled nothing
        with rt.lock:
            left = rt.ws.con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary "
                                     "AND table_name LIKE '\\_km\\_%' ESCAPE '\\'").fetchone()[0]
        assert left == 0
    finally:
        rt.stop()
