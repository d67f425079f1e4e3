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

__all__ = ["ResolvedTaxonomy", "resolve_taxonomy", "default_taxonomy"]


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
