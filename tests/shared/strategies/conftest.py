"""Fixtures for the strategy tests: the real kline slice and a tiny fill-everything venue."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from shared.strategies.base import Candle, Fill, OrderIntent, Strategy, to_decimal

KLINES_CSV = (
    Path(__file__).resolve().parents[2] / "data" / "klines" / "BTCUSDT_1m_20210420_first3000.csv"
)


def load_candles(path: Path = KLINES_CSV) -> list[Candle]:
    with path.open(newline="") as f:
        return [
            Candle(
                open_time_ms=int(row["open_time_ms"]),
                open=float(row["open"]),
                high=float(row["high"]),
                low=float(row["low"]),
                close=float(row["close"]),
                volume=float(row["volume"]),
            )
            for row in csv.DictReader(f)
        ]


def fill_at(strategy: Strategy, intent: OrderIntent, price: float, ts_ms: int) -> None:
    """Tell ``strategy`` its intent filled completely at ``price`` (a toy venue)."""
    if intent.side == "BUY":
        assert intent.quote_amount is not None
        qty = intent.quote_amount / to_decimal(price)
    else:
        assert intent.base_qty is not None
        qty = intent.base_qty
    strategy.on_fill(Fill(intent.side, to_decimal(price), qty, ts_ms, intent.intent_id))


def replay_with_fills(strategy: Strategy, candles: Iterable[Candle]) -> list[OrderIntent]:
    """Feed closed candles; every intent fills at that candle's close one interval later."""
    intents: list[OrderIntent] = []
    for candle in candles:
        for intent in strategy.on_candle(candle):
            intents.append(intent)
            fill_at(strategy, intent, candle.close, candle.open_time_ms + 60_000)
    return intents


@pytest.fixture(scope="session")
def real_candles() -> list[Candle]:
    """3,000 real BTCUSDT 1m candles (see tests/data/klines/PROVENANCE.md)."""
    return load_candles()


@pytest.fixture
def replay() -> Callable[[Strategy, Iterable[Candle]], list[OrderIntent]]:
    return replay_with_fills


@pytest.fixture
def fill() -> Callable[[Strategy, OrderIntent, float, int], None]:
    return fill_at
