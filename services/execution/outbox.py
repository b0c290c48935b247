"""Execution's own durable memory: one SQLite file in ``DATA_DIR``.

- ``outbox``: state writes (order events, fills, balances, alerts) waiting for the state
  service's acknowledgement; :class:`OutboxSender` drains it in order on its own thread, so
  nothing is lost while state is away and nothing is sent twice after an ack.
- ``intents``: each intent is written *before* its order is sent, so a restart after a crash
  between send and record finds it and resolves it by client id.
- ``orders``: the orders execution placed (bot, role, last status) for attribution and
  reconciliation; ``protections``: the SL/TP each position must have; ``kv``: settings and
  cursors (kill switch, risk config, last trade id per symbol).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import zmq

from shared.bus import RequestClient
from shared.codec import decode, encode
from shared.errors import CodecError, RequestTimeout
from shared.messages import Message

log = logging.getLogger(__name__)

DB_FILENAME = "execution.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB NOT NULL, error TEXT NOT NULL,
    created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS intents (
    intent_id TEXT PRIMARY KEY, bot_id TEXT NOT NULL, symbol TEXT NOT NULL,
    client_order_id TEXT NOT NULL, status TEXT NOT NULL, reply TEXT,
    request TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    client_order_id TEXT PRIMARY KEY, bot_id TEXT NOT NULL, symbol TEXT NOT NULL,
    side TEXT NOT NULL, type TEXT NOT NULL, role TEXT NOT NULL, intent_id TEXT,
    status TEXT NOT NULL, executed_qty TEXT NOT NULL DEFAULT '0',
    exchange_order_id INTEGER, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
    orig_qty TEXT);
CREATE TABLE IF NOT EXISTS protections (
    entry_client_order_id TEXT PRIMARY KEY, bot_id TEXT NOT NULL, symbol TEXT NOT NULL,
    qty TEXT NOT NULL, stop_loss TEXT NOT NULL, take_profit TEXT NOT NULL,
    gen INTEGER NOT NULL DEFAULT 0, intent_id TEXT NOT NULL, status TEXT NOT NULL,
    high_price TEXT, updated_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS fills (
    symbol TEXT NOT NULL, trade_id INTEGER NOT NULL, bot_id TEXT NOT NULL,
    client_order_id TEXT, side TEXT NOT NULL, qty TEXT NOT NULL, commission TEXT NOT NULL,
    commission_asset TEXT NOT NULL, ts_ms INTEGER NOT NULL, PRIMARY KEY (symbol, trade_id));
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS fills_by_bot ON fills (bot_id, symbol, trade_id);
CREATE INDEX IF NOT EXISTS fills_by_order ON fills (client_order_id);
CREATE INDEX IF NOT EXISTS orders_by_bot ON orders (bot_id, symbol, side);
CREATE INDEX IF NOT EXISTS orders_by_status ON orders (status);
CREATE INDEX IF NOT EXISTS orders_by_exchange_id ON orders (symbol, exchange_order_id);
CREATE INDEX IF NOT EXISTS intents_by_status ON intents (status, created_ms);
"""
OPEN_STATUSES = ("PENDING_NEW", "NEW", "PARTIALLY_FILLED", "PENDING_CANCEL")


def _now_ms() -> int:
    return int(time.time() * 1000)


