"""Write Arrow tables as CSV, Parquet or JSON lines, byte for byte the same every run.

Timestamps are ISO 8601 UTC strings (``2024-03-05T10:15:00Z``) in CSV and JSON lines,
and real ``timestamp[us, tz=UTC]`` columns in Parquet. Blank cells are empty in CSV,
``null`` in JSON lines.

>>> import json, tempfile, pathlib
>>> t = pa.table({"id": ["a,1"], "n": pa.array([None], pa.int64()),
...               "at": pa.array([0], pa.timestamp("s", tz="UTC"))})
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> write_table(t, d / "t.csv", "csv"); print((d / "t.csv").read_text(), end="")
"id","n","at"
"a,1",,"1970-01-01T00:00:00Z"
>>> write_table(t, d / "t.jsonl", "jsonl"); json.loads((d / "t.jsonl").read_text())
{'id': 'a,1', 'n': None, 'at': '1970-01-01T00:00:00Z'}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from ..io import atomic_open
from .columns import iso_timestamps

__all__ = ["FORMATS", "EXTENSIONS", "write_table"]

FORMATS = ("csv", "parquet", "jsonl")
EXTENSIONS = {"csv": "csv", "parquet": "parquet", "jsonl": "jsonl"}
_BATCH = 1_000_000
_ESCAPES = (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"))


def write_table(table: pa.Table, path: str | Path, fmt: str) -> None:
    """Write ``table`` to ``path`` in ``fmt`` (csv, parquet or jsonl)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    with atomic_open(path, "wb") as fh:
        if fmt == "parquet":
            pq.write_table(_timestamps_as(table, "parquet"), fh, compression="zstd")
        elif fmt == "csv":
            pcsv.write_csv(_timestamps_as(table, "csv"), fh)
        else:
            _write_jsonl(table, fh)


def _seconds(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return pc.fill_null(col.cast(pa.int64()), -1).to_numpy()


def _timestamps_as(table: pa.Table, fmt: str) -> pa.Table:
    for i, f in enumerate(table.schema):
        if pa.types.is_timestamp(f.type):
            col = table.column(i)
            if fmt == "parquet":
                table = table.set_column(i, f.name, col.cast(pa.timestamp("us", tz="UTC")))
            else:
                table = table.set_column(i, f.name, iso_timestamps(_seconds(col)))
    return table


def _escapes_needed(s: pa.Array) -> tuple[bool, bool]:
    """Whether a string array holds characters JSON escapes: (any of ``\\ " \\n \\r
    \\t``, any other control character), read from its bytes at numpy speed."""
    offsets_buf, data_buf = s.buffers()[1], s.buffers()[2]
    if data_buf is None or len(s) == 0:
        return False, False
    offsets = np.frombuffer(offsets_buf, dtype=np.int32)[s.offset : s.offset + len(s) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8)[offsets[0] : offsets[-1]]
    control = data < 32
    other = control & (data != 9) & (data != 10) & (data != 13)
    return bool((control | (data == 34) | (data == 92)).any()), bool(other.any())


def _json_values(col: pa.Array) -> pa.Array:
    """Each value of ``col`` as JSON text (``null`` for nulls)."""
    t = col.type
    if pa.types.is_timestamp(t):
        out = iso_timestamps(_seconds(col), quote=True)
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        s = col.cast(pa.string())
        special, control = _escapes_needed(s)
        if control:  # rare: let json escape it
            return pa.array([json.dumps(v, ensure_ascii=False) for v in s.to_pylist()])
        if special:
            for raw, esc in _ESCAPES:
                s = pc.replace_substring(s, raw, esc)
        out = pc.binary_join_element_wise('"', s, '"', "")
    elif pa.types.is_boolean(t):
        out = pc.if_else(col, "true", "false")
    else:
        out = col.cast(pa.string())
    return pc.fill_null(out, "null")


def _write_jsonl(table: pa.Table, fh: IO[bytes]) -> None:
    keys = [json.dumps(name, ensure_ascii=False) for name in table.column_names]
    for start in range(0, max(table.num_rows, 1), _BATCH):
        part = table.slice(start, _BATCH).combine_chunks()
        if part.num_rows == 0:
            break
        pieces: list = []
        for i, key in enumerate(keys):
            pieces += [("{" if i == 0 else ",") + key + ":", _json_values(part.column(i).chunk(0))]
        pieces.append("}\n")
        lines = pc.binary_join_element_wise(*pieces, "").cast(pa.large_string())
        # the lines are contiguous in the array's data buffer: write it in one go
        offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)
        first, last = offsets[lines.offset], offsets[lines.offset + len(lines)]
        fh.write(memoryview(lines.buffers()[2])[first:last])
