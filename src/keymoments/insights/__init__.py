"""Insights: CX metrics with intervals, predicted experience for the silent
majority, drivers, root causes ranked by the gain of fixing them, funnels and
churn. Each analysis returns a typed :class:`~keymoments.results.Result` (or a
small dataclass of them) whose ``meta`` holds sample sizes, intervals and method.

Engine: the heavy part of every analysis is plain SQL over the workspace tables
(aggregates, joins, ``min_by``/``max_by``, ``FILTER``, ``date_trunc``, map lookups),
which Spark SQL also reads; the small per-group results are then handled in
numpy/scipy/scikit-learn/lifelines. DuckDB-only spellings, each with its Spark
equivalent: ``epoch(ts)`` (``unix_micros(ts) / 1e6``: ``unix_timestamp`` drops the
fraction), ``regexp_matches(s, p)`` (``s rlike p``), ``regexp_replace(..., 'g')`` (no
flag), ``unnest(map_keys(m))`` to list attribute keys (``explode(map_keys(m))``). Not yet
run on Spark.

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
