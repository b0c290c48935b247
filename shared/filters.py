"""Binance Spot symbol filters: parse exchangeInfo, round to tick/step, check an order.

Shared by execution (to round and check before sending), the exchange simulator and the
backtester (to refuse what Binance refuses, with Binance's code -1013 and message).
Decimal only; a float never touches a price or a quantity here.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any

from shared.errors import InvalidOrderError

ZERO = Decimal(0)
FILTER_FAILURE_CODE = -1013

ROUND_DOWN = "down"
ROUND_UP = "up"
ROUND_NEAREST = "nearest"
_ROUNDING = {ROUND_DOWN: ROUND_FLOOR, ROUND_UP: ROUND_CEILING, ROUND_NEAREST: ROUND_HALF_UP}

PRICED_TYPES = frozenset({"LIMIT", "LIMIT_MAKER", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"})
STOP_TYPES = frozenset({"STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"})
MARKET_TYPES = frozenset({"MARKET", "STOP_LOSS", "TAKE_PROFIT"})


class FilterFailure(InvalidOrderError):
    """-1013 "Filter failure: <FILTER>"; ``filter_type`` names the filter, ``msg`` is Binance's."""

    def __init__(self, filter_type: str) -> None:
        self.filter_type = filter_type
        self.msg = f"Filter failure: {filter_type}"
        super().__init__(self.msg, FILTER_FAILURE_CODE)


@dataclass(frozen=True)
class PercentPriceBySide:
    """PERCENT_PRICE_BY_SIDE multipliers around the average price (PERCENT_PRICE: same both)."""

    bid_multiplier_up: Decimal
    bid_multiplier_down: Decimal
    ask_multiplier_up: Decimal
    ask_multiplier_down: Decimal
    avg_price_mins: int = 5
    filter_type: str = "PERCENT_PRICE_BY_SIDE"


@dataclass(frozen=True)
class SymbolFilters:
    """The trading rules of one symbol, from its exchangeInfo entry. A zero bound is off."""

    symbol: str
    base_asset: str
    quote_asset: str
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_price: Decimal = ZERO
    max_price: Decimal = ZERO
    min_notional: Decimal = ZERO
    max_notional: Decimal = ZERO
    apply_min_to_market: bool = True
    apply_max_to_market: bool = False
    notional_filter_type: str = "NOTIONAL"  # or the legacy "MIN_NOTIONAL"
    market_min_qty: Decimal = ZERO
    market_max_qty: Decimal = ZERO
    market_step_size: Decimal = ZERO
    percent_price: PercentPriceBySide | None = None
    max_num_orders: int = 0
    max_num_algo_orders: int = 0
    status: str = "TRADING"
    base_asset_precision: int = 8
    quote_asset_precision: int = 8
    order_types: tuple[str, ...] = (
        "LIMIT",
        "LIMIT_MAKER",
        "MARKET",
        "STOP_LOSS_LIMIT",
        "TAKE_PROFIT_LIMIT",
    )
    oco_allowed: bool = True
    quote_order_qty_market_allowed: bool = True
    raw_filters: tuple[Mapping[str, Any], ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def from_exchange_info(cls, entry: Mapping[str, Any]) -> SymbolFilters:
        """Parse one element of exchangeInfo ``symbols``."""
        kwargs: dict[str, Any] = {
            "symbol": entry["symbol"],
            "base_asset": entry["baseAsset"],
            "quote_asset": entry["quoteAsset"],
            "status": entry.get("status", "TRADING"),
            "base_asset_precision": int(entry.get("baseAssetPrecision", 8)),
            "quote_asset_precision": int(entry.get("quoteAssetPrecision", 8)),
            "order_types": tuple(entry.get("orderTypes", cls.order_types)),
            "oco_allowed": bool(entry.get("ocoAllowed", True)),
            "quote_order_qty_market_allowed": bool(entry.get("quoteOrderQtyMarketAllowed", True)),
            "tick_size": ZERO,
            "step_size": ZERO,
            "min_qty": ZERO,
            "max_qty": ZERO,
        }
        filters = tuple(entry.get("filters", ()))
        for flt in filters:
            kwargs.update(_parse_filter(flt))
        return cls(raw_filters=filters, **kwargs)

    def to_exchange_info(self) -> dict[str, Any]:
        """An exchangeInfo ``symbols`` element (what the simulator serves)."""
        return {
            "symbol": self.symbol,
            "status": self.status,
            "baseAsset": self.base_asset,
            "baseAssetPrecision": self.base_asset_precision,
            "quoteAsset": self.quote_asset,
            "quotePrecision": self.quote_asset_precision,
            "quoteAssetPrecision": self.quote_asset_precision,
            "baseCommissionPrecision": self.base_asset_precision,
            "quoteCommissionPrecision": self.quote_asset_precision,
            "orderTypes": list(self.order_types),
            "icebergAllowed": False,
            "ocoAllowed": self.oco_allowed,
            "otoAllowed": False,
            "quoteOrderQtyMarketAllowed": self.quote_order_qty_market_allowed,
            "allowTrailingStop": False,
            "cancelReplaceAllowed": False,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [dict(f) for f in self.raw_filters] or self._built_filters(),
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "NONE",
            "allowedSelfTradePreventionModes": ["NONE"],
        }

    def _built_filters(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": _s(self.min_price),
                "maxPrice": _s(self.max_price),
                "tickSize": _s(self.tick_size),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": _s(self.min_qty),
                "maxQty": _s(self.max_qty),
                "stepSize": _s(self.step_size),
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": _s(self.min_notional),
                "applyMinToMarket": self.apply_min_to_market,
                "maxNotional": _s(self.max_notional),
                "applyMaxToMarket": self.apply_max_to_market,
                "avgPriceMins": 5,
            },
        ]
        if self.max_num_orders:
            out.append({"filterType": "MAX_NUM_ORDERS", "maxNumOrders": self.max_num_orders})
        return out


