"""Kline history: download with python-binance into a CSV, resume, verify; read it back.

``python -m backtest.history --symbol BTCUSDT --interval 1m --start 2024-01-01 --end 2024-02-01
--out data/klines/BTCUSDT_1m.csv`` pages ``Client.get_klines`` (limit 1000) from the last row
already in the file (or ``--start``) to ``--end``, keeps only closed candles, appends them, then
verifies the whole file: strictly increasing open times (a duplicate or a step back is an error)
and gaps listed as they are (Binance has some, e.g. maintenance windows; no candle is invented).

The weight budget follows Binance's ``X-MBX-USED-WEIGHT-1M`` header, read from the client's last
response: above ``weight_high`` of ``weight_limit`` the downloader sleeps to the next minute.
``--base-url`` points python-binance at the offline simulator (``http://127.0.0.1:9010/api``).

The CSV format is the project's (``data/README.md``): header
``open_time_ms,open,high,low,close,volume``, number tokens as the exchange sent them.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from shared.strategies.base import KLINE_INTERVALS_MS

log = logging.getLogger(__name__)

HEADER = ("open_time_ms", "open", "high", "low", "close", "volume")
PAGE_LIMIT = 1000
KLINES_WEIGHT = 2  # GET /api/v3/klines, any limit up to 1000
DEFAULT_WEIGHT_LIMIT = 6000
WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class CandleArrays:
    """Candles as columns (numpy): open times in ms and float OHLCV, oldest first."""

    open_time_ms: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.open_time_ms)

    def slice(self, start: int, stop: int) -> CandleArrays:
        return CandleArrays(*(col[start:stop] for col in self.columns()))

    def columns(self) -> tuple[np.ndarray, ...]:
        return (self.open_time_ms, self.open, self.high, self.low, self.close, self.volume)


def _open_text(path: Path, mode: str = "rt") -> Any:
    if str(path).endswith(".gz"):
        return gzip.open(path, mode, newline="")
    return open(path, mode, newline="")


def read_candles(path: str | Path) -> CandleArrays:
    """A kline CSV (optionally gzipped) as columns; floats parsed exactly like ``float(token)``
    (pandas 3's default parser is correctly rounded; a test holds it to that)."""
    import pandas as pd

    frame = pd.read_csv(path, usecols=list(HEADER), dtype={"open_time_ms": "int64"})
    return CandleArrays(*(frame[name].to_numpy(dtype=np.int64 if name == "open_time_ms"
                                               else np.float64) for name in HEADER))


# --------------------------------------------------------------------------- verifying


@dataclass(frozen=True)
class Gap:
    """Missing candles between two present ones: ``after_ms`` and ``before_ms`` are open times."""

    after_ms: int
    before_ms: int
    missing: int

    def to_dict(self) -> dict[str, Any]:
        return {"after_ms": self.after_ms, "before_ms": self.before_ms, "missing": self.missing,
                "after": iso(self.after_ms), "before": iso(self.before_ms)}


@dataclass(frozen=True)
class Verification:
    """What ``verify`` found: row count, gaps (kept, reported) and disorder (an error)."""

    rows: int
    gaps: tuple[Gap, ...] = ()
    duplicates: tuple[int, ...] = ()  # open times seen twice or going back
    misaligned: tuple[int, ...] = ()  # open times off the interval grid

    @property
    def ok(self) -> bool:
        return not self.duplicates and not self.misaligned

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "ok": self.ok, "gaps": [g.to_dict() for g in self.gaps],
                "missing_candles": sum(g.missing for g in self.gaps),
                "duplicates": list(self.duplicates), "misaligned": list(self.misaligned)}


