"""Insights: CX metrics with intervals, predicted experience for the silent
majority, drivers, root causes ranked by the gain of fixing them, funnels and
churn. Each analysis returns a typed :class:`~keymoments.results.Result` (or a
small dataclass of them) whose ``meta`` holds sample sizes, intervals and method.

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
