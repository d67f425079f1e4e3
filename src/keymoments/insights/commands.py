"""The insight commands of the ``keymoments`` CLI (``metrics``, ``drivers``,
``root-causes``, ``funnel``, ``churn``, ``predicted``, ``alive``): thin shells over the API,
registered on the main group by :func:`register`."""

from __future__ import annotations

import click

from ..options import limit_option
from ..results import json_text

__all__ = ["register"]


class _Positive(click.ParamType):
    """A finite number above 0 (and at most ``most``) from the command line: NaN and
    infinity pass ``click.FloatRange`` (every comparison with NaN is false)."""

    name = "float"

    def __init__(self, most: float | None = None, unit: str = "a number",
                 name: str = "float") -> None:
        self.most, self.unit, self.name = most, unit, name

    def convert(self, value, param, ctx):
        import math

        try:
            x = float(value)
        except (TypeError, ValueError):
            x = math.nan
        if math.isfinite(x) and x > 0 and (self.most is None or x <= self.most):
            return x
        most = "" if self.most is None else f" and at most {self.most:g}"
        self.fail(f"{value!r} is not {self.unit} above 0{most}", param, ctx)


def _days() -> _Positive:
    from ..sql import MAX_DAYS

    return _Positive(MAX_DAYS, "a number of days", "days")


#: a window or unit in days; a positive number (a horizon in the time unit)
DAYS, POSITIVE = _days(), _Positive()


def _emit(result, as_json: bool, columns: list[str] | None = None, limit: int | None = None,
          title: str | None = None, groups: list[str] = ()) -> None:
    """Print ``result`` (or its JSON); in the ``groups`` columns a unit without a value
    reads ``(none)``."""
    from rich.markup import escape

    from ..cli import _print_result, console

    if as_json:
        rows = result.to_pylist()
        click.echo(json_text({"rows": rows[:limit] if limit else rows, "meta": result.meta}))
        return
    table = result.data
    cols = [c for c in (columns or table.column_names) if c in table.column_names]
    rounded = {c: (lambda v: f"{v:.3g}" if isinstance(v, float) else v) for c in cols}
    rounded.update({c: (lambda v: "(none)" if v is None else v) for c in groups if c in cols})
    _print_result(result, columns=cols, limit=limit, title=title, shown=rounded)
    for w in result.meta.get("warnings", []):
        console.print(f"[yellow]warning:[/] {escape(w)}")


