"""The exchange edge: python-binance's sync ``Client`` wrapped so callers see meaning, not codes.

Every REST call goes through :meth:`ExchangeClient.call`, which

- maps Binance errors once into ``shared.errors`` (-2010 balance, -1013 filters, 429, 418,
  -1021, -1007/5xx/timeouts as "status unknown");
- feeds :class:`WeightBudget` from ``X-MBX-USED-WEIGHT-1M`` and the order-count headers;
- waits out a 429's ``Retry-After`` (bounded) and retries once, halts on a 418;
- resynchronises the clock offset after -1021 and retries once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from binance.client import Client
from binance.exceptions import BinanceAPIException, BinanceRequestException

from shared.clock import SYSTEM_CLOCK, Clock
from shared.errors import (
    ClockSkewError,
    ExchangeError,
    InsufficientFundsError,
    InvalidOrderError,
    IpBannedError,
    RateLimitError,
    UnknownOrderError,
    UnknownStatusError,
)

log = logging.getLogger(__name__)

DEFAULT_WEIGHT_LIMIT = 6000
DEFAULT_ORDERS_PER_10S = 100
REST_TIMEOUT_S = 5.0
MAX_RETRY_AFTER_WAIT_S = 3.0  # longer pauses are reported to the caller instead of waited
_INVALID_CODES = {-1013, -1100, -1101, -1102, -1104, -1105, -1106, -1111, -1115, -1116,
                  -1117, -1121, -1128, -1130, -2010}
_UNKNOWN_ORDER_CODES = {-2011, -2013, -2026}
READS = frozenset({"get_exchange_info", "get_orderbook_ticker", "get_account", "get_order",
                   "get_open_orders", "get_open_oco_orders", "get_my_trades", "get_all_orders",
                   "get_server_time"})
READ_RETRY_WAITS_S = (0.2, 0.5)


def translate(exc: BinanceAPIException) -> ExchangeError:
    """The project's exception for one python-binance API error (the only place codes live)."""
    status, code, text = exc.status_code, exc.code, exc.message
    retry_after = _retry_after(exc)
    if status == 418:
        err: ExchangeError = IpBannedError(f"IP banned by the exchange: {text}", code)
        err.retry_after_s = retry_after  # type: ignore[attr-defined]
        return err
    if status == 429 or code in (-1003, -1015):
        return RateLimitError(f"rate limited: {text}", retry_after, code)
    if code == -1021:
        return ClockSkewError(f"clock out of sync with the exchange: {text}", code)
    if code == -1007 or status >= 500 or code == -1000:
        return UnknownStatusError(f"outcome unknown ({status}): {text}", code)
    if code == -2010 and "insufficient balance" in text.lower():
        return InsufficientFundsError("insufficient balance for this order", code)
    if code in _UNKNOWN_ORDER_CODES:
        return UnknownOrderError(text, code)
    if code in _INVALID_CODES:
        return InvalidOrderError(text, code)
    return ExchangeError(text, code)


def _retry_after(exc: BinanceAPIException) -> float:
    response = getattr(exc, "response", None)
    try:
        return float(response.headers.get("Retry-After", 1))  # type: ignore[union-attr]
    except (AttributeError, TypeError, ValueError):
        return 1.0


@dataclass
class BudgetSnapshot:
    """What the weight budget knows, as published to the other processes."""

    used_weight_1m: int
    weight_limit_1m: int
    order_count_10s: int
    order_count_1d: int
    paused_until: float
    halted_until: float


