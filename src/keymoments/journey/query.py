"""Read journeys and moments from a built workspace, as typed results.

>>> import tempfile, keymoments as km
>>> ws = km.init(tempfile.mkdtemp())
>>> len(km.journeys(ws)), km.journeys(ws, status="open").meta["filters"]
(0, {'status': 'open'})
>>> km.moments(ws, kind="vally").meta["hint"]
"no moment kind 'vally' in moments: (moment kinds here: none: build first)"
>>> ws.close()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..results import Result

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["journeys", "moments", "moment_summary"]


def _where(filters: dict[str, object]) -> tuple[str, list]:
    parts, params = [], []
    for col, value in filters.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            parts.append(f'"{col}" IN ({", ".join("?" for _ in value)})')
            params.extend(value)
        else:
            parts.append(f'"{col}" = ?')
            params.append(value)
    return ("WHERE " + " AND ".join(parts)) if parts else "", params


def _select(ws: Workspace, table: str, order: str, filters: dict[str, object],
            limit: int | None) -> Result:
    """Rows of ``table`` matching ``filters`` (None = any), ordered, as a Result."""
    where, params = _where(filters)
    lim = f"LIMIT {int(limit)}" if limit is not None else ""
    data = ws.con.execute(f"SELECT * FROM {table} {where} ORDER BY {order} {lim}",
                          params).to_arrow_table()
    meta = {"filters": {k: v for k, v in filters.items() if v is not None}, "n": data.num_rows}
    if not data.num_rows:
        hint = _unknown_value(ws, table, filters)
        if hint:
            meta["hint"] = hint
    return Result(data, meta)


#: filters whose values a typo makes match nothing: checked against the table's values
#: column -> (what one value is, what several are)
_NAMED = {"journey_type": ("journey type", "journey types"), "status": ("status", "statuses"),
          "kind": ("moment kind", "moment kinds")}


def _unknown_value(ws: Workspace, table: str, filters: dict[str, object]) -> str | None:
    """Why nothing matched, when a named filter's value is not in ``table`` at all."""
    for col, (what, plural) in _NAMED.items():
        value = filters.get(col)
        if value is None:
            continue
        known = [r[0] for r in ws.con.execute(
            f'SELECT DISTINCT "{col}" FROM {table} WHERE "{col}" IS NOT NULL ORDER BY 1'
        ).fetchall()]
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if v not in known:
                return not_one_of(v, known, what, plural, f" in {table}")
    return None


def not_one_of(value: object, known: list[str], what: str, plural: str, where: str = "") -> str:
    """The message for a filter ``value`` that is none of ``known``, with the closest.

    >>> not_one_of("vally", ["peak", "valley"], "moment kind", "moment kinds")
    "no moment kind 'vally': did you mean 'valley'? (moment kinds here: peak, valley)"
    """
    import difflib

    close = difflib.get_close_matches(str(value), known, n=1)
    mean = f"did you mean {close[0]!r}? " if close else ""
    listed = ", ".join(known) if known else "none: build first"
    return f"no {what} {value!r}{where}: {mean}({plural} here: {listed})"


def journeys(ws: Workspace, *, journey_type: str | list[str] | None = None,
             status: str | list[str] | None = None, person: str | None = None,
             limit: int | None = None) -> Result:
    """Journeys with status, outcome, moment features and remembered score."""
    pid = ws.resolve_person(person) if person else None
    return _select(ws, "journeys", "start_ts, journey_id",
                   {"journey_type": journey_type, "status": status, "person_id": pid}, limit)


def moments(ws: Workspace, *, journey: str | None = None, kind: str | list[str] | None = None,
            person: str | None = None, limit: int | None = None) -> Result:
    """Moments (first impression, peak, valley, farewell, business moments).

    ``journey`` is a journey's id, or its key (the order or ticket id it follows:
    the moments of every journey with that key)."""
    pid = ws.resolve_person(person) if person else None
    journey_ids: str | list[str] | None = journey
    if journey is not None and not ws.con.execute(
            "SELECT 1 FROM journeys WHERE journey_id = ? LIMIT 1", [journey]).fetchone():
        keyed = [r[0] for r in ws.con.execute(
            "SELECT journey_id FROM journeys WHERE journey_key = ? ORDER BY 1", [journey]
        ).fetchall()]
        journey_ids = keyed or journey
    return _select(ws, "moments", "ts, journey_id, kind",
                   {"journey_id": journey_ids, "kind": kind, "person_id": pid}, limit)


def moment_summary(ws: Workspace, by: tuple[str, ...] = ("kind", "stage", "channel"), *,
                   kind: str | list[str] | None = None,
                   journey_type: str | list[str] | None = None) -> Result:
    """Across journeys: which moment kinds carry the most negative and positive
    valence, by ``by`` (kind, stage, channel, event_type, journey_type, agent,
    category), most negative mean first; only the moments of ``kind`` and of journeys
    of ``journey_type`` when given (a value none has: no rows, and a ``hint``).

    ``n`` counts every moment (a key moment on an event nothing scored too: a
    purchase, a first interaction), ``n_valenced`` those with a valence; the mean and
    the shares are of those."""
    allowed = {"kind", "stage", "channel", "event_type", "journey_type", "agent", "category"}
    bad = [b for b in by if b not in allowed]
    if bad:
        from ..errors import KeymomentsError

        raise KeymomentsError(f"cannot group moments by {bad[0]!r}; use {', '.join(sorted(allowed))}")
    if not by:
        from ..errors import KeymomentsError

        raise KeymomentsError(f"group moments by at least one of {', '.join(sorted(allowed))}")
    cols = ", ".join(f'"{b}"' for b in by)
    filters = {"kind": kind, "journey_type": journey_type}
    where, params = _where(filters)
    # ordered by the mean rounded: a mean summed in another order differs in its last
    # bits, which ordered equal means differently from run to run
    table = ws.con.execute(f"""
        SELECT {cols}, count(*) AS n, count(valence) AS n_valenced,
               avg(valence) AS mean_valence,
               avg(CASE WHEN valence < 0 THEN 1.0 WHEN valence >= 0 THEN 0.0 END) AS share_negative,
               avg(CASE WHEN valence > 0 THEN 1.0 WHEN valence <= 0 THEN 0.0 END) AS share_positive
        FROM moments {where} GROUP BY ALL
        ORDER BY round(mean_valence, 9) NULLS LAST, n DESC, {cols}""", params).to_arrow_table()
    meta = {"by": list(by), "filters": {k: v for k, v in filters.items() if v is not None},
            "method": "mean valence of the moments with one; shares of negative/positive "
                      "among them"}
    if not table.num_rows:
        hint = _unknown_value(ws, "moments", filters)
        if hint:
            meta["hint"] = hint
    return Result(table, meta)
