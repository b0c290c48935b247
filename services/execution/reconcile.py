"""Reconciliation by REST: what the exchange says wins, every difference is published.

Run on start and after every (re)connect of the user-data stream: intents left pending by a
crash are resolved by client id, open orders and orders we still think open are compared,
trades since the last known trade id per symbol are fetched, and balances are read. Each
difference goes through the :class:`OrderTracker`, so it is published and recorded once.

The high-water mark alone misses a trade below a later one already known (an order answered
-1007 while the stream was down, then another order's trade seen): so every known order whose
executed quantity exceeds the quantity of its recorded fills also has its trades fetched by
``orderId`` (weight 5 each, only for orders that do not match).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from decimal import Decimal

from services.execution.client import ExchangeClient
from services.execution.outbox import ExecutionDb
from services.execution.tracking import FillReport, OrderReport, OrderTracker

log = logging.getLogger(__name__)

TRADES_PAGE = 1000
RECHECK_S = 120.0  # an order whose fills still do not add up is asked again after this
ZERO = Decimal(0)


@dataclass
class SyncResult:
    """What one reconciliation found."""

    corrections: int = 0
    open_orders: int = 0
    resolved_intents: int = 0
    balances: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)


class Reconciler:
    """Brings the local view (and so state) in line with the exchange."""

    def __init__(self, client: ExchangeClient, db: ExecutionDb, tracker: OrderTracker) -> None:
        self.client = client
        self.db = db
        self.tracker = tracker
        self._seen_open: set[str] = set()
        # orders whose trades were asked by id: (executed, recorded) then, and when
        self._checked: dict[str, tuple[Decimal, Decimal, float]] = {}

    def run(self, symbols: list[str]) -> SyncResult:
        result = SyncResult()
        now = time.monotonic()  # what was asked long ago is asked again anyway: forget it
        self._checked = {cid: seen for cid, seen in self._checked.items()
                         if now - seen[2] < RECHECK_S}
        result.resolved_intents = self.resolve_pending_intents()
        result.corrections += self._open_orders(result)
        result.corrections += self._stale_local_orders()
        for symbol in sorted(set(symbols) | set(self.db.symbols())):
            result.corrections += self._trades(symbol)
            result.corrections += self._order_gaps(symbol)
        result.balances = self.balances()
        return result

    def resolve_pending_intents(self) -> int:
        """Intents whose order was maybe sent before a crash or an unknown status."""
        resolved = 0
        for row in self.db.pending_intents():
            order = self.client.get_order(row["symbol"], row["client_order_id"])
            if order is None:
                reply = {"status": "rejected", "intent_id": row["intent_id"],
                         "reason": "the order never reached the exchange"}
                self.db.finish_intent(row["intent_id"], "rejected", reply)
                log.warning("intent %s: order %s never reached the exchange", row["intent_id"],
                            row["client_order_id"])
            else:
                self.tracker.apply_response(order, "E", row["intent_id"])
                reply = {"status": "accepted", "intent_id": row["intent_id"],
                         "client_order_id": row["client_order_id"],
                         "order_status": order.get("status")}
                self.db.finish_intent(row["intent_id"], "placed", reply)
                log.info("intent %s: found order %s (%s) on the exchange", row["intent_id"],
                         row["client_order_id"], order.get("status"))
            resolved += 1
        return resolved

    def _open_orders(self, result: SyncResult) -> int:
        orders = self.client.open_orders()
        result.open_orders = len(orders)
        changed = 0
        for order in orders:
            changed += int(self.tracker.apply_order(OrderReport.from_rest(order)))
        self._seen_open = {o["clientOrderId"] for o in orders}
        return changed

    def _stale_local_orders(self) -> int:
        """Orders we think open that the exchange no longer lists: ask each one."""
        changed = 0
        for row in self.db.open_orders():
            if row["client_order_id"] in self._seen_open:
                continue
            order = self.client.get_order(row["symbol"], row["client_order_id"])
            if order is not None:
                changed += int(self.tracker.apply_order(OrderReport.from_rest(order)))
        return changed

    def _trades(self, symbol: str) -> int:
        changed = 0
        last = self.db.last_trade_id(symbol)
        while True:
            rows = self.client.my_trades(symbol, None if last is None else last + 1,
                                         TRADES_PAGE)
            for row in rows:
                changed += self._trade(row)
                last = max(last or 0, int(row["id"]))
            if len(rows) < TRADES_PAGE:
                return changed

    def _order_gaps(self, symbol: str) -> int:
        """Trades of known orders that are missing below the high-water mark."""
        changed = 0
        for cid, order_id, executed, recorded in self._short_orders(symbol):
            seen = self._checked.get(cid)
            if seen is not None and seen[:2] == (executed, recorded):
                continue  # asked a moment ago and nothing changed: no weight on every run
            before = changed
            rows = self._order_trades(symbol, order_id)
            for row in rows:
                changed += self._trade(row)
            self._claim(symbol, cid, rows)
            if changed > before:
                log.warning("order %s (%s): %d fill(s) missing below the last trade id were"
                            " recorded", cid, symbol, changed - before)
            still = self.db.filled_qty(cid)
            if still < executed:
                log.error("order %s (%s): executed %s at the exchange, fills for only %s",
                          cid, symbol, executed, still)
            self._checked[cid] = (executed, still, time.monotonic())
        return changed

    def _short_orders(self, symbol: str) -> list[tuple[str, int, Decimal, Decimal]]:
        """Known orders of ``symbol`` with more executed than their recorded fills add up to."""
        recorded: dict[str, Decimal] = {}
        for row in self.db.query("SELECT client_order_id, qty FROM fills WHERE symbol = ?"
                                 " AND client_order_id IS NOT NULL", (symbol,)):
            cid = row["client_order_id"]
            recorded[cid] = recorded.get(cid, ZERO) + Decimal(row["qty"])
        short = []
        for row in self.db.query("SELECT client_order_id, exchange_order_id, executed_qty"
                                 " FROM orders WHERE symbol = ? AND exchange_order_id IS NOT"
                                 " NULL ORDER BY created_ms", (symbol,)):
            executed = Decimal(row["executed_qty"] or 0)
            have = recorded.get(row["client_order_id"], ZERO)
            if executed > have:
                short.append((row["client_order_id"], int(row["exchange_order_id"]), executed,
                              have))
        return short

    def _order_trades(self, symbol: str, order_id: int) -> list[dict]:
        rows: list[dict] = []
        params: dict = {"symbol": symbol, "orderId": order_id, "limit": TRADES_PAGE}
        while True:
            page = self.client.call("get_my_trades", critical=True, **params)
            rows.extend(page)
            if len(page) < TRADES_PAGE:
                return rows
            params["fromId"] = max(int(r["id"]) for r in page) + 1

    def _claim(self, symbol: str, cid: str, rows: list[dict]) -> None:
        """Fills of this order recorded without its client id (order unknown then) get it."""
        ids = [int(r["id"]) for r in rows]
        if not ids:
            return
        marks = ", ".join("?" * len(ids))
        with self.db.tx() as conn:
            conn.execute(f"UPDATE fills SET client_order_id = ? WHERE symbol = ? AND trade_id IN"
                         f" ({marks}) AND client_order_id IS NULL", (cid, symbol, *ids))

    def _trade(self, row: dict) -> int:
        fill = FillReport.from_my_trade(row)
        known = self.db.order_by_exchange_id(fill.symbol, fill.exchange_order_id or -1)
        changed = 0
        if known is None and fill.exchange_order_id is not None:
            # an order we never saw: learn its client id first so the fill is attributed
            order = self.client.call("get_order", critical=True, symbol=fill.symbol,
                                     orderId=fill.exchange_order_id)
            changed += int(self.tracker.apply_order(OrderReport.from_rest(order)))
        changed += int(self.tracker.apply_fill(fill))
        return changed

    def balances(self) -> dict[str, tuple[Decimal, Decimal]]:
        account = self.client.account()
        return {b["asset"]: (Decimal(b["free"]), Decimal(b["locked"]))
                for b in account.get("balances", ())}
