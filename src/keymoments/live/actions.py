"""Fire action rules: guards, holdout, payload, and the outbox row.

Called inside the transaction that replaces the persons' derived rows
(:mod:`keymoments.live.incremental`), so an action exists exactly when the state
that caused it does. Each (rule, journey) is decided once; its id, a hash of the
two, is the idempotency key the receiver sees. A journey's id can change after it
was decided (an earlier event posted late renumbers a person's runs; a merge of two
persons changes the person in every id), so the decisions already taken are traced
through their trigger event to the journey and person that event belongs to now. In
trigger-time order:

1. a (rule, journey) already in the outbox is skipped (decided before, under this
   id or on an event of the journey under an earlier one);
2. **one action of a kind per journey**: another rule's action of the same kind on
   the journey suppresses it;
3. **frequency cap**: ``frequency_cap.count`` actions of the person within
   ``frequency_cap.per`` before it suppress it;
4. **quiet period**: an action of the person within ``quiet_period`` before it
   suppresses it;
5. **holdout**: the person is in the rule's holdout (:mod:`keymoments.live.holdout`):
   recorded as ``held_out``, never delivered. A person keeps the arm of the rule's
   first decision on them (a merge could otherwise draw another), so the treated
   and the held-out stay apart (:mod:`keymoments.live.effect`).

Guards 2-4 count held-out actions as if sent, so both arms pass the same guards
and the treated-versus-holdout comparison stays fair. Suppressed actions are kept
(status ``suppressed`` and the reason) so what did not happen is visible.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from jinja2 import TemplateError

from .holdout import is_held_out
from ..sql import rollback
from ..templating import render_payload

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["action_id", "fire_actions", "action_document", "sweep_time_triggers"]

_COUNTED = ("pending", "delivered", "failed", "held_out")


def action_id(rule: str, journey_id: str) -> str:
    """The stable id (and idempotency key) of a rule's action on a journey.

    >>> action_id("recover_valley", "j1")
    'act-3aab4837c7ef2cc6595bd7a2'
    """
    return "act-" + hashlib.sha256(f"{rule}\x1f{journey_id}".encode()).hexdigest()[:24]


def _iso(v):
    return v.isoformat() if isinstance(v, datetime) else v


def action_document(c: dict, rule, aid: str) -> dict:
    """The action as delivered when the rule gives no payload template."""
    return {
        "action_id": aid, "rule": rule.name, "kind": rule.action.kind, "trigger": rule.trigger.on,
        "language": c["language"],
        "person": {"id": c["person_id"], "segment": c["segment"], "value": c["value"]},
        "journey": {"id": c["journey_id"], "type": c["journey_type"], "key": c["journey_key"],
                    "status": c["status"], "start_ts": _iso(c["start_ts"]),
                    "end_ts": _iso(c["end_ts"]), "channels": list(c["channels"] or []),
                    "remembered": c["remembered"]},
        "moment": {"event_id": c["event_id"], "ts": _iso(c["trigger_ts"])},
        **({"queue": rule.action.queue} if rule.action.kind == "case" else {}),
    }


def _payload(c: dict, rule, aid: str) -> str:
    doc = action_document(c, rule, aid)
    if rule.action.payload is None:
        return json.dumps(doc, ensure_ascii=False, default=str)
    ctx = {"action": doc, "rule": {"name": rule.name, "trigger": rule.trigger.on},
           "person": doc["person"], "journey": doc["journey"], "moment": doc["moment"],
           "language": c["language"]}
    return json.dumps(render_payload(rule.action.payload, ctx), ensure_ascii=False, default=str)


class _History:
    """The persons' decisions so far, each traced through its trigger event to the
    journey and person that event belongs to now (``journey_events``: the table
    holding these persons' current journey events): the (rule, journey) pairs
    decided, the (journey, kind) pairs taken, the times of the counted actions per
    person and each (rule, person)'s arm."""

    def __init__(self, ws: Workspace, persons_table: str, journey_events: str) -> None:
        mine = f"SELECT person_id FROM {persons_table}"
        rows = ws.con.execute(f"""
            WITH now_in AS (SELECT event_id, person_id, journey_id FROM {journey_events}
                            WHERE person_id IN ({mine}))
            SELECT o.action_id, o.rule, coalesce(n.person_id, o.person_id),
                   coalesce(n.journey_id, o.journey_id), o.kind, o.trigger_ts, o.status
            FROM outbox o LEFT JOIN now_in n ON n.event_id = o.event_id
            WHERE o.person_id IN ({mine}) OR n.event_id IS NOT NULL
            ORDER BY o.trigger_ts, o.seq""").fetchall()
        self.ids = {r[0] for r in rows}
        self.decided = {(r[1], r[3]) for r in rows}
        self.kinds: set[tuple[str, str]] = set()
        self.times: dict[str, list[datetime]] = {}
        self.arm: dict[tuple[str, str], bool] = {}
        for aid, rule, person, journey, kind, ts, status in rows:
            if status in _COUNTED:
                self._count(rule, person, journey, kind, ts, status == "held_out")

    def _count(self, rule: str, person: str, journey: str, kind: str, ts: datetime,
               held_out: bool) -> None:
        self.kinds.add((journey, kind))
        self.times.setdefault(person, []).append(ts)
        self.arm.setdefault((rule, person), held_out)

    def add(self, aid: str, rule: str, person: str, journey: str, kind: str, ts: datetime,
            status: str) -> None:
        self.ids.add(aid)
        self.decided.add((rule, journey))
        if status in _COUNTED:
            self._count(rule, person, journey, kind, ts, status == "held_out")


_OUTBOX_COLS = ("action_id", "rule", "kind", "trigger", "person_id", "journey_id", "event_id",
                "trigger_ts", "language", "payload", "status", "reason")


def _insert(ws: Workspace, rows: list[tuple]) -> None:
    """Append decided actions to the outbox (one Arrow insert, seq in decision order)."""
    import pyarrow as pa

    start = ws.con.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]
    cols = {name: [r[i] for r in rows] for i, name in enumerate(_OUTBOX_COLS)}
    cols["trigger_ts"] = pa.array(cols["trigger_ts"], pa.timestamp("us", tz="UTC"))
    table = pa.table({"seq": pa.array(range(start + 1, start + 1 + len(rows)), pa.int64()),
                      **{k: (v if isinstance(v, pa.Array) else pa.array(v, pa.string()))
                         for k, v in cols.items()}})
    ws.con.register("_km_outbox_new", table)
    try:
        ws.con.execute("""
            INSERT INTO outbox SELECT action_id, seq, rule, kind, "trigger", person_id, journey_id,
                   event_id, trigger_ts, language, payload, status, reason, 0, now(), now(), NULL
            FROM _km_outbox_new""")
    finally:
        ws.con.unregister("_km_outbox_new")


