"""Public REST calls (klines, depth) through python-binance's AsyncClient, within a weight budget.

Binance reports the IP's used weight of the current minute in ``X-MBX-USED-WEIGHT-1M`` on
every response; that count includes the other processes on this IP, so following it is how the
budget is shared. A call that would go over the budget waits for the next minute (or is refused
when that wait is too long); 429 and 418 block calls for ``Retry-After`` seconds. Library errors
are translated here into the project's exceptions.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from binance.async_client import AsyncClient
from binance.exceptions import BinanceAPIException, BinanceRequestException

from shared.clock import Clock
from shared.errors import ExchangeError, IpBannedError, RateLimitError, TemporaryError

log = logging.getLogger(__name__)

MINUTE_MS = 60_000
KLINES_WEIGHT = 2
EXCHANGE_INFO_WEIGHT = 20
KLINES_PAGE = 1000  # Binance's maximum per call


def depth_weight(limit: int) -> int:
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


class WeightBudget:
    """The used weight of the current minute as Binance last reported it, and any block."""

    def __init__(self, budget: int, clock: Clock) -> None:
        self.budget = budget
        self.clock = clock
        self.used = 0
        self._window = -1
        self._blocked_until = 0.0

    def observe(self, used: int) -> None:
        self._window = self.clock.time_ms() // MINUTE_MS
        self.used = used

    def observe_shared(self, used: int) -> None:
        """Another process's reading of the same per-IP counter: keep the higher one."""
        window = self.clock.time_ms() // MINUTE_MS
        if window != self._window:
            self._window, self.used = window, used
        else:
            self.used = max(self.used, used)

    def block(self, seconds: float) -> None:
        self._blocked_until = max(self._blocked_until, self.clock.monotonic() + seconds)

    def delay_for(self, weight: int) -> float:
        """Seconds to wait before a call of ``weight`` fits (0 when it fits now)."""
        blocked = self._blocked_until - self.clock.monotonic()
        if blocked > 0:
            return blocked
        now_ms = self.clock.time_ms()
        if now_ms // MINUTE_MS != self._window:
            self.used = 0
        if self.used + weight <= self.budget:
            return 0.0
        return (MINUTE_MS - now_ms % MINUTE_MS) / 1000 + 0.05


class RestGateway:
    """Serialised public REST calls with timeouts, weight accounting and error translation."""

    def __init__(self, client: AsyncClient, budget: WeightBudget, timeout_s: float) -> None:
        self.client = client
        self.budget = budget
        self.timeout_s = timeout_s
        self.calls = 0
        self._lock = asyncio.Lock()

    @classmethod
    def create(cls, rest_url: str, budget: WeightBudget, timeout_s: float) -> RestGateway:
        """Build inside the running event loop (the HTTP session binds to it); no I/O."""
        client = AsyncClient()  # public data only: no key
        client.API_URL = client.API_TESTNET_URL = rest_url
        return cls(client, budget, timeout_s)

    async def klines(self, symbol: str, interval: str, *, start_ms: int | None = None,
                     end_ms: int | None = None, limit: int = KLINES_PAGE) -> list[list]:
        params: dict[str, Any] = {"symbol": symbol, "interval": interval, "limit": limit}
        if start_ms is not None:
            params["startTime"] = start_ms
        if end_ms is not None:
            params["endTime"] = end_ms
        return await self._call(KLINES_WEIGHT, self.client.get_klines, params)

    async def depth(self, symbol: str, limit: int) -> dict:
        return await self._call(depth_weight(limit), self.client.get_order_book,
                                {"symbol": symbol, "limit": limit})

    async def symbols(self) -> frozenset[str]:
        """Every symbol the venue lists (``exchangeInfo``, weight 20)."""
        info = await self._call(EXCHANGE_INFO_WEIGHT, self.client.get_exchange_info, {})
        return frozenset(s["symbol"] for s in info.get("symbols", ()))

    async def close(self) -> None:
        try:
            await self.client.close_connection()
        except Exception:  # closing must not raise
            log.debug("closing the REST session failed", exc_info=True)

    async def _call(self, weight: int, method, params: dict, max_wait_s: float = 5.0):
        async with self._lock:
            delay = self.budget.delay_for(weight)
            if delay > max_wait_s:
                raise RateLimitError(f"REST weight budget spent; retry in {delay:.1f} s", delay)
            if delay > 0:
                log.info("REST weight budget: waiting %.2f s", delay)
                await asyncio.sleep(delay)
            self.calls += 1
            try:
                async with asyncio.timeout(self.timeout_s):
                    result = await method(**params)
            except BinanceAPIException as exc:
                self._note(exc.response)
                raise self._translate(exc) from None
            except (aiohttp.ClientError, TimeoutError, OSError, BinanceRequestException) as exc:
                raise TemporaryError(f"REST call failed: {type(exc).__name__}: {exc}") from None
            self._note(self.client.response)
            return result

    def _note(self, response: Any) -> None:
        used = getattr(response, "headers", {}).get("X-MBX-USED-WEIGHT-1M")
        if used is not None and str(used).isdigit():
            self.budget.observe(int(used))

    def _translate(self, exc: BinanceAPIException) -> Exception:
        headers = getattr(exc.response, "headers", {})
        retry = headers.get("Retry-After", "")
        retry_s = float(retry) if retry.replace(".", "", 1).isdigit() else 60.0
        if exc.status_code == 418:
            self.budget.block(retry_s)
            log.critical("Binance banned this IP for %.0f s (418)", retry_s)
            return IpBannedError(exc.message, exc.code)
        if exc.status_code == 429:
            self.budget.block(retry_s)
            log.warning("Binance rate limit (429): no REST calls for %.0f s", retry_s)
            return RateLimitError(exc.message, retry_s, exc.code)
        if exc.status_code >= 500:
            return TemporaryError(f"Binance {exc.status_code}: {exc.message}")
        return ExchangeError(exc.message, exc.code)
