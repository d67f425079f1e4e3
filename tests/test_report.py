"""The HTML report: self-contained, every value from the data escaped."""

from __future__ import annotations

import re

CONFIG = """
name: "<b>shop</b>"
sources:
  events:
    path: events.csv
    identifiers: {customer_id: customer}
    event_type: event_type
    ts: ts
    channel: channel
    rating: {column: csat, scale: csat5}
"""

EVIL = "<script>alert('x')</script>"


def test_report_escapes_data_and_loads_nothing_from_elsewhere(make_workspace, tmp_path):
    from keymoments.report.sections import engine_sections
    from keymoments.report import write_report

    rows = "customer,ts,event_type,channel,csat\n" + "".join(
        f'c{i},2024-01-0{i}T10:00:00Z,"{EVIL}","{EVIL}",{1 + i % 5}\n' for i in range(1, 8))
    ws = make_workspace(CONFIG, {"events.csv": rows})
    ws.ingest("events")
    ws.build()
    path = write_report(ws, tmp_path / "report.html", extra={"sections": engine_sections(ws)})
    html = path.read_text(encoding="utf-8")
    assert EVIL not in html and "<b>shop</b>" not in html
    assert "&lt;script&gt;alert(" in html and "&lt;b&gt;shop&lt;/b&gt;" in html
    # self-contained: no script, stylesheet or image fetched from anywhere
    assert not re.search(r"<script|<link|src=|@import|https?://", html)
    # the figures shown are the store's
    assert ">7</b>events" in html.replace("\n", "").replace(" ", "")
    # read by a person: the valence scale is explained, tables say what a column is
    assert "from -1 (as bad as it gets) to 1" in html.replace("\n", " ")
    assert '<th scope="col" class="num">mean valence (-1 to 1)</th>' in html
    assert "mean_valence" not in html


def test_loads_show_the_latest_load_and_tables_scroll_on_a_phone(make_workspace, tmp_path):
    from keymoments.report import report_sections, write_report

    rows = "customer,ts,event_type,channel,csat\n" + "".join(
        f"c{i},2024-01-0{i}T10:00:00Z,order_placed,web,{1 + i % 5}\n" for i in range(1, 8))
    ws = make_workspace(CONFIG, {"events.csv": rows})
    ws.ingest("events")
    ws.ingest("events")  # the same file again: 7 read, 0 loaded, 7 duplicate
    ws.build()
    html = write_report(ws, tmp_path / "r.html",
                        extra={"sections": report_sections(ws)}).read_text(encoding="utf-8")
    loads = html.split("<h2>Loads", 1)[1].split("</table>", 1)[0]
    cells = re.findall(r'<td class="num">([^<]*)</td>', loads)
    # loads, read, loaded, updated (of loaded), quarantined, duplicate, events
    assert cells[:7] == ["2", "7", "0", "0", "0", "7", "0"]
    # every table can scroll sideways inside its own box (a phone's width)
    assert html.count("<table") == html.count('<div class="scroll"><table')
    assert ".scroll { overflow-x: auto; }" in html


def test_the_quarantine_says_what_to_do_where_the_reason_does_not(make_workspace, tmp_path):
    """A ragged row's stored reason names the fault; the report adds the advice that
    ``keymoments quarantine`` gives (readers.reject_hint), escaped like the rest."""
    from keymoments.report import write_report

    rows = ("customer,ts,event_type,channel,csat\n"
            "c1,2024-01-01T10:00:00Z,order_placed,web,4\n"
            "c2,2024-01-02T10:00:00Z,order_placed,web,4,extra\n")
    ws = make_workspace(CONFIG, {"events.csv": rows})
    ws.ingest("events")
    html = write_report(ws, tmp_path / "q.html").read_text(encoding="utf-8")
    section = html.split("<h2>Quarantine", 1)[1]
    assert "expected 5 fields, found 6" in section
    assert "what to do: the row has 6 fields where the header has 5" in section


