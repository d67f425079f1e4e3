"""Predicted experience for the silent majority: an estimated CSAT or NPS for the
journeys nobody answered a survey about, learned from those with an answer.

A logistic model (multinomial for NPS: promoter / passive / detractor) is fit on
the answered journeys from their remembered score and moment valences (first
impression, peak, valley, farewell, mean, trend, number scored, with missing-value
flags) and journey type. Its calibration is measured on held-out folds: a curve of
mean predicted against observed shares in bins, the Brier score against a
constant baseline, and the error of the aggregate (predicted share minus
observed share per fold). Then every silent journey of the same types gets a
predicted probability, and the metric is reported three ways per group: observed
(answers only), predicted (silent journeys only, marked ``predicted``) and all
journeys (answers plus predictions).

The predicted interval adds the held-out aggregate error to the sampling spread,
so it is honest about the model, not only about the sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from ..errors import KeymomentsError
from ..results import Result
from . import intervals as iv
from .dimensions import column_name, dimension_sql

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["PredictedExperience", "predicted_experience"]

_FEATURES = ("remembered", "first_v", "peak_v", "valley_v", "end_v", "mean_v", "trend_v")
_SCALES = {"csat": "csat5", "nps": "nps10"}


@dataclass(frozen=True)
class PredictedExperience:
    """``summary`` (per group: observed, predicted, all), ``journeys`` (each silent
    journey's prediction), ``calibration`` (held-out curve) and ``meta``."""

    summary: Result
    journeys: Result
    calibration: Result
    meta: dict = field(default_factory=dict)


def _outcome_scales(ws: Workspace) -> str:
    """The journeys' outcomes by scale, for a message (``outcomes here: stars5 (6,121)``)."""
    found = ws.con.execute("SELECT outcome_scale, count(*) FROM journeys WHERE outcome_scale "
                           "IS NOT NULL GROUP BY 1 ORDER BY 2 DESC").fetchall()
    if not found:
        return "no journey has a rated outcome"
    there = ", ".join(f"{s} ({n:,})" for s, n in found)
    return (f"outcomes here: {there}; csat reads csat5 answers, nps nps10 answers (another "
            "scale is another question, not converted)")


def _design(rows: dict, types: list[str]) -> np.ndarray:
    cols = []
    for f in _FEATURES:
        v = np.array(rows[f], dtype=float)
        miss = np.isnan(v)
        cols += [np.where(miss, 0.0, v), miss.astype(float)]
    cols.append(np.log1p(np.nan_to_num(np.array(rows["n_valenced"], dtype=float))))
    jt = np.array(rows["journey_type"], dtype=object)
    cols += [(jt == t).astype(float) for t in types[1:]]
    return np.column_stack(cols)


def predicted_experience(ws: Workspace, metric: str = "csat", *, by: str | None = None,
                         folds: int = 5, bins: int = 10, confidence: float = 0.95,
                         seed: int = 0) -> PredictedExperience:
    """CSAT (top-2 share) or NPS for every journey: observed where answered,
    predicted (and marked so) where not, calibrated on the answered ones.

    >>> import tempfile, keymoments as km
    >>> ws = km.init(tempfile.mkdtemp())
    >>> try:
    ...     km.predicted_experience(ws)
    ... except km.KeymomentsError as e:
    ...     print(str(e)[:60]); print(str(e)[-78:])
    only 0 journeys have a csat answer (csat5) as their outcome;
    at least 50 (no journey has a rated outcome); load the surveys and build again
    >>> ws.close()
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    if metric not in _SCALES:
        raise KeymomentsError(f"predicted experience is for csat or nps, not {metric!r}")
    scale = _SCALES[metric]
    dims = [by] if by else []
    dsql, dims = dimension_sql(dims)
    gcol = f'd."{column_name(dims[0])}"' if dims else "'all'"
    feats = ", ".join(f"j.{f}" for f in _FEATURES)
    table = ws.con.execute(f"""
        SELECT j.journey_id, j.journey_type, j.outcome_scale, j.outcome_rating, j.n_valenced, {feats},
               coalesce(CAST({gcol} AS VARCHAR), '(none)') AS grp
        FROM journeys j JOIN ({dsql}) d ON d.journey_id = j.journey_id
        WHERE j.journey_type IN (SELECT DISTINCT journey_type FROM journeys WHERE outcome_scale = '{scale}')
          AND (j.outcome_scale = '{scale}' OR j.outcome_scale IS NULL)
        ORDER BY j.journey_id""").to_arrow_table()
    rows = table.to_pydict()
    answered = np.array([s == scale for s in rows["outcome_scale"]])
    if answered.sum() < 50:
        raise KeymomentsError(f"only {int(answered.sum())} journeys have a {metric} answer "
                              f"({scale}) as their outcome; a prediction needs at least 50 "
                              f"({_outcome_scales(ws)}); load the surveys and build again")
    rating = np.array([r if r is not None else np.nan for r in rows["outcome_rating"]], dtype=float)
    if metric == "csat":
        y = (rating >= 4).astype(int)  # top two boxes of 5
    else:
        y = np.where(rating >= 9, 2, np.where(rating <= 6, 0, 1))  # detractor 0, passive 1, promoter 2
    types = sorted(set(rows["journey_type"]))
    X = _design(rows, types)
    Xa, ya = X[answered], y[answered]
    classes = np.unique(ya)
    if len(classes) < 2:
        raise KeymomentsError(f"every {metric} answer falls in one group; nothing to calibrate on")

    def model():
        return LogisticRegression(C=1.0, max_iter=2000)

    def score(p):  # the metric from class probabilities (columns = classes)
        full = np.zeros((len(p), 3 if metric == "nps" else 2))
        full[:, classes] = p
        return full[:, 1] if metric == "csat" else full[:, 2] - full[:, 0]

    k = min(folds, int(np.bincount(ya).min()) if np.bincount(ya)[classes].min() >= 2 else 2)
    held = np.zeros(len(ya))
    agg_err = []
    for train, test in StratifiedKFold(max(k, 2), shuffle=True, random_state=seed).split(Xa, ya):
        m = model().fit(Xa[train], ya[train])
        p = np.zeros((len(test), len(classes)))
        p[:, np.searchsorted(classes, m.classes_)] = m.predict_proba(Xa[test])
        held[test] = score(p)
        observed = (ya[test] == 1).mean() if metric == "csat" else ((ya[test] == 2).mean() - (ya[test] == 0).mean())
        agg_err.append(held[test].mean() - observed)
    obs_unit = (ya == 1).astype(float) if metric == "csat" else (ya == 2).astype(float) - (ya == 0)
    calib = _calibration(held, obs_unit, bins)
    brier = float(np.mean((held - obs_unit) ** 2))
    brier_base = float(np.mean((obs_unit.mean() - obs_unit) ** 2))
    err_sd = float(np.sqrt(np.mean(np.square(agg_err))))
    final = model().fit(Xa, ya)
    pall = np.zeros((len(X), len(classes)))
    pall[:, np.searchsorted(classes, final.classes_)] = final.predict_proba(X)
    pred = score(pall)
    silent = ~answered
    groups = np.array(rows["grp"], dtype=object)
    mult = 100.0 if metric == "nps" else 1.0
    z = iv.z_value(confidence)
    summary = []
    for g in sorted(set(groups.tolist()), key=str):
        sel = groups == g
        a, s = sel & answered, sel & silent
        row = {"group": g, "answered": int(a.sum()), "silent": int(s.sum())}
        if a.any():
            if metric == "csat":
                kk = int((y[a] == 1).sum())
                lo, hi = iv.wilson(kk, int(a.sum()), confidence)
                row.update(observed=kk / a.sum(), observed_low=lo, observed_high=hi)
            else:
                counts = [(y[a] == 2).sum(), (y[a] == 1).sum(), (y[a] == 0).sum()]
                v, lo, hi = iv.nps_interval(*counts, confidence)
                row.update(observed=v, observed_low=lo, observed_high=hi)
        else:
            row.update(observed=None, observed_low=None, observed_high=None)
        if s.any():
            ps = pred[s]
            var = (np.sum(ps * (1 - ps)) if metric == "csat" else np.sum(1 - ps ** 2)) / s.sum() ** 2
            half = z * math.sqrt(var + err_sd ** 2)
            # within the metric's range: a share in [0, 1], an NPS in [-1, 1] (x 100)
            floor = 0.0 if metric == "csat" else -1.0
            row.update(predicted=mult * ps.mean(),
                       predicted_low=mult * max(floor, ps.mean() - half),
                       predicted_high=mult * min(1.0, ps.mean() + half))
        else:
            row.update(predicted=None, predicted_low=None, predicted_high=None)
        both = np.concatenate([obs_unit[np.flatnonzero(a[answered])] if a.any() else [], pred[s]])
        row["all_journeys"] = mult * float(np.mean(both)) if len(both) else None
        row["marked"] = "predicted" if s.any() else "observed"
        summary.append(row)
    jrows = {"journey_id": [j for j, sl in zip(rows["journey_id"], silent) if sl],
             "journey_type": [t for t, sl in zip(rows["journey_type"], silent) if sl],
             "group": [g for g, sl in zip(rows["grp"], silent) if sl],
             f"predicted_{metric}": (mult * pred[silent]).tolist(),
             "source": ["predicted"] * int(silent.sum())}
    warnings = []
    if brier >= brier_base * 0.99:
        warnings.append(
            f"the model predicts held-out answers no better than their overall share (Brier "
            f"{brier:.4f} against {brier_base:.4f} for a constant): the moments do not tell "
            "these answers apart, so the predictions for silent journeys rest on how those "
            "differ from the answered ones (journey type, events), not on evidence; their "
            "interval covers sampling and held-out error, not that")
    meta = {
        "metric": metric, "by": by, "answered": int(answered.sum()), "silent": int(silent.sum()),
        "warnings": warnings,
        "model": "logistic regression" + (" (multinomial)" if metric == "nps" else ""),
        "features": list(_FEATURES) + ["n_valenced", "journey type"], "folds": max(k, 2),
        "brier": brier, "brier_baseline": brier_base,
        "heldout_aggregate_error": [float(mult * e) for e in agg_err],
        "heldout_aggregate_rmse": mult * err_sd, "confidence": confidence,
        "method": ("calibrated on answered journeys (held-out folds); predicted interval = sampling "
                   "spread of the predictions plus the held-out aggregate error"),
    }
    return PredictedExperience(Result(pa.Table.from_pylist(summary), dict(meta)),
                               Result(pa.table(jrows), {"metric": metric, "source": "predicted"}),
                               Result(pa.Table.from_pylist(calib), {"bins": bins, "metric": metric}),
                               meta)


def _calibration(pred: np.ndarray, obs: np.ndarray, bins: int) -> list[dict]:
    """Quantile bins of the held-out predictions: mean predicted vs mean observed."""
    edges = np.unique(np.quantile(pred, np.linspace(0, 1, bins + 1)))
    idx = np.clip(np.searchsorted(edges, pred, side="right") - 1, 0, max(len(edges) - 2, 0))
    out = []
    for b in np.unique(idx):
        sel = idx == b
        o = obs[sel]
        se = float(o.std(ddof=1) / math.sqrt(sel.sum())) if sel.sum() > 1 else None
        out.append({"bin": int(b), "n": int(sel.sum()), "mean_predicted": float(pred[sel].mean()),
                    "observed": float(o.mean()), "observed_se": se})
    return out
