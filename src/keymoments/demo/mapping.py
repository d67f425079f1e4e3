"""The ``sources:`` mapping of the demo's exports, and ``keymoments.yaml`` text for it,
with the journey types and valence rules that make the engine see the journeys and
valences the demo planted (see :mod:`.valence` and :mod:`.journeys`).

>>> from keymoments.config import load_config_text
>>> cfg = load_config_text(config_yaml(source_mappings("csv")))
>>> sorted(cfg.sources)[:3], cfg.sources["orders"].events[3].expectation.kind
(['customers', 'orders', 'reviews'], 'promised_delivery')
>>> [t.key for t in cfg.journeys.types], cfg.valence.use_default_rules
(['ticket', 'order', 'session'], False)
"""

from __future__ import annotations

import json
import re
from typing import Any

from .valence import valence_rules

__all__ = ["source_mappings", "flat_mapping", "journeys_config", "valence_config", "config_yaml",
           "to_yaml"]  # fmt: skip

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
                _wide("order_shipped", "shipped_at", channel={"value": "delivery"},
                      expectation={"kind": "promised_dispatch", "ts": "ship_by_at"}),
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


def journeys_config() -> dict[str, Any]:
    """Journey types, tried in order: an event with a ticket ref belongs to its ticket's
    journey, else to its order's, else to its session's; the CRM's events (no ref)
    fall to 30-minute visits. Browsing is done once a product goes in the cart (from
    checkout on, a converting session's events are the order's)."""
    return {
        "catch_all": "visit",
        "catch_all_gap": "30m",
        "types": [
            {"name": "issue_resolution", "key": "ticket", "start": ["ticket_opened"],
             "end": ["ticket_resolved"], "abandon_after": "30d"},
            {"name": "purchase", "key": "order", "start": ["checkout_started", "order_placed"],
             "end": ["order_delivered", "order_cancelled"], "abandon_after": "60d"},
            {"name": "browsing", "key": "session", "start": ["page_view"],
             "end": ["add_to_cart", "checkout_started"], "abandon_after": "1d"},
        ],
    }  # fmt: skip


def valence_config() -> dict[str, Any]:
    """Valence exactly as planted: only the demo's rules (:mod:`.valence`), ratings
    mapped linearly around each scale's midpoint (the demo draws answers that way),
    and no text sentiment (comments are feedback, not experience)."""
    return {
        "use_default_rules": False,
        "weights": {"feedback": 1.0, "rules": 1.0, "text": 0.0},
        "neutral": {"nps10": 5, "csat5": 3, "ces7": 4, "stars5": 3},
        "rules": valence_rules(),
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


def _scalars(v: Any) -> bool:
    return isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v)


def _is_flat(d: Any) -> bool:
    return isinstance(d, dict) and all(
        not isinstance(v, (dict, list)) or _scalars(v)
        or (isinstance(v, dict) and _is_flat(v) and len(v) == 1)
        for v in d.values()
    )


def _flow(d: dict[str, Any] | list[Any]) -> str:
    if isinstance(d, list):
        return "[" + ", ".join(_scalar(x) for x in d) + "]"
    items = (f"{_scalar(k)}: {_flow(v) if isinstance(v, (dict, list)) else _scalar(v)}"
             for k, v in d.items())  # fmt: skip
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
            if ((isinstance(v, dict) and _is_flat(v) or _scalars(v))
                    and len(_flow(v)) + indent + len(str(k)) < 96):
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
        "# Journeys and valence rules are the ones the demo's truth was planted with.\n"
    )
    return header + to_yaml({"version": 1, "name": name, "sources": sources,
                             "journeys": journeys_config(), "valence": valence_config()})
