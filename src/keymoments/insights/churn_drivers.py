"""Churn drivers: which attributes and experiences change the hazard of churning.

A Cox proportional-hazards model (lifelines) on one row per person, with the
duration and churn flag of :func:`.churn.churn_table` and, as yes/no covariates,
the person's latest value of each attribute (``contract=Month-to-month``) and
whether their first keyed journey had a valley. Each value is compared with the
most common value of its attribute (the reference, left out). Reported: hazard
ratio with interval and p-value per covariate, and the model's concordance on
held-out folds (0.5 = no better than chance).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from ..errors import KeymomentsError
from ..results import Result
from ..sql import literal
from .churn import churn_table

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["churn_drivers"]


def churn_drivers(ws: Workspace, *, attributes: list[str] | None = None, kind: str = "contractual",
                  inactive_days: float = 90.0, tenure_measure: str | None = None,
                  unit_days: float = 1.0, churn_events: list[str] | None = None,
                  min_support: int = 20, folds: int = 5,
                  penalizer: float = 0.0, confidence: float = 0.95, seed: int = 0) -> Result:
    """Hazard ratios of attribute values (and a first-journey valley) for churn.

    ``attributes``: attribute keys to use (default: every key with 2 to 20 values).
    ``penalizer``: lifelines' ridge penalty; 0 (the default) gives the plain
    maximum-likelihood hazard ratios and intervals. A penalty shrinks both toward 1
    (on the telco data, 0.01 turned a two-year contract's 0.022 into 0.047), so it is
    used only when the plain fit does not converge (separation), and then named in
    ``meta["warnings"]``.

    >>> import tempfile, keymoments as km
    >>> from keymoments.insights.churn_drivers import churn_drivers
    >>> ws = km.init(tempfile.mkdtemp())
    >>> churn_drivers(ws)
    Traceback (most recent call last):
    ...
    keymoments.errors.KeymomentsError: no people to follow: load and build the workspace first
    >>> ws.close()
    """
    import pandas as pd
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError
    from lifelines.utils import concordance_index

    base = churn_table(ws, kind=kind, inactive_days=inactive_days, tenure_measure=tenure_measure,
                       unit_days=unit_days, churn_events=churn_events)
    if base.num_rows == 0:
        raise KeymomentsError("no people to follow: load and build the workspace first")
    if attributes is None:
        rows = ws.con.execute("SELECT k, count(DISTINCT attributes[k]) FROM events, "
                              "unnest(map_keys(attributes)) AS t(k) GROUP BY k ORDER BY k").fetchall()
        attributes = [k for k, nv in rows if 1 < nv <= 20]
    frame = pd.DataFrame({"person_id": base.column("person_id").to_pylist(),
                          "T": np.maximum(base.column("duration").to_numpy().astype(float), 1e-9),
                          "E": base.column("churned").to_numpy().astype(int)})
    covariates, references = [], {}
    for k in attributes:
        vals = ws.con.execute(f"SELECT person_id, max_by(attributes[{literal(k)}], ts) FROM events "
                              f"WHERE attributes[{literal(k)}] IS NOT NULL GROUP BY person_id").fetchall()
        got = frame["person_id"].map(dict(vals))
        counts = got.value_counts()
        if len(counts) < 2:
            continue
        references[k] = str(counts.index[0])
        for v, n in counts.items():
            if v == counts.index[0] or n < min_support:
                continue
            name = f"{k}={v}"
            frame[name] = (got == v).astype(float)
            covariates.append(name)
    if ws.con.execute("SELECT count(*) FROM moments").fetchone()[0]:
        fv = dict(ws.con.execute("""
            SELECT f.person_id, max(CASE WHEN m.valence < 0 THEN 1 ELSE 0 END) FROM
              (SELECT person_id, min_by(journey_id, start_ts) AS journey_id FROM journeys
               WHERE journey_key IS NOT NULL GROUP BY person_id) f
            LEFT JOIN moments m ON m.journey_id = f.journey_id AND m.kind = 'valley'
            GROUP BY f.person_id""").fetchall())
        col = frame["person_id"].map(fv).fillna(0).astype(float)
        if min_support <= col.sum() <= len(col) - min_support:
            frame["first_journey_valley"] = col
            covariates.append("first_journey_valley")
    if not covariates:
        raise KeymomentsError("no attribute has two values seen on enough people; pass "
                              "attributes=[...] or lower min_support")
    data = frame[["T", "E", *covariates]]
    alpha = 1 - confidence
    warnings = []
    try:
        cph = CoxPHFitter(alpha=alpha, penalizer=penalizer).fit(data, "T", "E")
    except ConvergenceError:
        if penalizer > 0:
            raise
        penalizer = 0.01
        warnings.append("the plain Cox fit did not converge (a value whose people all churned, "
                        "or none did?): fitted with a ridge penalty of 0.01, which shrinks the "
                        "hazard ratios and their intervals toward 1")
        cph = CoxPHFitter(alpha=alpha, penalizer=penalizer).fit(data, "T", "E")
    s = cph.summary
    lo_col = f"exp(coef) lower {100 * confidence:g}%"
    hi_col = f"exp(coef) upper {100 * confidence:g}%"
    out = []
    for c in covariates:
        r = s.loc[c]
        out.append({"feature": c, "reference": references.get(c.split("=", 1)[0]) if "=" in c else "no",
                    "hazard_ratio": float(r["exp(coef)"]), "low": float(r[lo_col]),
                    "high": float(r[hi_col]), "p_value": float(r["p"]),
                    "support": int(data[c].sum()),
                    "direction": "raises churn" if r["coef"] > 0 else "lowers churn"})
    out.sort(key=lambda x: -abs(np.log(x["hazard_ratio"])))
    for rank, x in enumerate(out, 1):
        x["rank"] = rank
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(data))
    scores = []
    for f in range(folds):
        test = idx[f::folds]
        train = np.setdiff1d(idx, test)
        m = CoxPHFitter(penalizer=penalizer).fit(data.iloc[train], "T", "E")
        risk = m.predict_partial_hazard(data.iloc[test]).to_numpy()
        scores.append(concordance_index(data["T"].iloc[test], -risk, data["E"].iloc[test]))
    return Result(pa.Table.from_pylist(out), {
        "n": len(data), "churned": int(data["E"].sum()), "kind": kind, "tenure_measure": tenure_measure,
        "references": references, "penalizer": penalizer, "confidence": confidence,
        "warnings": warnings,
        "heldout": {"metric": "concordance", "folds": folds, "score": float(np.mean(scores)),
                    "scores": [float(x) for x in scores]},
        "method": ("Cox proportional hazards (lifelines) on attribute values as 0/1 against each "
                   "attribute's most common value; held-out concordance by k-fold"),
    })
