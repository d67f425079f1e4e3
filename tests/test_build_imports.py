"""A build does not import pandas: binding a value in a DuckDB statement, registering
a Python object with DuckDB, building an Arrow array from Python values and Ibis's
``to_pyarrow`` each import it (~0.8 s on these machines), and a build needs none of
them. (An ingest does: stitching hands the identity components to DuckDB.)"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import keymoments as km
from keymoments.demo import generate_demo

PROBE = textwrap.dedent("""
    import json, sys
    import keymoments as km
    ws = km.open(sys.argv[1])
    report = ws.build()
    ws.close()
    print(json.dumps({"pandas": "pandas" in sys.modules, "texts": report.texts_scored,
                      "journeys": report.journeys}))
""")


def test_a_build_does_not_import_pandas(tmp_path):
    generate_demo(tmp_path, n_events=3_000, seed=5, fmt="parquet")
    with km.open(tmp_path) as ws:
        ws.ingest()
        n_texts = ws.con.execute(
            "SELECT count(DISTINCT text) FROM events WHERE text IS NOT NULL").fetchone()[0]
    out = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path)], capture_output=True,
                         text=True, timeout=300, check=True)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    # the first build scores every distinct text (the path that wrote Arrow batches)
    assert probe["texts"] == n_texts > 0 and probe["journeys"] > 0
    assert probe["pandas"] is False
