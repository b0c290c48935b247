"""Time through an object, so tests can move it instead of sleeping.

``SystemClock`` reads the real clocks; ``TestClock`` is moved by hand.
"""

from __future__ import annotations

import threading
import time


class Clock:
    """What every component asks for the time."""

    def time(self) -> float:
        """Wall-clock seconds since the Unix epoch."""
        raise NotImplementedError

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; for timeouts and intervals."""
        raise NotImplementedError

    def time_ms(self) -> int:
        """Wall-clock milliseconds since the Unix epoch (Binance's unit)."""
        return int(self.time() * 1000)


class SystemClock(Clock):
    """The real clocks of the machine."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class TestClock(Clock):
    """A clock that only moves when told to; both readings advance together."""

    __test__ = False  # not a pytest test class

    def __init__(self, start_s: float = 1_700_000_000.0) -> None:
        self._now = float(start_s)
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        return self.time()

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock cannot go back: seconds must be >= 0")
        with self._lock:
            self._now += seconds

    def set(self, epoch_s: float) -> None:
        with self._lock:
            if epoch_s < self._now:
                raise ValueError("a clock cannot go back")
            self._now = float(epoch_s)


SYSTEM_CLOCK = SystemClock()
