"""The maps a mapping builds (identifiers, refs, measures, attributes) hold exactly
the entries whose value is present. The compiled SQL builds them three ways (a
struct cast to a MAP for up to three keys, ``MAP(keys, values)`` when keys differ
only in case, a filtered list of structs beyond three); the oracle is a Python
dict of the non-NULL pairs, on the same values run through DuckDB."""

from __future__ import annotations

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from keymoments.sources.mapping import _map
from keymoments.sql import literal

_KEYS = ["order", "Order", "ticket", "a b'c", "é", "id", "session"]


@st.composite
def _entries(draw, value):
    keys = draw(st.lists(st.sampled_from(_KEYS), unique=True, max_size=5))
    return [(k, draw(st.one_of(st.none(), value))) for k in keys]


def _evaluate(entries, value_type):
    # (a float as text: DuckDB reads a numeric literal of up to 18 digits as a DECIMAL,
    # whose cast to DOUBLE can differ from the float in the last bit)
    values = [(k, f"CAST({'NULL' if v is None else literal(repr(v) if isinstance(v, float) else v)}"
                  f" AS {value_type})") for k, v in entries]
    sql = _map(values, value_type) if values else f"MAP([]::VARCHAR[], []::{value_type}[])"
    row = duckdb.connect().execute(f"SELECT {sql} AS m, typeof(m)").fetchone()
    return row[0], row[1]


@settings(max_examples=150, deadline=None)
@given(_entries(st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)),
                               max_size=4)))  # (SQL text: no NUL, no lone surrogate)
def test_text_maps_hold_the_present_values(entries):
    got, kind = _evaluate(entries, "VARCHAR")
    assert kind == "MAP(VARCHAR, VARCHAR)"
    assert got == {k: v for k, v in entries if v is not None}


@settings(max_examples=150, deadline=None)
@given(_entries(st.floats(allow_nan=False, allow_infinity=False, width=64)))
def test_number_maps_hold_the_present_values(entries):
    got, kind = _evaluate(entries, "DOUBLE")
    assert kind == "MAP(VARCHAR, DOUBLE)"
    assert got == {k: v for k, v in entries if v is not None}


def test_each_form_is_used():
    one = _map([("order", "x")])
    assert "CAST({'order': x} AS MAP(VARCHAR, VARCHAR))" in one
    assert "MAP(['Order', 'order'], [x, y])" in _map([("Order", "x"), ("order", "y")])
    assert _map([(k, k) for k in "abcd"]).startswith("map_from_entries(list_filter(")
