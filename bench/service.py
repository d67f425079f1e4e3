"""Load benchmark of the live service (``keymoments serve``) on loopback.

A bounded client (a fixed pool of threads, fixed duration per step) against a
fresh workspace with one rule that fires on every purchase (``purchase_completed``,
a file action, so no receiver is in the loop):

1. **Event-to-action latency** (run first, on the fresh workspace) at several rates: every
   100 ms a batch of ``rate / 10`` events is posted with ``wait=true`` (the response
   comes back when the events' journeys, moments and actions are committed to the
   outbox); latency is measured from sending to that response, per batch.
2. **Sustained batched ingest**: batches of ``--batch`` new events (order_placed of
   distinct customers, so every event also yields a journey, a moment and an
   action) posted back to back by ``--clients`` threads for ``--seconds``; reports
   events accepted per second, and the time until every load was processed.

Writes ``bench/out/service.json`` and prints a table.

    python bench/service.py --seconds 15 --rates 50,200,400
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

OUT = Path(__file__).parent / "out"
RULE = """
actions:
  frequency_cap: {count: 1000, per: 1d}
  rules:
    - {name: thanks, trigger: {on: purchase_completed}, action: {kind: file}, holdout: 0.1}
service: {max_body_bytes: 50000000, rate_limit: {per_second: 100000, burst: 100000}}
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token
        self.local = threading.local()

    def call(self, method: str, path: str, body=None):
        try:
            return self._call(method, path, body)
        except (http.client.RemoteDisconnected, ConnectionResetError):
            # an idle keep-alive connection closed by the server: posting the same
            # events again is safe (stable ids), so retry once
            return self._call(method, path, body)

    def _call(self, method: str, path: str, body=None):
        con = getattr(self.local, "con", None)
        if con is None:
            con = self.local.con = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        try:
            con.request(method, path, body=json.dumps(body) if body is not None else None,
                        headers={"Authorization": f"Bearer {self.token}",
                                 "Content-Type": "application/json"})
            resp = con.getresponse()
            data = json.loads(resp.read())
        except (OSError, http.client.HTTPException):
            con.close()
            self.local.con = None
            raise
        if resp.status >= 300:
            raise RuntimeError(f"{resp.status}: {data}")
        return data


_counter = iter(range(10**9))
_lock = threading.Lock()


#: customer ids of the preloaded workspace, when the latency step posts for returning
#: customers (``--customers returning``); else every event is a new customer's
RETURNING: list[str] = []


def batch(n: int, t0: int = 1_780_000_000, returning: bool = False) -> list[dict]:
    with _lock:
        ids = [next(_counter) for _ in range(n)]
    pick = (lambda i: RETURNING[i * 7919 % len(RETURNING)]) if returning else (lambda i: f"c{i}")  # noqa: E731
    return [{"ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + i)),
             "event_type": "order_placed", "identifiers": {"customer_id": pick(i)},
             "refs": {"order": f"o{i}"}, "channel": "web", "language": "en",
             "measures": {"amount": 10.0 + i % 90}} for i in ids]


def sustained(client: Client, size: int, clients: int, seconds: float) -> dict:
    sent = []
    end = time.monotonic() + seconds

    def worker():
        while time.monotonic() < end:
            client.call("POST", "/v1/events/batch", {"events": batch(size)})
            sent.append(size)

    t = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(worker) for _ in range(clients)]:
            f.result()
    took = time.monotonic() - t
    while client.call("GET", "/v1/status")["loads_pending"]:
        time.sleep(0.05)
    drained = time.monotonic() - t
    n = sum(sent)
    return {"batch": size, "clients": clients, "events": n, "seconds": round(took, 2),
            "ingest_events_per_s": round(n / took), "processed_events_per_s": round(n / drained)}


def latency(client: Client, rate: int, seconds: float, returning: bool = False) -> dict:
    per_batch = max(1, rate // 10)
    lat: list[float] = []
    start = time.monotonic()

    def one():
        t = time.monotonic()
        client.call("POST", "/v1/events/batch?wait=true", {"events": batch(per_batch, returning=returning)})
        lat.append(time.monotonic() - t)

    with ThreadPoolExecutor(16) as pool:
        futures, k = [], 0
        while time.monotonic() - start < seconds:
            futures.append(pool.submit(one))
            k += 1
            time.sleep(max(0.0, start + k * 0.1 - time.monotonic()))
        for f in futures:
            f.result()
    lat.sort()
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731
    return {"rate": rate, "batches": len(lat), "events": len(lat) * per_batch,
            "achieved_events_per_s": round(len(lat) * per_batch / (time.monotonic() - start)),
            "p50_ms": round(pick(0.5)), "p99_ms": round(pick(0.99)), "max_ms": round(lat[-1] * 1000)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--rates", default="50,200,400")
    ap.add_argument("--preload", type=int, default=0,
                    help="first load and build this many bench events (bench/_data.py), so the "
                         "service runs on a workspace of that size")
    ap.add_argument("--customers", choices=["new", "returning"], default="new",
                    help="latency step: events of new customers, or of the preloaded ones")
    ap.add_argument("--engine", choices=["python", "sql"], default="python",
                    help="load and derive small groups in Python (the default) or always in "
                         "SQL (service.python_load_max_events and python_engine_max_events 0)")
    args = ap.parse_args(argv)
    if args.customers == "returning" and not args.preload:
        ap.error("--customers returning needs --preload")
    import keymoments as km
    from keymoments.live.auth import create_key

    root = Path(tempfile.mkdtemp(prefix="km-service-", dir=OUT if OUT.exists() else None))
    km.init(root).close()
    sys.path.insert(0, str(Path(__file__).parent))
    import _data

    rule = RULE if args.engine == "python" else RULE.replace(
        "service: {", "service: {python_engine_max_events: 0, python_load_max_events: 0, ")
    RETURNING.extend(_data.preload(root, args.preload, rule))
    with km.open(root) as ws:
        token = create_key(ws, "bench", ["write"]).token
    port = _port()
    # KM_SERVE: another way to start the server (e.g. a script that wraps the CLI
    # with timers); the default is the CLI itself
    serve = os.environ.get("KM_SERVE", "-m keymoments.cli").split()
    proc = subprocess.Popen([sys.executable, *serve, "-w", str(root), "serve", "--port", str(port)])
    client = Client(port, token)
    try:
        for _ in range(1200):
            try:
                client.call("GET", "/v1/health")
                break
            except (OSError, http.client.HTTPException):
                time.sleep(0.05)
        client.call("POST", "/v1/events/batch?wait=true", {"events": batch(10)})  # warm up
        load0, cpu0 = os.getloadavg()[0], time.process_time()
        lat = [latency(client, int(r), args.seconds, args.customers == "returning")
               for r in args.rates.split(",")]
        results = {"latency": lat, "preload": args.preload, "customers": args.customers,
                   "sustained": sustained(client, args.batch, args.clients, args.seconds),
                   "load_average_1m": [round(load0, 2), round(os.getloadavg()[0], 2)],
                   "cores": os.cpu_count()}
        results["actions"] = client.call("GET", "/v1/status")["actions"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        shutil.rmtree(root, ignore_errors=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "service.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
