"""A source with a ``key`` loads as a merge on it: a row edited in its file since it
was loaded replaces its stored events (same ids), the events it no longer gives go,
identities end up as if the new version had been loaded; an identical re-load
changes nothing, and a load killed midway leaves the old values.

Expectations are computed from the CSV text with the csv module and hashlib, not
from keymoments."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from datetime import datetime, timezone

import duckdb
import pytest
from click.testing import CliRunner

import keymoments as km
from keymoments.cli import main
from keymoments.store import schema

SURVEYS = """
sources:
  surveys:
    path: surveys.csv
    key: [response_id]
    identifiers: {customer_id: cust}
    event_type: {value: survey_answered}
    ts: answered_at
    rating: {column: score, scale: csat5}
"""
FIRST = ("response_id,cust,answered_at,score\n"
         "r1,c1,2024-03-01T10:00:00Z,2\n"
         "r2,c2,2024-03-02T10:00:00Z,3\n"
         "r3,c3,2024-03-03T10:00:00Z,5\n")
# r1: score 2 -> 4; r2: time moved to 03-05; r3 as it was; r4 new
EDITED = ("response_id,cust,answered_at,score\n"
          "r1,c1,2024-03-01T10:00:00Z,4\n"
          "r2,c2,2024-03-05T10:00:00Z,3\n"
          "r3,c3,2024-03-03T10:00:00Z,5\n"
          "r4,c4,2024-03-04T10:00:00Z,1\n")
TABLES = ("events", "identifiers", "identity_links", "people", "quarantine")


def keyed_id(source: str, slot: int, event_type: str, *key: str) -> str:
    """The documented id of a keyed event: md5 of source, slot, type and key, joined
    by the unit separator."""
    return hashlib.md5("\x1f".join([source, str(slot), event_type, *key]).encode()).hexdigest()


def person_of(smallest: str) -> str:
    return "p-" + hashlib.md5(smallest.encode()).hexdigest()[:16]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def expected_surveys(text: str) -> list[tuple]:
    rows = csv.DictReader(io.StringIO(text))
    return sorted((keyed_id("surveys", 0, "survey_answered", r["response_id"]),
                   utc(r["answered_at"]), {"customer_id": r["cust"]}, float(r["score"]),
                   person_of("customer_id:" + r["cust"])) for r in rows)


def stored_surveys(ws) -> list[tuple]:
    return sorted(ws.con.execute(
        "SELECT event_id, ts, identifiers, rating, person_id FROM events").fetchall())


def snapshot(ws) -> dict[str, list]:
    return {t: sorted(ws.con.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr)
            for t in TABLES}


def identity(ws) -> dict[str, list]:
    """What a load's identities are, without the bookkeeping of which load wrote what."""
    return {**{t: snapshot(ws)[t] for t in ("identifiers", "identity_links", "people")},
            "events": sorted(ws.con.execute(
                "SELECT * EXCLUDE (source_file, load_id) FROM events").fetchall(), key=repr)}


def counts(report) -> tuple[int, ...]:
    assert report.rows_read == (report.rows_loaded + report.rows_quarantined
                                + report.rows_duplicate)
    return (report.rows_read, report.rows_loaded, report.rows_updated,
            report.rows_quarantined, report.rows_duplicate, report.events_loaded)


def write(ws, name: str, text: str) -> None:
    (ws.root / name).write_text(text, encoding="utf-8")


