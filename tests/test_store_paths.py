"""The stored file names do not depend on how the workspace's folder was named
(``-w shop`` from its parent, ``-w .`` from inside, an absolute path), and names
stored relative by earlier versions are made absolute once."""

from __future__ import annotations

import os

import keymoments as km

CONFIG = """
sources:
  orders:
    path: orders.csv
    identifiers: {customer_id: cid}
    event_type: {value: order_placed}
    ts: at
"""
ROWS = "cid,at\n1,2024-01-01T00:00:00Z\n2,yesterday\n"


def _shop(tmp_path):
    """A workspace folder 'shop' with its config and its orders export."""
    shop = tmp_path / "shop"
    shop.mkdir()
    (shop / "keymoments.yaml").write_text(CONFIG)
    (shop / "orders.csv").write_text(ROWS)
    return shop


def _state(ws) -> dict:
    con = ws.con
    return {"events": con.execute("SELECT event_id, source_file FROM events").fetchall(),
            "quarantine": con.execute("SELECT file, line FROM quarantine").fetchall(),
            "files": sorted({f for (fs,) in con.execute("SELECT files FROM loads").fetchall()
                             for f in fs})}


def test_one_name_per_file_however_the_folder_is_named(tmp_path, monkeypatch):
    shop = _shop(tmp_path)
    monkeypatch.chdir(tmp_path)
    spellings = ["shop", str(shop), "./shop/../shop"]
    for i, name in enumerate(spellings):
        ws = km.open(name)
        report = ws.ingest("orders")
        assert not report.warnings, report.warnings  # (no file said gone)
        state = _state(ws)
        ws.close()
        if i:
            assert state == first
        else:
            first = state
    monkeypatch.chdir(shop)
    ws = km.open(".")
    assert not ws.ingest("orders").warnings
    assert _state(ws) == first
    ws.close()
    assert first["files"] == [str(shop / "orders.csv")] and len(first["quarantine"]) == 1


def test_names_stored_relative_before_are_made_absolute_once(tmp_path, monkeypatch):
    """As a store written by a version that kept the folder as named: the names are
    rewritten to the source's file, a row stored under two names is one entry, a name
    no source's file matches stays; the next load adds nothing."""
    shop = _shop(tmp_path)
    ws = km.open(shop)
    ws.ingest("orders")
    absolute = str(shop / "orders.csv")
    con = ws.con
    # what the earlier versions stored: the folder as named on the command line
    con.execute("UPDATE events SET source_file = 'shop/orders.csv'")
    con.execute("INSERT INTO quarantine SELECT md5(quarantine_id), load_id, source, "
                "'shop/orders.csv', line, field, value, reason, raw, quarantined_at, settled_at "
                "FROM quarantine")
    con.execute("UPDATE quarantine SET file = 'orders.csv' WHERE file = ?", [absolute])
    con.execute("UPDATE loads SET files = ['shop/orders.csv', 'shop/gone.csv']")
    con.execute("DELETE FROM km_meta WHERE key = 'file_names'")
    events = con.execute("SELECT count(*) FROM events").fetchone()[0]
    ws.close()
    monkeypatch.chdir(tmp_path / "shop")  # (opened from elsewhere this time)
    ws = km.open(".")
    assert _state(ws)["events"] == [(e, absolute) for e, _ in _state(ws)["events"]]
    assert [f for f, _ in _state(ws)["quarantine"]] == [absolute]
    assert _state(ws)["files"] == sorted([absolute, "shop/gone.csv"])
    report = ws.ingest("orders")
    assert report.rows_loaded == 0 and len(ws.quarantine().to_pylist()) == 1
    assert ws.con.execute("SELECT count(*) FROM events").fetchone()[0] == events
    assert [w for w in report.warnings if "no longer found" in w] == [
        w for w in report.warnings if "shop/gone.csv" in w]
    ws.close()
    assert os.path.isfile(absolute)


def test_a_moved_workspace_has_its_names_rewritten_to_its_new_folder(tmp_path):
    """The folder moved (its exports with it): the names under the old folder are
    the same files under the new one, so no file is said gone and the quarantined row
    is not stored again; a file outside the folder keeps its name. A workspace written
    by a version that did not keep its folder ('absolute') is left as it is."""
    shop, outside = tmp_path / "shop", tmp_path / "exports"
    shop.mkdir()
    outside.mkdir()
    (shop / "keymoments.yaml").write_text(
        CONFIG + f"  refunds:\n    path: {outside / 'refunds.csv'}\n"
        "    identifiers: {customer_id: cid}\n    event_type: {value: refund}\n    ts: at\n")
    (shop / "orders.csv").write_text(ROWS)
    (outside / "refunds.csv").write_text(ROWS)
    ws = km.open(shop)
    ws.ingest()
    before = _state(ws)
    ws.close()
    moved = tmp_path / "archive" / "shop-2024"
    moved.parent.mkdir()
    os.rename(shop, moved)
    ws = km.open(moved)
    after = _state(ws)
    # every name under the old folder now under the new one, the others as they were
    relocate = {str(shop / "orders.csv"): str(moved / "orders.csv")}
    assert after["events"] == [(e, relocate.get(f, f)) for e, f in before["events"]]
    assert after["quarantine"] == [(relocate.get(f, f), n) for f, n in before["quarantine"]]
    assert after["files"] == sorted(relocate.get(f, f) for f in before["files"])
    assert str(outside / "refunds.csv") in after["files"]
    reports = ws.ingest()
    assert not [w for r in reports for w in r.warnings if "no longer found" in w]
    assert sum(r.rows_loaded for r in reports) == 0
    assert len(ws.quarantine().to_pylist()) == 2  # (one row of each file, not four)
    ws.close()
    # moved back, through a link to it: names follow, a link to the same folder is no move
    os.rename(moved, shop)
    ws = km.open(shop)
    assert _state(ws) == before
    ws.close()
    (tmp_path / "link").symlink_to(shop)
    ws = km.open(tmp_path / "link")
    assert _state(ws) == before
    ws.close()


def test_a_workspace_that_did_not_keep_its_folder_is_left_alone(tmp_path):
    shop = _shop(tmp_path)
    ws = km.open(shop)
    ws.ingest("orders")
    ws.con.execute("UPDATE km_meta SET value = 'absolute' WHERE key = 'file_names'")
    before = _state(ws)
    ws.close()
    ws = km.open(shop)
    assert _state(ws) == before
    assert ws.con.execute("SELECT value FROM km_meta WHERE key = 'file_names'"
                          ).fetchone()[0] == str(shop)
    ws.close()


def test_a_copy_that_still_reads_the_originals_files_keeps_their_names(tmp_path):
    """A workspace whose config names its export by its full path, copied elsewhere:
    the copy still reads the original's file, so that name stays (rewriting it to the
    copy's folder said the file was gone and stored its quarantined row again)."""
    import shutil

    a = tmp_path / "a"
    a.mkdir()
    (a / "orders.csv").write_text(ROWS)
    (a / "keymoments.yaml").write_text(CONFIG.replace("path: orders.csv",
                                                      f"path: {a / 'orders.csv'}"))
    ws = km.open(a)
    ws.ingest("orders")
    before = _state(ws)
    ws.close()
    shutil.copytree(a, tmp_path / "b")
    ws = km.open(tmp_path / "b")
    assert _state(ws) == before
    report = ws.ingest("orders")
    assert not [w for w in report.warnings if "no longer found" in w]
    assert len(ws.quarantine().to_pylist()) == 1
    ws.close()
