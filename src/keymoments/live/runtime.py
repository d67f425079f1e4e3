"""The live runtime behind the service: one workspace, one lock, a processor that
updates the persons of posted events, and the delivery worker.

The DuckDB connection is shared by the request threads, the processor and the
delivery worker, so every use of it holds :attr:`LiveRuntime.lock`. Posting events
stores them as a load of the ``api`` source (requests arriving together share one
load: group commit) and, in the same transaction, updates their persons'
journeys and moments and writes the actions they cause to the outbox. Should that
update fail, the events are stored alone and the processor retries their load (it
also runs the time-based triggers); after a crash, the loads not yet processed
are found in the store and processed at start.

>>> import tempfile, keymoments as km
>>> root = tempfile.mkdtemp(); km.init(root).close()
>>> rt = LiveRuntime(root); rt.start()
>>> rt.ingest([{"ts": "2026-03-01T10:00:00Z", "event_type": "order_placed",
...             "identifiers": {"customer_id": "c1"}, "refs": {"order": "o1"}}], wait=True)["events_loaded"]
1
>>> rt.stop()
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

from ..sources.ingest import NEW_EVENTS
from ..store.cluster import cluster_stale
from ..store.workspace import Workspace
from .delivery import DeliveryWorker
from .events import PostedEvent, load_events
from .incremental import pending_loads, process_load, process_pending, warm_up

__all__ = ["LiveRuntime"]

#: posted groups up to this many events are processed on one DuckDB thread
SMALL_GROUP = 1000


class LiveRuntime:
    """The workspace at ``path`` opened for the live service."""

    def __init__(self, path) -> None:
        self.ws = Workspace.open(path)
        self.lock = threading.RLock()
        self.processed = threading.Condition()
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._deliver_wake = threading.Event()
        self.delivery = DeliveryWorker(self.ws, self.lock, self._deliver_wake)
        self._queue: list = []
        self._queue_cond = threading.Condition()
        self._ingestor = threading.Thread(target=self._ingest_loop, name="keymoments-ingest",
                                          daemon=True)
        self._processor = threading.Thread(target=self._process_loop, name="keymoments-processor",
                                           daemon=True)
        self.last_error: str | None = None
        #: rows ordered by person at start, per table (see keymoments.store.cluster)
        self.ordered: dict[str, int] = {}
        self._last_sweep = time.monotonic()

    # ------------------------------------------------------------ life
    def start(self) -> None:
        """Order the tables a live update reads by person where needed
        (``service.cluster_above``), catch up on loads not yet processed (after a
        crash), then start the threads."""
        with self.lock:
            self.ordered = cluster_stale(self.ws, self.ws.config.service.cluster_above)
            process_pending(self.ws)
            warm_up(self.ws)
        self._ingestor.start()
        self._processor.start()
        self.delivery.start()

    def stop(self) -> None:
        """Stop the threads and close the workspace."""
        self._halt.set()
        with self._queue_cond:
            self._queue_cond.notify_all()
        if self._ingestor.is_alive():
            self._ingestor.join(timeout=30)
        self._wake.set()
        if self._processor.is_alive():
            self._processor.join(timeout=30)
        if self.delivery.is_alive():
            self.delivery.stop()
        with self.lock:  # a thread still running (past its join timeout) waits for it
            self.ws.close()

    # ------------------------------------------------------------ work
    def ingest(self, events: list[PostedEvent | dict], wait: bool = False,
               timeout: float = 60.0) -> dict:
        """Store posted events (returns once they are committed); with ``wait``,
        return once their persons, journeys, moments and actions are updated.

        Requests arriving together are committed together (group commit): one load
        for all of them, each request told what became of its own events."""
        parsed = [e if isinstance(e, PostedEvent) else PostedEvent.model_validate(e) for e in events]
        future: Future = Future()
        with self._queue_cond:
            self._queue.append((parsed, future))
            self._queue_cond.notify()
        out = future.result()
        processed = out.pop("_processed", False)
        if wait:
            # derived in the load's own transaction: done, no second trip to the lock
            # (which the next group's cycle may hold for a whole cycle)
            out["processed"] = processed or self.wait_processed(out["load_id"], timeout)
        return out

    def _ingest_loop(self) -> None:
        while True:
            with self._queue_cond:
                while not self._queue and not self._halt.is_set():
                    self._queue_cond.wait(0.5)
                group, self._queue = self._queue, []
            if not group:
                return  # halted with nothing left to store
            try:
                results = self._store(group)
            except BaseException as exc:  # noqa: BLE001 - every waiting request gets it
                for _, future in group:
                    future.set_exception(exc)
                continue
            for (_, future), result in zip(group, results):
                future.set_result(result)

    def _store(self, group: list) -> list[dict]:
        """One load for the requests of ``group``; per request, its own counts (its
        events are lines ``start + 1 .. start + n`` of the load)."""
        events = [e for evs, _ in group for e in evs]
        fired = 0
        with self.lock:
            con = self.ws.con
            # a small group is dozens of statements over a few rows each: one thread
            # spends no time starting and joining workers (a cycle of 1-20 events took
            # 140-160 ms instead of 180-220 ms on this 2-core machine)
            small = len(events) <= SMALL_GROUP
            if small:
                threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
                con.execute("SET threads = 1")
            try:
                # one transaction: the events, their persons' journeys and moments, and
                # the actions they cause (the outbox rows) commit together
                done: dict = {}
                report = load_events(self.ws, events, before_commit=lambda r: done.update(
                    process_load(self.ws, r.load_id, merged=r.identifiers_relinked > 0,
                                 new_events=NEW_EVENTS, new_persons=r.new_persons)))
                fired = done.get("actions", 0)
                processed = True
            except Exception as exc:  # noqa: BLE001 - the events are stored all the same
                # deriving failed (kept for /v1/status): store the events alone; the
                # processor retries their load, as after a crash
                self.last_error = f"{type(exc).__name__}: {exc}"
                report = load_events(self.ws, events)
                processed = False
                self._wake.set()
            finally:
                if small:
                    con.execute(f"SET threads = {int(threads)}")
            try:  # (outside the load's transaction: the engine's steps are prepared
                # there only; a lookup when they already are)
                warm_up(self.ws)
            except Exception as exc:  # noqa: BLE001 - the next update runs unprepared
                self.last_error = f"{type(exc).__name__}: {exc}"
            loaded = dict(con.execute("SELECT source_line, count(*) FROM events WHERE load_id = ? "
                                      "GROUP BY 1", [report.load_id]).fetchall())
            rejected = con.execute("SELECT line, field, value, reason FROM quarantine "
                                   "WHERE load_id = ? ORDER BY line", [report.load_id]).fetchall()
        if fired:
            self._deliver_wake.set()
        with self.processed:
            self.processed.notify_all()
        out, start = [], 0
        for evs, _ in group:
            lines = range(start + 1, start + len(evs) + 1)
            q = [{"index": r[0] - 1 - start, "field": r[1], "value": r[2], "reason": r[3]}
                 for r in rejected if r[0] in lines]
            rows_loaded = sum(1 for n in lines if n in loaded)
            out.append({"load_id": report.load_id, "received": len(evs), "loaded": rows_loaded,
                        "duplicate": len(evs) - rows_loaded - len(q), "quarantined": len(q),
                        "events_loaded": sum(loaded.get(n, 0) for n in lines), "quarantine": q,
                        "_processed": processed})
            start += len(evs)
        return out

    def is_processed(self, load_id: str) -> bool:
        with self.lock:
            return bool(self.ws.con.execute("SELECT count(*) FROM live_loads WHERE load_id = ?",
                                            [load_id]).fetchone()[0])

    def wait_processed(self, load_id: str, timeout: float) -> bool:
        """Wait until the load is processed (or ``timeout``)."""
        end = time.monotonic() + timeout
        with self.processed:
            while not self.is_processed(load_id):
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.processed.wait(min(left, 0.5))
        return True

    def _process_loop(self) -> None:
        sweep_every = self.ws.config.service.sweep_every
        while not self._halt.is_set():
            self._wake.wait(timeout=min(1.0, sweep_every))
            self._wake.clear()
            if self._halt.is_set():
                break
            try:
                with self.lock:
                    done = process_pending(self.ws)
                    if time.monotonic() - self._last_sweep >= sweep_every:
                        from .actions import sweep_time_triggers

                        sweep_time_triggers(self.ws)
                        self._last_sweep = time.monotonic()
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - kept for /v1/status, retried
                self.last_error = f"{type(exc).__name__}: {exc}"
                done = {"actions": 0}
                time.sleep(0.5)
            if done.get("actions"):
                self._deliver_wake.set()
            with self.processed:
                self.processed.notify_all()

    def status(self) -> dict:
        """Counts for ``/v1/status``."""
        with self.lock:
            con = self.ws.con
            counts = {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
                      for t in ("events", "people", "journeys", "moments", "outbox")}
            actions = dict(con.execute("SELECT status, count(*) FROM outbox GROUP BY 1").fetchall())
            pending = len(pending_loads(self.ws))
        return {"tables": counts, "actions": actions, "loads_pending": pending,
                "last_error": self.last_error}
