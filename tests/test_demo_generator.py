"""The demo generator, checked against its written files.

Every planted figure the truth states is recomputed here from the export files alone
(pandas, csv, json), not from the generator's arrays: an oracle, not an echo.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from keymoments.config import SourceSpec, load_config
from keymoments.demo import DemoTruth, generate_demo, write_flat_events_parquet
from keymoments.demo.comments import COMMENTS

WIDE = {
    "orders": ["order_placed_at", "payment_approved_at", "shipped_at", "delivered_at", "cancelled_at"],
    "customers": ["signup_at", "loyalty_joined_at", "subscription_cancelled_at"],
}
LONG_TS = {"web_events": "ts", "tickets": "ts", "surveys_csat": "ts", "surveys_nps": "ts",
           "surveys_ces": "ts", "reviews": "posted_at"}  # fmt: skip
SOURCES = sorted([*WIDE, *LONG_TS])


def _read(out: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(out / f"{name}.csv", dtype=str, keep_default_na=False, na_values=[""])


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, DemoTruth, dict[str, pd.DataFrame]]:
    out = tmp_path_factory.mktemp("demo")
    truth = generate_demo(out, n_events=5_000, seed=11)
    return out, truth, {name: _read(out, name) for name in SOURCES}


@pytest.fixture(scope="module")
def large(tmp_path_factory) -> tuple[DemoTruth, dict[str, pd.DataFrame]]:
    """A bigger demo (Parquet, quick to read) for the planted rates."""
    out = tmp_path_factory.mktemp("large")
    truth = generate_demo(out, n_events=120_000, seed=5, fmt="parquet")
    return truth, {name: pd.read_parquet(out / f"{name}.parquet") for name in SOURCES}


def test_files_and_truth_written(demo):
    out, truth, _ = demo
    names = {p.name for p in out.iterdir()}
    extra = {"keymoments.yaml", "truth.json", "truth_journeys.parquet"}
    assert {f"{s}.csv" for s in SOURCES} | extra == names
    loaded = DemoTruth.load(out)
    assert loaded.to_dict() == json.loads((out / "truth.json").read_text(encoding="utf-8"))
    assert loaded.journeys_table().num_rows >= len(truth.journeys)


def test_same_seed_same_bytes(tmp_path):
    for fmt in ("csv", "parquet", "jsonl"):
        a, b = tmp_path / f"a-{fmt}", tmp_path / f"b-{fmt}"
        generate_demo(a, n_events=2_000, seed=3, fmt=fmt)
        generate_demo(b, n_events=2_000, seed=3, fmt=fmt)
        files = sorted(p.name for p in a.iterdir())
        assert files == sorted(p.name for p in b.iterdir())
        for name in files:
            assert (a / name).read_bytes() == (b / name).read_bytes(), f"{fmt}: {name} differs"
    c = tmp_path / "c"
    generate_demo(c, n_events=2_000, seed=4)
    assert (c / "orders.csv").read_bytes() != (tmp_path / "a-csv" / "orders.csv").read_bytes()


def test_config_validates_and_maps_every_file(demo):
    out, truth, _ = demo
    cfg = load_config(out / "keymoments.yaml")
    assert cfg.name == "demo"
    assert sorted(cfg.sources) == SOURCES
    for name, spec in cfg.sources.items():
        assert (out / spec.path).is_file()
        assert spec.path == truth.files[name]
    # journeys partition events by ref, ticket before order before session; the rest are visits
    assert [(t.name, t.key) for t in cfg.journeys.types] == [
        ("issue_resolution", "ticket"), ("purchase", "order"), ("browsing", "session")]
    assert (cfg.journeys.catch_all, cfg.journeys.catch_all_gap) == ("visit", 1800)
    # valence: only the rules the truth was planted with, one per non-feedback event type
    v = cfg.valence
    assert not v.use_default_rules and v.weights["text"] == 0
    assert [r.model_dump(exclude_unset=True) for r in v.rules] == truth.peak_end["valence_rules"]
    covered = Counter(e for r in v.rules for e in r.event_types)
    feedback = {"csat_answered", "nps_answered", "ces_answered", "review_posted"}
    assert set(covered) == set(truth.event_types) - feedback and set(covered.values()) == {1}


def test_n_events_counts_rows_and_timestamp_cells(demo):
    out, truth, frames = demo
    counted = {name: int(frames[name][col].notna().sum()) for name, col in LONG_TS.items()}
    assert all(frames[name][LONG_TS[name]].notna().all() for name in LONG_TS)
    counted.update({name: int(frames[name][cols].notna().sum().sum()) for name, cols in WIDE.items()})
    assert counted == truth.events
    assert sum(counted.values()) == truth.n_events
    assert {name: len(f) for name, f in frames.items()} == truth.rows
    # the same count through the mapping: one event per row and non-blank timestamp
    cfg = load_config(out / "keymoments.yaml")
    via_mapping = sum(
        int(frames[name][spec_e.ts.column].notna().sum())
        for name, spec in cfg.sources.items()
        for spec_e in spec.event_specs()
    )
    assert via_mapping == truth.n_events
    event_types = Counter()
    for name, spec in cfg.sources.items():
        for e in spec.event_specs():
            present = frames[name][e.ts.column].notna()
            if e.event_type.column:
                event_types.update(frames[name].loc[present, e.event_type.column])
            else:
                event_types[e.event_type.value] += int(present.sum())
    assert dict(event_types) == truth.event_types


@pytest.mark.parametrize("n", [1_000, 3_000, 20_000])
def test_size_is_close_to_the_target(tmp_path, n):
    truth = generate_demo(tmp_path, n_events=n, seed=n)
    assert 0.9 * n <= truth.n_events <= 1.1 * n


def test_late_carrier_rate_from_the_orders_file(demo, large):
    for truth, orders in ((demo[1], demo[2]["orders"]), (large[0], large[1]["orders"])):
        delivered = orders[orders["delivered_at"].notna()]
        late = pd.to_datetime(delivered["delivered_at"]) > pd.to_datetime(delivered["estimated_delivery_at"])
        rate = late.groupby(delivered["carrier"]).mean().round(4).to_dict()
        assert rate == truth.late_rate
    truth = large[0]
    assert truth.late_carrier == "SlowShip"
    assert 0.5 < truth.late_rate["SlowShip"] < 0.7
    assert all(0.04 < r < 0.13 for c, r in truth.late_rate.items() if c != "SlowShip")


def test_dispatch_against_the_promise_from_the_orders_file(large):
    truth, f = large
    o = f["orders"].dropna(subset=["shipped_at"])
    early = (o["ship_by_at"] - o["shipped_at"]).dt.total_seconds() > 12 * 3600
    late = o["shipped_at"] > o["ship_by_at"]
    planted = truth.params["dispatch_share"]
    assert abs(early.mean() - planted[0]) < 0.02 and abs(late.mean() - planted[2]) < 0.02
    tj = truth.journeys_table().to_pandas().set_index("ref")
    assert (tj.loc[o["order_id"], "dispatch"].to_numpy() == np.select(
        [early, late], ["fast", "late"], "on_time")).all()


def test_survey_share_is_a_minority(demo):
    _, truth, f = demo
    eligible = int((f["orders"]["delivered_at"].notna() | f["orders"]["cancelled_at"].notna()).sum())
    eligible += f["tickets"]["ticket_id"].nunique()
    answered = sum(len(f[f"surveys_{k}"]) for k in ("csat", "nps", "ces"))
    assert (eligible, answered) == (truth.survey["eligible_journeys"], truth.survey["answered"])
    assert 0.15 <= answered / eligible <= 0.35


def _digits(phone: str) -> str:
    d = re.sub(r"\D", "", phone)
    return d[1:] if len(d) == 11 and d.startswith("1") else d


def test_identifiers_vary_by_channel(demo):
    _, _, f = demo
    t, crm = f["tickets"], f["customers"]
    phones = t.loc[t["phone"].notna(), "phone"]
    shapes = {re.sub(r"\d", "9", p) for p in phones}
    assert len(shapes) >= 3, shapes
    assert set(phones.map(_digits)) <= set(crm["phone"].map(_digits))
    assert t.loc[t["channel"] == "phone", ["customer_id", "email"]].isna().all().all()
    emails = t.loc[t["email"].notna(), "email"]
    assert (emails != emails.str.lower()).any()
    assert set(emails.str.lower()) <= set(crm["email"])
    assert t.loc[t["channel"] == "chat", "customer_id"].notna().all()
    # guests: no customer id on the web, the email typed at checkout
    web = f["web_events"]
    with_email = web[web["email"].notna()]
    assert len(with_email) and with_email["customer_id"].isna().all()
    assert set(with_email["event"]) <= {"checkout_started", "payment_failed"}
    assert set(with_email["email"]) <= set(crm["email"])


def test_people_found_by_stitching_identifiers(demo):
    """Union of rows sharing a normalised identifier gives the truth's person count."""
    _, truth, f = demo
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    kinds = {"customer_id": str, "device_id": str, "email": str.lower, "phone": _digits}
    for frame in f.values():
        cols = [c for c in kinds if c in frame.columns]
        for row in frame[cols].itertuples(index=False):
            ids = [f"{c}:{kinds[c](v)}" for c, v in zip(cols, row) if isinstance(v, str)]
            for other in ids[1:]:
                parent[find(other)] = find(ids[0])
            if ids:
                find(ids[0])
    assert len({find(x) for x in parent}) == truth.n_persons_stitchable
    assert truth.n_customers == len(f["customers"])
    assert truth.n_persons_stitchable > truth.n_customers  # anonymous visitors never identified


