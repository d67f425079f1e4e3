"""Compile a source mapping (:class:`~keymoments.config.models.SourceSpec`) into one
SQL query over the staged raw rows that yields canonical events, one row per
(source row, event slot), each with the first validation error of that slot.

The query is plain, quoted SQL over DuckDB; every user-given name and constant
passes through :func:`keymoments.sql.ident` / :func:`keymoments.sql.literal`.

>>> from keymoments.config.models import SourceSpec
>>> spec = SourceSpec.model_validate({"path": "x.csv", "identifiers": {"customer_id": "cid"},
...     "event_type": {"value": "order_placed"}, "ts": "when"})
>>> sql = compile_source(spec, "orders", {"cid": "VARCHAR", "when": "VARCHAR"}, "raw")
>>> "try_cast" in sql.lower() and '"cid"' in sql
True
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from pydantic import BaseModel

from ..config.base import LANGUAGE_TAG
from ..config.models import (
    STAGES,
    EventSpec,
    ExpectationSpec,
    FieldSpec,
    IdentityConfig,
    RatingSpec,
    SourceSpec,
    TimestampSpec,
)
from ..errors import ConfigError, SourceError
from ..sql import ident, literal
from .readers import FILE_COLUMN, LINE_COLUMN

__all__ = ["compile_source", "PHONE_TABLE", "CANONICAL_COLUMNS", "phone_columns",
           "EVENT_ID_SCHEMES", "LATEST_EVENT_ID_SCHEME", "KEY_COLUMN", "keyed_event_id"]

PHONE_TABLE = "_km_phone"
_SEP = "chr(31)"
_TEXT_TYPES = ("VARCHAR", "JSON")
_TIME_TYPES = ("TIMESTAMP", "DATE", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S")

#: How an event id is computed when the source declares no ``key``: an md5 over the
#: source name and the event's content. Scheme 1 hashes the maps cast to text
#: (``CAST(identifiers AS VARCHAR)``, ...) and the anchor; scheme 2 hashes the same
#: values as ``field.key=value`` entries built from the scalars the maps are made of
#: (a third cheaper: 0.67 against 1.00 CPU s for 1M ids). A workspace keeps the
#: scheme of its first load (key ``event_id_scheme`` in ``km_meta``), so re-loading a
#: file never doubles its events. Scheme 3 hashes as scheme 2 and reads a whole number
#: in a floating-point column (``7.0``: pandas writes an integer column with a missing
#: value as floats) as the integer's text (``7``) wherever a column is read as text
#: (identifiers, references, keys, types): under scheme 2 it was ``7.0``, another
#: customer than the ``7`` of a CSV export, another order. The text is part of the
#: ids, hence a scheme of its own. Scheme 3 also hashes a row of a ``_line``-keyed
#: source by its content and its file and line (scheme 2: the line alone, so a row
#: moved to another line took the id of the row that had been there).
#: Scheme 4 hashes as scheme 3 and reads a decimal column's value (Parquet's
#: ``DECIMAL(10,2)``, a database export's ``NUMBER``) without its trailing zeros
#: (``7.00`` as ``7``, ``7.50`` as ``7.5``): under scheme 3 it was ``7.00``, another
#: customer than the ``7`` of a CSV export. It also ends a whole-day promise written
#: with an offset at the next midnight at that offset (under scheme 3, at midnight in
#: the source's zone), reads ' utc' and ' gmt' in any case as UTC (the wall time was
#: read in the source's zone), and quarantines a zone abbreviation (``BST`` was read as
#: Bangladesh's): the time is part of the id too.
EVENT_ID_SCHEMES = {1: "md5 over the maps cast to text", 2: "md5 over field.key=value entries",
                    3: "as 2, whole floating-point numbers read as integers; _line keys "
                       "hash the content too",
                    4: "as 3, decimals read without trailing zeros; a whole-day promise "
                       "with an offset ends at midnight at that offset; ' utc' is UTC, zone "
                       "abbreviations are quarantined"}
LATEST_EVENT_ID_SCHEME = 4
#: the largest whole number a double holds exactly (2**53): read as an integer up to it
_EXACT_INTEGER = 9007199254740992

#: the column of a keyed source's compiled query holding the row's key (its key
#: columns' text joined): the row's events are the ids :func:`keyed_event_id` gives
#: it, one per event slot and event type
KEY_COLUMN = "_km_key"


def keyed_event_id(source: str, slot: str, event_type: str, key: str) -> str:
    """SQL: the id of an event of a source with a ``key`` (``source``: the source's
    name as a literal; the others SQL expressions): a hash of the source, the event's
    slot (its index in ``events``), its type and the row's key. The same for every
    version of the row, so a re-loaded row finds its stored events.

    >>> keyed_event_id("'s'", "0", "event_type", "_km_key")
    "md5(concat_ws(chr(31), 's', 0, event_type, _km_key))"
    """
    return f"md5(concat_ws({_SEP}, {source}, {slot}, {event_type}, {key}))"

#: Columns of a compiled query, in order, before the bookkeeping ones.
CANONICAL_COLUMNS = (
    "event_id", "ts", "anchor", "identifiers", "channel", "event_type", "stage", "refs",
    "agent", "language", "rating", "rating_scale", "rating_min", "rating_max", "text",
    "measures", "expected_ts", "expected_value", "expectation_kind", "attributes",
)


#: the instants the store and its readers (Python, Arrow, Spark) can all hold: the
#: years 1 to 9999, as microseconds since 1970
_FIRST_US, _LAST_US = -62_135_596_800_000_000, 253_402_300_799_999_999
#: 1000-01-01 UTC in microseconds since 1970
_YEAR_1000_US = -30_610_224_000_000_000
#: 1971-01-01 UTC in microseconds since 1970: an epoch time before it is no customer
#: event's (a 0 placeholder, or seconds read as milliseconds: 1709287200 is 1970-01-20)
_EPOCH_FLOOR_US = 31_536_000_000_000


#: the end of a time before its zone: seconds (or minutes), maybe a fraction, a space
_TIME_END = ":[0-9][0-9]([.][0-9]*)? ?"
#: a UTC offset no place has, which DuckDB reads all the same ('+25:00' as a day
#: earlier, '+05:75' as +06:15): more than 14 hours from UTC, or 60 minutes or seconds
#: or more
_BAD_OFFSET = ("[+-]((1[5-9]|[2-9][0-9])(:?[0-9][0-9])?(:[0-9][0-9])?"
               "|14:?(0[1-9]|[1-9][0-9])(:[0-9][0-9])?|14:?00:(0[1-9]|[1-9][0-9])"
               "|[0-9][0-9]:?[6-9][0-9](:[0-9][0-9])?|[0-9][0-9]:?[0-9][0-9]:[6-9][0-9])")
_IMPOSSIBLE_OFFSET = ("the UTC offset is impossible (no place is more than 14 hours from UTC, "
                      "and an hour has 60 minutes): fix the times' offsets in the export")


def _strptime_pattern(fmt: str, codes: dict[str, str]) -> str:
    """A regular expression (RE2) of the values of the strptime format ``fmt``, with
    the pattern ``codes[c]`` for a ``%c`` and any text for the other codes.

    >>> import re
    >>> pattern = _strptime_pattern("%d/%m/%Y %H:%M%z (%%)", {"z": _BAD_OFFSET})
    >>> [bool(re.fullmatch(pattern, v)) for v in ("05/01/2024 10:00+25:00 (%)",
    ...     "05/01/2024 10:00-1430 (%)", "05/01/2024 10:00+14:00 (%)", "05/01/2024 10:00+05")]
    [True, True, False, False]
    """
    out, i = [], 0
    while i < len(fmt):
        if fmt[i] == "%" and i + 1 < len(fmt):
            code = fmt[i + 1] if fmt[i + 1] != "-" else fmt[i + 1:i + 3]  # %-d: unpadded
            out.append("%" if code == "%" else codes.get(code, ".*"))
            i += 1 + len(code)
        else:
            out.append("\\" + fmt[i] if fmt[i] in "\\.^$|?*+()[]{}" else fmt[i])
            i += 1
    return "".join(out)


def _out_of_range(micros: str, field: str, value: str) -> _Check:
    """A time (``micros``: its microseconds since 1970) DuckDB reads but nothing after
    it can (year 10000, 1 BC): it would load, then fail every build."""
    return _Check(f"{micros} NOT BETWEEN {_FIRST_US} AND {_LAST_US}", field, value,
                  "a time outside the years 1 to 9999 is not when something happened (a "
                  "placeholder, or epoch milliseconds read as seconds: check 'unit')")


@dataclass
class _Check:
    cond: str
    field: str
    value: str
    reason: str
    #: a SQL expression for the reason when it quotes the row's value (else ``reason``)
    reason_sql: str | None = None


class _Slot:
    """Expressions of one event slot, with the checks that make a row invalid."""

    def __init__(self, compiler: _Compiler, index: int, spec: EventSpec) -> None:
        self.c, self.index, self.spec = compiler, index, spec
        self.checks: list[_Check] = []
        # scheme 2 event id: each map entry as 'field.key=' || value (NULL, hence
        # skipped by concat_ws, when the value is missing, as in the map itself)
        self.entries: list[str] = []

    def pick(self, name: str):
        own = getattr(self.spec, name, None)
        if isinstance(own, dict):
            return {**getattr(self.c.source, name), **own}
        return own if own is not None else getattr(self.c.source, name, None)

    # ---------------------------------------------------------------- fields
    def text(self, spec: FieldSpec | None) -> str:
        if spec is None:
            return "NULL::VARCHAR"
        if spec.column is not None:
            expr = self.c.column_text(spec.column)
        elif spec.value is not None:
            expr = literal(str(spec.value).lower() if isinstance(spec.value, bool) else str(spec.value))
        else:
            expr = "NULL::VARCHAR"
        if spec.map:
            whens = " ".join(
                f"WHEN {literal(k)} THEN {literal(None if v is None else str(v))}"
                for k, v in spec.map.items()
            )
            expr = f"(CASE {expr} {whens} ELSE {expr} END)"
        if spec.default is not None:
            expr = f"coalesce({expr}, {literal(str(spec.default))})"
        return expr

    def number(self, spec: FieldSpec | None, field: str) -> str:
        if spec is None:
            return "NULL::DOUBLE"
        # NaN and infinity are not numbers here (engines disagree on NaN): a typed
        # column's NaN is missing, a text 'nan' is quarantined as not a number
        if spec.column is not None and self.c.is_nested(spec.column):
            where = ".".join(str(p) for p in field_naming(self.c.source, spec.column) or ())
            raise ConfigError(
                f"column {spec.column!r} holds {self.c.types[spec.column]} values, not one "
                "number per row: map a column of numbers (or one element of it, through a "
                "view of the export)",
                key=f"sources.{self.c.name}" + (f".{where}" if where else ""))
        if spec.column is not None and not spec.map and self.c.is_numeric(spec.column):
            return _finite(f"CAST({ident(spec.column)} AS DOUBLE)")
        text = self.text(spec)
        decimal = self.c.source.decimal
        num = _finite(_number(text, decimal))
        where = _in_column(spec)
        if decimal is None:
            hint = (f"'{where}: its comma may group thousands or be the decimal mark; set "
                    "the source's decimal to '.' (the comma groups thousands: 1,234.5) or "
                    "',' (the comma is the decimal mark: 1.234,5)")
            self.checks.append(_Check(_unclear_decimal(text), field, text, hint,
                                      reason_sql=f"{literal(chr(39))} || {text} || "
                                                 f"{literal(hint)}"))
        mark = "" if decimal is None else f" with the decimal mark {decimal!r}"
        self.checks.append(_Check(f"{text} IS NOT NULL AND {num} IS NULL", field, text,
                                  f"not a number{where}{mark}"))
        return num

    def zone(self, spec: TimestampSpec) -> str:
        """The time zone of a naive time of ``spec`` (its own, the source's, or UTC)."""
        base = self.c.source.timestamps
        return spec.timezone or (base.timezone if base else None) or "UTC"

    def timestamp(self, spec: TimestampSpec, field: str) -> tuple[str, str]:
        """(parsed TIMESTAMPTZ expression, presence expression)."""
        base = self.c.source.timestamps
        fmt = spec.format or (base.format if base else None)
        tz = self.zone(spec)
        unit = spec.unit or (base.unit if base else None)
        col_type = self.c.types.get(spec.column or "", "VARCHAR")
        instant = col_type.startswith("TIMESTAMP WITH")  # an instant: no zone applies
        if spec.column is not None and not spec.map and (instant or col_type in _TIME_TYPES):
            col = ident(spec.column)
            if instant:
                parsed = _instant(col)
            else:
                parsed = _at_zone(tz, f"CAST({col} AS TIMESTAMP)")
                self._no_gap(tz, f"CAST({col} AS TIMESTAMP)", parsed, field,
                             f"CAST({col} AS VARCHAR)")
            self.checks.append(_Check(
                f"{col} IS NOT NULL AND {parsed} IS NULL", field, f"CAST({col} AS VARCHAR)",
                "an infinite time is not when something happened"))
            # an instant's own microseconds: no second conversion per row
            self.checks.append(_out_of_range(f"epoch_us({col})" if instant else
                                             f"epoch_us({parsed})", field,
                                             f"CAST({col} AS VARCHAR)"))
            return parsed, f"{col} IS NOT NULL"
        text = self.text(spec)
        where = _in_column(spec)
        checks: list[_Check] = []  # of a value read, but wrongly
        if unit:
            scale = 1000.0 if unit == "ms" else 1.0
            # try(): an epoch out of range (1e20, inf) is a bad value, not a failed load
            parsed = f"try(to_timestamp({_cast(text)} / {scale}))"
            expected = f"epoch {'milliseconds' if unit == 'ms' else 'seconds'}{where}"
            why = ("epoch seconds read as milliseconds, or a placeholder (0)?" if unit == "ms"
                   else "a placeholder (0)? fix the export, or")
            checks.append(_Check(
                f"epoch_us({parsed}) < {_EPOCH_FLOOR_US}", field, text,
                f"an epoch time before 1971{where} is no customer event's: {why} check "
                "'unit' (s: seconds, ms: milliseconds)"))
        elif fmt:
            if "%z" in fmt or "%Z" in fmt:
                parsed = f"CAST(try_strptime({text}, {literal(fmt)}) AS TIMESTAMPTZ)"
                if "%z" in fmt:  # %z reads any two digits of hours and of minutes
                    pattern = _strptime_pattern(fmt, {"z": _BAD_OFFSET})
                    checks.append(_Check(f"regexp_full_match({text}, {literal(pattern)})",
                                         field, text, _IMPOSSIBLE_OFFSET))
            else:
                naive = f"try_strptime({text}, {literal(fmt)})"
                parsed = _at_zone(tz, naive)
                self._no_gap(tz, naive, parsed, field, text)
            if "%Y" in fmt:
                # %Y reads one to four digits ('24' as the year 24): a time before the
                # year 1000 whose value does not have four digits where %Y stands had a
                # short year (one written '0024' stays)
                four = _strptime_pattern(fmt, {"Y": "[0-9]{4}"})
                checks.append(_Check(
                    f"(CASE WHEN epoch_us({parsed}) < {_YEAR_1000_US} THEN NOT "
                    f"regexp_full_match({text}, {literal(four)}) ELSE false END)", field, text,
                    f"a year of fewer than four digits{where} is read by %Y as that year "
                    "(24, not 2024): use %y in 'format' for two-digit years"))
            expected = f"format {fmt!r}{where}"
        else:
            # a time with a zone (Z, UTC, GMT, +02:00, +00:19:32 as PostgreSQL writes
            # local mean time) keeps it; the TIMESTAMP cast would drop it silently. The
            # zone must follow a time, or the day of a plain date ('2024-01-15') would
            # read as an offset of -15. Named zones (CET, Europe/Paris) only parse as
            # TIMESTAMPTZ, hence the fallback.
            offset = _has_offset(text, any_case=self.c.event_id_scheme >= 4)
            zoned = f"regexp_replace({text}, ' ({_HMS})$', '\\1')"
            parsed = (f"(CASE WHEN {offset} THEN TRY_CAST({zoned} AS TIMESTAMPTZ) "
                      f"ELSE coalesce({_at_zone(tz, f'TRY_CAST({text} AS TIMESTAMP)')}, "
                      f"{_instant(f'TRY_CAST({text} AS TIMESTAMPTZ)')}) END)")
            self._no_gap(tz, f"TRY_CAST({text} AS TIMESTAMP)", parsed, field, text,
                         unless=offset)
            expected = (f"ISO 8601{where} (set 'format' for other layouts, "
                        f"e.g. '%d/%m/%Y %H:%M')")
            # DuckDB reads '24-01-05' as the year 24, and '+25:00' as an offset. Each
            # regex runs only where a cheap test cannot rule it out (it would cost about
            # as much as the parsing): a value starting with four digits has a year of
            # four; an offset starts with '+', or with a '-' after a date and a time (at
            # least 'Y-M-D H:MM', so from the 11th character on)
            short_year = (f"(CASE WHEN {text} GLOB '[0-9][0-9][0-9][0-9]*' THEN false "
                          f"ELSE regexp_matches({text}, '^[0-9]{{1,3}}[^0-9]') END)")
            checks.append(_Check(short_year, field, text,
                                 f"a year of fewer than four digits{where} is read as that "
                                 "year (24, not 2024): set 'format' (e.g. '%y-%m-%d' for "
                                 "two-digit years)"))
            # an abbreviation after the time (BST, IST, CST, CET, EST5EDT) names no one
            # offset, and the SQL reads it through zone names ('BST': Bangladesh)
            if self.c.event_id_scheme >= 4:  # (the times read are part of the ids)
                checks.append(_Check(
                    f"(CASE WHEN {text} GLOB '*[A-Za-z][A-Za-z]' THEN "
                    f"regexp_matches({text}, {literal(_TIME_END + '[A-Za-z][A-Za-z0-9]*$')}) "
                    f"AND NOT regexp_matches({text}, '(?i)[^a-z](utc|gmt)$') ELSE false END)",
                    field, text,
                    f"a time zone abbreviation{where} names no single offset (BST is British "
                    "Summer Time and Bangladesh Standard Time): write the offset (+01:00) or a "
                    "zone name (Europe/London), or leave it out and set the source's timezone"))
            checks.append(_Check(
                f"(CASE WHEN contains({text}, '+') OR contains(substr({text}, 9), '-') THEN "
                f"regexp_matches({text}, {literal(_TIME_END + _BAD_OFFSET + '$')}) "
                "ELSE false END)", field, text, _IMPOSSIBLE_OFFSET))
        self.checks.append(_Check(
            f"{text} IS NOT NULL AND ({parsed} IS NULL OR lower({text}) = 'epoch')", field, text,
            f"cannot read the value as a timestamp; expected {expected}"))
        # (after the check above: a value they catch has been read)
        self.checks.extend(checks)
        self.checks.append(_out_of_range(f"epoch_us({parsed})", field, text))
        return parsed, f"{text} IS NOT NULL"

    def end_of_day(self, spec: TimestampSpec, parsed: str) -> str:
        """The end of the day ``parsed`` (read by :meth:`timestamp` from ``spec``)
        falls on: the next midnight in the value's own offset when its text has one
        (``2026-06-15T00:00:00+02:00``: 2026-06-15T22:00Z), else in its zone. (Under
        event id schemes before 4 always in its zone: the promise is part of the id.)"""
        in_zone = _end_of_day(parsed, self.zone(spec))
        if self.c.event_id_scheme < 4 or not self._reads_iso(spec):
            return in_zone  # (typed times, epoch numbers, a 'format': the zone's day)
        text = self.text(spec)
        # the time as written, its offset dropped (the cast drops '+02:00' and ' UTC' but
        # reads no ' GMT')
        bare = f"regexp_replace({text}, ' ?([Zz]|[Uu][Tt][Cc]|[Gg][Mm][Tt])$', '')"
        wall = f"TRY_CAST({bare} AS TIMESTAMP)"
        own = f"{parsed} + ((date_trunc('day', {wall}) + INTERVAL 1 DAY) - {wall})"
        offset = _has_offset(text, any_case=True)
        return f"(CASE WHEN {offset} AND {wall} IS NOT NULL THEN {own} ELSE {in_zone} END)"

    def _reads_iso(self, spec: TimestampSpec) -> bool:
        """Whether :meth:`timestamp` reads ``spec``'s values as ISO 8601 text."""
        base = self.c.source.timestamps
        if spec.format or spec.unit or (base and (base.format or base.unit)):
            return False
        col_type = self.c.types.get(spec.column or "", "VARCHAR")
        typed = col_type.startswith("TIMESTAMP WITH") or col_type in _TIME_TYPES
        return not (spec.column is not None and not spec.map and typed)

    def _no_gap(self, tz: str, naive: str, parsed: str, field: str, value: str,
                unless: str = "FALSE") -> None:
        """Quarantine a wall time that does not exist in ``tz`` (the hour skipped when
        clocks go forward): read as the hour after, it would be the same instant as a
        real event of then, and one of the two lost as a duplicate. (A time the clocks
        repeat, going back, is read as the later one, in standard time.)"""
        if tz == "UTC":
            return
        # a midnight the clocks skip (zones that go forward at midnight: Cairo, São
        # Paulo until 2019) is a date: the day starts at the first hour it has
        self.checks.append(_Check(
            f"NOT ({unless}) AND {naive} IS NOT NULL AND {parsed} IS NOT NULL "
            f"AND timezone({literal(tz)}, {parsed}) <> {naive} "
            f"AND {naive} <> date_trunc('day', {naive})", field, value,
            f"this wall time does not exist in {tz} (the clocks skipped it); fix the "
            "export, or give the times with their offset"))

    def string_map(self, specs: dict[str, FieldSpec], field: str) -> str:
        if not specs:
            return "MAP([]::VARCHAR[], []::VARCHAR[])"
        values = [(k, self.text(s)) for k, s in sorted(specs.items())]
        self.entries.extend(f"{literal(f'{field}.{k}=')} || {v}" for k, v in values)
        return _map(values)

    def number_map(self, specs: dict[str, FieldSpec], field: str) -> str:
        if not specs:
            return "MAP([]::VARCHAR[], []::DOUBLE[])"
        values = [(k, self.number(s, f"{field}.{k}")) for k, s in sorted(specs.items())]
        self.entries.extend(f"{literal(f'{field}.{k}=')} || CAST({v} AS VARCHAR)" for k, v in values)
        return _map(values, "DOUBLE")

    def identifiers(self) -> tuple[str, str]:
        """(map expression, anchor expression). Every identifier read from a column no
        record has is a config error (no row could load), as a missing CSV column is."""
        specs = list(self.c.source.identifiers.values())
        if all(self.c.absent(s) for s in specs):
            names = ", ".join(repr(s.column) for s in specs)
            which = (f"the identifier column {names}" if len(specs) == 1
                     else f"any identifier column ({names})")
            raise self.c.no_column(specs[0].column,
                                   f"no record has {which}, so no row has an identifier")
        values = []
        for kind, spec in self.c.source.identifiers.items():
            values.append((kind, self.c.identifier(self, kind, self.text(spec))))
        self.entries.extend(f"{literal(f'identifiers.{k}=')} || {v}" for k, v in values)
        idmap = _map(values)
        anchor = "coalesce(" + ", ".join(f"{literal(k + ':')} || {v}" for k, v in values) + ")"
        cols = ", ".join(s.column or repr(s.value) for s in self.c.source.identifiers.values())
        self.checks.append(_Check(f"{anchor} IS NULL", "identifiers", "NULL",
                                  f"no identifier: every identifier ({cols}) is empty"))
        return idmap, anchor

    # ----------------------------------------------------------------- query
    def select(self, input_table: str) -> str:
        spec = self.spec
        ts, present = self.timestamp(spec.ts, "ts")
        if spec.when_missing == "quarantine":
            self.checks.insert(0, _Check(f"NOT ({present})", "ts", "NULL",
                                         f"no timestamp in {spec.ts.column or 'ts'}"))
            present = "TRUE"
        event_type = self.text(spec.event_type)
        if spec.when_missing == "quarantine":
            self.checks.append(_Check(f"{event_type} IS NULL", "event_type", "NULL",
                                      "no event type"))
        else:  # a wide-table event whose type maps to nothing is simply not there
            present = f"({present}) AND {event_type} IS NOT NULL"
        idmap, anchor = self.identifiers()
        stage = self.text(self.pick("stage"))
        stages = ", ".join(literal(s) for s in STAGES)
        self.checks.append(_Check(f"{stage} IS NOT NULL AND lower({stage}) NOT IN ({stages})",
                                  "stage", stage, f"unknown stage; use one of {', '.join(STAGES)}"))
        rating_spec: RatingSpec | None = self.pick("rating")
        if rating_spec is not None:
            lo, hi = rating_spec.bounds()
            rating = self.number(rating_spec, "rating")
            self.checks.append(_Check(
                f"{rating} IS NOT NULL AND ({rating} < {lo} OR {rating} > {hi})", "rating",
                self.text(rating_spec),  # the value as written, not as a DOUBLE
                f"rating outside the {rating_spec.scale} scale ({lo:g} to {hi:g})"
                f"{_in_column(rating_spec)}"))
            scale = (f"CASE WHEN {rating} IS NULL THEN NULL ELSE {literal(rating_spec.scale)} END",
                     f"CASE WHEN {rating} IS NULL THEN NULL ELSE {lo} END",
                     f"CASE WHEN {rating} IS NULL THEN NULL ELSE {hi} END")
        else:
            rating, scale = "NULL::DOUBLE", ("NULL::VARCHAR", "NULL::DOUBLE", "NULL::DOUBLE")
        expectation: ExpectationSpec | None = self.pick("expectation")
        exp_ts, exp_value, exp_kind = "NULL::TIMESTAMPTZ", "NULL::DOUBLE", "NULL::VARCHAR"
        if expectation is not None:
            if expectation.ts is not None:
                exp_ts, _ = self.timestamp(expectation.ts, "expectation.ts")
                if expectation.whole_day:
                    exp_ts = self.end_of_day(expectation.ts, exp_ts)
            if expectation.value is not None:
                exp_value = self.number(expectation.value, "expectation.value")
            exp_kind = (f"CASE WHEN {exp_ts} IS NULL AND {exp_value} IS NULL THEN NULL "
                        f"ELSE {literal(expectation.kind)} END")
        language = self.text(self.pick("language"))
        self.checks.append(_Check(
            f"{language} IS NOT NULL AND NOT "
            f"regexp_full_match({language}, {literal(LANGUAGE_TAG)})",
            "language", language, "not a language code; use ISO 639, such as en or pt-BR"))
        channel = self.text(self.pick("channel"))
        # (a channel is a label the analyses write into their queries; other text may hold it)
        self.checks.append(_Check(
            f"contains({channel}, chr(0))", "channel", channel,
            "holds a NUL character (U+0000), a sign of a corrupt export: remove it in the file"))
        cols = {
            "ts": ts,
            "anchor": anchor,
            "identifiers": idmap,
            "channel": channel,
            "event_type": event_type,
            "stage": f"lower({stage})",
            "refs": self.string_map(self.pick("refs"), "refs"),
            "agent": self.text(self.pick("agent")),
            "language": f"lower({language})",
            "rating": rating,
            "rating_scale": scale[0],
            "rating_min": scale[1],
            "rating_max": scale[2],
            "text": self.text(self.pick("text")),
            "measures": self.number_map(self.pick("measures"), "measures"),
            "expected_ts": exp_ts,
            "expected_value": exp_value,
            "expectation_kind": exp_kind,
            "attributes": self.string_map(self.pick("attributes"), "attributes"),
        }
        self._key_check()
        err = self._errors()
        inner = ",\n    ".join(f"{expr} AS {ident(name)}" for name, expr in cols.items())
        entries = "NULL::VARCHAR"
        if (self.c.event_id_scheme >= 2 and (not self.c.source.key or self._line_keyed())
                and self.entries):
            entries = f"concat_ws({_SEP}, {', '.join(self.entries)})"
        # a keyed source keeps the row's key: a re-load finds the row's stored events by it
        dropped = "_km_entries, _km_err" if self.c.source.key else "_km_key, _km_entries, _km_err"
        return (
            f"SELECT {self._event_id()} AS event_id, * EXCLUDE ({dropped}), "
            f"_km_err.f AS _km_err_field, _km_err.v AS _km_err_value, "
            f"_km_err.r AS _km_err_reason FROM (\n"
            f"  SELECT\n    {inner},\n    {self._key()} AS _km_key,\n"
            f"    {entries} AS _km_entries,\n"
            f"    {LINE_COLUMN}, {FILE_COLUMN}, {self.index} AS _km_slot,\n"
            f"    ({present}) AS _km_present,\n    {err}\n"
            f"  FROM {self.c.from_clause(input_table)}\n)"
        )

    def _key_check(self) -> None:
        """Quarantine a row whose key columns are all empty (blank or a null marker):
        such rows would share one key, and all but the first be dropped as duplicates.
        A row with some of its key columns is told apart by those (its empty ones read
        as empty text); a ``_line`` key part is never empty. First of the checks: the
        key is what the row is."""
        key = self.c.source.key or []
        if not key or "_line" in key:
            return
        values = ", ".join(f"nullif({self.c.column_text(k)}, '')" for k in key)
        names = ", ".join(repr(k) for k in key)
        what = (f"key column {names} is empty: every row needs a value there" if len(key) == 1
                else f"key columns {names} are all empty: every row needs a value in one of them")
        self.checks.insert(0, _Check(f"coalesce({values}) IS NULL", "key", "NULL",
                                     f"{what}, or drop 'key' from the source to identify rows "
                                     "by their content"))

    def _key(self) -> str:
        if not self.c.source.key:
            return "NULL::VARCHAR"
        parts = [
            f"regexp_extract({FILE_COLUMN}, '[^/\\\\]*$') || ':' || CAST({LINE_COLUMN} AS VARCHAR)"
            if k == "_line"
            else f"coalesce({self.c.column_text(k)}, '')"
            for k in self.c.source.key
        ]
        return f"concat_ws({_SEP}, {', '.join(parts)})"

    def _line_keyed(self) -> bool:
        """A key with ``_line`` under scheme 3: the id is the row's content with its
        key (file and line), so a row moved to another line (a line removed above it)
        is a new event, not the duplicate of the row that was on that line, and rows
        of two files with the same name (a glob of daily folders) stay apart."""
        return "_line" in (self.c.source.key or []) and self.c.event_id_scheme >= 3

    def _event_id(self) -> str:
        """A stable id: the source's key columns when declared, else the content
        (see :data:`EVENT_ID_SCHEMES`)."""
        src = literal(self.c.name)
        if self.c.source.key and not self._line_keyed():
            return keyed_event_id(src, str(self.index), "event_type", KEY_COLUMN)
        if self.c.event_id_scheme >= 2:
            parts = ["event_type", "CAST(epoch_us(ts) AS VARCHAR)", "channel", "agent",
                     "CAST(rating AS VARCHAR)", "text", "CAST(epoch_us(expected_ts) AS VARCHAR)",
                     "CAST(expected_value AS VARCHAR)", "language", "stage"]
            joined = ", ".join(f"coalesce({p}, '')" for p in parts)
            if self._line_keyed():
                return (f"md5(concat_ws({_SEP}, {src}, {joined}, _km_entries, {self.index}, "
                        f"{KEY_COLUMN}))")
            return f"md5(concat_ws({_SEP}, {src}, {joined}, _km_entries))"
        parts = ["event_type", "CAST(epoch_us(ts) AS VARCHAR)", "anchor",
                 "CAST(identifiers AS VARCHAR)", "channel", "agent", "CAST(rating AS VARCHAR)",
                 "text", "CAST(refs AS VARCHAR)", "CAST(measures AS VARCHAR)",
                 "CAST(epoch_us(expected_ts) AS VARCHAR)", "CAST(expected_value AS VARCHAR)",
                 "CAST(attributes AS VARCHAR)", "language", "stage"]
        joined = ", ".join(f"coalesce({p}, '')" for p in parts)
        return f"md5(concat_ws({_SEP}, {src}, {joined}))"

    def _errors(self) -> str:
        """The first failed check as one struct (field, value, reason), so each
        condition is evaluated once; the outer query unpacks it."""
        if not self.checks:
            return "NULL::STRUCT(f VARCHAR, v VARCHAR, r VARCHAR) AS _km_err"
        whens = " ".join(
            f"WHEN {ch.cond} THEN struct_pack(f := {literal(ch.field)}, "
            f"v := CAST({ch.value} AS VARCHAR), r := {ch.reason_sql or literal(ch.reason)})"
            for ch in self.checks
        )
        return f"CASE {whens} END AS _km_err"


def _map(values: list[tuple[str, str]], value_type: str = "VARCHAR") -> str:
    """A MAP of the (key, value expression) pairs whose value is not NULL.

    Up to three entries, a CASE over which values are present, each branch a struct
    of the present values cast to a MAP (~4x cheaper than ``MAP(keys, values)``,
    which checks its keys row by row; plain ``MAP(keys, values)`` where two keys
    differ only in case, which a struct cannot hold), and beyond three a list of
    structs filtered (the general form).

    >>> print(_map([("a", "x")]).replace(" ELSE ", chr(10) + " ELSE "))
    (CASE WHEN x IS NULL THEN MAP([]::VARCHAR[], []::VARCHAR[])
     ELSE CAST({'a': x} AS MAP(VARCHAR, VARCHAR)) END)
    >>> _map([("Order", "x"), ("order", "y")]).count("MAP(['Order', 'order'], [x, y])")
    1
    """
    if len(values) > 3 or any("SELECT" in v for _, v in values):  # no subquery copies
        entries = ", ".join(f"struct_pack(k := {literal(k)}, v := {v})" for k, v in values)
        return f"map_from_entries(list_filter([{entries}], _km_e -> _km_e.v IS NOT NULL))"

    def branch(rest: list[tuple[str, str]], kept: list[tuple[str, str]]) -> str:
        if not rest:
            if not kept:
                return f"MAP([]::VARCHAR[], []::{value_type}[])"
            if len({k.lower() for k, _ in kept}) < len(kept):
                keys = ", ".join(literal(k) for k, _ in kept)
                return f"MAP([{keys}], [{', '.join(v for _, v in kept)}])"
            fields = ", ".join(f"{literal(k)}: {v}" for k, v in kept)
            return f"CAST({{{fields}}} AS MAP(VARCHAR, {value_type}))"
        (key, value), tail = rest[0], rest[1:]
        return (f"(CASE WHEN {value} IS NULL THEN {branch(tail, kept)} "
                f"ELSE {branch(tail, [*kept, (key, value)])} END)")

    return branch(values, [])


#: a number written as text: a sign, digits with at most one decimal mark (a '.'
#: here: a decimal comma is made one first) and an exponent. DuckDB's cast alone also
#: reads '+-1' as -1 and '1_000' or '0_1' as 1000 or 1, so a value is cast only once
#: it has this form
_NUMBER = "[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]+)?"
#: a number whose commas group thousands (1,234,567.5), and one whose dots do
#: (1.234.567,5): the only places a thousands separator is read
_COMMA_GROUPS = "[+-]?[0-9]{1,3}(,[0-9]{3})+([.][0-9]+)?"
_DOT_GROUPS = "[+-]?[0-9]{1,3}([.][0-9]{3})+(,[0-9]+)?"


def _decimal_scale(column_type: str) -> int:
    """The scale of a ``DECIMAL(p,s)`` column type, 0 for any other type.

    >>> _decimal_scale("DECIMAL(10,2)"), _decimal_scale("DECIMAL(18,0)"), _decimal_scale("DOUBLE")
    (2, 0, 0)
    """
    found = re.fullmatch(r"DECIMAL\(\d+,\s*(\d+)\)", column_type)
    return int(found.group(1)) if found else 0


def _number(text: str, decimal: str | None) -> str:
    """The DOUBLE a text reads as with the source's decimal mark (NULL: not a number).

    Unset, a comma is the decimal mark (``12,5``); a value that may use it to group
    thousands is quarantined by :func:`_unclear_decimal`. A value without a comma (most
    of them) is read as it is: this runs on every number of every row.

    >>> import duckdb
    >>> def read(value, decimal):
    ...     return duckdb.sql(f"SELECT {_number(literal(value), decimal)}").fetchone()[0]
    >>> [read(v, None) for v in ("12.5", "12,5", "-3", "1e3", "1.2.3", "+-1", "1_000", "0_1")]
    [12.5, 12.5, -3.0, 1000.0, None, None, None, None]
    >>> [read(v, ".") for v in ("1,234", "1,234,567.5", "12,5", "1,23,456", "12.5", "+-1")]
    [1234.0, 1234567.5, None, None, 12.5, None]
    >>> [read(v, ",") for v in ("1.234,56", "-1.234", "12,5", "12.5", "1.2345", "1_0,5")]
    [1234.56, -1234.0, 12.5, None, None, None]
    """
    plain, comma = _cast(text), _cast(f"replace({text}, ',', '.')")
    if decimal == ".":
        return (f"(CASE WHEN contains({text}, ',') THEN (CASE WHEN regexp_full_match({text}, "
                f"{literal(_COMMA_GROUPS)}) THEN TRY_CAST(replace({text}, ',', '') AS DOUBLE) "
                f"END) ELSE {plain} END)")
    if decimal == ",":
        return (f"(CASE WHEN contains({text}, '.') THEN (CASE WHEN regexp_full_match({text}, "
                f"{literal(_DOT_GROUPS)}) THEN TRY_CAST(replace(replace({text}, '.', ''), ',', "
                f"'.') AS DOUBLE) END) WHEN contains({text}, ',') THEN {comma} ELSE {plain} END)")
    return f"(CASE WHEN contains({text}, ',') THEN {comma} ELSE {plain} END)"


def _cast(text: str) -> str:
    """The DOUBLE of a text of the form :data:`_NUMBER` (NULL for another).

    >>> import duckdb
    >>> [duckdb.sql(f"SELECT {_cast(literal(v))}").fetchone()[0]
    ...  for v in ("-1.5e3", "+.5", "7.", "+-1", "1_000", ".", "1e", "0x10")]
    [-1500.0, 0.5, 7.0, None, None, None, None, None]
    """
    return (f"(CASE WHEN regexp_full_match({text}, {literal(_NUMBER)}) "
            f"THEN TRY_CAST({text} AS DOUBLE) END)")


def _unclear_decimal(text: str) -> str:
    """With no decimal mark set, a text whose comma may group thousands (``1,234``:
    1234 in a US export, 1.234 in a European one; ``1,234.5``) or that has both marks
    (``1.234,5``): a number only once the source says which mark it uses.

    >>> import duckdb
    >>> values = ["1,234", "-1,234", "1,234,567", "1,234.5", "1.234,5", "12,5", "1,2345",
    ...           "1234,567", "12.5", "1.234", "1,2.3"]
    >>> [duckdb.sql(f"SELECT {_unclear_decimal(literal(v))}").fetchone()[0] for v in values]
    [True, True, True, True, True, False, False, False, False, False, False]
    """
    return (f"(CASE WHEN contains({text}, ',') THEN regexp_full_match({text}, "
            f"{literal(_COMMA_GROUPS)}) OR regexp_full_match({text}, {literal(_DOT_GROUPS)}) "
            "ELSE false END)")


def _finite(num: str) -> str:
    return f"(CASE WHEN isfinite({num}) THEN {num} END)"


#: an offset written after a time: +02, +0200, +02:00, +00:19:32
_HMS = "[+-][0-9][0-9](:?[0-9][0-9])?(:[0-9][0-9])?"


def _has_offset(text: str, any_case: bool) -> str:
    """Whether the time ``text`` ends with its zone (Z, UTC, GMT or an offset); the
    zone must follow a time, or the day of a plain date ('2024-01-15') would read as
    an offset of -15. ``any_case`` (event id scheme 4): ' utc' too, which the
    TIMESTAMP cast reads as a wall time, its zone dropped."""
    names = "[Uu][Tt][Cc]|[Gg][Mm][Tt]" if any_case else "UTC|GMT"
    return f"regexp_matches({text}, ':[0-9][0-9](\\.[0-9]*)? ?(Z|{names}|{_HMS})$')"


def _end_of_day(instant: str, tz: str) -> str:
    """The next midnight in ``tz`` after the start of the day of ``instant`` (a
    ``TIMESTAMPTZ``): the end of a promised day, daylight saving included.

    >>> _end_of_day("x", "UTC")
    "make_timestamptz(epoch_us(date_trunc('day', timezone('UTC', x)) + INTERVAL 1 DAY))"
    """
    local = f"date_trunc('day', timezone({literal(tz)}, {instant})) + INTERVAL 1 DAY"
    return _at_zone(tz, local)


def _at_zone(tz: str, naive: str) -> str:
    """The instant of a naive ``TIMESTAMP`` read as wall time in ``tz``, NULL for an
    infinite one (``'infinity'`` is no time an event happened: quarantined). UTC (the
    default) needs no calendar: the microseconds are the instant's, and
    ``make_timestamptz`` takes them at ~a third of ``timezone()``'s cost (ICU).

    >>> _at_zone("UTC", "x")
    'make_timestamptz(epoch_us(x))'
    >>> _at_zone("Europe/Paris", "x")
    "make_timestamptz(epoch_us(timezone('Europe/Paris', x)))"
    """
    return _instant(naive if tz == "UTC" else f"timezone({literal(tz)}, {naive})")


def _instant(ts: str) -> str:
    """``ts`` (a ``TIMESTAMP`` read as UTC, or a ``TIMESTAMPTZ``) as an instant, NULL
    when infinite (``epoch_us`` of infinity is NULL)."""
    return f"make_timestamptz(epoch_us({ts}))"


def _in_column(spec: FieldSpec) -> str:
    """' in column 'x'' for a reason, when the value comes from a column."""
    return f" in column {spec.column!r}" if spec.column is not None else ""


def field_naming(spec: object, column: str, at: tuple = ()) -> tuple | None:
    """The key path, within a source's mapping, of the first field that reads
    ``column`` (for an error's line): ``("agent",)``, ``("events", 0, "ts")``.

    >>> from keymoments.config.models import SourceSpec
    >>> spec = SourceSpec.model_validate({"path": "o.csv", "identifiers": {"customer_id": "cid"},
    ...                                   "event_type": "kind", "ts": "at", "agent": "clerk"})
    >>> field_naming(spec, "clerk"), field_naming(spec, "cid"), field_naming(spec, "nope")
    (('agent',), ('identifiers', 'customer_id'), None)
    """
    if isinstance(spec, FieldSpec):
        return at if spec.column == column else None
    if isinstance(spec, BaseModel):
        items = [(name, getattr(spec, name)) for name in type(spec).model_fields]
    elif isinstance(spec, dict):
        items = list(spec.items())
    elif isinstance(spec, list):
        items = list(enumerate(spec))
    else:
        return None
    for name, value in items:
        if value == column and name != "path":  # a key list, or a join's ``on``
            return at + (name,)
        found = field_naming(value, column, at + (name,))
        if found is not None:
            return found
    return None


class _Compiler:
    def __init__(self, source: SourceSpec, name: str, types: dict[str, str],
                 identity: IdentityConfig, event_id_scheme: int = LATEST_EVENT_ID_SCHEME) -> None:
        if event_id_scheme not in EVENT_ID_SCHEMES:
            raise ValueError(f"unknown event id scheme {event_id_scheme}")
        self.source, self.name, self.types, self.identity = source, name, types, identity
        # (a column named as one of the working columns below would stand in for it:
        # '_km_text_0' read as the time of every row; CSV and JSON headers say so first)
        own = [c for c in types if c.lower().startswith("_km_")
               and c.lower() not in (LINE_COLUMN, FILE_COLUMN)]
        if own:
            raise SourceError(f"source {name!r}: the column name {own[0]!r} begins with _km_, "
                              "which keymoments keeps for its own columns: rename it in the "
                              "export")
        self.event_id_scheme = event_id_scheme
        self.lenient = False
        # text columns are cleaned (trimmed, nulls) once, in a subquery, and referred to
        # by alias: inlined, the cleaning repeats in every check and the query takes
        # about a second to prepare even for a few rows
        self.inline = False
        self.cleaned: dict[str, str] = {}  # column -> alias of its cleaned text

    def check_column(self, column: str) -> None:
        if column not in self.types and self.lenient:
            self.types[column] = "MISSING"
        if column not in self.types:
            raise self.no_column(column, f"no column {column!r} in the source's data")

    def no_column(self, column: str, message: str) -> ConfigError:
        """The error for a mapped ``column`` the data lacks, at the field that maps it,
        with the closest column there is."""
        have = [c for c, t in self.types.items() if t != "MISSING"]
        close = difflib.get_close_matches(column, have, n=1)
        hint = f"did you mean {close[0]!r}?" if close else (
            "columns: " + ", ".join(sorted(have))[:300])
        only = have[0] if len(have) == 1 else ""
        sep = next((s for s in (";", "\t", "|") if s in only), None)
        if sep is not None:  # the header read as one column: another delimiter
            shown = {"\t": "\\t"}.get(sep, sep)
            hint = (f"the header was read as one column {only[:60]!r}: set "
                    f"csv: {{delimiter: '{shown}'}} on the source")
        where = ".".join(map(str, field_naming(self.source, column) or ()))
        return ConfigError(message, key=f"sources.{self.name}" + (f".{where}" if where else ""),
                           hint=hint)

    def absent(self, spec: FieldSpec) -> bool:
        """A field read from a column no record has (JSON lines, XES), with no
        default: empty in every row."""
        if spec.column is None or spec.default is not None:
            return False
        self.check_column(spec.column)
        return self.types[spec.column] == "MISSING"

    def is_nested(self, column: str) -> bool:
        """A list, struct, map or union column (Parquet, JSON): no single value."""
        self.check_column(column)
        t = self.types[column]
        return t.endswith("]") or t.startswith(("STRUCT", "MAP", "UNION"))

    def is_numeric(self, column: str) -> bool:
        self.check_column(column)
        t = self.types[column]
        return any(t.startswith(p) for p in ("DOUBLE", "FLOAT", "INTEGER", "BIGINT", "DECIMAL",
                                             "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT", "UINTEGER"))

    def column_text(self, column: str) -> str:
        self.check_column(column)
        col = ident(column)
        if self.types[column] == "MISSING":
            return "NULL::VARCHAR"  # a key absent from every record of a JSON lines/XES file
        if self.types[column] in _TEXT_TYPES:
            if not self.inline:
                return ident(self.cleaned.setdefault(column, f"_km_text_{len(self.cleaned)}"))
            return self._clean(col)
        if self.types[column] in ("DOUBLE", "FLOAT"):
            # NaN (a missing value in pandas' exports) and infinity are no value: as
            # text they were 'nan' and 'inf', one identifier shared by every such row
            if self.event_id_scheme < 3:
                return f"(CASE WHEN isfinite({col}) THEN CAST({col} AS VARCHAR) END)"
            return (f"(CASE WHEN NOT isfinite({col}) THEN NULL "
                    f"WHEN {col} = trunc({col}) AND abs({col}) <= {_EXACT_INTEGER} "
                    f"THEN CAST(CAST({col} AS BIGINT) AS VARCHAR) ELSE CAST({col} AS VARCHAR) END)")
        if self.event_id_scheme >= 4 and _decimal_scale(self.types[column]) > 0:
            # '7.00' -> '7', '7.50' -> '7.5' (a scale > 0 always writes a '.')
            return f"rtrim(rtrim(CAST({col} AS VARCHAR), '0'), '.')"
        return f"CAST({col} AS VARCHAR)"

    def _clean(self, col: str) -> str:
        trimmed = f"trim({col}, ' \t\r\n')"
        # CASE x WHEN ..., not x IN (...): DuckDB hashes each value for an IN list of
        # constants, twice the cost of the trim
        whens = " ".join(f"WHEN {literal(v)} THEN NULL" for v in self.source.csv.null_values)
        full = f"(CASE {trimmed} {whens} ELSE {trimmed} END)" if whens else trimmed
        # fast path (most values): longer than every null marker, not starting with a
        # character <= ' ' and not ending with one trim() removes (so there is nothing
        # to trim): as is. (suffix() compares bytes; right(x, 1) counted characters,
        # 0.45 s more per million rows of 9 text columns)
        longest = max((len(v.encode("utf-8")) for v in self.source.csv.null_values), default=0)
        ends = " OR ".join(f"suffix({col}, {ch})" for ch in ("' '", "chr(9)", "chr(10)", "chr(13)"))
        return (f"(CASE WHEN strlen({col}) > {longest} AND ascii({col}) > 32 "
                f"AND NOT ({ends}) THEN {col} ELSE {full} END)")

    def from_clause(self, input_table: str) -> str:
        """The input with the cleaned text columns the expressions so far refer to."""
        if not self.cleaned:
            return ident(input_table)
        cols = ", ".join(f"{self._clean(ident(c))} AS {ident(a)}" for c, a in self.cleaned.items())
        return f"(SELECT *, {cols} FROM {ident(input_table)})"

    def identifier(self, slot: _Slot, kind: str, text: str) -> str:
        how = self.identity.normalise.get(kind, "strip")
        if how == "email":
            value = f"lower({text})"
            if self.identity.email_strip_plus:
                value = f"regexp_replace({value}, '\\+[^@]*@', '@')"
            slot.checks.append(_Check(
                f"{text} IS NOT NULL AND NOT regexp_matches({text}, '^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$')",
                f"identifiers.{kind}", text, "not an email address"))
            return value
        if how == "phone":
            value = f"(SELECT p.norm FROM {PHONE_TABLE} p WHERE p.raw = {text})"
            slot.checks.append(_Check(
                f"{text} IS NOT NULL AND {value} IS NULL", f"identifiers.{kind}", text,
                f"not a phone number for region {self.identity.phone_region}: write it with "
                f"its country code (+..) or set identity.phone_region"))
            return value
        if how == "lower":
            return f"lower({text})"
        return text


def phone_columns(source: SourceSpec, identity: IdentityConfig) -> list[FieldSpec]:
    """The identifier specs whose values must be normalised as phone numbers."""
    return [s for k, s in source.identifiers.items() if identity.normalise.get(k) == "phone"]


def compile_source(source: SourceSpec, name: str, types: dict[str, str], input_table: str,
                   identity: IdentityConfig | None = None, lenient_columns: bool = False,
                   event_id_scheme: int = LATEST_EVENT_ID_SCHEME) -> str:
    """SQL yielding the canonical events of every row and slot of ``input_table``.
    With ``lenient_columns`` (JSON lines, XES: records need not carry every key), a
    mapped column absent from the data reads as missing instead of a config error.
    ``event_id_scheme`` is the workspace's (see :data:`EVENT_ID_SCHEMES`)."""
    comp = _Compiler(source, name, dict(types), identity or IdentityConfig(), event_id_scheme)
    comp.lenient = lenient_columns
    slots = [_Slot(comp, i, e) for i, e in enumerate(source.event_specs())]
    return "\nUNION ALL BY NAME\n".join(s.select(input_table) for s in slots)


def phone_text_expressions(source: SourceSpec, name: str, types: dict[str, str],
                           identity: IdentityConfig,
                           event_id_scheme: int = LATEST_EVENT_ID_SCHEME) -> list[str]:
    """Text expressions of the phone identifiers (to collect their distinct values),
    read as the workspace's scheme reads them (see :data:`EVENT_ID_SCHEMES`)."""
    comp = _Compiler(source, name, dict(types), identity, event_id_scheme)
    comp.lenient = True  # a missing column is reported by compile_source, not here
    comp.inline = True  # used directly over the input table
    slot = _Slot(comp, 0, source.event_specs()[0])
    return [slot.text(s) for s in phone_columns(source, identity)]
