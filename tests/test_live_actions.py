"""End to end over real HTTP: events posted -> journeys and moments updated ->
actions fire -> a local webhook receiver gets each exactly once, in order per
customer, even when the service is killed (-9) mid-stream and restarted."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import keymoments as km

pytest.importorskip("fastapi")

from keymoments.live.auth import create_key  # noqa: E402


class Receiver:
    """A webhook receiver that honours the Idempotency-Key: a key seen before is
    acknowledged and not acted on again."""

    def __init__(self, delay: float = 0.0) -> None:
        self.accepted: list[tuple[str, dict]] = []
        self.repeats: list[str] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = self.headers["Idempotency-Key"]
                time.sleep(delay)
                with outer.lock:
                    if key in {k for k, _ in outer.accepted}:
                        outer.repeats.append(key)
                    else:
                        outer.accepted.append((key, {**body, "_lang": self.headers["Content-Language"]}))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def persona_events(n_people: int, seed: int) -> list[dict]:
    """Seeded personas: each buys (some with a late delivery), some open an angry
    ticket; events in time order per person."""
    rng = random.Random(seed)
    events = []
    for i in range(n_people):
        cid, lang = f"c{i:03d}", rng.choice(["pt", "en", "de"])
        t0 = 1_780_000_000 + i * 3600
        ts = lambda s: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + s))  # noqa: E731
        ids = {"customer_id": cid}
        events.append({"ts": ts(0), "event_type": "order_placed", "identifiers": ids, "language": lang,
                       "refs": {"order": f"o{i}"}, "channel": "web", "measures": {"amount": 50 + i}})
        events.append({"ts": ts(86400 * 3), "event_type": "order_delivered", "identifiers": ids,
                       "refs": {"order": f"o{i}"}, "channel": "web",
                       "expected_ts": ts(86400 * 2), "expectation_kind": "promised_delivery"})
        if i % 3 == 0:
            events.append({"ts": ts(86400 * 4), "event_type": "ticket_opened", "identifiers": ids,
                           "refs": {"ticket": f"t{i}"}, "channel": "email", "language": lang,
                           "text": "terrible service, awful, still waiting, very angry"})
            events.append({"ts": ts(86400 * 5), "event_type": "ticket_resolved", "identifiers": ids,
                           "refs": {"ticket": f"t{i}"}, "channel": "phone"})
    return sorted(events, key=lambda e: e["ts"])


CONFIG = """
actions:
  frequency_cap: {{count: 100, per: 7d}}
  delivery: {{backoff: 0.1, max_backoff: 1, poll: 0.02}}
  rules:
    - name: recover_valley
      trigger: {{on: valley, valence_below: -0.5}}
      action: {{kind: webhook, url: "http://127.0.0.1:{port}/hook",
                payload: {{person: "{{{{ person.id }}}}", lang: "{{{{ language }}}}",
                          rule: "{{{{ rule.name }}}}", journey: "{{{{ journey.id }}}}"}}}}
      holdout: 0.25
    - name: thanks
      trigger: {{on: purchase_completed}}
      action: {{kind: webhook, url: "http://127.0.0.1:{port}/hook"}}
      holdout: 0.0
