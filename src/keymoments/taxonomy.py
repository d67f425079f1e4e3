"""Stages and business key moments of event types: the workspace's taxonomy merged
over the packaged defaults, exact names first, then patterns in order.

>>> tax = resolve_taxonomy(Taxonomy())
>>> tax.lookup("order_placed"), tax.lookup("Resolve ticket"), tax.lookup("zzz")
(('purchase', 'purchase'), ('support', 'resolution'), (None, None))
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from ruamel.yaml import YAML

from .config.models import Taxonomy

__all__ = ["ResolvedTaxonomy", "resolve_taxonomy", "default_taxonomy", "PURCHASE_MOMENTS",
           "is_purchase_event", "purchase_event_sql"]

#: The key moment tags of a **purchase event**: an event the taxonomy tags ``purchase``
#: (``order_placed``, ``subscription_started``, the ``order|purchase|...`` pattern) or
#: ``repeat_purchase`` (an export's own repeat-purchase event). A journey of one of
#: ``outcomes.purchase_types`` is a purchase only when it holds one: its first is the
#: purchase (the ``repeat_purchase`` moment, the person's first purchase, the
#: ``repurchased`` outcome and the ``repeat_purchase`` metric read it). The stage is not
#: enough: stage ``purchase`` also marks ``checkout_started``, ``payment_failed``,
#: ``order_shipped`` and ``order_delivered``, which a journey of an order placed before
#: the export's window holds without a purchase in it; a review or a support ticket
#: about such an order is no purchase either.
PURCHASE_MOMENTS = ("purchase", "repeat_purchase")


def is_purchase_event(moment):
    """Whether an event is a purchase event (see :data:`PURCHASE_MOMENTS`), from its
    ``moment`` tag: a bool of a Python value, or a boolean Ibis expression of a
    column (NULL: false).

    >>> is_purchase_event("purchase"), is_purchase_event("post_purchase"), is_purchase_event(None)
    (True, False, False)
    """
    if moment is None or isinstance(moment, str):
        return moment in PURCHASE_MOMENTS
    return moment.isin(PURCHASE_MOMENTS).fill_null(False)


def purchase_event_sql(column: str) -> str:
    """The SQL condition that the ``moment`` column ``column`` marks a purchase event.

    >>> purchase_event_sql("e.moment")
    "e.moment IN ('purchase', 'repeat_purchase')"
    """
    return f"{column} IN ({', '.join(repr(m) for m in PURCHASE_MOMENTS)})"


@lru_cache(maxsize=1)
def default_taxonomy() -> Taxonomy:
    """The taxonomy that ships with keymoments (``defaults/taxonomy.yaml``)."""
    text = resources.files("keymoments").joinpath("defaults/taxonomy.yaml").read_text("utf-8")
    return Taxonomy.model_validate(YAML(typ="safe").load(text))


@dataclass(frozen=True)
class ResolvedTaxonomy:
    """Exact entries and compiled patterns, ready for lookups."""

    exact: dict[str, tuple[str | None, str | None]]
    patterns: list[tuple[re.Pattern[str], str | None, str | None]]

    def lookup(self, event_type: str) -> tuple[str | None, str | None]:
        """(stage, moment) of an event type; (None, None) when nothing matches."""
        if event_type in self.exact:
            return self.exact[event_type]
        for pattern, stage, moment in self.patterns:
            if pattern.search(event_type):
                return (stage, moment)
        return (None, None)


def resolve_taxonomy(user: Taxonomy) -> ResolvedTaxonomy:
    """Merge the user's taxonomy over the defaults (unless ``use_defaults`` is false)."""
    base = default_taxonomy() if user.use_defaults else Taxonomy(use_defaults=False)
    exact = {k: (v.stage, v.moment) for k, v in base.event_types.items()}
    exact.update({k: (v.stage, v.moment) for k, v in user.event_types.items()})
    patterns = [(re.compile(p.match, re.IGNORECASE), p.stage, p.moment)
                for p in [*user.patterns, *base.patterns]]
    return ResolvedTaxonomy(exact, patterns)