class ExecutionDb:
    """The SQLite file; every method is one short transaction under one lock."""

    def __init__(self, data_dir: Path | str) -> None:
        path = Path(data_dir)
        path.mkdir(parents=True, exist_ok=True)
        self.path = path / DB_FILENAME
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SCHEMA)
        columns = {row["name"] for row in self._conn.execute("PRAGMA table_info(orders)")}
        if "orig_qty" not in columns:  # a file from before the column
            self._conn.execute("ALTER TABLE orders ADD COLUMN orig_qty TEXT")
        self._lock = threading.RLock()
        self.closed = False

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._conn.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    # --- outbox ------------------------------------------------------------------------

    def enqueue(self, *messages: Message) -> None:
        """Keep ``messages`` for the state service (in this order) until acknowledged."""
        with self.tx() as conn:
            for msg in messages:
                conn.execute("INSERT INTO outbox (body, created_ms) VALUES (?, ?)",
                             (encode(msg), _now_ms()))

    def peek(self, limit: int = 50) -> list[tuple[int, bytes]]:
        rows = self.query("SELECT id, body FROM outbox ORDER BY id LIMIT ?", (limit,))
        return [(row["id"], row["body"]) for row in rows]

    def ack(self, item_id: int) -> None:
        with self.tx() as conn:
            conn.execute("DELETE FROM outbox WHERE id = ?", (item_id,))

    def bury(self, item_id: int, body: bytes, error: str) -> None:
        with self.tx() as conn:
            conn.execute("DELETE FROM outbox WHERE id = ?", (item_id,))
            conn.execute("INSERT INTO dead_letters (body, error, created_ms) VALUES (?, ?, ?)",
                         (body, error, _now_ms()))

    def outbox_size(self) -> int:
        return self.query("SELECT COUNT(*) AS n FROM outbox")[0]["n"]

    def dead_count(self) -> int:
        return self.query("SELECT COUNT(*) AS n FROM dead_letters")[0]["n"]

    # --- intents -----------------------------------------------------------------------

    def intent(self, intent_id: str) -> sqlite3.Row | None:
        rows = self.query("SELECT * FROM intents WHERE intent_id = ?", (intent_id,))
        return rows[0] if rows else None

    def begin_intent(self, intent_id: str, bot_id: str, symbol: str, cid: str,
                     request: dict[str, Any]) -> None:
        with self.tx() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO intents (intent_id, bot_id, symbol, client_order_id,"
                " status, request, created_ms) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                (intent_id, bot_id, symbol, cid, json.dumps(request), _now_ms()))

    def finish_intent(self, intent_id: str, status: str, reply: dict[str, Any]) -> None:
        with self.tx() as conn:
            conn.execute("UPDATE intents SET status = ?, reply = ? WHERE intent_id = ?",
                         (status, json.dumps(reply), intent_id))

    def forget_intent(self, intent_id: str) -> None:
        with self.tx() as conn:
            conn.execute("DELETE FROM intents WHERE intent_id = ?", (intent_id,))

    def pending_intents(self) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM intents WHERE status = 'pending' ORDER BY created_ms")

    # --- orders ------------------------------------------------------------------------

    def upsert_order(self, cid: str, **fields: Any) -> None:
        fields = {k: v for k, v in fields.items() if v is not None}
        fields["updated_ms"] = _now_ms()
        with self.tx() as conn:
            row = conn.execute("SELECT 1 FROM orders WHERE client_order_id = ?",
                               (cid,)).fetchone()
            if row is None:
                fields["created_ms"] = fields["updated_ms"]
                names = ["client_order_id", *fields]
                conn.execute(f"INSERT INTO orders ({', '.join(names)}) VALUES"
                             f" ({', '.join('?' * len(names))})", (cid, *fields.values()))
            else:
                sets = ", ".join(f"{k} = ?" for k in fields)
                conn.execute(f"UPDATE orders SET {sets} WHERE client_order_id = ?",
                             (*fields.values(), cid))

    def order(self, cid: str) -> sqlite3.Row | None:
        rows = self.query("SELECT * FROM orders WHERE client_order_id = ?", (cid,))
        return rows[0] if rows else None

    def open_orders(self, bot_id: str | None = None) -> list[sqlite3.Row]:
        marks = ", ".join("?" * len(OPEN_STATUSES))
        sql = f"SELECT * FROM orders WHERE status IN ({marks})"
        args: tuple = OPEN_STATUSES
        if bot_id is not None:
            sql += " AND bot_id = ?"
            args = (*args, bot_id)
        return self.query(sql, args)

    def sell_orders(self, bot_id: str, symbol: str) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM orders WHERE bot_id = ? AND symbol = ? AND side = "
                          "'SELL'", (bot_id, symbol))

    def symbols(self) -> list[str]:
        rows = self.query("SELECT DISTINCT symbol FROM orders UNION SELECT DISTINCT symbol "
                          "FROM intents")
        return sorted(row[0] for row in rows)

    # --- fills --------------------------------------------------------------------------

    def add_fill(self, symbol: str, trade_id: int, bot_id: str, cid: str | None, side: str,
                 qty: Any, commission: Any, commission_asset: str, ts_ms: int) -> bool:
        """Remember a fill; False if it was already known (so it is processed once)."""
        with self.tx() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO fills (symbol, trade_id, bot_id, client_order_id, side,"
                " qty, commission, commission_asset, ts_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (symbol, trade_id, bot_id, cid, side, str(qty), str(commission),
                 commission_asset, ts_ms))
            return cur.rowcount == 1

    def filled_qty(self, cid: str) -> Decimal:
        """The quantity of the recorded fills of order ``cid``."""
        rows = self.query("SELECT qty FROM fills WHERE client_order_id = ?", (cid,))
        return sum((Decimal(r["qty"]) for r in rows), Decimal(0))

    def last_trade_id(self, symbol: str) -> int | None:
        rows = self.query("SELECT MAX(trade_id) AS t FROM fills WHERE symbol = ?", (symbol,))
        return rows[0]["t"]

    def bot_fills(self, bot_id: str, symbol: str) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM fills WHERE bot_id = ? AND symbol = ? ORDER BY trade_id",
                          (bot_id, symbol))

    def order_by_exchange_id(self, symbol: str, order_id: int) -> sqlite3.Row | None:
        rows = self.query("SELECT * FROM orders WHERE symbol = ? AND exchange_order_id = ?",
                          (symbol, order_id))
        return rows[0] if rows else None

    # --- protections -------------------------------------------------------------------

    def save_protection(self, entry_cid: str, **fields: Any) -> None:
        fields = {k: (str(v) if not isinstance(v, (int, str)) else v)
                  for k, v in fields.items() if v is not None}
        fields["updated_ms"] = _now_ms()
        with self.tx() as conn:
            row = conn.execute("SELECT 1 FROM protections WHERE entry_client_order_id = ?",
                               (entry_cid,)).fetchone()
            if row is None:
                names = ["entry_client_order_id", *fields]
                conn.execute(f"INSERT INTO protections ({', '.join(names)}) VALUES"
                             f" ({', '.join('?' * len(names))})", (entry_cid, *fields.values()))
            else:
                sets = ", ".join(f"{k} = ?" for k in fields)
                conn.execute(f"UPDATE protections SET {sets} WHERE entry_client_order_id = ?",
                             (*fields.values(), entry_cid))

    def protections(self, status: str | None = None) -> list[sqlite3.Row]:
        if status is None:
            return self.query("SELECT * FROM protections")
        return self.query("SELECT * FROM protections WHERE status = ?", (status,))

    # --- kv ----------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        rows = self.query("SELECT value FROM kv WHERE key = ?", (key,))
        return json.loads(rows[0]["value"]) if rows else default

    def put(self, key: str, value: Any) -> None:
        with self.tx() as conn:
            conn.execute("INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE"
                         " SET value = excluded.value", (key, json.dumps(value)))


