"""Delivery: retries with backoff, failures visible and replayable, order per
person, cases and file records, guards (one per journey, frequency cap, quiet
period), and the CLI over the outbox and keys."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

import keymoments as km
from keymoments.cli import main
from keymoments.live.delivery import deliver_due
from keymoments.live.events import PostedEvent, load_events
from keymoments.live.incremental import process_pending
from keymoments.live.outbox import list_actions, replay


class FlakyReceiver:
    """Answers 500 while ``failing`` is set, else 200; logs every request."""

    def __init__(self) -> None:
        self.failing = True
        self.log: list[tuple[str, int, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                code = 500 if outer.failing else 200
                outer.log.append((self.headers["Idempotency-Key"], code, body))
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _events(cid, t0, lang="pt", segment="gold"):
    def ts(s):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + s))

    ids = {"customer_id": cid}
    return [
        {"ts": ts(0), "event_type": "order_placed", "identifiers": ids, "refs": {"order": f"o-{cid}"},
         "language": lang, "attributes": {"segment": segment}, "measures": {"amount": 120}},
        {"ts": ts(3600), "event_type": "ticket_opened", "identifiers": ids,
         "refs": {"ticket": f"t-{cid}"}, "text": 'terrible, awful "quote" {{ 7*7 }}'},
    ]


def _workspace(tmp_path, url, extra=""):
    ws = km.init(tmp_path)
    with open(tmp_path / "keymoments.yaml", "a") as fh:
        fh.write(f"""
