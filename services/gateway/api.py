"""REST routes under ``/api/``: bots, params, orders, trades, candles, logs, controls.

Reads and writes go to the state service by request/reply (so a write is read back at
once); commands that touch the exchange go to execution; candles come from market data.
Mid prices, balances and the last exchange sync come from the live bus views. Each route
checks its input first and answers 400 naming every bad field.
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import Blueprint, current_app, jsonify, request

from services.gateway import inputs
from services.gateway.backend import Backends
from services.gateway.errors import ApiError
from services.gateway.live import LEVELS, LiveData
from shared import messages as m
from shared.strategies import STRATEGIES, schemas_json
from shared.strategies.base import KLINE_INTERVALS_MS

bp = Blueprint("api", __name__, url_prefix="/api")

PAGE_MAX = 500
CANDLES_MAX = 1000
LOGS_MAX = 1000
STATUS_FRESH_S = 15.0
SERVICE_NAME = re.compile(r"^[a-z_]{1,40}$")
QUOTE_ASSETS = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "DAI", "EUR", "TRY", "BRL", "BTC",
                "ETH", "BNB")
ORDER_STATUSES = ("OPEN", "PENDING_NEW", "NEW", "PARTIALLY_FILLED", "PENDING_CANCEL",
                  "FILLED", "CANCELED", "REJECTED", "EXPIRED", "EXPIRED_IN_MATCH")


class Gateway:
    """What the routes use: the backends (None: none configured) and the live views."""

    def __init__(self, backends: Backends | None, live: LiveData | None) -> None:
        self.backends = backends
        self.live = live

    def call(self, service: str, msg: m.Message) -> Any:
        if self.backends is None:
            raise ApiError(503, f"{service}_unavailable", f"no {service} service configured")
        return self.backends.call(service, msg)


def gw() -> Gateway:
    return current_app.extensions["gateway"]


def state(msg: m.Message) -> Any:
    return gw().call("state", msg)


def written(msg: m.Message) -> Any:
    """A state write's stored value (its answer is ``{"result", "value", "seq"}``)."""
    answer = state(msg)
    return answer.get("value") if isinstance(answer, dict) else answer


def request_id() -> str:
    key = request.headers.get("Idempotency-Key", "")
    return key[:100] if key else uuid.uuid4().hex


# --- bots ----------------------------------------------------------------------------------


@bp.get("/bots")
def list_bots():
    return jsonify({"items": state(m.ListBots())})


@bp.post("/bots")
def create_bot():
    form = inputs.body(request)
    form.require("strategy", "symbol", "timeframe")
    strategy = form.text("strategy", choices=tuple(STRATEGIES))
    symbol = form.text("symbol", pattern=inputs.SYMBOL, upper=True)
    timeframe = form.text("timeframe", choices=tuple(KLINE_INTERVALS_MS))
    params = form.mapping("params")
    name = form.text("name", max_len=100)
    form.done()
    bot = written(m.CreateBot(strategy=strategy, symbol=symbol, timeframe=timeframe,
                              params=params, name=name, request_id=request_id()))
    return jsonify(bot), 201


@bp.get("/bots/<bot_id>")
def bot_detail(bot_id: str):
    bot = state(m.GetBot(inputs.bot_id(bot_id)))
    live = gw().live
    mid = live.mid_price(bot["symbol"]) if live else None
    position = state(m.GetPosition(bot_id=bot["id"], mid_price=_decimal(mid)))
    base, quote = split_symbol(bot["symbol"])
    balances = live.balances() if live else None
    if balances is None:
        snapshot = state(m.GetSnapshot(recent=1))
        balances = {b["asset"]: b for b in snapshot.get("balances", [])}
    execution = live.execution_status() if live else {}
    return jsonify({
        **bot,
        "base_asset": base, "quote_asset": quote,
        "quote_balance": balances.get(quote, {}).get("free"),
        "base_qty": balances.get(base, {}).get("free"),
        "mid_price": mid,
        "position": {
            "symbol": position.get("symbol"), "qty": position.get("qty"),
            "entry_price": position.get("avg_entry_price"),
            "break_even_price": position.get("break_even_price"),
            "opened_at_ms": position.get("opened_at_ms"),
            "opened_at": _iso(position.get("opened_at_ms")), "cost": position.get("cost"),
        },
        "pnl": {"unrealized": position.get("unrealized_pnl"),
                "realized": position.get("realized_pnl"),
                "fees_quote": position.get("fees_quote")},
        "last_sync_ts": execution.get("last_sync_ts"),
        "lease": live.lease(bot["id"]) if live else None,
    })


