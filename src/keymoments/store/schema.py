"""The workspace's tables, their documented schema, and forward migrations.

Each migration moves the store from version ``n - 1`` to ``n`` and runs once, in a
transaction, when a workspace is opened by code that knows a newer version. A
store newer than the code is refused rather than damaged.

Timestamps are ``TIMESTAMPTZ`` (an instant, UTC); a missing valence or measure is
``NULL``, never NaN. Maps are ``MAP(VARCHAR, ...)`` so the same tables read on
DuckDB and Spark.

>>> SCHEMA_VERSION >= 1
True
>>> {"events", "identifiers", "identity_links"} <= set(TABLES)
True
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb

from ..errors import WorkspaceError
from ..sql import rollback

__all__ = ["SCHEMA_VERSION", "TABLES", "COLUMN_DOCS", "ID_COMPRESSION", "column_ddl", "migrate",
           "current_version", "quarantine_loaded_since"]

#: Column docs per table: name -> (SQL type, meaning). The DDL is generated from it,
#: so the documentation (``docs/schema.md``) and the store cannot disagree.
COLUMN_DOCS: dict[str, dict[str, tuple[str, str]]] = {
    "events": {
        "event_id": ("VARCHAR NOT NULL", "stable id: a hash of the source and the event's content (or of the source's `key` columns), so re-loading changes nothing"),
        "ts": ("TIMESTAMPTZ NOT NULL", "when it happened (UTC instant)"),
        "person_id": ("VARCHAR", "the stitched person (see `identifiers`); re-linked when identities merge"),
        "anchor": ("VARCHAR NOT NULL", "the event's first identifier as `kind:value`, used to resolve `person_id`"),
        "identifiers": ("MAP(VARCHAR, VARCHAR) NOT NULL", "every identifier on the event, kind -> normalised value"),
        "channel": ("VARCHAR", "web, app, email, phone, chat, store, ..."),
        "event_type": ("VARCHAR NOT NULL", "what happened, in the source's vocabulary"),
        "stage": ("VARCHAR", "journey stage from the mapping or the taxonomy"),
        "moment": ("VARCHAR", "business key moment from the taxonomy (purchase, support, ...)"),
        "refs": ("MAP(VARCHAR, VARCHAR)", "correlation references: order, ticket, session, case, ..."),
        "agent": ("VARCHAR", "the employee or bot who handled it"),
        "language": ("VARCHAR", "language of the contact or text (ISO 639-1 when known)"),
        "rating": ("DOUBLE", "explicit rating as given"),
        "rating_scale": ("VARCHAR", "csat5, nps10, ces7, stars5 or custom"),
        "rating_min": ("DOUBLE", "lowest value of the scale"),
        "rating_max": ("DOUBLE", "highest value of the scale"),
        "text": ("VARCHAR", "free text: comment, review, message"),
        "measures": ("MAP(VARCHAR, DOUBLE)", "numbers: amount, wait_seconds, handle_seconds, ..."),
        "expected_ts": ("TIMESTAMPTZ", "what was promised, as a time (estimated delivery, SLA due)"),
        "expected_value": ("DOUBLE", "what was promised, as a value (quoted wait, SLA minutes)"),
        "expectation_kind": ("VARCHAR", "what the expectation is (promised_delivery, sla, ...)"),
        "attributes": ("MAP(VARCHAR, VARCHAR)", "free attributes: carrier, product, segment, ..."),
        "source": ("VARCHAR NOT NULL", "the source name in keymoments.yaml"),
        "source_file": ("VARCHAR", "the file the event was read from"),
        "source_line": ("BIGINT", "the line (CSV, JSON: where its object starts; the "
                                  "element's position in a compact JSON array), row "
                                  "(Parquet) or the line its event starts on (XES)"),
        "load_id": ("VARCHAR NOT NULL", "the load that wrote it"),
    },
    "identifiers": {
        "identifier": ("VARCHAR NOT NULL", "`kind:value`, normalised"),
        "kind": ("VARCHAR NOT NULL", "customer_id, email, phone, device, account, ..."),
        "value": ("VARCHAR NOT NULL", "normalised value"),
        "person_id": ("VARCHAR", "the person it belongs to"),
        "first_seen": ("TIMESTAMPTZ", "earliest event carrying it"),
    },
    "identity_links": {
        "a": ("VARCHAR NOT NULL", "identifier (the smaller of the pair)"),
        "b": ("VARCHAR NOT NULL", "identifier (the larger of the pair)"),
        "event_id": ("VARCHAR NOT NULL", "the first event that carried both: why they were joined"),
        "source": ("VARCHAR NOT NULL", "that event's source"),
        "ts": ("TIMESTAMPTZ", "that event's time"),
    },
    "people": {
        "person_id": ("VARCHAR NOT NULL", "stable while its smallest identifier stays in it"),
        "n_identifiers": ("BIGINT", "identifiers stitched into the person"),
        "n_events": ("BIGINT", "events of the person"),
        "first_seen": ("TIMESTAMPTZ", "first event"),
        "last_seen": ("TIMESTAMPTZ", "last event"),
        "channels": ("VARCHAR[]", "channels the person used"),
    },
    "quarantine": {
        "quarantine_id": ("VARCHAR NOT NULL", "hash of source, file, line, reason and raw row: "
                          "re-loading does not double it, another row on the same line is "
                          "an entry of its own"),
        "load_id": ("VARCHAR NOT NULL", "the load that rejected it (the latest, when it was "
                    "rejected again after its line had loaded)"),
        "source": ("VARCHAR NOT NULL", "source name"),
        "file": ("VARCHAR", "file it came from"),
        "line": ("BIGINT", "line (CSV, JSON: where its object starts; the element's "
                           "position in a compact JSON array), row (Parquet) or the "
                           "line its event starts on (XES)"),
        "field": ("VARCHAR", "the canonical field or source column at fault"),
        "value": ("VARCHAR", "the offending value"),
        "reason": ("VARCHAR NOT NULL", "what is wrong and what to do"),
        "raw": ("VARCHAR", "the whole source row (JSON) or line text, so nothing is lost"),
        "quarantined_at": ("TIMESTAMPTZ NOT NULL", "when (that load's time)"),
        "settled_at": ("TIMESTAMPTZ", "when a later load read its line again and did not "
                       "reject it (the fixed row was a duplicate of a stored event, or a "
                       "join side file's line now reads); NULL: not since"),
    },
    "loads": {
        "load_id": ("VARCHAR NOT NULL", "id of the load"),
        "source": ("VARCHAR NOT NULL", "source name"),
        "files": ("VARCHAR[]", "files read"),
        "started_at": ("TIMESTAMPTZ NOT NULL", "start"),
        "finished_at": ("TIMESTAMPTZ", "commit time"),
        "rows_read": ("BIGINT", "rows read (records, not physical lines)"),
        "rows_loaded": ("BIGINT", "rows that produced at least one new event, or (a source "
                                  "with a `key`) changed their stored events"),
        "rows_quarantined": ("BIGINT", "rows sent to quarantine"),
        "rows_duplicate": ("BIGINT", "rows whose events were all already stored (as they are) or "
                                     "repeated in the file"),
        "events_loaded": ("BIGINT", "events written: new ones, and new versions of stored ones"),
        "rows_updated": ("BIGINT", "of `rows_loaded`, the rows of a source with a `key` whose "
                                   "stored events this load replaced, added to or removed (the "
                                   "row was edited in its file); NULL for loads made before "
                                   "this column"),
    },
    "text_scores": {
        "text_hash": ("VARCHAR NOT NULL", "md5 of the text (UTF-8)"),
        "scorer": ("VARCHAR NOT NULL", "the scorer and its version"),
        "valence": ("DOUBLE", "sentiment in [-1, 1]"),
        "confidence": ("DOUBLE", "in [0, 1]; 0 when nothing polar was found"),
        "scored_at": ("TIMESTAMPTZ", "when"),
    },
    "journey_events": {
        "event_id": ("VARCHAR NOT NULL", "the event"),
        "journey_id": ("VARCHAR NOT NULL", "its journey"),
        "journey_type": ("VARCHAR NOT NULL", "purchase, issue_resolution, ... or the catch-all"),
        "journey_key": ("VARCHAR", "the correlation reference (order id, ticket id) of keyed journeys"),
        "person_id": ("VARCHAR", "the person"),
        "seq": ("BIGINT NOT NULL", "0-based position in the journey (time, then event id)"),
        "channel_switch": ("BIGINT", "1 when the channel differs from the previous event's in the journey (both known; a feedback event, such as a survey answer, is no step on another channel: neither a switch nor one to compare with: the step after it is compared with nothing, so web, a review by e-mail, then the carrier's app count no switch; nor does a step to or from an event without a channel)"),
        "ts": ("TIMESTAMPTZ NOT NULL", "when"),
        "event_type": ("VARCHAR", "what happened"),
        "stage": ("VARCHAR", "stage"),
        "moment": ("VARCHAR", "business key moment tag from the taxonomy"),
        "channel": ("VARCHAR", "channel"),
        "agent": ("VARCHAR", "agent"),
        "language": ("VARCHAR", "language"),
        "v_feedback": ("DOUBLE", "valence from the explicit rating, if any"),
        "v_rules": ("DOUBLE", "valence from operational rules that fired, if any"),
        "v_text": ("DOUBLE", "valence from text sentiment, if any (a text the scorer finds nothing in, confidence 0, counts as no text)"),
        "valence": ("DOUBLE", "the event's valence in [-1, 1] (NULL when nothing scored it)"),
        "valence_reason": ("VARCHAR", "why, in words"),
    },
    "journeys": {
        "journey_id": ("VARCHAR NOT NULL", "stable while its person, type, key and first run are"),
        "journey_type": ("VARCHAR NOT NULL", "type from config"),
        "journey_key": ("VARCHAR", "correlation reference"),
        "person_id": ("VARCHAR", "the person"),
        "start_ts": ("TIMESTAMPTZ NOT NULL", "first event"),
        "end_ts": ("TIMESTAMPTZ NOT NULL", "last event"),
        "duration_s": ("DOUBLE", "end - start in seconds"),
        "n_events": ("BIGINT", "events"),
        "channels": ("VARCHAR[]", "channels used, sorted (NULL when no event of the journey has a channel)"),
        "channel_switches": ("BIGINT", "consecutive events on different channels (see `journey_events.channel_switch`)"),
        "has_start": ("BOOLEAN", "contains a start event of its type"),
        "has_end": ("BOOLEAN", "contains an end event of its type"),
        "status": ("VARCHAR", "completed (it holds an end event of its type), abandoned (idle at least its type's `abandon_after` at `as_of`), stalled (idle at least `stall_after`) or open; a catch-all journey is completed once idle longer than `catch_all_gap`, else open"),
        "idle_s": ("DOUBLE", "seconds from the last event to `as_of`"),
        "outcome_ts": ("TIMESTAMPTZ", "the journey's first feedback with a rating (an event of `moments.exclude_stages`, by default the feedback stage, that has a feedback valence: an unrated review is not the outcome)"),
        "outcome_rating": ("DOUBLE", "that feedback's rating"),
        "outcome_scale": ("VARCHAR", "its scale"),
        "outcome_valence": ("DOUBLE", "that rating on [-1, 1]"),
        "repurchased": ("BOOLEAN", "the person purchased again within `repurchase_within` of "
                        "this journey's end: the first purchase event of the purchases of theirs "
                        "that started after this journey started (strictly: two purchases that "
                        "started at the same instant are not each other's repurchase; a journey of "
                        "`outcomes.purchase_types` holding an event tagged `purchase` or "
                        "`repeat_purchase`) came at most that long after this one ended, or "
                        "before it ended (an order placed while this one was open) (NULL until "
                        "that long has passed since it ended, either way, so shares of the known "
                        "ones are not biased towards repurchase). Purchases follow each other by "
                        "start here, and by first purchase event in the `repeat_purchase` "
                        "moments (ties: event id), so on orders that overlap or start together "
                        "the two can disagree"),
        "churned": ("BOOLEAN", "the person's first churn-stage event from the journey's start on came within `churn_within` of that start, or the journey holds the person's last event (it ends at the time of the person's last event: journeys that end at that same instant each hold it) and `as_of` is at least `inactive_churn_after` after it (a person who came back later is not churned by inactivity) (NULL until `churn_within` has passed since it ended)"),
        "first_v": ("DOUBLE", "valence of the first impression (the remembered score's inputs, `first_v` to `trend_v`, are the scored events before the outcome; the `moments` table spans the whole journey)"),
        "peak_v": ("DOUBLE", "best valence before the outcome"),
        "valley_v": ("DOUBLE", "worst valence before the outcome"),
        "end_v": ("DOUBLE", "valence of the farewell (last scored event before the outcome)"),
        "mean_v": ("DOUBLE", "mean valence before the outcome"),
        "trend_v": ("DOUBLE", "slope of valence per event before the outcome"),
        "n_valenced": ("BIGINT", "events with a valence before the outcome"),
        "remembered": ("DOUBLE", "predicted remembered experience in [-1, 1]"),
        "remembered_model": ("VARCHAR", "the model that predicted it (peak_end by default)"),
        "as_of": ("TIMESTAMPTZ", "the time statuses are judged at"),
    },
    "moments": {
        "journey_id": ("VARCHAR NOT NULL", "journey"),
        "journey_type": ("VARCHAR", "its type"),
        "person_id": ("VARCHAR", "person"),
        "kind": ("VARCHAR NOT NULL", "first_impression, peak, valley, farewell, or a business "
                 "moment (purchase, support, ...: the journey's first event with that tag, by "
                 "`seq`, in a journey of any type, so an order placed in a visit is its "
                 "`purchase`; "
                 "first_interaction: the person's first event, time then event id; "
                 "repeat_purchase: the first purchase event of each purchase after the person's "
                 "first, purchases being journeys of `outcomes.purchase_types`)"),
        "category": ("VARCHAR NOT NULL", "experience (peak-end moments) or business"),
        "event_id": ("VARCHAR NOT NULL", "the event the moment points at"),
        "ts": ("TIMESTAMPTZ", "when"),
        "event_type": ("VARCHAR", "what happened"),
        "stage": ("VARCHAR", "stage"),
        "channel": ("VARCHAR", "channel"),
        "agent": ("VARCHAR", "agent"),
        "valence": ("DOUBLE", "its valence"),
        "reason": ("VARCHAR", "why"),
    },
    "remembered_models": {
        "fitted_at": ("TIMESTAMPTZ NOT NULL", "when"),
        "outcome": ("VARCHAR NOT NULL", "feedback, repurchase or churn"),
        "model": ("VARCHAR NOT NULL", "peak_end, mean, last, learned"),
        "weights": ("VARCHAR", "JSON: feature -> [weight, low, high]"),
        "metric": ("VARCHAR", "r2 (feedback) or auc (binary outcomes)"),
        "cv_score": ("DOUBLE", "cross-validated score"),
        "cv_low": ("DOUBLE", "95% interval, low"),
        "cv_high": ("DOUBLE", "95% interval, high"),
        "n": ("BIGINT", "journeys used"),
        "chosen": ("BOOLEAN", "the model now scoring `journeys.remembered`"),
    },
    "api_keys": {
        "key_id": ("VARCHAR NOT NULL", "public part of the key (`km_<key_id>_<secret>`), shown in lists"),
        "name": ("VARCHAR NOT NULL", "what the key is for"),
        "secret_hash": ("VARCHAR NOT NULL", "sha256 of the secret with a per-key salt; the secret itself is never stored"),
        "salt": ("VARCHAR NOT NULL", "the per-key salt"),
        "scopes": ("VARCHAR[] NOT NULL", "read, write, admin (admin implies write, write implies read)"),
        "created_at": ("TIMESTAMPTZ NOT NULL", "when"),
        "revoked_at": ("TIMESTAMPTZ", "when it was revoked (NULL: active)"),
    },
    "outbox": {
        "action_id": ("VARCHAR NOT NULL", "stable id (hash of rule and journey), sent as the `Idempotency-Key`"),
        "seq": ("BIGINT NOT NULL", "order of creation; delivery keeps it per person"),
        "rule": ("VARCHAR NOT NULL", "the rule that fired"),
        "kind": ("VARCHAR NOT NULL", "webhook, case or file"),
        "trigger": ("VARCHAR NOT NULL", "peak, valley, stalled, ended_unresolved, purchase_completed, repeat_purchase"),
        "person_id": ("VARCHAR NOT NULL", "the person"),
        "journey_id": ("VARCHAR NOT NULL", "the journey whose state fired it"),
        "event_id": ("VARCHAR", "the event of the moment; of a state (stalled, ended unresolved), the journey's last event"),
        "trigger_ts": ("TIMESTAMPTZ NOT NULL", "event time of the trigger (guards count in event time)"),
        "language": ("VARCHAR", "the customer's language, so the follow-up goes out in it"),
        "payload": ("VARCHAR", "the rendered JSON document delivered"),
        "status": ("VARCHAR NOT NULL", "pending, delivered, failed, held_out (holdout: no action, kept to measure effect) or suppressed (a guard)"),
        "reason": ("VARCHAR", "why held out or suppressed, or the last delivery error"),
        "attempts": ("BIGINT NOT NULL", "delivery attempts so far"),
        "next_attempt_at": ("TIMESTAMPTZ", "when the worker tries again"),
        "created_at": ("TIMESTAMPTZ NOT NULL", "when it was written (with the derived state that caused it)"),
        "delivered_at": ("TIMESTAMPTZ", "when the receiver acknowledged it"),
    },
    "live_loads": {
        "load_id": ("VARCHAR NOT NULL", "a load of posted events"),
        "processed_at": ("TIMESTAMPTZ NOT NULL", "when its persons' journeys, moments and actions were updated"),
    },
    "km_meta": {
        "key": ("VARCHAR NOT NULL", "setting"),
        "value": ("VARCHAR", "its value; `schema_version` is the store's version, `event_id_scheme` how event ids are hashed (1: maps cast to text, 2: their entries, 3: as 2 with whole floating-point numbers read as integers, 7.0 as 7, 4: as 3 with decimals read without trailing zeros, 7.00 as 7, a whole-day promise written with an offset ending at midnight at that offset, ' utc' read as UTC in any case and zone abbreviations quarantined; set by the first load and kept, so re-loading never doubles events), `mapping:<source>` a hash of the source's mapping at its last load (a changed mapping is refused, see `keymoments ingest --accept-mapping-change`), `taxonomy` a hash of the taxonomy the stored events are tagged with (a changed one re-tags them at the next build or load), `file_names` the workspace's folder once the stored file names are absolute (names under it are rewritten when the workspace was moved; see keymoments.store.paths)"),
    },
}

TABLES = tuple(COLUMN_DOCS)

#: Storage hints (DuckDB's ``USING COMPRESSION``, kept in the catalog; the columns'
#: type stays VARCHAR, and a store written before them works unchanged, without the
#: speed-up). Columns holding a hash id that is (nearly) unique per row: FSST chosen
#: up front (DuckDB otherwise tries a dictionary on every segment first, wasted work
#: for unique strings). Columns of a few distinct values (a vocabulary: channels,
#: stages, types; or constant within a load): a dictionary up front, which DuckDB
#: would choose after trying the others. ``agent`` is left to DuckDB (a large contact
#: centre has thousands). Writing 1M events with and without the hints
#: (``bench/storage_hint.py --size 1000000 --repeat 5``, quiet machine): 1.98 against
#: 2.60 s, the same file size (FSST alone: 2.76 against 3.08 s).
_VOCABULARY = {
    "events": ("channel", "event_type", "stage", "moment", "language", "rating_scale",
               "expectation_kind", "source", "source_file", "load_id"),
    "journey_events": ("journey_type", "event_type", "stage", "moment", "channel", "language"),
    "journeys": ("journey_type", "status", "outcome_scale", "remembered_model"),
    "moments": ("journey_type", "kind", "category", "event_type", "stage", "channel"),
}
ID_COMPRESSION: dict[str, dict[str, str]] = {
    "events": {"event_id": "fsst"},
    "quarantine": {"quarantine_id": "fsst"},
    "text_scores": {"text_hash": "fsst"},
    "journey_events": {"event_id": "fsst", "journey_id": "fsst"},
    "journeys": {"journey_id": "fsst"},
    "moments": {"event_id": "fsst", "journey_id": "fsst"},
    "outbox": {"action_id": "fsst"},
}
for _table, _columns in _VOCABULARY.items():
    ID_COMPRESSION[_table].update(dict.fromkeys(_columns, "dictionary"))


def quarantine_loaded_since(q: str) -> str:
    """SQL: the quarantine entry ``q`` (an alias of the table) has *loaded since*: a
    load of its source that finished after the entry's ``quarantined_at`` stored an
    event from its file and line (the row was fixed in place and ingested again), or
    read that line again without rejecting it (``settled_at``: the fixed row was a
    duplicate of a stored event; a join side file's line now reads).

    >>> "l.finished_at > x.quarantined_at" in quarantine_loaded_since("x")
    True
    """
    return (f"(coalesce({q}.settled_at > {q}.quarantined_at, false) OR "
            f"EXISTS (SELECT 1 FROM events e JOIN loads l ON l.load_id = e.load_id "
            f"WHERE e.source = {q}.source AND e.source_file = {q}.file "
            f"AND e.source_line = {q}.line AND l.finished_at > {q}.quarantined_at))")


def column_ddl(table: str, not_null: bool = True) -> str:
    """The column list of ``table``'s ``CREATE TABLE`` (with its storage hints).

    >>> column_ddl("text_scores").splitlines()[0]
    '"text_hash" VARCHAR USING COMPRESSION fsst NOT NULL,'
    """
    hints = ID_COMPRESSION.get(table, {})
    cols = []
    for c, (t, _) in COLUMN_DOCS[table].items():
        base, nn = (t[: -len(" NOT NULL")], " NOT NULL") if t.endswith(" NOT NULL") else (t, "")
        using = f" USING COMPRESSION {hints[c]}" if c in hints else ""
        cols.append(f'"{c}" {base}{using}{nn if not_null else ""}')
    return ",\n".join(cols)


def _create(table: str) -> str:
    return f'CREATE TABLE IF NOT EXISTS "{table}" (\n{column_ddl(table)}\n)'


def _v1(con: duckdb.DuckDBPyConnection) -> None:
    for table in ("events", "identifiers", "identity_links", "people", "quarantine", "loads", "km_meta"):
        con.execute(_create(table))


def _v2(con: duckdb.DuckDBPyConnection) -> None:
    for table in ("text_scores", "journey_events", "journeys", "moments", "remembered_models"):
        con.execute(_create(table))


def _v3(con: duckdb.DuckDBPyConnection) -> None:
    for table in ("api_keys", "outbox", "live_loads"):
        con.execute(_create(table))


def _v4(con: duckdb.DuckDBPyConnection) -> None:
    """adds column `loads.rows_updated` (the rows of a keyed source that replaced their
    stored version) to a store made before it"""
    # (a store made by this code has it already: _v1 makes the table from the docs)
    con.execute('ALTER TABLE "loads" ADD COLUMN IF NOT EXISTS "rows_updated" BIGINT')


def _v5(con: duckdb.DuckDBPyConnection) -> None:
    """adds column `quarantine.settled_at` (a later load read the entry's line again
    and did not reject it) to a store made before it"""
    con.execute('ALTER TABLE "quarantine" ADD COLUMN IF NOT EXISTS "settled_at" TIMESTAMPTZ')


#: Forward migrations, index ``i`` brings the store to version ``i + 1``.
MIGRATIONS: list[Callable[[duckdb.DuckDBPyConnection], None]] = [_v1, _v2, _v3, _v4, _v5]
SCHEMA_VERSION = len(MIGRATIONS)


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    """The store's schema version (0 for an empty database)."""
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'km_meta'"
    ).fetchone()[0]
    if not exists:
        return 0
    row = con.execute("SELECT value FROM km_meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Bring the store up to :data:`SCHEMA_VERSION`; returns the version found."""
    found = current_version(con)
    if found > SCHEMA_VERSION:
        raise WorkspaceError(
            f"this workspace has schema version {found}, newer than this keymoments "
            f"({SCHEMA_VERSION}); upgrade keymoments to open it"
        )
    for version in range(found, SCHEMA_VERSION):
        con.execute("BEGIN TRANSACTION")
        try:
            MIGRATIONS[version](con)
            con.execute("DELETE FROM km_meta WHERE key = 'schema_version'")
            con.execute(
                "INSERT INTO km_meta VALUES ('schema_version', ?)", [str(version + 1)]
            )
            con.execute("COMMIT")
        except Exception:
            rollback(con)
            raise
    return found