actions:
  delivery: {{max_attempts: 3, backoff: 0.05, max_backoff: 0.2}}
  rules:
    - name: thanks
      trigger: {{on: purchase_completed}}
      when: {{segments: [gold], min_value: 100}}
      action: {{kind: webhook, url: "{url}", payload: {{who: "{{{{ person.id }}}}", lang: "{{{{ language }}}}"}}}}
      holdout: 0
    - name: recover
      trigger: {{on: valley, valence_below: -0.2}}
      action: {{kind: webhook, url: "{url}"}}
      holdout: 0
    - name: open_case
      trigger: {{on: valley, valence_below: -0.2}}
      action: {{kind: case, queue: recovery}}
      holdout: 0
    - name: recover_again
      trigger: {{on: valley, valence_below: -0.5}}
      action: {{kind: webhook, url: "{url}"}}
      holdout: 0
{extra}""")
    ws.reload_config()
    return ws


def _drain(ws, seconds=10.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        deliver_due(ws)
        if not ws.con.execute("SELECT count(*) FROM outbox WHERE status = 'pending'").fetchone()[0]:
            return
        time.sleep(0.02)


def test_retries_then_delivers_in_order_per_person(tmp_path):
    rx = FlakyReceiver()
    ws = _workspace(tmp_path, rx.url)
    load_events(ws, [PostedEvent.model_validate(e) for e in _events("c1", 1_780_000_000)])
    process_pending(ws)
    acts = list_actions(ws).to_pylist()
    assert [(a["rule"], a["status"]) for a in acts] == [
        ("thanks", "pending"), ("recover", "pending"), ("open_case", "pending"),
        ("recover_again", "suppressed")]
    assert "one webhook action per journey" in acts[3]["reason"]
    deliver_due(ws)  # first try fails
    first = list_actions(ws, rule="thanks").to_pylist()[0]
    assert first["attempts"] == 1 and "500" in first["reason"] and first["status"] == "pending"
    # the person's later actions wait for the first one
    assert [k for k, _, _ in rx.log] == [first["action_id"]]
    rx.failing = False
    _drain(ws)
    acts = {a["rule"]: a for a in list_actions(ws).to_pylist() if a["status"] != "suppressed"}
    assert all(a["status"] == "delivered" for a in acts.values()) and len(acts) == 3
    ok = [k for k, code, _ in rx.log if code == 200]
    assert ok == [acts["thanks"]["action_id"], acts["recover"]["action_id"]]
    assert rx.log[-2][2] == {"who": acts["thanks"]["person_id"], "lang": "pt"}
    # the templated text of an event never reaches the template engine
    body = [b for k, c, b in rx.log if k == acts["recover"]["action_id"]][0]
    assert body["language"] == "pt" and body["person"]["segment"] == "gold"
    case = json.loads((tmp_path / "cases" / f"{acts['open_case']['action_id']}.json").read_text())
    assert case["language"] == "pt" and case["payload"]["queue"] == "recovery"
    ws.close()


def test_failures_are_visible_and_replayable(tmp_path):
    rx = FlakyReceiver()
    ws = _workspace(tmp_path, rx.url)
    load_events(ws, [PostedEvent.model_validate(e) for e in _events("c1", 1_780_000_000)])
    process_pending(ws)
    _drain(ws, seconds=3)
    failed = list_actions(ws, status="failed").to_pylist()
    assert {a["rule"] for a in failed} == {"thanks", "recover"}
    assert all(a["attempts"] == 3 and "HTTP" in a["reason"] for a in failed)
    sent = [k for k, _, _ in rx.log]
    assert sent.count(failed[0]["action_id"]) == 3  # retried, then given up
    rx.failing = False
    ws.close()
    runner = CliRunner()
    listed = runner.invoke(main, ["-w", str(tmp_path), "actions", "list", "--status", "failed"])
    assert listed.exit_code == 0 and "failed 2" in listed.output
    out = runner.invoke(main, ["-w", str(tmp_path), "actions", "replay", "--failed"])
    assert out.exit_code == 0 and "2 action(s)" in out.output
    ws = km.open(tmp_path)
    _drain(ws)
    assert list_actions(ws).meta["counts"] == {"delivered": 3, "suppressed": 1}
    keys = [k for k, code, _ in rx.log if code == 200]
    assert sorted(keys) == sorted(a["action_id"] for a in failed)
    assert replay(ws, [failed[0]["action_id"]]) == 1  # a delivered one can be sent again
    with pytest.raises(km.KeymomentsError, match="name the ones to send again by id"):
        replay(ws, status="delivered")  # all of them at once: refused
    assert replay(ws, failed[1]["action_id"]) == 1  # one id given alone, not its characters
    from keymoments.live.auth import create_key, list_keys

    assert create_key(ws, "bot", "admin").scopes == ("admin",)  # one scope, not its letters
    assert [k["scopes"] for k in list_keys(ws) if k["name"] == "bot"] == [["admin"]]
    ws.close()


P, S = "pending", "suppressed"


@pytest.mark.parametrize("extra, expected", [
    # quiet period: nothing within 2 days after an action; the second order, 3 days on, acts
    # (a suppressed action did not act on the journey, so it blocks no other rule's)
    ("  frequency_cap: {count: 10, per: 7d}\n  quiet_period: 2d\n",
     [("thanks", P, ""), ("recover", S, "quiet"), ("open_case", S, "quiet"),
      ("recover_again", S, "quiet"),
      ("thanks", P, ""), ("recover", S, "quiet"), ("open_case", S, "quiet"),
      ("recover_again", S, "quiet")]),
    # frequency cap: two actions within 7 days, then nothing
    ("  frequency_cap: {count: 2, per: 7d}\n",
     [("thanks", P, ""), ("recover", P, ""), ("open_case", S, "frequency cap"),
      ("recover_again", S, "per journey"),
      ("thanks", S, "frequency cap"), ("recover", S, "frequency cap"),
      ("open_case", S, "frequency cap"), ("recover_again", S, "frequency cap")]),
])
def test_guards_and_conditions(tmp_path, extra, expected):
    rx = FlakyReceiver()
    rx.failing = False
    ws = _workspace(tmp_path, rx.url, extra)
    t0 = 1_780_000_000
    evs = (_events("c1", t0) + _events("c2", t0, segment="silver")
           + [{**e, "refs": {k: v + "-2" for k, v in e["refs"].items()}}
              for e in _events("c1", t0 + 3 * 86400)])
    load_events(ws, [PostedEvent.model_validate(e) for e in evs])
    process_pending(ws)
    gold = ws.resolve_person("customer_id:c1")
    rows = ws.con.execute("SELECT person_id, rule, status, coalesce(reason, '') FROM outbox "
                          "ORDER BY seq").fetchall()
    ws.close()
    got = [(r, s, why) for p, r, s, why in rows if p == gold]
    assert [(r, s) for r, s, _ in got] == [(r, s) for r, s, _ in expected]
    assert all(word in why for (_, _, why), (_, _, word) in zip(got, expected))
    # silver is not in the thanks rule's segment; its valley rules act
    silver = [(r, s) for p, r, s, _ in rows if p != gold]
    assert [r for r, _ in silver] == ["recover", "open_case", "recover_again"]


def test_keys_cli(tmp_path):
    km.init(tmp_path).close()
    runner = CliRunner()
    made = runner.invoke(main, ["-w", str(tmp_path), "keys", "create", "bot", "--scope", "write"])
    assert made.exit_code == 0, made.output
    token = made.output.strip().splitlines()[-1]
    key_id = token.split("_")[1]
    listed = runner.invoke(main, ["-w", str(tmp_path), "keys", "list"])
    assert key_id in listed.output and token.split("_", 2)[2] not in listed.output
    assert runner.invoke(main, ["-w", str(tmp_path), "keys", "revoke", key_id]).exit_code == 0
    gone = runner.invoke(main, ["-w", str(tmp_path), "keys", "revoke", "nope"])
    assert gone.exit_code == 1 and "no API key" in gone.output
    with km.open(tmp_path) as ws:
        from keymoments.live.auth import UnauthorizedError, check_key

        with pytest.raises(UnauthorizedError, match="revoked"):
            check_key(ws, token, "read")


def test_journey_state_triggers(tmp_path):
    """repeat_purchase (the n-th), ended_unresolved, stalled (also by the sweep for a
    person no new event touched), each on hand-built journeys."""
    from keymoments.live.actions import sweep_time_triggers

    ws = km.init(tmp_path)
    with open(tmp_path / "keymoments.yaml", "a") as fh:
        fh.write("""