def _s(value: Decimal) -> str:
    return f"{value:.8f}"


def _dec(value: Any) -> Decimal:
    return Decimal(str(value))


def _parse_filter(flt: Mapping[str, Any]) -> dict[str, Any]:
    """The SymbolFilters fields one exchangeInfo filter sets; unknown filters set nothing."""
    kind = flt.get("filterType")
    if kind == "PRICE_FILTER":
        return {
            "min_price": _dec(flt["minPrice"]),
            "max_price": _dec(flt["maxPrice"]),
            "tick_size": _dec(flt["tickSize"]),
        }
    if kind in ("LOT_SIZE", "MARKET_LOT_SIZE"):
        prefix = "" if kind == "LOT_SIZE" else "market_"
        return {
            f"{prefix}min_qty": _dec(flt["minQty"]),
            f"{prefix}max_qty": _dec(flt["maxQty"]),
            f"{prefix}step_size": _dec(flt["stepSize"]),
        }
    if kind == "NOTIONAL":
        return {
            "notional_filter_type": "NOTIONAL",
            "min_notional": _dec(flt.get("minNotional", "0")),
            "max_notional": _dec(flt.get("maxNotional", "0")),
            "apply_min_to_market": bool(flt.get("applyMinToMarket", True)),
            "apply_max_to_market": bool(flt.get("applyMaxToMarket", False)),
        }
    if kind == "MIN_NOTIONAL":
        return {
            "notional_filter_type": "MIN_NOTIONAL",
            "min_notional": _dec(flt["minNotional"]),
            "apply_min_to_market": bool(flt.get("applyToMarket", True)),
        }
    if kind == "PERCENT_PRICE_BY_SIDE":
        return {"percent_price": PercentPriceBySide(
            _dec(flt["bidMultiplierUp"]), _dec(flt["bidMultiplierDown"]),
            _dec(flt["askMultiplierUp"]), _dec(flt["askMultiplierDown"]),
            int(flt.get("avgPriceMins", 5)),
        )}
    if kind == "PERCENT_PRICE":
        up, down = _dec(flt["multiplierUp"]), _dec(flt["multiplierDown"])
        return {"percent_price": PercentPriceBySide(
            up, down, up, down, int(flt.get("avgPriceMins", 5)), "PERCENT_PRICE"
        )}
    if kind == "MAX_NUM_ORDERS":
        return {"max_num_orders": int(flt["maxNumOrders"])}
    if kind == "MAX_NUM_ALGO_ORDERS":
        return {"max_num_algo_orders": int(flt["maxNumAlgoOrders"])}
    return {}


