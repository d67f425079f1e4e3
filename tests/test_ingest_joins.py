"""Join side files (``joins:``): their rows that cannot be read are quarantined with
the load, once, and reported; keys whose rows disagree are reported. The files are
written by hand here, so every line, value and count is known without keymoments."""

from __future__ import annotations

import pytest

from keymoments.sources.ingest import SIDE_REJECT, ingest_source

CONFIG = """
sources:
  reviews:
    path: reviews.csv
    joins:
      - path: {side}
        on: {{order_id: order_id}}
        columns: [customer_id]
    identifiers: {{customer_id: customer_id}}
    event_type: {{value: review}}
    ts: when
    rating: {{column: score, scale: stars5}}
"""

REVIEWS = ("review_id,order_id,when,score\n"
           "r1,o1,2024-03-01T10:00:00Z,5\n"        # 2: joins o1 (line 2 of the side file)
           "r2,o2,2024-03-02T10:00:00Z,4\n"        # 3: o2's only row is ragged
           "r3,o3,2024-03-03T10:00:00Z,3\n")       # 4: o3's only row has a bad byte
ORDERS = (b"order_id,customer_id\n"
          b"o1,cust1\n"                            # 2
          b"o2,cust2,EXTRA\n"                      # 3: three fields for two columns
          b"o3,cust\xe93\n"                        # 4: not UTF-8
          b"o1,cust9\n")                           # 5: o1 again, another customer


