"""Root causes of valleys, ranked by what fixing them would gain, with recurrence.

A journey's valley (its worst moment, when negative) is grouped into causes at
several grains, each a row:

- ``event``: the valley's event type (``order_delivered``);
- ``rule``: the valence reason with its amounts (a number and its unit) blanked,
  which names the rule that fired (``delivered # late against the promise``: 3 days
  and 5 hours late alike);
- ``agent`` and ``channel`` of the valley event, and ``attr:<key>`` for the valley
  event's attributes (``carrier=SlowShip``, ``topic=delivery``), each together
  with the event type (``order_delivered · carrier=SlowShip``);
- ``theme``: text themes found in the journey's texts (``theme=delivery``), when
  there is text (see :mod:`.themes`).

For each cause: ``journeys`` with it and their ``share`` of the journeys of that
type; ``effect``, the mean outcome of those journeys minus the mean of comparable
journeys (same type) without it, with its Welch interval; ``gain``, the outcome
points recovered if it were fixed (journeys x -effect, floored at 0) with the
interval's range; and ``repeat_contact_rate``, the share of those journeys
followed by a contact (a journey of the types ``paths.contacts.journey_types``
counts as contacts: ``issue_resolution`` and ``case`` by default) starting within
``within_days`` of the valley, the sign of a cause not fixed. Ranked by gain, causes seen fewer than
``min_journeys`` times left out.

The SQL is portable except ``regexp_replace(..., 'g')`` (Spark: no flag, it
replaces every match).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pyarrow as pa

from ..errors import KeymomentsError
from ..results import Result
from ..sql import interval_days, literal
from . import intervals as iv

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["OUTCOMES", "root_causes", "recurrence", "outcome_sql"]

#: the label of a theme found in the text of the rated feedback itself
SAID_IN_FEEDBACK = " (said in the feedback)"

#: Journey outcomes an analysis can explain, as SQL over ``journeys j``.
OUTCOMES = {
    "feedback": "j.outcome_valence",
    "remembered": "j.remembered",
    "repurchase": "CASE WHEN j.repurchased THEN 1.0 WHEN NOT j.repurchased THEN 0.0 END",
    "churn": "CASE WHEN j.churned THEN 1.0 WHEN NOT j.churned THEN 0.0 END",
    "csat": ("CASE WHEN j.outcome_scale = 'csat5' THEN "
             "CASE WHEN j.outcome_rating >= 4 THEN 1.0 ELSE 0.0 END END"),
    "nps": "CASE WHEN j.outcome_scale = 'nps10' THEN j.outcome_rating END",
}

#: what each outcome is, in words (for messages)
OUTCOME_WORDS = {
    "feedback": "the journey's first feedback answer, on any scale",
    "remembered": "the predicted remembered score",
    "repurchase": "another purchase within outcomes.repurchase_within",
    "churn": "churn within outcomes.churn_within",
    "csat": "a CSAT answer in the top two boxes",
    "nps": "the journey's NPS answer",
}


#: the widest a difference of two means of an outcome can be (valences in [-1, 1],
#: shares in [0, 1])
_BOUNDED = {"feedback": 2.0, "remembered": 2.0, "repurchase": 1.0, "churn": 1.0, "csat": 1.0}


def outcome_sql(outcome: str) -> str:
    """The SQL of a named outcome: ``feedback`` (the first answer's valence, any
    scale), ``remembered``, ``repurchase``, ``churn`` (1/0, NULL while too early to
    tell), ``csat`` (top-2 box of a CSAT answer, 1/0), ``nps`` (the 0-10 answer)."""
    if outcome not in OUTCOMES:
        raise KeymomentsError(f"unknown outcome {outcome!r}; use one of {', '.join(OUTCOMES)}")
    return OUTCOMES[outcome]


def _attribute_keys(ws: Workspace, threshold: float, max_values: int) -> list[str]:
    rows = ws.con.execute(f"""
        SELECT k, count(DISTINCT e.attributes[k]) AS nv FROM moments m
        JOIN events e ON e.event_id = m.event_id, unnest(map_keys(e.attributes)) AS t(k)
        WHERE m.kind = 'valley' AND m.valence < {float(threshold)} GROUP BY k ORDER BY k""").fetchall()
    return [k for k, nv in rows if 1 < nv <= max_values]


def root_causes(ws: Workspace, *, outcome: str = "feedback", threshold: float = 0.0,
                attributes: list[str] | None = None, themes: dict[str, str] | bool = True,
                within_days: float = 7.0,
                min_journeys: int = 5, min_outcomes: int = 5, confidence: float = 0.95,
                limit: int | None = None) -> Result:
    """Valley causes ranked by the estimated gain if fixed (frequency x effect).

    The effect is estimated on the journeys with the outcome (``n_outcome``, often
    fewer than ``journeys``: not every customer answers); a cause with fewer than
    ``min_outcomes`` of them gets no effect and no rank by gain (two answers give an
    interval from the other journeys' spread alone, falsely narrow), nor does one
    whose interval reaches past the outcome's range (too few answers to say).

    ``attributes``: attribute keys of the valley events to refine causes by (default:
    every key with 2 to 50 values on valley events). ``themes``: text themes (see
    :mod:`.themes`) found in any text of the journey (a complaint, a review) also
    become causes (``theme=delivery``); True uses the defaults, False none. A theme
    found in the text of a rated event (a review's comment) is labelled ``theme=delivery
    (said in the feedback)``: it is the customer's stated reason for the rating the
    effect is measured on, not an independent event of the journey.

    >>> import tempfile, keymoments as km
    >>> ws = km.init(tempfile.mkdtemp())
    >>> r = km.root_causes(ws)
    >>> len(r), r.meta["outcome"]
    (0, 'feedback')
    >>> ws.close()
    """
    y = outcome_sql(outcome)
    if not (isinstance(threshold, (int, float)) and -1 <= threshold <= 1):  # (NaN too)
        raise KeymomentsError(f"threshold must be a valence from -1 to 1, not {threshold!r}")
    # a repeat contact: a journey of the types the path analyses count as contacts
    contact_types = list(ws.config.paths.contacts.journey_types) or ["issue_resolution"]
    warnings = _warnings(ws, outcome, y, contact_types)
    if attributes is None:
        attributes = _attribute_keys(ws, threshold, 50)
    branches = [
        "SELECT journey_id, journey_type, event_type, 'event' AS dim, event_type AS value, ts FROM v",
        "SELECT journey_id, journey_type, event_type, 'rule', "
        "regexp_replace(reason, '[0-9]+([.][0-9]+)?( (seconds|minutes|hours|days))?', '#', 'g'), "
        "ts FROM v WHERE reason IS NOT NULL",
        "SELECT journey_id, journey_type, event_type, 'agent', agent, ts FROM v WHERE agent IS NOT NULL",
        "SELECT journey_id, journey_type, event_type, 'channel', channel, ts FROM v WHERE channel IS NOT NULL",
    ] + [f"SELECT journey_id, journey_type, event_type, {literal('attr:' + k)}, attributes[{literal(k)}], ts "
         f"FROM v WHERE attributes[{literal(k)}] IS NOT NULL" for k in attributes]
    if themes:
        from .themes import DEFAULT_THEMES, theme_sql

        chosen = DEFAULT_THEMES if themes is True else themes
        # a theme in the text of a rated event (a review's comment) is the customer's
        # stated reason for that rating: labelled so, as it explains its own outcome
        said = f"CASE WHEN e.rating IS NOT NULL THEN {literal(SAID_IN_FEEDBACK)} ELSE '' END"
        branches += [f"SELECT je.journey_id, je.journey_type, 'text', 'theme', "
                     f"{literal(name)} || {said}, je.ts "
                     f"FROM journey_events je JOIN events e ON e.event_id = je.event_id "
                     f"WHERE e.text IS NOT NULL AND {cond}" for name, cond in theme_sql(chosen)]
    sql = f"""
    WITH v AS (
      SELECT m.journey_id, m.journey_type, m.person_id, m.event_type, m.agent, m.channel, m.reason,
             m.ts, e.attributes
      FROM moments m JOIN events e ON e.event_id = m.event_id
      WHERE m.kind = 'valley' AND m.valence < {float(threshold)}),
    c AS ({' UNION ALL '.join(branches)}),
    jy AS (SELECT j.journey_id, j.journey_type, j.person_id, {y} AS y FROM journeys j),
    contacts AS (SELECT person_id, start_ts FROM journeys
                 WHERE journey_type IN ({', '.join(literal(t) for t in contact_types)})),
    cj AS (
      SELECT c.journey_type, c.event_type, c.dim, c.value, c.journey_id, min(c.ts) AS ts,
             any_value(jy.y) AS y, any_value(jy.person_id) AS person_id
      FROM c JOIN jy ON jy.journey_id = c.journey_id
      GROUP BY c.journey_type, c.event_type, c.dim, c.value, c.journey_id),
    rep AS (
      SELECT cj.journey_id, cj.dim, cj.value, cj.event_type,
             max(CASE WHEN k.start_ts > cj.ts AND k.start_ts <= cj.ts + {interval_days(within_days, "within_days")}
                 THEN 1 ELSE 0 END) AS again
      FROM cj LEFT JOIN contacts k ON k.person_id = cj.person_id
      GROUP BY cj.journey_id, cj.dim, cj.value, cj.event_type),
    per AS (
      SELECT cj.journey_type, cj.event_type, cj.dim, cj.value, count(*) AS journeys,
             count(cj.y) AS n_outcome, sum(cj.y) AS s, sum(cj.y * cj.y) AS ss,
             sum(rep.again) AS repeat_contacts
      FROM cj JOIN rep ON rep.journey_id = cj.journey_id AND rep.dim = cj.dim
                      AND rep.value = cj.value AND rep.event_type = cj.event_type
      GROUP BY cj.journey_type, cj.event_type, cj.dim, cj.value),
    tot AS (
      SELECT journey_type, count(*) AS journeys_of_type, count(y) AS n_all, sum(y) AS s_all,
             sum(y * y) AS ss_all FROM jy GROUP BY journey_type)
    SELECT per.*, tot.journeys_of_type, tot.n_all, tot.s_all, tot.ss_all
    FROM per JOIN tot ON tot.journey_type = per.journey_type
    WHERE per.journeys >= {int(min_journeys)}
    """
    rows = ws.con.execute(sql).to_arrow_table().to_pylist()
    out = []
    for r in rows:
        n1, s1, ss1 = r["n_outcome"], float(r["s"] or 0.0), float(r["ss"] or 0.0)
        n0, s0, ss0 = r["n_all"] - n1, float(r["s_all"] or 0.0) - s1, float(r["ss_all"] or 0.0) - ss1
        eff, low, high, p = iv.welch_difference(n1, s1, ss1, n0, s0, ss0, confidence)
        if r["dim"] == "event":
            label = r["event_type"]
        elif r["dim"] == "theme":
            label = f"theme={r['value']}"
        else:
            label = f"{r['event_type']} · {r['dim'].removeprefix('attr:')}={r['value']}"
        ok = not math.isnan(eff) and n1 >= min_outcomes
        if ok and outcome in _BOUNDED and not (-_BOUNDED[outcome] <= low <= high
                                               <= _BOUNDED[outcome]):
            ok = False
        out.append({
            "cause": label, "journey_type": r["journey_type"], "event_type": r["event_type"],
            "dimension": r["dim"], "value": r["value"], "journeys": r["journeys"],
            "share": r["journeys"] / r["journeys_of_type"], "n_outcome": n1, "n_comparison": n0,
            "mean_with": s1 / n1 if n1 else None, "mean_without": s0 / n0 if n0 else None,
            "effect": eff if ok else None, "effect_low": low if ok else None,
            "effect_high": high if ok else None, "p_value": p if ok else None,
            "gain": r["journeys"] * max(0.0, -eff) if ok else None,
            "gain_low": r["journeys"] * max(0.0, -high) if ok else None,
            "gain_high": r["journeys"] * max(0.0, -low) if ok else None,
            "repeat_contacts": int(r["repeat_contacts"] or 0),
            "repeat_contact_rate": float(r["repeat_contacts"] or 0) / r["journeys"],
        })
    out = _drop_non_refining(out)
    adj = iv.adjust_pvalues([r["p_value"] if r["p_value"] is not None else math.nan for r in out], "bh")
    for r, q in zip(out, adj):
        r["p_adjusted"] = None if math.isnan(q) else q
    out.sort(key=lambda r: (-(r["gain"] if r["gain"] is not None else -1), -r["journeys"], r["cause"]))
    for rank, r in enumerate(out, 1):
        r["rank"] = rank
    if limit is not None:
        out = out[:limit]
    table = pa.Table.from_pylist(out) if out else pa.table(
        {"cause": pa.array([], pa.string()), "journeys": pa.array([], pa.int64()),
         "effect": pa.array([], pa.float64()), "gain": pa.array([], pa.float64())})
    return Result(table, {
        "outcome": outcome, "outcome_sql": y, "threshold": threshold, "attributes": attributes,
        "within_days": within_days, "min_journeys": min_journeys, "confidence": confidence,
        "n_causes": len(out), "contact_types": contact_types, "warnings": warnings,
        "hint": None if out else (
            f"no valley (worst moment with valence below {threshold:g}) recurs in "
            f"{min_journeys} journeys or more: nothing scores that low (see 'keymoments moments "
            "--summary'), or lower min_journeys"),
        "method": ("valleys (worst moment, valence below threshold) grouped by event type, rule, "
                   "agent, channel and attributes, and text themes of any text in the journey; "
                   "effect = mean outcome with the cause minus "
                   "without, same journey type (Welch interval); gain = journeys x max(0, -effect); "
                   "p-values Benjamini-Hochberg adjusted"),
    })


def _warnings(ws: Workspace, outcome: str, y: str, contact_types: list[str]) -> list[str]:
    """Why effects or repeat contacts will be empty: no journey has the outcome, or
    none is a contact."""
    have, types = ws.con.execute(
        f"SELECT count({y}), count(*) FILTER (WHERE journey_type IN "
        f"({', '.join(literal(t) for t in contact_types)})) FROM journeys j").fetchone()
    out = []
    if not have:
        out.append(f"no journey has the outcome {outcome!r} ({OUTCOME_WORDS[outcome]}), so no "
                   "cause has an effect or "
                   "a gain: pick another --outcome (feedback: the first answer on any scale)")
    if not types:
        out.append(f"repeat contacts count journeys of type {', '.join(contact_types)} "
                   "(paths.contacts.journey_types in keymoments.yaml); there are none here, so "
                   "every repeat_contact_rate is 0")
    return out


def _drop_non_refining(rows: list[dict]) -> list[dict]:
    """Drop refinements that hold exactly the journeys of their event type (every
    late delivery on the delivery channel says nothing more); the event's row keeps
    the rule's words in ``rule``."""
    parent = {(r["journey_type"], r["event_type"]): r for r in rows if r["dimension"] == "event"}
    for top in parent.values():
        top["rule"], top["_rule_n"] = None, 0
    kept = []
    for r in rows:
        top = parent.get((r["journey_type"], r["event_type"]))
        if r["dimension"] == "rule" and top is not None and r["journeys"] > top["_rule_n"]:
            top["rule"], top["_rule_n"] = r["value"], r["journeys"]
        if r["dimension"] != "event" and top is not None and r["journeys"] == top["journeys"]:
            continue
        kept.append(r)
    for r in kept:
        r.setdefault("rule", r["value"] if r["dimension"] == "rule" else None)
        r.pop("_rule_n", None)
    return kept


def recurrence(ws: Workspace, *, within_days: float = 7.0, by: str = "attr:topic",
               journey_type: str = "issue_resolution", confidence: float = 0.95) -> Result:
    """Repeat contacts: the share of issue journeys followed by another of the same
    person within ``within_days`` (about the same topic when both have one), by a
    dimension (see :mod:`.dimensions`). A high rate marks a root cause not fixed.

    >>> import tempfile, keymoments as km
    >>> from keymoments.insights.root_causes import recurrence
    >>> ws = km.init(tempfile.mkdtemp())
    >>> r = recurrence(ws)
    >>> len(r), r.meta["warnings"][0][:59]
    (0, "no journey of type 'issue_resolution', so no repeat contact")
    >>> ws.close()
    """
    from .dimensions import column_name, dimension_sql

    dsql, dims = dimension_sql([by, "attr:topic"] if by != "attr:topic" else [by])
    col = column_name(dims[0])
    window = interval_days(within_days, "within_days")
    rows = ws.con.execute(f"""
        WITH d AS ({dsql}), i AS (SELECT * FROM d WHERE journey_type = {literal(journey_type)})
        SELECT a."{col}" AS grp, count(*) AS n,
               sum(CASE WHEN EXISTS (SELECT 1 FROM i b WHERE b.person_id = a.person_id
                     AND b.journey_id <> a.journey_id AND b.start_ts > a.start_ts
                     AND b.start_ts <= a.end_ts + {window}
                     AND (a.topic IS NULL OR b.topic IS NULL OR a.topic = b.topic))
                   THEN 1 ELSE 0 END) AS k
        FROM i a GROUP BY a."{col}" ORDER BY a."{col}" """).fetchall()
    out = []
    for grp, n, k in rows:
        low, high = iv.wilson(k, n, confidence)
        out.append({col: grp, "journeys": n, "repeat_contacts": int(k), "rate": k / n,
                    "low": low, "high": high})
    table = pa.Table.from_pylist(out) if out else pa.table({col: pa.array([], pa.string())})
    warnings = []
    if not out:
        from .metrics import journey_types_here

        warnings.append(f"no journey of type {journey_type!r}, so no repeat contact is counted: "
                        f"pick the type of the contacts (journey types here: "
                        f"{journey_types_here(ws)})")
    return Result(table, {"within_days": within_days, "by": col, "journey_type": journey_type,
                          "method": "share of issue journeys followed by another (same topic when "
                                    "known) within the window; Wilson interval",
                          "warnings": warnings})
