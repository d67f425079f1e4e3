"""Posted batches loaded in Python (``keymoments.live.small_load``) against the SQL
load (the reference, ``service.python_load_max_events: 0``): the same batches,
posted in the same order to two workspaces, leave the same events, identifiers,
links, people, load counts and quarantine. The batches mix new and returning
customers, identities that merge across batches, repeated events, values the
mapping cleans (blanks, null markers, upper-case emails, ``+tags``, phones), texts
it redacts, ratings and expectations, and rows it quarantines (then the whole batch
takes the SQL load)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keymoments as km
from keymoments.live import small_load
from keymoments.live.events import PostedEvent, load_events

SQL_LOAD = "\nservice: {python_load_max_events: 0}\n"
#: (added under the ``identity:`` a new workspace's file has)
STRIP_PLUS = "  email_strip_plus: true\n"


#: the identifier kinds an event carries (repeated sets: links with several events)
PROFILES = [("customer_id",), ("customer_id", "email"), ("email", "phone"), ("device",),
            ("customer_id", "device"), ("email",), ("customer_id", "email", "phone")]


@st.composite
def posted(draw):
    person = draw(st.integers(0, 3))
    forms = {"customer_id": [f"c{person}", f" c{person} ", "NA"],
             "email": [f"p{person}@shop.example", f"P{person}@Shop.example",
                       f"p{person}+x@shop.example", "not-an-email"],
             "phone": [f"(415) 555-01{person:02d}", f"+1 415 555 01{person:02d}", "12"],
             "device": [f"d{person}", f"d{person + 1}"]}
    ids = {}
    for kind in draw(st.sampled_from(PROFILES)):
        # mostly the usual form; now and then one the mapping cleans or rejects
        ids[kind] = forms[kind][0] if draw(st.integers(0, 3)) else draw(st.sampled_from(forms[kind]))
    if all(v == "NA" for v in ids.values()):
        ids["device"] = f"d{person}"
    e = {"ts": f"2026-03-0{draw(st.integers(1, 2))}T{draw(st.integers(10, 12))}:00:00"
               f"{draw(st.sampled_from(['Z', '.250000+02:00']))}",
         "event_type": draw(st.sampled_from(["order_placed", "order_delivered", "ticket_opened",
                                             "survey_answered", "page_view", " page_view "])),
         "identifiers": ids}
    for key, values in (("channel", ["web", "APP", " phone", "NA", ""]),
                        ("agent", ["ana", "null"]), ("language", ["PT", "en"]),
                        ("stage", ["Feedback", "purchase"]),
                        ("text", ["great, thanks", "call me on +55 11 98765-4321 or a@b.co",
                                  "  ok  ", "N/A", "Très bien"])):
        if draw(st.booleans()):
            e[key] = draw(st.sampled_from(values))
    if draw(st.integers(0, 3)) == 0:
        e["rating"] = float(draw(st.integers(1, 5)))
        e["rating_scale"] = draw(st.sampled_from(["csat5", "stars5"]))
    if draw(st.integers(0, 3)) == 0:
        e["expected_ts"] = "2026-03-02T10:00:00Z"
        e["expected_value"] = draw(st.sampled_from([2.5, 1e-05, 10.0]))
        e["expectation_kind"] = draw(st.sampled_from(["promised_delivery", "sla"]))
    for name, values in (("refs", {"order": ["o1", "o2", " o3", "NA"], "ticket": ["t1"]}),
                         ("measures", {"amount": [10.0, 0.1, 99.95], "wait_seconds": [30.0]}),
                         ("attributes", {"segment": ["gold", "NULL"], "carrier": ["DHL"]})):
        e[name] = {k: draw(st.sampled_from(v)) for k, v in values.items() if draw(st.booleans())}
    return e


def _workspace(root: Path, config: str, identity: str = ""):
    ws = km.init(root)
    path = root / "keymoments.yaml"
    text = path.read_text().replace("identity:\n", "identity:\n" + identity, 1)
    path.write_text(text + config)
    ws.reload_config()
    return ws


_TABLES = {
    "events": "SELECT * EXCLUDE (load_id, source_file) FROM events ORDER BY event_id",
    "identifiers": "SELECT * FROM identifiers ORDER BY identifier",
    "identity_links": "SELECT * FROM identity_links ORDER BY a, b",
    "people": "SELECT * FROM people ORDER BY person_id",
    "loads": "SELECT source, rows_read, rows_loaded, rows_quarantined, rows_duplicate, "
             "events_loaded FROM loads ORDER BY started_at, finished_at",
    "quarantine": "SELECT line, field, value, reason FROM quarantine ORDER BY line, reason",
    # (but the folder each workspace is in: keymoments.store.paths)
    "km_meta": "SELECT * FROM km_meta WHERE key <> 'file_names' ORDER BY key",
}


def snapshot(ws) -> dict[str, list]:
    return {name: ws.con.execute(sql).fetchall() for name, sql in _TABLES.items()}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(st.lists(posted(), min_size=1, max_size=6), min_size=1, max_size=5),
       strip_plus=st.booleans())
def test_small_loads_equal_the_sql_load(batches, strip_plus):
    root = Path(tempfile.mkdtemp(prefix="km-small-load-"))
    extra = STRIP_PLUS if strip_plus else ""
    fast, slow = _workspace(root / "fast", "", extra), _workspace(root / "sql", SQL_LOAD, extra)
    try:
        for batch in batches:
            events = [PostedEvent.model_validate(e) for e in batch]
            for ws in (fast, slow):
                # (a batch posted twice: the second time, every event is a duplicate)
                for _ in range(2 if len(batch) == 1 else 1):
                    load_events(ws, events)
        a, b = snapshot(fast), snapshot(slow)
        for name in _TABLES:
            assert a[name] == b[name], name
    finally:
        fast.close()
        slow.close()
        shutil.rmtree(root, ignore_errors=True)


def test_the_small_load_declines_what_the_sql_load_quarantines(tmp_path, monkeypatch):
    """A batch with one bad email goes to the SQL load whole (its row quarantined,
    the rest loaded); a clean one is loaded in Python, with its new events named
    for ``before_commit`` as the SQL load names them."""
    ws = _workspace(tmp_path, "")
    taken = []
    real = small_load._stitch
    monkeypatch.setattr(small_load, "_stitch", lambda *a: taken.append(1) or real(*a))
    bad = [PostedEvent.model_validate({"ts": "2026-03-01T10:00:00Z", "event_type": "x",
                                       "identifiers": {"email": e}})
           for e in ("ok@shop.example", "broken")]
    report = load_events(ws, bad)
    assert (report.rows_loaded, report.rows_quarantined, taken) == (1, 1, [])
    seen = {}

    def hook(r):
        seen["new"] = ws.con.execute("SELECT count(*), min(anchor) FROM _km_new_events"
                                     ).fetchone()

    report = load_events(ws, bad[:1] + [bad[0].model_copy(update={"event_type": "y"})], hook)
    assert (report.rows_loaded, report.rows_duplicate, taken) == (1, 1, [1])
    assert seen["new"] == (1, "email:ok@shop.example")
    ws.close()
