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

The taxonomy each source's stored events carry is remembered by its fingerprint in
``km_meta`` (key ``taxonomy:<source>``, written by each load and re-tag); a source
without one (loaded before it was kept) is re-tagged once, by comparing its every
stored tag. A source with stored events that is no longer in ``keymoments.yaml`` is
left as it is: its mapping (does it give a stage?) is unknown, so it is re-tagged
when it is back.

>>> import tempfile, keymoments as km
>>> ws = km.init(tempfile.mkdtemp())
>>> retag(ws) is None  # nothing stored
True
>>> ws.close()
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .config.models import SourceSpec
from .sql import literal, registered, rollback
from .taxonomy import ResolvedTaxonomy, resolve_taxonomy

if TYPE_CHECKING:
    from .store.workspace import Workspace

__all__ = ["RetagReport", "TAXONOMY_KEY", "current_fingerprint", "gives_stage", "mark_tagged",
           "retag", "taxonomy_fingerprint"]

#: km_meta key prefix: ``taxonomy:<source>`` -> the fingerprint of the taxonomy the
#: source's stored events carry
TAXONOMY_KEY = "taxonomy:"


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
    ``km_meta``, remembered for the workspace's connection and config)."""
    from .live.events import API_SOURCE

    sources = tuple(sorted(ws.config.sources))
    cached = getattr(ws, "_tagged_with", None)
    if cached is not None and cached[0] is ws.config.taxonomy and cached[1] == sources:
        return None  # (every load and post asks: no taxonomy resolved, nothing read)
    taxonomy = resolve_taxonomy(ws.config.taxonomy)
    fingerprint = taxonomy_fingerprint(taxonomy)
    con = ws.con
    marks = dict(con.execute(
        f"SELECT substr(key, {len(TAXONOMY_KEY) + 1}), value FROM km_meta "
        f"WHERE starts_with(key, {literal(TAXONOMY_KEY)})").fetchall())
    retaggable = {*ws.config.sources, API_SOURCE}
    stale = [s for (s,) in con.execute("SELECT DISTINCT source FROM loads ORDER BY 1").fetchall()
             if s in retaggable and marks.get(s) != fingerprint]
    report = _retag(ws, taxonomy, fingerprint, stale) if stale else None
    # (the config's taxonomy object itself: a reloaded config is another object)
    ws._tagged_with = (ws.config.taxonomy, sources, fingerprint)
    return report


def mark_tagged(con, source: str, fingerprint: str) -> None:
    """Record that the stored events of ``source`` carry the tags of the taxonomy of
    ``fingerprint`` (a load does, in its transaction, for the events it wrote)."""
    key = literal(TAXONOMY_KEY + source)
    if con.execute(f"SELECT value FROM km_meta WHERE key = {key}").fetchone() != (fingerprint,):
        con.execute(f"DELETE FROM km_meta WHERE key = {key}")
        con.execute(f"INSERT INTO km_meta VALUES ({key}, {literal(fingerprint)})")


def current_fingerprint(ws: Workspace) -> str:
    """The fingerprint of the workspace's taxonomy (see :func:`taxonomy_fingerprint`):
    the one :func:`retag` remembered for this config, else computed."""
    cached = getattr(ws, "_tagged_with", None)
    if cached is not None and cached[0] is ws.config.taxonomy:
        return cached[2]
    return taxonomy_fingerprint(resolve_taxonomy(ws.config.taxonomy))


def _retag(ws: Workspace, taxonomy: ResolvedTaxonomy, fingerprint: str,
           stale: list[str]) -> RetagReport | None:
    import pyarrow as pa

    con = ws.con
    own_stage = {name for name, spec in ws.config.sources.items() if not gives_stage(spec)}
    wanted = set(stale)
    changes = []
    for source, event_type, stage, moment, n in con.execute(
            "SELECT source, event_type, stage, moment, count(*) FROM events "
            "GROUP BY ALL ORDER BY ALL").fetchall():
        if source not in wanted:
            continue
        new_stage, new_moment = taxonomy.lookup(event_type)
        if source not in own_stage:
            new_stage = stage
        if (new_stage, new_moment) != (stage, moment):
            changes.append((source, event_type, stage, moment, new_stage, new_moment, n))
    names = ("source", "event_type", "old_stage", "old_moment", "new_stage", "new_moment")
    table = pa.table({k: pa.array([c[i] for c in changes], pa.string())
                      for i, k in enumerate(names)})
    con.execute("BEGIN TRANSACTION")
    try:
        if changes:
            with registered(con, "_km_retag", table) as c:
                con.execute(f"""
                    UPDATE events SET stage = c.new_stage, moment = c.new_moment
                    FROM {c} c
                    WHERE events.source = c.source AND events.event_type = c.event_type
                      AND events.stage IS NOT DISTINCT FROM c.old_stage
                      AND events.moment IS NOT DISTINCT FROM c.old_moment
                """)
        for source in stale:
            mark_tagged(con, source, fingerprint)
        con.execute("COMMIT")
    except BaseException:
        rollback(con)
        raise
    if not changes:
        return None
    return RetagReport(sum(c[6] for c in changes), tuple(sorted({c[1] for c in changes})))
