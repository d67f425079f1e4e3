"""Insights benchmark: each analysis on a built workspace of the bench export.

For each size: the export of ``bench/_data.py`` is ingested and built once (with the
engine benchmark's own children, ``bench/engine.py``); then every analysis runs in a
fresh Python process on that workspace, opened read-only, ``--repeat`` times:

* ``metrics``: CSAT by channel and month, NPS-style comparisons are the same code;
  FCR and first response by channel (the median metrics fetch one row per unit);
* ``root_causes``: valleys grouped by event type, rule, agent, channel, carrier and
  text themes, with effects and repeat contacts;
* ``drivers``: ridge regression with 50 bootstrap refits and 5-fold CV;
* ``funnel``: page_view -> add_to_cart -> order_placed per person, by channel;
* ``churn``: Kaplan-Meier, Cox and log-rank by first channel (lifelines);
* ``predicted``: CSAT for journeys without an answer, 5-fold calibration;
* ``alive``: BG/NBD fit and probability alive for every buyer.

The clock starts after the imports (keymoments, scipy, sklearn, lifelines, pandas),
so the figures are the analyses' own cost. Each child reports wall seconds, CPU
seconds and peak RSS; the parent prints a Markdown table of medians and writes
``bench/out/insights-<date>.json``.

    python bench/insights.py --sizes 1000000 10000000 --repeat 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _data  # noqa: E402
import engine  # noqa: E402

ANALYSES = ["metrics", "root_causes", "drivers", "funnel", "churn", "predicted", "alive"]


def _run_analysis(name: str, ws) -> dict:
    import keymoments as km

    if name == "metrics":
        r1 = km.metrics(ws, "csat", by="channel", period="month")
        r2 = km.metrics(ws, "fcr", by="channel")
        r3 = km.metrics(ws, "first_response", by="channel")
        return {"rows": len(r1) + len(r2) + len(r3), "n": r1.meta["n"]}
    if name == "root_causes":
        r = km.root_causes(ws)
        return {"rows": len(r), "n": int(sum(x["journeys"] for x in r.to_pylist()[:1]))}
    if name == "drivers":
        r = km.drivers(ws, "feedback")
        return {"rows": len(r), "n": r.meta["n"], "heldout": r.meta["heldout"]["score"]}
    if name == "funnel":
        r = km.funnel(ws, ["page_view", "add_to_cart", "order_placed"], by="channel")
        return {"rows": len(r), "n": r.meta["units"]}
    if name == "churn":
        r = km.churn(ws, by="channel", kind="inactivity", inactive_days=30)
        return {"rows": len(r.curves), "n": r.meta["n"]}
    if name == "predicted":
        r = km.predicted_experience(ws, "csat")
        return {"rows": len(r.journeys), "n": r.meta["answered"]}
    if name == "alive":
        r = km.probability_alive(ws, event_types=["order_placed"])
        return {"rows": len(r), "n": r.meta["n"]}
    raise ValueError(name)


def _child_analysis(job: dict) -> dict:
    import keymoments as km
    import lifelines  # noqa: F401
    import pandas  # noqa: F401
    import scipy.stats  # noqa: F401
    import sklearn.linear_model  # noqa: F401

    ws = km.open(job["workspace"], read_only=True)
    cpu, started = engine._cpu_s(), time.perf_counter()
    out = _run_analysis(job["analysis"], ws)
    seconds = time.perf_counter() - started
    ws.close()
    return {"seconds": seconds, "cpu_s": engine._cpu_s() - cpu, **out}


engine.CHILDREN["analysis"] = _child_analysis


def _run_analysis_child(job: dict, timeout: float) -> dict:
    """engine._run_child, but running this file (which registers the analysis child)."""
    import subprocess

    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(job)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s (stopped)"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-1500:]}"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--analyses", nargs="+", default=ANALYSES, choices=ANALYSES)
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--memory-limit", default="4GB")
    ap.add_argument("--memory-limit-from", type=int, default=10_000_000)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        engine.child(args.child)
        return 0
    runs: list[dict] = []
    out = _data.OUT / f"insights-{dt.date.today().isoformat()}.json"
    for size in args.sizes:
        files = _data.generate(size, _data.SEED)
        ws = _data.OUT / f"insights-ws-{size}"
        limit = args.memory_limit if size >= args.memory_limit_from else None
        base = {"size": size, "file": str(files["parquet"]), "workspace": str(ws),
                "memory_limit": limit}
        if not (ws / "keymoments.duckdb").exists():
            ws.mkdir(parents=True, exist_ok=True)
            for mode in ("ingest", "build"):
                res = engine._run_child(dict(base, mode=mode), args.timeout)
                print(f"{size:>11,} {mode:<12} {res.get('seconds', float('nan')):8.1f} s  "
                      f"{res.get('error', '')}", flush=True)
                if "error" in res:
                    return 1
        for rep in range(args.repeat):
            for name in args.analyses:
                res = _run_analysis_child(dict(base, mode="analysis", analysis=name), args.timeout)
                runs.append({"size": size, "rep": rep, "analysis": name, **res})
                print(f"{size:>11,} {name:<12} {res.get('seconds', float('nan')):8.2f} s  "
                      f"cpu {res.get('cpu_s', float('nan')):6.1f} s  "
                      f"rss {res.get('peak_rss_mb', float('nan')):7.0f} MB  n {res.get('n', '')}  "
                      f"{res.get('error', '')}", flush=True)
        out.write_text(json.dumps(runs, indent=1, default=str))
    print()
    print("| events | analysis | wall s (median) | CPU s | peak RSS MB | units |")
    print("|---:|---|---:|---:|---:|---:|")
    for size in args.sizes:
        for name in args.analyses:
            ok = [r for r in runs if r["size"] == size and r["analysis"] == name and "error" not in r]
            if not ok:
                print(f"| {size:,} | {name} | error | | | |")
                continue
            med = lambda k: statistics.median(r[k] for r in ok)  # noqa: E731
            print(f"| {size:,} | {name} | {med('seconds'):.2f} | {med('cpu_s'):.1f} | "
                  f"{med('peak_rss_mb'):,.0f} | {ok[0].get('n', '')} |")
    print(f"\nruns written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
