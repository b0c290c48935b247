"""Every message that crosses a process boundary, as a frozen dataclass.

Each class registers its ``type`` name; ``to_dict``/``from_dict`` convert to and from the
plain map the codec packs. Decimal fields travel as strings and come back as ``Decimal``.
Commands are imperative (``SubmitIntent``), events past tense (``OrderUpdated``).
Unknown keys are ignored on decode so an older reader accepts a newer sender's message.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Self, Union

from shared.errors import CodecError

SCHEMA_VERSION = 1

REGISTRY: dict[str, type[Message]] = {}


def message[M: Message](cls: type[M]) -> type[M]:
    """Class decorator: make ``cls`` a frozen dataclass and register it under its name."""
    cls = dataclass(frozen=True, slots=True)(cls)
    name = cls.__name__
    if name in REGISTRY:
        raise TypeError(f"message type {name!r} registered twice")
    REGISTRY[name] = cls
    return cls


class Message:
    """Base of all messages; subclasses are declared with ``@message``."""

    __slots__ = ()

    @property
    def type(self) -> str:
        return type(self).__name__

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": type(self).__name__, "v": SCHEMA_VERSION}
        for name, _, _ in _plan(type(self)):
            out[name] = _encode_value(getattr(self, name))
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        kwargs: dict[str, Any] = {}
        for name, convert, required in _plan(cls):
            if name in data:
                kwargs[name] = convert(data[name], f"{cls.__name__}.{name}")
            elif required:
                raise CodecError(f"{cls.__name__}: missing field {name!r}")
        return cls(**kwargs)


def from_dict(data: dict[str, Any]) -> Message:
    """Build the registered message named by ``data['type']``."""
    if not isinstance(data, dict):
        raise CodecError(f"a message must be a map, got {type(data).__name__}")
    name = data.get("type")
    cls = REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None:
        raise CodecError(f"unknown message type {name!r}")
    return cls.from_dict(data)


Converter = Callable[[Any, str], Any]


@functools.cache
def _plan(cls: type) -> tuple[tuple[str, Converter, bool], ...]:
    """Per class, once: each field's name, decoder and whether it is required."""
    hints = typing.get_type_hints(cls)
    return tuple(
        (
            f.name,
            _converter(hints[f.name]),
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
        )
        for f in dataclasses.fields(cls)
    )


def _encode_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, tuple):
        return [_encode_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode_value(v) for k, v in value.items()}
    return value