def parse_exchange_info(payload: Mapping[str, Any]) -> dict[str, SymbolFilters]:
    """Every symbol of a GET /api/v3/exchangeInfo response, by symbol name."""
    return {
        entry["symbol"]: SymbolFilters.from_exchange_info(entry)
        for entry in payload.get("symbols", ())
    }


# --------------------------------------------------------------------------- rounding


def round_to_step(value: Decimal, step: Decimal, mode: str = ROUND_DOWN) -> Decimal:
    """``value`` rounded to a multiple of ``step`` (down, up or nearest); step 0 leaves it."""
    if step <= 0:
        return value
    units = (value / step).to_integral_value(rounding=_ROUNDING[mode])
    return units * step


def round_price(price: Decimal, filters: SymbolFilters, mode: str = ROUND_DOWN) -> Decimal:
    """``price`` on the symbol's tick grid (tickSize), rounded down, up or to nearest."""
    return round_to_step(price, filters.tick_size, mode)


def round_qty(qty: Decimal, filters: SymbolFilters, is_market: bool = False) -> Decimal:
    """``qty`` rounded **down** to stepSize (and to MARKET_LOT_SIZE step for MARKET)."""
    qty = round_to_step(qty, filters.step_size, ROUND_DOWN)
    if is_market:
        qty = round_to_step(qty, filters.market_step_size, ROUND_DOWN)
    return qty


def can_sell(filters: SymbolFilters, qty: Decimal, price: Decimal) -> bool:
    """Whether the exchange takes a SELL of ``qty`` at ``price``: rounded down to the step
    (it sells whole steps), at least minQty and minNotional. A holding that fails can be
    neither sold nor protected on its own."""
    whole = round_to_step(qty, filters.step_size, ROUND_DOWN)
    return whole >= filters.min_qty and whole * price >= filters.min_notional


def min_qty_for_notional(filters: SymbolFilters, price: Decimal) -> Decimal:
    """The smallest valid quantity whose notional at ``price`` meets minNotional and minQty."""
    needed = filters.min_qty
    if filters.min_notional > 0 and price > 0:
        needed = max(needed, filters.min_notional / price)
    return round_to_step(needed, filters.step_size, ROUND_UP)


# --------------------------------------------------------------------------- checks


def check_order(
    filters: SymbolFilters,
    side: str,
    order_type: str,
    price: Decimal | None,
    qty: Decimal | None,
    *,
    stop_price: Decimal | None = None,
    quote_order_qty: Decimal | None = None,
    avg_price: Decimal | None = None,
    open_orders: int | None = None,
    open_algo_orders: int | None = None,
) -> None:
    """Raise FilterFailure (-1013 "Filter failure: X") if Binance would refuse this order.

    ``price`` is the limit price (None for MARKET); ``qty`` None for a quoteOrderQty MARKET.
    ``avg_price`` is the reference price for MARKET notional and PERCENT_PRICE(_BY_SIDE);
    those checks are skipped without it. ``open_orders``/``open_algo_orders`` are the counts
    already open on the symbol (MAX_NUM_ORDERS / MAX_NUM_ALGO_ORDERS), skipped when None.
    """
    is_market = order_type in MARKET_TYPES
    if order_type in PRICED_TYPES:
        _check_price(filters, price)
    if order_type in STOP_TYPES:
        _check_price(filters, stop_price)
    if not is_market and price is not None:
        _check_percent_price(filters, side, price, avg_price)
    if qty is not None:
        _check_lot(filters, qty, is_market)
    _check_notional(filters, is_market, price, qty, quote_order_qty, avg_price)
    if filters.max_num_orders and open_orders is not None:
        if open_orders + 1 > filters.max_num_orders:
            raise FilterFailure("MAX_NUM_ORDERS")
    if filters.max_num_algo_orders and open_algo_orders is not None and order_type in STOP_TYPES:
        if open_algo_orders + 1 > filters.max_num_algo_orders:
            raise FilterFailure("MAX_NUM_ALGO_ORDERS")


