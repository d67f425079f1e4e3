"""Numbers written as text and their decimal mark: ``1,234`` is 1234 in a US export
and 1.234 in a European one, so with no ``decimal`` set it is quarantined (asking
for the setting), never read as either. Every expected number below is written by
hand, or is Python's own formatting of the value read back."""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import keymoments as km

CONFIG = """
sources:
  s:
    path: {path}
    identifiers: {{customer_id: id}}
    event_type: {{value: visit}}
    ts: when
    rating: {{column: score, scale: stars5}}
    measures: {{amount: amount}}
    {extra}
"""


def load(make_workspace, rows: list[tuple[str, str]], extra: str = "", folder: str = "ws"):
    """A CSV of (score, amount) rows, one customer each (c2, c3... by line); the
    loaded amounts and ratings by line, and the quarantine by line."""
    text = "id,when,score,amount\n" + "".join(
        f'c{i + 2},2024-01-01,"{score}","{amount}"\n' for i, (score, amount) in enumerate(rows))
    ws = make_workspace(CONFIG.format(path="d.csv", extra=extra), {"d.csv": text}, folder=folder)
    rep = ws.ingest("s")
    assert rep.rows_read == len(rows)
    assert rep.rows_read == rep.rows_loaded + rep.rows_quarantined + rep.rows_duplicate
    got = {line: (rating, measures.get("amount")) for line, rating, measures in ws.con.execute(
        "SELECT source_line, rating, measures FROM events").fetchall()}
    q = {r["line"]: r for r in ws.quarantine().to_pylist()}
    return got, q


def test_with_no_decimal_mark_a_comma_that_may_group_thousands_is_quarantined(make_workspace):
    got, q = load(make_workspace, [
        ("4", "12.5"),          # 2
        ("4,5", "12,5"),        # 3 a decimal comma, as before
        ("3", "1,234"),         # 4 1234 or 1.234?
        ("3", "-1,234"),        # 5
        ("3", "1,234.56"),      # 6 both marks
        ("3", "1.234,56"),      # 7 both marks
        ("3", "1,234,567"),     # 8 commas group thousands: not a decimal comma
        ("3", "1,2345"),        # 9 four digits: a decimal comma
        ("3", "0,05"),          # 10
        ("1,000", "1"),         # 11 a rating too
        ("3", "1,2.3"),         # 12 no reading at all
        ("3", "7"),             # 13
    ])
    assert got == {2: (4.0, 12.5), 3: (4.5, 12.5), 9: (3.0, 1.2345), 10: (3.0, 0.05),
                   13: (3.0, 7.0)}
    assert sorted(q) == [4, 5, 6, 7, 8, 11, 12]
    for line, value in [(4, "1,234"), (5, "-1,234"), (6, "1,234.56"), (7, "1.234,56"),
                        (8, "1,234,567")]:
        row = q[line]
        assert (row["field"], row["value"]) == ("measures.amount", value)
        assert row["reason"].startswith(f"'{value}' in column 'amount'"), row["reason"]
        assert "set the source's decimal to '.'" in row["reason"]
        assert "or ','" in row["reason"]
    assert (q[11]["field"], q[11]["value"]) == ("rating", "1,000")
    assert q[11]["reason"].startswith("'1,000' in column 'score'")
    assert q[12]["reason"] == "not a number in column 'amount'"


def test_decimal_point_reads_commas_as_thousands_only_in_groups_of_three(make_workspace):
    got, q = load(make_workspace, [
        ("4", "1,234"),             # 2
        ("4", "-1,234,567.25"),     # 3
        ("4", "12.5"),              # 4
        ("4", "999"),               # 5
        ("4", "12,5"),              # 6 not a group of three
        ("4", "1,23,456"),          # 7 (Indian grouping is not read)
        ("4", "1234,567"),          # 8 a group of four before the comma
        ("4", "1.234,5"),           # 9
        ("4,5", "1"),               # 10
    ], extra="decimal: '.'")
    assert got == {2: (4.0, 1234.0), 3: (4.0, -1234567.25), 4: (4.0, 12.5), 5: (4.0, 999.0)}
    assert sorted(q) == [6, 7, 8, 9, 10]
    assert q[6]["reason"] == "not a number in column 'amount' with the decimal mark '.'"
    assert (q[10]["field"], q[10]["value"]) == ("rating", "4,5")


