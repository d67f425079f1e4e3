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

__all__ = ["backend", "spark_backend"]


def backend(ws: Workspace):
    """An Ibis backend over the workspace's own DuckDB connection (no copy)."""
    import ibis

    cached = getattr(ws, "_ibis", None)
    if cached is None:
        cached = ibis.duckdb.from_connection(ws.con)
        ws._ibis = cached
    return cached


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
