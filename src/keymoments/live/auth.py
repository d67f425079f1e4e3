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
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ConfigError, KeymomentsError, NotFoundError

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["SCOPES", "ApiKey", "NewKey", "UnauthorizedError", "ForbiddenError", "create_key",
           "revoke_key", "check_key", "list_keys"]

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


def create_key(ws: Workspace, name: str, scopes: list[str] | tuple[str, ...]) -> NewKey:
    """Create a key with ``scopes`` (read, write, admin); returns its token once."""
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
    if not token:
        raise UnauthorizedError("no API key: send it as 'Authorization: Bearer km_...' "
                                "or 'X-API-Key: km_...'")
    parts = token.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != "km":
        raise UnauthorizedError("not a keymoments API key (they read km_<id>_<secret>)")
    row = ws.con.execute("SELECT name, secret_hash, salt, scopes, revoked_at FROM api_keys "
                         "WHERE key_id = ?", [parts[1]]).fetchone()
    if row is None or not hmac.compare_digest(row[1], _hash(row[2], parts[2])):
        raise UnauthorizedError("invalid API key")
    if row[4] is not None:
        raise UnauthorizedError("this API key was revoked; create a new one with 'keymoments keys create'")
    granted = set().union(*(_IMPLIED[s] for s in row[3]))
    if scope not in granted:
        raise ForbiddenError(f"this key lacks the {scope!r} scope (it has: {', '.join(row[3])}); "
                             "create a key with that scope")
    return ApiKey(parts[1], row[0], tuple(row[3]))
