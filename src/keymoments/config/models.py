"""Typed models of ``keymoments.yaml``. Every default lives here, in one place.

A source maps the columns of one export to the canonical event model. A field is
either a column name (a plain string) or a mapping with ``column`` or ``value``:

>>> spec = SourceSpec.model_validate({
...     "path": "orders.csv",
...     "identifiers": {"customer_id": "cust"},
...     "channel": {"value": "web"},
...     "events": [{"event_type": {"value": "order_placed"}, "ts": "placed_at"}],
... })
>>> spec.identifiers["customer_id"].column, spec.channel.value
('cust', 'web')
>>> spec.resolved_format()
'csv'
"""

from __future__ import annotations

import difflib
import functools
import re
from pathlib import PurePath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "STAGES",
    "KEY_MOMENTS",
    "RATING_SCALES",
    "Strict",
    "FieldSpec",
    "TimestampDefaults",
    "TimestampSpec",
    "RatingSpec",
    "ExpectationSpec",
    "EventSpec",
    "CsvOptions",
    "JoinSpec",
    "SourceSpec",
    "TaxonomyEntry",
    "TaxonomyPattern",
    "Taxonomy",
    "IdentityConfig",
    "Config",
]

from .base import KEY_MOMENTS, RATING_SCALES, STAGES, Strict  # noqa: E402


class FieldSpec(Strict):
    """Where a canonical field's value comes from: a column, or a constant ``value``.

    ``map`` translates source values (after trimming); ``default`` fills blanks.
    """

    column: str | None = None
    value: str | float | int | bool | None = None
    map: dict[str, str | float | int | None] | None = None
    default: str | float | int | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"column": data}
        return data

    @model_validator(mode="after")
    def _one_origin(self) -> FieldSpec:
        if self.column is None and self.value is None and self.default is None:
            raise ValueError("give 'column' (a source column) or 'value' (a constant)")
        if self.column is not None and self.value is not None:
            raise ValueError("give either 'column' or 'value', not both")
        return self


def _known_stage(spec: FieldSpec | None) -> FieldSpec | None:
    """A stage given as a constant (``value``, ``default`` or ``map`` targets) must be
    one of :data:`STAGES`: caught here, not by quarantining every row at ingest."""
    if spec is None:
        return spec
    given = [spec.value, spec.default, *(spec.map or {}).values()]
    for stage in given:
        if stage is not None and str(stage).lower() not in STAGES:
            close = difflib.get_close_matches(str(stage).lower(), STAGES, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"unknown stage {stage!r} ({hint}stages: {', '.join(STAGES)})")
    return spec


@functools.cache
def _time_zones() -> dict[str, str]:
    """The zone names DuckDB knows (IANA and a few aliases), by lower-cased name."""
    import duckdb

    with duckdb.connect() as con:
        names = con.execute("SELECT name FROM pg_timezone_names()").fetchall()
    return {name.lower(): name for (name,) in names}


def _known_timezone(value: str | None) -> str | None:
    """A time zone the SQL can convert with, else an error naming the closest ones.

    >>> _known_timezone("Europe/Amsterdam")
    'Europe/Amsterdam'
    >>> _known_timezone("Europe/Amsterdm")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: unknown time zone 'Europe/Amsterdm': did you mean 'Europe/Amsterdam'? (an IANA ...
    """
    if value is None or value.lower() in _time_zones():
        return value
    close = difflib.get_close_matches(value.lower(), list(_time_zones()), n=1, cutoff=0.7)
    hint = f"did you mean {_time_zones()[close[0]]!r}? " if close else ""
    raise ValueError(f"unknown time zone {value!r}: {hint}(an IANA name such as Europe/Paris, "
                     "America/Sao_Paulo or UTC)")


@functools.cache
def _format_error(fmt: str) -> str | None:
    """What the SQL's strptime says of ``fmt``, or None when it reads it."""
    import duckdb

    with duckdb.connect() as con:
        try:
            con.execute(f"SELECT try_strptime('', '{fmt.replace(chr(39), chr(39) * 2)}')")
        except duckdb.Error as exc:
            return str(exc)
    return None


