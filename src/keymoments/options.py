"""Command-line options shared by every command that lists rows.

>>> from click.testing import CliRunner
>>> @click.command()
... @limit_option(20)
... def rows(limit):
...     click.echo(repr(limit))
>>> CliRunner().invoke(rows, ["--limit", "0"]).output
'0\\n'
>>> print(CliRunner().invoke(rows, ["--limit", "-1"]).output.splitlines()[-1])
Error: Invalid value for '--limit': -1 is not in the range x>=0.
"""

from __future__ import annotations

import click

__all__ = ["limit_option", "sql_limit"]


def limit_option(default: int, what: str = "Rows to show"):
    """``--limit N``: how many rows a listing shows, 0 for all; a negative count is a
    usage error (it reached SQL's LIMIT as an internal error)."""
    return click.option("--limit", default=default, show_default=True,
                        type=click.IntRange(min=0), help=f"{what} (0: all).")


def sql_limit(limit: int) -> int | None:
    """The LIMIT to read a listing of ``limit`` rows with: one more, to tell whether
    there are more to say so; None (no LIMIT) for 0, all.

    >>> sql_limit(50), sql_limit(0)
    (51, None)
    """
    return limit + 1 if limit else None
