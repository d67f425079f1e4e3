"""Property tests of CSV ingestion: random small tables of good rows mixed with broken
ones, checked against what the generator knows about every row it wrote.

The oracle is independent of keymoments: line numbers are counted from the bytes
written, timestamps are parsed with ``datetime.fromisoformat`` + ``zoneinfo``, numbers
with ``float``, persons with a small union-find, and a row's canonical event is the
tuple of its normalised values (so duplicate rows are those with equal tuples).

Malformed rows: bad dates, missing identifiers, a rating that is not a number or is
off the scale, an unterminated quote, Latin-1 bytes in a UTF-8 file, a wrong field
count. Blank lines are not records.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import keymoments as km

COLUMNS = ["cid", "email", "when", "score", "comment"]
NULLS = {"", "NULL", "null", "NA", "N/A"}  # CsvOptions.null_values, as documented
TIMEZONES = ["UTC", "Europe/Amsterdam", "America/New_York", "Asia/Kolkata"]
DELIMITERS = [",", ";", "\t", "|"]
TABLES = ("events", "identifiers", "identity_links", "people", "quarantine")
EVENT_CONTENT = (  # every events column but where and when it was loaded from
    "event_id, ts, person_id, anchor, identifiers, channel, event_type, stage, moment, refs, "
    "agent, language, rating, rating_scale, rating_min, rating_max, text, measures, "
    "expected_ts, expected_value, expectation_kind, attributes, source"
)

# no shrinking: each example costs several loads, and shrinking one took minutes; a
# failure prints its whole (small) table instead
SETTINGS = settings(derandomize=True, max_examples=20, deadline=None, database=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def config(delimiter: str, tz: str) -> str:
    return f"""
name: props
sources:
  s:
    path: data.csv
    csv: {{delimiter: {json.dumps(delimiter)}}}
    identifiers: {{customer_id: cid, email: email}}
    event_type: {{value: visit}}
    ts: when
    timestamps: {{timezone: {tz}}}
    rating: {{column: score, scale: csat5}}
    text: comment
    channel: {{value: web}}
"""


# ------------------------------------------------------------------ the oracle


def norm(value: str) -> str | None:
    """A cell as a canonical value: trimmed; blank and null markers are missing."""
    value = value.strip(" \t\r\n")
    return None if value in NULLS else value


def instant(text: str, tz: str) -> datetime:
    """The UTC instant of a generated timestamp, read with the standard library."""
    text = text.strip()
    if text.endswith(" UTC"):
        return datetime.fromisoformat(text[:-4]).replace(tzinfo=timezone.utc)
    value = datetime.fromisoformat(text)  # 3.11: 'Z', offsets, date only
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(tz))
    return value.astimezone(timezone.utc)


@dataclass
class Item:
    kind: str  # good, bad_ts, no_id, not_number, off_scale, quote, encoding, width, blank
    fields: list[str] = field(default_factory=list)
    data: bytes = b""
    line: int = 0  # physical line the record starts on (set when the file is written)
    column: str | None = None  # the column at fault
    value: str | None = None  # the offending value

    @property
    def record(self) -> bool:
        return self.kind != "blank"

    @property
    def good(self) -> bool:
        return self.kind == "good"

    def event(self, tz: str) -> tuple:
        cid, email, when, score, comment = self.fields
        ids = {}
        if norm(cid) is not None:
            ids["customer_id"] = norm(cid)
        if norm(email) is not None:
            ids["email"] = norm(email).lower()
        rating = None if norm(score) is None else float(norm(score))
        return ("visit", instant(when, tz), tuple(sorted(ids.items())), rating, norm(comment))


def written(fields: list[str], delimiter: str, terminator: str) -> bytes:
    # written as if lines ended with CRLF, so that a value with a lone CR is quoted
    # (the csv module leaves it bare when the line end has no CR: unreadable back)
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator="\r\n").writerow(fields)
    return (buf.getvalue()[:-2] + terminator).encode("utf-8")


def file_bytes(items: list[Item], delimiter: str, terminator: str) -> bytes:
    """The file, and each record's starting line counted from the bytes written."""
    out = [written(COLUMNS, delimiter, terminator)]
    line = 2
    for item in items:
        item.line = line
        out.append(item.data)
        line += item.data.count(b"\n")
    return b"".join(out)


# -------------------------------------------------------------- the generator

