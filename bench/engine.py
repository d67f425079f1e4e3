"""Engine benchmark: from a Parquet export to journeys and moments, per step, with
peak memory, next to two baselines on the same file.

For each size and repeat, each measurement in a fresh Python process:

* **floor**: plain DuckDB reading and sorting the events into a fresh file:
  ``CREATE TABLE t AS SELECT * FROM read_parquet(...) ORDER BY customer_id, ts``;
* **keymoments ingest**: a fresh workspace (``km.init`` and the bench mapping
  written before the clock starts), then ``km.open`` + ``ws.ingest("events")`` +
  ``ws.close()``;
* **keymoments build**: ``km.open`` + ``ws.build()`` + ``ws.close()`` on that
  workspace, with the build's own per-step seconds (``BuildReport.seconds``: text,
  journey_events, journeys, moments, write);
* **pandas**: ``bench/_pandas_baseline.py`` (read the Parquet, dedupe, person,
  journeys, valence, moments, journeys table);
* **sql**: ``bench/_sql_baseline.py``, the same journeys and moments as the pandas
  baseline written by hand as DuckDB SQL over the Parquet file (no store, no
  mapping, no config), into a fresh file: what this subset costs a hand-written
  prototype (the speed target's reference) on the same machine.

From ``--memory-limit-from`` rows up (default 10M) the workspace gets
``memory_limit: <--memory-limit>`` (default 3GB) and ``temp_directory: spill``.
On the first repeat of the ``--check-size`` data (default 1M) a further child
compares the pandas journeys with keymoments's (count per type, event -> journey
assignment, seq, valence, experience moments and repeat purchases) and with the SQL
baseline's (every journeys column and every moment), and with
``--profile`` another one rebuilds with DuckDB's JSON profiling on every build
statement and prints the costliest operators.

``--data shop`` runs the same on a demo shop's events instead of the bench export
(``keymoments.demo.write_flat_events_parquet``: one Parquet file of a simulated
shop's events, with orders, tickets and browsing sessions as references and the
demo's journey types; ~4 events per journey where the bench export, whose events
are drawn independently, has ~1.1): realistic journeys. The pandas baseline and its
check are written for the bench export, so they do not run on it.

``--keep-workspace`` keeps the first repeat's ingested workspace (as
``bench/out/work/ws-<size>-s<seed>``, with its ingest result) and
``--reuse-workspace`` builds on it instead of ingesting again (the 50M ingest takes
12 minutes; its recorded result is reported, marked reused); ``--skip`` leaves out
the floor, the build or pandas.

Each child reports wall seconds (imports excluded), CPU seconds and peak RSS
(``ru_maxrss``). The parent prints each run and a Markdown table of medians, and
writes everything to ``bench/out/engine-<date>.json``.

    python bench/engine.py --sizes 1000000 10000000 --repeat 3 --profile
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _data  # noqa: E402

WORK = _data.OUT / "work"
SOURCE = "events"
BUILD_STEPS = ["text", "journey_events", "journeys", "moments", "write"]


# ------------------------------------------------------------------ children


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _cpu_s() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _child_floor(job: dict) -> dict:
    import duckdb

    cpu, started = _cpu_s(), time.perf_counter()
    con = duckdb.connect(job["db"])
    con.execute("CREATE TABLE t AS SELECT * FROM read_parquet(?) ORDER BY customer_id, ts",
                [job["file"]])
    rows = con.execute("SELECT count(*) FROM t").fetchone()[0]
    con.close()
    return {"seconds": time.perf_counter() - started, "cpu_s": _cpu_s() - cpu, "rows": rows}


def _mapping(job: dict) -> str:
    if job.get("data") == "shop":
        from keymoments.demo.mapping import flat_mapping, journeys_config, to_yaml

        text = to_yaml({"version": 1, "name": "bench-shop", "database": "keymoments.duckdb",
                        "sources": {SOURCE: flat_mapping(job["file"])},
                        "journeys": journeys_config()})
    else:
        text = _data.mapping_yaml(job["file"], SOURCE)
    if job.get("memory_limit"):
        text = text.replace("database: keymoments.duckdb\n",
                            f"database: keymoments.duckdb\nmemory_limit: {job['memory_limit']}\n"
                            "temp_directory: spill\n")
    return text


def _mem_mb() -> str:
    try:
        status = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return ""
    kb = {line.split(":")[0]: int(line.split()[1]) for line in status
          if line.startswith(("VmRSS", "VmHWM"))}
    return f"rss {kb.get('VmRSS', 0) / 1024:,.0f} MB, peak {kb.get('VmHWM', 0) / 1024:,.0f} MB"


def _trace(ws, started: float) -> None:
    """Log every statement of the workspace connection to stderr (time, memory), so a
    run that is stopped shows where it was."""
    real = ws.con

    class TracedCon:
        def execute(self, sql, *args):
            label = " ".join(str(sql).split())[:90]
            print(f"[{time.perf_counter() - started:8.1f} s] {_mem_mb()} start {label}",
                  file=sys.stderr, flush=True)
            out = real.execute(sql, *args)
            print(f"[{time.perf_counter() - started:8.1f} s] {_mem_mb()} done", file=sys.stderr,
                  flush=True)
            return out

        def __getattr__(self, name):
            return getattr(real, name)

    ws.con = TracedCon()


class _SpillWatch:
    """Samples the size of the workspace's spill directory twice a second (DuckDB
    deletes its temporary files as soon as a statement is done) and keeps the peak."""

    def __init__(self, root: Path):
        import threading

        self.dir, self.peak, self._stop = root / "spill", 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _size(self) -> int:
        total = 0
        for path, _, files in os.walk(self.dir):
            for f in files:
                try:
                    total += os.path.getsize(os.path.join(path, f))
                except OSError:
                    pass
        return total

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, self._size())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak / 2**20


def _imports() -> None:
    """Import what a step imports lazily (the engine, Ibis and its DuckDB backend),
    so that the clock, as for the floor, excludes imports (0.6-0.7 s, counted before
    session 15)."""
    import ibis

    import keymoments.pipeline  # noqa: F401
    import keymoments.sources.ingest  # noqa: F401

    ibis.duckdb  # noqa: B018 - loads the backend


def _child_ingest(job: dict) -> dict:
    import keymoments as km

    _imports()
    root = Path(job["workspace"])
    km.init(root).close()
    (root / "keymoments.yaml").write_text(_mapping(job))
    cpu, started = _cpu_s(), time.perf_counter()
    ws = km.open(root)
    watch = _SpillWatch(root) if job.get("memory_limit") else None
    if job.get("trace"):
        _trace(ws, started)
    report = ws.ingest(SOURCE)
    ws.close()
    return {"seconds": time.perf_counter() - started, "cpu_s": _cpu_s() - cpu,
            "rows": report.rows_read, "ingest_seconds": report.seconds,
            "events": report.as_dict().get("events_loaded"),
            "spill_peak_mb": watch.stop() if watch else None}


def _child_build(job: dict) -> dict:
    import keymoments as km

    _imports()
    cpu, started = _cpu_s(), time.perf_counter()
    ws = km.open(job["workspace"])
    watch = _SpillWatch(Path(job["workspace"])) if job.get("memory_limit") else None
    if job.get("trace"):
        from keymoments.engine import backend

        backend(ws)  # the Ibis backend keeps the real connection
        _trace(ws, started)
    report = ws.build()
    ws.close()
    return {"seconds": time.perf_counter() - started, "cpu_s": _cpu_s() - cpu,
            "steps": dict(report.seconds), "journeys": report.journeys,
            "journey_events": report.events, "moments": report.moments,
            "texts_scored": report.texts_scored,
            "spill_peak_mb": watch.stop() if watch else None}


def _child_pandas(job: dict) -> dict:
    import _pandas_baseline

    steps: dict[str, float] = {}
    cpu, started = _cpu_s(), time.perf_counter()
    out = _pandas_baseline.run(job["file"], steps)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "cpu_s": _cpu_s() - cpu, "steps": steps,
            "events": len(out["events"]), "journeys": len(out["journeys"]),
            "moments": len(out["moments"])}


def _child_sql(job: dict) -> dict:
    import _sql_baseline

    steps: dict[str, float] = {}
    cpu, started = _cpu_s(), time.perf_counter()
    counts = _sql_baseline.run(job["file"], job["db"], steps, job.get("memory_limit"))
    return {"seconds": time.perf_counter() - started, "cpu_s": _cpu_s() - cpu, "steps": steps,
            "events": counts["je"], "journeys": counts["journeys"], "moments": counts["moments"]}


def _child_check(job: dict) -> dict:
    """Compare the pandas baseline with the workspace's journeys and moments."""
    import duckdb
    import numpy as np

    import _pandas_baseline

    pdo = _pandas_baseline.run(job["file"])
    import _sql_baseline

    sql_db = Path(job["workspace"]).parent / "sql-check.duckdb"
    sql_db.unlink(missing_ok=True)
    _sql_baseline.run(job["file"], str(sql_db))
    sql_check = _sql_baseline.compare_with_pandas(str(sql_db), pdo)
    sql_db.unlink(missing_ok=True)
    con = duckdb.connect(str(Path(job["workspace"]) / "keymoments.duckdb"), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    km = con.execute("""
        SELECT e.source_line, e.ts AS km_ts, e.event_type AS km_event_type, e.stage AS km_stage,
               j.journey_id, j.journey_type AS km_type, j.seq AS km_seq, j.valence AS km_valence,
               j.v_feedback AS km_vf, j.v_rules AS km_vr, j.v_text AS km_vt
        FROM journey_events j JOIN events e USING (event_id)""").df()
    km_types = dict(con.execute(
        "SELECT journey_type, count(*) FROM journeys GROUP BY 1").fetchall())
    km_moments = con.execute("""
        SELECT m.journey_id, m.kind, e.source_line FROM moments m JOIN events e USING (event_id)
        WHERE m.category = 'experience' OR m.kind = 'repeat_purchase'""").df()
    km_events = con.execute("SELECT count(*) FROM events").fetchone()[0]
    con.close()
    ev = pdo["events"]
    res: dict = {"events_pandas": len(ev), "events_keymoments": int(km_events),
                 "journey_events_keymoments": len(km)}
    # which base source_line uses (0 or 1): the one whose ts and event type match
    for base in (0, 1, 2):
        m = ev.merge(km.assign(row=km.source_line - base), on="row", how="inner")
        if len(m) and (m.ts == m.km_ts).mean() > 0.99 and (m.event_type == m.km_event_type).mean() > 0.99:
            break
    res["source_line_base"] = base
    res["rows_matched"] = len(m)
    res["rows_same_ts_and_type"] = int(((m.ts == m.km_ts) & (m.event_type == m.km_event_type)).sum())
    res["stage_agree"] = int((m.stage.fillna("") == m.km_stage.fillna("")).sum())
    pd_types = pdo["journeys"].journey_type.value_counts().to_dict()
    res["journeys_per_type"] = {t: {"pandas": int(pd_types.get(t, 0)), "keymoments": int(km_types.get(t, 0))}
                                for t in sorted(set(pd_types) | set(km_types))}
    # partition agreement: a journey agrees when its events are exactly one journey on the other side
    per_pd = m.groupby("journey").journey_id.nunique()
    per_km = m.groupby("journey_id").journey.nunique()
    ok = m.journey.map(per_pd).eq(1) & m.journey_id.map(per_km).eq(1)
    res["events_same_journey"] = int(ok.sum())
    res["journeys_identical"] = int(m[ok].journey.nunique())
    res["type_agree"] = int((m.jtype == m.km_type).sum())
    res["seq_agree"] = int((m.seq == m.km_seq).sum())
    # seq differences come from ties in ts (pandas: file order; keymoments: event id)
    tie = m.duplicated(["journey", "ts"], keep=False)
    res["seq_differ_in_ts_ties"] = int(((m.seq != m.km_seq) & tie).sum())
    res["seq_differ_no_tie"] = int(((m.seq != m.km_seq) & ~tie).sum())

    def same(a, b):
        return (a.isna() & b.isna()) | (np.abs(a.astype(float) - b.astype(float)) < 1e-9)

    for col, kcol in (("valence", "km_valence"), ("v_feedback", "km_vf"), ("v_rules", "km_vr"),
                      ("v_text", "km_vt")):
        res[f"{col}_agree"] = int(same(m[col], m[kcol]).sum())
    res["valence_differ_examples"] = (
        m.loc[~same(m.valence, m.km_valence), ["row", "event_type", "v_feedback", "v_rules", "v_text",
                                                "valence", "km_vf", "km_vr", "km_vt", "km_valence"]]
        .head(5).astype(str).to_dict("records"))
    # experience moments: the same event for (journey, kind)?
    jmap = m[ok].drop_duplicates("journey").set_index("journey").journey_id
    pm = pdo["moments"].assign(journey_id=lambda d: d.journey.map(jmap))
    km_moments["km_row"] = km_moments.source_line - base
    mm = pm.merge(km_moments, on=["journey_id", "kind"], how="outer", indicator=True)
    res["moments_pandas"] = len(pm)
    res["moments_keymoments"] = len(km_moments)
    res["moments_same_event"] = int((mm.row == mm.km_row).sum())
    res["moments_only_pandas"] = int((mm._merge == "left_only").sum())
    res["moments_only_keymoments"] = int((mm._merge == "right_only").sum())
    rp = mm[mm.kind == "repeat_purchase"]
    res["repeat_purchases"] = {"pandas": int((rp._merge != "right_only").sum()),
                               "keymoments": int((rp._merge != "left_only").sum()),
                               "same_event": int((rp.row == rp.km_row).sum())}
    diff = mm[(mm._merge == "both") & (mm.row != mm.km_row)]
    if len(diff):
        rowts = ev.set_index("row").ts
        diff_tie = rowts.reindex(diff.row).values == rowts.reindex(diff.km_row).values
        res["moments_differ_same_ts"] = int(diff_tie.sum())
        res["moments_differ_examples"] = diff.head(5).astype(str).to_dict("records")
    res["sql_against_pandas"] = sql_check
    return res


def _child_profile(job: dict) -> dict:
    """Rebuild with DuckDB's JSON profiling on every statement of the build."""
    import keymoments as km
    from keymoments.engine import backend

    prof = Path(job["profile_dir"])
    prof.mkdir(parents=True, exist_ok=True)
    ws = km.open(job["workspace"])
    backend(ws)  # the Ibis backend keeps the real connection
    real = ws.con
    real.execute("SET enable_profiling = 'json'")
    stmts: list[dict] = []

    class ProfiledCon:
        def execute(self, sql, *args):
            path = prof / f"stmt-{len(stmts):03d}.json"
            real.execute(f"SET profiling_output = '{path}'")
            started = time.perf_counter()
            out = real.execute(sql, *args)
            stmts.append({"sql": sql, "seconds": time.perf_counter() - started, "profile": str(path)})
            return out

        def __getattr__(self, name):
            return getattr(real, name)

    ws.con = ProfiledCon()
    report = ws.build()
    ws.con = real
    real.execute("SET enable_profiling = 'no_output'")
    ws.close()

    def walk(node, acc):
        name = node.get("operator_name") or node.get("operator_type") or node.get("name")
        if name and "operator_timing" in node:
            acc.append({"op": name.strip(), "s": node["operator_timing"],
                        "rows": node.get("operator_cardinality"),
                        "extra": {k: v for k, v in (node.get("extra_info") or {}).items()
                                  if k in ("Function", "Partitions", "Order By", "Join Type",
                                           "Conditions", "Table", "Aggregates", "Groups",
                                           "Projections")}})
        for ch in node.get("children", []):
            walk(ch, acc)
        return acc

    out = []
    for s in stmts:
        ops: list = []
        try:
            data = json.loads(Path(s["profile"]).read_text())
            ops = walk(data, [])
            latency = data.get("latency")
        except (OSError, ValueError):
            latency = None
        label = " ".join(s["sql"].split())[:110]
        ops.sort(key=lambda o: -o["s"])
        out.append({"statement": label, "seconds": s["seconds"], "latency": latency, "top_ops": ops[:6]})
    return {"seconds": report.seconds.get("total"), "steps": dict(report.seconds), "statements": out}


CHILDREN = {"floor": _child_floor, "ingest": _child_ingest, "build": _child_build,
            "pandas": _child_pandas, "sql": _child_sql, "check": _child_check, "profile": _child_profile}


def child(job_json: str) -> None:
    job = json.loads(job_json)
    result = CHILDREN[job["mode"]](job)
    result["peak_rss_mb"] = _rss_mb()
    print("RESULT " + json.dumps(result, default=str), flush=True)


# -------------------------------------------------------------------- parent


def _shop_file(size: int, seed: int) -> dict[str, Path]:
    """Write (or reuse) ``bench/out/shop-<size>-s<seed>.parquet``: a demo shop's events."""
    path = _data.OUT / f"shop-{size}-s{seed}.parquet"
    if not path.exists():
        from keymoments.demo import write_flat_events_parquet

        _data.OUT.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        write_flat_events_parquet(tmp, size, seed=seed)
        os.replace(tmp, path)
    return {"parquet": path}


def _run_child(job: dict, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(job)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        return {"error": f"timeout after {timeout:.0f} s (stopped)",
                "wall_incl_startup": time.perf_counter() - started,
                "stderr_tail": stderr.strip().splitlines()[-12:]}
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            res = json.loads(line[len("RESULT "):])
            if job.get("trace"):
                res["trace"] = stderr.strip().splitlines()[-400:]
            return res
    return {"error": f"exit {proc.returncode}: {stderr.strip()[-3000:]}",
            "wall_incl_startup": time.perf_counter() - started,
            "stderr_tail": stderr.strip().splitlines()[-12:]}


def _med(runs: list[dict], key, default=None):
    vals = [key(r) for r in runs if "error" not in r]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else default


def summarise(runs: list[dict]) -> list[dict]:
    out = []
    for size in dict.fromkeys(r["size"] for r in runs):
        by = {m: [r for r in runs if r["size"] == size and r["mode"] == m]
              for m in ("floor", "ingest", "build", "pandas", "sql")}
        s: dict = {"size": size, "repeats": len(by["floor"]),
                   "memory_limit": next((r.get("memory_limit") for r in by["ingest"]), None),
                   "errors": [f"{r['mode']} #{r['repeat'] + 1}: {r['error'][:300]}"
                              for m in by.values() for r in m if "error" in r]}
        s["floor_s"] = _med(by["floor"], lambda r: r["seconds"])
        s["ingest_s"] = _med(by["ingest"], lambda r: r["seconds"])
        s["build_s"] = _med(by["build"], lambda r: r["seconds"])
        for step in BUILD_STEPS:
            s[f"build_{step}_s"] = _med(by["build"], lambda r, k=step: r["steps"].get(k))
        pairs = [(i["seconds"], b["seconds"]) for i in by["ingest"] for b in by["build"]
                 if i["repeat"] == b["repeat"] and "error" not in i and "error" not in b]
        s["total_s"] = statistics.median([a + b for a, b in pairs]) if pairs else None
        s["pandas_s"] = _med(by["pandas"], lambda r: r["seconds"])
        for step in ("read", "dedupe_person", "journeys_assign", "valence", "moments", "journeys_table"):
            s[f"pandas_{step}_s"] = _med(by["pandas"], lambda r, k=step: r["steps"].get(k))
        s["sql_s"] = _med(by["sql"], lambda r: r["seconds"])
        for step in ("dedupe_person", "journeys_assign", "valence", "moments", "journeys_table"):
            s[f"sql_{step}_s"] = _med(by["sql"], lambda r, k=step: r["steps"].get(k))
        f = s["floor_s"]
        s["sql_over_floor"] = s["sql_s"] / f if f and s["sql_s"] else None
        s["build_over_floor"] = s["build_s"] / f if f and s["build_s"] else None
        s["total_over_floor"] = s["total_s"] / f if f and s["total_s"] else None
        p = s["pandas_s"]
        s["total_over_pandas"] = s["total_s"] / p if p and s["total_s"] else None
        s["build_over_pandas"] = s["build_s"] / p if p and s["build_s"] else None
        s["pandas_over_floor"] = p / f if p and f else None
        for m in by:
            s[f"{m}_rss_mb"] = _med(by[m], lambda r: r["peak_rss_mb"])
            s[f"{m}_cpu_s"] = _med(by[m], lambda r: r["cpu_s"])
        s["loadavg"] = [round(r["loadavg_1m_before"], 1) for m in by.values() for r in m
                    if "loadavg_1m_before" in r]
        s["counts"] = next(({k: r[k] for k in ("journeys", "journey_events", "moments")}
                            for r in by["build"] if "error" not in r), None)
        out.append(s)
    return out


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def markdown(summary: list[dict]) -> str:
    lines = [
        "| events | repeats | floor s | ingest s | text | journey_events | journeys | moments | write "
        "| build s | ingest + build s | build / floor | (ingest + build) / floor | pandas s "
        "| km / pandas | sql s | sql / floor "
        "| peak RSS MB floor / ingest / build / pandas / sql | memory_limit |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:"
        "|---:|---|",
    ]
    for s in summary:
        lines.append(
            f"| {s['size']:,} | {s['repeats']} | {_fmt(s['floor_s'], '.2f')} | {_fmt(s['ingest_s'], '.1f')} "
            + " ".join(f"| {_fmt(s[f'build_{k}_s'], '.2f')}" for k in BUILD_STEPS)
            + f" | {_fmt(s['build_s'], '.1f')} | {_fmt(s['total_s'], '.1f')} "
            f"| **{_fmt(s['build_over_floor'], '.1f')}x** | **{_fmt(s['total_over_floor'], '.1f')}x** "
            f"| {_fmt(s['pandas_s'], '.1f')} | {_fmt(s['total_over_pandas'], '.2f')}x "
            f"| {_fmt(s['sql_s'], '.2f')} | **{_fmt(s['sql_over_floor'], '.1f')}x** "
            f"| {_fmt(s['floor_rss_mb'], ',.0f')} / {_fmt(s['ingest_rss_mb'], ',.0f')} / "
            f"{_fmt(s['build_rss_mb'], ',.0f')} / {_fmt(s['pandas_rss_mb'], ',.0f')} / "
            f"{_fmt(s['sql_rss_mb'], ',.0f')} "
            f"| {s['memory_limit'] or 'unset'} |")
    return "\n".join(lines)


def _line(size: int, rep: int, mode: str, res: dict, load: float) -> str:
    if "error" in res:
        msg = f"ERROR {res['error'][:400]}"
    else:
        msg = f"{res['seconds']:8.2f} s  cpu {res['cpu_s']:7.1f} s  rss {res['peak_rss_mb']:,.0f} MB"
        if res.get("steps"):
            msg += "  " + " ".join(f"{k} {v:.2f}" for k, v in res["steps"].items())
        if res.get("spill_peak_mb") is not None:
            msg += f"  spill peak {res['spill_peak_mb']:,.0f} MB"
    return f"{size:>11,} #{rep + 1} {mode:7} {msg}  (load {load:.1f})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Parquet to journeys and moments: keymoments vs "
                                 "DuckDB read+sort and pandas.")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=_data.SEED)
    ap.add_argument("--data", choices=["export", "shop"], default="export",
                    help="the bench export (default) or a demo shop's events (realistic journeys)")
    ap.add_argument("--memory-limit", default="3GB",
                    help="workspace memory_limit (default 3GB: DuckDB's buffer pool; the process "
                         "needs ~0.6 GiB more, so this keeps it under 4 GiB)")
    ap.add_argument("--memory-limit-from", type=int, default=10_000_000,
                    help="apply --memory-limit from this many events up (default 10M)")
    ap.add_argument("--pandas-max", type=int, default=10_000_000,
                    help="run the pandas baseline only up to this size (default 10M)")
    ap.add_argument("--check-size", type=int, default=1_000_000,
                    help="compare pandas and keymoments journeys on this size (0: never)")
    ap.add_argument("--profile", action="store_true",
                    help="profile the build statements on the check size (DuckDB JSON profiling)")
    ap.add_argument("--trace-from", type=int, default=10_000_000,
                    help="from this size up, log each ingest/build statement with the time and "
                         "memory (kept in the JSON; shows where a stopped run was)")
    ap.add_argument("--timeout", type=float, default=1500, help="seconds per measurement (25 min)")
    ap.add_argument("--keep-workspace", action="store_true",
                    help="keep the first repeat's ingested workspace as bench/out/work/ws-<size>-s<seed> "
                         "(with its ingest result), for --reuse-workspace")
    ap.add_argument("--reuse-workspace", action="store_true",
                    help="when a kept workspace of that size exists, skip the ingest and build on it "
                         "(its recorded ingest result is reported, marked reused); saves the 50M ingest")
    ap.add_argument("--skip", nargs="*", default=[], choices=["floor", "build", "pandas", "sql"],
                    help="measurements to leave out")
    ap.add_argument("--out", type=Path, help="JSON file (default bench/out/engine-<date>.json)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child)
        return 0

    import ingest as ingest_bench  # machine_info

    command = "python " + " ".join(shlex.quote(a) for a in
                                   [os.path.relpath(__file__), *(argv or sys.argv[1:])])
    now = dt.datetime.now().astimezone()
    out = args.out or _data.OUT / f"engine-{now:%Y-%m-%d}.json"
    info = ingest_bench.machine_info()
    print(f"# {command}\n# {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB, "
          f"Python {info['python']}, DuckDB {info['duckdb']}, keymoments {info['keymoments']} "
          f"({info['git_commit']}{', src modified' if info['src_dirty'] else ''})", flush=True)
    WORK.mkdir(parents=True, exist_ok=True)
    runs: list[dict] = []
    extra: dict = {}
    total = time.perf_counter()

    def save() -> None:
        result = {"benchmark": "engine", "date": now.isoformat(timespec="seconds"),
                  "command": command, "machine": info, "seed": args.seed, "repeats": args.repeat,
                  "total_seconds": time.perf_counter() - total, "summary": summarise(runs),
                  "runs": runs, **extra}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, default=str))

    for size in args.sizes:
        started = time.perf_counter()
        files = (_shop_file(size, args.seed) if args.data == "shop"
                 else _data.generate(size, args.seed))
        if time.perf_counter() - started > 1:
            print(f"generated {size:,} rows in {time.perf_counter() - started:.0f} s", flush=True)
        limit = args.memory_limit if size >= args.memory_limit_from else None
        trace = size >= args.trace_from
        kept = WORK / f"ws-{'shop-' if args.data == 'shop' else ''}{size}-s{args.seed}"
        for rep in range(args.repeat):
            tmp = Path(tempfile.mkdtemp(prefix=f"engine-{size}-", dir=WORK))
            base = {"size": size, "repeat": rep, "file": str(files["parquet"]), "data": args.data}
            ws_dir = tmp / "ws"
            reused = args.reuse_workspace and (kept / "ingest-result.json").exists()
            if reused or (args.keep_workspace and rep == 0):
                ws_dir = kept
            try:
                jobs = [dict(base, mode="floor", db=str(tmp / "floor.duckdb")),
                        dict(base, mode="ingest", workspace=str(ws_dir), memory_limit=limit,
                             trace=trace),
                        dict(base, mode="build", workspace=str(ws_dir), memory_limit=limit,
                             trace=trace)]
                if size <= args.pandas_max and args.data == "export":
                    jobs.append(dict(base, mode="pandas"))
                if args.data == "export":
                    jobs.append(dict(base, mode="sql", db=str(tmp / "sql.duckdb"),
                                     memory_limit=limit))
                jobs = [j for j in jobs if j["mode"] not in args.skip]
                for job in jobs:
                    load = os.getloadavg()[0]
                    if job["mode"] == "ingest" and reused:
                        res = json.loads((kept / "ingest-result.json").read_text())
                        res["reused"] = str(kept)
                    else:
                        if job["mode"] == "ingest" and ws_dir == kept:
                            shutil.rmtree(kept, ignore_errors=True)
                        res = _run_child(job, args.timeout)
                    if not res.get("reused"):
                        res["loadavg_1m_before"] = load
                        res["loadavg_1m_after"] = os.getloadavg()[0]
                        if job["mode"] == "ingest" and ws_dir == kept and "error" not in res:
                            (kept / "ingest-result.json").write_text(json.dumps(res, default=str))
                    runs.append({**{k: v for k, v in job.items() if k not in ("db", "workspace")}, **res})
                    print(_line(size, rep, job["mode"], res, load)
                          + (f" [reused {kept}]" if res.get("reused") else ""), flush=True)
                    for t in res.get("stderr_tail", []):
                        print(f"      | {t}", flush=True)
                    save()
                    if job["mode"] in ("floor", "sql") and "error" not in res:
                        (tmp / f"{job['mode']}.duckdb").unlink(missing_ok=True)
                    if "error" in res and job["mode"] == "ingest":
                        break  # nothing to build
                ws_ok = all("error" not in r for r in runs[-len(jobs):])
                if rep == 0 and size == args.check_size and ws_ok and args.data == "export":
                    res = _run_child(dict(base, mode="check", workspace=str(ws_dir)), args.timeout)
                    extra["check"] = res
                    print("check: " + json.dumps(res, indent=1, default=str), flush=True)
                    if args.profile:
                        res = _run_child(dict(base, mode="profile", workspace=str(ws_dir),
                                              profile_dir=str(tmp / "profile")), args.timeout)
                        extra["profile"] = res
                        for st in res.get("statements", []):
                            if st["seconds"] < 0.05:
                                continue
                            print(f"  {st['seconds']:6.2f} s  {st['statement']}")
                            for op in st["top_ops"][:4]:
                                print(f"           {op['s']:6.2f} s {op['op']} rows={op['rows']} "
                                      f"{json.dumps(op['extra'])[:200]}")
                        if "error" in res:
                            print("profile: " + res["error"])
                    save()
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    save()
    print()
    print(markdown(summarise(runs)))
    print(f"\nwrote {out} (total {(time.perf_counter() - total) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
