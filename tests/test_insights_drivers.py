"""The drivers' ridge solver against scikit-learn's Ridge (dense, same data), and
its bootstrap weights against an explicit resample."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from sklearn.linear_model import Ridge

from keymoments.insights.drivers import ridge


def test_ridge_matches_sklearn():
    rng = np.random.default_rng(5)
    X = sparse.random(400, 30, density=0.1, random_state=5, format="csr")
    X.data[:] = 1.0
    y = X @ rng.normal(0, 1, 30) + rng.normal(0, 0.3, 400) + 2.0
    for alpha in (0.1, 1.0, 10.0):
        ref = Ridge(alpha=alpha).fit(X.toarray(), y)
        coef, b = ridge(X, y, alpha)
        assert coef == pytest.approx(ref.coef_, abs=1e-8) and b == pytest.approx(ref.intercept_, abs=1e-8)


def test_weights_are_a_resample():
    rng = np.random.default_rng(6)
    X = sparse.random(200, 12, density=0.2, random_state=6, format="csr")
    y = rng.normal(0, 1, 200)
    idx = rng.integers(0, 200, 200)
    w = np.bincount(idx, minlength=200)
    by_weight = ridge(X, y, 1.0, w)
    by_copy = ridge(X[idx], y[idx], 1.0)
    assert by_weight[0] == pytest.approx(by_copy[0], abs=1e-9)
    assert by_weight[1] == pytest.approx(by_copy[1], abs=1e-9)