def test_decimal_comma_reads_dots_as_thousands_only_in_groups_of_three(make_workspace):
    got, q = load(make_workspace, [
        ("4", "1.234,56"),          # 2
        ("4", "12,5"),              # 3
        ("4", "1.234"),             # 4 a thousand two hundred and thirty-four
        ("4", "-1.234.567"),        # 5
        ("4,5", "0,05"),            # 6
        ("4", "8"),                 # 7
        ("4", "12.5"),              # 8 a dot is no decimal mark here
        ("4", "1,234.5"),           # 9
        ("4", "1.23,4"),            # 10
    ], extra="decimal: ','")
    assert got == {2: (4.0, 1234.56), 3: (4.0, 12.5), 4: (4.0, 1234.0), 5: (4.0, -1234567.0),
                   6: (4.5, 0.05), 7: (4.0, 8.0)}
    assert sorted(q) == [8, 9, 10]
    assert q[8]["reason"] == "not a number in column 'amount' with the decimal mark ','"


@pytest.mark.parametrize("extra", ["", "decimal: '.'", "decimal: ','"])
def test_a_number_is_a_sign_digits_one_decimal_mark_and_an_exponent(make_workspace, extra):
    """DuckDB's cast also reads '+-1' as -1 and '1_000' or '0_1' as 1000 or 1: such
    values changed silently. They are not numbers, whatever the decimal mark."""
    got, q = load(make_workspace, [
        ("4", "+-1"),           # 2
        ("+-4", "5"),           # 3 a rating too
        ("4", "1_0_0_0"),       # 4
        ("4", "0_1"),           # 5
        ("4", "-1_000"),        # 6
        ("4", "1_000,5"),       # 7
        ("4", "+-1,5"),         # 8
        ("+4", "-15e2"),        # 9
        ("4", "2E+1"),          # 10
        ("4", "007"),           # 11
    ], extra=extra)
    assert got == {9: (4.0, -1500.0), 10: (4.0, 20.0), 11: (4.0, 7.0)}
    assert sorted(q) == [2, 3, 4, 5, 6, 7, 8]
    for line, row in q.items():
        field, column, value = (("rating", "score", "+-4") if line == 3 else
                                ("measures.amount", "amount", row["value"]))
        assert (row["field"], row["value"]) == (field, value)
        assert row["reason"].startswith(f"not a number in column '{column}'"), row["reason"]


@pytest.mark.parametrize("decimal", [".", ","])
def test_numbers_formatted_by_python_read_back(make_workspace, decimal):
    """The oracle is Python's own formatting: ``f"{x:,.2f}"`` groups thousands with
    commas (swapped for a European export), and reads back as ``round(x, 2)``."""
    rng = random.Random(7)
    values = [rng.choice([-1, 1]) * rng.uniform(0, 10.0 ** rng.randint(0, 9))
              for _ in range(150)]
    values += [0.0, 999.994, 1000.0, -1000.5, 123456789.0]
    us = [f"{v:,.2f}" for v in values]
    written = us if decimal == "." else [
        u.replace(",", "_").replace(".", ",").replace("_", ".") for u in us]
    got, q = load(make_workspace, [("3", w) for w in written], extra=f"decimal: '{decimal}'")
    assert q == {}
    assert [got[i + 2][1] for i in range(len(values))] == [float(f"{v:.2f}") for v in values]
    assert sum("," in w and "." in w for w in written) > 60  # grouped, with decimals


def test_typed_numbers_ignore_the_decimal_mark(make_workspace, tmp_path):
    table = pa.table({"id": ["a", "b"], "when": ["2024-01-01", "2024-01-02"],
                      "score": pa.array([4, 5], pa.int64()),
                      "amount": pa.array([1234.5, 0.25])})
    path = tmp_path / "d.parquet"
    pq.write_table(table, path)
    ws = make_workspace(CONFIG.format(path="d.parquet", extra="decimal: ','"),
                        {"d.parquet": path.read_bytes()})
    rep = ws.ingest("s")
    assert (rep.rows_loaded, rep.rows_quarantined) == (2, 0)
    got = ws.con.execute("SELECT rating, measures['amount'] FROM events ORDER BY ts").fetchall()
    assert got == [(4.0, 1234.5), (5.0, 0.25)]


def test_an_unknown_decimal_mark_is_a_config_error(make_workspace):
    with pytest.raises(km.ConfigError, match="sources.s.decimal: Input should be '.' or ','"):
        make_workspace(CONFIG.format(path="d.csv", extra="decimal: ';'"),
                       {"d.csv": "id,when,score,amount\n"})
