"""Typed requests for the insights: what a REST API or dashboard sends, validated
(unknown fields and bad values are errors that say which field), then ``run(ws)``
calls the analysis with exactly those arguments.

>>> req = MetricsRequest(metric="nps", by=["channel"], period="month")
>>> req.metric, req.correction
('nps', 'holm')
>>> MetricsRequest(metric="fcr", by="agent").by  # one name, as km.metrics takes it
['agent']
>>> MetricsRequest(metric="nps", colour="red")
Traceback (most recent call last):
...
keymoments.errors.ConfigError: request.colour: Extra inputs are not permitted
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationError

from ..config.base import Strict
from ..errors import ConfigError

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["MetricsRequest", "RootCausesRequest", "DriversRequest", "FunnelRequest",
           "ChurnRequest", "PredictedRequest", "parse_request"]

Outcome = Literal["feedback", "remembered", "nps", "csat", "repurchase", "churn"]

#: a list of names, or one name (as the analyses and the command line take it)
Names = Annotated[list[str], BeforeValidator(lambda v: [v] if isinstance(v, str) else v)]


class _Request(Strict):
    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            errors = exc.errors()
            where = [".".join(str(p) for p in e["loc"]) for e in errors]
            more = "".join(f"; request.{w}: {e['msg']}" for w, e in zip(where[1:], errors[1:]))
            raise ConfigError(errors[0]["msg"] + more, key=f"request.{where[0]}") from None

    def arguments(self) -> dict[str, Any]:
        return self.model_dump()


class MetricsRequest(_Request):
    """:func:`keymoments.metrics`."""

    metric: Literal["csat", "nps", "ces", "stars", "churn", "repeat_purchase", "conversion",
                    "fcr", "first_response", "resolution_time"] = "csat"
    by: Names = Field(default_factory=list)
    period: Literal["day", "week", "month", "quarter", "year"] | None = None
    since: str | None = None
    until: str | None = None
    inactive_days: float | None = Field(default=None, gt=0)
    confidence: float = Field(default=0.95, gt=0, lt=1)
    correction: Literal["holm", "bh", "none"] = "holm"
    min_n: int = Field(default=30, ge=1)

    def run(self, ws: Workspace):
        from .metrics import metrics

        args = self.arguments()
        return metrics(ws, args.pop("metric"), **args)


class RootCausesRequest(_Request):
    """:func:`keymoments.root_causes`."""

    outcome: Outcome = "feedback"
    threshold: float = Field(default=0.0, ge=-1, le=1)
    attributes: Names | None = None
    themes: bool = True
    within_days: float = Field(default=7.0, gt=0)
    min_journeys: int = Field(default=5, ge=1)
    confidence: float = Field(default=0.95, gt=0, lt=1)
    limit: int | None = Field(default=None, ge=1)

    def run(self, ws: Workspace):
        from .root_causes import root_causes

        return root_causes(ws, **self.arguments())


class DriversRequest(_Request):
    """:func:`keymoments.drivers`."""

    outcome: Outcome = "feedback"
    journey_type: Names | None = None
    attributes: Names | None = None
    min_support: int = Field(default=20, ge=1)
    valences: bool = False
    n_boot: int = Field(default=50, ge=0, le=2000)
    folds: int = Field(default=5, ge=2, le=20)
    alpha: float = Field(default=1.0, gt=0)
    confidence: float = Field(default=0.95, gt=0, lt=1)
    seed: int = 0

    def run(self, ws: Workspace):
        from .drivers import drivers

        args = self.arguments()
        return drivers(ws, args.pop("outcome"), **args)


class FunnelRequest(_Request):
    """:func:`keymoments.funnel`."""

    steps: list[str] = Field(default_factory=lambda: [
        "stage:awareness", "stage:consideration", "moment:purchase", "moment:post_purchase",
        "stage:loyalty"], min_length=2)
    by: str | None = None
    within_days: float = Field(default=30.0, gt=0)
    unit: Literal["person", "journey"] = "person"
    confidence: float = Field(default=0.95, gt=0, lt=1)
    correction: Literal["holm", "bh", "none"] = "holm"
    min_n: int = Field(default=30, ge=1)

    def run(self, ws: Workspace):
        from .funnel import funnel

        args = self.arguments()
        return funnel(ws, args.pop("steps"), **args)


class ChurnRequest(_Request):
    """:func:`keymoments.churn`."""

    by: str | None = None
    kind: Literal["contractual", "inactivity"] = "contractual"
    inactive_days: float = Field(default=90.0, gt=0)
    tenure_measure: str | None = None
    unit_days: float = Field(default=1.0, gt=0)
    churn_events: Names | None = None
    horizons: tuple[float, ...] | None = None
    confidence: float = Field(default=0.95, gt=0, lt=1)
    min_group: int = Field(default=10, ge=1)

    def run(self, ws: Workspace):
        from .churn import churn

        return churn(ws, **self.arguments())


class PredictedRequest(_Request):
    """:func:`keymoments.predicted_experience`."""

    metric: Literal["csat", "nps"] = "csat"
    by: str | None = None
    folds: int = Field(default=5, ge=2, le=20)
    bins: int = Field(default=10, ge=2, le=50)
    confidence: float = Field(default=0.95, gt=0, lt=1)
    seed: int = 0

    def run(self, ws: Workspace):
        from .predicted import predicted_experience

        args = self.arguments()
        return predicted_experience(ws, args.pop("metric"), **args)


_KINDS = {"metrics": MetricsRequest, "root_causes": RootCausesRequest, "drivers": DriversRequest,
          "funnel": FunnelRequest, "churn": ChurnRequest, "predicted": PredictedRequest}


def parse_request(analysis: str, body: dict[str, Any]) -> _Request:
    """The request of ``analysis`` (metrics, root_causes, drivers, funnel, churn,
    predicted) from a JSON body.

    >>> parse_request("funnel", {"steps": ["page_view", "order_placed"]}).unit
    'person'
    """
    if analysis not in _KINDS:
        raise ConfigError(f"unknown analysis {analysis!r}; use one of {', '.join(_KINDS)}",
                          key="request")
    return _KINDS[analysis](**body)
