"""API keys with scopes, stored hashed in the workspace (table ``api_keys``).

A key reads ``km_<key_id>_<secret>``: the id is public (shown in lists), the
secret is shown once, at creation, and only a salted sha256 of it is stored (the
secret is 256 random bits, so a fast hash does not weaken it). Scopes nest:
``admin`` implies ``write``, which implies ``read``.

>>> import tempfile, keymoments as km
>>> ws = km.init(tempfile.mkdtemp())
>>> key = create_key(ws, "ingest bot", ["write"])
>>> check_key(ws, key.token, "read").key_id == key.key_id
True
>>> check_key(ws, key.token, "admin")
Traceback (most recent call last):
...
keymoments.live.auth.ForbiddenError: this key lacks the 'admin' scope (it has: write); create a key with that scope
>>> revoke_key(ws, key.key_id); check_key(ws, key.token, "read")
Traceback (most recent call last):
...
keymoments.live.auth.UnauthorizedError: this API key was revoked; create a new one with 'keymoments keys create'
>>> ws.close()
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ConfigError, KeymomentsError, NotFoundError

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["SCOPES", "ApiKey", "NewKey", "UnauthorizedError", "ForbiddenError", "create_key",
           "revoke_key", "check_key", "list_keys", "KeyCache"]

SCOPES = ("read", "write", "admin")
_IMPLIED = {"read": {"read"}, "write": {"read", "write"}, "admin": {"read", "write", "admin"}}


class UnauthorizedError(KeymomentsError):
    """No key, or a key that is not valid (HTTP 401)."""


class ForbiddenError(KeymomentsError):
    """A valid key without the scope the request needs (HTTP 403)."""


@dataclass(frozen=True)
class ApiKey:
    """A stored key (never its secret)."""

    key_id: str
    name: str
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class NewKey(ApiKey):
    """A key just created; ``token`` is shown once and not stored."""

    token: str = ""


def _hash(salt: str, secret: str) -> str:
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


def create_key(ws: Workspace, name: str, scopes: str | list[str] | tuple[str, ...]) -> NewKey:
    """Create a key with ``scopes`` (read, write, admin: one, or a list); returns its
    token once."""
    scopes = [scopes] if isinstance(scopes, str) else list(scopes)
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise ConfigError(f"unknown scope {', '.join(bad) or '(none given)'}: use read, write or admin")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_hex(8)
    ordered = sorted(set(scopes), key=SCOPES.index)
    ws.con.execute("INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, now(), NULL)",
                   [key_id, name, _hash(salt, secret), salt, ordered])
    return NewKey(key_id, name, tuple(ordered), token=f"km_{key_id}_{secret}")


def revoke_key(ws: Workspace, key_id: str) -> None:
    """Revoke a key by its id (the part after ``km_``)."""
    found = ws.con.execute("SELECT count(*) FROM api_keys WHERE key_id = ?", [key_id]).fetchone()[0]
    if not found:
        raise NotFoundError(f"no API key {key_id!r} (see 'keymoments keys list')")
    ws.con.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = ? AND revoked_at IS NULL",
                   [key_id])


def list_keys(ws: Workspace) -> list[dict]:
    """Every key with its scopes and state (no secrets)."""
    rows = ws.con.execute("SELECT key_id, name, scopes, created_at, revoked_at FROM api_keys "
                          "ORDER BY created_at, key_id").fetchall()
    return [{"key_id": r[0], "name": r[1], "scopes": list(r[2]), "created_at": r[3].isoformat(),
             "revoked_at": r[4].isoformat() if r[4] else None} for r in rows]


def check_key(ws: Workspace, token: str | None, scope: str) -> ApiKey:
    """The key behind ``token`` if it is valid and has ``scope``; else raise
    :class:`UnauthorizedError` or :class:`ForbiddenError`."""
    parts = _parts(token)
    row = ws.con.execute("SELECT name, secret_hash, salt, scopes, revoked_at FROM api_keys "
                         "WHERE key_id = ?", [parts[1]]).fetchone()
    return _verify(parts, row, scope)


def _parts(token: str | None) -> list[str]:
    if not token:
        raise UnauthorizedError("no API key: send it as 'Authorization: Bearer km_...' "
                                "or 'X-API-Key: km_...'")
    parts = token.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != "km":
        raise UnauthorizedError("not a keymoments API key (they read km_<id>_<secret>)")
    return parts


def _verify(parts: list[str], row: tuple | None, scope: str) -> ApiKey:
    """The key of ``parts`` (id, secret) checked against its stored ``row``."""
    if row is None or not hmac.compare_digest(row[1], _hash(row[2], parts[2])):
        raise UnauthorizedError("invalid API key")
    if row[4] is not None:
        raise UnauthorizedError("this API key was revoked; create a new one with 'keymoments keys create'")
    granted = set().union(*(_IMPLIED[s] for s in row[3]))
    if scope not in granted:
        raise ForbiddenError(f"this key lacks the {scope!r} scope (it has: {', '.join(row[3])}); "
                             "create a key with that scope")
    return ApiKey(parts[1], row[0], tuple(row[3]))


class KeyCache:
    """The workspace's keys held in memory by the service, so a request is checked
    without waiting for the database (whose lock a posted group holds for a whole
    cycle: each request waited for one before it was even queued).

    Exact while the service runs: it is the only writer of ``api_keys`` (DuckDB
    allows one writer per file) and calls :meth:`invalidate` after each change. An
    unknown key id re-reads the table, at most once a second.

    >>> import tempfile, threading, keymoments as km
    >>> ws = km.init(tempfile.mkdtemp())
    >>> cache = KeyCache(ws, threading.Lock())
    >>> key = create_key(ws, "bot", ["read"]); cache.invalidate()
    >>> cache.check(key.token, "read").name
    'bot'
    >>> revoke_key(ws, key.key_id); cache.check(key.token, "read").name  # not told yet
    'bot'
    >>> cache.invalidate(); cache.check(key.token, "read")
    Traceback (most recent call last):
    ...
    keymoments.live.auth.UnauthorizedError: this API key was revoked; create a new one with 'keymoments keys create'
    >>> ws.close()
    """

    def __init__(self, ws: Workspace, db_lock, reload_every: float = 1.0) -> None:
        self.ws, self.db_lock, self.reload_every = ws, db_lock, reload_every
        self._rows: dict[str, tuple] | None = None
        self._loaded_at = 0.0
        self._guard = threading.Lock()

    def invalidate(self) -> None:
        """Forget the keys (after one was created or revoked)."""
        with self._guard:
            self._rows = None

    def _load(self) -> dict[str, tuple]:
        with self.db_lock:
            rows = self.ws.con.execute("SELECT key_id, name, secret_hash, salt, scopes, revoked_at "
                                       "FROM api_keys").fetchall()
        with self._guard:
            self._rows = {r[0]: tuple(r[1:]) for r in rows}
            self._loaded_at = time.monotonic()
            return self._rows

    def check(self, token: str | None, scope: str) -> ApiKey:
        """As :func:`check_key`, from memory."""
        parts = _parts(token)
        with self._guard:
            rows, loaded_at = self._rows, self._loaded_at
        if rows is None or (parts[1] not in rows
                            and time.monotonic() - loaded_at >= self.reload_every):
            rows = self._load()
        return _verify(parts, rows.get(parts[1]), scope)