def test_the_quarantine_shows_the_rows_still_rejected(make_workspace, tmp_path, monkeypatch):
    """As ``keymoments quarantine``: a row fixed in its file and loaded again is not
    listed nor counted as in quarantine, but said to have loaded since; a long list
    says it shows the first rows only."""
    from keymoments.report import html as report_html
    from keymoments.report import write_report

    head = "customer,ts,event_type,channel,csat\n"
    bad = [f"c{i},not a time {i},order_placed,web,4\n" for i in range(3)]
    ws = make_workspace(CONFIG, {"events.csv": head + "".join(bad)})
    ws.ingest("events")
    (ws.root / "events.csv").write_text(
        head + bad[0].replace("not a time 0", "2024-01-01T10:00:00Z") + "".join(bad[1:]))
    ws.ingest("events")
    flat = " ".join(write_report(ws, tmp_path / "q.html").read_text(encoding="utf-8").split())
    assert "<b>2</b>rows in quarantine (and 1 fixed since)" in flat
    section = flat.split("<h2>Quarantine", 1)[1]
    assert "1 rejected row(s) have loaded since" in section
    assert "not a time 1" in section and "not a time 2" in section
    assert "not a time 0" not in section and "The first" not in section
    monkeypatch.setattr(report_html, "QUARANTINE_SHOWN", 1)
    flat = " ".join(write_report(ws, tmp_path / "q.html").read_text(encoding="utf-8").split())
    section = flat.split("<h2>Quarantine", 1)[1]
    assert "The first 1 of 2 rows still rejected" in section and "not a time 2" not in section


def test_key_moments_by_stage_counts_every_key_moment(make_workspace):
    """A key moment on an event nothing scored (a first interaction, an order placed)
    is a key moment: the table counts it; its mean valence is of the scored ones."""
    from keymoments.report.sections import engine_sections

    rows = ("customer,ts,event_type,channel,csat\n"
            "c1,2024-01-01T10:00:00Z,order_placed,web,\n"
            "c1,2024-01-01T11:00:00Z,survey_answered,email,2\n"
            "c2,2024-01-02T10:00:00Z,ticket_opened,phone,\n")
    ws = make_workspace(CONFIG, {"events.csv": rows})
    ws.ingest("events")
    ws.build()
    (table,) = [s["rows"] for s in engine_sections(ws) if s["title"] == "Key moments by stage"]
    stored = ws.con.execute(
        "SELECT kind, coalesce(stage, ''), count(*), count(valence) FROM moments WHERE kind NOT IN "
        "('first_impression', 'peak', 'valley', 'farewell') GROUP BY ALL").fetchall()
    assert sorted((r["kind"], r["stage"], r["moments"], r["with_valence"]) for r in table) == \
        sorted(stored)
    assert {r["kind"] for r in table} >= {"first_interaction", "purchase", "support", "feedback"}


def test_the_valleys_example_is_the_furthest_from_its_promise(make_workspace):
    """Deliveries 8, 111.5 and 10.5 days late all score -1 (the default rule saturates a
    week late): the example is the 111.5 days' reason, not the first in alphabetical
    order ("delivered 10.5 ..." sorts before "delivered 111.5 ...")."""
    from keymoments.report.sections import engine_sections

    config = """
sources:
  orders:
    path: orders.csv
    identifiers: {customer_id: customer}
    refs: {order: order}
    event_type: event_type
    ts: ts
    expectation: {kind: promised_delivery, ts: promised}
"""
    late = {"o1": "2024-01-18T10:00:00Z", "o2": "2024-04-30T22:00:00Z",
            "o3": "2024-01-20T22:00:00Z", "o4": "2024-01-20T22:00:00Z"}
    rows = "customer,order,event_type,ts,promised\n" + "".join(
        f"c{o},{o},order_delivered,{ts},2024-01-10T10:00:00Z\n" for o, ts in late.items())
    ws = make_workspace(config, {"orders.csv": rows})
    ws.ingest("orders")
    ws.build()
    assert ws.con.execute("SELECT count(*) FROM moments WHERE kind = 'valley' AND valence = -1"
                          ).fetchone()[0] == 4
    (table,) = [s["rows"] for s in engine_sections(ws)
                if s["title"] == "Moments that carry the most negative valence"]
    assert len(table) == 1 and table[0]["valleys"] == 4
    assert "111.5 days late" in table[0]["example_reason"], table[0]


