"""Report metrics against hand-computed cases, round trips with dust, and the written files."""

from __future__ import annotations

import json
import math
from decimal import Decimal

import numpy as np
import pytest

from backtest.engine import BacktestConfig, BacktestResult, FillRecord
from backtest.history import CandleArrays
from backtest.report import compute_metrics, round_trips, write_report

DAY_MS = 86_400_000
D = Decimal


def fill(ts_ms: int, side: str, price: str, qty: str, fee: str, fee_asset: str,
         closes: bool = False) -> FillRecord:
    return FillRecord(ts_ms, side, D(price), D(qty), D(fee), fee_asset, "MARKET", "c", False,
                      "why", closes)


def hand_result() -> BacktestResult:
    """Three daily candles; equity 1000 -> 1100 -> 990 -> 1089; two round trips."""
    candles = CandleArrays(np.array([0, DAY_MS, 2 * DAY_MS], dtype=np.int64),
                           np.array([100.0, 110.0, 99.0]), np.array([111.0, 111.0, 106.0]),
                           np.array([99.0, 98.0, 98.0]), np.array([110.0, 99.0, 105.0]),
                           np.ones(3))
    fills = [
        fill(0, "BUY", "100", "1", "0.001", "BTC"),
        fill(60_000, "SELL", "110", "0.999", "0.10989", "USDT", closes=True),
        fill(DAY_MS, "BUY", "100", "1", "0", "BTC"),
        fill(DAY_MS + 120_000, "SELL", "95", "1", "0", "USDT", closes=True),
    ]
    config = BacktestConfig(interval="1d", starting_quote=D("1000"))
    return BacktestResult(config, candles, 0, fills, [], np.array([1100.0, 990.0, 1089.0]),
                          np.array([1.0, 0.0, 0.0]))


def test_return_and_drawdown_match_hand_computation() -> None:
    m = compute_metrics(hand_result())

    assert m["total_return"] == pytest.approx(0.089)
    assert m["max_drawdown"] == pytest.approx(1 - 990 / 1100)
    assert m["buy_and_hold_return"] == pytest.approx(105 / 110 - 1)


def test_sharpe_and_sortino_are_per_candle_annualised_over_365_days() -> None:
    returns = [0.1, -0.1, 0.1]
    mean = sum(returns) / 3
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / 2)
    downside = math.sqrt(sum(min(r, 0) ** 2 for r in returns) / 3)

    m = compute_metrics(hand_result())

    assert m["sharpe"] == pytest.approx(mean / std * math.sqrt(365))
    assert m["sortino"] == pytest.approx(mean / downside * math.sqrt(365))
    assert "sqrt(365)" in m["annualisation"]


def test_trade_statistics_match_hand_computation() -> None:
    pnl_win = 0.999 * 110 - 0.10989 - 100  # 9.78011
    m = compute_metrics(hand_result())

    assert m["trades"] == 2
    assert m["win_rate"] == pytest.approx(0.5)
    assert m["profit_factor"] == pytest.approx(pnl_win / 5)
    assert m["avg_trade_duration_s"] == pytest.approx(90.0)
    assert m["fees_paid"] == pytest.approx(0.001 * 100 + 0.10989)
    assert m["exposure"] == pytest.approx(1 / 3)


def test_profit_factor_is_none_without_a_losing_trade() -> None:
    result = hand_result()
    result.fills = result.fills[:2]

    assert compute_metrics(result)["profit_factor"] is None


def test_dust_left_by_a_trip_is_carried_into_the_next_one() -> None:
    fills = [
        fill(0, "BUY", "100", "1", "0.001", "BTC"),  # holds 0.999
        fill(1, "SELL", "110", "0.99", "0", "USDT", closes=True),  # leaves 0.009 dust
        fill(2, "BUY", "120", "1", "0", "BTC"),
        fill(3, "SELL", "130", "1.009", "0", "USDT", closes=True),  # sells the dust too
    ]

    first, second = round_trips(fills, "USDT")

    assert first.pnl == D("0.99") * 110 + D("0.009") * 110 - 100
    assert second.pnl == D("1.009") * 130 - 120 - D("0.009") * 120


def test_write_report_makes_json_html_and_an_index(tmp_path) -> None:
    json_path, html_path = write_report(hand_result(), tmp_path, name="hand")

    report = json.loads(json_path.read_text())
    index = json.loads((tmp_path / "index.json").read_text())
    page = html_path.read_text()
    assert report["metrics"]["trades"] == 2 and len(report["trades"]) == 2
    assert index["reports"][0]["html"] == "hand.html"
    assert "<svg" in page and "<script" not in page and "http" not in page.split("<body>")[1]
