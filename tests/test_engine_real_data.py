"""Journeys and moments on real exports (help-desk tickets, marketplace orders),
checked against figures computed independently from the files with Python's csv
module."""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from datetime import datetime, time, timedelta
from pathlib import Path

from zoneinfo import ZoneInfo

import numpy as np
import pytest
from ruamel.yaml import YAML

SP = ZoneInfo("America/Sao_Paulo")
UTC = ZoneInfo("UTC")  # convert before subtracting: same-zone subtraction ignores DST

ROOT = Path(__file__).resolve().parents[1]


def guide_workspace(make_workspace, shared_data, *names):
    guide = (ROOT / "docs" / "mapping.md").read_text(encoding="utf-8")
    sources = {}
    for block in re.findall(r"```yaml\n(.*?)```", guide, flags=re.S):
        for name, spec in (YAML(typ="safe").load(block).get("sources") or {}).items():
            if name in names:
                sources[name] = spec
    buf = io.StringIO()
    YAML().dump({"sources": sources}, buf)
    return make_workspace("name: real\n" + buf.getvalue().replace("../shared/data", str(shared_data)))


def test_helpdesk_ticket_journeys(make_workspace, shared_data):
    ws = guide_workspace(make_workspace, shared_data, "helpdesk")
    ws.ingest("helpdesk")
    ws.build()
    with open(shared_data / "helpdesk/helpdesk.csv", newline="", encoding="utf-8") as fh:
        rows = {tuple(r.items()) for r in csv.DictReader(fh)}  # exact duplicates count once
    by_case: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for r in map(dict, rows):
        by_case[r["case:concept:name"]].append(
            (datetime.fromisoformat(r["time:timestamp"]), r["concept:name"]))
    got = {r["journey_key"]: r for r in ws.journeys(journey_type="issue_resolution").to_pylist()}
    assert set(got) == set(by_case)
    ends = {"Closed", "Resolve ticket"}
    latest = max(t for evs in by_case.values() for t, _ in evs)  # as_of: the last event
    span = {c: (max(t for t, _ in evs) - min(t for t, _ in evs)).total_seconds()
            for c, evs in by_case.items()}
    has_end = {c: any(a in ends for _, a in evs) for c, evs in by_case.items()}
    # stalled: idle at least as long as the type usually takes, the p90 (linear) of the
    # completed tickets' durations (no stall_after in the default issue_resolution type)
    usual = float(np.percentile([span[c] for c in by_case if has_end[c]], 90))
    want: dict[str, str] = {}
    for case, evs in by_case.items():
        j = got[case]
        assert j["duration_s"] == span[case], case
        assert j["n_events"] == len(evs)
        assert j["has_end"] == has_end[case]
        idle = (latest - max(t for t, _ in evs)).total_seconds()
        want[case] = ("completed" if has_end[case] else "abandoned" if idle >= 30 * 86400
                      else "stalled" if idle >= usual else "open")
        assert j["status"] == want[case], (case, idle, usual)
    assert {"completed", "abandoned", "open"} <= set(want.values())


def test_marketplace_late_deliveries_are_valleys(make_workspace, shared_data):
    ws = guide_workspace(make_workspace, shared_data, "olist_orders")
    ws.ingest("olist_orders")
    ws.build()
    with open(shared_data / "olist-sample/olist_orders_dataset.csv", newline="") as fh:
        orders = list(csv.DictReader(fh))
    late = {}
    for o in orders:
        if not o["order_delivered_customer_date"].strip():
            continue
        # local São Paulo times (with its daylight saving then), as instants
        delivered = datetime.fromisoformat(o["order_delivered_customer_date"]).replace(tzinfo=SP).astimezone(UTC)
        # the promise is a day (whole_day in the guide): it ends at the next local midnight
        day = datetime.fromisoformat(o["order_estimated_delivery_date"]).date()
        promised = datetime.combine(day + timedelta(days=1), time(0), tzinfo=SP).astimezone(UTC)
        gap_days = (delivered - promised).total_seconds() / 86400
        if gap_days > 0:  # the default rule: any delay after the promised day
            late[o["order_id"]] = gap_days
    assert len(late) > 50
    valleys = {
        r["journey_key"]: r for r in ws.con.execute("""
            SELECT j.journey_key, m.event_type, m.valence, m.reason
            FROM moments m JOIN journeys j USING (journey_id)
            WHERE m.kind = 'valley' AND j.journey_type = 'purchase'""").to_arrow_table().to_pylist()
    }
    for order_id, gap in late.items():
        v = valleys[order_id]
        assert v["event_type"] == "order_delivered", order_id
        want = -min(1.0, 0.2 + 0.8 * gap / 7)  # late_start 0.2, -1 a week late
        assert v["valence"] == pytest.approx(want, abs=1e-6)
        secs = gap * 86400  # said in days from a day late, below that in hours, minutes
        amount, unit = ((gap, "days") if gap >= 1 else (secs / 3600, "hours") if secs >= 3600
                        else (secs / 60, "minutes") if secs >= 60 else (secs, "seconds"))
        said = re.search(r"delivered ([0-9.]+) (\w+) late", v["reason"])
        assert said and said[2] == unit, (amount, unit, v["reason"])
        assert float(said[1]) == pytest.approx(amount, abs=0.05 + 1e-9)  # one decimal


