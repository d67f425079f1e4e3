"""Render the workspace overview as one self-contained HTML file.

Jinja2 with autoescaping: values from the data (texts, names, reasons) are always
escaped. No script or style is fetched from elsewhere.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, select_autoescape
from markupsafe import Markup

from ..display import printable
from ..io import atomic_write_text

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["write_report", "report_context"]


def _rows(ws: Workspace, sql: str) -> list[dict[str, Any]]:
    return ws.con.execute(sql).to_arrow_table().to_pylist()


def report_context(ws: Workspace, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The figures the report shows (also usable as JSON)."""
    con = ws.con
    totals = con.execute("""
        SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM people),
               (SELECT count(*) FROM identifiers), (SELECT count(*) FROM quarantine),
               (SELECT min(ts) FROM events), (SELECT max(ts) FROM events)
    """).fetchone()
    # the rows still rejected, as `keymoments quarantine` lists them (not those whose
    # line has loaded since)
    quarantine = ws.quarantine(limit=QUARANTINE_SHOWN)
    fixed = quarantine.meta["loaded_since"]
    counts = dict(zip(["events", "people", "identifiers", "quarantined", "first", "last"], totals))
    counts["quarantined"] -= fixed
    return {
        "name": ws.config.name,
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "totals": {**counts, "quarantine_fixed": fixed},
        "loads": _rows(ws, """
            SELECT source, rows_read, rows_loaded, rows_updated, rows_quarantined,
                   rows_duplicate, events_loaded,
                   rows_read = rows_loaded + rows_quarantined + rows_duplicate AS adds_up,
                   count(*) OVER (PARTITION BY source) AS loads
            FROM loads
            QUALIFY row_number() OVER (PARTITION BY source ORDER BY started_at DESC) = 1
            ORDER BY source"""),
        "by_channel": _rows(ws, """
            SELECT coalesce(channel, '(none)') AS channel, count(*) AS events,
                   count(DISTINCT person_id) AS people
            FROM events GROUP BY ALL ORDER BY events DESC"""),
        "by_stage": _rows(ws, """
            SELECT coalesce(stage, '(unmapped)') AS stage, coalesce(moment, '') AS moment,
                   count(*) AS events, round(avg((rating - rating_min) / nullif(rating_max - rating_min, 0)), 3)
                   AS mean_rating_01
            FROM events GROUP BY ALL ORDER BY events DESC"""),
        "stitching": _rows(ws, """
            SELECT n_identifiers AS identifiers_per_person, count(*) AS people
            FROM people GROUP BY ALL ORDER BY 1"""),
        "quarantine": quarantine.to_pylist(),
        "extra": extra or {},
        "labels": LABELS,
    }


#: the open quarantine entries the report lists (``keymoments quarantine`` lists all)
QUARANTINE_SHOWN = 50


#: column names of the report's tables as a reader reads them (others are shown as is)
LABELS = {
    "first_v": "first impression", "peak_v": "peak", "valley_v": "valley",
    "end_v": "farewell", "mean_v": "mean valence", "trend_v": "valence trend per event",
    "mean_valence": "mean valence (-1 to 1)", "mean_remembered": "mean remembered (-1 to 1)",
    "share_negative": "share negative", "with_valence": "with a valence", "with_feedback": "journeys with feedback",
    "median_duration": "median duration (first to last event, feedback included)",
    "mean_events": "mean events", "share_switching": "share changing channel",
    "n_outcome": "journeys with feedback", "effect": "effect (valence)",
    "effect_low": "effect low", "effect_high": "effect high",
    "gain": "gain if fixed (journeys x lost valence)",
    "repeat_contact_rate": "repeat contact rate",
    "cv_score": "cross-validated score", "example_reason": "example reason",
    "importance": "importance (|effect| x spread)", "journey_type": "journey type",
}


#: values of the report's cells as a reader reads them (the remembered score's features)
VALUES = {k: v for k, v in LABELS.items() if k.endswith("_v")}


def cell(value: Any) -> tuple[str, bool]:
    """A value as shown in a table cell, and whether it is a number (right-aligned).

    >>> [cell(v) for v in (None, True, 1424, 0.1234, 12345.6, "peak_v", "page_view")]
    [('', False), ('yes', False), ('1,424', True), ('0.1234', True), ('12,346', True), \
('peak', False), ('page_view', False)]

    An undefined number (an interval that cannot be given) is an empty cell, as NULL:

    >>> cell(float("nan"))
    ('', False)
    """
    if value is None or (isinstance(value, float) and value != value):
        return "", False
    if isinstance(value, bool):
        return ("yes" if value else "no"), False
    if isinstance(value, int):
        return f"{value:,}", True
    if isinstance(value, float):
        return (f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"), True
    return VALUES.get(str(value), str(value)), False


#: a text longer than this is cut in the page (the command line and the API give it whole)
SHOWN_CHARS = 300
#: a text with a word longer than this may break anywhere (else its column is as wide)
LONG_WORD = 30
_LONG_WORD = re.compile(r"\S{%d}" % (LONG_WORD + 1))


def shown(value: Any) -> Any:
    r"""What ``{{ ... }}`` writes of a value (before escaping): a text with the
    characters that would change how the page reads (right-to-left overrides, terminal
    controls) written out as ``\u202e``, cut at :data:`SHOWN_CHARS` (a 2 MB raw row
    would make the page 40 MB); one with a word longer than :data:`LONG_WORD` is
    escaped here, in a span that may break anywhere (not for attribute values).

    >>> shown("\u202eweiv_tcudorp"), shown(7)
    ('\\u202eweiv_tcudorp', 7)
    >>> shown("<" * 400)[-42:]
    Markup('&lt;&lt;&lt;… (cut: 400 characters)</span>')
    """
    if not isinstance(value, str) or isinstance(value, Markup):
        return value
    value = printable(value)
    if len(value) > SHOWN_CHARS:
        value = f"{value[:SHOWN_CHARS]}… (cut: {len(value):,} characters)"
    if _LONG_WORD.search(value):
        return Markup('<span class="long">{}</span>').format(value)
    return value


def write_report(ws: Workspace, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write the report to ``path`` atomically and return the path."""
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True),
                      finalize=shown)
    env.globals["cell"] = cell
    template = env.from_string(
        resources.files("keymoments").joinpath("report/report.html").read_text("utf-8"))
    html = template.render(**report_context(ws, extra))
    path = Path(path)
    atomic_write_text(path, html)
    return path
