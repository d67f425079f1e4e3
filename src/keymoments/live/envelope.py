"""One JSON error envelope for every error the service returns:

``{"error": {"status": 404, "code": "not_found", "message": "...", "details": [...]}}``

``details`` lists the fields at fault for validation errors (``loc``, ``msg``).

>>> error_body(413, "too big")
{'error': {'status': 413, 'code': 'payload_too_large', 'message': 'too big', 'details': []}}
"""

from __future__ import annotations

__all__ = ["CODES", "error_body", "ServiceError"]

CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
    415: "unsupported_media_type", 422: "invalid", 429: "rate_limited",
    500: "internal_error", 503: "unavailable",
}


def error_body(status: int, message: str, details: list | None = None,
               code: str | None = None) -> dict:
    """The envelope as a plain dict."""
    return {"error": {"status": status, "code": code or CODES.get(status, "error"),
                      "message": message, "details": details or []}}


class ServiceError(Exception):
    """An error with its HTTP status, rendered as the envelope."""

    def __init__(self, status: int, message: str, details: list | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.details = status, message, details or []
        self.headers = headers or {}
