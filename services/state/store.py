"""The state service's reads and writes over SQLite: bots, params, leases, orders, fills.

Every write runs in one ``BEGIN IMMEDIATE`` transaction and returns an ``Outcome`` whose
``changes`` each carry the next value of a global sequence number kept in the database, so
the service can publish ``state.<kind>`` updates that a late joiner orders against the
``seq`` of ``snapshot()`` (zguide Clone pattern). Recording the same order event or fill
twice stores it once and answers ``"duplicate"`` without a change.

Every value handed out is a plain dict of str/int/float/bool/None/list/dict: decimals are
strings, times are integer milliseconds.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from services.state import db
from services.state.accounting import (
    ZERO,
    CompletedTrade,
    Fill,
    Position,
    fmt,
    ratio,
    to_decimal,
)
from shared.clock import SYSTEM_CLOCK, Clock
from shared.errors import StaleLeaseError, ValidationError

log = logging.getLogger(__name__)

Validator = Callable[[str, dict[str, Any]], dict[str, Any]]
"""``validator(strategy, params)`` returns the params to store or raises ``ValidationError``."""

BOT_STATUSES = ("STOPPED", "STARTING", "RUNNING", "STOPPING", "ERROR")
DESIRED_STATUSES = ("RUNNING", "STOPPED")
TIMEFRAMES = (
    "1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d",
    "1w", "1M",
)
SIDES = ("BUY", "SELL")
OPEN_ORDER_STATUSES = ("PENDING_NEW", "NEW", "PARTIALLY_FILLED", "PENDING_CANCEL")
FINAL_ORDER_STATUSES = ("FILLED", "CANCELED", "REJECTED", "EXPIRED", "EXPIRED_IN_MATCH")
ALERT_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MAX_PAGE = 1000
REPLY_KEEP_MS = 7 * 86_400_000  # a retry comes within seconds; a week is plenty
DEFAULT_BOT = {
    "name": "SWING BTCUSDT 1m",
    "strategy": "SWING",
    "symbol": "BTCUSDT",
    "timeframe": "1m",
    "params": {},
}
_SYMBOL = re.compile(r"^[A-Z0-9]{2,20}$")
_STRATEGY = re.compile(r"^[A-Z][A-Z0-9_]{0,31}$")
_STATUS_RANK = {"PENDING_NEW": 0, "NEW": 1, "PARTIALLY_FILLED": 2, "PENDING_CANCEL": 2}


class UnknownBotError(ValidationError):
    """No (live) bot has this id; the gateway answers 404."""

    def __init__(self, bot_id: Any) -> None:
        super().__init__({"bot_id": f"no bot with id {bot_id!r}"}, "unknown bot")
        self.bot_id = bot_id


def accept_any_params(strategy: str, params: dict[str, Any]) -> dict[str, Any]:
    """Default validator: any JSON object is accepted as is."""
    if not isinstance(params, dict):
        raise ValidationError({"params": "must be an object"})
    try:
        return json.loads(_params_json(params))
    except (TypeError, ValueError) as exc:
        raise ValidationError({"params": f"must be JSON: {exc}"}) from None


@dataclass(frozen=True)
class Change:
    """One numbered update, published as ``state.<kind>`` with ``seq``."""

    seq: int
    kind: str
    payload: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "payload": self.payload}


@dataclass(frozen=True)
class Outcome:
    """What a write did: ``result`` in words, the ``value`` to reply with, its ``changes``."""

    result: str
    value: Any = None
    changes: tuple[Change, ...] = field(default_factory=tuple)

    @property
    def seq(self) -> int | None:
        """Sequence number of the last change, None when nothing changed."""
        return self.changes[-1].seq if self.changes else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "value": self.value,
            "changes": [change.to_dict() for change in self.changes],
        }


class Store:
    """The source of truth, with no sockets: the service wraps it behind request/reply.

    Thread-safe (one lock around the one connection). ``validator`` checks params against
    the strategy's schema; ``dust_notional`` (quote) lets a round trip close with a remainder
    too small to sell; ``default_bot`` is created in an empty database (None: no bot).
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        clock: Clock = SYSTEM_CLOCK,
        validator: Validator = accept_any_params,
        dust_notional: Decimal = ZERO,
        default_bot: Mapping[str, Any] | None = DEFAULT_BOT,
    ) -> None:
        self._conn = conn
        self._clock = clock
        self._validator = validator
        self._dust_notional = dust_notional
        self._lock = threading.RLock()
        self._pending: list[Change] = []
        if default_bot is not None:
            self._seed(default_bot)

    @classmethod
    def open(cls, data_dir: str | Path, **kwargs: Any) -> Store:
        """Open (creating and migrating) ``data_dir/state.db``."""
        return cls(db.open_database(data_dir), **kwargs)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------- transactions

    @contextmanager
    def answer_once(self, kind: str, request_id: str) -> Iterator[Callable[[Any], None]]:
        """One transaction around a request that carries a ``request_id``: its changes and
        the reply handed to the yielded function commit together (see :meth:`saved_reply`),
        so a retry after a crash between the commit and the reply gets the first reply."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            self._pending = []
            try:
                yield lambda reply: self._keep_reply(kind, request_id, reply)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _keep_reply(self, kind: str, request_id: str, reply: Any) -> None:
        now = self._now_ms()
        self._conn.execute("DELETE FROM replies WHERE ts_ms < ?", (now - REPLY_KEEP_MS,))
        self._conn.execute(
            "INSERT OR REPLACE INTO replies (kind, request_id, reply, ts_ms) VALUES (?, ?, ?, ?)",
            (kind, request_id, json.dumps(reply, default=str), now))

    def saved_reply(self, kind: str, request_id: str) -> Any | None:
        """The reply first given to request ``request_id`` of ``kind`` (kept a week)."""
        with self._lock:
            row = self._conn.execute("SELECT reply FROM replies WHERE kind = ? AND"
                                     " request_id = ?", (kind, request_id)).fetchone()
        return None if row is None else json.loads(row[0])

    @contextmanager
    def _write(self) -> Iterator[list[Change]]:
        """One durable transaction (a savepoint inside :meth:`answer_once`'s); yields the
        list its changes are collected into."""
        with self._lock:
            if self._conn.in_transaction:
                self._conn.execute("SAVEPOINT write")
                try:
                    yield self._pending
                except BaseException:
                    self._conn.execute("ROLLBACK TO write")
                    self._conn.execute("RELEASE write")
                    raise
                self._conn.execute("RELEASE write")
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._pending = []
            try:
                yield self._pending
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A consistent read: every query inside sees the same database state."""
        with self._lock:
            if self._conn.in_transaction:  # inside answer_once(): already consistent
                yield self._conn
                return
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    def _insert(self, sql: str, args: Iterable[Any]) -> int:
        """Run an INSERT; a broken reference (an unknown bot id) is the caller's mistake."""
        try:
            return self._conn.execute(sql, tuple(args)).lastrowid
        except sqlite3.IntegrityError as exc:
            raise ValidationError({"bot_id": f"refers to no bot ({exc})"}) from None

    def _emit(self, kind: str, payload: dict[str, Any]) -> Change:
        row = self._conn.execute(
            "UPDATE state_seq SET value = value + 1 WHERE id = 1 RETURNING value"
        ).fetchone()
        change = Change(row[0], kind, payload)
        self._pending.append(change)
        return change

    def _now_ms(self) -> int:
        return self._clock.time_ms()

    @property
    def seq(self) -> int:
        """Sequence number of the last change written."""
        with self._lock:
            return self._conn.execute("SELECT value FROM state_seq WHERE id = 1").fetchone()[0]

    # ----------------------------------------------------------------- snapshot

    def snapshot(self, recent: int = 50) -> dict[str, Any]:
        """Everything a late joiner needs, consistent with ``seq``; history is paged apart."""
        with self._read() as conn:
            seq = conn.execute("SELECT value FROM state_seq WHERE id = 1").fetchone()[0]
            bots = self._bot_rows(conn)
            open_orders = conn.execute(
                "SELECT * FROM orders WHERE status IN (?, ?, ?, ?) ORDER BY id",
                OPEN_ORDER_STATUSES,
            ).fetchall()
            return {
                "seq": seq,
                "bots": [_bot_dict(row) for row in bots],
                "params": [self._params_of(conn, row["id"], None) for row in bots],
                "leases": self._lease_dicts(conn),
                "positions": self._position_dicts(conn),
                "balances": self._balance_dicts(conn),
                "open_orders": self._order_dicts(conn, open_orders),
                "recent_orders": self._page(conn, "orders", {}, recent, None)["items"],
                "recent_trades": self._page(conn, "trades", {}, recent, None)["items"],
                "alerts": self._page(conn, "alerts", {}, recent, None)["items"],
            }

    # ----------------------------------------------------------------- bots

    def list_bots(self) -> list[dict[str, Any]]:
        with self._read() as conn:
            return [_bot_dict(row) for row in self._bot_rows(conn)]

    def get_bot(self, bot_id: int) -> dict[str, Any]:
        with self._read() as conn:
            return _bot_dict(self._bot_row(conn, bot_id))

    def create_bot(
        self,
        *,
        strategy: str,
        symbol: str,
        timeframe: str,
        params: dict[str, Any] | None = None,
        name: str | None = None,
        comment: str = "created",
    ) -> Outcome:
        """Add a stopped bot whose params become version 1."""
        checked = self._check_params(strategy, symbol, timeframe, dict(params or {}))
        now = self._now_ms()
        with self._write() as changes:
            bot_id = self._conn.execute(
                "INSERT INTO bots (name, strategy, symbol, timeframe, created_at_ms,"
                " updated_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
                (name or f"{strategy} {symbol} {timeframe}", strategy, symbol, timeframe,
                 now, now),
            ).lastrowid
            version = self._insert_version(bot_id, strategy, symbol, timeframe, checked, comment)
            bot = self._emit_bot(bot_id)
            self._emit("params", version)
        return Outcome("created", bot, tuple(changes))

    def delete_bot(self, bot_id: int) -> Outcome:
        """Remove a bot from the list (its history stays) and end its lease."""
        now = self._now_ms()
        with self._write() as changes:
            self._bot_row(self._conn, bot_id)
            self._conn.execute(
                "UPDATE bots SET deleted_at_ms = ?, desired_status = 'STOPPED',"
                " updated_at_ms = ? WHERE id = ?",
                (now, now, bot_id),
            )
            self._conn.execute(
                "UPDATE worker_leases SET owner = NULL, expires_at_ms = ? WHERE bot_id = ?",
                (now, bot_id),
            )
            self._emit("bot_deleted", {"id": bot_id})
        return Outcome("deleted", {"id": bot_id}, tuple(changes))

    def set_desired_status(self, bot_id: int, desired_status: str) -> Outcome:
        """What the user asked for (RUNNING or STOPPED); workers act on it."""
        if desired_status not in DESIRED_STATUSES:
            raise ValidationError({"desired_status": f"one of {', '.join(DESIRED_STATUSES)}"})
        return self._update_bot(bot_id, {"desired_status": desired_status})

    def set_status(
        self, bot_id: int, status: str, reason: str = "", *, epoch: int | None = None
    ) -> Outcome:
        """What the bot is doing; with ``epoch``, only the current lease holder may say so."""
        if status not in BOT_STATUSES:
            raise ValidationError({"status": f"one of {', '.join(BOT_STATUSES)}"})
        return self._update_bot(bot_id, {"status": status, "status_reason": reason}, epoch)

    def _update_bot(
        self, bot_id: int, values: dict[str, Any], epoch: int | None = None
    ) -> Outcome:
        with self._write() as changes:
            row = self._bot_row(self._conn, bot_id)
            if epoch is not None:
                self._check_epoch(bot_id, epoch)
            if all(row[key] == value for key, value in values.items()):
                return Outcome("duplicate", _bot_dict(row))
            assignments = ", ".join(f"{key} = ?" for key in values)
            self._conn.execute(
                f"UPDATE bots SET {assignments}, updated_at_ms = ? WHERE id = ?",
                (*values.values(), self._now_ms(), bot_id),
            )
            bot = self._emit_bot(bot_id)
        return Outcome("updated", bot, tuple(changes))

    def _seed(self, spec: Mapping[str, Any]) -> None:
        with self._lock:
            if self._conn.execute("SELECT COUNT(*) FROM bots").fetchone()[0]:
                return
        outcome = self.create_bot(
            strategy=spec["strategy"],
            symbol=spec["symbol"],
            timeframe=spec["timeframe"],
            params=dict(spec.get("params") or {}),
            name=spec.get("name"),
            comment="default bot",
        )
        log.info("created the default bot %s", outcome.value["name"])

    def _bot_rows(self, conn: sqlite3.Connection) -> list[sqlite3.Row]:
        return conn.execute("SELECT * FROM bots WHERE deleted_at_ms IS NULL ORDER BY id").fetchall()

    def _bot_row(self, conn: sqlite3.Connection, bot_id: Any) -> sqlite3.Row:
        row = None
        if isinstance(bot_id, int) and not isinstance(bot_id, bool):
            row = conn.execute(
                "SELECT * FROM bots WHERE id = ? AND deleted_at_ms IS NULL", (bot_id,)
            ).fetchone()
        if row is None:
            raise UnknownBotError(bot_id)
        return row

    def _emit_bot(self, bot_id: int) -> dict[str, Any]:
        bot = _bot_dict(self._bot_row(self._conn, bot_id))
        self._emit("bot", bot)
        return bot

    # ----------------------------------------------------------------- params

    def get_params(self, bot_id: int, version: int | None = None) -> dict[str, Any]:
        """The current param set (or ``version``) with its strategy, symbol and timeframe."""
        with self._read() as conn:
            self._bot_row(conn, bot_id)
            return self._params_of(conn, bot_id, version)

    def set_params(
        self,
        bot_id: int,
        params: dict[str, Any],
        *,
        strategy: str | None = None,
        symbol: str | None = None,
        timeframe: str | None = None,
        comment: str = "",
    ) -> Outcome:
        """Validate then save a new version; if the validator raises, nothing is written."""
        with self._lock:
            bot = self.get_bot(bot_id)
            strategy = strategy or bot["strategy"]
            symbol = symbol or bot["symbol"]
            timeframe = timeframe or bot["timeframe"]
            checked = self._check_params(strategy, symbol, timeframe, dict(params))
            return self._save_version(bot_id, strategy, symbol, timeframe, checked, comment)

    def _check_params(self, strategy, symbol, timeframe, params) -> dict[str, Any]:
        """The validated params, or one ``ValidationError`` naming every bad field at once."""
        problems: dict[str, str] = {}
        try:
            _check_market(strategy, symbol, timeframe)
        except ValidationError as exc:
            problems.update(exc.fields)
        try:
            checked = self._validator(strategy, params)
        except ValidationError as exc:
            for name, problem in exc.fields.items():
                problems.setdefault(name, problem)
        if problems:
            raise ValidationError(problems, "invalid params")
        return checked

    def list_param_versions(self, bot_id: int) -> list[dict[str, Any]]:
        """Every saved param set of a bot, newest first."""
        with self._read() as conn:
            self._bot_row(conn, bot_id)
            rows = conn.execute(
                "SELECT * FROM param_versions WHERE bot_id = ? ORDER BY version DESC", (bot_id,)
            ).fetchall()
            current = self._bot_row(conn, bot_id)["params_version"]
            return [_version_dict(row, current) for row in rows]

    def rollback_params(self, bot_id: int, version: int, comment: str | None = None) -> Outcome:
        """Save a new version equal to ``version`` (history is never rewritten)."""
        with self._lock:
            old = self.get_params(bot_id, version)
            return self._save_version(
                bot_id, old["strategy"], old["symbol"], old["timeframe"], old["params"],
                comment if comment is not None else f"rollback to version {version}",
            )

    def _save_version(self, bot_id, strategy, symbol, timeframe, params, comment) -> Outcome:
        with self._write() as changes:
            self._bot_row(self._conn, bot_id)
            version = self._insert_version(bot_id, strategy, symbol, timeframe, params, comment)
            self._emit_bot(bot_id)
            self._emit("params", version)
        return Outcome("created", version, tuple(changes))

    def _insert_version(self, bot_id, strategy, symbol, timeframe, params, comment) -> dict:
        now = self._now_ms()
        number = self._conn.execute(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM param_versions WHERE bot_id = ?",
            (bot_id,),
        ).fetchone()[0]
        self._conn.execute(
            "INSERT INTO param_versions (bot_id, version, strategy, symbol, timeframe, params,"
            " comment, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (bot_id, number, strategy, symbol, timeframe, _params_json(params),
             comment, now),
        )
        self._conn.execute(
            "UPDATE bots SET strategy = ?, symbol = ?, timeframe = ?, params_version = ?,"
            " updated_at_ms = ? WHERE id = ?",
            (strategy, symbol, timeframe, number, now, bot_id),
        )
        return self._params_of(self._conn, bot_id, number)

    def _params_of(self, conn, bot_id: int, version: int | None) -> dict[str, Any]:
        if version is None:
            version = conn.execute(
                "SELECT params_version FROM bots WHERE id = ?", (bot_id,)
            ).fetchone()[0]
        row = conn.execute(
            "SELECT * FROM param_versions WHERE bot_id = ? AND version = ?", (bot_id, version)
        ).fetchone()
        if row is None:
            raise ValidationError({"version": f"bot {bot_id} has no params version {version}"})
        return _version_dict(row, None)

    # ----------------------------------------------------------------- leases

    def claim_lease(self, bot_id: int, owner: str, ttl_s: float) -> Outcome:
        """Take a free or expired lease ("claimed", new epoch), or say who holds it ("held").

        The current holder claiming again keeps its epoch, so a retried claim is harmless.
        """
        _check_lease_args(owner, ttl_s)
        now = self._now_ms()
        with self._write() as changes:
            self._bot_row(self._conn, bot_id)
            row = self._lease_row(bot_id)
            live = row is not None and row["owner"] is not None and row["expires_at_ms"] > now
            if live and row["owner"] != owner:
                return Outcome("held", _lease_dict(row))
            epoch = row["epoch"] if live else (row["epoch"] if row else 0) + 1
            claimed_at = row["claimed_at_ms"] if live else now
            self._conn.execute(
                "INSERT INTO worker_leases (bot_id, owner, epoch, claimed_at_ms, expires_at_ms)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (bot_id) DO UPDATE SET owner ="
                " excluded.owner, epoch = excluded.epoch, claimed_at_ms = excluded.claimed_at_ms,"
                " expires_at_ms = excluded.expires_at_ms",
                (bot_id, owner, epoch, claimed_at, now + int(ttl_s * 1000)),
            )
            lease = self._emit_lease(bot_id)
        return Outcome("claimed", lease, tuple(changes))

    def renew_lease(self, bot_id: int, owner: str, epoch: int, ttl_s: float) -> Outcome:
        """Extend the holder's lease; raises ``StaleLeaseError`` if it is no longer theirs."""
        _check_lease_args(owner, ttl_s)
        with self._write() as changes:
            row = self._check_epoch(bot_id, epoch, owner)
            self._conn.execute(
                "UPDATE worker_leases SET expires_at_ms = ? WHERE bot_id = ?",
                (self._now_ms() + int(ttl_s * 1000), row["bot_id"]),
            )
            lease = self._emit_lease(bot_id)
        return Outcome("renewed", lease, tuple(changes))

    def release_lease(self, bot_id: int, owner: str, epoch: int) -> Outcome:
        """Give a lease back; releasing one already lost or released is a no-op."""
        with self._write() as changes:
            row = self._lease_row(bot_id)
            if row is None or row["owner"] != owner or row["epoch"] != epoch:
                return Outcome("duplicate", _lease_dict(row) if row else None)
            self._conn.execute(
                "UPDATE worker_leases SET owner = NULL, expires_at_ms = ? WHERE bot_id = ?",
                (self._now_ms(), bot_id),
            )
            lease = self._emit_lease(bot_id)
        return Outcome("released", lease, tuple(changes))

    def check_lease(self, bot_id: int, epoch: int) -> dict[str, Any]:
        """The lease if ``epoch`` is the current one; else ``StaleLeaseError``."""
        with self._lock:
            return _lease_dict(self._check_epoch(bot_id, epoch))

    def get_lease(self, bot_id: int) -> dict[str, Any] | None:
        with self._lock:
            row = self._lease_row(bot_id)
            return _lease_dict(row) if row else None

    def list_leases(self) -> list[dict[str, Any]]:
        with self._read() as conn:
            return self._lease_dicts(conn)

    def _lease_row(self, bot_id: int) -> sqlite3.Row | None:
        return self._conn.execute(
            "SELECT * FROM worker_leases WHERE bot_id = ?", (bot_id,)
        ).fetchone()

    def _check_epoch(self, bot_id: int, epoch: int, owner: str | None = None) -> sqlite3.Row:
        row = self._lease_row(bot_id)
        held = row is not None and row["owner"] is not None and row["epoch"] == epoch
        if not held or (owner is not None and row["owner"] != owner):
            current = f"epoch {row['epoch']} held by {row['owner']}" if row else "no lease"
            raise StaleLeaseError(f"bot {bot_id}: epoch {epoch} is not current ({current})")
        return row

    def _emit_lease(self, bot_id: int) -> dict[str, Any]:
        lease = _lease_dict(self._lease_row(bot_id))
        self._emit("lease", lease)
        return lease

    def _lease_dicts(self, conn) -> list[dict[str, Any]]:
        rows = conn.execute(
            "SELECT l.* FROM worker_leases l JOIN bots b ON b.id = l.bot_id"
            " WHERE b.deleted_at_ms IS NULL ORDER BY l.bot_id"
        ).fetchall()
        return [_lease_dict(row) for row in rows]

    # ----------------------------------------------------------------- orders

    def record_order_event(self, event: Mapping[str, Any]) -> Outcome:
        """Create or advance an order from a submission, an execution report or a query.

        ``client_order_id`` identifies the order. An event that brings nothing new, or that
        is older than what is stored (less filled, or open after final), is a "duplicate".
        """
        order = _parse_order_event(event, self._now_ms())
        with self._write() as changes:
            row = self._conn.execute(
                "SELECT * FROM orders WHERE client_order_id = ?", (order["client_order_id"],)
            ).fetchone()
            if row is None:
                self._insert_order(order)
                result = "created"
            elif _order_advances(row, order):
                self._advance_order(row, order)
                result = "updated"
            else:
                return Outcome("duplicate", self._order_dicts(self._conn, [row])[0])
            value = self._emit_order(order["client_order_id"])
        return Outcome(result, value, tuple(changes))

    def _emit_order(self, client_order_id: str) -> dict[str, Any] | None:
        row = self._conn.execute(
            "SELECT * FROM orders WHERE client_order_id = ?", (client_order_id,)
        ).fetchone()
        if row is None:
            return None
        value = self._order_dicts(self._conn, [row])[0]
        self._emit("order", value)
        return value

    def get_order(self, client_order_id: str) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT * FROM orders WHERE client_order_id = ?", (client_order_id,)
            ).fetchone()
            return self._order_dicts(conn, [row])[0] if row else None

    def list_orders(
        self,
        *,
        bot_id: int | None = None,
        symbol: str | None = None,
        status: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> dict[str, Any]:
        """Newest first: ``{"items": [...], "next_before": id or None}``; status "OPEN" too."""
        filters = {"bot_id": bot_id, "symbol": symbol, "status": status}
        with self._read() as conn:
            return self._page(conn, "orders", filters, limit, before)

    def _insert_order(self, order: dict[str, Any]) -> None:
        missing = [name for name in ("symbol", "side", "type", "qty") if order.get(name) is None]
        if missing:
            raise ValidationError({name: "required for a new order" for name in missing})
        columns = [name for name, value in order.items() if value is not None]
        self._insert(
            f"INSERT INTO orders ({', '.join(columns)}, created_at_ms) VALUES"
            f" ({', '.join('?' * len(columns))}, ?)",
            (*(_column_value(order[name]) for name in columns), order["updated_at_ms"]),
        )

    def _advance_order(self, row: sqlite3.Row, order: dict[str, Any]) -> None:
        updates = {
            name: _column_value(value)
            for name, value in order.items()
            if value is not None and name not in ("client_order_id", "created_at_ms")
        }
        if row["exchange_order_id"] is not None:
            updates.pop("exchange_order_id", None)
        assignments = ", ".join(f"{name} = ?" for name in updates)
        self._conn.execute(
            f"UPDATE orders SET {assignments} WHERE id = ?", (*updates.values(), row["id"])
        )

    def _order_dicts(self, conn, rows: list[sqlite3.Row]) -> list[dict[str, Any]]:
        """Orders with average price and, for sells, the PnL their fills realised."""
        ids = [row["client_order_id"] for row in rows]
        realized: dict[str, Decimal] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            for fill in conn.execute(
                "SELECT client_order_id, realized_pnl FROM fills WHERE realized_pnl IS NOT NULL"
                f" AND client_order_id IN ({', '.join('?' * len(chunk))})",
                chunk,
            ):
                key = fill["client_order_id"]
                realized[key] = realized.get(key, ZERO) + Decimal(fill["realized_pnl"])
        return [_order_dict(row, realized.get(row["client_order_id"])) for row in rows]

    # ----------------------------------------------------------------- fills

    def record_fill(self, fill: Mapping[str, Any]) -> Outcome:
        """Store one execution (unique on symbol + exchange trade id) and book it.

        The bot comes from ``bot_id`` or from the order named by ``client_order_id``; a fill
        of a bot updates its position and, when the position is flat again, adds a trade.
        Fills are booked in exchange order (trade time, then trade id): one that arrives
        after a later fill of the same bot and symbol was booked makes the store rebuild
        that position, its trades and its fills' realised PnL from every stored fill.
        """
        parsed = _parse_fill(fill, self._now_ms())
        with self._write() as changes:
            stored = self._conn.execute(
                "SELECT * FROM fills WHERE symbol = ? AND trade_id = ?",
                (parsed["symbol"], parsed["trade_id"]),
            ).fetchone()
            if stored is not None:
                return Outcome("duplicate", _fill_dict(stored))
            self._attribute(parsed)
            if parsed["bot_id"] is not None and self._arrives_late(parsed):
                value = self._record_late_fill(parsed)
                return Outcome("recorded", value, tuple(changes))
            booked = self._book(parsed) if parsed["bot_id"] is not None else None
            fill_id = self._insert_fill(parsed)
            row = self._conn.execute("SELECT * FROM fills WHERE id = ?", (fill_id,)).fetchone()
            value = _fill_dict(row)
            self._emit("fill", value)
            if booked is not None:
                position, trade = booked
                self._emit("position", position)
                if trade is not None:
                    self._insert_trade(position["bot_id"], trade.to_dict())
            if parsed["realized_pnl"] is not None and parsed["client_order_id"] is not None:
                self._emit_order(parsed["client_order_id"])  # its realised PnL moved
        return Outcome("recorded", value, tuple(changes))

    def _insert_fill(self, parsed: dict[str, Any]) -> int:
        columns = list(parsed)
        return self._insert(
            f"INSERT INTO fills ({', '.join(columns)}) VALUES"
            f" ({', '.join('?' * len(columns))})",
            [_column_value(parsed[name]) for name in columns],
        )

    def _arrives_late(self, fill: dict[str, Any]) -> bool:
        """True when a fill after this one (exchange order) is already booked for the bot."""
        last = self._last_booked(fill["bot_id"], fill["symbol"])
        return last is not None and _exchange_key(fill["ts_ms"], fill["trade_id"]) < last

    def _last_booked(self, bot_id: int, symbol: str) -> tuple | None:
        row = self._conn.execute(
            "SELECT book FROM positions WHERE bot_id = ? AND symbol = ?", (bot_id, symbol)
        ).fetchone()
        if row is None:
            return None  # every fill of a bot is booked: none yet
        last = json.loads(row["book"]).get("last_fill")
        if last is not None:
            return _exchange_key(*last)
        # A book written before "last_fill" was kept: look at the stored fills once.
        keys = [
            _exchange_key(r["ts_ms"], r["trade_id"])
            for r in self._conn.execute(
                "SELECT ts_ms, trade_id FROM fills WHERE bot_id = ? AND symbol = ?",
                (bot_id, symbol),
            )
        ]
        return max(keys) if keys else None

    def _record_late_fill(self, parsed: dict[str, Any]) -> dict[str, Any]:
        """Store a fill that sorts before booked ones, rebuild the book and emit what moved."""
        bot_id, symbol = parsed["bot_id"], parsed["symbol"]
        fill_id = self._insert_fill(parsed)
        (position, trades), changed_fills = self._rebuild(bot_id, symbol)
        log.info(
            "bot %s %s: fill %s arrived after later fills; position rebuilt in exchange order",
            bot_id, symbol, parsed["trade_id"],
        )
        value = None
        orders: list[str] = []
        for changed in [fill_id, *(i for i in changed_fills if i != fill_id)]:
            row = self._conn.execute("SELECT * FROM fills WHERE id = ?", (changed,)).fetchone()
            emitted = _fill_dict(row)
            self._emit("fill", emitted)  # the new fill, then those whose realised PnL moved
            value = emitted if value is None else value
            order_id = row["client_order_id"]
            if changed in changed_fills and order_id is not None and order_id not in orders:
                orders.append(order_id)
        self._emit("position", {"bot_id": bot_id, **position.to_dict()})
        self._sync_trades(bot_id, symbol, trades)
        for order_id in orders:
            self._emit_order(order_id)  # its realised PnL moved
        return value

    def _rebuild(
        self, bot_id: int, symbol: str
    ) -> tuple[tuple[Position, list[CompletedTrade]], list[int]]:
        """Replay every stored fill of the bot and symbol in exchange order (FIFO).

        Saves the position, corrects each fill's realised PnL; returns (position, completed
        trades in order) and the ids of the fills whose realised PnL changed.
        """
        rows = sorted(
            self._conn.execute(
                "SELECT * FROM fills WHERE bot_id = ? AND symbol = ?", (bot_id, symbol)
            ).fetchall(),
            key=lambda r: _exchange_key(r["ts_ms"], r["trade_id"]),
        )
        position = Position(symbol, dust_notional=self._dust_notional)
        trades: list[CompletedTrade] = []
        changed: list[int] = []
        unmatched = ZERO
        for row in rows:
            effect = position.apply(_row_fill(row))
            unmatched += effect.unmatched_qty
            if effect.trade is not None:
                trades.append(effect.trade)
            pnl = fmt(effect.realized_pnl) if row["side"] == "SELL" else None
            if pnl != row["realized_pnl"]:
                self._conn.execute(
                    "UPDATE fills SET realized_pnl = ? WHERE id = ?", (pnl, row["id"])
                )
                changed.append(row["id"])
        if unmatched:
            log.warning(
                "bot %s sold %s %s more than it held; no cost basis for that part",
                bot_id, fmt(unmatched), symbol,
            )
        last = rows[-1]
        self._save_position(bot_id, symbol, position, (last["ts_ms"], last["trade_id"]))
        return (position, trades), changed

    def _sync_trades(self, bot_id: int, symbol: str, trades: list[CompletedTrade]) -> None:
        """Make the stored trades of the bot and symbol equal ``trades``, keeping their ids."""
        rows = self._conn.execute(
            "SELECT * FROM trades WHERE bot_id = ? AND symbol = ? ORDER BY id", (bot_id, symbol)
        ).fetchall()
        for index, trade in enumerate(trades):
            values = {k: v for k, v in trade.to_dict().items() if k != "duration_s"}
            if index >= len(rows):
                self._insert_trade(bot_id, trade.to_dict())
                continue
            row = rows[index]
            if all(row[name] == value for name, value in values.items()):
                continue
            self._conn.execute(
                f"UPDATE trades SET {', '.join(f'{name} = ?' for name in values)} WHERE id = ?",
                (*values.values(), row["id"]),
            )
            updated = self._conn.execute(
                "SELECT * FROM trades WHERE id = ?", (row["id"],)
            ).fetchone()
            self._emit("trade", _trade_dict(updated))
        for row in rows[len(trades):]:
            self._conn.execute("DELETE FROM trades WHERE id = ?", (row["id"],))
            self._emit("trade_deleted", {"id": row["id"], "bot_id": bot_id, "symbol": symbol})

    def list_fills(
        self, *, bot_id: int | None = None, symbol: str | None = None,
        client_order_id: str | None = None, limit: int = 50, before: int | None = None,
    ) -> dict[str, Any]:
        filters = {"bot_id": bot_id, "symbol": symbol, "client_order_id": client_order_id}
        with self._read() as conn:
            return self._page(conn, "fills", filters, limit, before)

    def _attribute(self, fill: dict[str, Any]) -> None:
        """Find the bot and check the side from the fill's order, when it is known."""
        row = None
        if fill["client_order_id"] is not None:
            row = self._conn.execute(
                "SELECT * FROM orders WHERE client_order_id = ?", (fill["client_order_id"],)
            ).fetchone()
        elif fill["exchange_order_id"] is not None:
            row = self._conn.execute(
                "SELECT * FROM orders WHERE symbol = ? AND exchange_order_id = ?",
                (fill["symbol"], fill["exchange_order_id"]),
            ).fetchone()
        if row is None:
            if fill["bot_id"] is not None and not self._conn.execute(
                "SELECT 1 FROM bots WHERE id = ?", (fill["bot_id"],)
            ).fetchone():
                raise UnknownBotError(fill["bot_id"])
            return
        if row["side"] != fill["side"]:
            raise ValidationError({"side": f"order {row['client_order_id']} is {row['side']}"})
        fill["client_order_id"] = row["client_order_id"]
        if fill["bot_id"] is None:
            fill["bot_id"] = row["bot_id"]

    def _book(self, fill: dict[str, Any]) -> tuple[dict[str, Any], CompletedTrade | None]:
        """Apply a bot's fill to its stored position; return it and any completed trade."""
        bot_id, symbol = fill["bot_id"], fill["symbol"]
        position = self._load_position(bot_id, symbol)
        effect = position.apply(Fill(
            fill["side"], fill["price"], fill["qty"], fill["commission"],
            fill["commission_asset"], fill["ts_ms"],
        ))
        if effect.unmatched_qty:
            log.warning(
                "bot %s sold %s %s more than it held; no cost basis for that part",
                bot_id, fmt(effect.unmatched_qty), symbol,
            )
        if fill["side"] == "SELL":
            fill["realized_pnl"] = effect.realized_pnl
        self._save_position(bot_id, symbol, position, (fill["ts_ms"], fill["trade_id"]))
        return {"bot_id": bot_id, **position.to_dict()}, effect.trade

    def _save_position(
        self, bot_id: int, symbol: str, position: Position, last_fill: tuple[int, str]
    ) -> None:
        """Write the book, with the exchange-order key of the last fill booked in it."""
        book = {**position.to_state(), "last_fill": [last_fill[0], last_fill[1]]}
        self._conn.execute(
            "INSERT INTO positions (bot_id, symbol, qty, cost, opened_at_ms, realized_pnl,"
            " fees_quote, book, updated_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (bot_id, symbol) DO UPDATE SET qty = excluded.qty, cost ="
            " excluded.cost, opened_at_ms = excluded.opened_at_ms, realized_pnl ="
            " excluded.realized_pnl, fees_quote = excluded.fees_quote, book = excluded.book,"
            " updated_at_ms = excluded.updated_at_ms",
            (bot_id, symbol, fmt(position.qty), fmt(position.cost), position.opened_at_ms,
             fmt(position.realized_pnl), fmt(position.fees_quote), json.dumps(book),
             self._now_ms()),
        )

    def _insert_trade(self, bot_id: int, trade: dict[str, Any]) -> None:
        columns = [name for name in trade if name != "duration_s"]
        trade_id = self._conn.execute(
            f"INSERT INTO trades (bot_id, {', '.join(columns)}) VALUES"
            f" (?, {', '.join('?' * len(columns))})",
            (bot_id, *(trade[name] for name in columns)),
        ).lastrowid
        row = self._conn.execute("SELECT * FROM trades WHERE id = ?", (trade_id,)).fetchone()
        self._emit("trade", _trade_dict(row))

    def _load_position(self, bot_id: int, symbol: str) -> Position:
        row = self._conn.execute(
            "SELECT book FROM positions WHERE bot_id = ? AND symbol = ?", (bot_id, symbol)
        ).fetchone()
        if row is None:
            return Position(symbol, dust_notional=self._dust_notional)
        return Position.from_state(symbol, json.loads(row["book"]), self._dust_notional)

    # ----------------------------------------------------------------- positions, trades

    def get_position(
        self, bot_id: int, symbol: str | None = None, mid_price: Any = None
    ) -> dict[str, Any]:
        """A bot's position in ``symbol`` (default: its current symbol); with ``mid_price``,
        its unrealised PnL too."""
        mid = None if mid_price is None else to_decimal(mid_price, "mid_price")
        with self._read() as conn:
            symbol = symbol or self._bot_row(conn, bot_id)["symbol"]
            row = conn.execute(
                "SELECT book FROM positions WHERE bot_id = ? AND symbol = ?", (bot_id, symbol)
            ).fetchone()
        position = (
            Position.from_state(symbol, json.loads(row["book"])) if row else Position(symbol)
        )
        return {"bot_id": bot_id, **position.to_dict(mid)}

    def list_positions(self) -> list[dict[str, Any]]:
        with self._read() as conn:
            return self._position_dicts(conn)

    def list_trades(
        self, *, bot_id: int | None = None, symbol: str | None = None, limit: int = 50,
        before: int | None = None,
    ) -> dict[str, Any]:
        """Completed round trips, newest first, paged like ``list_orders``."""
        with self._read() as conn:
            return self._page(conn, "trades", {"bot_id": bot_id, "symbol": symbol}, limit, before)

    def _position_dicts(self, conn) -> list[dict[str, Any]]:
        rows = conn.execute("SELECT * FROM positions ORDER BY bot_id, symbol").fetchall()
        return [
            {"bot_id": row["bot_id"],
             **Position.from_state(row["symbol"], json.loads(row["book"])).to_dict()}
            for row in rows
        ]

    # ----------------------------------------------------------------- balances, alerts

    def set_balances(
        self, balances: Iterable[Mapping[str, Any]], ts_ms: int | None = None
    ) -> Outcome:
        """Upsert account balances ``{asset, free, locked}``; only changed ones are emitted."""
        now = self._now_ms() if ts_ms is None else ts_ms
        parsed = [_parse_balance(balance) for balance in balances]
        with self._write() as changes:
            changed = []
            for asset, free, locked in parsed:
                row = self._conn.execute(
                    "SELECT free, locked FROM balances WHERE asset = ?", (asset,)
                ).fetchone()
                if row and Decimal(row["free"]) == free and Decimal(row["locked"]) == locked:
                    continue
                self._conn.execute(
                    "INSERT INTO balances (asset, free, locked, updated_at_ms) VALUES"
                    " (?, ?, ?, ?) ON CONFLICT (asset) DO UPDATE SET free = excluded.free,"
                    " locked = excluded.locked, updated_at_ms = excluded.updated_at_ms",
                    (asset, fmt(free), fmt(locked), now),
                )
                changed.append({"asset": asset, "free": fmt(free), "locked": fmt(locked),
                                "updated_at_ms": now})
            if not changed:
                return Outcome("duplicate", [])
            self._emit("balance", {"balances": changed})
        return Outcome("updated", changed, tuple(changes))

    def list_balances(self) -> list[dict[str, Any]]:
        with self._read() as conn:
            return self._balance_dicts(conn)

    def add_alert(
        self, level: str, service: str, message: str, bot_id: int | None = None
    ) -> Outcome:
        """Keep an important log record (critical error, ban, kill switch) for the dashboard."""
        if level not in ALERT_LEVELS:
            raise ValidationError({"level": f"one of {', '.join(ALERT_LEVELS)}"})
        with self._write() as changes:
            alert_id = self._conn.execute(
                "INSERT INTO alerts (ts_ms, level, service, message, bot_id) VALUES"
                " (?, ?, ?, ?, ?)",
                (self._now_ms(), level, service, message, bot_id),
            ).lastrowid
            row = self._conn.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
            value = _alert_dict(row)
            self._emit("alert", value)
        return Outcome("created", value, tuple(changes))

    def acknowledge_alert(self, alert_id: int) -> Outcome:
        """Mark an alert as seen (the dashboard hides its banner)."""
        with self._write() as changes:
            row = self._conn.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
            if row is None:
                raise ValidationError({"alert_id": f"no alert with id {alert_id!r}"})
            if row["acknowledged"]:
                return Outcome("duplicate", _alert_dict(row))
            self._conn.execute("UPDATE alerts SET acknowledged = 1 WHERE id = ?", (alert_id,))
            row = self._conn.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
            value = _alert_dict(row)
            self._emit("alert", value)
        return Outcome("updated", value, tuple(changes))

    def list_alerts(
        self, *, level: str | None = None, limit: int = 50, before: int | None = None
    ) -> dict[str, Any]:
        with self._read() as conn:
            return self._page(conn, "alerts", {"level": level}, limit, before)

    def _balance_dicts(self, conn) -> list[dict[str, Any]]:
        rows = conn.execute("SELECT * FROM balances ORDER BY asset").fetchall()
        return [dict(row) for row in rows]

    # ----------------------------------------------------------------- paging

    def _page(self, conn, table: str, filters: dict, limit: int, before: int | None) -> dict:
        if not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise ValidationError({"limit": f"an integer from 1 to {MAX_PAGE}"})
        where, args = [], []
        for column, value in filters.items():
            if value is None:
                continue
            if table == "orders" and column == "status" and value == "OPEN":
                where.append(f"status IN ({', '.join('?' * len(OPEN_ORDER_STATUSES))})")
                args.extend(OPEN_ORDER_STATUSES)
            else:
                where.append(f"{column} = ?")
                args.append(value)
        if before is not None:
            where.append("id < ?")
            args.append(before)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = conn.execute(
            f"SELECT * FROM {table} {clause} ORDER BY id DESC LIMIT ?", (*args, limit + 1)
        ).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        convert = _ROW_DICTS.get(table)
        items = self._order_dicts(conn, rows) if table == "orders" else [convert(r) for r in rows]
        return {"items": items, "next_before": rows[-1]["id"] if more else None}


# --------------------------------------------------------------------- row conversions


def _bot_dict(row: sqlite3.Row) -> dict[str, Any]:
    return {
        name: row[name]
        for name in ("id", "name", "strategy", "symbol", "timeframe", "desired_status",
                     "status", "status_reason", "params_version", "created_at_ms",
                     "updated_at_ms")
    }


def _version_dict(row: sqlite3.Row, current: int | None) -> dict[str, Any]:
    result = {
        "bot_id": row["bot_id"],
        "version": row["version"],
        "strategy": row["strategy"],
        "symbol": row["symbol"],
        "timeframe": row["timeframe"],
        "params": json.loads(row["params"]),
        "comment": row["comment"],
        "created_at_ms": row["created_at_ms"],
    }
    if current is not None:
        result["current"] = row["version"] == current
    return result


def _lease_dict(row: sqlite3.Row) -> dict[str, Any]:
    return {
        name: row[name]
        for name in ("bot_id", "owner", "epoch", "claimed_at_ms", "expires_at_ms")
    }


def _order_dict(row: sqlite3.Row, realized: Decimal | None) -> dict[str, Any]:
    result = dict(row)
    executed = Decimal(row["executed_qty"])
    result["avg_price"] = (
        fmt(ratio(Decimal(row["cumulative_quote_qty"]), executed)) if executed else None
    )
    result["realized_pnl"] = fmt(realized) if row["side"] == "SELL" and realized is not None \
        else None
    return result


def _fill_dict(row: sqlite3.Row) -> dict[str, Any]:
    result = dict(row)
    result["is_maker"] = bool(row["is_maker"])
    return result


def _trade_dict(row: sqlite3.Row) -> dict[str, Any]:
    result = dict(row)
    result["duration_s"] = (row["closed_at_ms"] - row["opened_at_ms"]) / 1000
    return result


def _alert_dict(row: sqlite3.Row) -> dict[str, Any]:
    result = dict(row)
    result["acknowledged"] = bool(row["acknowledged"])
    return result


_ROW_DICTS = {"trades": _trade_dict, "fills": _fill_dict, "alerts": _alert_dict}


# --------------------------------------------------------------------- input parsing


def _params_json(params: dict[str, Any]) -> str:
    """Params as JSON; Decimal values (a schema's ``decimal`` type) become decimal strings."""

    def encode(value: Any) -> Any:
        if isinstance(value, Decimal):
            return fmt(value)
        raise TypeError(f"{type(value).__name__} is not JSON")

    return json.dumps(params, sort_keys=True, default=encode)


def _column_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return fmt(value)
    if isinstance(value, bool):
        return int(value)
    return value


def _check_market(strategy: str, symbol: str, timeframe: str) -> None:
    problems = {}
    if not isinstance(strategy, str) or not _STRATEGY.match(strategy):
        problems["strategy"] = "an upper-case strategy name such as SWING or SCALPING"
    if not isinstance(symbol, str) or not _SYMBOL.match(symbol):
        problems["symbol"] = "an upper-case Binance symbol such as BTCUSDT"
    if timeframe not in TIMEFRAMES:
        problems["timeframe"] = f"one of {', '.join(TIMEFRAMES)}"
    if problems:
        raise ValidationError(problems)


def _check_lease_args(owner: str, ttl_s: float) -> None:
    problems = {}
    if not isinstance(owner, str) or not owner:
        problems["owner"] = "a non-empty worker name"
    if not isinstance(ttl_s, (int, float)) or ttl_s <= 0:
        problems["ttl_s"] = "a positive number of seconds"
    if problems:
        raise ValidationError(problems)


def _optional_decimal(event: Mapping[str, Any], name: str) -> Decimal | None:
    value = event.get(name)
    if value is None or value == "":
        return None
    try:
        return to_decimal(value, name)
    except ValueError as exc:
        raise ValidationError({name: str(exc)}) from None


def _optional_bot_id(event: Mapping[str, Any]) -> int | None:
    value = event.get("bot_id")
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValidationError({"bot_id": "an integer bot id"}) from None


def _optional_str(event: Mapping[str, Any], name: str) -> str | None:
    value = event.get(name)
    return None if value is None or value == "" else str(value)


def _parse_order_event(event: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
    client_order_id = _optional_str(event, "client_order_id")
    if client_order_id is None:
        raise ValidationError({"client_order_id": "required"})
    side = _optional_str(event, "side")
    if side is not None and side not in SIDES:
        raise ValidationError({"side": "BUY or SELL"})
    status = _optional_str(event, "status") or "NEW"
    if status not in _STATUS_RANK and status not in FINAL_ORDER_STATUSES:
        raise ValidationError({"status": "a Binance order status such as NEW or FILLED"})
    return {
        "client_order_id": client_order_id,
        "exchange_order_id": _optional_str(event, "exchange_order_id"),
        "bot_id": _optional_bot_id(event),
        "symbol": _optional_str(event, "symbol"),
        "side": side,
        "type": _optional_str(event, "type"),
        "time_in_force": _optional_str(event, "time_in_force"),
        "price": _optional_decimal(event, "price"),
        "stop_price": _optional_decimal(event, "stop_price"),
        "qty": _optional_decimal(event, "qty"),
        "status": status,
        "executed_qty": _optional_decimal(event, "executed_qty") or ZERO,
        "cumulative_quote_qty": _optional_decimal(event, "cumulative_quote_qty") or ZERO,
        "reject_reason": _optional_str(event, "reject_reason"),
        "updated_at_ms": int(event.get("ts_ms") or now_ms),
    }


def _order_advances(row: sqlite3.Row, order: dict[str, Any]) -> bool:
    """True when ``order`` is newer than the stored row and changes something in it."""
    old_executed = Decimal(row["executed_qty"])
    old_rank = _STATUS_RANK.get(row["status"], 3)
    new_rank = _STATUS_RANK.get(order["status"], 3)
    if order["executed_qty"] < old_executed or new_rank < old_rank:
        return False
    if old_rank == 3 and order["status"] != row["status"]:
        return False  # a final status never changes into another final status
    return (
        order["executed_qty"] != old_executed
        or order["status"] != row["status"]
        or order["cumulative_quote_qty"] != Decimal(row["cumulative_quote_qty"])
        or (row["exchange_order_id"] is None and order["exchange_order_id"] is not None)
    )


def _parse_fill(fill: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
    problems = {}
    for name in ("symbol", "trade_id", "side", "price", "qty"):
        if fill.get(name) in (None, ""):
            problems[name] = "required"
    if fill.get("side") not in (None, "", *SIDES):
        problems["side"] = "BUY or SELL"
    if problems:
        raise ValidationError(problems)
    price = _optional_decimal(fill, "price")
    qty = _optional_decimal(fill, "qty")
    if price <= 0 or qty <= 0:
        raise ValidationError({"qty" if qty <= 0 else "price": "must be positive"})
    quote_qty = _optional_decimal(fill, "quote_qty")
    return {
        "symbol": str(fill["symbol"]),
        "trade_id": str(fill["trade_id"]),
        "client_order_id": _optional_str(fill, "client_order_id"),
        "exchange_order_id": _optional_str(fill, "exchange_order_id"),
        "bot_id": _optional_bot_id(fill),
        "side": fill["side"],
        "price": price,
        "qty": qty,
        "quote_qty": price * qty if quote_qty is None else quote_qty,
        "commission": _optional_decimal(fill, "commission") or ZERO,
        "commission_asset": _optional_str(fill, "commission_asset") or "",
        "is_maker": bool(fill.get("is_maker", False)),
        "realized_pnl": None,
        "ts_ms": int(fill.get("ts_ms") or now_ms),
    }


def _exchange_key(ts_ms: Any, trade_id: Any) -> tuple[int, int, int, str]:
    """Sort key of a fill in exchange order: trade time, then the exchange trade id."""
    text = str(trade_id)
    if text.isdigit():
        return (int(ts_ms), 0, int(text), "")
    return (int(ts_ms), 1, 0, text)


def _row_fill(row: sqlite3.Row) -> Fill:
    return Fill(
        row["side"], Decimal(row["price"]), Decimal(row["qty"]), Decimal(row["commission"]),
        row["commission_asset"], row["ts_ms"],
    )


def _parse_balance(balance: Mapping[str, Any]) -> tuple[str, Decimal, Decimal]:
    asset = _optional_str(balance, "asset")
    if asset is None:
        raise ValidationError({"asset": "required"})
    free = _optional_decimal(balance, "free") or ZERO
    locked = _optional_decimal(balance, "locked") or ZERO
    return asset, free, locked
