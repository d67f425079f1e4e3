"""Drivers: which moments, touchpoints and attributes move an outcome.

One row per journey with an outcome; features are built in SQL as
(journey, feature) pairs, each a yes/no fact about the journey:

- ``valley=<event type>`` / ``peak=<event type>``: its worst (negative) and best
  (positive) moment;
- ``agent=<agent>``, ``channel=<channel>``: who handled it, where it happened;
- ``<key>=<value>``: attribute values seen on its events (``carrier=SlowShip``);
- ``type=<journey type>``;

plus its size (``n_events``, ``channel_switches``, per standard deviation) and,
with ``valences=True``, the moment valences (``first_v``, ``peak_v``, ``valley_v``,
``end_v``). They are off by default: the remembered score already says how much the
moments' valences matter, and here they would absorb the effect of the events
and attributes that caused them, which is what a driver analysis is for.

The model is a ridge regression for a continuous outcome (feedback, remembered
score) and an L2 logistic regression for a yes/no outcome (repurchase): its
coefficient on a yes/no feature is the change in the outcome (log-odds for
logistic) when the journey has it, other features held fixed. Intervals are
bootstrap percentiles over journeys; ``importance`` is |coefficient| x the
feature's standard deviation; held-out accuracy (R2 or AUC) is cross-validated.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from ..errors import KeymomentsError
from ..results import Result
from ..sql import literal
from .root_causes import outcome_sql

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["drivers", "driver_matrix", "ridge"]

_VALENCES = ("first_v", "peak_v", "valley_v", "end_v")
_SIZE = ("n_events", "channel_switches")
_BINARY_OUTCOMES = ("repurchase", "churn", "csat")


def _attribute_keys(ws: Workspace, max_values: int) -> list[str]:
    rows = ws.con.execute("""
        SELECT k, count(DISTINCT attributes[k]) FROM events, unnest(map_keys(attributes)) AS t(k)
        GROUP BY k ORDER BY k""").fetchall()
    return [k for k, nv in rows if 1 < nv <= max_values]


def driver_matrix(ws: Workspace, outcome: str, *, journey_type: str | list[str] | None = None,
                  attributes: list[str] | None = None, min_support: int = 20,
                  valences: bool = False):
    """(journey ids, y, feature names, sparse 0/1 matrix of the yes/no features,
    dense matrix of the numeric ones) for journeys with the outcome."""
    y_sql = outcome_sql(outcome)
    numeric = (*_VALENCES, *_SIZE) if valences else _SIZE
    types = [journey_type] if isinstance(journey_type, str) else list(journey_type or [])
    tfilter = f" AND j.journey_type IN ({', '.join(literal(t) for t in types)})" if types else ""
    base = f"SELECT j.journey_id FROM journeys j WHERE {y_sql} IS NOT NULL{tfilter}"
    if attributes is None:
        attributes = _attribute_keys(ws, 50)
    parts = [
        "SELECT m.journey_id, 'valley=' || m.event_type AS f FROM moments m JOIN b USING (journey_id) "
        "WHERE m.kind = 'valley' AND m.valence < 0",
        "SELECT m.journey_id, 'peak=' || m.event_type FROM moments m JOIN b USING (journey_id) "
        "WHERE m.kind = 'peak' AND m.valence > 0",
        "SELECT je.journey_id, 'agent=' || je.agent FROM je WHERE je.agent IS NOT NULL",
        "SELECT je.journey_id, 'channel=' || je.channel FROM je WHERE je.channel IS NOT NULL",
        "SELECT j.journey_id, 'type=' || j.journey_type FROM journeys j JOIN b USING (journey_id)",
    ] + [f"SELECT je.journey_id, {literal(k + '=')} || e.attributes[{literal(k)}] FROM je "
         f"JOIN events e ON e.event_id = je.event_id WHERE e.attributes[{literal(k)}] IS NOT NULL"
         for k in attributes]
    pairs = ws.con.execute(f"""
        WITH b AS ({base}),
        je AS (SELECT x.journey_id, x.event_id, x.agent, x.channel FROM journey_events x
               JOIN b USING (journey_id)),
        kept AS (SELECT DISTINCT * FROM ({' UNION ALL '.join(parts)}) u)
        SELECT journey_id, f FROM kept WHERE f IN (
            SELECT f FROM kept GROUP BY f HAVING count(*) >= {int(min_support)})""").fetchall()
    rows = ws.con.execute(f"""
        SELECT j.journey_id, {y_sql} AS y, {', '.join(f'j.{c}' for c in numeric)}
        FROM journeys j WHERE {y_sql} IS NOT NULL{tfilter} ORDER BY j.journey_id""").fetchall()
    ids = [r[0] for r in rows]
    index = {j: i for i, j in enumerate(ids)}
    y = np.array([r[1] for r in rows], dtype=float)
    feats = sorted({f for _, f in pairs})
    fidx = {f: i for i, f in enumerate(feats)}
    from scipy import sparse

    r_idx = np.fromiter((index[j] for j, _ in pairs), dtype=np.int64, count=len(pairs))
    c_idx = np.fromiter((fidx[f] for _, f in pairs), dtype=np.int64, count=len(pairs))
    binary = sparse.csr_matrix((np.ones(len(pairs)), (r_idx, c_idx)), shape=(len(ids), len(feats)))
    num = np.array([r[2:] for r in rows], dtype=float).reshape(len(ids), len(numeric))
    return ids, y, feats + list(numeric), binary, num


def ridge(X, y: np.ndarray, alpha: float, weight: np.ndarray | None = None):
    """Ridge regression with an unpenalised intercept from the weighted Gram
    matrix of a sparse ``X`` (cheap when rows have few non-zeros); returns
    (coefficients, intercept). The same solution as scikit-learn's ``Ridge``.

    >>> import numpy as np
    >>> from scipy import sparse
    >>> X = sparse.csr_matrix(np.array([[1.0, 0], [0, 1], [1, 1], [0, 0]]))
    >>> coef, b = ridge(X, np.array([1.0, 2, 3, 0]), alpha=1e-9)
    >>> np.round(coef, 6).tolist(), round(float(b), 6)
    ([1.0, 2.0], 0.0)
    """
    w = np.ones(X.shape[0]) if weight is None else np.asarray(weight, dtype=float)
    sw = w.sum()
    Xw = X.multiply(w[:, None]).tocsr()
    mx = np.asarray(Xw.sum(axis=0)).ravel() / sw
    my = float(w @ y) / sw
    gram = np.asarray((X.T @ Xw).todense()) - sw * np.outer(mx, mx)
    rhs = np.asarray(Xw.T @ y).ravel() - sw * mx * my
    coef = np.linalg.solve(gram + alpha * np.eye(len(mx)), rhs)
    return coef, my - mx @ coef


def drivers(ws: Workspace, outcome: str = "feedback", *, journey_type: str | list[str] | None = None,
            attributes: list[str] | None = None, min_support: int = 20, valences: bool = False,
            n_boot: int = 50,
            folds: int = 5, alpha: float = 1.0, confidence: float = 0.95, seed: int = 0) -> Result:
    """What drives ``outcome`` (feedback, remembered, nps; csat, repurchase, churn as
    yes/no) across journeys:
    one row per feature with its effect, bootstrap interval, direction, importance
    and support, ranked by importance; ``meta`` holds the held-out accuracy.

    >>> import tempfile, keymoments as km
    >>> ws = km.init(tempfile.mkdtemp())
    >>> km.drivers(ws)
    Traceback (most recent call last):
    ...
    keymoments.errors.KeymomentsError: only 0 journeys have the outcome 'feedback'; drivers need at least 30 (no events are loaded yet: map your exports in keymoments.yaml, run 'keymoments ingest', then 'keymoments build')
    >>> ws.close()
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold, cross_val_score

    from scipy import sparse

    ids, y, names, binary, num = driver_matrix(ws, outcome, journey_type=journey_type,
                                               attributes=attributes, min_support=min_support,
                                               valences=valences)
    if len(y) < 30:
        built = ws.con.execute("SELECT count(*) FROM journeys").fetchone()[0]
        what = (ws.next_step() if not built else
                f"the workspace's {built:,} journeys hold too few: pick another outcome "
                "(feedback, remembered, nps, csat, repurchase, churn)")
        raise KeymomentsError(f"only {len(y)} journeys have the outcome {outcome!r}; drivers need at "
                              f"least 30 ({what})")
    binary_outcome = outcome in _BINARY_OUTCOMES
    if binary_outcome and len(set(y.tolist())) < 2:
        raise KeymomentsError(f"every journey has the same {outcome!r} outcome; nothing to explain")
    # missing valences (nothing scored) -> the column mean; numeric columns per SD
    means = np.array([np.nanmean(c) if np.isfinite(c).any() else 0.0 for c in num.T])
    num = np.where(np.isnan(num), means, num)
    sds = num.std(axis=0)
    sds[sds == 0] = 1.0
    num = (num - means) / sds
    X = sparse.hstack([binary, sparse.csr_matrix(num)], format="csr")
    # (a constant column's variance can round below 0: no square root of it)
    dense_sd = np.sqrt(np.maximum(np.asarray(X.multiply(X).mean(axis=0)).ravel()
                                  - np.square(np.asarray(X.mean(axis=0)).ravel()), 0.0))
    # constant columns out (a 0/1 fact every journey has: its SD is rounding, ~1e-7)
    keep = dense_sd > 1e-6
    X, names, sd = X[:, np.flatnonzero(keep)], [n for n, k in zip(names, keep) if k], dense_sd[keep]
    binary = binary_outcome
    warnings = _collinear(X, names)

    rng = np.random.default_rng(seed)
    boots = []
    if binary:
        def model():
            return LogisticRegression(C=1.0 / alpha, solver="liblinear")

        coef = model().fit(X, y).coef_[0].copy()
        for _ in range(n_boot):
            idx = rng.integers(0, len(y), len(y))
            if len(set(y[idx].tolist())) < 2:
                continue
            boots.append(model().fit(X[idx], y[idx]).coef_[0])
        cv = cross_val_score(model(), X, y, cv=KFold(folds, shuffle=True, random_state=seed),
                             scoring="roc_auc")
    else:
        coef, _ = ridge(X, y, alpha)
        for _ in range(n_boot):  # bootstrap as multinomial weights: the same resample, no copy
            boots.append(ridge(X, y, alpha, rng.multinomial(len(y), np.full(len(y), 1 / len(y))))[0])
        cv = []
        for train, test in KFold(folds, shuffle=True, random_state=seed).split(np.arange(len(y))):
            c, b = ridge(X[train], y[train], alpha)
            pred = X[test] @ c + b
            cv.append(1 - np.sum((y[test] - pred) ** 2) / np.sum((y[test] - y[test].mean()) ** 2))
        cv = np.array(cv)
    boots = np.array(boots) if boots else np.full((1, len(names)), np.nan)
    a = (1 - confidence) / 2
    low, high = np.nanquantile(boots, a, axis=0), np.nanquantile(boots, 1 - a, axis=0)
    rows = []
    for i, name in enumerate(names):
        is_num = name in _VALENCES or name in _SIZE
        has = X[:, i].toarray().ravel() > 0 if not is_num else None
        kind = ("valence" if name in _VALENCES else "size") if is_num else name.split("=", 1)[0]
        rows.append({
            "feature": name, "kind": "moment" if kind in ("valley", "peak") else kind,
            "effect": float(coef[i]), "low": float(low[i]), "high": float(high[i]),
            "direction": "+" if coef[i] > 0 else ("-" if coef[i] < 0 else "0"),
            "significant": bool(low[i] > 0 or high[i] < 0),
            "importance": float(abs(coef[i]) * sd[i]),
            "support": int(has.sum()) if has is not None else len(y),
            "mean_with": float(y[has].mean()) if has is not None and has.any() else None,
            "mean_without": float(y[~has].mean()) if has is not None and (~has).any() else None,
        })
    rows.sort(key=lambda r: -r["importance"])
    for rank, r in enumerate(rows, 1):
        r["rank"] = rank
    se = float(cv.std(ddof=1) / math.sqrt(len(cv))) if len(cv) > 1 else math.nan
    warnings += _no_skill(float(cv.mean()), binary)
    return Result(pa.Table.from_pylist(rows), {
        "outcome": outcome, "n": len(y), "features": len(names),
        "model": "logistic regression (L2)" if binary else "ridge regression",
        "alpha": alpha, "valences": valences, "n_boot": len(boots), "confidence": confidence,
        "warnings": warnings,
        "heldout": {"metric": "auc" if binary else "r2", "folds": folds, "score": float(cv.mean()),
                    "low": float(cv.mean() - 1.96 * se), "high": float(cv.mean() + 1.96 * se)},
        "method": ("coefficients of a regularised regression on journey features (yes/no facts as "
                   "0/1, valences per SD); bootstrap percentile intervals; importance = "
                   "|coefficient| x feature SD; held-out accuracy by k-fold cross-validation"),
    })


