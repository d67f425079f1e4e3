"""The REST service over real HTTP on loopback: auth, the error envelope, ingest
validation (nothing stored on a refused request), queries, OpenAPI, rate limit."""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time

import pytest

import keymoments as km

pytest.importorskip("fastapi")  # in the dev extra, so CI runs these

import uvicorn  # noqa: E402

from keymoments.live.auth import create_key  # noqa: E402
from keymoments.live.service import ROUTES, create_app  # noqa: E402

LIMIT = 20_000
FAILED_ACTION = "a_failed_0001"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """uvicorn in a thread on a free loopback port."""

    def __init__(self, root, runtime=None) -> None:
        self.port = free_port()
        config = uvicorn.Config(create_app(str(root), runtime), host="127.0.0.1", port=self.port,
                                log_level="error", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        for _ in range(400):
            if self.server.started:
                break
            time.sleep(0.025)
        assert self.server.started

    def request(self, method, path, body=None, token=None, headers=None, raw=None):
        con = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            h.setdefault("Content-Type", "application/json")
        con.request(method, path, body=data, headers=h)
        resp = con.getresponse()
        text = resp.read()
        con.close()
        return resp.status, (json.loads(text) if text else None), dict(resp.getheaders())

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    root = tmp_path_factory.mktemp("live")
    km.init(root).close()
    with open(root / "keymoments.yaml", "a") as fh:
        fh.write(f"service: {{max_body_bytes: {LIMIT}, rate_limit: {{per_second: 1000, burst: 1000}}}}\n")
    ws = km.open(root)
    keys = {s: create_key(ws, f"{s} key", [s]).token for s in ("read", "write", "admin")}
    revoked = create_key(ws, "old", ["admin"])
    from keymoments.live.auth import revoke_key

    revoke_key(ws, revoked.key_id)
    keys["revoked"] = revoked.token
    # one failed action, so a refused replay can be seen to leave it failed
    ws.con.execute("INSERT INTO outbox (action_id, seq, rule, kind, trigger, person_id, "
                   "journey_id, trigger_ts, payload, status, reason, attempts, created_at) "
                   "VALUES (?, 1, 'r', 'webhook', 'valley', 'p', 'j', now(), '{}', 'failed', "
                   "'HTTP 500', 5, now())", [FAILED_ACTION])
    ws.close()
    server = Server(root)
    yield server, keys
    server.stop()


EVENT = {"ts": "2026-03-01T10:00:00Z", "event_type": "order_placed",
         "identifiers": {"email": "Ana@Example.com", "customer_id": "c1"},
         "refs": {"order": "o1"}, "channel": "web", "language": "pt", "measures": {"amount": 40}}


def _events_count(server, keys) -> int:
    status, body, _ = server.request("GET", "/v1/status", token=keys["read"])
    assert status == 200
    return body["tables"]["events"]


def _is_envelope(body, status):
    assert set(body) == {"error"}, body
    err = body["error"]
    assert err["status"] == status and isinstance(err["message"], str) and err["message"]
    assert isinstance(err["code"], str) and isinstance(err["details"], list)


@pytest.mark.parametrize("token, status", [(None, 401), ("nonsense", 401),
                                           ("km_deadbeef0000_wrongsecret", 401)])
def test_missing_or_wrong_key_is_refused(live, token, status):
    server, keys = live
    before = _events_count(server, keys)
    got, body, headers = server.request("POST", "/v1/events", EVENT, token=token)
    assert got == status
    _is_envelope(body, status)
    assert headers.get("www-authenticate") == "Bearer"
    assert _events_count(server, keys) == before


def test_revoked_and_tampered_keys_are_refused(live):
    server, keys = live
    got, body, _ = server.request("GET", "/v1/people", token=keys["revoked"])
    assert got == 401 and "revoked" in body["error"]["message"]
    tampered = keys["admin"][:-2] + ("AA" if not keys["admin"].endswith("AA") else "BB")
    got, body, _ = server.request("GET", "/v1/people", token=tampered)
    assert got == 401


def test_scopes_nest_and_under_scoped_keys_get_403(live):
    server, keys = live
    for method, path, scope in ROUTES:
        if scope is None or "{" in path:
            continue
        ranks = ["read", "write", "admin"]
        for have in ranks:
            body = {} if method == "POST" else None
            got, resp, _ = server.request(method, path, body, token=keys[have])
            if ranks.index(have) < ranks.index(scope):
                assert got == 403, (method, path, have, got)
                _is_envelope(resp, 403)
                assert scope in resp["error"]["message"]
            else:
                assert got != 403 and got != 401, (method, path, have, got, resp)


def test_x_api_key_header_works(live):
    server, keys = live
    got, _, _ = server.request("GET", "/v1/people", headers={"X-API-Key": keys["read"]})
    assert got == 200


@pytest.mark.parametrize("raw, status, words", [
    (b'{"ts": "2026-03-01T10:00:00Z", "event_type": ', 400, "malformed JSON"),
    (b"not json at all", 400, "malformed JSON"),
    (json.dumps({**EVENT, "ts": "yesterday"}).encode(), 422, "ISO 8601"),
    (json.dumps({**EVENT, "ts": "2026-03-01 10:00"}).encode(), 422, "offset"),
    (json.dumps({**EVENT, "ts": "2026-02-30T10:00:00Z"}).encode(), 422, "ts"),
    (json.dumps({**EVENT, "identifiers": {}}).encode(), 422, "identifier"),
    (json.dumps({**EVENT, "rating": 9, "rating_scale": "csat5"}).encode(), 422, "outside"),
    # no scale is assumed: a 9 is a promoter on nps10, a 3 a detractor, not a CSAT 3
    (json.dumps({**EVENT, "rating": 3}).encode(), 422, "rating needs rating_scale"),
    (json.dumps({**EVENT, "surprise": 1}).encode(), 422, "surprise"),
    (json.dumps({**EVENT, "language": "pt\r\nX-Injected: yes"}).encode(), 422, "language"),
    (json.dumps({**EVENT, "event_type": " \t "}).encode(), 422, "event_type is blank"),
    (json.dumps({**EVENT, "rating": "5"}).encode(), 422, "rating"),
    (json.dumps({**EVENT, "measures": {"amount": True}}).encode(), 422, "measures"),
    (json.dumps({**EVENT, "rating_scale": "bogus"}).encode(), 422, "unknown rating_scale"),
    # a NUL is no text (a channel holding one failed later queries: HTTP 500); keys that
    # differ only in case were stored apart by one load path and merged by the other
    (json.dumps({**EVENT, "channel": "web\x00x"}).encode(), 422, "NUL character"),
    (json.dumps({**EVENT, "attributes": {"ti\x00er": "gold"}}).encode(), 422, "control"),
    (json.dumps({**EVENT, "attributes": {"Tier": "gold", "tier": "silver"}}).encode(), 422,
     "differ only in case"),
    (json.dumps({**EVENT, "identifiers": {"customer_id": "C1", "Customer_ID": "C2"}}).encode(),
     422, "differ only in case"),
    (json.dumps({**EVENT, "expected_ts": "2026-03-02T00:00:00Z"}).encode(), 422,
     "needs expectation_kind"),
    # a wrong clock: an event years ahead would make every journey look idle until then
    (json.dumps({**EVENT, "ts": "2100-01-01T00:00:00Z"}).encode(), 422, "in the future"),
])
def test_bad_events_get_a_clear_4xx_and_store_nothing(live, raw, status, words):
    server, keys = live
    before = _events_count(server, keys)
    got, body, _ = server.request("POST", "/v1/events", raw=raw, token=keys["write"])
    assert got == status, body
    _is_envelope(body, status)
    assert words in json.dumps(body)
    assert _events_count(server, keys) == before


@pytest.mark.parametrize("who, status", [(None, 401), ("wrong", 401), ("read", 403)])
@pytest.mark.parametrize("raw", [b"not json at all", json.dumps({**EVENT, "ts": "yesterday"}).encode()])
def test_the_key_is_checked_before_the_body(live, who, status, raw):
    server, keys = live
    token = {"wrong": "km_deadbeef0000_wrongsecret", None: None}.get(who, keys.get(who))
    got, body, _ = server.request("POST", "/v1/events", raw=raw, token=token)
    assert got == status, body
    _is_envelope(body, status)


def test_keys_differing_only_in_case_across_a_batch_are_refused(live):
    """One event's customer_id and another's Customer_ID: a large batch (stored through
    a JSON lines read, whose columns ignore case) made them one key and gave the second
    event another person than a small batch (stored in Python) did."""
    server, keys = live
    before = _events_count(server, keys)
    for name in ("identifiers", "attributes"):
        a = {"customer_id": "c1"} if name == "identifiers" else {"tier": "gold"}
        b = {k.upper(): v for k, v in a.items()}
        batch = {"events": [{**EVENT, name: a}, {**EVENT, "ts": "2026-03-02T10:00:00Z", name: b}]}
        got, body, _ = server.request("POST", "/v1/events/batch", batch, token=keys["write"])
        assert got == 422 and "differ only in case" in json.dumps(body), body
    assert _events_count(server, keys) == before


def test_one_bad_event_refuses_the_whole_batch(live):
    server, keys = live
    before = _events_count(server, keys)
    batch = {"events": [EVENT, {**EVENT, "ts": "2026-13-01T00:00:00Z"}]}
    got, body, _ = server.request("POST", "/v1/events/batch", batch, token=keys["write"])
    assert got == 422
    assert body["error"]["details"][0]["loc"][:3] == ["body", "events", "1"]
    assert _events_count(server, keys) == before


def test_oversize_body_is_413_and_stores_nothing(live):
    server, keys = live
    before = _events_count(server, keys)
    big = {"events": [{**EVENT, "text": "x" * 5000, "event_type": f"e{i}"} for i in range(5)]}
    got, body, _ = server.request("POST", "/v1/events/batch", big, token=keys["write"])
    assert got == 413
    _is_envelope(body, 413)
    # chunked (no Content-Length): counted as read
    con = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    data = json.dumps(big).encode()
    con.putrequest("POST", "/v1/events/batch")
    con.putheader("Authorization", f"Bearer {keys['write']}")
    con.putheader("Content-Type", "application/json")
    con.putheader("Transfer-Encoding", "chunked")
    con.endheaders()
    for i in range(0, len(data), 4096):
        chunk = data[i:i + 4096]
        con.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    con.send(b"0\r\n\r\n")
    resp = con.getresponse()
    assert resp.status == 413
    _is_envelope(json.loads(resp.read()), 413)
    con.close()
    assert _events_count(server, keys) == before


def test_unknown_route_wrong_method_and_unknown_ids_use_the_envelope(live):
    server, keys = live
    got, body, _ = server.request("GET", "/v1/nothing-here", token=keys["read"])
    assert got == 404
    _is_envelope(body, 404)
    got, body, _ = server.request("DELETE", "/v1/events", token=keys["admin"])
    assert got == 405
    _is_envelope(body, 405)
    got, body, _ = server.request("GET", "/v1/journeys/nope", token=keys["read"])
    assert got == 404
    _is_envelope(body, 404)
    got, body, _ = server.request("GET", "/v1/people?limit=0", token=keys["read"])
    assert got == 422
    _is_envelope(body, 422)


def test_ingest_then_query_people_journeys_moments(live):
    server, keys = live
    batch = {"events": [EVENT,
                        {**EVENT, "ts": "2026-03-03T10:00:00Z", "event_type": "order_delivered",
                         "identifiers": {"customer_id": "c1"}, "measures": {}},
                        {**EVENT, "ts": "2026-03-04T10:00:00Z", "event_type": "survey_answered",
                         "identifiers": {"email": "ana@example.com"}, "rating": 5,
                         "rating_scale": "csat5", "measures": {}}]}
    got, body, _ = server.request("POST", "/v1/events/batch?wait=true", batch, token=keys["write"])
    assert got == 202, body
    assert body["events_loaded"] == 3 and body["processed"] is True
    # posting the same events again stores nothing new (stable ids)
    got, again, _ = server.request("POST", "/v1/events/batch?wait=true", batch, token=keys["write"])
    assert again["events_loaded"] == 0 and again["duplicate"] == 3
    got, person, _ = server.request("GET", "/v1/people/ANA@example.com", token=keys["read"])
    assert got == 200 and len(person["timeline"]) == 3
    pid = person["person_id"]
    got, js, _ = server.request("GET", f"/v1/journeys?person={pid}", token=keys["read"])
    (j,) = [x for x in js["journeys"] if x["journey_type"] == "purchase"]
    assert j["status"] == "completed" and j["n_events"] == 3 and j["outcome_rating"] == 5
    got, one, _ = server.request("GET", f"/v1/journeys/{j['journey_id']}", token=keys["read"])
    assert [e["event_type"] for e in one["events"]] == ["order_placed", "order_delivered",
                                                         "survey_answered"]
    got, ms, _ = server.request("GET", f"/v1/moments?journey={j['journey_id']}", token=keys["read"])
    assert {"purchase", "first_interaction"} <= {m["kind"] for m in ms["moments"]}
    got, metrics, _ = server.request("GET", "/v1/metrics", token=keys["read"])
    assert {"journey_type": "purchase"}.items() <= metrics["metrics"][0].items() or any(
        m["journey_type"] == "purchase" for m in metrics["metrics"])


def test_openapi_lists_every_route(live):
    server, _ = live
    got, spec, _ = server.request("GET", "/openapi.json")
    assert got == 200
    for method, path, _scope in ROUTES:
        assert method.lower() in spec["paths"][path], (method, path)


def test_keys_through_the_api(live):
    server, keys = live
    got, made, _ = server.request("POST", "/v1/keys", {"name": "bot", "scopes": ["read"]},
                                  token=keys["admin"])
    assert got == 201 and made["token"].startswith("km_")
    assert server.request("GET", "/v1/people", token=made["token"])[0] == 200
    got, listed, _ = server.request("GET", "/v1/keys", token=keys["admin"])
    assert made["key_id"] in {k["key_id"] for k in listed["keys"]}
    assert "token" not in json.dumps(listed) and made["token"] not in json.dumps(listed)
    assert server.request("DELETE", f"/v1/keys/{made['key_id']}", token=keys["admin"])[0] == 200
    assert server.request("GET", "/v1/people", token=made["token"])[0] == 401


def _keys_listed(server, keys) -> list[dict]:
    status, body, _ = server.request("GET", "/v1/keys", token=keys["admin"])
    assert status == 200
    return body["keys"]


def _outbox(server, keys) -> tuple[list[dict], dict]:
    status, body, _ = server.request("GET", "/v1/actions", token=keys["read"])
    assert status == 200
    return body["actions"], body["counts"]


@pytest.mark.parametrize("body, field", [
    ({"action_ids": 5}, "action_ids"),  # was a 500 (TypeError iterating an int)
    ({"action_ids": {FAILED_ACTION: 1}}, "action_ids"),  # was read as its keys: replayed
    ({"action_ids": ["a", 1]}, "action_ids"),
    ({"status": ["x"]}, "status"),  # was a 500 (DuckDB could not cast the list)
    ({"status": "nonsense"}, "status"),
    ({"status": "delivered"}, "status"),  # would send every delivered action again
    ({"status": "failed", "force": True}, "force"),
])
def test_a_replay_body_of_the_wrong_type_is_a_422_and_changes_nothing(live, body, field):
    server, keys = live
    before = _outbox(server, keys)
    assert before[1] == {"failed": 1}
    got, resp, _ = server.request("POST", "/v1/actions/replay", body, token=keys["admin"])
    assert got == 422, resp
    _is_envelope(resp, 422)
    assert resp["error"]["details"][0]["loc"][:2] == ["body", field]
    assert _outbox(server, keys) == before
    # the key is still checked before the body
    got, resp, _ = server.request("POST", "/v1/actions/replay", body, token=keys["read"])
    assert got == 403, resp


@pytest.mark.parametrize("body, field", [
    ({"name": "bot", "scopes": 5}, "scopes"),  # was a 500 (list(5))
    ({"name": "bot", "scopes": "admin"}, "scopes"),  # was "unknown scope a, d, m, i, n"
    ({"name": "bot", "scopes": ["read", "root"]}, "scopes"),
    ({"name": "bot", "scopes": []}, "scopes"),
    ({"name": "bot"}, "scopes"),
    ({"name": {"a": 1}, "scopes": ["read"]}, "name"),  # was stored as "{'a': 1}"
    ({"name": 7, "scopes": ["read"]}, "name"),
    ({"name": "x" * 5000, "scopes": ["read"]}, "name"),  # was stored whole (under 413's limit)
    ({"name": "", "scopes": ["read"]}, "name"),
    ({"scopes": ["read"]}, "name"),
    ({"name": "bot", "scopes": ["read"], "expires": "never"}, "expires"),
])
def test_a_key_body_of_the_wrong_type_is_a_422_and_creates_no_key(live, body, field):
    server, keys = live
    before = _keys_listed(server, keys)
    got, resp, _ = server.request("POST", "/v1/keys", body, token=keys["admin"])
    assert got == 422, resp
    _is_envelope(resp, 422)
    assert resp["error"]["details"][0]["loc"][:2] == ["body", field]
    assert _keys_listed(server, keys) == before


def test_an_offset_beyond_bigint_is_a_422(live):
    server, keys = live
    got, body, _ = server.request("GET", "/v1/people?offset=99999999999999999999",
                                  token=keys["read"])
    assert got == 422, body  # was a 500 (DuckDB could not cast it to BIGINT)
    _is_envelope(body, 422)
    assert body["error"]["details"][0]["loc"] == ["query", "offset"]
    got, body, _ = server.request("GET", f"/v1/people?offset={2**63 - 1}", token=keys["read"])
    assert got == 200 and body == {"people": []}


def test_openapi_describes_the_admin_bodies_and_the_offset_bound(live):
    from keymoments.live.auth import SCOPES
    from keymoments.live.outbox import REPLAYABLE

    server, _ = live
    got, spec, _ = server.request("GET", "/openapi.json")
    assert got == 200
    schemas = spec["components"]["schemas"]

    def body_of(path):
        ref = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        return schemas[ref["$ref"].rsplit("/", 1)[1]]

    replay = body_of("/v1/actions/replay")
    assert replay["additionalProperties"] is False
    (status,) = [s for s in replay["properties"]["status"]["anyOf"] if "enum" in s]
    assert tuple(status["enum"]) == REPLAYABLE == ("failed", "pending")
    key = body_of("/v1/keys")
    assert key["additionalProperties"] is False and key["required"] == ["name", "scopes"]
    assert key["properties"]["name"]["maxLength"] == 200
    assert tuple(key["properties"]["scopes"]["items"]["enum"]) == SCOPES
    (offset,) = [p for p in spec["paths"]["/v1/people"]["get"]["parameters"]
                 if p["name"] == "offset"]
    assert offset["schema"]["maximum"] == 2**63 - 1


def test_rate_limit_answers_429_with_retry_after(tmp_path):
    km.init(tmp_path).close()
    with open(tmp_path / "keymoments.yaml", "a") as fh:
        fh.write("service: {rate_limit: {per_second: 0.5, burst: 3}}\n")
    with km.open(tmp_path) as ws:
        token = create_key(ws, "r", ["read"]).token
    server = Server(tmp_path)
    try:
        codes = [server.request("GET", "/v1/health" if i < 0 else "/v1/people", token=token)
                 for i in range(5)]
        assert [c[0] for c in codes] == [200, 200, 200, 429, 429]
        _is_envelope(codes[3][1], 429)
        assert int(codes[3][2]["retry-after"]) >= 1
    finally:
        server.stop()


def test_service_without_the_extra_names_it(monkeypatch):
    import importlib
    import sys

    from keymoments.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "fastapi", None)
    monkeypatch.delitem(sys.modules, "keymoments.live.service", raising=False)
    with pytest.raises(MissingExtraError, match=r"keymoments\[serve\]"):
        importlib.import_module("keymoments.live.service")


