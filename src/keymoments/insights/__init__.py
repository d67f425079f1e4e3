"""Insights: CX metrics with intervals, predicted experience, drivers, root causes,
funnels and churn, each a typed :class:`~keymoments.results.Result`."""

from .metrics import METRICS, metrics

__all__ = ["METRICS", "metrics"]