def test_marketplace_late_deliveries_after_the_review_are_valleys(make_workspace, shared_data):
    """Olist sends its review survey on the promised day, so a late order's review is
    mostly written before the parcel arrives: the late delivery is still the
    journey's valley (the moments span the whole journey), while the remembered
    score's inputs stop at the review."""
    ws = guide_workspace(make_workspace, shared_data, "olist_orders", "olist_reviews")
    ws.ingest("olist_orders")
    ws.ingest("olist_reviews")
    ws.build()
    with open(shared_data / "olist-sample/olist_orders_dataset.csv", newline="") as fh:
        orders = {o["order_id"]: o for o in csv.DictReader(fh)}
    with open(shared_data / "olist-sample/olist_order_reviews_dataset.csv", newline="",
              encoding="utf-8") as fh:
        reviews = [r for r in csv.DictReader(fh) if r["order_id"] in orders]
    first_answer: dict[str, datetime] = {}  # the guide times a review by its answer
    for r in reviews:
        t = datetime.fromisoformat(r["review_answer_timestamp"])
        first_answer[r["order_id"]] = min(t, first_answer.get(r["order_id"], t))
    late_after_review = set()
    for order_id, answered in first_answer.items():
        o = orders[order_id]
        if not o["order_delivered_customer_date"].strip():
            continue
        delivered = datetime.fromisoformat(o["order_delivered_customer_date"])
        day = datetime.fromisoformat(o["order_estimated_delivery_date"]).date()
        promised = datetime.combine(day + timedelta(days=1), time(0))  # both local times
        if (delivered - promised).total_seconds() > 0 and answered < delivered:
            late_after_review.add(order_id)
    assert len(late_after_review) >= 5
    rows = ws.con.execute("""
        SELECT j.journey_key, m.event_type, m.ts, j.outcome_ts, j.valley_v, m.valence
        FROM journeys j JOIN moments m ON m.journey_id = j.journey_id AND m.kind = 'valley'
        WHERE j.journey_type = 'purchase'""").fetchall()
    valleys = {r[0]: r[1:] for r in rows}
    for order_id in late_after_review:
        event_type, ts, outcome_ts, valley_v, valence = valleys[order_id]
        assert event_type == "order_delivered", order_id
        assert outcome_ts is not None and ts > outcome_ts  # after the answer
        # the remembered score's inputs saw only what came before the answer
        assert valley_v is None or valley_v > valence


