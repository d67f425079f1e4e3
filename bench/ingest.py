"""Ingest throughput: keymoments against a plain DuckDB load of the same file.

For each size and format (CSV, Parquet) and each repeat, three measurements, each in
a fresh Python process (so memory, page cache of the DuckDB buffer pool and imports
do not leak from one measurement into the next):

* **baseline**: ``CREATE TABLE t AS SELECT * FROM read_csv(...)`` (or ``read_parquet``)
  in a fresh DuckDB file: connect, load, close;
* **keymoments**: a fresh workspace (``km.init`` and the bench mapping written before
  the clock starts), then ``km.open`` + ``ws.ingest("events")`` + ``ws.close()``;
* **re-ingest**: the same file again into that already-loaded store (every row is a
  duplicate): ``km.open`` + ``ws.ingest("events")`` + ``ws.close()``.

Each child reports its wall time (interpreter start-up and imports excluded) and
its peak RSS (``ru_maxrss``, which includes the interpreter and its imports). The
parent prints the medians over repeats and writes every raw run and the summary to
``bench/out/ingest-<date>.json``.

    python bench/ingest.py --sizes 1000000 10000000 --repeat 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
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


# ------------------------------------------------------------------ children


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _cpu_s() -> float:
    """User + system CPU seconds of this process (all its threads) so far."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _child_baseline(job: dict) -> dict:
    import duckdb

    reader = "read_csv" if job["format"] == "csv" else "read_parquet"
    cpu, started = _cpu_s(), time.perf_counter()
    con = duckdb.connect(job["db"])
    con.execute(f"CREATE TABLE t AS SELECT * FROM {reader}(?)", [job["file"]])
    rows = con.execute("SELECT count(*) FROM t").fetchone()[0]
    con.close()
    return {"seconds": time.perf_counter() - started, "cpu_s": _cpu_s() - cpu, "rows": rows}


def _child_keymoments(job: dict) -> dict:
    import keymoments as km

    root = Path(job["workspace"])
    if job["mode"] == "keymoments":
        km.init(root).close()
        (root / "keymoments.yaml").write_text(_data.mapping_yaml(job["file"], SOURCE))
    cpu, started = _cpu_s(), time.perf_counter()
    ws = km.open(root)
    report = ws.ingest(SOURCE)
    ws.close()
    return {"seconds": time.perf_counter() - started, "cpu_s": _cpu_s() - cpu,
            "rows": report.rows_read,
            "report": report.as_dict()}


def child(job_json: str) -> None:
    job = json.loads(job_json)
    fn = _child_baseline if job["mode"] == "baseline" else _child_keymoments
    result = fn(job)
    result["peak_rss_mb"] = _rss_mb()
    print("RESULT " + json.dumps(result), flush=True)


# -------------------------------------------------------------------- parent


def _run_child(job: dict, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(job)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-2000:]}"}


def _dir_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*.duckdb*") if p.is_file())


def machine_info() -> dict:
    import duckdb
    import pyarrow

    import keymoments

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE,
                                capture_output=True, text=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=HERE,
                                    capture_output=True, text=True).stdout.strip())
        diff = subprocess.run(["git", "diff", "HEAD", "--", "src"], cwd=HERE,
                              capture_output=True).stdout
    except OSError:
        commit, dirty, diff = "", False, b""
    import hashlib

    return {
        "cpu": cpu, "cores": os.cpu_count(), "ram_gib": ram,
        "os": platform.platform(), "python": platform.python_version(),
        "duckdb": duckdb.__version__, "pyarrow": pyarrow.__version__,
        "keymoments": keymoments.__version__, "git_commit": commit, "src_dirty": dirty,
        "src_diff_sha1": hashlib.sha1(diff).hexdigest()[:12] if dirty else None,
    }


def _median(runs: list[dict], key: str) -> float | None:
    vals = [r[key] for r in runs if key in r]
    return statistics.median(vals) if vals else None


