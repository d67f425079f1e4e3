"""Redaction: personal data removed from free text before it is stored or analysed.

Emails, card numbers (13-19 digits that pass the Luhn check), phone numbers
(7-15 digits with optional ``+``, spaces, dots, dashes and brackets), IBANs and
identity numbers (Brazilian CPF/CNPJ, US SSN, and any other run of 6+ digits
that is not a date or an amount) are replaced by a placeholder naming the kind,
so a reason or a theme term never shows them and the text stays readable:

>>> redact("Me liga no (11) 98765-4321 ou manda email para ana.silva@gmail.com")
'Me liga no [phone] ou manda email para [email]'
>>> redact("card 4111 1111 1111 1111, CPF 123.456.789-09, order 2 items for 39.90")
'card [card], CPF [id], order 2 items for 39.90'
>>> redact("delivered 12/03/2024, ref 00123456") == 'delivered 12/03/2024, ref [id]'
True

The same patterns as an engine expression (:func:`redact_expr`) let SQL pipelines
redact where the data lives (DuckDB and Spark both have ``regexp_replace``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # not at run time: ibis takes ~0.5 s to import, and every load redacts
    import ibis.expr.types as ir

__all__ = ["redact", "redact_texts", "redact_expr", "redact_table_column", "CANDIDATE_PATTERN",
           "REDACTION_KINDS"]

# bounded parts (an address's local part has at most 64 characters, a domain label 63):
# unbounded, a long run of letters without an @ took quadratic time (a 140,000-character
# comment: 105 s in Python's backtracking engine)
_EMAIL = re.compile(r"[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})+")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
_CPF_CNPJ = re.compile(r"\b\d{3}\.\d{3}\.\d{3}-\d{2}\b|\b\d{2}\.\d{3}\.\d{3}/\d{4}-\d{2}\b")
_SSN = re.compile(r"\b\d{3}-\d{2}-\d{4}\b")
_CARDISH = re.compile(r"(?<![\d.,])(?:\d[ -]?){12,18}\d(?!\d|[.,]\d)")
_PHONE = re.compile(r"(?<![\w.,/])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d(?:[ .-]?\d){6,13}(?!\w|/|[.,]\d)")
_DATE = re.compile(r"\b(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})"
                   r"(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?\b")
_LONG_ID = re.compile(r"(?<![\d.,/])\d{6,}(?!\d|[.,/]\d)")

#: The placeholders :func:`redact` writes, in the order the patterns apply.
REDACTION_KINDS = ("email", "iban", "id", "card", "phone")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group(0))
    return "[card]" if 13 <= len(digits) <= 19 and _luhn(digits) else m.group(0)


def _phone(m: re.Match[str]) -> str:
    s = m.group(0)
    digits = re.sub(r"\D", "", s)
    # a phone number has a separator, a bracket or a + (a bare run is an id)
    if s.startswith("+") or "(" in s or re.search(r"\d[ .-]\d", s):
        return "[phone]" if 7 <= len(digits) <= 15 else s
    return s


def redact(text: str | None) -> str | None:
    """``text`` with emails, IBANs, identity numbers, cards and phones replaced."""
    if not text:
        return text
    dates: list[str] = []

    def keep(m: re.Match[str]) -> str:
        dates.append(m.group(0))
        return f"\x00{len(dates) - 1}\x00"

    text = _EMAIL.sub("[email]", text)
    text = _DATE.sub(keep, text)
    text = _IBAN.sub("[iban]", text)
    text = _CPF_CNPJ.sub("[id]", text)
    text = _SSN.sub("[id]", text)
    text = _CARDISH.sub(_card, text)
    text = _PHONE.sub(_phone, text)
    text = _LONG_ID.sub("[id]", text)
    return re.sub("\x00(\\d+)\x00", lambda m: dates[int(m.group(1))], text)


def redact_texts(texts: Iterable[str | None]) -> list[str | None]:
    """:func:`redact` over many texts.

    >>> redact_texts(["mail me: a@b.co", None])
    ['mail me: [email]', None]
    """
    return [redact(t) for t in texts]


def redact_expr(text: ir.StringValue) -> ir.StringValue:
    """A portable column expression that removes emails, long digit runs
    (cards, ids) and separated phone numbers; coarser than :func:`redact` (no
    Luhn check), for use inside engine queries such as valence reasons.

    >>> import ibis
    >>> t = ibis.memtable({"x": ["call +55 11 98765-4321 or x@y.com", "2 items"]})
    >>> t.select(r=redact_expr(t.x)).to_pyarrow().column("r").to_pylist()
    ['call [phone] or [email]', '2 items']
    """
    t = text.re_replace(r"[\w.+-]+@[\w-]+(\.[\w-]+)+", "[email]")
    t = t.re_replace(r"\+?(\(?\d{1,4}\)?[ .-]?)?\d{2,5}[ .-]\d{3,5}([ .-]?\d{2,5})+", "[phone]")
    return t.re_replace(r"\d{6,}", "[id]")


#: A cheap engine-side test for text that may hold something to redact (an ``@``, or
#: six or more digits with separators between them); only such texts go through
#: :func:`redact`, so a load of clean comments costs one scan.
CANDIDATE_PATTERN = r"@|[0-9][0-9 ().+/-]{4,}[0-9]"


def redact_table_column(con, table: str, column: str = "text") -> int:
    """Redact ``column`` of DuckDB ``table`` in place; return how many distinct
    values changed.

    The candidates are found by :data:`CANDIDATE_PATTERN` in SQL, redacted once per
    distinct value in Python (the Luhn check for cards has no regex form) and
    written back with one ``UPDATE ... FROM`` join.

    >>> import duckdb
    >>> con = duckdb.connect()
    >>> _ = con.execute("CREATE TABLE t AS SELECT * FROM (VALUES "
    ...     "('mail ana@x.com'), ('chegou atrasado'), (NULL), ('mail ana@x.com')) v(text)")
    >>> redact_table_column(con, "t")
    1
    >>> sorted(r[0] or "" for r in con.execute("SELECT text FROM t").fetchall())
    ['', 'chegou atrasado', 'mail [email]', 'mail [email]']
    """
    import pyarrow as pa

    from ..sql import ident, registered

    t, c = ident(table), ident(column)
    values = [v for (v,) in con.execute(
        f"SELECT DISTINCT {c} FROM {t} WHERE regexp_matches({c}, ?)",
        [CANDIDATE_PATTERN]).fetchall()]
    pairs = [(v, r) for v in values if (r := redact(v)) != v]
    if not pairs:
        return 0
    changes = pa.table({"original": [p[0] for p in pairs], "redacted": [p[1] for p in pairs]})
    with registered(con, "_km_redactions", changes):
        con.execute(f"UPDATE {t} SET {c} = r.redacted FROM _km_redactions r "
                    f"WHERE {t}.{c} = r.original")
    return len(pairs)
