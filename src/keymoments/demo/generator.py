"""Generate a demo shop's exports, their ``keymoments.yaml`` and the planted truth.

>>> import tempfile
>>> out = tempfile.mkdtemp()
>>> truth = generate_demo(out, n_events=1_000, seed=1)
>>> 900 <= truth.n_events <= 1_100, truth.late_carrier, truth.poor_welcome_agent
(True, 'SlowShip', 'agent_07')
>>> sorted(p.name for p in Path(out).iterdir())[:4]
['customers.csv', 'keymoments.yaml', 'orders.csv', 'reviews.csv']
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..io import atomic_open, atomic_write_text
from .columns import codes_to_strings
from .comments import LANGUAGES, comment_pool
from .events import CHANNELS, event_log
from .files import EXTENSIONS, FORMATS, write_table
from .mapping import config_yaml, flat_mapping, source_mappings
from .tables import TS, Labels, source_tables
from .truth import DemoTruth, build_truth
from .params import AGENTS, CARRIERS, EVENT_TYPES, SCALES, ShopParams
from .world import World, restrict, simulate

__all__ = ["generate_demo", "demo_world", "write_flat_events_parquet", "DemoTruth", "CONFIG_NAME"]

CONFIG_NAME = "keymoments.yaml"
#: Events per customer of the default shop, measured; only a first guess for sizing.
_EVENTS_PER_CUSTOMER = 29.25
_TOLERANCE = 0.02


def _world_of_size(n_events: int, seed: int, params: ShopParams | None = None) -> World:
    """A world with ``n_events`` events, within ``_TOLERANCE`` (or one customer's events).

    The customer count is estimated from the events per customer; customers are
    independent, so when the shop comes out too big a seeded random subset of them is
    kept whose events add up to the target, and when too small it is simulated again
    with more customers.
    """
    if n_events < 1:
        raise ValueError(f"n_events must be positive, got {n_events}")
    n_customers = max(math.ceil(n_events / _EVENTS_PER_CUSTOMER), 5)
    for _ in range(8):
        world = simulate(n_customers, seed, params)
        total = world.n_events
        if abs(total - n_events) <= _TOLERANCE * n_events:
            return world
        if total > n_events:
            return restrict(world, _subset(world.events_per_customer(), n_events, seed))
        n_customers = math.ceil(n_customers * (1 + 2 * _TOLERANCE) * n_events / max(total, 1)) + 5
    return world  # pragma: no cover - each attempt grows the shop


def _subset(per_customer: np.ndarray, target: int, seed: int) -> np.ndarray:
    """Customers (a mask) whose events add up to about ``target``: a seeded random prefix
    just below it, plus the one other customer that best fills the gap."""
    order = np.random.default_rng([seed, 1]).permutation(len(per_customer))
    cum = np.cumsum(per_customer[order])
    k = int(np.searchsorted(cum, target, side="right"))  # order[:k] stays at or below target
    keep = np.zeros(len(per_customer), dtype=bool)
    keep[order[:k]] = True
    gap = target - (int(cum[k - 1]) if k else 0)
    rest = order[k:]
    if gap > 0 and len(rest):
        best = rest[np.argmin(np.abs(per_customer[rest] - gap))]
        if abs(int(per_customer[best]) - gap) < gap:
            keep[best] = True
    return keep


def demo_world(n_events: int = 20_000, seed: int = 7, params: ShopParams | None = None) -> World:
    """The simulated shop :func:`generate_demo` writes for these ``n_events`` and
    ``seed`` (the same arrays: an oracle for tests of what the engine finds).

    >>> import tempfile
    >>> demo_world(1_000, seed=1).n_events == generate_demo(tempfile.mkdtemp(), 1_000, 1).n_events
    True
    """
    return _world_of_size(n_events, seed, params)


def generate_demo(
    out_dir: str | Path, n_events: int = 20_000, seed: int = 7, fmt: str = "csv"
) -> DemoTruth:
    """Write a demo shop's exports into ``out_dir``, with ``keymoments.yaml`` mapping them
    and the planted truth (``truth.json``, ``truth_journeys.parquet``).

    The files are ``web_events``, ``orders`` (wide), ``tickets``, ``surveys_csat``,
    ``surveys_nps``, ``surveys_ces``, ``reviews`` and ``customers`` (wide, the CRM), each
    as ``<name>.<fmt>``; ``fmt`` is ``csv``, ``parquet`` or ``jsonl``. The same ``seed``
    gives byte-identical files; ``n_events`` is met within a few percent.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    world = demo_world(n_events, seed)
    labels = Labels(world)
    tables = source_tables(world, labels)
    mappings = source_mappings(EXTENSIONS[fmt])
    files = {name: mappings[name]["path"] for name in tables}
    for name, table in tables.items():
        write_table(table, out / files[name], fmt)
    atomic_write_text(out / CONFIG_NAME, config_yaml(mappings))
    rows = {name: t.num_rows for name, t in tables.items()}
    return build_truth(world, labels, rows, files, fmt, out)


def write_flat_events_parquet(out_path: str | Path, n_events: int, seed: int = 7) -> dict[str, Any]:
    """Write exactly ``n_events`` events of a demo shop as one long Parquet file (already
    stitched: ``customer_id`` is the true person), sorted by time, for benchmarks.

    Columns: ``customer_id, ts`` (timestamp, UTC), ``channel, event_type, session_id,
    order_id, ticket_id, agent, rating, text, language, amount, carrier``.
    ``rating`` is on a 1-5 scale for every feedback event (NPS and CES answers are
    rescaled). Returns the source mapping of the file (a ``sources:`` entry).

    >>> import tempfile, pyarrow.parquet as pq
    >>> path = Path(tempfile.mkdtemp()) / "flat.parquet"
    >>> mapping = write_flat_events_parquet(path, 500, seed=2)
    >>> pq.read_metadata(path).num_rows, mapping["ts"]
    (500, 'ts')
    """
    out_path = Path(out_path)
    target = math.ceil(n_events * (1 + 3 * _TOLERANCE)) + 50
    world = _world_of_size(target, seed)
    while world.n_events < n_events:  # a surplus, then the earliest n_events are kept
        target = math.ceil(target * 1.5)
        world = _world_of_size(target, seed)
    lab = Labels(world)
    log = event_log(world)
    order = np.argsort(log["ts"], kind="stable")[:n_events]
    g = {k: v[order] for k, v in log.items()}
    low = np.array([SCALES[k][0] for k in SCALES], dtype=float)
    high = np.array([SCALES[k][1] for k in SCALES], dtype=float)
    has = g["rating"] >= 0
    sc = np.maximum(g["scale"], 0)
    rating = np.rint(1 + 4 * (g["rating"] - low[sc]) / (high[sc] - low[sc]))
    pool, _, _ = comment_pool()
    lang = world.customers["lang"][g["cust"]]
    table = pa.table({
        "customer_id": lab.customer(g["cust"]),
        "ts": pa.array(g["ts"]).cast(TS).cast(pa.timestamp("us", tz="UTC")),
        "channel": codes_to_strings(g["channel"], CHANNELS),
        "event_type": codes_to_strings(g["etype"], EVENT_TYPES),
        "session_id": lab.session(g["session"]),
        "order_id": lab.order(g["order"]),
        "ticket_id": lab.ticket(g["ticket"]),
        "agent": codes_to_strings(g["agent"], AGENTS),
        "rating": pa.array(rating, mask=~has),
        "text": pa.array(pool).take(pa.array(g["comment"], mask=g["comment"] < 0)),
        "language": codes_to_strings(np.where(g["comment"] >= 0, lang, -1), LANGUAGES),
        "amount": pa.array(g["amount"], mask=np.isnan(g["amount"])),
        "carrier": codes_to_strings(g["carrier"], CARRIERS),
    })  # fmt: skip
    with atomic_open(out_path, "wb") as fh:
        pq.write_table(table, fh, compression="zstd")
    return flat_mapping(out_path.name)
