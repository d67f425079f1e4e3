"""Schema migrations: an older store is brought forward once, keeping its rows; a
newer one is refused."""

from __future__ import annotations

import duckdb
import pytest

import keymoments as km
from keymoments.errors import KeymomentsError
from keymoments.store import schema


def _store_at(path, version: int) -> None:
    con = duckdb.connect(str(path))
    for migration in schema.MIGRATIONS[:version]:
        migration(con)
    con.execute("INSERT INTO km_meta VALUES ('schema_version', ?)", [str(version)])
    con.execute("INSERT INTO identifiers (identifier, kind, value, person_id, first_seen) "
                "VALUES ('email:a@x.example', 'email', 'a@x.example', 'p-1', now())")
    con.close()


def test_an_older_store_is_brought_forward_once(tmp_path):
    ws = km.init(tmp_path)
    db = ws.root / ws.config.database
    ws.close()
    db.unlink()
    _store_at(db, 1)
    ws = km.open(tmp_path)
    assert schema.current_version(ws.con) == schema.SCHEMA_VERSION
    tables = {r[0] for r in ws.con.execute("SHOW TABLES").fetchall()}
    assert set(schema.TABLES) <= tables
    assert ws.con.execute("SELECT person_id FROM identifiers WHERE identifier = "
                          "'email:a@x.example'").fetchall() == [("p-1",)]
    ws.close()
    ws = km.open(tmp_path)  # (once: opening again changes nothing)
    assert schema.current_version(ws.con) == schema.SCHEMA_VERSION
    ws.close()


def test_a_newer_store_is_refused(tmp_path):
    db = tmp_path / "new.duckdb"
    _store_at(db, schema.SCHEMA_VERSION)
    con = duckdb.connect(str(db))
    con.execute("UPDATE km_meta SET value = ? WHERE key = 'schema_version'",
                [str(schema.SCHEMA_VERSION + 1)])
    with pytest.raises(KeymomentsError, match="upgrade keymoments"):
        schema.migrate(con)
    con.close()


def test_a_store_without_settled_at_gets_it_and_keeps_its_quarantine(tmp_path):
    """A version 4 store (its quarantine made before ``settled_at``): the column is
    added, the entries stay, and the listing reads them as open."""
    ws = km.init(tmp_path)
    db = ws.root / ws.config.database
    ws.close()
    db.unlink()
    _store_at(db, 4)
    con = duckdb.connect(str(db))
    con.execute('ALTER TABLE quarantine DROP COLUMN "settled_at"')
    con.execute("INSERT INTO quarantine VALUES ('q1', 'l1', 'orders', 'orders.csv', 3, 'ts', "
                "'yesterday', 'not a time', '{}', now())")
    con.close()
    ws = km.open(tmp_path)
    assert schema.current_version(ws.con) == schema.SCHEMA_VERSION
    assert [(r["line"], r["reason"]) for r in ws.quarantine().to_pylist()] == [(3, "not a time")]
    assert ws.con.execute("SELECT settled_at FROM quarantine").fetchall() == [(None,)]
    ws.close()
