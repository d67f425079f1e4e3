"""Do the storage hints (``store.schema.ID_COMPRESSION``: FSST on hash ids, a
dictionary on vocabularies) speed up writing events? One command, an A/B in the same process on the same rows.

The events of the bench export (``bench/_data.py``, ``--size`` rows) are ingested
once into a scratch workspace; then, alternating, the same rows are inserted into a
fresh DuckDB file whose ``events`` table is created with the hint and without it
(``INSERT ... SELECT`` from a temp copy, in a transaction, then ``CHECKPOINT``: what
a load does). Prints the median of ``--repeat`` writes of each, their ratio and the
file sizes.

    python bench/storage_hint.py --size 1000000 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    import _data
    import duckdb

    import keymoments as km
    from keymoments.store import schema

    work = Path(tempfile.mkdtemp(prefix="km-hint-"))
    try:
        km.init(work / "ws").close()
        (work / "ws" / "keymoments.yaml").write_text(
            _data.mapping_yaml(_data.generate(args.size, quiet=True)["parquet"]))
        with km.open(work / "ws") as ws:
            ws.ingest("events")
            rows = ws.con.execute("SELECT * FROM events").to_arrow_table()
        hints = {k: dict(v) for k, v in schema.ID_COMPRESSION.items()}
        times: dict[str, list[float]] = {"with hint": [], "without": []}
        sizes: dict[str, int] = {}
        for _ in range(args.repeat):
            for label in times:
                schema.ID_COMPRESSION.clear()
                if label == "with hint":
                    schema.ID_COMPRESSION.update(hints)
                path = work / "copy.duckdb"
                if path.exists():
                    path.unlink()
                con = duckdb.connect(str(path))
                con.register("rows", rows)
                con.execute("CREATE TEMP TABLE src AS SELECT * FROM rows")
                con.execute(schema._create("events"))
                t = time.perf_counter()
                con.execute("BEGIN")
                con.execute("INSERT INTO events SELECT * FROM src")
                con.execute("COMMIT")
                con.execute("CHECKPOINT")
                times[label].append(time.perf_counter() - t)
                con.close()
                sizes[label] = path.stat().st_size
        schema.ID_COMPRESSION.clear()
        schema.ID_COMPRESSION.update(hints)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.size:,} events, {args.repeat} writes each, load average {os.getloadavg()[0]:.2f}")
    for label, v in times.items():
        print(f"  {label:10s} median {med[label]:.2f} s  (runs {', '.join(f'{x:.2f}' for x in v)})  "
              f"file {sizes[label] / 1e6:.0f} MB")
    print(f"  with / without: {med['with hint'] / med['without']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
