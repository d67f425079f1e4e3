"""Export a selection of journeys as an event log for process-mining tools: XES
(IEEE 1849) or CSV with the XES-style column names those tools expect.

One trace per journey (``concept:name`` = journey id, with its type, key, person
and status), one event per journey event in journey order: ``concept:name`` (the
activity at the chosen level), ``time:timestamp``, ``org:resource`` (the agent),
``lifecycle:transition`` (complete), and the channel, stage, language, valence and
event id. keymoments reads both back (``format: xes`` / ``csv`` sources).

>>> print(_attr("string", "concept:name", 'a "b" & <c>'))
<string key="concept:name" value="a &quot;b&quot; &amp; &lt;c&gt;"/>
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from xml.sax.saxutils import escape

import pyarrow as pa
import pyarrow.csv as pacsv

from ..errors import KeymomentsError
from ..io import atomic_open
from .dfg import _filter
from .selection import JourneyFilter, Level, activity, journey_events, select_journeys

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["export_log", "CSV_COLUMNS"]

#: Columns of the CSV event log, in order.
CSV_COLUMNS = ("case:concept:name", "concept:name", "time:timestamp", "org:resource",
               "lifecycle:transition", "channel", "stage", "language", "valence", "event_id",
               "case:journey_type", "case:journey_key", "case:person_id", "case:status")
_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<log xes.version="1849-2016" xes.features="nested-attributes" xmlns="http://www.xes-standard.org/">
  <extension name="Concept" prefix="concept" uri="http://www.xes-standard.org/concept.xesext"/>
  <extension name="Time" prefix="time" uri="http://www.xes-standard.org/time.xesext"/>
  <extension name="Organizational" prefix="org" uri="http://www.xes-standard.org/org.xesext"/>
  <extension name="Lifecycle" prefix="lifecycle" uri="http://www.xes-standard.org/lifecycle.xesext"/>
  <global scope="trace"><string key="concept:name" value="__INVALID__"/></global>
  <global scope="event"><string key="concept:name" value="__INVALID__"/>\
<date key="time:timestamp" value="1970-01-01T00:00:00.000+00:00"/></global>
  <classifier name="Activity" keys="concept:name"/>
  <string key="concept:name" value="keymoments journeys"/>
"""


#: characters XML 1.0 does not allow, even escaped (a control character in an agent's
#: name made the log unreadable): written as U+FFFD
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def _attr(kind: str, key: str, value) -> str:
    r"""One XES attribute, its key and value escaped.

    >>> print(_attr("string", "org:resource", 'a "b"\x0b<c>'))
    <string key="org:resource" value="a &quot;b&quot;�&lt;c&gt;"/>
    """
    q = {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}
    key, value = (_NOT_XML.sub("\ufffd", str(x)) for x in (key, value))
    return f'<{kind} key="{escape(key, q)}" value="{escape(value, q)}"/>'


def _iso(ts: datetime) -> str:
    ts = ts.astimezone(timezone.utc) if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}+00:00"


def _rows(ws: Workspace, flt: JourneyFilter, level: Level):
    je = journey_events(ws, flt)
    j = select_journeys(ws, flt).select(_j="journey_id", _type="journey_type", _key="journey_key",
                                        _person="person_id", _status="status")
    t = je.join(j, je.journey_id == j._j)
    t = t.select("journey_id", "seq", "ts", "agent", "channel", "stage", "language", "valence",
                 "event_id", "_type", "_key", "_person", "_status", _act=activity(t, level))
    return t.order_by(["journey_id", "seq"])


def export_log(ws: Workspace, path: str | Path, *, fmt: Literal["xes", "csv"] | None = None,
               level: Level = "event_type", filter: JourneyFilter | None = None,
               **filters) -> dict:
    """Write the selected journeys to ``path`` as an XES or CSV event log (``fmt``
    defaults to the file's extension); returns the counts written.

    >>> import tempfile, os, keymoments as km
    >>> ws = km.init(tempfile.mkdtemp())
    >>> km.export_log(ws, os.path.join(tempfile.mkdtemp(), "log.xes"))["traces"]
    0
    >>> ws.close()
    """
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".").lower()
    if fmt not in ("xes", "csv"):
        raise KeymomentsError(f"cannot export an event log as {fmt!r} ({path}): use a .xes or "
                              ".csv file name, or the format: --format xes|csv (Python: fmt='xes' / 'csv')")
    flt = _filter(filter, filters)
    batches = _rows(ws, flt, level).to_pyarrow_batches(chunk_size=100_000)
    if fmt == "csv":
        return _write_csv(batches, path)
    return _write_xes(batches, path)


def _write_xes(batches, path: Path) -> dict:
    traces = events = 0
    current = None
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(_HEAD)
        for batch in batches:
            for r in batch.to_pylist():
                if r["journey_id"] != current:
                    if current is not None:
                        fh.write("  </trace>\n")
                    current = r["journey_id"]
                    traces += 1
                    fh.write("  <trace>\n    " + _attr("string", "concept:name", current))
                    for key, col in (("journey_type", "_type"), ("journey_key", "_key"),
                                     ("person_id", "_person"), ("status", "_status")):
                        if r[col] is not None:
                            fh.write(_attr("string", key, r[col]))
                    fh.write("\n")
                events += 1
                parts = [_attr("string", "concept:name", r["_act"]),
                         _attr("date", "time:timestamp", _iso(r["ts"])),
                         _attr("string", "lifecycle:transition", "complete")]
                if r["agent"] is not None:
                    parts.append(_attr("string", "org:resource", r["agent"]))
                for key in ("channel", "stage", "language", "event_id"):
                    if r[key] is not None:
                        parts.append(_attr("string", key, r[key]))
                if r["valence"] is not None:
                    parts.append(_attr("float", "valence", repr(float(r["valence"]))))
                fh.write("    <event>" + "".join(parts) + "</event>\n")
        if current is not None:
            fh.write("  </trace>\n")
        fh.write("</log>\n")
    return {"path": str(path), "format": "xes", "traces": traces, "events": events}


def _write_csv(batches, path: Path) -> dict:
    traces: set[str] = set()
    events = 0
    writer = None
    schema = pa.schema([(c, pa.float64() if c == "valence" else pa.string()) for c in CSV_COLUMNS])
    with atomic_open(path, "wb") as fh:
        for batch in batches:
            d = batch.to_pydict()
            n = batch.num_rows
            events += n
            traces.update(d["journey_id"])
            cols = {
                "case:concept:name": d["journey_id"], "concept:name": d["_act"],
                "time:timestamp": [_iso(t) for t in d["ts"]], "org:resource": d["agent"],
                "lifecycle:transition": ["complete"] * n, "channel": d["channel"],
                "stage": d["stage"], "language": d["language"], "valence": d["valence"],
                "event_id": d["event_id"], "case:journey_type": d["_type"],
                "case:journey_key": d["_key"], "case:person_id": d["_person"],
                "case:status": d["_status"],
            }
            table = pa.table(cols, schema=schema)
            if writer is None:
                writer = pacsv.CSVWriter(fh, schema)
            writer.write_table(table)
        if writer is None:
            pacsv.write_csv(pa.table({c: pa.array([], f.type) for c, f in
                                      zip(CSV_COLUMNS, schema)}), fh)
        else:
            writer.close()
    return {"path": str(path), "format": "csv", "traces": len(traces), "events": events}

