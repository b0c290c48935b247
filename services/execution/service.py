"""Execution service: the only holder of the API secret; risk, orders, user data, protection.

Requests on the ``execution`` endpoint (each answered with a ``Reply``):

- ``SubmitIntent``: lease epoch checked with state, sized/rounded/checked by the risk
  module, placed once under a client id derived from the intent id. A retried intent id gets
  the first answer again.
- ``CancelOrder``, ``CloseBotPosition``, ``SetKillSwitch``, ``GetRiskConfig``,
  ``SetRiskConfig``, ``GetExecutionStatus``, ``Ping``.

Everything that changes happens on the service loop's thread; the user-data stream and the
outbox sender run on their own threads and only hand over events / drain the outbox. The
process never exits because the exchange or state is away: it retries with backoff.
"""

from __future__ import annotations

import json
import logging
import queue
from dataclasses import replace
from decimal import Decimal
from typing import Any

from services.execution.client import ExchangeClient, WeightBudget
from services.execution.orders import (
    ROLE_CLOSE,
    ROLE_ENTRY,
    ROLE_PROFIT,
    ROLE_STOP,
    OrderPlacer,
    OrderSpec,
    client_order_id,
    parse_client_order_id,
)
from services.execution.outbox import OPEN_STATUSES, ExecutionDb, OutboxSender
from services.execution.protect import Protector, leg_ids
from services.execution.reconcile import Reconciler
from services.execution.risk import BalanceRejected, Exposure, RiskConfig, RiskEngine
from services.execution.tracking import FillReport, OrderReport, OrderTracker, state_bot_id
from services.execution.userstream import PROBE_EVERY_S, UserStream
from shared import messages as m
from shared.bus import RequestClient
from shared.errors import (
    ExchangeError,
    InsufficientFundsError,
    InvalidOrderError,
    IpBannedError,
    RateLimitError,
    RequestTimeout,
    RiskRejected,
    TemporaryError,
    TradingBotError,
    UnknownStatusError,
    ValidationError,
)
from shared.filters import SymbolFilters, parse_exchange_info, round_qty
from shared.service import DEGRADED, RUNNING, ReplyService

log = logging.getLogger(__name__)

ZERO = Decimal(0)
TOPIC_PAUSE, TOPIC_BUDGET, TOPIC_SYNC, TOPIC_KILL = (
    "exec.pause", "exec.budget", "exec.sync", "exec.killswitch")
RECONCILE_BACKOFF_S = (0.5, 1, 2, 4, 8, 15)
PERIODIC_SYNC_S = 300.0  # a stream can go quiet without an error: compare by REST anyway
TRAIL_EVERY_S = 2.0
LIMIT_CHECK_EVERY_S = 1.0
MAX_EVENTS_PER_STEP = 500
MAX_REPRICES = 3
REQUESTS_PER_STEP = 8
PROTECTION_RETRY_S = 3.0  # a protection waiting for its entry's fills: reconcile again
# refusals a resend of the same intent would get again: kept, so a resend is answered at once
FINAL_REJECTIONS = frozenset({"risk_rejected", "invalid", "invalid_order", "stale_lease",
                              "expired"})
PROTECTIVE_ROLES = (ROLE_STOP, ROLE_PROFIT)


class Rejected(TradingBotError):
    """An intent or command refused before or by the exchange; ``code`` for machines."""

    def __init__(self, code: str, reason: str) -> None:
        self.code = code
        super().__init__(reason)


def _rejection(code: str, reason: str, **extra: Any) -> m.Reply:
    return m.Reply(ok=False, error_code=code, error_message=reason,
                   result={"status": "rejected", "reason": reason, **extra})


