"""The path commands of the ``keymoments`` CLI (a thin shell over :mod:`keymoments.paths`):
``process-map``, ``variants``, ``conformance``, ``channel-switching``, ``consistency``
and ``export-log``. :func:`register` adds them to the main group."""

from __future__ import annotations

from functools import wraps

import click

from ..io import atomic_write_text
from ..options import limit_option
from ..results import json_text

__all__ = ["register"]

_OUTCOMES = ["detractor", "promoter", "passive", "negative", "positive", "no_feedback",
             "churned", "repurchased"]
_LEVELS = ["event_type", "stage", "channel", "moment"]


def _filters(f):
    """Journey filter options shared by the path commands."""
    @click.option("--type", "journey_type", multiple=True, help="Only journeys of this type (repeatable).")
    @click.option("--status", multiple=True,
                  type=click.Choice(["completed", "open", "stalled", "abandoned"]))
    @click.option("--segment", multiple=True, help="Only customers of this segment.")
    @click.option("--outcome", type=click.Choice(_OUTCOMES), help="Only journeys with this outcome.")
    @click.option("--channel", multiple=True, help="Only journeys that used this channel.")
    @wraps(f)
    def wrapper(*args, journey_type, status, segment, outcome, channel, **kwargs):
        from .filters import JourneyFilter

        flt = JourneyFilter(journey_type=list(journey_type) or None, status=list(status) or None,
                            segment=list(segment) or None, outcome=outcome,
                            channel=list(channel) or None)
        return f(*args, flt=flt, **kwargs)
    return wrapper


def _check_types(ws, flt) -> None:
    """A journey type the filter names that no journey has is an error (a typo would
    otherwise give an empty map, list or log), naming the types there are."""
    import difflib

    from ..errors import NotFoundError

    wanted = list(getattr(flt, "journey_type", None) or [])
    if not wanted:
        return
    known = [r[0] for r in ws.con.execute(
        "SELECT DISTINCT journey_type FROM journeys ORDER BY 1").fetchall()]
    for name in wanted:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            mean = f"did you mean {close[0]!r}? " if close else ""
            here = (f"journey types here: {', '.join(known)}" if known
                    else f"there are no journeys: {ws.next_step()}")
            raise NotFoundError(f"no journeys of type {name!r} ({mean}{here})")


def _json_rows(result) -> None:
    for row in result.to_pylist():
        click.echo(json_text(row))