#: held-out scores under which a model is said to predict (next to) nothing
_SKILL = {"r2": 0.02, "auc": 0.55}


def _no_skill(score: float, binary: bool) -> list[str]:
    """A warning when the held-out accuracy is about chance: the effects then
    describe the answered journeys but predict nothing.

    >>> _no_skill(0.001, False)[0][:46]
    'held-out r2 0.001: these features predict next'
    >>> _no_skill(0.81, True)
    []
    """
    metric = "auc" if binary else "r2"
    if not score < _SKILL[metric]:
        return []
    chance = "0.5 is chance" if binary else "0 is no better than the mean"
    return [f"held-out {metric} {score:.3f}: these features predict next to nothing of the "
            f"outcome ({chance}); read the effects as differences between the journeys "
            "that had them, not as what would change it"]


def _collinear(X, names: list[str], above: float = 0.9, most: int = 5) -> list[str]:
    """Warnings for pairs of features that (nearly) always go together: their
    separate effects are not identified, and one can take the sign of the other.

    >>> from scipy import sparse
    >>> X = sparse.csr_matrix(np.array([[1, 1, 0], [1, 1, 1], [0, 0, 1], [0, 0, 0]], float))
    >>> [w.split(":")[0] for w in _collinear(X, ["a", "b", "c"])]
    ['a and b go together (correlation 1.00)']
    """
    if X.shape[1] < 2 or X.shape[1] > 400:
        return []
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.corrcoef(X.toarray(), rowvar=False)
    i, j = np.triu_indices(len(names), k=1)
    pairs = sorted((p for p in zip(np.abs(r[i, j]), i, j) if p[0] > above), reverse=True)
    return [f"{names[a]} and {names[b]} go together (correlation {c:.2f}): their effects "
            "cannot be told apart, read them together (one can take the other's sign)"
            for c, a, b in pairs[:most]]
