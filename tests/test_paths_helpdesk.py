"""Paths on the real help-desk log (../shared/data/helpdesk): directly-follows counts
and variants equal pm4py's on the same file, and the tickets' conformance to
"Insert ticket -> Assign seriousness -> Take in charge ticket -> Resolve ticket ->
Closed", checked against a plain-Python reading of the CSV."""

from __future__ import annotations

import csv
import io
import os
import re
import statistics
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

import pytest
from ruamel.yaml import YAML

import keymoments as km

pm4py = pytest.importorskip("pm4py")  # in the dev extra; the suite installs it
pd = pytest.importorskip("pandas")

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("KEYMOMENTS_SHARED_DATA", ROOT.parent / "shared" / "data"))
DESIGN = ["Insert ticket", "Assign seriousness", "Take in charge ticket", "Resolve ticket",
          "Closed"]


@pytest.fixture(scope="module")
def helpdesk(tmp_path_factory):
    guide = (ROOT / "docs" / "mapping.md").read_text(encoding="utf-8")
    spec = next(YAML(typ="safe").load(b)["sources"]["helpdesk"]
                for b in re.findall(r"```yaml\n(.*?)```", guide, flags=re.S)
                if "helpdesk:" in b)
    spec["path"] = str(DATA / "helpdesk/helpdesk.csv")
    buf = io.StringIO()
    YAML().dump({"name": "helpdesk", "sources": {"helpdesk": spec}}, buf)
    root = tmp_path_factory.mktemp("helpdesk")
    (root / "keymoments.yaml").write_text(buf.getvalue(), encoding="utf-8")
    ws = km.open(root)
    ws.ingest()
    ws.build()
    with open(DATA / "helpdesk/helpdesk.csv", newline="", encoding="utf-8") as fh:
        rows = [dict(r) for r in {tuple(r.items()) for r in csv.DictReader(fh)}]
    yield ws, rows
    ws.close()


def _cases(rows):
    """case -> [(time, activity)] in time order; and the cases with two events at the
    same instant (their order is arbitrary in any tool, so they are left out)."""
    by_case = defaultdict(list)
    for r in rows:
        by_case[r["case:concept:name"]].append((datetime.fromisoformat(r["time:timestamp"]),
                                                r["concept:name"]))
    tied = {c for c, evs in by_case.items() if len({t for t, _ in evs}) < len(evs)}
    return {c: sorted(evs) for c, evs in by_case.items() if c not in tied}, tied


def test_directly_follows_and_variants_equal_pm4py(helpdesk):
    ws, rows = helpdesk
    cases, tied = _cases(rows)
    assert 0 < len(tied) < 10
    df = pd.DataFrame([r for r in rows if r["case:concept:name"] not in tied])
    df["time:timestamp"] = pd.to_datetime(df["time:timestamp"], utc=True)
    # pm4py's own preparation sorts the events by case and time
    df = pm4py.format_dataframe(df, case_id="case:concept:name", activity_key="concept:name",
                                timestamp_key="time:timestamp")
    dfg, _, _ = pm4py.discover_dfg(df)
    ref_variants = pm4py.get_variants(df)
    keep = km.JourneyFilter(journey_type="issue_resolution", journey_keys=sorted(cases))
    pm = km.process_map(ws, filter=keep)
    assert {(e["source"], e["target"]): e["count"] for e in pm.edges.to_pylist()} == dict(dfg)
    got = {tuple(r["path"]): r["journeys"]
           for r in km.variants(ws, filter=keep, limit=None).variants.to_pylist()}
    assert got == {tuple(k): v for k, v in ref_variants.items()}
    assert sum(got.values()) == len(cases) > 4500


def _oracle(path):
    """First departure from the strict design (no optional or repeated step)."""
    for i, a in enumerate(path):
        if i >= len(DESIGN) or a != DESIGN[i]:
            kind = ("skipped" if a in DESIGN[i + 1:] else "loop_back" if a in DESIGN[:i]
                    else "detour")
            return kind, i, a, DESIGN[i - 1] if i else "(start)"
    if len(path) < len(DESIGN):
        return "incomplete", None, None, DESIGN[len(path) - 1] if path else "(start)"
    return "conforms", None, None, None


def test_conformance_to_the_designed_ticket_flow(helpdesk):
    ws, rows = helpdesk
    cases, tied = _cases(rows)
    c = km.conformance(ws, {"name": "ticket", "steps": DESIGN},
                       journey_keys=sorted(cases), journey_type="issue_resolution")
    want = Counter()
    then = defaultdict(list)
    for evs in cases.values():
        path = [a for _, a in evs]
        kind, i, a, after = _oracle(path)
        want[(kind, after, a)] += 1
        if i is not None:
            then[(kind, after, a)].append((evs[-1][0] - evs[i][0]).total_seconds())
    got = {(r["kind"], r["after"], r["activity"]): r for r in c.deviations.to_pylist()}
    assert {k: r["journeys"] for k, r in got.items()} == dict(want)
    for key, secs in then.items():
        assert got[key]["median_then_s"] == pytest.approx(statistics.median(secs)), key
    # most tickets skip the insert step: they start at "Assign seriousness"
    top = c.deviations.to_pylist()[0]
    assert (top["kind"], top["after"], top["activity"]) == ("skipped", "(start)",
                                                             "Assign seriousness")
    assert c.summary.meta["share_conforming"] == pytest.approx(
        want[("conforms", None, None)] / len(cases))


def test_a_misspelt_around_activity_is_an_error_naming_the_label(helpdesk):
    """'wait' is not the log's 'Wait': an error with the label, not an empty list."""
    ws, _ = helpdesk
    with pytest.raises(km.KeymomentsError, match="did you mean.*'Wait'"):
        km.variants(ws, around="wait")
    with pytest.raises(km.KeymomentsError, match="0 or more"):
        km.variants(ws, around="Wait", before=-1)
    assert len(km.variants(ws, around="Wait").variants) > 0
