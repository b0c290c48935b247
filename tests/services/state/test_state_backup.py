"""A live backup of the state database is complete and consistent."""

from __future__ import annotations

import sqlite3

import pytest

from services.state.backup import backup
from services.state.store import Store


def test_backup_while_open_copies_every_bot(tmp_path):
    store = Store.open(tmp_path)
    store.create_bot(strategy="SWING", symbol="ETHUSDT", timeframe="5m")

    pages = backup(tmp_path, tmp_path / "copy" / "state.db")  # the store is still open

    copy = sqlite3.connect(tmp_path / "copy" / "state.db")
    symbols = {row[0] for row in copy.execute("SELECT symbol FROM bots")}
    copy.close()
    store.close()
    assert pages > 0 and symbols == {"BTCUSDT", "ETHUSDT"}


def test_backup_of_a_missing_database_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match="no state database at"):
        backup(tmp_path / "nowhere", tmp_path / "copy.db")