def _to_decimal(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise CodecError(f"{where}: expected a decimal string, got {value!r}")
    try:
        result = Decimal(value)
    except InvalidOperation:
        raise CodecError(f"{where}: not a decimal: {value!r}") from None
    if not result.is_finite():
        raise CodecError(f"{where}: decimal must be finite, got {value!r}")
    return result


def _to_float(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CodecError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _exact(kind: type, label: str) -> Converter:
    def convert(value: Any, where: str) -> Any:
        if type(value) is not kind:
            raise CodecError(f"{where}: expected {label}, got {value!r}")
        return value

    return convert


def _passthrough(value: Any, where: str) -> Any:
    return value


_SCALARS: dict[Any, Converter] = {
    Decimal: _to_decimal,
    float: _to_float,
    int: _exact(int, "an integer"),
    bool: _exact(bool, "true or false"),
    str: _exact(str, "a string"),
}


@functools.cache
def _converter(hint: Any) -> Converter:
    """A decoder for one type hint, built once and reused for every message."""
    if hint in _SCALARS:
        return _SCALARS[hint]
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        inner = _converter(next(a for a in args if a is not type(None)))
        optional = type(None) in args
        return lambda v, w: None if v is None and optional else inner(v, w)
    if origin is tuple:
        item = _converter(args[0]) if args else _passthrough

        def to_tuple(value: Any, where: str) -> tuple:
            if not isinstance(value, (list, tuple)):
                raise CodecError(f"{where}: expected a list, got {value!r}")
            return tuple(item(v, where) for v in value)

        return to_tuple
    if origin is dict or hint is dict:
        item = _converter(args[1]) if len(args) == 2 and args[1] is not Any else None

        def to_dict(value: Any, where: str) -> dict:
            if not isinstance(value, dict):
                raise CodecError(f"{where}: expected a map, got {value!r}")
            return value if item is None else {k: item(v, where) for k, v in value.items()}

        return to_dict
    return _passthrough  # Any


# --- service plumbing ------------------------------------------------------------------


@message
class Heartbeat(Message):
    """A service is alive: published on ``health.<service>`` every second."""

    service: str
    instance: str
    status: str
    uptime_s: float
    ts: float
    pid: int
    detail: dict[str, Any] = field(default_factory=dict)
    started_at: float = 0.0


@message
class LogRecord(Message):
    """One log line, already redacted, published on ``log.<service>``."""

    service: str
    instance: str
    level: str
    logger: str
    message: str
    ts: float


@message
class BusStats(Message):
    """Message rates through the bus per topic prefix, published on ``health.bus``."""

    ts: float
    interval_s: float
    rates: dict[str, float]
    totals: dict[str, int]


@message
class Ping(Message):
    """Ask a reply server whether it is alive; it answers with ``Reply``."""

    nonce: str = ""


@message
class Reply(Message):
    """The answer to any request: ``ok`` with a ``result`` or an ``error_code`` and message."""

    ok: bool
    result: Any = None
    error_code: str = ""
    error_message: str = ""
    fields: dict[str, str] = field(default_factory=dict)


# --- market data (floats are fine here) ------------------------------------------------


@message
class Candle(Message):
    """A kline on ``md.kline.<SYMBOL>.<interval>``; ``closed`` is False while it forms."""

    symbol: str
    interval: str
    open_time_ms: int
    close_time_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    closed: bool


@message
class BookTicker(Message):
    """Best bid and ask on ``md.book.<SYMBOL>``."""

    symbol: str
    bid: float
    bid_qty: float
    ask: float
    ask_qty: float
    ts_ms: int
    update_id: int = 0


@message
class DepthBook(Message):
    """Top levels of the order book on ``md.depth.<SYMBOL>``: lists of (price, qty)."""

    symbol: str
    bids: tuple[tuple[float, float], ...]
    asks: tuple[tuple[float, float], ...]
    last_update_id: int
    ts_ms: int


# --- bots, orders and fills (money travels as Decimal strings) -------------------------


@message
class StartBot(Message):
    """Command: set a bot's desired status to running."""

    bot_id: str


@message
class StopBot(Message):
    """Command: set a bot's desired status to stopped."""

    bot_id: str


@message
class BotStatusChanged(Message):
    """Event: a bot moved to STOPPED/STARTING/RUNNING/STOPPING/ERROR."""

    bot_id: str
    status: str
    reason: str
    ts: float


@message
class SubmitIntent(Message):
    """Command from a strategy worker to execution: trade for a bot under its lease epoch."""

    intent_id: str
    bot_id: str
    epoch: int
    symbol: str
    side: str
    order_type: str
    quantity: Decimal | None = None
    quote_qty: Decimal | None = None
    price: Decimal | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    reason: str = ""
    # Wall-clock ms after which execution must not act on it (0: no deadline): the worker has
    # stopped waiting by then, and a decision made that long ago is not traded late.
    deadline_ms: int = 0


@message
class CancelOrder(Message):
    """Command: cancel one order by its client order id."""

    client_order_id: str
    symbol: str
    bot_id: str = ""


@message
class OrderUpdated(Message):
    """Event: an order changed status on the exchange (``exec.order.<bot>``)."""

    bot_id: str
    client_order_id: str
    exchange_order_id: int
    symbol: str
    side: str
    order_type: str
    status: str
    price: Decimal
    quantity: Decimal
    executed_qty: Decimal
    cumulative_quote: Decimal
    ts_ms: int


@message
class OrderFilled(Message):
    """Event: one trade (fill) of an order; unique on (symbol, trade_id)."""

    bot_id: str
    client_order_id: str
    exchange_order_id: int
    trade_id: int
    symbol: str
    side: str
    price: Decimal
    quantity: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    is_maker: bool
    ts_ms: int


@message
class StateChanged(Message):
    """Event: one numbered change of the state service (``state.<kind>``, Clone pattern)."""

    seq: int
    kind: str
    payload: dict[str, Any]


# --- state service requests (answered with Reply; results are plain data) --------------
#
# Writes answer ``{"result": "created" | "updated" | "duplicate" | ..., "value": ...,
# "seq": n or None}`` once the change is on disk. A write that is not idempotent by nature
# (CreateBot, SetParams, RollbackParams, RecordAlert) takes a ``request_id``: a retry with the
# same id gets the first answer again instead of a second write.


@message
class GetSnapshot(Message):
    """Query: everything a late joiner needs, with the ``seq`` it is consistent with."""

    recent: int = 50


@message
class ListBots(Message):
    """Query: every bot that is not deleted."""


@message
class GetBot(Message):
    """Query: one bot."""

    bot_id: int


@message
class CreateBot(Message):
    """Command: add a stopped bot; its params (checked against the schema) are version 1."""

    strategy: str
    symbol: str
    timeframe: str
    params: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    request_id: str = ""


@message
class DeleteBot(Message):
    """Command: remove a bot from the list (its history stays) and end its lease."""

    bot_id: int


@message
class SetDesiredStatus(Message):
    """Command: what the user wants a bot to do, ``RUNNING`` or ``STOPPED``."""

    bot_id: int
    desired_status: str


@message
class SetBotStatus(Message):
    """Command from the lease holder: what the bot is doing now (STARTING, RUNNING...)."""

    bot_id: int
    status: str
    reason: str = ""
    epoch: int | None = None


@message
class GetParams(Message):
    """Query: a bot's current params (or one ``version``) with strategy, symbol, timeframe."""

    bot_id: int
    version: int | None = None


@message
class SetParams(Message):
    """Command: save a new params version; every field error is returned, nothing saved.

    Empty ``strategy``/``symbol``/``timeframe`` keep the bot's; params left out take the
    schema's defaults.
    """

    bot_id: int
    params: dict[str, Any]
    strategy: str = ""
    symbol: str = ""
    timeframe: str = ""
    comment: str = ""
    request_id: str = ""


@message
class ListParamVersions(Message):
    """Query: every saved params version of a bot, newest first."""

    bot_id: int


@message
class RollbackParams(Message):
    """Command: save a new version equal to an older ``version``."""

    bot_id: int
    version: int
    comment: str = ""
    request_id: str = ""


@message
class ClaimLease(Message):
    """Command from a strategy worker: take a free or expired bot lease for ``ttl_s``."""

    bot_id: int
    owner: str
    ttl_s: float


@message
class RenewLease(Message):
    """Command from the lease holder: extend its lease; refused when the epoch is stale."""

    bot_id: int
    owner: str
    epoch: int
    ttl_s: float


@message
class ReleaseLease(Message):
    """Command from the lease holder: give the lease back."""

    bot_id: int
    owner: str
    epoch: int


@message
class CheckLease(Message):
    """Query: is ``epoch`` the bot's current lease epoch? (error ``stale_lease`` if not)."""

    bot_id: int
    epoch: int


@message
class RecordOrderEvent(Message):
    """Command from execution: create or advance an order, keyed by ``client_order_id``.

    A submission carries symbol, side, order type and quantity; a later report may carry only
    what changed. Recording the same event twice stores it once.
    """

    client_order_id: str
    status: str = ""
    bot_id: int | None = None
    symbol: str = ""
    side: str = ""
    order_type: str = ""
    time_in_force: str = ""
    exchange_order_id: int | None = None
    price: Decimal | None = None
    stop_price: Decimal | None = None
    qty: Decimal | None = None
    executed_qty: Decimal | None = None
    cumulative_quote_qty: Decimal | None = None
    reject_reason: str = ""
    ts_ms: int = 0


@message
class RecordFill(Message):
    """Command from execution: one trade of an order; unique on (symbol, trade_id)."""

    symbol: str
    trade_id: int
    side: str
    price: Decimal
    qty: Decimal
    commission: Decimal = Decimal(0)
    commission_asset: str = ""
    quote_qty: Decimal | None = None
    client_order_id: str = ""
    exchange_order_id: int | None = None
    bot_id: int | None = None
    is_maker: bool = False
    ts_ms: int = 0


@message
class RecordBalances(Message):
    """Command from execution: account balances by asset (only changed ones are published)."""

    free: dict[str, Decimal]
    locked: dict[str, Decimal] = field(default_factory=dict)
    ts_ms: int = 0


@message
class RecordAlert(Message):
    """Command: keep an important log record (critical error, ban, kill switch)."""

    level: str
    service: str
    message: str
    bot_id: int | None = None
    request_id: str = ""


@message
class AcknowledgeAlert(Message):
    """Command from the dashboard: an alert was seen."""

    alert_id: int


@message
class QueryOrders(Message):
    """Query: orders newest first, ``limit`` per page, ``before`` an id; status ``OPEN`` too."""

    bot_id: int | None = None
    symbol: str = ""
    status: str = ""
    limit: int = 50
    before: int | None = None


@message
class QueryFills(Message):
    """Query: fills newest first, paged like ``QueryOrders``."""

    bot_id: int | None = None
    symbol: str = ""
    client_order_id: str = ""
    limit: int = 50
    before: int | None = None


@message
class QueryTrades(Message):
    """Query: completed round trips (BUY then SELL) with their PnL, newest first."""

    bot_id: int | None = None
    symbol: str = ""
    limit: int = 50
    before: int | None = None


@message
class QueryAlerts(Message):
    """Query: important log records, newest first."""

    level: str = ""
    limit: int = 50
    before: int | None = None


@message
class GetPosition(Message):
    """Query: a bot's position (entry price, qty, time, PnL); with ``mid_price`` unrealised."""

    bot_id: int
    symbol: str = ""
    mid_price: Decimal | None = None


# --- market data service requests and events (marketdata endpoint, ``health.marketdata.*``) --


@message
class SetMarketStreams(Message):
    """Command from a worker: keep exactly these ``md.*`` topics flowing for ``ttl_s``.

    Replaces the subscriber's previous set (safe to repeat); renew before the TTL ends or the
    streams stop. An empty ``topics`` releases them at once.
    """

    subscriber: str
    topics: tuple[str, ...]
    ttl_s: float = 15.0


@message
class GetCandles(Message):
    """Query: the newest ``limit`` closed candles with ``close_time_ms < end_time_ms``
    (default: up to the last closed one), oldest first, as ``Candle`` maps."""

    symbol: str
    interval: str
    limit: int = 500
    end_time_ms: int | None = None


@message
class StreamHealth(Message):
    """Event on ``health.marketdata.streams``: the market-stream connection as it is now."""

    connected: bool
    streams: tuple[str, ...]
    last_message_age_s: float
    reconnects: int
    backfilled_candles: int
    depth_resyncs: int
    ts: float


# --- execution commands and events (REP ``execution``; PUB ``exec.*``) ------------------


@message
class CloseBotPosition(Message):
    """Command: cancel a bot's open orders (its protection too) and sell its position now."""

    bot_id: str
    symbol: str = ""
    reason: str = ""


@message
class SetKillSwitch(Message):
    """Command: kill switch on (no new orders, open entry orders cancelled) or off."""

    enabled: bool
    reason: str = ""


@message
class GetRiskConfig(Message):
    """Query: execution's risk settings (sizing, limits, kill switch)."""


@message
class SetRiskConfig(Message):
    """Command: change some risk settings; every bad field is reported and nothing changes."""

    changes: dict[str, Any]


@message
class GetExecutionStatus(Message):
    """Query: kill switch, pause/halt, weight budget, last account sync, outbox depth."""


@message
class TradingPaused(Message):
    """Event on ``exec.pause``: the exchange limited (429) or banned (418) this IP; every
    process holds its exchange calls until ``until_ts``."""

    reason: str
    retry_after_s: float
    until_ts: float
    halted: bool = False


@message
class RateBudget(Message):
    """Event on ``exec.budget``: Binance's request-weight and order-count usage as last seen."""

    used_weight_1m: int
    weight_limit_1m: int
    order_count_10s: int
    order_count_1d: int
    paused_until_ts: float
    halted_until_ts: float
    ts: float


@message
class AccountReconciled(Message):
    """Event on ``exec.sync``: a REST reconciliation finished; ``corrections`` counts the
    order changes and fills it found that the user-data stream had not delivered."""

    ts: float
    trigger: str
    corrections: int
    open_orders: int
    balances: dict[str, Decimal] = field(default_factory=dict)


@message
class KillSwitchChanged(Message):
    """Event on ``exec.killswitch``: the kill switch was turned on or off."""

    enabled: bool
    reason: str
    ts: float


@message
class ProtectionChanged(Message):
    """Event on ``exec.protect.<bot>``: a position's native OCO stop-loss / take-profit."""

    bot_id: str
    symbol: str
    entry_client_order_id: str
    list_client_order_id: str
    status: str
    quantity: Decimal
    stop_loss: Decimal
    take_profit: Decimal
    ts: float
