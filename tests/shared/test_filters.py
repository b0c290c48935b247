"""Tests of shared.filters: parsing real exchangeInfo, rounding on the grid, Binance's -1013."""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

import pytest

from shared.errors import InvalidOrderError
from shared.filters import (
    FilterFailure,
    SymbolFilters,
    check_order,
    default_symbols,
    min_qty_for_notional,
    parse_exchange_info,
    round_price,
    round_qty,
    round_to_step,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "exchange_info"


def _load(name: str) -> dict:
    return json.loads((DATA / name).read_text())


@pytest.fixture
def btc() -> SymbolFilters:
    return default_symbols()["BTCUSDT"]


def _with_notional_filter() -> SymbolFilters:
    entry = {
        "symbol": "BTCUSDT", "baseAsset": "BTC", "quoteAsset": "USDT",
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000",
             "tickSize": "0.01"},
            {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000",
             "stepSize": "0.00001"},
            {"filterType": "NOTIONAL", "minNotional": "5", "applyMinToMarket": True,
             "maxNotional": "9000000", "applyMaxToMarket": False, "avgPriceMins": 5},
        ],
    }
    return SymbolFilters.from_exchange_info(entry)


# ---------------------------------------------------------------- parsing


def test_parse_real_btcusdt_exchange_info():
    payload = _load("exchangeInfo_BTCUSDT_20221211_basana.json")

    filters = parse_exchange_info(payload)["BTCUSDT"]

    assert (filters.base_asset, filters.quote_asset) == ("BTC", "USDT")
    assert filters.tick_size == D("0.01")
    assert (filters.step_size, filters.min_qty, filters.max_qty) == (D("0.00001"), D("0.00001"),
                                                                     D("9000"))
    assert (filters.min_notional, filters.notional_filter_type) == (D("10"), "MIN_NOTIONAL")
    assert filters.market_max_qty == D("328.37710865")
    assert filters.percent_price is not None
    assert filters.percent_price.bid_multiplier_up == D("5")
    assert filters.max_num_orders == 200
    assert filters.max_num_algo_orders == 5


def test_default_symbols_match_the_real_samples():
    btc = parse_exchange_info(_load("exchangeInfo_BTCUSDT_20221211_basana.json"))
    older = parse_exchange_info(_load("exchangeInfo_BTCUSDT_ETHUSDT_BNBUSDT_20211011_extract.json"))

    defaults = default_symbols()

    assert defaults["BTCUSDT"] == btc["BTCUSDT"]
    assert defaults["ETHUSDT"] == older["ETHUSDT"]
    assert defaults["BNBUSDT"] == older["BNBUSDT"]
    assert defaults["BNBUSDT"].tick_size == D("0.1")


def test_parse_notional_filter_sets_min_and_max():
    filters = _with_notional_filter()

    assert filters.notional_filter_type == "NOTIONAL"
    assert (filters.min_notional, filters.max_notional) == (D("5"), D("9000000"))


def test_to_exchange_info_round_trips(btc):
    again = SymbolFilters.from_exchange_info(btc.to_exchange_info())

    assert again == btc


# ---------------------------------------------------------------- rounding


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("down", D("30000.12")), ("up", D("30000.13")), ("nearest", D("30000.13"))],
)
def test_round_price_to_tick(btc, mode, expected):
    rounded = round_price(D("30000.126"), btc, mode)

    assert rounded == expected
    assert isinstance(rounded, D)


def test_round_price_nearest_half_goes_up(btc):
    assert round_price(D("1.005"), btc, "nearest") == D("1.01")


def test_round_qty_always_rounds_down(btc):
    assert round_qty(D("0.123456789"), btc) == D("0.12345")


def test_round_to_step_with_zero_step_leaves_value():
    assert round_to_step(D("1.23456"), D("0")) == D("1.23456")


def test_min_qty_for_notional_rounds_up_to_step(btc):
    qty = min_qty_for_notional(btc, D("30000"))

    assert qty == D("0.00034")
    assert qty * D("30000") >= btc.min_notional


# ---------------------------------------------------------------- checks


def test_valid_limit_order_passes(btc):
    check_order(btc, "BUY", "LIMIT", D("30000.01"), D("0.001"))