IDS = ["c1", "c2", "c3", "C1", " c2 ", "c-4", ""]
EMAILS = ["", "", "ann@example.org", "ANN@Example.org", "bob@example.org", " bob@example.org "]
DATES = ["2024-01-15", "2024-02-10", "2024-07-04", "2024-08-20"]  # away from DST changes
SCORES = ["", "1", "5", "3", "2.5", " 4 ", "4.0", "NA"]
BAD_DATES = ["2024-13-01", "2024-02-30", "31/12/2024", "yesterday", "2024-01-01T25:00:00",
             "01-01-2024", "2024-00-10", "2024-01-15 10:61:00"]
NOT_NUMBERS = ["abc", "five", "4 stars", "nan", "inf", "--1", "1e"]
OFF_SCALE = ["0", "6", "-1", "10", "5.5", "0.99"]
MISSING = ["", "NA", " ", "NULL"]
SPECIAL_TEXTS = ["a, b", 'say "hi"', "line1\nline2", "x\r\ny", "café ☕", "😀 ok", "NA", "  ",
                 "tab\there", "", "semi;colon|pipe", "two\n\nblank lines", "ends with CR\r",
                 "ünïcödé ß", "quote at end\""]

texts = st.one_of(
    st.sampled_from(SPECIAL_TEXTS),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
            max_size=10),
)


@st.composite
def timestamps(draw) -> str:
    date = draw(st.sampled_from(DATES))
    clock = draw(st.sampled_from(["00:00:00", "09:30:00", "12:00:59", "23:45:00"]))
    style = draw(st.sampled_from(["space", "T", "Z", "offset", "date", "utc", "padded"]))
    if style == "date":
        return date
    sep = "T" if style in ("T", "Z", "offset") else " "
    text = f"{date}{sep}{clock}"
    if style == "Z":
        text += "Z"
    elif style == "offset":
        text += draw(st.sampled_from(["+02:00", "-05:00", "+05:30", "+00:00", " +0100"]))
    elif style == "utc":
        text += " UTC"
    elif style == "padded":
        text = f" {text} "
    return text


@st.composite
def good_fields(draw, delimiter: str, single_line: bool = False) -> list[str]:
    cid = draw(st.sampled_from(IDS))
    email = draw(st.sampled_from(EMAILS))
    if norm(cid) is None and norm(email) is None:
        cid = "c1"
    comment = draw(texts)
    if single_line:
        comment = comment.replace("\r", " ").replace("\n", " ")
    # a quoted value may not open with a quote, the delimiter or a line end: those
    # would let an earlier unterminated quote close cleanly, and no reader could
    # then tell where the broken record ends
    if comment[:1] in ('"', delimiter, "\r", "\n"):
        comment = "x" + comment
    return [cid, email, draw(timestamps()), draw(st.sampled_from(SCORES)), comment]


@st.composite
def items(draw, delimiter: str, terminator: str) -> Item:
    kind = draw(st.sampled_from(
        ["good"] * 8 + ["bad_ts", "no_id", "not_number", "off_scale", "quote", "encoding",
                        "width", "blank"]))
    row = draw(good_fields(delimiter, single_line=kind in ("width", "encoding")))
    item = Item(kind, row)
    if kind == "good":
        item.data = written(row, delimiter, terminator)
    elif kind == "blank":
        item.data = terminator.encode()
    elif kind in ("bad_ts", "not_number", "off_scale", "no_id"):
        if kind == "bad_ts":
            row[2] = draw(st.sampled_from(BAD_DATES))
            item.column, item.value = "when", row[2]
        elif kind == "not_number":
            row[3] = draw(st.sampled_from(NOT_NUMBERS))
            item.column, item.value = "score", row[3]
        elif kind == "off_scale":
            row[3] = draw(st.sampled_from(OFF_SCALE))
            item.column, item.value = "score", row[3]
        else:
            row[0], row[1] = draw(st.sampled_from(MISSING)), draw(st.sampled_from(MISSING))
        item.data = written(row, delimiter, terminator)
    elif kind == "quote":
        # one value opens a quote that never closes; the line has no other quote
        at = draw(st.integers(0, 4))
        plain = ["c9", "zed@example.org", "2024-01-15 10:00:00", "3", "broken"]
        plain[at] = '"' + draw(st.sampled_from(["never closed", "oops", "a b c"]))
        # the reader sees the rest of the line as the unterminated value
        item.fields, item.column = plain, COLUMNS[at]
        item.value = delimiter.join(plain[at:])[1:]
        item.data = (delimiter.join(plain) + terminator).encode("utf-8")
    elif kind == "encoding":
        row[4] = draw(st.sampled_from(["café", "crème brûlée", "naïve"]))
        plain = [v if v.isascii() else "c1" for v in row[:4]] + [row[4]]
        item.fields, item.column = plain, "comment"
        item.data = written(plain, delimiter, terminator).replace(
            row[4].encode("utf-8"), row[4].encode("latin-1"))
    elif kind == "width":
        row = row + ["extra"] if draw(st.booleans()) else row[:4]
        item.fields = row
        item.data = written(row, delimiter, terminator)
    return item