actions:
  frequency_cap: {count: 100, per: 1d}
  rules:
    - {name: second_purchase, trigger: {on: repeat_purchase, n: 1}, action: {kind: file}, holdout: 0}
    - {name: unresolved, trigger: {on: ended_unresolved}, action: {kind: file}, holdout: 0}
    - {name: unresolved_lately, trigger: {on: ended_unresolved, within: 20d}, action: {kind: file}, holdout: 0}
    - {name: stuck, trigger: {on: stalled, idle: 2d, journey_types: [purchase]}, action: {kind: file}, holdout: 0}
""")
    ws.reload_config()
    day, t0 = 86400, 1_780_000_000

    def ev(cid, s, etype, **kw):
        return PostedEvent.model_validate({"ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + s)),
                                           "event_type": etype, "identifiers": {"customer_id": cid}, **kw})

    buyer = [ev("b", k * 20 * day + s, e, refs={"order": f"o{k}"})
             for k in range(3) for s, e in ((0, "order_placed"), (day, "order_delivered"))]
    tickets = [ev("t", 0, "ticket_opened", refs={"ticket": "open-forever"}),
               ev("t", day, "ticket_opened", refs={"ticket": "fixed"}),
               ev("t", 2 * day, "ticket_resolved", refs={"ticket": "fixed"})]
    waiting = [ev("w", 0, "order_placed", refs={"order": "late"})]
    load_events(ws, buyer + tickets + waiting)
    process_pending(ws)  # as_of = the latest event, day 41: the open ticket is abandoned

    def fired():
        return sorted(ws.con.execute(
            "SELECT o.rule, j.journey_key FROM outbox o JOIN journeys j USING (journey_id)").fetchall())

    # the open ticket's last event was day 0, 41 days ago, but it was abandoned on day
    # 30 (abandon_after 30d), 11 days ago: within 20 days, so the 'within' rule fires
    assert fired() == [("second_purchase", "o1"), ("stuck", "late"), ("unresolved", "open-forever"),
                       ("unresolved_lately", "open-forever")]
    # 'late2' (placed day 40.5) is not stalled at day 41, and its person is not touched
    # by the update that moves as_of to day 43; the sweep fires it
    load_events(ws, [ev("w2", int(40.5 * day), "order_placed", refs={"order": "late2"})])
    process_pending(ws)
    assert ("stuck", "late2") not in fired()
    load_events(ws, [ev("x", 43 * day, "page_view")])
    process_pending(ws)
    assert ("stuck", "late2") not in fired()
    assert sweep_time_triggers(ws) == 1
    assert ("stuck", "late2") in fired()
    assert sweep_time_triggers(ws) == 0  # decided once
    ws.close()


def test_unsafe_or_broken_templates_fail_their_action_not_the_update(tmp_path):
    ws = km.init(tmp_path)
    with open(tmp_path / "keymoments.yaml", "a") as fh:
        fh.write("""