def _ref_events(f: dict[str, pd.DataFrame], ref: str) -> pd.DataFrame:
    """(ref, ts) of every event of the journeys keyed by ``ref`` (order_id or
    ticket_id), from the files: journeys partition events by ref, ticket before order
    (the tickets about an order are journeys of their own)."""
    parts = []
    for name, ts in LONG_TS.items():
        frame = f[name]
        if ref in frame.columns:
            mine = frame[ref].notna()
            if ref == "order_id" and "ticket_id" in frame.columns:
                mine &= frame["ticket_id"].isna()
            parts.append(frame.loc[mine, [ref, ts]].set_axis([ref, "ts"], axis=1))
    if ref == "order_id":
        for col in WIDE["orders"]:
            o = f["orders"]
            parts.append(o.loc[o[col].notna(), [ref, col]].set_axis([ref, "ts"], axis=1))
    return pd.concat(parts)


def test_journey_truth_matches_the_files(demo):
    out, truth, f = demo
    table = pq.read_table(out / "truth_journeys.parquet").to_pandas()
    for ref, kind in (("order_id", "order"), ("ticket_id", "ticket")):
        ev = _ref_events(f, ref)
        got = ev.groupby(ref)["ts"].agg(["count", "min", "max"])
        tj = table[table["kind"] == kind].set_index("ref")
        assert sorted(got.index) == sorted(tj.index)
        assert (got["count"] == tj.loc[got.index, "n_events"]).all()
        assert (got["min"] == tj.loc[got.index, "start"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).all()
        assert (got["max"] == tj.loc[got.index, "end"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).all()
    # a session's journey: its web events without an order id (from checkout on, the order's)
    web = f["web_events"]
    sessions = web[web["order_id"].isna()].groupby("session_id")["ts"].agg(["count", "min", "max"])
    tj = table[table["kind"] == "session"].set_index("ref")
    assert sorted(sessions.index) == sorted(tj.index) == sorted(web["session_id"].unique())
    assert (sessions["count"] == tj.loc[sessions.index, "n_events"]).all()
    assert (sessions["min"] == tj.loc[sessions.index, "start"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).all()
    # every event with a ticket, order or session ref is in exactly one journey
    with_ref = sum(int(fr[[c for c in ("ticket_id", "order_id", "session_id") if c in fr.columns]]
                       .notna().any(axis=1).sum()) for name, fr in f.items() if name in LONG_TS)
    with_ref += int(f["orders"][WIDE["orders"]].notna().sum().sum())
    assert int(table["n_events"].sum()) == with_ref
    listed = {j["ref"]: j for j in truth.journeys}
    assert set(listed) == set(table.loc[table["kind"] != "session", "ref"])
    assert set(truth.valleys) == set(listed)


def test_valleys_are_events_of_their_journey(demo):
    _, truth, f = demo
    events = set()  # (ref, event type, ts) of every event of an order or ticket journey
    web = f["web_events"].dropna(subset=["order_id"])
    events |= set(zip(web["order_id"], web["event"], web["ts"]))
    tickets = f["tickets"]
    events |= set(zip(tickets["ticket_id"], tickets["event"], tickets["ts"]))
    wide = {"order_placed": "order_placed_at", "payment_approved": "payment_approved_at",
            "order_shipped": "shipped_at", "order_delivered": "delivered_at",
            "order_cancelled": "cancelled_at"}  # fmt: skip
    for event, col in wide.items():
        rows = f["orders"].dropna(subset=[col])
        events |= {(ref, event, ts) for ref, ts in zip(rows["order_id"], rows[col])}
    assert truth.valleys
    for ref, valley in truth.valleys.items():
        assert (ref, valley["event_type"], valley["ts"]) in events, (ref, valley)
    kinds = Counter(v["event_type"] for v in truth.valleys.values())
    assert kinds["order_delivered"] and kinds["payment_failed"]  # late deliveries, failed payments
    assert kinds["agent_reply"] and kinds["transferred"]  # slow replies, transfers


def test_remembered_score_follows_the_planted_weights(demo, large):
    out = demo[0]
    truth = demo[1]
    w = truth.peak_end["weights"]
    t = pq.read_table(out / "truth_journeys.parquet").to_pandas()
    moments = {"first": "first", "peak": "peak", "valley": "valley", "end": "end_valence"}
    r = sum(w[m] * t[col] for m, col in moments.items())
    assert np.allclose(r.clip(-1, 1), t["remembered"])
    assert (t["valley"] <= t[["first", "end_valence", "peak"]].min(axis=1)).all()
    big = large[0].journeys_table().to_pandas()
    answered = big[big["survey"] == "csat"]
    assert np.corrcoef(answered["remembered"], answered["score"])[0, 1] > 0.7


def test_planted_effects_show_in_the_files(large):
    truth, f = large
    o, t = f["orders"], f["tickets"]
    late = o["delivered_at"] > o["estimated_delivery_at"]
    csat = f["surveys_csat"].merge(o.assign(late=late)[["order_id", "late"]], on="order_id")
    means = csat.groupby("late")["csat_score"].mean()
    assert means[True] < means[False] - 1.0
    nps = f["surveys_nps"].merge(o.assign(late=late)[["order_id", "late"]], on="order_id")
    detractors = (nps["nps_score"] <= 6).groupby(nps["late"]).mean()
    assert detractors[True] > 0.5 > 0.2 > detractors[False]
    # first replies: the poor welcome agent keeps customers waiting past the SLA
    replies = t[t["event"] == "agent_reply"].sort_values("ts", kind="stable")
    first = replies.groupby("ticket_id").head(1)
    ratio = (first["wait_seconds"] / (first["sla_minutes"] * 60)).groupby(first["agent"]).median()
    assert ratio.idxmax() == truth.poor_welcome_agent == "agent_07"
    assert ratio["agent_07"] > 1.5 > 0.8 > ratio.drop("agent_07").max()
    # CSAT after tickets, by the first agent: lowest for agent_07, most spread for agent_11
    first_agent = first.set_index("ticket_id")["agent"]
    tc = f["surveys_csat"].dropna(subset=["ticket_id"])
    by_agent = tc.assign(agent=tc["ticket_id"].map(first_agent)).groupby("agent")["csat_score"]
    assert by_agent.mean().idxmin() == "agent_07"
    assert by_agent.std().idxmax() == truth.inconsistent_agent == "agent_11"
    # churners: more common after a late delivery
    churn = truth.effects
    assert churn["churn_rate_after_late_delivery"] > 1.5 * churn["churn_rate_without_late_delivery"]
    # the designed-journey detour: back to product pages after starting checkout
    assert 0.12 < truth.detour["share_of_orders"] < 0.18


def test_switchers_gave_up_on_chat_then_called(large):
    truth, f = large
    t, crm = f["tickets"], f["customers"].set_index("customer_id")
    assert len(truth.switchers) >= 10
    for s in truth.switchers:
        rows = [t[t["ticket_id"] == tid] for tid in s["tickets"]]
        assert [r["channel"].iloc[0] for r in rows] == ["chat", "chat", "phone"]
        assert [("ticket_resolved" in set(r["event"])) for r in rows] == [False, False, True]
        assert [r["ticket_id"].iloc[0] for r in sorted(rows, key=lambda r: r["ts"].min())] == s["tickets"]
        assert all((r["order_id"] == s["order_id"]).all() for r in rows)
        assert set(rows[0]["customer_id"]) == {s["customer_id"]}
        assert {_digits(p) for p in rows[2]["phone"]} == {_digits(crm.loc[s["customer_id"], "phone"])}


def test_comments_are_in_the_customers_language(demo):
    _, _, f = demo
    known = {lang: {c for texts in topics.values() for c in texts} for lang, topics in COMMENTS.items()}
    for name, col in (("surveys_csat", "comment"), ("surveys_nps", "comment"), ("reviews", "text")):
        rows = f[name].dropna(subset=[col])
        assert len(rows)
        assert all(text in known[lang] for text, lang in zip(rows[col], rows["language"]))
    langs = f["customers"]["preferred_language"].value_counts()
    assert set(langs.index) == {"en", "pt", "es", "fr", "de"}


def _rows_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [{k: (v if v != "" else None) for k, v in row.items()} for row in csv.DictReader(fh)]


def _norm(v):
    if v is None:
        return None
    if hasattr(v, "strftime"):
        return v.strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        x = float(v)
    except (TypeError, ValueError):
        return v
    return str(int(x)) if x == int(x) else repr(x)


def test_parquet_and_jsonl_hold_the_same_data(tmp_path):
    for fmt in ("csv", "parquet", "jsonl"):
        generate_demo(tmp_path / fmt, n_events=2_000, seed=9, fmt=fmt)
    assert load_config(tmp_path / "jsonl" / "keymoments.yaml").sources["tickets"].path == "tickets.jsonl"
    for name in SOURCES:
        as_csv = _rows_csv(tmp_path / "csv" / f"{name}.csv")
        lines = (tmp_path / "jsonl" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
        as_json = [json.loads(line) for line in lines]
        as_parquet = pq.read_table(tmp_path / "parquet" / f"{name}.parquet").to_pylist()
        assert len(as_csv) == len(as_json) == len(as_parquet) > 0
        for a, b, c in zip(as_csv, as_json, as_parquet):
            assert list(a) == list(b) == list(c)
            assert {k: _norm(v) for k, v in a.items()} == {k: _norm(v) for k, v in b.items()}
            assert {k: _norm(v) for k, v in a.items()} == {k: _norm(v) for k, v in c.items()}
    web = pq.read_schema(tmp_path / "parquet" / "web_events.parquet")
    assert str(web.field("ts").type) == "timestamp[us, tz=UTC]"


def test_csv_quotes_free_text(tmp_path):
    generate_demo(tmp_path, n_events=20_000, seed=2)
    rows = _rows_csv(tmp_path / "reviews.csv")
    assert any("," in (r["text"] or "") for r in rows)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r["posted_at"]) for r in rows)


def test_flat_events_parquet(tmp_path):
    path = tmp_path / "flat.parquet"
    mapping = write_flat_events_parquet(path, 3_000, seed=4)
    table = pq.read_table(path).to_pandas()
    assert len(table) == 3_000
    assert table["ts"].is_monotonic_increasing
    assert str(table["ts"].dt.tz) == "UTC"
    spec = SourceSpec.model_validate(mapping)
    assert spec.resolved_format() == "parquet" and spec.path == "flat.parquet"
    assert set(table.columns) >= {"customer_id", "ts", "channel", "event_type", "order_id",
                                  "ticket_id", "agent", "rating", "text", "amount", "carrier"}  # fmt: skip
    assert table["rating"].dropna().between(1, 5).all()


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown format"):
        generate_demo(tmp_path, n_events=1_000, fmt="xlsx")


def test_a_demo_folder_with_other_files_is_not_replaced(tmp_path):
    """The demo replaces the folder of an earlier demo, but not a folder that also
    holds files it did not write: those would be lost."""
    from keymoments.demo.run import run_demo
    from keymoments.errors import KeymomentsError

    generate_demo(tmp_path, n_events=1_000)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(KeymomentsError, match="other files \\(notes.txt\\)"):
        run_demo(tmp_path, n_events=1_000)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert (tmp_path / "truth.json").exists()
    (tmp_path / "notes.txt").unlink()
    summary = run_demo(tmp_path, n_events=1_000)  # only its own files: replaced
    assert (tmp_path / "report.html").exists() and summary is not None
