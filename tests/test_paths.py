"""Process map, variants, conformance, channel switching, consistency and export on
small named personas, every expected figure computed by hand in the comments."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import keymoments as km
from keymoments.config.paths import DesignedJourney
from keymoments.errors import KeymomentsError
from keymoments.paths.spread import group_stats
from keymoments.paths.designed import check

CONFIG = """
name: paths
journeys:
  as_of: "2024-03-01T00:00:00Z"
  types:
    - {name: issue_resolution, key: ticket, start: [ticket_opened], end: [ticket_resolved], abandon_after: 30d}
paths:
  contacts: {journey_types: [issue_resolution], subject_ref: order, window: 2d}
  teams: {north: [a1], south: [a2]}
  designed:
    - name: support
      journey_types: [issue_resolution]
      steps: [ticket_opened, agent_reply+, ticket_resolved]
sources:
  events:
    path: events.jsonl
    identifiers: {customer_id: customer}
    refs: {order: order_id, ticket: ticket_id}
    event_type: event_type
    ts: ts
    channel: channel
    agent: agent
    attributes: {segment: segment}
"""


def ev(customer, ts, event_type, channel, ticket, **extra):
    return {"customer": customer, "ts": f"2024-02-01T{ts}Z", "event_type": event_type,
            "channel": channel, "ticket_id": ticket, **extra}


PERSONAS = [
    # Ana, T1 (chat, about order O1): opened, a reply 5 min later, resolved 25 min after it
    ev("ana", "10:00:00", "ticket_opened", "chat", "T1", order_id="O1", segment="vip"),
    ev("ana", "10:05:00", "agent_reply", "chat", "T1", agent="a1", order_id="O1"),
    ev("ana", "10:30:00", "ticket_resolved", "chat", "T1", agent="a1", order_id="O1"),
    # Ana, T3 (phone, same order) 1.5 h after T1 ended: a switch, and lost context
    ev("ana", "12:00:00", "ticket_opened", "phone", "T3", order_id="O1"),
    ev("ana", "12:20:00", "ticket_resolved", "phone", "T3", agent="a2", order_id="O1"),
    # Ben, T2 (chat): opened, replies after 2 and 8 min, resolved 30 min later
    ev("ben", "11:00:00", "ticket_opened", "chat", "T2", segment="standard"),
    ev("ben", "11:02:00", "agent_reply", "chat", "T2", agent="a2"),
    ev("ben", "11:10:00", "agent_reply", "chat", "T2", agent="a2"),
    ev("ben", "11:40:00", "ticket_resolved", "chat", "T2", agent="a2"),
]


def _build(root):
    root.mkdir(parents=True, exist_ok=True)
    (root / "events.jsonl").write_text("\n".join(json.dumps(p) for p in PERSONAS) + "\n",
                                       encoding="utf-8")
    (root / "keymoments.yaml").write_text(CONFIG, encoding="utf-8")
    w = km.open(root)
    w.ingest()
    w.build()
    return w


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    w = _build(tmp_path_factory.mktemp("paths-personas"))
    yield w
    w.close()


def edges(pm):
    return {(e["source"], e["target"]): e for e in pm.edges.to_pylist()}


def test_process_map_counts_and_durations(ws):
    pm = km.process_map(ws)
    e = edges(pm)
    # opened->reply in T1 (300 s) and T2 (120 s); reply->resolved in T1 (1500 s) and
    # T2 (1800 s); reply->reply in T2 (480 s); opened->resolved in T3 (1200 s)
    assert {k: v["count"] for k, v in e.items()} == {
        ("ticket_opened", "agent_reply"): 2, ("agent_reply", "ticket_resolved"): 2,
        ("agent_reply", "agent_reply"): 1, ("ticket_opened", "ticket_resolved"): 1}
    assert e[("ticket_opened", "agent_reply")]["median_s"] == 210
    assert e[("agent_reply", "ticket_resolved")]["median_s"] == 1650
    assert e[("agent_reply", "ticket_resolved")]["p90_s"] == pytest.approx(1500 + 0.9 * 300)
    nodes = {n["activity"]: n for n in pm.nodes.to_pylist()}
    assert nodes["ticket_opened"]["starts"] == 3 and nodes["ticket_resolved"]["ends"] == 3
    assert nodes["agent_reply"]["events"] == 3 and nodes["agent_reply"]["journeys"] == 2
    assert pm.nodes.meta["n_journeys"] == 3 and pm.nodes.meta["n_events"] == 9
    # pruning: edges seen once go; the segment filter keeps Ana's two tickets
    assert set(edges(km.process_map(ws, min_edge_count=2))) == {
        ("ticket_opened", "agent_reply"), ("agent_reply", "ticket_resolved")}
    assert set(edges(km.process_map(ws, segment="vip"))) == {
        ("ticket_opened", "agent_reply"), ("agent_reply", "ticket_resolved"),
        ("ticket_opened", "ticket_resolved")}
    # channel level with runs collapsed: chat then phone never follow within a ticket
    assert edges(km.process_map(ws, level="channel", collapse=True)) == {}
    # Ben's two replies are one step; it ends at the second (11:10), so the hand-off to
    # the resolution (11:40) takes 1800 s, as T1's takes 1500 s: median 1650 s
    runs = km.process_map(ws, collapse=True)
    e = edges(runs)
    assert ("agent_reply", "agent_reply") not in e
    assert e[("agent_reply", "ticket_resolved")]["median_s"] == 1650
    assert e[("agent_reply", "ticket_resolved")]["mean_s"] == 1650
    assert e[("ticket_opened", "agent_reply")]["median_s"] == 210  # to the run's first reply
    assert {n["activity"]: n["events"] for n in runs.nodes.to_pylist()}["agent_reply"] == 2
    assert "digraph" in pm.to_dot()
    with pytest.raises(KeymomentsError):
        km.process_map(ws, level="colour")


def _dot_tokens(text: str) -> list[tuple[str, str]]:
    """DOT tokens as Graphviz's lexer reads them, written from the DOT grammar (not from
    the code under test): a quoted string runs to the first ``"`` that is not part of a
    ``\\"`` or ``\\\\`` pair, and is kept raw; an unterminated one is an error."""
    tokens, i = [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
        elif text[i] == '"':
            j = i + 1
            while j < len(text) and text[j] != '"':
                j += 2 if text[j] == "\\" and text[j + 1:j + 2] in ('"', "\\") else 1
            assert j < len(text), f"unterminated string from {text[i:i + 40]!r}"
            tokens.append(("string", text[i + 1:j]))
            i = j + 1
        elif text.startswith("->", i):
            tokens.append(("->", "->"))
            i += 2
        elif text[i] in "{}[];=":
            tokens.append((text[i], text[i]))
            i += 1
        else:
            word = re.match(r"[A-Za-z_][A-Za-z_0-9]*", text[i:])
            assert word, f"not a DOT token at {text[i:i + 40]!r}"
            tokens.append(("id", word.group()))
            i += word.end()
    return tokens


def _dot_unescape(raw: str) -> str:
    """The text of a quoted DOT string as Graphviz draws it (``\\\\``, ``\\"``, ``\\n``);
    any other escape here would be a stray backslash read as a Graphviz escape."""
    assert "\n" not in raw, f"a raw line break in {raw!r}"
    out, i = [], 0
    while i < len(raw):
        if raw[i] == "\\":
            assert raw[i + 1:i + 2] in ("\\", '"', "n"), f"stray backslash in {raw!r}"
            out.append({"n": "\n"}.get(raw[i + 1], raw[i + 1]))
            i += 2
        else:
            out.append(raw[i])
            i += 1
    return "".join(out)


def test_process_map_dot_parses_with_backslashes_quotes_and_line_breaks(tmp_path):
    # a trailing backslash escaped the closing quote: '"back\slash\" [label=...' ran on
    odd = ["back\\slash\\", 'say "hi"', "two\nlines"]
    root = tmp_path / "odd"
    root.mkdir()
    rows = [ev("cy", "09:00:00", "ticket_opened", "chat", "T9"),
            *(ev("cy", f"09:0{i + 1}:00", t, "chat", "T9") for i, t in enumerate(odd)),
            ev("cy", "09:30:00", "ticket_resolved", "chat", "T9")]
    (root / "events.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n",
                                       encoding="utf-8")
    (root / "keymoments.yaml").write_text(CONFIG, encoding="utf-8")
    with km.open(root) as w:
        w.ingest()
        w.build()
        pm = km.process_map(w)
    (root / "map.dot").write_text(pm.to_dot(), encoding="utf-8")
    tokens = _dot_tokens((root / "map.dot").read_text(encoding="utf-8"))
    assert [v for _, v in tokens[:6]] == ["digraph", "process_map", "{", "rankdir", "=", "LR"]
    assert tokens[-1] == ("}", "}")
    body, statements = tokens[7:-1], []
    while body:
        end = body.index((";", ";"))
        statements.append(body[:end])
        body = body[end + 1:]
    nodes, dot_edges = {}, set()
    for st in statements:
        kinds, text = [k for k, _ in st], [_dot_unescape(v) if k == "string" else v for k, v in st]
        if kinds == ["string", "[", "id", "=", "string", "]"] and text[2] == "label":
            nodes[text[0]] = text[4]
        elif kinds == ["string", "->", "string", "[", "id", "=", "string", "]"]:
            dot_edges.add((text[0], text[2]))
        else:
            pytest.fail(f"not a node or an edge statement: {st}")
    assert nodes == {n["activity"]: f"{n['activity']} ({n['events']})"
                     for n in pm.nodes.to_pylist()}
    assert set(nodes) == {"ticket_opened", "ticket_resolved", *odd}
    assert dot_edges == set(edges(pm)) and len(dot_edges) == 4


def test_variants_around_and_flows(ws):
    v = km.variants(ws)
    paths = {tuple(r["path"]): r["journeys"] for r in v.variants.to_pylist()}
    assert paths == {("ticket_opened", "agent_reply", "ticket_resolved"): 1,
                     ("ticket_opened", "agent_reply", "agent_reply", "ticket_resolved"): 1,
                     ("ticket_opened", "ticket_resolved"): 1}
    assert v.variants.meta["n_variants"] == 3
    a = km.variants(ws, around="agent_reply", before=1, after=1).variants.to_pylist()
    # first reply: T1 (start) opened | resolved (end); T2 (start) opened | reply
    assert sorted((tuple(r["before"]), tuple(r["after"])) for r in a) == [
        (("(start)", "ticket_opened"), ("agent_reply",)),
        (("(start)", "ticket_opened"), ("ticket_resolved", "(end)"))]
    flows = {(f["step"], f["source"], f["target"]): f["value"] for f in v.flows.to_pylist()}
    assert flows[(0, "ticket_opened", "agent_reply")] == 2
    assert flows[(1, "ticket_resolved", "(end)")] == 1
    assert flows[(2, "ticket_resolved", "(end)")] == 1


def test_designed_journey_automaton():
    d = DesignedJourney(name="buy", steps=["browse*", "checkout", "pay?", "ship+", "deliver"])
    assert check(d, ["browse", "browse", "checkout", "ship", "ship", "deliver"]).kind == "conforms"
    loop = check(d, ["checkout", "browse", "checkout", "ship", "deliver"])
    assert (loop.kind, loop.position, loop.after, loop.expected) == ("loop_back", 1, "checkout", "ship")
    skip = check(d, ["checkout", "deliver"])
    assert (skip.kind, skip.expected) == ("skipped", "ship")
    assert check(d, ["checkout", "pay", "pay"]).kind == "loop_back"  # pay is not repeatable
    assert check(d, ["checkout", "refund"]).kind == "detour"
    assert check(DesignedJourney(name="x", steps=["a"], ignore=["n"]), ["n", "a", "n"]).kind == "conforms"
    with pytest.raises(ValueError):
        DesignedJourney(name="x", steps=["a?"])


def test_conformance_by_name(ws):
    c = km.conformance(ws, "support")
    m = c.summary.meta
    # T1 and T2 follow opened -> reply+ -> resolved; T3 skips the reply
    assert m["journeys"] == 3 and m["counts"]["conforms"] == 2 and m["counts"]["skipped"] == 1
    assert m["share_conforming"] == pytest.approx(2 / 3)
    dev = [r for r in c.deviations.to_pylist() if r["kind"] == "skipped"][0]
    assert (dev["after"], dev["activity"], dev["expected"]) == ("ticket_opened", "ticket_resolved",
                                                               "agent_reply")
    assert dev["median_then_s"] == 0  # the skipping event was T3's last
    with pytest.raises(KeymomentsError, match="no designed journey named 'nope'"):
        km.conformance(ws, "nope")


def test_channel_switching_and_lost_context(ws):
    s = km.channel_switching(ws)
    contacts = {r["journey_key"]: r for r in s.contacts.to_pylist()}
    # T1 (chat) -> T3 (phone) 1.5 h later, same order: a switch with lost context
    assert contacts["T1"]["switch"] and contacts["T1"]["lost_context"]
    assert contacts["T1"]["next_channel"] == "phone"
    assert not contacts["T2"]["switch"] and not contacts["T3"]["switch"]
    assert contacts["T3"]["pattern"] == "chat resolved > phone resolved"
    by_pattern = {r["pattern"]: r for r in s.precedes.to_pylist()}
    assert by_pattern["chat resolved"]["switches"] == 1 and by_pattern["chat resolved"]["contacts"] == 2
    assert s.contacts.meta["switch_rate"] == pytest.approx(1 / 3)
    assert s.model is None  # three contacts are too few to learn from
    matrix = {(r["source"], r["target"]): r["count"] for r in s.matrix.to_pylist()}
    assert matrix == {("chat", "chat"): 5, ("phone", "phone"): 1}


def test_consistency_groups_and_small_sample_shrinkage(ws):
    r = km.consistency(ws, by=["agent", "team"])
    rows = {(x["kind"], x["dimension"], x["group"]): x for x in r.to_pylist()}
    # welcomes: T1 a1 (first agent event), T2 a2, T3 a2 (its resolution)
    assert rows[("welcome", "agent", "a1")]["n"] == 1 and rows[("welcome", "agent", "a2")]["n"] == 2
    assert rows[("welcome", "team", "north")]["n"] == 1  # a1 is in team north
    # twelve agents with 40 contacts each, alike (seeded); a new agent's three poor
    # contacts are not enough to flag it, nor three wild ones; thirty are
    rng = np.random.default_rng(1)
    groups, values = [], []
    for a in range(12):
        groups += [f"a{a:02d}"] * 40
        values += list(np.clip(rng.normal(0.25 + rng.normal(0, 0.05), 0.4, 40), -1, 1))

    def flags(name, extra):
        stats = {s["group"]: s for s in group_stats(groups + [name] * len(extra), values + extra)}
        return stats[name], {g for g, s in stats.items() if s["flag"]}

    new, flagged = flags("new", [-0.6, -0.1, -0.3])
    assert flagged == set() and new["shrunk_mean"] > new["mean"]  # pulled toward the others
    assert flags("new", [1.0, -1.0, 1.0])[1] == set()
    old = list(np.clip(rng.normal(-0.3, 0.4, 30), -1, 1))
    assert flags("old", old)[1] == {"old"} and flags("old", old)[0]["flag"] == "low"
    wild = list(np.clip(rng.normal(0.25, 1.0, 30), -1, 1))
    assert flags("wild", wild)[0]["flag"] == "inconsistent" and flags("wild", wild)[1] == {"wild"}


def test_export_log_round_trips_through_the_readers(ws, make_workspace, tmp_path):
    out = km.export_log(ws, tmp_path / "log.xes", journey_type="issue_resolution")
    assert (out["traces"], out["events"]) == (3, 9)
    csv_out = km.export_log(ws, tmp_path / "log.csv")
    assert (csv_out["traces"], csv_out["events"]) == (3, 9)
    config = """
name: back
journeys:
  types: [{name: issue_resolution, key: ticket, end: [ticket_resolved]}]
sources:
  log:
    path: PATH
    format: FMT
    identifiers: {case: "case:concept:name"}
    refs: {ticket: "case:concept:name"}
    event_type: "concept:name"
    ts: "time:timestamp"
    agent: "org:resource"
    channel: channel
"""
    want = sorted(tuple(r["path"]) * r["journeys"] for r in km.variants(ws).variants.to_pylist())
    for name, fmt in (("log.xes", "xes"), ("log.csv", "csv")):
        text = config.replace("PATH", str(tmp_path / name)).replace("FMT", fmt)
        back = make_workspace(text, folder=f"back-{fmt}")
        back.ingest()
        back.build()
        got = sorted(tuple(r["path"]) * r["journeys"] for r in km.variants(back).variants.to_pylist())
        assert got == want, fmt
        assert edges(km.process_map(back)).keys() == edges(km.process_map(ws)).keys()
    with pytest.raises(KeymomentsError, match="use a .xes or .csv"):
        km.export_log(ws, tmp_path / "log.txt")


@pytest.mark.parametrize("name", ["log.xes", "log.csv"])
def test_an_export_that_fails_half_way_leaves_the_previous_file(ws, tmp_path, monkeypatch, name):
    from keymoments.paths import export

    path = tmp_path / name
    km.export_log(ws, path)
    before = path.read_bytes()
    calls = {"n": 0}
    real = export._iso

    def fail_after_some(ts):
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("the disk went away")
        return real(ts)

    monkeypatch.setattr(export, "_iso", fail_after_some)
    with pytest.raises(RuntimeError, match="disk went away"):
        km.export_log(ws, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary file left


def test_cli_path_commands_are_a_thin_shell(ws, tmp_path):
    from click.testing import CliRunner

    from keymoments.cli import main

    want = {k: v["count"] for k, v in edges(km.process_map(ws)).items()}
    _build(tmp_path / "cli").close()  # the CLI opens its own (read-only) connection
    run = lambda *args: CliRunner().invoke(main, ["-w", str(tmp_path / "cli"), *args])  # noqa: E731
    r = run("process-map", "--json")
    assert r.exit_code == 0, r.output
    got = {(x["source"], x["target"]): x["count"] for x in map(json.loads, r.output.splitlines())}
    assert got == want
    r = run("conformance", "support")
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(2, 3, method="wilson")  # 2 of 3 follow it
    assert r.exit_code == 0, r.output
    assert f"66.7% (95% {low:.1%} to {high:.1%}) follow 'support'" in r.output, r.output
    r = run("variants", "--around", "agent_reply", "--json")
    assert r.exit_code == 0 and len(r.output.splitlines()) == 2
    r = run("channel-switching", "--json", "--type", "issue_resolution")
    assert r.exit_code == 0 and "chat resolved" in r.output
    r = run("consistency", "--by", "agent", "--json")
    assert r.exit_code == 0 and '"group": "a2"' in r.output
    r = run("export-log", str(tmp_path / "out.csv"))
    assert r.exit_code == 0 and "3 journeys, 9 events" in r.output
    r = run("conformance", "nope")
    assert r.exit_code == 1 and "no designed journey named 'nope'" in r.output


def test_the_switch_matrix_counts_switches_as_journeys_do(make_workspace):
    """A step to or from an event without a channel is no switch, in the matrix as in
    journeys.channel_switches (both channels known, and different)."""
    text = """\
name: shop
sources:
  ev:
    path: ev.csv
    identifiers: {customer_id: cid}
    event_type: kind
    ts: at
    channel: ch
"""
    rows = ("cid,at,kind,ch\n1,2024-01-01T00:00:00Z,a,web\n1,2024-01-01T00:05:00Z,b,\n"
            "1,2024-01-01T00:10:00Z,c,phone\n1,2024-01-01T00:15:00Z,d,web\n")
    ws = make_workspace(text, {"ev.csv": rows})
    ws.ingest("ev")
    ws.build()
    s = km.channel_switching(ws)
    flagged = {(r["source"], r["target"]): r["switch"] for r in s.matrix.to_pylist()}
    assert flagged == {("web", "(none)"): False, ("(none)", "phone"): False,
                       ("phone", "web"): True}
    switches = ws.con.execute("SELECT sum(channel_switches) FROM journeys").fetchone()[0]
    assert switches == sum(r["count"] for r in s.matrix.to_pylist() if r["switch"]) == 1


def test_a_survey_after_a_chat_is_no_channel_switch(make_workspace):
    """Hand-computed: chat -> survey answer -> chat -> phone in one ticket: the survey
    is the customer's answer, not a step on another channel, so one switch (chat ->
    phone), in journeys.channel_switches as in the matrix."""
    text = """\
name: shop
sources:
  ev:
    path: ev.csv
    identifiers: {customer_id: cid}
    event_type: kind
    ts: at
    channel: ch
    refs: {ticket: t}
"""
    rows = ("cid,at,kind,ch,t\n1,2024-01-01T00:00:00Z,ticket_opened,chat,T1\n"
            "1,2024-01-01T00:05:00Z,csat_answered,survey,T1\n"
            "1,2024-01-01T00:10:00Z,agent_reply,chat,T1\n"
            "1,2024-01-01T00:15:00Z,ticket_resolved,phone,T1\n")
    ws = make_workspace(text, {"ev.csv": rows})
    ws.ingest("ev")
    ws.build()
    stages = dict(ws.con.execute("SELECT event_type, stage FROM events").fetchall())
    assert stages["csat_answered"] == "feedback"  # the taxonomy's stage for a survey
    assert ws.con.execute("SELECT channel_switches FROM journeys WHERE journey_key = 'T1'"
                          ).fetchone()[0] == 1
    s = km.channel_switching(ws)
    flagged = {(r["source"], r["target"]): r["switch"] for r in s.matrix.to_pylist()}
    assert flagged == {("chat", "survey"): False, ("survey", "chat"): False,
                       ("chat", "phone"): True}


def test_an_xes_export_is_well_formed_whatever_the_names_hold(make_workspace, tmp_path):
    """Control characters XML forbids even escaped (a vertical tab in an agent's name)
    made the log unreadable, by keymoments' own reader too; they are written as U+FFFD."""
    import xml.etree.ElementTree as ET

    config = """
sources:
  t:
    path: t.csv
    identifiers: {customer_id: customer}
    refs: {ticket: ticket}
    event_type: event_type
    ts: ts
    agent: agent
"""
    rows = ("customer,ticket,event_type,ts,agent\n"
            "c1,t1,ticket_opened,2024-01-01T10:00:00Z,ana\x0bmaria\n"
            "c1,t1,ticket_resolved,2024-01-01T12:00:00Z,bo\x01b <&>\n")
    ws = make_workspace(config, {"t.csv": rows})
    ws.ingest()
    ws.build()
    out = km.export_log(ws, tmp_path / "log.xes")
    assert out["events"] == 2
    resources = [e.get("value") for e in ET.parse(tmp_path / "log.xes").iter()
                 if e.get("key") == "org:resource"]
    assert sorted(resources) == ["ana\ufffdmaria", "bo\ufffdb <&>"]


def test_an_output_under_a_file_is_a_clear_error(ws, tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(KeymomentsError, match="afile is a file, not a folder; choose another"):
        km.export_log(ws, tmp_path / "afile" / "log.xes")