def test_report_of_the_helpdesk_workspace(make_workspace, shared_data, tmp_path):
    """`keymoments report` on a real workspace: its journeys table against the file."""
    import statistics

    from click.testing import CliRunner

    from keymoments.cli import main
    from keymoments.display import duration

    ws = guide_workspace(make_workspace, shared_data, "helpdesk")
    ws.ingest("helpdesk")
    ws.build()
    root = ws.root
    ws.close()
    out = tmp_path / "r.html"
    result = CliRunner().invoke(main, ["-w", str(root), "report", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.html").as_uri() in result.stdout
    html = (tmp_path / "r.html").read_text(encoding="utf-8")

    with open(shared_data / "helpdesk/helpdesk.csv", newline="", encoding="utf-8") as fh:
        rows = {tuple(r.items()) for r in csv.DictReader(fh)}
    by_case: dict[str, list[datetime]] = defaultdict(list)
    ended = set()
    for r in map(dict, rows):
        by_case[r["case:concept:name"]].append(datetime.fromisoformat(r["time:timestamp"]))
        if r["concept:name"] in {"Closed", "Resolve ticket"}:
            ended.add(r["case:concept:name"])
    # the section's rows: type, status, journeys, median duration, ...
    table = html.split("Journeys by type and status</h2>", 1)[1].split("</table>", 1)[0]
    shown = [re.findall(r"<td[^>]*>(.*?)</td>", tr) for tr in re.findall(r"<tr>(.*?)</tr>", table)]
    shown = {(r[0], r[1]): r for r in shown if r}
    assert sum(int(r[2].replace(",", "")) for (t, _), r in shown.items()
               if t == "issue_resolution") == len(by_case)
    done = [(max(ts) - min(ts)).total_seconds() for case, ts in by_case.items() if case in ended]
    completed = shown[("issue_resolution", "completed")]
    assert completed[2] == f"{len(done):,}"
    assert completed[3] == duration(statistics.median(done))
    for section in ("Experience moments by stage", "Key moments by stage", "CX metrics",
                    "Remembered score", "Root causes to fix first", "Loads (the latest load"):
        assert section in html


def test_helpdesk_first_contact_resolution_counts_a_second_resolution_as_not_first(
        make_workspace, shared_data):
    """A ticket resolved twice was not fixed the first time: its FCR is 0, and its
    second resolution scores the rule's else valence, naming why. Oracle: the file."""
    import keymoments as km

    ws = guide_workspace(make_workspace, shared_data, "helpdesk")
    ws.ingest("helpdesk")
    ws.build()
    with open(shared_data / "helpdesk/helpdesk.csv", newline="", encoding="utf-8") as fh:
        rows = {tuple(r.items()) for r in csv.DictReader(fh)}
    acts: dict[str, list[str]] = defaultdict(list)
    for r in map(dict, rows):
        acts[r["case:concept:name"]].append(r["concept:name"])
    done = {c: a for c, a in acts.items() if {"Closed", "Resolve ticket"} & set(a)}
    first = [c for c, a in done.items()
             if "Require upgrade" not in a and a.count("Resolve ticket") <= 1]
    fcr = km.metrics(ws, "fcr").meta["overall"]
    assert fcr["n"] == len(done)
    assert fcr["value"] == pytest.approx(len(first) / len(done))
    twice = [c for c, a in acts.items() if a.count("Resolve ticket") > 1 and "Require upgrade"
             not in a]
    assert twice, "the help-desk log has tickets resolved twice: the rule is exercised"
    got = ws.con.execute(f"""
        SELECT je.journey_key, je.valence, je.valence_reason FROM journey_events je
        WHERE je.event_type = 'Resolve ticket' AND je.journey_key IN ({
            ", ".join(f"'{c}'" for c in twice)})
        ORDER BY je.journey_key, je.seq""").fetchall()
    by_case: dict[str, list[tuple]] = defaultdict(list)
    for case, valence, reason in got:
        by_case[case].append((valence, reason))
    for case in twice:
        (v1, r1), *later = by_case[case]
        assert v1 == pytest.approx(0.6) and r1 == "resolved on first contact", case
        for v, r in later:
            assert v == pytest.approx(0.2) and "an earlier resolution" in r, case


def test_person_shows_what_the_customer_wrote_in_full(make_workspace, shared_data):
    """The timeline's reasons quote a review's first words; `person` also prints the
    whole text with its rating (oracle: the review file)."""
    from click.testing import CliRunner

    from keymoments.cli import main

    ws = guide_workspace(make_workspace, shared_data, "olist_reviews")
    ws.ingest("olist_reviews")
    ws.build()
    with open(shared_data / "olist-sample/olist_order_reviews_dataset.csv", newline="",
              encoding="utf-8") as fh:
        longest = max(csv.DictReader(fh), key=lambda r: len(r["review_comment_message"]))
    text = longest["review_comment_message"].strip()
    assert len(text) > 150
    root = ws.root
    ws.close()
    out = CliRunner().invoke(main, ["-w", str(root), "person", f"order:{longest['order_id']}"])
    assert out.exit_code == 0, out.output
    said = out.stdout.split("what they wrote", 1)[1]
    cells = " ".join(line.split("│")[-2].strip() for line in said.splitlines() if "│" in line)
    assert " ".join(text.split()) in " ".join(cells.split())
    assert f"{float(longest['review_score']):g} (stars5)" in said
