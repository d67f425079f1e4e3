"""Synthetic, seeded "long" event export for the ingest benchmark.

One row per customer event, as a CX data engineer would export it from a warehouse:

=========== ================================================================
customer_id ``C0000123`` (missing on guest rows, ~12%)
email       for ~30% of rows (all guest rows carry one); mixed case
ts          CSV: ISO 8601 string with ``Z``; Parquet: ``timestamp[us, UTC]``
channel     web, app, email, phone, chat, store
event_type  page_view, add_to_cart, order_placed, ..., survey_response
order_id    on order events
ticket_id   on support events
agent       on phone / chat / support events
rating      sparse (survey and review events), 1-5
comment     sparse free text, some with commas, double quotes, accents,
            and a few with a line break
amount      on order_placed / refund events
carrier     on order_shipped / order_delivered events
=========== ================================================================

~0.1% of rows are exact copies of the previous row (real exports repeat rows).

Files are cached under ``bench/out/`` keyed by size and seed, so every benchmark run
reads the same bytes::

    python bench/_data.py 1000000          # writes bench/out/events-1000000-s42.{csv,parquet}
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

OUT = Path(__file__).resolve().parent / "out"
CHUNK = 500_000
SEED = 42

CHANNELS = np.array(["web", "app", "email", "phone", "chat", "store"])
CHANNEL_P = np.array([0.42, 0.25, 0.12, 0.08, 0.08, 0.05])
# event types per channel, with their weights
EVENTS = {
    "web": (["page_view", "add_to_cart", "order_placed", "order_shipped", "order_delivered",
             "review_posted", "refund_issued"], [0.55, 0.15, 0.1, 0.07, 0.07, 0.04, 0.02]),
    "app": (["app_open", "page_view", "add_to_cart", "order_placed", "push_opened"],
            [0.3, 0.35, 0.15, 0.1, 0.1]),
    "email": (["email_sent", "email_opened", "email_clicked", "survey_response"],
              [0.5, 0.3, 0.15, 0.05]),
    "phone": (["call_started", "call_ended", "ticket_opened", "ticket_resolved"],
              [0.3, 0.3, 0.2, 0.2]),
    "chat": (["chat_started", "chat_message", "ticket_opened", "ticket_resolved",
              "survey_response"], [0.2, 0.4, 0.15, 0.15, 0.1]),
    "store": (["store_visit", "order_placed", "refund_issued"], [0.6, 0.35, 0.05]),
}
ORDER_EVENTS = {"order_placed", "order_shipped", "order_delivered", "refund_issued", "review_posted"}
AMOUNT_EVENTS = {"order_placed", "refund_issued"}
CARRIER_EVENTS = {"order_shipped", "order_delivered"}
TICKET_EVENTS = {"ticket_opened", "ticket_resolved", "call_started", "call_ended",
                 "chat_started", "chat_message"}
RATED_EVENTS = {"survey_response", "review_posted"}
CARRIERS = np.array(["DHL", "UPS", "FedEx", "PostNL", "La Poste", "Correios"])
DOMAINS = np.array(["example.com", "mail.example.org", "Example.NET", "shop.example.co.uk"])
COMMENTS = np.array([
    "Great service, thanks!",
    "Delivery was late, again.",
    'The agent said "two days" and it took a week',
    "ok",
    'Package arrived "damaged", box was open, very disappointed',
    "Très bien, merci beaucoup",
    "Lieferung verspätet, schade",
    "Entrega rápida, recomendo",
    "Had to call three times, nobody called back",
    'Refund processed quickly; 5 stars for "Anna"',
    "App crashed at checkout,\nhad to order on the website",
    "Friendly staff, long queue",
])

SCHEMA = pa.schema([
    ("customer_id", pa.string()), ("email", pa.string()),
    ("ts", pa.timestamp("us", tz="UTC")), ("channel", pa.string()),
    ("event_type", pa.string()), ("order_id", pa.string()), ("ticket_id", pa.string()),
    ("agent", pa.string()), ("rating", pa.int8()), ("comment", pa.string()),
    ("amount", pa.float64()), ("carrier", pa.string()),
])


def paths(n: int, seed: int = SEED) -> dict[str, Path]:
    """The cached files for ``n`` rows and ``seed``: {"csv": path, "parquet": path}."""
    stem = OUT / f"events-{n}-s{seed}"
    return {"csv": stem.with_suffix(".csv"), "parquet": stem.with_suffix(".parquet")}


def _prefixed(prefix: str, ids: np.ndarray, width: int, mask: np.ndarray) -> pa.Array:
    """``prefix`` + zero-padded id where ``mask``, else null."""
    text = pc.utf8_lpad(pa.array(ids).cast(pa.string()), width, "0")
    text = pc.binary_join_element_wise(prefix, text, "")
    return pc.if_else(pa.array(mask), text, pa.nulls(len(ids), pa.string()))


def _chunk(rng: np.random.Generator, n: int, start: int, customers: int,
           t0: int, span_us: int) -> pa.Table:
    channel_ix = rng.choice(len(CHANNELS), size=n, p=CHANNEL_P)
    channel = CHANNELS[channel_ix]
    event_type = np.empty(n, dtype=object)
    for ci, name in enumerate(CHANNELS):
        sel = channel_ix == ci
        types, w = EVENTS[name]
        event_type[sel] = np.array(types)[rng.choice(len(types), size=int(sel.sum()), p=w)]
    event_type = event_type.astype(str)

    # customers: Zipf-ish activity (a few very active), ids 1..customers
    cust = (customers * rng.random(n) ** 2).astype(np.int64) + 1
    guest = rng.random(n) < 0.12
    has_email = guest | (rng.random(n) < 0.20)
    customer_id = _prefixed("C", cust, 8, ~guest)
    local = pc.binary_join_element_wise(
        pa.array(np.where(rng.random(n) < 0.1, "User", "user")),
        pa.array(cust).cast(pa.string()), "")
    domain = pa.array(DOMAINS[cust % len(DOMAINS)])
    email = pc.binary_join_element_wise(local, domain, "@")
    email = pc.if_else(pa.array(has_email), email, pa.nulls(n, pa.string()))

    ts = pa.array(t0 + rng.integers(0, span_us, n) // 1_000_000 * 1_000_000,
                  pa.timestamp("us", tz="UTC"))

    is_order = np.isin(event_type, list(ORDER_EVENTS))
    order_id = _prefixed("O", cust * 7 + rng.integers(0, 7, n), 9, is_order)
    is_ticket = np.isin(event_type, list(TICKET_EVENTS)) | (
        np.isin(event_type, ["survey_response"]) & (rng.random(n) < 0.5))
    ticket_id = _prefixed("T", cust * 3 + rng.integers(0, 3, n), 9, is_ticket)
    has_agent = is_ticket & np.isin(channel, ["phone", "chat"]) & (rng.random(n) < 0.9)
    agent = _prefixed("agent_", rng.integers(1, 400, n), 3, has_agent)

    rated = np.isin(event_type, list(RATED_EVENTS)) & (rng.random(n) < 0.8)
    rating = pa.array(rng.integers(1, 6, n).astype(np.int8), mask=~rated)
    commented = (rated & (rng.random(n) < 0.45)) | (rng.random(n) < 0.004)
    comment = pa.array(COMMENTS[rng.integers(0, len(COMMENTS), n)], mask=~commented)
    has_amount = np.isin(event_type, list(AMOUNT_EVENTS))
    amount = pa.array(np.round(rng.lognormal(3.5, 0.8, n), 2), mask=~has_amount)
    has_carrier = np.isin(event_type, list(CARRIER_EVENTS))
    carrier = pa.array(CARRIERS[cust % len(CARRIERS)], mask=~has_carrier)

    table = pa.Table.from_arrays(
        [customer_id, email, ts, pa.array(channel), pa.array(event_type), order_id, ticket_id,
         agent, rating, comment, amount, carrier], schema=SCHEMA)
    # ~0.1% exact repeats of the previous row
    take = np.arange(n)
    dup = np.flatnonzero(rng.random(n) < 0.001)
    dup = dup[dup > 0]
    take[dup] = dup - 1
    return table.take(pa.array(take))


def _csv_table(table: pa.Table) -> pa.Table:
    iso = pc.strftime(table["ts"].cast(pa.timestamp("s", tz="UTC")), format="%Y-%m-%dT%H:%M:%SZ")
    return table.set_column(table.schema.get_field_index("ts"), "ts", iso)


def generate(n: int, seed: int = SEED, force: bool = False, quiet: bool = False) -> dict[str, Path]:
    """Write (or reuse) the CSV and Parquet files of ``n`` rows; returns their paths."""
    out = paths(n, seed)
    if not force and all(p.exists() for p in out.values()):
        return out
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    customers = max(100, n // 20)
    t0 = 1_704_067_200 * 1_000_000  # 2024-01-01T00:00:00Z
    span = 365 * 86_400 * 1_000_000
    tmp = {k: p.with_name(p.name + ".tmp") for k, p in out.items()}
    seeds = np.random.SeedSequence(seed).spawn((n + CHUNK - 1) // CHUNK)
    pw = pq.ParquetWriter(tmp["parquet"], SCHEMA, compression="snappy")
    csv_schema = SCHEMA.set(SCHEMA.get_field_index("ts"), pa.field("ts", pa.string()))
    cw = pacsv.CSVWriter(str(tmp["csv"]), csv_schema)
    try:
        for i, ss in enumerate(seeds):
            size = min(CHUNK, n - i * CHUNK)
            table = _chunk(np.random.default_rng(ss), size, i * CHUNK, customers, t0, span)
            pw.write_table(table, row_group_size=122_880)
            cw.write_table(_csv_table(table))
    finally:
        pw.close()
        cw.close()
    for k in out:
        os.replace(tmp[k], out[k])
    if not quiet:
        sizes = ", ".join(f"{k} {out[k].stat().st_size / 1e6:.0f} MB" for k in out)
        print(f"generated {n:,} rows ({sizes}) in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)
    return out


def mapping_yaml(data_path: str | os.PathLike[str], name: str = "events") -> str:
    """The ``keymoments.yaml`` text mapping the export at ``data_path``."""
    return f"""\
