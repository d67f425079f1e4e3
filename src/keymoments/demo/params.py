"""The demo shop's vocabulary (event types, carriers, agents, channels...) and every
planted rate, in one place.

>>> EVENT_TYPES[ET["order_delivered"]]
'order_delivered'
>>> ShopParams().late_prob[CARRIERS.index("SlowShip")]
0.6
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

__all__ = [
    "DAY", "HOUR", "EVENT_TYPES", "ET", "CARRIERS", "AGENTS", "DISCOVERY", "SEGMENTS",
    "CATEGORIES", "TICKET_CHANNELS", "TICKET_TOPICS", "SURVEYS", "SCALES", "VALENCE",
    "TYPE_VALENCE", "ShopParams",
]  # fmt: skip

DAY = 86_400
HOUR = 3_600

EVENT_TYPES = (
    "page_view", "product_view", "add_to_cart", "checkout_started", "payment_failed",
    "account_created", "order_placed", "payment_approved", "order_shipped", "order_delivered",
    "order_cancelled", "ticket_opened", "agent_reply", "transferred", "ticket_resolved",
    "ticket_reopened", "csat_answered", "nps_answered", "ces_answered", "review_posted",
    "subscription_cancelled", "loyalty_joined",
)  # fmt: skip
ET = {name: i for i, name in enumerate(EVENT_TYPES)}

CARRIERS = ("SlowShip", "SwiftPost", "ParcelPro", "QuickBox")
AGENTS = tuple(f"agent_{i:02d}" for i in range(1, 17))
#: Discovery sources (``utm_source`` of a session's first event; "direct" leaves it blank).
DISCOVERY = ("search", "social", "email", "referral", "paid", "direct")
SEGMENTS = ("standard", "plus", "vip")  # "plus" customers have a subscription to cancel
CATEGORIES = ("electronics", "fashion", "home", "beauty", "books", "toys")
TICKET_CHANNELS = ("chat", "email", "phone")
TICKET_TOPICS = ("delivery", "payment", "product", "account")
SURVEYS = ("csat", "nps", "ces")
#: Rating scales (low, high) of the survey types and review stars. CES is an agreement
#: scale ("the company made it easy"): higher is better, like the others.
SCALES = {"csat": (1, 5), "nps": (0, 10), "ces": (1, 7), "stars": (1, 5)}

#: Planted valence of each kind of moment. Shipments, deliveries and agent replies
#: depend on the promises and the SLA (see :mod:`.valence`); feedback events have none.
VALENCE = {
    "page_view": 0.0, "product_view": 0.1, "add_to_cart": 0.2, "checkout_started": 0.2,
    "payment_failed": -0.6, "account_created": 0.2, "order_placed": 0.4, "payment_approved": 0.3,
    "order_shipped": 0.3, "order_shipped_fast": 0.9, "order_delivered_on_time": 0.8,
    "order_delivered_early": 0.9,
    "order_cancelled": -0.5, "ticket_opened": -0.2, "agent_reply_within_sla": 0.3,
    "transferred": -0.5, "ticket_resolved": 0.8, "ticket_reopened": -0.7,
    "ticket_resolved_after_reopen": 0.5, "subscription_cancelled": -0.5, "loyalty_joined": 0.6,
}  # fmt: skip
#: Valence by event type code: NaN for feedback and where it depends on the event
#: (deliveries, replies), the on-time value for shipments, the first for resolutions.
TYPE_VALENCE = np.array([VALENCE.get(name, np.nan) for name in EVENT_TYPES])


@dataclass(frozen=True)
class ShopParams:
    """Every planted rate of the simulation (the truth records them).

    Valences follow the rules of :mod:`.valence` (the ones the demo's
    ``keymoments.yaml`` gives the engine): parcels shipped fast (more than 12 hours
    before the promised dispatch) score 0.9, late ones -0.2 to -0.6, others 0.3; late
    deliveries score ``-0.4 - 0.15 * days late`` (floor -1), deliveries more than a day
    early 0.9, others 0.8; a reply within the SLA scores +0.3, a later one
    ``-0.3 - 0.2 * min(wait/SLA - 1, 3)``. So agents show only through what the
    exports record: the poor-welcome agent's first replies wait
    ``poor_welcome_wait_ratio`` times the SLA (median); the inconsistent agent's wait
    ratios spread ``inconsistent_wait_sd`` (log scale) around a good median
    (``inconsistent_wait_median``), and customers answer about that agent's tickets
    with more noise (``inconsistent_noise_sd``).
    """

    start: int = 1_704_067_200  # 2024-01-01T00:00:00Z
    end: int = 1_719_792_000  # 2024-07-01T00:00:00Z: the export time; later cells are blank
    rounds: int = 6
    sessions_per_round: float = 0.9
    activity_cap: float = 20.0
    signed_up_before_share: float = 0.4
    logged_in_share: float = 0.7
    app_share: float = 0.35
    fresh_cookie_share: float = 0.5
    guest_email_share: float = 0.85
    discovery_share: tuple[float, ...] = (0.30, 0.15, 0.12, 0.10, 0.13, 0.20)
    conversion: tuple[float, ...] = (0.34, 0.16, 0.42, 0.30, 0.26, 0.33)
    detour_share: float = 0.15
    payment_fail_converted: float = 0.10
    payment_fail_abandoned: float = 0.30
    cancel_share: float = 0.03
    carrier_share: tuple[float, ...] = (0.25, 0.30, 0.25, 0.20)
    late_prob: tuple[float, ...] = (0.60, 0.08, 0.08, 0.08)
    promise_days: tuple[int, ...] = (4, 5, 5, 6)
    dispatch_share: tuple[float, ...] = (0.35, 0.55, 0.10)  # shipped fast, on time, late
    ticket_when_late: float = 0.5
    ticket_after_payment_fail: float = 0.2
    ticket_product_issue: float = 0.05
    ticket_account_question: float = 0.02
    ticket_channel_share: tuple[float, ...] = (0.45, 0.30, 0.25)
    sla_minutes: tuple[int, ...] = (5, 1440, 3)
    transfer_prob: tuple[float, ...] = (0.10, 0.08, 0.20)
    reopen_prob: float = 0.08
    switch_share: float = 0.15
    poor_welcome_agent: int = 6  # agent_07
    poor_welcome_wait_ratio: float = 4.0
    inconsistent_agent: int = 10  # agent_11
    inconsistent_wait_median: float = 0.35
    inconsistent_wait_sd: float = 1.2
    noise_sd: float = 0.15
    inconsistent_noise_sd: float = 0.7
    survey_base: float = 0.14
    survey_extremity: float = 0.15
    csat_share_orders: float = 0.55  # the rest NPS
    csat_share_tickets: float = 0.60  # the rest CES
    comment_share: float = 0.6
    review_base: float = 0.04
    review_extremity: float = 0.12
    bad_threshold: float = -0.25
    churn_after_bad: float = 0.45
    churn_otherwise: float = 0.04
    happy_threshold: float = 0.35
    happy_boost: float = 1.4
    boost_cap: float = 3.0
    loyalty_prob: float = 0.5

    def as_dict(self) -> dict[str, Any]:
        """The parameters as plain values (for ``truth.json``)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