@st.composite
def tables(draw):
    delimiter = draw(st.sampled_from(DELIMITERS))
    terminator = draw(st.sampled_from(["\n", "\r\n"]))
    tz = draw(st.sampled_from(TIMEZONES))
    rows = draw(st.lists(items(delimiter, terminator), min_size=12, max_size=40))
    order = draw(st.permutations(range(len(rows))))
    return delimiter, terminator, tz, rows, order


# ----------------------------------------------------------------- the checks


def snapshot(ws, tables=TABLES) -> dict[str, list]:
    return {t: sorted(ws.con.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr)
            for t in tables}


def event_contents(ws) -> list:
    return sorted(ws.con.execute(f"SELECT {EVENT_CONTENT} FROM events").fetchall(), key=repr)


def open_ws(root: Path, cfg: str, data: bytes):
    root.mkdir(parents=True)
    (root / "data.csv").write_bytes(data)
    (root / "keymoments.yaml").write_text(cfg, encoding="utf-8")
    return km.open(root)


def check_quarantine_row(item: Item, row: dict, n_fields: int) -> None:
    where = f"line {item.line} ({item.kind}): {row}"
    reason = row["reason"]
    assert row["file"].endswith("data.csv"), where
    if item.kind in ("bad_ts", "not_number", "off_scale", "no_id"):
        # a mapping-level rejection keeps the whole row as JSON, as the csv module reads it
        assert json.loads(row["raw"]) == dict(zip(COLUMNS, item.fields)), where
    if item.kind == "bad_ts":
        assert row["field"] == "ts" and row["value"] == item.value.strip(), where
        assert "timestamp" in reason and "ISO 8601" in reason and "'when'" in reason, where
    elif item.kind == "not_number":
        assert row["field"] == "rating" and row["value"] == item.value.strip(), where
        assert "not a number" in reason and "'score'" in reason, where
    elif item.kind == "off_scale":
        assert row["field"] == "rating" and row["value"] == item.value.strip(), where
        assert "outside the csat5 scale (1 to 5)" in reason and "'score'" in reason, where
    elif item.kind == "no_id":
        assert row["field"] == "identifiers", where
        assert "no identifier" in reason and "cid" in reason and "email" in reason, where
    elif item.kind == "quote":
        assert row["field"] == item.column and row["value"] == item.value, where
        assert reason.startswith(f"unbalanced quote in column '{item.column}'"), where
        assert row["raw"] == item.data.decode("utf-8").rstrip("\r\n"), where
    elif item.kind == "encoding":
        assert row["field"] == "comment", where
        bad = item.fields[4].encode("latin-1")
        first = next(b for b in bad if b >= 0x80)
        assert f"not valid utf-8 text (byte 0x{first:02x}" in reason, where
        assert "'comment'" in reason and "csv.encoding" in reason, where
        assert f"\\x{first:02x}" in row["raw"] and f"\\x{first:02x}" in row["value"], where
        assert row["raw"].split(f"\\x{first:02x}")[0] in item.data.decode("latin-1"), where
    elif item.kind == "width":
        assert reason.startswith(f"expected {len(COLUMNS)} fields, found {n_fields}"), where
        assert row["raw"] == item.data.decode("utf-8").rstrip("\r\n"), where
    else:
        raise AssertionError(f"unexpected quarantine row {where}")


