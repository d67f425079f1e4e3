"""Fit the remembered score on a workspace and keep the evidence.

The comparison of models is stored in ``remembered_models``. When the learned
model beats the peak-end default on the feedback outcome (its gain's paired
interval above 0, see :mod:`keymoments.moment.remembered`), it scores
``journeys.remembered`` (which then names ``learned`` as its model) and is marked
``chosen``; otherwise peak-end is chosen and scores them. A build and a live update
score the journeys they write with the chosen model (:func:`apply_chosen`), so a
rebuild keeps the learned scores.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ..sql import rollback
from .remembered import FEATURES, RememberedScore

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["apply_chosen", "fit_remembered", "fit_table"]


def fit_remembered(ws: Workspace, outcome: str = "feedback", apply: bool = True,
                   **options) -> RememberedScore:
    """Fit, compare and (with ``apply``) store; returns the fitted model."""
    table = fit_table(ws, outcome)
    model = RememberedScore(outcome=outcome, **options).fit(table)  # type: ignore[arg-type]
    if not apply:
        return model
    con = ws.con
    scoring = outcome == "feedback"  # (only the feedback fit scores the journeys)
    con.execute("BEGIN TRANSACTION")
    try:
        weights = json.dumps({f: list(v) for f, v in model.weights_.items()}
                             | {"intercept": model.intercept_})
        if scoring:
            con.execute("UPDATE remembered_models SET chosen = FALSE WHERE outcome = ?", [outcome])
        for s in model.scores_.values():
            con.execute(
                "INSERT INTO remembered_models VALUES (now(), ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [outcome, s.model, weights if s.model == "learned" else None, s.metric, s.score,
                 s.low, s.high, model.n_, scoring and s.model == model.chosen_])
        if scoring:
            apply_chosen(ws)
        con.execute("COMMIT")
    except BaseException:
        rollback(con)
        raise
    return model


def fit_table(ws: Workspace, outcome: str = "feedback"):
    """The journeys a fit of ``outcome`` reads (Arrow: ``journey_id``, the moment
    features, the outcome's column), those with the outcome known and a scored event
    before it. Feedback and repurchase read the stored features (the scored events
    before the journey's first rated feedback); churn reads them computed again up to
    the first churn-stage event too: a cancellation in the journey is the churn
    itself, and its valence among the features would predict churn from churn."""
    col = RememberedScore.outcome_column(outcome)  # type: ignore[arg-type]
    cols = ", ".join(FEATURES)
    if outcome != "churn":
        return ws.con.execute(
            f"SELECT journey_id, {cols}, {col} FROM journeys WHERE {col} IS NOT NULL "
            f"AND n_valenced > 0 ORDER BY journey_id").to_arrow_table()
    from ..engine import backend
    from ..journey.summary import moment_candidates, moment_features

    b = backend(ws)
    feats = moment_features(moment_candidates(b.table("journey_events"), ws.config.moments,
                                              before_churn=True))
    j = b.table("journeys")
    j = j.filter(j[col].notnull()).select("journey_id", col)
    t = j.join(feats, "journey_id").select("journey_id", *FEATURES, col)
    return t.order_by("journey_id").to_pyarrow()


def remembered_sql(weights: dict | None) -> str:
    """The remembered score of a journeys row: the learned model's (``weights`` as
    stored: feature -> [weight, low, high] and ``intercept``; clipped to [-1, 1], a
    missing trend as 0, as :meth:`RememberedScore.predict`) or peak-end's (None).

    >>> remembered_sql(None)
    '((CASE WHEN abs(peak_v) >= abs(valley_v) THEN peak_v ELSE valley_v END) + end_v) / 2'
    """
    if weights is None:
        intense = "CASE WHEN abs(peak_v) >= abs(valley_v) THEN peak_v ELSE valley_v END"
        return f"(({intense}) + end_v) / 2"
    terms = " + ".join(
        f"{_double(weights[f][0])} * {'coalesce(trend_v, 0)' if f == 'trend_v' else f}"
        for f in FEATURES)
    return f"greatest(-1.0, least(1.0, {_double(weights['intercept'])} + {terms}))"


def _double(x: float) -> str:
    """A double as SQL, exactly: a bare ``0.014896310617472075`` is read as a DECIMAL,
    whose conversion to a double is an ulp off for ~8% of doubles (the live service's
    Python engine, which uses the double itself, then differed from a build).

    >>> _double(0.1)
    "CAST('0.1' AS DOUBLE)"
    """
    return f"CAST('{float(x)!r}' AS DOUBLE)"


def chosen_weights(ws: Workspace) -> dict | None:
    """The learned weights scoring the journeys (the latest chosen feedback fit, when
    the learned model is it), or None: peak-end scores them."""
    row = ws.con.execute(
        "SELECT model, weights FROM remembered_models WHERE outcome = 'feedback' AND chosen "
        "ORDER BY fitted_at DESC LIMIT 1").fetchone()
    return json.loads(row[1]) if row and row[0] == "learned" and row[1] else None


def apply_chosen(ws: Workspace, where: str = "TRUE", only_learned: bool = False,
                 table: str = "journeys") -> None:
    """Score the journeys matching ``where`` (SQL on ``table``: ``journeys`` or a
    table of its columns) with the chosen model. ``only_learned``: do nothing when
    peak-end is chosen (the derived rows already hold its score: a live update)."""
    from ..sql import ident

    weights = chosen_weights(ws)
    if weights is None and only_learned:
        return
    model = "learned" if weights is not None else "peak_end"
    ws.con.execute(f"UPDATE {ident(table)} SET remembered = {remembered_sql(weights)}, "
                   f"remembered_model = '{model}' WHERE n_valenced > 0 AND ({where})")
