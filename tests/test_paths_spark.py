"""The path counting is written once: the same Ibis expressions give the same
directly-follows graph, nodes and variants on DuckDB and on a local Spark.

Durations' median and p90 are left out of the comparison: DuckDB interpolates
quantiles, Spark's are approximate (``percentile_approx``)."""

from __future__ import annotations


import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from keymoments.paths.dfg import dfg_counts, edges_expr, nodes_expr
from keymoments.paths.variant import split_path, variant_counts


def _log(seed: int = 3) -> pa.Table:
    """Seeded journeys of 1-9 events over 5 activities; some events share a second
    (journey order is time, then seq); a third of the valences are NULL."""
    rng = np.random.default_rng(seed)
    rows = []
    for j in range(300):
        t = 1_700_000_000 + int(rng.integers(0, 10**6))
        for s in range(int(rng.integers(1, 10))):
            t += int(rng.integers(0, 3))
            v = None if rng.random() < 0.33 else float(np.round(rng.uniform(-1, 1), 3))
            rows.append({"journey_id": f"j{j:03d}", "seq": s, "ts": t,
                         "event_type": "abcde"[int(rng.integers(0, 5))], "valence": v})
    table = pa.Table.from_pylist(rows)
    return table.set_column(2, "ts", pa.array([r["ts"] for r in rows], pa.timestamp("s", "UTC")))


def _rows(expr, key):
    return sorted(expr.to_pyarrow().to_pylist(), key=lambda r: tuple(r[k] for k in key))


def test_paths_counts_are_the_same_on_spark(spark, tmp_path):
    import ibis

    from keymoments.engine import spark_backend

    path = tmp_path / "je.parquet"
    pq.write_table(_log(), path)
    duck = ibis.duckdb.connect().read_parquet(str(path))
    spark.read.parquet(str(path)).createOrReplaceTempView("je")
    sp = spark_backend(spark).table("je")

    assert _rows(dfg_counts(duck), ["source", "target"]) == _rows(dfg_counts(sp), ["source", "target"])
    cols = ["source", "target", "count", "journeys", "mean_s"]
    a = [{k: r[k] for k in cols} for r in _rows(edges_expr(duck), ["source", "target"])]
    b = [{k: r[k] for k in cols} for r in _rows(edges_expr(sp), ["source", "target"])]
    assert [r.pop("mean_s") for r in a] == pytest.approx([r.pop("mean_s") for r in b])
    assert a == b
    # runs collapsed: each edge timed from the end of the run before it
    key = ["source", "target"]
    a = [{k: r[k] for k in cols} for r in _rows(edges_expr(duck, collapse=True), key)]
    b = [{k: r[k] for k in cols} for r in _rows(edges_expr(sp, collapse=True), key)]
    assert [r.pop("mean_s") for r in a] == pytest.approx([r.pop("mean_s") for r in b])
    assert a == b
    na, nb = _rows(nodes_expr(duck), ["activity"]), _rows(nodes_expr(sp), ["activity"])
    for x, y in zip(na, nb, strict=True):
        for k in x:
            assert x[k] == pytest.approx(y[k]), (k, x, y)
    va = {tuple(split_path(r["path"])): r["journeys"] for r in variant_counts(duck).to_pyarrow().to_pylist()}
    vb = {tuple(split_path(r["path"])): r["journeys"] for r in variant_counts(sp).to_pyarrow().to_pylist()}
    assert va == vb and sum(va.values()) == 300
