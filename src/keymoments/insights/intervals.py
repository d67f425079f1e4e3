"""Confidence intervals and difference tests for CX metrics.

Every metric keymoments reports carries an interval, so nobody acts on noise:

- proportions (CSAT top-2 share, conversion, churn rate...): the Wilson score
  interval, which keeps its coverage near the nominal level for small samples and
  rates near 0 or 1, where the textbook Wald interval fails;
- NPS (share of promoters minus share of detractors): the analytic interval of a
  difference of two multinomial shares, ``var = (p + d - (p - d)^2) / n``, computed
  with 3/4 of an answer added to the promoters and to the detractors and 3 to the
  answers (the "adjusted Wald" of Rocks 2016), which keeps small samples from a
  zero-width interval;
- means (CES, star ratings): Student's t, kept inside the scale; a group whose
  answers are all equal has no spread to measure, so its interval is the Wilson
  interval of the mean's place on the scale (three 1-star answers: 1 to 3.25 stars,
  not 1 to 1);
- medians (times to response and resolution): the distribution-free interval
  between two order statistics (binomial); none when even the smallest to the
  largest value would cover less than the confidence (5 values or fewer at 95%).

Tests of whether two groups or periods differ: the pooled two-proportion z-test,
a z-test on the NPS difference, Welch's t-test on means; p-values of many
comparisons are corrected with Holm (family-wise) or Benjamini-Hochberg (false
discovery rate).

>>> low, high = wilson(8, 10)
>>> round(low, 4), round(high, 4)
(0.4902, 0.9433)
>>> [round(x, 1) for x in nps_interval(50, 30, 20)]
[30.0, 14.1, 44.2]
>>> [round(p, 3) for p in adjust_pvalues([0.01, 0.04, 0.03], "holm")]
[0.03, 0.06, 0.06]
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import KeymomentsError

__all__ = [
    "wilson", "nps_interval", "mean_interval", "median_interval", "two_proportion_test",
    "nps_difference_test", "welch_test", "welch_difference", "adjust_pvalues", "z_value",
]  # fmt: skip


def _stats():
    from scipy import stats  # imported on first use: importing keymoments stays light

    return stats


def z_value(confidence: float) -> float:
    """The two-sided normal quantile for ``confidence`` (1.96 for 0.95)."""
    if not 0 < confidence < 1:
        raise KeymomentsError(f"confidence must be between 0 and 1, got {confidence}; use e.g. 0.95")
    return float(_stats().norm.ppf(0.5 + confidence / 2))


def wilson(k: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes out of ``n`` (NaNs when ``n`` is 0).

    >>> wilson(0, 20)[0], round(wilson(0, 20)[1], 4)
    (0.0, 0.1611)
    """
    if n <= 0:
        return (math.nan, math.nan)
    z = z_value(confidence)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at k = 0 (k = n) the bound is exactly 0 (1); computed, it is off by rounding
    return (0.0 if k == 0 else max(0.0, centre - half), 1.0 if k == n else min(1.0, centre + half))


def nps_interval(promoters: float, passives: float, detractors: float,
                 confidence: float = 0.95) -> tuple[float, float, float]:
    """NPS (-100..100) and its adjusted-Wald interval from the counts of each answer
    group: 3/4 added to the promoters and to the detractors and 3 to the answers,
    then the normal interval of a difference of two proportions of one multinomial
    (Rocks 2016, "Interval estimation for the 'Net Promoter Score'", The American
    Statistician; the variant Lewis and Sauro found best on real surveys, 2021).

    Hand-computed: 52 promoters, 13 passives, 21 detractors: p = 52.75 / 89,
    d = 21.75 / 89, se = sqrt((p + d - (p - d)^2) / 89) = 0.08968, so
    34.83 +/- 1.96 x 8.968.

    >>> [round(x, 1) for x in nps_interval(52, 13, 21)]
    [36.0, 17.3, 52.4]
    >>> [round(x, 1) for x in nps_interval(0, 0, 0)]
    [nan, nan, nan]
    """
    n = promoters + passives + detractors
    if n <= 0:
        return (math.nan, math.nan, math.nan)
    nps = (promoters - detractors) / n
    na = n + 3.0
    p, d = (promoters + 0.75) / na, (detractors + 0.75) / na
    se = math.sqrt(max(p + d - (p - d) ** 2, 0.0) / na)
    z = z_value(confidence)
    centre = p - d
    return (100 * nps, 100 * max(-1.0, centre - z * se), 100 * min(1.0, centre + z * se))


