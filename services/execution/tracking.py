"""One place where order changes and fills become events: published, recorded, de-duplicated.

The user-data stream, order responses and reconciliation all report the same orders and
trades; :class:`OrderTracker` turns each report into ``OrderUpdated``/``OrderFilled`` on
``exec.order.<bot>`` plus ``RecordOrderEvent``/``RecordFill`` in the durable outbox, but only
when it brings something new (a later status, more filled, an unseen trade id).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from services.execution.orders import parse_client_order_id
from services.execution.outbox import ExecutionDb
from shared import topics
from shared.bus import Publisher
from shared.messages import OrderFilled, OrderUpdated, RecordFill, RecordOrderEvent

log = logging.getLogger(__name__)

EXTERNAL_BOT = "external"  # orders execution did not place (manual trades on the account)
_RANK = {"PENDING_NEW": 0, "NEW": 1, "PARTIALLY_FILLED": 2, "PENDING_CANCEL": 2}
ZERO = Decimal(0)


def _d(value: Any) -> Decimal:
    return Decimal(str(value)) if value not in (None, "") else ZERO


def state_bot_id(bot_id: str) -> int | None:
    """The state service's integer bot id, or None for orders of no known bot."""
    return int(bot_id) if str(bot_id).isdigit() else None


@dataclass(frozen=True)
class OrderReport:
    """An order's state as any source reports it (stream, response, query)."""

    client_order_id: str
    exchange_order_id: int | None
    symbol: str
    side: str
    order_type: str
    status: str
    price: Decimal
    stop_price: Decimal
    quantity: Decimal
    executed_qty: Decimal
    cumulative_quote: Decimal
    time_in_force: str
    ts_ms: int
    reject_reason: str = ""

    @classmethod
    def from_rest(cls, order: dict[str, Any]) -> OrderReport:
        """From an order object or a place/cancel response (the order's id, not the cancel's)."""
        return cls(
            client_order_id=order.get("origClientOrderId") or order["clientOrderId"],
            exchange_order_id=order.get("orderId"), symbol=order["symbol"],
            side=order.get("side", ""), order_type=order.get("type", ""),
            status=order.get("status", "NEW"), price=_d(order.get("price")),
            stop_price=_d(order.get("stopPrice")), quantity=_d(order.get("origQty")),
            executed_qty=_d(order.get("executedQty")),
            cumulative_quote=_d(order.get("cummulativeQuoteQty")),
            time_in_force=order.get("timeInForce", ""),
            ts_ms=int(order.get("updateTime") or order.get("transactTime")
                      or order.get("time") or 0))

    @classmethod
    def from_stream(cls, ev: dict[str, Any]) -> OrderReport:
        """From an ``executionReport`` (cancel: ``C`` is the order's id, ``c`` the cancel's)."""
        return cls(
            client_order_id=ev.get("C") or ev["c"], exchange_order_id=ev.get("i"),
            symbol=ev["s"], side=ev["S"], order_type=ev["o"], status=ev["X"],
            price=_d(ev.get("p")), stop_price=_d(ev.get("P")), quantity=_d(ev.get("q")),
            executed_qty=_d(ev.get("z")), cumulative_quote=_d(ev.get("Z")),
            time_in_force=ev.get("f", ""), ts_ms=int(ev.get("E") or 0),
            reject_reason="" if ev.get("r") in (None, "NONE") else str(ev.get("r")))


@dataclass(frozen=True)
class FillReport:
    """One trade of one order."""

    symbol: str
    trade_id: int
    exchange_order_id: int | None
    client_order_id: str | None
    side: str
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    is_maker: bool
    ts_ms: int

    @classmethod
    def from_stream(cls, ev: dict[str, Any]) -> FillReport:
        return cls(ev["s"], int(ev["t"]), ev.get("i"), ev.get("c"), ev["S"], _d(ev["L"]),
                   _d(ev["l"]), _d(ev.get("Y")) or _d(ev["L"]) * _d(ev["l"]), _d(ev.get("n")),
                   ev.get("N") or "", bool(ev.get("m")), int(ev.get("T") or 0))

    @classmethod
    def from_my_trade(cls, row: dict[str, Any]) -> FillReport:
        return cls(row["symbol"], int(row["id"]), row.get("orderId"), None,
                   "BUY" if row.get("isBuyer") else "SELL", _d(row["price"]), _d(row["qty"]),
                   _d(row.get("quoteQty")), _d(row.get("commission")),
                   row.get("commissionAsset") or "", bool(row.get("isMaker")),
                   int(row.get("time") or 0))

    @classmethod
    def from_response_fill(cls, order: dict[str, Any], fill: dict[str, Any]) -> FillReport:
        price, qty = _d(fill["price"]), _d(fill["qty"])
        return cls(order["symbol"], int(fill["tradeId"]), order.get("orderId"),
                   order.get("clientOrderId"), order["side"], price, qty, price * qty,
                   _d(fill.get("commission")), fill.get("commissionAsset") or "", False,
                   int(order.get("transactTime") or 0))


OrderHook = Callable[[OrderReport, str, str | None], None]


