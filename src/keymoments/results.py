"""Typed results: every analysis returns its data as an Arrow table plus metadata
(sample sizes, method, parameters), convertible to pandas and Polars.

>>> import pyarrow as pa
>>> r = Result(pa.table({"channel": ["web", "chat"], "events": [3, 1]}), {"method": "count"})
>>> len(r), r.meta["method"], r.to_pylist()[0]
(2, 'count', {'channel': 'web', 'events': 3})
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from .errors import MissingExtraError

__all__ = ["Result"]


@dataclass(frozen=True)
class Result:
    """A frame of results (Arrow) and what describes it (``meta``)."""

    data: pa.Table
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.data.num_rows

    def to_arrow(self) -> pa.Table:
        """The data as a ``pyarrow.Table``."""
        return self.data

    def to_pylist(self) -> list[dict[str, Any]]:
        """The rows as dictionaries (what a JSON API serves)."""
        return self.data.to_pylist()

    def to_pandas(self):
        """The data as a ``pandas.DataFrame`` (needs pandas)."""
        try:
            import pandas  # noqa: F401
        except ImportError:
            raise MissingExtraError("pandas", "pandas") from None
        return self.data.to_pandas()

    def to_polars(self):
        """The data as a ``polars.DataFrame`` (needs polars)."""
        try:
            import polars as pl
        except ImportError:
            raise MissingExtraError("polars", "polars") from None
        return pl.from_arrow(self.data)

    def __repr__(self) -> str:
        cols = ", ".join(self.data.column_names[:8])
        return f"Result({self.data.num_rows} rows: {cols}; meta={sorted(self.meta)})"