def register(main: click.Group) -> None:
    """Add the insight commands to ``main``."""
    from ..cli import _workspace, console

    @main.command()
    @click.argument("metric", type=click.Choice(["csat", "nps", "ces", "stars", "churn",
                                                 "repeat_purchase", "conversion", "fcr",
                                                 "first_response", "resolution_time"]))
    @click.option("--by", multiple=True, help="Dimension: channel, agent, language, stage, "
                  "journey_type, status, segment, discovery or attr:<key> (repeatable).")
    @click.option("--period", type=click.Choice(["day", "week", "month", "quarter", "year"]))
    @click.option("--since", help="Only units from this time (ISO 8601).")
    @click.option("--until", help="Only units before this time (ISO 8601).")
    @click.option("--inactive-days", type=DAYS,
                  help="churn: no activity for this long counts as churn (non-contractual).")
    @click.option("--correction", type=click.Choice(["holm", "bh", "none"]), default="holm",
                  show_default=True, help="Multiple-comparison correction.")
    @click.option("--min-n", default=30, show_default=True, help="Smaller groups are flagged.")
    @click.option("--json", "as_json", is_flag=True, help="Print rows and meta as JSON.")
    @click.pass_context
    def metrics(ctx, metric, by, period, since, until, inactive_days, correction, min_n, as_json):
        """A CX metric by dimension and period, with intervals, sample sizes and tests."""
        from .metrics import metrics as run

        with _workspace(ctx, read_only=True) as ws:
            r = run(ws, metric, by=list(by), period=period, since=since, until=until,
                    inactive_days=inactive_days, correction=correction, min_n=min_n)
        o = r.meta["overall"]
        if not as_json and o.get("value") is not None:
            console.print(f"{metric}: {o['value']:.3g} (95% {o['low']:.3g} to {o['high']:.3g}), "
                          f"n = {o['n']:,}; {r.meta['definition']}")
        from .metrics import METRICS

        share = METRICS[metric].share
        _emit(r, as_json, [*r.meta["by"], *(["period"] if period else []), "n", "value", "low",
                           "high", *([share[0]] if share else []), "p_adjusted", "differs",
                           "small_sample"], groups=r.meta["by"])

    @main.command()
    @click.option("--outcome", type=click.Choice(["feedback", "remembered", "nps", "csat",
                                                  "repurchase", "churn"]),
                  default="feedback", show_default=True)
    @click.option("--type", "journey_type", multiple=True, help="Only journeys of this type.")
    @click.option("--valences", is_flag=True, help="Also use the moment valences as features.")
    @limit_option(20)
    @click.option("--json", "as_json", is_flag=True, help="Print rows and meta as JSON.")
    @click.pass_context
    def drivers(ctx, outcome, journey_type, valences, limit, as_json):
        """What drives an outcome: effects with intervals and held-out accuracy."""
        from .drivers import drivers as run

        with _workspace(ctx, read_only=True) as ws:
            r = run(ws, outcome, journey_type=list(journey_type) or None, valences=valences)
        h = r.meta["heldout"]
        if not as_json:
            console.print(f"{r.meta['model']} on {r.meta['n']:,} journeys; held-out {h['metric']} "
                          f"{h['score']:.3f} (95% {h['low']:.3f} to {h['high']:.3f})")
        _emit(r, as_json, ["rank", "feature", "effect", "low", "high", "importance", "support"],
              limit=limit)

    @main.command("root-causes")
    @click.option("--outcome", type=click.Choice(["feedback", "remembered", "nps", "csat",
                                                  "repurchase", "churn"]),
                  default="feedback", show_default=True)
    @click.option("--within-days", default=7.0, show_default=True, type=DAYS,
                  help="A contact within this many days after a valley counts as a repeat.")
    @click.option("--min-journeys", default=5, show_default=True)
    @limit_option(20)
    @click.option("--json", "as_json", is_flag=True, help="Print rows and meta as JSON.")
    @click.pass_context
    def root_causes(ctx, outcome, within_days, min_journeys, limit, as_json):
        """Valley causes ranked by the estimated gain if fixed (frequency x effect)."""
        from .root_causes import root_causes as run

        with _workspace(ctx, read_only=True) as ws:
            r = run(ws, outcome=outcome, within_days=within_days, min_journeys=min_journeys)
        _emit(r, as_json, ["rank", "journey_type", "cause", "journeys", "n_outcome", "effect",
                           "effect_low", "effect_high", "gain", "repeat_contact_rate"],
              limit=limit)

    @main.command()
    @click.argument("steps", nargs=-1)
    @click.option("--by", help="channel, discovery, segment or attr:<key>.")
    @click.option("--within-days", default=30.0, show_default=True, type=DAYS)
    @click.option("--unit", type=click.Choice(["person", "journey"]), default="person",
                  show_default=True)
    @click.option("--json", "as_json", is_flag=True, help="Print rows and meta as JSON.")
    @click.pass_context
    def funnel(ctx, steps, by, within_days, unit, as_json):
        """Conversion through STEPS (default: the lifecycle stages), with drop-off and time
        to convert. A step is stage:<s>, moment:<m>, event:<type> or an event type."""
        from .funnel import LIFECYCLE, funnel as run

        with _workspace(ctx, read_only=True) as ws:
            r = run(ws, list(steps) or LIFECYCLE, by=by, within_days=within_days, unit=unit)
        _emit(r, as_json, ["group", "step", "step_name", "units", "conversion", "low", "high",
                           "drop_off", "median_hours_from_previous", "differs"])
        if not as_json:
            console.print(f"each step counted within {r.meta['within_days']:g} days of the first "
                          "(--within-days)")
        if not as_json and r.meta.get("strongest"):
            console.print(f"strongest: {r.meta['strongest']}; weakest: {r.meta['weakest']}")
        if not as_json and r.meta["skipped_steps"]:
            console.print(f"steps with no events, left out: {', '.join(r.meta['skipped_steps'])}")

    @main.command()
    @click.option("--by", help="segment, discovery, first_valley, had_valley, attr:<key>, or a "
                  "journey dimension of the first journey.")
    @click.option("--kind", type=click.Choice(["contractual", "inactivity"]), default="contractual",
                  show_default=True)
    @click.option("--inactive-days", default=90.0, show_default=True, type=DAYS)
    @click.option("--tenure-measure",
                  help="Take the time from this measure, in its own unit (e.g. tenure_months).")
    @click.option("--unit-days", default=1.0, show_default=True, type=DAYS,
                  help="Days per time unit, for times from events (not with --tenure-measure).")
    @click.option("--churn-event", "churn_events", multiple=True,
                  help="Event type that ends a contract (repeatable; default: churn-stage events).")
    @click.option("--horizon", "horizons", multiple=True, type=POSITIVE,
                  help="Give survival at this time, in the time unit (repeatable; default: 30, "
                  "90, 180, 365 days, or quarters of the longest tenure).")
    @click.option("--curves", is_flag=True, help="Print the survival curves, not the summary.")
    @click.option("--drivers", "show_drivers", is_flag=True,
                  help="Hazard ratios of attribute values (Cox), not the groups.")
    @click.option("--json", "as_json", is_flag=True, help="Print rows and meta as JSON.")
    @click.pass_context
    def churn(ctx, by, kind, inactive_days, tenure_measure, unit_days, churn_events, horizons,
              curves, show_drivers, as_json):
        """Churn over time: survival curves, hazards and hazard ratios by group."""
        from .churn import churn as run

        if show_drivers:
            from .churn_drivers import churn_drivers

            with _workspace(ctx, read_only=True) as ws:
                d = churn_drivers(ws, kind=kind, inactive_days=inactive_days,
                                  tenure_measure=tenure_measure, unit_days=unit_days,
                                  churn_events=list(churn_events) or None)
            if not as_json:
                console.print(f"Cox model on {d.meta['n']:,} people ({d.meta['churned']:,} churned); "
                              f"held-out concordance {d.meta['heldout']['score']:.3f}")
            _emit(d, as_json, ["rank", "feature", "reference", "hazard_ratio", "low", "high",
                               "p_value", "support"])
            return
        with _workspace(ctx, read_only=True) as ws:
            r = run(ws, by=by, kind=kind, inactive_days=inactive_days,
                    tenure_measure=tenure_measure, unit_days=unit_days,
                    churn_events=list(churn_events) or None, horizons=tuple(horizons) or None)
        if curves:
            _emit(r.curves, as_json)
            return
        _emit(r.summary, as_json, ["group", "people", "churned", "median_time", "hazard_rate",
                                   "hazard_ratio", "hazard_ratio_low", "hazard_ratio_high",
                                   "p_value"], groups=["group"])
        if not as_json and r.meta["horizons"]:  # survival at the horizons, a table of its own
            import pyarrow as pa

            from ..results import Result

            rows = [{"group": x["group"], **{f"at {h:g}": x[f"survival_{h:g}"]
                                             for h in r.meta["horizons"]}}
                    for x in r.summary.to_pylist()]
            _emit(Result(pa.Table.from_pylist(rows), {}), False, title="share not churned")
        if not as_json:
            unit = (f"in {tenure_measure}'s own unit" if tenure_measure else
                    "in days" if unit_days == 1 else f"in units of {unit_days:g} days")
            console.print(f"times (median_time) {unit}; hazard_rate per unit of time")
        if not as_json and r.meta["logrank"]:
            lr = r.meta["logrank"]
            p = lr["p_value"]  # under double precision's reach it prints as 0
            console.print(f"log-rank test: chi2 {lr['statistic']:.2f} on {lr['df']} df, "
                          + (f"p = {p:.3g}" if p >= 1e-300 else "p < 1e-300"))

    @main.command()
    @click.argument("metric", type=click.Choice(["csat", "nps"]), default="csat")
    @click.option("--by", help="A dimension (see `keymoments metrics --help`).")
    @click.option("--json", "as_json", is_flag=True, help="Print rows and meta as JSON.")
    @click.pass_context
    def predicted(ctx, metric, by, as_json):
        """CSAT or NPS for journeys without a survey answer, calibrated on those with one."""
        from .predicted import predicted_experience

        with _workspace(ctx, read_only=True) as ws:
            r = predicted_experience(ws, metric, by=by)
        _emit(r.summary, as_json)
        if not as_json:
            m = r.meta
            console.print(f"calibrated on {m['answered']:,} answered journeys; held-out Brier "
                          f"{m['brier']:.3f} (constant baseline {m['brier_baseline']:.3f}); error "
                          f"of the aggregate {m['heldout_aggregate_rmse']:.3g} (RMS over folds)")

    @main.command()
    @click.option("--event-type", "event_types", multiple=True,
                  help="A purchase event type (repeatable; default: the purchase key moment).")
    @click.option("--unit-days", default=1.0, show_default=True,
                  type=DAYS, help="Days per time unit.")
    @click.option("--horizon", default=90.0, show_default=True, type=POSITIVE,
                  help="Expected purchases in this many units from the data's end.")
    @limit_option(20, "Rows shown: the buyers most likely gone, of those who came back once")
    @click.option("--json", "as_json", is_flag=True, help="Print rows and meta as JSON.")
    @click.pass_context
    def alive(ctx, event_types, unit_days, horizon, limit, as_json):
        """Is each buyer still a customer? BG/NBD probability alive and expected purchases."""
        from ..results import Result
        from .alive import probability_alive

        with _workspace(ctx, read_only=True) as ws:
            r = probability_alive(ws, event_types=list(event_types) or None, unit_days=unit_days,
                                  horizon=horizon)
        # the ones to act on: came back at least once, now least likely still there (a
        # one-time buyer always reads 1: the model has seen no drop-out to learn from);
        # the JSON gives the same rows as the table
        import pyarrow.compute as pc

        m = r.meta
        came_back = r.data.filter(pc.greater(r.data.column("frequency"), 0))
        ranked = came_back.sort_by([("p_alive", "ascending"), ("person_id", "ascending")])
        if as_json:
            _emit(Result(ranked, m), True, limit=limit)
            return
        p = m["params"]
        console.print(f"BG/NBD on {m['n']:,} buyers ({m['repeaters']:,} bought again): mean "
                      f"p_alive {m['mean_p_alive']:.3f}; r {p['r']:.3g}, alpha {p['alpha']:.3g}, "
                      f"a {p['a']:.3g}, b {p['b']:.3g}")
        _emit(Result(ranked, m), False, ["person_id", "frequency", "recency", "age", "p_alive",
                                         "expected_purchases"], limit=limit,
              title="repeat buyers least likely still active")