def persons_partition(events: list[tuple]) -> set[frozenset]:
    """Union-find over the identifiers carried together: the expected persons, as
    sets of event indexes."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for _, _, ids, _, _ in events:
        keys = [f"{k}:{v}" for k, v in ids]
        for other in keys[1:]:
            parent[find(other)] = find(keys[0])
    groups: dict[str, set[int]] = {}
    for i, (_, _, ids, _, _) in enumerate(events):
        groups.setdefault(find(f"{ids[0][0]}:{ids[0][1]}"), set()).add(i)
    return {frozenset(g) for g in groups.values()}


@SETTINGS
@given(tables())
def test_ingest_matches_an_independent_reading(table):
    delimiter, terminator, tz, rows, order = table
    cfg = config(delimiter, tz)
    data = file_bytes(rows, delimiter, terminator)
    records = [r for r in rows if r.record]
    good = [r for r in records if r.good]
    bad = [r for r in records if not r.good]
    expected: dict[tuple, int] = {}  # canonical event -> first line
    for r in good:
        expected.setdefault(r.event(tz), r.line)

    with tempfile.TemporaryDirectory() as tmp:
        ws = open_ws(Path(tmp) / "one", cfg, data)
        rep = ws.ingest("s")

        # accounting
        assert rep.rows_read == len(records)
        assert rep.rows_read == rep.rows_loaded + rep.rows_quarantined + rep.rows_duplicate
        assert rep.rows_quarantined == len(bad)
        assert rep.rows_loaded == rep.events_loaded == len(expected)
        assert rep.rows_duplicate == len(good) - len(expected)

        # every good row's event is there exactly once, from its first line
        got = ws.con.execute("""
            SELECT event_type, ts, identifiers, rating, text, source_line, person_id, channel
            FROM events""").fetchall()
        as_tuples = [(e[0], e[1].astimezone(timezone.utc), tuple(sorted(e[2].items())), e[3],
                      e[4]) for e in got]
        assert sorted(as_tuples, key=repr) == sorted(expected, key=repr)
        assert {t: e[5] for t, e in zip(as_tuples, got)} == expected
        assert all(e[7] == "web" for e in got)

        # persons: identifiers seen on one event belong to one person
        persons = persons_partition(as_tuples)
        by_person: dict[str, set[int]] = {}
        for i, e in enumerate(got):
            by_person.setdefault(e[6], set()).add(i)
        assert {frozenset(g) for g in by_person.values()} == persons
        assert ws.con.execute("SELECT count(*) FROM people").fetchone()[0] == len(persons)

        # every bad row is quarantined once, at the line its record starts on
        q = ws.con.execute(
            "SELECT file, line, field, value, reason, raw FROM quarantine").fetchall()
        cols = ["file", "line", "field", "value", "reason", "raw"]
        q_rows = [dict(zip(cols, r)) for r in q]
        assert sorted(r["line"] for r in q_rows) == sorted(r.line for r in bad)
        by_line = {r["line"]: r for r in q_rows}
        for item in bad:
            check_quarantine_row(item, by_line[item.line], len(item.fields))

        # loading the same file again changes nothing
        before = snapshot(ws)
        again = ws.ingest("s")
        assert snapshot(ws) == before
        assert (again.rows_read, again.rows_loaded, again.events_loaded) == (len(records), 0, 0)
        assert again.rows_quarantined == len(bad) and again.rows_duplicate == len(good)
        assert ws.con.execute("SELECT count(*) FROM loads").fetchone()[0] == 2
        one_load = event_contents(ws)
        identity = snapshot(ws, ("identifiers", "identity_links", "people"))
        ws.close()

        # the same rows arriving out of order, in two loads (the shuffled file cut in
        # halves): the same events, ids, identifiers, links and people as one load
        shuffled = [rows[i] for i in order]
        half = len(shuffled) // 2
        ws = open_ws(Path(tmp) / "halves", cfg,
                     file_bytes(shuffled[:half], delimiter, terminator))
        first = ws.ingest("s")
        (Path(tmp) / "halves" / "data.csv").write_bytes(
            file_bytes(shuffled[half:], delimiter, terminator))
        second = ws.ingest("s")
        assert first.rows_read + second.rows_read == len(records)
        assert first.rows_quarantined + second.rows_quarantined == len(bad)
        assert first.events_loaded + second.events_loaded == len(expected)
        assert event_contents(ws) == one_load
        assert snapshot(ws, ("identifiers", "identity_links", "people")) == identity
        ws.close()


def test_the_generator_makes_every_kind_of_row():
    """The property test is only as good as its rows: every kind must come up, and
    the oracle must agree that bad values are bad (so the test can fail)."""
    seen: set[str] = set()

    @settings(derandomize=True, database=None, max_examples=60, phases=[Phase.generate],
              deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                    HealthCheck.data_too_large])
    @given(tables())
    def collect(table):
        seen.update(r.kind for r in table[3])

    collect()
    assert seen == {"good", "bad_ts", "no_id", "not_number", "off_scale", "quote", "encoding",
                    "width", "blank"}
    for text in BAD_DATES:
        try:
            instant(text, "UTC")
        except ValueError:
            continue
        raise AssertionError(f"{text!r} is a valid ISO date for Python: not a bad date")
    for text in NOT_NUMBERS:
        try:
            number = float(text)
        except ValueError:
            continue
        assert number != number or number in (float("inf"), float("-inf")), text
