"""Deliver the outbox: webhooks with an idempotency key, cases and file records,
with retries and exponential backoff, in order per person.

An action is marked delivered only after the receiver acknowledged it (2xx) or
its file is written, so a crash between the two re-sends it after a restart with
the same ``Idempotency-Key``: never lost, and never duplicated to a receiver that
honours the key. A person's actions go out in creation order: one still pending
holds back the later ones (a failed one, after ``max_attempts``, no longer does;
it stays visible and can be replayed).
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
from contextlib import nullcontext
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from ..config.base import LANGUAGE_TAG
from ..io import atomic_write_text

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["deliver_due", "DeliveryWorker", "backoff_seconds"]


def backoff_seconds(attempt: int, base: float, cap: float) -> float:
    """Wait after failed attempt ``attempt`` (1-based).

    >>> [backoff_seconds(k, 1.0, 10.0) for k in (1, 2, 3, 4, 5)]
    [1.0, 2.0, 4.0, 8.0, 10.0]
    """
    return min(cap, base * 2.0 ** (attempt - 1))


def _send(ws: Workspace, row: dict) -> None:
    """Deliver one action; raises on failure."""
    rule = next((r for r in ws.config.actions.rules if r.name == row["rule"]), None)
    body = row["payload"] or "{}"
    if row["kind"] == "webhook":
        if rule is None:
            raise RuntimeError(f"rule {row['rule']!r} is no longer in keymoments.yaml: no url")
        req = urllib.request.Request(rule.action.url, data=body.encode("utf-8"), method="POST")
        req.add_header("Content-Type", "application/json")
        req.add_header("Idempotency-Key", row["action_id"])
        if row["language"] and re.fullmatch(LANGUAGE_TAG, row["language"]):
            req.add_header("Content-Language", row["language"])
        for k, v in rule.action.headers.items():
            req.add_header(k, v)
        with urllib.request.urlopen(req, timeout=ws.config.actions.delivery.timeout) as resp:
            if not 200 <= resp.status < 300:
                raise RuntimeError(f"HTTP {resp.status}")
        return
    folder = ws.config.actions.cases_dir if row["kind"] == "case" else ws.config.actions.outbox_dir
    path = Path(folder)
    path = path if path.is_absolute() else Path(ws.root) / path
    path.mkdir(parents=True, exist_ok=True)
    doc = {"action_id": row["action_id"], "rule": row["rule"], "language": row["language"],
           "person_id": row["person_id"], "journey_id": row["journey_id"],
           "payload": json.loads(body)}
    atomic_write_text(path / f"{row['action_id']}.json", json.dumps(doc, ensure_ascii=False, indent=1))


def _due(ws: Workspace, limit: int) -> list[dict]:
    """Each person's first pending action, if due (one per person per pass keeps the
    order per person; only pending rows are read)."""
    cur = ws.con.execute(f"""
        SELECT * EXCLUDE (_r) FROM (
            SELECT *, row_number() OVER (PARTITION BY person_id ORDER BY seq) AS _r
            FROM outbox WHERE status = 'pending')
        WHERE _r = 1 AND next_attempt_at <= now()
        ORDER BY seq LIMIT {int(limit)}""")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def deliver_due(ws: Workspace, lock=None, limit: int = 200,
                halt: threading.Event | None = None) -> dict:
    """One pass: deliver the due actions; returns counts. ``lock`` guards the
    database (the service shares one connection between threads); sending happens
    outside it. Once ``halt`` is set, no further action is sent, and those already
    acknowledged are marked delivered before returning (else a restart sends them
    again)."""
    lock = lock or nullcontext()
    cfg = ws.config.actions.delivery
    with lock:
        due = _due(ws, limit)
    done = {"delivered": 0, "retry": 0, "failed": 0}
    delivered: list[str] = []
    for row in due:
        if halt is not None and halt.is_set():
            break
        try:
            _send(ws, row)
            error = None
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code} {exc.reason}"
        except (urllib.error.URLError, OSError, RuntimeError, ValueError) as exc:
            error = f"{type(exc).__name__}: {getattr(exc, 'reason', None) or exc}"
        if error is None:
            delivered.append(row["action_id"])
            if len(delivered) >= 50:  # acknowledge in groups, not one write per action
                _mark_delivered(ws, lock, delivered)
                done["delivered"] += len(delivered)
                delivered = []
            continue
        if delivered:  # keep the order of writes: earlier successes first
            _mark_delivered(ws, lock, delivered)
            done["delivered"] += len(delivered)
            delivered = []
        attempts = row["attempts"] + 1
        with lock:
            if attempts >= cfg.max_attempts:
                ws.con.execute("UPDATE outbox SET status = 'failed', attempts = ?, reason = ? "
                               "WHERE action_id = ?", [attempts, error, row["action_id"]])
                done["failed"] += 1
            else:
                wait = backoff_seconds(attempts, cfg.backoff, cfg.max_backoff)
                at = datetime.now(timezone.utc) + timedelta(seconds=wait)
                ws.con.execute("UPDATE outbox SET attempts = ?, reason = ?, next_attempt_at = ? "
                               "WHERE action_id = ?", [attempts, error, at, row["action_id"]])
                done["retry"] += 1
    if delivered:
        _mark_delivered(ws, lock, delivered)
        done["delivered"] += len(delivered)
    return done


def _mark_delivered(ws: Workspace, lock, ids: list[str]) -> None:
    with lock:
        ws.con.execute("UPDATE outbox SET status = 'delivered', attempts = attempts + 1, "
                       "delivered_at = now(), reason = NULL WHERE list_contains(?, action_id)",
                       [ids])


class DeliveryWorker(threading.Thread):
    """Delivers the outbox in the background until :meth:`stop`."""

    def __init__(self, ws: Workspace, lock, wake: threading.Event | None = None) -> None:
        super().__init__(name="keymoments-delivery", daemon=True)
        self.ws, self.lock = ws, lock
        self.wake = wake or threading.Event()
        self._halt = threading.Event()

    def run(self) -> None:
        poll = self.ws.config.actions.delivery.poll
        while not self._halt.is_set():
            try:
                done = deliver_due(self.ws, self.lock, halt=self._halt)
            except Exception:  # noqa: BLE001 - keep delivering; the error is on the row
                done = {"delivered": 0}
            if not done["delivered"]:
                self.wake.wait(poll)
                self.wake.clear()
            else:
                time.sleep(0.002)  # let the processor and requests take the lock

    def stop(self) -> None:
        """Stop after the action being sent (at most one send's timeout)."""
        self._halt.set()
        self.wake.set()
        self.join(timeout=self.ws.config.actions.delivery.timeout + 10)