def test_an_edited_keyed_row_replaces_its_stored_events(make_workspace):
    ws = make_workspace(SURVEYS, {"surveys.csv": FIRST})
    assert counts(ws.ingest("surveys")) == (3, 3, 0, 0, 0, 3)
    assert stored_surveys(ws) == expected_surveys(FIRST)

    write(ws, "surveys.csv", EDITED)
    report = ws.ingest("surveys")
    # read 4: r1, r2 updated (loaded), r4 new (loaded), r3 duplicate; 3 events written
    assert counts(report) == (4, 3, 2, 0, 1, 3)
    assert stored_surveys(ws) == expected_surveys(EDITED)
    # the edited rows' events are this load's, the unchanged row's the first load's
    by_load = dict(ws.con.execute("SELECT event_id, load_id FROM events").fetchall())
    first_load = ws.con.execute("SELECT load_id FROM loads ORDER BY started_at").fetchone()[0]
    assert by_load[keyed_id("surveys", 0, "survey_answered", "r3")] == first_load
    assert {by_load[keyed_id("surveys", 0, "survey_answered", r)]
            for r in ("r1", "r2", "r4")} == {report.load_id}
    # identity follows the new time: c2 first seen, and its person's span, on 03-05
    assert ws.con.execute("SELECT first_seen FROM identifiers WHERE identifier = "
                          "'customer_id:c2'").fetchall() == [(utc("2024-03-05T10:00:00Z"),)]
    people = {r[0]: r[1:] for r in ws.con.execute(
        "SELECT person_id, n_identifiers, n_events, first_seen, last_seen FROM people"
    ).fetchall()}
    assert len(people) == 4
    assert people[person_of("customer_id:c2")] == (1, 1, utc("2024-03-05T10:00:00Z"),
                                                   utc("2024-03-05T10:00:00Z"))
    assert ws.con.execute("SELECT rows_loaded, rows_updated, rows_duplicate FROM loads "
                          "WHERE load_id = ?", [report.load_id]).fetchall() == [(3, 2, 1)]

    # the same file again changes nothing
    before = snapshot(ws)
    assert counts(ws.ingest("surveys")) == (4, 0, 0, 0, 4, 0)
    assert snapshot(ws) == before


def test_a_row_that_loses_an_event_loses_it_in_the_store(make_workspace):
    config = """
sources:
  orders:
    path: orders.csv
    key: [order_id]
    identifiers: {customer_id: cust}
    events:
      - {event_type: {value: order_placed}, ts: placed_at}
      - {event_type: {value: order_delivered}, ts: delivered_at}
"""
    first = ("order_id,cust,placed_at,delivered_at\n"
             "o1,c1,2024-03-01T10:00:00Z,2024-03-04T10:00:00Z\n"
             "o2,c2,2024-03-02T10:00:00Z,2024-03-05T10:00:00Z\n")
    # o1's delivery time emptied (a wrong delivery scan withdrawn); o2 as it was
    edited = ("order_id,cust,placed_at,delivered_at\n"
              "o1,c1,2024-03-01T10:00:00Z,\n"
              "o2,c2,2024-03-02T10:00:00Z,2024-03-05T10:00:00Z\n")
    ws = make_workspace(config, {"orders.csv": first})
    assert counts(ws.ingest("orders")) == (2, 2, 0, 0, 0, 4)
    write(ws, "orders.csv", edited)
    # o1 updated (it loses an event, writes none), o2 duplicate
    assert counts(ws.ingest("orders")) == (2, 1, 1, 0, 1, 0)
    expected = []
    for r in csv.DictReader(io.StringIO(edited)):
        for slot, (kind, column) in enumerate([("order_placed", "placed_at"),
                                               ("order_delivered", "delivered_at")]):
            if r[column]:
                expected.append((keyed_id("orders", slot, kind, r["order_id"]), kind,
                                 utc(r[column])))
    assert sorted(ws.con.execute("SELECT event_id, event_type, ts FROM events").fetchall()) \
        == sorted(expected)
    assert ws.con.execute("SELECT n_events, last_seen FROM people WHERE person_id = ?",
                          [person_of("customer_id:c1")]).fetchall() == [
        (1, utc("2024-03-01T10:00:00Z"))]
    before = snapshot(ws)
    assert counts(ws.ingest("orders")) == (2, 0, 0, 0, 2, 0)
    assert snapshot(ws) == before


TICKETS_BY_EMAIL = """
sources:
  tickets:
    path: tickets.csv
    key: [ticket]
    identifiers: {customer_id: cust, email: email}
    event_type: {value: ticket_opened}
    ts: opened_at
"""


