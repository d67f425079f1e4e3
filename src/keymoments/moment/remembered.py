"""The remembered score: which moments of a journey predict how it is remembered.

Research disagrees on the weights (the end dominates in clinical studies; the first
impression in a 5,000-stay hotel study), so they are learned from the outcomes the
workspace has, and compared by cross-validation with three simpler models:

* ``peak_end``: the mean of the most intense moment and the end (the default);
* ``mean``: the mean valence of the journey;
* ``last``: the end alone;
* ``learned``: a linear model of first, peak, valley, end, mean and trend (a journey
  with one scored event has no trend: it counts as 0).

Each simple model is calibrated (a straight line from its score to the outcome)
inside the cross-validation, so the comparison is fair. Outcomes: ``feedback``
(the journey's first rating, on [-1, 1]; scored by R² of the out-of-fold
predictions), ``repurchase`` and ``churn`` (binary, folds stratified by class;
scored by the mean of the folds' ROC AUC: each fold's model is calibrated on its
own, so pooling their predictions biases the AUC towards 0.5 and below). Intervals
are 95% bootstrap intervals (rows resampled within folds).

``best_`` is the model with the best score, or None when none predicts better
than chance (R² at most 0, AUC at most 0.5). ``chosen_`` is the model to score
the journeys with: ``learned`` only when it beats the peak-end default in a paired
bootstrap (the interval of its gain, ``gain_``, above 0), else ``peak_end``: a
point score alone picked the learned model from pure noise ~4% of the time.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> n = 3000
>>> X = {f: rng.uniform(-1, 1, n) for f in FEATURES}
>>> y = 0.2 * X["first_v"] + 0.5 * X["end_v"] + 0.3 * X["valley_v"] + rng.normal(0, 0.1, n)
>>> fit = RememberedScore(n_boot=50).fit_arrays(X, y)
>>> round(fit.weights_["end_v"][0], 1), fit.best_, fit.chosen_
(0.5, 'learned', 'learned')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

__all__ = ["FEATURES", "MODELS", "RememberedScore", "peak_end"]

FEATURES = ("first_v", "peak_v", "valley_v", "end_v", "mean_v", "trend_v")
MODELS = ("peak_end", "mean", "last", "learned")
#: a binary outcome's rarer class, per fold, below which the AUC intervals are not given
MIN_PER_FOLD = 10
Outcome = Literal["feedback", "repurchase", "churn"]


def peak_end(peak: np.ndarray, valley: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Mean of the most intense moment (peak or valley, whichever is further from
    0) and the end.

    >>> peak_end(np.array([0.9]), np.array([-0.2]), np.array([0.1])).round(2).tolist()
    [0.5]
    """
    intense = np.where(np.abs(peak) >= np.abs(valley), peak, valley)
    return (intense + end) / 2


@dataclass
class ModelScore:
    """Cross-validated score of one model with its 95% interval."""

    model: str
    metric: str
    score: float
    low: float
    high: float