def test_the_valleys_example_is_the_furthest_past_an_sla_too(make_workspace):
    """SLA promises are values (minutes), not times: replies 60, 65, 70 and 95 minutes
    past a 5 min SLA all score the same (waited_past_sla saturates at -1 an hour late,
    long_wait -0.5 past 30 min: -0.75): the example is the 95 minutes' reason, the
    furthest, not "60.0 ...", the alphabetically first (the tie-break read only
    promised times)."""
    from keymoments.report.sections import engine_sections

    config = """
sources:
  chats:
    path: chats.csv
    identifiers: {customer_id: customer}
    refs: {ticket: ticket}
    event_type: event_type
    ts: ts
    channel: {value: chat}
    measures: {wait_seconds: wait}
    expectation: {kind: sla, value: sla}
"""
    waits = {"t1": 4200, "t2": 4500, "t3": 6000, "t4": 3900}
    rows = "customer,ticket,event_type,ts,wait,sla\n" + "".join(
        f"c{t},{t},agent_reply,2024-01-10T10:00:00Z,{w},5\n" for t, w in waits.items())
    ws = make_workspace(config, {"chats.csv": rows})
    ws.ingest("chats")
    ws.build()
    valleys = ws.con.execute("SELECT DISTINCT valence FROM moments WHERE kind = 'valley'"
                             ).fetchall()
    assert len(valleys) == 1, valleys  # all tied
    (table,) = [s["rows"] for s in engine_sections(ws)
                if s["title"] == "Moments that carry the most negative valence"]
    assert len(table) == 1 and table[0]["valleys"] == 4
    assert "95.0 minutes late" in table[0]["example_reason"], table[0]


def test_journeys_holding_only_feedback_are_pointed_out(make_workspace):
    """A review of an order the export leaves out is a purchase journey of one feedback
    event (abandoned, by its status); the journeys table says how many there are (hand
    count: o2's review alone; o1 holds its order too)."""
    from keymoments.report.sections import engine_sections

    config = """
sources:
  events:
    path: events.csv
    identifiers: {customer_id: customer}
    refs: {order: order}
    event_type: event_type
    ts: ts
    rating: {column: stars, scale: stars5}
"""
    rows = ("customer,order,event_type,ts,stars\n"
            "c1,o1,order_placed,2024-01-01T10:00:00Z,\n"
            "c1,o1,review_submitted,2024-01-09T10:00:00Z,5\n"
            "c2,o2,review_submitted,2024-01-09T10:00:00Z,1\n")
    ws = make_workspace(config, {"events.csv": rows})
    ws.ingest("events")
    ws.build()
    assert ws.con.execute("SELECT count(*) FROM events WHERE stage = 'feedback'").fetchone()[0] == 2
    (section,) = [s for s in engine_sections(ws) if s["title"] == "Journeys by type and status"]
    assert "Journeys holding only feedback, by type: purchase 1." in section["text"]
    ws.con.execute("DELETE FROM journey_events WHERE event_type = 'review_submitted' "
                   "AND person_id = (SELECT person_id FROM events WHERE refs['order'] = 'o2')")
    (section,) = [s for s in engine_sections(ws) if s["title"] == "Journeys by type and status"]
    assert section["text"] == ""


TICKETS = """
sources:
  tickets:
    path: tickets.csv
    identifiers: {customer_id: customer}
    refs: {ticket: ticket}
    event_type: event_type
    ts: ts
    agent: agent
"""


def test_insight_sections_show_ticket_times_and_the_analyses_warnings(make_workspace):
    """Tickets without feedback: the metrics show the median first response and
    resolution (hand count: 1 h and 3 h, then 2 h and 4 h: medians 1.5 h and 3.5 h);
    root causes and drivers say why they find nothing, as the command line does."""
    from keymoments.insights.report import insight_sections

    rows = "customer,ticket,event_type,ts,agent\n" + "".join(
        f"c{i},t{i},ticket_opened,2024-01-0{i}T08:00:00Z,\n"
        f"c{i},t{i},agent_reply,2024-01-0{i}T0{8 + i}:00:00Z,ana\n"
        f"c{i},t{i},ticket_resolved,2024-01-0{i}T{10 + i:02d}:00:00Z,ana\n" for i in (1, 2))
    ws = make_workspace(TICKETS, {"tickets.csv": rows})
    ws.ingest("tickets")
    ws.build()
    sections = {s["title"]: s for s in insight_sections(ws)}
    shown = {r["metric"]: r["value"] for r in sections["CX metrics (95% intervals)"]["rows"]}
    assert shown["first_response"] == "1h 30m" and shown["resolution_time"] == "3h 30m"
    assert "churn" not in shown  # (no cancellation recorded: not measured, not 0%)
    import keymoments as km

    causes = sections["Root causes to fix first"]["text"]
    said = km.root_causes(ws).meta["warnings"]
    assert said and all(f"Warning: {w.rstrip('.')}." in causes for w in said)