def test_a_changed_identifier_relinks_the_person_as_a_fresh_load_would(make_workspace):
    config = TICKETS_BY_EMAIL
    # t1 and t2 share an email: c1 and c2 are one person, until t1's email is fixed
    first = ("ticket,cust,email,opened_at\n"
             "t1,c1,shared@x.example,2024-03-01T10:00:00Z\n"
             "t2,c2,shared@x.example,2024-03-02T10:00:00Z\n")
    edited = first.replace("t1,c1,shared@x.example", "t1,c1,own@x.example")
    ws = make_workspace(config, {"tickets.csv": first})
    ws.ingest("tickets")
    merged = person_of("customer_id:c1")
    assert {r[0] for r in ws.con.execute("SELECT person_id FROM people").fetchall()} == {merged}

    write(ws, "tickets.csv", edited)
    report = ws.ingest("tickets")
    assert counts(report) == (2, 1, 1, 0, 1, 1)
    # c2 and shared@ leave c1's person for their own (own@ is new, not re-linked)
    assert report.identifiers_relinked == 2
    persons = dict(ws.con.execute("SELECT identifier, person_id FROM identifiers").fetchall())
    assert persons == {"customer_id:c1": merged, "email:own@x.example": merged,
                       "customer_id:c2": person_of("customer_id:c2"),
                       "email:shared@x.example": person_of("customer_id:c2")}
    assert sorted(ws.con.execute("SELECT a, b FROM identity_links").fetchall()) == [
        ("customer_id:c1", "email:own@x.example"), ("customer_id:c2", "email:shared@x.example")]
    assert dict(ws.con.execute("SELECT anchor, person_id FROM events").fetchall()) == {
        "customer_id:c1": merged, "customer_id:c2": person_of("customer_id:c2")}
    # the same store as the new file loaded into a fresh workspace
    fresh = make_workspace(config, {"tickets.csv": edited}, folder="fresh")
    fresh.ingest("tickets")
    assert identity(ws) == identity(fresh)
    before = snapshot(ws)
    assert counts(ws.ingest("tickets")) == (2, 0, 0, 0, 2, 0)
    assert snapshot(ws) == before


def test_an_identifier_moved_onto_another_person_merges_them(make_workspace):
    """The other way: an edit that joins two persons re-links as stitching does."""
    config = TICKETS_BY_EMAIL
    first = ("ticket,cust,email,opened_at\n"
             "t1,c1,a@x.example,2024-03-01T10:00:00Z\n"
             "t2,c2,b@x.example,2024-03-02T10:00:00Z\n")
    edited = first.replace("t2,c2,b@x.example", "t2,c2,a@x.example")
    ws = make_workspace(config, {"tickets.csv": first})
    ws.ingest("tickets")
    write(ws, "tickets.csv", edited)
    assert counts(ws.ingest("tickets")) == (2, 1, 1, 0, 1, 1)
    fresh = make_workspace(config, {"tickets.csv": edited}, folder="fresh")
    fresh.ingest("tickets")
    assert identity(ws) == identity(fresh)
    assert ws.con.execute("SELECT person_id, n_identifiers, n_events FROM people").fetchall() \
        == [(person_of("customer_id:c1"), 3, 2)]


def test_a_changed_event_type_adds_an_event_and_keeps_the_old_one(make_workspace):
    """An event type read from a column is what happened: the ticket was opened, then
    closed; a snapshot export's row moving from one status to the next must not erase
    the opening (nor may a status log's incremental file, whose rows share a key)."""
    config = """
sources:
  tickets:
    path: tickets.csv
    key: [ticket]
    identifiers: {customer_id: cust}
    event_type: status
    ts: at
"""
    first = "ticket,cust,status,at\nt1,c1,ticket_opened,2024-03-01T10:00:00Z\n"
    edited = "ticket,cust,status,at\nt1,c1,ticket_closed,2024-03-01T10:00:00Z\n"
    ws = make_workspace(config, {"tickets.csv": first})
    ws.ingest("tickets")
    write(ws, "tickets.csv", edited)
    # read, loaded, updated, quarantined, duplicate, events written
    assert counts(ws.ingest("tickets")) == (1, 1, 0, 0, 0, 1)
    assert sorted(ws.con.execute("SELECT event_id, event_type FROM events").fetchall()) == sorted([
        (keyed_id("tickets", 0, "ticket_opened", "t1"), "ticket_opened"),
        (keyed_id("tickets", 0, "ticket_closed", "t1"), "ticket_closed")])
    # a status log's next file: t1 closed again (as stored: nothing), t2 opened; a
    # second row of t1 in one file with the type stored keeps the stored one
    log = ("ticket,cust,status,at\nt1,c1,ticket_closed,2024-03-01T10:00:00Z\n"
           "t2,c2,ticket_opened,2024-03-02T10:00:00Z\n")
    write(ws, "tickets.csv", log)
    assert counts(ws.ingest("tickets")) == (2, 1, 0, 0, 1, 1)
    assert ws.con.execute("SELECT count(*) FROM events").fetchone()[0] == 3


