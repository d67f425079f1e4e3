"""The outbox: every action decided, its delivery state, and replay.

>>> import tempfile, keymoments as km
>>> ws = km.init(tempfile.mkdtemp())
>>> list_actions(ws).meta["counts"]
{}
>>> replay(ws, status="failed")
0
>>> ws.close()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import KeymomentsError, NotFoundError
from ..results import Result

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["STATUSES", "list_actions", "replay", "get_action"]

STATUSES = ("pending", "delivered", "failed", "held_out", "suppressed")
#: the statuses :func:`replay` takes (a delivered action is replayed by its id)
REPLAYABLE = ("failed", "pending")


def list_actions(ws: Workspace, *, status: str | None = None, rule: str | None = None,
                 person: str | None = None, limit: int | None = None) -> Result:
    """Actions in creation order, with counts per status in ``meta``."""
    if status is not None and status not in STATUSES:
        raise KeymomentsError(f"unknown status {status!r} (use {', '.join(STATUSES)})")
    where, params = [], []
    for col, value in (("status", status), ("rule", rule), ("person_id", person)):
        if value is not None:
            where.append(f"{col} = ?")
            params.append(value)
    sql = "SELECT * FROM outbox" + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY seq" + (f" LIMIT {int(limit)}" if limit is not None else "")
    counts = dict(ws.con.execute("SELECT status, count(*) FROM outbox GROUP BY 1 ORDER BY 1").fetchall())
    return Result(ws.con.execute(sql, params).to_arrow_table(),
                  {"counts": counts, "filters": {"status": status, "rule": rule, "person": person}})


def get_action(ws: Workspace, action_id: str) -> dict:
    """One action as a dict."""
    cur = ws.con.execute("SELECT * FROM outbox WHERE action_id = ?", [action_id])
    row = cur.fetchone()
    if row is None:
        raise NotFoundError(f"no action {action_id!r} (see 'keymoments actions list')")
    return dict(zip([d[0] for d in cur.description], row))


def replay(ws: Workspace, action_ids: str | list[str] | None = None, *,
           status: str | None = None) -> int:
    """Queue actions for delivery again (by id, or every action of ``status``, e.g.
    ``failed``); they keep their id, so a receiver that honours the idempotency key
    does not act twice. Held-out and suppressed actions are never delivered, nor
    actions whose payload template failed (fix the rule; its next journeys act)."""
    if isinstance(action_ids, str):  # one id, not its characters
        action_ids = [action_ids]
    if not action_ids and status is None:
        raise KeymomentsError("name the actions to replay, or a status (failed or pending)")
    if status is not None and status not in REPLAYABLE:
        raise KeymomentsError(
            f"actions are replayed by status only when {' or '.join(REPLAYABLE)} (not "
            f"{status!r}): replaying every delivered action would send them all again; name "
            "the ones to send again by id")
    if action_ids:
        for aid in action_ids:
            get_action(ws, aid)
        cond, params = "list_contains(?, action_id)", [list(action_ids)]
    else:
        cond, params = "status = ?", [status]
    cur = ws.con.execute(
        f"UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = now(), reason = NULL "
        f"WHERE {cond} AND status IN ('pending', 'delivered', 'failed') AND payload IS NOT NULL "
        "RETURNING action_id", params)
    return len(cur.fetchall())
