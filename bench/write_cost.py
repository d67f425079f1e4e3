"""What writing the stored tables costs, against the floor and the plain load: a
lower bound for the ingest and build targets.

The ingest must store every event as a row of ``events``, and the build must store
``journey_events``, ``journeys`` and ``moments`` (their columns are the documented
schema, ``keymoments.store.schema``). This measures that writing alone, with nothing
to compute: the rows of a built workspace of the bench export are copied into
memory (TEMP tables), then, alternating in one process, written into a fresh
DuckDB file, each into a table created with the store's own DDL (types and storage
hints), in a transaction followed by a ``CHECKPOINT`` (what a load or a build
does). In the same rounds it runs the two baselines of the targets on the same
export: the **floor** (``CREATE TABLE AS SELECT * FROM read_parquet(...) ORDER BY
customer_id, ts``) and the **plain load** (the same without ``ORDER BY``), and two
references: the events without their four map columns (what the maps cost) and one
window sort of the events by person and time into memory (the sort a journey build
cannot avoid), and the three derived tables written with every column uncompressed
(what choosing and applying compression costs their writes). Prints medians, each as
a ratio to the floor and to the plain load.

The workspace: ``bench/out/work/ws-<size>-s<seed>`` when it exists and has been
built (``python bench/engine.py --sizes <size> --keep-workspace`` leaves it), else
one made here (ingest and build of the export, not timed).

    python bench/write_cost.py --size 1000000 --repeat 3
    python bench/write_cost.py --size 10000000 --repeat 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _data  # noqa: E402

STORED = ["events", "journey_events", "journeys", "moments"]
MAPS = ["identifiers", "refs", "measures", "attributes"]


def _workspace(size: int, seed: int, scratch: Path) -> Path:
    """A built workspace of the bench export (kept by engine.py, or made here)."""
    import duckdb

    kept = _data.OUT / "work" / f"ws-{size}-s{seed}"
    db = kept / "keymoments.duckdb"
    if db.exists():
        con = duckdb.connect(str(db), read_only=True)
        try:
            built = con.execute("SELECT count(*) FROM journeys").fetchone()[0] > 0
        except duckdb.Error:
            built = False
        con.close()
        if built:
            return kept
    import keymoments as km

    files = _data.generate(size, seed)
    root = scratch / "ws"
    km.init(root).close()
    (root / "keymoments.yaml").write_text(_data.mapping_yaml(files["parquet"], "events"))
    print(f"no built workspace at {kept}: ingesting and building one (not timed)", flush=True)
    ws = km.open(root)
    ws.ingest("events")
    ws.build()
    ws.close()
    return root


def measure(size: int, seed: int, repeat: int) -> dict:
    import duckdb

    from keymoments.store.schema import COLUMN_DOCS, column_ddl

    parquet = _data.generate(size, seed)["parquet"]
    scratch = Path(tempfile.mkdtemp(prefix="write-cost-", dir=_data.OUT))
    try:
        ws = _workspace(size, seed, scratch)
        con = duckdb.connect(str(scratch / "out.duckdb"))
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET preserve_insertion_order = false")  # as a workspace sets it
        con.execute(f"ATTACH '{ws / 'keymoments.duckdb'}' AS ws (READ_ONLY)")
        rows = {}
        for table in STORED:
            con.execute(f"CREATE TEMP TABLE mem_{table} AS SELECT * FROM ws.main.{table}")
            rows[table] = con.execute(f"SELECT count(*) FROM mem_{table}").fetchone()[0]
        con.execute("DETACH ws")
        src = str(parquet).replace("'", "''")
        rows["floor"] = rows["plain"] = rows["read the export into memory"] = con.execute(
            f"SELECT count(*) FROM read_parquet('{src}')").fetchone()[0]
        rows["events without maps"] = rows["sort events by person, time (memory)"] = rows["events"]
        runs: dict[str, list[str]] = {
            "floor": [f"CREATE TABLE w AS SELECT * FROM read_parquet('{src}') "
                      "ORDER BY customer_id, ts"],
            "plain": [f"CREATE TABLE w AS SELECT * FROM read_parquet('{src}')"],
            "read the export into memory": [
                f"CREATE TEMP TABLE w AS SELECT * FROM read_parquet('{src}')"],
        }
        for table in STORED:
            runs[table] = [f"CREATE TABLE w ({column_ddl(table)})", "BEGIN",
                           f"INSERT INTO w SELECT * FROM mem_{table}", "COMMIT"]
        ddl_no_maps = ",\n".join(line for line in column_ddl("events").split(",\n")
                                 if line.split('"')[1] not in MAPS)
        runs["events without maps"] = [
            f"CREATE TABLE w ({ddl_no_maps})", "BEGIN",
            f"INSERT INTO w SELECT * EXCLUDE ({', '.join(MAPS)}) FROM mem_events", "COMMIT"]
        derived = STORED[1:]
        for table in derived:
            plain_ddl = ",\n".join(f'"{c}" {t.replace(" NOT NULL", "")} USING COMPRESSION '
                                   "uncompressed" for c, (t, _) in COLUMN_DOCS[table].items())
            runs[f"{table} uncompressed"] = [f"CREATE TABLE w ({plain_ddl})", "BEGIN",
                                             f"INSERT INTO w SELECT * FROM mem_{table}", "COMMIT"]
            rows[f"{table} uncompressed"] = rows[table]
        runs["sort events by person, time (memory)"] = [
            "CREATE TEMP TABLE w AS SELECT event_id, row_number() OVER "
            "(PARTITION BY person_id ORDER BY ts, event_id) AS seq FROM mem_events"]
        seconds: dict[str, list[float]] = {k: [] for k in runs}
        for r in range(repeat):
            for label, statements in runs.items():
                con.execute("DROP TABLE IF EXISTS w")
                con.execute("CHECKPOINT")
                started = time.perf_counter()
                for sql in statements:
                    con.execute(sql)
                con.execute("CHECKPOINT")
                seconds[label].append(time.perf_counter() - started)
                print(f"  round {r + 1}: {label:38} {seconds[label][-1]:7.2f} s", flush=True)
        con.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in seconds.items()}
    writes = sum(med[t] for t in STORED)
    read, sort = med["read the export into memory"], med["sort events by person, time (memory)"]
    return {
        "size": size, "seed": seed, "repeat": repeat, "rows": rows, "seconds": seconds,
        "median": med,
        "lower_bounds": {
            "(read + events write) / plain (ingest target 2x)":
                (read + med["events"]) / med["plain"],
            "(read + four writes + sort) / floor (ingest + build target 4x)":
                (read + writes + sort) / med["floor"],
            "(three writes + sort) / floor (the build alone)":
                (writes - med["events"] + sort) / med["floor"],
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    from ingest import machine_info

    info = machine_info()
    args_text = " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    command = f"python bench/write_cost.py {args_text}"
    print(f"# {command}\n# {info['cpu']}, {info['cores']} cores, DuckDB {info['duckdb']}, "
          f"keymoments {info['keymoments']} ({info['git_commit']})", flush=True)
    res = measure(args.size, args.seed, args.repeat)
    floor, plain = res["median"]["floor"], res["median"]["plain"]
    print(f"\n{args.size:,} events, medians of {args.repeat}\n")
    print("| written or run | rows | median s | / floor | / plain load |")
    print("|---|---:|---:|---:|---:|")
    for label, s in res["median"].items():
        print(f"| {label} | {res['rows'][label]:,} | {s:.2f} | {s / floor:.2f}x "
              f"| {s / plain:.2f}x |")
    print()
    for label, ratio in res["lower_bounds"].items():
        print(f"lower bound: {label}: {ratio:.2f}x")
    out = args.out or _data.OUT / f"write-cost-{dt.date.today().isoformat()}.json"
    out.write_text(json.dumps({"command": command, "machine": info, **res}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