def summarise(runs: list[dict]) -> list[dict]:
    out = []
    keys = sorted({(r["size"], r["format"]) for r in runs},
                  key=lambda k: (k[0], ["parquet", "csv"].index(k[1])))
    for size, fmt in keys:
        sel = {m: [r for r in runs if (r["size"], r["format"], r["mode"]) == (size, fmt, m)
                   and "seconds" in r] for m in ("baseline", "keymoments", "reingest")}
        row = {"size": size, "format": fmt, "repeats": len(sel["keymoments"])}
        for mode, runs_m in sel.items():
            s = _median(runs_m, "seconds")
            row[f"{mode}_s"] = s
            row[f"{mode}_min_s"] = min((r["seconds"] for r in runs_m), default=None)
            row[f"{mode}_cpu_s"] = _median(runs_m, "cpu_s")
            if mode != "baseline":  # the load's own clock (LoadReport.seconds): no open/close
                row[f"{mode}_ingest_call_s"] = _median(
                    [{"s": r["report"]["seconds"]} for r in runs_m if "report" in r], "s")
            row[f"{mode}_all_s"] = [round(r["seconds"], 3) for r in runs_m]
            row[f"{mode}_events_per_s"] = size / s if s else None
            row[f"{mode}_peak_rss_mb"] = _median(runs_m, "peak_rss_mb")
            row[f"{mode}_store_mb"] = _median(runs_m, "store_mb")
        b, k = row["baseline_s"], row["keymoments_s"]
        row["ratio"] = k / b if b and k else None
        # the same ratio from the fastest run of each (less sensitive to a noisy machine)
        bm, km_ = row["baseline_min_s"], row["keymoments_min_s"]
        row["ratio_min"] = km_ / bm if bm and km_ else None
        bc, kc = row["baseline_cpu_s"], row["keymoments_cpu_s"]
        row["cpu_ratio"] = kc / bc if bc and kc else None
        row["reingest_ratio"] = row["reingest_s"] / b if b and row["reingest_s"] else None
        out.append(row)
    return out


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def markdown(summary: list[dict]) -> str:
    head = ("| rows | format | repeats | DuckDB plain load s (events/s) | keymoments ingest s "
            "(events/s) | ratio km/plain (of fastest runs) | CPU s plain / km | re-ingest s "
            "(ratio) | peak RSS MB plain / km / re-ingest |\n"
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in summary:
        lines.append(
            f"| {r['size']:,} | {r['format']} | {r['repeats']} "
            f"| {_fmt(r['baseline_s'], '.2f')} ({_fmt(r['baseline_events_per_s'], ',.0f')}) "
            f"| {_fmt(r['keymoments_s'], '.2f')} ({_fmt(r['keymoments_events_per_s'], ',.0f')}) "
            f"| **{_fmt(r['ratio'], '.1f')}x** ({_fmt(r['ratio_min'], '.1f')}x) "
            f"| {_fmt(r['baseline_cpu_s'], '.1f')} / {_fmt(r['keymoments_cpu_s'], '.1f')} "
            f"| {_fmt(r['reingest_s'], '.2f')} ({_fmt(r['reingest_ratio'], '.1f')}x) "
            f"| {_fmt(r['baseline_peak_rss_mb'], ',.0f')} / {_fmt(r['keymoments_peak_rss_mb'], ',.0f')}"
            f" / {_fmt(r['reingest_peak_rss_mb'], ',.0f')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Ingest throughput of keymoments vs plain DuckDB.")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--formats", nargs="+", choices=["parquet", "csv"], default=["parquet", "csv"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=_data.SEED)
    ap.add_argument("--no-reingest", action="store_true", help="skip the re-ingest measurement")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per measurement (15 min)")
    ap.add_argument("--out", type=Path, help="JSON file (default bench/out/ingest-<date>.json)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child)
        return 0

    command = "python " + " ".join(shlex.quote(a) for a in
                                   [os.path.relpath(__file__), *(argv or sys.argv[1:])])
    now = dt.datetime.now().astimezone()
    out = args.out or _data.OUT / f"ingest-{now:%Y-%m-%d}.json"
    info = machine_info()
    print(f"# {command}\n# {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB, "
          f"Python {info['python']}, DuckDB {info['duckdb']}, keymoments {info['keymoments']} "
          f"({info['git_commit']}{', src modified' if info['src_dirty'] else ''})", flush=True)
    WORK.mkdir(parents=True, exist_ok=True)
    runs: list[dict] = []
    total = time.perf_counter()
    for size in args.sizes:
        files = _data.generate(size, args.seed)
        for rep in range(args.repeat):
            for fmt in args.formats:
                base = {"size": size, "format": fmt, "repeat": rep, "file": str(files[fmt])}
                tmp = Path(tempfile.mkdtemp(prefix=f"{fmt}-{size}-", dir=WORK))
                try:
                    jobs = [dict(base, mode="baseline", db=str(tmp / "plain.duckdb")),
                            dict(base, mode="keymoments", workspace=str(tmp / "ws"))]
                    if not args.no_reingest:
                        jobs.append(dict(base, mode="reingest", workspace=str(tmp / "ws")))
                    for job in jobs:
                        load = os.getloadavg()[0]
                        res = _run_child(job, args.timeout)
                        res["loadavg_1m_before"] = load
                        where = Path(job.get("db") or job["workspace"])
                        if "error" not in res:
                            res["store_mb"] = _dir_bytes(where) / 1e6
                        run = {**{k: v for k, v in job.items() if k not in ("db", "workspace")},
                               **res}
                        runs.append(run)
                        msg = (f"{run['seconds']:8.2f} s  {size / run['seconds']:>12,.0f} ev/s  "
                               f"cpu {run['cpu_s']:7.2f} s  rss {run['peak_rss_mb']:,.0f} MB  "
                               f"(load {load:.1f})" if "error" not in res
                               else f"ERROR {res['error'][:300]}")
                        print(f"{size:>11,} {fmt:8} #{rep + 1} {job['mode']:10} {msg}", flush=True)
                        if "error" in res and job["mode"] == "keymoments":
                            break  # nothing to re-ingest into
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
    summary = summarise(runs)
    result = {
        "benchmark": "ingest", "date": now.isoformat(timespec="seconds"), "command": command,
        "machine": info, "seed": args.seed, "repeats": args.repeat,
        "total_seconds": time.perf_counter() - total, "summary": summary, "runs": runs,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print()
    print(markdown(summary))
    print(f"\nwrote {out} (total {result['total_seconds'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