actions:
  rules:
    - name: sneaky
      trigger: {on: purchase_completed}
      action: {kind: file, payload: {x: "{{ person.__class__.__mro__[1].__subclasses__() }}"}}
      holdout: 0
    - name: channel_and_language
      trigger: {on: purchase_completed}
      when: {channels: [app], languages: [de]}
      action: {kind: case, payload: {text: "{{ person.id }} \\" }, {"}}
      holdout: 0
""")
    ws.reload_config()
    evs = [{"ts": "2026-03-01T10:00:00Z", "event_type": "order_placed", "identifiers": {"customer_id": c},
            "refs": {"order": c}, "channel": ch, "language": lang}
           for c, ch, lang in (("a", "app", "de"), ("b", "web", "de"), ("c", "app", "pt"))]
    load_events(ws, [PostedEvent.model_validate(e) for e in evs])
    assert process_pending(ws)["loads"] == 1  # the update went through
    rows = ws.con.execute("SELECT o.rule, i.value, o.status, o.reason, o.payload FROM outbox o "
                          "JOIN identifiers i USING (person_id) ORDER BY o.rule, i.value").fetchall()
    ws.close()
    sneaky = [r for r in rows if r[0] == "sneaky"]
    assert [r[2] for r in sneaky] == ["failed"] * 3
    assert all("payload template" in r[3] and "unsafe" in r[3] for r in sneaky)
    (only,) = [r for r in rows if r[0] == "channel_and_language"]
    assert only[1] == "a"  # the app channel and German: only customer a
    pid = json.loads(only[4])["text"].split(" ")[0]
    assert pid.startswith("p-") and json.loads(only[4]) == {"text": pid + ' " }, {'}


def test_a_stored_language_that_is_no_code_does_not_block_delivery(tmp_path):
    """Events stored before languages were checked may hold any text: it is left out
    of the Content-Language header instead of failing every attempt (a line break or
    a non-Latin-1 character cannot go into an HTTP header)."""
    rx = FlakyReceiver()
    rx.failing = False
    ws = _workspace(tmp_path, rx.url)
    load_events(ws, [PostedEvent.model_validate(e) for e in _events("c1", 1_780_000_000)])
    process_pending(ws)
    ws.con.execute("UPDATE outbox SET language = 'pt\r\nX-Injected: yes' WHERE rule = 'thanks'")
    ws.con.execute("UPDATE outbox SET language = '日本語' WHERE rule = 'recover'")
    _drain(ws)
    acts = {a["rule"]: a for a in list_actions(ws).to_pylist()}
    assert acts["thanks"]["status"] == acts["recover"]["status"] == "delivered"
    assert [code for _, code, _ in rx.log] == [200, 200]


def test_a_halted_pass_sends_nothing_more_and_marks_what_was_sent(tmp_path, monkeypatch):
    """Stopping the service halts delivery between two sends: the action the receiver
    acknowledged is marked delivered (not sent again after a restart), and no other
    action is sent once the halt is set."""
    import keymoments.live.delivery as delivery

    rx = FlakyReceiver()
    rx.failing = False
    ws = _workspace(tmp_path, rx.url)
    for i in range(3):
        load_events(ws, [PostedEvent.model_validate(e) for e in _events(f"c{i}", 1_780_000_000)])
    process_pending(ws)
    pending = [a for a in list_actions(ws).to_pylist()
               if a["status"] == "pending" and a["kind"] == "webhook"]
    assert len(pending) >= 3
    halt, sent, real_send = threading.Event(), [], delivery._send

    def send_then_halt(ws_, row):
        real_send(ws_, row)
        sent.append(row["action_id"])
        halt.set()  # the service is asked to stop while this action is out

    monkeypatch.setattr(delivery, "_send", send_then_halt)
    done = deliver_due(ws, halt=halt)
    assert done["delivered"] == len(sent) == len(rx.log) == 1
    status = {a["action_id"]: a["status"] for a in list_actions(ws).to_pylist()}
    assert status[sent[0]] == "delivered"
    assert sum(1 for a in pending if status[a["action_id"]] == "pending") == len(pending) - 1
