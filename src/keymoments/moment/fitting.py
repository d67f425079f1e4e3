"""Fit the remembered score on a workspace and keep the evidence.

The comparison of models is stored in ``remembered_models``. When the learned
model explains the feedback outcome better than the peak-end default, it rescores
``journeys.remembered`` (which then names ``learned`` as its model); journeys are
otherwise left with the default.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pyarrow as pa

from ..sql import rollback
from .remembered import FEATURES, RememberedScore

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["fit_remembered"]


def fit_remembered(ws: Workspace, outcome: str = "feedback", apply: bool = True,
                   **options) -> RememberedScore:
    """Fit, compare and (with ``apply``) store; returns the fitted model."""
    col = RememberedScore.outcome_column(outcome)  # type: ignore[arg-type]
    cols = ", ".join(FEATURES)
    table = ws.con.execute(
        f"SELECT journey_id, {cols}, {col} FROM journeys WHERE {col} IS NOT NULL "
        f"AND n_valenced > 0 ORDER BY journey_id").to_arrow_table()
    model = RememberedScore(outcome=outcome, **options).fit(table)  # type: ignore[arg-type]
    if not apply:
        return model
    con = ws.con
    con.execute("BEGIN TRANSACTION")
    try:
        weights = json.dumps({f: list(v) for f, v in model.weights_.items()}
                             | {"intercept": model.intercept_})
        con.execute("UPDATE remembered_models SET chosen = FALSE WHERE outcome = ?", [outcome])
        for s in model.scores_.values():
            con.execute(
                "INSERT INTO remembered_models VALUES (now(), ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [outcome, s.model, weights if s.model == "learned" else None, s.metric, s.score,
                 s.low, s.high, model.n_, s.model == model.best_ and outcome == "feedback"])
        if outcome == "feedback" and model.best_ == "learned":
            rows = ws.con.execute(
                f"SELECT journey_id, {cols} FROM journeys WHERE n_valenced > 0").to_arrow_table()
            X = {f: rows.column(f).to_numpy(zero_copy_only=False).astype(float) for f in FEATURES}
            scores = model.predict(X)
            con.register("_km_rem", pa.table({"journey_id": rows.column("journey_id"),
                                               "score": pa.array(scores, pa.float64())}))
            con.execute("""UPDATE journeys SET remembered = r.score, remembered_model = 'learned'
                           FROM _km_rem r WHERE journeys.journey_id = r.journey_id""")
            con.unregister("_km_rem")
        con.execute("COMMIT")
    except BaseException:
        rollback(con)
        raise
    return model
