"""Variants and paths: the distinct paths journeys take, with counts and outcomes;
the paths leading to and away from any event; Sankey-ready flows.

A journey's path is its labels in journey order, joined by an ordered aggregate
(``group_concat(... ORDER BY seq)``: without the ORDER BY an engine may join them in
any order). Variants are the distinct paths, counted with one more group-by.

>>> split_path("a\\x1fb\\x1fa")
['a', 'b', 'a']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import ibis
import pyarrow as pa

from ..errors import KeymomentsError
from ..results import Result
from .dfg import _filter, labelled
from .selection import JourneyFilter, Level, activity, journey_events, select_journeys

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["Variants", "variants", "journey_paths", "variant_counts", "ordered_concat", "top_variant_journeys", "split_path", "SEP"]

#: Separator of labels inside a path key (the ASCII unit separator, never in a name).
SEP = "\x1f"
END = "(end)"
START = "(start)"


def split_path(key: str | None) -> list[str]:
    """The labels of a path key."""
    return key.split(SEP) if key else []


def journey_paths(je, level: Level = "event_type", collapse: bool = False):
    """``journey_id, path, n_events``: each journey's path key (no window needed
    unless runs are collapsed)."""
    if collapse:
        t = labelled(je, level, collapse)
    else:
        t = je.select("journey_id", "seq", activity=activity(je, level))
    return t.group_by("journey_id").aggregate(path=ordered_concat(t.activity, t.seq),
                                              n_events=t.count())


def ordered_concat(label, order, where=None):
    """The labels joined by :data:`SEP` in ``order``: an ordered ``group_concat``
    (``string_agg(... ORDER BY ...)``). Engines whose Ibis compiler cannot order an
    aggregate (PySpark) get the sorted array of ``(order, label)`` pairs instead."""
    try:
        engine = label._find_backend(use_default=False).name
    except Exception:  # an unbound expression: the portable default
        engine = None
    if engine != "pyspark":
        return label.group_concat(SEP, where=where, order_by=order)
    pair = ibis.struct({"k": order, "v": label})
    if where is not None:
        pair = ibis.cases((where, pair), else_=ibis.null().cast(pair.type()))
    arr = pair.collect().sort()
    joined = arr.map(lambda x: x.v).join(SEP)
    return ibis.cases((arr.length() > 0, joined), else_=ibis.null().cast("string"))


def variant_counts(je, level: Level = "event_type"):
    """Only the variants and their journey counts, ``path, journeys``."""
    p = journey_paths(je, level)
    return p.group_by("path").aggregate(journeys=p.count())


def top_variant_journeys(je, level: Level, n: int, collapse: bool = False):
    """The journeys whose path is among the ``n`` most frequent (ties: by path)."""
    p = journey_paths(je, level, collapse)
    top = (p.group_by("path").aggregate(_n=p.count())
           .order_by([ibis.desc("_n"), "path"]).limit(n).select(_p="path"))
    return p.semi_join(top, p.path == top._p).select("journey_id")


@dataclass(frozen=True)
class Variants:
    """The variants (``variants``) and their Sankey flows (``flows``)."""

    variants: Result
    flows: Result


def _outcomes(j):
    return dict(
        journeys=j.count(),
        mean_outcome=j.outcome_valence.mean(),
        n_feedback=j.outcome_valence.count(),
        share_negative_outcome=(j.outcome_valence < 0).cast("float64").mean(
            where=j.outcome_valence.notnull()),
        share_completed=(j.status == "completed").cast("float64").mean(),
        mean_remembered=j.remembered.mean(),
        median_duration_s=j.duration_s.quantile(0.5),
        example=j.journey_id.min(),
    )


def variants(ws: Workspace, *, level: Level = "event_type", filter: JourneyFilter | None = None,
             around: str | None = None, before: int = 3, after: int = 3, limit: int | None = 100,
             depth: int = 6, collapse: bool = False, flows: bool = True,
             **filters) -> Variants:
    """The distinct paths of the selected journeys, most frequent first, with their
    share and outcomes; with ``around=`` an activity, the ``before`` labels leading to
    its first occurrence in each journey and the ``after`` labels following it
    (``(start)``/``(end)`` where the journey starts or ends). ``flows`` holds the
    Sankey links of the first ``depth`` steps (or the steps around the activity);
    ``flows=False`` skips them (one query fewer).

    >>> import tempfile, keymoments as km
    >>> ws = km.init(tempfile.mkdtemp())
    >>> v = km.variants(ws, around="payment_failed")
    >>> len(v.variants), v.variants.meta["around"]
    (0, 'payment_failed')
    >>> ws.close()
    """
    if before < 0 or after < 0:
        raise KeymomentsError(f"before and after count steps: 0 or more (not {before}, {after})")
    flt = _filter(filter, filters)
    je = journey_events(ws, flt)
    t = labelled(je, level, collapse)
    j = select_journeys(ws, flt).select("journey_id", "outcome_valence", "status", "remembered",
                                        "duration_s")
    if around is None:
        paths = journey_paths(je, level, collapse)
        flow_src = t.mutate(pos=ibis.row_number().over(
            ibis.window(group_by=t.journey_id, order_by=[t.seq])).cast("int64"))
        flow_src = flow_src.filter(flow_src.pos < depth)
        keys = ["path"]
    else:
        first = t.filter(t.activity == around).group_by(_a="journey_id").aggregate(
            _at=t.seq.min())
        w = t.join(first, t.journey_id == first._a).drop("_a")
        w = w.mutate(pos=w.seq - w._at)
        flow_src = w.filter((w.pos >= -before) & (w.pos <= after))
        bw = flow_src
        paths = bw.group_by("journey_id").aggregate(
            before=ordered_concat(bw.activity, bw.seq, where=bw.pos < 0),
            after=ordered_concat(bw.activity, bw.seq, where=bw.pos > 0),
            _starts=bw.first.any(), _ends=bw.next.isnull().any())
        b, a = paths.before.fill_null(""), paths.after.fill_null("")
        paths = paths.mutate(
            before=ibis.cases((paths._starts & (b != ""), START + SEP + b),
                              (paths._starts, START), else_=b),
            after=ibis.cases((paths._ends & (a != ""), a + SEP + END),
                             (paths._ends, END), else_=a),
        ).drop("_starts", "_ends")
        keys = ["before", "after"]
    pj = paths.join(j, paths.journey_id == j.journey_id)
    var = pj.group_by(keys).aggregate(**_outcomes(pj))
    total = var.journeys.sum().over(ibis.window())
    var = var.mutate(share=var.journeys.cast("float64") / total)
    table = var.order_by([ibis.desc("journeys"), *keys]).to_pyarrow()
    n_variants = table.num_rows
    if around is not None and not n_variants:
        _unknown_activity(t, around, level)
    n_journeys = int(table.column("journeys").to_numpy().sum()) if n_variants else 0
    if limit is not None:
        table = table.slice(0, limit)
    table = _with_lists(table, keys, around)
    meta = {"level": level, "filters": flt.active(), "around": around, "collapse": collapse,
            "n_variants": n_variants, "limit": limit, "n_journeys": n_journeys,
            "method": "distinct ordered paths (group_concat ORDER BY seq); outcome = first feedback "
                      "valence; share of the selected journeys"}
    if around is not None:
        meta.update(before=before, after=after)
    links = _flows(flow_src, around is not None) if flows else _flows_schema().empty_table()
    return Variants(Result(table, meta), Result(links, {"level": level, "around": around,
                                                         "depth": depth if around is None else None,
                                                         "filters": flt.active()}))


def _unknown_activity(t, around: str, level: str) -> None:
    """The error for an ``around`` activity no selected journey has, naming the
    closest labels there (the match is exact: 'wait' is not 'Wait'); none when no
    journey is selected."""
    import difflib

    labels = t.group_by("activity").aggregate(n=t.count()).order_by(ibis.desc("n")).limit(500)
    known = [x for x in labels.to_pyarrow().column("activity").to_pylist() if x is not None]
    if not known:  # no journeys selected at all: an empty answer, as elsewhere
        return
    close = difflib.get_close_matches(around, known, n=3, cutoff=0.6)
    close += [k for k in known if k.lower() == around.lower() and k not in close]
    hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
    raise KeymomentsError(f"no selected journey has the {level} {around!r} to look around: "
                          f"{hint}(the most frequent: {', '.join(known[:8]) or 'none'})")


def _with_lists(table: pa.Table, keys: list[str], around: str | None) -> pa.Table:
    """Paths as lists of labels (what a client reads), replacing the internal keys."""
    for k in keys:
        lists = pa.array([split_path(x) for x in table.column(k).to_pylist()],
                         pa.list_(pa.string()))
        table = table.set_column(table.column_names.index(k), k, lists)
    if around is None:
        table = table.append_column("length", pa.array(
            [len(p) for p in table.column("path").to_pylist()], pa.int64()))
    return table


def _flows_schema() -> pa.Schema:
    return pa.schema([("step", pa.int64()), ("source", pa.string()), ("target", pa.string()),
                      ("value", pa.int64()), ("source_id", pa.string()),
                      ("target_id", pa.string())])


def _flows(src, centred: bool) -> pa.Table:
    """Sankey links: from each step's label to the next step's (``(end)`` when the
    journey ends), counted in journeys. Nodes are named ``<step>:<label>`` so a
    Sankey keeps the steps apart."""
    w = ibis.window(group_by=src.journey_id, order_by=[src.seq])
    nxt = src.activity.lead().over(w)
    end_here = src.next.isnull()
    target = ibis.cases((nxt.notnull(), nxt), (end_here, END), else_=ibis.null().cast("string"))
    links = src.mutate(target=target).filter(lambda s: s.target.notnull())
    agg = links.group_by(step=links.pos, source=links.activity, target=links.target).aggregate(
        value=links.journey_id.nunique())
    table = agg.order_by(["step", ibis.desc("value"), "source", "target"]).to_pyarrow()
    steps = table.column("step").to_pylist()
    src_ids = [f"{s}:{a}" for s, a in zip(steps, table.column("source").to_pylist())]
    tgt_ids = [f"{s + 1}:{a}" for s, a in zip(steps, table.column("target").to_pylist())]
    table = table.append_column("source_id", pa.array(src_ids, pa.string()))
    return table.append_column("target_id", pa.array(tgt_ids, pa.string()))

