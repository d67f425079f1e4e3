"""Paths benchmark: the process map plus the variants on N journey events, keymoments
(Ibis over the workspace's DuckDB) against pm4py on the same events, as a ratio.

Data: a seeded synthetic log written straight into a fresh workspace's
``journey_events`` and ``journeys`` tables (the build is measured in the Engine
section of docs/benchmarks.md; this measures only the path analyses). Journeys of
2-16 events walk a 14-activity Markov chain with loops back and detours, so the
variants are many and skewed like real ones (a few thousand distinct paths per
million events), one to four seconds apart.

Measured, each in a fresh Python process, median of ``--repeat``:

* **keymoments counts**: ``km.open`` + the two Ibis expressions that hold exactly
  what pm4py computes, ``paths.dfg.dfg_counts`` and
  ``paths.variant.variant_counts``, fetched as Arrow;
* **keymoments full**: ``km.open`` + ``km.process_map(ws)`` +
  ``km.variants(ws, limit=None, flows=False)`` (nodes with valence, edges with
  journeys and median/p90/mean durations, every variant with its outcomes);
* **pm4py**: the same events already in a pandas DataFrame (loading it is not timed),
  ``pm4py.format_dataframe`` + ``pm4py.discover_dfg`` + ``pm4py.get_variants``.

The children also check that both give the same directly-follows counts and the same
variant counts. Results go to ``bench/out/paths-<date>.json``.

    python bench/paths.py --sizes 1000000 10000000 --repeat 3 --pm4py-max 10000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

OUT = Path(__file__).resolve().parent / "out"
ACTIVITIES = np.array(["visit", "search", "product_view", "add_to_cart", "checkout",
                       "payment_failed", "order_placed", "shipped", "delivered", "ticket_opened",
                       "agent_reply", "ticket_resolved", "survey", "returned"])


def _chain(rng: np.random.Generator) -> np.ndarray:
    """A sparse, skewed transition matrix: each activity mostly goes forward."""
    k = len(ACTIVITIES)
    p = np.zeros((k, k))
    for a in range(k):
        nxt = [min(a + 1, k - 1), min(a + 2, k - 1), max(a - 1, 0), int(rng.integers(0, k))]
        for b, w in zip(nxt, (0.62, 0.18, 0.12, 0.08)):
            p[a, b] += w
    return p / p.sum(1, keepdims=True)


def write_workspace(root: Path, n_events: int, seed: int = 42) -> dict:
    """A workspace whose journey tables hold ``n_events`` synthetic journey events."""
    import keymoments as km

    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 17, n_events // 5 + 10)
    lengths = lengths[: np.searchsorted(np.cumsum(lengths), n_events) + 1]
    lengths[-1] -= lengths.sum() - n_events
    lengths = lengths[lengths > 0]
    J, N = len(lengths), int(lengths.sum())
    owner = np.repeat(np.arange(J), lengths)
    start = np.r_[0, np.cumsum(lengths)[:-1]]
    seq = np.arange(N) - start[owner]
    P = _chain(rng)
    cum = P.cumsum(1)
    act = np.empty(N, dtype=np.int64)
    act[start] = rng.choice(3, J, p=[0.7, 0.2, 0.1])
    u = rng.random(N)
    for i in range(1, int(lengths.max())):  # step i of every journey long enough
        idx = start[lengths > i] + i
        act[idx] = (u[idx, None] > cum[act[idx - 1]]).sum(1)
    np.minimum(act, len(ACTIVITIES) - 1, out=act)
    t0 = 1_704_067_200 + rng.integers(0, 180 * 86400, J)
    # strictly increasing within each journey, one to four seconds apart
    gaps = rng.integers(1, 5, N)
    gaps[start] = 0
    within = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[start], lengths)
    ts = (t0[owner] + within).astype("datetime64[s]")
    jid = np.char.add("J", np.char.zfill(np.arange(J).astype(str), 9))
    valence = np.round(rng.uniform(-1, 1, N), 3)
    je = pa.table({
        "event_id": pa.array(np.char.add("E", np.arange(N).astype(str))),
        "journey_id": pa.array(jid[owner]), "journey_type": pa.array(np.full(N, "purchase")),
        "person_id": pa.array(jid[owner]), "seq": pa.array(seq),
        "ts": pa.array(ts, pa.timestamp("s", "UTC")),
        "event_type": pa.array(ACTIVITIES[act]), "channel": pa.array(np.full(N, "web")),
        "valence": pa.array(valence),
    })
    journeys = pa.table({
        "journey_id": pa.array(jid), "journey_type": pa.array(np.full(J, "purchase")),
        "person_id": pa.array(jid),
        "start_ts": pa.array(ts[start], pa.timestamp("s", "UTC")),
        "end_ts": pa.array(ts[start + lengths - 1], pa.timestamp("s", "UTC")),
        "duration_s": pa.array((ts[start + lengths - 1] - ts[start]).astype(float)),
        "n_events": pa.array(lengths), "status": pa.array(np.full(J, "completed")),
        "outcome_valence": pa.array(np.where(rng.random(J) < 0.1, rng.uniform(-1, 1, J), np.nan),
                                    from_pandas=True),
        "remembered": pa.array(rng.uniform(-1, 1, J)),
    })
    if root.exists():
        shutil.rmtree(root)
    ws = km.init(root)
    for name, table in (("journey_events", je), ("journeys", journeys)):
        ws.con.register("_bench", table)
        cols = ", ".join(table.column_names)
        ws.con.execute(f"INSERT INTO {name} ({cols}) SELECT {cols} FROM _bench")
        ws.con.unregister("_bench")
    ws.close()
    return {"events": N, "journeys": J}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_keymoments(root: str) -> dict:
    import ibis  # noqa: F401 (imports are not timed)

    import keymoments as km
    import keymoments.paths.dfg  # noqa: F401
    import keymoments.paths.variant  # noqa: F401

    t = time.perf_counter()
    c = time.process_time()
    ws = km.open(root, read_only=True)
    pm = km.process_map(ws)
    v = km.variants(ws, limit=None, flows=False)
    ws.close()
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    edges = {f"{e['source']}>{e['target']}": e["count"] for e in pm.edges.to_pylist()}
    variants = sorted(r["journeys"] for r in v.variants.to_pylist())
    return {"wall": wall, "cpu": cpu, "rss_mb": _rss_mb(), "edges": edges,
            "variant_counts": variants, "n_variants": len(variants)}


def child_counts(root: str) -> dict:
    import ibis  # noqa: F401 (imports are not timed)

    import keymoments as km
    from keymoments.engine import backend
    from keymoments.paths.dfg import dfg_counts
    from keymoments.paths.variant import variant_counts

    t = time.perf_counter()
    c = time.process_time()
    ws = km.open(root, read_only=True)
    je = backend(ws).table("journey_events")
    dfg = dfg_counts(je).to_pyarrow().to_pylist()
    var = variant_counts(je).to_pyarrow().column("journeys").to_pylist()
    ws.close()
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return {"wall": wall, "cpu": cpu, "rss_mb": _rss_mb(),
            "edges": {f"{e['source']}>{e['target']}": e["count"] for e in dfg},
            "variant_counts": sorted(var), "n_variants": len(var)}


def child_pm4py(root: str) -> dict:
    import duckdb
    import pm4py

    con = duckdb.connect(str(Path(root) / "keymoments.duckdb"), read_only=True)
    df = con.execute("SELECT journey_id, event_type, ts FROM journey_events").df()
    con.close()
    t = time.perf_counter()
    c = time.process_time()
    df = pm4py.format_dataframe(df, case_id="journey_id", activity_key="event_type",
                                timestamp_key="ts")
    dfg, _, _ = pm4py.discover_dfg(df)
    variants = pm4py.get_variants(df)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return {"wall": wall, "cpu": cpu, "rss_mb": _rss_mb(),
            "edges": {f"{a}>{b}": n for (a, b), n in dfg.items()},
            "variant_counts": sorted(int(n) for n in variants.values()),
            "n_variants": len(variants)}


def _run_child(kind: str, root: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, str(root)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pm4py-max", type=int, default=10_000_000,
                    help="largest size pm4py is run at")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        kind, root = args.child
        child = {"keymoments": child_keymoments, "counts": child_counts, "pm4py": child_pm4py}
        res = child[kind](root)
        print(json.dumps(res))
        return 0
    OUT.mkdir(exist_ok=True)
    report = {"date": dt.date.today().isoformat(), "load": os.getloadavg(), "runs": []}
    table = []
    for size in args.sizes:
        root = OUT / f"paths-ws-{size}"
        t = time.perf_counter()
        shape = write_workspace(root, size)
        print(f"{size:,} events, {shape['journeys']:,} journeys written in "
              f"{time.perf_counter() - t:.1f} s", flush=True)
        runs: dict[str, list[dict]] = {"counts": [], "keymoments": [], "pm4py": []}
        kinds = ["counts", "keymoments"] + (["pm4py"] if size <= args.pm4py_max else [])
        for r in range(args.repeat):
            for kind in kinds:
                res = _run_child(kind, root)
                runs[kind].append(res)
                print(f"  {kind:<10} run {r + 1}: {res['wall']:.2f} s wall, {res['cpu']:.2f} s CPU, "
                      f"{res['rss_mb']:.0f} MB, {res['n_variants']:,} variants", flush=True)
        km_med = statistics.median(x["wall"] for x in runs["keymoments"])
        row = {"events": size, "journeys": shape["journeys"], "keymoments_s": km_med,
               "counts_s": statistics.median(x["wall"] for x in runs["counts"]),
               "counts_cpu_s": statistics.median(x["cpu"] for x in runs["counts"]),
               "keymoments_cpu_s": statistics.median(x["cpu"] for x in runs["keymoments"]),
               "keymoments_rss_mb": max(x["rss_mb"] for x in runs["keymoments"]),
               "variants": runs["keymoments"][0]["n_variants"]}
        if runs["pm4py"]:
            a, b, k = runs["keymoments"][0], runs["pm4py"][0], runs["counts"][0]
            row.update(pm4py_s=statistics.median(x["wall"] for x in runs["pm4py"]),
                       pm4py_cpu_s=statistics.median(x["cpu"] for x in runs["pm4py"]),
                       pm4py_rss_mb=max(x["rss_mb"] for x in runs["pm4py"]),
                       same_edges=a["edges"] == b["edges"],
                       same_variants=a["variant_counts"] == b["variant_counts"]
                       == k["variant_counts"] and k["edges"] == b["edges"])
            row["ratio"] = row["pm4py_s"] / km_med
            row["ratio_counts"] = row["pm4py_s"] / row["counts_s"]
            row["ratio_cpu"] = row["pm4py_cpu_s"] / row["keymoments_cpu_s"]
            row["ratio_counts_cpu"] = row["pm4py_cpu_s"] / row["counts_cpu_s"]
        for x in (*runs["counts"], *runs["keymoments"], *runs["pm4py"]):
            x.pop("edges"), x.pop("variant_counts")
        report["runs"].append({**row, "detail": runs})
        table.append(row)
    print("\n| events | journeys | variants | pm4py, s (CPU s) | keymoments counts, s (CPU s) | "
          "ratio | keymoments full, s (CPU s) | ratio | same counts |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in table:
        pm = f"{r['pm4py_s']:.2f} ({r['pm4py_cpu_s']:.2f})" if "pm4py_s" in r else "not run"
        rc = (f"**{r['ratio_counts']:.1f}x** ({r['ratio_counts_cpu']:.1f}x)"
              if "ratio" in r else "-")
        rf = f"**{r['ratio']:.1f}x** ({r['ratio_cpu']:.1f}x)" if "ratio" in r else "-"
        same = ("yes" if r.get("same_edges") and r.get("same_variants") else
                "NO" if "same_edges" in r else "-")
        print(f"| {r['events']:,} | {r['journeys']:,} | {r['variants']:,} | {pm} | "
              f"{r['counts_s']:.2f} ({r['counts_cpu_s']:.2f}) | {rc} | "
              f"{r['keymoments_s']:.2f} ({r['keymoments_cpu_s']:.2f}) | {rf} | {same} |")
    path = OUT / f"paths-{report['date']}-{'-'.join(map(str, args.sizes))}.json"
    path.write_text(json.dumps(report, indent=1))
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