class OrderTracker:
    """Applies reports to the local order table; publishes and records what is new."""

    def __init__(self, db: ExecutionDb, publisher: Publisher | None,
                 wake_outbox: Callable[[], None] = lambda: None) -> None:
        self.db = db
        self.publisher = publisher
        self.wake_outbox = wake_outbox
        self.on_order_change: list[OrderHook] = []
        self.on_fill: list[Callable[[FillReport, str], None]] = []

    def bot_of(self, cid: str | None) -> str:
        if cid:
            row = self.db.order(cid)
            if row is not None:
                return row["bot_id"]
            parsed = parse_client_order_id(cid)
            if parsed is not None:
                return parsed.bot_id
        return EXTERNAL_BOT

    def apply_order(self, report: OrderReport, role: str | None = None,
                    intent_id: str | None = None) -> bool:
        """Record ``report`` if it is news; True when something changed."""
        row = self.db.order(report.client_order_id)
        if row is not None and not _advances(row, report):
            return False
        bot = row["bot_id"] if row is not None else self.bot_of(report.client_order_id)
        if role is None:
            parsed = parse_client_order_id(report.client_order_id)
            role = row["role"] if row is not None else (parsed.role if parsed else "X")
        self.db.upsert_order(report.client_order_id, bot_id=bot, symbol=report.symbol,
                             side=report.side, type=report.order_type, role=role,
                             intent_id=intent_id, status=report.status,
                             executed_qty=str(report.executed_qty),
                             orig_qty=str(report.quantity) if report.quantity else None,
                             exchange_order_id=report.exchange_order_id)
        self.db.enqueue(RecordOrderEvent(
            client_order_id=report.client_order_id, status=report.status,
            bot_id=state_bot_id(bot), symbol=report.symbol, side=report.side,
            order_type=report.order_type, time_in_force=report.time_in_force,
            exchange_order_id=report.exchange_order_id, price=report.price,
            stop_price=report.stop_price or None, qty=report.quantity,
            executed_qty=report.executed_qty, cumulative_quote_qty=report.cumulative_quote,
            reject_reason=report.reject_reason, ts_ms=report.ts_ms))
        self.wake_outbox()
        self._publish(bot, OrderUpdated(
            bot_id=bot, client_order_id=report.client_order_id,
            exchange_order_id=report.exchange_order_id or 0, symbol=report.symbol,
            side=report.side, order_type=report.order_type, status=report.status,
            price=report.price, quantity=report.quantity, executed_qty=report.executed_qty,
            cumulative_quote=report.cumulative_quote, ts_ms=report.ts_ms))
        for hook in self.on_order_change:
            self._safe(hook, report, bot, role)
        return True

    def apply_fill(self, fill: FillReport) -> bool:
        """Record one trade once; True when it was new."""
        cid = fill.client_order_id
        if cid is None and fill.exchange_order_id is not None:
            row = self.db.order_by_exchange_id(fill.symbol, fill.exchange_order_id)
            cid = row["client_order_id"] if row is not None else None
        bot = self.bot_of(cid)
        if not self.db.add_fill(fill.symbol, fill.trade_id, bot, cid, fill.side, fill.qty,
                                fill.commission, fill.commission_asset, fill.ts_ms):
            return False
        self.db.enqueue(RecordFill(
            symbol=fill.symbol, trade_id=fill.trade_id, side=fill.side, price=fill.price,
            qty=fill.qty, commission=fill.commission, commission_asset=fill.commission_asset,
            quote_qty=fill.quote_qty, client_order_id=cid or "",
            exchange_order_id=fill.exchange_order_id, bot_id=state_bot_id(bot),
            is_maker=fill.is_maker, ts_ms=fill.ts_ms))
        self.wake_outbox()
        self._publish(bot, OrderFilled(
            bot_id=bot, client_order_id=cid or "", exchange_order_id=fill.exchange_order_id or 0,
            trade_id=fill.trade_id, symbol=fill.symbol, side=fill.side, price=fill.price,
            quantity=fill.qty, quote_qty=fill.quote_qty, commission=fill.commission,
            commission_asset=fill.commission_asset, is_maker=fill.is_maker, ts_ms=fill.ts_ms))
        for hook in self.on_fill:
            self._safe(hook, fill, bot)
        return True

    def apply_response(self, order: dict[str, Any], role: str | None = None,
                       intent_id: str | None = None) -> int:
        """A place/query response: the order and any ``fills`` it carries."""
        changed = int(self.apply_order(OrderReport.from_rest(order), role, intent_id))
        for fill in order.get("fills") or ():
            changed += int(self.apply_fill(FillReport.from_response_fill(order, fill)))
        return changed

    def _publish(self, bot: str, msg: Any) -> None:
        if self.publisher is not None:
            self.publisher.publish(topics.exec_order(bot), msg)

    @staticmethod
    def _safe(hook: Callable, *args: Any) -> None:
        try:
            hook(*args)
        except Exception:
            log.exception("order hook %s failed", getattr(hook, "__name__", hook))


def _advances(row: Any, report: OrderReport) -> bool:
    old_rank = _RANK.get(row["status"], 3)
    new_rank = _RANK.get(report.status, 3)
    old_exec = Decimal(row["executed_qty"])
    if report.executed_qty < old_exec or new_rank < old_rank:
        return False
    if old_rank == 3 and row["status"] != report.status:
        return False
    return (report.status != row["status"] or report.executed_qty != old_exec
            or (row["exchange_order_id"] is None and report.exchange_order_id is not None))
