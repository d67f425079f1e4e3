"""Identity stitching through the real ingest path.

Personas are written as export files (CSV and JSON lines) and loaded source by
source; the persons each load must produce are worked out by hand below. A property
test then checks stitching against a second implementation (networkx connected
components) on random identifier graphs loaded in random batches.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keymoments as km
from keymoments.store.cluster import INDEXES, ensure_indexes


def pid(smallest_identifier: str) -> str:
    """The documented naming rule, computed here independently: 'p-' and the first 16
    hex digits of the md5 of the person's smallest identifier."""
    return "p-" + hashlib.md5(smallest_identifier.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- personas
# Ana browses on a device, orders with that device and her email, calls from her phone
# written the US way, and is in the CRM with her customer id, email and phone written
# the international way; she reviews her order later with customer id and email.
# Bruno only ever browses. Carla orders and chats with her email in two cases.

PERSONAS_YAML = """\
name: personas
sources:
  web:
    path: web.csv
    identifiers: {device: device_id}
    channel: {value: web}
    event_type: event
    ts: ts
  orders:
    path: orders.jsonl
    identifiers: {device: device, email: email}
    channel: {value: web}
    event_type: {value: order_placed}
    ts: at
  calls:
    path: calls.csv
    identifiers: {phone: phone}
    channel: {value: phone}
    event_type: {value: call}
    ts: ts
  chat:
    path: chat.csv
    identifiers: {email: email}
    channel: {value: chat}
    event_type: {value: chat_started}
    ts: ts
  crm:
    path: crm.csv
    identifiers: {customer_id: cid, email: email, phone: phone}
    channel: {value: crm}
    event_type: {value: account_created}
    ts: created
  reviews:
    path: reviews.jsonl
    identifiers: {customer_id: cid, email: email}
    channel: {value: web}
    event_type: {value: review_posted}
    ts: at
"""

PERSONAS_FILES = {
    "web.csv": (
        "device_id,event,ts\n"
        "dev-ana,page_view,2024-03-01T10:00:00Z\n"
        "dev-ana,add_to_cart,2024-03-01T10:05:00Z\n"
        "dev-bruno,page_view,2024-03-02T09:00:00Z\n"
    ),
    "orders.jsonl": (
        '{"device": "dev-ana", "email": "Ana.Silva@Example.com", "at": "2024-03-01T10:10:00Z"}\n'
        '{"device": null, "email": "carla@shop.io", "at": "2024-03-03T12:00:00Z"}\n'
    ),
    "calls.csv": (
        "phone,ts\n"
        '"(415) 555-0134",2024-03-05T15:00:00Z\n'
        "call me maybe,2024-03-05T16:00:00Z\n"
    ),
    "chat.csv": "email,ts\nCARLA@Shop.IO,2024-03-04T08:30:00Z\n",
    "crm.csv": (
        "cid,email,phone,created\n"
        "C1,ana.silva@example.com,+1 415-555-0134,2024-02-01T00:00:00Z\n"
    ),
    "reviews.jsonl": (
        '{"cid": "C1", "email": "ana.silva@example.com", "at": "2024-03-10T18:00:00Z"}\n'
    ),
}

ANA_WEB = {"device:dev-ana", "email:ana.silva@example.com"}
ANA_PHONE = {"phone:+14155550134"}
ANA = {"customer_id:C1", *ANA_WEB, *ANA_PHONE}
BRUNO = {"device:dev-bruno"}
CARLA = {"email:carla@shop.io"}


def persons(ws) -> dict[str, set[str]]:
    """person_id -> its identifiers, as stored."""
    found: dict[str, set[str]] = {}
    for ident, person in ws.con.execute("SELECT identifier, person_id FROM identifiers").fetchall():
        found.setdefault(person, set()).add(ident)
    return found


def people_rows(ws) -> dict[str, tuple[int, int]]:
    """person_id -> (n_identifiers, n_events) from the people table."""
    rows = ws.con.execute("SELECT person_id, n_identifiers, n_events FROM people").fetchall()
    assert len(rows) == len({r[0] for r in rows}), "a person has two rows in people"
    return {r[0]: (r[1], r[2]) for r in rows}


def events_of(ws, person_id: str) -> list[str]:
    return [r[0] for r in ws.con.execute(
        "SELECT event_type FROM events WHERE person_id = ? ORDER BY ts", [person_id]).fetchall()]


@pytest.fixture
def personas(make_workspace):
    return make_workspace(PERSONAS_YAML, PERSONAS_FILES)


def test_persons_before_the_crm_links_them(personas):
    ws = personas
    for source in ("web", "orders", "calls", "chat"):
        ws.ingest(source)
    assert persons(ws) == {
        pid("device:dev-ana"): ANA_WEB,  # checkout joined the device and the email
        pid("phone:+14155550134"): ANA_PHONE,  # "(415) 555-0134" normalised
        pid("device:dev-bruno"): BRUNO,
        pid("email:carla@shop.io"): CARLA,  # CARLA@Shop.IO is the same email
    }
    assert people_rows(ws) == {
        pid("device:dev-ana"): (2, 3),
        pid("phone:+14155550134"): (1, 1),
        pid("device:dev-bruno"): (1, 1),
        pid("email:carla@shop.io"): (1, 2),
    }
    assert events_of(ws, pid("device:dev-ana")) == ["page_view", "add_to_cart", "order_placed"]
    assert events_of(ws, pid("email:carla@shop.io")) == ["order_placed", "chat_started"]
    # the web events carried only the device: they were given Ana's person all the same
    web = ws.con.execute("SELECT DISTINCT person_id FROM events WHERE anchor = 'device:dev-ana'")
    assert web.fetchall() == [(pid("device:dev-ana"),)]


def test_a_later_link_relinks_earlier_events(personas):
    ws = personas
    for source in ("web", "orders", "calls", "chat"):
        ws.ingest(source)
    report = ws.ingest("crm")
    # the CRM row joins the web person and the phone person into one
    assert report.events_loaded == 1
    assert report.identifiers_relinked == 3  # device, email, phone moved; C1 is new
    ana = pid("customer_id:C1")
    assert persons(ws) == {ana: ANA, pid("device:dev-bruno"): BRUNO,
                           pid("email:carla@shop.io"): CARLA}
    assert people_rows(ws) == {ana: (4, 5), pid("device:dev-bruno"): (1, 1),
                               pid("email:carla@shop.io"): (1, 2)}
    # both earlier histories now carry the merged id; the merged-away persons are gone
    assert events_of(ws, ana) == ["account_created", "page_view", "add_to_cart",
                                  "order_placed", "call"]
    for gone in (pid("device:dev-ana"), pid("phone:+14155550134")):
        assert ws.con.execute("SELECT count(*) FROM events WHERE person_id = ?",
                              [gone]).fetchone()[0] == 0
        with pytest.raises(km.NotFoundError):
            ws.resolve_person(gone)
    row = ws.con.execute("SELECT first_seen, last_seen, channels FROM people WHERE person_id = ?",
                         [ana]).fetchone()
    assert (row[0].isoformat(), row[1].isoformat(), row[2]) == (
        "2024-02-01T00:00:00+00:00", "2024-03-05T15:00:00+00:00", ["crm", "phone", "web"])
    # a load that links nothing new moves nobody
    again = ws.ingest("reviews")
    assert (again.events_loaded, again.identifiers_relinked) == (1, 0)
    assert people_rows(ws)[ana] == (4, 6)


def test_explain_says_which_event_joined_which_pair(personas):
    ws = personas
    for source in ("web", "orders", "calls", "chat", "crm"):
        ws.ingest(source)
    profile = ws.person("customer_id:C1")
    why = profile.explain()
    assert len(why) == 3  # a spanning set: C1-email, C1-phone (CRM), device-email (order)
    joined = {}
    for line in why:
        pair = tuple(sorted(i for i in ANA if f"{i} " in line + " "))
        assert len(pair) == 2, line
        joined[pair] = line
    assert set(joined) == {("customer_id:C1", "email:ana.silva@example.com"),
                           ("customer_id:C1", "phone:+14155550134"),
                           ("device:dev-ana", "email:ana.silva@example.com")}
    order_line = joined[("device:dev-ana", "email:ana.silva@example.com")]
    assert "order_placed" in order_line and "(orders, 2024-03-01 10:10 UTC" in order_line
    crm_line = joined[("customer_id:C1", "phone:+14155550134")]
    assert "account_created" in crm_line and "(crm, 2024-02-01 00:00 UTC" in crm_line
    assert {r["identifier"] for r in profile.identifiers.to_pylist()} == ANA
    assert [r["event_type"] for r in profile.timeline.to_pylist()] == [
        "account_created", "page_view", "add_to_cart", "order_placed", "call"]


def test_resolve_by_person_id_identifier_or_bare_value(personas):
    ws = personas
    for source in ("web", "orders", "calls", "chat", "crm"):
        ws.ingest(source)
    ana = pid("customer_id:C1")
    for key in (ana, "customer_id:C1", "C1", "email:ana.silva@example.com",
                "ana.silva@example.com", "  Ana.Silva@EXAMPLE.com ", "+14155550134",
                "phone:+14155550134", "device:dev-ana", "dev-ana"):
        assert ws.resolve_person(key) == ana, key
        assert ws.person(key).person_id == ana
    assert ws.resolve_person("dev-bruno") == pid("device:dev-bruno")
    with pytest.raises(km.NotFoundError, match="no person"):
        ws.resolve_person("nobody@example.com")
    with pytest.raises(LookupError):  # NotFoundError is also a LookupError
        ws.person("p-0000000000000000")


def timeline_state(ws):
    events = dict(ws.con.execute("SELECT event_id, person_id FROM events").fetchall())
    people = {r[:-1] + (tuple(r[-1]),) for r in ws.con.execute(
        "SELECT person_id, n_identifiers, n_events, first_seen, last_seen, channels "
        "FROM people").fetchall()}
    explain = {p: ws.person(p).explain() for p, *_ in people}
    return events, people, explain


def test_same_input_in_another_order_gives_the_same_persons(make_workspace):
    forward = make_workspace(PERSONAS_YAML, PERSONAS_FILES, folder="forward")
    for source in ("web", "orders", "calls", "chat", "crm", "reviews"):
        forward.ingest(source)
    backward = make_workspace(PERSONAS_YAML, PERSONAS_FILES, folder="backward")
    for source in ("reviews", "crm", "chat", "calls", "orders", "web"):
        backward.ingest(source)
    a, b = timeline_state(forward), timeline_state(backward)
    assert len(a[0]) == 9 and len(a[1]) == 3
    assert a[0] == b[0]  # every event has the same person id
    assert a[1] == b[1]  # the same people rows
    # the pair C1-email was carried by the CRM row (Feb 1) and the review (Mar 10): both
    # orders name the earlier CRM event, not whichever was loaded first
    assert a[2] == b[2]
    crm_pair = [line for line in a[2][pid("customer_id:C1")]
                if "customer_id:C1 and email:" in line]
    assert len(crm_pair) == 1 and "account_created (crm," in crm_pair[0]


def test_reloading_changes_nothing(personas):
    ws = personas
    for source in ("web", "orders", "calls", "chat", "crm"):
        ws.ingest(source)
    before = timeline_state(ws)
    for source in ("web", "crm"):
        r = ws.ingest(source)
        assert (r.events_loaded, r.identifiers_relinked, r.rows_loaded) == (0, 0, 0)
    assert timeline_state(ws) == before


def test_invalid_phone_is_quarantined_with_its_reason(personas):
    ws = personas
    report = ws.ingest("calls")
    assert (report.rows_read, report.rows_loaded, report.rows_quarantined) == (2, 1, 1)
    [row] = ws.quarantine("calls").to_pylist()
    assert row["line"] == 3  # the header is line 1
    assert row["field"] == "identifiers.phone"
    assert row["value"] == "call me maybe"
    assert "not a phone number for region US" in row["reason"]
    assert "phone_region" in row["reason"]  # says what to do
    assert json.loads(row["raw"])["phone"] == "call me maybe"
    assert ws.con.execute("SELECT count(*) FROM identifiers").fetchone()[0] == 1


IDENTITY_YAML = """\
name: options
identity:
  phone_region: {region}
  email_strip_plus: {strip}
sources:
  contacts:
    path: contacts.csv
    identifiers: {{email: email, phone: phone}}
    event_type: {{value: contact}}
    ts: ts
"""


@pytest.mark.parametrize("strip, expected", [
    (True, {pid("email:ana@x.com"): {"email:ana@x.com"}}),
    (False, {pid("email:ana+promo@x.com"): {"email:ana+promo@x.com"},
             pid("email:ana@x.com"): {"email:ana@x.com"}}),
])
def test_email_strip_plus(make_workspace, strip, expected):
    ws = make_workspace(
        IDENTITY_YAML.format(region="US", strip=str(strip).lower()),
        {"contacts.csv": "email,phone,ts\n"
                         "Ana+Promo@X.com,,2024-01-01T00:00:00Z\n"
                         "ana@x.com,,2024-01-02T00:00:00Z\n"
                         "not-an-email,,2024-01-03T00:00:00Z\n"})
    report = ws.ingest("contacts")
    assert (report.rows_loaded, report.rows_quarantined) == (2, 1)
    assert persons(ws) == expected
    [bad] = ws.quarantine().to_pylist()
    assert (bad["line"], bad["field"], bad["value"]) == (4, "identifiers.email", "not-an-email")
    assert "not an email address" in bad["reason"]


def test_phone_region_reads_national_numbers(make_workspace):
    ws = make_workspace(
        IDENTITY_YAML.format(region="GB", strip="false"),
        {"contacts.csv": "email,phone,ts\n"
                         ",020 7946 0958,2024-01-01T00:00:00Z\n"
                         ",+44 20 7946 0958,2024-01-02T00:00:00Z\n"
                         ",+1 (415) 555-0134,2024-01-03T00:00:00Z\n"})
    ws.ingest("contacts")
    assert persons(ws) == {pid("phone:+442079460958"): {"phone:+442079460958"},
                           pid("phone:+14155550134"): {"phone:+14155550134"}}


# ------------------------------------------------------ property: vs networkx
RANDOM_YAML = """\
name: random
identity:
  normalise: {}
sources:
  batch:
    path: batch.jsonl
    identifiers: {customer_id: cid, email: mail, device: dev}
    event_type: {value: visit}
    ts: ts
"""
KINDS = {"customer_id": "cid", "email": "mail", "device": "dev"}

event = st.fixed_dictionaries({
    "ts": st.integers(0, 5),
    "ids": st.dictionaries(st.sampled_from(sorted(KINDS)), st.integers(0, 5), min_size=1),
})


def as_row(e: dict) -> dict:
    row = {col: None for col in KINDS.values()}
    for kind, n in e["ids"].items():
        row[KINDS[kind]] = f"{kind[0]}{n}"
    row["ts"] = f"2024-01-01T00:0{e['ts']}:00Z"
    return row


def identifiers_of(e: dict) -> list[str]:
    return [f"{kind}:{kind[0]}{n}" for kind, n in e["ids"].items()]


@settings(max_examples=16, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(events=st.lists(event, min_size=1, max_size=14), data=st.data())
def test_persons_are_the_connected_components(events, data):
    order = data.draw(st.permutations(range(len(events))), label="load order")
    cuts = data.draw(st.lists(st.integers(1, max(1, len(events) - 1)), max_size=3, unique=True),
                     label="batch cuts")
    bounds = [0, *sorted(c for c in cuts if c < len(events)), len(events)]
    batches = [[events[i] for i in order[a:b]] for a, b in zip(bounds, bounds[1:], strict=False)]

    # the oracle: networkx components of the "seen on the same event" graph
    graph = nx.Graph()
    for e in events:
        ids = identifiers_of(e)
        graph.add_nodes_from(ids)
        graph.add_edges_from((a, b) for a in ids for b in ids if a < b)
    components = [frozenset(c) for c in nx.connected_components(graph)]
    component_of = {i: c for c in components for i in c}
    distinct = {(e["ts"], frozenset(identifiers_of(e))) for e in events}

    # the live service's index on identifiers (keymoments.store.cluster) changes nothing
    indexed = data.draw(st.booleans(), label="identifiers indexed")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "keymoments.yaml").write_text(RANDOM_YAML, encoding="utf-8")
        with km.open(root) as ws:
            if indexed:
                assert ensure_indexes(ws) == list(INDEXES)
            for batch in batches:
                (root / "batch.jsonl").write_text(
                    "".join(json.dumps(as_row(e)) + "\n" for e in batch), encoding="utf-8")
                report = ws.ingest("batch")
                assert report.rows_read == report.rows_loaded + report.rows_duplicate
            got = persons(ws)
            assert {frozenset(v) for v in got.values()} == set(components)
            for person, ids in got.items():
                assert person == pid(min(ids))
            rows = ws.con.execute(
                "SELECT person_id, identifiers, ts FROM events").fetchall()
            assert len(rows) == len(distinct)  # nothing lost, nothing doubled
            for person, identifiers, _ in rows:
                first = next(f"{k}:{v}" for k, v in identifiers.items())
                assert person == pid(min(component_of[first]))
            expected_people = {}
            for c in components:
                mine = [r for r in rows if r[0] == pid(min(c))]
                expected_people[pid(min(c))] = (len(c), len(mine))
            assert people_rows(ws) == expected_people
            links = ws.con.execute("SELECT a, b FROM identity_links").fetchall()
            assert all(component_of[a] is component_of[b] for a, b in links)
            # links form a spanning forest at least: they alone rebuild the components
            forest = nx.Graph()
            forest.add_nodes_from(component_of)
            forest.add_edges_from(links)
            assert {frozenset(c) for c in nx.connected_components(forest)} == set(components)


def test_resolve_person_accepts_identifiers_as_written(make_workspace):
    ws = make_workspace(
        "identity: {phone_region: US}\nsources:\n  c:\n    path: c.csv\n"
        "    identifiers: {customer_id: cid, email: email, phone: phone}\n"
        "    event_type: {value: x}\n    ts: ts\n",
        {"c.csv": "cid,email,phone,ts\n1,Ana@X.com,(415) 555-0134,2024-01-01T00:00:00Z\n"
                  "2,bo@y.org,,2024-01-02T00:00:00Z\n"})
    ws.ingest("c")
    ana = ws.resolve_person("customer_id:1")
    for written in ("ANA@x.com", "+1 415 555 0134", "phone:415.555.0134", "email:Ana@X.COM", "1"):
        assert ws.resolve_person(written) == ana, written
    assert ws.resolve_person("bo@y.org") != ana
    with pytest.raises(km.NotFoundError):
        ws.resolve_person("+1 415 555 9999")


def test_components_match_scipy_on_random_graphs():
    """The numpy connected components against scipy's (the reference), on seeded
    random graphs: same partition, each node labelled with its component's smallest."""
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from keymoments.people.identity import _components

    rng = np.random.default_rng(7)
    for _ in range(200):
        n, m = int(rng.integers(1, 80)), int(rng.integers(0, 100))
        a, b = rng.integers(0, n, m), rng.integers(0, n, m)
        ours = _components(n, a, b)
        _, ref = connected_components(coo_matrix((np.ones(m), (a, b)), shape=(n, n)),
                                      directed=False)
        smallest = {}
        for node, label in enumerate(ref):
            smallest.setdefault(label, node)
        assert ours.tolist() == [smallest[label] for label in ref]
    # a long path in shuffled order still collapses to one component
    perm = rng.permutation(5000)
    path = _components(5000, perm[:-1], perm[1:])
    assert set(path.tolist()) == {0}


def _people_oracle(ws) -> dict:
    """people recomputed in Python from the stored events and identifiers."""
    rows = {}
    for person, ts, channel in ws.con.execute(
            "SELECT person_id, ts, channel FROM events WHERE person_id IS NOT NULL").fetchall():
        n, first, last, channels = rows.get(person, (0, ts, ts, set()))
        rows[person] = (n + 1, min(first, ts), max(last, ts),
                        channels | ({channel} if channel is not None else set()))
    ids = dict(ws.con.execute("SELECT person_id, count(*) FROM identifiers "
                              "WHERE person_id IS NOT NULL GROUP BY 1").fetchall())
    return {p: (ids.get(p, 0), n, first, last, sorted(ch))
            for p, (n, first, last, ch) in rows.items()}


def _people(ws) -> dict:
    return {r[0]: tuple(r[1:]) for r in ws.con.execute(
        "SELECT person_id, n_identifiers, n_events, first_seen, last_seen, channels "
        "FROM people").fetchall()}


@pytest.mark.parametrize("n_channels", [3, 70])
def test_people_rows_equal_a_recomputation_from_the_events(make_workspace, n_channels):
    """Up to 64 channels a person's list comes from one flag per channel, beyond from a
    list aggregate: both equal the lists recomputed in Python (sorted by code point,
    blanks left out), on a first load (every person new) and after a second one that
    adds channels to known persons and links two of them."""
    names = ["web", "Émail", "chat"] if n_channels == 3 else [f"ch{i:02d}" for i in range(70)]
    first = ["cid,email,ts,type,channel"] + [
        f"c{i % 7},,2024-01-{1 + i % 20:02d}T10:00:00Z,visit,{names[i % len(names)]}"
        for i in range(140)] + ["c8,,2024-02-01T10:00:00Z,visit,"]
    second = ["cid,email,ts,type,channel",
              "c1,a@x.org,2024-03-01T10:00:00Z,visit,zz",
              "c2,a@x.org,2024-03-02T10:00:00Z,visit,Zz",
              "c9,,2024-03-03T10:00:00Z,visit,"]
    cfg = """\
sources:
  one:
    path: one.csv
    identifiers: {customer_id: cid, email: email}
    event_type: type
    ts: ts
    channel: channel
  two:
    path: two.csv
    identifiers: {customer_id: cid, email: email}
    event_type: type
    ts: ts
    channel: channel
"""
    ws = make_workspace(cfg, {"one.csv": "\n".join(first) + "\n",
                              "two.csv": "\n".join(second) + "\n"})
    ws.ingest("one")
    people = _people(ws)
    assert people == _people_oracle(ws) and len(people) == 8
    assert people[ws.resolve_person("c8")][4] == []  # no channel: an empty list
    c0 = {names[i % len(names)] for i in range(0, 140, 7)}  # the rows of c0
    assert people[ws.resolve_person("c0")][4] == sorted(c0) and len(c0) == min(n_channels, 10)
    ws.ingest("two")
    people = _people(ws)
    assert people == _people_oracle(ws) and len(people) == 8  # c1 and c2 merged, c9 new
    merged = people[ws.resolve_person("a@x.org")]
    assert merged[0] == 3 and {"Zz", "zz"} <= set(merged[4])
    assert merged[4] == sorted(merged[4])  # by code point: 'Zz' < 'zz' < 'Émail'
