"""The process map: the directly-follows graph of events (or stages, channels,
business moments) within journeys.

An edge ``a -> b`` counts the times an event labelled ``b`` came right after one
labelled ``a`` in the same journey (in journey order: time, then event id), with the
journeys it occurs in and the median, 90th percentile and mean seconds between the
two. A node counts its events and journeys, the journeys that start and end at it,
and the valence of its events. It is one window (``lag``) and two group-bys, an Ibis
expression that runs on DuckDB and Spark.

>>> import pyarrow as pa, ibis
>>> je = ibis.memtable(pa.table({"journey_id": ["a", "a", "a", "b", "b"],
...     "seq": [0, 1, 2, 0, 1], "event_type": ["x", "y", "x", "x", "y"],
...     "ts": pa.array([0, 60, 90, 0, 30], pa.timestamp("s", "UTC")),
...     "valence": [None, -0.5, 0.5, None, -0.1]}))
>>> e = edges_expr(je).order_by("source").to_pyarrow().to_pylist()
>>> [(r["source"], r["target"], r["count"], r["journeys"], r["median_s"]) for r in e]
[('x', 'y', 2, 2, 45.0), ('y', 'x', 1, 1, 30.0)]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import ibis

from ..display import duration
from ..engine.expr import epoch_seconds
from ..errors import KeymomentsError
from ..results import Result
from .selection import JourneyFilter, Level, activity, journey_events

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["ProcessMap", "process_map", "labelled", "dfg_counts", "edges_expr", "nodes_expr"]

LEVELS = ("event_type", "stage", "channel", "moment")


@dataclass(frozen=True)
class ProcessMap:
    """Nodes and edges of a process map, each a :class:`~keymoments.results.Result`."""

    nodes: Result
    edges: Result

    def to_dot(self) -> str:
        """The map in Graphviz DOT (edge labels: count and median duration)."""
        lines = ["digraph process_map {", "  rankdir=LR;"]
        q = _dot_quoted
        for n in self.nodes.to_pylist():
            label = f"{n['activity']} ({n['events']})"
            lines.append(f"  {q(n['activity'])} [label={q(label)}];")
        for e in self.edges.to_pylist():
            label = f"{e['count']} / {duration(e['median_s'])}"
            lines.append(f"  {q(e['source'])} -> {q(e['target'])} [label={q(label)}];")
        return "\n".join([*lines, "}"]) + "\n"


def _dot_quoted(value: object) -> str:
    r"""``value`` as a DOT double-quoted string. The backslash is escaped first: left
    alone, a label ending in one (``back\slash\``) escapes its closing quote and the file
    does not parse, and one before a letter reads as a Graphviz escape (``\N``, ``\l``). A
    line break is written ``\n``, which Graphviz draws as one, so each statement keeps a line.

    >>> print(_dot_quoted('say "hi"\\'), _dot_quoted("two\nlines"))
    "say \"hi\"\\" "two\nlines"
    """
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text.replace("\r\n", "\\n").replace("\n", "\\n") + '"'


def labelled(je, level: Level = "event_type", collapse: bool = False):
    """``journey_id, seq, ts, activity, valence`` with the previous and next event's
    activity and time in the journey; ``collapse`` merges runs of the same label
    (a chat of five messages becomes one chat, at its first event's time and
    valence). ``prev_ts`` is when the previous step ended: with runs collapsed, the
    time of the previous run's last event, so an edge times the hand-off (last chat
    message to resolution), not the run before it."""
    if level not in LEVELS:
        raise KeymomentsError(f"unknown level {level!r}: use {', '.join(LEVELS)}")
    t = je.select("journey_id", "seq", "ts", "valence", activity=activity(je, level))
    if collapse:
        w = ibis.window(group_by=t.journey_id, order_by=[t.seq])
        t = t.mutate(_p=t.activity.lag().over(w), _n=t.activity.lead().over(w))
        starts = t._p.isnull() | (t._p != t.activity)
        ends = t._n.isnull() | (t._n != t.activity)
        t = t.filter(starts | ends).mutate(_s=starts, _e=ends)
        w = ibis.window(group_by=t.journey_id, order_by=[t.seq])
        # a run's first row takes the time its run ends: its own, or the next kept
        # row's (the run's last event)
        t = t.mutate(_end=ibis.cases((t._e, t.ts), else_=t.ts.lead().over(w)))
        t = t.filter(t._s).drop("_p", "_n", "_s", "_e")
    else:
        t = t.mutate(_end=t.ts)
    w = ibis.window(group_by=t.journey_id, order_by=[t.seq])
    # lag/lead are NULL at the ends, whatever the column's own nullability
    label_t, ts_t = t.activity.type().copy(nullable=True), t.ts.type().copy(nullable=True)
    return t.mutate(prev=t.activity.lag().over(w).cast(label_t),
                    prev_ts=t._end.lag().over(w).cast(ts_t),
                    next=t.activity.lead().over(w).cast(label_t),
                    first=ibis.row_number().over(w) == 0).drop("_end")


def dfg_counts(je, level: Level = "event_type"):
    """Only the directly-follows counts, ``source, target, count`` (what a
    process-mining library's DFG holds)."""
    t = je.select("journey_id", "seq", activity=activity(je, level))
    w = ibis.window(group_by=t.journey_id, order_by=[t.seq])
    t = t.mutate(prev=t.activity.lag().over(w))
    t = t.filter(t.prev.notnull())
    return t.group_by(source=t.prev, target=t.activity).aggregate(count=t.count())


def edges_expr(je, level: Level = "event_type", collapse: bool = False, *, _labelled=None):
    """Directly-follows edges: ``source, target, count, journeys, median_s, p90_s, mean_s``."""
    t = _labelled if _labelled is not None else labelled(je, level, collapse)
    pairs = t.filter(~t.first)
    secs = (epoch_seconds(t.ts) - epoch_seconds(t.prev_ts)).cast("float64")
    pairs = pairs.mutate(_s=secs)
    return pairs.group_by(source=pairs.prev, target=pairs.activity).aggregate(
        count=pairs.count(), journeys=pairs.journey_id.nunique(),
        median_s=pairs._s.quantile(0.5), p90_s=pairs._s.quantile(0.9), mean_s=pairs._s.mean())


def nodes_expr(je, level: Level = "event_type", collapse: bool = False, *, _labelled=None):
    """Nodes: ``activity, events, journeys, starts, ends, n_valenced, mean_valence,
    share_negative, share_positive``."""
    t = _labelled if _labelled is not None else labelled(je, level, collapse)
    v = t.valence
    return t.group_by("activity").aggregate(
        events=t.count(), journeys=t.journey_id.nunique(),
        starts=t.first.cast("int64").sum(), ends=t.next.isnull().cast("int64").sum(),
        n_valenced=v.count(), mean_valence=v.mean(),
        share_negative=(v < 0).cast("float64").mean(where=v.notnull()),
        share_positive=(v > 0).cast("float64").mean(where=v.notnull()))


def process_map(ws: Workspace, *, level: Level = "event_type", filter: JourneyFilter | None = None,
                min_edge_count: int = 1, top_variants: int | None = None,
                collapse: bool = False, **filters) -> ProcessMap:
    """The directly-follows graph of the selected journeys.

    ``filter`` (or its fields as keywords: ``journey_type=``, ``outcome="detractor"``,
    ``segment=``...) selects journeys; ``top_variants`` keeps only the journeys of the
    N most frequent paths and ``min_edge_count`` drops rarer edges (noise pruning).

    >>> import tempfile, keymoments as km
    >>> ws = km.init(tempfile.mkdtemp())
    >>> pm = km.process_map(ws, journey_type="purchase", min_edge_count=2)
    >>> len(pm.edges), pm.edges.meta["filters"]
    (0, {'journey_type': 'purchase'})
    >>> ws.close()
    """
    flt = _filter(filter, filters)
    je = journey_events(ws, flt)
    if top_variants is not None:
        from .variant import top_variant_journeys

        keep = top_variant_journeys(je, level, top_variants, collapse).select(_k="journey_id")
        je = je.semi_join(keep, je.journey_id == keep._k)
    t = labelled(je, level, collapse)
    edges = edges_expr(je, _labelled=t)
    edges = edges.filter(edges["count"] >= min_edge_count).order_by(
        [ibis.desc("count"), "source", "target"])
    nodes = nodes_expr(je, _labelled=t).order_by([ibis.desc("events"), "activity"])
    edges_t, nodes_t = edges.to_pyarrow(), nodes.to_pyarrow()
    n_journeys = int(nodes_t.column("starts").to_numpy().sum()) if nodes_t.num_rows else 0
    meta = {"level": level, "filters": flt.active(), "collapse": collapse,
            "min_edge_count": min_edge_count, "top_variants": top_variants,
            "n_journeys": n_journeys,
            "n_events": int(nodes_t.column("events").to_numpy().sum()) if nodes_t.num_rows else 0,
            "method": "directly-follows pairs within journeys in journey order (time, event id); "
                      "durations are seconds between the two events"}
    return ProcessMap(Result(nodes_t, dict(meta)), Result(edges_t, dict(meta)))


def _filter(flt: JourneyFilter | None, filters: dict) -> JourneyFilter:
    if flt is not None and filters:
        raise KeymomentsError("give either filter= or filter keywords, not both")
    if flt is not None:
        return flt
    try:
        return JourneyFilter(**filters)
    except Exception as exc:  # pydantic's message names the field
        raise KeymomentsError(f"invalid journey filter: {exc}") from None