class WeightBudget:
    """Binance's request-weight and order-count usage, plus the pause/halt the venue imposed.

    Headers update it after every response; ``admit`` refuses a call while paused or halted
    and, for calls that are not trading-critical, when the minute's weight is nearly spent.
    """

    def __init__(self, clock: Clock = SYSTEM_CLOCK, weight_limit: int = DEFAULT_WEIGHT_LIMIT,
                 reserve_fraction: float = 0.1) -> None:
        self.clock = clock
        self.weight_limit = weight_limit
        self.reserve_fraction = reserve_fraction
        self.used_weight = 0
        self.order_count_10s = 0
        self.order_count_1d = 0
        self.paused_until = 0.0
        self.halted_until = 0.0
        self._minute = 0
        self._lock = threading.Lock()
        self.on_change: Callable[[str, float], None] | None = None

    def observe(self, headers: Any) -> None:
        if headers is None:
            return
        with self._lock:
            weight = headers.get("X-MBX-USED-WEIGHT-1M") or headers.get("x-mbx-used-weight-1m")
            if weight is not None:
                self.used_weight = int(weight)
                self._minute = int(self.clock.time() // 60)
            for name, attr in (("X-MBX-ORDER-COUNT-10S", "order_count_10s"),
                               ("X-MBX-ORDER-COUNT-1D", "order_count_1d")):
                value = headers.get(name)
                if value is not None:
                    setattr(self, attr, int(value))

    def pause(self, seconds: float) -> None:
        with self._lock:
            self.paused_until = max(self.paused_until, self.clock.time() + seconds)
        if self.on_change:
            self.on_change("rate_limited", seconds)

    def halt(self, seconds: float) -> None:
        with self._lock:
            self.halted_until = max(self.halted_until, self.clock.time() + seconds)
        if self.on_change:
            self.on_change("ip_banned", seconds)

    @property
    def halted(self) -> bool:
        return self.clock.time() < self.halted_until

    def pause_left_s(self) -> float:
        return max(0.0, self.paused_until - self.clock.time())

    def admit(self, critical: bool) -> None:
        """Raise if a call must not go out now (halted, paused, or weight nearly spent)."""
        now = self.clock.time()
        if now < self.halted_until:
            raise IpBannedError(f"trading halted by an IP ban for {self.halted_until - now:.0f} "
                                "more seconds")
        if now < self.paused_until:
            raise RateLimitError("paused by the exchange's rate limit", self.paused_until - now)
        if critical:
            return
        with self._lock:
            used = self.used_weight if int(now // 60) == self._minute else 0
        if used >= self.weight_limit * (1 - self.reserve_fraction):
            wait = 60 - now % 60
            raise RateLimitError("request weight budget nearly spent this minute", wait, None)

    def snapshot(self) -> BudgetSnapshot:
        with self._lock:
            used = self.used_weight if int(self.clock.time() // 60) == self._minute else 0
            return BudgetSnapshot(used, self.weight_limit, self.order_count_10s,
                                  self.order_count_1d, self.paused_until, self.halted_until)


class ExchangeClient:
    """python-binance sync client behind one lock, one error mapping and one budget."""

    def __init__(self, api_key: str, api_secret: str, rest_url: str | None = None,
                 testnet: bool = False, clock: Clock = SYSTEM_CLOCK,
                 budget: WeightBudget | None = None, timeout_s: float = REST_TIMEOUT_S,
                 wait: Callable[[float], None] | None = None) -> None:
        self.clock = clock
        self.budget = budget or WeightBudget(clock)
        self._client = Client(api_key, api_secret, ping=False, testnet=testnet,
                              requests_params={"timeout": timeout_s})
        if rest_url:
            self._client.API_URL = rest_url
        self._lock = threading.RLock()
        self._wait = wait or threading.Event().wait
        self.calls = 0

    # --- the one path every call takes ---------------------------------------------------

    def call(self, method: str, critical: bool = False, **params: Any) -> Any:
        """Run ``Client.<method>(**params)`` with the budget, waits and error mapping. A read
        that got no clear answer (5xx, -1000, -1007, no answer) is asked again twice: it has
        no effect to double, and one lost read must not fail a whole reconciliation."""
        waits = READ_RETRY_WAITS_S if method in READS else ()
        for wait in waits:
            try:
                return self._call(method, critical, params)
            except UnknownStatusError as exc:
                log.info("%s: %s; asking again in %.1f s", method, exc, wait)
                self._wait(wait)
        return self._call(method, critical, params)

    def _call(self, method: str, critical: bool, params: dict[str, Any]) -> Any:
        self._wait_for_pause(critical)
        try:
            return self._once(method, params)
        except RateLimitError as exc:
            if exc.retry_after_s > MAX_RETRY_AFTER_WAIT_S:
                raise
            self._wait(exc.retry_after_s)
            return self._once(method, params)
        except ClockSkewError:
            self.resync_clock()
            return self._once(method, params)

    def _wait_for_pause(self, critical: bool) -> None:
        left = self.budget.pause_left_s()
        if 0 < left <= MAX_RETRY_AFTER_WAIT_S:
            self._wait(left)
        self.budget.admit(critical)

    def _once(self, method: str, params: dict[str, Any]) -> Any:
        with self._lock:
            self.calls += 1
            try:
                result = getattr(self._client, method)(**params)
            except BinanceAPIException as exc:
                self.budget.observe(getattr(exc.response, "headers", None))
                err = translate(exc)
                self._note(err)
                raise err from None
            except (requests.Timeout, requests.ConnectionError) as exc:
                raise UnknownStatusError(f"no answer from the exchange: {type(exc).__name__}") \
                    from None
            except BinanceRequestException as exc:
                raise UnknownStatusError(f"unreadable answer from the exchange: {exc.message}") \
                    from None
            finally:
                response = self._client.response
                if response is not None:
                    self.budget.observe(response.headers)
            return result

    def _note(self, err: ExchangeError) -> None:
        if isinstance(err, IpBannedError):
            seconds = getattr(err, "retry_after_s", 60.0)
            log.critical("exchange banned this IP for %.0f s: trading halted", seconds)
            self.budget.halt(seconds)
        elif isinstance(err, RateLimitError):
            log.warning("exchange rate limit: pausing %.1f s", err.retry_after_s)
            self.budget.pause(err.retry_after_s)

    def resync_clock(self) -> int:
        """Set the timestamp offset from the exchange's time; returns the offset in ms."""
        with self._lock:
            server = self._client.get_server_time()["serverTime"]
            offset = int(server - self.clock.time_ms())
            self._client.timestamp_offset = offset
        log.warning("clock resynchronised with the exchange: offset %d ms", offset)
        return offset

    @property
    def timestamp_offset(self) -> int:
        return int(self._client.timestamp_offset)

    def close(self) -> None:
        try:
            self._client.close_connection()
        except Exception:  # closing must never raise
            log.debug("closing the REST session failed", exc_info=True)

    # --- the calls execution makes -------------------------------------------------------

    def exchange_info(self) -> dict:
        return self.call("get_exchange_info")

    def book_ticker(self, symbol: str) -> dict:
        return self.call("get_orderbook_ticker", symbol=symbol)

    def account(self) -> dict:
        return self.call("get_account", critical=True)

    def create_order(self, **params: Any) -> dict:
        return self.call("create_order", critical=True, **params)

    def get_order(self, symbol: str, client_order_id: str) -> dict | None:
        """The order with this client id, or None if the exchange does not know it."""
        try:
            return self.call("get_order", critical=True, symbol=symbol,
                             origClientOrderId=client_order_id)
        except UnknownOrderError:
            return None

    def cancel_order(self, symbol: str, client_order_id: str) -> dict:
        return self.call("cancel_order", critical=True, symbol=symbol,
                         origClientOrderId=client_order_id)

    def create_oco(self, **params: Any) -> dict:
        return self.call("create_oco_order", critical=True, **params)

    def cancel_order_list(self, symbol: str, list_client_order_id: str) -> dict:
        return self.call("v3_delete_order_list", critical=True, symbol=symbol,
                         listClientOrderId=list_client_order_id)

    def open_orders(self, symbol: str | None = None) -> list[dict]:
        params = {"symbol": symbol} if symbol else {}
        return self.call("get_open_orders", critical=True, **params)

    def open_order_lists(self) -> list[dict]:
        return self.call("get_open_oco_orders", critical=True)

    def my_trades(self, symbol: str, from_id: int | None = None, limit: int = 1000) -> list[dict]:
        params: dict[str, Any] = {"symbol": symbol, "limit": limit}
        if from_id is not None:
            params["fromId"] = from_id
        return self.call("get_my_trades", critical=True, **params)