def verify(open_time_ms: np.ndarray, interval_ms: int) -> Verification:
    """Check open times: strictly increasing on the interval grid; gaps listed, not filled."""
    times = np.asarray(open_time_ms, dtype=np.int64)
    if len(times) < 2:
        return Verification(len(times))
    steps = np.diff(times)
    bad = np.nonzero(steps <= 0)[0]
    off = np.nonzero(steps % interval_ms != 0)[0] if interval_ms < 2_419_200_000 else []
    holes = np.nonzero(steps > interval_ms)[0]
    gaps = tuple(Gap(int(times[i]), int(times[i + 1]), int(steps[i] // interval_ms) - 1)
                 for i in holes)
    return Verification(len(times), gaps, tuple(int(times[i + 1]) for i in bad),
                        tuple(int(times[i + 1]) for i in off))


def iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> int:
    """``2024-01-31``, ``2024-01-31T12:00`` (UTC) or epoch milliseconds, as ms."""
    if text.isdigit():
        return int(text)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


# --------------------------------------------------------------------------- downloading


@dataclass
class WeightBudget:
    """Follows ``X-MBX-USED-WEIGHT-1M``; waits for the next minute before going over ``high``."""

    limit: int = DEFAULT_WEIGHT_LIMIT
    high: float = 0.8  # fraction of ``limit`` we allow ourselves (other processes share it)
    time_ms: Callable[[], int] = field(default=lambda: int(time.time() * 1000))
    sleep: Callable[[float], None] = time.sleep
    used: int = 0
    waits: int = 0

    def observe(self, headers: Any) -> None:
        value = (headers or {}).get(WEIGHT_HEADER)
        if value is not None:
            self.used = int(value)

    def before_request(self, weight: int) -> None:
        if self.used + weight <= self.limit * self.high:
            return
        now = self.time_ms()
        wait_s = (60_000 - now % 60_000) / 1000 + 0.05
        log.info("weight %d/%d used: waiting %.1f s for the next minute", self.used, self.limit,
                 wait_s)
        self.waits += 1
        self.sleep(wait_s)
        self.used = 0


def last_open_time(path: Path) -> int | None:
    """Open time of the last row of an existing CSV, or None (missing or empty file)."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    with _open_text(path) as handle:
        last = None
        for row in csv.reader(handle):
            if row and row[0].isdigit():
                last = int(row[0])
    return last


def _pages(client: Any, symbol: str, interval: str, start_ms: int, end_ms: int,
           budget: WeightBudget) -> Iterator[list[list[Any]]]:
    interval_ms = KLINE_INTERVALS_MS[interval]
    cursor = start_ms
    while cursor <= end_ms:
        budget.before_request(KLINES_WEIGHT)
        rows = client.get_klines(symbol=symbol, interval=interval, startTime=cursor,
                                 endTime=end_ms, limit=PAGE_LIMIT)
        response = getattr(client, "response", None)
        budget.observe(getattr(response, "headers", None))
        if not rows:
            return
        yield rows
        cursor = int(rows[-1][0]) + interval_ms


def _server_time_ms(client: Any) -> int:
    return int(client.get_server_time()["serverTime"])


def download(client: Any, symbol: str, interval: str, start_ms: int, end_ms: int,
             out: str | Path, budget: WeightBudget | None = None,
             progress: bool = True) -> Verification:
    """Append closed candles of ``[start_ms, end_ms]`` (open times) to ``out``, resuming after
    its last row; then verify the whole file. Returns the verification (gaps included)."""
    from tqdm import tqdm

    path = Path(out)
    interval_ms = KLINE_INTERVALS_MS[interval]
    budget = budget or WeightBudget()
    last = last_open_time(path)
    first = start_ms if last is None else max(start_ms, last + interval_ms)
    closed_before = _server_time_ms(client) - interval_ms + 1  # open times of closed candles
    end_ms = min(end_ms, closed_before)
    path.parent.mkdir(parents=True, exist_ok=True)
    new_file = last is None
    total = max(0, (end_ms - first) // interval_ms + 1)
    with _open_text(path, "at") as handle, tqdm(total=total, unit="candle", disable=not progress,
                                               desc=f"{symbol} {interval}") as bar:
        writer = csv.writer(handle, lineterminator="\n")
        if new_file:
            writer.writerow(HEADER)
        for rows in _pages(client, symbol, interval, first, end_ms, budget):
            kept = [r[:6] for r in rows if first <= int(r[0]) <= end_ms]
            kept = [r for r in kept if last is None or int(r[0]) > last]
            writer.writerows([[int(r[0]), *r[1:6]] for r in kept])
            handle.flush()
            if kept:
                last = int(kept[-1][0])
            bar.update(len(kept))
    return verify(read_candles(path).open_time_ms, interval_ms)


def make_client(base_url: str | None = None, timeout_s: float = 10.0) -> Any:
    """An unauthenticated python-binance Client (klines are public), optionally re-pointed."""
    from binance.client import Client

    client = Client(None, None, ping=False, requests_params={"timeout": timeout_s})
    if base_url:
        client.API_URL = base_url.rstrip("/")
    return client


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backtest.history", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbol", required=True)
    parser.add_argument("--interval", default="1m", choices=list(KLINE_INTERVALS_MS))
    parser.add_argument("--start", required=True, help="UTC date/time or epoch ms")
    parser.add_argument("--end", default=None, help="UTC date/time or epoch ms (default: now)")
    parser.add_argument("--out", required=True, help="CSV file (appended to; .gz allowed)")
    parser.add_argument("--base-url", default=None,
                        help="REST base, e.g. http://127.0.0.1:9010/api for the simulator")
    parser.add_argument("--weight-limit", type=int, default=DEFAULT_WEIGHT_LIMIT)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    end_ms = parse_time(args.end) if args.end else int(time.time() * 1000)
    client = make_client(args.base_url)
    try:
        result = download(client, args.symbol, args.interval, parse_time(args.start), end_ms,
                          args.out, WeightBudget(limit=args.weight_limit),
                          progress=not args.no_progress)
    finally:
        client.close_connection()
    buffer = io.StringIO()
    json.dump(result.to_dict(), buffer, indent=2)
    print(buffer.getvalue())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
