"""Report sections for the insights (HTML report and demo): the headline metrics
with intervals, the root causes to fix first and the drivers of feedback. An
analysis the data cannot support (no surveys, too few journeys) is left out with a
line saying why, so the report never fails on it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import KeymomentsError

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["insight_sections"]


def _r(v):
    return round(v, 3) if isinstance(v, float) else v


def insight_sections(ws: Workspace) -> list[dict]:
    """Sections (title, text, rows) for :func:`keymoments.report.write_report`.

    >>> import tempfile, keymoments as km
    >>> ws = km.init(tempfile.mkdtemp())
    >>> [s["title"] for s in insight_sections(ws)][:1]
    ['CX metrics (95% intervals)']
    >>> ws.close()
    """
    from .drivers import drivers
    from .metrics import metrics
    from .root_causes import root_causes

    rows = []
    for name in ("csat", "nps", "ces", "fcr", "repeat_purchase", "conversion"):
        r = metrics(ws, name)
        o = r.meta["overall"]
        if r.meta["n"] and o.get("value") is not None:
            rows.append({"metric": name, "value": _r(o["value"]), "low": _r(o["low"]),
                         "high": _r(o["high"]), "n": o["n"],
                         "sample": "small (under 30)" if o["n"] < 30 else "",
                         "definition": r.meta["definition"]})
    sections = [{"title": "CX metrics (95% intervals)",
                 "text": "Wilson intervals for shares; NPS on -100..100 with its analytic interval.",
                 "rows": rows}]
    try:
        rc = root_causes(ws, limit=12)
        sections.append({
            "title": "Root causes to fix first",
            "text": ("Valley causes ranked by the feedback they go with: journeys x the "
                     "difference in mean feedback valence (-1..1) between the journeys with "
                     "the cause and the others of their type, estimated on the journeys with "
                     "feedback (n_outcome; under 5, or an interval wider than the scale: not "
                     "ranked). An association, not a proof of cause; causes may overlap. "
                     "Repeat contacts mark causes not fixed."),
            "rows": [{k: _r(x.get(k)) for k in ("rank", "cause", "journeys", "n_outcome", "effect",
                                                 "effect_low", "effect_high", "gain",
                                                 "repeat_contact_rate")}
                     for x in rc.to_pylist()]})
    except KeymomentsError as exc:
        sections.append({"title": "Root causes to fix first", "text": f"not computed: {exc}", "rows": []})
    try:
        d = drivers(ws, "feedback", n_boot=30)
        h = d.meta["heldout"]
        sections.append({
            "title": "Drivers of feedback",
            "text": (f"{d.meta['model']} on {d.meta['n']:,} journeys; held-out R2 {h['score']:.2f}; "
                     "effects with 95% bootstrap intervals."),
            "rows": [{k: _r(x[k]) for k in ("rank", "feature", "effect", "low", "high", "support")}
                     for x in d.to_pylist()[:12]]})
    except KeymomentsError as exc:
        sections.append({"title": "Drivers of feedback", "text": f"not computed: {exc}", "rows": []})
    return sections
