"""SCALPING: entry on spread + depth imbalance, exits on TP/SL, imbalance and holding time."""

from __future__ import annotations

from decimal import Decimal

import pytest

from shared.strategies.base import Book, Fill, MarketInfo, Position
from shared.strategies.scalping import SCALPING_PARAMS, ScalpingStrategy

T0_MS = 1_723_161_254_087
TICK = 0.01


def scalper(**params: object) -> ScalpingStrategy:
    return ScalpingStrategy(
        "scalp-1", SCALPING_PARAMS.validate(params, partial=True), MarketInfo(Decimal("0.01"))
    )


def book(ts_ms: int, bid_sizes: list[float], ask_sizes: list[float], bid: float = 60_000.0,
         spread_ticks: int = 1) -> Book:
    ask = round(bid + spread_ticks * TICK, 2)
    bids = tuple((round(bid - k * TICK, 2), q) for k, q in enumerate(bid_sizes))
    asks = tuple((round(ask + k * TICK, 2), q) for k, q in enumerate(ask_sizes))
    return Book(ts_ms, bid, bid_sizes[0], ask, ask_sizes[0], bids, asks)


BID_HEAVY = ([3.0] * 5, [1.0] * 5)  # ratio 3 over the top 5 levels
BALANCED = ([1.0] * 5, [1.0] * 5)


def entered(**params: object) -> ScalpingStrategy:
    """A scalper that bought 0.001 at 60,000.01 at T0."""
    strategy = scalper(**params)
    (buy,) = strategy.on_book(book(T0_MS, *BID_HEAVY))
    strategy.on_fill(Fill("BUY", "60000.01", "0.001", T0_MS, buy.intent_id))
    return strategy


def test_enters_on_imbalance_with_a_tight_spread() -> None:
    strategy = scalper(imbalance_threshold="1.5", max_spread_ticks=2)

    (buy,) = strategy.on_book(book(T0_MS, *BID_HEAVY))

    assert (buy.side, buy.order_type, buy.time_in_force) == ("BUY", "LIMIT", "GTC")
    assert buy.limit_price == Decimal("60000.01")  # the best ask, as the original bot did
    assert buy.quote_amount == Decimal("20") and buy.ttl_ms == 5000
    assert float(buy.stop_loss) == pytest.approx(60000.01 * 0.999)
    assert float(buy.take_profit) == pytest.approx(60000.01 * 1.001)
    assert buy.reason.startswith("imbalance")
    assert buy.intent_id == f"scalp-1-{T0_MS}-0"


def test_market_entry_has_no_limit_price() -> None:
    (buy,) = scalper(order_type="MARKET").on_book(book(T0_MS, *BID_HEAVY))

    assert buy.order_type == "MARKET" and buy.limit_price is None and buy.ttl_ms is None


def test_no_entry_when_the_spread_is_too_wide() -> None:
    strategy = scalper(max_spread_ticks=2)

    assert strategy.on_book(book(T0_MS, *BID_HEAVY, spread_ticks=3)) == []
    assert len(strategy.on_book(book(T0_MS + 1, *BID_HEAVY, spread_ticks=2))) == 1


def test_no_entry_when_the_imbalance_is_not_above_threshold() -> None:
    strategy = scalper(imbalance_threshold="1.5")

    assert strategy.on_book(book(T0_MS, [1.5] * 5, [1.0] * 5)) == []  # exactly 1.5
    assert strategy.on_book(book(T0_MS + 1, *BALANCED)) == []


def test_imbalance_counts_only_the_top_levels() -> None:
    strategy = scalper(depth_levels=5)
    deep_bids = [1.0] * 5 + [100.0] * 5  # heavy, but below the top five levels

    assert strategy.imbalance(book(T0_MS, deep_bids, [1.0] * 10)) == pytest.approx(1.0)
    assert scalper(depth_levels=10).imbalance(book(T0_MS, deep_bids, [1.0] * 10)) > 1.5


def test_without_depth_the_best_sizes_stand_in() -> None:
    strategy = scalper()

    top_only = Book(T0_MS, 60_000.0, 4.0, 60_000.01, 1.0)

    assert strategy.imbalance(top_only) == pytest.approx(4.0)