def test_every_route_is_documented_and_the_example_config_is_valid():
    import re
    from pathlib import Path

    from keymoments.config import load_config_text

    text = (Path(__file__).parents[1] / "docs" / "service.md").read_text(encoding="utf-8")
    table = set(re.findall(r"^\| (GET|POST|DELETE) \| `([^`]+)` \| (\w+) \|", text, flags=re.M))
    assert table == {(m, p, s or "none") for m, p, s in ROUTES}
    (example,) = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    cfg = load_config_text(example, path="docs/service.md", env={})
    assert [r.name for r in cfg.actions.rules] == ["recover_valley", "ask_review"]


def test_a_crash_inside_a_route_is_a_500_envelope(tmp_path, monkeypatch):
    from keymoments.live.runtime import LiveRuntime

    km.init(tmp_path).close()
    with km.open(tmp_path) as ws:
        token = create_key(ws, "r", ["read"]).token
    runtime = LiveRuntime(tmp_path)

    def broken():
        raise RuntimeError("secret internals")

    monkeypatch.setattr(runtime, "status", broken)
    server = Server(tmp_path, runtime)
    try:
        got, body, _ = server.request("GET", "/v1/status", token=token)
        assert got == 500
        _is_envelope(body, 500)
        assert "secret internals" not in body["error"]["message"]
        assert server.request("GET", "/v1/people", token=token)[0] == 200  # still serving
    finally:
        server.stop()


