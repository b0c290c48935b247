"""Binance's request-weight and order-count limits, with 429, Retry-After and the 418 ban.

Windows are fixed and aligned like Binance's (the minute, 10 seconds, the UTC day). Going over
the weight limit answers 429 with ``Retry-After``; a client that keeps calling while limited is
banned for ``ban_s`` and gets 418 until the ban lifts.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from dataclasses import dataclass

from shared.clock import Clock

from .api_error import ApiError

MINUTE_MS = 60_000
TEN_S_MS = 10_000
DAY_MS = 86_400_000


@dataclass(frozen=True)
class RateLimits:
    """The limits the venue enforces and advertises in exchangeInfo ``rateLimits``."""

    weight_per_minute: int = 6000
    orders_per_10s: int = 100
    orders_per_day: int = 200_000
    raw_requests_per_5m: int = 300_000
    strikes_before_ban: int = 5  # calls made while already limited before the 418 ban
    ban_s: int = 120

    def to_exchange_info(self) -> list[dict]:
        return [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
             "limit": self.weight_per_minute},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10,
             "limit": self.orders_per_10s},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1,
             "limit": self.orders_per_day},
            {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5,
             "limit": self.raw_requests_per_5m},
        ]


def _retry_after_s(remaining_ms: int) -> str:
    return str(max(1, math.ceil(remaining_ms / 1000)))


class RateLimiter:
    """Counts weight per IP and orders per account; raises ApiError 429/418 when over."""

    def __init__(self, clock: Clock, limits: RateLimits | None = None) -> None:
        self.limits = limits or RateLimits()
        self._clock = clock
        self._lock = threading.Lock()
        self._weight: dict[str, tuple[int, int]] = {}  # ip -> (window start, used)
        self._strikes: dict[str, tuple[int, int]] = defaultdict(lambda: (0, 0))
        self._banned_until: dict[str, int] = {}
        self._orders: dict[str, dict[int, tuple[int, int]]] = defaultdict(dict)

    def used_weight(self, ip: str) -> int:
        with self._lock:
            return self._current_weight(ip, self._clock.time_ms())

    def _current_weight(self, ip: str, now_ms: int) -> int:
        window, used = self._weight.get(ip, (0, 0))
        return used if window == now_ms // MINUTE_MS * MINUTE_MS else 0

    def charge(self, ip: str, weight: int) -> int:
        """Add ``weight`` for ``ip`` and return the minute's total; 429/418 when over."""
        now_ms = self._clock.time_ms()
        with self._lock:
            self._check_ban(ip, now_ms)
            window = now_ms // MINUTE_MS * MINUTE_MS
            used = self._current_weight(ip, now_ms) + weight
            self._weight[ip] = (window, used)
            if used <= self.limits.weight_per_minute:
                return used
            self._strike(ip, window, now_ms)
            raise ApiError(429, -1003, (
                f"Too much request weight used; current limit is {self.limits.weight_per_minute}"
                " request weight per 1 MINUTE. Please use WebSocket Streams for live updates to "
                "avoid polling the API."),
                {"Retry-After": _retry_after_s(window + MINUTE_MS - now_ms)})

    def refund(self, ip: str, weight: int) -> int:
        """Give back ``weight`` charged this minute (a call that weighs 0 when it succeeds)."""
        now_ms = self._clock.time_ms()
        with self._lock:
            window = now_ms // MINUTE_MS * MINUTE_MS
            used = max(self._current_weight(ip, now_ms) - weight, 0)
            self._weight[ip] = (window, used)
            return used

    def _strike(self, ip: str, window: int, now_ms: int) -> None:
        strike_window, strikes = self._strikes[ip]
        strikes = strikes + 1 if strike_window == window else 1
        self._strikes[ip] = (window, strikes)
        if strikes > self.limits.strikes_before_ban:
            self._banned_until[ip] = now_ms + self.limits.ban_s * 1000
            self._check_ban(ip, now_ms)

    def _check_ban(self, ip: str, now_ms: int) -> None:
        until = self._banned_until.get(ip)
        if until is None:
            return
        if now_ms >= until:
            del self._banned_until[ip]
            return
        raise ApiError(418, -1003, (
            f"Way too much request weight used; IP banned until {until}. Please use WebSocket "
            "Streams for live updates to avoid bans."),
            {"Retry-After": _retry_after_s(until - now_ms)})

    def ban(self, ip: str, seconds: float) -> None:
        """Ban ``ip`` now (fault injection)."""
        with self._lock:
            self._banned_until[ip] = self._clock.time_ms() + int(seconds * 1000)

    def count_order(self, account: str, n: int = 1) -> tuple[int, int]:
        """Count ``n`` new orders; returns the 10 s and 1 day counts; 429 -1015 when over."""
        now_ms = self._clock.time_ms()
        with self._lock:
            counts = self._orders[account]
            totals = []
            for span, limit, label in ((TEN_S_MS, self.limits.orders_per_10s, "10 SECOND"),
                                       (DAY_MS, self.limits.orders_per_day, "1 DAY")):
                window = now_ms // span * span
                start, used = counts.get(span, (window, 0))
                used = (used if start == window else 0) + n
                counts[span] = (window, used)
                totals.append(used)
                if used > limit:
                    raise ApiError(429, -1015, f"Too many new orders; current limit is {limit} "
                                               f"orders per {label}.",
                                   {"Retry-After": _retry_after_s(window + span - now_ms)})
            return totals[0], totals[1]

    def order_counts(self, account: str) -> tuple[int, int]:
        now_ms = self._clock.time_ms()
        with self._lock:
            counts = self._orders.get(account, {})
            out = []
            for span in (TEN_S_MS, DAY_MS):
                start, used = counts.get(span, (0, 0))
                out.append(used if start == now_ms // span * span else 0)
            return out[0], out[1]