def _off_grid(value: Decimal, origin: Decimal, step: Decimal) -> bool:
    return step > 0 and (value - origin) % step != 0


def _check_price(filters: SymbolFilters, price: Decimal | None) -> None:
    if price is None or price <= 0:
        raise FilterFailure("PRICE_FILTER")
    if filters.min_price > 0 and price < filters.min_price:
        raise FilterFailure("PRICE_FILTER")
    if filters.max_price > 0 and price > filters.max_price:
        raise FilterFailure("PRICE_FILTER")
    if _off_grid(price, filters.min_price, filters.tick_size):
        raise FilterFailure("PRICE_FILTER")


def _check_percent_price(
    filters: SymbolFilters, side: str, price: Decimal, avg_price: Decimal | None
) -> None:
    band = filters.percent_price
    if band is None or avg_price is None or avg_price <= 0:
        return
    if side == "BUY":
        low, high = band.bid_multiplier_down, band.bid_multiplier_up
    else:
        low, high = band.ask_multiplier_down, band.ask_multiplier_up
    if not avg_price * low <= price <= avg_price * high:
        raise FilterFailure(band.filter_type)


def _check_lot(filters: SymbolFilters, qty: Decimal, is_market: bool) -> None:
    if qty <= 0:
        raise FilterFailure("LOT_SIZE")
    if qty < filters.min_qty or (filters.max_qty > 0 and qty > filters.max_qty):
        raise FilterFailure("LOT_SIZE")
    if _off_grid(qty, filters.min_qty, filters.step_size):
        raise FilterFailure("LOT_SIZE")
    if not is_market:
        return
    if qty < filters.market_min_qty:
        raise FilterFailure("MARKET_LOT_SIZE")
    if filters.market_max_qty > 0 and qty > filters.market_max_qty:
        raise FilterFailure("MARKET_LOT_SIZE")
    if _off_grid(qty, filters.market_min_qty, filters.market_step_size):
        raise FilterFailure("MARKET_LOT_SIZE")


def _check_notional(
    filters: SymbolFilters,
    is_market: bool,
    price: Decimal | None,
    qty: Decimal | None,
    quote_order_qty: Decimal | None,
    avg_price: Decimal | None,
) -> None:
    if is_market:
        if quote_order_qty is not None:
            notional: Decimal | None = quote_order_qty
        elif qty is not None and avg_price is not None:
            notional = qty * avg_price
        else:
            notional = None
        check_min, check_max = filters.apply_min_to_market, filters.apply_max_to_market
    else:
        notional = price * qty if price is not None and qty is not None else None
        check_min, check_max = True, True
    if notional is None:
        return
    if check_min and filters.min_notional > 0 and notional < filters.min_notional:
        raise FilterFailure(filters.notional_filter_type)
    if check_max and filters.max_notional > 0 and notional > filters.max_notional:
        raise FilterFailure(filters.notional_filter_type)


# --------------------------------------------------------------------------- defaults

