"""Expressions whose best form differs between engines, written once here.

An analysis calls these instead of the Ibis method when the method's portable SQL
is slow on one engine. Each returns the same values on every engine.

>>> import ibis
>>> t = ibis.duckdb.connect().create_table("t", schema={"ts": "timestamp('UTC')"})
>>> print(ibis.to_sql(epoch_seconds(t.ts).name("s")))
SELECT
  EPOCH_US("t0"."ts") / 1000000.0 AS "s"
FROM "memory"."main"."t" AS "t0"
>>> u = ibis.table({"ts": "timestamp('UTC')"}, name="u")   # unbound: the portable form
>>> print(ibis.to_sql(epoch_seconds(u.ts).name("s"), dialect="duckdb"))
SELECT
  EPOCH(CAST("t0"."ts" AS TIMESTAMP)) AS "s"
FROM "u" AS "t0"
"""

from __future__ import annotations

import ibis
import ibis.expr.datatypes as dt

__all__ = ["engine_of", "epoch_micros", "epoch_seconds", "seconds_between"]


def engine_of(expr) -> str | None:
    """The name of the backend ``expr`` is bound to (``duckdb``, ``pyspark``), or
    None for an expression over unbound tables or literals only."""
    try:
        return expr._find_backend(use_default=False).name
    except Exception:  # unbound: no backend to ask
        return None


@ibis.udf.scalar.builtin(name="epoch_us")
def _epoch_us(ts: dt.Timestamp(timezone="UTC")) -> dt.int64:  # type: ignore[empty-body]
    """DuckDB's ``epoch_us``: microseconds since 1970-01-01 UTC of an instant."""


@ibis.udf.scalar.builtin(name="unix_micros")
def _unix_micros(ts: dt.Timestamp(timezone="UTC")) -> dt.int64:  # type: ignore[empty-body]
    """Spark's ``unix_micros``: microseconds since 1970-01-01 UTC of a timestamp."""


def _micros(ts, engine: str | None):
    """Whole microseconds by the engine's own function, or None where it has none."""
    if engine == "duckdb":
        return _epoch_us(ts)
    if engine == "pyspark":  # Ibis's portable form there is unix_timestamp: whole seconds
        return _unix_micros(ts)
    return None


def epoch_seconds(ts):
    """Seconds since 1970-01-01 UTC of a time column, with its fraction.

    Ibis writes ``ts.epoch_seconds()`` for DuckDB as ``EPOCH(CAST(ts AS TIMESTAMP))``:
    the cast of a ``TIMESTAMPTZ`` goes through ICU's calendar, ~25x the cost of
    ``epoch_us(ts)`` (3.0 against 0.12 s per 10M rows), and it appears a dozen times
    per event in a build. Both give the same double in the workspace's UTC session.
    On Spark, Ibis's form is ``unix_timestamp``, whole seconds: ``unix_micros`` keeps
    the fraction. Unbound expressions keep Ibis's portable form.
    """
    micros = _micros(ts, engine_of(ts))
    return ts.epoch_seconds() if micros is None else micros / 1e6


def epoch_micros(ts):
    """Whole microseconds since 1970-01-01 UTC of a time column: differences of these
    are exact, where differences of :func:`epoch_seconds` (doubles) are not always (two
    times exactly 30 minutes apart around 2004-01-10 differed by 1800.0000000002)."""
    micros = _micros(ts, engine_of(ts))
    if micros is not None:
        return micros
    # (Ibis types epoch_seconds as an integer, so a cast of the product is dropped:
    # through a double, rounded, the microseconds are whole on every engine)
    return (ts.epoch_seconds().cast("float64") * 1e6).round().cast("int64")


def seconds_between(later, earlier):
    """Seconds from ``earlier`` to ``later`` (time columns or literals), from their
    whole microseconds: a difference of exactly a gap or window compares equal to it."""
    for engine in ("duckdb", "pyspark"):
        if engine in (engine_of(later), engine_of(earlier)):
            return (_micros(later, engine) - _micros(earlier, engine)) / 1e6
    return (epoch_micros(later) - epoch_micros(earlier)) / 1e6