def stored(ws) -> dict:
    con = ws.con
    return {t: sorted(con.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
            for t in ("events", "quarantine", "identifiers")}


def side_workspace(make_workspace, orders: bytes = ORDERS, reviews: str = REVIEWS):
    return make_workspace(CONFIG.format(side="orders.csv"),
                          {"reviews.csv": reviews, "orders.csv": orders})


def test_unreadable_side_rows_are_quarantined_once_and_reported(make_workspace):
    ws = side_workspace(make_workspace)
    rep = ws.ingest("reviews")
    # the counts are the source's own rows: r1 loads, r2 and r3 have no customer
    assert (rep.rows_read, rep.rows_loaded, rep.rows_quarantined, rep.rows_duplicate) == (
        3, 1, 2, 0)
    side = ws.root / "orders.csv"
    raw_lines = side.read_bytes().split(b"\n")
    entries = {r["line"]: r for r in ws.quarantine().to_pylist() if r["file"] == str(side)}
    assert sorted(entries) == [3, 4]
    ragged, undecodable = entries[3], entries[4]
    assert ragged["raw"] == raw_lines[2].decode()
    assert ragged["reason"] == SIDE_REJECT + "expected 2 fields, found 3"
    assert ragged["source"] == "reviews"
    assert undecodable["raw"] == raw_lines[3].decode("utf-8", errors="backslashreplace")
    assert undecodable["reason"].startswith(SIDE_REJECT + "not valid utf-8 text (byte 0xe9")
    assert (undecodable["field"], undecodable["value"]) == ("customer_id", "cust\\xe93")
    # the source's rows whose order is on those lines: quarantined, and named
    main = {r["line"]: r for r in ws.quarantine().to_pylist()
            if r["file"] == str(ws.root / "reviews.csv")}
    assert sorted(main) == [3, 4]
    conflict, warning = rep.warnings  # (o1's two customers, then the unread rows)
    assert "order_id 'o1'" in conflict
    for words in ("2 row(s) of", "could not be read (line 3, 4)", "in the quarantine",
                  "needed them (order_id 'o2', 'o3')", "2 quarantined (line 3, 4 of",
                  "reviews.csv", "fix those lines"):
        assert words in warning, (words, warning)
    # the same load again adds nothing, and reports the same
    before = stored(ws)
    again = ws.ingest("reviews")
    assert (again.rows_loaded, again.rows_quarantined, again.rows_duplicate) == (0, 2, 1)
    assert stored(ws) == before
    assert again.warnings == rep.warnings


def test_side_rows_are_written_in_the_load_transaction(make_workspace):
    """A load that fails before its commit stores none of the side file's entries."""
    ws = side_workspace(make_workspace)

    def fail(report):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        ingest_source(ws, "reviews", before_commit=fail)
    assert ws.con.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 0
    ws.ingest("reviews")
    assert ws.con.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 4


def test_side_rows_no_row_needs_are_reported_so(make_workspace):
    reviews = "review_id,order_id,when,score\nr1,o1,2024-03-01T10:00:00Z,5\n"
    ws = side_workspace(make_workspace, reviews=reviews)
    rep = ws.ingest("reviews")
    assert (rep.rows_read, rep.rows_loaded, rep.rows_quarantined) == (1, 1, 0)
    assert ws.con.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 2
    assert "none needed them" in rep.warnings[-1]


def test_a_json_lines_side_file_with_a_broken_line(make_workspace):
    orders = (b'{"order_id": "o1", "customer_id": "cust1"}\n'
              b'{"order_id": "o2", "customer_id": \n')      # 2: broken JSON
    ws = make_workspace(CONFIG.format(side="orders.jsonl"),
                        {"reviews.csv": REVIEWS, "orders.jsonl": orders})
    rep = ws.ingest("reviews")
    assert (rep.rows_read, rep.rows_loaded, rep.rows_quarantined) == (3, 1, 2)
    side = [r for r in ws.quarantine().to_pylist() if r["file"].endswith("orders.jsonl")]
    assert [(r["line"], r["reason"].startswith(SIDE_REJECT + "not valid JSON")) for r in side] == [
        (2, True)]
    warning = next(w for w in rep.warnings if "orders.jsonl" in w)
    assert "1 row(s) of" in warning and "order_id is only on those lines" in warning
    before = stored(ws)
    ws.ingest("reviews")
    assert stored(ws) == before


def test_a_key_whose_side_rows_differ_is_reported(make_workspace):
    orders = b"order_id,customer_id\no1,cust1\no2,cust2\no3,cust3\no1,cust9\n"
    ws = side_workspace(make_workspace, orders=orders)
    rep = ws.ingest("reviews")
    assert (rep.rows_loaded, rep.rows_quarantined) == (3, 0)
    # the first row of o1 (line 2) is used: r1's customer is cust1
    assert ws.con.execute("SELECT identifiers['customer_id'] FROM events WHERE source_line = 2"
                          ).fetchall() == [("cust1",)]
    (warning,) = rep.warnings
    for words in ("orders.csv", "1 key(s) whose rows differ in customer_id",
                  "order_id 'o1' (line 2: customer_id 'cust1'; line 5: customer_id 'cust9')",
                  "first row (line 2 here)", "dedupe the side file"):
        assert words in warning, (words, warning)


def test_side_rows_that_repeat_the_same_values_are_no_conflict(make_workspace):
    orders = b"order_id,customer_id\no1,cust1\no2,cust2\no3,cust3\no1,cust1\no2,cust2\n"
    rep = side_workspace(make_workspace, orders=orders).ingest("reviews")
    assert (rep.rows_loaded, rep.warnings) == (3, ())


def test_the_first_row_of_a_key_is_the_first_file_s(make_workspace):
    """A key on the same line of two files of a glob: the row of the file first in
    sorted order wins, at every load (ordered by line alone, either could)."""
    ws = make_workspace(CONFIG.format(side="orders/*.csv"), {
        "reviews.csv": REVIEWS,
        "orders/b.csv": "order_id,customer_id\no1,cust9\no2,cust2\n",
        "orders/a.csv": "order_id,customer_id\no1,cust1\no3,cust3\n"})
    rep = ws.ingest("reviews")
    assert ws.con.execute("SELECT identifiers['customer_id'] FROM events WHERE source_line = 2"
                          ).fetchall() == [("cust1",)]
    (warning,) = rep.warnings
    assert ("order_id 'o1' (orders/a.csv line 2: customer_id 'cust1'; orders/b.csv line 2: "
            "customer_id 'cust9')") in warning, warning
    assert "first row (orders/a.csv line 2 here)" in warning


def test_side_rows_fixed_in_their_file_leave_the_open_list(make_workspace):
    """The side file's unreadable lines, fixed and loaded again, are no longer open
    (no event is stored from a side file's line: they close because the load read
    them without rejecting them); rejected again, they are open again."""
    ws = side_workspace(make_workspace)
    ws.ingest("reviews")
    assert len(ws.quarantine().to_pylist()) == 4  # two side lines, the two rows needing them
    fixed = ORDERS.replace(b"o2,cust2,EXTRA", b"o2,cust2").replace(b"cust\xe93", b"cust3")
    (ws.root / "orders.csv").write_bytes(fixed)
    rep = ws.ingest("reviews")
    assert (rep.rows_loaded, rep.rows_quarantined) == (2, 0)
    assert ws.quarantine().to_pylist() == []
    every = ws.quarantine(include_loaded=True)
    assert every.meta["loaded_since"] == 4
    assert sorted((r["file"].rsplit("/", 1)[-1], r["line"]) for r in every.to_pylist()) == [
        ("orders.csv", 3), ("orders.csv", 4), ("reviews.csv", 3), ("reviews.csv", 4)]
    # the old side file again: its two lines are rejected again, and so are the rows
    # needing them (no customer again): all four open again
    (ws.root / "orders.csv").write_bytes(ORDERS)
    ws.ingest("reviews")
    assert len(ws.quarantine().to_pylist()) == 4
