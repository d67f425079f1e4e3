"""Typed results: every analysis returns its data as an Arrow table plus metadata
(sample sizes, method, parameters), convertible to pandas and Polars.

>>> import pyarrow as pa
>>> r = Result(pa.table({"channel": ["web", "chat"], "events": [3, 1]}), {"method": "count"})
>>> len(r), r.meta["method"], r.to_pylist()[0]
(2, 'count', {'channel': 'web', 'events': 3})
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from .errors import MissingExtraError

__all__ = ["Result", "json_text"]


def json_text(obj: Any, indent: int | None = None) -> str:
    """``obj`` as strict JSON: a NaN or infinite number (an undefined rate, a hazard
    of nobody) becomes ``null``, which every JSON reader takes; other values that are
    not JSON types (times, decimals) as their text.

    >>> json_text({"hazard_rate": float("nan"), "n": [1, float("inf")], "who": "Zoë"})
    '{"hazard_rate": null, "n": [1, null], "who": "Zoë"}'
    """
    return json.dumps(_finite(obj), default=str, ensure_ascii=False, allow_nan=False,
                      indent=indent)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


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