@bp.delete("/bots/<bot_id>")
def delete_bot(bot_id: str):
    value = written(m.DeleteBot(inputs.bot_id(bot_id)))
    return jsonify({"deleted": value.get("id") if isinstance(value, dict) else value})


@bp.post("/bots/<bot_id>/start")
def start_bot(bot_id: str):
    return jsonify(written(m.SetDesiredStatus(inputs.bot_id(bot_id), "RUNNING")))


@bp.post("/bots/<bot_id>/stop")
def stop_bot(bot_id: str):
    return jsonify(written(m.SetDesiredStatus(inputs.bot_id(bot_id), "STOPPED")))


@bp.post("/bots/<bot_id>/close")
def close_position(bot_id: str):
    ident = inputs.bot_id(bot_id)
    form = inputs.body(request, optional=True)
    reason = form.text("reason", max_len=200)
    form.done()
    bot = state(m.GetBot(ident))
    result = gw().call("execution", m.CloseBotPosition(
        bot_id=str(bot["id"]), symbol=bot["symbol"], reason=reason or "closed from the API"))
    return jsonify(result)


# --- strategies and params -------------------------------------------------------------------


@bp.get("/strategies")
def strategies():
    return jsonify({"strategies": schemas_json()})


@bp.get("/bots/<bot_id>/params")
def get_params(bot_id: str):
    return jsonify(state(m.GetParams(inputs.bot_id(bot_id))))


@bp.put("/bots/<bot_id>/params")
def set_params(bot_id: str):
    ident = inputs.bot_id(bot_id)
    form = inputs.body(request)
    form.require("params")
    params = form.mapping("params", required=True)
    strategy = form.text("strategy", choices=tuple(STRATEGIES))
    symbol = form.text("symbol", pattern=inputs.SYMBOL, upper=True)
    timeframe = form.text("timeframe", choices=tuple(KLINE_INTERVALS_MS))
    comment = form.text("comment", max_len=200)
    form.done()
    version = written(m.SetParams(bot_id=ident, params=params, strategy=strategy, symbol=symbol,
                                  timeframe=timeframe, comment=comment,
                                  request_id=request_id()))
    return jsonify(version)


@bp.get("/bots/<bot_id>/params/versions")
def param_versions(bot_id: str):
    return jsonify({"items": state(m.ListParamVersions(inputs.bot_id(bot_id)))})


@bp.post("/bots/<bot_id>/params/rollback")
def rollback_params(bot_id: str):
    ident = inputs.bot_id(bot_id)
    form = inputs.body(request)
    form.require("version")
    version = form.integer("version")
    comment = form.text("comment", max_len=200)
    form.done()
    try:
        return jsonify(written(m.RollbackParams(bot_id=ident, version=version,
                                                comment=comment, request_id=request_id())))
    except ApiError as exc:
        if exc.status == 400 and set(exc.fields) == {"version"}:  # a well-formed version
            raise ApiError(404, "unknown_version", exc.fields["version"]) from None
        raise


# --- orders and trades -----------------------------------------------------------------------


def _page_filters(form: inputs.Form) -> dict[str, Any]:
    return {
        "bot_id": form.integer("bot"),
        "symbol": form.text("symbol", pattern=inputs.SYMBOL, upper=True),
        "limit": form.integer("limit", 50, 1, PAGE_MAX),
        "before": form.integer("before"),
    }


@bp.get("/orders")
def list_orders():
    form = inputs.query(request)
    filters = _page_filters(form)
    status = form.text("status", choices=ORDER_STATUSES)
    form.done()
    return jsonify(state(m.QueryOrders(status=status, **filters)))


@bp.delete("/orders/<order_ref>")
def cancel_order(order_ref: str):
    order = _find_order(order_ref)
    result = gw().call("execution", m.CancelOrder(
        client_order_id=order["client_order_id"], symbol=order["symbol"],
        bot_id="" if order.get("bot_id") is None else str(order["bot_id"])))
    return jsonify(result)


def _find_order(ref: str) -> dict[str, Any]:
    if len(ref) > 64:
        raise inputs.invalid({"id": "an order id or a client order id"})
    number = inputs.to_int(ref)
    if number is not None and number >= 1:
        page = state(m.QueryOrders(limit=1, before=number + 1))
        items = [o for o in page.get("items", []) if o.get("id") == number]
    else:
        page = state(m.QueryOrders(status="OPEN", limit=PAGE_MAX))
        items = [o for o in page.get("items", []) if o.get("client_order_id") == ref]
    if not items:
        raise ApiError(404, "unknown_order", f"no order {ref!r}")
    return items[0]


