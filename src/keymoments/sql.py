r"""Quoting for the little SQL keymoments generates. Every name and value that comes
from a user (config, file headers, identifiers) goes through these, never through
string formatting alone.

>>> print(ident('a"b'), ident("order id"))
"a""b" "order id"
>>> literal("O'Brien")
"'O''Brien'"
>>> literal(None), literal(3), literal(2.5), literal(True)
('NULL', '3', '2.5', 'TRUE')
>>> print(literal("a\x00b'"))  # a NUL (a corrupt export's) is kept, as the value holds it
('a' || chr(0) || 'b''')
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

__all__ = ["ident", "literal", "member_of", "few_values", "registered", "days",
           "interval_days", "interval_seconds", "rollback", "MEMBER_LIST_MAX"]

#: up to this many values, :func:`member_of` writes them out
MEMBER_LIST_MAX = 512


def ident(name: str) -> str:
    """Quote an identifier (column or table name)."""
    if "\x00" in name:
        raise ValueError("a name cannot contain a NUL character")
    return '"' + name.replace('"', '""') + '"'


def literal(value: object) -> str:
    """Quote a constant as a SQL literal."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {value!r}")
        return repr(value)
    text = str(value)
    if "\x00" in text:  # (SQL text cannot hold one: the parts joined by chr(0))
        return "(" + " || chr(0) || ".join(literal(p) for p in text.split("\x00")) + ")"
    return "'" + text.replace("'", "''") + "'"


#: the longest window an analysis takes, in days (100 years)
MAX_DAYS = 36_500


def days(value: float, name: str) -> float:
    """``value`` (a window or unit in days, from a user) as a float, checked: positive,
    finite and at most :data:`MAX_DAYS`, or an error naming ``name``.

    >>> days(7, "within_days")
    7.0
    >>> days(float("nan"), "--inactive-days")
    Traceback (most recent call last):
    ...
    keymoments.errors.KeymomentsError: --inactive-days must be a number of days above 0 and at most 36500, not nan
    """
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    if not (math.isfinite(x) and 0 < x <= MAX_DAYS):
        from .errors import KeymomentsError

        raise KeymomentsError(f"{name} must be a number of days above 0 and at most "
                              f"{MAX_DAYS}, not {value!r}")
    return x


def interval_days(value: float, name: str) -> str:
    """``value`` days (checked by :func:`days`) as an SQL interval.

    >>> interval_days(1.5, "within_days")
    "INTERVAL '129600 seconds'"
    """
    return interval_seconds(days(value, name) * 86400)


def interval_seconds(seconds: float) -> str:
    """``seconds`` (a checked duration, such as a config's) as an SQL interval.

    >>> interval_seconds(90.4)
    "INTERVAL '90 seconds'"
    """
    return f"INTERVAL '{float(seconds):.0f} seconds'"


def member_of(column: str, values: Sequence[str] | None, subquery: str) -> str:
    """A predicate: ``column`` (an SQL expression) is one of ``values``, or, when
    there are more than :data:`MEMBER_LIST_MAX` of them (or ``values`` is None), one
    of the rows of ``subquery``.

    A few values are written out twice, for two reasons: an ``IN`` list lets DuckDB
    skip the row groups whose min/max exclude every value (zone maps: a table ordered
    by the column then reads only the groups holding the values), and
    ``list_contains`` over a constant list is evaluated once per distinct value of a
    dictionary-compressed column, not once per row as the ``IN`` list's comparisons
    are. Reading 20 persons' events out of 1M (see docs/benchmarks.md, "Service"): a
    semi-join with a table of the persons 130-220 ms, this predicate ~100 ms, and
    ~22 ms once the table is ordered by person (:mod:`keymoments.store.cluster`).
    It pays on a column whose values repeat (a person's events, journeys, moments);
    on one of unique values (``identifiers.identifier``, ``people.person_id``) a hash
    join with the values is as fast or faster (measured: 14 against 16-22 ms).

    >>> member_of("person_id", ["a", "b'"], "SELECT person_id FROM t")
    "(person_id IN ('a', 'b''') AND list_contains(['a', 'b'''], person_id))"
    >>> member_of("person_id", None, "SELECT person_id FROM t")
    'person_id IN (SELECT person_id FROM t)'
    >>> member_of("person_id", [], "SELECT person_id FROM t")
    'false'
    >>> member_of("person_id", ["a\\x00"], "SELECT person_id FROM t")
    'person_id IN (SELECT person_id FROM t)'
    """
    if (values is None or len(values) > MEMBER_LIST_MAX
            or any(isinstance(v, str) and "\x00" in v for v in values)):  # (no NUL in SQL text)
        return f"{column} IN ({subquery})"
    if not values:
        return "false"
    items = ", ".join(literal(v) for v in values)
    return f"({column} IN ({items}) AND list_contains([{items}], {column}))"


def few_values(con, query: str) -> list | None:
    """The values of ``query`` (one column) when there are at most
    :data:`MEMBER_LIST_MAX` of them, else None: the ``values`` of :func:`member_of`.

    >>> import duckdb
    >>> few_values(duckdb.connect(), "SELECT * FROM range(3)")
    [0, 1, 2]
    >>> few_values(duckdb.connect(), f"SELECT * FROM range({MEMBER_LIST_MAX + 1})") is None
    True
    """
    rows = con.execute(f"{query} LIMIT {MEMBER_LIST_MAX + 1}").fetchall()
    return [r[0] for r in rows] if len(rows) <= MEMBER_LIST_MAX else None


@contextmanager
def registered(con, name: str, table) -> Iterator[str]:
    """``table`` (Arrow, pandas) readable in SQL as ``name`` while the block runs.

    (Not DuckDB's replacement scans of Python variables: Ibis turns them off on the
    connection it shares.)

    >>> import duckdb, pyarrow as pa
    >>> con = duckdb.connect()
    >>> with registered(con, "_t", pa.table({"a": [1, 2]})) as t:
    ...     con.execute(f"SELECT sum(a) FROM {t}").fetchone()
    (3,)
    """
    con.register(name, table)
    try:
        yield name
    finally:
        con.unregister(name)


def rollback(con) -> None:
    """Roll back the open transaction, after an error inside it. A ``COMMIT`` that
    failed (a full disk) has ended the transaction already: a ``ROLLBACK`` then would
    raise an error of its own ("no transaction is active") in place of the one that
    says what went wrong, so that one is let through.

    >>> import duckdb
    >>> con = duckdb.connect()
    >>> rollback(con)  # (no transaction: nothing to do, no error)
    """
    import duckdb

    try:
        con.execute("ROLLBACK")
    except duckdb.TransactionException:
        pass
