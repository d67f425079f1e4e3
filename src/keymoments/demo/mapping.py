"""The ``sources:`` mapping of the demo's exports, and ``keymoments.yaml`` text for it.

>>> from keymoments.config import load_config_text
>>> cfg = load_config_text(config_yaml(source_mappings("csv")))
>>> sorted(cfg.sources)[:3], cfg.sources["orders"].events[3].expectation.kind
(['customers', 'orders', 'reviews'], 'promised_delivery')
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["source_mappings", "flat_mapping", "config_yaml", "to_yaml"]

_IDS = {"customer_id": "customer_id", "email": "email", "phone": "phone"}


def _wide(event: str, column: str, **extra: Any) -> dict[str, Any]:
    return {"event_type": {"value": event}, "ts": column, **extra}


def _survey(kind: str, scale: str, ext: str) -> dict[str, Any]:
    return {
        "path": f"surveys_{kind}.{ext}",
        "identifiers": {"customer_id": "customer_id"},
        "event_type": {"value": f"{kind}_answered"},
        "ts": "ts",
        "channel": {"value": "survey"},
        "rating": {"column": f"{kind}_score", "scale": scale},
        "text": "comment",
        "language": "language",
        "refs": {"order": "order_id", "ticket": "ticket_id"},
    }


def source_mappings(ext: str) -> dict[str, dict[str, Any]]:
    """Mapping of every demo export (files named ``<source>.<ext>``) to events."""
    return {
        "web_events": {
            "path": f"web_events.{ext}",
            "identifiers": {"customer_id": "customer_id", "device_id": "device_id", "email": "email"},
            "event_type": "event",
            "ts": "ts",
            "channel": "channel",
            "refs": {"session": "session_id", "order": "order_id"},
            "attributes": {"discovery_source": "utm_source"},
        },
        "orders": {
            "path": f"orders.{ext}",
            "identifiers": dict(_IDS),
            "channel": "channel",
            "refs": {"order": "order_id"},
            "measures": {"amount": "amount"},
            "attributes": {"carrier": "carrier", "product_category": "product_category",
                           "currency": "currency"},  # fmt: skip
            "events": [
                _wide("order_placed", "order_placed_at"),
                _wide("payment_approved", "payment_approved_at"),
                _wide("order_shipped", "shipped_at", channel={"value": "delivery"}),
                _wide("order_delivered", "delivered_at", channel={"value": "delivery"},
                      expectation={"kind": "promised_delivery", "ts": "estimated_delivery_at"}),
                _wide("order_cancelled", "cancelled_at"),
            ],  # fmt: skip
        },
        "tickets": {
            "path": f"tickets.{ext}",
            "identifiers": dict(_IDS),
            "event_type": "event",
            "ts": "ts",
            "channel": "channel",
            "agent": "agent",
            "language": "language",
            "refs": {"ticket": "ticket_id", "order": "order_id"},
            "measures": {"wait_seconds": "wait_seconds"},
            "expectation": {"kind": "sla", "value": "sla_minutes"},
            "attributes": {"topic": "topic"},
        },
        "surveys_csat": _survey("csat", "csat5", ext),
        "surveys_nps": _survey("nps", "nps10", ext),
        "surveys_ces": _survey("ces", "ces7", ext),
        "reviews": {
            "path": f"reviews.{ext}",
            "identifiers": {"customer_id": "customer_id"},
            "event_type": {"value": "review_posted"},
            "ts": "posted_at",
            "channel": {"value": "web"},
            "rating": {"column": "stars", "scale": "stars5"},
            "text": "text",
            "language": "language",
            "refs": {"order": "order_id", "review": "review_id"},
        },
        "customers": {
            "path": f"customers.{ext}",
            "identifiers": dict(_IDS),
            "channel": {"value": "web"},
            "language": "preferred_language",
            "attributes": {"segment": "segment"},
            "events": [
                _wide("account_created", "signup_at"),
                _wide("loyalty_joined", "loyalty_joined_at"),
                _wide("subscription_cancelled", "subscription_cancelled_at"),
            ],
        },
    }


def flat_mapping(path: str) -> dict[str, Any]:
    """Mapping of the flat benchmark file (see ``write_flat_events_parquet``)."""
    return {
        "path": path,
        "identifiers": {"customer_id": "customer_id"},
        "event_type": "event_type",
        "ts": "ts",
        "channel": "channel",
        "agent": "agent",
        "rating": {"column": "rating", "scale": "csat5"},
        "text": "text",
        "measures": {"amount": "amount"},
        "attributes": {"carrier": "carrier"},
        "refs": {"session": "session_id", "order": "order_id", "ticket": "ticket_id"},
    }


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")
_RESERVED = {"yes", "no", "on", "off", "true", "false", "null", "y", "n", "~"}


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return repr(v)
    s = str(v)
    if _PLAIN.fullmatch(s) and s.lower() not in _RESERVED:
        return s
    return json.dumps(s, ensure_ascii=False)


def _is_flat(d: Any) -> bool:
    return isinstance(d, dict) and all(
        not isinstance(v, (dict, list)) or (isinstance(v, dict) and _is_flat(v) and len(v) == 1)
        for v in d.values()
    )


def _flow(d: dict[str, Any]) -> str:
    items = (f"{_scalar(k)}: {_flow(v) if isinstance(v, dict) else _scalar(v)}" for k, v in d.items())
    return "{" + ", ".join(items) + "}"


def to_yaml(data: Any, indent: int = 0) -> str:
    """A small YAML writer for nested dicts and lists of plain values: block style, with
    short mappings written inline (``{kind: sla, value: sla_minutes}``).

    >>> print(to_yaml({"a": {"b": 1}, "c": [{"d": "x y"}]}), end="")
    a: {b: 1}
    c:
      - {d: "x y"}
    """
    pad = " " * indent
    lines: list[str] = []
    if isinstance(data, dict):
        for k, v in data.items():
            if isinstance(v, dict) and _is_flat(v) and len(_flow(v)) + indent + len(str(k)) < 96:
                lines.append(f"{pad}{_scalar(k)}: {_flow(v)}")
            elif isinstance(v, (dict, list)):
                lines.append(f"{pad}{_scalar(k)}:")
                lines.append(to_yaml(v, indent + 2).rstrip("\n"))
            else:
                lines.append(f"{pad}{_scalar(k)}: {_scalar(v)}")
    elif isinstance(data, list):
        for item in data:
            if isinstance(item, dict) and _is_flat(item) and len(_flow(item)) + indent < 94:
                lines.append(f"{pad}- {_flow(item)}")
            elif isinstance(item, dict):
                body = to_yaml(item, indent + 2).rstrip("\n").split("\n")
                lines.append(f"{pad}- {body[0].strip()}")
                lines.extend(body[1:])
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(pad + _scalar(data))
    return "\n".join(lines) + "\n"


def config_yaml(sources: dict[str, dict[str, Any]], name: str = "demo") -> str:
    """The whole ``keymoments.yaml`` of the demo workspace."""
    header = (
        "# keymoments workspace of the generated demo shop (see truth.json for what was planted).\n"
        "# Each source maps one export to events; wide tables list one event per timestamp column.\n"
    )
    return header + to_yaml({"version": 1, "name": name, "sources": sources})