def test_price_off_tick_fails_price_filter(btc):
    with pytest.raises(FilterFailure) as err:
        check_order(btc, "BUY", "LIMIT", D("30000.001"), D("0.001"))

    assert err.value.code == -1013
    assert err.value.msg == "Filter failure: PRICE_FILTER"
    assert isinstance(err.value, InvalidOrderError)


def test_price_above_max_fails_price_filter(btc):
    with pytest.raises(FilterFailure, match="Filter failure: PRICE_FILTER"):
        check_order(btc, "SELL", "LIMIT", D("1000000.01"), D("0.001"))


def test_stop_price_off_tick_fails_price_filter(btc):
    with pytest.raises(FilterFailure, match="Filter failure: PRICE_FILTER"):
        check_order(btc, "SELL", "STOP_LOSS_LIMIT", D("29000"), D("0.001"),
                    stop_price=D("29000.005"))


def test_qty_off_step_fails_lot_size(btc):
    with pytest.raises(FilterFailure) as err:
        check_order(btc, "BUY", "LIMIT", D("30000"), D("0.000015"))

    assert err.value.msg == "Filter failure: LOT_SIZE"


def test_qty_below_min_fails_lot_size(btc):
    with pytest.raises(FilterFailure, match="Filter failure: LOT_SIZE"):
        check_order(btc, "BUY", "LIMIT", D("30000"), D("0"))


def test_market_qty_above_market_max_fails_market_lot_size(btc):
    with pytest.raises(FilterFailure, match="Filter failure: MARKET_LOT_SIZE"):
        check_order(btc, "SELL", "MARKET", None, D("400"), avg_price=D("30000"))


def test_small_notional_fails_legacy_min_notional(btc):
    with pytest.raises(FilterFailure) as err:
        check_order(btc, "BUY", "LIMIT", D("30000"), D("0.0003"))

    assert err.value.msg == "Filter failure: MIN_NOTIONAL"


def test_small_notional_fails_notional():
    filters = _with_notional_filter()

    with pytest.raises(FilterFailure) as err:
        check_order(filters, "BUY", "LIMIT", D("30000"), D("0.0001"))

    assert err.value.msg == "Filter failure: NOTIONAL"


def test_large_notional_fails_notional_max():
    filters = _with_notional_filter()

    with pytest.raises(FilterFailure, match="Filter failure: NOTIONAL"):
        check_order(filters, "BUY", "LIMIT", D("100000"), D("100"))


def test_market_notional_uses_the_average_price(btc):
    with pytest.raises(FilterFailure, match="Filter failure: MIN_NOTIONAL"):
        check_order(btc, "BUY", "MARKET", None, D("0.0003"), avg_price=D("30000"))


def test_quote_order_qty_below_min_notional_fails(btc):
    with pytest.raises(FilterFailure, match="Filter failure: MIN_NOTIONAL"):
        check_order(btc, "BUY", "MARKET", None, None, quote_order_qty=D("9.99"))


def test_buy_far_above_average_fails_percent_price_by_side(btc):
    with pytest.raises(FilterFailure) as err:
        check_order(btc, "BUY", "LIMIT", D("150001"), D("0.001"), avg_price=D("30000"))

    assert err.value.msg == "Filter failure: PERCENT_PRICE_BY_SIDE"


def test_legacy_percent_price_names_its_filter():
    eth = default_symbols()["ETHUSDT"]

    with pytest.raises(FilterFailure, match="Filter failure: PERCENT_PRICE$"):
        check_order(eth, "SELL", "LIMIT", D("100"), D("1"), avg_price=D("3000"))


def test_too_many_open_orders_fails_max_num_orders(btc):
    with pytest.raises(FilterFailure, match="Filter failure: MAX_NUM_ORDERS"):
        check_order(btc, "BUY", "LIMIT", D("30000"), D("0.001"), open_orders=200)


def test_too_many_stops_fails_max_num_algo_orders(btc):
    with pytest.raises(FilterFailure, match="Filter failure: MAX_NUM_ALGO_ORDERS"):
        check_order(btc, "SELL", "STOP_LOSS_LIMIT", D("29000"), D("0.001"),
                    stop_price=D("29100"), open_orders=5, open_algo_orders=5)