# Verbatim exchangeInfo entries (filters only): BTCUSDT from basana's 2022-12-11 capture,
# ETHUSDT and BNBUSDT from cryptofeed's 2021-10-11 capture. Copies and provenance are in
# tests/data/exchange_info/ (PROVENANCE.md); a test checks these equal the copies.
_DEFAULT_ENTRIES: tuple[dict[str, Any], ...] = (
    {
        "symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT",
        "baseAssetPrecision": 8, "quoteAssetPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "ocoAllowed": True, "quoteOrderQtyMarketAllowed": True,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.01000000",
             "maxPrice": "1000000.00000000", "tickSize": "0.01000000"},
            {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000",
             "stepSize": "0.00001000"},
            {"filterType": "MIN_NOTIONAL", "minNotional": "10.00000000", "applyToMarket": True,
             "avgPriceMins": 5},
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": "328.37710865",
             "stepSize": "0.00000000"},
            {"filterType": "TRAILING_DELTA", "minTrailingAboveDelta": 10,
             "maxTrailingAboveDelta": 2000, "minTrailingBelowDelta": 10,
             "maxTrailingBelowDelta": 2000},
            {"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": "5",
             "bidMultiplierDown": "0.2", "askMultiplierUp": "5", "askMultiplierDown": "0.2",
             "avgPriceMins": 5},
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ],
    },
    {
        "symbol": "ETHUSDT", "status": "TRADING", "baseAsset": "ETH", "quoteAsset": "USDT",
        "baseAssetPrecision": 8, "quoteAssetPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "ocoAllowed": True, "quoteOrderQtyMarketAllowed": True,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.01000000",
             "maxPrice": "1000000.00000000", "tickSize": "0.01000000"},
            {"filterType": "PERCENT_PRICE", "multiplierUp": "5", "multiplierDown": "0.2",
             "avgPriceMins": 5},
            {"filterType": "LOT_SIZE", "minQty": "0.00010000", "maxQty": "9000.00000000",
             "stepSize": "0.00010000"},
            {"filterType": "MIN_NOTIONAL", "minNotional": "10.00000000", "applyToMarket": True,
             "avgPriceMins": 5},
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": "1600.51202668",
             "stepSize": "0.00000000"},
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ],
    },
    {
        "symbol": "BNBUSDT", "status": "TRADING", "baseAsset": "BNB", "quoteAsset": "USDT",
        "baseAssetPrecision": 8, "quoteAssetPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "ocoAllowed": True, "quoteOrderQtyMarketAllowed": True,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.10000000",
             "maxPrice": "100000.00000000", "tickSize": "0.10000000"},
            {"filterType": "PERCENT_PRICE", "multiplierUp": "5", "multiplierDown": "0.2",
             "avgPriceMins": 5},
            {"filterType": "LOT_SIZE", "minQty": "0.00100000", "maxQty": "900000.00000000",
             "stepSize": "0.00100000"},
            {"filterType": "MIN_NOTIONAL", "minNotional": "10.00000000", "applyToMarket": True,
             "avgPriceMins": 5},
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": "28160.59336900",
             "stepSize": "0.00000000"},
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ],
    },
)


def default_symbols() -> dict[str, SymbolFilters]:
    """Real Binance filters for BTCUSDT, ETHUSDT and BNBUSDT, by symbol."""
    return {e["symbol"]: SymbolFilters.from_exchange_info(e) for e in _DEFAULT_ENTRIES}


def symbols_by_name(symbols: Iterable[SymbolFilters]) -> dict[str, SymbolFilters]:
    """Index SymbolFilters by symbol name."""
    return {f.symbol: f for f in symbols}


@functools.cache
def _default_filters() -> dict[str, SymbolFilters]:
    return default_symbols()


def known_filters(symbol: str) -> SymbolFilters | None:
    """The filters of ``symbol`` if it is one of :func:`default_symbols` (parsed once)."""
    return _default_filters().get(symbol)


def sellable(symbol: str, qty: Decimal, price: Decimal) -> bool:
    """:func:`can_sell` by the filters of ``symbol``; for a symbol whose filters are not known
    here, its value against :func:`dust_notional` decides."""
    f = known_filters(symbol)
    if f is None:
        return qty * price >= dust_notional()
    return can_sell(f, qty, price)


def dust_notional() -> Decimal:
    """Below this quote value a holding cannot be sold on its own (it is under every default
    symbol's minimum notional): a round trip that leaves only this much is closed, and a
    strategy treats the bot as flat. Binance's BUY commission, taken in the base asset, always
    leaves such a remainder once the sell quantity is rounded down to the step."""
    return min(f.min_notional for f in _default_filters().values())
