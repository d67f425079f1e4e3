"""A source's mapping is remembered at each load; a changed mapping of a source that
has events is refused, because its event ids (hashed from the mapped values) would
change and the rows already loaded would load a second time."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import keymoments as km
from keymoments.cli import main

ROWS = "cid,at,kind,carrier\n1,2024-01-01T00:00:00Z,order_placed,dhl\n" \
       "2,2024-01-02T00:00:00Z,order_placed,ups\n"
BASE = """\
name: shop
sources:
  orders:
    path: orders.csv
    identifiers: {customer_id: cid}
    event_type: kind
    ts: at
"""
CHANGED = BASE + "    attributes: {carrier: carrier}\n"


def counts(ws) -> tuple[int, int, int]:
    return ws.con.execute("SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM loads), "
                          "(SELECT count(*) FROM quarantine)").fetchone()


def reopen(ws, text: str):
    (ws.root / "keymoments.yaml").write_text(text)
    ws.reload_config()
    return ws


def test_a_changed_mapping_is_refused_naming_the_source_and_storing_nothing(make_workspace):
    ws = make_workspace(BASE, {"orders.csv": ROWS})
    assert ws.ingest("orders").events_loaded == 2
    before = counts(ws)
    reopen(ws, CHANGED)
    with pytest.raises(km.ConfigError) as info:
        ws.ingest("orders")
    err = info.value
    assert "mapping of source 'orders' changed" in str(err)
    assert "--accept-mapping-change" in str(err)
    assert err.key == "sources.orders" and err.line == 3  # the source's line
    assert counts(ws) == before  # nothing stored, not even a load row


def test_accepting_the_change_loads_with_it_and_remembers_it(make_workspace):
    ws = make_workspace(BASE, {"orders.csv": ROWS})
    ws.ingest("orders")
    reopen(ws, CHANGED)
    report = ws.ingest("orders", accept_mapping_change=True)
    # what the refusal warns of: without a key, the rows load again as new events
    assert report.events_loaded == 2
    assert ws.con.execute("SELECT count(*) FROM events WHERE attributes['carrier'] "
                          "IS NOT NULL").fetchone()[0] == 2
    # remembered: the same mapping again is a plain re-load that changes nothing
    again = ws.ingest("orders")
    assert (again.events_loaded, again.rows_duplicate) == (0, 2)


def test_new_files_of_the_same_mapping_load_and_a_failed_load_remembers_nothing(
        make_workspace):
    ws = make_workspace(BASE, {"orders.csv": ROWS, "more.csv": ROWS.replace("order_placed",
                                                                              "order_paid")})
    ws.ingest("orders")
    reopen(ws, BASE.replace("path: orders.csv", "path: more.csv"))  # only the path changed
    assert ws.ingest("orders").events_loaded == 2
    # a failed load with a changed mapping leaves the old one remembered
    reopen(ws, CHANGED.replace("path: orders.csv", "path: missing.csv"))
    with pytest.raises(km.KeymomentsError):
        ws.ingest("orders", accept_mapping_change=True)
    reopen(ws, CHANGED)
    with pytest.raises(km.ConfigError, match="changed since its events were loaded"):
        ws.ingest("orders")


def test_a_store_loaded_before_mappings_were_remembered_takes_the_current_one(make_workspace):
    ws = make_workspace(BASE, {"orders.csv": ROWS})
    ws.ingest("orders")
    ws.con.execute("DELETE FROM km_meta WHERE key LIKE 'mapping:%'")  # an older store
    reopen(ws, CHANGED)
    ws.ingest("orders")  # nothing to compare with: loads, and remembers this mapping
    reopen(ws, BASE)
    with pytest.raises(km.ConfigError):
        ws.ingest("orders")


def test_a_source_without_events_may_change_its_mapping(make_workspace):
    ws = make_workspace(BASE, {"orders.csv": "cid,at,kind,carrier\n"})
    assert ws.ingest("orders").events_loaded == 0
    reopen(ws, CHANGED)
    ws.ingest("orders")  # no events were hashed with the old mapping: nothing to double


def test_the_cli_refuses_and_accepts(make_workspace):
    ws = make_workspace(BASE, {"orders.csv": ROWS})
    ws.ingest("orders")
    (ws.root / "keymoments.yaml").write_text(CHANGED)
    root = str(ws.root)
    ws.close()
    refused = CliRunner().invoke(main, ["-w", root, "ingest", "orders"])
    assert refused.exit_code != 0
    assert "keymoments.yaml:3" in refused.output and "changed" in refused.output
    accepted = CliRunner().invoke(main, ["-w", root, "ingest", "orders",
                                         "--accept-mapping-change", "--json"])
    assert accepted.exit_code == 0, accepted.output
    assert '"events_loaded": 2' in accepted.output


def test_fingerprints_stored_before_the_rating_scale_was_required_still_match():
    """The fingerprints of keymoments e66be39 (computed by it, when a rating's scale
    defaulted to csat5 and was left out as a default): an unchanged mapping is not
    refused as changed after the upgrade."""
    from keymoments.config.models import IdentityConfig, SourceSpec
    from keymoments.sources.ingest import mapping_fingerprint

    def spec(scale):
        return SourceSpec.model_validate({
            "path": "s.csv", "identifiers": {"customer_id": "cid"},
            "event_type": {"value": "survey_answered"}, "ts": "at",
            "rating": {"column": "score", "scale": scale}})

    assert mapping_fingerprint(spec("csat5"), IdentityConfig()) == "0cf7184627b1e9d22b5210d3e53a8821"
    assert mapping_fingerprint(spec("nps10"), IdentityConfig()) == "10ec90b86177ef9c7d8f5a0efa71c625"
