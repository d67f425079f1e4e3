"""Every mapping in docs/mapping.md loads the real data set it describes, with row
accounting that adds up and figures checked against an independent reading of the
file (Python's csv module or plain arithmetic on the file)."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timezone

import pytest
from ruamel.yaml import YAML

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

GUIDE = (ROOT / "docs" / "mapping.md").read_text(encoding="utf-8")


def guide_sources() -> dict[str, dict]:
    blocks = re.findall(r"```yaml\n(.*?)```", GUIDE, flags=re.S)
    found = {}
    for block in blocks:
        data = YAML(typ="safe").load(block)
        for name, spec in (data.get("sources") or {}).items():
            if "shared/data" in str(spec.get("path", "")):
                found[name] = spec
    return found


SOURCES = guide_sources()


def workspace_for(make_workspace, shared_data, *names):
    text = "name: guide\nsources:\n"
    yaml = YAML()
    yaml.default_flow_style = False
    body = {n: SOURCES[n] for n in names}
    buf = io.StringIO()
    yaml.dump({"sources": body}, buf)
    text = "name: guide\n" + buf.getvalue().replace("../shared/data", str(shared_data))
    return make_workspace(text)


def test_guide_maps_every_data_set():
    assert {"helpdesk", "cdnow", "olist_orders", "olist_reviews", "leads", "deals", "telco",
            "complaints"} <= set(SOURCES)


def adds_up(r):
    assert r.rows_read == r.rows_loaded + r.rows_quarantined + r.rows_duplicate


def test_helpdesk(make_workspace, shared_data):
    ws = workspace_for(make_workspace, shared_data, "helpdesk")
    r = ws.ingest("helpdesk")
    adds_up(r)
    with open(shared_data / "helpdesk/helpdesk.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    distinct = {tuple(row.values()) for row in rows}
    assert r.rows_read == len(rows) == 21348
    assert r.rows_duplicate == len(rows) - len(distinct) == 127
    assert r.events_loaded == len(distinct)
    tickets = ws.con.execute("SELECT count(DISTINCT refs['ticket']) FROM events").fetchone()[0]
    assert tickets == len({row["case:concept:name"] for row in rows}) == 4580
    # one person per ticket (the ticket is the only identifier)
    assert ws.con.execute("SELECT count(*) FROM people").fetchone()[0] == 4580
    first = rows[0]
    got = ws.con.execute(
        "SELECT ts FROM events WHERE refs['ticket'] = ? AND event_type = ? ORDER BY ts LIMIT 1",
        [first["case:concept:name"], first["concept:name"]]).fetchone()[0]
    want = datetime.fromisoformat(first["time:timestamp"])
    assert got == want


def test_cdnow(make_workspace, shared_data):
    ws = workspace_for(make_workspace, shared_data, "cdnow")
    r = ws.ingest("cdnow")
    adds_up(r)
    lines = [l.split() for l in (shared_data / "cdnow/CDNOW_master.txt").read_text().splitlines()]
    data = [l for l in lines[1:] if l]
    assert r.rows_read == len(data) == 69659
    assert r.rows_loaded == r.events_loaded == len(data)
    total = ws.con.execute("SELECT round(sum(measures['amount']), 2) FROM events").fetchone()[0]
    assert total == pytest.approx(sum(float(l[3]) for l in data), abs=0.01)
    assert ws.con.execute("SELECT count(*) FROM people").fetchone()[0] == len({l[0] for l in data})
    d = ws.con.execute("SELECT min(ts) FROM events").fetchone()[0]
    assert d == datetime(1997, 1, 1, tzinfo=timezone.utc)


def test_olist_orders_wide_table_and_reviews(make_workspace, shared_data):
    ws = workspace_for(make_workspace, shared_data, "olist_orders", "olist_reviews")
    r = ws.ingest("olist_orders")
    adds_up(r)
    with open(shared_data / "olist-sample/olist_orders_dataset.csv", newline="") as fh:
        orders = list(csv.DictReader(fh))
    cols = ["order_purchase_timestamp", "order_approved_at", "order_delivered_carrier_date",
            "order_delivered_customer_date"]
    assert r.rows_read == len(orders)
    assert r.events_loaded == sum(1 for o in orders for c in cols if o[c].strip())
    # the promise is the expectation of the delivery, a whole day (whole_day): it ends at
    # the next local midnight, so a delivery is late after the promised day
    late = ws.con.execute("""
        SELECT count(*) FROM events WHERE event_type = 'order_delivered'
        AND expectation_kind = 'promised_delivery' AND ts > expected_ts""").fetchone()[0]
    want = sum(1 for o in orders if o["order_delivered_customer_date"].strip() and
               datetime.fromisoformat(o["order_delivered_customer_date"]) >
               datetime.fromisoformat(o["order_estimated_delivery_date"]).replace(hour=0) +
               __import__("datetime").timedelta(days=1))
    assert late == want and late > 0
    # local São Paulo time (UTC-3 then, no DST in 2018 after Feb) becomes UTC
    o = orders[1]
    ts = ws.con.execute("SELECT ts FROM events WHERE refs['order'] = ? AND event_type='order_placed'",
                        [o["order_id"]]).fetchone()[0]
    local = datetime.fromisoformat(o["order_purchase_timestamp"])
    assert (local - ts.replace(tzinfo=None)).total_seconds() in (-3 * 3600, -2 * 3600)

    rv = ws.ingest("olist_reviews")
    adds_up(rv)
    with open(shared_data / "olist-sample/olist_order_reviews_dataset.csv", newline="",
              encoding="utf-8") as fh:
        reviews = list(csv.DictReader(fh))
    assert rv.rows_read == len(reviews)
    assert rv.rows_quarantined == 0
    multiline = [x for x in reviews if "\n" in (x["review_comment_message"] or "")]
    assert multiline, "the sample has multi-line review texts"
    m = multiline[0]
    text = ws.con.execute("SELECT text FROM events WHERE event_type = 'review_posted' AND "
                          "refs['order'] = ? AND rating = ?",
                          [m["order_id"], float(m["review_score"])]).fetchone()[0]
    assert text == m["review_comment_message"].strip()
    # reviews whose order is in the orders sample join the customer's person
    order_ids = {o["order_id"] for o in orders}
    joined = [x for x in reviews if x["order_id"] in order_ids]
    n = ws.con.execute("""
        SELECT count(*) FROM events r JOIN events o ON o.refs['order'] = r.refs['order']
        AND o.event_type = 'order_placed' WHERE r.event_type = 'review_posted'
        AND r.person_id = o.person_id""").fetchone()[0]
    assert n == len(joined)


def test_funnel_dates_month_first(make_workspace, shared_data):
    ws = workspace_for(make_workspace, shared_data, "leads", "deals")
    for name in ("leads", "deals"):
        r = ws.ingest(name)
        adds_up(r)
        assert r.rows_quarantined == 0
    # deals link to their lead: one person per lead with a won deal
    won = ws.con.execute("""SELECT count(DISTINCT person_id) FROM events WHERE event_type='deal_won'
                            AND person_id IN (SELECT person_id FROM events WHERE event_type='lead_created')""").fetchone()[0]
    with open(shared_data / "olist-funnel/olist_closed_deals_dataset.csv", newline="") as fh:
        deals = list(csv.DictReader(fh))
    with open(shared_data / "olist-funnel/olist_marketing_qualified_leads_dataset.csv", newline="") as fh:
        leads = {row["mql_id"] for row in csv.DictReader(fh)}
    assert won == len({d["mql_id"] for d in deals if d["mql_id"] in leads})
    ts = ws.con.execute("SELECT ts FROM events WHERE identifiers['lead'] = ? AND event_type='deal_won'",
                        [deals[0]["mql_id"]]).fetchone()[0]
    assert ts == datetime.strptime(deals[0]["won_date"], "%m/%d/%Y %H:%M").replace(tzinfo=timezone.utc)


def test_telco_snapshot(make_workspace, shared_data):
    ws = workspace_for(make_workspace, shared_data, "telco")
    r = ws.ingest("telco")
    adds_up(r)
    with open(shared_data / "telco-churn/telco_customer_churn.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    churned = sum(1 for x in rows if x["Churn"] == "Yes")
    assert r.rows_read == len(rows) == 7043
    assert r.events_loaded == len(rows) + churned
    blanks = sum(1 for x in rows if not x["TotalCharges"].strip())
    assert blanks > 0
    assert ws.con.execute("SELECT count(*) FROM events WHERE event_type='account_snapshot' AND "
                          "measures['total_charges'] IS NULL").fetchone()[0] == blanks


def test_complaints_latin1(make_workspace, shared_data):
    ws = workspace_for(make_workspace, shared_data, "complaints")
    r = ws.ingest("complaints")
    adds_up(r)
    raw = (shared_data / "uwv-complaints/complaints.csv").read_bytes()
    rows = list(csv.DictReader(io.StringIO(raw.decode("latin-1"), newline=""), delimiter=";"))
    assert r.rows_read == len(rows) == 289
    accented = [x["ComplaintTopic"] for x in rows if "ë" in x["ComplaintTopic"]]
    assert accented
    got = ws.con.execute("SELECT count(*) FROM events WHERE text = ?", [accented[0]]).fetchone()[0]
    assert got == len({x["ComplaintID"] for x in rows if x["ComplaintTopic"] == accented[0]})
    assert ws.con.execute("SELECT count(*) FROM events WHERE text LIKE '%Ã%'").fetchone()[0] == 0