"""


def start_service(root, port):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "keymoments.cli", "-w", str(root), "serve",
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    for _ in range(600):
        try:
            con = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            con.request("GET", "/v1/health")
            if con.getresponse().status == 200:
                return proc
        except OSError:
            pass
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read().decode())
        time.sleep(0.05)
    raise AssertionError("service did not start")


def call(port, method, path, token, body=None):
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    con.request(method, path, body=json.dumps(body) if body is not None else None,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    resp = con.getresponse()
    data = json.loads(resp.read())
    con.close()
    return resp.status, data


def _expected(root_ref, events):
    """The oracle: a full batch build of the same events, and the triggers read
    straight from its moments; holdout from the documented hash."""
    ws = km.init(root_ref)
    from keymoments.live.events import PostedEvent, load_events

    load_events(ws, [PostedEvent.model_validate(e) for e in events])
    ws.build()
    n_events = ws.con.execute("SELECT count(*) FROM events").fetchone()[0]
    valley = ws.con.execute("SELECT person_id, journey_id FROM moments WHERE kind = 'valley' "
                            "AND valence < -0.5").fetchall()
    bought = ws.con.execute("SELECT person_id, journey_id FROM moments WHERE kind = 'purchase'"
                            ).fetchall()
    ws.close()

    def held(rule, person, share):
        h = hashlib.sha256(f"holdout\x1f{rule}\x1f{person}".encode()).digest()
        return int.from_bytes(h[:8], "big") / 2.0**64 < share

    def aid(rule, journey):
        return "act-" + hashlib.sha256(f"{rule}\x1f{journey}".encode()).hexdigest()[:24]

    treated = {aid("recover_valley", j) for p, j in valley if not held("recover_valley", p, 0.25)}
    treated |= {aid("thanks", j) for p, j in bought}
    holdout = {aid("recover_valley", j) for p, j in valley if held("recover_valley", p, 0.25)}
    return treated, holdout, n_events


@pytest.mark.slow
def test_posted_events_fire_actions_exactly_once_across_a_kill(tmp_path):
    events = persona_events(18, seed=7)
    receiver = Receiver(delay=0.01)
    root = tmp_path / "live"
    km.init(root).close()
    with open(root / "keymoments.yaml", "a") as fh:
        fh.write(CONFIG.format(port=receiver.port))
    with km.open(root) as ws:
        token = create_key(ws, "test", ["admin"]).token
    treated, holdout, n_events = _expected(tmp_path / "ref", events)
    assert len(treated) > 15 and holdout  # the scenario exercises both arms

    port = free_port()
    proc = start_service(root, port)
    batches = [events[i:i + 8] for i in range(0, len(events), 8)]
    killed = False
    try:
        for n, batch in enumerate(batches):
            while True:
                try:
                    status, body = call(port, "POST", "/v1/events/batch", token, {"events": batch})
                    assert status == 202, body
                    break
                except OSError:  # the service is down: restart it, send the batch again
                    proc = start_service(root, port)
            if n == len(batches) // 2 and not killed:
                # some actions are being delivered now; kill without warning
                deadline = time.monotonic() + 20
                while not receiver.accepted and time.monotonic() < deadline:
                    time.sleep(0.01)
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                killed = True
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status, st = call(port, "GET", "/v1/status", token)
            if st["loads_pending"] == 0 and not st["actions"].get("pending"):
                break
            time.sleep(0.1)
        status, listed = call(port, "GET", "/v1/actions?limit=10000", token)
        assert st["tables"]["events"] == n_events  # no accepted event lost
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        receiver.stop()

    assert killed
    got = [k for k, _ in receiver.accepted]
    assert len(got) == len(set(got)), "a receiver that honours the key acted twice"
    assert set(got) == treated, "lost or unexpected deliveries"
    actions = {a["action_id"]: a for a in listed["actions"]}
    assert {a for a, r in actions.items() if r["status"] == "delivered"} == treated
    assert {a for a, r in actions.items() if r["status"] == "held_out"} == holdout
    # in order per customer: the receiver saw each person's actions in outbox order
    by_person: dict[str, list[int]] = {}
    for key in got:
        by_person.setdefault(actions[key]["person_id"], []).append(actions[key]["seq"])
    assert all(seqs == sorted(seqs) for seqs in by_person.values())
    # the customer's language travels with the action, and the template rendered
    for key, body in receiver.accepted:
        a = actions[key]
        assert body["_lang"] == a["language"] and a["language"] in ("pt", "en", "de")
        if a["rule"] == "recover_valley":
            assert body == {"person": a["person_id"], "lang": a["language"],
                            "rule": "recover_valley", "journey": a["journey_id"],
                            "_lang": a["language"]}