def test_a_future_event_in_a_batch_is_named_and_refuses_the_batch(live):
    server, keys = live
    before = _events_count(server, keys)
    batch = {"events": [EVENT, {**EVENT, "ts": "2100-01-01T00:00:00Z"}]}
    got, body, _ = server.request("POST", "/v1/events/batch", batch, token=keys["write"])
    assert got == 422, body
    assert body["error"]["details"][0]["loc"] == ["body", "events", "1", "ts"]
    assert "service.max_future" in body["error"]["message"]
    assert _events_count(server, keys) == before


def test_a_form_encoded_body_is_a_415_saying_to_send_json(live):
    """curl -d sends application/x-www-form-urlencoded: say what to send instead."""
    server, keys = live
    before = _events_count(server, keys)
    got, body, _ = server.request("POST", "/v1/events", raw=json.dumps(EVENT).encode(),
                                  token=keys["write"],
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert got == 415, body
    _is_envelope(body, 415)
    assert "Content-Type: application/json" in body["error"]["message"]
    assert _events_count(server, keys) == before


def test_docs_page_is_self_contained_and_lists_every_route(live):
    server, _ = live
    con = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    con.request("GET", "/docs")
    resp = con.getresponse()
    page = resp.read().decode()
    con.close()
    assert resp.status == 200 and resp.getheader("content-type").startswith("text/html")
    # nothing fetched from elsewhere (FastAPI's own page loads Swagger UI from a CDN)
    assert "<script" not in page and "cdn" not in page.lower()
    assert not re.search(r"(src|href)=\"https?://", page)
    for method, path, _scope in ROUTES:
        assert f'<span class="m">{method}</span><code>{path}</code>' in page, (method, path)


def test_a_person_is_found_by_an_identifier_holding_a_slash(live):
    server, keys = live
    event = {**EVENT, "identifiers": {"customer_id": "acme/42"}, "refs": {"order": "slash-1"}}
    got, _, _ = server.request("POST", "/v1/events?wait=true", event, token=keys["write"])
    assert got == 202
    for path in ("/v1/people/acme%2F42", "/v1/people/acme/42"):
        got, person, _ = server.request("GET", path, token=keys["read"])
        assert got == 200, (path, person)
        assert any(i["value"] == "acme/42" for i in person["identifiers"])
    got, body, _ = server.request("GET", "/v1/people/nobody%2Fhere", token=keys["read"])
    assert got == 404 and "nobody/here" in body["error"]["message"]


@pytest.mark.parametrize("path, words", [
    ("/v1/journeys?journey_typ=purchase", "unknown query parameter 'journey_typ'"),
    ("/v1/journeys?status=bogus", "status"),
    ("/v1/actions?status=bogus", "status"),
    ("/v1/actions/effect?outcome=bogus", "outcome"),
    ("/v1/people?limit=5&ofset=10", "unknown query parameter 'ofset'"),
    # values a typo makes match nothing: an empty list would read as "no data"
    ("/v1/moments?kind=valleys", "kind"),
    ("/v1/journeys?journey_type=purchases", "no journey type 'purchases': did you mean 'purchase'"),
    ("/v1/actions?rule=rr", "no rule 'rr'"),
])
def test_a_misspelt_query_parameter_or_value_is_a_422_not_an_unfiltered_answer(live, path, words):
    server, keys = live
    got, body, _ = server.request("GET", path, token=keys["read"])
    assert got == 422, body
    _is_envelope(body, 422)
    assert words in json.dumps(body)
    got, _, _ = server.request("GET", path.split("?")[0], token=keys["read"])
    assert got == 200  # the same route, without it


@pytest.mark.parametrize("path", [
    "/v1/moments?kind=valley", "/v1/moments?kind=repeat_purchase",
    "/v1/journeys?journey_type=purchase", "/v1/journeys?journey_type=visit",  # (the catch-all)
    "/v1/actions?rule=r",  # a rule no longer configured, whose action is stored
])
def test_a_known_filter_value_answers_even_with_nothing_to_list(live, path):
    server, keys = live
    got, body, _ = server.request("GET", path, token=keys["read"])
    assert got == 200, body


def _posted(row: dict) -> dict:
    """A persona row (tests/test_engine_personas.py) as the service's event body."""
    out = {"ts": row["ts"], "event_type": row["event_type"], "channel": row.get("channel"),
           "identifiers": {"customer_id": row["customer"]},
           "refs": {k: row[c] for k, c in (("order", "order_id"), ("ticket", "ticket_id"))
                    if c in row}}
    if "agent" in row:
        out["agent"] = row["agent"]
    if "csat" in row:
        out["rating"], out["rating_scale"] = row["csat"], "csat5"
    if "wait_seconds" in row:
        out["measures"] = {"wait_seconds": row["wait_seconds"]}
    if "promised_at" in row:
        out["expected_ts"], out["expectation_kind"] = row["promised_at"], "promise"
    if "sla_minutes" in row:
        out["expected_value"], out["expectation_kind"] = row["sla_minutes"], "promise"
    return out


def test_personas_posted_out_of_order_give_the_hand_computed_journeys(tmp_path):
    """The personas' events posted through the service in shuffled batches, each
    update judged by itself: the journeys, valences and moments are the figures
    computed by hand for the batch build (tests/test_engine_personas.py)."""
    import random
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_engine_personas import CONFIG, PERSONAS

    root = tmp_path / "ws"
    km.init(root).close()
    config = CONFIG.split("sources:")[0]  # the journeys and outcomes; events come posted
    (root / "keymoments.yaml").write_text(
        config + "service: {rate_limit: {per_second: 1000, burst: 1000}}\n", encoding="utf-8")
    ws = km.open(root)
    token = create_key(ws, "w", ["admin"]).token
    ws.close()
    rows = [_posted(r) for r in PERSONAS]
    random.Random(4).shuffle(rows)
    server = Server(root)
    try:
        for at in range(0, len(rows), 3):
            got, body, _ = server.request("POST", "/v1/events/batch?wait=true",
                                          {"events": rows[at:at + 3]}, token=token)
            assert got == 202 and body["processed"] is True, body
    finally:
        server.stop()
    with km.open(root, read_only=True) as ws:
        j = {r["journey_key"]: r for r in ws.journeys(journey_type=["purchase",
                                                                   "issue_resolution"])
             .to_pylist()}
        valley = {m["journey_id"]: m for m in ws.moments(kind="valley").to_pylist()}
        visits = sorted(r["n_events"] for r in ws.journeys(journey_type="visit").to_pylist())
        reasons = dict(ws.con.execute(
            "SELECT e.event_type || '@' || e.ts::VARCHAR, j.valence_reason FROM journey_events j "
            "JOIN events e USING (event_id)").fetchall())
    late = -(0.2 + 0.8 * 2 / 7)  # Ana's delivery 2 days late (tolerance 0, full_at 7 d)
    o1 = j["O1"]
    assert (o1["status"], o1["n_events"], o1["duration_s"]) == ("completed", 5, 6 * 86400)
    assert valley[o1["journey_id"]]["valence"] == pytest.approx(late)
    assert o1["outcome_valence"] == pytest.approx(-0.5)  # CSAT 2: (2 - 3) / (3 - 1)
    assert o1["repurchased"] is True and j["O2"]["status"] == "abandoned"
    assert j["O3"]["status"] == "stalled"  # Dan: 12 days idle, stall 10d, abandon 20d
    # Bruno waited 10 min against a 5 min SLA: -5/60; his second ticket within 7 days
    assert valley[j["T1"]["journey_id"]]["valence"] == pytest.approx(-0.3)  # transferred
    assert "replied 5.0 minutes late against the SLA" in reasons[
        "ticket_opened@2024-02-01 09:00:00+00"]
    assert reasons["ticket_opened@2024-02-05 09:00:00+00"].startswith("contacted again")
    # Carla: exactly 30 min later is the same visit, 30 min 1 s later a new one
    assert visits == [1, 2]
    # Eve: two equal payment failures: the valley is the earlier
    assert valley[j["O4"]["journey_id"]]["ts"].minute == 0
