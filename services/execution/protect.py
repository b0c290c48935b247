"""Protective orders: a native OCO (take-profit LIMIT_MAKER + STOP_LOSS_LIMIT) after an entry.

A protection is written to the execution database before its OCO is sent, with a generation
number that is part of its client ids; so after any restart :meth:`Protector.restore` can
tell whether the exchange still holds it, and re-place it (next generation) if the position is
still open. A trailing stop moves the stop leg up by cancel-replace as the price rises.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from services.execution.orders import (
    ROLE_LIST,
    ROLE_PROFIT,
    ROLE_STOP,
    OcoSpec,
    OrderPlacer,
    client_order_id,
)
from services.execution.outbox import ExecutionDb
from services.execution.risk import RiskConfig
from shared.bus import Publisher
from shared.errors import ExchangeError, InsufficientFundsError, InvalidOrderError, TemporaryError
from shared.filters import (
    ROUND_DOWN,
    ROUND_UP,
    SymbolFilters,
    can_sell,
    round_price,
    round_qty,
)
from shared.messages import ProtectionChanged

log = logging.getLogger(__name__)

ZERO = Decimal(0)
ACTIVE, PENDING, CLOSED, FAILED = "active", "pending", "closed", "failed"
OCO_RETRY_BACKOFF_S = (0.2, 0.5, 1.0)  # a refused OCO is sent again this many times


def leg_ids(intent_id: str, bot_id: str, gen: int) -> tuple[str, str, str]:
    """Client ids of (list, stop leg, profit leg) for one generation of a protection."""
    return (client_order_id(intent_id, bot_id, ROLE_LIST, gen),
            client_order_id(intent_id, bot_id, ROLE_STOP, gen),
            client_order_id(intent_id, bot_id, ROLE_PROFIT, gen))


class Protector:
    """Places, trails, restores and closes the OCO that protects each bot's entry."""

    def __init__(self, db: ExecutionDb, placer: OrderPlacer,
                 filters_of: Callable[[str], SymbolFilters | None],
                 config: Callable[[], RiskConfig], publisher: Publisher | None,
                 clock_ms: Callable[[], int]) -> None:
        self.db = db
        self.placer = placer
        self.filters_of = filters_of
        self.config = config
        self.publisher = publisher
        self.clock_ms = clock_ms
        self._due: set[str] = set()
        self.on_response: Callable[[dict], None] = lambda response: None
        self.on_alert: Callable[..., None] = lambda bot_id, text, level="ERROR": None
        # the bid of a symbol (raises when the exchange does not answer)
        self.price_of: Callable[[str], Decimal] | None = None
        # sell the position of a protection that cannot be placed because a leg is crossed
        self.on_stopped_out: Callable[[Any, str], None] = lambda row, reason: None
        # what a bot holds on a symbol and has not already sold or put up for sale
        self.position_of: Callable[[str, str], Decimal] = lambda bot_id, symbol: ZERO
        # a protection waits for something (missing fills): ask for a reconciliation soon
        self.on_postponed: Callable[[], None] = lambda: None
        self.wait: Callable[[float], Any] = threading.Event().wait

    # --- hooks from the order tracker ------------------------------------------------------

    def on_order_change(self, report: Any, bot: str, role: str | None) -> None:
        if role == "E" and report.side == "BUY" and report.executed_qty > 0 \
                and report.status in ("FILLED", "CANCELED", "EXPIRED"):
            self._due.add(report.client_order_id)
        elif role in (ROLE_STOP, ROLE_PROFIT) and report.status == "FILLED":
            self._close_by_leg(report.client_order_id)

    def process_due(self) -> None:
        """Protect the entries that filled since the last call (their fills are in by now)."""
        due, self._due = self._due, set()
        for cid in sorted(due):
            try:
                self.protect_entry(cid)
            except TemporaryError as exc:
                log.warning("protection of entry %s postponed: %s", cid, exc)
                self.on_postponed()
            except Exception:
                log.exception("could not protect entry %s; will retry on reconcile", cid)

    # --- placing ---------------------------------------------------------------------------

    def protect_entry(self, entry_cid: str) -> None:
        order = self.db.order(entry_cid)
        if order is None or order["intent_id"] is None:
            return
        if any(p["entry_client_order_id"] == entry_cid for p in self.db.protections()):
            return
        intent = self.db.intent(order["intent_id"])
        if intent is None:
            return
        request = _json(intent["request"])
        stop_loss, take_profit = request.get("stop_loss"), request.get("take_profit")
        if not stop_loss:
            return  # a take-profit alone is a target, not a protection: the strategy exits
        take_profit = take_profit or "0"  # 0: a lone STOP_LOSS_LIMIT instead of an OCO
        qty = self._net_qty(entry_cid, Decimal(order["executed_qty"]), order["symbol"])
        self.db.save_protection(entry_cid, bot_id=order["bot_id"], symbol=order["symbol"],
                                qty=qty, stop_loss=Decimal(stop_loss),
                                take_profit=Decimal(take_profit), gen=0,
                                intent_id=order["intent_id"], status=PENDING)
        self._place(self._row(entry_cid))

    def unguarded_qty(self, bot_id: str, symbol: str, besides: str | None = None) -> Decimal:
        """What the bot holds on ``symbol`` that none of its live protections (other than
        the one of entry ``besides``) will sell: what an exit or a new protection may take."""
        guarded = sum((Decimal(r["qty"]) for r in self.open_rows(bot_id, symbol)
                       if r["entry_client_order_id"] != besides), ZERO)
        return max(self.position_of(bot_id, symbol) - guarded, ZERO)

    def _fit(self, row: Any, filters: SymbolFilters) -> Any | None:
        """``row`` with its quantity cut to what its bot still holds unguarded; None (and
        the protection closed) when that is too little to protect. An entry is often learnt
        late (a lost answer, a restart): by then its bot may have sold it, and a stop for
        coins it no longer holds would sell another bot's."""
        entry = row["entry_client_order_id"]
        if not self._fills_recorded(entry):
            raise TemporaryError(f"the fills of entry {entry} are not all recorded yet: what "
                                 "its bot holds is not known")
        free = round_qty(self.unguarded_qty(row["bot_id"], row["symbol"], besides=entry),
                         filters)
        if free >= Decimal(row["qty"]):
            return row
        if not can_sell(filters, free, Decimal(row["stop_loss"])):
            log.info("protection of %s not placed: bot %s holds only %s %s unguarded",
                     entry, row["bot_id"], free, row["symbol"])
            self._set_status(row, CLOSED)
            return None
        log.info("protection of %s cut to the %s bot %s still holds", entry, free,
                 row["bot_id"])
        self.db.save_protection(entry, qty=free)
        return self._row(entry)

    def _net_qty(self, entry_cid: str, executed: Decimal, symbol: str) -> Decimal:
        filters = self.filters_of(symbol)
        fills = [f for f in self.db.query("SELECT * FROM fills WHERE client_order_id = ?",
                                          (entry_cid,))]
        filled = sum((Decimal(f["qty"]) for f in fills), ZERO)
        base = filters.base_asset if filters else ""
        fee = sum((Decimal(f["commission"]) for f in fills if f["commission_asset"] == base),
                  ZERO)
        if filled < executed:  # fills still missing: assume the configured fee rate
            net = executed * (1 - self.config().fee_rate)
        else:
            net = executed - fee
        return round_qty(net, filters) if filters else net

    def _fills_recorded(self, entry_cid: str) -> bool:
        order = self.db.order(entry_cid)
        if order is None:
            return False
        return self.db.filled_qty(entry_cid) >= Decimal(order["executed_qty"])

    def _place(self, row: Any) -> None:
        """Send the protection of ``row``; a refused OCO (-2010: the price moved past a leg)
        is re-checked against the market: a crossed leg exits at market (what the leg would
        have done), otherwise it is sent again a few times; still refused: critical alert."""
        filters = self.filters_of(row["symbol"])
        if filters is None:
            raise TemporaryError(f"no filters for {row['symbol']} yet")
        entry = row["entry_client_order_id"]
        row = self._fit(row, filters)
        if row is None:
            return
        refusal: ExchangeError | None = None
        for attempt in range(len(OCO_RETRY_BACKOFF_S) + 1):
            if refusal is not None:
                crossed = self._crossed(row)
                if crossed:
                    self._stop_out(row, f"{crossed}; the protective OCO was refused: {refusal}")
                    return
                self.wait(OCO_RETRY_BACKOFF_S[attempt - 1])
                self.db.save_protection(entry, gen=row["gen"] + 1)  # a fresh client id
                row = self._row(entry)
            spec = self._spec(row, filters, Decimal(row["stop_loss"]))
            try:
                if spec.take_profit > 0:
                    response = self.placer.place_oco(spec)
                else:
                    response = {"orderReports": [self.placer.place(spec.stop_leg())]}
            except TemporaryError:
                raise
            except InsufficientFundsError as exc:
                refusal = exc
                break  # sending again does not help
            except InvalidOrderError as exc:
                refusal = exc
                log.warning("protective OCO %s refused (attempt %d): %s",
                            spec.list_client_order_id, attempt + 1, exc)
                continue
            except ExchangeError as exc:
                refusal = exc
                break
            self.db.save_protection(entry, status=ACTIVE)
            for report in response.get("orderReports") or ():
                self.on_response(report)
            log.info("protection %s placed: stop %s, take profit %s, qty %s",
                     spec.list_client_order_id, spec.stop_price, spec.take_profit, spec.quantity)
            self._publish(self._row(entry))
            return
        text = (f"protective OCO for {entry} refused: {refusal}; "
                f"the position of bot {row['bot_id']} is NOT protected")
        log.critical(text)
        self.on_alert(row["bot_id"], text, "CRITICAL")
        self.db.save_protection(entry, status=FAILED)
        self._publish(self._row(entry))

    def _crossed(self, row: Any) -> str | None:
        """Why a leg of ``row`` is already crossed by the market (None: it is not, or the
        price cannot be read)."""
        if self.price_of is None:
            return None
        try:
            bid = self.price_of(row["symbol"])
        except (ExchangeError, TemporaryError) as exc:
            log.warning("no price for %s to check a refused OCO: %s", row["symbol"], exc)
            return None
        stop, target = Decimal(row["stop_loss"]), Decimal(row["take_profit"])
        if bid <= stop:
            return f"the price {bid} is already at or below the stop loss {stop}"
        if target > 0 and bid >= target:
            return f"the price {bid} is already at or above the take profit {target}"
        return None

    def _stop_out(self, row: Any, reason: str) -> None:
        """Do what the crossed leg would have done: sell the position at market."""
        text = f"bot {row['bot_id']} {row['symbol']} exits at market: {reason}"
        log.warning(text)
        self._set_status(row, CLOSED)
        self.on_alert(row["bot_id"], text, "WARNING")
        self.on_stopped_out(self._row(row["entry_client_order_id"]), reason)

    def _spec(self, row: Any, filters: SymbolFilters, stop: Decimal) -> OcoSpec:
        list_id, stop_id, profit_id = leg_ids(row["intent_id"], row["bot_id"], row["gen"])
        slip = self.config().stop_limit_slippage_pct / 100
        return OcoSpec(
            symbol=row["symbol"], side="SELL", quantity=Decimal(row["qty"]),
            take_profit=round_price(Decimal(row["take_profit"]), filters, ROUND_UP),
            stop_price=round_price(stop, filters, ROUND_DOWN),
            stop_limit_price=round_price(stop * (1 - slip), filters, ROUND_DOWN),
            list_client_order_id=list_id, stop_client_order_id=stop_id,
            profit_client_order_id=profit_id)

    # --- trailing --------------------------------------------------------------------------

    def trail(self, symbol: str, price: Decimal) -> int:
        """Move the stops of ``symbol``'s active protections up behind ``price``."""
        pct = self.config().trailing_stop_pct
        filters = self.filters_of(symbol)
        if pct <= 0 or filters is None:
            return 0
        moved = 0
        for row in self.db.protections(ACTIVE):
            if row["symbol"] != symbol:
                continue
            high = max(price, Decimal(row["high_price"] or 0))
            self.db.save_protection(row["entry_client_order_id"], high_price=high)
            new_stop = round_price(high * (1 - pct / 100), filters, ROUND_DOWN)
            if new_stop > Decimal(row["stop_loss"]) and new_stop < price:
                moved += self._replace(row, new_stop)
        return moved

    def _replace(self, row: Any, new_stop: Decimal) -> int:
        list_id, stop_id, _ = leg_ids(row["intent_id"], row["bot_id"], row["gen"])
        entry = row["entry_client_order_id"]
        if self.placer.cancel(row["symbol"], stop_id) is None:
            leg = self.placer.find(row["symbol"], stop_id)
            if leg is None or leg.get("status") != "CANCELED":
                return 0  # a leg filled (the tracker closes it) or the exchange is unsure
        self.db.save_protection(entry, gen=row["gen"] + 1, stop_loss=new_stop, status=PENDING)
        self._place(self._row(entry))
        log.info("trailing stop of %s moved to %s", entry, new_stop)
        return 1

    # --- restart, close --------------------------------------------------------------------

    def restore(self) -> int:
        """Make sure each open protection exists on the exchange; re-place what is missing."""
        replaced = 0
        for row in self.db.protections():
            if row["status"] not in (ACTIVE, PENDING):
                continue
            try:
                replaced += self._restore(row)
            except TemporaryError as exc:  # the others are restored all the same
                log.warning("protection of entry %s not restored yet: %s",
                            row["entry_client_order_id"], exc)
                self.on_postponed()
        return replaced

    def _restore(self, row: Any) -> int:
        """One protection: leave it, close it, or place it again (a fresh generation)."""
        _, stop_id, profit_id = leg_ids(row["intent_id"], row["bot_id"], row["gen"])
        legs = [self.placer.client.get_order(row["symbol"], cid)
                for cid in (stop_id, profit_id)]
        statuses = {leg.get("status") for leg in legs if leg is not None}
        if "FILLED" in statuses:
            self._set_status(row, CLOSED)
        elif statuses & {"NEW", "PARTIALLY_FILLED"}:
            if row["status"] != ACTIVE:
                self._set_status(row, ACTIVE)
        elif self.position_of(row["bot_id"], row["symbol"]) <= 0 \
                and self._fills_recorded(row["entry_client_order_id"]):
            self._set_status(row, CLOSED)
        else:
            if statuses:  # the old generation was cancelled: use a fresh client id
                self.db.save_protection(row["entry_client_order_id"], gen=row["gen"] + 1)
            self._place(self._row(row["entry_client_order_id"]))
            return 1
        return 0

    def open_rows(self, bot_id: str, symbol: str | None = None) -> list[Any]:
        """The bot's protections (on ``symbol``) that may still be live at the exchange."""
        return [r for r in self.db.protections() if r["bot_id"] == bot_id
                and r["status"] in (ACTIVE, PENDING) and symbol in (None, r["symbol"])]

    def mark_closed(self, row: Any) -> None:
        """Its cancel was confirmed by the exchange: stop tracking (and restoring) it."""
        self._set_status(row, CLOSED)

    def reopen(self, rows: list[Any]) -> None:
        """Protections released for an exit that did not happen: place them again (next
        generation) on the next reconciliation."""
        for row in rows:
            self.db.save_protection(row["entry_client_order_id"], status=PENDING,
                                    gen=row["gen"] + 1)

    def release_leg(self, leg_cid: str) -> None:
        """A leg is being cancelled on purpose: stop restoring its protection."""
        self._close_by_leg(leg_cid)

    def _close_by_leg(self, leg_cid: str) -> None:
        for row in self.db.protections():
            if row["status"] not in (ACTIVE, PENDING):
                continue
            if leg_cid in leg_ids(row["intent_id"], row["bot_id"], row["gen"]):
                self._set_status(row, CLOSED)

    def _set_status(self, row: Any, status: str) -> None:
        self.db.save_protection(row["entry_client_order_id"], status=status)
        self._publish(self._row(row["entry_client_order_id"]))

    def _row(self, entry_cid: str) -> Any:
        return next(r for r in self.db.protections() if r["entry_client_order_id"] == entry_cid)

    def _publish(self, row: Any) -> None:
        if self.publisher is None:
            return
        list_id, _, _ = leg_ids(row["intent_id"], row["bot_id"], row["gen"])
        self.publisher.publish(f"exec.protect.{row['bot_id']}", ProtectionChanged(
            bot_id=row["bot_id"], symbol=row["symbol"],
            entry_client_order_id=row["entry_client_order_id"], list_client_order_id=list_id,
            status=row["status"], quantity=Decimal(row["qty"]),
            stop_loss=Decimal(row["stop_loss"]), take_profit=Decimal(row["take_profit"]),
            ts=self.clock_ms() / 1000))


def _json(text: str) -> dict[str, Any]:
    return json.loads(text)
