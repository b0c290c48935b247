"""SQLite connection for the state service: WAL, durable commits, versioned migrations.

A commit returns only once it is on disk (``synchronous=FULL``), so an acknowledgement sent
after a commit survives a crash. Migrations are the ``NNNN_name.sql`` files of
``migrations/``, applied in order, each in its own transaction together with its row in
``schema_version``; running them again is a no-op.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from shared.errors import TradingBotError

log = logging.getLogger(__name__)

DB_FILENAME = "state.db"
BUSY_TIMEOUT_MS = 5000
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class SchemaError(TradingBotError):
    """The database cannot be used by this code (e.g. written by a newer version)."""


@dataclass(frozen=True)
class Migration:
    """One schema step: ``version`` is applied after every lower version."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    """Every migration shipped in ``services/state/migrations``, in version order."""
    found = []
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise SchemaError(f"migrations must be numbered 1..n without gaps, found {versions}")
    return found


def connect(path: str | Path) -> sqlite3.Connection:
    """Open (creating its directory) the database at ``path`` with the service's pragmas.

    The connection is in autocommit mode: callers open transactions explicitly with
    ``BEGIN IMMEDIATE`` so that a write never has to upgrade a read lock.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode.lower() != "wal":
        conn.close()
        raise SchemaError(f"{path}: could not switch to WAL journal mode (got {mode})")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def open_database(data_dir: str | Path, filename: str = DB_FILENAME) -> sqlite3.Connection:
    """Connect to ``data_dir/filename`` and bring its schema up to date."""
    conn = connect(Path(data_dir) / filename)
    try:
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    """The highest applied migration, 0 for an empty database."""
    _ensure_version_table(conn)
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return row[0] or 0


def migrate(
    conn: sqlite3.Connection,
    migrations: list[Migration] | None = None,
    target: int | None = None,
) -> list[int]:
    """Apply the missing migrations up to ``target`` (default: all); return those applied."""
    migrations = load_migrations() if migrations is None else migrations
    latest = migrations[-1].version if migrations else 0
    current = schema_version(conn)
    if current > latest:
        raise SchemaError(
            f"database schema is version {current} but this code knows only up to {latest}: "
            "upgrade the code or restore a matching database"
        )
    _warn_on_edited_migrations(conn, migrations)
    applied = []
    for migration in migrations:
        if migration.version <= current or (target is not None and migration.version > target):
            continue
        _apply(conn, migration)
        applied.append(migration.version)
        log.info("applied migration %04d_%s", migration.version, migration.name)
    return applied


def _ensure_version_table(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL,"
        " applied_at_ms INTEGER NOT NULL)"
    )


def _apply(conn: sqlite3.Connection, migration: Migration) -> None:
    """Run one migration and record it, all or nothing."""
    record = (
        "INSERT INTO schema_version (version, name, checksum, applied_at_ms) VALUES "
        f"({migration.version}, '{migration.name}', '{migration.checksum}', "
        f"{int(time.time() * 1000)});"
    )
    try:
        conn.executescript(f"BEGIN IMMEDIATE;\n{migration.sql}\n;{record}\nCOMMIT;")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _warn_on_edited_migrations(conn: sqlite3.Connection, migrations: list[Migration]) -> None:
    rows = conn.execute("SELECT version, checksum FROM schema_version").fetchall()
    recorded = {row[0]: row[1] for row in rows}
    for migration in migrations:
        if migration.version in recorded and recorded[migration.version] != migration.checksum:
            log.warning(
                "migration %04d_%s changed after it was applied; add a new migration instead",
                migration.version,
                migration.name,
            )