@bp.get("/trades")
def list_trades():
    form = inputs.query(request)
    filters = _page_filters(form)
    form.done()
    page = state(m.QueryTrades(**filters))
    return jsonify({**page, "performance": performance(page.get("items", []))})


def performance(trades: list[dict[str, Any]]) -> dict[str, Any]:
    """Win rate, total PnL and fees of completed BUY->SELL trades."""
    pnls = [_decimal(t.get("pnl")) or Decimal(0) for t in trades]
    pcts = [_decimal(t.get("pnl_pct")) or Decimal(0) for t in trades]
    fees = sum((_decimal(t.get("fees_quote")) or Decimal(0) for t in trades), Decimal(0))
    wins = sum(1 for p in pnls if p > 0)
    count = len(trades)
    return {
        "count": count, "wins": wins, "losses": sum(1 for p in pnls if p < 0),
        "win_rate": round(wins / count, 4) if count else None,
        "total_pnl": str(sum(pnls, Decimal(0))), "fees_quote": str(fees),
        "avg_pnl_pct": str(round(sum(pcts, Decimal(0)) / count, 4)) if count else None,
    }


# --- execution controls ----------------------------------------------------------------------


@bp.post("/killswitch")
def kill_switch():
    form = inputs.body(request)
    form.require("enabled")
    enabled = form.boolean("enabled")
    reason = form.text("reason", max_len=200)
    form.done()
    result = gw().call("execution", m.SetKillSwitch(enabled=enabled,
                                                    reason=reason or "set from the API"))
    return jsonify(result)


@bp.get("/execution")
def execution_status():
    """Execution's status as last polled (every few seconds), else asked now."""
    live = gw().live
    cached = live.execution_status() if live else {}
    if cached.get("status_ts") and time.time() - cached["status_ts"] < STATUS_FRESH_S:
        return jsonify(cached)
    return jsonify(gw().call("execution", m.GetExecutionStatus()))


# --- market data, logs, alerts ---------------------------------------------------------------


@bp.get("/candles")
def candles():
    form = inputs.query(request)
    form.require("symbol", "interval")
    symbol = form.text("symbol", pattern=inputs.SYMBOL, upper=True)
    interval = form.text("interval", choices=tuple(KLINE_INTERVALS_MS))
    limit = form.integer("limit", 300, 1, CANDLES_MAX)
    end_time_ms = form.integer("end_time_ms")
    form.done()
    result = gw().call("marketdata", m.GetCandles(symbol=symbol, interval=interval, limit=limit,
                                                  end_time_ms=end_time_ms))
    rows = []
    for candle in (result or {}).get("candles", []):
        row = dict(candle)
        row.pop("type", None)
        row.pop("v", None)
        rows.append(row)
    return jsonify({"symbol": symbol, "interval": interval, "candles": rows})


@bp.get("/logs")
def logs():
    form = inputs.query(request)
    level = form.text("level", choices=tuple(LEVELS))
    service = form.text("service", pattern=SERVICE_NAME)
    limit = form.integer("limit", 200, 1, LOGS_MAX)
    form.done()
    live = gw().live
    items = live.logs.query(level, service, limit) if live else []
    return jsonify({"items": items})


@bp.get("/alerts")
def alerts():
    form = inputs.query(request)
    level = form.text("level", choices=tuple(LEVELS))
    limit = form.integer("limit", 50, 1, PAGE_MAX)
    before = form.integer("before")
    form.done()
    return jsonify(state(m.QueryAlerts(level=level, limit=limit, before=before)))


@bp.post("/alerts/<alert_id>/ack")
def acknowledge_alert(alert_id: str):
    number = inputs.to_int(alert_id)
    if number is None or number < 1:
        raise inputs.invalid({"id": "an alert id: a positive integer"})
    try:
        return jsonify(written(m.AcknowledgeAlert(alert_id=number)))
    except ApiError as exc:
        if exc.status == 400 and "alert_id" in exc.fields:  # state's way to say "no such"
            raise ApiError(404, "unknown_alert", f"no alert {number}") from None
        raise


# --- helpers -----------------------------------------------------------------------------------


def split_symbol(symbol: str) -> tuple[str, str]:
    """``BTCUSDT`` -> (``BTC``, ``USDT``) by the known quote assets."""
    for quote in QUOTE_ASSETS:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol, ""


def _iso(ms: Any) -> str | None:
    if not isinstance(ms, int):
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        return None
    return result if result.is_finite() else None