def _known_format(value: str | None) -> str | None:
    """A timestamp ``format`` the SQL reads, else an error naming the code it does not
    know (it would fail the load).

    >>> _known_format("%d/%m/%Y %H:%M")
    '%d/%m/%Y %H:%M'
    >>> _known_format("%s")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: format '%s': %s is not a code it can read; ...(epoch numbers: give 'unit: s' ...
    """
    if value is None or (error := _format_error(value)) is None:
        return value
    found = re.search(r"strftime/strptime: (\S+)", error)
    code = f"{found.group(1)} is not a code it can read" if found else error.split("\n")[0]
    raise ValueError(f"format {value!r}: {code}; use strftime codes such as %Y %m %d %H %M %S "
                     "%f %z %b %p (epoch numbers: give 'unit: s' or 'unit: ms' instead)")


class TimestampDefaults(Strict):
    """Source-wide timestamp settings, used where a timestamp field gives none."""

    format: str | None = None
    timezone: str | None = None
    unit: Literal["s", "ms"] | None = None

    _timezone = field_validator("timezone")(_known_timezone)
    _format = field_validator("format")(_known_format)


class TimestampSpec(FieldSpec):
    """A timestamp column with its format (strftime codes; ISO 8601 when unset) and zone.

    ``timezone`` applies to values without an offset; values with an offset keep it.
    ``unit`` reads epoch numbers (``s`` or ``ms``).
    """

    format: str | None = None
    timezone: str | None = None
    unit: Literal["s", "ms"] | None = None

    _timezone = field_validator("timezone")(_known_timezone)
    _format = field_validator("format")(_known_format)


class RatingSpec(FieldSpec):
    """A rating and its scale: a built-in name or a custom ``min``/``max`` range.

    A range given without a ``scale`` is the scale ``custom`` (never a built-in one:
    a 0 to 10 range must not be read as csat5), and a built-in scale keeps its own
    range. One or the other must be given: a scale is not guessed (stars read as a
    CSAT would count in the CSAT metric; an NPS answer as one would be quarantined).

    >>> RatingSpec(column="score", min=0, max=10).scale
    'custom'
    >>> RatingSpec(column="score", scale="nps10", min=0, max=10).bounds()
    (0.0, 10.0)
    >>> try:
    ...     RatingSpec(column="score")
    ... except ValueError as exc:
    ...     print(str(exc).splitlines()[1].split("[")[0].strip())
    Value error, say which scale the ratings are on: 'scale: csat5' (or nps10, ces7, stars5), or a custom 'min' and 'max'
    """

    scale: str
    min: float | None = None
    max: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _custom_when_ranged(cls, data):
        if isinstance(data, str):
            data = {"column": data}
        if isinstance(data, dict) and "scale" not in data:
            if data.get("min") is not None or data.get("max") is not None:
                return {**data, "scale": "custom"}
            others = ", ".join(s for s in RATING_SCALES if s != "csat5")
            raise ValueError(f"say which scale the ratings are on: 'scale: csat5' (or {others}), "
                             "or a custom 'min' and 'max'")
        return data

    @model_validator(mode="after")
    def _known_scale(self) -> RatingSpec:
        if (self.min is None) != (self.max is None):
            raise ValueError("a custom rating range needs both 'min' and 'max'")
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError(f"'min' ({self.min:g}) must be below 'max' ({self.max:g})")
        if self.scale in RATING_SCALES and self.min is not None:
            lo, hi = RATING_SCALES[self.scale]
            if (self.min, self.max) != (lo, hi):
                raise ValueError(
                    f"the scale {self.scale!r} runs from {lo:g} to {hi:g}, not "
                    f"{self.min:g} to {self.max:g}: leave out 'scale' (or name your own) "
                    "for a custom range")
        if self.scale not in RATING_SCALES and (self.min is None or self.max is None):
            raise ValueError(
                f"unknown rating scale {self.scale!r}: use one of "
                f"{', '.join(RATING_SCALES)} or give 'min' and 'max' for a custom range"
            )
        return self

    def bounds(self) -> tuple[float, float]:
        """The (min, max) of the scale."""
        if self.min is not None and self.max is not None:
            return (self.min, self.max)
        return RATING_SCALES[self.scale]


class ExpectationSpec(Strict):
    """What was promised: a time (``ts``, e.g. estimated delivery) or a value (``value``,
    e.g. an SLA in minutes), with its ``kind``. ``whole_day``: the promised time is a
    day (an estimated delivery *date*), so the promise runs to the end of that day
    (the next midnight at the offset the time is written with, else in its zone), and
    a delivery that day is not late."""

    kind: str = "promised"
    ts: TimestampSpec | None = None
    value: FieldSpec | None = None
    whole_day: bool = False

    @model_validator(mode="after")
    def _something(self) -> ExpectationSpec:
        if self.ts is None and self.value is None:
            raise ValueError("an expectation needs 'ts' (a promised time) or 'value'")
        if self.whole_day and self.ts is None:
            raise ValueError("'whole_day' applies to a promised time ('ts')")
        return self