def test_a_row_edited_into_bad_input_is_quarantined_and_keeps_its_stored_events(
        make_workspace):
    ws = make_workspace(SURVEYS, {"surveys.csv": FIRST})
    ws.ingest("surveys")
    write(ws, "surveys.csv", FIRST.replace("2024-03-01T10:00:00Z,2", "yesterday,4"))
    assert counts(ws.ingest("surveys")) == (3, 0, 0, 1, 2, 0)
    assert stored_surveys(ws) == expected_surveys(FIRST)


def test_without_a_key_an_edited_row_is_a_new_event(make_workspace):
    ws = make_workspace(SURVEYS.replace("    key: [response_id]\n", ""),
                        {"surveys.csv": FIRST})
    ws.ingest("surveys")
    write(ws, "surveys.csv", FIRST.replace("c1,2024-03-01T10:00:00Z,2",
                                           "c1,2024-03-01T10:00:00Z,4"))
    assert counts(ws.ingest("surveys")) == (3, 1, 0, 0, 2, 1)
    assert sorted(r[0] for r in ws.con.execute(
        "SELECT rating FROM events WHERE identifiers['customer_id'] = 'c1'").fetchall()) == [
        2.0, 4.0]


def test_the_cli_shows_the_updated_rows(make_workspace):
    ws = make_workspace(SURVEYS, {"surveys.csv": FIRST})
    ws.ingest("surveys")
    write(ws, "surveys.csv", EDITED)
    root = ws.root
    ws.close()
    result = CliRunner().invoke(main, ["-w", str(root), "ingest", "--json"])
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.output)
    assert (report["rows_loaded"], report["rows_updated"], report["rows_duplicate"]) == (3, 2, 1)
    write_back = EDITED.replace("r1,c1,2024-03-01T10:00:00Z,4", "r1,c1,2024-03-01T10:00:00Z,3")
    (root / "surveys.csv").write_text(write_back, encoding="utf-8")
    result = CliRunner().invoke(main, ["-w", str(root), "ingest"], terminal_width=160)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(line for line in lines if "updated" in line)
    row = next(line for line in lines if "surveys" in line)
    cells = dict(zip([c.strip() for c in re.split("[│┃]", header)],
                     [c.strip() for c in re.split("[│┃]", row)]))
    assert (cells["loaded"], cells["updated"], cells["duplicate"]) == ("1", "1", "3")


def test_a_store_made_before_rows_updated_gets_the_column(tmp_path):
    ws = km.init(tmp_path)
    db = ws.root / ws.config.database
    ws.close()
    db.unlink()
    con = duckdb.connect(str(db))
    for migration in schema.MIGRATIONS[:3]:
        migration(con)
    # (the loads table of those versions: without rows_updated)
    con.execute('ALTER TABLE "loads" DROP COLUMN "rows_updated"')
    con.execute("INSERT INTO km_meta VALUES ('schema_version', '3')")
    con.execute("INSERT INTO loads VALUES ('load-old', 's', ['a.csv'], now(), now(), "
                "2, 2, 0, 0, 2)")
    con.close()
    ws = km.open(tmp_path)
    assert schema.current_version(ws.con) == schema.SCHEMA_VERSION
    assert ws.con.execute("SELECT load_id, rows_loaded, rows_updated FROM loads").fetchall() == [
        ("load-old", 2, None)]
    ws.close()


CRASH_WAIT = 300


