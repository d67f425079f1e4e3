"""The planted valence of every demo event, written once as keymoments valence rules.

The simulation scores its events with these rules (numpy mirrors of the engine's
formulas, operation for operation), and :mod:`.mapping` writes the same rules into
the demo's ``keymoments.yaml`` (with ``use_default_rules: false``), so the engine gives
every event exactly the valence the demo planted:

* a ``constant`` rule per event type of fixed valence (:data:`~.params.VALENCE`);
* ``dispatch``: shipped more than 12 hours before the promised time scores 0.9, late
  ``-0.2 - hours late / 60`` (floor -0.6), otherwise 0.3;
* ``late_delivery``: delivered after the estimate scores ``-0.4 - 0.15 * days late``
  (floor -1), more than a day early 0.9, otherwise 0.8;
* ``reply_sla``: an agent reply within the SLA scores 0.3, a later one
  ``-0.3 - 0.2 * min(wait/SLA - 1, 3)``;
* ``resolution``: a ticket resolved 0.8, resolved again after a reopening 0.5.

Surveys and reviews have no rule: they are the feedback journeys are judged by.

>>> late = np.array([-2.0, -0.5, 0.0, 1.0, 4.0, 9.0])  # days against the promise
>>> expectation_valence(late, LATE_DELIVERY).round(3).tolist()
[0.9, 0.8, 0.8, -0.55, -1.0, -1.0]
>>> expectation_valence(np.array([-0.5, 0.0, 0.5, 3.0, 5.0]), REPLY_SLA).round(3).tolist()
[0.3, 0.3, -0.4, -0.9, -0.9]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .params import EVENT_TYPES, VALENCE

__all__ = ["DISPATCH", "LATE_DELIVERY", "REPLY_SLA", "RESOLUTION", "constant_rules", "valence_rules",
           "expectation_valence"]  # fmt: skip

#: Delivered against the promise (``estimated_delivery_at``), in days.
LATE_DELIVERY: dict[str, Any] = {
    "name": "late_delivery", "kind": "expectation_gap", "event_types": ["order_delivered"],
    "unit": "days", "tolerance": 0.0, "late_start": 0.4, "full_at": 4.0, "late_floor": -1.0,
    "early_by": 1.0, "on_time_valence": VALENCE["order_delivered_on_time"],
    "early_valence": VALENCE["order_delivered_early"],
    "reason": "delivered {gap} against the promise",
}  # fmt: skip
#: Shipped against the promise (``ship_by_at``), in hours: more than 12 hours early (a
#: parcel on its way within hours of the order) delights; late falls from -0.2 to -0.6.
DISPATCH: dict[str, Any] = {
    "name": "dispatch", "kind": "expectation_gap", "event_types": ["order_shipped"],
    "unit": "hours", "tolerance": 0.0, "late_start": 0.2, "full_at": 48.0, "late_floor": -0.6,
    "early_by": 12.0, "on_time_valence": VALENCE["order_shipped"],
    "early_valence": VALENCE["order_shipped_fast"], "reason": "shipped {gap} against the promise",
}  # fmt: skip
#: The wait before an agent reply against the channel's SLA, relative to the SLA:
#: late by a fraction ``g`` scores ``-(0.3 + 0.7 g / 3.5) = -0.3 - 0.2 g``, floored at -0.9.
REPLY_SLA: dict[str, Any] = {
    "name": "reply_sla", "kind": "expectation_gap", "event_types": ["agent_reply"],
    "measure": "wait_seconds", "measure_unit": "seconds", "expected_unit": "minutes",
    "relative": True, "tolerance": 0.0, "late_start": 0.3, "full_at": 3.5, "late_floor": -0.9,
    "on_time_valence": VALENCE["agent_reply_within_sla"],
    "early_valence": VALENCE["agent_reply_within_sla"],
    "reason": "replied {gap} against the SLA",
}  # fmt: skip
#: A resolution scores 0.8, or 0.5 once the ticket has been reopened (transfers do not count).
RESOLUTION: dict[str, Any] = {
    "name": "resolution", "kind": "first_contact_resolution", "event_types": ["ticket_resolved"],
    "interrupting": ["ticket_reopened"], "valence": VALENCE["ticket_resolved"],
    "else_valence": VALENCE["ticket_resolved_after_reopen"], "reason": "resolved",
}  # fmt: skip
_BY_RULE = {"order_shipped", "order_delivered", "agent_reply", "ticket_resolved"}


def constant_rules() -> list[dict[str, Any]]:
    """A ``constant`` rule for each event type of fixed planted valence."""
    return [
        {"name": event, "kind": "constant", "event_types": [event], "valence": VALENCE[event],
         "reason": event.replace("_", " ")}
        for event in EVENT_TYPES
        if event in VALENCE and event not in _BY_RULE
    ]


def valence_rules() -> list[dict[str, Any]]:
    """Every rule of the demo's ``valence:`` config; exactly one applies to each
    non-feedback event."""
    return [*constant_rules(), dict(DISPATCH), dict(LATE_DELIVERY), dict(REPLY_SLA), dict(RESOLUTION)]


def expectation_valence(gap: np.ndarray, rule: dict[str, Any]) -> np.ndarray:
    """Valence of an ``expectation_gap`` rule for gaps in the rule's unit (or, with
    ``relative``, as a fraction of the promise), computed in the engine's order of
    operations (:mod:`keymoments.valence.rules`) so that the results are equal."""
    tol = float(rule.get("tolerance", 0.0))
    full = float(rule["full_at"])
    start = float(rule.get("late_start", 0.0))
    early_by = tol if rule.get("early_by") is None else float(rule["early_by"])
    gap = np.asarray(gap, dtype=float)
    late = -np.minimum(start + (1 - start) * (gap - tol) / (full - tol), 1.0)
    late = np.maximum(late, float(rule.get("late_floor", -1.0)))
    other = np.where(gap < -early_by, float(rule.get("early_valence", 0.0)),
                     float(rule.get("on_time_valence", 0.0)))  # fmt: skip
    return np.where(gap > tol, late, other)
