"""What the demo planted, so analyses can be checked against it.

:class:`DemoTruth` holds the summary (written to ``truth.json``); the per-journey truth
(see :mod:`.journeys`) is written to ``truth_journeys.parquet``, and also listed in
``truth.json`` (``journeys`` and their ``valleys``) while there are at most
:data:`JSON_JOURNEYS_LIMIT` order and ticket journeys.

Rates named ``planted_*`` are the simulation's parameters; the others are measured on
the written exports.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..io import atomic_open, atomic_write_text
from .columns import iso_timestamps
from .journeys import journey_table
from .moments import WEIGHTS
from .params import AGENTS, CARRIERS, DISCOVERY, ET, SCALES, SURVEYS, VALENCE
from .tables import Labels
from .valence import valence_rules
from .world import World

__all__ = ["DemoTruth", "JSON_JOURNEYS_LIMIT", "build_truth", "TRUTH_FILE", "JOURNEYS_FILE"]

TRUTH_FILE = "truth.json"
JOURNEYS_FILE = "truth_journeys.parquet"
JSON_JOURNEYS_LIMIT = 20_000


@dataclass
class DemoTruth:
    """The planted truth of a generated demo.

    Counts are exact for the written files: ``n_events`` is what the ``keymoments.yaml``
    mapping produces (rows of long files plus non-blank timestamp cells of wide ones),
    ``events`` the same per source, ``rows`` the rows per file; ``n_customers`` are the
    real people (all in the CRM); ``n_persons_stitchable`` is how many people a correct
    identity stitching finds (every customer, plus anonymous cookies that never revealed
    an email).

    Planted: ``late_carrier`` delivers late (after ``estimated_delivery_at``) far more
    often (``late_rate`` per carrier, on delivered orders); ``poor_welcome_agent`` keeps
    customers waiting on first replies, with low CSAT after; ``inconsistent_agent`` keeps
    erratic waits and has the widest CSAT spread (``agents``); ``switchers`` gave up on
    chat twice, then called; ``detour`` buyers went back to product pages after starting
    checkout; ``peak_end`` is the model survey answers are drawn from (over journeys
    that partition the events, with the valences of ``peak_end["valence_rules"]``, the
    rules the demo's ``keymoments.yaml`` gives the engine); ``effects``, ``churn``,
    ``discovery`` and ``survey`` are measured on the exports. ``journeys`` and
    ``valleys`` (ref -> worst event) are listed when small; ``journeys_file`` always
    holds every journey (see :mod:`.journeys`).

    >>> import tempfile
    >>> from keymoments.demo import generate_demo
    >>> out = tempfile.mkdtemp()
    >>> truth = generate_demo(out, n_events=1_000, seed=3)
    >>> DemoTruth.load(out).n_events == truth.n_events
    True
    """

    seed: int
    fmt: str
    n_events: int
    n_customers: int
    n_persons_stitchable: int
    files: dict[str, str]
    rows: dict[str, int]
    events: dict[str, int]
    event_types: dict[str, int]
    window: dict[str, str]
    late_carrier: str
    late_rate: dict[str, float]
    poor_welcome_agent: str
    inconsistent_agent: str
    agents: dict[str, dict[str, float]]
    switchers: list[dict[str, Any]]
    detour: dict[str, Any]
    peak_end: dict[str, Any]
    survey: dict[str, Any]
    effects: dict[str, float]
    discovery: dict[str, dict[str, float]]
    churn: dict[str, float]
    params: dict[str, Any]
    journeys_file: str = JOURNEYS_FILE
    journeys: list[dict[str, Any]] = field(default_factory=list)
    valleys: dict[str, dict[str, Any]] = field(default_factory=dict)
    out_dir: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (everything but ``out_dir``)."""
        d = asdict(self)
        d.pop("out_dir")
        return d

    def write(self, path: str | Path) -> None:
        text = json.dumps(self.to_dict(), indent=1, ensure_ascii=False, allow_nan=False)
        atomic_write_text(path, text + "\n")

    @classmethod
    def load(cls, out_dir: str | Path) -> DemoTruth:
        """Read ``truth.json`` from a demo folder."""
        out_dir = Path(out_dir)
        data = json.loads((out_dir / TRUTH_FILE).read_text(encoding="utf-8"))
        return cls(**data, out_dir=out_dir)

    def journeys_table(self) -> pa.Table:
        """Every journey's truth (from ``truth_journeys.parquet``)."""
        if self.out_dir is None:
            raise ValueError("this truth has no folder: use DemoTruth.load(out_dir)")
        return pq.read_table(self.out_dir / self.journeys_file)


def _round(x: float, nd: int = 4) -> float | None:
    """A rounded float for the JSON truth; None when undefined (no data)."""
    return float(round(float(x), nd)) if np.isfinite(x) else None


def _persons_stitchable(world: World) -> int:
    """People a correct identity stitching finds: customers plus unlinkable cookies."""
    s = world.sessions
    C = world.n_customers
    with_email = s["gave_email"]  # a guest typed an email at checkout
    fresh_unlinked = int((s["fresh"] & ~with_email).sum())
    # a customer's browser cookie links when a logged-in web session or a typed email shows it
    browser = ~s["fresh"] & ~s["app"]
    seen = np.zeros(C, bool)
    linked = np.zeros(C, bool)
    seen[s["cust"][browser]] = True
    linked[s["cust"][browser & (s["logged"] | with_email)]] = True
    return C + fresh_unlinked + int((seen & ~linked).sum())


def _switchers(world: World, lab: Labels) -> list[dict[str, Any]]:
    """Customers who had two chats without a resolution, then called and were helped
    (all three tickets, and the call's resolution, in the exports)."""
    t, e = world.tickets, world.ticket_events
    resolved = np.zeros(len(t["ticket"]), bool)
    resolved[e["ticket"][e["etype"] == ET["ticket_resolved"]]] = True
    chain_done = np.zeros(int(t["chain"].max()) + 1 if len(t["chain"]) else 0, bool)
    called = (t["chain_pos"] == 2) & resolved
    chain_done[t["chain"][called]] = True
    idx = np.flatnonzero((t["chain"] >= 0) & t["exported"])
    idx = idx[chain_done[t["chain"][idx]]]
    idx = idx[np.lexsort((t["chain_pos"][idx], t["chain"][idx]))]
    chain = t["chain"][idx]
    tickets = lab.ticket(t["ticket"][idx]).to_pylist()
    customers = lab.customer(t["cust"][idx]).to_pylist()
    orders = lab.order(t["order"][idx]).to_pylist()
    starts = list(np.flatnonzero(np.r_[True, chain[1:] != chain[:-1]])) if len(chain) else []
    return [
        {"customer_id": customers[a], "order_id": orders[a], "tickets": tickets[a:b],
         "channels": ["chat", "chat", "phone"]}
        for a, b in zip(starts, starts[1:] + [len(chain)])
        if b - a == 3
    ]  # fmt: skip


def _agents(world: World) -> dict[str, dict[str, Any]]:
    """Per agent: tickets, median first-reply wait over the SLA, CSAT after their tickets."""
    t, e = world.tickets, world.ticket_events
    first_reply = e["pos"] == 1  # the welcome
    ratio = e["wait"][first_reply] / (e["sla"][first_reply] * 60)
    by_agent = e["agent"][first_reply]
    csat = (t["survey"] == 0) & t["exported"]
    out = {}
    for a, name in enumerate(AGENTS):
        scores = t["score"][csat & (t["agent"] == a)]
        waits = ratio[by_agent == a]
        out[name] = {
            "tickets": int(((t["agent"] == a) & t["exported"]).sum()),
            "first_reply_wait_over_sla_median": _round(np.median(waits)) if len(waits) else None,
            "csat_n": len(scores),
            "csat_mean": _round(scores.mean()) if len(scores) else None,
            "csat_sd": _round(scores.std(ddof=1)) if len(scores) > 1 else None,
        }
    return out


def _rate(mask: np.ndarray, of: np.ndarray) -> float | None:
    n = int(of.sum())
    return _round((mask & of).sum() / n) if n else None


def _mean(x: np.ndarray) -> float | None:
    return _round(x.mean()) if len(x) else None


def _effects(world: World) -> dict[str, float | None]:
    """How late deliveries show in CSAT, NPS and churn (measured on the exports)."""
    o, c = world.orders, world.customers
    delivered = o["delivered"] >= 0
    late = delivered & (o["delivered"] > o["estimate"])
    on_time = delivered & ~late
    csat, nps = o["survey"] == 0, o["survey"] == 1
    had_late = np.zeros(world.n_customers, bool)
    had_late[o["cust"][late]] = True
    return {
        "csat_mean_late": _mean(o["score"][csat & late]),
        "csat_mean_on_time": _mean(o["score"][csat & on_time]),
        "nps_detractor_share_late": _rate(o["score"] <= 6, nps & late),
        "nps_detractor_share_on_time": _rate(o["score"] <= 6, nps & on_time),
        "churn_rate_after_late_delivery": _rate(c["churned"], had_late),
        "churn_rate_without_late_delivery": _rate(c["churned"], ~had_late),
    }


def _survey(world: World, rows: dict[str, int]) -> dict[str, Any]:
    o, t = world.orders, world.tickets
    eligible = int(((o["delivered"] >= 0) | (o["cancelled"] >= 0)).sum() + t["exported"].sum())
    answered = int((o["survey"] >= 0).sum() + (t["survey"] >= 0).sum())
    return {
        "eligible_journeys": eligible,
        "answered": answered,
        "share": _round(answered / eligible) if eligible else None,
        "by_type": {k: rows[f"surveys_{k}"] for k in SURVEYS},
        "eligible": "orders delivered or cancelled, and tickets",
    }


def _discovery(world: World) -> dict[str, dict[str, Any]]:
    s, p = world.sessions, world.params
    sessions = np.bincount(s["utm"], minlength=len(DISCOVERY))
    orders = np.bincount(s["utm"], weights=s["conv"], minlength=len(DISCOVERY))
    return {
        name: {"sessions": int(sessions[k]), "orders": int(orders[k]),
               "conversion": _round(orders[k] / sessions[k]) if sessions[k] else None,
               "planted_conversion": p.conversion[k]}
        for k, name in enumerate(DISCOVERY)
    }  # fmt: skip


def _churn(world: World) -> dict[str, Any]:
    c, p = world.customers, world.params
    return {
        "churned_customers": int(c["churned"].sum()),
        "unsubscribed_events": int((c["unsubscribed"] >= 0).sum()),
        "rate_after_bad_experience": _rate(c["churned"], c["ever_bad"]),
        "rate_otherwise": _rate(c["churned"], ~c["ever_bad"]),
        "planted_monthly_after_bad": p.churn_after_bad,
        "planted_monthly_otherwise": p.churn_otherwise,
        "bad_experience": f"a journey with remembered score < {p.bad_threshold}",
        "signal": "no activity after the churn; 'plus' customers also cancel their subscription",
    }


def _peak_end(world: World) -> dict[str, Any]:
    p = world.params
    return {
        "weights": dict(WEIGHTS),
        "formula": "r = clip(sum(weights[m] * valence[m] for m in (first, peak, valley, end)), -1, 1);"
                   " answer = clip(r + normal(0, noise_sd), -1, 1);"
                   " score = low + rint((high - low) * (answer + 1) / 2)",
        "noise_sd": p.noise_sd,
        "noise_sd_inconsistent_agent": p.inconsistent_noise_sd,
        "scales": {k: list(v) for k, v in SCALES.items()},
        "valence": dict(VALENCE),
        "valence_rules": valence_rules(),
        "journeys": "events partition into journeys by ref: ticket, else order, else session",
        "moments_over": "the journey's events in time order, except surveys and reviews",
    }  # fmt: skip


def _listed(journeys: pa.Table) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Order and ticket journeys, and their valleys, for ``truth.json`` (when few)."""
    kinds = journeys.column("kind").to_numpy(zero_copy_only=False)
    if int((kinds != "session").sum()) > JSON_JOURNEYS_LIMIT:
        return [], {}
    cols = ["kind", "ref", "customer_id", "start", "end", "n_events", "valley_event", "valley_ts",
            "valley", "remembered", "survey", "score"]  # fmt: skip
    listed, valleys = [], {}
    for row in journeys.filter(pa.array(kinds != "session")).select(cols).to_pylist():
        for k in ("start", "end", "valley_ts"):
            row[k] = row[k].strftime("%Y-%m-%dT%H:%M:%SZ")
        valleys[row["ref"]] = {"event_type": row.pop("valley_event"), "ts": row.pop("valley_ts"),
                               "valence": _round(row.pop("valley"))}  # fmt: skip
        row["remembered"] = _round(row["remembered"])
        listed.append(row)
    return listed, valleys


def build_truth(
    world: World, lab: Labels, rows: dict[str, int], files: dict[str, str], fmt: str, out_dir: Path
) -> DemoTruth:
    """Compute the truth, write ``truth_journeys.parquet`` and ``truth.json``, return it."""
    p, o = world.params, world.orders
    journeys = journey_table(world, lab)
    with atomic_open(out_dir / JOURNEYS_FILE, "wb") as fh:
        pq.write_table(journeys, fh, compression="zstd")
    listed, valleys = _listed(journeys)
    delivered = o["delivered"] >= 0
    late = delivered & (o["delivered"] > o["estimate"])
    window = iso_timestamps(np.array([p.start, p.end])).to_pylist()
    truth = DemoTruth(
        seed=world.seed,
        fmt=fmt,
        n_events=world.n_events,
        n_customers=world.n_customers,
        n_persons_stitchable=_persons_stitchable(world),
        files=files,
        rows=rows,
        events=world.events_per_source(),
        event_types=world.event_types(),
        window={"start": window[0], "export": window[1]},
        late_carrier=CARRIERS[int(np.argmax(p.late_prob))],
        late_rate={c: _rate(late, delivered & (o["carrier"] == k)) for k, c in enumerate(CARRIERS)},
        poor_welcome_agent=AGENTS[p.poor_welcome_agent],
        inconsistent_agent=AGENTS[p.inconsistent_agent],
        agents=_agents(world),
        switchers=_switchers(world, lab),
        detour={
            "orders": int(o["detour"].sum()),
            "share_of_orders": _rate(o["detour"], np.ones(len(o["order"]), bool)),
            "path": ["checkout_started", "product_view", "checkout_started"],
            "journey": "purchase: web events from checkout on carry the order id",
            "designed": ["page_view", "product_view", "add_to_cart", "checkout_started", "order_placed"],
        },
        peak_end=_peak_end(world),
        survey=_survey(world, rows),
        effects=_effects(world),
        discovery=_discovery(world),
        churn=_churn(world),
        params=p.as_dict(),
        journeys=listed,
        valleys=valleys,
        out_dir=out_dir,
    )
    truth.write(out_dir / TRUTH_FILE)
    return truth