def register(main: click.Group) -> None:
    """Add the path commands to ``main``."""
    from .. import cli

    def ws_of(ctx, flt=None):
        ws = cli._workspace(ctx, read_only=True)
        try:
            _check_types(ws, flt)
        except BaseException:
            ws.close()
            raise
        return ws

    @main.command("process-map")
    @click.option("--level", type=click.Choice(_LEVELS), default="event_type", show_default=True)
    @_filters
    @click.option("--min-edge-count", default=1, show_default=True, help="Drop rarer edges.")
    @click.option("--top-variants", type=click.IntRange(min=1),
                  help="Only journeys of the N most frequent paths.")
    @click.option("--collapse", is_flag=True, help="Merge runs of the same label.")
    @click.option("--dot", type=click.Path(dir_okay=False), help="Also write the map as Graphviz DOT.")
    @click.option("--json", "as_json", is_flag=True, help="Print the edges as JSON lines.")
    @limit_option(40)
    @click.pass_context
    def process_map_cmd(ctx, level, flt, min_edge_count, top_variants, collapse, dot, as_json, limit):
        """The directly-follows graph of journeys: edge counts and durations, node valence."""
        from . import process_map

        with ws_of(ctx, flt) as ws:
            pm = process_map(ws, level=level, filter=flt, min_edge_count=min_edge_count,
                             top_variants=top_variants, collapse=collapse)
        if dot:
            atomic_write_text(dot, pm.to_dot())
        if as_json:
            _json_rows(pm.edges)
            return
        cli._print_result(pm.nodes, limit=limit, title=f"nodes ({pm.nodes.meta['n_journeys']:,} journeys)")
        cli._print_result(pm.edges, limit=limit, title="edges")

    @main.command("variants")
    @click.option("--level", type=click.Choice(_LEVELS), default="event_type", show_default=True)
    @_filters
    @click.option("--around", help="Paths before and after this activity's first occurrence.")
    @click.option("--before", default=3, show_default=True, type=click.IntRange(min=0),
                  help="Steps before the activity.")
    @click.option("--after", default=3, show_default=True, type=click.IntRange(min=0),
                  help="Steps after the activity.")
    @click.option("--flows", is_flag=True, help="Print the Sankey flows instead.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
    @limit_option(20)
    @click.pass_context
    def variants_cmd(ctx, level, flt, around, before, after, flows, as_json, limit):
        """The distinct paths of journeys with counts and outcomes (or around an activity)."""
        from . import variants

        with ws_of(ctx, flt) as ws:
            v = variants(ws, level=level, filter=flt, around=around, before=before, after=after,
                         limit=limit or None)
        result = v.flows if flows else v.variants
        if as_json:
            _json_rows(result)
            return
        cols = None if flows else (["path"] if around is None else ["before", "after"]) + [
            "journeys", "share", "mean_outcome", "share_completed", "median_duration_s"]
        shown = {c: (lambda p: " > ".join(p)) for c in ("path", "before", "after")}
        title = (f"{len(result):,} flows" if flows
                 else f"{v.variants.meta['n_variants']:,} variants")
        cli._print_result(result, columns=cols, limit=limit, full=("path", "before", "after"),
                          shown=shown, title=title)
        more = 0 if flows else v.variants.meta["n_variants"] - len(result)
        if more > 0:  # (the variants are read up to the limit; the title has their count)
            cli.console.print(f"... {more:,} more: --limit 0 shows all", markup=False)

    @main.command("conformance")
    @click.argument("design")
    @_filters
    @click.option("--json", "as_json", is_flag=True, help="Print the deviations as JSON lines.")
    @limit_option(20)
    @click.pass_context
    def conformance_cmd(ctx, design, flt, as_json, limit):
        """Journeys against the designed journey DESIGN (paths.designed in keymoments.yaml):
        share that follow it, where the others leave it, outcomes and time after."""
        from . import conformance

        with ws_of(ctx, flt) as ws:
            c = conformance(ws, design, filter=flt)
        if as_json:
            _json_rows(c.deviations)
            return
        m = c.summary.meta
        share = "-" if m["share_conforming"] is None else f"{m['share_conforming']:.1%}"
        low, high = m["share_conforming_ci95"]
        ci = "" if low is None else f" (95% {low:.1%} to {high:.1%})"
        done = m["share_conforming_finished"]
        fin = "" if done is None else f"; {done:.1%} of the finished ones"
        cli.console.print(f"{m['journeys']:,} journeys; {share}{ci} follow '{m['design']}'{fin}")
        cli._print_result(c.deviations, limit=limit, title="where journeys leave it",
                          columns=["kind", "after", "activity", "expected", "journeys", "share",
                                   "mean_outcome", "outcome_vs_conforming", "median_then_s"])

    @main.command("channel-switching")
    @_filters
    @click.option("--no-model", is_flag=True, help="Skip the switch model.")
    @click.option("--json", "as_json", is_flag=True, help="Print the patterns as JSON lines.")
    @limit_option(20)
    @click.pass_context
    def channel_switching_cmd(ctx, flt, no_model, as_json, limit):
        """Channel transitions, switch rates, lost context and what precedes a switch."""
        from . import channel_switching

        with ws_of(ctx, flt) as ws:
            s = channel_switching(ws, filter=flt, model=not no_model)
        if as_json:
            _json_rows(s.precedes)
            return
        cli._print_result(s.matrix, limit=limit, title="channel transitions within journeys")
        cli._print_result(s.by_type, title="switch rate by journey type")
        m = s.contacts.meta
        cli.console.print(f"{m['contacts']:,} contacts, {m['lost_context']:,} with lost context")
        cli._print_result(s.precedes, limit=limit, title="what precedes a switch")
        if s.model is not None:
            mm = s.model.meta
            auc = "-" if mm["auc"] is None else f"{mm['auc']:.3f}"
            cli.console.print(f"switch model: held-out accuracy {mm['accuracy']:.3f} "
                              f"(baseline {mm['baseline_accuracy']:.3f}, AUC {auc}, "
                              f"n={mm['n_test']})")

    @main.command("consistency")
    @click.option("--by", multiple=True, type=click.Choice(["agent", "team", "channel", "language"]),
                  help="Dimensions (default: all).")
    @click.option("--kind", multiple=True, type=click.Choice(["welcome", "peak", "farewell"]),
                  help="Moment kinds (default: all).")
    @_filters
    @click.option("--outliers", is_flag=True, help="Only the flagged groups.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
    @limit_option(60)
    @click.pass_context
    def consistency_cmd(ctx, by, kind, flt, outliers, as_json, limit):
        """How much welcome, peak and farewell valence vary by agent, team, channel, language."""
        from . import consistency

        options = {"filter": flt}
        if by:
            options["by"] = list(by)
        if kind:
            options["kind" + "s"] = list(kind)
        with ws_of(ctx, flt) as ws:
            r = consistency(ws, **options)
        if outliers:
            import pyarrow.compute as pc

            from ..results import Result

            r = Result(r.data.filter(pc.is_valid(r.data.column("flag"))), r.meta)
        if as_json:
            _json_rows(r)
            return
        cli._print_result(r, limit=limit, columns=["kind", "dimension", "group", "n", "mean", "sd",
                                                   "shrunk_mean", "shrunk_sd", "flag"])

    @main.command("export-log")
    @click.argument("path", type=click.Path(dir_okay=False))
    @click.option("--format", "fmt", type=click.Choice(["xes", "csv"]),
                  help="Default: the file's extension.")
    @click.option("--level", type=click.Choice(_LEVELS), default="event_type", show_default=True)
    @_filters
    @click.pass_context
    def export_log_cmd(ctx, path, fmt, level, flt):
        """Write the selected journeys to PATH as an XES or CSV event log."""
        from . import export_log

        with ws_of(ctx, flt) as ws:
            out = export_log(ws, path, fmt=fmt, level=level, filter=flt)
        cli.console.print(f"{out['traces']:,} journeys, {out['events']:,} events -> {out['path']}")
