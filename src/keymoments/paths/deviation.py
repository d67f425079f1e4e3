"""Designed vs actual: the share of journeys that follow the designed journey,
where the others leave it (detours, loops back, skipped steps, stopping early),
how long they then take, and how their outcomes differ.

Counting is engine work (Ibis): each journey's path key, the distinct variants, and
the aggregates by deviation. Only the distinct variants come to Python, where
:func:`~keymoments.paths.designed.check` judges each once; the verdicts go back to
the engine as a small table joined on the path key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import ibis
import pyarrow as pa

from ..config.paths import DesignedJourney
from ..engine.expr import epoch_seconds
from ..errors import KeymomentsError
from ..results import Result
from .designed import KINDS, check
from .dfg import _filter
from .selection import JourneyFilter, activity, journey_events, select_journeys
from .variant import ordered_concat, split_path

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["Conformance", "conformance", "wilson"]

IGNORED = "(ignored)"


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float | None, float | None]:
    """Wilson score interval of a share ``k / n``.

    >>> [round(x, 3) for x in wilson(8, 10)]
    [0.49, 0.943]
    """
    if n == 0:
        return None, None
    p = k / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Conformance:
    """``summary``: journeys per verdict kind; ``deviations``: where journeys leave the
    design (kind, the step reached, the activity there, the step expected) with
    outcomes and the time they then take; ``points``: the same by the step reached."""

    summary: Result
    deviations: Result
    points: Result


def _design(ws: Workspace, design: str | DesignedJourney | dict) -> DesignedJourney:
    if isinstance(design, DesignedJourney):
        return design
    if isinstance(design, dict):
        return DesignedJourney.model_validate(design)
    found = {d.name: d for d in ws.config.paths.designed}
    if design not in found:
        known = ", ".join(sorted(found)) or "none declared"
        raise KeymomentsError(f"no designed journey named {design!r} (in keymoments.yaml "
                              f"paths.designed: {known}); declare it there or pass the steps")
    return found[design]


def conformance(ws: Workspace, design: str | DesignedJourney | dict, *,
                filter: JourneyFilter | None = None, **filters) -> Conformance:
    """Check the selected journeys against ``design`` (a name from ``paths.designed``
    in keymoments.yaml, or a :class:`~keymoments.config.paths.DesignedJourney`).

    >>> import tempfile, keymoments as km
    >>> ws = km.init(tempfile.mkdtemp())
    >>> c = km.conformance(ws, {"name": "buy", "steps": ["checkout_started", "order_placed"]})
    >>> c.summary.meta["journeys"], c.summary.meta["share_conforming"]
    (0, None)
    >>> ws.close()
    """
    d = _design(ws, design)
    flt = _filter(filter, filters)
    if d.journey_types and flt.journey_type is None:
        flt = flt.model_copy(update={"journey_type": list(d.journey_types)})
    je = journey_events(ws, flt)
    label = activity(je, d.level)
    if d.ignore_stages:
        label = ibis.cases((je.stage.isin(d.ignore_stages).fill_null(False), IGNORED),
                           else_=label)
    t = je.select("journey_id", "seq", "ts", _a=label)
    paths = t.group_by("journey_id").aggregate(path=ordered_concat(t._a, t.seq))
    distinct = paths.group_by("path").aggregate(n=paths.count()).to_pyarrow()
    rows = []
    for key in distinct.column("path").to_pylist():
        v = check(d, split_path(key), {IGNORED})
        rows.append({"path": key, "kind": v.kind, "position": v.position, "activity": v.activity,
                     "after": v.after, "expected": v.expected, "steps_reached": v.steps_reached})
    verdicts = ibis.memtable(pa.Table.from_pylist(rows, schema=pa.schema([
        ("path", pa.string()), ("kind", pa.string()), ("position", pa.int64()),
        ("activity", pa.string()), ("after", pa.string()), ("expected", pa.string()),
        ("steps_reached", pa.int64())])))
    pv = paths.join(verdicts, "path").drop("path")
    at = je.select(_j="journey_id", _s="seq", _dev_ts="ts")
    pv = pv.left_join(at, (pv.journey_id == at._j) & (pv.position == at._s)).drop("_j", "_s")
    j = select_journeys(ws, flt).select("journey_id", "outcome_valence", "status", "duration_s",
                                        "end_ts", "remembered")
    x = pv.join(j, "journey_id")
    x = x.mutate(_after_s=(epoch_seconds(x.end_ts) - epoch_seconds(x._dev_ts)).cast("float64"))
    n_total = int(x.count().to_pyarrow().as_py())

    def agg(keys: list[str]) -> pa.Table:
        g = x.group_by(keys).aggregate(
            journeys=x.count(),
            mean_outcome=x.outcome_valence.mean(), sd_outcome=x.outcome_valence.std(),
            n_feedback=x.outcome_valence.count(),
            share_negative_outcome=(x.outcome_valence < 0).cast("float64").mean(
                where=x.outcome_valence.notnull()),
            share_completed=(x.status == "completed").cast("float64").mean(),
            mean_remembered=x.remembered.mean(),
            median_duration_s=x.duration_s.quantile(0.5),
            median_then_s=x._after_s.quantile(0.5), p90_then_s=x._after_s.quantile(0.9),
            example=x.journey_id.min())
        return g.order_by([ibis.desc("journeys"), *keys]).to_pyarrow()

    summary = agg(["kind"])
    base = next((r for r in summary.to_pylist() if r["kind"] == "conforms"), None)
    deviations = _versus(agg(["kind", "after", "activity", "expected"]), base, n_total)
    points = _points(x, base, n_total)
    counts = {r["kind"]: r["journeys"] for r in summary.to_pylist()}
    k = counts.get("conforms", 0)
    low, high = wilson(k, n_total)
    finished = int(x.filter(x.status.isin(["completed", "abandoned"])).count().to_pyarrow().as_py())
    k_fin = int(x.filter(x.status.isin(["completed", "abandoned"]) & (x.kind == "conforms"))
                .count().to_pyarrow().as_py())
    meta = {"design": d.name, "steps": [s.model_dump() for s in d.steps], "level": d.level,
            "filters": flt.active(), "journeys": n_total,
            "counts": {kind: counts.get(kind, 0) for kind in KINDS},
            "share_conforming": (k / n_total) if n_total else None,
            "share_conforming_ci95": [low, high],
            "share_conforming_finished": (k_fin / finished) if finished else None,
            "n_variants": distinct.num_rows,
            "method": "first deviation per journey (skipped step, loop back, detour, stopped "
                      "before the last required step); then_s = seconds from the deviation to "
                      "the journey's last event; outcome = first feedback valence; difference "
                      "vs conforming journeys with a 95% normal interval"}
    return Conformance(Result(summary, dict(meta)), Result(deviations, dict(meta)),
                       Result(points, dict(meta)))


def _points(x, base, n_total) -> pa.Table:
    dev = x.filter(x.kind != "conforms")
    g = dev.group_by("after").aggregate(
        journeys=dev.count(),
        mean_outcome=dev.outcome_valence.mean(), sd_outcome=dev.outcome_valence.std(),
        n_feedback=dev.outcome_valence.count(),
        share_completed=(dev.status == "completed").cast("float64").mean(),
        median_duration_s=dev.duration_s.quantile(0.5),
        median_then_s=dev._after_s.quantile(0.5))
    return _versus(g.order_by([ibis.desc("journeys"), "after"]).to_pyarrow(), base, n_total)


def _versus(table: pa.Table, base: dict | None, n_total: int) -> pa.Table:
    """Add each group's share of journeys and its outcome difference from conforming
    journeys, with a 95% normal interval."""
    rows = table.to_pylist()
    diff, lo, hi = [], [], []
    for r in rows:
        ok = (base is not None and r["n_feedback"] >= 2 and base["n_feedback"] >= 2
              and r["mean_outcome"] is not None and base["mean_outcome"] is not None)
        if not ok:
            diff.append(None), lo.append(None), hi.append(None)
            continue
        d = r["mean_outcome"] - base["mean_outcome"]
        se = math.sqrt((r["sd_outcome"] or 0) ** 2 / r["n_feedback"]
                       + (base["sd_outcome"] or 0) ** 2 / base["n_feedback"])
        diff.append(d), lo.append(d - 1.96 * se), hi.append(d + 1.96 * se)
    share = [r["journeys"] / n_total if n_total else None for r in rows]
    table = table.append_column("share", pa.array(share, pa.float64()))
    for name, col in (("outcome_vs_conforming", diff), ("outcome_vs_conforming_low", lo),
                      ("outcome_vs_conforming_high", hi)):
        table = table.append_column(name, pa.array(col, pa.float64()))
    return table