class CanonicalFields(Strict):
    """The canonical fields a source maps once for all its events, and an event of a
    wide table may override."""

    channel: FieldSpec | None = None
    stage: FieldSpec | None = None
    agent: FieldSpec | None = None
    language: FieldSpec | None = None
    rating: RatingSpec | None = None
    text: FieldSpec | None = None
    expectation: ExpectationSpec | None = None
    measures: dict[str, FieldSpec] = Field(default_factory=dict)
    attributes: dict[str, FieldSpec] = Field(default_factory=dict)
    refs: dict[str, FieldSpec] = Field(default_factory=dict)

    _stage = field_validator("stage")(_known_stage)


class EventSpec(CanonicalFields):
    """One event produced from each row. Wide tables list several (one per timestamp
    column); any canonical field given here overrides the source-level one."""

    event_type: FieldSpec
    ts: TimestampSpec
    when_missing: Literal["skip", "quarantine"] | None = None


class CsvOptions(Strict):
    """How to read a delimited file. ``delimiter: whitespace`` splits on runs of blanks."""

    delimiter: str = ","
    encoding: str = "utf-8"
    quote: str = '"'
    header: bool = True
    skip_rows: int = 0
    null_values: list[str] = Field(default_factory=lambda: ["", "NULL", "null", "NA", "N/A"])

    @field_validator("delimiter")
    @classmethod
    def _delimiter(cls, v: str) -> str:
        named = {"tab": "\t", "\\t": "\t", "semicolon": ";", "comma": ",", "pipe": "|"}
        v = named.get(v, v)
        if v != "whitespace" and len(v) != 1:
            raise ValueError("a delimiter is one character, or 'tab', 'whitespace'")
        return v

    @field_validator("quote")
    @classmethod
    def _quote(cls, v: str) -> str:
        if len(v) != 1:
            raise ValueError("a quote is one character (\" by default, or ')")
        return v

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, v: str) -> str:
        import codecs

        try:
            return codecs.lookup(v).name
        except LookupError:
            raise ValueError(f"unknown encoding {v!r} (try utf-8, latin-1, cp1252, utf-16)")


class JoinSpec(Strict):
    """A side table joined to each row before mapping (reviews -> orders).

    ``on`` maps this source's column to the side table's column; ``columns`` names
    the side columns brought in (a list, or a mapping side name -> new name).
    """

    path: str
    format: Literal["csv", "parquet", "jsonl"] | None = None
    csv: CsvOptions = Field(default_factory=CsvOptions)
    on: dict[str, str]
    columns: list[str] | dict[str, str]

    def column_map(self) -> dict[str, str]:
        """Side column -> the name it takes in the joined row."""
        if isinstance(self.columns, list):
            return {c: c for c in self.columns}
        return dict(self.columns)


