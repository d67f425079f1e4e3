"""Insights: CX metrics with intervals, predicted experience for the silent
majority, drivers, root causes ranked by the gain of fixing them, funnels and
churn. Each analysis returns a typed :class:`~keymoments.results.Result` (or a
small dataclass of them) whose ``meta`` holds sample sizes, intervals and method.

Engine: the heavy part of every analysis is plain SQL over the workspace tables
(aggregates, joins, ``min_by``/``max_by``, ``FILTER``, ``date_trunc``, map lookups),
which Spark SQL also reads; the small per-group results are then handled in
numpy/scipy/scikit-learn/lifelines. Not yet run on Spark: run verbatim on Spark SQL
(a review, 2026-12-01), 7 of 11 analyses' statements fail on these DuckDB-only
spellings, each with its Spark equivalent: ``epoch(ts)`` (``unix_micros(ts) / 1e6``:
``unix_timestamp`` drops the fraction), ``regexp_matches(s, p)`` (``s rlike p``),
``regexp_replace(..., 'g')`` (no flag), ``unnest(map_keys(m)) AS t(k)`` in a lateral
join (``LATERAL VIEW explode(map_keys(m))``), identifiers in double quotes such as
``"group"`` (backticks), ``CAST(x AS VARCHAR)`` (``STRING``) and ``timezone(zone, ts)``
for periods in a workspace's zone (``from_utc_timestamp``). The Spark scale-out work
rewrites them as Ibis expressions, as the engine (:mod:`keymoments.pipeline`) is.

>>> import keymoments as km
>>> km.metrics is metrics
True
"""

from .alive import BGNBD, probability_alive
from .churn import ChurnResult, churn
from .drivers import drivers
from .funnel import LIFECYCLE, funnel
from .metrics import METRICS, metrics
from .predicted import PredictedExperience, predicted_experience
from .root_causes import OUTCOMES, recurrence, root_causes

__all__ = [
    "BGNBD", "ChurnResult", "LIFECYCLE", "METRICS", "OUTCOMES", "PredictedExperience", "churn",
    "drivers", "funnel", "metrics", "predicted_experience", "probability_alive", "recurrence",
    "root_causes",
]  # fmt: skip
