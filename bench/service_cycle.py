"""The fixed cost of one live-service cycle, in process: a posted batch stored, its
persons' journeys and moments derived and its actions written, in one transaction
(``load_events(..., before_commit=process_load)``, what the service does per group of
requests). Median of ``--repeat`` cycles per batch size, on a fresh workspace with
one rule that fires on every purchase (as ``bench/service.py``).

    python bench/service_cycle.py --sizes 1,20,50,100,400 --repeat 9
    python bench/service_cycle.py --sizes 20 --preload 1000000 --customers returning

``--preload N`` first ingests and builds N bench events (``bench/_data.py``), so the
cycle runs on a workspace of that size; ``--customers returning`` posts events of
those customers (their earlier events and journeys are re-derived) instead of new
ones. Groups of up to ``SMALL_GROUP`` events run on one DuckDB thread, as in the
service. ``--statements`` also times every statement of the measured cycles (the
workspace's connection wrapped in this process; nothing in ``src/`` changes) and
prints the costliest per cycle, by their first 90 characters:

    python bench/service_cycle.py --sizes 20 --repeat 15 --statements

``--busy PERCENT`` runs a Python thread beside the cycles that computes PERCENT% of
the time (1 ms bursts): in the service the HTTP loop and the delivery thread do
Python work while a cycle runs, and a cycle takes the GIL back after each of its
~80 DuckDB statements:

    python bench/service_cycle.py --sizes 20 --repeat 15 --busy 5
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

RULE = """
actions:
  frequency_cap: {count: 1000, per: 1d}
  rules:
    - {name: thanks, trigger: {on: purchase_completed}, action: {kind: file}, holdout: 0.1}
"""

#: --engine: the service's settings for small loads and updates in Python (the
#: default) or always in SQL
ENGINE = {"python": "",
          "sql": "service: {python_engine_max_events: 0, python_load_max_events: 0}\n"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,20,50,100,400")
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--preload", type=int, default=0)
    ap.add_argument("--no-cluster", action="store_true",
                    help="leave the preloaded tables in arrival order (the service orders "
                         "them by person at start)")
    ap.add_argument("--customers", choices=["new", "returning"], default="new")
    ap.add_argument("--engine", choices=["python", "sql"], default="python",
                    help="load and derive small groups in Python (the default) or always in "
                         "SQL (service.python_load_max_events and python_engine_max_events 0)")
    ap.add_argument("--busy", type=float, default=0.0,
                    help="percent of the time a Python thread beside the cycles computes")
    ap.add_argument("--statements", action="store_true",
                    help="time each statement of the measured cycles; print the costliest")
    args = ap.parse_args(argv)
    if args.customers == "returning" and not args.preload:
        ap.error("--customers returning needs --preload")
    import keymoments as km
    from keymoments.live.events import PostedEvent, load_events
    from keymoments.live.incremental import process_load, warm_up
    from keymoments.live.runtime import SMALL_GROUP
    from keymoments.sources.ingest import NEW_EVENTS

    root = tempfile.mkdtemp(prefix="km-cycle-")
    km.init(root).close()
    sys.path.insert(0, str(Path(__file__).parent))
    import _data

    returning = _data.preload(root, args.preload, RULE + ENGINE[args.engine])
    ws = km.open(root)
    if not args.no_cluster:  # as the service does at start
        from keymoments.store.cluster import cluster_stale

        started = time.perf_counter()
        ordered = cluster_stale(ws, ws.config.service.cluster_above)
        if ordered:
            print(f"ordered by person: {ordered} in {time.perf_counter() - started:.1f} s")
    threads = ws.con.execute("SELECT current_setting('threads')").fetchone()[0]
    n = 0

    def batch(k: int) -> list[PostedEvent]:
        nonlocal n
        out = []
        for _ in range(k):
            n += 1
            out.append(PostedEvent.model_validate({
                "ts": "2026-03-01T10:00:00Z", "event_type": "order_placed", "channel": "web",
                "identifiers": {"customer_id": returning[n * 7919 % len(returning)]
                                if args.customers == "returning" else f"c{n}"},
                "refs": {"order": f"o{n}"},
                "measures": {"amount": 10.0}}))
        return out

    def cycle(events) -> None:
        ws.con.execute(f"SET threads = {1 if len(events) <= SMALL_GROUP else int(threads)}")
        load_events(ws, events, before_commit=lambda r: process_load(
            ws, r.load_id, merged=r.identifiers_relinked > 0, new_events=NEW_EVENTS))
        warm_up(ws)  # as the service does after each load (a lookup once prepared)

    spent: dict[str, list[float]] = defaultdict(list)
    if args.statements:  # (before the warm-up: the steps are prepared per connection)
        ws.con = _Timed(ws.con, spent)
    for _ in range(3):  # warm up: the engine plan is compiled once
        cycle(batch(20))
    spent.clear()
    halt = threading.Event()
    if args.busy > 0:
        threading.Thread(target=_busy, args=(args.busy, halt), daemon=True).start()
    print(f"load average {os.getloadavg()[0]:.2f}")
    cycles = 0
    for size in (int(s) for s in args.sizes.split(",")):
        times = []
        for _ in range(args.repeat):
            events = batch(size)
            t = time.perf_counter()
            cycle(events)
            times.append(time.perf_counter() - t)
            cycles += 1
        print(f"{size:6d} events: cycle median {statistics.median(times) * 1000:7.1f} ms "
              f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f})")
    halt.set()
    if args.statements:
        total = sum(sum(v) for v in spent.values())
        print(f"\n{total / cycles * 1000:.1f} ms of statements per cycle "
              f"({sum(len(v) for v in spent.values()) / cycles:.0f} statements); the costliest:")
        for sql, took in sorted(spent.items(), key=lambda kv: -sum(kv[1]))[:30]:
            print(f"{sum(took) / cycles * 1000:7.1f} ms  x{len(took) / cycles:.1f}  {sql}")
        ws.con = ws.con.real
    ws.close()
    shutil.rmtree(root, ignore_errors=True)
    return 0


def _busy(percent: float, halt: threading.Event) -> None:
    """Compute 1 ms, then sleep so that computing takes ``percent``% of the time."""
    rest = 0.001 * (100.0 / min(percent, 100.0) - 1.0)
    while not halt.is_set():
        end = time.perf_counter() + 0.001
        while time.perf_counter() < end:
            pass
        if rest:
            time.sleep(rest)


class _Timed:
    """The workspace's connection with each ``execute`` timed into ``spent``."""

    def __init__(self, real, spent: dict[str, list[float]]) -> None:
        self.real, self.spent = real, spent

    def execute(self, sql, *args):
        t = time.perf_counter()
        out = self.real.execute(sql, *args)
        self.spent[re.sub(r"\s+", " ", sql).strip()[:90]].append(time.perf_counter() - t)
        return out

    def __getattr__(self, name):
        return getattr(self.real, name)


if __name__ == "__main__":
    sys.exit(main())