version: 1
name: bench
database: keymoments.duckdb
identity:
  phone_region: US
sources:
  {name}:
    path: {os.fspath(data_path)}
    identifiers: {{customer_id: customer_id, email: email}}
    event_type: event_type
    ts: ts
    channel: channel
    agent: agent
    rating: {{column: rating, scale: csat5}}
    text: comment
    refs: {{order: order_id, ticket: ticket_id}}
    measures: {{amount: amount}}
    attributes: {{carrier: carrier}}
"""


def preload(root, n: int, extra_config: str = "") -> list[str]:
    """Make the workspace at ``root`` (already ``km.init``-ed) hold the export of ``n``
    rows, ingested and built (none when ``n`` is 0), with ``extra_config`` appended to
    its ``keymoments.yaml``; returns the export's customer ids (sorted)."""
    import keymoments as km

    path = Path(root, "keymoments.yaml")
    config = path.read_text(encoding="utf-8") + extra_config
    if n:
        source = mapping_yaml(generate(n, quiet=True)["parquet"])
        config = config.replace("\nsources: {}\n", "\n" + source[source.index("sources:"):])
    path.write_text(config, encoding="utf-8")
    if not n:
        return []
    started = time.perf_counter()
    with km.open(root) as ws:
        ws.ingest("events")
        ws.build()
        ids = [r[0] for r in ws.con.execute(
            "SELECT value FROM identifiers WHERE kind = 'customer_id' ORDER BY 1").fetchall()]
    print(f"preloaded {n:,} events in {time.perf_counter() - started:.0f} s", flush=True)
    return ids


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sizes", type=int, nargs="+")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--force", action="store_true", help="regenerate even when cached")
    args = ap.parse_args(argv)
    for n in args.sizes:
        for fmt, p in generate(n, args.seed, args.force).items():
            print(f"{fmt}: {p}")


if __name__ == "__main__":
    main()