class ExecutionService(ReplyService):
    """Risk checks, safe placement, user-data stream, reconciliation and protective OCOs."""

    name = "execution"
    endpoint_name = "execution"
    stream_probe_s = PROBE_EVERY_S

    # --- lifecycle -----------------------------------------------------------------------

    def on_start(self) -> None:
        super().on_start()
        cfg = self.config
        self.db = ExecutionDb(cfg.data_dir)
        self.risk = RiskEngine(self._saved_risk_config())
        self.budget = WeightBudget(self.clock)
        self.budget.on_change = self._on_pause
        key, secret, rest_url, ws_url, testnet = self._venue()
        self.exchange = ExchangeClient(key, secret, rest_url, testnet, self.clock, self.budget,
                                       wait=self._stop_event.wait)
        self.placer = OrderPlacer(self.exchange, wait=self._stop_event.wait)
        self.outbox = OutboxSender(self.db, self.ctx, cfg.endpoints.state)
        self.tracker = OrderTracker(self.db, self.publisher, self.outbox.wake)
        self.protector = Protector(self.db, self.placer, lambda s: self.filters.get(s),
                                   lambda: self.risk.config,
                                   self.publisher, self.clock.time_ms)
        self.tracker.on_order_change.append(self.protector.on_order_change)
        self.protector.on_response = self.tracker.apply_response
        self.protector.on_alert = self._alert
        self.protector.price_of = lambda symbol: Decimal(
            self.exchange.book_ticker(symbol)["bidPrice"])
        self.protector.on_stopped_out = self._stop_out
        self.protector.position_of = self.position_qty
        self.protector.on_postponed = lambda: setattr(self, "_protection_waits", True)
        self._protection_waits = False
        self.protector.wait = self._stop_event.wait
        self.reconciler = Reconciler(self.exchange, self.db, self.tracker)
        self.state_client = RequestClient(self.ctx, cfg.endpoints.state, timeout_ms=500,
                                          retries=2)
        self.events: queue.Queue[dict | str] = queue.Queue()
        self.stream = UserStream(key, secret, self.events.put,
                                 lambda: self.events.put("connected"), rest_url, ws_url,
                                 testnet, self.stream_probe_s)
        self.balances: dict[str, tuple[Decimal, Decimal]] = {}
        self.last_sync_ts = 0.0
        self._last_sync_mono = self.clock.monotonic()
        self._sync_needed = "start"
        self._sync_failures = 0
        self._next_sync = 0.0
        self._next_trail = 0.0
        self._next_limit_check = 0.0
        self._daily_pnl: tuple[float, Decimal] = (0.0, ZERO)
        if cfg.log_level != "DEBUG":
            # python-binance logs every failed reconnect as ERROR; the stream's own warning
            # says the same once, and an error frame still reaches it
            logging.getLogger("binance.ws").setLevel(logging.CRITICAL)
        self.outbox.start()
        self.stream.start()

    def _saved_risk_config(self) -> RiskConfig:
        try:
            return RiskConfig.from_dict(self.db.get("risk_config", {}))
        except ValidationError as exc:
            log.error("saved risk settings are invalid (%s); using the defaults", exc)
            return RiskConfig()

    @property
    def filters(self) -> dict[str, SymbolFilters]:
        if not hasattr(self, "_filters"):
            self._filters: dict[str, SymbolFilters] = {}
        return self._filters

    def _venue(self) -> tuple[str, str, str | None, str | None, bool]:
        cfg = self.config
        if cfg.mode in ("sim", "paper"):
            ws = cfg.sim_url.replace("http://", "ws://", 1)
            return (cfg.sim_api_key, cfg.sim_api_secret, f"{cfg.sim_url}/api",
                    f"{ws}/ws-api/v3", False)
        return cfg.api_key, cfg.api_secret or "", None, None, cfg.mode == "testnet"

    def on_stop(self) -> None:
        for name in ("stream", "outbox"):
            part = getattr(self, name, None)
            if part is not None:
                part.stop()
        if getattr(self, "exchange", None) is not None:
            self.exchange.close()
        if getattr(self, "state_client", None) is not None:
            self.state_client.close()
        super().on_stop()
        if getattr(self, "db", None) is not None:
            self.db.close()

    def heartbeat_detail(self) -> dict:
        detail = dict(self.status_detail)
        if not hasattr(self, "db") or self.db.closed:
            return detail
        budget = self.budget.snapshot()
        detail.update(
            last_sync_ts=self.last_sync_ts, stream_connected=self.stream.connected,
            stream_connects=self.stream.connects, outbox=self.db.outbox_size(),
            state_reachable=self.outbox.state_reachable, kill_switch=self.risk.config.kill_switch,
            halted=self.budget.halted, paused_s=round(self.budget.pause_left_s(), 1),
            used_weight_1m=budget.used_weight_1m, order_count_10s=budget.order_count_10s)
        if hasattr(self, "publisher") and self.publisher is not None:
            self.publisher.publish(TOPIC_BUDGET, m.RateBudget(
                budget.used_weight_1m, budget.weight_limit_1m, budget.order_count_10s,
                budget.order_count_1d, budget.paused_until, budget.halted_until,
                self.clock.time()))
        return detail

    # --- loop ----------------------------------------------------------------------------

    def step(self, timeout_s: float) -> None:
        # a few requests at a time: each may take several REST calls, and reconciliation,
        # stream events and protections must not wait behind a steady flow of intents
        self.server.serve(int(timeout_s * 1000), limit=REQUESTS_PER_STEP)
        self._drain_events()
        now = self.clock.monotonic()
        if not self._sync_needed and now - self._last_sync_mono >= PERIODIC_SYNC_S:
            self.request_sync("periodic")
        if self._sync_needed and now >= self._next_sync:
            self._sync()
        self.protector.process_due()
        if now >= self._next_trail and self.risk.config.trailing_stop_pct > 0:
            self._next_trail = now + TRAIL_EVERY_S
            self._guard(self._trail)
        if now >= self._next_limit_check and self.risk.config.limit_timeout_s > 0:
            self._next_limit_check = now + LIMIT_CHECK_EVERY_S
            self._guard(self._expire_limits)
        if self._protection_waits:
            self._protection_waits = False
            self.request_sync("protection waiting for fills", delay_s=PROTECTION_RETRY_S)

    def _guard(self, fn: Any) -> None:
        try:
            fn()
        except (ExchangeError, TemporaryError) as exc:
            log.warning("%s postponed: %s", fn.__name__, exc)

    def _drain_events(self) -> None:
        for _ in range(MAX_EVENTS_PER_STEP):
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return
            if event == "connected":
                self.request_sync("stream connected" if self.last_sync_ts else "start")
                continue
            try:
                self._on_user_event(event)
            except Exception:
                log.exception("user-data event failed: %s", str(event)[:200])

    def _on_user_event(self, event: dict) -> None:
        kind = event.get("e")
        if kind == "executionReport":
            if event.get("x") == "TRADE":
                self.tracker.apply_fill(FillReport.from_stream(event))
            self.tracker.apply_order(OrderReport.from_stream(event))
        elif kind == "outboundAccountPosition":
            for bal in event.get("B", ()):
                self.balances[bal["a"]] = (Decimal(bal["f"]), Decimal(bal["l"]))
            self.db.enqueue(m.RecordBalances(
                free={b["a"]: Decimal(b["f"]) for b in event.get("B", ())},
                locked={b["a"]: Decimal(b["l"]) for b in event.get("B", ())},
                ts_ms=int(event.get("E") or 0)))
            self.outbox.wake()

    # --- reconciliation ------------------------------------------------------------------

    def _sync(self) -> None:
        trigger = self._sync_needed
        try:
            self._ensure_filters()
            result = self.reconciler.run(self._symbols())
            self.balances = result.balances
            self.db.enqueue(m.RecordBalances(
                free={a: f for a, (f, _) in result.balances.items()},
                locked={a: lk for a, (_, lk) in result.balances.items()},
                ts_ms=self.clock.time_ms()))
            self.outbox.wake()
            self.protector.restore()
        except (ExchangeError, TemporaryError, OSError) as exc:
            delay = RECONCILE_BACKOFF_S[min(self._sync_failures, len(RECONCILE_BACKOFF_S) - 1)]
            self._sync_failures += 1
            self._next_sync = self.clock.monotonic() + delay
            self.state = DEGRADED
            self.status_detail["sync_error"] = str(exc)[:200]
            log.warning("reconciliation (%s) failed: %s; retrying in %s s", trigger, exc, delay)
            return
        self._sync_needed = ""
        self._sync_failures = 0
        self.last_sync_ts = self.clock.time()
        self._last_sync_mono = self.clock.monotonic()
        self.status_detail.pop("sync_error", None)
        self.state = RUNNING
        log.info("reconciled (%s): %d corrections, %d open orders", trigger,
                 result.corrections, result.open_orders)
        self.publisher.publish(TOPIC_SYNC, m.AccountReconciled(
            ts=self.last_sync_ts, trigger=trigger, corrections=result.corrections,
            open_orders=result.open_orders,
            balances={a: f + lk for a, (f, lk) in result.balances.items() if f + lk}))

    def _ensure_filters(self) -> None:
        if self.filters:
            return
        info = self.exchange.exchange_info()
        self._filters = parse_exchange_info(info)
        for limit in info.get("rateLimits", ()):
            if limit.get("rateLimitType") == "REQUEST_WEIGHT" and limit.get("interval") == \
                    "MINUTE":
                self.budget.weight_limit = int(limit["limit"]) * max(
                    1, int(limit.get("intervalNum", 1)))

    def _symbols(self) -> list[str]:
        return sorted(set(self.db.symbols()) | ({"BTCUSDT"} & set(self.filters)))

    def request_sync(self, trigger: str, delay_s: float = 0.0) -> None:
        due = self.clock.monotonic() + delay_s
        if self._sync_needed and self._next_sync <= due:
            return  # one is due sooner already
        self._sync_needed = trigger
        self._next_sync = due

    # --- requests ------------------------------------------------------------------------

    def handle(self, request: m.Message) -> Any:
        handlers = {
            m.SubmitIntent: self._submit, m.CancelOrder: self._cancel,
            m.CloseBotPosition: self._close, m.SetKillSwitch: self._kill_switch,
            m.GetRiskConfig: lambda r: self.risk.config.to_dict(),
            m.SetRiskConfig: self._set_risk, m.GetExecutionStatus: lambda r: self.status(),
        }
        handler = handlers.get(type(request))
        if handler is None:
            return super().handle(request)
        try:
            return handler(request)
        except Rejected as exc:
            return _rejection(exc.code, str(exc))

    def status(self) -> dict[str, Any]:
        budget = self.budget.snapshot()
        return {
            "kill_switch": self.risk.config.kill_switch, "halted": self.budget.halted,
            "paused_s": round(self.budget.pause_left_s(), 3), "last_sync_ts": self.last_sync_ts,
            "paused_until_ts": budget.paused_until, "halted_until_ts": budget.halted_until,
            "stream_connected": self.stream.connected, "outbox": self.db.outbox_size(),
            "dead_letters": self.db.dead_count(), "used_weight_1m": budget.used_weight_1m,
            "weight_limit_1m": budget.weight_limit_1m,
            "order_count_10s": budget.order_count_10s, "symbols": sorted(self.filters),
            "mode": self.config.mode,
        }

    def _set_risk(self, request: m.SetRiskConfig) -> dict[str, Any]:
        self.risk.config = self.risk.config.updated(dict(request.changes))
        self.db.put("risk_config", self.risk.config.to_dict())
        log.info("risk settings changed: %s", sorted(request.changes))
        return self.risk.config.to_dict()

    # --- intents -------------------------------------------------------------------------

    def _submit(self, intent: m.SubmitIntent) -> m.Reply:
        known = self.db.intent(intent.intent_id)
        if known is not None:
            return self._known_intent(known)
        try:
            return self._submit_new(intent)
        except Rejected as exc:
            if exc.code in FINAL_REJECTIONS:  # a resend gets this answer, not a second try
                self.db.begin_intent(intent.intent_id, intent.bot_id, intent.symbol,
                                     client_order_id(intent.intent_id, intent.bot_id),
                                     intent.to_dict())
                self.db.finish_intent(intent.intent_id, "rejected", {
                    "status": "rejected", "intent_id": intent.intent_id, "reason": str(exc),
                    "code": exc.code})
            raise

    def _submit_new(self, intent: m.SubmitIntent) -> m.Reply:
        late_ms = self.clock.time_ms() - intent.deadline_ms
        if intent.deadline_ms and late_ms > 0:
            raise Rejected("expired", f"intent reached execution {late_ms} ms after its deadline"
                           " (the worker no longer waits for it); nothing was placed")
        filters = self._ready(intent.symbol)
        self._check_lease(intent)
        ref_price = self._ref_price(intent.symbol, intent.side)
        released: list[Any] = []
        guarding = self.protector.open_rows(intent.bot_id, intent.symbol) \
            if intent.side == "SELL" else []
        if guarding:
            # an exit that would be refused anyway must not cancel and re-place the bot's
            # protections (each resend of it did, by the hundred, in the long chaos run)
            guarded = sum((Decimal(r["qty"]) for r in guarding), ZERO)
            self._prepare(intent, filters, ref_price, unlocked=guarded)
            released = self._release_protection(intent.bot_id, intent.symbol)
        reply: m.Reply | None = None
        try:
            reply = self._place_intent(intent, filters, ref_price)
        finally:
            if released and (reply is None or not reply.ok):
                self.protector.reopen(released)  # the exit did not happen: protect again
                self.request_sync("protection restore")
        return reply

    def _prepare(self, intent: m.SubmitIntent, filters: SymbolFilters, ref_price: Decimal,
                 unlocked: Decimal = ZERO) -> Any:
        """The risk module's sized and rounded order, or :class:`Rejected`. ``unlocked``:
        base that the bot's protections lock and its exit would free (for a check made
        before they are cancelled)."""
        def exposure() -> Exposure:
            seen = self._exposure(intent.bot_id, filters, ref_price, intent.side)
            if not unlocked:
                return seen
            return replace(seen, base_free=seen.base_free + unlocked,
                           position_qty=seen.position_qty + unlocked)
        try:
            try:
                return self.risk.prepare(intent, filters, ref_price, exposure())
            except BalanceRejected:
                # the balances seen may lag the last fills (the stream's account update is
                # still on its way): read them once by REST before refusing
                self.balances = {}
                return self.risk.prepare(intent, filters, ref_price, exposure())
        except RiskRejected as exc:
            raise Rejected("risk_rejected", str(exc)) from None
        except InvalidOrderError as exc:
            raise Rejected("invalid_order", str(exc)) from None
        except ValidationError as exc:
            raise Rejected("invalid", str(exc)) from None

    def _place_intent(self, intent: m.SubmitIntent, filters: SymbolFilters,
                      ref_price: Decimal) -> m.Reply:
        prepared = self._prepare(intent, filters, ref_price)
        cid = client_order_id(intent.intent_id, intent.bot_id)
        spec = OrderSpec(intent.symbol, prepared.side, prepared.order_type, cid,
                         quantity=prepared.quantity, price=prepared.price,
                         stop_price=prepared.stop_price, time_in_force=prepared.time_in_force)
        self.db.begin_intent(intent.intent_id, intent.bot_id, intent.symbol, cid,
                             {**intent.to_dict(), "sent_quantity": str(spec.quantity)})
        return self._send(intent.intent_id, spec, ROLE_ENTRY)

    def _release_protection(self, bot_id: str, symbol: str | None = None) -> list[Any]:
        """An exit needs the base its OCO locks: cancel the bot's protections (on ``symbol``).

        A protection is marked closed only once the exchange confirmed its cancel (answered
        the cancel, or a query shows its stop leg final). When it cannot be confirmed the exit
        is refused and the protection stays tracked (so the next exit cancels it again);
        protections already cancelled for this exit are handed back to be placed again.
        """
        released: list[Any] = []
        for row in self.protector.open_rows(bot_id, symbol):
            _, stop_id, profit_id = leg_ids(row["intent_id"], row["bot_id"], row["gen"])
            try:  # a leg ends the whole list
                self._cancel_protection(row["symbol"], stop_id, profit_id)
            except Rejected:
                if released:
                    self.protector.reopen(released)
                    self.request_sync("protection restore")
                raise
            self.protector.mark_closed(row)
            released.append(row)
        if released:
            self.balances = {}  # the unlocked base shows in a fresh read
        return released

    def _cancel_protection(self, symbol: str, stop_id: str, profit_id: str) -> None:
        """Cancel a protective stop leg; returns once the exchange shows it no longer open,
        raises :class:`Rejected` (``protection_not_released``) otherwise. When the list had
        already ended, its legs' final state is applied before returning: a take-profit that
        filled a moment ago, its fill not streamed yet, has sold coins the exit must not
        count (the 10-minute chaos run sold them twice that way)."""
        failure: Exception | None = None
        try:
            response = self.placer.cancel(symbol, stop_id)
        except (ExchangeError, TemporaryError) as exc:  # 5xx/-1000/-1007: outcome unknown
            failure, response = exc, None
            log.warning("cancelling protective order %s: %s; asking the exchange", stop_id, exc)
        if response is not None:
            self.tracker.apply_order(OrderReport.from_rest(response))
            return
        try:
            order = self.placer.find(symbol, stop_id)
        except (ExchangeError, TemporaryError) as exc:
            raise Rejected("protection_not_released", (
                f"could not cancel the protective order {stop_id} ({failure or 'no answer'}) nor "
                f"check it ({exc}); the exit was not sent and the protection stays in place; "
                "try again")) from None
        if order is None:
            return  # never reached the exchange: nothing is open
        self.tracker.apply_order(OrderReport.from_rest(order))
        if order.get("status") in ("NEW", "PARTIALLY_FILLED", "PENDING_NEW"):
            raise Rejected("protection_not_released", (
                f"could not cancel the protective order {stop_id}: {failure or 'not cancelled'}; "
                "it is still open at the exchange, so the exit was not sent and the "
                "protection stays in place; try again"))
        try:
            profit = self.placer.find(symbol, profit_id) if profit_id else None
        except (ExchangeError, TemporaryError) as exc:
            raise Rejected("protection_not_released", (
                f"the protection's list had ended but its take-profit {profit_id} could not be "
                f"checked ({exc}); the exit was not sent; try again")) from None
        if profit is not None:
            self.tracker.apply_order(OrderReport.from_rest(profit))

    def _send(self, intent_id: str, spec: OrderSpec, role: str) -> m.Reply:
        try:
            order = self.placer.place(spec)
        except (InsufficientFundsError, InvalidOrderError) as exc:
            code = "insufficient_funds" if isinstance(exc, InsufficientFundsError) \
                else "invalid_order"
            reason = f"the exchange refused the order: {exc}"
            reply = {"status": "rejected", "intent_id": intent_id, "reason": reason,
                     "code": code}
            self.db.finish_intent(intent_id, "rejected", reply)
            return _rejection(code, reason, intent_id=intent_id)
        except UnknownStatusError as exc:
            self.request_sync("unconfirmed order")
            return _rejection("unconfirmed", f"the exchange did not confirm the order yet "
                              f"({exc}); it will be reconciled", intent_id=intent_id,
                              client_order_id=spec.client_order_id)
        except (RateLimitError, IpBannedError, TemporaryError) as exc:
            self.db.forget_intent(intent_id)  # nothing was sent: the caller may retry
            code = "halted" if isinstance(exc, IpBannedError) else "rate_limited"
            return _rejection(code, f"not sent: {exc}", intent_id=intent_id)
        self.tracker.apply_response(order, role, intent_id)
        reply = {"status": "accepted", "intent_id": intent_id,
                 "client_order_id": spec.client_order_id, "order_status": order.get("status"),
                 "exchange_order_id": order.get("orderId"),
                 "quantity": str(spec.quantity) if spec.quantity is not None else None,
                 "price": str(spec.price) if spec.price is not None else None,
                 "executed_qty": order.get("executedQty")}
        self.db.finish_intent(intent_id, "placed", reply)
        return m.Reply(ok=True, result=reply)

    def _known_intent(self, row: Any) -> m.Reply:
        if row["status"] == "pending":
            self._guard(self.reconciler.resolve_pending_intents)
            row = self.db.intent(row["intent_id"])
            if row is None or row["status"] == "pending":
                return _rejection("unconfirmed", "the order of this intent is not confirmed yet")
        reply = json.loads(row["reply"])
        if row["status"] == "placed":
            return m.Reply(ok=True, result=reply)
        return _rejection(reply.get("code", "rejected"), reply.get("reason", "rejected"),
                          intent_id=row["intent_id"])

    def _ready(self, symbol: str) -> SymbolFilters:
        if self.budget.halted:
            raise Rejected("halted", "trading is halted: the exchange banned this IP (418)")
        if not self.filters:
            try:
                self._ensure_filters()
            except (ExchangeError, TemporaryError) as exc:
                raise Rejected("exchange_unavailable",
                               f"the exchange is not reachable yet: {exc}") from None
        filters = self.filters.get(symbol)
        if filters is None:
            raise Rejected("invalid", f"unknown symbol {symbol!r}")
        return filters

    def _check_lease(self, intent: m.SubmitIntent) -> None:
        bot = state_bot_id(intent.bot_id)
        if bot is None:
            raise Rejected("invalid", f"bot id {intent.bot_id!r} is not a known bot")
        try:
            reply = self.state_client.request(m.CheckLease(bot_id=bot, epoch=intent.epoch))
        except RequestTimeout:
            raise Rejected("state_unreachable", "the state service is not answering, so the "
                           "bot's lease cannot be checked; nothing was sent") from None
        if not reply.ok:
            code = "stale_lease" if reply.error_code == "stale_lease" else reply.error_code
            raise Rejected(code, f"lease check failed: {reply.error_message}")

    def _ref_price(self, symbol: str, side: str) -> Decimal:
        try:
            ticker = self.exchange.book_ticker(symbol)
        except (ExchangeError, TemporaryError) as exc:
            raise Rejected("exchange_unavailable", f"no price for {symbol}: {exc}") from None
        return Decimal(ticker["askPrice"] if side == "BUY" else ticker["bidPrice"])

    def _exposure(self, bot_id: str, filters: SymbolFilters, price: Decimal,
                  side: str = "BUY") -> Exposure:
        if not self.balances:
            try:
                self.balances = self.reconciler.balances()
            except (ExchangeError, TemporaryError) as exc:
                raise Rejected("exchange_unavailable", f"no balances: {exc}") from None
        quote_free, quote_locked = self.balances.get(filters.quote_asset, (ZERO, ZERO))
        base_free, base_locked = self.balances.get(filters.base_asset, (ZERO, ZERO))
        equity = quote_free + quote_locked + (base_free + base_locked) * price
        return Exposure(quote_free=quote_free, base_free=base_free,
                        position_qty=(self.protector.unguarded_qty(bot_id, filters.symbol)
                                      if side == "SELL"
                                      else self.position_qty(bot_id, filters.symbol)),
                        open_orders=sum(1 for o in self.db.open_orders()
                                        if o["role"] in (ROLE_ENTRY, ROLE_CLOSE)),
                        daily_realized_pnl=self._daily_realized_pnl(), equity_quote=equity)

    def position_qty(self, bot_id: str, symbol: str) -> Decimal:
        """What the bot holds and has not already sold or put up for sale.

        Its fills (fees in base deducted), less every SELL of its own that is still open, was
        sent without a confirmed answer, or executed beyond the fills recorded so far: after a
        lost answer or a late stream the fills alone still count sold coins as held, and an
        exit sized from them sold them twice (the long chaos run's oversells). Its protective
        legs are not counted here: :meth:`Protector.unguarded_qty` subtracts protections.
        """
        filters = self.filters.get(symbol)
        base = filters.base_asset if filters else ""
        held = ZERO
        sold: dict[str, Decimal] = {}
        for fill in self.db.bot_fills(bot_id, symbol):
            amount = Decimal(fill["qty"])
            if fill["side"] == "BUY":
                fee = Decimal(fill["commission"]) if fill["commission_asset"] == base else ZERO
                held += amount - fee
            else:
                held -= amount
                cid = fill["client_order_id"] or ""
                sold[cid] = sold.get(cid, ZERO) + amount
        known = set()
        for order in self.db.sell_orders(bot_id, symbol):
            cid = order["client_order_id"]
            known.add(cid)
            done = sold.get(cid, ZERO)
            if order["status"] in OPEN_STATUSES and order["role"] not in PROTECTIVE_ROLES:
                held -= max(Decimal(order["orig_qty"] or order["executed_qty"]) - done, ZERO)
            else:
                held -= max(Decimal(order["executed_qty"]) - done, ZERO)
        for row in self.db.pending_intents():
            if row["bot_id"] != bot_id or row["symbol"] != symbol \
                    or row["client_order_id"] in known:
                continue
            request = json.loads(row["request"])
            if request.get("side", "SELL") == "SELL":
                sent = request.get("sent_quantity")
                if sent is None:
                    return ZERO  # a sell of unknown size is in flight: nothing is sure
                held -= Decimal(sent)
        return max(held, ZERO)

    def _daily_realized_pnl(self) -> Decimal:
        cached_at, value = self._daily_pnl
        now = self.clock.time()
        if now - cached_at < 5:
            return value
        midnight_ms = int(now // 86400 * 86400 * 1000)
        try:
            page = self.state_client.call(m.QueryTrades(limit=500))
        except (RequestTimeout, TradingBotError):
            return value
        items = page.get("items", []) if isinstance(page, dict) else []
        total = sum((Decimal(str(t["pnl"])) for t in items
                     if int(t.get("closed_at_ms") or 0) >= midnight_ms), ZERO)
        self._daily_pnl = (now, total)
        return total

    # --- cancel, close, kill switch ------------------------------------------------------

    def _cancel(self, request: m.CancelOrder) -> m.Reply:
        self.protector.release_leg(request.client_order_id)  # the user removes it on purpose
        try:
            response = self.placer.cancel(request.symbol, request.client_order_id)
        except (ExchangeError, TemporaryError) as exc:
            raise Rejected("exchange_error", f"cancel failed: {exc}") from None
        if response is None:
            order = self.placer.find(request.symbol, request.client_order_id)
            if order is not None:
                self.tracker.apply_order(OrderReport.from_rest(order))
            raise Rejected("unknown_order", f"order {request.client_order_id} is not open on "
                           "the exchange (unknown or already final)")
        self.tracker.apply_order(OrderReport.from_rest(response))
        return m.Reply(ok=True, result={"status": "canceled",
                                        "client_order_id": request.client_order_id})

    def _close(self, request: m.CloseBotPosition) -> m.Reply:
        bot = request.bot_id
        released = self._release_protection(bot)
        cancelled = [leg_ids(r["intent_id"], r["bot_id"], r["gen"])[1] for r in released]
        results = []
        try:
            cancelled += self._cancel_bot_orders(bot)
            symbols = {request.symbol} if request.symbol else (
                {r["symbol"] for r in self.db.query("SELECT DISTINCT symbol FROM fills WHERE "
                                                    "bot_id = ?", (bot,))})
            for symbol in sorted(s for s in symbols if s):
                results.append(self._sell_position(bot, symbol, request.reason))
        except Rejected:
            if released:
                self.protector.reopen(released)  # not closed: protect again
                self.request_sync("protection restore")
            raise
        return m.Reply(ok=True, result={"status": "closed" if results else "flat",
                                        "bot_id": bot, "cancelled": cancelled,
                                        "orders": results})

    def _cancel_quietly(self, symbol: str, cid: str) -> dict | None:
        try:
            response = self.placer.cancel(symbol, cid)
        except (ExchangeError, TemporaryError) as exc:
            raise Rejected("exchange_error", f"could not cancel {cid}: {exc}") from None
        if response is not None:
            self.tracker.apply_order(OrderReport.from_rest(response))
        return response

    def _cancel_bot_orders(self, bot: str, entries_only: bool = False) -> list[str]:
        cancelled = []
        for row in self.db.open_orders(bot):
            if entries_only and row["role"] not in (ROLE_ENTRY, ROLE_CLOSE):
                continue
            if self._cancel_quietly(row["symbol"], row["client_order_id"]) is not None:
                cancelled.append(row["client_order_id"])
        return cancelled

    def _sell_position(self, bot: str, symbol: str, reason: str,
                       at_most: Decimal | None = None) -> dict[str, Any]:
        """Sell what the bot holds outside its live protections (``at_most`` of it)."""
        filters = self._ready(symbol)
        try:
            self.balances = self.reconciler.balances()
        except (ExchangeError, TemporaryError) as exc:
            raise Rejected("exchange_unavailable", f"no balances: {exc}") from None
        free_base = self.balances.get(filters.base_asset, (ZERO, ZERO))[0]
        qty = min(self.protector.unguarded_qty(bot, symbol), free_base)
        qty = round_qty(qty if at_most is None else min(qty, at_most), filters, True)
        if qty <= 0 or qty < filters.min_qty:
            return {"symbol": symbol, "status": "flat", "quantity": str(qty)}
        seq = int(self.db.get(f"close_seq:{bot}", 0)) + 1
        self.db.put(f"close_seq:{bot}", seq)
        intent_id = f"close:{bot}:{symbol}:{seq}"
        cid = client_order_id(intent_id, bot, ROLE_CLOSE)
        self.db.begin_intent(intent_id, bot, symbol, cid, {"reason": reason or "close",
                                                           "side": "SELL",
                                                           "sent_quantity": str(qty)})
        reply = self._send(intent_id, OrderSpec(symbol, "SELL", "MARKET", cid, quantity=qty),
                           ROLE_CLOSE)
        if not reply.ok:
            raise Rejected(reply.error_code, reply.error_message)
        return {"symbol": symbol, **reply.result}

    def _stop_out(self, row: Any, reason: str) -> None:
        """A protection could not be placed because the price already crossed a leg: exit."""
        try:
            result = self._sell_position(row["bot_id"], row["symbol"], f"stop-out: {reason}",
                                         at_most=Decimal(row["qty"]))
        except (Rejected, ExchangeError, TemporaryError) as exc:
            if getattr(exc, "code", None) == "unconfirmed":  # it may have been placed
                log.warning("market exit of bot %s %s not confirmed yet: %s",
                            row["bot_id"], row["symbol"], exc)
                return
            text = (f"bot {row['bot_id']} {row['symbol']}: the market exit after a refused "
                    f"protection failed ({exc}); the position is NOT protected")
            log.critical(text)
            self._alert(row["bot_id"], text, "CRITICAL")
            self.protector.reopen([row])  # try to protect it again on the next sync
            self.request_sync("protection restore")
            return
        log.warning("bot %s %s exited at market (%s): %s", row["bot_id"], row["symbol"],
                    reason, result)

    def _kill_switch(self, request: m.SetKillSwitch) -> dict[str, Any]:
        self.risk.config = self.risk.config.updated({"kill_switch": request.enabled})
        self.db.put("risk_config", self.risk.config.to_dict())
        cancelled: list[str] = []
        if request.enabled:
            bots = {row["bot_id"] for row in self.db.open_orders()}
            for bot in sorted(bots):
                cancelled += self._cancel_bot_orders(bot, entries_only=True)
        text = f"kill switch {'ON' if request.enabled else 'off'}: {request.reason or 'no reason'}"
        log.warning(text)
        self.db.enqueue(m.RecordAlert(level="WARNING", service=self.name, message=text,
                                      request_id=f"kill:{self.clock.time_ms()}"))
        self.outbox.wake()
        self.publisher.publish(TOPIC_KILL, m.KillSwitchChanged(
            enabled=request.enabled, reason=request.reason, ts=self.clock.time()))
        return {"kill_switch": request.enabled, "cancelled": cancelled}

    def _alert(self, bot_id: str, text: str, level: str = "ERROR") -> None:
        self.db.enqueue(m.RecordAlert(level=level, service=self.name, message=text,
                                      bot_id=state_bot_id(bot_id),
                                      request_id=f"alert:{level}:{self.clock.time_ms()}:{bot_id}"))
        self.outbox.wake()

    # --- pause, trailing, limit tracking -------------------------------------------------

    def _on_pause(self, reason: str, seconds: float) -> None:
        halted = reason == "ip_banned"
        self.publisher.publish(TOPIC_PAUSE, m.TradingPaused(
            reason=reason, retry_after_s=float(seconds), until_ts=self.clock.time() + seconds,
            halted=halted))
        if halted:
            self.db.enqueue(m.RecordAlert(
                level="CRITICAL", service=self.name,
                message=f"exchange banned this IP (418): trading halted for {seconds:.0f} s",
                request_id=f"ban:{int(self.clock.time())}"))
            self.outbox.wake()

    def _trail(self) -> None:
        symbols = {row["symbol"] for row in self.db.protections("active")}
        for symbol in sorted(symbols):
            ticker = self.exchange.call("get_orderbook_ticker", symbol=symbol)
            self.protector.trail(symbol, Decimal(ticker["bidPrice"]))

    def _expire_limits(self) -> None:
        """Cancel (or re-place at the touch) entry LIMITs older than ``limit_timeout_s``."""
        cfg = self.risk.config
        now_ms = self.clock.time_ms()
        for row in self.db.open_orders():
            if row["role"] != ROLE_ENTRY or row["type"] != "LIMIT" or not row["intent_id"]:
                continue
            if now_ms - row["created_ms"] < cfg.limit_timeout_s * 1000:
                continue
            response = self.placer.cancel(row["symbol"], row["client_order_id"])
            if response is None:
                continue
            self.tracker.apply_order(OrderReport.from_rest(response))
            parsed = parse_client_order_id(row["client_order_id"])
            gen = parsed.gen if parsed else MAX_REPRICES
            if not cfg.limit_reprice or gen >= MAX_REPRICES:
                log.info("LIMIT %s not filled within %.0f s: cancelled",
                         row["client_order_id"], cfg.limit_timeout_s)
                continue
            self._reprice(row, response, gen + 1)

    def _reprice(self, row: Any, cancelled: dict, gen: int) -> None:
        left = Decimal(cancelled["origQty"]) - Decimal(cancelled["executedQty"])
        filters = self.filters[row["symbol"]]
        qty = round_qty(left, filters)
        if qty < filters.min_qty:
            return
        ticker = self.exchange.book_ticker(row["symbol"])
        price = Decimal(ticker["bidPrice"] if row["side"] == "BUY" else ticker["askPrice"])
        cid = client_order_id(row["intent_id"], row["bot_id"], ROLE_ENTRY, gen)
        spec = OrderSpec(row["symbol"], row["side"], "LIMIT", cid, quantity=qty, price=price,
                         time_in_force="GTC")
        try:
            order = self.placer.place(spec)
        except (ExchangeError, TemporaryError) as exc:
            log.warning("re-pricing %s failed: %s", row["client_order_id"], exc)
            return
        self.tracker.apply_response(order, ROLE_ENTRY, row["intent_id"])
        log.info("LIMIT %s re-placed at %s as %s", row["client_order_id"], price, cid)
