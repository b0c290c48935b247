"""The state database: durable pragmas and versioned migrations that keep a user's data."""

from __future__ import annotations

import pytest

from services.state import db
from services.state.store import Store
from shared.clock import TestClock


def test_connection_is_wal_durable_with_foreign_keys(tmp_path):
    conn = db.connect(tmp_path / "nested" / "state.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == db.BUSY_TIMEOUT_MS
    finally:
        conn.close()


def test_migrations_applied_twice_are_a_no_op(tmp_path):
    conn = db.connect(tmp_path / "state.db")
    try:
        latest = len(db.load_migrations())
        first = db.migrate(conn)
        rows_after_first = conn.execute("SELECT * FROM schema_version").fetchall()

        second = db.migrate(conn)

        assert first == list(range(1, latest + 1))
        assert second == []
        assert conn.execute("SELECT * FROM schema_version").fetchall() == rows_after_first
        assert db.schema_version(conn) == latest
    finally:
        conn.close()


def test_upgrade_from_version_1_keeps_data(tmp_path):
    conn = db.connect(tmp_path / "state.db")
    db.migrate(conn, target=1)
    conn.execute(
        "INSERT INTO bots (name, strategy, symbol, timeframe, created_at_ms, updated_at_ms)"
        " VALUES ('mine', 'SCALPING', 'ETHUSDT', '5m', 1, 1)"
    )
    conn.execute(
        "INSERT INTO param_versions (bot_id, version, strategy, symbol, timeframe, params,"
        " created_at_ms) VALUES (1, 1, 'SCALPING', 'ETHUSDT', '5m', '{\"depth\": 10}', 1)"
    )
    conn.execute("UPDATE bots SET params_version = 1")
    conn.close()
    assert "alerts" not in _tables(tmp_path)

    with Store.open(tmp_path, clock=TestClock()) as store:
        bots = store.list_bots()
        params = store.get_params(1)
        store.add_alert("CRITICAL", "execution", "418: IP banned")

    assert [(b["name"], b["symbol"]) for b in bots] == [("mine", "ETHUSDT")]  # no default added
    assert params["params"] == {"depth": 10}


def test_a_failed_migration_leaves_nothing_behind(tmp_path):
    conn = db.connect(tmp_path / "state.db")
    broken = [
        db.Migration(1, "ok", "CREATE TABLE a (x INTEGER);"),
        db.Migration(2, "broken", "CREATE TABLE b (x INTEGER); INSERT INTO nowhere VALUES (1);"),
    ]
    try:
        with pytest.raises(Exception, match="nowhere"):
            db.migrate(conn, broken)

        assert db.schema_version(conn) == 1
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "a" in names and "b" not in names
    finally:
        conn.close()


def test_a_database_from_newer_code_is_refused(tmp_path):
    conn = db.connect(tmp_path / "state.db")
    try:
        db.migrate(conn)
        conn.execute("INSERT INTO schema_version VALUES (999, 'future', '', 0)")

        with pytest.raises(db.SchemaError, match="999"):
            db.migrate(conn)
    finally:
        conn.close()


def _tables(data_dir) -> set[str]:
    conn = db.connect(data_dir / db.DB_FILENAME)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()