@dataclass
class RememberedScore:
    """Fit and compare remembered-score models; ``fit`` returns ``self``.

    Fitted attributes end in ``_``: ``weights_`` (feature -> (weight, low, high)),
    ``intercept_``, ``scores_`` (model -> :class:`ModelScore`), ``best_`` and
    ``n_``.
    """

    outcome: Outcome = "feedback"
    folds: int = 5
    n_boot: int = 200
    seed: int = 0
    alpha: float = 1e-3
    weights_: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    intercept_: float = 0.0
    scores_: dict[str, ModelScore] = field(default_factory=dict)
    best_: str | None = None
    #: the model to score journeys with (see the module): learned or peak_end
    chosen_: str = "peak_end"
    #: the learned model's score minus peak-end's, with its paired 95% interval
    gain_: tuple[float, float, float] | None = None
    #: why the comparison says nothing (every journey has one scored moment), or None
    note_: str | None = None
    #: what to read with care (most journeys with one scored moment)
    warnings_: list[str] = field(default_factory=list)
    n_: int = 0

    # ------------------------------------------------------------------ data
    @staticmethod
    def outcome_column(outcome: Outcome) -> str:
        return {"feedback": "outcome_valence", "repurchase": "repurchased",
                "churn": "churned"}[outcome]

    def fit(self, journeys) -> RememberedScore:
        """Fit on a journeys table (Arrow, pandas or a :class:`~keymoments.Result`)."""
        import pyarrow as pa

        table = journeys.to_arrow() if hasattr(journeys, "to_arrow") else journeys
        if not isinstance(table, pa.Table):
            table = pa.Table.from_pandas(table)
        col = self.outcome_column(self.outcome)
        arrays = {f: _np(table.column(f)) for f in FEATURES}
        y = _np(table.column(col))
        return self.fit_arrays(arrays, y)

    def _matrix(self, X: dict[str, np.ndarray]) -> np.ndarray:
        cols = [np.asarray(X[f], dtype=float) for f in FEATURES]
        m = np.column_stack(cols)
        m[:, FEATURES.index("trend_v")] = np.nan_to_num(m[:, FEATURES.index("trend_v")])
        return m

    def fit_arrays(self, X: dict[str, np.ndarray], y: np.ndarray) -> RememberedScore:
        """Fit on feature arrays (:data:`FEATURES`) and outcomes ``y``."""
        from ..errors import KeymomentsError

        m = self._matrix(X)
        y = np.asarray(y, dtype=float)
        ok = np.isfinite(m).all(axis=1) & np.isfinite(y)
        m, y = m[ok], y[ok]
        self.n_ = len(y)
        binary = self.outcome != "feedback"
        if self.folds < 2:
            raise KeymomentsError(f"folds must be at least 2, not {self.folds}")
        need = max(30, self.folds * 4)
        if self.n_ < need:
            raise KeymomentsError(
                f"too few journeys with a {self.outcome} outcome and scored moments to fit the "
                f"remembered score ({self.n_}; need at least {need})")
        if binary and len(np.unique(y)) < 2:
            kind = "with" if y[0] else "without"
            raise KeymomentsError(
                f"all {self.n_:,} journeys with scored moments are {kind} {self.outcome}: "
                f"nothing to tell apart (the remembered score needs journeys with and without "
                f"{self.outcome})")
        if binary and (few := int(min((y == 0).sum(), (y == 1).sum()))) < MIN_PER_FOLD * self.folds:
            # the AUC intervals resample each fold's rows: with a few journeys of a class
            # per fold they hold those few fixed and come out far too narrow (pure noise,
            # 6 journeys with churn of 1,000: the learned model "clearly better" than
            # peak-end 40% of the time, peak-end's interval above 0.5 57%)
            kind = "with" if (y == 1).sum() == few else "without"
            raise KeymomentsError(
                f"only {few} of {self.n_:,} journeys are {kind} {self.outcome}: each of the "
                f"{self.folds} folds needs {MIN_PER_FOLD} of each to score the models (fewer "
                "folds, or more data)")
        if not binary and np.ptp(y) == 0:
            raise KeymomentsError(
                f"every one of the {self.n_:,} journeys has the same {self.outcome} ({y[0]:g}): "
                "nothing to explain")
        rng = np.random.default_rng(self.seed)
        fold = self._folds(y, binary, rng)
        preds = {name: np.full(self.n_, np.nan) for name in MODELS}
        for k in range(self.folds):
            train, test = fold != k, fold == k
            for name in MODELS:
                model = self._fit_one(name, m[train], y[train], binary)
                preds[name][test] = self._predict_one(name, model, m[test], binary)
        metric = "auc" if binary else "r2"
        self.scores_, self.gain_ = self._scores(y, preds, fold, metric, rng)
        self.best_ = max(self.scores_, key=lambda n: self.scores_[n].score)
        chance = 0.5 if binary else 0.0
        if self.scores_[self.best_].score <= chance:
            self.best_ = None
        self.chosen_ = "learned" if self.gain_[1] > 0 else "peak_end"
        # with one scored moment per journey, first = peak = valley = end = mean: every
        # model sees the same number, so the comparison cannot pick one
        moments = m[:, [FEATURES.index(f) for f in ("first_v", "peak_v", "valley_v", "end_v")]]
        single = float((moments == moments[:, :1]).all(axis=1).mean())
        self.note_ = None if single < 1 else (
            "every journey has a single scored moment (first = peak = valley = end), so the "
            "models cannot differ and none is better: score more events (valence rules, "
            "text) to compare them")
        self.warnings_ = [] if not 0.5 <= single < 1 else [
            f"{single:.0%} of the journeys have a single scored moment (first = peak = valley "
            "= end): the learned weights of those four share what they carry and cannot be "
            "told apart; read them together"]
        if self.note_:  # nothing to choose: the default scores the journeys
            self.best_, self.chosen_ = "peak_end", "peak_end"
        full = self._fit_one("learned", m, y, binary)
        boots = []
        for _ in range(self.n_boot):
            idx = rng.integers(0, self.n_, self.n_)
            if binary and len(np.unique(y[idx])) < 2:
                continue
            boots.append(self._fit_one("learned", m[idx], y[idx], binary)[1])
        boots_arr = np.array(boots) if boots else np.empty((0, len(FEATURES)))
        self.intercept_ = float(full[0])
        # a feature with one value for every journey (the first impression of a single
        # journey type) has no weight to learn: the fit gives it 0 and every bootstrap
        # too, an interval of zero width that reads as "does not matter, surely"
        constant = [f for i, f in enumerate(FEATURES) if np.ptp(m[:, i]) == 0]
        self.weights_ = {
            f: (float(full[1][i]),
                float(np.percentile(boots_arr[:, i], 2.5))
                if len(boots_arr) and f not in constant else float("nan"),
                float(np.percentile(boots_arr[:, i], 97.5))
                if len(boots_arr) and f not in constant else float("nan"))
            for i, f in enumerate(FEATURES)
        }
        if constant and not self.note_:
            self.warnings_.append(
                f"{', '.join(constant)} {'is' if len(constant) == 1 else 'are'} the same for "
                "every journey: no weight can be learned for "
                f"{'it' if len(constant) == 1 else 'them'} (0, with no interval), which does "
                "not say the moment does not matter")
        return self

    # ---------------------------------------------------------------- models
    def _design(self, name: str, m: np.ndarray) -> np.ndarray:
        f = {n: m[:, i] for i, n in enumerate(FEATURES)}
        if name == "peak_end":
            return peak_end(f["peak_v"], f["valley_v"], f["end_v"])[:, None]
        if name == "mean":
            return f["mean_v"][:, None]
        if name == "last":
            return f["end_v"][:, None]
        return m

    def _fit_one(self, name: str, m: np.ndarray, y: np.ndarray, binary: bool):
        from sklearn.linear_model import LogisticRegression, Ridge

        X = self._design(name, m)
        if binary:
            model = LogisticRegression(C=1.0 / max(self.alpha, 1e-9), max_iter=1000)
            model.fit(X, y.astype(int))
            return float(model.intercept_[0]), model.coef_[0].copy(), model
        model = Ridge(alpha=self.alpha)
        model.fit(X, y)
        return float(model.intercept_), np.asarray(model.coef_, dtype=float).copy(), model

    def _predict_one(self, name: str, fitted, m: np.ndarray, binary: bool) -> np.ndarray:
        model = fitted[2]
        X = self._design(name, m)
        return model.predict_proba(X)[:, 1] if binary else model.predict(X)

    def _folds(self, y: np.ndarray, binary: bool, rng: np.random.Generator) -> np.ndarray:
        """Each row's fold: a random one, stratified by class for a binary outcome."""
        fold = np.empty(len(y), dtype=int)
        groups = [np.flatnonzero(y == c) for c in (0, 1)] if binary else [np.arange(len(y))]
        start = 0
        for rows in groups:
            fold[rows] = (rng.permutation(len(rows)) + start) % self.folds
            start += len(rows)
        return fold

    def _scores(self, y: np.ndarray, preds: dict[str, np.ndarray], fold: np.ndarray,
                metric: str, rng: np.random.Generator):
        """Each model's score with its 95% interval, and the learned model's gain over
        peak-end with its paired interval (the same resampled rows for every model;
        rows resampled within their fold)."""
        from sklearn.metrics import r2_score, roc_auc_score

        folds = [np.flatnonzero(fold == k) for k in range(self.folds)]

        def score(p: np.ndarray, rows: list[np.ndarray]) -> float:
            if metric == "r2":
                idx = np.concatenate(rows)
                return float(r2_score(y[idx], p[idx]))
            return float(np.mean([roc_auc_score(y[r], p[r]) for r in rows]))

        point = {n: score(preds[n], folds) for n in MODELS}
        boots: dict[str, list[float]] = {n: [] for n in MODELS}
        for _ in range(self.n_boot):
            rows = [r[rng.integers(0, len(r), len(r))] for r in folds]
            if metric == "auc" and any(len(np.unique(y[r])) < 2 for r in rows):
                continue
            for n in MODELS:
                boots[n].append(score(preds[n], rows))

        def interval(values) -> tuple[float, float]:
            if not len(values):
                return float("nan"), float("nan")
            low, high = np.percentile(values, [2.5, 97.5])
            return float(low), float(high)

        scores = {n: ModelScore(n, metric, point[n], *interval(boots[n])) for n in MODELS}
        diff = np.array(boots["learned"]) - np.array(boots["peak_end"])
        return scores, (point["learned"] - point["peak_end"], *interval(diff))

    # ---------------------------------------------------------------- output
    def predict(self, X: dict[str, np.ndarray]) -> np.ndarray:
        """The learned model's remembered score (clipped to [-1, 1] for feedback)."""
        m = self._matrix(X)
        w = np.array([self.weights_[f][0] for f in FEATURES])
        z = self.intercept_ + m @ w
        if self.outcome == "feedback":
            return np.clip(z, -1, 1)
        return 1 / (1 + np.exp(-z))

    def summary(self):
        """Models compared and learned weights, as a :class:`~keymoments.Result`."""
        import pyarrow as pa

        from ..results import Result

        rows = [{"model": s.model, "metric": s.metric, "score": s.score, "low": s.low,
                 "high": s.high, "best": s.model == self.best_ and not self.note_,
                 # (only the feedback fit scores the journeys)
                 "scoring": self.outcome == "feedback" and s.model == self.chosen_}
                for s in self.scores_.values()]
        weights = [{"feature": f, "weight": w, "low": lo, "high": hi}
                   for f, (w, lo, hi) in self.weights_.items()]
        return Result(pa.Table.from_pylist(rows), {
            "outcome": self.outcome, "n": self.n_, "best": None if self.note_ else self.best_,
            "chosen": self.chosen_, "folds": self.folds,
            "gain": None if self.gain_ is None else
            dict(zip(("score", "low", "high"), self.gain_)),
            "note": self.note_, "warnings": self.warnings_,
            "weights": weights, "intercept": self.intercept_,
            "method": "k-fold cross-validation; 95% bootstrap intervals"})


def _np(col) -> np.ndarray:
    values = col.to_pylist()
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)
