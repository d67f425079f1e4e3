"""The REST service: ``keymoments serve`` (needs ``pip install 'keymoments[serve]'``).

Routes (OpenAPI at ``/openapi.json``, browsable at ``/docs``) are listed in
:data:`ROUTES`; every route but ``/v1/health`` and the spec needs an API key
(``Authorization: Bearer km_...`` or ``X-API-Key``) with the route's scope. Every
error, from a missing key to an unknown route or a crash, answers with the one
envelope of :mod:`keymoments.live.envelope`. Bodies above ``service.max_body_bytes``
get 413; more than ``service.rate_limit`` requests per key get 429.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import date, datetime
from typing import Any, Literal

from ..errors import KeymomentsError, MissingExtraError, NotFoundError

try:
    from fastapi import Depends, FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException
except ImportError:  # pragma: no cover - exercised by a test that hides fastapi
    raise MissingExtraError("fastapi", "serve") from None

from pydantic import BaseModel, ConfigDict, Field

from ..config.base import KEY_MOMENTS
from ..moment.extract import EXPERIENCE_KINDS
from .auth import (SCOPES, ForbiddenError, KeyCache, UnauthorizedError, create_key, list_keys,
                   revoke_key)
from .envelope import ServiceError, error_body
from .events import EventBatch, PostedEvent
from .outbox import REPLAYABLE, STATUSES
from .runtime import LiveRuntime

__all__ = ["create_app", "serve", "ROUTES", "ReplayRequest", "KeyRequest"]

#: The largest DuckDB BIGINT: a larger ``offset`` fails the query's cast (a 500).
BIGINT_MAX = 2**63 - 1

#: (method, path, scope) of every route, for the docs and the auth tests.
ROUTES = [
    ("GET", "/v1/health", None),
    ("POST", "/v1/events", "write"),
    ("POST", "/v1/events/batch", "write"),
    ("GET", "/v1/loads/{load_id}", "read"),
    ("GET", "/v1/people", "read"),
    ("GET", "/v1/people/{person}", "read"),
    ("GET", "/v1/journeys", "read"),
    ("GET", "/v1/journeys/{journey_id}", "read"),
    ("GET", "/v1/moments", "read"),
    ("GET", "/v1/metrics", "read"),
    ("GET", "/v1/actions", "read"),
    ("GET", "/v1/actions/effect", "read"),
    ("POST", "/v1/actions/replay", "admin"),
    ("GET", "/v1/status", "read"),
    ("GET", "/v1/keys", "admin"),
    ("POST", "/v1/keys", "admin"),
    ("DELETE", "/v1/keys/{key_id}", "admin"),
]


class ReplayRequest(BaseModel):
    """The body of ``POST /v1/actions/replay``, typed so a wrong type is a 422, not a
    crash in the outbox (a number as ``action_ids``) or in DuckDB (a list as ``status``)."""

    model_config = ConfigDict(extra="forbid")

    action_ids: list[str] | None = Field(default=None, description="actions to queue again")
    status: Literal[REPLAYABLE] | None = Field(  # type: ignore[valid-type]
        default=None, description="or every action of this status (failed or pending; a "
                                  "delivered one is sent again only when named by id)")


class KeyRequest(BaseModel):
    """The body of ``POST /v1/keys``: a name as text (not an object's repr, not 150 KB)
    and a list of scopes (not a string read letter by letter)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    scopes: list[Literal[SCOPES]] = Field(  # type: ignore[valid-type]
        min_length=1, description="read, write or admin (admin implies write, write read)")


def _plain(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, float) and value != value:
        return None
    return value


def rows(table) -> list[dict]:
    """Arrow rows as JSON-ready dicts (maps as objects, times as ISO 8601)."""
    import pyarrow as pa

    maps = {f.name for f in table.schema if pa.types.is_map(f.type)}
    out = []
    for row in table.to_pylist():
        out.append({k: (dict(v) if k in maps and v is not None else
                        [_plain(x) for x in v] if isinstance(v, list) else _plain(v))
                    for k, v in row.items()})
    return out


class _Buckets:
    """Token buckets per API key."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._state: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when allowed, else the seconds to wait."""
        with self._lock:
            now = time.monotonic()
            tokens, at = self._state.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens < 1:
                self._state[key] = (tokens, now)
                return (1 - tokens) / self.rate
            self._state[key] = (tokens - 1, now)
            return 0.0


class _BodyLimit:
    """ASGI middleware: refuse bodies above ``limit`` bytes (413), by header or as read."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await _send_error(send, 413, f"request body of {int(length)} bytes is above "
                                     f"the limit of {self.limit} (service.max_body_bytes); "
                                     "send smaller batches")
        if scope.get("method") in ("GET", "HEAD", "DELETE", "OPTIONS"):
            return await self.app(scope, receive, send)
        kind = dict(scope.get("headers") or []).get(b"content-type", b"").decode("latin-1")
        media = kind.split(";")[0].strip().lower()
        if media and media != "application/json" and not media.endswith("+json"):
            return await _send_error(send, 415, f"a body of Content-Type {media!r} cannot be "
                                     "read: send JSON with 'Content-Type: application/json' "
                                     "(curl: -H 'Content-Type: application/json')")
        # read the body up to the limit (it is bounded), then hand it to the app
        chunks, seen, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, _replay([message]), send)
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            more = message.get("more_body", False)
            if seen > self.limit:
                return await _send_error(send, 413, f"request body is above the limit of "
                                         f"{self.limit} bytes (service.max_body_bytes); "
                                         "send smaller batches")
        body = b"".join(chunks)
        return await self.app(scope, _replay([{"type": "http.request", "body": body,
                                               "more_body": False}], receive), send)


def _replay(messages: list[dict], then=None):
    async def receive():
        if messages:
            return messages.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}
    return receive


async def _send_error(send, status: int, message: str) -> None:
    body = json.dumps(error_body(status, message)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _envelope(status: int, message: str, details=None, headers=None) -> JSONResponse:
    return JSONResponse(error_body(status, message, details), status_code=status, headers=headers)


def _validation_details(exc: RequestValidationError) -> tuple[int, str, list]:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        e = next(e for e in errors if e.get("type") == "json_invalid")
        where = e.get("ctx", {}).get("error", "")
        return 400, f"malformed JSON: {where}".rstrip(": "), []
    details = [{"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""),
                "type": e.get("type", "")} for e in errors]
    first = details[0] if details else {"loc": [], "msg": ""}
    return 422, (f"invalid request at {'.'.join(first['loc'])}: {first['msg']} "
                 f"({len(details)} error{'s' if len(details) != 1 else ''}; nothing stored)"), details


def _known_query(request: Request) -> None:
    """422 for a query parameter the route does not take: a misspelt filter
    (``journey_typ=``) would otherwise return everything, unfiltered."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or not request.query_params:
        return

    def names(d) -> set[str]:
        out = {p.alias for p in d.query_params}
        for sub in d.dependencies:
            out |= names(sub)
        return out

    known = names(dependant)
    unknown = [k for k in request.query_params if k not in known]
    if unknown:
        details = [{"loc": ["query", k], "msg": "unknown query parameter", "type": "extra"}
                   for k in unknown]
        raise ServiceError(422, f"unknown query parameter {unknown[0]!r} on {request.url.path} "
                           f"(it takes: {', '.join(sorted(known)) or 'none'}; nothing done)",
                           details)


#: what ``GET /v1/moments?kind=`` takes
MOMENT_KINDS = (*EXPERIENCE_KINDS, *KEY_MOMENTS)


def _refuse_unknown(name: str, value: str | None, known: set[str], what: str) -> None:
    """422 when a filter's ``value`` is none of the values it could take (``known``:
    the configured ones and those stored): a misspelt journey type or rule would
    otherwise answer an empty list, as if there were no data."""
    from ..journey.query import not_one_of

    if value is None or value in known:
        return
    msg = not_one_of(value, sorted(known), what, f"{what}s")
    raise ServiceError(422, f"invalid request at query.{name}: {msg}",
                       [{"loc": ["query", name], "msg": msg, "type": "unknown_value"}])


def _refuse_future(events: list, max_future: float, batch: bool) -> None:
    """422 when an event is timed more than ``max_future`` seconds after now: one
    event from a wrong clock would make every journey look idle until its time.
    ``batch``: the events are a batch's (``body.events.<i>``), else one body."""
    from datetime import datetime, timedelta, timezone

    limit = datetime.now(timezone.utc) + timedelta(seconds=max_future)
    late = [(i, e.ts) for i, e in enumerate(events) if e.ts > limit]
    if late:
        details = [{"loc": [*(["body", "events", str(i)] if batch else ["body"]), "ts"],
                    "msg": f"{ts.isoformat()} is in the future (more than service.max_future, "
                           f"{max_future:g} s, after the service's clock)",
                    "type": "future"} for i, ts in late]
        raise ServiceError(422, f"invalid request at {'.'.join(details[0]['loc'])}: "
                           f"{details[0]['msg']}; check the sender's clock and time zone "
                           f"({len(details)} error{'s' if len(details) != 1 else ''}; "
                           "nothing stored)", details)


def create_app(path: str = ".", runtime: LiveRuntime | None = None) -> FastAPI:
    """The FastAPI application on the workspace at ``path``."""
    from contextlib import asynccontextmanager

    rt_box: dict[str, LiveRuntime] = {}

    @asynccontextmanager
    async def lifespan(app):
        rt = runtime or LiveRuntime(path)
        rt.start()
        rt_box["rt"] = rt
        cfg = rt.ws.config.service
        app.state.buckets = _Buckets(cfg.rate_limit.per_second, cfg.rate_limit.burst)
        app.state.keys = KeyCache(rt.ws, rt.lock)
        yield
        rt.stop()

    # FastAPI's /docs and /redoc load their scripts from a CDN: replaced by a
    # self-contained page (keymoments.live.apidocs)
    app = FastAPI(title="keymoments", version="1", lifespan=lifespan, docs_url=None,
                  redoc_url=None, dependencies=[Depends(_known_query)],
                  description="Customer journeys and key moments, live: ingest events, query "
                              "people, journeys, moments and actions. Every error is "
                              '`{"error": {"status", "code", "message", "details"}}`.')

    def rt() -> LiveRuntime:
        return rt_box["rt"]

    def token_of(request) -> str | None:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else None
        return token or request.headers.get("x-api-key")

    def require(scope: str):
        def dep(request: Request):
            key = request.app.state.keys.check(token_of(request), scope)
            wait = request.app.state.buckets.take(key.key_id)
            if wait:
                raise ServiceError(429, f"rate limit of {rt().ws.config.service.rate_limit.per_second:g} "
                                   "requests/s per key reached; retry later",
                                   headers={"Retry-After": str(max(1, int(wait + 0.999)))})
            return key
        dep.km_scope = scope  # read by the validation handler: the key is checked first
        return Depends(dep)

    # -------------------------------------------------------------- errors
    @app.exception_handler(ServiceError)
    async def _service_error(request, exc: ServiceError):
        return _envelope(exc.status, exc.message, exc.details, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc: StarletteHTTPException):
        message = {404: f"no route {request.url.path}; see /openapi.json",
                   405: f"method {request.method} is not allowed on {request.url.path}"}.get(
            exc.status_code, str(exc.detail))
        return _envelope(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        # the body is parsed before the route's key check runs: check the key here
        # first, so a request without a valid key is a 401 (403) whatever its body
        route = request.scope.get("route")
        deps = getattr(getattr(route, "dependant", None), "dependencies", [])
        scope = next((d.call.km_scope for d in deps if hasattr(d.call, "km_scope")), None)
        if scope is not None:
            try:
                request.app.state.keys.check(token_of(request), scope)
            except KeymomentsError as auth:
                return await _km_error(request, auth)
        return _envelope(*_validation_details(exc))

    @app.exception_handler(KeymomentsError)
    async def _km_error(request, exc: KeymomentsError):
        status = (401 if isinstance(exc, UnauthorizedError) else 403 if isinstance(exc, ForbiddenError)
                  else 404 if isinstance(exc, NotFoundError) else 400)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return _envelope(status, str(exc), headers=headers)

    @app.exception_handler(Exception)
    async def _crash(request, exc: Exception):
        return _envelope(500, f"internal error ({type(exc).__name__}); the service log has the "
                         "details")

    app.add_middleware(_BodyLimit, limit=_limit(path, runtime))

    # -------------------------------------------------------------- routes
    @app.get("/docs", include_in_schema=False)
    def docs():
        from fastapi.responses import HTMLResponse

        from .apidocs import docs_page

        return HTMLResponse(docs_page(app.openapi()))

    @app.get("/v1/health", tags=["service"])
    def health():
        """Liveness (no key needed)."""
        return {"status": "ok"}

    @app.post("/v1/events", status_code=202, tags=["events"])
    def post_event(event: PostedEvent, wait: bool = False, key=require("write")):
        """Ingest one event. ``wait=true`` returns after its journeys, moments and
        actions are updated."""
        _refuse_future([event], rt().ws.config.service.max_future, batch=False)
        return rt().ingest([event], wait=wait)

    @app.post("/v1/events/batch", status_code=202, tags=["events"])
    def post_batch(batch: EventBatch, wait: bool = False, key=require("write")):
        """Ingest a batch of events, validated as a whole: one invalid event refuses
        the batch (422, nothing stored)."""
        limit = rt().ws.config.service.max_batch
        if len(batch.events) > limit:
            raise ServiceError(413, f"{len(batch.events)} events is above service.max_batch ({limit})")
        _refuse_future(batch.events, rt().ws.config.service.max_future, batch=True)
        return rt().ingest(batch.events, wait=wait)

    @app.get("/v1/loads/{load_id}", tags=["events"])
    def get_load(load_id: str, key=require("read")):
        """Whether a load of posted events is processed."""
        with rt().lock:
            found = rt().ws.con.execute("SELECT count(*) FROM loads WHERE load_id = ?",
                                        [load_id]).fetchone()[0]
        if not found:
            raise NotFoundError(f"no load {load_id!r}")
        return {"load_id": load_id, "processed": rt().is_processed(load_id)}

    @app.get("/v1/people", tags=["query"])
    def people(limit: int = Query(100, ge=1, le=10000),
               offset: int = Query(0, ge=0, le=BIGINT_MAX), key=require("read")):
        """People, by id."""
        with rt().lock:
            t = rt().ws.con.execute("SELECT * FROM people ORDER BY person_id LIMIT ? OFFSET ?",
                                    [limit, offset]).to_arrow_table()
        return {"people": rows(t)}

    @app.get("/v1/people/{person:path}", tags=["query"])
    def person(person: str, key=require("read")):
        """One person (by id or any identifier, which may hold a '/'; percent-encode
        it): identifiers, why joined, timeline."""
        with rt().lock:
            p = rt().ws.person(person)
        return {"person_id": p.person_id, "identifiers": rows(p.identifiers.data),
                "links": rows(p.links.data), "timeline": rows(p.timeline.data)}

    @app.get("/v1/journeys", tags=["query"])
    def journeys(person: str | None = None, journey_type: str | None = None,
                 status: Literal["completed", "open", "stalled", "abandoned"] | None = None,
                 limit: int = Query(100, ge=1, le=10000),
                 key=require("read")):
        """Journeys, filtered."""
        from ..pipeline import journey_types

        with rt().lock:
            ws = rt().ws
            known = {t.name for t in journey_types(ws)} | {ws.config.journeys.catch_all}
            if journey_type is not None and journey_type not in known:
                known |= {r[0] for r in ws.con.execute(
                    "SELECT DISTINCT journey_type FROM journeys").fetchall()}
            _refuse_unknown("journey_type", journey_type, known, "journey type")
            r = ws.journeys(person=person, journey_type=journey_type, status=status, limit=limit)
        return {"journeys": rows(r.data)}

    @app.get("/v1/journeys/{journey_id}", tags=["query"])
    def journey(journey_id: str, key=require("read")):
        """One journey with its events and moments."""
        with rt().lock:
            con = rt().ws.con
            j = con.execute("SELECT * FROM journeys WHERE journey_id = ?", [journey_id]).to_arrow_table()
            if not j.num_rows:
                raise NotFoundError(f"no journey {journey_id!r}")
            ev = con.execute("SELECT * FROM journey_events WHERE journey_id = ? ORDER BY seq",
                             [journey_id]).to_arrow_table()
            mo = con.execute("SELECT * FROM moments WHERE journey_id = ? ORDER BY kind",
                             [journey_id]).to_arrow_table()
        return {"journey": rows(j)[0], "events": rows(ev), "moments": rows(mo)}

    @app.get("/v1/moments", tags=["query"])
    def moments(person: str | None = None, journey: str | None = None,
                kind: Literal[MOMENT_KINDS] | None = None,  # type: ignore[valid-type]
                limit: int = Query(100, ge=1, le=10000), key=require("read")):
        """Moments, filtered."""
        with rt().lock:
            r = rt().ws.moments(person=person, journey=journey, kind=kind, limit=limit)
        return {"moments": rows(r.data)}

    @app.get("/v1/metrics", tags=["query"])
    def metrics(key=require("read")):
        """Journeys per type: count, share completed, mean remembered score, churn and
        repurchase rates (among journeys whose outcome is known)."""
        with rt().lock:
            t = rt().ws.con.execute("""
                SELECT journey_type, count(*) AS journeys,
                       avg(CASE WHEN status = 'completed' THEN 1.0 ELSE 0.0 END) AS completed_share,
                       avg(remembered) AS mean_remembered,
                       avg(CAST(churned AS DOUBLE)) AS churn_rate,
                       avg(CAST(repurchased AS DOUBLE)) AS repurchase_rate
                FROM journeys GROUP BY 1 ORDER BY 1""").to_arrow_table()
        return {"metrics": rows(t)}

    @app.get("/v1/actions", tags=["actions"])
    def actions(status: Literal[STATUSES] | None = None,  # type: ignore[valid-type]
                rule: str | None = None, person: str | None = None,
                limit: int = Query(100, ge=1, le=10000), key=require("read")):
        """Actions in the outbox, with counts per status."""
        from .outbox import list_actions

        with rt().lock:
            ws = rt().ws
            known = {r.name for r in ws.config.actions.rules}
            if rule is not None and rule not in known:  # (a rule since taken out of the config)
                known |= {r[0] for r in ws.con.execute("SELECT DISTINCT rule FROM outbox").fetchall()}
            _refuse_unknown("rule", rule, known, "rule")
            r = list_actions(ws, status=status, rule=rule, person=person, limit=limit)
        return {"actions": rows(r.data), "counts": r.meta["counts"]}

    @app.get("/v1/actions/effect", tags=["actions"])
    def effect(outcome: Literal["churned", "repurchased", "feedback"] = "churned",
               key=require("read")):
        """Per rule: the outcome of treated versus held-out persons, with intervals."""
        from .effect import action_effect

        with rt().lock:
            r = action_effect(rt().ws, outcome)
        return {"effect": rows(r.data), "meta": r.meta}

    @app.post("/v1/actions/replay", tags=["actions"])
    def replay_actions(body: ReplayRequest, key=require("admin")):
        """Queue actions again: ``{"action_ids": [...]}`` or ``{"status": "failed"}``."""
        from .outbox import replay

        with rt().lock:
            n = replay(rt().ws, body.action_ids, status=body.status)
        rt().delivery.wake.set()
        return {"replayed": n}

    @app.get("/v1/status", tags=["service"])
    def status(key=require("read")):
        """Table counts, actions per status, loads waiting to be processed."""
        return rt().status()

    @app.get("/v1/keys", tags=["keys"])
    def keys(key=require("admin")):
        """API keys (never their secrets)."""
        with rt().lock:
            return {"keys": list_keys(rt().ws)}

    @app.post("/v1/keys", status_code=201, tags=["keys"])
    def new_key(request: Request, body: KeyRequest, key=require("admin")):
        """Create a key: ``{"name": "...", "scopes": ["read"]}``; the token is shown once."""
        with rt().lock:
            k = create_key(rt().ws, body.name, body.scopes)
        request.app.state.keys.invalidate()
        return {"key_id": k.key_id, "name": k.name, "scopes": list(k.scopes), "token": k.token}

    @app.delete("/v1/keys/{key_id}", tags=["keys"])
    def delete_key(request: Request, key_id: str, key=require("admin")):
        """Revoke a key."""
        with rt().lock:
            revoke_key(rt().ws, key_id)
        request.app.state.keys.invalidate()
        return {"revoked": key_id}

    return app


def _limit(path: str, runtime: LiveRuntime | None) -> int:
    if runtime is not None:
        return runtime.ws.config.service.max_body_bytes
    from pathlib import Path

    from ..config.loader import CONFIG_FILE, load_config

    return load_config(Path(path) / CONFIG_FILE).service.max_body_bytes


def serve(path: str = ".", host: str | None = None, port: int | None = None,
          log_level: str = "warning") -> None:
    """Run the service on the workspace at ``path`` until interrupted."""
    try:
        import uvicorn
    except ImportError:  # pragma: no cover
        raise MissingExtraError("uvicorn", "serve") from None
    from pathlib import Path

    from ..config.loader import CONFIG_FILE, load_config

    cfg = load_config(Path(path) / CONFIG_FILE).service
    uvicorn.run(create_app(path), host=host or cfg.host, port=port if port is not None else cfg.port,
                log_level=log_level, access_log=False)