class SourceSpec(CanonicalFields):
    """A declarative mapping from one export (CSV, Parquet, JSON, XES) to events."""

    path: str
    #: unset: from the file's extension. ``jsonl`` (also ``.json``, ``.ndjson``) reads
    #: JSON lines, or a JSON array of objects when the file starts with ``[``.
    format: Literal["csv", "parquet", "jsonl", "xes"] | None = None
    csv: CsvOptions = Field(default_factory=CsvOptions)
    joins: list[JoinSpec] = Field(default_factory=list)
    #: columns that identify a row (its events' ids derive from them); ``_line`` is
    #: the row's file and line. A row whose key columns are all empty is quarantined.
    #: A load merges on a key of columns (not ``_line``: a removed line would shift the
    #: rows after it): a row already loaded and since edited in its file
    #: (same key, another score, time...) replaces its stored events, and those of its
    #: events it no longer gives (an emptied time) are removed; an event type read
    #: from a column is part of the id, so a changed status adds an event and keeps the
    #: old one. Of rows of one load with the same key and event type, the last (by
    #: file, then line: the newest of a glob of files named by date, 2024-03-01) loads, as it would in a
    #: later load, and the load warns when they differ; so a key must identify a
    #: record: a status log's includes the time.
    #: Unset: an event's id derives from its content, so an edited row loads as a new
    #: event beside the old one.
    key: list[str] | None = None
    identifiers: dict[str, FieldSpec]
    event_type: FieldSpec | None = None
    ts: TimestampSpec | None = None
    events: list[EventSpec] | None = None
    timestamps: TimestampDefaults | None = None
    #: the decimal mark of numbers written as text (ratings, measures, expectation
    #: values): ``.`` (a comma may then group thousands: ``1,234.5``) or ``,`` (a dot may
    #: then group thousands: ``1.234,5``). Unset: ``12.5`` and ``12,5`` both read as 12.5,
    #: and a value whose comma may group thousands (``1,234``, ``1,234.5``) or that has
    #: both marks is quarantined, asking for this setting. Typed numbers (Parquet) are
    #: read as they are.
    decimal: Literal[".", ","] | None = None
    #: remove emails, phone, card, IBAN and identity numbers from the ``text`` field
    #: before it is stored (they become ``[email]``, ``[phone]``...); the event id is
    #: computed before, so re-loading the same file still finds its duplicates.
    #: Quarantined rows keep their raw values so they can be fixed.
    redact_text: bool = True

    @field_validator("identifiers")
    @classmethod
    def _some_identifier(cls, v: dict[str, FieldSpec]) -> dict[str, FieldSpec]:
        if not v:
            raise ValueError("map at least one identifier (customer_id, email, phone...)")
        return v

    @model_validator(mode="after")
    def _events_or_single(self) -> SourceSpec:
        if self.events is None and (self.event_type is None or self.ts is None):
            raise ValueError(
                "give 'event_type' and 'ts' for one event per row, "
                "or 'events' (a list) for wide tables with several timestamp columns"
            )
        if self.events is not None and (self.event_type is not None or self.ts is not None):
            raise ValueError("give either 'events' or 'event_type' + 'ts', not both")
        return self

    def resolved_format(self) -> str:
        """The file format, from ``format`` or the file extension."""
        if self.format:
            return self.format
        suffixes = [s.lower() for s in PurePath(self.path).suffixes]
        for suffix in reversed(suffixes):
            found = {
                ".csv": "csv",
                ".tsv": "csv",
                ".txt": "csv",
                ".parquet": "parquet",
                ".pq": "parquet",
                ".jsonl": "jsonl",
                ".ndjson": "jsonl",
                ".json": "jsonl",
                ".xes": "xes",
            }.get(suffix)
            if found:
                return found
        return "csv"

    def event_specs(self) -> list[EventSpec]:
        """The events each row yields (one, unless the source is a wide table)."""
        if self.events is not None:
            return [
                e if e.when_missing else e.model_copy(update={"when_missing": "skip"})
                for e in self.events
            ]
        assert self.event_type is not None and self.ts is not None
        return [EventSpec(event_type=self.event_type, ts=self.ts, when_missing="quarantine")]


class TaxonomyEntry(Strict):
    """Stage and business key moment of one event type."""

    stage: Literal[STAGES] | None = None  # type: ignore[valid-type]
    moment: Literal[KEY_MOMENTS] | None = None  # type: ignore[valid-type]


class TaxonomyPattern(TaxonomyEntry):
    """A case-insensitive regular expression over event types, tried in order."""

    match: str

    @field_validator("match")
    @classmethod
    def _regex(cls, v: str) -> str:
        import re

        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}")
        return v


class Taxonomy(Strict):
    """Maps source event types to stages and business key moments.

    Exact ``event_types`` win over ``patterns``; the user's entries are merged over
    the packaged defaults (``keymoments/defaults/taxonomy.yaml``).
    """

    event_types: dict[str, TaxonomyEntry] = Field(default_factory=dict)
    patterns: list[TaxonomyPattern] = Field(default_factory=list)
    use_defaults: bool = True