def test_empty_valley_and_peak_tables_say_why(make_workspace):
    """Ratings only, every one neutral: no valley or peak recurs; the tables say so
    instead of showing a heading alone."""
    from keymoments.report.sections import engine_sections

    rows = "customer,ts,event_type,channel,csat\n" + "".join(
        f"c{i},2024-01-0{i}T10:00:00Z,survey_answered,email,3\n" for i in range(1, 6))
    ws = make_workspace(CONFIG, {"events.csv": rows})
    ws.ingest("events")
    ws.build()
    shown = {s["title"]: s for s in engine_sections(ws)}
    for title in ("Moments that carry the most negative valence", "Peaks"):
        assert shown[title]["rows"] == [] and shown[title]["text"].startswith("None here:")


def test_the_remembered_section_does_not_suggest_a_fit_without_feedback(make_workspace):
    from keymoments.report.sections import remembered_sections

    rows = ("customer,ts,event_type,channel,csat\n"
            "c1,2024-01-01T10:00:00Z,order_placed,web,\n")
    ws = make_workspace(CONFIG, {"events.csv": rows})
    ws.ingest("events")
    ws.build()
    (section,) = remembered_sections(ws)
    assert section["text"].startswith("Not fitted: no journey has feedback")


def test_long_and_direction_changing_values_do_not_take_over_the_page(make_workspace, tmp_path):
    """A 5,000-character event type is cut (the page stays readable, its size bounded);
    a right-to-left override in a channel is written out, not obeyed; long words wrap."""
    from keymoments.report import write_report
    from keymoments.report.html import SHOWN_CHARS
    from keymoments.report.sections import engine_sections

    long_type, rlo = "x" * 5000, "\u202eweiv_bew"
    rows = "customer,ts,event_type,channel,csat\n" + "".join(
        f"c{i},2024-01-0{i}T10:00:00Z,{long_type},{rlo},{1 + i % 5}\n" for i in range(1, 8))
    ws = make_workspace(CONFIG, {"events.csv": rows})
    ws.ingest("events")
    ws.build()
    html = write_report(ws, tmp_path / "r.html",
                        extra={"sections": engine_sections(ws)}).read_text(encoding="utf-8")
    assert "x" * (SHOWN_CHARS + 1) not in html
    assert '<span class="long">' + "x" * SHOWN_CHARS + "… (cut: 5,000 characters)</span>" in html
    assert "\u202e" not in html and "\\u202eweiv_bew" in html
    assert ".long { overflow-wrap: anywhere; }" in html
    assert len(html) < 200_000


def test_an_empty_workspace_says_what_to_do_first(tmp_path):
    """No events: the page says to load the exports, and every section says it is
    empty rather than showing bare headers or 'None' dates."""
    import keymoments as km
    from keymoments.report import report_sections, write_report

    ws = km.init(tmp_path / "ws")
    html = write_report(ws, tmp_path / "e.html",
                        extra={"sections": report_sections(ws)}).read_text(encoding="utf-8")
    assert "None to None" not in html and "No events yet: map your exports" in html
    body = html.split("</p>", 2)[2]  # (after the header and the explanation)
    for heading in re.findall(r"<h2>(.*?)</h2>", body):
        section = body.split(f"<h2>{heading}</h2>", 1)[1].split("<h2>", 1)[0]
        if "<table" in section:  # a table with rows, or nothing but a sentence
            assert "<td" in section, heading
        else:
            assert "<p" in section, heading
    ws.close()
