"""Stored events re-tagged with the current taxonomy.

An event's business key moment (``events.moment``) comes from the taxonomy, and so
does its stage unless its source's mapping gives one. Both are written when the
event loads, with the taxonomy of that day. When the taxonomy changes (an export's
own ``sale`` tagged ``moment: purchase`` in ``keymoments.yaml``, or a release's
packaged defaults), the next load or build re-tags the stored events first
(:func:`retag`), so journeys, moments and metrics follow the config, and a keyed
source's re-load compares its rows with tags of the same taxonomy.

What is re-tagged, per source and event type:

* ``moment``: always (no mapping gives it);
* ``stage``: for the sources of ``keymoments.yaml`` whose mapping gives no stage
  (theirs is the taxonomy's). A stage the mapping gives (a ``stage`` field of the
  source or of one of its events, the posted events' ``stage``) is kept as loaded,
  also where a row left it empty and the taxonomy's was taken: the stored event
  cannot tell which it was. Such a source's stages change with a load into a new
  workspace.

The taxonomy the stored events carry is remembered by its fingerprint in
``km_meta`` (key ``taxonomy``); a workspace made before it re-tags once, by
comparing every stored tag.

>>> import tempfile, keymoments as km
>>> ws = km.init(tempfile.mkdtemp())
>>> retag(ws) is None  # nothing stored: the fingerprint is recorded
True
>>> ws.close()
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .config.models import SourceSpec
from .sql import literal
from .taxonomy import ResolvedTaxonomy, resolve_taxonomy

if TYPE_CHECKING:
    from .store.workspace import Workspace

__all__ = ["RetagReport", "TAXONOMY_KEY", "retag", "taxonomy_fingerprint"]

#: km_meta key: the fingerprint of the taxonomy the stored events carry
TAXONOMY_KEY = "taxonomy"

#: rows of changed tags per statement that lists them
_CHUNK = 500


@dataclass(frozen=True)
class RetagReport:
    """Stored events whose stage or moment changed with the taxonomy."""

    #: the events re-tagged
    events: int
    #: their event types, sorted
    event_types: tuple[str, ...]

    def summary(self) -> str:
        """One line for a terminal.

        >>> RetagReport(12, ("sale", "refund")).summary()
        're-tagged 12 stored events (event types sale, refund) with the current taxonomy'
        """
        shown = ", ".join(self.event_types[:8])
        more = f" and {len(self.event_types) - 8} more" if len(self.event_types) > 8 else ""
        return (f"re-tagged {self.events:,} stored events (event types {shown}{more}) "
                "with the current taxonomy")


def taxonomy_fingerprint(taxonomy: ResolvedTaxonomy) -> str:
    """A hash of what a taxonomy gives each event type: its exact entries and its
    patterns in order.

    >>> from keymoments.config.models import Taxonomy
    >>> a = resolve_taxonomy(Taxonomy())
    >>> b = resolve_taxonomy(Taxonomy.model_validate(
    ...     {"event_types": {"sale": {"stage": "purchase", "moment": "purchase"}}}))
    >>> taxonomy_fingerprint(a) == taxonomy_fingerprint(resolve_taxonomy(Taxonomy()))
    True
    >>> taxonomy_fingerprint(a) == taxonomy_fingerprint(b)
    False
    """
    data = {"exact": sorted([k, s, m] for k, (s, m) in taxonomy.exact.items()),
            "patterns": [[p.pattern, p.flags, s, m] for p, s, m in taxonomy.patterns]}
    return hashlib.sha256(json.dumps(data).encode()).hexdigest()[:32]


def gives_stage(spec: SourceSpec) -> bool:
    """Whether a source's mapping gives its events' stage (its own ``stage`` field or
    one of its events').

    >>> spec = SourceSpec.model_validate({"path": "a.csv", "event_type": "kind",
    ...                                   "ts": "at", "identifiers": {"customer_id": "c"}})
    >>> gives_stage(spec), gives_stage(spec.model_copy(update={"stage": {"value": "support"}}))
    (False, True)
    """
    return spec.stage is not None or any(e.stage is not None for e in spec.events or ())


def retag(ws: Workspace) -> RetagReport | None:
    """Re-tag the stored events with the workspace's taxonomy (see the module doc),
    in one transaction; None when they carry its tags already (a lookup in
    ``km_meta``, remembered for the workspace's connection)."""
    taxonomy = resolve_taxonomy(ws.config.taxonomy)
    fingerprint = taxonomy_fingerprint(taxonomy)
    if getattr(ws, "_tagged_with", None) == fingerprint:
        return None
    con = ws.con
    row = con.execute(f"SELECT value FROM km_meta WHERE key = {literal(TAXONOMY_KEY)}").fetchone()
    report = None
    if row is None or row[0] != fingerprint:
        report = _retag(ws, taxonomy, fingerprint)
    ws._tagged_with = fingerprint
    return report


def _retag(ws: Workspace, taxonomy: ResolvedTaxonomy, fingerprint: str) -> RetagReport | None:
    con = ws.con
    own_stage = {name for name, spec in ws.config.sources.items() if not gives_stage(spec)}
    changes = []
    for source, event_type, stage, moment, n in con.execute(
            "SELECT source, event_type, stage, moment, count(*) FROM events "
            "GROUP BY ALL ORDER BY ALL").fetchall():
        new_stage, new_moment = taxonomy.lookup(event_type)
        if source not in own_stage:
            new_stage = stage
        if (new_stage, new_moment) != (stage, moment):
            changes.append((source, event_type, stage, moment, new_stage, new_moment, n))
    con.execute("BEGIN TRANSACTION")
    try:
        for i in range(0, len(changes), _CHUNK):
            rows = ", ".join("(" + ", ".join(f"{literal(v)}::VARCHAR" for v in c[:6]) + ")"
                             for c in changes[i:i + _CHUNK])
            con.execute(f"""
                UPDATE events SET stage = c.new_stage, moment = c.new_moment
                FROM (VALUES {rows}) c(source, event_type, old_stage, old_moment,
                                        new_stage, new_moment)
                WHERE events.source = c.source AND events.event_type = c.event_type
                  AND events.stage IS NOT DISTINCT FROM c.old_stage
                  AND events.moment IS NOT DISTINCT FROM c.old_moment
            """)
        con.execute(f"DELETE FROM km_meta WHERE key = {literal(TAXONOMY_KEY)}")
        con.execute(f"INSERT INTO km_meta VALUES ({literal(TAXONOMY_KEY)}, {literal(fingerprint)})")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    if not changes:
        return None
    return RetagReport(sum(c[6] for c in changes), tuple(sorted({c[1] for c in changes})))
