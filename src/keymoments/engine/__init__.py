"""The engine layer: analyses are Ibis expressions, written once, that run on the
workspace's DuckDB (default) and, unchanged, on Spark (the ``spark`` extra).

>>> import tempfile, keymoments as km
>>> ws = km.init(tempfile.mkdtemp())
>>> backend(ws).name
'duckdb'
>>> ws.close()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["backend", "small_result", "spark_backend"]


def backend(ws: Workspace):
    """An Ibis backend over the workspace's own DuckDB connection (no copy)."""
    import ibis

    cached = getattr(ws, "_ibis", None)
    if cached is None:
        cached = ibis.duckdb.from_connection(ws.con)
        ws._ibis = cached
    return cached


def small_result(expr):
    """The rows of ``expr`` (a small result: a vocabulary, one number per type) as an
    Arrow table, on any backend. On DuckDB they are read from the connection: Ibis's
    own conversion imports pandas on first use, which costs a build ~1 s.

    >>> import ibis
    >>> con = ibis.duckdb.connect()
    >>> t = con.create_table("t", schema={"x": "int64"})
    >>> con.raw_sql("INSERT INTO t VALUES (1), (2)")  # doctest: +ELLIPSIS
    <...>
    >>> small_result(t.mutate(y=t.x * 2)).to_pylist()
    [{'x': 1, 'y': 2}, {'x': 2, 'y': 4}]
    """
    import ibis

    engine = ibis.get_backend(expr)
    if engine.name == "duckdb":
        return engine.con.execute(ibis.to_sql(expr, dialect="duckdb")).to_arrow_table()
    return expr.to_pyarrow()


def spark_backend(session=None):
    """An Ibis PySpark backend (needs ``pip install 'keymoments[spark]'``)."""
    from ..errors import MissingExtraError

    try:
        import ibis
        from pyspark.sql import SparkSession
    except ImportError:
        raise MissingExtraError("pyspark", "spark") from None
    session = session or (SparkSession.builder.master("local[2]")
                          .config("spark.driver.memory", "4g").getOrCreate())
    session.conf.set("spark.sql.session.timeZone", "UTC")
    return ibis.pyspark.connect(session)
