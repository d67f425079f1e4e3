"""Consistency: how much the welcome, peak and farewell moments vary by agent,
team, channel and language, with shrinkage so that small groups are not flagged on
noise, and the outliers named.

Moments: the **welcome** is a journey's first scored event handled by an agent (the
first impression when no agent took part); the **peak** and the **farewell** are
the journey's moments (see docs/concepts.md). Each moment belongs to the agent,
team, channel and language of its event; a team is the event's ``team`` attribute,
else the agent's team in ``paths.teams``.

Per group: the mean valence and its spread (standard deviation), with 95%
intervals (t for the mean, chi-square for the spread). Shrinkage (empirical Bayes):
a group's mean is pulled toward the grand mean by ``tau2 / (tau2 + s2 / n)``
(``tau2`` the between-group variance, by the method of moments), and its variance
toward the pooled variance as if the pool were ``nu0`` extra observations (scaled
inverse chi-square prior; ``nu0`` from the spread of the log variances of the
groups of at least 5 moments, by median absolute deviation, at most 30). A group is an outlier when its shrunk interval excludes the pooled
value: ``inconsistent`` (spread above), ``low`` or ``high`` (mean). Only the
per-group sums come out of the engine.

>>> stats = group_stats(["a"] * 3 + ["b"] * 40 + ["c"] * 40,
...                     [0.3, -0.9, 0.3] + [0.3, 0.2] * 20 + [0.9, -0.9] * 20)
>>> [(r["group"], r["flag"]) for r in stats]
[('a', None), ('b', None), ('c', 'inconsistent')]
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import ibis
import numpy as np
import pyarrow as pa
from scipy import stats as st

from ..engine import backend
from ..results import Result
from .dfg import _filter
from .selection import JourneyFilter, journey_events

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["consistency", "group_stats", "shrink", "KINDS", "DIMENSIONS"]

KINDS = ("welcome", "peak", "farewell")
#: The most weight the pooled variance gets, in observations.
NU0_MAX = 30.0
DIMENSIONS = ("agent", "team", "channel", "language")


def shrink(n: np.ndarray, mean: np.ndarray, var: np.ndarray, alpha: float = 0.05) -> list[dict]:
    """Shrunk means and spreads, with 95% intervals, for groups of sizes ``n`` with
    sample means ``mean`` and variances ``var`` (ddof 1; NaN when n < 2); flags use
    intervals at ``1 - alpha / groups`` (Bonferroni: one family per kind and
    dimension), so that among many agents chance alone rarely flags one."""
    n = n.astype(float)
    z_flag = float(st.norm.ppf(1 - alpha / (2 * max(len(n), 1))))
    ok = n >= 2
    total = n.sum()
    grand = float((n * mean).sum() / total)
    dof = np.where(ok, n - 1, 0)
    pooled = float((dof * np.nan_to_num(var)).sum() / dof.sum()) if dof.sum() > 0 else 0.0
    pooled = max(pooled, 1e-12)
    # hyperparameters from the groups with enough contacts (robust: median absolute
    # deviations, so one outlier group does not widen the prior it is judged by)
    big = ok & (n >= 5) if (ok & (n >= 5)).sum() >= 3 else ok
    if ok.sum() >= 2:  # between-group variance of the means: method of moments, weighted by n
        spread = float((n[ok] * (mean[ok] - grand) ** 2).sum() / n[ok].sum())
        tau2 = max(0.0, spread - pooled * (ok.sum() - 1) / n[ok].sum())
    else:
        tau2 = 0.0
    if big.sum() >= 3:
        lv = np.log(np.maximum(var[big], 1e-12))
        lmad = 1.4826 * float(np.median(np.abs(lv - np.median(lv))))
        between = max(lmad ** 2 - float(np.median(2 / (n[big] - 1))), 1e-6)
        nu0 = float(min(max(2 / between, 2.0), NU0_MAX))
    else:
        nu0 = NU0_MAX
    out = []
    for i in range(len(n)):
        k = n[i]
        s2 = float(var[i]) if ok[i] else pooled
        wgt = tau2 / (tau2 + pooled / k) if tau2 > 0 else 0.0
        m_sh = wgt * float(mean[i]) + (1 - wgt) * grand
        m_se = math.sqrt(wgt * pooled / k)
        nu = nu0 + (k - 1 if ok[i] else 0)
        v_sh = (nu0 * pooled + (k - 1 if ok[i] else 0) * s2) / nu
        v_lo = nu * v_sh / st.chi2.ppf(0.975, nu)
        v_hi = nu * v_sh / st.chi2.ppf(0.025, nu)
        q = st.norm.cdf(z_flag)
        v_lo_flag = nu * v_sh / st.chi2.ppf(q, nu)
        row = {
            "shrunk_mean": m_sh,
            "shrunk_mean_low": m_sh - 1.96 * m_se, "shrunk_mean_high": m_sh + 1.96 * m_se,
            "shrunk_sd": math.sqrt(v_sh), "shrunk_sd_low": math.sqrt(v_lo),
            "shrunk_sd_high": math.sqrt(v_hi),
        }
        flag = None
        if v_lo_flag > pooled:
            flag = "inconsistent"
        elif wgt > 0 and m_sh + z_flag * m_se < grand:
            flag = "low"
        elif wgt > 0 and m_sh - z_flag * m_se > grand:
            flag = "high"
        row["flag"] = flag
        out.append(row)
    return [dict(r, _grand=grand, _pooled_sd=math.sqrt(pooled), _nu0=nu0, _tau2=tau2) for r in out]


def _variance(n: int, s: float, ss: float) -> float:
    """The sample variance (ddof 1) of ``n`` values from their sum ``s`` and sum of
    squares ``ss``; NaN below two values. Equal values give exactly 0: what the sums'
    rounding leaves (a few ulps of ``ss``) is no spread.

    >>> v = [0.1] * 7
    >>> _variance(7, sum(v), sum(x * x for x in v)), _variance(2, 1.0, 1.0)
    (0.0, 0.5)
    """
    if n < 2:
        return float("nan")
    num = ss - s * s / n
    return 0.0 if num <= 64 * np.finfo(float).eps * abs(ss) else num / (n - 1)


def _raw(n: float, mean: float, var: float) -> dict:
    if n >= 2 and var == var:
        sd = math.sqrt(max(var, 0.0))
        t = st.t.ppf(0.975, n - 1)
        lo = math.sqrt((n - 1) * var / st.chi2.ppf(0.975, n - 1))
        hi = math.sqrt((n - 1) * var / st.chi2.ppf(0.025, n - 1))
        return {"sd": sd, "mean_low": mean - t * sd / math.sqrt(n),
                "mean_high": mean + t * sd / math.sqrt(n), "sd_low": lo, "sd_high": hi}
    return {"sd": None, "mean_low": None, "mean_high": None, "sd_low": None, "sd_high": None}


def group_stats(groups: list[str], values: list[float]) -> list[dict]:
    """:func:`shrink` on raw values (a small helper for tests and notebooks)."""
    keys = sorted(set(groups))
    g = np.array(groups, dtype=object)
    v = np.array(values, dtype=float)
    n = np.array([(g == k).sum() for k in keys], dtype=float)
    mean = np.array([v[g == k].mean() for k in keys])
    var = np.array([v[g == k].var(ddof=1) if (g == k).sum() > 1 else np.nan for k in keys])
    return [{"group": k, "n": int(n[i]), "mean": float(mean[i]), **_raw(n[i], mean[i], var[i]), **r}
            for i, (k, r) in enumerate(zip(keys, shrink(n, mean, var)))]


def moment_rows(ws: Workspace, flt: JourneyFilter | None = None):
    """``journey_id, kind, valence, agent, team, channel, language`` of each welcome,
    peak and farewell."""
    b = backend(ws)
    je = journey_events(ws, flt)
    excl = list(ws.config.moments.exclude_stages)
    cols = ["journey_id", "event_id", "valence"]
    handled = je.filter(je.valence.notnull() & je.agent.notnull()
                        & ~je.stage.isin(excl).fill_null(False))
    w = ibis.window(group_by=handled.journey_id, order_by=[handled.seq])
    welcome = handled.mutate(_r=ibis.row_number().over(w)).filter(lambda t: t._r == 0)
    welcome = welcome.select(*cols, kind=ibis.literal("welcome"))
    m = b.table("moments")
    if flt is not None and flt.active():
        sel = je.select(_j="journey_id").distinct()
        m = m.semi_join(sel, m.journey_id == sel._j)
    first = m.filter(m.kind == "first_impression")
    ww = welcome.select(_w="journey_id")
    first = first.anti_join(ww, first.journey_id == ww._w)
    parts = [welcome,
             first.select(*cols, kind=ibis.literal("welcome")),
             m.filter(m.kind.isin(["peak", "farewell"])).select(*cols, kind=m.kind)]
    common = {"journey_id": "string", "event_id": "string", "valence": "float64",
              "kind": "string"}
    rows = ibis.union(*[p.cast(common) for p in parts])
    facts = je.select(_e="event_id", agent="agent", channel="channel", language="language")
    ev = b.table("events").select(_e2="event_id", _team=ibis._.attributes["team"])
    rows = rows.join(facts, rows.event_id == facts._e).drop("_e")
    rows = rows.left_join(ev, rows.event_id == ev._e2).drop("_e2")
    teams = {a: t for t, agents in ws.config.paths.teams.items() for a in agents}
    by_agent = (ibis.cases(*[(rows.agent == a, t) for a, t in teams.items()],
                           else_=ibis.null().cast("string")) if teams
                else ibis.null().cast("string"))
    return rows.mutate(team=rows._team.fill_null(by_agent)).drop("_team")


def consistency(ws: Workspace, *, by: tuple[str, ...] | list[str] = DIMENSIONS,
                kinds: tuple[str, ...] | list[str] = KINDS, filter: JourneyFilter | None = None,
                **filters) -> Result:
    """Per moment kind, dimension and group: n, mean and spread of valence with
    intervals, their shrunk values, and a flag for outliers (see the module doc).

    >>> import tempfile, keymoments as km
    >>> ws = km.init(tempfile.mkdtemp())
    >>> r = km.consistency(ws, by=["agent"])
    >>> len(r), r.meta["outliers"]
    (0, [])
    >>> ws.close()
    """
    from ..errors import KeymomentsError

    bad = [d for d in by if d not in DIMENSIONS] + [k for k in kinds if k not in KINDS]
    if bad:
        raise KeymomentsError(f"cannot measure consistency by {bad[0]!r}: dimensions are "
                              f"{', '.join(DIMENSIONS)}; moment kinds {', '.join(KINDS)}")
    flt = _filter(filter, filters)
    rows = moment_rows(ws, flt)
    rows = rows.filter(rows.kind.isin(list(kinds)))
    out: list[dict] = []
    for dim in by:
        r = rows.filter(rows[dim].notnull())
        g = r.group_by(["kind", r[dim].name("group")]).aggregate(
            n=r.count(), _s=r.valence.sum(), _ss=(r.valence * r.valence).sum())
        t = g.order_by(["kind", "group"]).to_pyarrow().to_pylist()
        for kind in kinds:
            part = [x for x in t if x["kind"] == kind]
            if not part:
                continue
            n = np.array([x["n"] for x in part], dtype=float)
            mean = np.array([x["_s"] for x in part]) / n
            var = np.array([_variance(x["n"], x["_s"], x["_ss"]) for x in part])
            for x, mu, vv, sh in zip(part, mean, var, shrink(n, mean, var)):
                out.append({"kind": kind, "dimension": dim, "group": x["group"], "n": x["n"],
                            "mean": float(mu), **_raw(x["n"], float(mu), float(vv)),
                            **{k: v for k, v in sh.items() if not k.startswith("_")},
                            "grand_mean": sh["_grand"], "pooled_sd": sh["_pooled_sd"]})
    schema = pa.schema([("kind", pa.string()), ("dimension", pa.string()), ("group", pa.string()),
                        ("n", pa.int64()), ("mean", pa.float64()), ("sd", pa.float64()),
                        ("mean_low", pa.float64()), ("mean_high", pa.float64()),
                        ("sd_low", pa.float64()), ("sd_high", pa.float64()),
                        ("shrunk_mean", pa.float64()), ("shrunk_mean_low", pa.float64()),
                        ("shrunk_mean_high", pa.float64()), ("shrunk_sd", pa.float64()),
                        ("shrunk_sd_low", pa.float64()), ("shrunk_sd_high", pa.float64()),
                        ("flag", pa.string()), ("grand_mean", pa.float64()),
                        ("pooled_sd", pa.float64())])
    table = pa.Table.from_pylist(out, schema=schema)
    outliers = [{"kind": x["kind"], "dimension": x["dimension"], "group": x["group"],
                 "flag": x["flag"], "n": x["n"]} for x in out if x["flag"]]
    return Result(table, {"filters": flt.active(), "by": list(by), "kinds": list(kinds),
                          "outliers": outliers,
                          "method": "valence of welcome/peak/farewell moments; 95% t and "
                                    "chi-square intervals; empirical-Bayes shrinkage of means "
                                    "and variances; flagged when the shrunk interval excludes "
                                    "the pooled value"})
