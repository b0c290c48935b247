"""Reconciliation by REST: what the exchange says wins, every difference is published.

Run on start and after every (re)connect of the user-data stream: intents left pending by a
crash are resolved by client id, open orders and orders we still think open are compared,
trades since the last known trade id per symbol are fetched, and balances are read. Each
difference goes through the :class:`OrderTracker`, so it is published and recorded once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal

from services.execution.client import ExchangeClient
from services.execution.outbox import ExecutionDb
from services.execution.tracking import FillReport, OrderReport, OrderTracker

log = logging.getLogger(__name__)

TRADES_PAGE = 1000


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

    def run(self, symbols: list[str]) -> SyncResult:
        result = SyncResult()
        result.resolved_intents = self.resolve_pending_intents()
        result.corrections += self._open_orders(result)
        result.corrections += self._stale_local_orders()
        for symbol in sorted(set(symbols) | set(self.db.symbols())):
            result.corrections += self._trades(symbol)
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
