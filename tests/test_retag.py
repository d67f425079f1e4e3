"""A taxonomy changed after events loaded: the next build or load re-tags the stored
events (see :mod:`keymoments.retag`).

The oracle is a fresh workspace that loads the same files with the changed config:
the stored events' stages and moments must be the ones it gives them (but for the
documented case of a mapping's stage left empty in a row), and the journeys and
moments built from them the same."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from keymoments.cli import main
from keymoments.retag import TAXONOMY_KEY

SOURCES = """
outcomes: {purchase_types: [visit]}
sources:
  shop:
    path: shop.csv
    identifiers: {customer_id: cust}
    event_type: kind
    ts: at
  crm:
    path: crm.csv
    identifiers: {customer_id: cust}
    event_type: kind
    ts: at
    stage: {column: phase}
"""
# the default taxonomy does not tag `sale`
CHANGED = SOURCES + """
taxonomy:
  event_types:
    sale: {stage: purchase, moment: purchase}
    visit: {stage: awareness}
    ticket_opened: {stage: support, moment: first_interaction}
"""
SHOP = ("cust,kind,at\n"
        "c1,visit,2024-01-01T10:00:00Z\n"
        "c1,sale,2024-01-01T10:05:00Z\n"
        "c1,sale,2024-03-01T10:05:00Z\n"
        "c2,ticket_opened,2024-01-02T09:00:00Z\n"
        "c2,refund_sent,2024-01-02T09:30:00Z\n")
CRM = ("cust,kind,at,phase\n"
       "c3,sale,2024-01-03T10:00:00Z,loyalty\n"
       "c3,visit,2024-01-03T11:00:00Z,\n"
       "c4,ticket_opened,2024-01-04T10:00:00Z,usage\n")
FILES = {"shop.csv": SHOP, "crm.csv": CRM}


def tags(ws) -> dict[str, tuple]:
    return {r[0]: r[1:] for r in ws.con.execute(
        "SELECT event_id, source, event_type, stage, moment FROM events").fetchall()}


def built(ws) -> dict[str, list]:
    return {
        "journey_events": sorted(ws.con.execute(
            "SELECT event_id, journey_id, stage, moment FROM journey_events").fetchall()),
        "moments": sorted(ws.con.execute(
            "SELECT journey_id, kind, event_id FROM moments").fetchall(), key=repr),
    }


@pytest.fixture
def changed_later(make_workspace):
    """A workspace loaded and built with the default taxonomy, then its config
    changed (as a user edits keymoments.yaml); and a fresh one loaded with the change."""
    ws = make_workspace(SOURCES, FILES, folder="old")
    ws.ingest()
    ws.build()
    (ws.root / "keymoments.yaml").write_text(CHANGED, encoding="utf-8")
    ws.reload_config()
    fresh = make_workspace(CHANGED, FILES, folder="fresh")
    fresh.ingest()
    return ws, fresh


def test_build_retags_stored_events_as_a_fresh_load_tags_them(changed_later):
    ws, fresh = changed_later
    before = tags(ws)
    assert before[_id(ws, "shop", "sale", "c1", "01-01")][3] is None  # (untagged then)
    report = ws.build()
    assert report.retagged is not None
    expected = tags(fresh)
    after = tags(ws)
    assert after.keys() == expected.keys()
    # the one documented difference: crm's `visit` row had no phase, so it took the
    # taxonomy's stage when it loaded; a source whose mapping gives the stage keeps it
    kept = _id(ws, "crm", "visit", "c3", "01-03")
    assert after[kept][2] == before[kept][2] == "consideration"
    assert expected[kept][2] == "awareness"
    assert {k: v for k, v in after.items() if k != kept} == \
        {k: v for k, v in expected.items() if k != kept}
    assert after[kept][3] == expected[kept][3]  # (its moment follows the taxonomy)
    changed = {k for k in after if after[k] != before[k]}
    # shop: the visit, the two sales, the ticket; crm: the sale (its stage kept:
    # loyalty), the ticket (usage kept); crm's visit keeps stage and moment
    assert report.retagged.events == len(changed) == 6
    assert report.retagged.event_types == ("sale", "ticket_opened", "visit")
    fresh.build()
    assert built(ws) == {**built(fresh), "journey_events": [
        r if r[0] != kept else (r[0], r[1], "consideration", r[3])
        for r in built(fresh)["journey_events"]]}


def test_purchases_follow_the_retagged_events(changed_later):
    ws, fresh = changed_later
    assert ws.con.execute("SELECT count(*) FROM moments WHERE kind = 'purchase'"
                          ).fetchone()[0] == 0
    ws.build()
    fresh.build()
    purchases = ("SELECT event_id FROM moments WHERE kind IN ('purchase', 'repeat_purchase') "
                 "ORDER BY 1")
    found = ws.con.execute(purchases).fetchall()
    assert found == fresh.con.execute(purchases).fetchall()
    # the three sales (each in a catch-all visit of its own): c1's second is also a
    # repeat purchase
    sales = {_id(ws, "shop", "sale", "c1", "01-01"), _id(ws, "shop", "sale", "c1", "03-01"),
             _id(ws, "crm", "sale", "c3", "01-03")}
    assert {r[0] for r in found} == sales
    assert len(found) == 4


def test_the_retag_runs_once_and_is_recorded(changed_later):
    ws, _ = changed_later
    assert ws.build().retagged is not None
    assert ws.build().retagged is None
    marks = "SELECT key, value FROM km_meta WHERE key LIKE 'taxonomy:%' ORDER BY 1"
    recorded = ws.con.execute(marks).fetchall()
    assert [k for k, _ in recorded] == [TAXONOMY_KEY + "crm", TAXONOMY_KEY + "shop"]
    # a workspace made before the fingerprints were kept: one comparison of every tag,
    # nothing to change, the fingerprints recorded
    ws.con.execute("DELETE FROM km_meta WHERE key LIKE 'taxonomy:%'")
    ws._tagged_with = None
    snapshot = tags(ws)
    assert ws.build().retagged is None
    assert tags(ws) == snapshot
    assert ws.con.execute(marks).fetchall() == recorded


def test_a_load_retags_first_and_says_so(changed_later):
    ws, fresh = changed_later
    report = ws.ingest("shop")  # the same files: all duplicates, tags refreshed first
    assert report.rows_loaded == 0
    assert any("taxonomy changed" in w and "6 stored events" in w for w in report.warnings)
    assert {k: v[3] for k, v in tags(ws).items()} == {k: v[3] for k, v in tags(fresh).items()}


def test_a_keyed_reload_after_a_taxonomy_change_updates_nothing(make_workspace):
    keyed = SOURCES.replace("    path: shop.csv\n", "    path: shop.csv\n    key: [cust, at]\n")
    ws = make_workspace(keyed, FILES)
    ws.ingest("shop")
    stored = tags(ws)
    (ws.root / "keymoments.yaml").write_text(
        keyed + CHANGED[len(SOURCES):], encoding="utf-8")
    ws.reload_config()
    report = ws.ingest("shop")
    assert (report.rows_loaded, report.rows_updated, report.rows_duplicate) == (0, 0, 5)
    assert tags(ws).keys() == stored.keys()
    assert tags(ws)[_id(ws, "shop", "sale", "c1", "01-01")][3] == "purchase"


def test_cli_build_prints_the_retag(changed_later):
    ws, _ = changed_later
    root = ws.root
    ws.close()
    result = CliRunner().invoke(main, ["-w", str(root), "build"])
    assert result.exit_code == 0, result.output
    assert "re-tagged 6 stored events (event types sale, ticket_opened, visit)" in result.output


def _id(ws, source: str, event_type: str, cust: str, day: str) -> str:
    rows = ws.con.execute(
        "SELECT event_id FROM events WHERE source = ? AND event_type = ? "
        "AND identifiers['customer_id'] = ? AND strftime(ts, '%m-%d') = ?",
        [source, event_type, cust, day]).fetchall()
    assert len(rows) == 1, rows
    return rows[0][0]


@pytest.mark.parametrize("sql_load", [False, True])
def test_a_posted_batch_retags_first(changed_later, sql_load):
    """The live service loads posted events in Python (small batches) or as a SQL
    load: either re-tags the stored events first, and tags the posted ones with the
    current taxonomy (a posted event's stage is its own, like a mapping's)."""
    from keymoments.live.events import PostedEvent, load_events

    ws, fresh = changed_later
    if sql_load:
        ws.config = ws.config.model_copy(update={"service": ws.config.service.model_copy(
            update={"python_load_max_events": 0})})
    posted = [PostedEvent.model_validate({"ts": "2024-04-01T10:00:00Z", "event_type": "sale",
                                          "identifiers": {"customer_id": "c1"}}),
              PostedEvent.model_validate({"ts": "2024-04-01T11:00:00Z", "event_type": "visit",
                                          "identifiers": {"customer_id": "c1"},
                                          "stage": "loyalty"})]
    load_events(ws, posted)
    stored = tags(ws)
    assert {k: v for k, v in stored.items() if v[0] != "api"} == {
        k: v for k, v in tags(fresh).items() if k != _id(ws, "crm", "visit", "c3", "01-03")
    } | {_id(ws, "crm", "visit", "c3", "01-03"): ("crm", "visit", "consideration", None)}
    assert sorted(v[1:] for v in stored.values() if v[0] == "api") == [
        ("sale", "purchase", "purchase"), ("visit", "loyalty", None)]


def test_a_source_out_of_the_config_is_retagged_when_it_is_back(changed_later):
    """Its mapping (does it give a stage?) is unknown while it is out: its events keep
    their tags and it is re-tagged when it returns, as a fresh load tags it."""
    ws, fresh = changed_later
    text = (ws.root / "keymoments.yaml").read_text(encoding="utf-8")
    without = text.replace("  shop:\n    path: shop.csv\n    identifiers: {customer_id: cust}\n"
                           "    event_type: kind\n    ts: at\n", "")
    assert without != text
    before = tags(ws)
    (ws.root / "keymoments.yaml").write_text(without, encoding="utf-8")
    ws.reload_config()
    ws.build()
    shop = {k for k, v in before.items() if v[0] == "shop"}
    assert {k: tags(ws)[k] for k in shop} == {k: before[k] for k in shop}
    (ws.root / "keymoments.yaml").write_text(text, encoding="utf-8")
    ws.reload_config()
    assert ws.build().retagged.event_types == ("sale", "ticket_opened", "visit")
    assert {k: tags(ws)[k] for k in shop} == {k: tags(fresh)[k] for k in shop}


def test_a_keyed_source_giving_its_stage_keeps_it_on_a_reload(make_workspace):
    """crm gives its stage from a column; its `visit` row leaves it empty, so it took
    the taxonomy's when it loaded. After the taxonomy changes that stage, re-loading
    the same file is all duplicates (the stored stage is kept, as documented), not an
    update."""
    keyed = SOURCES.replace("    path: crm.csv\n", "    path: crm.csv\n    key: [cust, kind]\n")
    ws = make_workspace(keyed, FILES)
    ws.ingest("crm")
    (ws.root / "keymoments.yaml").write_text(keyed + CHANGED[len(SOURCES):], encoding="utf-8")
    ws.reload_config()
    report = ws.ingest("crm")
    assert (report.rows_loaded, report.rows_updated, report.rows_duplicate) == (0, 0, 3)
    assert ws.con.execute("SELECT stage FROM events WHERE event_type = 'visit'").fetchall() == [
        ("consideration",)]


def test_an_event_type_holding_a_nul_or_a_quote_is_retagged(make_workspace):
    """Event types are data: they are passed to the update as a table, never written
    into SQL (one with a NUL stopped every build and load after a taxonomy change)."""
    odd = ["order\x00x", "it's \"sale\"", "sale"]
    shop = "cust,kind,at\n" + "".join(
        f'c{i},"{t.replace(chr(34), chr(34) * 2)}",2024-01-0{i + 1}T10:00:00Z\n'
        for i, t in enumerate(odd))
    ws = make_workspace(SOURCES, {"shop.csv": shop, "crm.csv": CRM})
    ws.ingest("shop")
    assert sorted(r[0] for r in ws.con.execute("SELECT event_type FROM events").fetchall()) == \
        sorted(odd)
    patterns = ("taxonomy:\n  patterns:\n    - {match: 'order|sale', stage: loyalty, "
                "moment: loyalty}\n")
    (ws.root / "keymoments.yaml").write_text(SOURCES + patterns, encoding="utf-8")
    ws.reload_config()
    assert ws.build().retagged.events == 3
    assert set(ws.con.execute("SELECT stage, moment FROM events").fetchall()) == {
        ("loyalty", "loyalty")}