def mean_interval(n: float, total: float, total_sq: float, confidence: float = 0.95,
                  scale: tuple[float, float] | None = None) -> tuple[float, float, float]:
    """Mean and Student-t interval from sufficient statistics (count, sum, sum of
    squares). On a bounded ``scale`` (lowest, highest answer) the interval stays
    inside it, and answers that are all equal, or one answer (no spread to measure)
    get the Wilson interval of the mean's place on the scale, as if each answer
    were the scale's lowest or highest value: the widest spread the mean allows.

    >>> [round(x, 3) for x in mean_interval(4, 10.0, 30.0)]
    [2.5, 0.446, 4.554]
    >>> [round(x, 3) for x in mean_interval(4, 10.0, 30.0, scale=(1, 5))]
    [2.5, 1.0, 4.554]
    >>> [round(x, 2) for x in mean_interval(3, 3.0, 3.0, scale=(1, 5))]  # 1, 1, 1 stars
    [1.0, 1.0, 3.25]
    >>> [round(x, 2) for x in mean_interval(1, 5.0, 25.0, scale=(1, 5))]  # one 5-star answer
    [5.0, 1.83, 5.0]
    """
    if n <= 0:
        return (math.nan, math.nan, math.nan)
    mean = total / n
    if n < 2 and scale is None:
        return (mean, math.nan, math.nan)
    var = max(total_sq - n * mean * mean, 0.0) / (n - 1) if n > 1 else 0.0  # one: no spread
    if scale is None:
        half = float(_stats().t.ppf(0.5 + confidence / 2, n - 1)) * math.sqrt(var / n)
        return (mean, mean - half, mean + half)
    lo, hi = scale
    if var <= 1e-12 * (hi - lo) ** 2:
        w_lo, w_hi = wilson(n * (mean - lo) / (hi - lo), n, confidence)
        return (mean, lo + w_lo * (hi - lo), lo + w_hi * (hi - lo))
    half = float(_stats().t.ppf(0.5 + confidence / 2, n - 1)) * math.sqrt(var / n)
    return (mean, max(float(lo), mean - half), min(float(hi), mean + half))


def median_interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """Median and its distribution-free interval (order statistics, binomial).

    >>> median_interval([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
    (6.0, 2.0, 10.0)

    With 5 values the smallest to the largest covers the median 15 times in 16
    (1 - 2 / 2**5 = 0.9375), under 95%: no interval at that confidence.

    >>> median_interval([1, 2, 3, 4, 5])
    (3.0, nan, nan)
    """
    x = np.sort(np.asarray(values, dtype=float))
    x = x[~np.isnan(x)]
    n = len(x)
    if n == 0:
        return (math.nan, math.nan, math.nan)
    med = float(np.median(x))
    alpha = 1 - confidence
    lo = int(_stats().binom.ppf(alpha / 2, n, 0.5))  # number of values below the lower bound
    hi = n - lo
    if lo < 1:  # even (min, max) covers less than ``confidence``
        return (med, math.nan, math.nan)
    return (med, float(x[lo - 1]), float(x[min(hi, n - 1)]))


def two_proportion_test(k1: float, n1: float, k2: float, n2: float) -> float:
    """Two-sided p-value of the pooled two-proportion z-test (NaN if undefined); when
    an expected count of the 2x2 table is under 5, where the normal approximation
    fails, Fisher's exact test instead (scipy).

    >>> round(two_proportion_test(45, 100, 30, 100), 4)
    0.0285

    An agent with 0 of 3 satisfied against 110 of 134 (expected counts under 5):
    exact p 0.0070, where the z-test gives 0.0004.

    >>> round(two_proportion_test(0, 3, 110, 134), 4)
    0.007
    """
    if n1 <= 0 or n2 <= 0:
        return math.nan
    cells = [(k1, n1), (k2, n2)]
    total_k, total = k1 + k2, n1 + n2
    expected = [n * share for _, n in cells for share in (total_k / total, 1 - total_k / total)]
    if min(expected) < 5 and all(float(x).is_integer() for x in (k1, n1, k2, n2)):
        table = [[int(k1), int(n1 - k1)], [int(k2), int(n2 - k2)]]
        return float(_stats().fisher_exact(table).pvalue)
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = (k1 / n1 - k2 / n2) / se
    return float(2 * _stats().norm.sf(abs(z)))


