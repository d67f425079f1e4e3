"""Results convert to Arrow, pandas and Polars without losing rows, types or values."""

from __future__ import annotations

import sys
from datetime import datetime, timezone

import pyarrow as pa
import pytest

import keymoments as km
from keymoments.results import Result

TABLE = pa.table({
    "person_id": pa.array(["p-1", "p-2", None], pa.string()),
    "ts": pa.array([datetime(2024, 1, 1, 9, 30, tzinfo=timezone.utc),
                    datetime(2024, 2, 29, 23, 59, 59, tzinfo=timezone.utc), None],
                   pa.timestamp("us", tz="UTC")),
    "rating": pa.array([4.5, None, 1.0], pa.float64()),  # NULL, never NaN
    "n_events": pa.array([3, 0, 7], pa.int64()),
    "channels": pa.array([["web", "chat"], [], None], pa.list_(pa.string())),
})


def test_arrow_is_the_data_itself():
    r = Result(TABLE, {"method": "test"})
    assert r.to_arrow() is TABLE
    assert len(r) == 3
    assert r.to_pylist()[0] == {"person_id": "p-1", "ts": datetime(2024, 1, 1, 9, 30,
                                                                   tzinfo=timezone.utc),
                                "rating": 4.5, "n_events": 3, "channels": ["web", "chat"]}


def test_pandas_round_trip():
    df = Result(TABLE).to_pandas()
    assert list(df.columns) == TABLE.column_names and len(df) == 3
    assert str(df["ts"].dt.tz) == "UTC"
    back = pa.Table.from_pandas(df, schema=TABLE.schema, preserve_index=False)
    assert back.equals(TABLE)
    assert back.column("rating").null_count == 1  # the missing rating stays missing


def test_polars_round_trip():
    import polars as pl

    df = Result(TABLE).to_polars()
    assert isinstance(df, pl.DataFrame) and df.shape == (3, 5)
    assert df["rating"].null_count() == 1 and df["rating"].is_nan().sum() == 0
    assert df.to_arrow().cast(TABLE.schema).equals(TABLE)


def test_events_round_trip_with_maps(make_workspace):
    ws = make_workspace(
        "sources:\n  s:\n    path: s.csv\n    identifiers: {customer_id: cid, email: mail}\n"
        "    event_type: {value: visit}\n    ts: ts\n    measures: {amount: amt}\n",
        {"s.csv": "cid,mail,amt,ts\n1,a@x.io,9.5,2024-01-01T00:00:00Z\n2,,,2024-01-02T00:00:00Z\n"})
    ws.ingest("s")
    events = ws.events()
    table = events.to_arrow()
    back_pd = pa.Table.from_pandas(events.to_pandas(), schema=table.schema, preserve_index=False)
    assert back_pd.equals(table)
    assert events.to_polars().to_arrow().cast(table.schema).equals(table)
    assert [dict(r["identifiers"]) for r in events.to_pylist()] == [
        {"customer_id": "1", "email": "a@x.io"}, {"customer_id": "2"}]


def test_missing_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "polars", None)  # import polars -> ImportError
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(km.MissingExtraError, match=r"keymoments\[polars\]"):
        Result(TABLE).to_polars()
    with pytest.raises(km.MissingExtraError, match=r"keymoments\[pandas\]"):
        Result(TABLE).to_pandas()
