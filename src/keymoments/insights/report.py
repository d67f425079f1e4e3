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


def _percent(v: float) -> str:
    return f"{100 * v:.1f}%"


def _on_scale(scale: str):
    """How a metric's value reads on its scale (``meta["scale"]``).

    >>> [_on_scale(s)(v) for s, v in (("0..1", 0.7742), ("-100..100", 36.047), ("1..7", 5.0912),
    ...                               ("1..5", 4.104), ("hours", 2.5))]
    ['77.4%', '+36.0', '5.09 / 7', '4.10 / 5', '2h 30m']
    """
    from ..display import duration

    return {"0..1": _percent, "-100..100": lambda v: f"{v:+.1f}",
            "1..7": lambda v: f"{v:.2f} / 7", "1..5": lambda v: f"{v:.2f} / 5",
            "hours": lambda v: duration(v * 3600)}[scale]


#: how a mean metric's share reads next to it
_SHARE_WORDS = {"ces": "easy", "stars": "4-5 stars"}


def insight_sections(ws: Workspace) -> list[dict]:
    """Sections (title, text, rows) for :func:`keymoments.report.write_report`.

    >>> import tempfile, keymoments as km
    >>> ws = km.init(tempfile.mkdtemp())
    >>> [s["title"] for s in insight_sections(ws)][:1]
    ['CX metrics (95% intervals)']
    >>> ws.close()
    """
    from .drivers import drivers
    from .metrics import METRICS, metrics
    from .root_causes import root_causes

    rows, unmeasured = [], []
    names = ["csat", "nps", "ces", "stars", "fcr", "first_response", "resolution_time",
             "repeat_purchase", "conversion"]
    if ws.con.execute("SELECT EXISTS (SELECT 1 FROM events WHERE stage = 'churn')").fetchone()[0]:
        names.append("churn")  # (contractual: only where the export records cancellations)
    for name in names:
        try:
            r = metrics(ws, name)
        except KeymomentsError:  # (ticket times of journey types without an end: none)
            continue
        o = r.meta["overall"]
        # what may be wrong with a value (the small sample has its own column)
        notes = [w for w in r.meta["warnings"] if "rows have fewer than" not in w]
        if not r.meta["n"] and name in ("repeat_purchase", "conversion"):
            # (no answers of a scale is no fault; no purchase found among purchase journeys is)
            unmeasured += [f"{name}: {w}" for w in notes if "purchase event" in w]
        if r.meta["n"] and o.get("value") is not None:
            shown = _on_scale(r.meta["scale"])
            value = shown(o["value"])
            share = METRICS[name].share
            if share is not None and o.get(share[0]) is not None:
                value += f" ({_percent(o[share[0]])} {_SHARE_WORDS[name]})"
            rows.append({"metric": name, "value": value, "interval": f"{shown(o['low'])} to "
                         f"{shown(o['high'])}", "n": o["n"],
                         "sample": "small (under 30)" if o["n"] < 30 else "",
                         "definition": r.meta["definition"], "interval_method": r.meta["method"],
                         "warning": " ".join(notes)})
    if not any(r["warning"] for r in rows):  # (no column of nothing)
        for r in rows:
            del r["warning"]
    sections = [{"title": "CX metrics (95% intervals)",
                 "text": ("Shares in %, NPS on -100..100, CES as the mean answer of 1-7, star "
                          "ratings as the mean of 1-5, times as medians." +
                          "".join(f" Not measured: {u}." for u in unmeasured)),
                 "rows": rows}]
    try:
        rc = root_causes(ws, limit=12)
        sections.append({
            "title": "Root causes to fix first",
            "text": ("Valley causes ranked by the feedback they go with: journeys x the "
                     "difference in mean feedback valence (-1..1, so a difference of -2..2) "
                     "between the journeys with "
                     "the cause and the others of their type, estimated on the journeys with "
                     "feedback (n_outcome; under 5, or an interval wider than the scale: not "
                     "ranked). An association, not a proof of cause; causes may overlap. "
                     "Repeat contacts mark causes not fixed."),
            "rows": [{k: _r(x.get(k)) for k in ("rank", "journey_type", "cause", "journeys",
                                                 "n_outcome", "effect",
                                                 "effect_low", "effect_high", "gain",
                                                 "repeat_contact_rate")}
                     for x in rc.to_pylist()]})
        _add_warnings(sections[-1], [*rc.meta.get("warnings", []),
                                     *([rc.meta["hint"]] if rc.meta.get("hint") else [])])
    except KeymomentsError as exc:
        sections.append({"title": "Root causes to fix first", "text": f"not computed: {exc}", "rows": []})
    try:
        d = drivers(ws, "feedback")  # as `keymoments drivers` and km.drivers: the same intervals
        h = d.meta["heldout"]
        sections.append({
            "title": "Drivers of feedback",
            "text": (f"{d.meta['model']} on {d.meta['n']:,} journeys; held-out R2 {h['score']:.2f}; "
                     f"effects with 95% intervals from {d.meta['n_boot']} bootstrap "
                     "resamples."),
            "rows": [{k: _r(x[k]) for k in ("rank", "feature", "effect", "low", "high",
                                             "importance", "support")}
                     for x in d.to_pylist()[:12]]})
        _add_warnings(sections[-1], d.meta.get("warnings", []))
    except KeymomentsError as exc:
        sections.append({"title": "Drivers of feedback", "text": f"not computed: {exc}", "rows": []})
    return sections


def _add_warnings(section: dict, warnings: list[str]) -> None:
    """Say in the section what the analysis warned of (the command line prints it; a
    table without it reads as a finding).

    >>> s = {"text": "Ranked."}
    >>> _add_warnings(s, ["no journey has the outcome"]); s["text"]
    'Ranked. Warning: no journey has the outcome.'
    """
    for w in warnings:
        section["text"] += f" Warning: {w.rstrip('.')}."