class IdentityConfig(Strict):
    """How identifiers are normalised before stitching.

    ``normalise`` maps an identifier kind to a normaliser: ``email`` (trim, lower
    case), ``phone`` (E.164 via libphonenumber, ``phone_region`` for numbers without
    a country code), ``lower``, ``strip`` or ``none``. Kinds not listed are trimmed.
    """

    phone_region: str = "US"
    email_strip_plus: bool = False
    normalise: dict[str, Literal["email", "phone", "lower", "strip", "none"]] = Field(
        default_factory=lambda: {"email": "email", "phone": "phone"}
    )

    @field_validator("phone_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        import phonenumbers

        if value.upper() in phonenumbers.SUPPORTED_REGIONS:
            return value.upper()
        raise ValueError(f"unknown phone region {value!r}: a two-letter country code (ISO 3166) "
                         "such as US, GB, BR or NL, for numbers written without +country code")


from .analysis import JourneysConfig, MomentsConfig, OutcomesConfig, ValenceConfig  # noqa: E402
from .actions import ActionsConfig, ServiceConfig  # noqa: E402
from .paths import PathsConfig  # noqa: E402
from .analysis import TextConfig  # noqa: E402


_MEMORY = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*(?:([kmgt])(i?)b?|b)\s*", re.IGNORECASE)


def memory_bytes(text: str) -> int | None:
    """A memory size as DuckDB reads and shows it (``4GB``, ``3g``, ``2.7 GiB``), in
    bytes; None when DuckDB would not read it.

    >>> memory_bytes("3GB"), memory_bytes("2.5 GiB"), memory_bytes("3g"), memory_bytes("80%")
    (3000000000, 2684354560, 3000000000, None)
    """
    m = _MEMORY.fullmatch(text)
    if not m:
        return None
    if not m.group(2):
        return int(float(m.group(1)))
    base = 1024 if m.group(3) else 1000
    return int(float(m.group(1)) * base ** ("kmgt".index(m.group(2).lower()) + 1))


class Config(Strict):
    """The whole of ``keymoments.yaml``."""

    version: Literal[1] = 1
    name: str = "keymoments"
    database: str = "keymoments.duckdb"
    #: DuckDB memory limit (e.g. ``4GB`` or ``3.5GiB``); past it DuckDB spills to
    #: ``temp_directory``. Unset: DuckDB's default (80% of RAM).
    memory_limit: str | None = None
    #: where DuckDB spills (relative to the workspace); unset: next to the database
    temp_directory: str | None = None
    #: threads DuckDB may use; unset: all cores
    threads: int | None = Field(default=None, ge=1)
    #: the time zone periods are counted in (``metrics --period month``: a month starts
    #: at midnight there); times are stored in UTC either way
    timezone: str = "UTC"
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    taxonomy: Taxonomy = Field(default_factory=Taxonomy)
    sources: dict[str, SourceSpec] = Field(default_factory=dict)
    valence: ValenceConfig = Field(default_factory=ValenceConfig)
    journeys: JourneysConfig = Field(default_factory=JourneysConfig)
    outcomes: OutcomesConfig = Field(default_factory=OutcomesConfig)
    moments: MomentsConfig = Field(default_factory=MomentsConfig)
    service: ServiceConfig = Field(default_factory=ServiceConfig)
    actions: ActionsConfig = Field(default_factory=ActionsConfig)
    paths: PathsConfig = Field(default_factory=PathsConfig)
    text: TextConfig = Field(default_factory=TextConfig)

    _zone = field_validator("timezone")(_known_timezone)

    @field_validator("memory_limit")
    @classmethod
    def _memory_size(cls, value: str | None) -> str | None:
        if value is not None and memory_bytes(value) is None:
            raise ValueError(f"not a memory size: {value!r}; write it like 4GB, 3.5GiB or 512MB")
        return value

    @model_validator(mode="after")
    def _neutral_in_range(self) -> Config:
        """A custom scale's neutral point lies inside the range of every source that
        rates on it (``neutral: {custom: 8}`` counts for every unnamed range)."""
        for name, spec in self.sources.items():
            r = spec.rating
            point = None if r is None else self.valence.neutral.get(r.scale)
            if point is None or r.scale in RATING_SCALES:
                continue
            lo, hi = r.bounds()
            if not lo <= point <= hi:
                raise ValueError(
                    f"valence.neutral.{r.scale} is {point:g}, outside the range {lo:g} to "
                    f"{hi:g} of source {name!r}'s ratings: give that source's scale a name "
                    f"of its own ('scale: <name>' beside min and max) and its own neutral")
        return self

    @field_validator("sources")
    @classmethod
    def _source_names(cls, v: dict[str, SourceSpec]) -> dict[str, SourceSpec]:
        for name in v:
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
                raise ValueError(f"source name {name!r}: use letters, digits, '_', '-', '.'")
        return v
