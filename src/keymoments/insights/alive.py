"""Probability that a customer is still active, from purchase history alone
(non-contractual churn): the BG/NBD model (Fader, Hardie and Lee, 2005).

While alive a customer buys at a Poisson rate (gamma-distributed across
customers, shape ``r``, rate ``alpha``); after each purchase they may drop out for
good with a probability that is beta-distributed across customers (``a``, ``b``).
From each customer's repeat purchases ``x``, the age of their last purchase ``t_x``
and their age ``T`` (both since the first purchase), the model gives the chance
they are still alive and how many purchases to expect.

The likelihood is written here from the paper and maximised with scipy; tests
check it against the ``lifetimes`` package on the CDNOW data it ships.

>>> x = [0, 2, 5, 1, 0, 3, 0, 1, 4, 0, 2, 1]
>>> t_x = [0, 20, 60, 10, 0, 35, 0, 50, 65, 0, 15, 5]
>>> m = BGNBD().fit(x, t_x, [70] * 12)
>>> sorted(m.params_)
['a', 'alpha', 'b', 'r']
>>> p = m.p_alive([0, 2], [0, 20], [70, 70])
>>> bool(p[0] == 1.0), bool(0 < p[1] < 1)
(True, True)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from ..errors import KeymomentsError
from ..results import Result
from ..sql import days, literal

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["BGNBD", "rfm", "probability_alive"]


class BGNBD:
    """The BG/NBD model; ``fit()`` returns self, fitted values end in ``_``."""

    def __init__(self, penalizer: float = 0.0) -> None:
        self.penalizer = penalizer

    @staticmethod
    def _loglik(params, x, tx, T):
        from scipy.special import betaln, gammaln

        r, alpha, a, b = params
        common = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
        a1 = betaln(a, b + x) - betaln(a, b) + common - (r + x) * np.log(alpha + T)
        with np.errstate(divide="ignore", invalid="ignore"):
            a2 = np.where(x > 0, betaln(a + 1, b + np.maximum(x, 1) - 1) - betaln(a, b) + common
                          - (r + x) * np.log(alpha + tx), -np.inf)
        return np.logaddexp(a1, a2)

    def fit(self, frequency, recency, age) -> BGNBD:
        """Fit on repeat purchases ``frequency``, ``recency`` (t_x) and ``age`` (T)."""
        from scipy.optimize import minimize

        x, tx, T = (np.asarray(v, dtype=float) for v in (frequency, recency, age))
        if len(x) < 10:
            raise KeymomentsError(f"BG/NBD needs purchase histories of at least 10 customers, got {len(x)}")
        if np.any(tx > T) or np.any(x < 0):
            raise KeymomentsError("recency must not exceed age and frequency must be >= 0")
        scale = 10.0 / max(T.max(), 1e-9)  # fit on a rescaled clock for a well-conditioned problem
        # customers with the same history count once, weighted
        uniq, weight = np.unique(np.stack([x, tx, T], axis=1), axis=0, return_counts=True)
        xs, txs, Ts = uniq[:, 0], uniq[:, 1] * scale, uniq[:, 2] * scale

        def nll(logp):
            with np.errstate(all="ignore"):
                p = np.exp(logp)
                v = (-(weight * self._loglik(p, xs, txs, Ts)).sum() / len(x)
                     + self.penalizer * (p ** 2).sum())
            return v if np.isfinite(v) else 1e300

        bounds = [(-15.0, 15.0)] * 4  # log-parameters: keeps the search finite
        res = minimize(nll, np.zeros(4), method="L-BFGS-B", bounds=bounds)
        res = minimize(nll, res.x, method="Nelder-Mead", bounds=bounds,
                       options={"xatol": 1e-8, "fatol": 1e-12})
        r, alpha, a, b = np.exp(res.x)
        self.params_ = {"r": float(r), "alpha": float(alpha / scale), "a": float(a), "b": float(b)}
        self.loglik_ = float(-res.fun * len(x))
        self.n_ = len(x)
        return self

    def p_alive(self, frequency, recency, age) -> np.ndarray:
        """P(alive | x, t_x, T) for each customer."""
        x, tx, T = (np.asarray(v, dtype=float) for v in (frequency, recency, age))
        p = self.params_
        r, alpha, a, b = p["r"], p["alpha"], p["a"], p["b"]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            log_ratio = (np.log(a) - np.log(b + np.maximum(x, 1) - 1)
                         + (r + x) * (np.log(alpha + T) - np.log(alpha + tx)))
            out = 1.0 / (1.0 + np.exp(log_ratio))
        return np.where(x > 0, out, 1.0)

    def expected_purchases(self, t: float, frequency, recency, age) -> np.ndarray:
        """Expected purchases in the next ``t`` time units for each customer."""
        from scipy.special import hyp2f1

        x, tx, T = (np.asarray(v, dtype=float) for v in (frequency, recency, age))
        p = self.params_
        r, alpha, a, b = p["r"], p["alpha"], p["a"], p["b"]
        z = t / (alpha + T + t)
        num = (a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x)
                                            * hyp2f1(r + x, b + x, a + b + x - 1, z))
        den = 1 + (x > 0) * a / (b + np.maximum(x, 1) - 1) * ((alpha + T) / (alpha + tx)) ** (r + x)
        return num / den


def rfm(ws: Workspace, *, event_types: list[str] | None = None, unit_days: float = 1.0) -> pa.Table:
    """Per person: ``frequency`` (repeat purchase days), ``recency`` (first to last
    purchase day) and ``age`` (first purchase day to the data's last day), in units of
    ``unit_days``. Purchases: events of ``event_types`` (default: purchase events,
    those tagged ``purchase`` or ``repeat_purchase``, see
    :data:`keymoments.taxonomy.PURCHASE_MOMENTS`); several on one day count once (as in
    the BG/NBD literature), days as the workspace's ``timezone`` counts them."""
    from ..taxonomy import purchase_event_sql
    from .dimensions import period_sql

    where = ("e.event_type IN (" + ", ".join(literal(t) for t in event_types) + ")"
             if event_types else purchase_event_sql("e.moment"))
    unit = days(unit_days, "unit_days")
    zone = ws.config.timezone
    return ws.con.execute(f"""
        WITH d AS (SELECT DISTINCT e.person_id, {period_sql("day", "e.ts", zone)} AS day
                   FROM events e WHERE {where} AND e.person_id IS NOT NULL),
        last AS (SELECT {period_sql("day", "max(ts)", zone)} AS end_day FROM events)
        SELECT d.person_id, count(*) - 1 AS frequency,
               (epoch(max(d.day)) - epoch(min(d.day))) / 86400.0 / {unit} AS recency,
               (epoch(any_value(last.end_day)) - epoch(min(d.day))) / 86400.0 / {unit} AS age
        FROM d CROSS JOIN last GROUP BY d.person_id ORDER BY d.person_id""").to_arrow_table()


def probability_alive(ws: Workspace, *, event_types: list[str] | None = None,
                      unit_days: float = 1.0, horizon: float = 90.0) -> Result:
    """Each person's probability of still being active, and purchases expected in the
    next ``horizon`` units, from a BG/NBD fit on every person's purchase history."""
    table = rfm(ws, event_types=event_types, unit_days=unit_days)
    x, tx, T = (table.column(c).to_numpy() for c in ("frequency", "recency", "age"))
    model = BGNBD().fit(x, tx, T)
    alive = model.p_alive(x, tx, T)
    expected = model.expected_purchases(horizon, x, tx, T)
    out = table.append_column("p_alive", pa.array(alive)).append_column(
        "expected_purchases", pa.array(expected))
    repeaters = int((x > 0).sum())
    warnings = []
    if len(x) and repeaters == 0:
        warnings.append("no person made a repeat purchase, so the model cannot tell who has "
                        "dropped out: every p_alive is 1 and means nothing; check event_types "
                        "or load a longer history")
    elif len(x) and repeaters < 30:
        warnings.append(f"only {repeaters} person(s) made a repeat purchase: the fit rests on "
                        "few histories, read p_alive with care")
    return Result(out, {"model": "BG/NBD", "params": model.params_, "n": model.n_,
                        "repeaters": repeaters, "warnings": warnings,
                        "loglik": model.loglik_, "unit_days": unit_days, "horizon": horizon,
                        "mean_p_alive": float(alive.mean()) if len(alive) else None,
                        "method": "BG/NBD (Fader, Hardie & Lee 2005), maximum likelihood"})