def fire_actions(ws: Workspace, persons_table: str, tables: dict[str, str] | None = None,
                 as_of=None, found: list[dict] | None = None) -> int:
    """Decide the actions of the persons in ``persons_table`` and write them to the
    outbox (the caller holds the transaction); returns the rows written. ``tables``
    and ``as_of``: see :func:`keymoments.live.rules.candidates`; ``found``: the
    candidates when the caller has them (the rules evaluated on rows in memory,
    :func:`keymoments.live.rules.candidates_small`)."""
    from .rules import candidates

    actions = ws.config.actions
    rules = {r.name: r for r in actions.rules}
    if found is None:
        found = candidates(ws, persons_table, tables=tables, as_of=as_of)
    if not found:
        return 0
    hist = _History(ws, persons_table, (tables or {}).get("journey_events", "journey_events"))
    cap, per = actions.frequency_cap.count, timedelta(seconds=actions.frequency_cap.per)
    quiet = timedelta(seconds=actions.quiet_period)
    rows = []
    for c in found:
        rule = rules[c["rule"]]
        aid = action_id(rule.name, c["journey_id"])
        if aid in hist.ids or (rule.name, c["journey_id"]) in hist.decided:
            continue
        ts, person, kind = c["trigger_ts"], c["person_id"], rule.action.kind
        past = [t for t in hist.times.get(person, []) if t <= ts]
        status, reason = "pending", None
        if (c["journey_id"], kind) in hist.kinds:
            status, reason = "suppressed", f"one {kind} action per journey: another rule acted on it"
        elif sum(t > ts - per for t in past) >= cap:
            status, reason = "suppressed", (f"frequency cap: {cap} actions within "
                                            f"{actions.frequency_cap.per:g}s")
        elif quiet and any(t > ts - quiet for t in past):
            status, reason = "suppressed", f"quiet period of {actions.quiet_period:g}s"
        elif hist.arm.get((rule.name, person), is_held_out(rule.name, person, rule.holdout)):
            status, reason = "held_out", f"holdout {rule.holdout:g} of rule {rule.name}"
        language = c["language"] or actions.default_language
        c = {**c, "language": language}
        hist.add(aid, rule.name, person, c["journey_id"], kind, ts, status)
        payload = None
        if status != "suppressed":
            try:
                payload = _payload(c, rule, aid)
            except TemplateError as exc:  # a bad template fails its action, not the update
                if status == "pending":
                    status, reason = "failed", f"payload template of rule {rule.name}: {exc}"
        rows.append((aid, rule.name, kind, rule.trigger.on, person, c["journey_id"], c["event_id"],
                     ts, language, payload, status, reason))
    if rows:
        _insert(ws, rows)
    return len(rows)


def sweep_time_triggers(ws: Workspace) -> int:
    """Fire time-based triggers (``stalled``) for every person with an unfinished
    journey, in one transaction; returns the rows written."""
    if not any(r.trigger.on == "stalled" and r.enabled for r in ws.config.actions.rules):
        return 0
    con = ws.con
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("CREATE OR REPLACE TEMP TABLE _km_sweep_persons AS SELECT DISTINCT person_id "
                    "FROM journeys WHERE NOT coalesce(has_end, FALSE) AND person_id IS NOT NULL")
        fired = fire_actions(ws, "_km_sweep_persons")
        con.execute("COMMIT")
    except BaseException:
        rollback(con)
        raise
    finally:
        con.execute("DROP TABLE IF EXISTS temp.main._km_sweep_persons")
    return fired
