"""Language service quality: how customers fare by language, how often they are
served in a language other than their own, and what that mismatch costs.

The input is one row per event with ``person_id``, ``event_id``, ``journey_id``,
``language`` (the language the contact was served in, from the agent or contact
language field), ``preferred_language`` (the customer's, from
:func:`~keymoments.text.language.preferred_languages`), ``rating``,
``rating_scale`` and ``valence``. Metrics by the customer's language: CSAT (share
of csat5 ratings at 4-5), NPS (nps10: share 9-10 minus share 0-6), mean star
rating (stars5: reviews), mean valence, each with its sample size. Mismatch: the
share of contacts (events with a language) whose language differs from the
customer's, and the difference in mean valence of the journeys with a mismatched
contact against those without, with a Welch 95% interval.

>>> rows = pa.table({"person_id": ["a", "a", "b", "b", "c", "c"],
...     "event_id": list("123456"), "journey_id": ["j1", "j1", "j2", "j2", "j3", "j3"],
...     "language": ["pt", None, "en", None, "pt", None],
...     "preferred_language": ["pt", "pt", "pt", "pt", "pt", "pt"],
...     "rating": [None, 5.0, None, 2.0, None, 4.0],
...     "rating_scale": [None, "csat5", None, "csat5", None, "csat5"],
...     "valence": [0.2, 1.0, -0.5, -0.5, 0.0, 0.5]})
>>> q = language_service_quality(rows)
>>> q.by_language.to_pylist()[0]["csat"], q.mismatch.meta["mismatch_share"]
(0.6666666666666666, 0.3333333333333333)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from scipy import stats

from ..results import Result

__all__ = ["LanguageQuality", "language_service_quality"]


@dataclass
class LanguageQuality:
    """``by_language``: metrics per customer language; ``mismatch``: contacts
    served in another language, by pair, with the effect in ``meta``."""

    by_language: Result
    mismatch: Result


def _share(mask: np.ndarray) -> float | None:
    return float(mask.mean()) if mask.size else None


def language_service_quality(rows: pa.Table) -> LanguageQuality:
    """Metrics by language and the mismatch effect (see the module doc)."""
    d = {c: rows.column(c).to_pylist() for c in rows.column_names}
    pref = np.array([p or "" for p in d["preferred_language"]], dtype=object)
    lang = np.array([x or "" for x in d["language"]], dtype=object)
    rating = np.array([np.nan if r is None else r for r in d["rating"]], float)
    scale = np.array([s or "" for s in d["rating_scale"]], dtype=object)
    val = np.array([np.nan if v is None else v for v in d["valence"]], float)
    out = []
    for code in sorted(set(pref.tolist()) - {""}):
        m = pref == code
        cs = rating[m & (scale == "csat5") & ~np.isnan(rating)]
        nps = rating[m & (scale == "nps10") & ~np.isnan(rating)]
        stars = rating[m & (scale == "stars5") & ~np.isnan(rating)]
        v = val[m & ~np.isnan(val)]
        out.append({"language": code, "people": len({p for p, k in zip(d["person_id"], m) if k}),
                    "events": int(m.sum()), "csat": _share(cs >= 4), "n_csat": int(cs.size),
                    "nps": (float((nps >= 9).mean() - (nps <= 6).mean()) * 100) if nps.size else None,
                    "n_nps": int(nps.size),
                    "stars": float(stars.mean()) if stars.size else None,
                    "n_stars": int(stars.size),
                    "valence": float(v.mean()) if v.size else None,
                    "n_valence": int(v.size)})
    by_language = Result(pa.Table.from_pylist(out, schema=pa.schema([
        ("language", pa.string()), ("people", pa.int64()), ("events", pa.int64()),
        ("csat", pa.float64()), ("n_csat", pa.int64()), ("nps", pa.float64()),
        ("n_nps", pa.int64()), ("stars", pa.float64()), ("n_stars", pa.int64()),
        ("valence", pa.float64()), ("n_valence", pa.int64())])),
        {"method": "CSAT = share of csat5 ratings 4-5; NPS = %9-10 - %0-6 of nps10; "
                   "stars = mean stars5 rating; valence = mean event valence; grouped by the "
                   "customer's preferred language"})
    contact = (lang != "") & (pref != "")
    mism = contact & (lang != pref)
    pairs: dict[tuple[str, str], int] = {}
    for p, s in zip(pref[mism], lang[mism]):
        pairs[(p, s)] = pairs.get((p, s), 0) + 1
    # journey-level effect: mean valence of journeys with / without a mismatched contact
    jv: dict[str, list[float]] = {}
    jm: dict[str, bool] = {}
    for j, v, c, mm in zip(d["journey_id"], val, contact, mism):
        if j is None:
            continue
        jv.setdefault(j, [])
        if not np.isnan(v):
            jv[j].append(v)
        jm[j] = jm.get(j, False) or bool(mm)
    with_c = {j for j, c in zip(d["journey_id"], contact) if c and j is not None}
    a = np.array([np.mean(jv[j]) for j in with_c if jm[j] and jv[j]])
    b = np.array([np.mean(jv[j]) for j in with_c if not jm[j] and jv[j]])
    meta = {"contacts": int(contact.sum()), "mismatched": int(mism.sum()),
            "mismatch_share": float(mism.sum() / contact.sum()) if contact.sum() else None,
            "journeys_mismatched": int(a.size), "journeys_matched": int(b.size),
            "effect": None, "effect_ci95": None, "p_value": None,
            "method": "difference in mean journey valence, mismatched - matched, Welch t interval"}
    if a.size >= 2 and b.size >= 2:
        diff = float(a.mean() - b.mean())
        va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
        se = float(np.sqrt(va + vb))
        dof = (va + vb) ** 2 / ((va ** 2) / (a.size - 1) + (vb ** 2) / (b.size - 1)) if se else 1.0
        t = float(stats.t.ppf(0.975, dof)) if se else 0.0
        meta.update(effect=diff, effect_ci95=[diff - t * se, diff + t * se],
                    p_value=float(stats.ttest_ind(a, b, equal_var=False).pvalue) if se else None)
    mismatch = Result(pa.Table.from_pylist(
        [{"customer_language": p, "served_language": s, "contacts": n}
         for (p, s), n in sorted(pairs.items(), key=lambda x: (-x[1], x[0]))],
        schema=pa.schema([("customer_language", pa.string()), ("served_language", pa.string()),
                          ("contacts", pa.int64())])), meta)
    return LanguageQuality(by_language, mismatch)
