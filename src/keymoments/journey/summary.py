"""One row per journey: span, channels, status, outcome and moment features
(an Ibis expression over the scored journey events).

Status, judged at ``as_of`` (the config's, else the latest event):

* **completed**: it holds an end event of its type (catch-all journeys: idle
  longer than their gap);
* **abandoned**: no end and idle at least the type's ``abandon_after``;
* **stalled**: no end and idle at least ``stall_after`` (default: the 90th
  percentile duration of the type's completed journeys);
* **open**: otherwise.

Outcomes: ``repurchased``, whether the person made a purchase within
``repurchase_within`` after the journey ended: a purchase is a journey of one of
``outcomes.purchase_types`` that holds a purchase event (tagged ``purchase`` or
``repeat_purchase``, :data:`keymoments.taxonomy.PURCHASE_MOMENTS`), at the time of
its first purchase event, among the journeys that started after this one (a review
or a ticket of an order placed before the data begins is no purchase); ``churned``.

The moment features (first, peak, valley, end, mean, trend) use only scored
events *before the outcome* (the first feedback in the journey) and outside the
excluded stages, so the remembered score never sees the answer it predicts.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from ..config.analysis import JourneysConfig, JourneyType, MomentsConfig, OutcomesConfig
from ..engine import small_result
from ..engine.expr import epoch_micros, seconds_between
from ..taxonomy import is_purchase_event

__all__ = ["summarize_journeys", "moment_candidates", "moment_features", "channel_vocabulary",
           "MAX_CHANNEL_FLAGS"]

_F = "float64"

#: up to this many distinct channels, a journey's channel list is built from one
#: boolean aggregate per channel (plain aggregates, which DuckDB spills to disk);
#: beyond it, from a list aggregate (which DuckDB holds in memory)
MAX_CHANNEL_FLAGS = 64


def channel_vocabulary(je: ir.Table) -> list[str] | None:
    """The distinct channels of the journey events, sorted (code point order, as
    ``list_sort``/``array_sort`` order strings), or None when there are more than
    :data:`MAX_CHANNEL_FLAGS` (a small query on any backend)."""
    col = small_result(je.select("channel").distinct().limit(MAX_CHANNEL_FLAGS + 2)).column(0)
    names = sorted(v for v in col.to_pylist() if v is not None)
    return names if len(names) <= MAX_CHANNEL_FLAGS else None


def _channel_flags(je: ir.Table, vocabulary: list[str]) -> dict[str, ir.BooleanScalar]:
    return {f"_ch{i}": (je.channel == v).any() for i, v in enumerate(vocabulary)}


def _channel_list(t: ir.Table, vocabulary: list[str]) -> ir.ArrayValue:
    """The sorted distinct channels from the per-channel flags: NULL when the
    journey has no channel (as a list aggregate of no values gives)."""
    null_list = ibis.null().cast("array<string>")
    if not vocabulary:
        return null_list
    flags = [t[f"_ch{i}"].fill_null(False) for i in range(len(vocabulary))]
    items = ibis.array([ibis.cases((f, ibis.literal(v)), else_=ibis.null().cast("string"))
                        for f, v in zip(flags, vocabulary)])
    return ibis.cases((ibis.or_(*flags), items.filter(lambda x: x.notnull())), else_=null_list)


def _learned(j: ir.Table, weights: dict) -> ir.FloatingValue:
    """The learned model's score of each journey: intercept plus the weighted moment
    features, a missing trend as 0, clipped to [-1, 1] (the terms added in the order
    of :func:`~keymoments.moment.fitting.remembered_sql`, to the same double)."""
    from ..moment.remembered import FEATURES

    def exact(x) -> ir.FloatingValue:  # (from text: see fitting._double)
        return ibis.literal(repr(float(x))).cast(_F)

    score = exact(weights["intercept"])
    for f in FEATURES:
        feature = j[f].fill_null(0.0) if f == "trend_v" else j[f]
        score = score + exact(weights[f][0]) * feature
    return score.clip(-1.0, 1.0)


def _per_journey(je: ir.Table, channel_vocab: list[str] | None) -> ir.Table:
    """One row per journey of ``je`` (with the flags ``_start, _end, _fb, _churn``):
    its type, key, person, span, event count, channels (one flag ``_ch<i>`` per
    channel of ``channel_vocab``, else the ``channels`` list), switches, whether it
    holds a start and an end event, its outcome's position and its first churn time.

    A journey's first event (``seq`` 0, its earliest) gives one row, and the
    aggregate of its later events, joined to it, completes it: most journeys have one
    event (in the 10M-event bench export, 8.1M of 8.7M), and grouping only the later
    events (0.7M groups, not 8.7M) costs less than the join (under a 3GB limit: 12.0
    -> 7.3 s of CPU for this aggregate, the build 72 -> 65 s; the same rows)."""
    first, rest = je.filter(je.seq == 0), je.filter(je.seq > 0)
    if channel_vocab is not None:
        chans = _channel_flags(rest, channel_vocab)
    else:
        chans = {"_chl": rest.channel.collect()}
    later = rest.group_by(_j=rest.journey_id).aggregate(
        _end_ts=rest.ts.max(), _n=rest.count(), **chans, _sw=rest.channel_switch.sum(),
        _hs=rest._start.any(), _he=rest._end.any(), _os=rest.seq.min(where=rest._fb),
        _ct=rest.ts.min(where=rest._churn))
    j = first.left_join(later, first.journey_id == later._j)
    if channel_vocab is not None:  # (a flag's NULL, no channel, reads as false)
        channels = {f: (j.channel == v).fill_null(False) | j[f].fill_null(False)
                    for f, v in zip(chans, channel_vocab)}
    else:
        own = ibis.cases((j.channel.notnull(), ibis.array([j.channel])),
                         else_=ibis.literal([], type="array<string>"))
        channels = {"channels": own.concat(j._chl.fill_null(ibis.literal([], type="array<string>")))
                    .unique().sort()}
    return j.select(
        "journey_id", "journey_type", "journey_key", "person_id",
        start_ts=j.ts,
        end_ts=j._end_ts.fill_null(j.ts),
        n_events=(j._n.fill_null(0) + 1).cast("int64"),
        **channels,
        channel_switches=(j.channel_switch + j._sw.fill_null(0)).cast("int64"),
        has_start=j._start | j._hs.fill_null(False),
        has_end=j._end | j._he.fill_null(False),
        outcome_seq=ibis.cases((j._fb, j.seq.cast("int64")), else_=j._os.cast("int64")),
        churn_ts=ibis.cases((j._churn, j.ts), else_=j._ct),
    ).view()  # (a relation of its own: the joins to it compare its computed columns)


def moment_features(c: ir.Table) -> ir.Table:
    """Per journey of the candidates ``c`` (see :func:`moment_candidates`): ``first_v,
    end_v, peak_v, valley_v, mean_v, n_valenced, trend_v`` (the least-squares slope of
    valence on the position, NULL under two positions)."""
    wc = ibis.window(group_by=c.journey_id, order_by=[c.seq])
    c = c.mutate(_k=ibis.row_number().over(wc).cast(_F))
    feats = c.group_by("journey_id").aggregate(
        first_v=c.valence.argmin(c.seq),
        end_v=c.valence.argmax(c.seq),
        peak_v=c.valence.max(),
        valley_v=c.valence.min(),
        mean_v=c.valence.mean(),
        n_valenced=c.count(),
        _sx=c._k.sum(), _sy=c.valence.sum(), _sxy=(c._k * c.valence).sum(),
        _sxx=(c._k * c._k).sum(),
    )
    n = feats.n_valenced.cast(_F)
    denom = n * feats._sxx - feats._sx * feats._sx
    trend = ibis.cases((denom > 0, (n * feats._sxy - feats._sx * feats._sy) / denom),
                       else_=ibis.null().cast(_F))
    return feats.mutate(trend_v=trend).drop("_sx", "_sy", "_sxy", "_sxx")


def moment_candidates(je: ir.Table, moments: MomentsConfig, *,
                      before_outcome: bool = True, before_churn: bool = False) -> ir.Table:
    """Scored events that can be experience moments: a valence and not an excluded
    stage. ``before_outcome`` keeps only those before the journey's first rated
    feedback (the remembered score's inputs, which must not see the answer they
    predict); without it, the whole journey (its moments: a parcel delivered late
    after the customer's review is still the journey's valley). ``before_churn`` also
    stops before the first churn-stage event (the features a churn fit reads: a
    cancellation is the churn they would predict)."""
    is_fb = je.stage.isin(moments.exclude_stages).fill_null(False)
    if not before_outcome:
        return je.filter(je.valence.notnull() & ~is_fb)
    outcome = is_fb & je.v_feedback.notnull()  # the outcome: the first rated feedback
    if before_churn:
        outcome = outcome | (je.stage == "churn").fill_null(False)
    fb = je.filter(outcome)
    first_fb = fb.group_by(_fj=fb.journey_id).aggregate(_first_fb=fb.seq.min())
    scored = je.filter(je.valence.notnull() & ~is_fb)
    scored = scored.left_join(first_fb, scored.journey_id == first_fb._fj).drop("_fj")
    keep = scored._first_fb.isnull() | (scored.seq < scored._first_fb)
    return scored.filter(keep).drop("_first_fb")


def summarize_journeys(je: ir.Table, journeys: JourneysConfig, types: list[JourneyType],
                       outcomes: OutcomesConfig, moments: MomentsConfig, as_of: ir.Scalar,
                       person_last: ir.Table, materialize=None,
                       channel_vocab: list[str] | None = None,
                       rated: ir.Table | None = None, inline_p90: bool = False,
                       typical: ir.Table | None = None,
                       remembered_weights: dict | None = None) -> ir.Table:
    """Journeys with status, outcome and moment features. ``person_last`` has
    ``person_id, last_ts`` (the person's last event of any kind). ``rated``
    (``event_id, rating, rating_scale``: the rated events), when given, adds the
    outcome's ``outcome_rating`` and ``outcome_scale``.
    ``inline_p90`` reads the typical durations (one number per journey type) and
    writes them into the expression as literals instead of joining them: fewer
    joins, but the expression then holds results of this data (not for a plan
    compiled once and run on other data).
    ``typical`` (``journey_type, p90``), when given, holds typical durations that
    stand in for those of ``je``'s journeys for the types it lists (a live update's
    few persons are judged by the stored journeys' p90 as a table, so the same plan
    serves every update).
    ``remembered_weights`` (the learned remembered-score model, as stored: feature ->
    [weight, low, high] and ``intercept``; see
    :func:`keymoments.moment.fitting.chosen_weights`), when given, scores
    ``remembered`` instead of peak-end (as :func:`~keymoments.moment.fitting.remembered_sql`).
    ``channel_vocab`` (see :func:`channel_vocabulary`), when given, lists every
    channel of ``je``: the channel lists are then built from plain aggregates that
    spill (without it, from a list aggregate that DuckDB keeps in memory).
    ``materialize(name, expr)``, when given, stores the per-journey aggregate
    (read three times: its rows, the typical durations and the next purchase) and
    the narrow per-journey outcome inputs, so that the last step joins one
    journey-sized table to it (several large hash joins in one DuckDB statement
    can exhaust a small memory limit where each alone spills)."""
    if typical is not None and inline_p90:  # pragma: no cover - a caller's mistake
        raise ValueError("typical durations are given as a table only to a plan not inlined")
    ends = {t.name: t.end for t in types if t.end}
    starts = {t.name: t.start for t in types if t.start}

    def flag(table: dict[str, list[str]]) -> ir.BooleanValue:
        cases = [((je.journey_type == n) & je.event_type.isin(v), True) for n, v in table.items()]
        return ibis.cases(*cases, else_=False) if cases else ibis.literal(False)

    is_fb = je.stage.isin(moments.exclude_stages).fill_null(False) & je.v_feedback.notnull()
    churn_ev = je.stage == "churn"
    # the flags feed the aggregate (the moment features read the events without
    # them); the outcome and purchase rows read the journey events themselves
    je0 = je
    je = je.mutate(
        _end=flag(ends), _start=flag(starts),
        _fb=is_fb, _churn=churn_ev.fill_null(False),
    )
    base = _per_journey(je, channel_vocab)
    fb = je0.filter(is_fb)
    fbr = fb.select(_j=fb.journey_id, _s=fb.seq, outcome_ts=fb.ts, outcome_valence=fb.v_feedback,
                    outcome_event_id=fb.event_id)
    if rated is not None:  # the outcome's rating: a join of two small sets
        r = rated.select(_oe=rated.event_id, outcome_rating=rated.rating,
                         outcome_scale=rated.rating_scale)
        fbr = fbr.left_join(r, fbr.outcome_event_id == r._oe).drop("_oe")
    base = base.left_join(fbr, [base.journey_id == fbr._j, base.outcome_seq == fbr._s]
                          ).drop("_j", "_s")
    if channel_vocab is not None:
        # the flags are stored with the aggregate (see materialize below) and the list
        # built from them as the journeys are written: a list column costs more to
        # store and read back than a few booleans
        flags = [f"_ch{i}" for i in range(len(channel_vocab))]
        # the list goes where it was before (appended to the aggregate's columns)
        after = [c for c in base.columns if c not in flags][-1]
    else:  # no channel: NULL, as DuckDB's list aggregate of no values (Spark's is [])
        base = base.mutate(channels=ibis.cases((base.channels.length() > 0, base.channels),
                                               else_=ibis.null().cast("array<string>")))

    # moment features from the candidates
    # (from the relation with the flags, as before: the candidates' order decides
    # the last bits of the features' sums)
    feats = moment_features(moment_candidates(je.drop("_end", "_start", "_fb", "_churn"),
                                              moments))
    j = base.left_join(feats, base.journey_id == feats.journey_id).drop("journey_id_right")
    j = j.mutate(n_valenced=j.n_valenced.fill_null(0))

    # remembered, default model: mean of the most intense moment and the end
    intense = ibis.cases((j.peak_v.abs() >= j.valley_v.abs(), j.peak_v), else_=j.valley_v)
    peak_end = (intense + j.end_v) / 2
    if remembered_weights is None:
        j = j.mutate(remembered=peak_end, remembered_model=ibis.literal("peak_end"))
    else:
        learned, scored = _learned(j, remembered_weights), j.n_valenced > 0
        j = j.mutate(remembered=ibis.cases((scored, learned), else_=peak_end),
                     remembered_model=ibis.cases((scored, ibis.literal("learned")),
                                                 else_=ibis.literal("peak_end")))

    # status
    dur = seconds_between(j.end_ts, j.start_ts)
    idle = seconds_between(as_of, j.end_ts)
    j = j.mutate(duration_s=dur.cast(_F), idle_s=idle.cast(_F), as_of=as_of)
    if materialize is not None:
        j = materialize("_km_jbase", j)
    if channel_vocab is not None:
        j = j.mutate(channels=_channel_list(j, channel_vocab)).drop(*flags)
        cols = [c for c in j.columns if c != "channels"]
        at = cols.index(after) + 1
        j = j.select(*cols[:at], "channels", *cols[at:])

    # outcome inputs, narrow, one row per journey: the person's next purchase (the
    # earliest first purchase event of the purchases that started after this one, by
    # start: a window over narrow rows, as sorting the wide rows costs more than the
    # join), the person's first churn event from the journey's start on (the same
    # window over the journeys' starts and the churn events, a churn event after the
    # starts of its time: a join of journeys to churn events grew with their product
    # per person) and last event. A purchase's first purchase event from an aggregate
    # of the few purchase events, joined to the narrow rows (in the journeys'
    # aggregate, the test on every event cost it more: 10M events, journeys step
    # 49.9 -> 63.4 s, one run each)
    buy = je0.filter(je0.journey_type.isin(outcomes.purchase_types) & is_purchase_event(je0.moment))
    buys = buy.group_by(_bj=buy.journey_id).aggregate(_pts=buy.ts.min())
    n = j.select("person_id", "start_ts", "journey_id")
    n = n.left_join(buys, n.journey_id == buys._bj).drop("_bj")
    ts_null = ibis.null().cast(n.start_ts.type())
    n = n.select("person_id", "start_ts", "journey_id", "_pts", _k=ibis.literal(0), _cts=ts_null)
    churn = je0.filter(je0.stage == "churn")
    n = n.union(churn.select(person_id=churn.person_id, start_ts=churn.ts,
                             journey_id=ibis.null().cast(n.journey_id.type()), _pts=ts_null,
                             _k=ibis.literal(1), _cts=churn.ts))
    # by start instant (whole microseconds): the next purchase is among those that
    # started strictly later (two orders placed at the same instant are not each
    # other's repurchase, whatever their ids), a churn event counts from the start's
    # instant on; both windows share one sort, by one integer
    n = n.mutate(_e=epoch_micros(n.start_ts))
    later = ibis.window(group_by=n.person_id, order_by=n._e, range=(1, None))
    from_here = ibis.window(group_by=n.person_id, order_by=n._e, range=(0, None))
    n = n.select(_nj=n.journey_id, _np=n.person_id, _next=n._pts.min().over(later),
                 _churn_ts=n._cts.min().over(from_here))
    n = n.filter(n._nj.notnull())
    pl = person_last.select(_pp=person_last.person_id, _last=person_last.last_ts)
    n = n.left_join(pl, n._np == pl._pp).drop("_np", "_pp")
    if materialize is not None:
        n = materialize("_km_jnext", n)

    own = (j.filter(j.has_end).group_by("journey_type")
               .aggregate(_p90=j.duration_s.quantile(0.9)))
    if inline_p90:
        # one number per journey type: read them and write them into the expression
        # (a join, even of three rows, next to the journey-sized join below makes
        # DuckDB hold both hash tables in memory)
        p90 = {r["journey_type"]: r["_p90"] for r in small_result(own).to_pylist()
               if r["_p90"] is not None}
        null_f = ibis.null().cast(_F)
        j = j.mutate(_p90=ibis.cases(*[(j.journey_type == t, ibis.literal(float(v), type=_F))
                                       for t, v in p90.items()], else_=null_f) if p90 else null_f)
    else:
        own = own.select(_t=own.journey_type, _p90=own._p90)
        if typical is not None:
            given = typical.select(_g=typical.journey_type, _gp90=typical.p90)
            own = own.outer_join(given, own._t == given._g).select(
                _t=ibis.coalesce(own._t, given._g), _p90=ibis.coalesce(given._gp90, own._p90))
        j = j.left_join(own, j.journey_type == own._t).drop("_t")
    stall_cfg = {t.name: t.stall_after for t in types if t.stall_after is not None}
    abandon = {t.name: t.abandon_after for t in types}
    stall_after = ibis.cases(*[(j.journey_type == n, ibis.literal(v)) for n, v in stall_cfg.items()],
                             else_=j._p90) if stall_cfg else j._p90
    catch_all_gap = ibis.literal(float(journeys.catch_all_gap))
    abandon_after = ibis.cases(*[(j.journey_type == n, ibis.literal(v)) for n, v in abandon.items()],
                               else_=catch_all_gap) if abandon else catch_all_gap  # (no types)
    catch_all = j.journey_type == journeys.catch_all
    status = ibis.cases(
        (j.has_end, "completed"),
        (catch_all & (j.idle_s > journeys.catch_all_gap), "completed"),
        (catch_all, "open"),
        # idle "this long" (or longer) is abandoned, stalled; a catch-all run ends as
        # its gap splits: strictly longer
        (j.idle_s >= abandon_after, "abandoned"),
        (stall_after.notnull() & (j.idle_s >= stall_after), "stalled"),
        else_="open",
    )
    j = j.mutate(status=status).drop("_p90")

    # outcomes: repurchase and churn
    j = j.left_join(n, j.journey_id == n._nj).drop("_nj")
    gap_next = seconds_between(j._next, j.end_ts)
    rep = outcomes.repurchase_within
    # known once the whole window has passed, either way: a recent journey already
    # followed by a purchase is not marked before the others, or a share of the known
    # ones would favour repurchases (the recent non-repurchased are all unknown)
    repurchased = ibis.cases(
        (j.idle_s < rep, ibis.null().cast("boolean")),
        (j._next.notnull() & (gap_next <= rep), True),
        else_=False,
    )
    after_churn = seconds_between(j._churn_ts, j.start_ts)
    quiet = seconds_between(as_of, j._last)
    churned = ibis.cases(  # known once churn_within has passed, as repurchased
        (j.idle_s < outcomes.churn_within, ibis.null().cast("boolean")),
        (j._churn_ts.notnull() & (after_churn <= outcomes.churn_within), True),
        ((j._last <= j.end_ts) & (quiet >= outcomes.inactive_churn_after), True),
        else_=False,
    )
    j = j.mutate(repurchased=repurchased, churned=churned)
    return j.drop("_next", "_last", "_churn_ts", "outcome_seq", "churn_ts")