def test_a_pending_entry_blocks_a_second_until_its_ttl_passes() -> None:
    strategy = scalper(limit_order_timeout_ms=5000, cooldown_ms=0)
    strategy.on_book(book(T0_MS, *BID_HEAVY))

    assert strategy.on_book(book(T0_MS + 4999, *BID_HEAVY)) == []
    assert len(strategy.on_book(book(T0_MS + 5000, *BID_HEAVY))) == 1


def test_exits_on_maximum_holding_time_by_data_time() -> None:
    strategy = entered(max_hold_s=60, imbalance_exit=False)

    assert strategy.on_book(book(T0_MS + 59_999, *BALANCED)) == []
    (sell,) = strategy.on_book(book(T0_MS + 60_000, *BALANCED))

    assert (sell.side, sell.order_type, sell.base_qty) == ("SELL", "MARKET", Decimal("0.001"))
    assert sell.reason.startswith("max_hold_time")
    assert sell.intent_id == f"scalp-1-{T0_MS + 60_000}-0"


def test_holding_time_starts_at_the_first_book_when_the_position_has_no_time() -> None:
    strategy = scalper(max_hold_s=10, imbalance_exit=False)
    strategy.on_position(Position(Decimal("0.001"), Decimal("60000.01")))  # e.g. after a restart

    assert strategy.on_book(book(T0_MS, *BALANCED)) == []
    assert strategy.on_book(book(T0_MS + 9_999, *BALANCED)) == []
    assert len(strategy.on_book(book(T0_MS + 10_000, *BALANCED))) == 1


def test_a_later_snapshot_without_a_time_keeps_the_known_entry_time() -> None:
    strategy = entered(max_hold_s=60, imbalance_exit=False)

    strategy.on_position(Position(Decimal("0.001"), Decimal("60000.01")))

    assert strategy.entry_time_ms == T0_MS


def test_exits_on_take_profit_and_stop_loss_against_the_bid() -> None:
    take = entered(take_profit_pct="0.1", imbalance_exit=False)
    stop = entered(stop_loss_pct="0.1", imbalance_exit=False)

    (tp,) = take.on_book(book(T0_MS + 1, *BALANCED, bid=60_060.08))
    (sl,) = stop.on_book(book(T0_MS + 1, *BALANCED, bid=59_939.99))

    assert tp.reason.startswith("take_profit") and sl.reason.startswith("stop_loss")


def test_exits_when_the_imbalance_turns_against_the_position() -> None:
    strategy = entered(imbalance_threshold="1.5")

    assert strategy.on_book(book(T0_MS + 1, *BALANCED)) == []
    (sell,) = strategy.on_book(book(T0_MS + 2, [1.0] * 5, [2.0] * 5))  # ratio 0.5 < 1/1.5

    assert sell.reason.startswith("imbalance_exit")


def test_no_new_entry_within_the_cooldown_after_an_exit() -> None:
    strategy = entered(max_hold_s=1, imbalance_exit=False, cooldown_ms=2000)
    (sell,) = strategy.on_book(book(T0_MS + 1000, *BALANCED))
    strategy.on_fill(Fill("SELL", "60000.00", "0.001", T0_MS + 1000, sell.intent_id))

    assert strategy.on_book(book(T0_MS + 2999, *BID_HEAVY)) == []
    assert len(strategy.on_book(book(T0_MS + 3000, *BID_HEAVY))) == 1


def test_out_of_order_and_crossed_books_are_ignored() -> None:
    strategy = scalper()
    strategy.on_book(book(T0_MS, *BALANCED))

    assert strategy.on_book(book(T0_MS - 1, *BID_HEAVY)) == []
    crossed = Book(T0_MS + 1, 60_000.02, 3.0, 60_000.00, 1.0)
    assert strategy.on_book(crossed) == []


def test_candles_do_nothing_for_a_book_strategy() -> None:
    assert scalper().warmup_candles() == 0
    assert ScalpingStrategy.needs == frozenset({"book", "depth"})
