r"""Quoting for the little SQL keymoments generates. Every name and value that comes
from a user (config, file headers, identifiers) goes through these, never through
string formatting alone.

>>> print(ident('a"b'), ident("order id"))
"a""b" "order id"
>>> literal("O'Brien")
"'O''Brien'"
>>> literal(None), literal(3), literal(2.5), literal(True)
('NULL', '3', '2.5', 'TRUE')
"""

from __future__ import annotations

import math

__all__ = ["ident", "literal"]


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
    if "\x00" in text:
        raise ValueError("a value cannot contain a NUL character")
    return "'" + text.replace("'", "''") + "'"