PERMANENT_ERRORS = ("invalid", "unknown_bot", "bad_request")


class OutboxSender:
    """Drains the outbox to the state service in order, on its own thread, until stopped.

    A write is removed only after state acknowledged it; a timeout keeps it and backs off
    (0.25 s doubling to 5 s). A write state refuses as invalid is moved to ``dead_letters``
    and logged as an error, so one bad record cannot block every later one.
    """

    def __init__(self, db: ExecutionDb, ctx: zmq.Context, endpoint: str,
                 timeout_ms: int = 1000) -> None:
        self.db = db
        self.ctx = ctx
        self.endpoint = endpoint
        self.timeout_ms = timeout_ms
        self.sent = 0
        self.state_reachable = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="exec-outbox", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=1.5)

    def _run(self) -> None:
        client = RequestClient(self.ctx, self.endpoint, timeout_ms=self.timeout_ms, retries=1)
        backoff = 0.25
        try:
            while not self._stop.is_set():
                try:
                    progressed = self._drain(client)
                except RequestTimeout:
                    self.state_reachable = False
                    client.close()
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                except Exception:
                    log.exception("outbox drain failed")
                    self._stop.wait(1.0)
                    continue
                backoff = 0.25
                if not progressed:
                    self._wake.wait(0.5)
                    self._wake.clear()
        finally:
            client.close()

    def _drain(self, client: RequestClient) -> bool:
        items = self.db.peek()
        for item_id, body in items:
            if self._stop.is_set():
                return True
            try:
                msg = decode(body)
            except CodecError as exc:
                self.db.bury(item_id, body, f"undecodable: {exc}")
                continue
            reply = client.request(msg)
            self.state_reachable = True
            if not reply.ok and reply.error_code == "unknown_bot" and \
                    getattr(msg, "bot_id", None) is not None:
                # the bot was deleted meanwhile: keep the record, without the attribution
                log.warning("%s for unknown bot %s recorded without a bot", msg.type,
                            msg.bot_id)
                reply = client.request(dataclasses.replace(msg, bot_id=None))
            if reply.ok:
                self.db.ack(item_id)
                self.sent += 1
            elif reply.error_code in PERMANENT_ERRORS:
                log.error("state refused %s: %s; kept in dead_letters", msg.type,
                          reply.error_message)
                self.db.bury(item_id, body, f"{reply.error_code}: {reply.error_message}")
            else:
                raise RequestTimeout(f"state could not store {msg.type}: {reply.error_message}")
        return bool(items)