def nps_difference_test(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    """Two-sided p-value of a z-test on the difference of two NPS, each given as
    (promoters, passives, detractors) counts, each NPS and its variance adjusted as in
    :func:`nps_interval` (3/4 added to the promoters and to the detractors, 3 to the
    answers), as Agresti and Caffo (2000) adjust a difference of two proportions. The
    plain estimates give a group of one answer, or of equal answers, no variance: one
    promoter would differ from any other group at p = 0.

    >>> round(nps_difference_test((50, 30, 20), (30, 30, 40)), 4)
    0.0005
    >>> round(nps_difference_test((1, 0, 0), (300, 400, 300)), 2)
    0.51
    """
    def parts(c):
        n = sum(c)
        if n <= 0:
            return math.nan, math.nan
        na = n + 3.0
        p, d = (c[0] + 0.75) / na, (c[2] + 0.75) / na
        return p - d, (p + d - (p - d) ** 2) / na

    (m1, v1), (m2, v2) = parts(a), parts(b)
    if math.isnan(m1) or math.isnan(m2):
        return math.nan
    return float(2 * _stats().norm.sf(abs(m1 - m2) / math.sqrt(v1 + v2)))


def _no_spread_variance(n: float, mean: float, scale: tuple[float, float]) -> float:
    """The variance given to ``n`` equal answers on a bounded scale: that of answers at
    the scale's two ends with the mean's place on it, plus two answers at each end
    (Agresti-Caffo), so a few equal answers do not pass for a certainty."""
    lo, hi = scale
    p = (n * (mean - lo) / (hi - lo) + 2) / (n + 4)
    return p * (1 - p) * (hi - lo) ** 2


def welch_test(n1: float, s1: float, ss1: float, n2: float, s2: float, ss2: float,
               scale: tuple[float, float] | None = None) -> float:
    """Two-sided p-value of Welch's t-test from sufficient statistics. On a bounded
    ``scale``, a group of equal answers (no spread) is given the variance of
    :func:`_no_spread_variance` instead of 0, which would make any difference
    certain.

    >>> a, b = [1.0, 2, 3, 4], [3.0, 4, 5, 6, 7]
    >>> p = welch_test(4, sum(a), sum(x*x for x in a), 5, sum(b), sum(x*x for x in b))
    >>> round(p, 4)
    0.0349

    Three 1-star answers against 100 answers averaging 4.1 stars: without a scale
    the difference is certain; on the 1-5 scale it is not clear at 5%.

    >>> b = [5.0] * 50 + [4.0] * 20 + [3.0] * 20 + [2.0] * 10
    >>> welch_test(3, 3.0, 3.0, 100, sum(b), sum(x*x for x in b)) < 1e-20
    True
    >>> round(welch_test(3, 3.0, 3.0, 100, sum(b), sum(x*x for x in b), scale=(1, 5)), 3)
    0.096
    """
    if n1 < 2 or n2 < 2:
        return math.nan
    m1, m2 = s1 / n1, s2 / n2
    v1 = max(ss1 - n1 * m1 * m1, 0.0) / (n1 - 1) / n1
    v2 = max(ss2 - n2 * m2 * m2, 0.0) / (n2 - 1) / n2
    if scale is not None:
        tiny = 1e-12 * (scale[1] - scale[0]) ** 2
        v1 = _no_spread_variance(n1, m1, scale) / n1 if v1 * n1 <= tiny else v1
        v2 = _no_spread_variance(n2, m2, scale) / n2 if v2 * n2 <= tiny else v2
    se2 = v1 + v2
    if se2 == 0:
        return 1.0 if m1 == m2 else 0.0
    df = se2 ** 2 / (v1 ** 2 / (n1 - 1) + v2 ** 2 / (n2 - 1))
    return float(2 * _stats().t.sf(abs(m1 - m2) / math.sqrt(se2), df))


def welch_difference(n1: float, s1: float, ss1: float, n2: float, s2: float, ss2: float,
                     confidence: float = 0.95) -> tuple[float, float, float, float]:
    """Difference of two means (first minus second) with its Welch interval and
    p-value, from sufficient statistics: (difference, low, high, p).

    >>> d, low, high, p = welch_difference(4, 10.0, 30.0, 5, 25.0, 135.0)
    >>> round(d, 2), round(low, 2), round(high, 2), round(p, 4)
    (-2.5, -4.77, -0.23, 0.0349)
    """
    if n1 < 2 or n2 < 2:
        return (math.nan, math.nan, math.nan, math.nan)
    m1, m2 = s1 / n1, s2 / n2
    v1 = max(ss1 - n1 * m1 * m1, 0.0) / (n1 - 1) / n1
    v2 = max(ss2 - n2 * m2 * m2, 0.0) / (n2 - 1) / n2
    se2 = v1 + v2
    diff = m1 - m2
    if se2 == 0:
        return (diff, diff, diff, 1.0 if diff == 0 else 0.0)
    df = se2 ** 2 / ((v1 ** 2 / (n1 - 1) if v1 else 0.0) + (v2 ** 2 / (n2 - 1) if v2 else 0.0))
    t = _stats().t
    half = float(t.ppf(0.5 + confidence / 2, df)) * math.sqrt(se2)
    return (diff, diff - half, diff + half, float(2 * t.sf(abs(diff) / math.sqrt(se2), df)))


def adjust_pvalues(pvalues, method: str = "holm") -> list[float]:
    """P-values corrected for multiple comparisons: ``holm`` (controls the chance of
    any false alarm), ``bh`` (Benjamini-Hochberg, controls the share of false alarms)
    or ``none``. NaNs stay NaN and do not count as comparisons.

    >>> [round(p, 3) for p in adjust_pvalues([0.01, 0.04, 0.03, float("nan")], "bh")]
    [0.03, 0.04, 0.04, nan]
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    q = p[ok]
    m = len(q)
    if m == 0 or method == "none":
        out[ok] = q
        return out.tolist()
    order = np.argsort(q, kind="stable")
    ranked = q[order]
    if method == "holm":
        adj = np.maximum.accumulate((m - np.arange(m)) * ranked)
    elif method == "bh":
        adj = np.minimum.accumulate((m / np.arange(m, 0, -1) * ranked[::-1]))[::-1]
    else:
        raise KeymomentsError(f"unknown multiple-comparison correction {method!r}; use holm, bh or none")
    res = np.empty(m)
    res[order] = np.minimum(adj, 1.0)
    out[ok] = res
    return out.tolist()
