"""A workspace: a folder with ``keymoments.yaml`` and the DuckDB file it names.

>>> import tempfile, keymoments as km
>>> ws = km.init(tempfile.mkdtemp())
>>> ws.status().to_pylist()[0]
{'table': 'events', 'rows': 0}
>>> ws.close()
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb

from ..config.loader import CONFIG_FILE, load_config
from ..config.models import Config
from ..errors import NotFoundError, WorkspaceError
from ..results import Result
from ..sql import literal
from .paths import absolute_paths
from .recovery import drop_unfinished_loads
from .schema import SCHEMA_VERSION, TABLES, current_version, migrate, quarantine_loaded_since

__all__ = ["Workspace", "init", "open_workspace", "STARTER_CONFIG"]

STARTER_CONFIG = """\
# keymoments workspace configuration. Reference: docs/config.md
version: 1
name: {name}
database: keymoments.duckdb

identity:
  phone_region: US        # region for phone numbers written without +country code

# Map each export to canonical events. Example (see docs/mapping.md):
# sources:
#   orders:
#     path: data/orders.csv
#     identifiers: {{customer_id: customer_id, email: email}}
#     refs: {{order: order_id}}
#     channel: {{value: web}}
#     events:
#       - {{event_type: {{value: order_placed}}, ts: purchased_at}}
#       - event_type: {{value: order_delivered}}
#         ts: delivered_at
#         expectation: {{kind: promised_delivery, ts: estimated_delivery_at}}
sources: {{}}
"""


class Workspace:
    """An open workspace: its config, its root folder and a DuckDB connection."""

    def __init__(self, root: Path, config: Config, con: duckdb.DuckDBPyConnection) -> None:
        self.root = root
        self.config = config
        self.con = con
        #: what opening it after a crash took out (keymoments.store.recovery), or None
        self.recovered: str | None = None

    # ------------------------------------------------------------------ life
    @classmethod
    def open(cls, path: str | os.PathLike[str] = ".", *, read_only: bool = False) -> Workspace:
        """Open the workspace in folder ``path`` (migrating its store if needed)."""
        # absolute: the stored file names must not depend on how the folder was named
        # (-w shop, -w ., -w /home/ana/shop): see keymoments.store.paths
        root = Path(os.path.abspath(path))
        cfg_path = root / CONFIG_FILE
        if not cfg_path.is_file():
            raise WorkspaceError(
                f"no workspace at {root}: {CONFIG_FILE} is missing "
                f"(create one with 'keymoments init {root}')"
            )
        config = load_config(cfg_path)
        db = Path(config.database)
        db = db if db.is_absolute() else root / db
        # a log left behind: the last process stopped without closing the store
        crashed = Path(f"{db}.wal").exists()
        try:
            con = duckdb.connect(str(db), read_only=read_only)
        except duckdb.IOException as exc:
            busy = " (is another keymoments using it?)" if "lock" in str(exc).lower() else ""
            raise WorkspaceError(f"cannot open {db}: {exc}{busy}") from None
        con.execute("SET TimeZone = 'UTC'")
        # every query that needs an order says so (ORDER BY); letting DuckDB write and
        # sort without keeping insertion order lets it use both cores
        con.execute("SET preserve_insertion_order = false")
        if config.memory_limit:
            con.execute(f"SET memory_limit = {literal(config.memory_limit)}")
        if config.temp_directory:
            tmp = Path(config.temp_directory)
            con.execute(f"SET temp_directory = {literal(str(tmp if tmp.is_absolute() else root / tmp))}")
        if config.threads:
            con.execute(f"SET threads = {int(config.threads)}")
        if not read_only:
            migrate(con)
            absolute_paths(con, root, config)
            recovered = drop_unfinished_loads(con) if crashed else None
        elif (found := current_version(con)) != SCHEMA_VERSION:
            con.close()
            raise WorkspaceError(
                f"{db} has schema version {found}, this keymoments uses {SCHEMA_VERSION}: "
                "run a command that writes (for example 'keymoments ingest' or "
                "'keymoments build') once to migrate it"
                if found < SCHEMA_VERSION else
                f"{db} has schema version {found}, newer than this keymoments "
                f"({SCHEMA_VERSION}); upgrade keymoments to open it")
        ws = cls(root, config, con)
        if not read_only:
            ws.recovered = recovered
        return ws

    def close(self) -> None:
        """Close the database connection."""
        self.con.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reload_config(self) -> None:
        """Read ``keymoments.yaml`` again (after editing it)."""
        self.config = load_config(self.root / CONFIG_FILE)

    # ------------------------------------------------------------ ingestion
    def ingest(self, source: str | None = None, progress=None, *,
               accept_mapping_change: bool = False):
        """Load one source (by name), or every source when ``source`` is None.

        Returns a :class:`~keymoments.sources.ingest.LoadReport` (a list for all). A
        source whose mapping changed since its events were loaded is refused unless
        ``accept_mapping_change`` (see :func:`~keymoments.sources.ingest.ingest_source`).
        """
        from ..sources.ingest import ingest_source

        names = [source] if source is not None else list(self.config.sources)
        reports = [ingest_source(self, name, progress,
                                 accept_mapping_change=accept_mapping_change)
                   for name in names]
        return reports[0] if source is not None else reports

    # ---------------------------------------------------------------- engine
    def build(self, progress=None):
        """Recompute journeys and moments from the events (see :mod:`keymoments.pipeline`);
        ``progress(done, total)`` follows the scoring of new texts."""
        from ..pipeline import build

        return build(self, progress=progress)

    def journeys(self, **filters) -> Result:
        """Journeys (see :func:`keymoments.journey.journeys`)."""
        from ..journey.query import journeys

        return journeys(self, **filters)

    def moments(self, **filters) -> Result:
        """Moments (see :func:`keymoments.journey.moments`)."""
        from ..journey.query import moments

        return moments(self, **filters)

    def moment_summary(self, by: tuple[str, ...] = ("kind", "stage", "channel"), *,
                       kind: str | list[str] | None = None,
                       journey_type: str | list[str] | None = None) -> Result:
        """Moment kinds by valence across journeys
        (:func:`keymoments.journey.query.moment_summary`)."""
        from ..journey.query import moment_summary

        return moment_summary(self, by, kind=kind, journey_type=journey_type)

    def fit_remembered(self, outcome: str = "feedback", apply: bool = True, **options):
        """Learn the remembered-score weights from this workspace's outcomes (see
        :mod:`keymoments.moment.remembered`); with ``apply``, store the comparison
        and, when the learned model wins, rescore ``journeys.remembered`` with it."""
        from ..moment.fitting import fit_remembered

        return fit_remembered(self, outcome, apply=apply, **options)

    # --------------------------------------------------------------- queries
    def status(self) -> Result:
        """Row counts of every table."""
        rows = [
            {"table": t, "rows": self.con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]}
            for t in TABLES
        ]
        import pyarrow as pa

        return Result(pa.Table.from_pylist(rows), {"schema_version": SCHEMA_VERSION,
                                                   "root": str(self.root)})

    def events(self, person: str | None = None, limit: int | None = None) -> Result:
        """Events in time order, optionally of one person (id or any identifier)."""
        where, params = "", []
        if person is not None:
            where, params = "WHERE person_id = ?", [self.resolve_person(person)]
        lim = f"LIMIT {int(limit)}" if limit is not None else ""
        table = self.con.execute(
            f"SELECT * FROM events {where} ORDER BY ts, event_id {lim}", params
        ).to_arrow_table()
        return Result(table, {"person": person})

    def quarantine(self, source: str | None = None, limit: int | None = None, *,
                   include_loaded: bool = False) -> Result:
        """Rejected rows with file, line, field, value and reason, the ones still open,
        and ``hint``: what to do, when the reason (as an earlier version stored it: it
        is part of the entry's identity) does not say it (see
        :func:`~keymoments.sources.readers.reject_hint`).

        A row is *loaded since* when a later load of its source stored an event from
        the same file and line (it was fixed in place and ingested again), unless a
        load after that rejected it again; those are left out unless
        ``include_loaded`` (column ``loaded_since``), and counted in
        ``meta["loaded_since"]``. The quarantine itself keeps every row."""
        import pyarrow as pa

        from ..sources.readers import reject_hint

        where, params = ("WHERE q.source = ?", [source]) if source else ("", [])
        lim = f"LIMIT {int(limit)}" if limit is not None else ""
        rows = f"""
            SELECT q.source, q.file, q.line, q.field, q.value, q.reason, q.raw,
                   {quarantine_loaded_since("q")} AS loaded_since
            FROM quarantine q {where}"""
        keep = "" if include_loaded else "WHERE NOT loaded_since"
        table = self.con.execute(
            f"SELECT * FROM ({rows}) {keep} ORDER BY source, file, line {lim}", params
        ).to_arrow_table()
        table = table.add_column(
            table.column_names.index("reason") + 1, "hint",
            pa.array([reject_hint(r) for r in table.column("reason").to_pylist()], pa.string()))
        hidden = self.con.execute(f"SELECT count(*) FILTER (WHERE loaded_since) FROM ({rows})",
                                  params).fetchone()[0]
        return Result(table, {"source": source, "loaded_since": hidden,
                              "include_loaded": include_loaded})

    def next_step(self) -> str:
        """What to run before the analyses have journeys to read: load the exports
        when no event is stored, else build.

        >>> import keymoments as km, tempfile
        >>> km.init(tempfile.mkdtemp()).next_step()
        "no events are loaded yet: map your exports in keymoments.yaml, run 'keymoments ingest', then 'keymoments build'"
        """
        if self.con.execute("SELECT count(*) FROM (SELECT 1 FROM events LIMIT 1)").fetchone()[0]:
            return "run 'keymoments build'"
        return ("no events are loaded yet: map your exports in keymoments.yaml, run "
                "'keymoments ingest', then 'keymoments build'")

    def loads(self) -> Result:
        """The load log, newest first."""
        return Result(self.con.execute(
            "SELECT * FROM loads ORDER BY started_at DESC").to_arrow_table())

    def resolve_person(self, key: str) -> str:
        """A person id from a person id, ``kind:value`` or a bare identifier value,
        written as in the exports (an email in any case, a phone in any format)."""
        from ..people.identity import normalise_phone

        raw = key.strip()
        kind, _, value = raw.partition(":")
        values = [raw, raw.lower()]
        phone = normalise_phone(value or raw, self.config.identity.phone_region)
        if phone:
            values.append(phone)
        ids = [raw] + ([f"{kind}:{v}" for v in (value, value.lower(), phone) if v] if value else [])
        row = self.con.execute(
            "SELECT person_id, 0 AS rank FROM people WHERE person_id = ? "
            "UNION ALL SELECT person_id, 1 FROM identifiers WHERE list_contains(?, identifier) "
            "UNION ALL SELECT person_id, 2 FROM identifiers WHERE list_contains(?, value) "
            "ORDER BY rank, person_id LIMIT 1",
            [raw, ids, values],
        ).fetchone()
        if row is None or row[0] is None:
            raise NotFoundError(f"no person with id or identifier {key!r}")
        return row[0]

    def person(self, key: str):
        """One person: identifiers, why they were joined, and the timeline."""
        from ..people.profile import person_profile

        return person_profile(self, key)


def init(path: str | os.PathLike[str], name: str | None = None, *, exist_ok: bool = False) -> Workspace:
    """Create a workspace in folder ``path`` (a starter ``keymoments.yaml`` and the
    DuckDB store) and open it."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    cfg = root / CONFIG_FILE
    if cfg.exists() and not exist_ok:
        raise WorkspaceError(f"{cfg} already exists: use the workspace as it is (keymoments -w "
                             f"{str(root)!r} ..., or km.open({str(root)!r}) in Python), or init "
                             "another folder")
    if not cfg.exists():
        from ..io import atomic_write_text

        # quoted: a folder named 2024 or "shop #2" is a name, not a number or a comment
        chosen = name or root.resolve().name or "keymoments"
        atomic_write_text(cfg, STARTER_CONFIG.format(name=json.dumps(chosen)))  # (\uXXXX: YAML too)
    return Workspace.open(root)


def open_workspace(path: str | os.PathLike[str] = ".", *, read_only: bool = False) -> Workspace:
    """Open an existing workspace (``km.open``)."""
    return Workspace.open(path, read_only=read_only)