def test_a_load_killed_midway_leaves_the_old_values(make_workspace, kill_load_at):
    ws = make_workspace(SURVEYS, {"surveys.csv": FIRST})
    ws.ingest("surveys")
    before = snapshot(ws)
    root = ws.root
    ws.close()
    (root / "surveys.csv").write_text(EDITED, encoding="utf-8")
    kill_load_at(root, "surveys", "after_events_insert", CRASH_WAIT)
    with km.open(root) as again:
        assert snapshot(again) == before
        assert stored_surveys(again) == expected_surveys(FIRST)
        assert counts(again.ingest("surveys")) == (4, 3, 2, 0, 1, 3)
        assert stored_surveys(again) == expected_surveys(EDITED)


def test_a_line_key_is_no_merge_key(make_workspace):
    """``key: [_line]``: a line removed from the file shifts every row after it onto
    its predecessor's line; merged, each would replace its predecessor's events (and
    the store lose c1), and with an id of the line alone (scheme 2) each would be its
    predecessor's duplicate (c2, c3 of the new file lost). Not merged, with an id of
    the content and the line: shifted rows are new events, the stored ones stay."""
    config = """
sources:
  visits:
    path: visits.csv
    key: [_line]
    identifiers: {customer_id: cust}
    event_type: {value: visit}
    ts: at
"""
    first = ("cust,at\nc1,2024-03-01T10:00:00Z\nc2,2024-03-02T10:00:00Z\n"
             "c3,2024-03-03T10:00:00Z\n")
    ws = make_workspace(config, {"visits.csv": first})
    ws.ingest("visits")
    # line 2 (c1) removed: c2 is now on line 2, c3 on line 3
    write(ws, "visits.csv", "cust,at\nc2,2024-03-02T10:00:00Z\nc3,2024-03-03T10:00:00Z\n")
    # read, loaded, updated, quarantined, duplicate, events written
    assert counts(ws.ingest("visits")) == (2, 2, 0, 0, 0, 2)
    stored = ws.con.execute("SELECT identifiers['customer_id'], source_line FROM events").fetchall()
    # the first load's three events stay; the shifted rows load beside them
    assert sorted(stored) == [("c1", 2), ("c2", 2), ("c2", 3), ("c3", 3), ("c3", 4)]


def test_line_keyed_files_of_the_same_name_in_two_folders_both_load(make_workspace):
    """A glob of daily folders (day1/visits.csv, day2/visits.csv): the same base name
    and line numbers, other rows. With ids of the file name and line alone, day 2's
    rows were day 1's duplicates; with their content too, each row is its own event."""
    config = """
sources:
  visits:
    path: day*/visits.csv
    key: [_line]
    identifiers: {customer_id: cust}
    event_type: {value: visit}
    ts: at
"""
    day1 = "cust,at\nc1,2024-03-01T10:00:00Z\nc2,2024-03-01T11:00:00Z\n"
    day2 = "cust,at\nc3,2024-03-02T10:00:00Z\nc4,2024-03-02T11:00:00Z\n"
    ws = make_workspace(config, {"day1/visits.csv": day1})
    ws.ingest("visits")
    (ws.root / "day2").mkdir()
    write(ws, "day2/visits.csv", day2)
    assert counts(ws.ingest("visits")) == (4, 2, 0, 0, 2, 2)
    stored = ws.con.execute("SELECT identifiers['customer_id'] FROM events").fetchall()
    assert sorted(r[0] for r in stored) == ["c1", "c2", "c3", "c4"]


