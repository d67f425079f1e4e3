"""Paths: how journeys really run. The process map, variants and paths, the journey
as designed against the journeys as they ran, channel switching, the consistency of
the experience across agents, teams, channels and languages, and event-log export
for process-mining tools.

The functions here are the public API (``km.process_map(ws, ...)``); each loads its
module (and the engine) on first call, so importing keymoments stays light.

>>> JourneyFilter(outcome="detractor").active()
{'outcome': 'detractor'}
"""

from __future__ import annotations

from .filters import JourneyFilter

__all__ = ["JourneyFilter", "channel_switching", "conformance", "consistency", "export_log",
           "process_map", "variants"]


def process_map(ws, **options):
    """The directly-follows graph of the selected journeys: nodes (events, journeys,
    starts, ends, valence) and edges (count, journeys, median/p90/mean seconds).
    Options: ``level``, ``filter`` or filter keywords, ``min_edge_count``,
    ``top_variants``, ``collapse``; see :func:`keymoments.paths.dfg.process_map`."""
    from .dfg import process_map as run

    return run(ws, **options)


def variants(ws, **options):
    """The distinct paths with counts, shares and outcomes, or the paths before and after
    an activity (``around=``), plus Sankey flows; see
    :func:`keymoments.paths.variant.variants`."""
    from .variant import variants as run

    return run(ws, **options)


def conformance(ws, design, **options):
    """The selected journeys against a designed journey: share that follow it, where the
    others leave it, outcomes and time after; see
    :func:`keymoments.paths.deviation.conformance`."""
    from .deviation import conformance as run

    return run(ws, design, **options)


def channel_switching(ws, **options):
    """Channel transitions within journeys, switch rate by type, lost context across
    contacts, what precedes a switch, and a held-out switch model; see
    :func:`keymoments.paths.switching.channel_switching`."""
    from .switching import channel_switching as run

    return run(ws, **options)


def consistency(ws, **options):
    """Variation of welcome, peak and farewell valence by agent, team, channel and
    language, with shrinkage and named outliers; see
    :func:`keymoments.paths.spread.consistency`."""
    from .spread import consistency as run

    return run(ws, **options)


def export_log(ws, path, **options):
    """Write the selected journeys as an XES or CSV event log; see
    :func:`keymoments.paths.export.export_log`."""
    from .export import export_log as run

    return run(ws, path, **options)
