"""Text cells are cleaned once in the mapping: trimmed of blanks (space, tab, CR, LF)
and NULL when blank or a null marker. The compiled SQL takes a shortcut for values
that need neither; the oracle is Python's ``str.strip`` on the same cells."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keymoments as km

NULLS = {"", "NULL", "null", "NA", "N/A"}
CONFIG = """
sources:
  s:
    path: cells.parquet
    identifiers: {customer_id: cid}
    event_type: {value: visit}
    ts: when
    agent: agent
    text: note
"""


def norm(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip(" \t\r\n")
    return None if value in NULLS else value


_cell = st.one_of(st.none(), st.lists(st.sampled_from(
    [" ", "\t", "\r", "\n", "a", "é", "NULL", "N/A", "x y", "\x0b", "bcdef"]),
    max_size=5).map("".join))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cells=st.lists(st.tuples(_cell, _cell), min_size=1, max_size=12))
def test_cells_are_cleaned_as_str_strip_does(tmp_path_factory, cells):
    root = tmp_path_factory.mktemp("ws")
    km.init(root).close()
    (root / "keymoments.yaml").write_text(CONFIG)
    n = len(cells)
    pq.write_table(pa.table({
        "cid": [f"c{i}" for i in range(n)],
        "when": ["2026-01-01T10:00:00Z"] * n,
        "agent": [a for a, _ in cells],
        "note": [b for _, b in cells],
    }), root / "cells.parquet")
    ws = km.open(root)
    try:
        ws.ingest("s")
        got = {r[0]: (r[1], r[2]) for r in ws.con.execute(
            "SELECT identifiers['customer_id'], agent, text FROM events").fetchall()}
    finally:
        ws.close()
    assert got == {f"c{i}": (norm(a), norm(b)) for i, (a, b) in enumerate(cells)}
