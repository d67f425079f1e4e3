"""The remembered score's simple models and the learned weights' intervals, against
scikit-learn on the same folds: the "last" model is a line from the end alone, the
"mean" one from the mean valence, peak-end from the mean of the most intense moment
and the end; each weight's 95% interval holds its estimate and, on planted data, the
planted weight (an audit found a "last" model fitted on the mean, and intervals of
zero width, passed every test)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import PredefinedSplit, cross_val_predict

from keymoments.moment.remembered import FEATURES, RememberedScore


def test_simple_models_and_weight_intervals_against_sklearn():
    rng = np.random.default_rng(3)
    n = 600
    X = {f: rng.uniform(-1, 1, n) for f in FEATURES}
    planted = {"end_v": 0.5, "mean_v": 0.3, "first_v": 0.2}
    y = sum(w * X[f] for f, w in planted.items()) + rng.normal(0, 0.2, n)
    fit = RememberedScore(n_boot=200, seed=11).fit_arrays(X, y)
    # the folds, as documented: a random permutation of the rows dealt into 5 folds
    fold = np.random.default_rng(11).permutation(n) % 5
    intense = np.where(np.abs(X["peak_v"]) >= np.abs(X["valley_v"]), X["peak_v"], X["valley_v"])
    single = {"last": X["end_v"], "mean": X["mean_v"], "peak_end": (intense + X["end_v"]) / 2}
    for name, x in single.items():
        pred = cross_val_predict(Ridge(alpha=fit.alpha), x[:, None], y, cv=PredefinedSplit(fold))
        assert fit.scores_[name].score == pytest.approx(r2_score(y, pred), abs=1e-12), name
    learned = cross_val_predict(Ridge(alpha=fit.alpha), np.column_stack([X[f] for f in FEATURES]),
                                y, cv=PredefinedSplit(fold))
    assert fit.scores_["learned"].score == pytest.approx(r2_score(y, learned), abs=1e-12)
    for f, (w, low, high) in fit.weights_.items():
        assert low < w < high, (f, low, w, high)
        assert low <= planted.get(f, 0.0) <= high, (f, low, high)
        assert high - low < 0.2  # 600 rows, noise 0.2: a few hundredths wide


def test_a_feature_with_one_value_has_no_interval_and_a_warning():
    """One journey type: every first impression is 0.2, so its weight cannot be learned;
    it was reported as 0 with the interval [0, 0] (a certainty that it does not matter)."""
    rng = np.random.default_rng(4)
    n = 400
    X = {f: rng.uniform(-1, 1, n) for f in FEATURES}
    X["first_v"] = np.full(n, 0.2)
    y = 0.5 * X["end_v"] + 0.3 * X["valley_v"] + rng.normal(0, 0.1, n)
    fit = RememberedScore(n_boot=50).fit_arrays(X, y)
    w, low, high = fit.weights_["first_v"]
    assert w == pytest.approx(0.0, abs=1e-9) and np.isnan(low) and np.isnan(high)
    assert any("first_v is the same for every journey" in m for m in fit.warnings_)
    assert all(lo < hi for f, (_, lo, hi) in fit.weights_.items() if f != "first_v")


def test_a_rare_binary_outcome_is_refused_not_given_narrow_intervals():
    """Pure noise, 6 journeys with churn of 400: the within-fold bootstrap held each
    fold's one or two churners fixed, so the AUC intervals were far too narrow (here the
    learned model came out "clearly better" than peak-end, interval +0.12 to +0.32)."""
    from keymoments.errors import KeymomentsError

    rng = np.random.default_rng(1)
    n = 400
    X = {f: rng.uniform(-1, 1, n) for f in FEATURES}
    y = np.zeros(n)
    y[rng.choice(n, 6, replace=False)] = 1
    with pytest.raises(KeymomentsError, match="only 6 of 400 journeys are with churn"):
        RememberedScore(outcome="churn", n_boot=50).fit_arrays(X, y)