def test_a_key_given_twice_in_one_load_keeps_its_last_row_as_two_loads_would(make_workspace):
    """Daily files of a glob, r1 edited on day 2: one load of both stores what
    loading day 1 and then day 2 stores (the later version wins; it kept day 1's),
    and warns with the key and its rows; a key repeated unchanged is no warning."""
    config = SURVEYS.replace("path: surveys.csv", "path: 'days/*.csv'")
    day2 = ("response_id,cust,answered_at,score\n"
            "r4,c4,2024-03-04T10:00:00Z,1\n"
            "r3,c3,2024-03-03T10:00:00Z,5\n"
            "r1,c1,2024-03-01T11:00:00Z,4\n")
    files = {"days/2024-03-01.csv": FIRST, "days/2024-03-02.csv": day2}
    one = make_workspace(config, files, "one")
    report = one.ingest("surveys")
    # read 6: r1, r2, r3, r4 loaded; r1 of day 1 and r3 of day 2 are duplicates
    assert counts(report) == (6, 4, 0, 0, 2, 4)
    (warning,) = [w for w in report.warnings if "more than one row" in w]
    assert warning.startswith("1 key(s)") and "e.g. response_id='r1':" in warning
    assert "days/2024-03-02.csv line 4 over days/2024-03-01.csv line 2" in warning
    latest = {}  # response id -> its row, day 2's over day 1's (the csv module's)
    for text in (FIRST, day2):
        latest.update({r["response_id"]: r for r in csv.DictReader(io.StringIO(text))})
    expected = expected_surveys("response_id,cust,answered_at,score\n" + "".join(
        f"{r['response_id']},{r['cust']},{r['answered_at']},{r['score']}\n"
        for r in latest.values()))
    assert stored_surveys(one) == expected

    two = make_workspace(config, {"days/2024-03-01.csv": FIRST}, "two")
    two.ingest("surveys")
    write(two, "days/2024-03-02.csv", day2)
    assert counts(two.ingest("surveys"))[2] == 1  # (r1 updated)
    strip = "SELECT * EXCLUDE (source_file, source_line, load_id) FROM events ORDER BY 1"
    assert one.con.execute(strip).fetchall() == two.con.execute(strip).fetchall()
    assert identity(one)["people"] == identity(two)["people"]
    # loading the same files again: nothing changes, nothing is updated, no warning
    again = one.ingest("surveys")
    assert counts(again)[1:3] == (0, 0)
    assert not [w for w in again.warnings if "more than one row" in w]
    assert stored_surveys(one) == expected


ORDERS = """
sources:
  orders:
    path: 'days/*.csv'
    key: [order_id, shop]
    identifiers: {customer_id: cust}
    events:
      - {event_type: {value: order_placed}, ts: placed_at}
      - {event_type: {value: order_delivered}, ts: delivered_at}
"""


def test_a_time_emptied_between_two_files_of_one_load_is_not_stored(make_workspace):
    """Day 2's row of o1 no longer gives a delivery (the time was emptied): one load of
    both days stores what the two loads one after the other store, so the delivery
    goes; the warning names the two-column key unambiguously."""
    day1 = ("order_id,shop,cust,placed_at,delivered_at\n"
            "o1,\"north, 2\",c1,2024-03-01T10:00:00Z,2024-03-03T10:00:00Z\n"
            "o2,south,c2,2024-03-01T11:00:00Z,2024-03-04T10:00:00Z\n")
    day2 = ("order_id,shop,cust,placed_at,delivered_at\n"
            "o1,\"north, 2\",c1,2024-03-01T10:00:00Z,\n"
            "o2,south,c2,2024-03-01T11:00:00Z,2024-03-04T10:00:00Z\n")
    files = {"days/2024-03-01.csv": day1, "days/2024-03-02.csv": day2}
    one = make_workspace(ORDERS, files, "one")
    report = one.ingest("orders")
    two = make_workspace(ORDERS, {"days/2024-03-01.csv": day1}, "two")
    two.ingest("orders")
    write(two, "days/2024-03-02.csv", day2)
    assert two.ingest("orders").rows_updated == 1
    strip = ("SELECT * EXCLUDE (source_file, source_line, load_id) FROM events "
             "ORDER BY event_type, ts")
    assert one.con.execute(strip).fetchall() == two.con.execute(strip).fetchall()
    assert sorted(one.con.execute(
        "SELECT identifiers['customer_id'], event_type FROM events").fetchall()) == [
        ("c1", "order_placed"), ("c2", "order_delivered"), ("c2", "order_placed")]
    (warning,) = [w for w in report.warnings if "more than one row" in w]
    assert warning.startswith("1 key(s)") and "e.g. order_id='o1', shop='north, 2':" in warning
